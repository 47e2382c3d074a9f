"""Building contexts: chunking the corpus, retrieving for a batch, packing into a token budget.

Shared by the RAG-family strategies (rag, drag, iterdrag, route) so they differ only in how they
call the generator.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ragkit.budget import BudgetError
from ragkit.generators.base import Generator, Message
from ragkit.rerankers.base import Reranker
from ragkit.strategies.prompts import format_chunk
from ragkit.types import AuxUse, Chunk, Context, Corpus, Document, Evidence, Example, Scored, split_evenly


def default_chunker():
    from ragkit.registry import build  # lazy: the registry imports strategy modules

    return build("chunker", "passage")


class CorpusBuilder:
    """Chunks per-example documents (every question) or the shared corpus (once per run)."""

    def __init__(self, chunker=None) -> None:
        self.chunker = chunker
        self._shared: tuple[int, Corpus] | None = None

    def _chunker(self):
        if self.chunker is None:
            self.chunker = default_chunker()
        return self.chunker

    def for_example(self, example: Example, shared: Sequence[Document] | None) -> Corpus:
        if example.documents:
            return Corpus.from_chunks(self._chunker().chunk(example.documents))
        if shared is None:
            raise ValueError(f"example {example.id!r} has no documents and the dataset has no shared corpus")
        if self._shared is None or self._shared[0] != id(shared):
            self._shared = (id(shared), Corpus.from_chunks(self._chunker().chunk(shared)))
        return self._shared[1]


def retrieval_depth(k: int, reranker: Reranker | None, rerank_depth: int | None) -> int:
    """How many candidates to retrieve: ``rerank_depth`` (at least ``k``) when a reranker will
    choose the best ``k`` of them, else ``k``."""
    return max(k, rerank_depth or 0) if reranker is not None else k


def retrieve_batch(
    retriever,
    queries: Sequence[str],
    corpora: Sequence[Corpus],
    k: int,
    evidence: Sequence[Sequence[Evidence]],
    seconds_out: list[float] | None = None,
) -> tuple[list[list[Scored]], list[int]]:
    """Top-k per query; one batched call per distinct corpus (a shared corpus is one call).
    Returns the results and the auxiliary tokens each query cost, and fills ``seconds_out`` with the
    seconds each query cost (shared equally inside a batched call; a cached retriever reports the
    cost of the original computation, so costs do not depend on what ran before)."""
    results: list[list[Scored] | None] = [None] * len(queries)
    aux = [0] * len(queries)
    seconds = [0.0] * len(queries)
    groups: dict[str, list[int]] = {}
    for i, corpus in enumerate(corpora):
        groups.setdefault(corpus.key, []).append(i)
    for indices in groups.values():
        before = getattr(retriever, "aux_tokens_", 0)
        before_s = getattr(retriever, "aux_seconds_", None)
        if before_s is None:  # timed here: load first (a cached retriever warms up only on a miss)
            retriever.warm_up()
        started = time.perf_counter()
        found = retriever.retrieve(
            [queries[i] for i in indices],
            corpora[indices[0]],
            k,
            evidence=[evidence[i] for i in indices],
        )
        took = time.perf_counter() - started if before_s is None else retriever.aux_seconds_ - before_s
        spent = getattr(retriever, "aux_tokens_", 0) - before
        for i, hits, share in zip(indices, found, split_evenly(spent, len(indices)), strict=True):
            results[i] = hits
            aux[i] = share
            seconds[i] = took / len(indices)
    if seconds_out is not None:
        seconds_out[:] = seconds
    return [r or [] for r in results], aux


def aux_use(component: Any, n: int) -> list[AuxUse]:
    """Per-query tokens and seconds of a reranker's or pruner's last call over ``n`` queries
    (zeros for one that runs no model)."""
    use = list(getattr(component, "last_use_", ()))
    if use and len(use) != n:
        raise RuntimeError(f"{type(component).__name__}.last_use_ has {len(use)} entries for {n} queries")
    return use or [AuxUse() for _ in range(n)]


def aux_seconds(provenance: dict[str, Any]) -> float:
    """Seconds the auxiliary stages (retrieval, reranking, pruning) spent on one question."""
    return sum(provenance.get(name, 0.0) for name in ("retrieval_seconds", "rerank_seconds", "prune_seconds"))


def evidence_in(evidence: Sequence[Evidence], texts: Sequence[str]) -> float | None:
    """Fraction of gold evidence sentences found verbatim in any of ``texts`` (None: no evidence)."""
    if not evidence:
        return None
    joined = "\n".join(texts)
    normal = " ".join(joined.split())
    found = sum(1 for e in evidence if " ".join(e.text.split()) in normal)
    return found / len(evidence)


@dataclass
class Packed:
    context: Context
    messages: list[Message]
    prompt_tokens: int


def pack(
    generator: Generator,
    selected: Sequence[Scored],
    make_messages: Callable[[str], list[Message]],
    limit: int,
    *,
    order: Callable[[Sequence[Scored]], list[Scored]],
    evidence: Sequence[Evidence] = (),
) -> Packed:
    """Fit the best passages into ``limit`` prompt tokens, then order them for presentation.

    Passages are admitted by score (best first) while the whole prompt stays within the limit; the
    first one that does not fit is cut to the room left (its tail dropped) and the rest are dropped.
    Every dropped token is counted. Token counts are exact: the final prompt is re-counted with the
    generator's tokenizer and trimmed if joining changed the count.
    """
    overhead = generator.prompt_tokens(make_messages(""))
    room = limit - overhead
    if room <= 0:
        raise BudgetError(
            f"the prompt without documents already takes {overhead} tokens, more than the limit {limit}"
        )
    tokenizer = generator.tokenizer
    admitted: list[Scored] = []
    texts: dict[str, str] = {}
    dropped = 0
    used = 0
    for item in sorted(selected, key=lambda s: (-s.score, s.chunk.position)):
        block_tokens = len(tokenizer.encode(format_chunk(len(admitted) + 1, item.chunk))) + 2
        if used + block_tokens <= room:
            admitted.append(item)
            texts[item.chunk.id] = item.chunk.text
            used += block_tokens
            continue
        body_ids = tokenizer.encode(item.chunk.text)
        keep = room - used - (block_tokens - len(body_ids))
        if keep >= 16:  # a passage cut to a few tokens is noise; drop it whole instead
            admitted.append(item)
            texts[item.chunk.id] = tokenizer.decode(body_ids[:keep])
            dropped += len(body_ids) - keep
            used = room
        else:
            dropped += len(body_ids)
    ordered = order(admitted)
    for _ in range(8):  # joins can merge or split tokens at the boundaries: trim to the exact limit
        documents = "\n\n".join(
            format_chunk(i + 1, s.chunk, texts[s.chunk.id]) for i, s in enumerate(ordered)
        )
        messages = make_messages(documents)
        total = generator.prompt_tokens(messages)
        if total <= limit or not ordered:
            break
        last = max(ordered, key=lambda s: (-s.score, s.chunk.position))  # the weakest passage
        ids = tokenizer.encode(texts[last.chunk.id])
        cut = min(len(ids), total - limit + 1)
        texts[last.chunk.id] = tokenizer.decode(ids[: len(ids) - cut])
        dropped += cut
    context = Context(
        chunks=ordered,
        text=documents,
        tokens=total - overhead,
        dropped_tokens=dropped,
        gold_survived=None if not evidence else evidence_in(evidence, [documents]) == 1.0,
    )
    return Packed(context=context, messages=messages, prompt_tokens=total)


def chunks_of(items: Sequence[Scored]) -> list[Chunk]:
    return [s.chunk for s in items]
