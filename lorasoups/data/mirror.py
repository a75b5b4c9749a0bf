"""Readers for the local mirror (``lorasoups.paths.data_mirror()``): files -> formatted records.

Each reader returns *pools*: the splits the files themselves provide (e.g. GSM8K's train and
test); the loader carves whatever else is asked for by seed. Every record is checked field by
field and an error names the file and line.
"""
from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lorasoups.data import formatting as F
from lorasoups.data.errors import DataError
from lorasoups.data.grammar import PAPER_FORMATS, count_format, render_count_prompt
from lorasoups.data.io import Row, checked_field, read_records, read_text
from lorasoups.data.registry import Entry

Pools = dict[str, list[dict[str, Any]]]


def _id(row: Row) -> str:
    return row.ident()


def _nonempty(rows: list[Row], path: Path) -> list[Row]:
    if not rows:
        raise DataError(f"{path}: no records")
    return rows


def check_files(entry: Entry, root: Path) -> list[Path]:
    """The entry's files under ``root`` (its required files, then the optional ones present); a
    clear error for a missing root or required file."""
    if not root.is_dir():
        raise DataError(f"data mirror '{root}' is not a directory (set LORASOUPS_DATA_MIRROR or data.mirror)")
    files = [root / f for f in entry.mirror_files]
    for f in files:
        if not f.is_file():
            raise DataError(f"mirror directory '{f.parent}' has no file '{f.name}' expected for dataset "
                            f"'{entry.name}' (mirror root {root})")
    return files + [root / f for f in entry.mirror_optional if (root / f).is_file()]


def _gsm8k_row(row: Row) -> dict[str, Any]:
    question = row.get("question")
    try:
        solution, final = F.clean_gsm8k_solution(row.get("answer"))
        target = float(final)
    except ValueError as exc:
        raise DataError(f"{row.where()}: field 'answer': {exc}") from exc
    rec = F.sft_record(_id(row), question, solution)
    return {**rec, "question": question, "answer": final, "target": target}


def read_gsm8k(entry: Entry, files: list[Path]) -> Pools:
    pools: Pools = {}
    for f in files:
        split = "test" if f.stem == "test" else "train"
        pools[split] = [_gsm8k_row(r) for r in _nonempty(read_records(f), f)]
    return pools


def read_sft(entry: Entry, files: list[Path], output_field: str = "output") -> Pools:
    """Alpaca-shaped files: instruction, input (may be empty), output.

    A record with an empty output has nothing to learn; it is left out and *counted* (with its
    ids) in the dataset's provenance, never dropped silently.
    """
    (f,) = files
    recs, empty = [], []
    for row in _nonempty(read_records(f), f):
        output = row.get(output_field, allow_empty=True)
        if not output.strip():
            empty.append(row.ident())
            continue
        recs.append(F.sft_record(_id(row), row.get("instruction"), output,
                                 row.get("input", allow_empty=True) if "input" in row.data else ""))
    if not recs:
        raise DataError(f"{f}: every record has an empty '{output_field}'")
    return {"train": recs, **({"_dropped": {"empty output (ids)": empty}} if empty else {})}  # type: ignore[dict-item]


def read_alpaca_libre(entry: Entry, files: list[Path]) -> Pools:
    """Keep ``status == 'ok'`` with a non-empty output, as the mirror's SOURCE.md advises; count the rest."""
    (f,) = files
    recs, dropped = [], {"status != ok": 0, "empty output": 0}
    for row in _nonempty(read_records(f), f):
        if row.get("status") != "ok":
            dropped["status != ok"] += 1
            continue
        output = row.get("output", allow_empty=True)
        if not output.strip():
            dropped["empty output"] += 1
            continue
        recs.append(F.sft_record(_id(row), row.get("instruction"), output, row.get("input", allow_empty=True)))
    if not recs:
        raise DataError(f"{f}: no record left after filtering (left out: {dropped['status != ok']} with field "
                        f"'status' != 'ok', {dropped['empty output']} with an empty field 'output')")
    return {"train": recs, "_dropped": dropped}  # type: ignore[dict-item]


def read_gsm_hard(entry: Entry, files: list[Path]) -> Pools:
    """The paper's test file (question + float answer) joined with GSM-Hard's reference programs."""
    paper, pal = files
    paper_rows, pal_rows = _nonempty(read_records(paper), paper), _nonempty(read_records(pal), pal)
    if len(paper_rows) != len(pal_rows):
        raise DataError(f"{paper} has {len(paper_rows)} records but {pal} has {len(pal_rows)}; expected the same "
                        "problems in the same order")
    recs = []
    for a, b in zip(paper_rows, pal_rows):
        question, target = a.get("instruction"), float(a.get("answer", (int, float)))
        if b.get("input").strip() != question.strip():
            raise DataError(f"{b.where()}: field 'input' differs from {a.where()} 'instruction' (files out of step)")
        code = b.get("code").strip("\n")
        recs.append({"id": _id(a), "instruction": question, "prompt": "", "completion": F.pal_completion(code),
                     "question": question, "answer": F.format_number(target), "target": target, "code": code})
    return {"test": recs}


def read_pal_fewshot(entry: Entry, files: list[Path]) -> Pools:
    (f,) = files
    return {"test": [{"id": _id(r), "instruction": r.get("instruction"), "completion": r.get("output"),
                      "answer": str(r.get("answer", (str, int, float)))} for r in _nonempty(read_records(f), f)]}


def chunk_text(text: str, max_chars: int = 2000) -> list[str]:
    """Split a corpus at line (then word) boundaries into chunks of at most ``max_chars``."""
    chunks: list[str] = []
    cur = ""
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        pieces = [line] if len(line) <= max_chars else re.findall(rf".{{1,{max_chars}}}(?:\s|$)", line)
        for piece in pieces:
            piece = piece.strip()
            if cur and len(cur) + 1 + len(piece) > max_chars:
                chunks.append(cur)
                cur = ""
            cur = f"{cur}\n{piece}" if cur else piece
    if cur:
        chunks.append(cur)
    return chunks


def read_text_corpus(entry: Entry, files: list[Path]) -> Pools:
    (f,) = files
    return {"train": [{"id": f"{f.name}#{i}", "text": c} for i, c in enumerate(chunk_text(read_text(f)))]}


def read_biology_contexts(entry: Entry, files: list[Path]) -> Pools:
    """Stand-in corpus: the distinct page contexts attached to the biology questions."""
    (f,) = files
    seen: dict[str, str] = {}
    for row in _nonempty(read_records(f), f):
        if "context" in row.data:
            ctx = row.get("context").strip()
            seen.setdefault(ctx, _id(row))
    if not seen:
        raise DataError(f"{f}: no record has a 'context' field; the biology stand-in corpus would be empty")
    return {"train": [{"id": i, "text": c} for c, i in seen.items()]}


def _qa(row: Row, question: str, answer: str, context: str, instruction: str | None = None) -> dict[str, Any]:
    inst = instruction or question
    return {"id": _id(row), "instruction": inst, "prompt": F.alpaca_prompt(inst), "completion": answer,
            "question": question, "answer": answer, "context": context}


def read_qabot(entry: Entry, files: list[Path]) -> Pools:
    """Closed-book questions; ``context`` (for the judge) is optional in the biology file."""
    (f,) = files
    recs = []
    for row in _nonempty(read_records(f), f):
        ctx = row.get("context", allow_empty=True) if "context" in row.data else ""
        recs.append(_qa(row, row.get("instruction"), row.get("answer"), ctx))
    return {"test": recs}


_RC = re.compile(r"Context:\s*(?P<context>.*?)\s*\n\nQuestion:\s*(?P<question>.*)\Z", re.S)


#: The authors' RC test items have 1 to 7 gold snippets (all 123 of them found among the BioASQ
#: golden batches); held-out items are taken alike.
RC_MAX_SNIPPETS = 7


def rc_context(snippets: list[str]) -> str:
    """A BioASQ context as the authors built theirs from the gold snippets: joined by ". " with a
    final "." (it reproduces every one of the 123 test contexts found in the golden batches)."""
    return (". ".join(snippets) + ".").strip()


def read_bioasq_heldout(f: Path, test: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """BioASQ factoid questions from the golden batches that share nothing with the RC test file
    (its flag; :class:`~lorasoups.data.leakage.ScoredOverlap`: question, near-question, answer or a
    snippet), in the test file's layout: context = :func:`rc_context`, answer = the first ideal
    answer. The target's held-out pool: the oracle's training data and the sweep's validation set."""
    from lorasoups.data.leakage import ScoredOverlap, normalise

    scored = ScoredOverlap(test)
    recs, seen = [], set()
    for row in _nonempty(read_records(f), f):
        question = row.get("question").strip()
        snippets, ideal = row.get("snippets", list), row.get("ideal_answer", list)
        # optional: the overlap check decides too
        flag = row.get("in_lorasoups_rc_test", bool) if "in_lorasoups_rc_test" in row.data else False
        texts = [checked_field(snip, "text", str, f"{row.where()}: snippets[{i}]") for i, snip in enumerate(snippets)]
        if not ideal or not isinstance(ideal[0], str) or not ideal[0].strip():
            raise DataError(f"{row.where()}: field 'ideal_answer' should start with a non-empty string")
        key = normalise(question)
        if flag or key in seen or not 1 <= len(texts) <= RC_MAX_SNIPPETS:
            continue
        if scored.reason(question, ideal[0], texts) is not None:
            continue
        seen.add(key)
        context = rc_context(texts)
        recs.append(_qa(row, question, ideal[0].strip(), context, instruction=F.rc_instruction(context, question)))
    return recs


def read_rc(entry: Entry, files: list[Path]) -> Pools:
    """BioASQ RC: the instruction already holds context and question; we split them out for the judge.
    A second file (the BioASQ golden batches) gives the target a held-out ``validation`` pool."""
    f, *heldout = files
    recs = []
    for row in _nonempty(read_records(f), f):
        inst = row.get("instruction")
        m = _RC.search(inst)
        if m:
            question, context = m["question"].strip(), m["context"].strip()
        elif entry.role == "fewshot":  # the second rc demo is a plain instruction without context
            question, context = inst, ""
        else:
            raise DataError(f"{row.where()}: field 'instruction' lacks the 'Context: ... Question: ...' layout")
        answer = row.get("answer") if "answer" in row.data else row.get("output")
        recs.append(_qa(row, question, answer.strip(), context, instruction=inst))
    if heldout:
        return {"test": recs, "validation": read_bioasq_heldout(heldout[0], recs)}
    return {"test": recs}


def read_squad_v2(entry: Entry, files: list[Path]) -> Pools:
    """SQuAD v2.0 in its official layout (articles > paragraphs > qas) as the paper's open-book QA
    records: the RC instruction over the paragraph and question, the first gold answer, or "Not in
    context" for an unanswerable question (as the hub adapter does). The articles named in
    ``entry.extra["test_articles"]`` are the test split, so no test paragraph is trained on."""
    (f,) = files
    try:
        doc = json.loads(read_text(f))
    except json.JSONDecodeError as exc:
        raise DataError(f"{f}:{exc.lineno}: not valid JSON ({exc.msg})") from exc
    articles = checked_field(doc, "data", list, str(f))
    test_titles = set(entry.extra.get("test_articles", ()))
    pools: Pools = {"train": [], "test": []}
    titles = []
    for a, art in enumerate(articles):
        where_a = f"{f}: data[{a}]"
        title = checked_field(art, "title", str, where_a)
        titles.append(title)
        for p, par in enumerate(checked_field(art, "paragraphs", list, where_a)):
            where_p = f"{where_a}.paragraphs[{p}]"
            context = checked_field(par, "context", str, where_p).strip()
            for q, qa in enumerate(checked_field(par, "qas", list, where_p)):
                where = f"{where_p}.qas[{q}]"
                question, qid = checked_field(qa, "question", str, where).strip(), checked_field(qa, "id", str, where)
                impossible = checked_field(qa, "is_impossible", bool, where) if "is_impossible" in qa else False
                answers = checked_field(qa, "answers", list, where) if "answers" in qa else []
                if impossible:
                    if answers:
                        raise DataError(f"{where}: an unanswerable question (is_impossible) with answers")
                    answer = F.NOT_IN_CONTEXT
                else:
                    if not answers:
                        raise DataError(f"{where}: field 'answers' is empty for an answerable question")
                    answer = checked_field(answers[0], "text", str, f"{where}.answers[0]").strip()
                rec = F.sft_record(f"{f.name}#{qid}", F.rc_instruction(context, question), answer)
                pools["test" if title in test_titles else "train"].append(rec)
    absent = test_titles - set(titles)
    if absent:
        raise DataError(f"{f}: no article titled {', '.join(sorted(absent))} (the test articles; it has "
                        f"{', '.join(titles)})")
    if not pools["train"]:
        raise DataError(f"{f}: every article is a test article; nothing is left to train on")
    return pools if test_titles else {"train": pools["train"]}


_COUNT_ANSWER = re.compile(r"^the correct answer is (\d+)$")


def read_counting(entry: Entry, files: list[Path]) -> Pools:
    (f,) = files
    split = "test" if entry.role == "target" else "train"
    fmt = f"paper-{entry.extra['format']}"
    assert entry.extra["format"] in PAPER_FORMATS
    recs = []
    for row in _nonempty(read_records(f), f):
        out = row.get("output").strip()
        m = _COUNT_ANSWER.match(out)
        if not m:
            raise DataError(f"{row.where()}: field 'output' should read 'the correct answer is N', got {out[:40]!r}")
        inst = row.get("instruction")
        recs.append({"id": _id(row), "instruction": inst, "prompt": F.alpaca_prompt(inst), "completion": out,
                     "answer": m[1], "format": fmt})
    return {split: recs}


_FORMAT1_QUESTION = re.compile(r"Sentence: '(?P<sentence>.*)'\. How many words contain the letter '(?P<letter>.)' "
                               r"in the sentence\.\nAnswer: \n\n$", re.S)


def read_counting_rerendered(entry: Entry, files: list[Path]) -> Pools:
    """A format the paper did not release: its format-1 training instances, each parsed back into
    (sentence, letter) and rendered in ``entry.extra['format']``. A row whose instruction does not
    re-render to itself in format 1 is an error, so nothing is silently mis-parsed."""
    (pool,) = read_counting(dataclasses.replace(entry, extra={"format": 1}), files).values()
    fmt, label = count_format(entry.extra["format"])
    recs = []
    for rec in pool:
        m = _FORMAT1_QUESTION.search(rec["instruction"])
        if not m or render_count_prompt(m["sentence"], m["letter"], PAPER_FORMATS[1]) != rec["instruction"]:
            raise DataError(f"{files[0]}: record {rec['id']}: field 'instruction' is not task 161 in the paper's "
                            f"format 1, so it cannot be re-rendered in format {entry.extra['format']}: "
                            f"{rec['instruction'][:80]!r}")
        inst = render_count_prompt(m["sentence"], m["letter"], fmt)
        recs.append({**rec, "instruction": inst, "prompt": F.alpaca_prompt(inst), "format": label})
    return {"train": recs}


READERS: dict[str, Callable[[Entry, list[Path]], Pools]] = {
    "metamathqa": lambda e, fs: {"train": [{k: r[k] for k in e.columns} for r in read_gsm8k(e, fs)["train"]]},
    "gsm8k": read_gsm8k,
    "code_alpaca": read_sft,
    "code_alpaca_4k5": lambda e, fs: read_sft(e, fs, output_field="response"),
    "gsm_hard": read_gsm_hard,
    "pal_fewshot": read_pal_fewshot,
    "dnd_manual": read_text_corpus,
    "biology_chapter": read_biology_contexts,
    "alpaca": read_sft,
    "alpaca_libre": read_alpaca_libre,
    "qabot_dnd": read_qabot,
    "qabot_biology": read_qabot,
    "qa_fewshot": lambda e, fs: {"test": read_sft(e, fs)["train"]},  # noqa: E501
    "rc_fewshot": read_rc,
    "bioasq_rc": read_rc,
    "squad": read_squad_v2,
    **{f"count_format{k}": read_counting for k in (1, 2, 3, 4, 7, 8, 10)},
    "count_format_g1": read_counting_rerendered,
}


def demo_id(entry: Entry, i: int) -> str:
    """The id of a few-shot file's ``i``-th demonstration (0-based): ``pal-0``, ``qa-3``, ``rc-1``.

    The paper's few-shot files carry no ids; the position in the file is what its code uses
    (``qa.json[:1]`` for QA), so it is the id prompts record."""
    return f"{entry.name.removesuffix('_fewshot')}-{i}"


def read(entry: Entry, root: Path) -> tuple[Pools, list[Path]]:
    """Pools of formatted records for ``entry`` from the mirror at ``root``, and the files read
    (the optional ones only where the mirror holds them)."""
    files = check_files(entry, root)
    pools = READERS[entry.name](entry, files)
    if entry.role == "fewshot":
        pools = {k: [{**r, "id": demo_id(entry, i)} for i, r in enumerate(v)] if k != "_dropped" else v
                 for k, v in pools.items()}
    return pools, files
