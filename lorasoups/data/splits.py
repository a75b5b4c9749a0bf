"""Splits fixed by seed, the hash partition the generators use, and the CAT learning mixture."""
from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from lorasoups.data.errors import DataError

SPLITS = ("train", "validation", "test")


def hash_bucket(key: str, salt: str = "") -> int:
    """A stable bucket 0..99 for ``key`` (sha256, so independent of Python's hash seed)."""
    return int.from_bytes(hashlib.sha256(f"{salt}\x00{key}".encode()).digest()[:8], "big") % 100


def split_of(key: str, salt: str, val_pct: int = 5, test_pct: int = 5) -> str:
    """Which split an instance with this key belongs to, whatever the seed or size asked for.

    Why hashing instead of "generate N, then cut": a generated example keeps its split across seeds
    and sizes, so a test item can never show up in another run's training data.
    """
    b = hash_bucket(key, salt)
    if b < test_pct:
        return "test"
    if b < test_pct + val_pct:
        return "validation"
    return "train"


def take_split(
    draw: Callable[[random.Random], dict[str, Any]],
    key: Callable[[dict[str, Any]], str],
    split: str,
    size: int,
    seed: int,
    salt: str,
    *,
    val_pct: int = 5,
    test_pct: int = 5,
    max_tries: int | None = None,
) -> list[dict[str, Any]]:
    """``size`` distinct instances from ``draw`` whose key hashes into ``split`` (deterministic)."""
    if split not in SPLITS:
        raise DataError(f"unknown split '{split}'; choose one of {SPLITS}")
    rng = random.Random(f"{salt}:{seed}:{split}")
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    tries = max_tries if max_tries is not None else 400 * size + 2000
    for _ in range(tries):
        inst = draw(rng)
        k = key(inst)
        if k in seen or split_of(k, salt, val_pct, test_pct) != split:
            continue
        seen.add(k)
        out.append(inst)
        if len(out) == size:
            return out
    raise DataError(
        f"generator '{salt}': only {len(out)} distinct '{split}' instances after {tries} draws, {size} asked; "
        "ask for fewer or add templates"
    )


@dataclass(frozen=True)
class SplitSpec:
    """How a pool without its own split was cut (recorded with the dataset)."""

    seed: int
    val_fraction: float
    test_fraction: float
    pool_size: int
    sizes: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def carve(pool: Sequence[Any], seed: int, val_fraction: float = 0.05,
          test_fraction: float = 0.05) -> tuple[dict[str, list[Any]], SplitSpec]:
    """Shuffle ``pool`` with ``seed`` and cut validation and test off the front; the rest is train.

    A non-zero fraction gives at least one record when the pool has three or more; a zero fraction
    (the source already has that split) gives none.
    """
    n = len(pool)
    order = list(range(n))
    random.Random(seed).shuffle(order)

    def count(fraction: float) -> int:
        return max(1, round(n * fraction)) if fraction > 0 and n >= 3 else 0

    n_val, n_test = count(val_fraction), count(test_fraction)
    parts = {
        "validation": [pool[i] for i in order[:n_val]],
        "test": [pool[i] for i in order[n_val:n_val + n_test]],
        "train": [pool[i] for i in order[n_val + n_test:]],
    }
    spec = SplitSpec(seed, val_fraction, test_fraction, n, {k: len(v) for k, v in parts.items()})
    return parts, spec


def cat_counts(sizes: Sequence[int], fraction: float) -> int:
    """Records taken from *each* skill: ``fraction`` of the smallest skill set (the paper's min(5 %))."""
    if not sizes:
        raise DataError("cat_mixture: no skill datasets given")
    if not 0 < fraction <= 1:
        raise DataError(f"cat_mixture: fraction must be in (0, 1], got {fraction}")
    smallest = min(sizes)
    if smallest == 0:
        raise DataError("cat_mixture: a skill dataset is empty")
    return max(1, math.floor(fraction * smallest + 1e-9))  # 0.29 * 100 is 28.999...96 in floats
