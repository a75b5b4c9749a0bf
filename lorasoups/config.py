"""Layered YAML configs parsed into flat, typed dataclasses (one per pipeline stage).

Why our own ~150 lines instead of a config framework: papermill merges YAML shallowly and only
*warns* on unknown parameters; we want every typo and wrong type to fail before a run starts, with
a "did you mean", naming the file and the key. Stage dataclasses live next to the code that uses
them (e.g. ``lorasoups.models.ModelConfig``); any dataclass works with :func:`from_dict`.
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from lorasoups import paths

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the source, key and problem."""


def did_you_mean(word: str, choices: typing.Iterable[str]) -> str:
    """A ``did you mean 'x'?`` suffix for error messages (empty when nothing is close)."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _check(value: Any, tp: Any, where: str) -> Any:
    """Return ``value`` converted to ``tp`` (int->float only), or raise ConfigError."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(
                f"{where}: {value!r} is not one of {list(choices)}{did_you_mean(str(value), map(str, choices))}"
            )
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r} ({type(value).__name__})")
        (item_tp, *_) = typing.get_args(tp) or (Any,)
        return [_check(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r} ({type(value).__name__})")
        _, val_tp = typing.get_args(tp) or (Any, Any)
        return {k: _check(v, val_tp, f"{where}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected float, got {value!r} ({type(value).__name__})")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected int, got {value!r} ({type(value).__name__})")
        return value
    if tp in (str, bool):
        if not isinstance(value, tp):
            raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r} ({type(value).__name__})")
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    return value


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "config") -> T:
    """Build dataclass ``cls`` from ``data``, rejecting unknown keys and wrong types.

    ``where`` prefixes every message (e.g. ``configs/base.yaml:train``) so the user knows which
    file and section to fix.
    """
    data = dict(data or {})
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    if unknown:
        key = unknown[0]
        raise ConfigError(f"{where}: unknown key '{key}' for {cls.__name__}{did_you_mean(key, fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {k: _check(v, hints.get(k, Any), f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def to_dict(obj: Any) -> Any:
    """A dataclass (or nested structure of them) as plain JSON-able data."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Recursive merge: mappings merge key by key, everything else is replaced by ``override``."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    """One YAML file as a mapping; a relative path is looked up in ``configs/`` if not found."""
    p = Path(path)
    if not p.exists() and not p.is_absolute() and (paths.CONFIGS / p).exists():
        p = paths.CONFIGS / p
    if not p.exists():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: top level must be a mapping of sections, got {type(data).__name__}")
    return data


def load_layers(*files: str | Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Deep-merge YAML files left to right (``configs/base.yaml`` first), then ``overrides``."""
    merged: dict[str, Any] = {}
    for f in files:
        merged = deep_merge(merged, read_yaml(f))
    return deep_merge(merged, overrides or {})


def section(layers: dict[str, Any], name: str, cls: type[T], source: str = "config") -> T:
    """The dataclass for section ``name`` of merged layers (missing section -> defaults)."""
    return from_dict(cls, layers.get(name) or {}, f"{source}:{name}")


def check_sections(layers: dict[str, Any], known: typing.Iterable[str], source: str = "config") -> None:
    """Reject a top-level section nobody reads (a typo such as ``trian:``)."""
    known = list(known)
    for key in layers:
        if key not in known:
            raise ConfigError(f"{source}: unknown section '{key}'{did_you_mean(key, known)}")
