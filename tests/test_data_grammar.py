"""The prompt-format grammar (Sclar et al. 2024) against hand-written renderings and the paper's files."""
from __future__ import annotations

import json
import re

import pytest

from lorasoups.data import (
    PAPER_FORMATS,
    Field,
    PromptFormat,
    mirror_root,
    render,
    sample_format,
    sample_formats,
)
from lorasoups.data.grammar import SEPARATORS, SPACES, render_count_prompt


def test_render_by_hand():
    fmt = PromptFormat(casing="upper", separator=" - ", space=" || ")
    assert render([Field("Sentence", "a cat"), Field("Answer", "")], fmt) == "SENTENCE - a cat || ANSWER - "
    fmt = PromptFormat(casing="lower", separator=":: ", space="\n", item_wrapper="[x]", numbering="upper_roman",
                       item_separator="\t")
    got = render([Field("Question", "Pick one"), Field("Options", "", ("red", "blue", "green", "pink"))], fmt)
    assert got == "question:: Pick one\noptions:: \n[I]\tred\n[II]\tblue\n[III]\tgreen\n[IV]\tpink"
    fmt = PromptFormat(item_wrapper="x )", numbering="lower_letters", item_separator="")
    assert render([Field(None, "", ("x", "y"))], fmt) == "a )x\nb )y"
    assert PromptFormat(numbering="unicode_roman", item_wrapper="<x>").label(3) == "<\u2163>"


def test_grammar_constraints_hold_for_sampled_formats():
    seen = set()
    for seed in range(2000):
        f = sample_format(seed)
        assert f.separator in SEPARATORS and f.separator != ""
        assert f.space in SPACES
        if "\n" in f.separator:
            assert "\n" in f.space
        seen.add((f.casing, f.separator, f.space))
    assert len(seen) > 500
    assert sample_format(7) == sample_format(7)
    fs = sample_formats(10, seed=1, exclude=list(PAPER_FORMATS.values()))
    assert len({(f.casing, f.separator, f.space) for f in fs}) == 10


def test_invalid_formats_are_refused():
    with pytest.raises(ValueError, match="separator"):
        PromptFormat(separator="")
    with pytest.raises(ValueError, match="newline"):
        PromptFormat(separator="\n\t", space=" ")
    with pytest.raises(ValueError, match="casing"):
        PromptFormat(casing="snake")
    with pytest.raises(ValueError, match="only 12 labels"):
        PromptFormat(numbering="unicode_roman").label(12)


def test_count_prompt_by_hand_in_format_3():
    got = render_count_prompt("a red bus", "b", PAPER_FORMATS[3])
    assert got == ("Please count the number of words in a sentence that contain the given letter. SENTENCE\t'a red "
                   "bus'. How many words contain the letter 'b' in the sentence. <sep> ANSWER\t\n\n")


@pytest.mark.parametrize("k", sorted(PAPER_FORMATS))
def test_paper_formats_reproduce_the_mirrored_files(k):
    root = mirror_root()
    name = f"train_format{k}.json" if k in (1, 2, 4) else f"test_format{k}.json"
    path = root / "lorasoups-paper" / "prompt_formats" / name if root else None
    if path is None or not path.is_file():
        pytest.skip("mirror absent")
    rows = json.loads(path.read_text())[:300]
    for r in rows:
        m = re.search(r"'(.*)'\. How many words contain the letter '(.)'", r["instruction"], re.S)
        assert render_count_prompt(m.group(1), m.group(2), PAPER_FORMATS[k]) == r["instruction"]
