"""Writes notebooks/analysis/*.ipynb (thin: one call per cell) with tools/make_notebook.py."""
import sys

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent))
from tools.make_notebook import write  # noqa: E402

PARAMS = """# Parameters (defaults: the CPU smoke profile)
profile = "smoke"  # smoke | full: which results/<profile>/ to read and which figures folder to write
seed = 0  # seed of the setup call (the analysis itself draws no random numbers)
seeds = None  # training seeds to analyse, e.g. [0, 1, 2] (None: every seed found in results/)"""

IMPORTS = """import lorasoups
from lorasoups import analysis"""

SETUP = """lorasoups.setup(seed)
print(analysis.inventory(profile))"""


def notebook(path, title, purpose, inputs, outputs, artifacts):
    cells = [
        ("md", f"""# Analysis · {title}

{purpose}

Reads only `results/<profile>/` (through `lorasoups.paths.results_dir`) and writes only into
`figures/` (`figures/<profile>/` for profiles other than `full`, via `lorasoups.paths.figures_dir`).
An artifact whose result files are absent is skipped with the list of missing files (the summary
says so); a result file that exists but is malformed stops the notebook with an error naming it.

**Inputs:** {inputs}

**Outputs:** {outputs}"""),
        ("code", IMPORTS),
        ("code", PARAMS, ["parameters"]),
        ("code", SETUP),
    ]
    names = []
    for i, (name, var, heading) in enumerate(artifacts, 1):
        cells.append(("md", f"## {i} · {heading}"))
        cells.append(("code", f"""{var} = analysis.make("{name}", profile, seeds)
{var}"""))
        names.append(var)
    cells.append(("md", "## Summary"))
    cells.append(("code", f"print(analysis.summary([{', '.join(names)}]))", ["nbval-check-output"]))
    write(path, cells)


NB = str(__import__("pathlib").Path(__file__).resolve().parent.parent / "notebooks" / "analysis")
notebook(
    f"{NB}/hard_math_code.ipynb", "Hard math with code (Figure 4, Table 1)",
    "Does merging a math LoRA and a code LoRA solve GSM-Hard with programs better than either skill, "
    "DATA-MIX or the static merges (Figure 4), and does the merge solve problems neither skill "
    "solves, more than the sum of their gains (Table 1, super-linearity)?",
    "`results/<profile>/eval/math_code/<label>--gsm_hard-s<seed>.json` and their `.examples.jsonl`.",
    "`figure_4.png`, `figure_4.pdf`, `table_1.md`.",
    [("figure_4", "fig4", "Figure 4 · GSM-Hard execution accuracy per method"),
     ("table_1", "table1", "Table 1 · super-linearity: base, skill 1, skill 2, merge; merge-only, union, intersection")],
)
notebook(
    f"{NB}/qabot.ipynb", "QABot (Figure 5)",
    "Closed-book questions on the D&D manual: a LoRA trained on the manual's text merged with an "
    "instruction-following LoRA, against each skill, DATA-MIX, the static merges and the retrieval bound. "
    "Accuracy by the LLM judge when one ran, else answer containment (the summary says which).",
    "`results/<profile>/eval/qabot/<label>--qabot_dnd-s<seed>.json`.",
    "`figure_5.png`, `figure_5.pdf`.",
    [("figure_5", "fig5", "Figure 5 · QABot accuracy per method")],
)
notebook(
    f"{NB}/reading_comprehension.ipynb", "Reading comprehension (Figure 6a, Table 2)",
    "Open-book questions on biomedical text (BioASQ): a corpus LoRA merged with a reading-comprehension "
    "LoRA. Figure 6a ranks the methods by ELO from pairwise judge battles (bootstrap interval); Table 2 "
    "lists token F1, exact match, containment and the ELO per method.",
    "`results/<profile>/eval/reading_comprehension/<label>--bioasq_rc-s<seed>.json` and "
    "`elo--bioasq_rc-s<seed>.json`.",
    "`figure_6a.png`, `figure_6a.pdf`, `table_2.md`.",
    [("figure_6a", "fig6a", "Figure 6a · ELO per method from pairwise judge battles"),
     ("table_2", "table2", "Table 2 · reading-comprehension scores per method")],
)
notebook(
    f"{NB}/prompt_robustness.ipynb", "Prompt robustness (Figure 10a-c)",
    "Task 161 (count the words containing a letter): LoRAs trained on two prompt formats, merged, "
    "evaluated on the four formats no model saw (3, 7, 8, 10); one figure per training pair, as the paper: "
    "10a formats 1 + 4 (setting `prompt_robustness_1_4`), 10b 1 + 2 (`prompt_robustness`), 10c 2 + 4 "
    "(`prompt_robustness_2_4`).",
    "`results/<profile>/eval/<setting>/<label>--count_format{3,7,8,10}-s<seed>.json` of the three settings.",
    "`figure_10{a,b,c}.png`, `figure_10{a,b,c}.pdf`.",
    [("figure_10a", "fig10a", "Figure 10a · trained on formats 1 + 4"),
     ("figure_10b", "fig10b", "Figure 10b · trained on formats 1 + 2"),
     ("figure_10c", "fig10c", "Figure 10c · trained on formats 2 + 4")],
)
notebook(
    f"{NB}/ablations.ipynb", "Ablations (Figure 9, alpha by layer)",
    "Is learning CAT's weights worth it over the static concatenation with alpha = 0.5 (the paper's Figure 9, "
    "every setting that has both), and what did CAT learn, layer by layer? (The paper's Table 3, CAT vs "
    "DATA-MIX on commonsense QA, needs hub data and is not reproduced.)",
    "`results/<profile>/eval/<setting>/{cat,cat_static}--<target>-s<seed>.json` and "
    "`results/<profile>/train/<setting>/cat--s<seed>.json` (its `metrics.alphas`).",
    "`figure_9.md`, `figure_9.png`, `figure_9.pdf`, `alphas_by_layer_<setting>.png`, `alphas_by_layer_<setting>.pdf`.",
    [("figure_9", "fig9", "Figure 9 · learned vs. static CAT"),
     ("alphas_by_layer", "alphas", "Learned alpha per layer and skill")],
)
notebook(
    f"{NB}/beyond.ipynb", "Beyond the paper (configs/beyond/)",
    "The paper's open questions (§6), each an experiment over variants of the same pipeline: how "
    "composition moves as more skills are merged (skills: k = 2, 3, 4; one panel per family), how fine "
    "and how constrained learned CAT's alpha should be (granularity), how composition moves with the "
    "skill LoRAs' rank (rank), and how much data learned CAT needs before it beats static CAT "
    "(cat_data), and the bonus: CAT started from LoraHub's solution and its fold compressed by SVD "
    "(cat_extensions). One panel per setting, one line per model, mean and 95% t-CI over seeds; the numbers "
    "(with learned - static CAT and CAT's super-linearity, paired by seed) go to `summary.json`. "
    "Run the variants first with `notebooks/09_beyond.ipynb` or `python -m lorasoups.pipeline beyond <name>`.",
    "`results/<profile>/beyond/<experiment>/<variant>/eval/<setting>/<label>--<target>-s<seed>.json`.",
    "`beyond_<experiment>.png` / `.pdf` and `results/<profile>/beyond/<experiment>/summary.json`.",
    [("beyond_skills", "skills", "Number of skills composed (k = 2, 3, 4)"),
     ("beyond_granularity", "granularity", "Granularity and parameterisation of alpha"),
     ("beyond_rank", "rank", "Rank of the skill LoRAs"),
     ("beyond_cat_data", "cat_data", "Size of the CAT learning set"),
     ("beyond_cat_extensions", "cat_extensions", "CAT started from LoraHub; CAT's fold compressed by SVD")],
)
