"""The ``data:`` section of the run configuration."""
from __future__ import annotations

from dataclasses import dataclass
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
    """Records per skill split in the full profile: None keeps the whole dataset the source holds
    (mirror/hub splits whole; a generated split at its registry ``generated_size``), the paper's
    recipe. A number caps every skill; a profile that sets one says why in a comment."""
    eval_smoke_size: int = 16
    """Records per target test set in the smoke profile."""
    eval_full_size: int | None = None
    """Records per target test set in the full profile; None = the whole test set."""
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

    def size(self, profile: str, target: bool = False) -> int | None:
        """The size to pass to ``load`` for ``profile`` ('smoke' or 'full')."""
        if profile not in ("smoke", "full"):
            raise ValueError(f"profile must be 'smoke' or 'full', got {profile!r}")
        if target:
            return self.eval_smoke_size if profile == "smoke" else self.eval_full_size
        return self.smoke_size if profile == "smoke" else self.full_size
