"""BM25 (Okapi) with two interchangeable backends that give the same ranking and scores.

- ``rank_bm25``: ``rank_bm25.BM25Okapi``, the reference implementation (pure Python, slow on big
  corpora: it loops over every document for every query term).
- ``bm25s``: bm25s's eager sparse index (scores precomputed per (term, document), a query is a
  sum of a few sparse columns), configured to compute exactly BM25Okapi.

How the two are made equal. Both get the same tokens from :func:`tokenize` (ours, so neither
library's tokeniser decides). BM25Okapi scores

    score(q, d) = sum over query tokens t (repeats counted) of
                  idf(t) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * |d| / avgdl))
    idf(t) = log((N - n_t + 0.5) / (n_t + 0.5)), and every negative idf is replaced by
             epsilon * mean(idf over the vocabulary), epsilon = 0.25

(a term in more than half the documents has a negative idf, common in 10-paragraph per-example
corpora). bm25s's ``atire`` term-frequency part is that same fraction, but none of its idf variants
has the epsilon floor (``robertson`` clamps at 0 instead). So the bm25s index is built with
``method="atire", idf_method="lucene"`` (an idf that is strictly positive, so every stored entry is
non-zero) in float64, and each term's column of the sparse score matrix is then multiplied by
``okapi_idf(t) / lucene_idf(t)``. The stored entries become BM25Okapi's ``idf * tfc``; scores agree
to ~1e-12 relative (summation order), rankings are equal (ties broken by chunk position in both).
bm25s also counts duplicated query tokens twice, as BM25Okapi does.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ragkit.constraints import Fraction, NonNegativeFloat
from ragkit.registry import register
from ragkit.retrievers._common import IndexLRU, indexed_text, positions, to_scored, top_k
from ragkit.retrievers.base import Retriever
from ragkit.types import Corpus, Evidence, Scored

EPSILON = 0.25  # rank_bm25.BM25Okapi's default floor factor for negative idf
_TOKEN = re.compile(r"\w+")  # keeps one-character tokens ("World War 2", "Apollo 8")

_STOPWORD_LISTS = {
    "en": "STOPWORDS_EN",
    "en_plus": "STOPWORDS_EN_PLUS",
    "de": "STOPWORDS_GERMAN",
    "nl": "STOPWORDS_DUTCH",
    "fr": "STOPWORDS_FRENCH",
    "es": "STOPWORDS_SPANISH",
    "pt": "STOPWORDS_PORTUGUESE",
    "it": "STOPWORDS_ITALIAN",
    "ru": "STOPWORDS_RUSSIAN",
    "sv": "STOPWORDS_SWEDISH",
    "no": "STOPWORDS_NORWEGIAN",
    "da": "STOPWORDS_DANISH",
}


def stopword_set(stopwords: str | None) -> frozenset[str]:
    """The NLTK-derived stopword lists bm25s ships, by language code (None: no stopwords)."""
    if stopwords is None:
        return frozenset()
    if stopwords not in _STOPWORD_LISTS:
        raise ValueError(
            f"bm25 retriever: field 'stopwords' is {stopwords!r};"
            f" expected null or one of {sorted(_STOPWORD_LISTS)}"
        )
    _import_bm25s()
    import bm25s.stopwords

    return frozenset(getattr(bm25s.stopwords, _STOPWORD_LISTS[stopwords]))


def _import_bm25s() -> Any:
    """bm25s, imported lazily. Its ``__init__`` sets its logger to DEBUG, which floods every run's
    output with "Building index from tokens" (the CLI's WARNING level is set before this import):
    put it back to WARNING unless the user chose a level for it on purpose (DEBUG is bm25s' own)."""
    import logging

    import bm25s

    bm25s_logger = logging.getLogger("bm25s")
    if bm25s_logger.level == logging.DEBUG:
        bm25s_logger.setLevel(logging.WARNING)
    return bm25s


def tokenize(text: str, stop: frozenset[str], lowercase: bool = True) -> list[str]:
    """Word tokens (``\\w+``, Unicode), lowercased, stopwords dropped. Shared by both backends."""
    if lowercase:
        text = text.lower()
    return [t for t in _TOKEN.findall(text) if t not in stop and t.lower() not in stop]


def okapi_idf(doc_freq: np.ndarray, n_docs: int, epsilon: float = EPSILON) -> np.ndarray:
    """BM25Okapi's idf with its floor, vectorised (same arithmetic as rank_bm25._calc_idf)."""
    idf = np.log(n_docs - doc_freq + 0.5) - np.log(doc_freq + 0.5)
    if len(idf):
        idf = np.where(idf < 0, epsilon * (idf.sum() / len(idf)), idf)
    return idf


@dataclass
class _Index:
    engine: Any  # bm25s.BM25 or rank_bm25.BM25Okapi; None when no document has a token
    positions: np.ndarray
    vocab: dict[str, int]


@register("retriever", "bm25")
class BM25Retriever(Retriever):
    version = "1"  # the vocabulary-order change moved scores by ~1e-15 at most: same rankings
    aux_tokens_: int = 0  # no model reads anything

    def __init__(
        self,
        *,
        backend: Literal["bm25s", "rank_bm25"] = "bm25s",
        k1: NonNegativeFloat = 1.5,
        b: Fraction = 0.75,
        stopwords: str | None = "en",
        lowercase: bool = True,
    ) -> None:
        self.backend = backend
        self.k1 = k1
        self.b = b
        self.stopwords = stopwords
        self.lowercase = lowercase

    def spec(self) -> dict[str, Any]:
        # The backend does not change results (that is the point of the two), so it stays out of
        # cache keys: a retrieval cached with one backend is valid for the other.
        spec = super().spec()
        spec.pop("backend")
        return spec

    def _tokens(self, text: str) -> list[str]:
        if not hasattr(self, "stop_"):
            self.stop_ = stopword_set(self.stopwords)
        return tokenize(text, self.stop_, self.lowercase)

    def _build(self, corpus: Corpus) -> _Index:
        docs = [self._tokens(indexed_text(c)) for c in corpus.chunks]
        pos = positions(corpus)
        if not any(docs):  # empty corpus or nothing but stopwords: every score is 0
            return _Index(None, pos, {})
        if self.backend == "rank_bm25":
            from rank_bm25 import BM25Okapi

            return _Index(BM25Okapi(docs, k1=self.k1, b=self.b, epsilon=EPSILON), pos, {})
        if self.backend != "bm25s":
            raise ValueError(
                f"bm25 retriever: field 'backend' is {self.backend!r}; expected 'bm25s' or 'rank_bm25'"
            )
        bm25s = _import_bm25s()
        engine = bm25s.BM25(k1=self.k1, b=self.b, method="atire", idf_method="lucene", dtype="float64")
        # Our own vocabulary, in first-occurrence order: bm25s builds its vocabulary from a set, whose
        # order follows PYTHONHASHSEED, and the epsilon floor's mean idf summed in that order made
        # scores differ in the last bit between processes (near-ties could swap). Ids are also
        # quicker to index than token strings.
        vocab: dict[str, int] = {}
        ids = [[vocab.setdefault(t, len(vocab)) for t in doc] for doc in docs]
        engine.index((ids, vocab), create_empty_token=False, show_progress=False)
        scores = engine.scores
        indptr = scores["indptr"]
        doc_freq = np.diff(indptr).astype(np.float64)  # one stored entry per (term, document)
        n = len(docs)
        lucene = np.log1p((n - doc_freq + 0.5) / (doc_freq + 0.5))
        ratio = okapi_idf(doc_freq, n) / lucene
        scores["data"] = scores["data"] * np.repeat(ratio, np.diff(indptr))
        return _Index(engine, pos, engine.vocab_dict)

    def _scores(self, index: _Index, query: str, n_docs: int) -> np.ndarray:
        tokens = self._tokens(query)
        if index.engine is None or not tokens:
            return np.zeros(n_docs)
        if self.backend == "rank_bm25":
            return np.asarray(index.engine.get_scores(tokens), dtype=np.float64)
        ids = [index.vocab[t] for t in tokens if t in index.vocab]
        if not ids:
            return np.zeros(n_docs)
        return np.asarray(index.engine.get_scores_from_ids(ids), dtype=np.float64)

    def retrieve(
        self,
        queries: Sequence[str],
        corpus: Corpus,
        k: int,
        *,
        evidence: Sequence[Sequence[Evidence]] | None = None,
    ) -> list[list[Scored]]:
        if not hasattr(self, "indexes_"):
            self.indexes_: IndexLRU[_Index] = IndexLRU()
        index = self.indexes_.get(corpus, self._build)
        out = []
        for query in queries:
            scores = self._scores(index, query, len(corpus))
            out.append(to_scored(corpus, top_k(scores, index.positions, k), scores))
        return out
