"""RAG: retrieve, (rerank), (prune), order, pack into a token budget, generate.

One generator call per question, so the effective context length is the prompt length. The
retriever fetches ``rerank_depth`` candidates when a reranker is set (else ``k``); the best ``k``
go on to pruning and packing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ragkit.constraints import Count, NonNegativeInt, Tokens
from ragkit.data.chunking import Chunker
from ragkit.generators.base import Generator
from ragkit.pruners.base import Pruner
from ragkit.registry import register
from ragkit.rerankers.base import Reranker
from ragkit.rerankers.order import ORDERS, Order
from ragkit.retrievers.base import Retriever
from ragkit.strategies._common import answer_once
from ragkit.strategies.base import Strategy
from ragkit.strategies.context import (
    CorpusBuilder,
    Packed,
    aux_seconds,
    aux_use,
    evidence_in,
    pack,
    retrieval_depth,
    retrieve_batch,
)
from ragkit.strategies.prompts import question_messages
from ragkit.types import Cost, Document, Example, Prediction, Scored


@register("strategy", "rag")
class RAG(Strategy):
    version = "1"

    def __init__(
        self,
        *,
        retriever: Retriever,
        k: NonNegativeInt = 5,  # 0: closed book (an inference-scaling point)
        reranker: Reranker | None = None,
        rerank_depth: Count | None = None,
        pruner: Pruner | None = None,
        order: Order = "score",
        budget: Tokens | None = None,
        chunker: Chunker | None = None,
        abstain: bool = False,
        max_new_tokens: Tokens | None = None,
    ) -> None:
        self.retriever = retriever
        self.k = k
        self.reranker = reranker
        self.rerank_depth = rerank_depth
        self.pruner = pruner
        self.order = order
        self.budget = budget
        self.chunker = chunker
        self.abstain = abstain
        self.max_new_tokens = max_new_tokens
        self._corpora = CorpusBuilder(chunker)

    def retrieval_depth(self) -> int:
        """How many candidates the retriever is asked for (what a shared retrieval cache needs)."""
        return retrieval_depth(self.k, self.reranker, self.rerank_depth)

    def _limit(self, generator: Generator) -> int:
        window_limit = generator.input_limit(self.max_new_tokens)
        return window_limit if self.budget is None else min(self.budget, window_limit)

    def select(
        self, examples: Sequence[Example], generator: Generator, corpus: Sequence[Document] | None
    ) -> list[tuple[list[Scored], dict[str, Any], int]]:
        """Retrieve, rerank and prune for a batch: the passages to pack, provenance, aux tokens."""
        questions = [e.question for e in examples]
        evidence = [e.evidence for e in examples]
        corpora = [self._corpora.for_example(e, corpus) for e in examples]
        seconds: list[float] = []
        hits, aux = retrieve_batch(
            self.retriever, questions, corpora, self.retrieval_depth(), evidence, seconds_out=seconds
        )
        provenance: list[dict[str, Any]] = [
            {"retrieved": [[s.chunk.id, round(s.score, 6)] for s in h], "retrieval_seconds": t}
            for h, t in zip(hits, seconds, strict=True)
        ]
        if self.reranker is not None:
            hits = self.reranker.rerank(questions, hits)
            use = aux_use(self.reranker, len(examples))
            aux = [a + u.tokens for a, u in zip(aux, use, strict=True)]
            for p, h, u in zip(provenance, hits, use, strict=True):
                p["reranked"] = [[s.chunk.id, round(s.score, 6)] for s in h]
                p["rerank_seconds"] = u.seconds
        selected = [h[: self.k] for h in hits]
        for p, sel, ev in zip(provenance, selected, evidence, strict=True):
            p["evidence_recall"] = evidence_in(ev, [s.chunk.text for s in sel])
        if self.pruner is not None:
            count = generator.count_tokens
            before_tokens = [sum(count(s.chunk.text) for s in sel) for sel in selected]
            selected = self.pruner.prune(questions, selected, evidence=evidence)
            use = aux_use(self.pruner, len(examples))
            aux = [a + u.tokens for a, u in zip(aux, use, strict=True)]
            for p, sel, ev, b, u in zip(provenance, selected, evidence, before_tokens, use, strict=True):
                after = sum(count(s.chunk.text) for s in sel)
                p.update(
                    prune_seconds=u.seconds,
                    tokens_before_pruning=b,
                    tokens_after_pruning=after,
                    compression=(1 - after / b) if b else 0.0,
                    evidence_after_pruning=evidence_in(ev, [s.chunk.text for s in sel]),
                )
        return list(zip(selected, provenance, aux, strict=True))

    def contexts(
        self, examples: Sequence[Example], generator: Generator, corpus: Sequence[Document] | None
    ) -> list[tuple[Packed, dict[str, Any], int]]:
        limit = self._limit(generator)
        out = []
        for example, (selected, provenance, aux) in zip(
            examples, self.select(examples, generator, corpus), strict=True
        ):
            packed, info = self._pack_question(generator, example, selected, limit)
            provenance.update(info)
            provenance.update(
                context_ids=[s.chunk.id for s in packed.context.chunks],
                context_tokens=packed.context.tokens,
                dropped_tokens=packed.context.dropped_tokens,
                gold_survived=packed.context.gold_survived,
            )
            out.append((packed, provenance, aux))
        return out

    def _pack_question(
        self, generator: Generator, example: Example, selected: list[Scored], limit: int
    ) -> tuple[Packed, dict[str, Any]]:
        """One question's prompt within ``limit`` tokens, and what to add to its provenance
        (DRAG overrides this to put demonstrations in front)."""
        packed = pack(
            generator,
            selected,
            lambda docs: question_messages(example.question, docs, abstain=self.abstain),
            limit,
            order=ORDERS[self.order],
            evidence=example.evidence,
        )
        return packed, {}

    def run(
        self,
        examples: Sequence[Example],
        generator: Generator,
        corpus: Sequence[Document] | None = None,
    ) -> list[Prediction]:
        prepared = self.contexts(examples, generator, corpus)
        predictions = answer_once(
            generator,
            examples,
            [packed.messages for packed, _, _ in prepared],
            [provenance for _, provenance, _ in prepared],
            self.max_new_tokens,
        )
        for prediction, (_, provenance, aux) in zip(predictions, prepared, strict=True):
            prediction.cost.aux_tokens += aux
            prediction.cost.aux_seconds += aux_seconds(provenance)
        return predictions

    def estimate(
        self,
        examples: Sequence[Example],
        generator: Generator,
        corpus: Sequence[Document] | None = None,
    ) -> list[Cost]:
        max_new = self.max_new_tokens or generator.max_new_tokens
        return [
            Cost(
                input_tokens=p.prompt_tokens,
                output_tokens=max_new,
                calls=1,
                aux_tokens=aux,
                aux_seconds=aux_seconds(provenance),
            )
            for p, provenance, aux in self.contexts(examples, generator, corpus)
        ]
