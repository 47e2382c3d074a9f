"""Training-free sentence pruning: keep sentences whose bi-encoder cosine to the question is high.

Each sentence is embedded as "title: sentence" (HotpotQA sentences often say "He" where only the
title names the entity) with the packaged all-MiniLM-L6-v2, or any sentence-transformers model.
Selection is either an absolute ``threshold`` on the cosine (a passage may lose every sentence
and is then dropped) or a per-passage ``keep_ratio`` (at least one sentence always stays); exactly
one of the two is set. The passage score, used when ``rerank``, is its best sentence's cosine.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ragkit.pruners._scoring import ScoringItem, ScoringPruner, SentenceScores
from ragkit.registry import register


@register("pruner", "sentence-similarity")
class SentenceSimilarityPruner(ScoringPruner):
    version = "1"
    selection_params = ("threshold", "keep_ratio", "keep_empty", "rerank")

    def __init__(
        self,
        *,
        model: str = "minilm",
        threshold: float | None = None,
        keep_ratio: float | None = 0.5,
        rerank: bool = False,
        keep_empty: bool = False,
        batch_size: int = 128,
        device: str = "auto",
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

    def _load(self) -> Any:
        if getattr(self, "model_", None) is not None:
            return self.model_
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        from ragkit.retrievers.dense import _device, resolve_model

        target, self.identity_ = resolve_model(self.model)
        try:
            self.model_ = SentenceTransformer(target, device=_device(self.device), local_files_only=True)
        except Exception as exc:
            raise RuntimeError(
                f"sentence-similarity pruner: cannot load embedding model {self.model!r} (from {target!r})"
                " offline; field 'model' takes 'minilm' (packaged), a local folder or a cached hub id."
                f" Cause: {exc}"
            ) from exc
        return self.model_

    def model_identity(self) -> dict[str, Any]:
        from ragkit.retrievers.dense import resolve_model

        return {"weights": resolve_model(self.model)[1]}

    def _encode(self, texts: list[str]) -> np.ndarray:
        return self._load().encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )

    def _score(self, items: Sequence[ScoringItem]) -> list[SentenceScores]:
        model = self._load()
        queries = list(dict.fromkeys(it.query for it in items))
        texts = [f"{it.chunk.title}: {s}" if it.chunk.title else s for it in items for s in it.sentences]
        q_emb = dict(zip(queries, self._encode(queries), strict=True))
        s_emb = self._encode(texts) if texts else np.zeros((0, 1), dtype=np.float32)
        lengths = [len(x) for x in model.tokenizer(texts, truncation=True)["input_ids"]] if texts else []
        q_len = {q: len(x) for q, x in zip(queries, model.tokenizer(queries)["input_ids"], strict=True)}
        out, start = [], 0
        for it in items:
            n = len(it.sentences)
            sims = (s_emb[start : start + n] @ q_emb[it.query]).astype(float).tolist()
            tokens = sum(lengths[start : start + n]) + q_len[it.query] * n
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
