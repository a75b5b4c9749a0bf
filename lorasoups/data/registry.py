"""Every dataset of the paper's four settings: one entry each, with its sources and a version.

An entry is data (mergekit/lm-eval style): what the dataset is, its role in a setting, the record
shape it loads as, and where it can come from: a hub id, files in the local mirror (possibly a
documented stand-in for the paper's data), and a generator for an offline miniature.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from lorasoups.config import did_you_mean
from lorasoups.data.errors import DataError
from lorasoups.task_kinds import RECORD_KINDS

Role = Literal["skill", "corpus", "target", "fewshot"]
Kind = str  # a record kind of lorasoups.task_kinds.RECORD_KINDS


@dataclass(frozen=True)
class Entry:
    """One dataset: description, role, setting, sources and size."""

    name: str
    description: str
    setting: str
    role: Role
    kind: Kind
    version: str
    paper_size: int | None = None
    """Records in the paper's version (None for corpora measured in words)."""
    hub_id: str | None = None
    hub_config: str | None = None
    mirror_files: tuple[str, ...] = ()
    """Files under the mirror root this entry reads (all must exist)."""
    mirror_optional: tuple[str, ...] = ()
    """Further files read when the mirror holds them (e.g. a target's held-out pool): a mirror
    without them still loads the entry's other splits."""
    mirror_size: int | None = None
    mirror_note: str = ""
    """Set when the mirror holds a stand-in rather than the paper's data: what it is."""
    generator: str | None = None
    generated_size: int = 2000
    """Default size of a generated split (smoke profiles pass a smaller ``size``)."""
    missing: str = ""
    """Why a source is unavailable (shown in errors and the README)."""
    license: str = ""
    splits: tuple[str, ...] = ("train", "validation", "test")
    extra: dict[str, Any] = field(default_factory=dict)
    max_length: int | None = None
    """Training sequence length the paper used for this data (§B.2: 2048 for reading comprehension;
    short, {20, 100}, for the QABot manuals, "better at memorizing minute details"); None:
    ``sft.max_length``. Applied to the skill LoRA (a target's: to its oracle) unless ``sft.lengths: uniform``."""
    demos: str | None = None
    """A target's few-shot entry (role ``fewshot``): ``load`` prefixes each of its prompts with the
    first ``shots`` demonstrations of it, from the mirror when the target's data came from the hub
    or the mirror, else from its generator (:func:`lorasoups.data.loading.demonstrations_for`)."""

    def __post_init__(self) -> None:
        if self.kind not in RECORD_KINDS:
            raise DataError(f"dataset '{self.name}': unknown record kind '{self.kind}' (known: "
                            f"{', '.join(RECORD_KINDS)}){did_you_mean(self.kind, RECORD_KINDS)}")

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(s for s, ok in (("hub", self.hub_id), ("mirror", self.mirror_files),
                                     ("generated", self.generator)) if ok)

    @property
    def columns(self) -> tuple[str, ...]:
        return RECORD_KINDS[self.kind].columns

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "sources": list(self.sources), "columns": list(self.columns)}


P = "lorasoups-paper/"
_SKILL = ("train", "validation", "test")
_TARGET = ("validation", "test")  # generated targets also have a small validation split (LoraHub, sweeps)

_ENTRIES = [
    # ---- hard math with code --------------------------------------------------------------------
    Entry("metamathqa", "Math skill: MetaMathQA (augmented GSM8K/MATH) step-by-step solutions", "math_code", "skill",
          "sft", "1.0", paper_size=395_000, hub_id="meta-math/MetaMathQA", mirror_files=("gsm8k/train.jsonl",),
          mirror_size=7473, mirror_note="stand-in: GSM8K train solutions (MetaMathQA augments GSM8K/MATH train)",
          generator="math_skill", license="MIT (MetaMathQA); MIT (GSM8K stand-in)",
          missing="MetaMathQA is not in the mirror (395k records)"),
    Entry("gsm8k", "GSM8K grade-school math: solutions for the math skill; test beside GSM-Hard", "math_code",
          "skill", "math", "1.0", paper_size=8792, hub_id="openai/gsm8k", hub_config="main",
          mirror_files=("gsm8k/train.jsonl", "gsm8k/test.jsonl"), mirror_size=8792, generator="math_skill_eval",
          license="MIT"),
    Entry("code_alpaca", "Code skill: Code Alpaca instructions with code answers", "math_code", "skill", "sft", "1.0",
          paper_size=20_022, hub_id="sahil2801/CodeAlpaca-20k", mirror_files=("code-alpaca/code_alpaca_2k.json",),
          mirror_size=2015, mirror_note="stand-in: the repository's 2k subset of Code Alpaca 20k (2 of its 2,017 records have an empty output and are left out)",
          generator="code_skill", license="data CC BY-NC 4.0, code Apache-2.0",
          missing="Code Alpaca 20k is not in the mirror"),
    Entry("code_alpaca_4k5", "Code Alpaca repository's newer 4.5k set (several languages)", "math_code", "skill",
          "sft", "1.0", mirror_files=("code-alpaca/new_codealpaca.json",), mirror_size=4535,
          generator="code_skill", license="data CC BY-NC 4.0, code Apache-2.0",
          missing="no hub copy is known"),
    Entry("gsm_hard", "Target: GSM-Hard (GSM8K test with large numbers), answered by a PAL program", "math_code",
          "target", "program", "1.0", paper_size=1319, hub_id="reasoning-machines/gsm-hard",
          mirror_files=(P + "gsm_hard_test.json", "gsm-hard/gsmhardv2.jsonl"), mirror_size=1319,
          generator="math_hard", generated_size=200, license="Apache-2.0 (PAL)", splits=_TARGET,
          demos="pal_fewshot"),
    # Few-shot entries: the mirror's records are given ids by position in the file (pal-0 ..
    # pal-7, qa-0 .. qa-3, rc-0, rc-1: lorasoups.data.mirror.read), which prompts record.
    Entry("pal_fewshot", "The 8 PAL demonstrations (question + def solution() program)", "math_code", "fewshot",
          "fewshot", "1.0", paper_size=8, mirror_files=(P + "few_shot/math.json",), mirror_size=8,
          generator="pal_demos", generated_size=8, license="Apache-2.0 (PAL prompts)", splits=("test",),
          missing="not on the hub as a dataset"),
    # ---- QABot ------------------------------------------------------------------------------------
    Entry("dnd_manual", "QABot skill 1: the D&D rules manual (System Reference Document) as text", "qabot", "corpus",
          "corpus", "1.0", mirror_files=(P + "dnd_manual.txt",), mirror_size=None, generator="manual_corpus",
          license="SRD text of Wizards of the Coast (OGL/CC BY 4.0); released with the paper's code",
          missing="no hub copy of the paper's text", splits=("train", "validation"), max_length=100),
    Entry("biology_chapter", "QABot skill 1 (biology): a biology textbook chapter as text", "qabot", "corpus",
          "corpus", "1.0", mirror_files=(P + "qabot_biology_test.json",),
          mirror_note="stand-in: the page contexts attached to the biology questions (the chapter is not released)",
          generator="manual_corpus_b", license="as the paper's release (no license file)",
          missing="the chapter text is in neither the hub nor the mirror", splits=("train", "validation"),
          max_length=100),
    Entry("alpaca", "QABot skill 2: instruction following (Stanford Alpaca)", "qabot", "skill", "sft", "1.0",
          paper_size=52_002, hub_id="tatsu-lab/alpaca", mirror_files=("stanford-alpaca-5k/alpaca_5000.json",),
          mirror_size=4998, mirror_note="a sample: 5,000 records of Stanford Alpaca 52k drawn at random in the official "
          "repository's history (tatsu-lab/stanford_alpaca, refs/pull/152); 2 with an empty output are left out",
          generator="instructions", license="CC BY-NC 4.0"),
    Entry("alpaca_libre", "alpaca-libre: Alpaca-recipe tasks (status 'ok', non-empty output)", "qabot", "skill", "sft",
          "1.0", mirror_files=("alpaca-libre/alpaca_libre_tasks_v1.jsonl",), mirror_size=1173,
          generator="instructions", license="MIT (data CC0)", missing="no hub copy is known"),
    Entry("qabot_dnd", "Target: closed-book questions on the D&D manual, with page context for the judge", "qabot",
          "target", "qa", "1.0", paper_size=50, mirror_files=(P + "qabot_dnd_test.json",), mirror_size=50,
          generator="manual_questions", generated_size=40, splits=_TARGET, demos="qa_fewshot",
          license="as the paper's release (no license file)", missing="not on the hub"),
    Entry("qabot_biology", "Target: closed-book questions on the biology chapter", "qabot", "target", "qa", "1.0",
          paper_size=45, mirror_files=(P + "qabot_biology_test.json",), mirror_size=45,
          generator="manual_questions_b", generated_size=40, splits=_TARGET, demos="qa_fewshot",
          license="as the paper's release (no license file)", missing="not on the hub"),
    # The paper's QA prompt is 1-shot (§B.2); its code prepends qa.json's first demo (qa-0).
    Entry("qa_fewshot", "4 instruction-following demonstrations used by the paper's QA prompts", "qabot", "fewshot",
          "sft", "1.0", paper_size=4, mirror_files=(P + "few_shot/qa.json",), mirror_size=4,
          generator="qa_demos", generated_size=4, splits=("test",), license="CC BY-NC 4.0 (Alpaca items)"),
    # ---- reading comprehension ------------------------------------------------------------------
    Entry("biomed_textbooks", "RC skill 1: biomedical textbook corpus", "reading_comprehension", "corpus", "corpus",
          "1.0", generator="jargon_corpus", generated_size=480, splits=("train", "validation"),
          # The paper packs its 1.4M-token corpus into 2048-token blocks (~86 steps of 8 an epoch); the
          # generated stand-in is ~36k tokens, so it packs into 256-token blocks (~18 steps an epoch)
          max_length=256,
          missing="the paper's bioasq_train_textbooks.txt is not in the stored release and has no known hub id"),
    # The mirror holds 3 articles of the SQuAD v2.0 dev set (1,124 questions, 541 unanswerable):
    # Normans (208) is the test split, Rhine and Computational_complexity_theory (916) the training pool
    Entry("squad", "RC skill 2: open-book QA (SQuAD v2)", "reading_comprehension", "skill", "sft", "1.0",
          paper_size=130_319, hub_id="rajpurkar/squad_v2", mirror_files=("squad-v2-dev-sample/dev-v2.0_3articles.json",),
          mirror_size=1124, mirror_note="a sample of SQuAD v2.0 (3 dev-set articles; the paper trains on its "
          "train set): test = the article 'Normans', train = the other two",
          generator="open_book_qa", max_length=2048, license="CC BY-SA 4.0", extra={"test_articles": ("Normans",)}),
    Entry("bioasq_rc", "Target: BioASQ factoid questions with context (open-book)", "reading_comprehension",
          "target", "qa", "1.0", paper_size=200, mirror_files=(P + "bioasq_rc_test.json",),
          mirror_optional=("bioasq-factoid/bioasq_factoid_7b-11b.jsonl",),
          mirror_size=201 + 358, mirror_note="validation (where the mirror holds bioasq-factoid): 358 held-out BioASQ factoid questions (golden batches 7b-11b; 1-7 snippets as the test items; none shares a question, a near-question, an answer or a snippet with the test file)",
          generator="jargon_questions", generated_size=200, splits=_TARGET, demos="rc_fewshot", max_length=2048,
          license="BioASQ terms of use; released with the paper's code", missing="not on the hub"),
    # rc-0 (a context + question in the test file's own layout) is the BioASQ prompt's demo; it is
    # also the test file's first item, which load() therefore leaves out of the scored set (200 of
    # 201). rc-1 is qa.json's "three primary colors" with no context (see loading.load).
    Entry("rc_fewshot", "2 reading-comprehension demonstrations", "reading_comprehension", "fewshot", "qa", "1.0",
          paper_size=2, mirror_files=(P + "few_shot/rc.json",), mirror_size=2, generator="rc_demos",
          generated_size=2, splits=("test",), license="as the paper's release"),
]
# ---- prompt robustness: task 161 in the paper's formats -------------------------------------------
for _k in (1, 2, 4):
    _ENTRIES.append(Entry(
        f"count_format{_k}", f"Prompt-format skill: task 161 (count words containing a letter) in format {_k}",
        "prompt_robustness", "skill", "count", "1.0", paper_size=6000,
        mirror_files=(P + f"prompt_formats/train_format{_k}.json",), mirror_size=6000, generator="counting",
        generated_size=2000, license="Apache-2.0 (SuperNaturalInstructions)", missing="not on the hub",
        extra={"format": _k}))
for _k in (3, 7, 8, 10):
    _ENTRIES.append(Entry(
        f"count_format{_k}", f"Prompt-format target: task 161 in unseen format {_k}", "prompt_robustness", "target",
        "count", "1.0", paper_size=417, mirror_files=(P + f"prompt_formats/test_format{_k}.json",), mirror_size=417,
        generator="counting", generated_size=417, splits=_TARGET, license="Apache-2.0 (SuperNaturalInstructions)",
        missing="not on the hub", extra={"format": _k}))

# A fourth training format for prompt_robustness_k4: the paper released three (1, 2, 4), each the same
# 6,000 instances rendered differently, so the mirror's format-1 instances re-rendered in a format
# drawn from the grammar are what a fourth file of the paper's would hold.
_ENTRIES.append(Entry(
    "count_format_g1", "Prompt-format skill: task 161 in grammar format g1 (not one of the paper's formats)",
    "prompt_robustness", "skill", "count", "1.0", mirror_files=(P + "prompt_formats/train_format1.json",),
    mirror_size=6000, mirror_note="derived: the paper's format-1 training instances re-rendered in grammar "
    "format g1 (lorasoups.data.grammar.GRAMMAR_FORMATS)", generator="counting", generated_size=2000,
    license="Apache-2.0 (SuperNaturalInstructions)", missing="not on the hub", extra={"format": "g1"}))

REGISTRY: dict[str, Entry] = {e.name: e for e in _ENTRIES}


def get_entry(name: str) -> Entry:
    """The registry entry, or a DataError with a "did you mean"."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise DataError(f"unknown dataset '{name}'{did_you_mean(name, REGISTRY)}; known: "
                        f"{', '.join(sorted(REGISTRY))}") from None


@dataclass(frozen=True)
class Setting:
    """One skill-composition setting: k >= 2 skills whose LoRAs are merged, and its targets.

    The paper's four settings compose two skills; the ``*_k3`` / ``*_k4`` settings (the paper's §6,
    "more than two skills") compose three and four. Models trained per skill are labelled
    ``skill1`` .. ``skill<k>`` in the order of :attr:`skills`.
    """

    name: str
    description: str
    skills: tuple[str, ...]
    targets: tuple[str, ...]
    metric: str
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Other pairings the paper reports in this setting (name -> overrides of skills/targets)."""
    family: str = ""
    """The setting this one belongs with (``math_code`` for ``math_code_k3``, ``prompt_robustness``
    for the other format pairs); its own name if empty."""
    tune_on: Literal["targets", "skills"] = "targets"
    """What the TIES/DARE sweep and LoraHub tune on: held-out examples of the ``targets`` (never
    their scored test items), or of the ``skills`` (prompt robustness: the test formats must stay
    unseen by every method, as they are by CAT, which learns on the training formats)."""

    def __post_init__(self) -> None:
        if len(self.skills) < 2:
            raise DataError(f"setting '{self.name}': needs at least 2 skills, got {list(self.skills)}")
        if len(set(self.skills)) != len(self.skills):
            raise DataError(f"setting '{self.name}': a skill is listed twice in {list(self.skills)}")

    @property
    def k(self) -> int:
        """Number of skills composed."""
        return len(self.skills)

    @property
    def skill1(self) -> str:
        return self.skills[0]

    @property
    def skill2(self) -> str:
        return self.skills[1]

    @property
    def labels(self) -> list[str]:
        """``skill1`` .. ``skill<k>``: the result labels of the skill LoRAs (``results/README.md``)."""
        return skill_labels(self.k)

    @property
    def group(self) -> str:
        """The family this setting belongs to (itself for the paper's two-skill settings)."""
        return self.family or self.name

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "k": self.k}


def skill_labels(k: int) -> list[str]:
    """``["skill1", ..., "skill<k>"]``."""
    return [f"skill{i}" for i in range(1, k + 1)]


_FORMAT_TARGETS = ("count_format3", "count_format7", "count_format8", "count_format10")
SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in [
        Setting("math_code", "Hard math with code: math skill + code skill -> GSM-Hard answered by programs",
                ("metamathqa", "code_alpaca"), ("gsm_hard",), "execution accuracy (|pred - gold| <= 1e-3)",
                {"gsm8k": {"targets": ("gsm8k",)}}),
        Setting("qabot", "QABot: a manual's text + instruction following -> closed-book questions on the manual",
                ("dnd_manual", "alpaca"), ("qabot_dnd",), "accuracy by LLM judge (QA judge, score 0-2)",
                {"biology": {"skills": ("biology_chapter", "alpaca"), "targets": ("qabot_biology",)}}),
        Setting("reading_comprehension", "Reading comprehension: biomedical corpus + open-book QA -> BioASQ",
                ("biomed_textbooks", "squad"), ("bioasq_rc",), "pairwise LLM judge -> ELO; token F1"),
        # The paper's Figure 10 trains on three pairs of formats: 1+2 (10b, the setting's own name),
        # 1+4 (10a) and 2+4 (10c); each is scored on the same four unseen formats.
        Setting("prompt_robustness", "Prompt robustness: task 161 in formats 1 + 2 -> unseen formats (Figure 10b)",
                ("count_format1", "count_format2"), _FORMAT_TARGETS, "accuracy (exact count)", tune_on="skills"),
        Setting("prompt_robustness_1_4", "Prompt robustness: task 161 in formats 1 + 4 -> unseen formats (Figure 10a)",
                ("count_format1", "count_format4"), _FORMAT_TARGETS, "accuracy (exact count)",
                family="prompt_robustness", tune_on="skills"),
        Setting("prompt_robustness_2_4", "Prompt robustness: task 161 in formats 2 + 4 -> unseen formats (Figure 10c)",
                ("count_format2", "count_format4"), _FORMAT_TARGETS, "accuracy (exact count)",
                family="prompt_robustness", tune_on="skills"),
        # ---- more than two skills (the paper's §6, question 1) ------------------------------------------
        Setting("math_code_k3", "Hard math with code, 3 skills: math + code + instruction following -> GSM-Hard",
                ("metamathqa", "code_alpaca", "alpaca"), ("gsm_hard",),
                "execution accuracy (|pred - gold| <= 1e-3)", family="math_code"),
        Setting("math_code_k4", "Hard math with code, 4 skills: math + code + instruction following + the D&D "
                "manual (a skill GSM-Hard does not need) -> GSM-Hard",
                ("metamathqa", "code_alpaca", "alpaca", "dnd_manual"), ("gsm_hard",),
                "execution accuracy (|pred - gold| <= 1e-3)", family="math_code"),
        Setting("prompt_robustness_k3", "Prompt robustness, 3 training formats (the paper's 1, 2, 4; its appendix "
                "saw every merge fall behind DATA-MIX here) -> unseen formats",
                ("count_format1", "count_format2", "count_format4"), _FORMAT_TARGETS, "accuracy (exact count)",
                family="prompt_robustness", tune_on="skills"),
        Setting("prompt_robustness_k4", "Prompt robustness, 4 training formats: the paper's 1, 2, 4 + grammar "
                "format g1 -> unseen formats",
                ("count_format1", "count_format2", "count_format4", "count_format_g1"), _FORMAT_TARGETS,
                "accuracy (exact count)", family="prompt_robustness", tune_on="skills"),
    ]
}


def get_setting(name: str) -> Setting:
    try:
        return SETTINGS[name]
    except KeyError:
        raise DataError(f"unknown setting '{name}'{did_you_mean(name, SETTINGS)}; known: "
                        f"{', '.join(SETTINGS)}") from None
