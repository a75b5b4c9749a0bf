"""CAT started from given per-skill weights, and SVD compression of a folded soup.

References are independent of the code under test: CAT ``init: weights`` is compared with a
``cat_static`` soup built from the same alphas and with brute-force dW added to the base weights;
compression is compared with a truncated ``torch.linalg.svd`` of dW = sum_k alpha_k s_k B_k A_k
computed here from the skill adapter files, and with peft's own SVD merge.
"""
from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
from lora_factory import make_adapter as _make_adapter
from safetensors.torch import load_file

import lorasoups.merging as M
from lorasoups.merging import MergeError

ATOL = 1e-5


# --------------------------------------------------------------------------- fixtures and references
@pytest.fixture(scope="module")
def base(tiny):
    return tiny[0]


@pytest.fixture(scope="module")
def ad(base, tmp_path_factory):
    """a: r4 / scaling 2, b: r8 / scaling 1, c: r4 / scaling 1, p: r4 with down_proj r2."""
    root = tmp_path_factory.mktemp("bonus-skills")
    return {
        "a": _make_adapter(base, root / "a", 4, 8, 11),
        "b": _make_adapter(base, root / "b", 8, 8, 12),
        "c": _make_adapter(base, root / "c", 4, 4, 13),
        "p": _make_adapter(base, root / "p", 4, 8, 14, rank_pattern={"down_proj": 2}),
    }


@pytest.fixture(scope="module")
def ids():
    return torch.randint(0, 2000, (2, 9), generator=torch.Generator().manual_seed(0))


def read(path: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor, float]]:
    """module -> (A, B, s) straight from the files; s = lora_alpha / r (no alpha_pattern in these)."""
    cfg = json.loads((path / "adapter_config.json").read_text())
    assert not cfg.get("alpha_pattern") and not cfg.get("use_rslora")
    sd = load_file(str(path / "adapter_model.safetensors"))
    out = {}
    for key, a in sd.items():
        if ".lora_A." in key:
            mod = key.removeprefix("base_model.model.").removesuffix(".lora_A.weight")
            out[mod] = (a.double(), sd[key.replace("lora_A", "lora_B")].double(), cfg["lora_alpha"] / a.shape[0])
    return out


def cat_delta(paths: list[Path], alphas: list[float]) -> dict[str, torch.Tensor]:
    """dW = sum_k alpha_k s_k B_k A_k per module (float64), from the skill files."""
    skills = [read(p) for p in paths]
    return {m: sum(a * s[m][2] * s[m][1] @ s[m][0] for a, s in zip(alphas, skills)) for m in skills[0]}


def truncated(dw: torch.Tensor, r: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(best rank-r approximation, all singular values) by a plain full SVD."""
    U, S, Vh = torch.linalg.svd(dw.double())
    return U[:, :r] @ torch.diag(S[:r]) @ Vh[:r], S


def logits(model, ids) -> torch.Tensor:
    with torch.no_grad():
        return model(ids).logits


def logits_delta(base, ids, deltas: dict[str, torch.Tensor]) -> torch.Tensor:
    model = copy.deepcopy(base)
    with torch.no_grad():
        for mod, dw in deltas.items():
            model.get_submodule(mod).weight += dw.float()
        return model(ids).logits


def alpha_rows(soup) -> torch.Tensor:
    """(n_modules, k) alpha the soup applies at each module, from alphas_table."""
    table = M.alphas_table(soup)
    k = len(M.soup_state(soup).skills)
    return torch.tensor([r["alpha"] for r in table]).reshape(-1, k)


# --------------------------------------------------------------------------- CAT init: weights
@pytest.mark.parametrize("granularity", ["global", "layer", "module"])
def test_init_weights_free_starts_at_the_weights_in_every_group(base, ad, granularity):
    w = [-1.5, 0.3, 1.25]  # LoraHub-style: negative and above 1
    soup = M.build("cat", copy.deepcopy(base), [ad["a"], ad["b"], ad["c"]], granularity=granularity,
                   parameterisation="free", init="weights", init_weights=w)
    rows = alpha_rows(soup)
    assert rows.shape == (len(M.soup_state(soup).modules), 3)
    assert torch.allclose(rows, torch.tensor(w).expand_as(rows), atol=1e-7)
    (raw,) = M.trainable_parameters(soup).values()
    assert raw.requires_grad and torch.allclose(raw, torch.tensor(w).expand_as(raw))
    assert M.describe(soup)["params"]["init_weights"] == w


def test_init_weights_softmax_keeps_the_proportions(base, ad):
    w = [0.2, 0.6, 1.2]
    soup = M.build("cat", copy.deepcopy(base), [ad["a"], ad["b"], ad["c"]], granularity="layer",
                   parameterisation="softmax", init="weights", init_weights=w)
    rows = alpha_rows(soup)
    assert torch.allclose(rows, torch.tensor([0.1, 0.3, 0.6]).expand_as(rows), atol=1e-6)


def test_init_weights_clamp_clips_and_warns(base, ad):
    inside = M.build("cat", copy.deepcopy(base), [ad["a"], ad["b"]], parameterisation="clamp",
                     init="weights", init_weights=[0.25, 0.9])
    assert torch.allclose(alpha_rows(inside), torch.tensor([0.25, 0.9]).expand(10, 2))
    with pytest.warns(UserWarning, match=r"clip\(w, 0, 1\)"):
        outside = M.build("cat", copy.deepcopy(base), [ad["a"], ad["b"]], parameterisation="clamp",
                          init="weights", init_weights=[1.3, -0.2])
    assert torch.allclose(alpha_rows(outside), torch.tensor([1.0, 0.0]).expand(10, 2))


@pytest.mark.parametrize("granularity", ["global", "layer"])
def test_init_weights_soup_equals_cat_static_and_bruteforce(base, ad, ids, granularity):
    paths, w = [ad["a"], ad["b"]], [1.1, -0.6]
    soup = M.build("cat", copy.deepcopy(base), paths, granularity=granularity, parameterisation="free",
                   init="weights", init_weights=w)
    static = M.build("cat_static", copy.deepcopy(base), paths, alphas=w)
    got = logits(soup, ids)
    assert (got - logits(static, ids)).abs().max() < ATOL
    assert (got - logits_delta(base, ids, cat_delta(paths, w))).abs().max() < ATOL
    equal = M.build("cat", copy.deepcopy(base), paths, granularity=granularity, parameterisation="free")
    assert (got - logits(equal, ids)).abs().max() > 1e-2  # the weights matter: not the default init


def test_init_weights_survive_save_and_load(base, ad, ids, tmp_path):
    soup = M.build("cat", copy.deepcopy(base), [ad["a"], ad["b"]], parameterisation="free",
                   init="weights", init_weights=[0.8, -0.3])
    again = M.load_soup(M.save_soup(soup, tmp_path / "soup"), copy.deepcopy(base))
    assert torch.equal(logits(again, ids), logits(soup, ids))


@pytest.mark.parametrize("kw,message", [
    ({"init": "weights"}, "needs init_weights"),
    ({"init": "weights", "init_weights": [0.5]}, r"init_weights has 1 values but there are 2 adapters \(\['a', 'b'\]\)"),
    ({"init": "weights", "init_weights": [0.5, 0.2, 0.3]}, "has 3 values but there are 2 adapters"),
    ({"init": "weights", "init_weights": [0.5, float("nan")], "parameterisation": "free"}, "NaN or Inf"),
    ({"init": "weights", "init_weights": [float("inf"), 0.5], "parameterisation": "free"}, "NaN or Inf"),
    ({"init": "weights", "init_weights": [0.5, -0.5]}, "softmax.*cannot represent.*parameterisation: free"),
    ({"init": "weights", "init_weights": [0.0, 1.0]}, "softmax.*cannot represent"),
    ({"init_weights": [0.5, 0.5]}, "only used with init 'weights', not with init 'equal'"),
    ({"init": "released", "init_weights": [0.5, 0.5]}, "not with init 'released'"),
    ({"init": "weight", "init_weights": [0.5, 0.5]}, "not one of"),
])
def test_init_weights_bad_input_raises_and_leaves_base_untouched(base, ad, kw, message):
    fresh = copy.deepcopy(base)
    with pytest.raises(MergeError, match=message):
        M.build("cat", fresh, [ad["a"], ad["b"]], **kw)
    assert not hasattr(fresh, "peft_config")


# --------------------------------------------------------------------------- SVD compression
FOLD_ALPHAS = [0.7, -0.4]


@pytest.fixture(scope="module")
def fold(base, ad, tmp_path_factory):
    """The exported CAT fold of a (r4) and b (r8): a rank-12 standard adapter."""
    soup = M.build("cat_static", copy.deepcopy(base), [ad["a"], ad["b"]], alphas=FOLD_ALPHAS)
    return M.export_adapter(soup, tmp_path_factory.mktemp("fold") / "a+b")


def written_delta(path: Path) -> dict[str, torch.Tensor]:
    """dW = s B A per module of a written adapter (float64)."""
    return {m: s * B @ A for m, (A, B, s) in read(path).items()}


@pytest.mark.parametrize("rank", [1, 5, 11])
def test_compressed_fold_is_the_truncated_svd(base, ad, fold, tmp_path, rank):
    report = M.compress_adapter(base, fold, tmp_path / "small", rank=rank)
    out = tmp_path / "small"
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert cfg["r"] == rank and cfg["lora_alpha"] == rank and not cfg["rank_pattern"] and not cfg["use_rslora"]
    assert json.loads((out / "lorasoups_compress.json").read_text()) == report
    assert report["rank_before"] == 12 and report["rank_after"] == rank

    original = cat_delta([ad["a"], ad["b"]], FOLD_ALPHAS)  # from the skills, not from the fold
    got = written_delta(out)
    assert set(got) == set(original) == set(report["modules"]) and len(got) == 10
    tail_all = total_all = 0.0
    for m, dw in original.items():
        ref, S = truncated(dw, rank)
        assert got[m].shape == dw.shape and (got[m] - ref).abs().max() < ATOL, m
        tail, total = float(S[rank:].square().sum()), float(S.square().sum())
        rep = report["modules"][m]
        assert rep["rank_before"] == 12 and rep["rank_after"] == rank
        assert rep["rel_error"] == pytest.approx(math.sqrt(tail / total), rel=1e-6, abs=1e-9)
        assert rep["energy_kept"] == pytest.approx(1 - tail / total, rel=1e-6, abs=1e-9)
        # Eckart-Young, measured directly on the matrices
        assert rep["rel_error"] == pytest.approx(float((dw - got[m]).norm() / dw.norm()), rel=1e-4, abs=1e-6)
        tail_all += tail
        total_all += total
    assert report["rel_error"] == pytest.approx(math.sqrt(tail_all / total_all), rel=1e-6)
    assert report["energy_kept"] == pytest.approx(1 - tail_all / total_all, rel=1e-6)
    assert 0 < report["rel_error"] < 1


def test_compressed_adapter_loads_in_peft_and_matches_bruteforce(base, ad, fold, ids, tmp_path):
    from peft import PeftModel

    rank = 6
    M.compress_adapter(base, fold, tmp_path / "r6", rank=rank)
    loaded = PeftModel.from_pretrained(copy.deepcopy(base), str(tmp_path / "r6"))
    assert loaded.peft_config["default"].r == rank
    layer = loaded.base_model.model.model.layers[1].mlp.down_proj
    assert layer.lora_A["default"].weight.shape[0] == rank
    deltas = {m: truncated(dw, rank)[0] for m, dw in cat_delta([ad["a"], ad["b"]], FOLD_ALPHAS).items()}
    assert (logits(loaded, ids) - logits_delta(base, ids, deltas)).abs().max() < 1e-4
    # and it approximates the uncompressed fold: closer than the base model is
    fold_logits = logits(PeftModel.from_pretrained(copy.deepcopy(base), str(fold)), ids)
    assert (logits(loaded, ids) - fold_logits).abs().max() < (logits(base, ids) - fold_logits).abs().max()


def test_per_module_ranks_keep_smaller_modules_exact(base, ad, tmp_path):
    from peft import PeftModel

    report = M.compress_adapter(base, ad["p"], tmp_path / "p3", rank=3)  # down_proj has r=2 < 3
    cfg = json.loads((tmp_path / "p3" / "adapter_config.json").read_text())
    assert cfg["r"] == 3 and set(cfg["rank_pattern"].values()) == {2} and set(cfg["alpha_pattern"].values()) == {2}
    loaded = PeftModel.from_pretrained(copy.deepcopy(base), str(tmp_path / "p3"))
    src = read(ad["p"])
    for m, (A, B, s) in src.items():
        dw = s * B @ A
        got = loaded.base_model.model.get_submodule(m).get_delta_weight("default").double()
        want = dw if m.endswith("down_proj") else truncated(dw, 3)[0]
        assert (got - want).abs().max() < ATOL, m
        assert report["modules"][m]["rank_after"] == (2 if m.endswith("down_proj") else 3)
    down = [v for m, v in report["modules"].items() if m.endswith("down_proj")]
    assert down and all(v["rel_error"] < 1e-6 and v["energy_kept"] == pytest.approx(1.0) for v in down)


def test_peft_svd_merge_does_not_compress_one_adapter_but_agrees_with_two(base, fold, tmp_path):
    """Why compress_adapter does its own SVD: peft turns a one-adapter "svd" merge into "linear" at
    full rank. Passing the adapter twice (weights 0.5, 0.5) reaches peft's SVD, which must then give
    the same dW as ours (and sets lora_alpha = r, scaling 1)."""
    from peft import PeftModel

    pm = PeftModel.from_pretrained(copy.deepcopy(base), str(fold), adapter_name="x")
    pm.add_weighted_adapter(["x"], [1.0], "one", combination_type="svd", svd_rank=4)
    pm.add_weighted_adapter(["x", "x"], [0.5, 0.5], "two", combination_type="svd", svd_rank=4)
    assert pm.peft_config["one"].r == 12  # svd_rank ignored
    assert pm.peft_config["two"].r == 4 and pm.peft_config["two"].lora_alpha == 4
    M.compress_adapter(base, fold, tmp_path / "r4", rank=4)
    ours = written_delta(tmp_path / "r4")
    for m, dw in ours.items():
        layer = pm.base_model.model.get_submodule(m)
        assert (layer.get_delta_weight("two").double() - dw).abs().max() < 1e-4, m


def _garble(path: Path) -> None:
    f = path / "adapter_model.safetensors"
    f.write_bytes(f.read_bytes()[:50])


@pytest.mark.parametrize("case", ["rank 0", "rank = r", "rank > r", "rank not int", "missing dir", "no config",
                                  "corrupt weights", "busy out_dir"])
def test_compress_bad_input_raises_and_writes_nothing(base, fold, tmp_path, case):
    import shutil

    src = shutil.copytree(fold, tmp_path / "src")
    rank, message = 4, None
    if case == "rank 0":
        rank, message = 0, "rank must be >= 1"
    elif case == "rank = r":
        rank, message = 12, "has rank 12; rank 12 is not below it, so there is nothing to compress"
    elif case == "rank > r":
        rank, message = 20, "nothing to compress"
    elif case == "rank not int":
        rank, message = 2.5, "rank must be an integer"
    elif case == "missing dir":
        src, message = tmp_path / "nope", "directory does not exist"
    elif case == "no config":
        (src / "adapter_config.json").unlink()
        message = "no adapter_config.json"
    elif case == "corrupt weights":
        _garble(src)
        message = "unreadable"
    elif case == "busy out_dir":
        (tmp_path / "out").mkdir()
        (tmp_path / "out" / "keep.txt").write_text("mine")
        message = "already exists and is not empty"
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(MergeError, match=message):
        M.compress_adapter(base, src, tmp_path / "out", rank=rank)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_compress_overwrite_replaces_the_directory(base, fold, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("old")
    M.compress_adapter(base, fold, tmp_path / "out", rank=2, overwrite=True)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "adapter_config.json", "adapter_model.safetensors", "lorasoups_compress.json"
    ]
