"""DATA-MIX, the paper's two data-mixing baselines (LoRA Soups §4):

(a) :func:`train_datamix_concat`: ONE LoRA of rank k*r on the k skill datasets concatenated.
    lora_alpha is scaled by k as well, so the LoRA scaling (alpha / r) stays the skills' own.
    Corpora (``text``) and instruction data (``prompt``/``completion``) go in one dataset as
    prompt/completion records, a corpus row becoming an empty prompt: the completion-only mask then
    covers the whole text, i.e. plain LM loss on corpora and completion-only loss on instructions.
(b) :func:`train_datamix_sequential`: continual training. A corpus LoRA (3 epochs, an ordinary
    skill run, reused if it exists), merged into the base weights (``merge_and_unload``), then a
    new LoRA for 1 epoch on the instruction data over the merged model. Since
    W + s1 B1 A1 + s2 B2 A2 is exactly a rank r1 + r2 LoRA on the original base, the two are also
    exported as one standard PEFT adapter (peft's ``add_weighted_adapter(..., "cat")``) so
    evaluation treats DATA-MIX like every other method.
"""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

from lorasoups.config import ConfigError
from lorasoups.training.runs import (
    Run,
    adapter_identity,
    base_identity,
    is_main_process,
    publish_dir,
    wait_for_everyone,
)
from lorasoups.training.sft import RunResult, SftConfig, check_dataset, load_for_training, train_sft


def as_prompt_completion(ds: Any, where: str) -> Any:
    """Only ``prompt``/``completion`` columns; a ``text`` corpus row becomes (prompt "", completion text)."""
    kind = check_dataset(ds, where)
    if kind == "prompt_completion":
        return ds.select_columns(["prompt", "completion"])
    if kind == "text":
        return ds.map(lambda r: {"prompt": "", "completion": r["text"]}, remove_columns=ds.column_names)
    raise ConfigError(f"{where}: DATA-MIX concatenation needs plain-text records ('text' or 'prompt'/'completion'), got {kind}")


def train_datamix_concat(base: str, datasets: dict[str, Any], cfg: SftConfig | None = None, *,
                         name: str = "datamix", seed: int | None = None, **kwargs: Any) -> RunResult:
    """(a) One LoRA of rank k * cfg.r on the concatenated skill datasets (shuffled with ``seed``)."""
    from datasets import concatenate_datasets

    cfg = cfg or SftConfig()
    if len(datasets) < 2:
        raise ConfigError(f"DATA-MIX needs at least 2 skill datasets, got {list(datasets)}")
    parts = [as_prompt_completion(ds, f"{name}: dataset '{key}'") for key, ds in datasets.items()]
    mixed = concatenate_datasets(parts).shuffle(seed=cfg.seed if seed is None else seed)
    k = len(parts)
    mix_cfg = dataclasses.replace(cfg, r=cfg.r * k, lora_alpha=cfg.lora_alpha * k)
    return train_sft(base, mixed, mix_cfg, name=name, kind="datamix", **kwargs)


def train_datamix_sequential(base: str, corpus: Any, instructions: Any, corpus_cfg: SftConfig | None = None,
                             instruction_cfg: SftConfig | None = None, *, name: str = "datamix-seq",
                             **kwargs: Any) -> RunResult:
    """(b) Corpus LoRA, merged into the base, then 1 epoch of a new LoRA on the instruction data.

    ``instruction_cfg`` defaults to ``corpus_cfg`` with one epoch. Returns the combined run: its
    ``adapter/`` is the exact rank r1 + r2 sum of both LoRAs on the original base; ``extra`` names
    the two stage runs.
    """
    corpus_cfg = corpus_cfg or SftConfig()
    instruction_cfg = instruction_cfg or dataclasses.replace(corpus_cfg, num_train_epochs=1.0)
    first = train_sft(base, corpus, corpus_cfg, name=f"{name}-corpus", **kwargs)
    second = train_sft(base, instructions, instruction_cfg, name=f"{name}-instructions",
                       merge_adapters=[first.adapter_dir], **kwargs)
    run = Run("datamix_seq", name, {
        "base": base_identity(base),
        "stages": [adapter_identity(first.adapter_dir), adapter_identity(second.adapter_dir)],
    })
    extra = {"corpus_run": first.run_dir, "instruction_run": second.run_dir}
    if run.is_complete():
        # a run finished before its summary carried the cost gets it from its parts, as now
        summary = {**_sequence_cost([first.summary, second.summary]), **run.summary()}
        return RunResult(run.dir, run.adapter, True, summary, extra=extra)
    run.start()
    if is_main_process():
        combine_adapters(base, [first.adapter_dir, second.adapter_dir], run.adapter)
    wait_for_everyone()
    summary = {"kind": "datamix_seq", "name": name, "key": run.key,
               "stages": {"corpus": first.summary, "instructions": second.summary},
               **_sequence_cost([first.summary, second.summary])}
    run.finish(summary)
    wait_for_everyone()
    return RunResult(run.dir, run.adapter, False, summary, model=second.model, extra=extra)


def _sequence_cost(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The time and peak of runs made one after another, as one run's summary records them: the sum
    of their seconds (each its last session's) and the larger peak; a part without them leaves the
    whole unknown (left out) rather than undercounted. The adapter-combining step (seconds, a
    model load) is not in them."""
    out: dict[str, Any] = {}
    seconds = [p.get("seconds_this_session") for p in parts]
    if all(isinstance(x, int | float) for x in seconds):
        out["seconds_this_session"] = round(sum(seconds), 2)
    peaks = [p.get("peak_memory") or {} for p in parts]
    if all(isinstance(pk.get("cpu_rss_mib"), int | float) for pk in peaks):
        cuda = [pk.get("cuda_mib") for pk in peaks]
        out["peak_memory"] = {**max(peaks, key=lambda pk: pk["cpu_rss_mib"]),
                              "cuda_mib": max(cuda) if all(isinstance(c, int | float) for c in cuda) else None}
    return out


def combine_adapters(base: str, adapters: list[Path], out: Path) -> Path:
    """The plain sum of LoRAs as one PEFT adapter of rank sum r_i (peft's exact ``cat`` combination)."""
    from peft import PeftModel

    model, _ = load_for_training(base)
    names = [f"stage{i}" for i in range(len(adapters))]
    peft_model = PeftModel.from_pretrained(model, str(adapters[0]), adapter_name=names[0])
    for adapter, adapter_name in zip(adapters[1:], names[1:]):
        peft_model.load_adapter(str(adapter), adapter_name=adapter_name)
    peft_model.add_weighted_adapter(names, [1.0] * len(names), "combined", combination_type="cat")
    for n in names:
        peft_model.delete_adapter(n)
    tmp = out.parent / f".{out.name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    peft_model.save_pretrained(str(tmp), selected_adapters=["combined"])
    # peft writes a non-default adapter into a sub-folder named after it
    src = tmp / "combined" if (tmp / "combined" / "adapter_config.json").is_file() else tmp
    publish_dir(src, out)
    shutil.rmtree(tmp, ignore_errors=True)
    return out
