"""GGUF export of a merged model (the llama.cpp anchor of the speed benchmarks), checked against an
independent reader: transformers' own GGUF loader, which undoes llama.cpp's rotary permutation."""
from __future__ import annotations

import pytest
import torch

from lorasoups.gguf_export import GGUFExportError, permute_rotary, write_gguf
from lorasoups.models import MODELS, _package_gguf, load_base

NAME = "smollm2-135m-instruct"


def _read_back(path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)


def test_permute_rotary_interleaves_the_halves_of_each_head():
    w = torch.arange(8.0).reshape(8, 1).numpy()  # 2 heads of 4 rotary rows: [0 1 | 2 3], [4 5 | 6 7]
    assert permute_rotary(w, 2).ravel().tolist() == [0, 2, 1, 3, 4, 6, 5, 7]


def test_a_merged_soup_round_trips_through_gguf(tmp_path):
    """A LoRA merged into the base, written as F32 GGUF, reads back (transformers' loader) as the
    same weights; F16 rounds the matrices only; llama.cpp greedy-decodes the file like torch."""
    from peft import LoraConfig, get_peft_model

    model, tok = load_base(NAME, dtype="float32", device="cpu")
    torch.manual_seed(0)
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "down_proj"],
                                            init_lora_weights=False))
    with pytest.raises(GGUFExportError, match="merge its adapter"):
        write_gguf(peft, _package_gguf(MODELS[NAME]), tmp_path / "x.gguf")
    merged = peft.merge_and_unload()
    ref = {k: v.clone() for k, v in merged.state_dict().items()}
    out = write_gguf(merged, _package_gguf(MODELS[NAME]), tmp_path / "soup-f32.gguf")
    back = _read_back(out).state_dict()
    assert set(back) == set(ref)
    assert all(torch.equal(back[k], ref[k]) for k in ref)  # q/k permuted there and back exactly
    half = _read_back(write_gguf(merged, _package_gguf(MODELS[NAME]), tmp_path / "soup-f16.gguf", "f16")).state_dict()
    q = "model.layers.0.self_attn.q_proj.weight"
    assert torch.equal(half[q], ref[q].half().float()) and not torch.equal(half[q], ref[q])
    norm = "model.layers.0.input_layernorm.weight"
    assert torch.equal(half[norm], ref[norm])  # 1-D tensors stay F32

    from llama_cpp import Llama

    llm = Llama(model_path=str(out), n_ctx=256, n_threads=2, n_batch=256, verbose=False, seed=0)
    base_model, _ = load_base(NAME, dtype="float32", device="cpu")
    plain = base_model.eval()
    plain.load_state_dict(ref)  # the merged weights on a plain model, for torch's greedy reference
    prompt = tok.apply_chat_template([{"role": "user", "content": "Name a color."}], tokenize=False,
                                     add_generation_prompt=True)
    ids = tok(prompt, return_tensors="pt")
    want = tok.decode(plain.generate(**ids, max_new_tokens=12, do_sample=False)[0, ids["input_ids"].shape[1]:],
                      skip_special_tokens=True)
    got = llm.create_completion(prompt, max_tokens=12, temperature=0.0, top_k=1, top_p=1.0,
                                repeat_penalty=1.0)["choices"][0]["text"]
    assert got.strip() == want.strip()


def test_a_failed_write_leaves_no_file(tmp_path, monkeypatch):
    """An error while writing (e.g. a full disk) removes the partial temporary file."""
    import gguf

    model, _ = load_base(NAME, dtype="float32", device="cpu")

    def fail(self, *a, **k):
        raise OSError("No space left on device")

    monkeypatch.setattr(gguf.GGUFWriter, "write_tensors_to_file", fail)
    with pytest.raises(OSError, match="No space"):
        write_gguf(model, _package_gguf(MODELS[NAME]), tmp_path / "base.gguf", "f16")
    assert not list(tmp_path.iterdir())


def test_export_refuses_a_model_of_another_layout(tmp_path):
    from lorasoups.models import tiny_random_llama

    tiny, _ = tiny_random_llama()
    with pytest.raises(GGUFExportError, match="tensors differ"):
        write_gguf(tiny, _package_gguf(MODELS[NAME]), tmp_path / "tiny.gguf")
    with pytest.raises(GGUFExportError, match="dtype"):
        write_gguf(tiny, _package_gguf(MODELS[NAME]), tmp_path / "tiny.gguf", "q4")
    assert not list(tmp_path.iterdir())  # nothing left behind
