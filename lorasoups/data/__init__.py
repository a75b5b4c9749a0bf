"""The data registry: the paper's four settings from the hub, the local mirror or generators.

Stable entry points::

    from lorasoups.data import REGISTRY, SETTINGS, load, identity, cat_mixture, check_leakage
    ds = load("gsm_hard", "test")            # auto: hub -> mirror -> generated
    identity(ds)["source"]                   # which one was used, plus version and fingerprint
"""
from lorasoups.data.config import DataConfig
from lorasoups.data.errors import DataError
from lorasoups.data.formatting import alpaca_prompt, fewshot_prompt, rc_instruction, to_conversational
from lorasoups.data.grammar import (
    GRAMMAR_FORMATS,
    PAPER_FORMATS,
    PAPER_TEST_FORMATS,
    PAPER_TRAIN_FORMATS,
    Field,
    PromptFormat,
    render,
    render_count_prompt,
    sample_format,
    sample_formats,
)
from lorasoups.data.leakage import check_leakage, find_leaks
from lorasoups.data.loading import SOURCES, demonstrations_for, identity, load, mirror_root, registry_table
from lorasoups.data.mixture import cat_mixture
from lorasoups.data.registry import REGISTRY, SETTINGS, Entry, Setting, get_entry, get_setting
from lorasoups.data.splits import SPLITS

__all__ = [
    "DataConfig", "DataError", "Entry", "Field", "GRAMMAR_FORMATS", "PAPER_FORMATS", "PAPER_TEST_FORMATS",
    "PAPER_TRAIN_FORMATS", "PromptFormat", "REGISTRY", "SETTINGS", "SOURCES", "SPLITS", "Setting", "alpaca_prompt",
    "cat_mixture", "check_leakage", "demonstrations_for", "fewshot_prompt", "find_leaks", "get_entry", "get_setting",
    "identity", "load", "mirror_root", "rc_instruction", "registry_table", "render", "render_count_prompt", "sample_format",
    "sample_formats", "to_conversational",
]
