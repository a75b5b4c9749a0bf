"""LLM judges: the verdict parsers and the aggregation rules against hand-computed tables; both
orders and position bias with a scripted judge (aggregation only); the judges end to end through
the openai client against a REAL local OpenAI-compatible server (``transformers serve`` with the
default 135M model, started and stopped here), never a mock."""
from __future__ import annotations

import json
import logging
import re

import pytest

from lorasoups.evaluation.elo import bootstrap_elo
from lorasoups.evaluation.judge import (
    _SCORE,
    PAIR_SYSTEM,
    QA_SYSTEM,
    Judge,
    JudgeConfig,
    JudgeError,
    combine_orders,
    free_port,
    judge_qa,
    local_server,
    pair_prompt,
    pairwise_battles,
    parse_pair,
    parse_qa_score,
    parse_scaled,
    position_bias,
    qa_metrics,
    qa_prompt,
)

MAX_TOKENS = 24  # a 135M model on 2 CPU cores: keep replies short


@pytest.mark.parametrize(
    "reply, expected",
    [
        ("The answer matches the reference.\nScore: 2", 2),
        ("Score: 1 at first... on reflection\nScore: 0", 0),
        ("**Score:** 1", 1),
        ("Score: 2/2", 2),
        ("Score: 2.0", 2),
        ("2", 2),
        ("The score is 2", None),  # not the requested format: unparseable, not guessed
        ("Score: x", None),  # Figure 11's placeholder echoed back
        ("Score: 3", None),  # out of the 0-2 scale
        ("Score: 1.5", None),  # half points exist only in the pairwise prompt
        ("Score: 1/3", None),  # another scale
        ("Score: 2\nScore: 3", None),  # the last score is off the scale: not replaced by an earlier one
        ("", None),
    ],
)
def test_parse_qa_score(reply, expected):
    assert parse_qa_score(reply) == expected


@pytest.mark.parametrize(
    "reply, expected",
    [
        ("Choice 1: 2.5/3\nChoice 2: 1/3\nChoice 1 is better", (2.5, 1.0, "1")),  # Figure 11's format
        ("**Choice 1:** 1.5/3\n**Choice 2:** 0.5 / 3\n**Choice 2** is better", (1.5, 0.5, "2")),
        ("Choice 1: 3/3\nChoice 2: 3/3", (3.0, 3.0, None)),
        ("Choice 1: 0 out of 3, Choice 2: 2 out of 3. Choice 2 is the better one", (0.0, 2.0, "2")),
        ("Choice 1: 2.25/3\nChoice 2: 1/3", (None, 1.0, None)),  # quarter points: off the scale
        ("Choice 1: 3.5/3\nChoice 2: 4", (None, None, None)),  # above 3
        ("Choice 1: 2/5\nChoice 2: 1/3", (None, 1.0, None)),  # another scale
        ("Choice 1: x/3\nChoice 2: x/3\nChoice _ is better", (None, None, None)),  # the template echoed
        ("Choice 1 is better", (None, None, "1")),
        ("I cannot decide.", (None, None, None)),
    ],
)
def test_parse_pair(reply, expected):
    assert parse_pair(reply) == expected


@pytest.mark.parametrize(
    "reply, top, halves, expected",
    [("Score: 1.5/3", 3, True, 1.5), ("score = 3", 3, True, 3.0), ("Score: 0.5", 3, True, 0.5),
     ("Score: 2.5/3", 3, False, None), ("Score: 1.75/3", 3, True, None), ("Score: -1", 3, True, None),
     ("no score here", 3, True, None)],
)
def test_parse_scaled(reply, top, halves, expected):
    assert parse_scaled(reply, _SCORE, top, halves) == expected


def test_prompts_are_figure_11_and_carry_every_input():
    p = qa_prompt("Q?", "CTX", "GOLD", "ANS")
    assert all(s in p for s in ("Here is the Context: CTX", "Here is the Question: Q?", "Here is the Gold Answer: GOLD",
                                "Here is the System Answer: ANS", "score from 0 to 2 for CORRECTNESS",
                                "The Gold Answer is an approximately correct answer", "Score: x"))
    q = pair_prompt("Q?", "first", "second", context="CTX", gold="GOLD")
    assert all(s in q for s in ("Here is Choice 1: first", "Here is Choice 2: second", "Here is the Context: CTX",
                                "Here is the Gold Answer: GOLD", "score from 0 to 3 for CORRECTNESS",
                                "Half points are allowed.", "checked by experts and is 100% correct",
                                "Choice 1: x/3\nChoice 2: x/3\nChoice _ is better"))
    assert "CORRECINESS" not in p + q and QA_SYSTEM is None and PAIR_SYSTEM is None  # Figure 11: no system turn


# --------------------------------------------------------------------------- aggregation, by hand
def test_qa_metrics_hand_computed():
    m = qa_metrics([2, 1, None, 2])
    assert m["judge_n"] == 4 and m["judge_accuracy"] == 0.5  # 2 of 4 scored 2; the unparseable one is wrong
    assert m["judge_mean_score"] == pytest.approx(5 / 3)  # (2 + 1 + 2) / 3 parsed verdicts
    assert m["judge_unparseable"] == 1 and m["judge_unparseable_share"] == 0.25
    assert m["judge_score_counts"] == {"0": 0, "1": 1, "2": 2, "unparseable": 1}
    assert set(m["judge_scale"]) == {"0", "1", "2", "unparseable"} and "correct" in m["judge_scale"]["2"]
    # all 1s: the old mean/2 would say 0.5; the paper's accuracy says 0
    assert qa_metrics([1, 1])["judge_accuracy"] == 0.0 and qa_metrics([1, 1])["judge_mean_score"] == 1.0
    none = qa_metrics([None, None])
    assert none["judge_accuracy"] == 0.0 and none["judge_mean_score"] is None and none["judge_unparseable"] == 2
    assert qa_metrics([])["judge_accuracy"] is None
    with pytest.raises(ValueError, match="scores must be 0, 1, 2"):
        qa_metrics([3])


def _v(s1, s2, better=None):
    return {"score_1": s1, "score_2": s2, "better": better, "reply": f"{s1}|{s2}"}


@pytest.mark.parametrize(
    "ab, ba, score_a, score_b, winner, order_winners",
    [
        (_v(3, 0), _v(0, 3), 3.0, 0.0, "model_a", ["model_a", "model_a"]),  # A better in both orders
        (_v(3, 0), _v(3, 0), 1.5, 1.5, "tie", ["model_a", "model_b"]),  # Choice 1 always wins: a tie
        (_v(2.5, 2), _v(1.5, 2), 2.25, 1.75, "model_a", ["model_a", "model_a"]),  # (2.5+2)/2 vs (2+1.5)/2
        (_v(2, 2), _v(1, 1.5), 1.75, 1.5, "model_a", ["tie", "model_a"]),
        (_v(1, 2.5), _v(2, 0.5), 0.75, 2.25, "model_b", ["model_b", "model_b"]),
        (_v(3, 0), _v(None, 1), None, None, None, ["model_a", None]),  # one score missing: no battle
    ],
)
def test_combine_orders_hand_computed(ab, ba, score_a, score_b, winner, order_winners):
    out = combine_orders(ab, ba)
    assert (out["score_a"], out["score_b"], out["winner"]) == (score_a, score_b, winner)
    assert [o["first"] for o in out["orders"]] == ["model_a", "model_b"]
    assert [o["winner"] for o in out["orders"]] == order_winners
    assert [o["reply"] for o in out["orders"]] == [ab["reply"], ba["reply"]]  # both raw verdicts kept


def test_position_bias_hand_computed():
    rows = [{"orders": combine_orders(ab, ba)["orders"]} for ab, ba in [
        (_v(3, 0, "1"), _v(3, 0, "1")),  # flipped and reversed
        (_v(2, 1, "1"), _v(1, 2, "2")),  # consistent: A both times
        (_v(2, 2, "2"), _v(2, 1, "1")),  # tie then B: flipped, not reversed; 'better' 2 on equal scores is no clash
        (_v(1, 2, "1"), _v(None, 2)),  # second order unparseable; first 'better' contradicts its scores
    ]]
    pb = position_bias(rows)
    # single-order verdicts parsed: 7; Choice 1 higher in 4 (3>0, 3>0, 2>1, 2>1), Choice 2 in 2, equal in 1
    assert (pb["verdicts"], pb["first_position_wins"], pb["second_position_wins"], pb["position_ties"]) == (7, 4, 2, 1)
    assert pb["first_position_win_share"] == pytest.approx(4 / 7)
    assert (pb["pairs_both_orders"], pb["flipped_pairs"], pb["reversed_pairs"]) == (3, 2, 1)
    assert pb["flip_share"] == pytest.approx(2 / 3) and pb["reversed_share"] == pytest.approx(1 / 3)
    assert pb["better_disagrees"] == 1


class ScriptedJudge(Judge):
    """Replies from a rule on the prompt instead of a model: ONLY for the aggregation logic (both
    orders, position bias, stage 08's keys). Nothing is asked of any endpoint; the real path is
    tested against the local server below."""

    def __init__(self, rule, cache_dir):
        super().__init__(JudgeConfig(model="scripted", base_url="http://127.0.0.1:9/v1", cache_dir=str(cache_dir)),
                         api_key="none")
        self.rule = rule

    def complete(self, prompt: str, system: str | None = None) -> str:
        self.stats.add(requests=1)
        return self.rule(prompt)


_PAIR = re.compile(r"Here is the Gold Answer: (.*)\nHere is Choice 1: (.*)\nHere is Choice 2: (.*)\n")


def always_first(prompt: str) -> str:
    return "Choice 1: 3/3\nChoice 2: 0/3\nChoice 1 is better"


def truthful_with_half_point_bias(prompt: str) -> str:
    """2 for the gold answer, 1 otherwise, +0.5 for whichever is Choice 1; 'n/a' answers unparseable."""
    gold, c1, c2 = _PAIR.search(prompt).groups()
    if "n/a" in (c1, c2):
        return "I cannot judge this."
    s1, s2 = (2 if c1 == gold else 1) + 0.5, 2 if c2 == gold else 1
    return f"Choice 1: {s1}/3\nChoice 2: {s2}/3\nChoice {1 if s1 >= s2 else 2} is better"


def test_both_orders_cancel_an_always_first_judge(tmp_path):
    judge = ScriptedJudge(always_first, tmp_path)
    answers = {"base": ["5", "x"], "cat": ["4", "y"], "moe": ["four", "z"]}
    battles, rows, summary = pairwise_battles(judge, ["What is 2+2?", "Q2"], answers, golds=["4", "y"],
                                              progress=False)
    assert judge.stats.requests == summary["judgments"] == 12 and summary["pairs"] == 6 == len(rows)
    assert [b.winner for b in battles] == ["tie"] * 6  # every pair: 3 and 0 in one order, 0 and 3 in the other
    pb = summary["position_bias"]
    assert pb["first_position_win_share"] == 1.0 and pb["flip_share"] == 1.0 and pb["reversed_share"] == 1.0
    assert all(r["score_a"] == r["score_b"] == 1.5 for r in rows)
    res = bootstrap_elo(battles, n_bootstrap=20)
    assert set(res.rating.values()) == {200.0}  # only ties between equals: nobody moves
    # one order only: the bias decides every battle for model_a
    one, _, s1 = pairwise_battles(judge, ["What is 2+2?"], {m: a[:1] for m, a in answers.items()}, golds=["4"],
                                  both_orders=False, progress=False)
    assert [b.winner for b in one] == ["model_a"] * 3 and s1["judgments"] == 3
    assert s1["position_bias"]["flip_share"] is None


def test_both_orders_keep_a_consistent_verdict(tmp_path):
    judge = ScriptedJudge(truthful_with_half_point_bias, tmp_path)
    answers = {"base": ["5", "n/a"], "cat": ["4", "b"], "ties": ["4", "c"]}
    battles, rows, summary = pairwise_battles(judge, ["What is 2+2?", "Q2"], answers, golds=["4", "c"],
                                              progress=False)
    by = {(r["index"], r["model_a"], r["model_b"]): r for r in rows}
    r = by[(0, "base", "cat")]
    # (base, cat): 1.5 vs 2; (cat, base): 2.5 vs 1 -> base (1.5 + 1) / 2 = 1.25, cat (2 + 2.5) / 2 = 2.25
    assert (r["score_a"], r["score_b"], r["winner"]) == (1.25, 2.25, "model_b")
    assert [o["winner"] for o in r["orders"]] == ["model_b", "model_b"]
    assert [o["first"] for o in r["orders"]] == ["model_a", "model_b"]
    assert r["orders"][0]["reply"] == "Choice 1: 1.5/3\nChoice 2: 2/3\nChoice 2 is better"
    assert r["orders"][1]["reply"] == "Choice 1: 2.5/3\nChoice 2: 1/3\nChoice 1 is better"
    tie = by[(0, "cat", "ties")]  # both gold: 2.5 vs 2 each way -> Choice 1 wins each order, tie overall
    assert tie["winner"] == "tie" and [o["winner"] for o in tie["orders"]] == ["model_a", "model_b"]
    # base's second answer is 'n/a': its two pairs on question 2 are unparseable, no battle
    assert summary["unparseable"] == 2 and summary["battles"] == 4 == len(battles)
    assert summary["unparseable_judgments"] == 4 == judge.stats.unparseable
    pb = summary["position_bias"]
    # 8 parsed verdicts: Choice 1 wins whenever it is the gold answer or faces an equal (5), loses the 3
    # where it is wrong against the gold; the only flipped pair is the pair of equals (cat, ties)
    assert (pb["verdicts"], pb["first_position_wins"], pb["second_position_wins"]) == (8, 5, 3)
    assert (pb["pairs_both_orders"], pb["flipped_pairs"], pb["reversed_pairs"]) == (4, 1, 1)
    assert "(B, A)" in summary["battle_rule"] and summary["judge_scale"].startswith("0-3")


def _dataset(columns: dict[str, list]):
    import datasets

    return datasets.Dataset.from_dict(columns, info=datasets.DatasetInfo(description=json.dumps({"source": "test"})))


_QA = re.compile(r"Here is the Gold Answer: (.*)\nHere is the System Answer: (.*)\n")


def scripted_qa(prompt: str) -> str:
    gold, answer = _QA.search(prompt).groups()
    if answer == "?":
        return "No idea."
    return f"Score: {2 if answer == gold else 1 if gold in answer else 0}"


def test_stage_08_writes_the_paper_accuracy(tmp_path):
    from lorasoups.stages.config import EvalConfig
    from lorasoups.stages.evaluate import _judge_qa

    ds = _dataset({"question": ["q1", "q2", "q3", "q4"], "context": ["c"] * 4, "answer": ["a", "b", "c", "d"]})
    rows = [{"generation": g} for g in ("a", "it is b", "?", "wrong")]  # scores 2, 1, None, 0
    m = _judge_qa(ScriptedJudge(scripted_qa, tmp_path), ds, rows, EvalConfig(judge="local"))
    assert (m["judge_n"], m["judge_accuracy"], m["judge_mean_score"]) == (4, 0.25, 1.0)
    assert m["judge_unparseable"] == 1 and m["judge_unparseable_share"] == 0.25 and m["judge_model"] == "scripted"
    assert "judge_scale" in m and "judge_unparsed" not in m
    assert [r["judge_score"] for r in rows] == [2, 1, None, 0] and rows[2]["judge_reply"] == "No idea."
    capped = [{"generation": g} for g in ("a", "it is b", "?", "wrong")]
    m2 = _judge_qa(ScriptedJudge(scripted_qa, tmp_path), ds, capped, EvalConfig(judge="local", judge_examples=2))
    assert (m2["judge_n"], m2["judge_accuracy"]) == (2, 0.5) and "judge_score" not in capped[2]


def test_stage_08_elo_records_both_orders(tmp_path, monkeypatch):
    from lorasoups.evaluation.reporting import examples_path, read_jsonl
    from lorasoups.results import read_result, result_path
    from lorasoups.stages.config import EvalConfig
    from lorasoups.stages.evaluate import _elo

    monkeypatch.setenv("LORASOUPS_RESULTS", str(tmp_path / "results"))
    ds = _dataset({"question": ["What is 2+2?"], "context": ["Arithmetic."], "answer": ["4"]})
    answers = {"base": ["5"], "cat": ["4"]}
    path = result_path("eval/reading_comprehension", "elo", "bioasq_rc-s0", profile="t")
    _elo(ScriptedJudge(always_first, tmp_path / "c"), ds, answers, EvalConfig(judge="local", elo_bootstrap=10), "t",
         "reading_comprehension", "bioasq_rc", 0)
    rec = read_result(path)
    assert rec["config"]["run"]["battles_decided_by"] == "local" and rec["metrics"]["both_orders"] is True
    assert rec["metrics"]["position_bias"]["flip_share"] == 1.0 and rec["metrics"]["battles"] == 1
    (row,) = read_jsonl(examples_path(path))
    assert row["winner"] == "tie" and [o["first"] for o in row["orders"]] == ["model_a", "model_b"]
    # offline: no judge, battles by token F1, labelled as such
    _elo(None, ds, answers, EvalConfig(judge="none", elo_bootstrap=10), "t", "reading_comprehension", "bioasq_rc", 0)
    rec = read_result(path)
    assert rec["config"]["run"]["battles_decided_by"] == "reference_f1"
    assert rec["metrics"]["battle_rule"].startswith("offline, no LLM judge")
    assert rec["metrics"]["elo"]["median"]["cat"] > rec["metrics"]["elo"]["median"]["base"]


def test_missing_key_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(JudgeError, match="no API key: set OPENAI_API_KEY"):
        Judge(JudgeConfig())


def test_retries_with_backoff_then_clear_error_without_the_key(tmp_path, caplog):
    """Nothing listens on the port: connection errors are retried, counted, and the key never shows."""
    secret = "sk-lorasoups-SECRET-0123456789"
    port = free_port()
    cfg = JudgeConfig(model="m", base_url=f"http://127.0.0.1:{port}/v1", max_retries=2,
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
    # a batch through judge_qa: unparseable replies are counted (and wrong), never scored
    metrics, rows = judge_qa(judge, [args[0], "Who wrote it?"], [args[1], "A manual."], ["4", "Wizards"],
                             [args[3], "Nobody knows."], progress=False)
    scores = [r["score"] for r in rows]
    assert scores == [parse_qa_score(r["reply"]) for r in rows]
    assert metrics["judge_unparseable"] == scores.count(None) and metrics["judge_n"] == 2
    assert metrics["judge_accuracy"] == scores.count(2) / 2  # the share scored 2 of ALL judged items
    assert sum(metrics["judge_score_counts"].values()) == 2 and metrics["judge_model"] == server["model"]
    assert judge.stats.cache_hits == 2  # the first item was cached


@pytest.mark.slow
def test_pairwise_judge_both_orders_feed_elo(server, reference_model, tmp_path):
    cfg = JudgeConfig(model=server["model"], base_url=server["base_url"], max_tokens=MAX_TOKENS,
                      cache_dir=str(tmp_path / "cache"), workers=2)
    judge = Judge(cfg, api_key="local")
    answers = {"base": ["5"], "cat": ["4"], "ties": ["four"]}
    q, ctx = "What is 2+2?", "Arithmetic: two plus two equals four."
    battles, rows, summary = pairwise_battles(judge, [q], answers, contexts=[ctx], golds=["4"], progress=False)
    assert summary["pairs"] == 3 == len(rows) and summary["judgments"] == 6 == judge.stats.requests
    assert summary["battles"] + summary["unparseable"] == 3 == len(battles) + summary["unparseable"]
    assert summary["unparseable_judgments"] == judge.stats.unparseable
    first = rows[0]
    assert (first["model_a"], first["model_b"]) == ("base", "cat")
    # both orders were asked, and each reply is what the same model says greedily when we run it ourselves
    ab, ba = first["orders"]
    assert ab["reply"] == _local_reply(reference_model, pair_prompt(q, "5", "4", ctx, "4"), PAIR_SYSTEM)
    assert ba["reply"] == _local_reply(reference_model, pair_prompt(q, "4", "5", ctx, "4"), PAIR_SYSTEM)
    for o in (ab, ba):
        assert (o["score_1"], o["score_2"], o["better"]) == parse_pair(o["reply"])
    assert first == {"index": 0, "model_a": "base", "model_b": "cat", **combine_orders(
        {k: ab[k] for k in ("score_1", "score_2", "better", "reply")},
        {k: ba[k] for k in ("score_1", "score_2", "better", "reply")})}
    assert summary["position_bias"] == position_bias(rows)
    if battles:
        res = bootstrap_elo(battles, n_bootstrap=50)
        assert set(res.rating) <= set(answers)


@pytest.mark.slow
def test_client_errors_are_not_retried(server, tmp_path):
    """A 4xx from the real server (wrong path) fails at once: retrying cannot fix it."""
    cfg = JudgeConfig(model=server["model"], base_url=server["base_url"].replace("/v1", "/nope"),
                      max_retries=3, cache_dir=str(tmp_path))
    judge = Judge(cfg, api_key="local")
    with pytest.raises(JudgeError, match="after 1 attempt"):
        judge.complete("hello")
    assert judge.stats.requests == 1 and judge.stats.retries == 0 and judge.stats.failures == 1
