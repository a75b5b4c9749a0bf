"""LLM judges (the paper's Figure 11) through the ``openai`` client, against any
OpenAI-compatible endpoint: the OpenAI API (GPT-4 class models for the paper's numbers), or a local
``transformers serve`` for users without an API key (see :func:`local_server`).

* QA judge: scores one answer 0-2 against the question, its context and the gold answer.
* Pairwise judge: scores two answers 0-3 each and names the better one; the battles feed
  :mod:`lorasoups.evaluation.elo`.

Every judgment is cached on disk keyed by (prompt, model), so none is requested twice; timeouts,
rate limits, connection and server errors are retried with exponential backoff; replies that do
not parse are counted and reported (``None`` scores), never silently scored. The API key is read
from the environment (``OPENAI_API_KEY`` unless configured otherwise) or passed in, is never
stored in a config or result, and is redacted from every error message.

The prompt wording follows the structure of the paper's Figure 11 (roles, inputs, scales, and a
final machine-readable line); the figure's exact text was not available offline, so it is ours.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import random
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
    """Retries after a timeout, rate limit, connection or server error."""
    backoff: float = 1.0
    """First retry delay in seconds; doubles each retry (with jitter), capped at ``backoff_max``."""
    backoff_max: float = 60.0
    """Longest delay between retries."""
    cache_dir: str | None = None
    """Judgment cache; None: ``<lorasoups cache>/judge``."""
    workers: int = 4
    """Concurrent requests in batch calls."""


# --------------------------------------------------------------------------- prompts (Figure 11)
QA_SYSTEM = "You are a careful, impartial grader of answers to questions about a document."
QA_TEMPLATE = """Please act as an impartial judge and evaluate the answer given by an AI assistant to the question below.
The question was asked about the context shown. A correct reference answer is also provided.

[Context]
{context}

[Question]
{question}

[Reference answer]
{gold}

[Assistant's answer]
{answer}

Score the assistant's answer against the context and the reference answer:
2 = correct and complete,
1 = partially correct or incomplete,
0 = wrong, irrelevant, or not supported by the context.
Briefly explain your reasoning, then give the score on the last line exactly as "Score: <0, 1 or 2>"."""

PAIR_SYSTEM = "You are a careful, impartial judge comparing two answers to the same question."
PAIR_TEMPLATE = """Please act as an impartial judge and compare the answers of two AI assistants to the question below.
{context_block}[Question]
{question}
{gold_block}
[Answer A]
{answer_a}

[Answer B]
{answer_b}

Score each answer for correctness, helpfulness and relevance on a scale from 0 to 3
(0 = wrong or useless, 1 = mostly wrong, 2 = mostly right, 3 = fully correct and helpful).
Do not let the order of the answers or their length influence you.
Briefly explain, then end with exactly these three lines:
Score A: <0-3>
Score B: <0-3>
Better: <A, B or tie>"""


def qa_prompt(question: str, context: str, gold: str, answer: str) -> str:
    """The QA judge prompt (0-2) for one answer."""
    return QA_TEMPLATE.format(context=context.strip(), question=question.strip(), gold=gold.strip(),
                              answer=answer.strip())


def pair_prompt(question: str, answer_a: str, answer_b: str, context: str | None = None,
                gold: str | None = None) -> str:
    """The pairwise judge prompt (0-3 each, and the better one)."""
    return PAIR_TEMPLATE.format(
        context_block=f"\n[Context]\n{context.strip()}\n\n" if context else "\n",
        question=question.strip(),
        gold_block=f"\n[Reference answer]\n{gold.strip()}\n" if gold else "",
        answer_a=answer_a.strip(), answer_b=answer_b.strip(),
    )


# --------------------------------------------------------------------------- parsing
_QA_SCORE = re.compile(r"score\s*[:=]?\s*\**\s*([0-2])(?![\d.])", re.I)
_PAIR_A = re.compile(r"score\s*a\s*[:=]\s*\**\s*([0-3])(?![\d.])", re.I)
_PAIR_B = re.compile(r"score\s*b\s*[:=]\s*\**\s*([0-3])(?![\d.])", re.I)
_BETTER = re.compile(r"better\s*(?:answer)?\s*[:=]\s*\**\s*(answer\s*)?(a|b|tie)\b", re.I)


def parse_qa_score(reply: str) -> int | None:
    """The last ``Score: N`` (N in 0-2) in the reply, or a reply that is just the digit; else None."""
    found = _QA_SCORE.findall(reply or "")
    if found:
        return int(found[-1])
    bare = (reply or "").strip().strip(".*")
    return int(bare) if bare in {"0", "1", "2"} else None


def parse_pair(reply: str) -> tuple[int | None, int | None, str | None]:
    """(score A, score B, winner) with winner ``model_a``/``model_b``/``tie``; None where absent.

    The named ``Better:`` wins; without it, the scores decide. Both missing: unparseable.
    """
    a = _PAIR_A.findall(reply or "")
    b = _PAIR_B.findall(reply or "")
    sa, sb = (int(a[-1]) if a else None), (int(b[-1]) if b else None)
    better = _BETTER.findall(reply or "")
    winner = None
    if better:
        winner = {"a": "model_a", "b": "model_b", "tie": "tie"}[better[-1][1].lower()]
    elif sa is not None and sb is not None:
        winner = "model_a" if sa > sb else "model_b" if sb > sa else "tie"
    return sa, sb, winner


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
        # max_retries=0: our own loop retries, so the attempts are counted and the backoff is ours
        self._client = openai.OpenAI(base_url=base_url, api_key=key, timeout=cfg.timeout, max_retries=0)
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
    def _retryable(self, exc: Exception) -> bool:
        o = self._openai
        if isinstance(exc, (o.APITimeoutError, o.APIConnectionError, o.RateLimitError, o.InternalServerError)):
            return True
        if isinstance(exc, o.APIStatusError):
            return exc.status_code in (408, 409, 429) or exc.status_code >= 500
        return False

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
        delay = cfg.backoff
        for attempt in range(cfg.max_retries + 1):
            try:
                self.stats.add(requests=1)
                resp = self._client.chat.completions.create(
                    model=cfg.model, messages=messages, temperature=cfg.temperature, max_tokens=cfg.max_tokens,
                )
                reply = resp.choices[0].message.content or ""
                self._store(prompt, reply)
                return reply
            except self._openai.OpenAIError as exc:
                message = _redact(f"{type(exc).__name__}: {exc}", self._key)
                if not self._retryable(exc) or attempt == cfg.max_retries:
                    self.stats.add(failures=1)
                    raise JudgeError(
                        f"judge {cfg.model} at {self.base_url} failed after {attempt + 1} attempt(s): {message}"
                    ) from None
                self.stats.add(retries=1)
                wait = min(cfg.backoff_max, delay) * (0.5 + random.random() / 2)
                log.warning("judge request failed (%s); retry %d in %.1fs", message, attempt + 1, wait)
                time.sleep(wait)
                delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    # ------------------------------------------------------------------ judgments
    def score_qa(self, question: str, context: str, gold: str, answer: str) -> dict[str, Any]:
        """One QA judgment: ``score`` 0-2 or None when the reply does not parse."""
        reply = self.complete(qa_prompt(question, context, gold, answer), system=QA_SYSTEM)
        score = parse_qa_score(reply)
        if score is None:
            self.stats.add(unparseable=1)
        return {"score": score, "reply": reply}

    def compare(self, question: str, answer_a: str, answer_b: str, context: str | None = None,
                gold: str | None = None) -> dict[str, Any]:
        """One pairwise judgment: ``score_a``, ``score_b`` (0-3) and ``winner`` (None: unparseable)."""
        reply = self.complete(pair_prompt(question, answer_a, answer_b, context, gold), system=PAIR_SYSTEM)
        sa, sb, winner = parse_pair(reply)
        if winner is None:
            self.stats.add(unparseable=1)
        return {"score_a": sa, "score_b": sb, "winner": winner, "reply": reply}

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
    """QA judge over a test set; returns (metrics, rows). Unparseable replies are excluded from the
    mean and counted in ``unparseable``."""
    n = len(questions)
    if not (len(contexts) == len(golds) == len(answers) == n):
        raise ValueError(f"judge_qa: lengths differ: {n} questions, {len(contexts)} contexts, "
                         f"{len(golds)} golds, {len(answers)} answers")
    rows = judge._map(lambda i: {"index": i, **judge.score_qa(questions[i], contexts[i], golds[i], answers[i])},
                      list(range(n)), progress, "qa judge")
    scores = [r["score"] for r in rows if r["score"] is not None]
    metrics = {
        "n": n,
        "judge_score_mean": sum(scores) / len(scores) if scores else None,
        "judge_score_normalized": sum(scores) / (2 * len(scores)) if scores else None,
        "score_counts": {str(s): scores.count(s) for s in (0, 1, 2)},
        "unparseable": n - len(scores),
        "judge_model": judge.config.model,
    }
    return metrics, rows


def pairwise_battles(
    judge: Judge,
    questions: Sequence[str],
    answers: dict[str, Sequence[str]],
    contexts: Sequence[str] | None = None,
    golds: Sequence[str] | None = None,
    both_orders: bool = False,
    progress: bool = True,
) -> tuple[list[Battle], list[dict[str, Any]], dict[str, Any]]:
    """Every pair of models on every question, judged pairwise; returns (battles, rows, summary).

    ``both_orders`` asks again with the answers swapped and keeps a win only when both orders
    agree (else a tie), which cancels the judge's position bias at twice the cost. Unparseable
    judgments produce no battle and are counted.
    """
    names = list(answers)
    n = len(questions)
    for m in names:
        if len(answers[m]) != n:
            raise ValueError(f"pairwise_battles: model {m!r} has {len(answers[m])} answers for {n} questions")
    jobs = [(i, a, b) for i in range(n) for x, a in enumerate(names) for b in names[x + 1 :]]

    def one(job):
        i, a, b = job
        ctx = contexts[i] if contexts else None
        gold = golds[i] if golds else None
        first = judge.compare(questions[i], answers[a][i], answers[b][i], ctx, gold)
        row = {"index": i, "model_a": a, "model_b": b, **first}
        if both_orders:
            second = judge.compare(questions[i], answers[b][i], answers[a][i], ctx, gold)
            swapped = {"model_a": "model_b", "model_b": "model_a", "tie": "tie", None: None}[second["winner"]]
            row["winner_swapped"] = swapped
            row["reply_swapped"] = second["reply"]
            if first["winner"] is None or swapped is None:
                row["winner"] = None
            elif first["winner"] != swapped:
                row["winner"] = "tie"
        return row

    rows = judge._map(one, jobs, progress, "pairwise judge")
    battles = [Battle(r["model_a"], r["model_b"], r["winner"]) for r in rows if r["winner"] is not None]
    summary = {"judgments": len(rows), "battles": len(battles), "unparseable": len(rows) - len(battles),
               "judge_model": judge.config.model, "both_orders": both_orders}
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
    "Judge", "JudgeConfig", "JudgeError", "JudgeStats", "free_port", "judge_qa", "local_server",
    "pair_prompt", "pairwise_battles", "parse_pair", "parse_qa_score", "qa_prompt",
]
