"""A merge method registered in one place runs through everything: the config check, the sweep
(stage 05's grid, merged in place), the static-merge stage and its export; the exported adapter
equals the merge computed by hand. And no import cycle inside the package."""
from __future__ import annotations

import ast
import copy
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_stage_merge import DATA, stage_env  # noqa: F401  (the fixture: two recorded skill LoRAs)

from lorasoups import paths
from lorasoups.evaluation.fastgen import FastGenConfig
from lorasoups.merging import METHODS, MergeError, Method, build, export_adapter, load_skills, register
from lorasoups.merging.task_arithmetic import WeightedParams, factor_merge_builder, factor_weights
from lorasoups.stages import merge
from lorasoups.stages.config import ExperimentConfig
from lorasoups.sweep import GridConfig, InPlaceMerger, SweepConfig, points, read_sweep

TOY = "toy_pruned_sum"


def pruned_sum(tensors: list[torch.Tensor], weights: torch.Tensor, density: float | None, _sign: str) -> torch.Tensor:
    """The toy: the weighted sum of the factors, then keep the largest ``density`` share by magnitude."""
    summed = sum(w * t for w, t in zip(weights, tensors))
    k = int(round(density * summed.numel()))
    keep = torch.zeros(summed.numel(), dtype=torch.bool)
    keep[summed.abs().flatten().argsort(descending=True)[:k]] = True
    return summed * keep.reshape(summed.shape)


@pytest.fixture
def toy():
    """The one place the toy method is declared (as a method module plus its registry line would)."""
    method = register(Method(TOY, "weighted sum of the factors, then magnitude pruning", "a test", "-",
                             WeightedParams, factor_merge_builder(TOY, pruned_sum, density=True),
                             density=True, inplace=pruned_sum))
    yield method
    del METHODS[TOY]


def by_hand(skill_dirs, base, alphas, density) -> dict[str, torch.Tensor]:
    """The toy merge of every module's A and B, computed here from the skills' own factors."""
    skills = load_skills(skill_dirs, base)
    out = {}
    for m in skills[0].modules:
        wa, wb = factor_weights(alphas, tuple(s.scaling[m] for s in skills))
        out[f"base_model.model.{m}.lora_A.weight"] = pruned_sum([s.A[m] for s in skills], torch.tensor(wa), density, "")
        out[f"base_model.model.{m}.lora_B.weight"] = pruned_sum([s.B[m] for s in skills], torch.tensor(wb), density, "")
    return out


def test_a_toy_method_registered_in_one_place_is_checked_swept_merged_and_exported(toy, stage_env, tiny):  # noqa: F811
    from lorasoups.pipeline import check_names, resolve

    cfg = resolve("smoke")
    cfg["experiment"].merges, cfg["sweep"].methods = [TOY], [TOY]
    check_names(cfg)  # the config check knows it as a static merge and as a sweep method
    cfg["experiment"].merges = [TOY + "x"]
    with pytest.raises(Exception, match=f"did you mean '{TOY}'"):
        check_names(cfg)
    assert len(points(TOY, 2, GridConfig(density=[0.0, 1.0, 0.5], alpha=[1.0, 2.0, 1.0]))) == 12  # has a λ axis

    exp = ExperimentConfig(settings=["math_code"], merges=[TOY])
    sweep = SweepConfig(methods=[TOY], grid=GridConfig(density=[0.5, 1.0, 0.5], alpha=[1.0, 2.0, 1.0]),
                        validation_size=3, generation=FastGenConfig(max_new_tokens=6, batch_size=3))
    swept = merge.sweep_setting("tiny-random-llama", "math_code", 0, exp, DATA, sweep, "smoke", device="cpu")
    _, rows = read_sweep(paths.results_dir("smoke") / "sweep" / "math_code" / f"{TOY}--s0.jsonl")
    assert len(rows) == 8 and swept[TOY]["params"]["density"] in (0.5, 1.0)
    assert "seed" not in swept[TOY]["params"]  # the toy draws nothing at random

    done = merge.static_merges("tiny-random-llama", "math_code", 0, exp, "smoke", swept)
    params = done[TOY]
    rec = json.loads((paths.results_dir("smoke") / "train" / "math_code" / f"{TOY}--s0.json").read_text())
    got = load_file(str(Path(rec["location"]) / "adapter_model.safetensors"))
    skills = [str(stage_env / "skills" / "skill1"), str(stage_env / "skills" / "skill2")]
    want = by_hand(skills, copy.deepcopy(tiny[0]), params["alphas"], params["density"])
    assert sorted(got) == sorted(want)
    for key, value in want.items():
        torch.testing.assert_close(got[key], value, rtol=1e-6, atol=1e-7)

    # the sweep's in-place merge writes the same factors as the build the stage exported
    merger = InPlaceMerger(copy.deepcopy(tiny[0]), skills)
    merger.apply(TOY, params["alphas"], params["density"])
    for m, (a, b) in merger.factors().items():
        torch.testing.assert_close(a, want[f"base_model.model.{m}.lora_A.weight"], rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(b, want[f"base_model.model.{m}.lora_B.weight"], rtol=1e-6, atol=1e-7)


def test_register_refuses_a_taken_name_and_build_checks_the_toys_params(toy, stage_env, tiny, tmp_path):  # noqa: F811
    with pytest.raises(MergeError, match="already registered"):
        register(toy)
    skills = [str(stage_env / "skills" / "skill1"), str(stage_env / "skills" / "skill2")]
    with pytest.raises(MergeError, match="needs density"):
        build(TOY, copy.deepcopy(tiny[0]), skills, alphas=[1.0, 1.0])
    soup = build(TOY, copy.deepcopy(tiny[0]), skills, alphas=[1.0, 2.0], density=1.0)
    out = export_adapter(soup, tmp_path / "toy")
    want = by_hand(skills, copy.deepcopy(tiny[0]), [1.0, 2.0], 1.0)
    got = load_file(str(out / "adapter_model.safetensors"))
    for key, value in want.items():
        torch.testing.assert_close(got[key], value, rtol=1e-6, atol=1e-7)


def import_graph() -> dict[str, set[str]]:
    """module -> the ``lorasoups`` modules it imports anywhere in its source (function-local imports
    count: they are how cycles were hidden). ``from pkg import sub`` is an edge to ``pkg.sub`` only."""
    package = Path(paths.ROOT) / "lorasoups"
    files = {}
    for p in package.rglob("*.py"):
        name = ".".join(p.relative_to(package.parent).with_suffix("").parts)
        files[name.removesuffix(".__init__")] = p
    graph = {}
    for mod, path in files.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").startswith("lorasoups"):
                subs = {f"{node.module}.{a.name}" for a in node.names} & set(files)
                edges |= subs if len(subs) == len(node.names) else subs | {node.module}
            elif isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name in files}
        assert not any(isinstance(n, ast.ImportFrom) and n.level for n in ast.walk(ast.parse(path.read_text()))), mod
        graph[mod] = {e for e in edges if e in files and e != mod}
    return graph


def reach(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_no_import_cycle_inside_the_package():
    """No module of ``lorasoups`` reaches itself through its imports; in particular the soup's shared
    helpers (soup, export, persist, weights, skill_adapters, method) never reach the registry."""
    graph = import_graph()
    assert len(graph) > 80 and "lorasoups.merging.registry" in graph["lorasoups.merging"]
    cycles = sorted(m for m in graph if m in reach(graph, m))
    assert not cycles, f"import cycles through {cycles}"
    for helper in ("soup", "export", "persist", "weights", "skill_adapters", "method"):
        assert "lorasoups.merging.registry" not in reach(graph, f"lorasoups.merging.{helper}"), helper


def test_the_cycle_check_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert sorted(m for m in graph if m in reach(graph, m)) == ["a", "b", "c"]
