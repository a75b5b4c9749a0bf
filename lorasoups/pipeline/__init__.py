"""Run the numbered notebooks headless with papermill, in dependency order, skipping fresh stages.

Usage: ``python -m lorasoups.pipeline run [--profile auto|smoke|full] [--stage NAME] [--force]``
(the command line is :mod:`lorasoups.pipeline.cli`).
The configuration is ``configs/base.yaml`` + ``configs/<profile>.yaml`` (+ ``--config`` files),
validated whole *before* anything runs; each stage notebook gets the profile and the files and
resolves the same configuration (:func:`stage_config`); the analysis notebooks get a few flat fields.
Executed notebooks go to ``runs/notebooks/<profile>/``; a stamp per stage (hash of its resolved
config sections, its notebook and the package source) lets an unchanged stage with its outputs
present be skipped.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lorasoups import paths
from lorasoups.checks import CheckBaseModelConfig
from lorasoups.config import (
    ConfigError,
    check_sections,
    did_you_mean,
    from_dict,
    load_layers,
    section,
    to_dict,
)
from lorasoups.data.config import DataConfig
from lorasoups.models import ModelConfig, short_name
from lorasoups.results import file_sha256, fingerprint, package_source_sha
from lorasoups.stages.config import AnalysisConfig, EvalConfig, ExperimentConfig, GateConfig
from lorasoups.sweep.engine import SweepConfig
from lorasoups.training import LoraHubConfig, SftConfig, SoupTrainConfig


@dataclass
class RunConfig:
    """``run:`` section, shared by every stage."""

    seed: int = 0
    """Seed for every random choice (data splits, init, sampling)."""
    profile: str = "smoke"
    """A file stem of ``configs/`` (see :func:`profiles`): ``smoke`` (CPU, minutes, tiny sizes),
    ``cpu`` (the CPU study, sized for 2 cores) or ``full`` (GPU, full sizes)."""


@dataclass
class Stage:
    """One notebook of the pipeline."""

    name: str
    notebook: str
    sections: list[str]
    """Config sections the stage reads (its stamp covers them, resolved)."""
    outputs: list[str] = field(default_factory=list)
    """Files the stage writes (``{results}`` = the profile's results folder, ``{model}`` its name,
    ``{setting}`` / ``{seed}`` expanded over the ``experiment`` section's settings and seeds,
    ``{skill}`` over the setting's skill labels ``skill1`` .. ``skill<k>``, ``{datamix}`` over
    ``datamix`` when ``experiment.datamix`` holds ``concat``, the variant every setting has; a run
    without it, e.g. a gate slice, expects no DATA-MIX file)."""
    flat: bool = False
    """The notebook takes its sections' few fields as flat parameters (``profile``, ``seed`` and
    the fields; the analysis notebooks). Else it takes ``profile``, ``config_files`` and
    ``overrides`` and resolves the whole configuration itself (:func:`stage_config`)."""


#: Every config section and its dataclass (the stage configs live beside the code that uses them).
SECTIONS: dict[str, type] = {
    "run": RunConfig,
    "model": ModelConfig,
    "check_base_model": CheckBaseModelConfig,
    "data": DataConfig,
    "experiment": ExperimentConfig,
    "sft": SftConfig,
    "cat": SoupTrainConfig,
    "moe": SoupTrainConfig,
    "lorahub": LoraHubConfig,
    "sweep": SweepConfig,
    "evaluation": EvalConfig,
    "gate": GateConfig,
    "analysis": AnalysisConfig,
}

_TRAIN = "{results}/train/{setting}/%s--s{seed}.json"
STAGES: list[Stage] = [
    Stage("check_base_model", "00_check_base_model.ipynb", ["model", "check_base_model"],
          ["{results}/check_base_model/{model}--default.json"]),
    Stage("prepare_data", "01_prepare_data.ipynb", ["data"], ["{results}/data/manifest--default.json"]),
    Stage("train_skills", "02_train_skills.ipynb", ["model", "data", "experiment", "sft"],
          [_TRAIN % "{skill}"]),
    Stage("train_datamix", "03_train_datamix.ipynb", ["model", "data", "experiment", "sft"], [_TRAIN % "{datamix}"]),
    Stage("learn_cat", "04_learn_cat.ipynb", ["model", "data", "experiment", "cat"], [_TRAIN % "cat"]),
    Stage("merge_static", "05_merge_static.ipynb", ["model", "data", "experiment", "sweep"], [_TRAIN % "cat_static"]),
    Stage("learn_moe", "06_learn_moe.ipynb", ["model", "data", "experiment", "moe"], [_TRAIN % "moe"]),
    Stage("search_lorahub", "07_search_lorahub.ipynb", ["model", "data", "experiment", "lorahub", "cat"],
          [_TRAIN % "lorahub"]),
    Stage("evaluate", "08_evaluate.ipynb", ["model", "data", "experiment", "evaluation"],
          ["{results}/eval/{setting}/base--{first_target}-s{seed}.json"]),
    # Analysis notebooks read only results/ and write figures/ (always rerun: they take seconds).
    *[Stage(f"analysis_{name}", f"analysis/{name}.ipynb", ["analysis"], [], flat=True)
      for name in ("hard_math_code", "qabot", "reading_comprehension", "prompt_robustness", "ablations")],
]


def profiles() -> list[str]:
    """The profiles: every ``configs/<name>.yaml`` but ``base.yaml``."""
    return sorted(p.stem for p in paths.CONFIGS.glob("*.yaml") if p.stem != "base")


def auto_profile() -> str:
    """``full`` on a CUDA machine, ``smoke`` elsewhere."""
    import torch

    return "full" if torch.cuda.is_available() else "smoke"


def resolve(profile: str = "auto", extra: list[str] | None = None,
            overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Merged, validated configuration: ``{section: dataclass}``."""
    profile = auto_profile() if profile == "auto" else profile
    if profile not in profiles():
        raise ConfigError(f"unknown profile '{profile}'{did_you_mean(profile, profiles())}; "
                          f"known: {', '.join(profiles())} (configs/<profile>.yaml)")
    files = [paths.CONFIGS / "base.yaml", paths.CONFIGS / f"{profile}.yaml", *(extra or [])]
    layers = load_layers(*files, overrides=overrides)
    source = " + ".join(Path(f).name for f in files)
    check_sections(layers, SECTIONS, source)
    cfg = {name: section(layers, name, cls, source) for name, cls in SECTIONS.items()}
    check_names(cfg, source)
    return cfg


def _known(where: str, values: list[str] | None, known: list[str], what: str, why: dict[str, str] | None = None) -> None:
    for v in values or []:
        if v not in known:
            hint = f" ({why[v]})" if why and v in why else did_you_mean(v, known)
            raise ConfigError(f"{where}: unknown {what} '{v}'{hint}; known: {', '.join(known)}")


def check_names(cfg: dict[str, Any], source: str = "config") -> None:
    """Names that the section dataclasses hold as free strings or dicts, checked before any stage runs:
    the soup parameters of ``cat.soup`` / ``moe.soup`` (against ``CatParams`` / ``MoeParams``, which
    stage 04 / 06 would only build much later), the settings, static merges and DATA-MIX variants of
    ``experiment``, the sweep's methods and settings, and the model labels of ``evaluation``."""
    from lorasoups.data import SETTINGS
    from lorasoups.merging import METHODS
    from lorasoups.merging.cat import CatParams
    from lorasoups.merging.moe import MoeParams
    from lorasoups.results import MODEL_LABELS, is_model_label
    from lorasoups.sweep import sweep_methods

    for sec, params in (("cat", CatParams), ("moe", MoeParams)):
        from_dict(params, cfg[sec].soup, f"{source}:{sec}.soup")
    exp, sweep = cfg["experiment"], cfg["sweep"]
    for sec in ("sft", "cat", "moe", "lorahub", "sweep"):  # the stages train and merge each seed with it
        default = next(f.default for f in dataclasses.fields(SECTIONS[sec]) if f.name == "seed")
        if cfg[sec].seed != default:
            raise ConfigError(f"{source}:{sec}.seed is {cfg[sec].seed}, but the pipeline sets it to each seed of "
                              f"experiment.seeds (the run's seed); remove {sec}.seed and list the seeds there")
    _known(f"{source}:experiment.settings", exp.settings, list(SETTINGS), "setting")
    static = [m for m, spec in METHODS.items() if not spec.learnable]
    learned = {m: f"{m} is learned by its own stage, not built as a static merge" for m in METHODS if m not in static}
    _known(f"{source}:experiment.merges", exp.merges, static, "static merge", learned)
    _known(f"{source}:experiment.datamix", exp.datamix, ["concat", "sequential"], "DATA-MIX variant")
    from lorasoups.training.soup import RECIPES

    _known(f"{source}:experiment.cat_recipes", exp.cat_recipes, list(RECIPES), "CAT recipe")
    for r in exp.cat_recipes:
        if r == cfg["cat"].recipe or exp.cat_recipes.count(r) > 1:
            raise ConfigError(f"{source}:experiment.cat_recipes: '{r}' is learned twice (cat.recipe is "
                              f"'{cfg['cat'].recipe}'; list each other recipe once)")
    _known(f"{source}:sweep.methods", sweep.methods, sweep_methods(), "sweep method")
    _known(f"{source}:sweep.settings", sweep.settings, list(SETTINGS), "setting")
    from lorasoups.data.registry import REGISTRY

    _known(f"{source}:data.sizes", list(cfg["data"].sizes), [*REGISTRY, "oracle_data"], "dataset")
    ev = cfg["evaluation"]
    from lorasoups.task_kinds import TASKS

    _known(f"{source}:evaluation.max_new_tokens_by_task", list(ev.max_new_tokens_by_task), list(TASKS), "task kind")
    for key in ("labels", "elo_labels"):
        bad = [v for v in getattr(ev, key) or [] if not is_model_label(v, METHODS)]
        if bad:
            known = [*MODEL_LABELS, *(m for m in METHODS if m not in MODEL_LABELS)]
            raise ConfigError(f"{source}:evaluation.{key}: unknown model label '{bad[0]}'"
                              f"{did_you_mean(bad[0], known)}; known: {', '.join(known)}, skill<k>")


def flat_names(stage: Stage) -> list[tuple[str, str, str]]:
    """``(section, field, parameter name)`` of every field a flat stage's notebook receives: the
    field names, ``<section>_<field>`` where a name is taken (``profile``, ``seed``)."""
    taken = {"profile", "seed"}
    out = []
    for sec in stage.sections:
        for f in dataclasses.fields(SECTIONS[sec]):
            flat = f"{sec}_{f.name}" if f.name in taken else f.name
            taken.add(flat)
            out.append((sec, f.name, flat))
    return out


def stage_parameters(stage: Stage, cfg: dict[str, Any], config_files: list[str] | None = None) -> dict[str, Any]:
    """The papermill parameters of one stage: ``profile``, the YAML files layered on it and no
    overrides (the notebook resolves the same configuration the pipeline did); a flat stage gets
    ``profile``, ``seed`` and its sections' fields."""
    if stage.flat:
        params: dict[str, Any] = {"profile": cfg["run"].profile, "seed": cfg["run"].seed}
        for sec, key, flat in flat_names(stage):
            params[flat] = to_dict(getattr(cfg[sec], key))
        return params
    return {"profile": cfg["run"].profile, "config_files": [str(Path(f).resolve()) for f in config_files or []],
            "overrides": {}}


def get_stage(name: str) -> Stage:
    """The stage called ``name`` (with a "did you mean")."""
    for s in STAGES:
        if s.name == name:
            return s
    raise ConfigError(f"unknown stage '{name}'{did_you_mean(name, [s.name for s in STAGES])}")


class StageConfig(dict):
    """A stage's resolved sections (``{section: dataclass}``, ``run`` first); shown as YAML."""

    def __repr__(self) -> str:
        import yaml

        return yaml.safe_dump({k: to_dict(v) for k, v in self.items()}, sort_keys=False, width=110).rstrip()

    def _repr_pretty_(self, printer, cycle) -> None:  # IPython's display of a cell's last value
        printer.text(repr(self))


def stage_config(stage_name: str, profile: str = "auto", config_files: list[str] | None = None,
                 overrides: dict[str, Any] | None = None) -> StageConfig:
    """Inside a notebook: the whole configuration resolved and validated (``configs/base.yaml``,
    the profile, ``config_files``, then ``overrides``), the same as ``pipeline run`` resolves it;
    returns the sections the stage reads, ``run`` first.

    ``cfg = pipeline.stage_config("train_skills", profile, config_files, overrides)``."""
    stage = get_stage(stage_name)
    cfg = resolve(profile, config_files, overrides)
    return StageConfig({sec: cfg[sec] for sec in ["run", *stage.sections]})


def stage_sections(stage: Stage, cfg: dict[str, Any]) -> dict[str, Any]:
    """What a stage's results are a function of, of the configuration: its sections, resolved."""
    return {sec: to_dict(cfg[sec]) for sec in ["run", *stage.sections]}


def notebook_parameters(notebook: Path) -> dict[str, Any]:
    """Names and defaults declared in a notebook's ``parameters`` cell."""
    import papermill

    return papermill.inspect_notebook(str(notebook))


def check_notebook(stage: Stage, params: dict[str, Any]) -> None:
    """Refuse to run when config and the notebook's parameters cell disagree on names."""
    declared = notebook_parameters(paths.NOTEBOOKS / stage.notebook)
    unknown = [k for k in params if k not in declared]
    if unknown:
        raise ConfigError(
            f"notebooks/{stage.notebook}: parameter '{unknown[0]}' from the config is not in its "
            f"parameters cell{did_you_mean(unknown[0], declared)}"
        )


def _outputs(stage: Stage, cfg: dict[str, Any]) -> list[Path]:
    from lorasoups.data import get_setting

    exp = cfg["experiment"]
    model = short_name(cfg["model"].name)
    res = paths.results_dir(cfg["run"].profile)
    datamix = ["datamix"] if "concat" in exp.datamix else []
    out = []
    for template in stage.outputs:
        for setting in exp.settings if "{setting}" in template else [None]:
            st = get_setting(setting) if setting else None
            for seed in exp.seeds if "{seed}" in template else [None]:
                for skill in st.labels if st and "{skill}" in template else [None]:
                    for dm in datamix if "{datamix}" in template else [None]:
                        out.append(Path(template.format(results=res, model=model, setting=setting, seed=seed,
                                                        first_target=st.targets[0] if st else None, skill=skill,
                                                        datamix=dm)))
    return out





def _stamp(stage: Stage, cfg: dict[str, Any]) -> str:
    """What a stage's outputs are a function of: its resolved config sections, its notebook and the
    package's code.
    A change to the package reruns the stage's notebook (its summaries and figures are redrawn) and
    that is cheap: every trained run, sweep point, merge export and evaluation is reused by its own
    content key. Those keys say which code each artifact depends on: evaluations and merge exports
    name theirs (``EVAL_CODE``, ``MERGE_CODE``); trained runs do not (a training fix needs
    ``clean-runs`` or new run folders), nor do sweep points. With an LLM judge the rerun repeats the
    pairwise ELO battles."""
    return fingerprint({"config": stage_sections(stage, cfg), "notebook": file_sha256(paths.NOTEBOOKS / stage.notebook),
                        "code": package_source_sha()})


def _stamp_of(stamp_file: Path) -> str | None:
    """The stamp recorded for a stage (None when absent or unreadable: the stage is then rerun)."""
    try:
        return json.loads(stamp_file.read_text()).get("stamp")
    except (OSError, ValueError, AttributeError):
        return None


@functools.cache
def kernel_manager_class() -> type:
    """The kernel manager papermill starts each stage's kernel with: jupyter_client's own, made quiet.

    Two things print on the console of a run that succeeds with the stock manager (jupyter_client
    8.10, ipykernel 7.4): ``[IPKernelApp] WARNING | Kernel is running over TCP without encryption``
    at start, because jupyter_client provisions no CurveZMQ keys unless ``transport_encryption`` asks;
    and, now and then, ``[IPKernelApp] ERROR | KeyboardInterrupt caught in kernel.`` at the end,
    because ``shutdown_kernel`` first interrupts the kernel (SIGINT) and the signal can land while
    the kernel still handles papermill's last ``kernel_info`` request. So: encrypt the loopback
    connection where the kernelspec supports it (``auto``; ipykernel's declares ``curve``), and shut
    an idle kernel down without the interrupt (its shutdown request comes on the control channel; one
    that does not exit in time is still terminated by jupyter_client). A failing cell is unaffected:
    papermill raises PapermillExecutionError naming the cell, and the executed notebook keeps the
    traceback.
    """
    from jupyter_client import AsyncKernelManager
    from traitlets import default

    class StageKernelManager(AsyncKernelManager):
        @default("transport_encryption")
        def _encrypt_where_supported(self) -> str:
            return "auto"

        async def _async_interrupt_kernel(self) -> None:
            if self.shutting_down:  # shutdown_kernel's interrupt, not a user's
                return
            await super()._async_interrupt_kernel()

    return StageKernelManager


def execute(notebook: Path, output: Path, params: dict[str, Any], kernel: str = "python3") -> None:
    """Run one notebook headless with papermill (from its own folder), quiet when it succeeds."""
    import papermill

    papermill.execute_notebook(
        str(notebook), str(output), parameters=params, kernel_name=kernel, cwd=str(notebook.parent),
        progress_bar=False, kernel_manager_class=kernel_manager_class(),
    )


def run(profile: str = "auto", stages: list[str] | None = None, force: bool = False,
        extra: list[str] | None = None, kernel: str = "python3", namespace: str | None = None
        ) -> list[dict[str, Any]]:
    """Execute the pipeline; returns one record per stage (ran or skipped, seconds).

    ``namespace``: run as an experiment variant, results in ``results/<profile>/<namespace>/``
    (executed notebooks and stamps likewise under ``runs/``); trained runs are still shared by
    config hash, so a variant retrains only what its config changes."""
    if namespace is None:  # keep whatever namespace the caller is already in
        return _run(profile, stages, force, extra, kernel)
    with paths.in_namespace(namespace):
        return _run(profile, stages, force, extra, kernel)


def _run(profile: str, stages: list[str] | None, force: bool, extra: list[str] | None,
         kernel: str) -> list[dict[str, Any]]:
    from papermill.exceptions import PapermillExecutionError

    cfg = resolve(profile, extra)
    prof = cfg["run"].profile
    for s in stages or []:
        get_stage(s)
    selected = [s for s in STAGES if not stages or s.name in stages]
    plan = [(s, stage_parameters(s, cfg, extra)) for s in selected]
    for stage, params in plan:  # validate everything before running anything
        check_notebook(stage, params)
    ns = paths.namespace()
    out_dir = paths.runs_dir() / "notebooks" / prof / (ns or "")
    stamp_dir = paths.runs_dir() / "stamps" / prof / (ns or "")
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp_dir.mkdir(parents=True, exist_ok=True)
    report = []
    for stage, params in plan:
        stamp_file = stamp_dir / f"{stage.name}.json"
        (out_dir / stage.notebook).parent.mkdir(parents=True, exist_ok=True)
        stamp = _stamp(stage, cfg)
        outputs = _outputs(stage, cfg)
        fresh = bool(outputs) and _stamp_of(stamp_file) == stamp and all(p.is_file() for p in outputs)
        if fresh and not force:
            print(f"[pipeline] {stage.name}: up to date, skipped")
            report.append({"stage": stage.name, "ran": False, "seconds": 0.0})
            continue
        print(f"[pipeline] {stage.name}: running notebooks/{stage.notebook} ({prof})", flush=True)
        start = time.perf_counter()
        try:
            execute(paths.NOTEBOOKS / stage.notebook, out_dir / stage.notebook, params, kernel)
        except PapermillExecutionError as exc:
            print(f"[pipeline] {stage.name}: FAILED in notebooks/{stage.notebook}, cell In [{exc.exec_count}] "
                  f"({exc.ename}); the executed notebook with every output: {out_dir / stage.notebook}",
                  file=sys.stderr, flush=True)
            raise
        seconds = round(time.perf_counter() - start, 1)
        missing = [str(p) for p in _outputs(stage, cfg) if not p.is_file()]
        if missing:
            raise RuntimeError(f"stage {stage.name} finished without writing {missing}")
        stamp_file.write_text(json.dumps({"stamp": stamp, "params": params, "config": stage_sections(stage, cfg),
                                          "seconds": seconds}, indent=2))
        print(f"[pipeline] {stage.name}: done in {seconds} s")
        report.append({"stage": stage.name, "ran": True, "seconds": seconds})
    return report
