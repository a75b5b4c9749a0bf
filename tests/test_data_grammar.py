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


def test_grammar_format_g1_is_the_documented_draw_and_new():
    from lorasoups.data.grammar import GRAMMAR_FORMATS, count_format, sample_formats

    assert GRAMMAR_FORMATS["g1"] == sample_formats(1, 161, exclude=list(PAPER_FORMATS.values()))[0]
    shown = {(f.casing, f.separator, f.space) for f in PAPER_FORMATS.values()}
    assert (GRAMMAR_FORMATS["g1"].casing, GRAMMAR_FORMATS["g1"].separator, GRAMMAR_FORMATS["g1"].space) not in shown
    assert count_format("g1")[1] == "grammar-g1" and count_format(4)[1] == "paper-4"
    with pytest.raises(KeyError, match="unknown prompt format 5"):
        count_format(5)


def test_format_g1_from_the_mirror_is_the_paper_instances_rerendered():
    """The paper's three training files hold the same instances in three formats, so the derived
    fourth must hold them too: row i of g1 asks what row i of format 2 asks, with g1's layout."""
    from lorasoups.data import load
    from lorasoups.data.grammar import GRAMMAR_FORMATS

    root = mirror_root()
    path = root / "lorasoups-paper" / "prompt_formats" / "train_format2.json" if root else None
    if path is None or not path.is_file():
        pytest.skip("mirror absent")
    g1 = load("count_format_g1", "train", source="mirror", size=200, seed=3)
    f2 = load("count_format2", "train", source="mirror", size=200, seed=3)
    assert len(g1) == len(f2) == 200
    for a, b in zip(g1, f2, strict=True):
        m = re.search(r"'(.*)'\. How many words contain the letter '(.)'", b["instruction"], re.S)
        assert a["instruction"] == render_count_prompt(m.group(1), m.group(2), GRAMMAR_FORMATS["g1"])
        assert a["answer"] == b["answer"] and a["format"] == "grammar-g1"
    assert "Sentence:: '" in g1[0]["instruction"]
