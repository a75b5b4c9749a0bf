"""Pull a program or a final number out of a model's generation.

Program-aided answers (GSM-Hard, the paper's math setting) come back as a ``def solution():``
program, fenced with triple backticks, with the triple single quotes the authors' few-shot
demonstrations use (``few_shot/math.json``), or bare. Numbers are read the way the authors' code
scores text: the last number in the answer.
"""
from __future__ import annotations

import math
import re

# ```python ... ```, ``` ... ```, ''' ... ''' (the authors' demonstrations), """ ... """
_FENCE = re.compile(r"(```|'''|\"\"\")[ \t]*(?:python|py|Python)?[ \t]*\n(.*?)(?:\1|\Z)", re.S)
_IMPORT = re.compile(r"^(?:import\s+\w|from\s+[\w.]+\s+import\s)")
# thousands separators only in groups of three ("1,234,567"), so "3,4" is two numbers, not 34
_NUMBER = re.compile(r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|(?<![\w\d])-?\.\d+")


def extract_program(text: str, entry: str = "solution") -> str | None:
    """The program in ``text``: the first fenced block defining ``entry`` (else the first fenced
    block), else a bare ``def entry(...)`` with its body and the imports right above it.
    None when there is no code at all."""
    if not text:
        return None
    blocks = [m.group(2) for m in _FENCE.finditer(text)]
    defining = re.compile(rf"^def\s+{re.escape(entry)}\s*\(", re.M)
    for block in blocks:
        if defining.search(block):
            return block.strip("\n") + "\n"
    match = defining.search(text)
    if match:
        return _bare_function(text, match.start())
    if blocks and blocks[0].strip():
        return blocks[0].strip("\n") + "\n"
    return None


def _bare_function(text: str, start: int) -> str:
    """``def`` line, its indented body (blank lines allowed), and import lines just above it."""
    before = text[:start].splitlines()
    imports: list[str] = []
    for line in reversed(before):
        if _IMPORT.match(line):
            imports.insert(0, line)
        elif line.strip():
            break
    lines = text[start:].splitlines()
    body = [lines[0]]
    for line in lines[1:]:
        if line.strip() and not line[:1].isspace():
            break
        body.append(line)
    while body and not body[-1].strip():
        body.pop()
    return "\n".join(imports + body) + "\n"


def numbers(text: str) -> list[float]:
    """Every number in ``text``, in order (thousands commas removed)."""
    out = []
    for m in _NUMBER.finditer(text or ""):
        try:
            out.append(float(m.group(0).replace(",", "")))
        except ValueError:  # pragma: no cover - the pattern only matches numbers
            continue
    return out


def last_number(text: str) -> float | None:
    """The last number in ``text`` (the authors' scoring reads this), or None."""
    found = numbers(text)
    return found[-1] if found else None


def close_enough(pred: float | None, gold: float, tol: float = 1e-3) -> bool:
    """``|pred - gold| <= tol`` (the authors' GSM-Hard criterion); NaN and None are wrong."""
    if pred is None or gold is None:
        return False
    try:
        pred, gold = float(pred), float(gold)
    except (TypeError, ValueError):
        return False
    if math.isnan(pred) or math.isnan(gold):
        return False
    return abs(pred - gold) <= tol


def authors_response_split(decoded: str, marker: str = "### Response:") -> str:
    """What the authors' released scorer reads: the text after the FIRST ``### Response:``.

    With their 8-shot prompt decoded together with the answer, that is the first demonstration's
    response, not the model's: kept only to show the difference (see the issue text); score the
    model's own generation instead.
    """
    parts = decoded.split(marker)
    return parts[1] if len(parts) > 1 else decoded


__all__ = [
    "authors_response_split", "close_enough", "extract_program", "last_number", "numbers",
]
