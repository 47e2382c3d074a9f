"""Bi-encoder re-scoring: cosine between question and passage embeddings (offline baseline).

The default model is the packaged all-MiniLM-L6-v2, so it needs no download; any local
sentence-transformers folder or cached hub id works too. Useful after BM25 (a dense second opinion)
and as the offline stand-in for a cross-encoder. Scores are cached like the cross-encoder's.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ragkit.registry import register
from ragkit.rerankers.base import Reranker
from ragkit.rerankers.cross_encoder import cached_rerank
from ragkit.types import Scored


@register("reranker", "bi-encoder")
class BiEncoderReranker(Reranker):
    version = "1"
    aux_tokens_: int = 0

    def __init__(self, *, model: str = "minilm", batch_size: int = 64, device: str = "auto") -> None:
        self.model = model
        self.batch_size = batch_size
        self.device = device

    def spec(self) -> dict[str, Any]:
        spec = super().spec()
        spec.pop("batch_size")
        spec.pop("device")
        return spec

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
                f"bi-encoder reranker: cannot load embedding model {self.model!r} (from {target!r}) offline;"
                " field 'model' takes 'minilm' (packaged), a local folder or a cached hub id."
                f" Cause: {type(exc).__name__}: {exc}"
            ) from exc
        return self.model_

    def _encode(self, texts: list[str]) -> np.ndarray:
        return self._load().encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )

    def _score(self, pairs: list[tuple[str, str]]) -> list[tuple[float, int]]:
        model = self._load()
        queries = list(dict.fromkeys(q for q, _ in pairs))
        q_emb = dict(zip(queries, self._encode(queries), strict=True))
        p_emb = self._encode([t for _, t in pairs])
        q_len = {q: len(ids) for q, ids in zip(queries, model.tokenizer(queries)["input_ids"], strict=True)}
        p_len = [len(ids) for ids in model.tokenizer([t for _, t in pairs], truncation=True)["input_ids"]]
        return [(float(p_emb[i] @ q_emb[q]), q_len[q] + p_len[i]) for i, (q, _) in enumerate(pairs)]

    def rerank(self, queries: Sequence[str], candidates: Sequence[Sequence[Scored]]) -> list[list[Scored]]:
        self._load()
        identity = {**self.spec(), "weights": self.identity_}
        out, tokens = cached_rerank(identity, queries, candidates, self._score)
        self.aux_tokens_ += tokens
        return out
