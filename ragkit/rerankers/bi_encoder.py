"""Bi-encoder re-scoring: cosine between question and passage embeddings (offline baseline).

The default model is the packaged all-MiniLM-L6-v2, so it needs no download; any local
sentence-transformers folder or cached hub id works too. Useful after BM25 (a dense second opinion)
and as the offline stand-in for a cross-encoder. Scores are cached like the cross-encoder's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ragkit.constraints import Count, Device
from ragkit.registry import register
from ragkit.rerankers.base import Reranker
from ragkit.rerankers.cross_encoder import cached_rerank
from ragkit.retrievers._embedder import embed, load_embedder
from ragkit.types import Batch, Scored

if TYPE_CHECKING:
    from ragkit.generators.base import Generator


@register("reranker", "bi-encoder")
class BiEncoderReranker(Reranker):
    version = "1"
    aux_tokens_: int = 0

    def __init__(self, *, model: str = "minilm", batch_size: Count = 64, device: Device = "auto") -> None:
        self.model = model
        self.batch_size = batch_size
        self.device = device

    def spec(self) -> dict[str, Any]:
        spec = super().spec()
        spec.pop("batch_size")
        spec.pop("device")
        return spec

    def _load(self) -> Any:
        if getattr(self, "model_", None) is None:
            self.model_, self.identity_ = load_embedder(self.model, self.device, "bi-encoder reranker")
        return self.model_

    def _score(self, pairs: list[tuple[str, str]]) -> list[tuple[float, int]]:
        emb = embed(self._load(), [q for q, _ in pairs], [t for _, t in pairs], self.batch_size)
        return [
            (float(emb.texts[i] @ emb.queries[q]), emb.query_tokens[q] + emb.text_tokens[i])
            for i, (q, _) in enumerate(pairs)
        ]

    def rerank(
        self,
        queries: Sequence[str],
        candidates: Sequence[Sequence[Scored]],
        *,
        generator: Generator | None = None,
    ) -> list[list[Scored]]:
        self._load()
        identity = {**self.spec(), "weights": self.identity_}
        out, use = cached_rerank(self.stage_cache(), identity, queries, candidates, self._score)
        self.aux_tokens_ += sum(u.tokens for u in use)
        return Batch(out, use)
