"""Fast generation against one-at-a-time greedy decoding on the tiny random Llama.

The reference decodes each prompt alone, without padding and without a KV cache (a full forward
per token, argmax), stops at the same EOS tokens and cuts at the same stop strings; it shares no
code with lorasoups.evaluation.fastgen. generation.generate with batch_size=1 (HF generate) is a
second reference.
"""
from __future__ import annotations

import copy

import pytest
import torch

from lorasoups.evaluation import fastgen
from lorasoups.evaluation.generation import GenerationConfig
from lorasoups.evaluation.generation import generate as hf_generate

LONG = ("Below is an instruction that describes a task. Write a response that appropriately completes the "
        "request.\n\n### Instruction:\nJanet's ducks lay 16 eggs per day. She eats three for breakfast every "
        "morning and bakes muffins for her friends every day with 4933828. How much does she make?\n\n"
        "### Response:\n") * 3
PROMPTS = ["Hi", LONG, "2 + 2 =", "Count the words containing the letter q in this sentence, please.",
           "x", "What happens when you choose the Path of the Berserker at 3rd level?"]
N = 24


def reference(model, tok, prompt: str, n: int, eos: set[int], stops: list[str]) -> str:
    ids = tok(prompt, return_tensors="pt")["input_ids"]
    out: list[int] = []
    with torch.no_grad():
        for _ in range(n):
            nxt = int(model(input_ids=ids).logits[0, -1].argmax())
            out.append(nxt)
            if nxt in eos:
                break
            ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
    text = tok.decode(out, skip_special_tokens=True)
    cuts = [text.find(s) for s in stops if s and s in text]
    return text[: min(cuts)] if cuts else text


@pytest.fixture(scope="module")
def model_tok(tiny):
    return tiny


@pytest.fixture(scope="module")
def plain_refs(model_tok):
    model, tok = model_tok
    return [reference(model, tok, p, N, set(), []) for p in PROMPTS]


def test_prompt_lengths_really_differ(model_tok, plain_refs):
    _, tok = model_tok
    lengths = [len(tok(p)["input_ids"]) for p in PROMPTS]
    assert min(lengths) <= 2 and max(lengths) > 150
    assert len(set(plain_refs)) == len(PROMPTS) and all(plain_refs)  # real, differing continuations


@pytest.mark.parametrize("kw", [
    {"batch_size": 4},                                    # eager, dynamic cache
    {"batch_size": 1},
    {"batch_size": 6, "check_every": 1},
    {"batch_size": 4, "static_cache": True},              # the static-cache path, eager
    {"batch_size": 4, "compile": True, "allow_cpu_compile": True, "compile_backend": "eager",
     "compile_mode": None},                               # the traced (dynamo) path of the GPU code
])
def test_equals_one_at_a_time_greedy(model_tok, plain_refs, kw):
    model, tok = model_tok
    cfg = fastgen.FastGenConfig(max_new_tokens=N, eos_token_ids=[], check_every=kw.pop("check_every", 5), **kw)
    gen = fastgen.FastGenerator(model, tok, cfg)
    assert gen.generate(PROMPTS, progress=False) == plain_refs
    assert gen.stats.tokens == N * len(PROMPTS)
    assert gen.stats.compiled == bool(kw.get("compile"))
    # a second call on the same generator reuses caches / the compiled step and agrees
    assert gen.generate(PROMPTS[::-1], progress=False) == plain_refs[::-1]


def test_matches_hf_generate_one_at_a_time(model_tok):
    model, tok = model_tok
    stops = ["### Response:"]
    greedy = GenerationConfig(greedy=True, max_new_tokens=N, batch_size=1, stop_strings=stops)
    hf = [hf_generate(model, tok, [p], greedy, progress=False)[0] for p in PROMPTS]
    cfg = fastgen.FastGenConfig.from_generation(greedy, batch_size=3)
    assert cfg.stop_strings == stops and cfg.max_new_tokens == N
    assert fastgen.generate(model, tok, PROMPTS, cfg, progress=False) == hf
    assert fastgen.generate_auto(model, tok, PROMPTS, greedy, progress=False) == hf
    # sampling configs are routed to generation.generate unchanged (same seed -> same text)
    sampling = GenerationConfig(max_new_tokens=6, batch_size=2, seed=3)
    assert (fastgen.generate_auto(model, tok, PROMPTS[:3], sampling, progress=False)
            == hf_generate(model, tok, PROMPTS[:3], sampling, progress=False))


@pytest.mark.parametrize("static", [False, True])
def test_eos_and_stop_strings_stop_rows_at_different_steps(model_tok, plain_refs, static):
    model, tok = model_tok
    # an EOS that some rows produce early: the 4th token of the long prompt's continuation
    first = tok(plain_refs[1], add_special_tokens=False)["input_ids"]
    eos = {first[3]}
    stop = plain_refs[3][5:9]  # a marker inside one row's answer
    refs = [reference(model, tok, p, N, eos, [stop]) for p in PROMPTS]
    assert refs != plain_refs and any(r == p for r, p in zip(refs, plain_refs))  # some rows stop, some do not
    cfg = fastgen.FastGenConfig(max_new_tokens=N, eos_token_ids=sorted(eos), stop_strings=[stop], batch_size=6,
                                check_every=2, compact_below=0.99, static_cache=static)
    gen = fastgen.FastGenerator(model, tok, cfg)
    assert gen.generate(PROMPTS, progress=False) == refs
    assert gen.stats.tokens < N * len(PROMPTS)  # finished rows stopped early


def test_default_eos_is_the_models(model_tok):
    model, tok = model_tok
    assert fastgen.eos_ids(model, tok, fastgen.FastGenConfig()) == [model.generation_config.eos_token_id]


def test_peft_model_and_cat_soup(model_tok, tmp_path):
    from peft import LoraConfig, get_peft_model

    import lorasoups.merging as M

    model, tok = model_tok
    adapters = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj"], init_lora_weights=False)
        peft_model = get_peft_model(copy.deepcopy(model), cfg)
        peft_model.save_pretrained(str(tmp_path / f"s{seed}"))
        adapters.append(tmp_path / f"s{seed}")
    soup = M.build("cat", copy.deepcopy(model), adapters, init="released", seed=3).eval()
    for net in (peft_model.eval(), soup):
        refs = [reference(net, tok, p, 12, set(), []) for p in PROMPTS]
        for static in (False, True):
            cfg = fastgen.FastGenConfig(max_new_tokens=12, batch_size=4, eos_token_ids=[], static_cache=static)
            assert fastgen.generate(net, tok, PROMPTS, cfg, progress=False) == refs


@pytest.mark.parametrize("batch_size", [2, 5])
def test_shared_prefix_runs_once_and_changes_nothing(model_tok, batch_size):
    """Prompts that start with the same demonstrations (as a target's prompts do): the common token
    prefix is prefilled once per batch, and every row's text equals the one-at-a-time reference."""
    model, tok = model_tok
    demo = LONG[: len(LONG) // 3]
    prompts = [demo + q for q in ("Hi", "2 + 2 =", "Count the words with q, please.", "x", "Why?")]
    eos = set(fastgen.eos_ids(model, tok, fastgen.FastGenConfig()))
    refs = [reference(model, tok, p, N, eos, []) for p in prompts]
    gen = fastgen.FastGenerator(model, tok, fastgen.FastGenConfig(max_new_tokens=N, batch_size=batch_size))
    assert gen.generate(prompts, progress=False) == refs
    # rows that stop at different steps (an early EOS, a stop string) are dropped from the shared cache
    first = tok(refs[0], add_special_tokens=False)["input_ids"]
    early, stop = {first[2]}, refs[2][4:8]
    cut = [reference(model, tok, p, N, eos | early, [stop]) for p in prompts]
    assert cut != refs
    cfg = fastgen.FastGenConfig(max_new_tokens=N, batch_size=batch_size, eos_token_ids=sorted(eos | early),
                                stop_strings=[stop], check_every=2, compact_below=0.99)
    assert fastgen.FastGenerator(model, tok, cfg).generate(prompts, progress=False) == cut
    shared = gen.stats.shared_prefix_tokens
    common = fastgen.common_prefix_len([tok(p)["input_ids"] for p in prompts])
    assert common > 50 and shared[0] >= common - 1 and len(shared) == gen.stats.batches
    off = fastgen.FastGenerator(model, tok, fastgen.FastGenConfig(max_new_tokens=N, batch_size=batch_size,
                                                                   share_prefix=False))
    assert off.generate(prompts, progress=False) == refs and set(off.stats.shared_prefix_tokens) == {0}


def test_prefix_is_shared_only_under_full_attention():
    """Sliding-window layers count their window in cache slots: padding after a shared prefix would
    shorten it, so such models (Gemma 3: sliding and full layers) decode without sharing."""
    from transformers import Gemma3TextConfig, LlamaConfig

    class Stub(torch.nn.Module):
        def __init__(self, config):
            super().__init__()
            self.config = config

    assert fastgen.full_attention_only(Stub(LlamaConfig(num_hidden_layers=2)))
    assert not fastgen.full_attention_only(Stub(Gemma3TextConfig(num_hidden_layers=6)))


def test_common_prefix_len():
    assert fastgen.common_prefix_len([[1, 2, 3], [1, 2, 4], [1, 2]]) == 2
    assert fastgen.common_prefix_len([[5], [6]]) == 0
    assert fastgen.common_prefix_len([[1, 2], [1, 2]]) == 2


def test_bad_arguments(model_tok):
    model, tok = model_tok
    with pytest.raises(TypeError, match="not one string"):
        fastgen.generate(model, tok, "hello", progress=False)
    with pytest.raises(ValueError, match="greedily"):
        fastgen.FastGenConfig.from_generation(GenerationConfig())
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        fastgen.generate(model, tok, ["a"], fastgen.FastGenConfig(batch_size=0), progress=False)
    assert fastgen.generate(model, tok, [], progress=False) == []


def test_compile_flag_is_ignored_on_cpu(model_tok):
    model, tok = model_tok
    gen = fastgen.FastGenerator(model, tok, fastgen.FastGenConfig(compile=True))
    assert not gen.compile and not gen.static  # CUDA graphs need CUDA: the eager path runs
