"""The ``data:`` section of the run configuration."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class DataConfig:
    """Where data comes from and how much of it (``data:`` in configs/*.yaml)."""

    source: Literal["auto", "hub", "mirror", "generated"] = "auto"
    """Which source to load from; ``auto`` tries hub, then mirror, then the generators."""
    mirror: str | None = None
    """Mirror directory override (else ``LORASOUPS_DATA_MIRROR``, else ``../shared/datasets``)."""
    seed: int = 0
    """Seed for generated content, carved splits and the CAT mixture."""
    smoke_size: int = 32
    """Records per generated skill split in the smoke profile (also caps mirror splits there)."""
    full_size: int | None = None
    """Records per skill split outside the smoke profile: None keeps the whole dataset the source holds
    (mirror/hub splits whole; a generated split at its registry ``generated_size``), the paper's
    recipe. A number caps every skill; a profile that sets one says why in a comment."""
    eval_smoke_size: int = 16
    """Records per target test set in the smoke profile."""
    eval_full_size: int | None = None
    """Records per target test set in the full profile; None = the whole test set."""
    sizes: dict[str, int | None] = field(default_factory=dict)
    """Per-dataset record caps outside the smoke profile, by registry name (a skill's train and
    validation splits, a target's test split; ``oracle_data`` for the oracle's training set),
    overriding ``full_size`` / ``eval_full_size``: a profile sized for a budget (``configs/cpu.yaml``)
    sets each dataset on its own and says why."""
    cat_fraction: float = 0.05
    """Share of each skill's training data in the CAT learning set (the paper: 5 %, of the smallest)."""
    val_fraction: float = 0.05
    """Validation share carved from a skill's train pool when the source has no validation split."""
    test_fraction: float = 0.05
    """Test share carved from a skill's train pool when the source has no test split."""

    def __post_init__(self) -> None:
        if not 0 < self.cat_fraction <= 1:
            raise ValueError(f"cat_fraction must be in (0, 1], got {self.cat_fraction}")
        for name in ("val_fraction", "test_fraction"):
            if not 0 <= getattr(self, name) < 0.5:
                raise ValueError(f"{name} must be in [0, 0.5), got {getattr(self, name)}")
        for name in ("smoke_size", "eval_smoke_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name, n in self.sizes.items():
            if n is not None and n < 1:
                raise ValueError(f"sizes.{name} must be >= 1 or null, got {n}")

    def size(self, profile: str, target: bool = False, name: str | None = None) -> int | None:
        """The size to pass to ``load`` for dataset ``name`` in ``profile``: the smoke sizes in the
        ``smoke`` profile; elsewhere ``sizes[name]`` when set, else the full sizes."""
        if profile == "smoke":
            return self.eval_smoke_size if target else self.smoke_size
        if name is not None and name in self.sizes:
            return self.sizes[name]
        return self.eval_full_size if target else self.full_size
