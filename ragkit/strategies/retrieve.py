"""Retrieval only: retrieve (rerank, prune) and score where the gold evidence landed; no answer.

Many studies ask first whether retrieval finds the evidence at each k before paying for
generation (the retrieval half of a RAG-vs-long-context comparison). ``strategy: retrieve`` runs
the shared :class:`~ragkit.strategies.retrieval.Retrieval` setting exactly as RAG does (same
retriever cache, same k, reranker, pruner) and records per question:

- ``evidence_recall`` (recall@k): the share of gold evidence found in the top k passages;
- ``evidence_hit`` (hit@k): whether at least one gold evidence text is in the top k;
- ``mrr`` (MRR@k): 1 / the rank of the first passage holding gold evidence, 0 when none does.

It makes no generator call, so it runs with ``generator: none`` (nothing loads a language model;
token counts use that generator's tokenizer) or with any generator, which it never calls. Answers
are empty and the answer metrics (EM, F1, contains-answer) are not scored: tables lead with
recall@k, hit@k and MRR, each with its interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from ragkit.generators.base import Generator
from ragkit.registry import register
from ragkit.strategies.base import Record, Strategy
from ragkit.strategies.context import evidence_in
from ragkit.strategies.retrieval import Retrieval
from ragkit.types import Cost, Document, Example, Prediction, Scored


def first_gold_rank(example: Example, ranked: Sequence[Scored]) -> int | None:
    """1-based rank of the first passage holding any gold evidence text (None: none does)."""
    for rank, hit in enumerate(ranked, start=1):
        if evidence_in(example.evidence, [hit.chunk.text]):
            return rank
    return None


@register("strategy", "retrieve")
class Retrieve(Strategy):
    version = "1"
    answers: ClassVar = False  # no generator call: the only strategy a non-answering generator runs

    def __init__(self, *, retrieval: Retrieval) -> None:
        self.retrieval = retrieval

    def retrievers(self) -> list[Retrieval]:
        return [self.retrieval]

    def _select(
        self, examples: Sequence[Example], generator: Generator, corpus: Sequence[Document] | None
    ) -> list[Record]:
        records = [Record(e) for e in examples]
        for record, chosen in zip(records, self.retrieval.select(records, generator, corpus), strict=True):
            example = record.example
            provenance = record.provenance
            provenance.context_ids = [s.chunk.id for s in chosen]
            provenance.context_tokens = sum(generator.count_tokens(s.chunk.text) for s in chosen)
            provenance.measures["retrieval_only"] = True
            if example.evidence:
                rank = first_gold_rank(example, chosen)
                provenance.evidence_recall = evidence_in(example.evidence, [s.chunk.text for s in chosen])
                provenance.gold_survived = provenance.evidence_recall == 1.0
                provenance.measures.update(evidence_hit=rank is not None, mrr=1.0 / rank if rank else 0.0)
        return records

    def run(
        self,
        examples: Sequence[Example],
        generator: Generator,
        corpus: Sequence[Document] | None = None,
    ) -> list[Prediction]:
        return [record.prediction("") for record in self._select(examples, generator, corpus)]

    def estimate(
        self,
        examples: Sequence[Example],
        generator: Generator,
        corpus: Sequence[Document] | None = None,
    ) -> list[Cost]:
        """Retrieval's own cost (embedder tokens and seconds); no generator call."""
        return [record.cost for record in self._select(examples, generator, corpus)]
