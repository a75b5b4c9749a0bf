"""Prompt templates and record shapes shared by every source (hub, mirror, generated).

Record shapes (all columns are plain strings unless noted):

* SFT records: ``id``, ``instruction`` (the raw task text), ``prompt`` (the instruction in the
  Alpaca template the paper trained with, ending in ``### Response:\\n``) and ``completion``.
  TRL 1.16's ``SFTTrainer`` reads plain-string ``prompt``/``completion`` columns as a
  prompt-completion dataset and then defaults to completion-only loss; it drops the other columns.
  :func:`to_conversational` turns them into chat messages for a chat-template run.
* Corpus records: ``id``, ``text`` (language-model loss on everything).
* Evaluation records: the SFT columns plus ``answer`` (the gold answer as text) and task columns:
  ``question`` and ``target`` (float) and ``code`` (reference program, may be empty) for program
  tasks; ``question`` and ``context`` for QA; ``format`` for the prompt-format tasks. A target
  with demonstrations (registry ``demos``: GSM-Hard, QABot, BioASQ) has a few-shot ``prompt``
  (:func:`fewshot_prompt`); training records are always zero-shot.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

#: The Alpaca template (Taori et al. 2023) used by the paper's training and evaluation code.
ALPACA_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes "
    "the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n"
)
ALPACA_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n### Instruction:\n"
    "{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
#: The paper's reading-comprehension instruction (its BioASQ test file and few-shot demos).
RC_INSTRUCTION = (
    "Please use the information in the provided context to respond to the question below. If there "
    "is not enough information provided, answer with 'Not in context'.\n\nContext: {context}\n\n"
    "Question: {question}"
)
NOT_IN_CONTEXT = "Not in context"
#: The opening of every PAL demonstration in the paper's few-shot file.
PAL_PREFIX = "Let\u2019s go ahead and solve this using Python:\n"


def alpaca_prompt(instruction: str, input: str = "") -> str:
    """The Alpaca prompt for one instruction (with the ``### Input:`` block when input is given)."""
    if input.strip():
        return ALPACA_INPUT.format(instruction=instruction, input=input)
    return ALPACA_NO_INPUT.format(instruction=instruction)


def sft_record(id: str, instruction: str, completion: str, input: str = "") -> dict[str, Any]:
    """One prompt-completion record; ``instruction`` keeps the raw task (input appended)."""
    raw = instruction if not input.strip() else f"{instruction}\n\n{input}"
    return {"id": id, "instruction": raw, "prompt": alpaca_prompt(instruction, input), "completion": completion}


def rc_instruction(context: str, question: str) -> str:
    """The paper's open-book QA instruction for one context and question."""
    return RC_INSTRUCTION.format(context=context, question=question)


def pal_completion(code: str) -> str:
    """A program answer in the paper's PAL demonstration style (fenced ``def solution()``)."""
    return f"{PAL_PREFIX}```\n{code.strip(chr(10))}\n```"


def fewshot_prompt(instruction: str, demos: Sequence[dict[str, Any]] = (), n_shots: int = 1) -> str:
    """A target's prompt: ``n_shots`` demonstrations, each its instruction in the Alpaca template
    followed by its answer, then the item's own Alpaca prompt (what a zero-shot prompt would be).

    ``demos`` are records of a few-shot entry (``load("pal_fewshot" | "qa_fewshot" | "rc_fewshot",
    "test")``: ``instruction`` and ``completion``). GSM-Hard: PAL programs, 8 shots for the base
    model and 1 for trained models (§5.1, §B.2); QABot and BioASQ: 1 shot for every model (§B.2).
    The authors' code wraps its demos in a header of its own; we keep the Alpaca template the
    models were trained with, so a demonstration reads exactly like a training example.
    """
    if n_shots > len(demos):
        raise ValueError(f"fewshot_prompt: {n_shots} shots requested but only {len(demos)} demonstrations given")
    shots = "".join(alpaca_prompt(d["instruction"]) + d["completion"] + "\n\n" for d in demos[:n_shots])
    return shots + alpaca_prompt(instruction)


def clean_gsm8k_solution(answer: str) -> tuple[str, str]:
    """GSM8K's solution without calculator annotations, ending in "The answer is N."; and N.

    GSM8K writes ``48/2 = <<48/2=24>>24`` and ends with ``#### 72``; the annotations are tool
    calls the model should not learn to emit.
    """
    body, sep, final = answer.rpartition("####")
    if not sep:
        raise ValueError("no '#### <answer>' line")
    final = final.strip().replace(",", "")
    body = re.sub(r"<<[^>]*>>", "", body).strip()
    return f"{body}\nThe answer is {final}.", final


def to_conversational(records: Any) -> Any:
    """Prompt-completion records as chat messages (TRL's conversational prompt-completion type).

    Works on a ``datasets.Dataset`` (returns a new one) or a list of dicts. The user turn is the raw
    ``instruction`` (no Alpaca wrapper: the chat template plays that role).
    """
    def convert(rec: dict[str, Any]) -> dict[str, Any]:
        return {
            "prompt": [{"role": "user", "content": rec["instruction"]}],
            "completion": [{"role": "assistant", "content": rec["completion"]}],
        }

    if isinstance(records, list):
        return [{**r, **convert(r)} for r in records]
    return records.map(convert, desc=None)


def format_number(value: float) -> str:
    """An answer as text: integers without ``.0``, other floats rounded to 2 decimals."""
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.2f}".rstrip("0").rstrip(".")
