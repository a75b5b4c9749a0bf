"""Regenerate the stage notebooks' cells from one place (run after changing a stage's sections).

    .venv/bin/python tools/build_notebooks.py && make refresh-notebooks

Each notebook: title with purpose and Inputs/Outputs; imports + setup; the ``parameters`` cell
(the smoke profile's values, one comment per line, from the config dataclasses); the validated
config; one-call sections; a summary cell tagged ``nbval-check-output`` that prints rounded numbers.
Training and evaluation notebooks default to ``tiny-random-llama`` so nbval and a bare "Run All"
finish in minutes on a laptop; ``make run`` passes the profile's model (SmolLM2-135M).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools.make_notebook import parameters_cell, write  # noqa: E402

NB = Path(__file__).resolve().parent.parent / "notebooks"
# nbval and "Run All": the tiny model, and no judge server (a random model's verdicts do not parse)
TINY = {"model": "tiny-random-llama", "judge": "none"}
SETUP = """lorasoups.setup(seed)
cfg = pipeline.stage_config("{stage}", globals())
exp = cfg["experiment"]
cfg"""
IMPORTS = "import lorasoups\nfrom lorasoups import pipeline\n"


def stage_notebook(path: str, stage: str, title: str, purpose: str, outputs: str, imports: str,
                   body: list[tuple], summary: str) -> None:
    write(NB / path, [
        ("md", f"# {title}\n\n{purpose}\n\n**Inputs:** the parameters below. **Outputs:** {outputs}"),
        ("code", IMPORTS + imports),
        ("code", parameters_cell(stage, TINY), ["parameters"]),
        ("code", SETUP.format(stage=stage)),
        *body,
        ("md", "## Summary"),
        ("code", summary, ["nbval-check-output"]),
    ])


def main() -> None:
    stage_notebook(
        "02_train_skills.ipynb", "train_skills", "02 · Train the skill LoRAs",
        "One LoRA per skill of each setting with TRL's SFTTrainer (paper §B.1: rank 32, alpha 64, "
        "q/k/v/up/down, lr 3e-4, 3 epochs; the smoke profile shrinks all of it). Runs are cached by "
        "the hash of their config and data, and resume after a kill.",
        "`results/<profile>/train/<setting>/skill<i>--s<seed>.json` (i = 1 .. k), adapters under `runs/training/`.",
        "from lorasoups.stages import train",
        [("md", "## 1 · Train"),
         ("code", 'losses = {(setting, s): train.train_skills(model, setting, s, cfg["data"], cfg["sft"], profile)\n'
                  "          for setting in exp.settings for s in exp.seeds}")],
        'for (setting, s), out in losses.items():\n    print(setting, f"seed {s}", {k: round(v, 2) for k, v in out.items() if v is not None})',
    )
    stage_notebook(
        "03_train_datamix.ipynb", "train_datamix", "03 · Train the DATA-MIX baselines",
        "DATA-MIX, both variants of the paper: (a) one LoRA of rank k·r on the concatenated skill data; "
        "(b) sequential continual training (corpus LoRA merged into the base, then one epoch on the "
        "instruction data), for the settings whose first skill is a corpus. Then the trained controls of "
        "`controls`: `cat_data_lora` (one rank-r LoRA on the CAT mixture alone: is CAT's gain its data?) and "
        "`oracle` (a LoRA on the target task's own held-out data from its generated suite: is the setting "
        "learnable at all?).",
        "`results/<profile>/train/<setting>/{datamix,datamix_seq,cat_data_lora,oracle}--s<seed>.json`.",
        "from lorasoups.stages import train",
        [("md", "## 1 · Train DATA-MIX"),
         ("code", 'losses = {(setting, s): train.train_datamix(model, setting, s, cfg["data"], cfg["sft"], profile, exp.datamix)\n'
                  "          for setting in exp.settings for s in exp.seeds}"),
         ("md", "## 2 · Train the controls"),
         ("code", 'controls = {(setting, s): train.train_controls(model, setting, s, cfg["data"], cfg["sft"], profile, exp)\n'
                  "            for setting in exp.settings for s in exp.seeds}")],
        'for (setting, s), out in losses.items():\n'
        '    print(setting, f"seed {s}", {k: round(v, 2) for k, v in out.items() if v is not None},\n'
        '          {k: round(v, 2) if isinstance(v, float) else v for k, v in controls[setting, s].items()})',
    )
    stage_notebook(
        "04_learn_cat.ipynb", "learn_cat", "04 · Learn CAT",
        "The paper's method: the skill LoRAs stay frozen and only the per-layer weights alpha are trained "
        "on the CAT mixture, with `recipe: converge` (the default, chosen so that alpha learns; `recipe: paper`, "
        "1 epoch at lr 1e-4, leaves alpha near its start). The run is evaluated at `eval_points` steps spread "
        "over it and the best by validation loss (`best_step`) is folded into one standard PEFT adapter of rank "
        "r1 + ... + rk. `eval_loss_before` is the validation loss at the initial alphas (equal: static CAT at 1/k); "
        "`max_drift/<skill>` is how far that skill's alpha moved (max over groups).",
        "`results/<profile>/train/<setting>/cat--s<seed>.json` (with the learned alphas), and for the controls "
        "`cat_random--s<seed>.json`, `random_alpha--s<seed>.json`.",
        "from lorasoups.stages import train",
        [("md", "## 1 · Learn the alphas"),
         ("code", 'losses = {(setting, s): train.learn_soup("cat", model, setting, s, cfg["data"], cfg["cat"], profile)\n'
                  "          for setting in exp.settings for s in exp.seeds}\n"
                  "# experiment.cat_recipes: the same under other recipes, as labels cat_<recipe> (none by default)\n"
                  'recipes = {(setting, s): train.learn_cat_recipes(model, setting, s, cfg["data"], cfg["cat"], exp, profile)\n'
                  "           for setting in exp.settings for s in exp.seeds}"),
         ("md", "## 2 · The controls\n\n`cat_random`: the same recipe with skill `control_random_skill` replaced by a "
                "random LoRA of its rank and per-module update norm (does the skill matter?). `random_alpha`: alpha "
                "drawn as the released code's init (N(0, 1) logits, the run seed) and not trained (does learning "
                "alpha matter?)."),
         ("code", 'controls = {(setting, s): train.learn_controls(model, setting, s, cfg["data"], cfg["cat"], exp, profile)\n'
                  "            for setting in exp.settings for s in exp.seeds}")],
        'for (setting, s), out in losses.items():\n'
        '    print(setting, f"seed {s}", {k: round(v, 3) for k, v in out.items() if v is not None},\n'
        '          {k: round(v, 3) for k, v in controls[setting, s].items() if v is not None})',
    )
    stage_notebook(
        "05_merge_static.ipynb", "merge_static", "05 · Static merges and their sweeps",
        "Static CAT (alpha = 0.5, or 1/k), linear, TIES and DARE of each setting's skill LoRAs (peft's merge "
        "utilities), each exported as a standard PEFT adapter. TIES and DARE first sweep their "
        "hyper-parameters (density lambda, alpha_1, alpha_2; the paper: [0, 1] x [1, 2] x [1, 2] in steps "
        "of 0.2) on the validation prompts, each point merged in place and decoded greedily; the best "
        "point becomes the merge.",
        "`results/<profile>/sweep/<setting>/<method>--s<seed>.jsonl` (one line per grid point) and "
        "`results/<profile>/train/<setting>/<method>--s<seed>.json`.",
        "from lorasoups.stages import merge",
        [("md", "## 1 · Sweep TIES / DARE on the validation prompts"),
         ("code", 'swept = {(setting, s): merge.sweep_setting(model, setting, s, exp, cfg["data"], cfg["sweep"], profile)\n'
                  "         for setting in exp.settings for s in exp.seeds}"),
         ("md", "## 2 · Merge (swept methods take their best point)"),
         ("code", "params = {(setting, s): merge.static_merges(model, setting, s, exp, profile, swept[setting, s])\n"
                  "          for setting in exp.settings for s in exp.seeds}"),
         ("md", "## 3 · Learned CAT compressed by SVD (only with `cat_svd_rank` set)"),
         ("code", "compressed = {(setting, s): merge.compress_cat(model, setting, s, exp, profile)\n"
                  "              for setting in exp.settings for s in exp.seeds}")],
        'for (setting, s), out in params.items():\n'
        '    print(setting, f"seed {s}", out, {k: round(v, 4) for k, v in compressed[setting, s].items()})\n'
        '    for method, sw in swept[setting, s].items():\n'
        '        print("   swept", method, sw["n_points"], "points; best", sw["best"]["point"], sw["best"]["metric"], round(sw["best"]["value"], 4))',
    )
    stage_notebook(
        "06_learn_moe.ipynb", "learn_moe", "06 · Learn the MoE routers",
        "Mixture of LoRA experts (mergoo's design): a router per module (or layer) computes "
        "input-dependent weights over the frozen skill LoRAs; only the routers train, on the CAT mixture.",
        "`results/<profile>/train/<setting>/moe--s<seed>.json` (a saved soup).",
        "from lorasoups.stages import train",
        [("md", "## 1 · Learn the routers"),
         ("code", 'losses = {(setting, s): train.learn_soup("moe", model, setting, s, cfg["data"], cfg["moe"], profile)\n'
                  "          for setting in exp.settings for s in exp.seeds}")],
        'for (setting, s), out in losses.items():\n    print(setting, f"seed {s}", {k: round(v, 3) for k, v in out.items() if v is not None})',
    )
    stage_notebook(
        "07_search_lorahub.ipynb", "search_lorahub", "07 · LoraHub",
        "Gradient-free search (nevergrad NGOpt over [-1.5, 1.5] from 0) of one weight per skill LoRA, "
        "minimising the few-shot cross-entropy on a handful of target examples (never the test split) "
        "plus 0.05 × L1 of the weights. With `cat_from_lorahub`, learned CAT then starts from that "
        "solution (label `cat_lorahub`, free alphas).",
        "`results/<profile>/train/<setting>/lorahub--s<seed>.json`.",
        "from lorasoups.stages import train",
        [("md", "## 1 · Search"),
         ("code", 'weights = {(setting, s): train.search_lorahub(model, setting, s, cfg["data"], cfg["lorahub"], profile)\n'
                  "           for setting in exp.settings for s in exp.seeds}"),
         ("md", "## 2 · Learned CAT started at LoraHub's weights (only with `cat_from_lorahub`)"),
         ("code", 'from_hub = {(setting, s): train.learn_cat_from_lorahub(model, setting, s, cfg["data"], cfg["cat"], exp, profile)\n'
                  "            for setting in exp.settings for s in exp.seeds}")],
        'for (setting, s), out in weights.items():\n'
        '    print(setting, f"seed {s}", {k: round(v, 3) for k, v in out.get("weights", {}).items()},\n'
        '          {k: round(v, 3) for k, v in from_hub[setting, s].items() if v is not None})',
    )
    stage_notebook(
        "08_evaluate.ipynb", "evaluate", "08 · Evaluate every model",
        "The base model and every trained model of each setting on its target tasks: GSM-Hard by "
        "executing the generated programs in the sandbox (and the authors' last-number scoring beside "
        "it), QA by exact match / token F1 (and the QA judge), prompt formats by exact count; for "
        "reading comprehension, the pairwise judge's battles give ELO ratings with bootstrap intervals.",
        "`results/<profile>/eval/<setting>/<label>--<target>-s<seed>.json` + `.examples.jsonl`.",
        "from lorasoups.stages import evaluate",
        [("md", "## 1 · Generate and score"),
         ("code", 'scores = {(setting, s): evaluate.evaluate_setting(model, setting, s, cfg["data"], cfg["evaluation"], profile)\n'
                  "          for setting in exp.settings for s in exp.seeds}")],
        "for (setting, s), by_label in scores.items():\n"
        "    for label, targets in sorted(by_label.items()):\n"
        "        print(setting, f\"seed {s}\", label, evaluate.headline(targets))",
    )

    beyond_notebook()


def beyond_notebook() -> None:
    """09: one experiment of configs/beyond/ (every variant a pipeline run in its own namespace)."""
    write(NB / "09_beyond.ipynb", [
        ("md", "# 09 · Beyond the paper: one open question\n\n"
               "Runs an experiment of `configs/beyond/` (`skills`: k = 2, 3, 4 skills composed; `granularity`: "
               "alpha per layer / module / skill and softmax / free / clamp; `rank`: skill LoRAs of rank 8-64; "
               "`cat_data`: the CAT learning set from 0.5 % to 20 %; `cat_extensions`: CAT started from LoraHub, "
               "and its fold compressed by SVD). Each variant is an ordinary pipeline run (stages 02-08 as the experiment "
               "lists them) whose results go to `results/<profile>/beyond/<experiment>/<variant>/`; trained "
               "runs are shared by config hash, so a variant retrains only what it changes. Then the "
               "experiment's figure and `summary.json` are built from those results.\n\n"
               "**Inputs:** the parameters below. **Outputs:** the variants' results, "
               "`figures/<profile>/beyond_<experiment>.png`, `results/<profile>/beyond/<experiment>/summary.json`. "
               "The same from a shell: `python -m lorasoups.pipeline beyond <experiment> --profile full`."),
        ("code", "import lorasoups\nfrom lorasoups import analysis, variants"),
        ("code", "# Parameters (defaults: a CPU smoke run of one variant on the tiny model)\n"
                 "experiment = 'granularity'  # a file stem of configs/beyond/\n"
                 "profile = 'smoke'  # smoke | full\n"
                 "seed = 0  # seed of the setup call (each variant's seeds come from its config)\n"
                 "variants = ['layer-softmax']  # None: the profile's variants (configs/beyond/<experiment>.yaml)\n"
                 "model = 'tiny-random-llama'  # base model for every variant (None: the profile's)\n"
                 "judge = 'none'  # none | local | openai (None: the profile's)", ["parameters"]),
        ("code", "lorasoups.setup(seed)\n"
                 "spec = variants.load_spec(experiment)\n"
                 "overrides = {**({'model': {'name': model}} if model else {}),\n"
                 "             **({'evaluation': {'judge': judge}} if judge else {})}\n"
                 "print(spec.question)\n"
                 "variants.plan(spec, profile, variants)"),
        ("md", "## 1 · Run the variants"),
        ("code", "report = variants.run_experiment(experiment, profile, variants, overrides=overrides)"),
        ("md", "## 2 · Figure and summary"),
        ("code", "out = analysis.make(f'beyond_{experiment}', profile)\nout"),
        ("md", "## Summary"),
        ("code", "for v, stages in report.items():\n"
                 "    print(v, [s['stage'] for s in stages])\n"
                 "print(analysis.summary([out]))", ["nbval-check-output"]),
    ])


if __name__ == "__main__":
    main()
