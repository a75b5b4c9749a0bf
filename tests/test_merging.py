"""The soup engine against brute-force references computed straight from the adapter files.

Skill adapters are real PEFT adapters of the tiny random Llama (random non-zero B). Every
reference below reads adapter_model.safetensors / adapter_config.json itself and either adds dW
to a copy of the base weights or adds the LoRA term with forward hooks on the base's nn.Linear
layers; none of it calls lorasoups.merging.
"""
from __future__ import annotations

import copy
import itertools
import json
import shutil
from pathlib import Path

import pytest
import torch
from lora_factory import TARGETS
from lora_factory import make_adapter as _make_adapter
from safetensors.torch import load_file, save_file

import lorasoups.merging as M
from lorasoups.merging import MergeError

ATOL = 1e-5

#: A random (non-equal) start for each learned soup: CAT's released-code logits, MoE's normal routers.
RANDOM_INIT = {"cat": "released", "moe": "normal"}


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def base(tiny):
    model, _ = tiny
    return model


@pytest.fixture(scope="module")
def tokenizer(tiny):
    return tiny[1]


@pytest.fixture(scope="module")
def ad(base, tmp_path_factory):
    """Skill adapters: a r4/s2, b r8/s1, c r4/s1, d r4/s2, qv (q,v only)."""
    root = tmp_path_factory.mktemp("skills")
    return {
        "a": _make_adapter(base, root / "a", 4, 8, 1),
        "b": _make_adapter(base, root / "b", 8, 8, 2),
        "c": _make_adapter(base, root / "c", 4, 4, 3),
        "d": _make_adapter(base, root / "d", 4, 8, 4),
        "qv": _make_adapter(base, root / "qv", 4, 8, 5, targets=["q_proj", "v_proj"]),
    }


@pytest.fixture(scope="module")
def ids():
    return torch.randint(0, 2000, (2, 9), generator=torch.Generator().manual_seed(0))


# --------------------------------------------------------------------------- brute-force references
def read(path: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor, float]]:
    """module -> (A, B, s) straight from the files (s = lora_alpha / r)."""
    cfg = json.loads((path / "adapter_config.json").read_text())
    sd = load_file(str(path / "adapter_model.safetensors"))
    out = {}
    for key, a in sd.items():
        if ".lora_A." in key:
            mod = key.removeprefix("base_model.model.").removesuffix(".lora_A.weight")
            b = sd[key.replace("lora_A", "lora_B")]
            out[mod] = (a.float(), b.float(), cfg["lora_alpha"] / a.shape[0])  # peft: alpha / module rank
    return out


def logits_delta(base, ids, deltas: dict[str, torch.Tensor]) -> torch.Tensor:
    """Logits of the base with W += dW at each module."""
    model = copy.deepcopy(base)
    with torch.no_grad():
        for mod, dw in deltas.items():
            model.get_submodule(mod).weight += dw
        return model(ids).logits


def logits_hooks(base, ids, fns) -> torch.Tensor:
    """Logits of the base with output += fn(x) at each module (input-dependent references)."""
    model = copy.deepcopy(base)
    for mod, fn in fns.items():
        model.get_submodule(mod).register_forward_hook(lambda m, inp, out, fn=fn: out + fn(inp[0]))
    with torch.no_grad():
        return model(ids).logits


def logits(model, ids) -> torch.Tensor:
    with torch.no_grad():
        return model(ids).logits


def layer_of(mod: str) -> int:
    return int(mod.split(".")[2])  # model.layers.N....


def group_index(mods: list[str], granularity: str) -> list[int]:
    if granularity == "global":
        return [0] * len(mods)
    if granularity == "layer":
        return [layer_of(m) for m in mods]
    return list(range(len(mods)))


# --------------------------------------------------------------------------- registry
def test_registry_names_methods_with_papers():
    for name in ["cat", "cat_static", "linear", "ties", "dare", "moe", "lorahub"]:
        assert name in M.METHODS
    for name, method in M.METHODS.items():
        assert method.name == name and method.url.startswith("https://") and method.paper and method.description
    assert M.METHODS["cat"].learnable and M.METHODS["moe"].learnable and not M.METHODS["moe"].exportable


# --------------------------------------------------------------------------- CAT
@pytest.mark.parametrize("granularity", ["global", "layer", "module"])
@pytest.mark.parametrize("parameterisation", ["softmax", "free", "clamp"])
def test_cat_learned_matches_bruteforce_k3_mixed_ranks(base, ad, ids, granularity, parameterisation):
    paths = [ad["a"], ad["b"], ad["c"]]  # ranks 4, 8, 4
    soup = M.build("cat", copy.deepcopy(base), paths, granularity=granularity, parameterisation=parameterisation)
    (alphas,) = M.trainable_parameters(soup).values()
    mods = sorted(read(ad["a"]))
    n_groups = {"global": 1, "layer": 2, "module": len(mods)}[granularity]
    assert alphas.shape == (n_groups, 3)
    raw = torch.randn(n_groups, 3, generator=torch.Generator().manual_seed(7)) * 0.8 + 0.3
    with torch.no_grad():
        alphas.copy_(raw)
    alpha = {"softmax": raw.softmax(-1), "free": raw, "clamp": raw.clamp(0, 1)}[parameterisation]
    skills = [read(p) for p in paths]
    deltas = {}
    for m, g in zip(mods, group_index(mods, granularity)):
        deltas[m] = sum(alpha[g, k] * s[m][2] * s[m][1] @ s[m][0] for k, s in enumerate(skills))
    ref = logits_delta(base, ids, deltas)
    assert (logits(soup, ids) - ref).abs().max() < ATOL
    assert (ref - logits(base, ids)).abs().max() > 1e-2  # the soup does something


def test_cat_equal_init_is_uniform_and_released_init_is_seeded(base, ad):
    soup = M.build("cat", copy.deepcopy(base), [ad["a"], ad["b"], ad["c"]], granularity="layer")
    table = M.alphas_table(soup)
    assert len(table) == 10 * 3 and all(abs(r["alpha"] - 1 / 3) < 1e-7 for r in table)
    s1 = M.build("cat", copy.deepcopy(base), [ad["a"], ad["b"]], init="released", seed=3)
    s2 = M.build("cat", copy.deepcopy(base), [ad["a"], ad["b"]], init="released", seed=3)
    w1, w2 = (next(iter(M.trainable_parameters(s).values())) for s in (s1, s2))
    assert torch.equal(w1, w2) and w1.std() > 0.1


def test_cat_static_per_layer_table_and_peft_cat_agree(base, ad, ids):
    paths = [ad["a"], ad["b"]]
    table = [[0.5, 0.5], [0.2, 0.9]]  # layer 0, layer 1
    soup = M.build("cat_static", copy.deepcopy(base), paths, alphas=table, granularity="layer")
    assert M.trainable_parameters(soup) == {}
    assert not any(p.requires_grad for p in soup.parameters())
    skills = [read(p) for p in paths]
    mods = sorted(skills[0])
    deltas = {m: sum(table[layer_of(m)][k] * s[m][2] * s[m][1] @ s[m][0] for k, s in enumerate(skills)) for m in mods}
    assert (logits(soup, ids) - logits_delta(base, ids, deltas)).abs().max() < ATOL

    # global alphas: the same fold as peft's own add_weighted_adapter(combination_type="cat")
    from peft import PeftModel

    soup = M.build("cat_static", copy.deepcopy(base), paths, alphas=[0.5, 0.5])
    pm = PeftModel.from_pretrained(copy.deepcopy(base), str(paths[0]), adapter_name="x")
    pm.load_adapter(str(paths[1]), adapter_name="y")
    pm.add_weighted_adapter(["x", "y"], [0.5, 0.5], "cat", combination_type="cat")
    pm.set_adapter("cat")
    assert (logits(soup, ids) - logits(pm, ids)).abs().max() < ATOL


# --------------------------------------------------------------------------- factor-space merges (peft)
def ref_prune_magnitude(t: torch.Tensor, density: float) -> torch.Tensor:
    keep = t.abs().flatten().argsort(descending=True)[: int(density * t.numel())]
    mask = torch.zeros(t.numel())
    mask[keep] = 1
    return t * mask.view_as(t)


def ref_ties(ts: list[torch.Tensor], w: list[float], density: float) -> torch.Tensor:
    """TIES (Yadav et al. 2023): trim by magnitude, elect the sign of the summed trimmed values,
    average the weighted entries that agree with it."""
    trimmed = torch.stack([ref_prune_magnitude(t, density) for t in ts])
    elected = torch.where(trimmed.sum(0) >= 0, 1.0, -1.0)
    agree = (trimmed.sign() == elected).float()
    weighted = trimmed * torch.tensor(w).view(-1, 1, 1)
    return (weighted * agree).sum(0) / agree.sum(0).clamp(min=1)


EQUAL = ["a", "c", "d"]  # all rank 4; scalings 2, 1, 2
ALPHAS = [0.6, 0.9, 0.4]


@pytest.mark.parametrize("method", ["linear", "ties", "magnitude_prune", "dare_density1"])
def test_factor_space_merges_match_bruteforce_k3(base, ad, ids, method):
    skills = [read(ad[n]) for n in EQUAL]
    kw = {"ties": {"density": 0.5}, "magnitude_prune": {"density": 0.5}, "dare_density1": {"density": 1.0}}
    build_name = "dare" if method == "dare_density1" else method
    soup = M.build(build_name, copy.deepcopy(base), [ad[n] for n in EQUAL], alphas=ALPHAS, **kw.get(method, {}))
    deltas = {}
    for m in sorted(skills[0]):
        w = [a * s[m][2] ** 0.5 for a, s in zip(ALPHAS, skills)]  # alpha on each factor, sqrt(s) each
        As, Bs = [s[m][0] for s in skills], [s[m][1] for s in skills]
        if method == "ties":
            A, B = ref_ties(As, w, 0.5), ref_ties(Bs, w, 0.5)
        elif method == "magnitude_prune":
            A = sum(wi * ref_prune_magnitude(t, 0.5) for wi, t in zip(w, As))
            B = sum(wi * ref_prune_magnitude(t, 0.5) for wi, t in zip(w, Bs))
        else:  # linear; DARE with density 1 keeps everything
            A, B = sum(wi * t for wi, t in zip(w, As)), sum(wi * t for wi, t in zip(w, Bs))
        deltas[m] = B @ A
    assert (logits(soup, ids) - logits_delta(base, ids, deltas)).abs().max() < ATOL


def test_linear_is_the_papers_formula_for_equal_scaling(base, ad, ids):
    a, d = read(ad["a"]), read(ad["d"])  # both s = 2
    soup = M.build("linear", copy.deepcopy(base), [ad["a"], ad["d"]], alphas=[0.5, 0.5])
    deltas = {m: 2 * (0.5 * a[m][1] + 0.5 * d[m][1]) @ (0.5 * a[m][0] + 0.5 * d[m][0]) for m in a}
    assert (logits(soup, ids) - logits_delta(base, ids, deltas)).abs().max() < ATOL


def test_dare_drops_at_random_with_rescale_and_is_seeded(base, ad):
    skills = [read(ad[n]) for n in EQUAL]
    soup = M.build("dare", copy.deepcopy(base), [ad[n] for n in EQUAL], alphas=ALPHAS, density=0.5, seed=1)
    m = "model.layers.1.mlp.down_proj"
    merged = soup.base_model.model.get_submodule(m).lora_A["default"].weight.detach()
    w = [a * s[m][2] ** 0.5 for a, s in zip(ALPHAS, skills)]
    terms = torch.stack([wi * s[m][0] / 0.5 for wi, s in zip(w, skills)])  # kept entries are rescaled 1/density
    subsets = [torch.tensor(c, dtype=torch.float32) for c in itertools.product([0, 1], repeat=3)]
    candidates = torch.stack([(c.view(-1, 1, 1) * terms).sum(0) for c in subsets])
    assert (candidates - merged).abs().min(0).values.max() < 1e-5  # each entry = some subset kept
    linear = sum(wi * s[m][0] for wi, s in zip(w, skills))
    assert (merged - linear).abs().max() > 1e-2  # something was dropped
    again = M.build("dare", copy.deepcopy(base), [ad[n] for n in EQUAL], alphas=ALPHAS, density=0.5, seed=1)
    other = M.build("dare", copy.deepcopy(base), [ad[n] for n in EQUAL], alphas=ALPHAS, density=0.5, seed=2)
    get = lambda s: s.base_model.model.get_submodule(m).lora_A["default"].weight  # noqa: E731
    assert torch.equal(get(again), merged) and not torch.equal(get(other), merged)


def test_svd_with_full_rank_is_the_exact_dw_sum(base, ad, ids):
    skills = [read(ad[n]) for n in EQUAL]
    soup = M.build("svd", copy.deepcopy(base), [ad[n] for n in EQUAL], alphas=ALPHAS, svd_rank=12)
    deltas = {m: sum(a * s[m][2] * s[m][1] @ s[m][0] for a, s in zip(ALPHAS, skills)) for m in skills[0]}
    assert (logits(soup, ids) - logits_delta(base, ids, deltas)).abs().max() < 1e-4


# --------------------------------------------------------------------------- LoraHub
def test_lorahub_set_weights_matches_summed_factors(base, ad, ids):
    soup = M.build("lorahub", copy.deepcopy(base), [ad["a"], ad["d"]])
    a, d = read(ad["a"]), read(ad["d"])
    for w in ([0.3, -0.7], [1.2, 0.1]):  # the second call must replace, not accumulate
        M.set_weights(soup, w)
    w = [1.2, 0.1]
    deltas = {m: 2 * (w[0] * a[m][1] + w[1] * d[m][1]) @ (w[0] * a[m][0] + w[1] * d[m][0]) for m in a}
    assert (logits(soup, ids) - logits_delta(base, ids, deltas)).abs().max() < ATOL
    assert [r["alpha"] for r in M.alphas_table(soup)[:2]] == pytest.approx(w)


# --------------------------------------------------------------------------- MoE
@pytest.mark.parametrize("granularity,top_k", [("module", None), ("module", 1), ("layer", 2)])
def test_moe_matches_bruteforce_routing(base, ad, ids, granularity, top_k):
    paths = [ad["a"], ad["b"], ad["c"]]  # mixed ranks
    soup = M.build("moe", copy.deepcopy(base), paths, granularity=granularity, top_k=top_k)
    gen = torch.Generator().manual_seed(5)
    routers = {}
    with torch.no_grad():
        for name, p in M.trainable_parameters(soup).items():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
            routers[name.removeprefix("base_model.model.").removesuffix(".lorasoup_router.weight")] = p.clone()
    skills = [read(p) for p in paths]
    mods = sorted(skills[0])
    ref_model = copy.deepcopy(base)
    layer_inputs: dict[int, torch.Tensor] = {}
    if granularity == "layer":
        for i, block in enumerate(ref_model.model.layers):
            block.register_forward_pre_hook(
                lambda mod, args, kwargs, i=i: layer_inputs.__setitem__(i, args[0] if args else kwargs["hidden_states"]),
                with_kwargs=True,
            )

    def gates(logit):
        if top_k is None:
            return logit.softmax(-1)
        kth = logit.topk(top_k, -1).values[..., -1:]
        return logit.masked_fill(logit < kth, float("-inf")).softmax(-1)

    def fn(m):
        def delta(x):
            if granularity == "module":
                g = gates(x @ routers[m].T)
            else:
                g = gates(layer_inputs[layer_of(m)] @ routers[f"model.layers.{layer_of(m)}"].T)
            return sum(g[..., k : k + 1] * s[m][2] * (x @ s[m][0].T @ s[m][1].T) for k, s in enumerate(skills))

        return delta

    for m in mods:
        delta = fn(m)
        ref_model.get_submodule(m).register_forward_hook(lambda mod, inp, out, f=delta: out + f(inp[0]))
    with torch.no_grad():
        ref = ref_model(ids).logits
    assert (logits(soup, ids) - ref).abs().max() < ATOL


def test_moe_routers_sized_by_module_input(base, ad):
    soup = M.build("moe", copy.deepcopy(base), [ad["a"], ad["b"]])
    shapes = {n.split(".")[-3]: tuple(p.shape) for n, p in M.trainable_parameters(soup).items()}
    assert shapes["down_proj"] == (2, base.config.intermediate_size)
    assert shapes["q_proj"] == (2, base.config.hidden_size)
    assert len(M.trainable_parameters(soup)) == 10


# --------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("method", ["cat", "moe"])
def test_gradients_reach_only_alphas_or_routers(base, ad, ids, method):
    soup = M.build(method, copy.deepcopy(base), [ad["a"], ad["b"], ad["c"]], init=RANDOM_INIT[method])
    soup.train()
    trainable = M.trainable_parameters(soup)
    assert {n for n, p in soup.named_parameters() if p.requires_grad} == set(trainable)
    gate = soup.base_model.model.model.layers[0].mlp.gate_proj.weight
    assert not gate.requires_grad
    loss = soup(ids, labels=ids).loss
    if method == "moe":
        balance = M.load_balancing_loss(soup)
        assert balance.item() >= 1.0 - 1e-6  # 1 only for perfectly balanced routing
        loss = loss + 0.01 * balance
    loss.backward()
    with_grad = {n for n, p in soup.named_parameters() if p.grad is not None}
    assert with_grad == set(trainable)
    assert all(p.grad.abs().sum() > 0 for p in trainable.values())
    # one optimiser step changes the soup's function
    before = logits(soup.eval(), ids)
    torch.optim.SGD(trainable.values(), lr=1.0).step()
    assert (logits(soup, ids) - before).abs().max() > 1e-5


def test_balance_loss_and_gate_table_for_uniform_routing(base, ad, ids):
    soup = M.build("moe", copy.deepcopy(base), [ad["a"], ad["b"], ad["c"]])
    with pytest.raises(MergeError, match="no forward pass has run yet"):
        M.load_balancing_loss(soup)
    logits(soup, ids)
    assert M.load_balancing_loss(soup).item() == pytest.approx(1.0)
    rows = M.gate_table(soup)
    assert len(rows) == 10 * 3 and all(r["mean_gate"] == pytest.approx(1 / 3) for r in rows)


def test_balance_loss_matches_hand_computation(base, ad, ids):
    soup = M.build("moe", copy.deepcopy(base), [ad["a"], ad["b"]], granularity="layer", init="normal", seed=1)
    inputs = {}
    for i, block in enumerate(soup.base_model.model.model.layers):
        block.register_forward_pre_hook(lambda m, a, kw, i=i: inputs.__setitem__(i, a[0] if a else kw["hidden_states"]),
                                        with_kwargs=True)
    logits(soup, ids)
    expect = []
    for i in range(2):
        w = dict(M.trainable_parameters(soup))[f"base_model.model.model.layers.{i}.lorasoup_router.weight"]
        p = (inputs[i].reshape(-1, 64) @ w.T).softmax(-1)
        f = torch.nn.functional.one_hot(p.argmax(-1), 2).float().mean(0)
        expect.append(2 * (f * p.mean(0)).sum())
    assert M.load_balancing_loss(soup).item() == pytest.approx(float(sum(expect).detach() / 2), abs=1e-6)


# --------------------------------------------------------------------------- export (the fold)
def test_cat_export_is_exact_fold_and_merges(base, ad, ids, tmp_path):
    from peft import PeftModel

    paths = [ad["a"], ad["b"], ad["c"]]
    soup = M.build("cat", copy.deepcopy(base), paths, granularity="module", init="released", seed=2)
    out = M.export_adapter(soup, tmp_path / "folded")
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA" and cfg["r"] == 16 and cfg["lora_alpha"] == 16
    sd = load_file(str(out / "adapter_model.safetensors"))
    skills = [read(p) for p in paths]
    m = "model.layers.0.mlp.down_proj"
    assert torch.equal(sd[f"base_model.model.{m}.lora_A.weight"], torch.cat([s[m][0] for s in skills]))
    soup_logits = logits(soup, ids)
    loaded = PeftModel.from_pretrained(copy.deepcopy(base), str(out))
    assert (logits(loaded, ids) - soup_logits).abs().max() < 1e-4
    merged = loaded.merge_and_unload()
    assert (logits(merged, ids) - soup_logits).abs().max() < 1e-4


def test_cat_with_per_module_ranks_exports_with_rank_pattern(base, ad, ids, tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model

    torch.manual_seed(9)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS, rank_pattern={"down_proj": 2}, init_lora_weights=False)
    get_peft_model(copy.deepcopy(base), cfg).save_pretrained(str(tmp_path / "patterned"))
    paths = [ad["a"], tmp_path / "patterned"]
    soup = M.build("cat", copy.deepcopy(base), paths, granularity="module", init="released")
    skills = [read(p) for p in paths]
    alpha = next(iter(M.trainable_parameters(soup).values())).detach().softmax(-1)
    deltas = {m: sum(alpha[i, k] * s[m][2] * s[m][1] @ s[m][0] for k, s in enumerate(skills))
              for i, m in enumerate(sorted(skills[0]))}
    assert (logits(soup, ids) - logits_delta(base, ids, deltas)).abs().max() < ATOL
    out = M.export_adapter(soup, tmp_path / "folded")
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert {cfg["r"], *cfg["rank_pattern"].values()} == {6, 8}  # down_proj 4 + 2, the others 4 + 4
    loaded = PeftModel.from_pretrained(copy.deepcopy(base), str(out))
    assert (logits(loaded, ids) - logits(soup, ids)).abs().max() < 1e-4


@pytest.mark.parametrize("method,paths,kw", [
    ("ties", EQUAL, {"density": 0.5}),
    ("lorahub", ["a", "d"], {"alphas": [0.4, 0.8]}),
    ("cat_static", ["a", "b"], {"alphas": [0.5, 0.5]}),
])
def test_static_soups_export_as_standard_adapters(base, ad, ids, tmp_path, method, paths, kw):
    from peft import PeftModel

    soup = M.build(method, copy.deepcopy(base), [ad[n] for n in paths], **kw)
    out = M.export_adapter(soup, tmp_path / method)
    loaded = PeftModel.from_pretrained(copy.deepcopy(base), str(out))
    assert (logits(loaded, ids) - logits(soup, ids)).abs().max() < 1e-4


def test_export_refuses_moe_and_existing_dirs_and_writes_nothing(base, ad, tmp_path):
    soup = M.build("moe", copy.deepcopy(base), [ad["a"], ad["b"]])
    with pytest.raises(MergeError, match="cannot be written as one LoRA adapter"):
        M.export_adapter(soup, tmp_path / "moe")
    assert list(tmp_path.iterdir()) == []
    cat = M.build("cat", copy.deepcopy(base), [ad["a"], ad["b"]])
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    with pytest.raises(MergeError, match="already exists and is not empty"):
        M.export_adapter(cat, tmp_path / "busy")
    assert [p.name for p in (tmp_path / "busy").iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy"]


# --------------------------------------------------------------------------- save / load
@pytest.mark.parametrize("method,paths,kw", [
    ("cat", ["a", "b", "c"], {"granularity": "module", "parameterisation": "free"}),
    ("moe", ["a", "b", "c"], {"init": "normal", "top_k": 2}),
    ("lorahub", ["a", "d"], {}),
    ("dare", EQUAL, {"density": 0.4, "seed": 3}),
])
def test_save_load_round_trip_is_exact(base, ad, ids, tmp_path, method, paths, kw):
    soup = M.build(method, copy.deepcopy(base), [ad[n] for n in paths], **kw)
    if method == "lorahub":
        M.set_weights(soup, [0.9, -0.2])
    for p in M.trainable_parameters(soup).values():  # as if trained
        with torch.no_grad():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)) * 0.3)
    saved = M.save_soup(soup, tmp_path / "soup")
    again = M.load_soup(saved, copy.deepcopy(base))
    assert torch.equal(logits(again, ids), logits(soup, ids))
    assert M.soup_state(again).params == M.soup_state(soup).params


def test_load_soup_rejects_changed_adapter(base, ad, tmp_path):
    skill = shutil.copytree(ad["b"], tmp_path / "b")
    soup = M.build("cat", copy.deepcopy(base), [ad["a"], skill])
    saved = M.save_soup(soup, tmp_path / "soup")
    sd = load_file(str(skill / "adapter_model.safetensors"))
    first = next(iter(sd))
    sd[first] = sd[first] * 2
    save_file(sd, str(skill / "adapter_model.safetensors"))
    fresh = copy.deepcopy(base)
    with pytest.raises(MergeError, match="has changed since the soup was saved"):
        M.load_soup(saved, fresh)
    assert not hasattr(fresh, "peft_config")


def test_save_pretrained_writes_the_soup_not_peft_internals(base, ad, ids, tmp_path):
    """Trainer checkpoints call save_pretrained: the folder must hold the fold and the recipe."""
    from peft import PeftModel

    soup = M.build("cat", copy.deepcopy(base), [ad["a"], ad["b"]], init="released", seed=5)
    ckpt = tmp_path / "checkpoint-1"
    ckpt.mkdir()
    (ckpt / "trainer_state.json").write_text("{}")  # a checkpoint folder is not empty
    soup.save_pretrained(str(ckpt), state_dict={}, safe_serialization=True)
    sd = load_file(str(ckpt / "adapter_model.safetensors"))
    assert all(k.endswith((".lora_A.weight", ".lora_B.weight")) for k in sd)
    assert (ckpt / "trainer_state.json").read_text() == "{}"
    folded = PeftModel.from_pretrained(copy.deepcopy(base), str(ckpt))
    assert (logits(folded, ids) - logits(soup, ids)).abs().max() < 1e-4
    assert torch.equal(logits(M.load_soup(ckpt, copy.deepcopy(base)), ids), logits(soup, ids))

    moe = M.build("moe", copy.deepcopy(base), [ad["a"], ad["b"]], init="normal")
    moe.save_pretrained(str(tmp_path / "moe"))
    assert not (tmp_path / "moe" / "adapter_model.safetensors").exists()
    assert torch.equal(logits(M.load_soup(tmp_path / "moe", copy.deepcopy(base)), ids), logits(moe, ids))
    with pytest.raises(MergeError, match="cannot be merged into the base weights"):
        moe.merge_and_unload()


def test_cat_soup_merges_into_base_in_place(base, ad, ids):
    soup = M.build("cat", copy.deepcopy(base), [ad["a"], ad["b"], ad["c"]], granularity="module", init="released")
    expect = logits(soup, ids)
    merged = soup.merge_and_unload()
    assert (logits(merged, ids) - expect).abs().max() < 1e-4


def test_trainer_learns_alphas_and_checkpoints_reload(base, ad, tmp_path):
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    soup = M.build("cat", copy.deepcopy(base), [ad["a"], ad["b"]], init="released")
    ids = torch.randint(0, 2000, (4, 8), generator=torch.Generator().manual_seed(1)).tolist()
    args = TrainingArguments(output_dir=str(tmp_path / "run"), max_steps=2, per_device_train_batch_size=2,
                             learning_rate=0.1, save_steps=2, report_to=[], use_cpu=True, disable_tqdm=True)
    (alphas,) = M.trainable_parameters(soup).values()
    before = alphas.detach().clone()
    Trainer(model=soup, args=args, train_dataset=Dataset.from_dict({"input_ids": ids, "labels": ids})).train()
    assert (alphas - before).abs().max() > 1e-4
    again = M.load_soup(tmp_path / "run" / "checkpoint-2", copy.deepcopy(base))
    assert torch.equal(next(iter(M.trainable_parameters(again).values())), alphas)


def test_set_weights_on_static_cat(base, ad, ids):
    soup = M.build("cat_static", copy.deepcopy(base), [ad["a"], ad["b"]])
    M.set_weights(soup, [0.25, 1.5])
    direct = M.build("cat_static", copy.deepcopy(base), [ad["a"], ad["b"]], alphas=[0.25, 1.5])
    assert torch.equal(logits(soup, ids), logits(direct, ids))
    with pytest.raises(MergeError, match="has no weights to set"):
        M.set_weights(M.build("cat", copy.deepcopy(base), [ad["a"], ad["b"]]), [0.5, 0.5])


@pytest.mark.parametrize("method", ["cat", "moe"])
def test_bfloat16_base(base, ad, ids, method):
    f32 = M.build(method, copy.deepcopy(base), [ad["a"], ad["b"]], init=RANDOM_INIT[method])
    b16 = M.build(method, copy.deepcopy(base).to(torch.bfloat16), [ad["a"], ad["b"]], init=RANDOM_INIT[method])
    out = b16(ids, labels=ids)
    assert out.logits.dtype == torch.bfloat16
    assert (out.logits.float() - logits(f32, ids)).abs().max() < 0.1
    out.loss.backward()
    assert all(p.grad is not None for p in M.trainable_parameters(b16).values())


# --------------------------------------------------------------------------- alphas table, plot, generate
def test_alphas_table_and_heatmap(base, ad, tmp_path):
    soup = M.build("cat", copy.deepcopy(base), [ad["a"], ad["b"]], granularity="layer", init="released", seed=4)
    (raw,) = M.trainable_parameters(soup).values()
    expect = raw.detach().softmax(-1)
    rows = M.alphas_table(soup)
    assert len(rows) == 10 * 2
    for r in rows:
        assert r["alpha"] == pytest.approx(float(expect[r["layer"], ["a", "b"].index(r["skill"])]), abs=1e-6)
        assert r["group"] == f"layer {r['layer']}"
    png = M.plot_alphas(soup, tmp_path / "fig" / "alphas.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_clamp_projection_and_describe(base, ad):
    soup = M.build("cat", copy.deepcopy(base), [ad["a"], ad["b"]], parameterisation="clamp", granularity="global")
    (w,) = M.trainable_parameters(soup).values()
    with torch.no_grad():
        w.copy_(torch.tensor([[-0.5, 1.7]]))
    assert [r["alpha"] for r in M.alphas_table(soup)[:2]] == [0.0, 1.0]
    M.project_alphas_(soup)
    assert w.tolist() == [[0.0, 1.0]]
    info = M.describe(soup)
    assert info["method"] == "cat" and info["n_trainable"] == 2 and info["params"]["parameterisation"] == "clamp"
    assert [s["ranks"] for s in info["skills"]] == [[4], [8]]
    json.dumps(info)  # JSON-able, for write_result


def test_soup_generates(base, ad, tokenizer):
    soup = M.build("cat", copy.deepcopy(base), [ad["a"], ad["b"]])
    batch = tokenizer(["hello there", "hi"], return_tensors="pt", padding=True)
    out = soup.generate(**batch, max_new_tokens=4, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert out.shape == (2, batch["input_ids"].shape[1] + 4)


# --------------------------------------------------------------------------- bad input
def test_base_model_used_twice_is_refused(base, ad):
    fresh = copy.deepcopy(base)
    M.build("cat", fresh, [ad["a"], ad["b"]])
    with pytest.raises(MergeError, match="already carries peft adapters"):
        M.build("linear", fresh, [ad["a"], ad["c"]])
    with pytest.raises(MergeError, match="expected a soup built by lorasoups.merging.build"):
        M.export_adapter(base, "unused")


def _copy(ad, name, tmp_path, new) -> Path:
    return shutil.copytree(ad[name], tmp_path / new)


def _edit_config(path: Path, **changes) -> Path:
    cfg = json.loads((path / "adapter_config.json").read_text())
    cfg.update(changes)
    (path / "adapter_config.json").write_text(json.dumps(cfg))
    return path


def _edit_tensor(path: Path, fn) -> Path:
    sd = load_file(str(path / "adapter_model.safetensors"))
    key = sorted(sd)[0]
    sd[key] = fn(sd[key])
    save_file(sd, str(path / "adapter_model.safetensors"))
    return path


def _shrunk(ad, t, name):
    return _edit_tensor(_copy(ad, name, t, f"{name}-shrunk"), lambda v: torch.ones(v.shape[0], 40))


# case -> (adapters, method, params, message, the last adapter is the culprit and is named)
BAD = {
    "different base model": (lambda ad, t: [ad["a"], _edit_config(_copy(ad, "b", t, "x"), base_model_name_or_path="other")],
                             "cat", {}, "different base models", True),
    "different shapes": (lambda ad, t: [ad["a"], _shrunk(ad, t, "b")], "cat", {}, "does not match", True),
    "shapes unlike the base": (lambda ad, t: [_shrunk(ad, t, "a"), _shrunk(ad, t, "b")], "cat", {},
                               "does not fit the base model", False),
    "different target modules": (lambda ad, t: [ad["a"], ad["qv"]], "cat", {}, "adapts different target modules", True),
    "missing directory": (lambda ad, t: [ad["a"], t / "nope"], "cat", {}, "directory does not exist", True),
    "missing config": (lambda ad, t: [ad["a"], _rm(_copy(ad, "b", t, "x"), "adapter_config.json")], "cat", {},
                       "no adapter_config.json", True),
    "missing weights": (lambda ad, t: [ad["a"], _rm(_copy(ad, "b", t, "x"), "adapter_model.safetensors")], "cat", {},
                        "no adapter_model.safetensors", True),
    "corrupt weights": (lambda ad, t: [ad["a"], _garble(_copy(ad, "b", t, "x"))], "cat", {}, "unreadable", True),
    "corrupt config": (lambda ad, t: [ad["a"], _write(_copy(ad, "b", t, "x"), "adapter_config.json", "{oops")], "cat",
                       {}, "not valid JSON", True),
    "not a LoRA": (lambda ad, t: [ad["a"], _edit_config(_copy(ad, "b", t, "x"), peft_type="IA3")], "cat", {},
                   "peft_type is 'IA3'", True),
    "DoRA": (lambda ad, t: [ad["a"], _edit_config(_copy(ad, "b", t, "x"), use_dora=True)], "cat", {}, "DoRA", True),
    "NaN weights": (lambda ad, t: [ad["a"], _edit_tensor(_copy(ad, "b", t, "x"), lambda v: v * float("nan"))], "cat",
                    {}, "contains NaN", True),
    "Inf weights": (lambda ad, t: [ad["a"], _edit_tensor(_copy(ad, "b", t, "x"), lambda v: v + float("inf"))], "moe",
                    {}, "contains Inf", True),
    "one adapter": (lambda ad, t: [ad["a"]], "cat", {}, "at least 2 adapters", False),
    "alphas length cat_static": (lambda ad, t: [ad["a"], ad["b"]], "cat_static", {"alphas": [1, 2, 3]},
                                 "alphas has 3 values but there are 2 adapters", False),
    "alphas table shape": (lambda ad, t: [ad["a"], ad["b"]], "cat_static",
                           {"alphas": [[1, 2]] * 3, "granularity": "layer"}, r"alphas has shape \(3, 2\)", False),
    "alphas length linear": (lambda ad, t: [ad["a"], ad["c"]], "linear", {"alphas": [1.0]},
                             "alphas has 1 values but there are 2 adapters", False),
    "alphas length lorahub": (lambda ad, t: [ad["a"], ad["d"]], "lorahub", {"alphas": [1.0]},
                              "alphas has 1 values but there are 2 adapters", False),
    "negative linear alphas": (lambda ad, t: [ad["a"], ad["c"]], "linear", {"alphas": [1.0, -1.0]},
                               "alphas must be >= 0", False),
    "unequal ranks linear": (lambda ad, t: [ad["a"], ad["b"]], "linear", {}, "needs adapters of equal rank", False),
    "unequal ranks ties": (lambda ad, t: [ad["a"], ad["b"]], "ties", {"density": 0.5}, "needs adapters of equal rank",
                           False),
    "unequal ranks dare": (lambda ad, t: [ad["a"], ad["b"]], "dare", {"density": 0.5}, "needs adapters of equal rank",
                           False),
    "unequal scalings lorahub": (lambda ad, t: [ad["a"], ad["c"]], "lorahub", {}, "needs equal scalings", False),
    "ties without density": (lambda ad, t: [ad["a"], ad["c"]], "ties", {}, "needs density", False),
    "density out of range": (lambda ad, t: [ad["a"], ad["c"]], "dare", {"density": 1.5}, r"density must be in \(0, 1\]",
                             False),
    "top_k too large": (lambda ad, t: [ad["a"], ad["b"]], "moe", {"top_k": 3}, "top_k must be between 1", False),
    "unknown method": (lambda ad, t: [ad["a"], ad["b"]], "tie", {}, "did you mean 'ties'", False),
    "unknown parameter": (lambda ad, t: [ad["a"], ad["b"]], "cat", {"granularty": "layer"}, "did you mean 'granularity'",
                          False),
    "bad granularity": (lambda ad, t: [ad["a"], ad["b"]], "cat", {"granularity": "block"}, "not one of", False),
}


def _rm(path: Path, name: str) -> Path:
    (path / name).unlink()
    return path


def _write(path: Path, name: str, text: str) -> Path:
    (path / name).write_text(text)
    return path


def _garble(path: Path) -> Path:
    f = path / "adapter_model.safetensors"
    f.write_bytes(f.read_bytes()[:50])
    return path


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_raises_clear_error_and_touches_nothing(base, ad, tmp_path, case):
    make, method, kw, message, names_culprit = BAD[case]
    adapters = make(ad, tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    fresh = copy.deepcopy(base)
    with pytest.raises(MergeError, match=message) as err:
        M.build(method, fresh, adapters, **kw)
    if names_culprit:
        assert str(adapters[-1]) in str(err.value)
    assert not hasattr(fresh, "peft_config")  # base model untouched
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written
