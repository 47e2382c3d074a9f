"""Cross-encoder reranking with sentence-transformers ``CrossEncoder`` (ms-marco-MiniLM, bge-reranker...).

``model`` is a local folder or a hub id already in the local Hugging Face cache; ragkit never
downloads at run time, and a model that cannot be loaded offline fails with its name and what to
do. Each (query, passage) score is cached (in the run's cache) by the model's identity, the query and
the passage text, so a sweep over k, pruners or generators scores each pair once. ``aux_tokens_``
counts the tokens the model reads (the cache is an experiment shortcut, so cached pairs count too).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragkit.cache import Cache, cache_key
from ragkit.constraints import Count, Device, Tokens
from ragkit.registry import register
from ragkit.rerankers.base import Reranker
from ragkit.retrievers._common import indexed_text
from ragkit.types import AuxUse, Batch, Scored

if TYPE_CHECKING:
    from ragkit.generators.base import Generator

CACHE_STAGE = "reranker-scores"


def model_identity(model: str) -> dict[str, Any]:
    """A local folder by path and file sizes (a model replaced in place gets new keys), else the id."""
    path = Path(model).expanduser()
    if path.is_dir():
        files = {p.name: p.stat().st_size for p in sorted(path.iterdir()) if p.is_file()}
        return {"path": str(path.resolve()), "files": files}
    return {"hub_id": model}


def cached_rerank(
    cache: Cache,
    identity: Any,
    queries: Sequence[str],
    candidates: Sequence[Sequence[Scored]],
    score: Callable[[list[tuple[str, str]]], list[tuple[float, int]]],
) -> tuple[list[list[Scored]], list[AuxUse]]:
    """Re-score every (query, candidate) through the cache; ``score`` gets the missing pairs and
    returns (score, tokens read) for each. Returns the candidates sorted best first (ties by
    position) and, per query, the tokens read and seconds taken for its pairs. Each cache entry
    keeps its pair's share of the measured time, so a cached pair costs what it cost when scored;
    an entry from before seconds were stored is recomputed rather than charged zero seconds."""
    pairs = [(q, indexed_text(s.chunk)) for q, cands in zip(queries, candidates, strict=True) for s in cands]
    keys = [cache_key(CACHE_STAGE, identity, q, text) for q, text in pairs]
    found = {key: v for key, v in cache.get_many(CACHE_STAGE, keys).items() if len(v) == 3}
    first: dict[str, int] = {}
    for i, key in enumerate(keys):
        first.setdefault(key, i)
    missing = [key for key in first if key not in found]
    if missing:
        started = time.perf_counter()
        fresh = score([pairs[first[key]] for key in missing])
        each = (time.perf_counter() - started) / len(missing)
        new = {key: [float(s), int(t), each] for key, (s, t) in zip(missing, fresh, strict=True)}
        cache.put_many(CACHE_STAGE, new)
        found.update(new)
    values = iter(found[key] for key in keys)
    out, use = [], []
    for cands in candidates:
        rescored, spent = [], AuxUse()
        for scored in cands:
            value, read, seconds = next(values)
            spent.tokens += read
            spent.seconds += seconds
            rescored.append(Scored(scored.chunk, value))
        out.append(sorted(rescored, key=lambda s: (-s.score, s.chunk.position)))
        use.append(spent)
    return out, use


@register("reranker", "cross-encoder")
class CrossEncoderReranker(Reranker):
    version = "1"
    aux_tokens_: int = 0

    def __init__(
        self, *, model: str, batch_size: Count = 32, max_length: Tokens = 512, device: Device = "auto"
    ) -> None:
        self.model = model
        self.batch_size = batch_size
        self.max_length = max_length
        self.device = device

    def spec(self) -> dict[str, Any]:
        spec = super().spec()  # batch size and device change speed, not scores
        spec.pop("batch_size")
        spec.pop("device")
        return spec

    def _load(self) -> Any:
        if getattr(self, "model_", None) is not None:
            return self.model_
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import CrossEncoder

        from ragkit.pruners._lite_model import resolve_device

        try:
            self.model_ = CrossEncoder(
                self.model,
                device=resolve_device(self.device),
                max_length=self.max_length,
                local_files_only=True,
            )
        except Exception as exc:  # OSError, ValueError, HF errors...
            raise RuntimeError(
                f"cross-encoder reranker: cannot load model {self.model!r} offline (field 'model'). ragkit"
                " never downloads at run time: download it once where you have internet"
                f" (huggingface-cli download {self.model}) or give a local folder of a"
                " sentence-transformers CrossEncoder. For an offline reranker use 'bi-encoder'."
                f" Cause: {type(exc).__name__}: {exc}"
            ) from exc
        return self.model_

    def _score(self, pairs: list[tuple[str, str]]) -> list[tuple[float, int]]:
        model = self._load()
        scores = model.predict(
            pairs, batch_size=self.batch_size, show_progress_bar=False, convert_to_numpy=True
        )
        encoded = model.tokenizer(
            [q for q, _ in pairs], [t for _, t in pairs], truncation=True, max_length=self.max_length
        )
        return [
            (float(s), len(ids))
            for s, ids in zip(scores.reshape(len(pairs), -1)[:, 0], encoded["input_ids"], strict=True)
        ]

    def rerank(
        self,
        queries: Sequence[str],
        candidates: Sequence[Sequence[Scored]],
        *,
        generator: Generator | None = None,
    ) -> list[list[Scored]]:
        identity = {**self.spec(), "model": model_identity(self.model)}
        out, use = cached_rerank(self.stage_cache(), identity, queries, candidates, self._score)
        self.aux_tokens_ += sum(u.tokens for u in use)
        return Batch(out, use)
