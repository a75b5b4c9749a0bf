"""Config spine: unknown keys, wrong types and unknown sections fail with clear messages."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from lorasoups.config import ConfigError, check_sections, deep_merge, from_dict, load_layers, to_dict


@dataclass
class Train:
    learning_rate: float = 1e-4
    epochs: int = 1
    granularity: Literal["global", "layer", "module"] = "layer"
    target_modules: list[str] = field(default_factory=lambda: ["q_proj"])
    resume: bool = True
    output: str | None = None


def test_defaults_and_int_to_float():
    cfg = from_dict(Train, {"learning_rate": 1, "epochs": 3})
    assert cfg.learning_rate == 1.0 and isinstance(cfg.learning_rate, float)
    assert cfg.epochs == 3 and cfg.granularity == "layer"


def test_unknown_key_did_you_mean():
    with pytest.raises(ConfigError, match=r"base.yaml:train: unknown key 'learning_rat' for Train; did you mean 'learning_rate'\?"):
        from_dict(Train, {"learning_rat": 1e-3}, "base.yaml:train")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"epochs": "3"}, r"cfg\.epochs: expected int, got '3' \(str\)"),
        ({"epochs": 2.5}, r"cfg\.epochs: expected int, got 2\.5 \(float\)"),
        ({"epochs": True}, r"cfg\.epochs: expected int, got True \(bool\)"),
        ({"resume": "yes"}, r"cfg\.resume: expected bool, got 'yes' \(str\)"),
        ({"learning_rate": "1e-4"}, r"cfg\.learning_rate: expected float, got '1e-4' \(str\)"),
        ({"target_modules": "q_proj"}, r"cfg\.target_modules: expected a list"),
        ({"target_modules": ["q_proj", 3]}, r"cfg\.target_modules\[1\]: expected str, got 3"),
        ({"granularity": "layers"}, r"cfg\.granularity: 'layers' is not one of \['global', 'layer', 'module'\]; did you mean 'layer'\?"),
        ({"output": 5}, r"cfg\.output: expected"),
    ],
)
def test_wrong_types(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(Train, data, "cfg")


def test_optional_accepts_none_and_value():
    assert from_dict(Train, {"output": None}).output is None
    assert from_dict(Train, {"output": "x"}).output == "x"


def test_layers_deep_merge(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("train:\n  epochs: 3\n  learning_rate: 0.0003\nmodel:\n  name: a\n")
    exp = tmp_path / "exp.yaml"
    exp.write_text("train:\n  epochs: 1\n")
    layers = load_layers(base, exp, overrides={"model": {"name": "b"}})
    assert layers == {"train": {"epochs": 1, "learning_rate": 0.0003}, "model": {"name": "b"}}
    assert deep_merge({"a": {"b": 1}}, {"a": 2}) == {"a": 2}


def test_unknown_section_and_bad_files(tmp_path):
    with pytest.raises(ConfigError, match=r"x.yaml: unknown section 'trian'; did you mean 'train'\?"):
        check_sections({"trian": {}}, ["train", "model"], "x.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_layers(bad)
    with pytest.raises(ConfigError, match="config file not found: nope.yaml"):
        load_layers("nope.yaml")
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("3\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_layers(scalar)


def test_to_dict_roundtrip():
    cfg = Train(epochs=2)
    assert from_dict(Train, to_dict(cfg)) == cfg
