"""A sentence-transformers bi-encoder: loaded offline (dense retrieval, the bi-encoder reranker
and the sentence-similarity pruner), and texts embedded unit-norm with the tokens it reads counted
(the reranker and the pruner, which only differ in what they score: passages or sentences).

Not a component module (the leading underscore keeps registry discovery away from it).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


def load_embedder(model: str, device: str, who: str) -> tuple[Any, dict[str, Any]]:
    """The ``SentenceTransformer`` for ``model`` (never downloaded) and its identity for cache
    keys; ``who`` names the component in the error raised when it cannot be loaded offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may download from a model hub
    from sentence_transformers import SentenceTransformer

    from ragkit.retrievers.dense import _device, resolve_model

    target, identity = resolve_model(model)
    try:
        loaded = SentenceTransformer(target, device=_device(device), local_files_only=True)
    except Exception as exc:  # the library raises OSError, ValueError, HF errors...
        raise RuntimeError(
            f"{who}: cannot load embedding model {model!r} (from {target!r}) offline."
            " Give field 'model' as 'minilm' (the packaged all-MiniLM-L6-v2), a local folder of a"
            " sentence-transformers model, or a hub id already in the local HF cache."
            f" Cause: {type(exc).__name__}: {exc}"
        ) from exc
    return loaded, identity


@dataclass
class Embedded:
    queries: dict[str, np.ndarray]  # distinct query -> its embedding
    texts: np.ndarray  # (len(texts), dim); (0, 1) when there are no texts
    query_tokens: dict[str, int]
    text_tokens: list[int]


def embed(model: Any, queries: Sequence[str], texts: Sequence[str], batch_size: int) -> Embedded:
    """Unit-norm embeddings of the distinct ``queries`` and of ``texts`` (dot products are cosines),
    and the tokens the model reads for each, truncated where the model truncates its input
    (``max_seq_length``, 256 for all-MiniLM-L6-v2, not the tokenizer's own 512 limit)."""
    distinct = list(dict.fromkeys(queries))

    def encode(items: list[str]) -> np.ndarray:
        return model.encode(
            items,
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )

    texts = list(texts)
    limit = getattr(model, "max_seq_length", None)

    def count(items: list[str]) -> list[int]:
        if not items:  # the tokenizer fails on an empty batch
            return []
        return [len(ids) for ids in model.tokenizer(items, truncation=True, max_length=limit)["input_ids"]]

    embedded = Embedded(
        queries=dict(zip(distinct, encode(distinct), strict=True)) if distinct else {},
        texts=np.zeros((0, 1), dtype=np.float32),
        query_tokens=dict(zip(distinct, count(distinct), strict=True)),
        text_tokens=[],
    )
    if texts:
        embedded.texts = encode(texts)
        embedded.text_tokens = count(texts)
    return embedded
