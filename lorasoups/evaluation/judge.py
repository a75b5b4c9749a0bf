"""LLM judges (the paper's Figure 11) through the ``openai`` client, against any
OpenAI-compatible endpoint: the OpenAI API (GPT-4 class models for the paper's numbers), or a local
``transformers serve`` for users without an API key (see :func:`local_server`).

* QA judge (QABot, §C.2): scores one System Answer 0-2 for CORRECTNESS against the Context, the
  Question and the Gold Answer. The paper reports "accuracy"; here that is the share of items
  scored 2 (see :data:`QA_SCALE`, :func:`qa_metrics`).
* Pairwise judge (reading comprehension, §5.3 / §C.3): scores Choice 1 and Choice 2 0-3 for
  CORRECTNESS with half points, then names the better one; every pair is judged in both orders and
  the two verdicts are combined into one battle (:func:`combine_orders`) that feeds
  :mod:`lorasoups.evaluation.elo`, with the judge's position bias reported
  (:func:`position_bias`).

The prompt texts are Figure 11's wording verbatim (from the paper's text; the extraction's
"CORRECINESS"/"Ouestion" typos fixed; the line breaks are ours). The figure shows no system message,
so none is sent.

Every judgment is cached on disk keyed by (prompt, model), so none is requested twice; timeouts,
rate limits, connection and server errors are retried by the openai client (exponential backoff); replies that do
not parse are counted and reported (``None`` scores), never silently scored. The API key is read
from the environment (``OPENAI_API_KEY`` unless configured otherwise) or passed in, is never
stored in a config or result, and is redacted from every error message.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lorasoups import paths
from lorasoups.evaluation.elo import Battle

log = logging.getLogger(__name__)


class JudgeError(RuntimeError):
    """A judge request that failed for good (after retries, or not retryable); key redacted."""


@dataclass
class JudgeConfig:
    """Which judge to ask and how."""

    model: str = "gpt-4"
    """Judge model id as the endpoint names it (the paper used GPT-4)."""
    base_url: str | None = None
    """OpenAI-compatible endpoint; None: ``OPENAI_BASE_URL`` or the OpenAI API."""
    api_key_env: str = "OPENAI_API_KEY"
    """Name of the environment variable holding the key (the key itself never goes in a config)."""
    temperature: float = 0.0
    """Judge sampling temperature (0: as deterministic as the endpoint allows)."""
    max_tokens: int = 400
    """Longest judge reply."""
    timeout: float = 120.0
    """Seconds per request."""
    max_retries: int = 5
    """Retries after a timeout, rate limit, connection or server error (the openai client's own, with
    its exponential backoff and the server's ``Retry-After``)."""
    cache_dir: str | None = None
    """Judgment cache; None: ``<lorasoups cache>/judge``."""
    workers: int = 4
    """Concurrent requests in batch calls."""


# --------------------------------------------------------------------------- prompts (Figure 11)
#: Figure 11 shows the judge prompts alone, no system message: none is sent.
QA_SYSTEM: str | None = None
PAIR_SYSTEM: str | None = None

#: Figure 11, "Question-answer judge prompt" (QABot).
QA_TEMPLATE = """Please act as an impartial judge and evaluate the quality of the answers. You will receive four items: Context, Question, Gold Answer, and System Answer. Your task is to assess the System Answer in terms of CORRECTNESS. You MUST read and understand the Context and assess the System Answer with respect to the information in the Context. To help you with evaluation, we provide the Gold Answer. The Gold Answer is an approximately correct answer. Use it as a reference for spotting CORRECTNESS errors but you should judge based on the provided Context. You should give a score from 0 to 2 for CORRECTNESS to the System Answer.
Here is the Context: {context}
Here is the Question: {question}
Here is the Gold Answer: {gold}
Here is the System Answer: {answer}
Please present your scores as follows:
Score: x"""

#: Figure 11, "Reading comprehension judge prompt" (pairwise, BioASQ).
PAIR_TEMPLATE = """Please act as an impartial judge and evaluate the quality of the answers. You will receive five items: Context, Question, Gold Answer, Choice 1, and Choice 2. Your task is to assess which among Choice 1 and Choice 2 in terms of CORRECTNESS. You MUST read and understand the Context and assess the Choice answers with respect to the information in the Context. To help you with evaluation, we provide the Gold Answer. The Gold Answer has been checked by experts and is 100% correct. Use it as a reference for spotting CORRECTNESS errors. You should give a score from 0 to 3 for CORRECTNESS to Choice 1 and Choice 2. Half points are allowed. Then you must say which choice was better.
Here is the Context: {context}
Here is the Question: {question}
Here is the Gold Answer: {gold}
Here is Choice 1: {choice1}
Here is Choice 2: {choice2}
Please present your scores as follows:
Choice 1: x/3
Choice 2: x/3
Choice _ is better"""

#: How the QA judge's 0-2 CORRECTNESS score becomes the paper's QABot "accuracy" (§C.2: "we use
#: accuracy as the metric using the QA judge prompt in Figure 11"). Figure 11 names only the range,
#: not the levels; the labels are ours: only the top of the scale counts as correct.
QA_SCALE = {
    "2": "correct (counts for accuracy)",
    "1": "partially correct (not counted as correct)",
    "0": "incorrect (not counted as correct)",
    "unparseable": "no score in the reply (not counted as correct; kept in the denominator)",
}
#: The pairwise judge's scale (Figure 11): 0-3 per choice, half points allowed.
PAIR_SCALE = "0-3 CORRECTNESS per choice, half points allowed (Figure 11)"
#: How one battle comes out of the two orders (:func:`combine_orders`).
BATTLE_RULE = ("each pair judged as (A, B) and (B, A); a player's score is the mean of its two 0-3 "
               "scores; the higher mean wins, equal means tie; unparseable when any of the four "
               "scores is missing. The 'Choice _ is better' line is recorded, not used.")


def qa_prompt(question: str, context: str, gold: str, answer: str) -> str:
    """The QA judge prompt (0-2) for one answer."""
    return QA_TEMPLATE.format(context=(context or "").strip(), question=question.strip(), gold=gold.strip(),
                              answer=answer.strip())


def pair_prompt(question: str, choice1: str, choice2: str, context: str | None = None,
                gold: str | None = None) -> str:
    """The pairwise judge prompt (0-3 each with half points, then the better choice). Figure 11
    always has a Context and a Gold Answer; a missing one is shown empty."""
    return PAIR_TEMPLATE.format(context=(context or "").strip(), question=question.strip(),
                                gold=(gold or "").strip(), choice1=choice1.strip(), choice2=choice2.strip())


# --------------------------------------------------------------------------- parsing
_NUMBER = r"(\d+(?:\.\d+)?)"
_OUT_OF = r"(?:\s*(?:/|out\s+of)\s*(\d+(?:\.\d+)?))?"


def _labelled(label: str, colon: str) -> re.Pattern[str]:
    return re.compile(rf"{label}\s*\**\s*{colon}\s*\**\s*{_NUMBER}{_OUT_OF}", re.I)


_SCORE = _labelled(r"\bscore", "[:=]?")
_CHOICE = {1: _labelled(r"\bchoice\s*1", "[:=]"), 2: _labelled(r"\bchoice\s*2", "[:=]")}
_BETTER = re.compile(r"\bchoice\s*\**\s*([12])\s*\**\s*is\s+(?:the\s+)?better", re.I)


def _on_scale(value: str, out_of: str | None, top: int, halves: bool) -> float | None:
    v = float(value)
    if out_of and float(out_of) != top:
        return None  # "x/5" on a 0-3 scale: not the requested format
    steps = 2 * v if halves else v
    return v if 0 <= v <= top and steps == int(steps) else None


def parse_scaled(reply: str, pattern: re.Pattern[str], top: int, halves: bool) -> float | None:
    """The last ``<label>: N`` (or ``N/top``) that ``pattern`` finds, when N is on the 0..``top``
    scale (in steps of 0.5 with ``halves``, else whole numbers); else None. A last score off the
    scale is unparseable, not replaced by an earlier one."""
    found = pattern.findall(reply or "")
    return _on_scale(*found[-1], top, halves) if found else None


def parse_qa_score(reply: str) -> int | None:
    """The last ``Score: N`` (Figure 11's format; ``N/2`` too) with N in 0, 1, 2, or a reply that is
    just the digit; else None. Figure 11 allows half points only in the pairwise prompt, so
    ``Score: 1.5`` is off the QA scale: unparseable."""
    v = parse_scaled(reply, _SCORE, 2, halves=False)
    if v is not None:
        return int(v)
    if _SCORE.search(reply or ""):
        return None
    bare = (reply or "").strip().strip(".*")
    return int(bare) if bare in {"0", "1", "2"} else None


def parse_pair(reply: str) -> tuple[float | None, float | None, str | None]:
    """(score of Choice 1, score of Choice 2, better) from Figure 11's ``Choice 1: x/3`` /
    ``Choice 2: x/3`` / ``Choice _ is better``: scores 0-3 in half points (None where absent or off
    the scale), better ``"1"``/``"2"`` (None where absent)."""
    s1 = parse_scaled(reply, _CHOICE[1], 3, halves=True)
    s2 = parse_scaled(reply, _CHOICE[2], 3, halves=True)
    better = _BETTER.findall(reply or "")
    return s1, s2, (better[-1] if better else None)


# --------------------------------------------------------------------------- aggregation
def qa_metrics(scores: Sequence[int | None]) -> dict[str, Any]:
    """QA judge metrics from the per-item scores (None: unparseable).

    * ``judge_accuracy``: share of ALL items scored 2 (:data:`QA_SCALE`); an unparseable verdict
      counts as wrong (it stays in the denominator).
    * ``judge_mean_score``: mean 0-2 score over the items whose verdict parsed (unparseable items
      have no score and are left out of this mean; they are counted in ``judge_unparseable``).
    * ``judge_score_counts``: items per score and unparseable; ``judge_unparseable`` and
      ``judge_unparseable_share`` (of all items).
    """
    n = len(scores)
    parsed = [s for s in scores if s is not None]
    if any(s not in (0, 1, 2) for s in parsed):
        raise ValueError(f"qa_metrics: scores must be 0, 1, 2 or None, got {sorted(set(parsed))}")
    counts = {str(s): parsed.count(s) for s in (0, 1, 2)}
    unparseable = n - len(parsed)
    return {
        "judge_n": n,
        "judge_accuracy": counts["2"] / n if n else None,
        "judge_mean_score": sum(parsed) / len(parsed) if parsed else None,
        "judge_score_counts": {**counts, "unparseable": unparseable},
        "judge_unparseable": unparseable,
        "judge_unparseable_share": unparseable / n if n else None,
        "judge_scale": dict(QA_SCALE),
    }


def _order_winner(verdict: dict[str, Any]) -> str | None:
    """One order's winner as a player (``model_a``/``model_b``/``tie``), by its two scores."""
    s1, s2 = verdict.get("score_1"), verdict.get("score_2")
    if s1 is None or s2 is None:
        return None
    if s1 == s2:
        return "tie"
    first = verdict["first"]
    second = "model_b" if first == "model_a" else "model_a"
    return first if s1 > s2 else second


def combine_orders(ab: dict[str, Any], ba: dict[str, Any] | None = None) -> dict[str, Any]:
    """One battle from the verdicts on (A, B) (``ab``: A is Choice 1) and (B, A) (``ba``: B is
    Choice 1), each ``{"score_1", "score_2", ...}`` as :meth:`Judge.compare` returns it.

    ``score_a`` / ``score_b``: each player's mean score over the orders (its Choice 1 score in one,
    its Choice 2 score in the other); ``winner``: the higher mean, ``tie`` when equal, None when a
    score is missing (:data:`BATTLE_RULE`). Returns ``{"orders", "score_a", "score_b", "winner"}``;
    ``orders`` keeps both raw verdicts, each with ``first`` (the player shown as Choice 1) and its
    own ``winner``. With ``ba`` None (one order only) the single verdict decides.
    """
    orders = [{"first": "model_a", **ab}]
    if ba is not None:
        orders.append({"first": "model_b", **ba})
    for o in orders:
        o["winner"] = _order_winner(o)
    a_scores = [o["score_1"] if o["first"] == "model_a" else o["score_2"] for o in orders]
    b_scores = [o["score_2"] if o["first"] == "model_a" else o["score_1"] for o in orders]
    if any(s is None for s in a_scores + b_scores):
        return {"orders": orders, "score_a": None, "score_b": None, "winner": None}
    sa, sb = sum(a_scores) / len(a_scores), sum(b_scores) / len(b_scores)
    winner = "tie" if sa == sb else "model_a" if sa > sb else "model_b"
    return {"orders": orders, "score_a": sa, "score_b": sb, "winner": winner}


def _share(k: int, n: int) -> float | None:
    return k / n if n else None


def position_bias(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """How the judge's verdicts depend on the order of the answers, from battle rows
    (:func:`combine_orders` outputs, one per pair).

    Over every single-order verdict whose two scores parsed: Choice 1 scored higher
    (``first_position_wins``), Choice 2 higher, or equal; an unbiased judge wins as often in either
    position. Over the pairs judged in both orders with all scores parsed: ``flipped_pairs``, whose
    per-order winner differs between the orders (a judge that always prefers Choice 1 flips every
    pair), and ``reversed_pairs``, where each order crowns the other player. ``better_disagrees``:
    verdicts whose 'Choice _ is better' line contradicts their own scores.
    """
    verdicts = [o for r in rows for o in r["orders"] if o.get("winner") is not None]
    first = sum(o["score_1"] > o["score_2"] for o in verdicts)
    second = sum(o["score_1"] < o["score_2"] for o in verdicts)
    pairs = [r for r in rows if len(r["orders"]) == 2 and all(o.get("winner") is not None for o in r["orders"])]
    flipped = sum(r["orders"][0]["winner"] != r["orders"][1]["winner"] for r in pairs)
    reversed_ = sum({o["winner"] for o in r["orders"]} == {"model_a", "model_b"} for r in pairs)
    disagree = sum(o.get("better") is not None and o["score_1"] != o["score_2"]
                   and o["better"] != ("1" if o["score_1"] > o["score_2"] else "2") for o in verdicts)
    return {
        "verdicts": len(verdicts),
        "first_position_wins": first, "second_position_wins": second,
        "position_ties": len(verdicts) - first - second,
        "first_position_win_share": _share(first, len(verdicts)),
        "second_position_win_share": _share(second, len(verdicts)),
        "pairs_both_orders": len(pairs),
        "flipped_pairs": flipped, "flip_share": _share(flipped, len(pairs)),
        "reversed_pairs": reversed_, "reversed_share": _share(reversed_, len(pairs)),
        "better_disagrees": disagree,
    }


# --------------------------------------------------------------------------- client
def _redact(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


@dataclass
class JudgeStats:
    """What a judge did: requests sent, cache hits, retries, and replies that did not parse."""

    requests: int = 0
    cache_hits: int = 0
    retries: int = 0
    unparseable: int = 0
    failures: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for k, v in counts.items():
                setattr(self, k, getattr(self, k) + v)

    def to_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in ("requests", "cache_hits", "retries", "unparseable", "failures")}


class Judge:
    """An OpenAI-compatible judge with a disk cache, retries with backoff and reply parsing."""

    def __init__(self, config: JudgeConfig | None = None, api_key: str | None = None) -> None:
        import openai

        self.config = cfg = config or JudgeConfig()
        base_url = cfg.base_url or os.environ.get("OPENAI_BASE_URL")
        key = api_key or os.environ.get(cfg.api_key_env)
        if not key:
            if base_url is None:
                raise JudgeError(
                    f"no API key: set {cfg.api_key_env} (or JudgeConfig.api_key_env), or point "
                    "JudgeConfig.base_url at a local OpenAI-compatible server (lorasoups.evaluation.judge.local_server)"
                )
            key = "local-no-key"  # local servers ignore the key, the client insists on one
        self._key = key
        self._openai = openai
        # The client retries (408/409/429/5xx, connection errors, timeouts); an httpx hook reads the
        # attempt number the client stamps on each request (a redirect is not an attempt), per
        # thread (batch calls run in a pool), for the judge's stats, and a retryable reply is logged.
        self._attempts = threading.local()

        def count(request) -> None:
            self._attempts.n = int(request.headers.get("x-stainless-retry-count", "0")) + 1

        def warn(response) -> None:
            if response.status_code in (408, 409, 429) or response.status_code >= 500:
                log.warning("judge request got HTTP %d; the client retries it", response.status_code)

        hooks = {"request": [count], "response": [warn]}
        self._client = openai.OpenAI(base_url=base_url, api_key=key, timeout=cfg.timeout, max_retries=cfg.max_retries,
                                     http_client=openai.DefaultHttpxClient(event_hooks=hooks))
        self.base_url = str(self._client.base_url)
        self.cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else paths.cache_dir() / "judge"
        self.stats = JudgeStats()

    def __repr__(self) -> str:  # never the key
        return f"Judge(model={self.config.model!r}, base_url={self.base_url!r})"

    # ------------------------------------------------------------------ cache
    def cache_key(self, prompt: str) -> str:
        """sha256 of (prompt, model): the identity of a judgment."""
        blob = json.dumps({"model": self.config.model, "prompt": prompt}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def _cache_file(self, key: str) -> Path:
        return self.cache_dir / key[:2] / f"{key}.json"

    def cached(self, prompt: str) -> str | None:
        """The cached reply to ``prompt`` by this model, or None."""
        f = self._cache_file(self.cache_key(prompt))
        if not f.is_file():
            return None
        try:
            return json.loads(f.read_text())["reply"]
        except (ValueError, KeyError) as exc:
            raise JudgeError(f"judge cache file {f} is corrupt ({exc}); delete it to ask again") from exc

    def _store(self, prompt: str, reply: str) -> None:
        f = self._cache_file(self.cache_key(prompt))
        f.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=f.parent, prefix=".", suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump({"model": self.config.model, "base_url": self.base_url, "prompt": prompt,
                       "reply": reply, "created": time.time()}, fh)
        os.replace(tmp, f)

    # ------------------------------------------------------------------ requests
    def complete(self, prompt: str, system: str | None = None) -> str:
        """The judge's reply to ``prompt`` (from the cache when asked before)."""
        hit = self.cached(prompt)
        if hit is not None:
            self.stats.add(cache_hits=1)
            return hit
        cfg = self.config
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": prompt}
        ]
        self._attempts.n = 0
        try:
            resp = self._client.chat.completions.create(
                model=cfg.model, messages=messages, temperature=cfg.temperature, max_tokens=cfg.max_tokens,
            )
        except self._openai.OpenAIError as exc:
            n = self._attempts.n
            self.stats.add(requests=n, retries=max(n - 1, 0), failures=1)
            message = _redact(f"{type(exc).__name__}: {exc}", self._key)
            raise JudgeError(f"judge {cfg.model} at {self.base_url} failed after {n} attempt(s): {message}") from None
        n = self._attempts.n
        self.stats.add(requests=n, retries=max(n - 1, 0))
        reply = resp.choices[0].message.content or ""
        self._store(prompt, reply)
        return reply

    # ------------------------------------------------------------------ judgments
    def score_qa(self, question: str, context: str, gold: str, answer: str) -> dict[str, Any]:
        """One QA judgment: ``score`` 0-2 or None when the reply does not parse."""
        reply = self.complete(qa_prompt(question, context, gold, answer), system=QA_SYSTEM)
        score = parse_qa_score(reply)
        if score is None:
            self.stats.add(unparseable=1)
        return {"score": score, "reply": reply}

    def compare(self, question: str, choice1: str, choice2: str, context: str | None = None,
                gold: str | None = None) -> dict[str, Any]:
        """One pairwise judgment in one order: ``score_1`` / ``score_2`` (0-3, half points; None:
        unparseable), ``better`` (``"1"``/``"2"``/None) and the raw ``reply``."""
        reply = self.complete(pair_prompt(question, choice1, choice2, context, gold), system=PAIR_SYSTEM)
        s1, s2, better = parse_pair(reply)
        if s1 is None or s2 is None:
            self.stats.add(unparseable=1)
        return {"score_1": s1, "score_2": s2, "better": better, "reply": reply}

    def _map(self, fn, items: Sequence[Any], progress: bool, desc: str) -> list[Any]:
        with ThreadPoolExecutor(max_workers=max(1, self.config.workers)) as pool:
            futures = [pool.submit(fn, item) for item in items]
            it: Any = futures
            if progress:
                from tqdm.auto import tqdm

                it = tqdm(futures, total=len(futures), desc=desc)
            return [f.result() for f in it]


def judge_qa(
    judge: Judge,
    questions: Sequence[str], contexts: Sequence[str], golds: Sequence[str], answers: Sequence[str],
    progress: bool = True,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """QA judge over a test set; returns (metrics, rows). Metrics as :func:`qa_metrics` (accuracy:
    share of all items scored 2, unparseable counted wrong; mean score over the parsed ones) plus
    ``judge_model``."""
    n = len(questions)
    if not (len(contexts) == len(golds) == len(answers) == n):
        raise ValueError(f"judge_qa: lengths differ: {n} questions, {len(contexts)} contexts, "
                         f"{len(golds)} golds, {len(answers)} answers")
    rows = judge._map(lambda i: {"index": i, **judge.score_qa(questions[i], contexts[i], golds[i], answers[i])},
                      list(range(n)), progress, "qa judge")
    return {**qa_metrics([r["score"] for r in rows]), "judge_model": judge.config.model}, rows


def pairwise_battles(
    judge: Judge,
    questions: Sequence[str],
    answers: dict[str, Sequence[str]],
    contexts: Sequence[str] | None = None,
    golds: Sequence[str] | None = None,
    both_orders: bool = True,
    progress: bool = True,
) -> tuple[list[Battle], list[dict[str, Any]], dict[str, Any]]:
    """Every pair of models on every question, judged pairwise; returns (battles, rows, summary).

    With ``both_orders`` (the default) each pair is judged as (A, B) and again as (B, A), and the
    two verdicts make ONE battle by :func:`combine_orders` (:data:`BATTLE_RULE`): win, loss or tie,
    which :func:`~lorasoups.evaluation.elo.bootstrap_elo` takes as is. A row per pair records both
    raw verdicts (``orders``), the combined ``score_a``/``score_b`` and the ``winner``; a pair with
    an unparseable verdict gives no battle and is counted. The summary reports the judge's
    :func:`position_bias`.
    """
    names = list(answers)
    n = len(questions)
    for m in names:
        if len(answers[m]) != n:
            raise ValueError(f"pairwise_battles: model {m!r} has {len(answers[m])} answers for {n} questions")
    pairs = [(i, a, b) for i in range(n) for x, a in enumerate(names) for b in names[x + 1 :]]
    jobs = [(p, swap) for p in pairs for swap in ((False, True) if both_orders else (False,))]

    def one(job):
        (i, a, b), swap = job
        first, second = (b, a) if swap else (a, b)
        return judge.compare(questions[i], answers[first][i], answers[second][i],
                             contexts[i] if contexts else None, golds[i] if golds else None)

    verdicts = dict(zip(jobs, judge._map(one, jobs, progress, "pairwise judge")))
    rows = [{"index": i, "model_a": a, "model_b": b,
             **combine_orders(verdicts[((i, a, b), False)], verdicts.get(((i, a, b), True)))}
            for i, a, b in pairs]
    battles = [Battle(r["model_a"], r["model_b"], r["winner"]) for r in rows if r["winner"] is not None]
    summary = {"pairs": len(rows), "judgments": len(jobs), "battles": len(battles),
               "unparseable": len(rows) - len(battles),
               "unparseable_judgments": sum(v["score_1"] is None or v["score_2"] is None for v in verdicts.values()),
               "judge_model": judge.config.model, "both_orders": both_orders,
               "judge_scale": PAIR_SCALE, "battle_rule": BATTLE_RULE if both_orders else
               "one order per pair (A as Choice 1): the higher 0-3 score wins, equal scores tie",
               "position_bias": position_bias(rows)}
    return battles, rows, summary


# --------------------------------------------------------------------------- local judge server
def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@contextmanager
def local_server(
    model_dir: str | Path, port: int | None = None, host: str = "127.0.0.1", device: str = "cpu",
    startup_timeout: float = 180.0, log_file: str | Path | None = None,
) -> Iterator[dict[str, str]]:
    """Run ``transformers serve MODEL_DIR`` (transformers' own OpenAI-compatible server, extra
    ``transformers[serving]``) on a loopback port; yields ``{"base_url", "model"}`` for
    :class:`JudgeConfig`, and stops the server (its whole process group) on exit."""
    from transformers.utils.import_utils import is_serve_available

    if not is_serve_available():
        raise JudgeError("transformers serve needs its extra: pip install 'transformers[serving]'")
    model_dir = str(Path(model_dir).resolve())
    port = port or free_port(host)
    exe = shutil.which("transformers", path=str(Path(sys.executable).parent)) or shutil.which("transformers")
    cmd = ([exe] if exe else [sys.executable, "-m", "transformers.cli.transformers"]) + [
        "serve", model_dir, "--host", host, "--port", str(port), "--device", device, "--log-level", "warning",
    ]
    out = open(log_file, "w") if log_file else subprocess.DEVNULL  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base_url = f"http://{host}:{port}/v1"
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if proc.poll() is not None:
                raise JudgeError(f"transformers serve exited with code {proc.returncode} (command: {' '.join(cmd)})")
            try:
                with urllib.request.urlopen(f"{base_url}/models", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise JudgeError(f"transformers serve did not answer on {base_url} within {startup_timeout}s")
            time.sleep(0.5)
        yield {"base_url": base_url, "model": model_dir}
    finally:
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            if proc.poll() is not None:
                break
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
        if out is not subprocess.DEVNULL:
            out.close()


__all__ = [
    "BATTLE_RULE", "PAIR_SCALE", "QA_SCALE", "Judge", "JudgeConfig", "JudgeError", "JudgeStats",
    "combine_orders", "free_port", "judge_qa", "local_server", "pair_prompt", "pairwise_battles",
    "parse_pair", "parse_qa_score", "parse_scaled", "position_bias", "qa_metrics", "qa_prompt",
]
