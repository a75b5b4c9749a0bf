"""Batched generation on the tiny random Llama: batching must not change greedy outputs."""
from __future__ import annotations

import pytest
import torch

from lorasoups.evaluation.generation import GenerationConfig, generate
from lorasoups.models import chat_prompt, load_base

PROMPTS = [
    "Janet's ducks lay 16 eggs per day.",
    "Hi",
    "What happens when you choose the Path of the Berserker at 3rd level? Answer briefly.",
    "Count the words containing the letter q.",
    "2 + 2 =",
]


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return load_base("tiny-random-llama", seed=0)


def _one_at_a_time_greedy(model, tok, prompt: str, n: int) -> list[int]:
    """Independent reference: unbatched, no padding, manual argmax loop without the KV cache."""
    ids = tok(prompt, return_tensors="pt")["input_ids"]
    out = []
    with torch.no_grad():
        for _ in range(n):
            logits = model(input_ids=ids).logits[0, -1]
            nxt = int(torch.argmax(logits))
            out.append(nxt)
            if nxt == tok.eos_token_id:
                break
            ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
    return out


def test_batched_greedy_equals_one_at_a_time(tiny_model):
    model, tok = tiny_model
    cfg = GenerationConfig(greedy=True, max_new_tokens=12, batch_size=3)
    batched = generate(model, tok, PROMPTS, cfg, progress=False)
    assert all(batched) and len(set(batched)) > 1  # real, differing continuations
    for prompt, text in zip(PROMPTS, batched):
        ref = _one_at_a_time_greedy(model, tok, prompt, 12)
        assert text == tok.decode(ref, skip_special_tokens=True), prompt
    single = [generate(model, tok, [p], GenerationConfig(greedy=True, max_new_tokens=12), progress=False)[0]
              for p in PROMPTS]
    assert single == batched


def test_paper_sampling_is_deterministic_under_seed(tiny_model):
    model, tok = tiny_model
    prompts = [chat_prompt(tok, p) for p in PROMPTS[:3]]
    cfg = GenerationConfig(max_new_tokens=8, batch_size=2, seed=7)
    assert (cfg.temperature, cfg.top_p, cfg.num_beams) == (0.01, 0.95, 1)
    a = generate(model, tok, prompts, cfg, progress=False)
    state = torch.random.get_rng_state()
    b = generate(model, tok, prompts, cfg, progress=False)
    assert a == b
    assert torch.equal(state, torch.random.get_rng_state())  # the global RNG is left alone
    assert tok.padding_side == "left"


def test_hot_temperature_sampling_changes_with_seed(tiny_model):
    """Sampling really samples: at temperature 5 two seeds give different text."""
    model, tok = tiny_model
    outs = {tuple(generate(model, tok, PROMPTS[:2], GenerationConfig(max_new_tokens=10, temperature=5.0,
                                                                     top_p=1.0, seed=s), progress=False))
            for s in range(3)}
    assert len(outs) > 1


def test_peft_model_and_stop_strings(tiny_model):
    from peft import LoraConfig, get_peft_model

    model, tok = tiny_model
    torch.manual_seed(1)
    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    try:
        cfg = GenerationConfig(greedy=True, max_new_tokens=6, batch_size=2)
        batched = generate(peft_model, tok, PROMPTS[:3], cfg, progress=False)
        for prompt, text in zip(PROMPTS[:3], batched):
            assert text == tok.decode(_one_at_a_time_greedy(peft_model, tok, prompt, 6), skip_special_tokens=True)
        full = batched[0]
        assert len(full) > 2
        cut = generate(peft_model, tok, PROMPTS[:1], GenerationConfig(greedy=True, max_new_tokens=6,
                                                                      stop_strings=[full[2:4]]), progress=False)
        assert cut[0] == full[: full.find(full[2:4])]
    finally:
        peft_model.unload()


def test_bad_arguments(tiny_model):
    model, tok = tiny_model
    with pytest.raises(TypeError, match="not one string"):
        generate(model, tok, "hello", progress=False)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        generate(model, tok, ["hello"], GenerationConfig(batch_size=0), progress=False)


def test_evaluate_writes_result_and_examples(tiny_model, tmp_path):
    from lorasoups.evaluation.qa_metrics import score_qa
    from lorasoups.evaluation.reporting import examples_path, read_jsonl
    from lorasoups.evaluation.tasks import evaluate
    from lorasoups.results import read_result

    model, tok = tiny_model
    out = tmp_path / "qabot" / "tiny--smoke.json"
    golds = ["sixteen", "hello", "frenzy", "zero", "4"]
    metrics, rows = evaluate(model, tok, "qa", PROMPTS, golds, out=out, progress=False,
                             generation=GenerationConfig(greedy=True, max_new_tokens=5),
                             model_identity={"name": "tiny-random-llama"})
    saved = read_jsonl(examples_path(out))
    # committed rows keep each prompt's SHA-256 prefix, not its text (hashlib: the independent reference)
    import hashlib
    assert [r["prompt_sha256"] for r in saved] == [hashlib.sha256(p.encode()).hexdigest()[:16] for p in PROMPTS]
    assert [r["prompt"] for r in rows] == PROMPTS and all("prompt" not in r for r in saved)
    # metrics recomputed from the saved generations agree with the stored ones
    again, _ = score_qa([r["generation"] for r in saved], golds)
    rec = read_result(out)
    assert rec["metrics"] == again == metrics
    assert rec["config"]["generation"]["max_new_tokens"] == 5 and rec["n_examples"] == 5
    assert set(rec["timings_s"]) == {"generate", "score"}
    with pytest.raises(ValueError, match="did you mean 'gsm_hard'"):
        evaluate(model, tok, "gsm-hard", PROMPTS, golds, progress=False)


@pytest.mark.parametrize("method, params", [("cat", {"init": "released", "seed": 3}), ("moe", {})])
def test_soups_generate_like_their_forward(tiny_model, tmp_path, method, params):
    """Soups from the soup engine: batched, cached generation equals the manual argmax loop."""
    import copy

    from peft import LoraConfig, get_peft_model

    import lorasoups.merging as M

    model, tok = tiny_model
    adapters = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj"], init_lora_weights=False)
        get_peft_model(copy.deepcopy(model), cfg).save_pretrained(str(tmp_path / f"s{seed}"))
        adapters.append(tmp_path / f"s{seed}")
    soup = M.build(method, copy.deepcopy(model), adapters, **params)
    soup.eval()
    out = generate(soup, tok, PROMPTS[:3], GenerationConfig(greedy=True, max_new_tokens=6, batch_size=3),
                   progress=False)
    for prompt, text in zip(PROMPTS[:3], out):
        assert text == tok.decode(_one_at_a_time_greedy(soup, tok, prompt, 6), skip_special_tokens=True)
