"""Generated suites: determinism, correctness against brute-force references, split hygiene."""
from __future__ import annotations

import ast
import re

import pytest

from lorasoups.data import gen_math, identity, load
from lorasoups.data.grammar import COUNT_INSTRUCTION

GENERATED = [
    ("metamathqa", "train"), ("gsm8k", "test"), ("code_alpaca", "train"), ("gsm_hard", "test"),
    ("alpaca", "train"), ("qabot_dnd", "test"), ("squad", "train"), ("bioasq_rc", "test"),
    ("count_format1", "train"), ("count_format3", "test"), ("dnd_manual", "train"), ("biomed_textbooks", "train"),
]


@pytest.mark.parametrize("name,split", GENERATED)
def test_generators_are_deterministic_and_seeded(name, split):
    a = load(name, split, source="generated", seed=3, size=12)
    b = load(name, split, source="generated", seed=3, size=12)
    assert a.to_list() == b.to_list()
    assert identity(a)["fingerprint"] == identity(b)["fingerprint"]
    assert identity(a)["source"] == "generated"
    c = load(name, split, source="generated", seed=4, size=12)
    assert c.to_list() != a.to_list()
    assert len({r.get("prompt", r.get("text")) for r in a}) == len(a), "duplicates in a generated split"


@pytest.mark.parametrize("name", ["metamathqa", "code_alpaca", "alpaca", "squad", "count_format1"])
def test_generated_splits_never_share_an_instance_across_seeds(name):
    train = {r["prompt"] for r in load(name, "train", source="generated", seed=0, size=300)}
    for seed in (0, 1, 2):
        for split in ("validation", "test"):
            held = {r["prompt"] for r in load(name, split, source="generated", seed=seed, size=30)}
            assert not train & held


def test_at_least_twenty_math_templates_and_solutions_agree_with_programs():
    assert len(gen_math.TEMPLATES) >= 20
    ds = load("gsm8k", "train", source="generated", seed=0, size=200)
    assert len({gen_math_template(r["question"]) for r in ds}) >= 20
    for r in ds:
        final = re.search(r"The answer is (-?[\d.]+)\.$", r["completion"])
        assert final, r["completion"]
        assert float(final.group(1)) == r["target"]
        # small numbers in the skill data (a 135M model must learn them)
        assert max(int(n) for n in re.findall(r"\d+", r["question"])) < 1000


def gen_math_template(question: str) -> str:
    """Which template produced a question: its wording with numbers and names removed."""
    q = re.sub(r"\d+", "N", question)
    for n in gen_math.NAMES:
        q = q.replace(n, "X")
    return q.split(".")[0][:25]


def test_hard_math_programs_execute_to_their_float_gold():
    ds = load("gsm_hard", "test", source="generated", seed=0, size=150)
    big = 0
    for r in ds:
        code = re.search(r"```\n(.*)\n```", r["completion"], re.S).group(1)
        assert code == r["code"]
        ns: dict = {}
        exec(code, ns)  # the reference program, run independently of the generator's own evaluation
        assert abs(ns["solution"]() - r["target"]) <= 1e-9
        assert isinstance(r["target"], float)
        big += max(int(n) for n in re.findall(r"\d+", r["question"])) >= 10000
        assert "### Response:" in r["prompt"] and r["prompt"].endswith(f"{r['question']}\n\n### Response:\n")
    assert big >= 140  # GSM-Hard's construction: large numbers


def test_code_examples_are_true_when_the_answer_code_runs():
    ds = load("code_alpaca", "train", source="generated", seed=1, size=150)
    for r in ds:
        m = re.search(r"For example, (\w+)\((.*)\) should return (.*)\.$", r["instruction"], re.S)
        assert m, r["instruction"]
        ns: dict = {}
        exec(r["completion"], ns)
        assert ns[m.group(1)](ast.literal_eval(m.group(2))) == ast.literal_eval(m.group(3))
        assert "def " in r["completion"]


def test_counting_gold_matches_a_brute_force_count():
    for name, split in (("count_format1", "train"), ("count_format10", "test")):
        for r in load(name, split, source="generated", seed=0, size=200):
            m = re.search(r"'(.*)'\. How many words contain the letter '(.)'", r["instruction"])
            sentence, letter = m.group(1), m.group(2)
            count = len([w for w in sentence.split(" ") if letter in w])
            assert r["answer"] == str(count) and r["completion"] == f"the correct answer is {count}"
            assert r["instruction"].startswith(COUNT_INSTRUCTION)
    answers = [r["answer"] for r in load("count_format1", "train", source="generated", size=300)]
    assert 0.1 < answers.count("0") / len(answers) < 0.7  # not a degenerate task


def test_qabot_questions_are_answerable_from_the_manual_and_not_in_it():
    manual = " ".join(r["text"] for r in load("dnd_manual", "train", source="generated", seed=5))
    qs = load("qabot_dnd", "test", source="generated", seed=5)
    assert len(qs) >= 20
    for r in qs:
        assert r["question"] not in manual
        # the fact's numbers / codes appear in the manual (closed-book answerable after training on it)
        for token in re.findall(r"E\d+|\d+(?:\.\d+)?", r["answer"]):
            assert token in manual, (token, r["answer"])
    other = " ".join(r["text"] for r in load("biology_chapter", "train", source="generated", seed=5))
    assert other != manual


def test_reading_comprehension_answers_are_spans_of_their_context():
    for r in load("bioasq_rc", "test", source="generated", seed=2, size=100):
        assert r["answer"] in r["context"] and r["context"] in r["instruction"]
    corpus = " ".join(r["text"] for r in load("biomed_textbooks", "train", source="generated", seed=2))
    for r in load("bioasq_rc", "test", source="generated", seed=2, size=100):
        assert r["question"] not in corpus
    squad = load("squad", "train", source="generated", seed=2, size=200)
    not_in = 0
    for r in squad:
        ctx = re.search(r"Context: (.*)\n\nQuestion:", r["instruction"], re.S).group(1)
        not_in += r["completion"] == "Not in context"
        assert r["completion"] == "Not in context" or r["completion"] in ctx
    assert 0 < not_in < 100


def test_reading_lexicon_names_every_term_product_and_disease_once():
    """One fact per name: a disease or product shared by two terms would teach contradictions."""
    from lorasoups.data import gen_reading

    for seed in (0, 1, 2):
        terms = gen_reading.lexicon(seed)
        names = [t.name for t in terms] + [t.partner for t in terms]
        assert len(set(names)) == len(names) == 2 * gen_reading.N_TERMS
        for field in ("product", "disease"):
            values = [getattr(t, field) for t in terms]
            assert len(set(values)) == len(values), (seed, field)
        assert not {t.product for t in terms} & set(names)
