"""The sweep engine against peft's add_weighted_adapter (through lorasoups.merging.build) and
against a soup built and decoded the ordinary way (build + generation.generate)."""
from __future__ import annotations

import copy
import itertools
import json

import pytest
import torch

import lorasoups.merging as M
from lorasoups.evaluation.fastgen import FastGenConfig
from lorasoups.evaluation.generation import GenerationConfig, generate
from lorasoups.sweep import (
    GridConfig,
    InPlaceMerger,
    SweepConfig,
    best_params,
    best_point,
    point_key,
    points,
    read_sweep,
    run_sweep,
    sweep_path,
)

TARGETS = ["q_proj", "k_proj", "v_proj", "up_proj", "down_proj"]
PROMPTS = ["Janet's ducks lay 16 eggs per day.", "Hi", "2 + 2 ="]
GRID = GridConfig(density=[0.0, 1.0, 0.5], alpha=[1.0, 2.0, 1.0])  # 3 x 2 x 2 = 12 points
GEN = FastGenConfig(max_new_tokens=6, batch_size=3, eos_token_ids=[])


@pytest.fixture(scope="module")
def skills(tiny, tmp_path_factory):
    """Two rank-4 skill LoRAs with different scalings (lora_alpha 8 and 4) and random B."""
    from peft import LoraConfig, get_peft_model

    base, _ = tiny
    root = tmp_path_factory.mktemp("sweep-skills")
    out = []
    for seed, alpha in ((11, 8), (12, 4)):
        torch.manual_seed(seed)
        cfg = LoraConfig(r=4, lora_alpha=alpha, target_modules=TARGETS, init_lora_weights=False)
        get_peft_model(copy.deepcopy(base), cfg).save_pretrained(str(root / f"s{seed}"))
        out.append(root / f"s{seed}")
    return out


@pytest.fixture(scope="module")
def merger(tiny, skills):
    return InPlaceMerger(copy.deepcopy(tiny[0]), skills)


def soup_factors(soup) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    inner = soup.base_model.model
    return {name: (mod.lora_A["default"].weight.detach(), mod.lora_B["default"].weight.detach())
            for name, mod in inner.named_modules() if hasattr(mod, "lora_A") and "default" in mod.lora_A}


def test_paper_grid():
    ties = points("ties", 2)
    assert len(ties) == 216 and len({point_key(p) for p in ties}) == 216
    assert sorted({p["density"] for p in ties}) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert sorted({a for p in ties for a in p["alphas"]}) == [1.0, 1.2, 1.4, 1.6, 1.8, 2.0]
    assert len(points("linear", 2)) == 36 and points("linear", 2)[0]["density"] is None
    with pytest.raises(ValueError, match="cannot be swept"):
        points("svd", 2)


def test_grid_shares_the_skill_weight_above_two_skills():
    from lorasoups.sweep.grid import GridConfig

    k3 = points("ties", 3)  # 6 densities x 6 shared weights, not 6 x 6^3
    assert len(k3) == 36 and all(len(p["alphas"]) == 3 and len(set(p["alphas"])) == 1 for p in k3)
    assert len(points("dare", 4)) == 36
    assert len(points("ties", 3, GridConfig(shared_alpha=False))) == 6 * 6 ** 3
    shared2 = points("ties", 2, GridConfig(shared_alpha=True))
    assert len(shared2) == 36 and {tuple(p["alphas"]) for p in shared2} == {(a, a) for a in
                                                                            (1.0, 1.2, 1.4, 1.6, 1.8, 2.0)}


@pytest.mark.parametrize("method, alphas, density", [
    ("ties", [1.0, 2.0], 0.4), ("ties", [1.6, 1.2], 1.0), ("ties", [2.0, 2.0], 0.8),
    ("linear", [1.2, 1.8], None), ("magnitude_prune", [1.4, 1.0], 0.6), ("dare", [1.8, 1.2], 1.0),
])
def test_factors_equal_add_weighted_adapter(tiny, skills, merger, method, alphas, density):
    merger.apply("ties", [1.0, 1.0], 0.2)  # a different state first: apply must overwrite all of it
    merger.apply(method, alphas, density)
    params = {"alphas": alphas, **({"density": density} if density is not None else {})}
    soup = M.build(method, copy.deepcopy(tiny[0]), skills, **params)  # peft add_weighted_adapter
    ref = soup_factors(soup)
    mine = merger.factors()
    assert set(ref) == set(mine) and len(ref) == 10
    for m, (a, b) in ref.items():
        assert torch.equal(mine[m][0], a), m
        assert torch.equal(mine[m][1], b), m
    ids = torch.randint(0, 2000, (2, 7), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(merger.model(input_ids=ids).logits, soup(input_ids=ids).logits)


def test_dare_masks_have_peft_structure(merger, skills):
    """Each merged entry is sum_k m_k w_k X_k / d with m_k in {0, 1}, about d of entries kept per
    skill, reproducible for a seed; (A_k, B_k, s_k) read straight from the adapter files."""
    from safetensors.torch import load_file

    d, alphas = 0.5, [1.4, 1.8]
    merger.apply("dare", alphas, d, seed=5)
    got = {m: (a.clone(), b.clone()) for m, (a, b) in merger.factors().items()}
    merger.apply("dare", alphas, d, seed=5)
    assert all(torch.equal(got[m][0], a) for m, (a, _) in merger.factors().items())
    merger.apply("dare", alphas, d, seed=6)
    assert not all(torch.equal(got[m][0], a) for m, (a, _) in merger.factors().items())

    files = [load_file(str(p / "adapter_model.safetensors")) for p in skills]
    scal = [8 / 4, 4 / 4]
    m = "model.layers.1.mlp.up_proj"
    for which, idx in (("A", 0), ("B", 1)):
        xs = [f[f"base_model.model.{m}.lora_{which}.weight"] for f in files]
        ws = [(a * a * s) ** 0.5 for a, s in zip(alphas, scal)]
        combos = torch.stack([sum(mk * w * x / d for mk, w, x in zip(mask, ws, xs))
                              for mask in itertools.product((0, 1), repeat=2)])  # (4, *shape)
        dist = (combos - got[m][idx].unsqueeze(0)).abs()
        assert dist.min(0).values.max() < 1e-5  # every entry is one of the four combinations
        which_combo = dist.argmin(0)
        kept_first = (which_combo >= 2).float().mean()  # masks (1, *) are combos 2 and 3
        assert 0.3 < kept_first < 0.7


def test_density_zero_is_the_base_model(tiny, merger):
    merger.apply("ties", [2.0, 1.0], 0.0)
    assert all(not a.any() and not b.any() for a, b in merger.factors().values())
    ids = torch.randint(0, 2000, (1, 5), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(merger.model(input_ids=ids).logits, tiny[0](input_ids=ids).logits)
    with pytest.raises(M.MergeError, match="needs density"):
        merger.apply("ties", [1.0, 1.0], None)
    with pytest.raises(M.MergeError, match=">= 0"):
        merger.apply("linear", [-1.0, 1.0])


@pytest.fixture(scope="module")
def target_golds(tiny, skills):
    """Golds = what the soup at one grid point says, computed the ordinary way (build + HF generate):
    exact match is 1.0 exactly at the points whose merge decodes the same."""
    _, tok = tiny
    soup = M.build("ties", copy.deepcopy(tiny[0]), skills, alphas=[2.0, 1.0], density=0.5).eval()
    return generate(soup, tok, PROMPTS, GenerationConfig(greedy=True, max_new_tokens=6), progress=False)


@pytest.fixture(scope="module")
def full_run(tiny, merger, target_golds, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "ties--s0.jsonl"
    cfg = SweepConfig(grid=GRID, generation=GEN)
    rows = run_sweep(merger, tiny[1], "ties", PROMPTS, target_golds, task="qa", out=out, config=cfg,
                     progress=False)
    return out, rows


def test_sweep_finds_the_point_that_reproduces_the_golds(full_run, target_golds):
    out, rows = full_run
    assert [r["index"] for r in rows] == list(range(12))
    header, again = read_sweep(out)
    assert header["n_points"] == 12 and header["metric"] == "f1" and again == rows
    target = next(r for r in rows if r["point"] == "d0.5-a2,1")
    assert target["metrics"]["exact_match"] == 1.0
    assert min(r["metrics"]["exact_match"] for r in rows) < 1.0  # the grid really varies the output
    # all density-0 points are the same (zero) adapter: evaluated once, reused
    zero = [r for r in rows if r["density"] == 0.0]
    assert len(zero) == 4 and sum("same_as" not in r for r in zero) == 1
    assert len({json.dumps(r["metrics"], sort_keys=True) for r in zero}) == 1
    best = best_point(rows)
    assert best["value"] == max(r["metrics"]["f1"] for r in rows)
    first_best = min(r["index"] for r in rows if r["metrics"]["f1"] == best["value"])
    assert best["index"] == first_best  # ties go to the earliest grid point
    assert best_params(best, "ties")["alphas"] == best["alphas"]


def test_best_point_tie_break_and_params():
    rows = [{"index": i, "point": f"p{i}", "density": d, "alphas": [1.0, 1.0], "metric_name": "acc",
             "metrics": {"acc": v}} for i, (d, v) in enumerate([(0.2, 0.5), (0.4, 0.7), (0.6, 0.7), (0.8, float("nan"))])]
    assert best_point(rows)["point"] == "p1"
    assert best_point(rows[::-1])["point"] == "p1"  # order of rows does not matter, grid index does
    assert best_params(best_point(rows), "dare", seed=3) == {"alphas": [1.0, 1.0], "density": 0.4, "seed": 3}
    with pytest.raises(ValueError, match="did you mean"):
        best_point(rows, "accc")


def test_interrupted_sweep_resumes(tiny, merger, target_golds, full_run, tmp_path):
    from lorasoups import paths

    assert sweep_path("smoke", "math_code", "ties", 0) == paths.results_dir("smoke") / "sweep/math_code/ties--s0.jsonl"
    out = tmp_path / "ties--s0.jsonl"
    cfg = SweepConfig(grid=GRID, generation=GEN)
    seen: list[str] = []

    def interrupt_after_five(row):
        seen.append(row["point"])
        if len(seen) == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(merger, tiny[1], "ties", PROMPTS, target_golds, task="qa", out=out, config=cfg,
                  progress=False, on_point=interrupt_after_five)
    assert len(read_sweep(out)[1]) == 5
    with open(out, "a") as fh:  # a kill in the middle of writing the next line
        fh.write('{"kind": "point", "index": 5, "poi')
    resumed: list[str] = []
    with pytest.warns(RuntimeWarning, match="cut off"):
        rows = run_sweep(merger, tiny[1], "ties", PROMPTS, target_golds, task="qa", out=out, config=cfg,
                         progress=False, on_point=lambda r: resumed.append(r["point"]))
    assert len(resumed) == 7 and not set(resumed) & set(seen)
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in rows]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in full_run[1]]
    assert len(out.read_text().splitlines()) == 13  # header + 12 points, nothing doubled
    # a finished sweep reruns as a no-op; a different sweep on the same file is refused
    assert run_sweep(merger, tiny[1], "ties", PROMPTS, target_golds, task="qa", out=out, config=cfg,
                     progress=False, on_point=lambda r: pytest.fail("recomputed")) == rows
    with pytest.raises(ValueError, match="different sweep"):
        run_sweep(merger, tiny[1], "ties", PROMPTS[:2], target_golds[:2], task="qa", out=out, config=cfg,
                  progress=False)


def test_gsm_hard_scoring_runs_programs_beside_decoding(tiny, merger, tmp_path):
    """task gsm_hard: the default scorer executes programs (here: golds that the tiny model cannot
    hit, so every point scores 0 and the first grid point wins)."""
    cfg = SweepConfig(grid=GridConfig(density=[0.5, 1.0, 0.5], alpha=[1.0, 1.0, 0.2]), generation=GEN)
    rows = run_sweep(merger, tiny[1], "dare", PROMPTS, [1.0, 2.0, 3.0], task="gsm_hard",
                     out=tmp_path / "dare.jsonl", config=cfg, progress=False)
    assert len(rows) == 2 and all(r["metrics"]["n"] == 3 for r in rows)
    assert rows[0]["metric_name"] == "exec_accuracy" and best_point(rows)["index"] == 0


def test_compiled_generator_sees_in_place_updates(tiny, merger):
    """The traced (torch.compile) decode step of the GPU path, reused across merges: each point's
    texts equal an eager generator's, so no stale weights are baked into the compiled step."""
    from lorasoups.evaluation.fastgen import FastGenerator

    _, tok = tiny
    kw = dict(max_new_tokens=6, batch_size=2, eos_token_ids=[])
    compiled = FastGenerator(merger.model, tok, FastGenConfig(**kw, compile=True, allow_cpu_compile=True,
                                                              compile_backend="eager", compile_mode=None))
    eager = FastGenerator(merger.model, tok, FastGenConfig(**kw))
    seen = set()
    for alphas, density in (([1.0, 1.0], 0.5), ([2.0, 1.0], 1.0), ([1.0, 2.0], 0.0)):
        merger.apply("ties", alphas, density)
        texts = compiled.generate(PROMPTS, progress=False)
        assert texts == eager.generate(PROMPTS, progress=False)
        seen.add(tuple(texts))
    assert compiled.stats.compiled and len(seen) == 3


def test_profiles_sweep_sections():
    from lorasoups import pipeline

    full = pipeline.resolve("full")["sweep"]
    assert isinstance(full, SweepConfig) and full.methods == ["ties", "dare"]
    assert len(points("ties", 2, full.grid)) == 216 and full.generation.max_new_tokens == 200
    smoke = pipeline.resolve("smoke")["sweep"]
    assert len(points("ties", 2, smoke.grid)) == 4 and smoke.settings == ["math_code"]
