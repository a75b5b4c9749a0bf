"""LLM judges through the openai client against a REAL local OpenAI-compatible server
(``transformers serve`` with the default 135M model, started and stopped here), never a mock."""
from __future__ import annotations

import logging

import pytest

from lorasoups.evaluation.elo import bootstrap_elo
from lorasoups.evaluation.judge import (
    PAIR_SYSTEM,
    QA_SYSTEM,
    Judge,
    JudgeConfig,
    JudgeError,
    free_port,
    judge_qa,
    local_server,
    pair_prompt,
    pairwise_battles,
    parse_pair,
    parse_qa_score,
    qa_prompt,
)

MAX_TOKENS = 24  # a 135M model on 2 CPU cores: keep replies short


@pytest.mark.parametrize(
    "reply, expected",
    [
        ("The answer matches the reference.\nScore: 2", 2),
        ("Score: 1 at first... on reflection\nScore: 0", 0),
        ("**Score:** 1", 1),
        ("2", 2),
        ("The score is 2", None),  # not the requested format: unparseable, not guessed
        ("Score: 3", None),  # out of the 0-2 scale
        ("Score: 1.5", None),
        ("", None),
    ],
)
def test_parse_qa_score(reply, expected):
    assert parse_qa_score(reply) == expected


@pytest.mark.parametrize(
    "reply, expected",
    [
        ("A is right.\nScore A: 3\nScore B: 1\nBetter: A", (3, 1, "model_a")),
        ("Score A: 2\nScore B: 2\nBetter: tie", (2, 2, "tie")),
        ("Score A: 1\nScore B: 2", (1, 2, "model_b")),  # no verdict line: the scores decide
        ("Score A: 2\nScore B: 2", (2, 2, "tie")),
        ("Better: Answer B", (None, None, "model_b")),
        ("I cannot decide.", (None, None, None)),
        ("Score A: 5\nScore B: 1", (None, 1, None)),
    ],
)
def test_parse_pair(reply, expected):
    assert parse_pair(reply) == expected


def test_prompts_carry_every_input():
    p = qa_prompt("Q?", "CTX", "GOLD", "ANS")
    assert all(s in p for s in ("Q?", "CTX", "GOLD", "ANS", "Score: <0, 1 or 2>"))
    q = pair_prompt("Q?", "first", "second", context="CTX", gold="GOLD")
    assert all(s in q for s in ("Q?", "first", "second", "CTX", "GOLD", "Score A", "Better"))
    assert "[Context]" not in pair_prompt("Q?", "x", "y")


def test_missing_key_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(JudgeError, match="no API key: set OPENAI_API_KEY"):
        Judge(JudgeConfig())


def test_retries_with_backoff_then_clear_error_without_the_key(tmp_path, caplog):
    """Nothing listens on the port: connection errors are retried, counted, and the key never shows."""
    secret = "sk-lorasoups-SECRET-0123456789"
    port = free_port()
    cfg = JudgeConfig(model="m", base_url=f"http://127.0.0.1:{port}/v1", max_retries=2, backoff=0.01,
                      cache_dir=str(tmp_path), timeout=5)
    judge = Judge(cfg, api_key=secret)
    with caplog.at_level(logging.DEBUG), pytest.raises(JudgeError, match="after 3 attempt") as err:
        judge.complete("hello")
    assert judge.stats.to_dict() == {"requests": 3, "cache_hits": 0, "retries": 2, "unparseable": 0, "failures": 1}
    assert secret not in str(err.value) and secret not in caplog.text and secret not in repr(judge)
    assert not list(tmp_path.rglob("*.json"))  # failures are not cached


# --------------------------------------------------------------------------- real server
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from lorasoups.models import MODELS, convert_gguf

    model_dir = convert_gguf(MODELS["smollm2-135m-instruct"])
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    try:
        with local_server(model_dir, log_file=log) as srv:
            yield {**srv, "dir": model_dir}
    except JudgeError as exc:  # report exactly why, with the server's own log
        pytest.fail(f"{exc}\n{log.read_text()[-3000:] if log.exists() else ''}")


@pytest.fixture(scope="module")
def reference_model(server):
    """The served model loaded here, to reproduce the server's greedy replies independently."""
    from lorasoups.models import load_base

    return load_base(str(server["dir"]), dtype="float32", device="cpu")


def _local_reply(reference_model, prompt: str, system: str) -> str:
    from lorasoups.evaluation.generation import GenerationConfig, generate
    from lorasoups.models import chat_prompt

    model, tok = reference_model
    return generate(model, tok, [chat_prompt(tok, prompt, system=system)],
                    GenerationConfig(greedy=True, max_new_tokens=MAX_TOKENS), progress=False)[0]


@pytest.mark.slow
def test_qa_judge_end_to_end_and_cache(server, reference_model, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-not-needed-locally")
    cfg = JudgeConfig(model=server["model"], base_url=server["base_url"], max_tokens=MAX_TOKENS,
                      cache_dir=str(tmp_path / "cache"), workers=2)
    judge = Judge(cfg)
    args = ("What is 2+2?", "Arithmetic: two plus two equals four.", "4", "The answer is 4.")
    first = judge.score_qa(*args)
    # the reply is exactly what the same model says when we run it greedily ourselves
    assert first["reply"] == _local_reply(reference_model, qa_prompt(*args), QA_SYSTEM)
    assert first["score"] == parse_qa_score(first["reply"])
    assert judge.stats.requests == 1
    again = judge.score_qa(*args)
    assert again == first and judge.stats.requests == 1 and judge.stats.cache_hits == 1
    # the cache is on disk: a new client asks nothing
    fresh = Judge(cfg)
    assert fresh.score_qa(*args) == first and fresh.stats.requests == 0
    other = Judge(JudgeConfig(**{**cfg.__dict__, "model": "another-judge"}))
    assert other.cache_key(qa_prompt(*args)) != judge.cache_key(qa_prompt(*args))
    # a batch through judge_qa: unparseable replies are counted, never scored
    metrics, rows = judge_qa(judge, [args[0], "Who wrote it?"], [args[1], "A manual."], ["4", "Wizards"],
                             [args[3], "Nobody knows."], progress=False)
    nones = sum(r["score"] is None for r in rows)
    assert metrics["unparseable"] == nones and metrics["n"] == 2
    assert sum(metrics["score_counts"].values()) == 2 - nones
    assert judge.stats.cache_hits == 2  # the first item was cached


@pytest.mark.slow
def test_pairwise_judge_feeds_elo(server, reference_model, tmp_path):
    cfg = JudgeConfig(model=server["model"], base_url=server["base_url"], max_tokens=MAX_TOKENS,
                      cache_dir=str(tmp_path / "cache"), workers=2)
    judge = Judge(cfg, api_key="local")
    answers = {"base": ["5"], "cat": ["4"], "ties": ["four"]}
    battles, rows, summary = pairwise_battles(judge, ["What is 2+2?"], answers, golds=["4"], progress=False)
    assert summary["judgments"] == 3 == len(rows)
    assert summary["battles"] + summary["unparseable"] == 3 == summary["battles"] + judge.stats.unparseable
    first = rows[0]
    assert (first["model_a"], first["model_b"]) == ("base", "cat")
    assert first["reply"] == _local_reply(reference_model, pair_prompt("What is 2+2?", "5", "4", gold="4"),
                                          PAIR_SYSTEM)
    if battles:
        res = bootstrap_elo(battles, n_bootstrap=50)
        assert set(res.rating) <= set(answers)


@pytest.mark.slow
def test_client_errors_are_not_retried(server, tmp_path):
    """A 4xx from the real server (wrong path) fails at once: retrying cannot fix it."""
    cfg = JudgeConfig(model=server["model"], base_url=server["base_url"].replace("/v1", "/nope"),
                      max_retries=3, backoff=0.01, cache_dir=str(tmp_path))
    judge = Judge(cfg, api_key="local")
    with pytest.raises(JudgeError, match="after 1 attempt"):
        judge.complete("hello")
    assert judge.stats.requests == 1 and judge.stats.retries == 0 and judge.stats.failures == 1
