"""QA scoring: normalised exact match, token F1 (the paper's Table 2 metric for BioASQ) and answer
containment, with SQuAD's normalisation (lower case, no punctuation, no articles, single spaces).
"""
from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from typing import Any

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation) | {"\u2018", "\u2019", "\u201c", "\u201d", "\u2013", "\u2014"}


#: What the offline QA keys mean, recorded with them: reference overlap, not an LLM judge.
METRIC_NOTE = ("offline, no LLM judge: exact_match, f1 (SQuAD token F1) and contains (the gold answer "
               "inside the answer, whole words) against the gold answer; the paper's QABot accuracy and "
               "BioASQ ELO come from its GPT-4 judges (judge_* keys / ELO result when a judge ran)")


def normalize_answer(text: str) -> str:
    """SQuAD v1.1 normalisation (plus typographic quotes and dashes, which SQuAD's misses)."""
    text = (text or "").lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, gold: str | Sequence[str]) -> float:
    """1.0 when the normalised prediction equals a normalised gold answer."""
    golds = [gold] if isinstance(gold, str) else list(gold)
    p = normalize_answer(prediction)
    return float(any(p == normalize_answer(g) for g in golds))


def _f1(pred_tokens: list[str], gold_tokens: list[str]) -> float:
    if not pred_tokens or not gold_tokens:  # SQuAD: both empty is a match, one empty is not
        return float(pred_tokens == gold_tokens)
    common = Counter(pred_tokens) & Counter(gold_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, gold: str | Sequence[str]) -> float:
    """Bag-of-tokens F1 after normalisation; the best over several gold answers."""
    golds = [gold] if isinstance(gold, str) else list(gold)
    p = normalize_answer(prediction).split()
    return max((_f1(p, normalize_answer(g).split()) for g in golds), default=0.0)


def containment(prediction: str, gold: str | Sequence[str]) -> float:
    """1.0 when a normalised gold answer appears inside the normalised prediction (whole words)."""
    golds = [gold] if isinstance(gold, str) else list(gold)
    p = f" {normalize_answer(prediction)} "
    return float(any(normalize_answer(g) and f" {normalize_answer(g)} " in p for g in golds))


def score_qa(
    predictions: Sequence[str], golds: Sequence[str | Sequence[str]]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Mean exact match, token F1 and containment; returns (metrics, per-example rows)."""
    if len(predictions) != len(golds):
        raise ValueError(f"score_qa: {len(predictions)} predictions but {len(golds)} gold answers")
    rows = []
    for i, (pred, gold) in enumerate(zip(predictions, golds)):
        if not isinstance(pred, str):
            raise ValueError(f"score_qa: prediction {i} is {type(pred).__name__}, not a string")
        rows.append({
            "index": i, "prediction": pred, "gold": gold,
            "exact_match": exact_match(pred, gold), "f1": token_f1(pred, gold),
            "contains": containment(pred, gold),
        })
    n = len(rows)
    metrics = {
        "n": n,
        **{k: (sum(r[k] for r in rows) / n if n else 0.0) for k in ("exact_match", "f1", "contains")},
        "metric_note": METRIC_NOTE,
    }
    return metrics, rows


__all__ = ["METRIC_NOTE", "containment", "exact_match", "normalize_answer", "score_qa", "token_f1"]
