"""RAG: retrieve, (rerank), (prune), order, pack into a token budget, generate.

One generator call per question, so the effective context length is the prompt length. The
retrieval pipeline is the shared :class:`~ragkit.strategies.retrieval.Retrieval` setting; ``budget``
caps the prompt (the model window always applies). ``citations: true`` asks for bracketed
citations of the numbered passages and records them (:mod:`ragkit.strategies._citing`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from ragkit.constraints import Tokens
from ragkit.generators.base import Generator
from ragkit.registry import register
from ragkit.strategies import _citing
from ragkit.strategies._common import answer_once
from ragkit.strategies.base import Record, Strategy, prompt_limit
from ragkit.strategies.context import Packed, pack
from ragkit.strategies.retrieval import Retrieval
from ragkit.types import Cost, Document, Example, Prediction, Scored


@register("strategy", "rag")
class RAG(Strategy):
    version = "1"
    theta: ClassVar = {"k": "strategy.retrieval.k"}
    family: ClassVar = "drag"  # RAG is DRAG with m = 0 (the paper's DRAG grid starts at m = 0)

    def __init__(
        self,
        *,
        retrieval: Retrieval,
        budget: Tokens | None = None,
        abstain: bool = False,
        max_new_tokens: Tokens | None = None,
        citations: bool = False,
    ) -> None:
        self.retrieval = retrieval
        self.budget = budget
        self.abstain = abstain
        self.max_new_tokens = max_new_tokens
        self.citations = citations

    def retrievers(self) -> list[Retrieval]:
        return [self.retrieval]

    def contexts(
        self, records: Sequence[Record], generator: Generator, corpus: Sequence[Document] | None
    ) -> list[Packed]:
        """Select and pack every question's passages; the records get the stages and context."""
        limit = prompt_limit(generator, self.max_new_tokens, self.budget)
        out = []
        for record, selected in zip(records, self.retrieval.select(records, generator, corpus), strict=True):
            packed = self._pack_question(generator, record, selected, limit)
            record.show(packed.context)
            out.append(packed)
        return out

    def _pack_question(
        self, generator: Generator, record: Record, selected: list[Scored], limit: int
    ) -> Packed:
        """One question's prompt within ``limit`` tokens (DRAG overrides this to put
        demonstrations in front, recording them on the record)."""
        example = record.example
        return pack(
            generator,
            selected,
            lambda docs: _citing.messages(example, docs, abstain=self.abstain, citations=self.citations),
            limit,
            order=self.retrieval.ordered,
            evidence=example.evidence,
        )

    def run(
        self,
        examples: Sequence[Example],
        generator: Generator,
        corpus: Sequence[Document] | None = None,
    ) -> list[Prediction]:
        records = [Record(e) for e in examples]
        prepared = self.contexts(records, generator, corpus)
        predictions = answer_once(generator, records, [p.messages for p in prepared], self.max_new_tokens)
        if not self.citations:
            return predictions
        shown = [[s.chunk for s in p.context.chunks] for p in prepared]
        return _citing.finish(predictions, records, shown)

    def estimate(
        self,
        examples: Sequence[Example],
        generator: Generator,
        corpus: Sequence[Document] | None = None,
    ) -> list[Cost]:
        max_new = self.max_new_tokens or generator.max_new_tokens
        records = [Record(e) for e in examples]
        prepared = self.contexts(records, generator, corpus)
        return [
            r.cost + Cost(input_tokens=p.prompt_tokens, output_tokens=max_new, calls=1)
            for r, p in zip(records, prepared, strict=True)
        ]
