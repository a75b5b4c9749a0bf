"""Base models: the embedded default (cached conversion), tiny random Llama, clear load errors."""
from __future__ import annotations

import json
import time

import pytest
import torch

from lorasoups import models
from lorasoups.checks import greedy_answer
from lorasoups.models import ModelLoadError, load_base


@pytest.fixture(scope="module")
def default_model():
    """Load the default model twice; the second load must read the safetensors cache."""
    first = time.perf_counter()
    load_base(models.DEFAULT_MODEL, dtype="float32", device="cpu")
    first = time.perf_counter() - first
    marker = models.converted_dir(models.DEFAULT_MODEL) / "lorasoups-converted.json"
    assert marker.is_file()
    before = marker.stat().st_mtime_ns
    second = time.perf_counter()
    model, tok = load_base(models.DEFAULT_MODEL, dtype="float32", device="cpu")
    second = time.perf_counter() - second
    return model, tok, {"first": first, "second": second, "marker_unchanged": marker.stat().st_mtime_ns == before}


@pytest.mark.slow
def test_default_model_second_load_uses_cache(default_model):
    model, tok, info = default_model
    assert info["marker_unchanged"]  # not converted again
    cache = models.converted_dir(models.DEFAULT_MODEL)
    assert (cache / "model.safetensors").is_file()
    meta = json.loads((cache / "lorasoups-converted.json").read_text())
    assert meta["gguf"].endswith("SmolLM2-135M-Instruct.Q4_1.gguf") and len(meta["gguf_sha256"]) == 64
    assert sum(p.numel() for p in model.parameters()) == 134_515_008  # SmolLM2-135M
    assert tok.padding_side == "left" and tok.pad_token is not None


@pytest.mark.slow
def test_default_model_greedy_is_deterministic(default_model):
    model, tok, _ = default_model
    prompt = "What is the capital of France?"
    a = greedy_answer(model, tok, prompt, max_new_tokens=12)
    b = greedy_answer(model, tok, prompt, max_new_tokens=12)
    assert a == b
    assert "paris" in a.lower()  # a real model, not random weights


@pytest.mark.slow
def test_default_model_matches_its_gguf(default_model):
    """The cached safetensors copy gives the same logits as transformers' GGUF loader."""
    from transformers import AutoModelForCausalLM

    model, tok, _ = default_model
    spec = models.MODELS[models.DEFAULT_MODEL]
    gguf = models._package_gguf(spec)
    ref = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32).eval()
    ids = tok("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, ref(ids).logits, rtol=0, atol=1e-5)


def test_tiny_model_is_seeded(tiny):
    model, tok = tiny
    again, _ = models.tiny_random_llama(seed=0)
    other, _ = models.tiny_random_llama(seed=1)
    w = model.model.layers[0].self_attn.q_proj.weight
    assert torch.equal(w, again.model.layers[0].self_attn.q_proj.weight)
    assert not torch.equal(w, other.model.layers[0].self_attn.q_proj.weight)
    assert model.config.num_hidden_layers == 2 and model.config.hidden_size == 64
    assert model.config.vocab_size == len(tok)
    assert "<|im_start|>" in models.chat_prompt(tok, "hi")  # the default model's chat template


def test_tiny_model_directory_loads(tiny_dir, tiny):
    model, _ = load_base(str(tiny_dir), dtype="float32", device="cpu")
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, tiny[0](ids).logits)


def test_unknown_model_name():
    with pytest.raises(ModelLoadError, match=r"unknown model 'smollm2-135m-instrct'.*did you mean 'smollm2-135m-instruct'\?"):
        load_base("smollm2-135m-instrct")


def test_directory_without_config(tmp_path):
    with pytest.raises(ModelLoadError, match=rf"model directory '{tmp_path}' has no config.json"):
        load_base(str(tmp_path))


def test_corrupt_weights(tiny_dir, tmp_path):
    bad = tmp_path / "corrupt"
    bad.mkdir()
    for f in tiny_dir.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    (bad / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelLoadError, match=r"model '.*corrupt' at .* is unreadable"):
        load_base(str(bad), device="cpu")


def test_4bit_needs_cuda():
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(ModelLoadError, match="load_in_4bit needs CUDA"):
        load_base("some-org/some-model", load_in_4bit=True)


def test_dtype_and_device_resolution():
    assert models.resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert models.resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16
    assert models.resolve_dtype("float16", torch.device("cpu")) == torch.float16
    assert models.short_name("meta-llama/Llama-2-7b-hf") == "Llama-2-7b-hf"


def test_model_identity_does_not_depend_on_conversion(tmp_path, monkeypatch):
    """A run's key holds the base's identity: it must be the same before the GGUF is converted
    (a fresh machine) as after, or a resumed study would retrain everything on a new machine."""
    models.resolve_model_dir(models.DEFAULT_MODEL)  # converts once where it is not yet (cached)
    marker = models.converted_dir(models.DEFAULT_MODEL) / "lorasoups-converted.json"
    assert marker.is_file()
    converted = models.model_identity(models.DEFAULT_MODEL)
    monkeypatch.setenv("LORASOUPS_CACHE", str(tmp_path))
    assert not (models.converted_dir(models.DEFAULT_MODEL) / "lorasoups-converted.json").is_file()
    fresh = models.model_identity(models.DEFAULT_MODEL)
    assert fresh == converted
    assert fresh["gguf_sha256"] == json.loads(marker.read_text())["gguf_sha256"]
