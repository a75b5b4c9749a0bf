"""Generated sources: deterministic, seeded offline miniatures of every setting.

Every generator takes ``(entry, split, size, seed)`` and returns formatted records. Splits come
from a hash of each instance's text (:func:`lorasoups.data.splits.take_split`), so a test item
is never a training item, whatever the seeds and sizes of the two calls.
"""
from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from lorasoups.data import formatting as F
from lorasoups.data import gen_code, gen_counting, gen_math, gen_qabot, gen_reading
from lorasoups.data.errors import DataError
from lorasoups.data.grammar import count_format, render_count_prompt
from lorasoups.data.registry import Entry
from lorasoups.data.splits import split_of, take_split

Records = list[dict[str, Any]]

VERSIONS = {
    "math": gen_math.GENERATOR_VERSION, "code": gen_code.GENERATOR_VERSION, "qabot": gen_qabot.GENERATOR_VERSION,
    "reading": gen_reading.GENERATOR_VERSION, "counting": gen_counting.GENERATOR_VERSION,
}


def _ids(entry: Entry, split: str, seed: int, recs: Records) -> Records:
    return [{"id": f"gen:{entry.name}:{split}:{seed}:{i}", **r} for i, r in enumerate(recs)]


def _math_skill(entry: Entry, split: str, size: int, seed: int) -> Records:
    probs = take_split(lambda rng: gen_math.draw_problem(rng, hard=False), lambda p: p["question"], split, size,
                       seed, salt="math")
    out = []
    for p in probs:
        rec = F.sft_record("", p["question"], p["solution"])
        del rec["id"]
        if entry.kind == "math":
            rec.update(question=p["question"], answer=F.format_number(p["target"]), target=p["target"])
        out.append(rec)
    return _ids(entry, split, seed, out)


def _math_hard(entry: Entry, split: str, size: int, seed: int) -> Records:
    # Hard problems share the skill's templates but never its numbers; salt "math-hard" keeps
    # validation (few-shot/LoraHub examples) and test apart.
    probs = take_split(lambda rng: gen_math.draw_problem(rng, hard=True), lambda p: p["question"], split, size,
                       seed, salt="math-hard", val_pct=10, test_pct=90)
    return _ids(entry, split, seed, [
        {"instruction": p["question"], "prompt": "", "completion": F.pal_completion(p["code"]),
         "question": p["question"], "answer": F.format_number(p["target"]), "target": p["target"], "code": p["code"]}
        for p in probs])


def _pal_demos(entry: Entry, split: str, size: int, seed: int) -> Records:
    return gen_math.pal_demo_records(size, seed)


def _code_skill(entry: Entry, split: str, size: int, seed: int) -> Records:
    tasks = take_split(gen_code.draw_task, lambda t: t["instruction"] + t["input"], split, size, seed, salt="code")
    return _ids(entry, split, seed, [
        {k: v for k, v in F.sft_record("", t["instruction"], t["output"], t["input"]).items() if k != "id"}
        for t in tasks])


def _instructions(entry: Entry, split: str, size: int, seed: int) -> Records:
    tasks = take_split(gen_qabot.draw_instruction, lambda t: t["instruction"] + "|" + t["input"], split, size, seed,
                       salt="instructions")
    return _ids(entry, split, seed, [
        {k: v for k, v in F.sft_record("", t["instruction"], t["output"], t["input"]).items() if k != "id"}
        for t in tasks])


def _qa_demos(entry: Entry, split: str, size: int, seed: int) -> Records:
    return [F.sft_record(f"gen:qa_fewshot:{i}", t["instruction"], t["output"], t["input"])
            for i, t in enumerate(gen_qabot.qa_fewshot()[:size])]


def _corpus(records: list[dict[str, str]], size: int) -> Records:
    return records[:size]


def _manual_corpus(salt: str) -> Callable[[Entry, str, int, int], Records]:
    def gen(entry: Entry, split: str, size: int, seed: int) -> Records:
        return _corpus(gen_qabot.manual_sections(seed, salt), size)
    return gen


def _manual_questions(salt: str) -> Callable[[Entry, str, int, int], Records]:
    def gen(entry: Entry, split: str, size: int, seed: int) -> Records:
        qs = [q for q in gen_qabot.manual_questions(seed, salt)
              if split_of(q["question"], salt, val_pct=15, test_pct=85) == split]
        return _ids(entry, split, seed, [
            {"instruction": q["question"], "prompt": F.alpaca_prompt(q["question"]), "completion": q["response"],
             "question": q["question"], "answer": q["answer"], "context": q["context"]} for q in qs[:size]])
    return gen


def _jargon_corpus(entry: Entry, split: str, size: int, seed: int) -> Records:
    # term by term: a size that is a multiple of 3 keeps whole terms (all three wordings of each)
    texts = [p for t in gen_reading.lexicon(seed) for p in gen_reading.textbook_passages(t)]
    return [{"id": f"gen:biomed_textbooks:{seed}:{i}", "text": x} for i, x in enumerate(texts[:size])]


def _rc_record(context: str, question: str, answer: str) -> dict[str, Any]:
    inst = F.rc_instruction(context, question)
    return {"instruction": inst, "prompt": F.alpaca_prompt(inst), "completion": answer, "question": question,
            "answer": answer, "context": context}


def _jargon_questions(entry: Entry, split: str, size: int, seed: int) -> Records:
    recs = []
    for t in gen_reading.lexicon(seed):
        ctx = gen_reading.abstract_passage(t)
        for q, a in gen_reading.term_questions(t):
            if split_of(q, "jargon-qa", val_pct=10, test_pct=90) == split:
                recs.append(_rc_record(ctx, q, a))
    random.Random(f"jargon-qa:{seed}").shuffle(recs)
    return _ids(entry, split, seed, recs[:size])


def _open_book_qa(entry: Entry, split: str, size: int, seed: int) -> Records:
    items = take_split(gen_reading.draw_town_question, lambda x: x["context"] + x["question"], split, size, seed,
                       salt="town-qa")
    return _ids(entry, split, seed, [
        {k: v for k, v in _rc_record(x["context"], x["question"], x["answer"]).items()
         if k in ("instruction", "prompt", "completion")} for x in items])


def _rc_demos(entry: Entry, split: str, size: int, seed: int) -> Records:
    rng = random.Random("rc-demos")
    return [{"id": f"gen:rc_fewshot:{i}", **_rc_record(**gen_reading.draw_town_question(rng))} for i in range(size)]


def _counting(entry: Entry, split: str, size: int, seed: int) -> Records:
    fmt, label = count_format(entry.extra["format"])
    # Train formats draw from the hash-"train" part of instances, test formats from the "test" part,
    # so no (sentence, letter) pair is shared between a skill and a target set.
    items = take_split(gen_counting.draw_count, lambda x: f"{x['sentence']}|{x['letter']}", split, size, seed,
                       salt="counting", val_pct=5, test_pct=20)
    recs = []
    for x in items:
        inst = render_count_prompt(x["sentence"], x["letter"], fmt)
        out = f"the correct answer is {x['count']}"
        recs.append({"instruction": inst, "prompt": F.alpaca_prompt(inst), "completion": out,
                     "answer": str(x["count"]), "format": label})
    return _ids(entry, split, seed, recs)


GENERATORS: dict[str, tuple[str, Callable[[Entry, str, int, int], Records]]] = {
    "math_skill": ("math", _math_skill),
    "math_skill_eval": ("math", _math_skill),
    "math_hard": ("math", _math_hard),
    "pal_demos": ("math", _pal_demos),
    "code_skill": ("code", _code_skill),
    "instructions": ("qabot", _instructions),
    "qa_demos": ("qabot", _qa_demos),
    "manual_corpus": ("qabot", _manual_corpus("manual")),
    "manual_corpus_b": ("qabot", _manual_corpus("manual-b")),
    "manual_questions": ("qabot", _manual_questions("manual")),
    "manual_questions_b": ("qabot", _manual_questions("manual-b")),
    "jargon_corpus": ("reading", _jargon_corpus),
    "jargon_questions": ("reading", _jargon_questions),
    "open_book_qa": ("reading", _open_book_qa),
    "rc_demos": ("reading", _rc_demos),
    "counting": ("counting", _counting),
}


def generate(entry: Entry, split: str, size: int, seed: int) -> tuple[Records, str]:
    """Records of ``entry``'s generated split and the generator's version string."""
    if entry.generator not in GENERATORS:
        raise DataError(f"dataset '{entry.name}' has no generator")
    family, fn = GENERATORS[entry.generator]
    if size < 1:
        raise DataError(f"dataset '{entry.name}': size must be >= 1, got {size}")
    return fn(entry, split, size, seed), VERSIONS[family]
