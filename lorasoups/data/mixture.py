"""The CAT learning set: the same small share of every skill's data, mixed and shuffled.

The paper (§3) learns CAT's weights on "5 % of each skill dataset", taking the minimum: every
skill contributes ``floor(fraction * smallest skill size)`` records, so no skill dominates.
"""
from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from typing import Any

import datasets

from lorasoups.data.errors import DataError
from lorasoups.data.loading import _records_fingerprint
from lorasoups.data.splits import cat_counts

MIX_COLUMNS = ("id", "skill", "instruction", "prompt", "completion")


def _as_sft(rec: dict[str, Any], where: str) -> dict[str, str]:
    if "prompt" in rec and "completion" in rec:
        return {"instruction": rec.get("instruction", ""), "prompt": rec["prompt"], "completion": rec["completion"]}
    if "text" in rec:  # a corpus: an empty prompt makes TRL's completion-only loss cover the whole text
        return {"instruction": "", "prompt": "", "completion": rec["text"]}
    raise DataError(f"{where}: record has neither prompt/completion nor text (fields: {sorted(rec)})")


def _ident(ds: Any) -> dict[str, Any] | None:
    try:
        return json.loads(ds.info.description)
    except (AttributeError, TypeError, ValueError):
        return None


def cat_mixture(
    skills: Sequence[datasets.Dataset] | Mapping[str, datasets.Dataset],
    fraction: float = 0.05,
    seed: int = 0,
    equal: bool = True,
) -> datasets.Dataset:
    """``floor(fraction * min size)`` records of each skill, mixed and shuffled with ``seed``.

    ``equal=False`` takes ``floor(fraction * size)`` of each skill instead (no balancing).

    Corpus records (``text``) become ``prompt=""``, ``completion=text``. The result has columns
    ``id, skill, instruction, prompt, completion``; its provenance (see ``identity``) lists each
    skill's identity, the count taken from each and the seed.
    """
    if isinstance(skills, Mapping):
        named = dict(skills)
    else:  # name each skill after its dataset (index-suffixed if two share a name)
        named = {}
        for i, d in enumerate(skills):
            nm = (_ident(d) or {}).get("name", f"skill{i}")
            named[nm if nm not in named else f"{nm}#{i}"] = d
    for nm, d in named.items():
        if len(d) == 0:
            raise DataError(f"cat_mixture: skill '{nm}' is empty")
    n = cat_counts([len(d) for d in named.values()], fraction)
    counts = {nm: n if equal else cat_counts([len(d)], fraction) for nm, d in named.items()}
    rows: list[dict[str, Any]] = []
    for k, (nm, d) in enumerate(named.items()):
        idx = random.Random(f"{seed}:{k}").sample(range(len(d)), counts[nm])
        for i in idx:
            rec = d[i]
            rows.append({"id": str(rec.get("id", f"{nm}:{i}")), "skill": nm,
                         **_as_sft(rec, f"cat_mixture: skill '{nm}' record {i}")})
    random.Random(seed).shuffle(rows)
    rows = [{c: r[c] for c in MIX_COLUMNS} for r in rows]
    ident = {"name": "cat_mixture", "source": "mixture", "version": "1", "split": None, "fraction": fraction,
             "seed": seed, "equal": equal, "per_skill": counts, "num_rows": len(rows), "fingerprint": _records_fingerprint(rows),
             "skills": {nm: (_ident(d) or {"num_rows": len(d)}) for nm, d in named.items()}}
    ds = datasets.Dataset.from_list(rows)
    ds.info.description = json.dumps(ident, ensure_ascii=False)
    ds.info.dataset_name = "cat_mixture"
    return ds
