"""The registry, ``load`` from every source, provenance, and every bad-input error."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lorasoups.config import ConfigError, from_dict
from lorasoups.data import (
    REGISTRY,
    SETTINGS,
    DataConfig,
    DataError,
    get_entry,
    identity,
    load,
    mirror_root,
    registry_table,
    to_conversational,
)
from lorasoups.data.loading import DROPPED_AS_DEMO
from lorasoups.task_kinds import RECORD_KINDS

MIRROR = mirror_root()
needs_mirror = pytest.mark.skipif(MIRROR is None or not Path(MIRROR).is_dir(), reason="data mirror absent")


def test_registry_lists_every_setting_dataset_with_sizes():
    for s in SETTINGS.values():
        names = [*s.skills, *s.targets]
        for v in s.variants.values():
            names += [*v.get("skills", ()), *v.get("targets", ())]
        for n in names:
            assert n in REGISTRY
        assert all(REGISTRY[t].role == "target" for t in s.targets)
        assert all(REGISTRY[n].role in ("skill", "corpus") for n in s.skills)
        assert s.labels == [f"skill{i + 1}" for i in range(s.k)]
    paper = {"math_code", "qabot", "reading_comprehension", "prompt_robustness"}
    pairs = {"prompt_robustness_1_4", "prompt_robustness_2_4"}  # Figure 10a and 10c's training pairs
    assert {n for n, s in SETTINGS.items() if s.k == 2} == paper | pairs
    for n in pairs:
        assert SETTINGS[n].group == "prompt_robustness" and SETTINGS[n].targets == SETTINGS["prompt_robustness"].targets
    assert {s.skills for n, s in SETTINGS.items() if s.group == "prompt_robustness" and s.k == 2} == {
        ("count_format1", "count_format2"), ("count_format1", "count_format4"), ("count_format2", "count_format4")}
    # the k-skill settings grow a paper setting: same targets, its skills first
    for s in SETTINGS.values():
        if s.k > 2:
            fam = SETTINGS[s.group]
            assert s.group in paper and s.targets == fam.targets and s.skills[:2] == fam.skills
    assert {(s.group, s.k) for s in SETTINGS.values() if s.k > 2} == {
        ("math_code", 3), ("math_code", 4), ("prompt_robustness", 3), ("prompt_robustness", 4)}
    for e in REGISTRY.values():
        assert e.generator, f"{e.name} has no offline generator"
        assert e.version and e.description
    rows = registry_table()
    assert len(rows) == len(REGISTRY) and all("generated_size" in r for r in rows)
    assert REGISTRY["gsm_hard"].paper_size == 1319 and REGISTRY["gsm_hard"].hub_id == "reasoning-machines/gsm-hard"


@needs_mirror
@pytest.mark.parametrize("name", [n for n, e in REGISTRY.items() if e.mirror_files])
def test_each_mirrored_dataset_loads(name):
    e = REGISTRY[name]
    total = 0
    for split in e.splits:
        try:
            ds = load(name, split, source="mirror")
        except DataError as exc:  # mirror targets hold only the test file
            assert e.role == "target" and split == "validation", exc
            continue
        assert ds.column_names == list(RECORD_KINDS[e.kind].columns)
        ident = identity(ds)
        assert ident["source"] == "mirror" and ident["num_rows"] == len(ds) > 0
        if e.role != "corpus" or split == "train":  # + items left out for being their prompt's demo
            total += len(ds) + len((ident.get("dropped") or {}).get(DROPPED_AS_DEMO, []))
    if e.mirror_size:  # the record counts stated in the mirror's SOURCE.md files
        assert total == e.mirror_size


@needs_mirror
def test_bioasq_heldout_pool_is_disjoint_from_the_scored_items_and_ids_are_unique():
    """The RC target's validation pool (the oracle's data, the sweep's) shares no question, near
    question, answer or snippet with a scored item; its contexts are built as the authors built
    theirs (checked on the 123 test items that are also in the golden batches). Ids are unique
    although the test file is one JSON line (ids name the record, not the line)."""
    from lorasoups.data.mirror import rc_context

    test, held = load("bioasq_rc", "test", source="mirror"), load("bioasq_rc", "validation", source="mirror")
    assert len(set(test["id"])) == len(test) == 200 and len(set(held["id"])) == len(held) == 358
    norm = lambda q: " ".join(q.lower().split())  # noqa: E731
    words = lambda q: set(re.findall(r"[a-z0-9]+", q.lower()))  # noqa: E731
    raw_test = json.loads((MIRROR / "lorasoups-paper/bioasq_rc_test.json").read_text())
    parts = [r["instruction"].split("Context:", 1)[1].split("\n\nQuestion:") for r in raw_test]
    contexts, questions = [norm(c) for c, _ in parts], [q.strip() for _, q in parts]
    answers = {norm(r["answer"]) for r in raw_test}
    rows = [json.loads(x) for x in (MIRROR / "bioasq-factoid/bioasq_factoid_7b-11b.jsonl").read_text().splitlines()]
    by_question = {norm(r["question"]): r for r in rows}
    flagged = [r for r in rows if r["in_lorasoups_rc_test"]]
    rebuilt = {norm(r["question"]): norm(rc_context([s["text"] for s in r["snippets"]])) for r in flagged}
    found = [(q, c) for q, c in zip(questions, contexts) if norm(q) in rebuilt]
    assert len(found) == 123 and all(rebuilt[norm(q)] == c for q, c in found)
    for q, a, ctx in zip(held["question"], held["answer"], held["context"]):
        assert norm(a) not in answers
        assert all(len(words(q) & words(t)) / len(words(q) | words(t)) < 0.8 for t in questions)
        snippets = [s["text"] for s in by_question[norm(q)]["snippets"]]
        assert ctx == rc_context(snippets)
        assert not any(len(norm(s)) >= 20 and norm(s) in c for s in snippets for c in contexts)
    # the reworded copy of a scored question (batch 7B3; batch 8B1 repeats the scored wording)
    assert not any("conserved non-coding elements" in q for q in held["question"])


@needs_mirror
def test_mirror_sizes_match_the_files_counted_independently():
    def count(rel):
        p = MIRROR / rel
        return len(json.loads(p.read_text())) if p.suffix == ".json" else len(p.read_text().splitlines())

    assert len(load("gsm_hard", "test", source="mirror")) == count("gsm-hard/gsmhardv2.jsonl") == 1319
    assert len(load("gsm8k", "test", source="mirror")) == count("gsm8k/test.jsonl")
    sizes = [len(load("gsm8k", s, source="mirror")) for s in ("train", "validation")]
    assert sum(sizes) == count("gsm8k/train.jsonl")
    assert len(load("qabot_dnd", "test", source="mirror")) == 50
    assert len(load("qabot_biology", "test", source="mirror")) == 45
    # 201 in the file; its first item is rc.json's first demo, the 1-shot prompt's, so it is not scored
    assert len(load("bioasq_rc", "test", source="mirror")) == count("lorasoups-paper/bioasq_rc_test.json") - 1 == 200
    assert len(load("count_format7", "test", source="mirror")) == 417
    raw = [json.loads(x) for x in (MIRROR / "alpaca-libre/alpaca_libre_tasks_v1.jsonl").read_text().splitlines()]
    ok = [r for r in raw if r["status"] == "ok" and r["output"].strip()]
    assert sum(len(load("alpaca_libre", s, source="mirror")) for s in ("train", "validation", "test")) == len(ok)
    # the QABot's instruction skill: the Stanford Alpaca 5k sample (issue 17), its 2 empty outputs counted out
    stanford = json.loads((MIRROR / "stanford-alpaca-5k/alpaca_5000.json").read_text())
    assert sum(len(load("alpaca", s, source="mirror")) for s in ("train", "validation", "test")) == len(stanford) - 2
    assert identity(load("alpaca", "train", source="mirror"))["dropped"] == {
        "empty output (ids)": ["alpaca_5000.json#2335", "alpaca_5000.json#4658"]}
    hard = load("gsm_hard", "test", source="mirror")
    assert hard[0]["target"] == -9867630.0 and "def solution" in hard[0]["code"]


@needs_mirror
def test_auto_prefers_mirror_offline_and_records_it(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    ds = load("metamathqa", "train", size=5)
    ident = identity(ds)
    assert ident["source"] == "mirror" and "GSM8K" in ident["stand_in"]
    assert "HF_DATASETS_OFFLINE" in ident["skipped_sources"]["hub"]
    assert len(ds) == 5
    assert identity(ds.select(range(2)))["name"] == "metamathqa"  # provenance survives select
    with pytest.raises(DataError, match="hub .* unavailable: HF_DATASETS_OFFLINE"):
        load("gsm_hard", "test", source="hub")


def test_auto_falls_to_generated_without_a_mirror(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.delenv("LORASOUPS_DATA_MIRROR", raising=False)
    monkeypatch.setattr("lorasoups.paths.data_mirror", lambda: None)
    ident = identity(load("gsm_hard", "test", size=4))
    assert ident["source"] == "generated" and set(ident["skipped_sources"]) == {"hub", "mirror"}
    assert identity(load("squad", "train", size=4))["source"] == "generated"  # no mirror here


def test_sft_records_suit_trl_prompt_completion():
    from trl.data_utils import is_conversational

    ds = load("code_alpaca", "train", source="generated", size=4)
    rec = ds[0]
    assert rec["prompt"].endswith("### Response:\n") and rec["completion"]
    assert not is_conversational(rec)
    conv = to_conversational(ds)
    assert is_conversational(conv[0]) and conv[0]["completion"][0]["content"] == rec["completion"]


def test_data_config_section():
    cfg = from_dict(DataConfig, {"seed": 2, "cat_fraction": 0.1}, "configs/x.yaml:data")
    assert cfg.size("smoke") == cfg.smoke_size and cfg.size("full", target=True) is None
    sized = from_dict(DataConfig, {"full_size": 800, "sizes": {"count_format1": 1600, "gsm_hard": 400}}, "x")
    assert sized.size("cpu", name="count_format1") == 1600 and sized.size("cpu", name="metamathqa") == 800
    assert sized.size("cpu", target=True, name="gsm_hard") == 400 and sized.size("cpu", target=True) is None
    assert sized.size("smoke", name="count_format1") == sized.smoke_size  # the smoke profile ignores sizes
    with pytest.raises(ConfigError, match="sizes.gsm_hard must be >= 1"):
        from_dict(DataConfig, {"sizes": {"gsm_hard": 0}}, "configs/x.yaml:data")
    with pytest.raises(ConfigError, match="did you mean 'cat_fraction'"):
        from_dict(DataConfig, {"cat_fractoin": 0.1}, "configs/x.yaml:data")
    with pytest.raises(ConfigError, match="cat_fraction"):
        from_dict(DataConfig, {"cat_fraction": 0.0}, "configs/x.yaml:data")


# ---- errors -------------------------------------------------------------------------------------

def test_unknown_names_splits_and_sources_suggest():
    with pytest.raises(DataError, match="did you mean 'gsm_hard'"):
        load("gsm_hrad", "test")
    with pytest.raises(DataError, match="did you mean 'validation'"):
        load("gsm_hard", "valdation")
    with pytest.raises(DataError, match="did you mean 'mirror'"):
        load("gsm_hard", "test", source="miror")
    with pytest.raises(DataError, match="has no 'train' split"):
        load("gsm_hard", "train")
    with pytest.raises(DataError, match="no mirror source.*bioasq_train_textbooks.txt is not in the stored release"):
        load("biomed_textbooks", "train", source="mirror")
    with pytest.raises(DataError, match="unknown dataset"):
        get_entry("nope")


def _fake_mirror(tmp_path: Path, train: str, test: str = '{"question": "q?", "answer": "x\\n#### 1"}\n') -> Path:
    d = tmp_path / "gsm8k"
    d.mkdir(parents=True)
    (d / "train.jsonl").write_text(train)
    (d / "test.jsonl").write_text(test)
    return tmp_path


GOOD = '{"question": "What is 1+1?", "answer": "1+1 = <<1+1=2>>2\\n#### 2"}\n'


def test_malformed_jsonl_line_names_file_and_line(tmp_path):
    root = _fake_mirror(tmp_path, GOOD + GOOD + '{"question": "x", "answer": \n')
    with pytest.raises(DataError, match=r"gsm8k/train\.jsonl:3: malformed JSON line"):
        load("gsm8k", "train", source="mirror", mirror=root)


def test_missing_field_names_file_line_and_field(tmp_path):
    root = _fake_mirror(tmp_path, GOOD + '\n{"question": "What is 2+2?"}\n')
    with pytest.raises(DataError, match=r"train\.jsonl:3: missing field 'answer'"):
        load("gsm8k", "train", source="mirror", mirror=root)
    root2 = _fake_mirror(tmp_path / "b", GOOD + '{"question": "Q", "answer": "no final line"}\n')
    with pytest.raises(DataError, match=r"train\.jsonl:2: field 'answer': no '#### <answer>' line"):
        load("gsm8k", "train", source="mirror", mirror=root2)


def test_malformed_json_array_and_bad_types_name_the_line(tmp_path):
    d = tmp_path / "lorasoups-paper"
    d.mkdir()
    (d / "qabot_dnd_test.json").write_text('[\n {"instruction": "Q1?", "answer": "A"},\n {"instruction": "Q2?",,}\n]')
    with pytest.raises(DataError, match=r"qabot_dnd_test\.json:3: malformed JSON in record 1"):
        load("qabot_dnd", "test", source="mirror", mirror=tmp_path)
    (d / "qabot_dnd_test.json").write_text('[\n {"instruction": "Q1?", "answer": "A"},\n\n {"instruction": 7, '
                                           '"answer": "B"}\n]')
    with pytest.raises(DataError, match=r"qabot_dnd_test\.json:4 \(record 1\): field 'instruction' should be str, got int"):
        load("qabot_dnd", "test", source="mirror", mirror=tmp_path)


def test_empty_datasets_are_errors(tmp_path):
    root = _fake_mirror(tmp_path, "\n")
    with pytest.raises(DataError, match=r"train\.jsonl: no records"):
        load("gsm8k", "train", source="mirror", mirror=root)
    d = tmp_path / "lorasoups-paper"
    d.mkdir()
    (d / "qabot_dnd_test.json").write_text("[]")
    with pytest.raises(DataError, match=r"qabot_dnd_test\.json: no records"):
        load("qabot_dnd", "test", source="mirror", mirror=tmp_path)
    (d / "dnd_manual.txt").write_text("  \n")
    with pytest.raises(DataError, match=r"dnd_manual\.txt: file is empty"):
        load("dnd_manual", "train", source="mirror", mirror=tmp_path)


def test_unreadable_mirror_file_names_the_file(tmp_path, monkeypatch):
    root = _fake_mirror(tmp_path, GOOD)
    train = root / "gsm8k" / "train.jsonl"
    head = GOOD.encode() + b'{"question": "caf'
    train.write_bytes(head + b'\xe9"}\n')  # latin-1, not UTF-8
    with pytest.raises(DataError, match=rf"gsm8k/train\.jsonl: not UTF-8 text \(byte {len(head)}\)"):
        load("gsm8k", "train", source="mirror", mirror=root)
    train.write_text(GOOD)
    real = Path.read_text

    def denied(self, *a, **kw):  # the tests run as root, where chmod 000 still reads
        if self == train:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *a, **kw)

    monkeypatch.setattr(Path, "read_text", denied)
    with pytest.raises(DataError, match=r"gsm8k/train\.jsonl: cannot be read \(Permission denied\)"):
        load("gsm8k", "train", source="mirror", mirror=root)


def test_dataset_empty_after_filtering_names_file_and_filter(tmp_path):
    d = tmp_path / "alpaca-libre"
    d.mkdir()
    rows = [{"instruction": "Say hi.", "input": "", "output": "hi", "status": "error"},
            {"instruction": "Say yo.", "input": "", "output": " ", "status": "ok"}]
    (d / "alpaca_libre_tasks_v1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=r"alpaca_libre_tasks_v1\.jsonl: no record left after filtering \(left out: "
                                        r"1 with field 'status' != 'ok', 1 with an empty field 'output'\)"):
        load("alpaca_libre", "train", source="mirror", mirror=tmp_path)


def test_mirror_directory_without_the_expected_file(tmp_path):
    (tmp_path / "gsm8k").mkdir()
    (tmp_path / "gsm8k" / "train.jsonl").write_text(GOOD)
    with pytest.raises(DataError, match=r"mirror directory '.*gsm8k' has no file 'test\.jsonl' expected for "
                                        r"dataset 'gsm8k'"):
        load("gsm8k", "test", source="mirror", mirror=tmp_path)
    with pytest.raises(DataError, match="is not a directory"):
        load("gsm8k", "test", source="mirror", mirror=tmp_path / "absent")


def test_hub_adapters_map_the_hub_schemas():
    """The hub is unreachable here: run each adapter on rows shaped like its hub dataset's features."""
    from lorasoups.data.hub import ADAPTERS

    rows = {
        "metamathqa": {"query": "What is 2+3?", "response": "2+3=5. The answer is: 5", "type": "GSM_Rephrased",
                       "original_question": "x"},
        "gsm8k": {"question": "What is 2+3?", "answer": "2+3 = <<2+3=5>>5\n#### 5"},
        "code_alpaca": {"instruction": "Reverse a list.", "input": "", "output": "lst[::-1]"},
        "alpaca": {"instruction": "Say hi.", "input": "", "output": "Hi.", "text": "x"},
        "squad": {"id": "1", "title": "t", "context": "Bo lives in Oslo.", "question": "Where does Bo live?",
                  "answers": {"text": ["Oslo"], "answer_start": [12]}},
        "gsm_hard": {"input": "What is 2+3000000?", "code": "def solution():\n    return 2 + 3000000\n",
                     "target": 3000002.0},
    }
    assert set(rows) == set(ADAPTERS)
    for name, row in rows.items():
        recs = ADAPTERS[name][1]([row], "hub:x:")
        cols = set(RECORD_KINDS[REGISTRY[name].kind].columns) - {"prompt"} if name == "gsm_hard" else \
            set(RECORD_KINDS[REGISTRY[name].kind].columns)
        assert cols <= set(recs[0]), name
    assert ADAPTERS["gsm8k"][1]([rows["gsm8k"]], "")[0]["completion"] == "2+3 = 5\nThe answer is 5."
    assert "Context: Bo lives in Oslo." in ADAPTERS["squad"][1]([rows["squad"]], "")[0]["prompt"]
    no_answer = {**rows["squad"], "answers": {"text": [], "answer_start": []}}
    assert ADAPTERS["squad"][1]([no_answer], "")[0]["completion"] == "Not in context"


def test_carved_splits_are_fixed_by_seed_and_recorded():
    a = identity(load("code_alpaca", "validation", source="generated", size=5))
    assert a["split_spec"]["method"].startswith("sha256")
    if MIRROR is None:
        pytest.skip("data mirror absent")
    v0 = load("alpaca", "validation", source="mirror", seed=0)
    assert load("alpaca", "validation", source="mirror", seed=0)["id"] == v0["id"]
    assert load("alpaca", "validation", source="mirror", seed=1)["id"] != v0["id"]
    spec = identity(v0)["split_spec"]
    assert spec["seed"] == 0 and spec["sizes"]["validation"] == len(v0) == round(0.05 * spec["pool_size"])
    train = set(load("alpaca", "train", source="mirror", seed=0)["id"])
    test = set(load("alpaca", "test", source="mirror", seed=0)["id"])
    assert not train & set(v0["id"]) and not train & test and not test & set(v0["id"])


def test_prompts_end_on_a_token_boundary(tiny):
    """TRL finds the completion where tokenized prompt and prompt+completion diverge: they must not."""
    _, tok = tiny
    for name, e in REGISTRY.items():
        if e.kind in ("corpus", "fewshot"):
            continue
        split = "train" if e.role == "skill" else "test"
        for src in ("mirror", "generated"):
            if src not in e.sources or (src == "mirror" and MIRROR is None):
                continue
            for r in load(name, split, source=src, size=15):
                p = tok(r["prompt"])["input_ids"]
                assert tok(r["prompt"] + r["completion"])["input_ids"][:len(p)] == p, (name, src, r["id"])


def test_pal_prompts_take_one_or_eight_shots():
    one = load("gsm_hard", "test", source="generated", size=2)
    eight = load("gsm_hard", "test", source="generated", size=2, shots=8)
    assert one[0]["prompt"].count("### Instruction:") == 2 and eight[0]["prompt"].count("### Instruction:") == 9
    assert eight[0]["prompt"].count("def solution():") == 8
    demos = load("pal_fewshot", "test", source="generated")
    assert identity(eight)["demonstrations"] == {"dataset": "pal_fewshot", "source": "generated", "shots": 8,
                                                 "ids": list(demos["id"])}
    assert identity(one)["demonstrations"]["ids"] == [demos["id"][0]]


def test_a_setting_refuses_fewer_than_two_or_repeated_skills():
    from lorasoups.data import Setting

    with pytest.raises(DataError, match="at least 2 skills"):
        Setting("x", "d", ("alpaca",), ("gsm_hard",), "m")
    with pytest.raises(DataError, match="listed twice"):
        Setting("x", "d", ("alpaca", "code_alpaca", "alpaca"), ("gsm_hard",), "m")


def test_squad_v2_mirror_sample_splits_by_article_and_names_bad_fields(tmp_path):
    """The official SQuAD v2 layout: a test article held out whole, unanswerable questions answered
    "Not in context" (as the hub adapter does), errors naming the file and the JSON path."""
    import dataclasses

    from lorasoups.data import mirror

    def qa(qid, question, answer=None):
        return {"id": qid, "question": question, "is_impossible": answer is None,
                "answers": [] if answer is None else [{"text": answer, "answer_start": 0}]}

    doc = {"version": "v2.0", "data": [
        {"title": "A", "paragraphs": [{"context": "Bo lives in Oslo.", "qas": [qa("a1", "Where does Bo live?", "Oslo"),
                                                                             qa("a2", "Where was Bo born?")]}]},
        {"title": "B", "paragraphs": [{"context": "Al sings.", "qas": [qa("b1", "Who sings?", "Al")]}]}]}
    entry = dataclasses.replace(get_entry("squad"), mirror_files=("sq.json",), extra={"test_articles": ("B",)})
    (tmp_path / "sq.json").write_text(json.dumps(doc))
    pools, files = mirror.read(entry, tmp_path)
    assert files == [tmp_path / "sq.json"]
    assert [r["id"] for r in pools["train"]] == ["sq.json#a1", "sq.json#a2"] and [r["id"] for r in pools["test"]] == ["sq.json#b1"]
    assert [r["completion"] for r in pools["train"]] == ["Oslo", "Not in context"]
    assert "Context: Bo lives in Oslo.\n\nQuestion: Where does Bo live?" in pools["train"][0]["prompt"]
    doc["data"][0]["paragraphs"][0]["qas"][0]["answers"] = []
    (tmp_path / "sq.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"sq.json: data\[0\].paragraphs\[0\].qas\[0\]: field 'answers' is empty"):
        mirror.read(entry, tmp_path)
    doc["data"][0]["paragraphs"][0]["qas"][0]["is_impossible"] = True
    (tmp_path / "sq.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match="no article titled C"):
        mirror.read(dataclasses.replace(entry, extra={"test_articles": ("C",)}), tmp_path)


def test_squad_from_the_real_mirror_sample():
    from lorasoups.paths import data_mirror

    if data_mirror() is None or not (data_mirror() / "squad-v2-dev-sample").is_dir():
        pytest.skip("no data mirror with the SQuAD v2 sample")
    train, test = load("squad", "train", source="mirror"), load("squad", "test", source="mirror")
    # 1,124 questions: 'Normans' (208) is the test article, a validation share is carved off the other 916
    assert len(test) == 208 and 800 < len(train) < 916
    assert not {r["instruction"] for r in train} & {r["instruction"] for r in test}


def test_an_optional_mirror_file_may_be_absent(tmp_path):
    """BioASQ's held-out pool (the golden batches) is optional: a mirror holding only the paper's
    test file still loads the test split, names only that file as its origin, and has no validation
    split (tuning falls back to the generated suite, :func:`lorasoups.stages.common.tuning_examples`)."""
    from lorasoups.paths import data_mirror

    real = data_mirror()
    if real is None or not (real / "lorasoups-paper/bioasq_rc_test.json").is_file():
        pytest.skip("no data mirror with the paper's BioASQ test file")
    for f in ("lorasoups-paper/bioasq_rc_test.json", "lorasoups-paper/few_shot/rc.json"):
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).symlink_to(real / f)
    test = load("bioasq_rc", "test", source="mirror", mirror=tmp_path)
    assert len(test) == 200 and identity(test)["origin"] == ["lorasoups-paper/bioasq_rc_test.json"]
    with pytest.raises(DataError, match="has no 'validation' split"):
        load("bioasq_rc", "validation", source="mirror", mirror=tmp_path)
    if (real / "bioasq-factoid").is_dir():  # with the pool: both files, and the 358 held-out items
        full = load("bioasq_rc", "validation", source="mirror")
        assert len(full) == 358 and len(identity(full)["origin"]) == 2


def test_checked_field_names_the_path_and_treats_bool_apart():
    from lorasoups.data.io import checked_field

    where = "f.json: data[0]"
    assert checked_field({"ok": True}, "ok", bool, where) is True
    assert checked_field({"n": 3}, "n", (int, float), where) == 3
    with pytest.raises(DataError, match=r"f\.json: data\[0\]: field 'n' should be int or float, got bool"):
        checked_field({"n": True}, "n", (int, float), where)
    with pytest.raises(DataError, match=r"f\.json: data\[0\]: missing field 'title' \(fields present: a, b\)"):
        checked_field({"b": 1, "a": 2}, "title", str, where)
    with pytest.raises(DataError, match=r"missing field 'title' \(fields present: not an object: list\)"):
        checked_field([], "title", str, where)
    with pytest.raises(DataError, match=r"field 'title' is empty"):
        checked_field({"title": "  "}, "title", str, where)


def test_bioasq_heldout_bad_rows_name_file_line_and_field(tmp_path):
    from lorasoups.data.mirror import read_bioasq_heldout

    good = {"question": "What binds X?", "snippets": [{"text": "Y binds X"}], "ideal_answer": ["Y"]}
    f = tmp_path / "golden.jsonl"
    f.write_text(json.dumps(good) + "\n" + json.dumps({**good, "in_lorasoups_rc_test": "no"}) + "\n")
    with pytest.raises(DataError, match=r"golden\.jsonl:2: field 'in_lorasoups_rc_test' should be bool, got str"):
        read_bioasq_heldout(f, [])
    f.write_text(json.dumps(good) + "\n" + json.dumps({**good, "snippets": [{"text": "a"}, {"txt": "b"}]}) + "\n")
    with pytest.raises(DataError, match=r"golden\.jsonl:2: snippets\[1\]: missing field 'text'"):
        read_bioasq_heldout(f, [])
    f.write_text(json.dumps(good) + "\n")
    assert [r["answer"] for r in read_bioasq_heldout(f, [])] == ["Y"]
