"""Reading mirror files (JSON arrays, JSONL, plain text) with errors that name file, line and field.

Why a hand-written JSON-array reader: ``json.load`` tells where a *syntax* error is, but once parsed
a record no longer knows its line, and "record 812 lacks 'output'" is much harder to fix than
"line 4061". We walk the array with ``JSONDecoder.raw_decode`` to keep each element's line.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorasoups.data.errors import DataError


@dataclass(frozen=True)
class Row:
    """One raw record and where it came from (file and 1-based line of its first character)."""

    data: dict[str, Any]
    file: str
    line: int
    index: int | None = None
    """0-based position in a JSON array (None for a JSONL line): several records of an array may
    share a line (a one-line file), so the position is what names one of them."""

    def where(self) -> str:
        return f"{self.file}:{self.line}" + ("" if self.index is None else f" (record {self.index})")

    def ident(self) -> str:
        """A stable id unique within the file: ``name:line`` for JSONL, ``name#index`` for an array."""
        name = Path(self.file).name
        return f"{name}:{self.line}" if self.index is None else f"{name}#{self.index}"

    def get(self, field: str, kinds: type | tuple[type, ...] = str, allow_empty: bool = False) -> Any:
        """``data[field]`` checked for presence, type and (for strings) non-emptiness."""
        return checked_field(self.data, field, kinds, self.where(), allow_empty)


def checked_field(obj: Any, field: str, kinds: type | tuple[type, ...], where: str, allow_empty: bool = False) -> Any:
    """``obj[field]`` checked for presence, type (a bool passes only where ``kinds`` names bool)
    and, for strings, non-emptiness; errors start with ``where`` (file and line, or a JSON path)."""
    if not isinstance(obj, dict) or field not in obj:
        have = (", ".join(sorted(obj)) or "none") if isinstance(obj, dict) else f"not an object: {type(obj).__name__}"
        raise DataError(f"{where}: missing field '{field}' (fields present: {have})")
    value = obj[field]
    bool_ok = bool in (kinds if isinstance(kinds, tuple) else (kinds,))
    if not isinstance(value, kinds) or (isinstance(value, bool) and not bool_ok):
        raise DataError(f"{where}: field '{field}' should be {_kind_name(kinds)}, got {type(value).__name__}")
    if isinstance(value, str) and not allow_empty and not value.strip():
        raise DataError(f"{where}: field '{field}' is empty")
    return value


def _kind_name(kinds: type | tuple[type, ...]) -> str:
    if isinstance(kinds, tuple):
        return " or ".join(k.__name__ for k in kinds)
    return kinds.__name__


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def read_json_array(path: Path) -> list[Row]:
    """Elements of a JSON file holding one array of objects, each with its line number."""
    text = _read_text(path)
    dec = json.JSONDecoder()
    pos = _skip_ws(text, 0)
    if pos >= len(text):
        raise DataError(f"{path}: file is empty (expected a JSON array of records)")
    if text[pos] != "[":
        raise DataError(f"{path}:{_line_of(text, pos)}: expected a JSON array of records, found {text[pos]!r}")
    rows: list[Row] = []
    pos = _skip_ws(text, pos + 1)
    if pos < len(text) and text[pos] == "]":
        return rows
    # Count newlines incrementally: recounting from 0 per record is quadratic (seconds on 4 MB).
    line_at, line_no = 0, 1

    def line_of(p: int) -> int:
        nonlocal line_at, line_no
        line_no += text.count("\n", line_at, p)
        line_at = p
        return line_no

    while True:
        try:
            obj, end = dec.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{exc.lineno}: malformed JSON in record {len(rows)}: {exc.msg}") from exc
        if not isinstance(obj, dict):
            raise DataError(
                f"{path}:{line_of(pos)}: record {len(rows)} is a {type(obj).__name__}, expected an object"
            )
        rows.append(Row(obj, str(path), line_of(pos), len(rows)))
        pos = _skip_ws(text, end)
        if pos < len(text) and text[pos] == ",":
            pos = _skip_ws(text, pos + 1)
            continue
        if pos < len(text) and text[pos] == "]":
            break
        raise DataError(f"{path}:{line_of(pos)}: malformed JSON after record {len(rows) - 1}: "
                        "expected ',' or ']'")
    if _skip_ws(text, pos + 1) != len(text):
        raise DataError(f"{path}:{_line_of(text, pos + 1)}: unexpected text after the JSON array")
    return rows


def read_jsonl(path: Path) -> list[Row]:
    """One JSON object per non-blank line."""
    rows: list[Row] = []
    for lineno, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{lineno}: malformed JSON line (column {exc.colno}): {exc.msg}") from exc
        if not isinstance(obj, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        rows.append(Row(obj, str(path), lineno))
    return rows


def read_records(path: Path) -> list[Row]:
    """JSONL for ``.jsonl`` files, a JSON array otherwise."""
    return read_jsonl(path) if path.suffix == ".jsonl" else read_json_array(path)


def read_text(path: Path) -> str:
    """A plain-text corpus file; an empty one is an error."""
    text = _read_text(path)
    if not text.strip():
        raise DataError(f"{path}: file is empty (expected a plain-text corpus)")
    return text


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    except OSError as exc:  # permissions, a directory, an I/O error
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from exc


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos
