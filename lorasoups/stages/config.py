"""Config sections of the reproduction stages that are not owned by a library module."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from lorasoups.config import ConfigError, did_you_mean

#: The paper's settings; prompt robustness as its three training pairs (Figures 10b, 10a, 10c).
ALL_SETTINGS = ["math_code", "qabot", "reading_comprehension", "prompt_robustness",
                "prompt_robustness_1_4", "prompt_robustness_2_4"]
#: The controls beside CAT: does the skill matter (``cat_random``), is CAT's gain its
#: data (``cat_data_lora``), does learning alpha matter (``random_alpha``), is the setting learnable
#: at all (``oracle``).
CONTROLS = ("cat_random", "cat_data_lora", "random_alpha", "oracle")


@dataclass
class ExperimentConfig:
    """``experiment:`` section: which settings, seeds and methods a run covers."""

    settings: list[str] = field(default_factory=lambda: list(ALL_SETTINGS))
    """Settings of ``lorasoups.data.SETTINGS`` to run."""
    seeds: list[int] = field(default_factory=lambda: [0])
    """Training seeds (the paper's headline comparisons: 3)."""
    datamix: list[str] = field(default_factory=lambda: ["concat", "sequential"])
    """DATA-MIX variants: ``concat`` (one LoRA of rank k*r), ``sequential`` (corpus settings only)."""
    merges: list[str] = field(default_factory=lambda: ["cat_static", "linear", "ties", "dare"])
    """Static merges built from the skill LoRAs (``lorasoups.merging.METHODS``)."""
    static_alpha: float | None = 0.5
    """alpha of every skill in ``cat_static`` (the paper's ablation: 0.5); None: 1/k, the learned
    CAT's starting point, which is 0.5 for two skills and keeps the weights summing to 1 for k > 2."""
    merge_alphas: list[float] | None = None
    """Per-skill weights of linear / TIES / DARE when no sweep result exists (None: 1.0 per skill;
    a list must have one weight per skill of every setting run)."""
    merge_density: float = 0.5
    """Density (lambda) of every merge that prunes (TIES, DARE, their variants and the ``*_svd``
    ones; ``Method.density``) when no sweep result exists."""
    cat_from_lorahub: bool = False
    """Stage 07 also learns CAT starting from LoraHub's weights (label ``cat_lorahub``, free alphas;
    does a good start help learned CAT?)."""
    cat_svd_rank: int | None = None
    """Stage 05 also writes learned CAT's fold (rank sum of the skills' ranks) compressed by truncated
    SVD to this rank (label ``cat_svd``), with the share of the update it keeps (None: not built)."""
    cat_recipes: list[str] = field(default_factory=list)
    """More learned-CAT recipes (``lorasoups.training.soup.RECIPES``) beside the ``cat`` section's own,
    each learned by stage 04 as label ``cat_<recipe>`` with the rest of the ``cat`` section unchanged
    (the CPU study: ``[paper]`` beside the converged default, for Figure 9 under both recipes)."""
    controls: list[str] = field(default_factory=lambda: list(CONTROLS))
    """Controls trained beside CAT, each a label of its own: ``cat_random`` (learned CAT with skill
    ``control_random_skill`` replaced by a random LoRA of the same rank and per-module update norm;
    stage 04), ``random_alpha`` (CAT with alpha drawn as the released code's N(0, 1)-logit init and
    not trained; stage 04), ``cat_data_lora`` (one rank-r LoRA trained on the CAT mixture alone;
    stage 03), ``oracle`` (a LoRA on the target task's own held-out data from its generated suite,
    where that suite holds at least ``oracle_min_records``; stage 03). ``[]``: none."""
    control_random_skill: int = 2
    """Which skill LoRA ``cat_random`` replaces (1-based: 2 is the paper's second skill, code in
    math_code, instruction following in QABot, SQuAD in reading comprehension)."""
    oracle_min_records: int = 32
    """A setting gets an ``oracle`` only where its targets' generated suites hold at least this many
    held-out records (the QABot manual questions hold a handful: no oracle there, and it says so)."""

    def __post_init__(self) -> None:
        for c in self.controls:
            if c not in CONTROLS:
                raise ConfigError(f"experiment.controls: unknown control '{c}'{did_you_mean(c, CONTROLS)}; "
                                  f"choose from {', '.join(CONTROLS)}")
        if self.control_random_skill < 1:
            raise ConfigError(f"experiment.control_random_skill is 1-based, got {self.control_random_skill}")
        if self.oracle_min_records < 1:
            raise ConfigError(f"experiment.oracle_min_records must be >= 1, got {self.oracle_min_records}")


@dataclass
class EvalConfig:
    """``evaluation:`` section: decoding, judges and which models to score."""

    max_new_tokens: int = 200
    """Longest generation (the paper: 200)."""
    max_new_tokens_by_task: dict[str, int] = field(default_factory=dict)
    """Longest generation per task kind (``gsm_hard``, ``qa``, ``prompt_format``), overriding
    ``max_new_tokens`` for that kind (the CPU study caps the counting answers, ~8 tokens, at 32)."""
    greedy: bool = False
    """Argmax decoding instead of the paper's temperature 0.01 / top_p 0.95 sampling."""
    batch_size: int = 16
    """Prompts per generation batch."""
    labels: list[str] | None = None
    """Models to evaluate (``results/README.md`` labels); None: every model trained for the setting."""
    judge: Literal["none", "local", "openai"] = "none"
    """LLM judge for QABot (QA judge) and reading comprehension (pairwise -> ELO). ``local``:
    ``transformers serve`` with the base model on a loopback port; ``openai``: any
    OpenAI-compatible endpoint from ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY``."""
    judge_model: str = "gpt-4"
    """Model id for ``judge: openai``."""
    judge_examples: int | None = None
    """Judge at most this many examples per target (None: all)."""
    elo_labels: list[str] | None = None
    """Models in the pairwise ELO tournament (None: every evaluated model; pairs grow as n^2)."""
    elo_without_judge: Literal["none", "f1"] = "f1"
    """With ``judge: none``, rate the ELO tournament anyway by reference overlap: each battle is
    won by the answer with the higher token F1 against the gold (``none``: no ELO without a judge).
    The ELO result and Figure 6a name the judge that decided the battles."""
    elo_bootstrap: int = 5000
    """Bootstrap rounds of the ELO confidence intervals (the paper: 5,000)."""

    def generation_for(self, task: str, seed: int, stops: list[str]) -> Any:
        """The decoding of one task kind: greedy or the paper's sampling, its length cap."""
        from lorasoups.evaluation.generation import GenerationConfig

        return GenerationConfig(max_new_tokens=self.max_new_tokens_by_task.get(task, self.max_new_tokens),
                                greedy=self.greedy, batch_size=self.batch_size, seed=seed, stop_strings=list(stops))


@dataclass
class GateConfig:
    """``gate:`` section: the informativeness gate (``lorasoups.stages.gate``), run before any merge
    of a study is scored."""

    size: int = 200
    """Held-out records of each skill's own ``test`` split that the skill gate scores."""
    max_length: int = 256
    """Tokens per record in the completion-NLL measure (the skills' training ``max_length``)."""
    batch_size: int = 8
    """Records per forward pass of the NLL measure."""

    def __post_init__(self) -> None:
        for name in ("size", "max_length", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"gate.{name} must be >= 1, got {getattr(self, name)}")


@dataclass
class AnalysisConfig:
    """``analysis:`` section: what the analysis notebooks read."""

    seeds: list[int] | None = None
    """Training seeds to analyse (None: every seed found in results/)."""
