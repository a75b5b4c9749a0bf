"""Refuse a target test example that appears verbatim in a skill's training data.

A target example is identified by its ``question`` (or ``instruction``) text; it leaks when that
text, whitespace- and case-normalised, occurs inside any skill training record (prompt,
completion or corpus text). Texts shorter than ``min_chars`` are ignored (a question like
"Why?" would match everywhere).
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from lorasoups.data.errors import DataError

_WS = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Whitespace- and case-normalised text: the form every comparison here (and a pool's own
    de-duplication) uses."""
    return _WS.sub(" ", text).strip().lower()


def _key(rec: dict[str, Any]) -> str:
    for field in ("question", "instruction", "prompt", "text"):
        if rec.get(field):
            return str(rec[field])
    return ""


def _skill_text(rec: dict[str, Any]) -> str:
    return " \n ".join(str(rec[f]) for f in ("instruction", "prompt", "completion", "text") if rec.get(f))


def find_leaks(target: Iterable[dict[str, Any]], skills: Mapping[str, Iterable[dict[str, Any]]],
               min_chars: int = 20) -> list[tuple[str, str, str]]:
    """``(target id, skill name, skill record id)`` for every leaked target example."""
    joined: dict[str, tuple[str, list[tuple[int, str]]]] = {}
    for name, recs in skills.items():
        parts, offsets, pos = [], [], 0
        for i, r in enumerate(recs):
            t = normalise(_skill_text(r))
            offsets.append((pos, str(r.get("id", i))))
            parts.append(t)
            pos += len(t) + 3
        joined[name] = ("\n\x00\n".join(parts), offsets)
    leaks = []
    for j, rec in enumerate(target):
        key = normalise(_key(rec))
        if len(key) < min_chars:
            continue
        for name, (blob, offsets) in joined.items():
            at = blob.find(key)
            if at >= 0:
                rid = next(rid for start, rid in reversed(offsets) if start <= at)
                leaks.append((str(rec.get("id", j)), name, rid))
    return leaks


def check_leakage(target: Iterable[dict[str, Any]], skills: Mapping[str, Iterable[dict[str, Any]]],
                  min_chars: int = 20) -> None:
    """Raise DataError naming the leaked examples (first five) and where they appear."""
    leaks = find_leaks(target, skills, min_chars)
    if leaks:
        shown = "; ".join(f"target '{t}' appears in skill '{s}' record '{r}'" for t, s, r in leaks[:5])
        raise DataError(f"{len(leaks)} target example(s) appear verbatim in skill training data: {shown}")


def _tokens(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


class ScoredOverlap:
    """What a held-out record (a target's validation pool, drawn from a larger source than its test
    file) must not share with the scored items: their question, word for word or nearly (token
    Jaccard >= ``near``: a reworded copy of a question came back in a later BioASQ batch), their
    answer, or a passage of their context (``min_chars`` or longer)."""

    def __init__(self, scored: Iterable[dict[str, Any]], near: float = 0.8, min_chars: int = 20):
        scored = list(scored)
        self.near, self.min_chars = near, min_chars
        self.questions = {normalise(r["question"]) for r in scored}
        self.question_tokens = [_tokens(r["question"]) for r in scored]
        self.answers = {normalise(r["answer"]) for r in scored}
        self.contexts = [normalise(r.get("context") or "") for r in scored]

    def reason(self, question: str, answer: str, passages: Iterable[str]) -> str | None:
        """Why the record overlaps a scored item (None when it does not)."""
        if normalise(question) in self.questions:
            return "same question"
        toks = _tokens(question)
        for other in self.question_tokens:
            if toks and other and len(toks & other) / len(toks | other) >= self.near:
                return "nearly the same question"
        if normalise(answer) in self.answers:
            return "same answer"
        for passage in passages:
            p = normalise(passage)
            if len(p) >= self.min_chars and any(p in c for c in self.contexts):
                return "a passage of a scored context"
        return None
