"""Training on the tiny random Llama (CPU, a few steps): SFT, masks, bad input, caching, CAT, MoE,
LoraHub, DATA-MIX. References are computed by hand from the tokenizer and the adapter tensors."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from safetensors.torch import load_file

from lorasoups.config import ConfigError, from_dict
from lorasoups.training.runs import CHECKPOINT_OK, COMPLETE, Run
from lorasoups.training.sft import SftConfig, make_sft_trainer, train_sft

# Few steps, short sequences, no warm-up: every run here takes a second or two on CPU.
FAST = dict(r=4, lora_alpha=8, max_steps=4, per_device_train_batch_size=4, gradient_accumulation_steps=1,
            warmup_steps=0, learning_rate=1e-2, save_steps=2, logging_steps=1, max_length=48)


@pytest.fixture(autouse=True)
def _runs(tmp_path, monkeypatch):
    monkeypatch.setenv("LORASOUPS_RUNS", str(tmp_path / "runs"))


def qa(n: int, answer=lambda i: f"{i * 3 + 1}", prefix: str = "Q") -> Dataset:
    return Dataset.from_list([{"id": str(i), "prompt": f"{prefix}{i}: what is {i} * 3 + 1?\nAnswer:\n",
                               "completion": answer(i)} for i in range(n)])


def adapter_tensors(adapter_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(Path(adapter_dir) / "adapter_model.safetensors"))


def delta(tensors: dict[str, torch.Tensor], cfg: dict, module: str) -> torch.Tensor:
    """s * B @ A of one module, straight from an adapter file (the independent reference)."""
    key = f"base_model.model.{module}"
    A, B = tensors[f"{key}.lora_A.weight"], tensors[f"{key}.lora_B.weight"]
    r = A.shape[0]
    alpha = next((v for k, v in (cfg.get("alpha_pattern") or {}).items() if module.endswith(k.replace("\\", ""))),
                 cfg["lora_alpha"])
    return (alpha / r) * B.float() @ A.float()


def modules_of(tensors: dict[str, torch.Tensor]) -> list[str]:
    return sorted({k[len("base_model.model."):].rsplit(".lora_", 1)[0] for k in tensors})


# --------------------------------------------------------------------------- SFT
def test_sft_loss_goes_down_on_a_memorisable_set(tiny_dir):
    ds = qa(4)
    cfg = SftConfig(**{**FAST, "r": 8, "lora_alpha": 16, "max_steps": 24, "learning_rate": 3e-2, "lora_dropout": 0.0})
    res = train_sft(str(tiny_dir), ds, cfg, name="memo")
    losses = [r["loss"] for r in json.loads((res.run_dir / "log_history.json").read_text()) if "loss" in r]
    assert len(losses) == 24
    # a random 2-layer model with hidden size 64 cannot memorise much: a steady, clear drop is the test
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.25, losses
    assert losses[-1] < losses[0]
    assert (res.run_dir / COMPLETE).is_file() and (res.run_dir / "loss.png").is_file()
    cfg_json = json.loads((res.adapter_dir / "adapter_config.json").read_text())
    assert cfg_json["r"] == 8 and sorted(cfg_json["target_modules"]) == sorted(cfg.target_modules)
    # the adapter is a standard PEFT adapter that reloads with the trained outputs
    from peft import PeftModel

    from lorasoups.training.sft import load_for_training

    base, tok = load_for_training(str(tiny_dir))
    reloaded = PeftModel.from_pretrained(base, str(res.adapter_dir)).eval()
    x = tok("Q1: what is 1 * 3 + 1?\nAnswer:\n", return_tensors="pt")
    res.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**x).logits, res.model(**x).logits, atol=1e-5, rtol=1e-5)


def test_completion_only_mask_matches_hand_built_labels(tiny_dir, tmp_path):
    from lorasoups.training.sft import load_for_training

    model, tok = load_for_training(str(tiny_dir))
    records = [{"prompt": "Add 2 and 3.\n", "completion": "It is 5."},
               {"prompt": "Name a colour of the sky on a clear day.\n", "completion": "Blue"}]
    trainer = make_sft_trainer(model, tok, Dataset.from_list(records), SftConfig(**FAST), tmp_path / "out")
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    # hand-built: prompt tokens masked, completion + EOS kept, right padding masked
    width = batch["input_ids"].shape[1]
    for row, rec in enumerate(records):
        prompt_ids = tok(rec["prompt"])["input_ids"]
        full = tok(rec["prompt"] + rec["completion"])["input_ids"] + [tok.eos_token_id]
        labels = [-100] * len(prompt_ids) + full[len(prompt_ids):]
        labels += [-100] * (width - len(labels))
        assert batch["input_ids"][row, :len(full)].tolist() == full
        assert batch["labels"][row].tolist() == labels
    # a text corpus gets plain language-model loss: every real token is a label
    corpus = Dataset.from_list([{"text": "The rules of the game are simple."}])
    trainer = make_sft_trainer(model, tok, corpus, SftConfig(**FAST), tmp_path / "out2")
    b = trainer.data_collator([trainer.train_dataset[0]])
    full = tok("The rules of the game are simple.")["input_ids"] + [tok.eos_token_id]
    assert b["labels"][0].tolist() == full


def test_bad_input_fails_before_training(tiny_dir):
    from lorasoups import paths

    with pytest.raises(ConfigError, match="rank must be > 0"):
        SftConfig(r=0)
    with pytest.raises(ConfigError, match="did you mean 'learning_rate'"):
        SftConfig(trainer={"learnin_rate": 1e-3})
    with pytest.raises(ConfigError, match="unknown key 'lora_alhpa'.*did you mean 'lora_alpha'"):
        from_dict(SftConfig, {"lora_alhpa": 3}, "configs/x.yaml:sft")
    with pytest.raises(ConfigError, match="no linear module 'q_projj'.*did you mean 'q_proj'"):
        train_sft(str(tiny_dir), qa(2), SftConfig(**{**FAST, "target_modules": ["q_projj", "v_proj"]}))
    with pytest.raises(ConfigError, match="dataset is empty"):
        train_sft(str(tiny_dir), qa(2).select([]), SftConfig(**FAST))
    with pytest.raises(ConfigError, match="row 1 field 'completion' is empty"):
        train_sft(str(tiny_dir), Dataset.from_list([{"prompt": "a", "completion": "b"}, {"prompt": "c", "completion": ""}]),
                  SftConfig(**FAST))
    with pytest.raises(ConfigError, match="'prompt' and 'completion'.*or 'text'"):
        train_sft(str(tiny_dir), Dataset.from_list([{"question": "a"}]), SftConfig(**FAST))
    assert not (paths.runs_dir() / "training").exists() or not any((paths.runs_dir() / "training").iterdir())


def test_finished_run_is_reused_and_config_changes_rerun(tiny_dir):
    ds = qa(8)
    first = train_sft(str(tiny_dir), ds, SftConfig(**FAST), name="skill")
    before = (first.adapter_dir / "adapter_model.safetensors").stat().st_mtime_ns
    again = train_sft(str(tiny_dir), ds, SftConfig(**FAST), name="skill")
    assert again.reused and again.model is None and again.run_dir == first.run_dir
    assert (again.adapter_dir / "adapter_model.safetensors").stat().st_mtime_ns == before
    assert again.summary["train_loss"] == first.summary["train_loss"]
    other = train_sft(str(tiny_dir), ds, SftConfig(**{**FAST, "learning_rate": 5e-3}), name="skill")
    assert not other.reused and other.run_dir != first.run_dir
    changed_data = train_sft(str(tiny_dir), qa(8, prefix="q"), SftConfig(**FAST), name="skill")
    assert not changed_data.reused and changed_data.run_dir not in (first.run_dir, other.run_dir)


def test_unmarked_checkpoint_and_missing_complete_are_not_taken(tmp_path):
    run = Run("sft", "x", {"a": 1})
    run.start()
    assert run.last_checkpoint() is None and not run.is_complete()
    (run.checkpoints / "checkpoint-2").mkdir(parents=True)
    (run.checkpoints / "checkpoint-2" / CHECKPOINT_OK).write_text("{}")
    (run.checkpoints / "checkpoint-4").mkdir()  # half-written: killed before the marker
    assert run.last_checkpoint().endswith("checkpoint-2")
    assert Run("sft", "x", {"a": 2}).key != run.key and Run("sft", "x", {"a": 1}).key == run.key


# --------------------------------------------------------------------------- soups
@pytest.fixture(scope="module")
def skills(tiny_dir, tmp_path_factory):
    """Two skill LoRAs on the tiny model (different data, so they differ)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LORASOUPS_RUNS", str(tmp_path_factory.mktemp("skill-runs")))
        a = train_sft(str(tiny_dir), qa(8), SftConfig(**FAST), name="math").adapter_dir
        b = train_sft(str(tiny_dir), qa(8, answer=lambda i: f"print({i}*3+1)"), SftConfig(**{**FAST, "r": 2}),
                      name="code").adapter_dir
    return [a, b]


def test_cat_learns_alphas_only_best_checkpoint_and_exact_fold(tiny_dir, skills):
    from lorasoups.training.soup import SoupTrainConfig, train_cat

    mix = qa(12, answer=lambda i: f"x = {i}*3+1\n{i * 3 + 1}")
    cfg = SoupTrainConfig(max_steps=6, per_device_train_batch_size=4, gradient_accumulation_steps=1,
                          learning_rate=0.5, logging_steps=1, max_length=48, soup={"granularity": "layer"})
    res = train_cat(str(tiny_dir), skills, mix, qa(4, answer=lambda i: f"x = {i}*3+1\n{i * 3 + 1}"), cfg, name="mix")
    log = json.loads((res.run_dir / "log_history.json").read_text())
    evals = [(r["step"], r["eval_loss"]) for r in log if "eval_loss" in r]
    best_step = min(evals, key=lambda t: t[1])[0]
    assert res.summary["best_checkpoint"].endswith(f"checkpoint-{best_step}")
    assert res.summary["recipe"] == "converge"
    # the soup's alphas are the best checkpoint's, and they moved from the equal start
    best = load_file(str(Path(res.summary["best_checkpoint"]) / "soup_trainable.safetensors"))
    from lorasoups.merging import trainable_parameters

    (name, alphas), = trainable_parameters(res.model).items()
    torch.testing.assert_close(alphas.detach(), best[name])
    table = json.loads((res.run_dir / "alphas.json").read_text())
    assert {r["skill"] for r in table} == {"math", "code"} and (res.run_dir / "alphas.png").is_file()
    assert any(abs(r["alpha"] - 0.5) > 1e-4 for r in table)
    # exported adapter == sum_k alpha_k^l s_k B_k A_k, from the skills' own files
    exported = adapter_tensors(res.adapter_dir)
    ecfg = json.loads((res.adapter_dir / "adapter_config.json").read_text())
    st = [(adapter_tensors(s), json.loads((Path(s) / "adapter_config.json").read_text())) for s in skills]
    alpha = {(r["module"], r["skill"]): r["alpha"] for r in table}
    for m in modules_of(exported):
        want = alpha[(m, "math")] * delta(*st[0], m) + alpha[(m, "code")] * delta(*st[1], m)
        torch.testing.assert_close(delta(exported, ecfg, m), want, atol=1e-6, rtol=1e-4)
    again = train_cat(str(tiny_dir), skills, mix, qa(4, answer=lambda i: f"x = {i}*3+1\n{i * 3 + 1}"), cfg, name="mix")
    assert again.reused


def test_cat_records_the_loss_tokens_each_skill_carries(tiny_dir, skills):
    """A corpus skill's long completions outweigh a QA skill's short answers in CAT's token-mean
    loss: the run records each skill's count, checked against the records tokenized here, and the
    records TRL drops when truncation leaves them no label."""
    from transformers import AutoTokenizer

    from lorasoups.data import cat_mixture
    from lorasoups.training.soup import SoupTrainConfig, train_cat

    corpus = Dataset.from_list([{"id": f"c{i}", "text": f"Chapter {i}: " + "cells divide by mitosis " * (i + 2)}
                                for i in range(8)])
    long_prompts = qa(8, prefix="Question, asked at length with a long preamble before it: " * 2)
    tok = AutoTokenizer.from_pretrained(str(tiny_dir))

    def loss_tokens(prompt: str, completion: str, limit: int) -> int:
        # what the shifted loss predicts: prompt + completion + EOS cut at max_length, less the
        # prompt (masked) and less the first token (never predicted)
        whole = min(len(tok(prompt + completion)["input_ids"]) + 1, limit)
        masked = max(min(len(tok(prompt)["input_ids"]), limit), 1) if prompt else 1
        return max(whole - masked, 0)

    for limit, answers in ((48, qa(8)), (24, long_prompts)):  # 24 cuts every long prompt's answer off
        mix = cat_mixture({"corpus": corpus, "answers": answers}, fraction=0.5, seed=0)
        cfg = SoupTrainConfig(max_steps=1, per_device_train_batch_size=4, gradient_accumulation_steps=1,
                              max_length=limit)
        res = train_cat(str(tiny_dir), skills, mix, qa(2), cfg, name=f"weights-{limit}")
        want: dict[str, int] = {}
        for r in mix:
            n = loss_tokens(r["prompt"], r["completion"], limit)
            want[r["skill"]] = want.get(r["skill"], 0) + n
        assert res.summary["loss_tokens"] == want
        if limit == 48:
            assert want["corpus"] > 2 * want["answers"] and "records_without_completion" not in res.summary
        else:  # as for a skill LoRA: TRL drops them, the run says so
            assert want["answers"] == 0 and res.summary["records_without_completion"] == 4


def test_cat_released_recipe_and_base_mismatch(tiny_dir, skills, tmp_path):
    from lorasoups.models import save_tiny_random_llama
    from lorasoups.training.soup import SoupTrainConfig, train_cat

    cfg = SoupTrainConfig(recipe="released").resolved()
    assert (cfg.per_device_train_batch_size, cfg.gradient_accumulation_steps) == (6, 1)
    assert cfg.completion_only_loss is False and cfg.lora_dropout_on is True
    assert SoupTrainConfig(recipe="released", gradient_accumulation_steps=2).resolved().gradient_accumulation_steps == 2
    # the config keeps None for what the recipe decides, so a notebook that switches recipe switches them all
    assert SoupTrainConfig(recipe="released").learning_rate is None
    other = save_tiny_random_llama(tmp_path / "other-base", seed=1)
    with pytest.raises(ConfigError, match="was trained on base model"):
        train_cat(str(other), skills, qa(4), qa(2), SoupTrainConfig())


def test_moe_trains_routers_only(tiny_dir, skills):
    from lorasoups.training.moe import train_moe
    from lorasoups.training.soup import SoupTrainConfig

    cfg = SoupTrainConfig(max_steps=4, per_device_train_batch_size=4, gradient_accumulation_steps=1,
                          learning_rate=0.5, max_length=48, balance_loss_coef=0.01)
    res = train_moe(str(tiny_dir), skills, qa(8), qa(4), cfg, name="moe")
    from lorasoups.merging import soup_state

    state = soup_state(res.model)
    assert state.trainable and all("lorasoup_router" in n for n in state.trainable)
    assert any(p.abs().sum() > 0 for p in state.trainable.values())  # moved from the zero init
    # the frozen skill factors in the soup are still the skills' own
    skill_a = adapter_tensors(skills[0])
    m = modules_of(skill_a)[0]
    layer = res.model.base_model.model.get_submodule(m)
    from lorasoups.merging.soup import ADAPTER

    torch.testing.assert_close(layer.lora_A[ADAPTER].weight[:4], skill_a[f"base_model.model.{m}.lora_A.weight"])
    assert (res.run_dir / "soup" / "soup.json").is_file() and res.adapter_dir is None


def test_lorahub_search_and_loss_by_hand(tiny_dir, skills):
    import numpy as np
    from peft import PeftModel

    from lorasoups.training.lorahub import LoraHubConfig, train_lorahub
    from lorasoups.training.sft import load_for_training

    # LoraHub sums factors: needs equal ranks, so two r=4 skills
    with pytest.raises(Exception, match="equal rank"):
        train_lorahub(str(tiny_dir), skills, qa(5), LoraHubConfig(budget=2))
    b2 = train_sft(str(tiny_dir), qa(8, answer=lambda i: f"{i}"), SftConfig(**FAST), name="b2").adapter_dir
    cfg = LoraHubConfig(budget=6)
    res = train_lorahub(str(tiny_dir), [skills[0], b2], qa(7), cfg)
    rec = json.loads((res.run_dir / "weights.json").read_text())
    w = np.array(list(rec["weights"].values()))
    assert len(rec["history"]) == 6 and np.all(np.abs(w) <= 1.5)
    assert rec["objective"] == pytest.approx(rec["loss"] + 0.05 * np.abs(w).sum(), rel=1e-6)
    # the exported adapter, loaded by plain peft, gives the recorded loss (computed here by hand)
    base, tok = load_for_training(str(tiny_dir))
    model = PeftModel.from_pretrained(base, str(res.adapter_dir)).eval()
    total, count = 0.0, 0
    for ex in qa(5):
        p = tok(ex["prompt"])["input_ids"]
        full = tok(ex["prompt"] + ex["completion"])["input_ids"] + [tok.eos_token_id]
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=torch.tensor([full])).logits[0].float(), -1)
        for t in range(len(p), len(full)):
            total -= float(logp[t - 1, full[t]])
            count += 1
    assert rec["loss"] == pytest.approx(total / count, rel=1e-4)


# --------------------------------------------------------------------------- DATA-MIX
def test_datamix_concat_rank_k_times_r_on_mixed_records(tiny_dir):
    from lorasoups.training.datamix import train_datamix_concat

    corpus = Dataset.from_list([{"id": str(i), "text": f"Rule {i}: a goblin has {i} hit points."} for i in range(6)])
    res = train_datamix_concat(str(tiny_dir), {"manual": corpus, "alpaca": qa(6)}, SftConfig(**FAST))
    cfg = json.loads((res.adapter_dir / "adapter_config.json").read_text())
    assert cfg["r"] == 8 and cfg["lora_alpha"] == 16  # k * r, scaling kept at 2
    assert res.summary["data_kind"] == "prompt_completion"


def test_datamix_sequential_equals_merged_then_second_lora(tiny_dir):
    from lorasoups.training.datamix import train_datamix_sequential

    corpus = Dataset.from_list([{"text": f"Chapter {i}: cells divide by mitosis {i} times."} for i in range(6)])
    res = train_datamix_sequential(str(tiny_dir), corpus, qa(6), SftConfig(**FAST), name="seq")
    first = adapter_tensors(Path(res.extra["corpus_run"]) / "adapter")
    second = adapter_tensors(Path(res.extra["instruction_run"]) / "adapter")
    c1 = json.loads((Path(res.extra["corpus_run"]) / "adapter" / "adapter_config.json").read_text())
    c2 = json.loads((Path(res.extra["instruction_run"]) / "adapter" / "adapter_config.json").read_text())
    combined = adapter_tensors(res.adapter_dir)
    cc = json.loads((res.adapter_dir / "adapter_config.json").read_text())
    assert cc["r"] == 8
    for m in modules_of(first):
        torch.testing.assert_close(delta(combined, cc, m), delta(first, c1, m) + delta(second, c2, m),
                                   atol=1e-6, rtol=1e-4)
    # one run's time and peak, as the stage records them: both parts' seconds, the larger peak
    parts = [res.summary["stages"][k] for k in ("corpus", "instructions")]
    assert res.summary["seconds_this_session"] == pytest.approx(sum(p["seconds_this_session"] for p in parts), abs=0.02)
    assert res.summary["peak_memory"]["cpu_rss_mib"] == max(p["peak_memory"]["cpu_rss_mib"] for p in parts)
    again = train_datamix_sequential(str(tiny_dir), corpus, qa(6), SftConfig(**FAST), name="seq")
    assert again.reused and again.summary["seconds_this_session"] == res.summary["seconds_this_session"]


def test_command_line_validates_then_trains(tiny_dir, tmp_path, capsys):
    from lorasoups.training.sft import main

    data = tmp_path / "skill.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"Q{i}\n", "completion": f"A{i}"}) + "\n" for i in range(6)))
    cfg = tmp_path / "sft.yaml"
    cfg.write_text("sft:\n  r: 4\n  lora_alpha: 8\n  max_steps: 2\n  warmup_steps: 0\n  max_length: 32\n")
    with pytest.raises(ConfigError, match="unknown key 'lora_alhpa'.*did you mean 'lora_alpha'"):
        main(["--base", str(tiny_dir), "--data-file", str(data), "--config", str(cfg), "--set", "lora_alhpa=3"])
    res = main(["--base", str(tiny_dir), "--data-file", str(data), "--config", str(cfg),
                "--set", "per_device_train_batch_size=3", "--set", "gradient_accumulation_steps=1"])
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["adapter"] == str(res.adapter_dir) and not printed["reused"]
    assert res.summary["global_step"] == 2 and json.loads((res.run_dir / "config.json").read_text())["config"]["sft"]["r"] == 4


def test_cat_resumes_from_its_last_checkpoint_to_the_same_alphas(tiny_dir, skills):
    """A CAT run whose end was lost (as after a kill) redoes only the steps after its last checkpoint."""
    import shutil

    from lorasoups.merging import trainable_parameters
    from lorasoups.training.soup import SoupTrainConfig, train_cat

    mix, val = qa(12, answer=lambda i: f"{i}!"), qa(4, answer=lambda i: f"{i}!")
    cfg = SoupTrainConfig(max_steps=6, per_device_train_batch_size=4, gradient_accumulation_steps=1,
                          learning_rate=0.5, max_length=48, lora_dropout_on=True, soup={"granularity": "module"})
    full = train_cat(str(tiny_dir), skills, mix, val, cfg, name="resume")
    (name, want), = trainable_parameters(full.model).items()
    want = want.detach().clone()
    for lost in ("COMPLETE", "adapter", "soup", "checkpoints/checkpoint-6"):
        p = full.run_dir / lost
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    again = train_cat(str(tiny_dir), skills, mix, val, cfg, name="resume")
    assert not again.reused and again.summary["resumed_from"].endswith("checkpoint-5")
    torch.testing.assert_close(trainable_parameters(again.model)[name].detach(), want, atol=1e-6, rtol=1e-5)
    assert again.summary["best_checkpoint"] == full.summary["best_checkpoint"]


def test_paper_defaults_map_onto_trl_sftconfig(tmp_path):
    """§B.1 values, field by field, in the trl.SFTConfig the Trainer receives."""
    from lorasoups.training.sft import trl_args
    from lorasoups.training.soup import SoupTrainConfig

    args = trl_args(SftConfig(trainer={"max_grad_norm": 0.3}), tmp_path)
    assert (args.learning_rate, args.num_train_epochs, args.warmup_steps) == (3e-4, 3.0, 100)
    assert getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type) == "linear"
    assert getattr(args.optim, "value", args.optim) == "adamw_torch"
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (8, 4)
    assert args.max_grad_norm == 0.3 and args.report_to in ([], "none", ["none"])
    from lorasoups.training.sft import cpu_has_fast_bf16

    # auto: bf16 on a GPU that has it; on CPU where the CPU multiplies bf16 in hardware
    assert args.bf16 is (torch.cuda.is_bf16_supported() if torch.cuda.is_available() else cpu_has_fast_bf16())
    assert args.packing is False and args.completion_only_loss is None
    cfg = SftConfig()
    assert (cfg.r, cfg.lora_alpha, cfg.lora_dropout) == (32, 64.0, 0.05)
    assert cfg.target_modules == ["q_proj", "k_proj", "v_proj", "up_proj", "down_proj"]
    cat = SoupTrainConfig(recipe="paper").resolved()
    cat_args = trl_args(cat, tmp_path)
    assert (cat_args.learning_rate, cat_args.num_train_epochs) == (1e-4, 1.0)
    assert (cat_args.per_device_train_batch_size, cat_args.gradient_accumulation_steps) == (8, 4)
    assert getattr(cat_args.lr_scheduler_type, "value", cat_args.lr_scheduler_type) == "linear"
    assert cat_args.completion_only_loss is True
    assert SoupTrainConfig().recipe == "converge" and SoupTrainConfig(learning_rate=0.3).resolved().learning_rate == 0.3


def test_skill_lengths_follow_the_paper_and_a_packed_corpus_keeps_every_token(tiny, tmp_path):
    """§B.2: 100-token blocks for the QABot manual, 2048 for reading comprehension; a corpus is cut
    into blocks (TRL's wrapped packing), never truncated: the blocks hold every token of the text."""
    from lorasoups.stages.train import skill_sft

    base = SftConfig(**FAST)
    manual, squad, code = skill_sft(base, "dnd_manual"), skill_sft(base, "squad"), skill_sft(base, "code_alpaca")
    assert (manual.max_length, manual.packing, manual.trainer["packing_strategy"]) == (100, True, "wrapped")
    assert (squad.max_length, squad.packing) == (2048, False) and code == base
    assert skill_sft(dataclasses.replace(base, lengths="uniform"), "dnd_manual").max_length == FAST["max_length"]
    model, tok = tiny
    texts = [" ".join(f"rule {i} says {j}" for j in range(60)) for i in range(3)]
    cfg = dataclasses.replace(skill_sft(base, "dnd_manual"), max_length=20)
    trainer = make_sft_trainer(model, tok, Dataset.from_list([{"text": t} for t in texts]), cfg, tmp_path / "p")
    blocks = [r["input_ids"] for r in trainer.train_dataset]
    want = sum(len(tok(t)["input_ids"]) + 1 for t in texts)  # + eos per document
    assert all(len(b) <= 20 for b in blocks) and sum(map(len, blocks)) == want


def test_corpus_epochs_apply_to_corpus_skills_only_and_leave_other_run_keys_alone(tiny_dir, tmp_path, monkeypatch):
    """``sft.corpus_epochs`` gives a text corpus the paper's 3 epochs while instruction data keeps
    the profile's; it is folded into ``num_train_epochs`` (the run's key names the epochs trained)
    and a run it does not act on keeps the key it had without it."""
    from lorasoups.stages.train import skill_sft

    base = SftConfig(**{**FAST, "num_train_epochs": 1.0, "corpus_epochs": 3.0})
    manual, code = skill_sft(base, "dnd_manual"), skill_sft(base, "code_alpaca")
    assert (manual.num_train_epochs, manual.corpus_epochs, manual.packing) == (3.0, None, True)
    assert code.num_train_epochs == 1.0 and code.corpus_epochs == 3.0
    assert skill_sft(dataclasses.replace(base, corpus_epochs=None), "dnd_manual").num_train_epochs == 1.0
    with pytest.raises(ConfigError, match="corpus_epochs must be > 0"):
        SftConfig(corpus_epochs=0)
    monkeypatch.setenv("LORASOUPS_RUNS", str(tmp_path / "runs"))
    recs = Dataset.from_list([{"prompt": f"Q{i}:", "completion": f" {i}"} for i in range(8)])
    cfg = SftConfig(**{**FAST, "max_steps": 1, "save_steps": 1, "max_length": 16})
    plain = train_sft(str(tiny_dir), recs, cfg, name="k")
    again = train_sft(str(tiny_dir), recs, dataclasses.replace(cfg, corpus_epochs=3.0), name="k")
    assert again.reused and again.run_dir == plain.run_dir


def test_max_batch_tokens_splits_micro_batches_and_keeps_the_effective_batch():
    from lorasoups.training.sft import fit_batch

    cfg = SftConfig(per_device_train_batch_size=8, gradient_accumulation_steps=1, max_length=2048,
                    max_batch_tokens=4096)
    fit = fit_batch(cfg)
    assert (fit.per_device_train_batch_size, fit.gradient_accumulation_steps, fit.max_batch_tokens) == (2, 4, None)
    same = fit_batch(dataclasses.replace(cfg, max_length=512))  # 8 x 512 fits: untouched but for the cap
    assert (same.per_device_train_batch_size, same.gradient_accumulation_steps) == (8, 1)
    odd = fit_batch(SftConfig(per_device_train_batch_size=6, gradient_accumulation_steps=2, max_length=1000,
                              max_batch_tokens=2500))
    assert (odd.per_device_train_batch_size, odd.gradient_accumulation_steps) == (2, 6)
    tiny_cap = fit_batch(dataclasses.replace(cfg, max_batch_tokens=10))
    assert (tiny_cap.per_device_train_batch_size, tiny_cap.gradient_accumulation_steps) == (1, 8)
    with pytest.raises(ConfigError, match="max_batch_tokens must be > 0"):
        SftConfig(max_batch_tokens=0)


def test_max_batch_tokens_looks_at_the_records_not_only_max_length(tiny_dir, tmp_path, monkeypatch):
    """Short records at a long max_length keep their batch (and their run key); long ones split."""
    from lorasoups.training.sft import fit_batch, longest_record

    monkeypatch.setenv("LORASOUPS_RUNS", str(tmp_path / "runs"))
    short = Dataset.from_list([{"prompt": f"Q{i}:", "completion": f" {i}"} for i in range(8)])
    long = Dataset.from_list([{"prompt": "word " * 300, "completion": " yes"}] * 8)
    cfg = SftConfig(**{**FAST, "per_device_train_batch_size": 8, "gradient_accumulation_steps": 1,
                       "max_length": 2048, "max_batch_tokens": 1024, "max_steps": 1, "save_steps": 1})
    n_short = longest_record(short, str(tiny_dir), "prompt_completion", cfg)
    assert n_short is not None and n_short < 16
    assert fit_batch(cfg, n_short).per_device_train_batch_size == 8
    n_long = longest_record(long, str(tiny_dir), "prompt_completion", cfg)
    assert 300 < n_long < 700 and fit_batch(cfg, n_long).per_device_train_batch_size == 2
    uncapped = dataclasses.replace(cfg, max_batch_tokens=None)
    assert train_sft(str(tiny_dir), short, cfg, name="b").run_dir == train_sft(str(tiny_dir), short, uncapped,
                                                                                name="b").run_dir


def test_a_reused_run_reports_its_own_peak_memory_and_time(tiny_dir, tmp_path, monkeypatch):
    """The train result of a run reused in a later process records the training process's peak
    and time (stored in COMPLETE), not the reader's."""
    from lorasoups.stages.common import write_train_result

    monkeypatch.setenv("LORASOUPS_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("LORASOUPS_RESULTS", str(tmp_path / "results"))
    recs = Dataset.from_list([{"prompt": f"Q{i}:", "completion": f" {i}"} for i in range(8)])
    cfg = SftConfig(**{**FAST, "max_steps": 1, "save_steps": 1, "max_length": 16})
    fresh = train_sft(str(tiny_dir), recs, cfg, name="peak")
    complete = Path(fresh.run_dir) / "COMPLETE"
    stored = json.loads(complete.read_text())
    assert stored["peak_memory"]["cpu_rss_mib"] > 0 and stored["peak_memory"] == fresh.summary["peak_memory"]
    stored["peak_memory"] = {"cpu_rss_mib": 12345.0, "cuda_mib": None}  # as a larger process had left it
    complete.write_text(json.dumps(stored))
    reused = train_sft(str(tiny_dir), recs, cfg, name="peak")
    assert reused.reused
    rec = json.loads(write_train_result("smoke", "math_code", "skill1", 0, reused, cfg, str(tiny_dir)).read_text())
    assert rec["peak_memory"]["cpu_rss_mib"] == 12345.0
    assert rec["timings_s"] == {"train_last_session": stored["seconds_this_session"]} and rec["reused"] is True
    capped = dataclasses.replace(cfg, max_batch_tokens=8, per_device_train_batch_size=4)  # splits to 1 x 4
    run = train_sft(str(tiny_dir), recs, capped, name="peak2")
    rec = json.loads(write_train_result("smoke", "math_code", "skill2", 0, run, capped, str(tiny_dir)).read_text())
    assert rec["config"]["per_device_train_batch_size"] == 4  # the request
    trained_sft = rec["run_config"]["sft"]
    assert (trained_sft["per_device_train_batch_size"], trained_sft["gradient_accumulation_steps"]) == (1, 4)


def test_records_truncated_to_no_completion_are_an_error_not_a_silent_drop(tiny_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("LORASOUPS_RUNS", str(tmp_path / "runs"))
    long = [{"prompt": "word " * 40, "completion": " yes"} for _ in range(4)]
    with pytest.raises(ConfigError, match="every one of the 4 training records lost its completion"):
        train_sft(str(tiny_dir), Dataset.from_list(long), SftConfig(**{**FAST, "max_length": 16}), name="cut")
    mixed = long[:1] + [{"prompt": "short", "completion": " yes"}] * 3
    run = train_sft(str(tiny_dir), Dataset.from_list(mixed), SftConfig(**{**FAST, "max_length": 16}), name="cut2")
    assert run.summary["records_without_completion"] == 1


def test_bf16_autocast_on_cpu_tracks_fp32_and_auto_follows_the_hardware(tiny_dir, tmp_path, monkeypatch):
    """bf16 autocast on CPU (fp32 master LoRA weights): the loss curve stays within 5e-3 of fp32's
    (measured: 6e-4 over 12 steps of the tiny model at lr 1e-2). ``auto`` picks bf16 only where
    the CPU has bf16 hardware."""
    from lorasoups.training import sft as sft_mod

    monkeypatch.setenv("LORASOUPS_RUNS", str(tmp_path / "runs"))
    recs = [{"prompt": f"Question {i}: what is {i} plus {i}?\nAnswer:", "completion": f" {2 * i}"} for i in range(48)]
    curves = {}
    for prec in ("fp32", "bf16"):
        cfg = SftConfig(**{**FAST, "r": 8, "lora_alpha": 16, "max_steps": 8, "per_device_train_batch_size": 8,
                           "save_steps": 8, "max_length": 64, "lora_dropout": 0.0, "precision": prec})
        run = train_sft(str(tiny_dir), Dataset.from_list(recs), cfg, name=f"prec-{prec}")
        hist = json.loads((Path(run.run_dir) / "log_history.json").read_text())
        curves[prec] = [h["loss"] for h in hist if "loss" in h]
    assert len(curves["fp32"]) == len(curves["bf16"]) == 8
    assert max(abs(a - b) for a, b in zip(curves["fp32"], curves["bf16"])) < 5e-3
    assert curves["fp32"] != curves["bf16"]  # bf16 really ran
    if not torch.cuda.is_available():  # on a GPU machine auto means the GPU's precision
        monkeypatch.setattr(sft_mod, "cpu_has_fast_bf16", lambda: False)
        assert sft_mod.precision_kwargs("auto") == {"bf16": False, "fp16": False}
        monkeypatch.setattr(sft_mod, "cpu_has_fast_bf16", lambda: True)
        assert sft_mod.precision_kwargs("auto") == {"bf16": True, "fp16": False, "use_cpu": True}


def test_a_reused_run_reads_back_its_summary_in_the_fresh_runs_order(tmp_path, monkeypatch):
    """A finished run's summary keeps its key order, so a reused run prints what the fresh one did
    (nbval compares the printed dicts: per-skill drift ordered by skill, not alphabetically)."""
    monkeypatch.setenv("LORASOUPS_RUNS", str(tmp_path))
    run = Run("cat", "order", {"x": 1})
    run.start()
    summary = {"zeta": 1, "final_drift": {"max": {"skill-metamathqa": 0.1, "skill-code_alpaca": 0.2}}, "alpha": 2}
    run.finish(summary)
    back = Run("cat", "order", {"x": 1}).summary()
    assert back == summary and list(back) == list(summary)
    assert list(back["final_drift"]["max"]) == ["skill-metamathqa", "skill-code_alpaca"]


def test_the_compact_lm_head_on_cpu_gives_the_full_logits_loss_and_gradients(tiny_dir, tmp_path):
    """TRL's fused head, made compact on CPU (only labelled positions projected), against an
    independent reference: transformers' own cross-entropy over the full logits of the same batch."""
    import trl.trainer.utils as trl_utils

    from lorasoups.training.sft import load_for_training

    model, tok = load_for_training(str(tiny_dir))
    recs = [{"prompt": f"Count the words in: {'a b ' * (i + 1)}\nAnswer:", "completion": f" {2 * i + 2}"}
            for i in range(6)]
    trainer = make_sft_trainer(model, tok, Dataset.from_list(recs), SftConfig(**{**FAST, "lora_dropout": 0.0}),
                               tmp_path / "out")
    assert getattr(trl_utils._use_triton, "_lorasoups_compact", False)  # fails if TRL renames the switch
    assert trl_utils._use_triton(torch.device("cpu"))
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(recs))])
    labelled = int((batch["labels"][:, 1:] != -100).sum())
    assert 0 < labelled < batch["labels"][:, 1:].numel() // 2  # the case it is for: most positions unlabelled
    peft_model = trainer.model
    lora = [p for n, p in peft_model.named_parameters() if p.requires_grad]

    def loss_and_grads(fused: bool):
        peft_model.zero_grad()
        out = (peft_model(**batch, fused_lm_head=True) if fused else
               peft_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]))
        out.loss.backward()
        return out.loss.detach(), [p.grad.clone() for p in lora]

    loss, grads = loss_and_grads(fused=True)
    ref_loss, ref_grads = loss_and_grads(fused=False)
    torch.testing.assert_close(loss, ref_loss, atol=1e-5, rtol=1e-5)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, atol=1e-6, rtol=1e-4)


def test_a_launch_precision_that_disagrees_with_the_run_is_refused(tmp_path, monkeypatch):
    """transformers takes a launch config's mixed_precision unless the run turns bf16/fp16 on, so an
    fp32 run under a bf16 launch would train in bf16 while its run key says fp32."""
    from lorasoups.training.runs import RunError, check_launch_precision
    from lorasoups.training.sft import SftConfig, trl_args

    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    args = trl_args(SftConfig(precision="fp32", max_steps=1), tmp_path)
    assert args.mixed_precision == "bf16"  # what transformers would train in
    with pytest.raises(RunError, match="mixed_precision: bf16, but the run's precision resolves to fp32"):
        check_launch_precision(args)
    check_launch_precision(trl_args(SftConfig(precision="bf16", max_steps=1), tmp_path))  # they agree
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION")
    check_launch_precision(trl_args(SftConfig(precision="fp32", max_steps=1), tmp_path))  # a plain process
