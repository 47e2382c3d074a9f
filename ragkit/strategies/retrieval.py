"""The retrieval settings every RAG-like strategy shares, as one nested setting.

In a YAML it is the arm's ``retrieval:`` mapping (swept like any field; a YAML anchor reuses it
across arms)::

    - strategy: drag
      retrieval: {retriever: bm25, k: [1, 2, 4], reranker: ms-marco-minilm, rerank_depth: 20}
      m: 2
      budget: 4096

The older flat form (``retriever:`` and ``k:`` directly in the arm) is read as the same thing
(:func:`ragkit.config.lift_settings`). The question's ``budget`` stays on the strategy: it caps
the effective context of all of a question's generator calls, whatever fills them.

:meth:`Retrieval.select` is the pipeline: retrieve ``depth()`` candidates (``rerank_depth`` when
a reranker will choose the best ``k`` of them, else ``k``), rerank, keep ``k``, prune. Each stage's
cost is what its call returned (:class:`~ragkit.types.Batch` ``use``) and is recorded per question
with the chunk ids it passed on; ``order`` is how the kept passages are presented.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from ragkit.component import Settings
from ragkit.constraints import Count, NonNegativeInt
from ragkit.data.chunking import Chunker
from ragkit.generators.base import Generator
from ragkit.pruners.base import Pruner
from ragkit.rerankers.base import Reranker
from ragkit.rerankers.order import ORDERS, Order
from ragkit.retrievers.base import Retriever
from ragkit.strategies.base import Record
from ragkit.strategies.context import CorpusBuilder, evidence_in
from ragkit.types import AuxUse, Batch, Corpus, Document, Evidence, Example, Scored, uses


class Retrieval(Settings):
    def __init__(
        self,
        *,
        retriever: Retriever,
        k: NonNegativeInt = 5,  # 0: closed book (an inference-scaling point)
        reranker: Reranker | None = None,
        rerank_depth: Count | None = None,
        pruner: Pruner | None = None,
        chunker: Chunker | None = None,
        order: Order = "score",
    ) -> None:
        self.retriever = retriever
        self.k = k
        self.reranker = reranker
        self.rerank_depth = rerank_depth
        self.pruner = pruner
        self.chunker = chunker
        self.order = order

    def depth(self, k: int | None = None) -> int:
        """How many candidates the retriever is asked for to keep ``k`` (default: this setting's):
        ``rerank_depth`` (at least ``k``) when a reranker will choose the best ``k``, else ``k``."""
        k = self.k if k is None else k
        return max(k, self.rerank_depth or 0) if self.reranker is not None else k

    def ordered(self, items: Sequence[Scored]) -> list[Scored]:
        return ORDERS[self.order](list(items))

    def corpus(self, example: Example, shared: Sequence[Document] | None) -> Corpus:
        """The chunks one question retrieves from: its own documents, or the shared corpus
        (chunked once per instance)."""
        if getattr(self, "corpora_", None) is None:
            self.corpora_ = CorpusBuilder(self.chunker)
        return self.corpora_.for_example(example, shared)

    def retrieve(
        self,
        queries: Sequence[str],
        corpora: Sequence[Corpus],
        k: int,
        evidence: Sequence[Sequence[Evidence]],
    ) -> Batch:
        """Top-``k`` per query, one batched call per distinct corpus (a shared corpus is one call),
        with what each query cost: the tokens the call returned for it, and the seconds it
        returned (a cached retriever: those of the original computation, so costs do not depend on
        what ran before) or else the measured time of the call shared equally."""
        results: list[list[Scored]] = [[] for _ in queries]
        use = [AuxUse() for _ in queries]
        groups: dict[str, list[int]] = {}
        for i, corpus in enumerate(corpora):
            groups.setdefault(corpus.key, []).append(i)
        for indices in groups.values():
            self.retriever.warm_up()  # loading a model is start-up, not the questions' time
            started = time.perf_counter()
            found = self.retriever.retrieve(
                [queries[i] for i in indices], corpora[indices[0]], k, evidence=[evidence[i] for i in indices]
            )
            took = (time.perf_counter() - started) / len(indices)
            returned = uses(found)
            timed = any(u.seconds for u in returned)
            for i, hits, spent in zip(indices, found, returned, strict=True):
                results[i] = list(hits)
                use[i] = AuxUse(tokens=spent.tokens, seconds=spent.seconds if timed else took)
        return Batch(results, use)

    def select(
        self,
        records: Sequence[Record],
        generator: Generator,
        corpus: Sequence[Document] | None,
        k: int | None = None,
    ) -> list[list[Scored]]:
        """Retrieve, rerank, keep the best ``k`` (default: this setting's), prune: the passages each
        question's prompt may hold, best first. Every stage is recorded on the question's record
        (ids passed on, tokens, seconds), with ``evidence_recall`` of the kept passages and, after
        pruning, the pruning measures."""
        k = self.k if k is None else k
        examples = [r.example for r in records]
        questions = [e.question for e in examples]
        evidence = [e.evidence for e in examples]
        corpora = [self.corpus(e, corpus) for e in examples]
        hits: list[list[Scored]] = self.retrieve(questions, corpora, self.depth(k), evidence)
        for record, found, spent in zip(records, hits, uses(hits), strict=True):
            record.stage("retrieve", found, spent)
        if self.reranker is not None:
            hits = self.reranker.rerank(questions, hits, generator=generator)
            for record, found, spent in zip(records, hits, uses(hits), strict=True):
                record.stage("rerank", found, spent, generator)
        selected = [list(h[:k]) for h in hits]
        for record, chosen in zip(records, selected, strict=True):
            record.provenance.evidence_recall = evidence_in(
                record.example.evidence, [s.chunk.text for s in chosen]
            )
        if self.pruner is None:
            return selected
        count = generator.count_tokens
        before = [sum(count(s.chunk.text) for s in chosen) for chosen in selected]
        pruned = self.pruner.prune(questions, selected, evidence=evidence)
        for record, kept, spent, b in zip(records, pruned, uses(pruned), before, strict=True):
            record.stage("prune", kept, spent, generator)
            after = sum(count(s.chunk.text) for s in kept)
            record.provenance.measures.update(
                tokens_before_pruning=b,
                tokens_after_pruning=after,
                compression=(1 - after / b) if b else 0.0,
                evidence_after_pruning=evidence_in(record.example.evidence, [s.chunk.text for s in kept]),
            )
        return [list(p) for p in pruned]
