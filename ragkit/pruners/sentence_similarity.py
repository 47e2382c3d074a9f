"""Training-free sentence pruning: keep sentences whose bi-encoder cosine to the question is high.

Each sentence is embedded as "title: sentence" (HotpotQA sentences often say "He" where only the
title names the entity) with the packaged all-MiniLM-L6-v2, or any sentence-transformers model.
Selection is either an absolute ``threshold`` on the cosine (a passage may lose every sentence
and is then dropped) or a per-passage ``keep_ratio`` (at least one sentence always stays); exactly
one of the two is set. The passage score, used when ``rerank``, is its best sentence's cosine.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ragkit.constraints import Count, Device, PositiveFraction, Similarity
from ragkit.pruners._scoring import ScoringItem, ScoringPruner, SentenceScores
from ragkit.registry import register
from ragkit.retrievers._embedder import embed, load_embedder


@register("pruner", "sentence-similarity")
class SentenceSimilarityPruner(ScoringPruner):
    version = "1"
    selection_params = ("threshold", "keep_ratio", "keep_empty", "rerank")

    def __init__(
        self,
        *,
        model: str = "minilm",
        threshold: Similarity | None = None,
        keep_ratio: PositiveFraction | None = 0.5,
        rerank: bool = False,
        keep_empty: bool = False,
        batch_size: Count = 128,
        device: Device = "auto",
    ) -> None:
        self.model = model
        self.threshold = threshold
        self.keep_ratio = keep_ratio
        self.rerank = rerank
        self.keep_empty = keep_empty
        self.batch_size = batch_size
        self.device = device

    def _check(self) -> None:
        if (self.threshold is None) == (self.keep_ratio is None):
            raise ValueError(
                "sentence-similarity pruner: set exactly one of fields 'threshold' (cosine in [-1, 1])"
                f" and 'keep_ratio' (fraction in (0, 1]); got threshold={self.threshold!r},"
                f" keep_ratio={self.keep_ratio!r}"
            )
        if self.keep_ratio is not None and not 0 < self.keep_ratio <= 1:
            raise ValueError(
                f"sentence-similarity pruner: field 'keep_ratio' must be in (0, 1], got {self.keep_ratio}"
            )

    def warm_up(self) -> None:
        self._load()

    def _load(self) -> Any:
        if getattr(self, "model_", None) is None:
            self.model_, self.identity_ = load_embedder(self.model, self.device, "sentence-similarity pruner")
        return self.model_

    def model_identity(self) -> dict[str, Any]:
        from ragkit.retrievers.dense import resolve_model

        return {"weights": resolve_model(self.model)[1]}

    def _score(self, items: Sequence[ScoringItem]) -> list[SentenceScores]:
        texts = [f"{it.chunk.title}: {s}" if it.chunk.title else s for it in items for s in it.sentences]
        emb = embed(self._load(), [it.query for it in items], texts, self.batch_size)
        out, start = [], 0
        for it in items:
            n = len(it.sentences)
            sims = (emb.texts[start : start + n] @ emb.queries[it.query]).astype(float).tolist()
            tokens = sum(emb.text_tokens[start : start + n]) + emb.query_tokens[it.query] * n
            out.append(SentenceScores(sims, max(sims) if sims else None, tokens))
            start += n
        return out

    def select(self, scores: SentenceScores) -> list[bool]:
        self._check()
        sims = scores.sentences
        if self.threshold is not None:
            return [s >= self.threshold for s in sims]
        n_keep = max(1, math.ceil(self.keep_ratio * len(sims)))  # type: ignore[operator]
        best = set(np.argsort(-np.asarray(sims), kind="stable")[:n_keep].tolist())
        return [i in best for i in range(len(sims))]
