"""DRAG: demonstration-based RAG ("Inference Scaling for Long-Context Retrieval Augmented
Generation", Yue et al., ICLR 2025, arXiv 2410.04343, §3.2 and Fig. 2).

The prompt holds ``m`` in-context examples, each a question with *its own* retrieved documents and
its answer, followed by the test question with its ``k`` retrieved documents. Demonstrations come
from a separate pool (``demonstrations``, e.g. ``{use: hotpotqa-distractor, partition: train}``:
ragkit's hash partition keeps it disjoint from ``eval`` test questions; a demonstration with the
test question's id is skipped all the same). They are the same for every test question: the
first ``m`` of the pool in a seeded hash order, so the demonstrations of ``m = 1`` are a prefix of
those of ``m = 2``. Each demonstration retrieves ``demo_k`` (default ``k``) documents from its own
documents, so the effective context grows like ``(m + 1) * k``.

Chat layout: the system prompt of RAG, then per demonstration a user turn in exactly RAG's
question format and an assistant turn with the gold answer, then the test question's user turn.
With ``m = 0`` the prompt is byte-identical to :class:`~ragkit.strategies.rag.RAG`'s (the same
generation cache entries), and ``k = 0`` gives closed-book (0-shot or m-shot) QA, which the
allocation model's informativeness needs.

Budget (``budget``: effective context tokens per question; the window always applies): when the
prompt with every demonstration and every retrieved passage is too long, the weakest documents of
the demonstrations go first (the demonstration with the most documents loses one, down to one
each), then whole demonstrations (the last first), and only then are the test question's passages
cut by RAG's exact packer. Provenance records each step.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from ragkit.constraints import NonNegativeInt, Seed, Tokens
from ragkit.data.base import DatasetLoader
from ragkit.generators.base import Generator, Message
from ragkit.registry import register
from ragkit.strategies.base import Record
from ragkit.strategies.context import CorpusBuilder, Packed, chunks_of, pack
from ragkit.strategies.prompts import format_documents, question_messages
from ragkit.strategies.rag import RAG
from ragkit.strategies.retrieval import Retrieval
from ragkit.types import Corpus, Document, Evidence, Example, Scored, stable_hash

log = logging.getLogger(__name__)


@dataclass
class Demo:
    """One in-context example: a pool question, its retrieved documents (best first), its answer,
    and for IterDRAG the follow-up steps (sub-query, intermediate answer, retrieved documents)."""

    example: Example
    hits: list[Scored]
    steps: list[tuple[str, str, list[Scored]]] = field(default_factory=list)

    @property
    def answer(self) -> str:
        return self.example.answers[0] if self.example.answers else ""


@register("strategy", "drag")
class DRAG(RAG):
    version = "1"
    theta: ClassVar = {"k": "strategy.retrieval.k", "m": "strategy.m"}

    def __init__(
        self,
        *,
        retrieval: Retrieval,
        m: NonNegativeInt = 2,
        demonstrations: DatasetLoader | None = None,
        demo_k: NonNegativeInt | None = None,
        seed: Seed = 0,
        budget: Tokens | None = None,
        abstain: bool = False,
        max_new_tokens: Tokens | None = None,
    ) -> None:
        super().__init__(retrieval=retrieval, budget=budget, abstain=abstain, max_new_tokens=max_new_tokens)
        self.m = m
        self.demonstrations = demonstrations
        self.demo_k = demo_k
        self.seed = seed

    # -- demonstrations ------------------------------------------------------------------------
    def _check(self) -> None:
        name = self.registry_name
        k = self.retrieval.k
        if k < 0 or self.m < 0 or (self.demo_k is not None and self.demo_k < 0):
            raise ValueError(f"{name}: k, m and demo_k must be >= 0 (got k={k}, m={self.m})")
        if self.m > 0 and self.demonstrations is None:
            raise ValueError(
                f"{name}: m={self.m} needs a demonstration pool: set 'demonstrations', e.g. "
                "{use: hotpotqa-distractor, partition: train}"
            )

    def demos(self, generator: Generator) -> list[Demo]:
        """The first ``m + 1`` pool examples in seeded order with their documents (one spare for
        a test question that is itself in the pool). Loaded and retrieved once per instance."""
        self._check()
        if self.m == 0:
            return []
        cached = getattr(self, "demos_", None)
        if cached is not None:
            return cached
        assert self.demonstrations is not None
        if getattr(self.demonstrations, "partition", "train") != "train":
            log.warning(
                "%s: the demonstration pool is partition %r, not 'train': demonstrations may overlap "
                "test questions of other runs",
                self.registry_name,
                self.demonstrations.partition,
            )
        loaded = self.demonstrations.load()
        ranked = sorted(loaded.examples, key=lambda e: stable_hash([self.seed, e.id]))
        chosen = [e for e in ranked if e.answers][: self.m + 1]
        if len(chosen) < self.m:
            raise ValueError(
                f"{self.registry_name}: m={self.m} but the demonstration pool has only {len(chosen)}"
                " examples with answers"
            )
        builder = CorpusBuilder(self.retrieval.chunker)
        corpora = [builder.for_example(e, loaded.corpus) for e in chosen]
        hits = self._demo_documents([e.question for e in chosen], corpora, [e.evidence for e in chosen])
        self.demos_ = [Demo(e, h) for e, h in zip(chosen, hits, strict=True)]
        self._prepare_demos(self.demos_, corpora)
        return self.demos_

    def _demo_documents(
        self, queries: Sequence[str], corpora: Sequence[Corpus], evidence: Sequence[Sequence[Evidence]]
    ) -> list[list[Scored]]:
        """``demo_k`` (default ``k``) documents per demonstration query. Not counted in any
        question's cost: the pool is retrieved once and shared by every question."""
        depth = self.retrieval.k if self.demo_k is None else self.demo_k
        return list(self.retrieval.retrieve(queries, corpora, depth, evidence))

    def _prepare_demos(self, demos: list[Demo], corpora: Sequence[Corpus]) -> None:
        """Hook for subclasses that need more per demonstration (IterDRAG's follow-up steps)."""

    # -- prompt ----------------------------------------------------------------------------------
    def _block(self, hits: Sequence[Scored]) -> str:
        return format_documents(chunks_of(self.retrieval.ordered(hits)))

    def demo_turns(self, demo: Demo, n_docs: int) -> list[Message]:
        user = question_messages(demo.example.question, self._block(demo.hits[:n_docs]))[-1]["content"]
        return [{"role": "user", "content": user}, {"role": "assistant", "content": demo.answer}]

    def messages(
        self, demos: Sequence[Demo], counts: Sequence[int], question: str, documents: str
    ) -> list[Message]:
        """System prompt, the demonstrations (``counts[i]`` documents each), the test question."""
        base = question_messages(question, documents, abstain=self.abstain)
        turns = [t for demo, c in zip(demos, counts, strict=False) for t in self.demo_turns(demo, c)]
        return [base[0], *turns, *base[1:]]

    def _pack_question(
        self, generator: Generator, record: Record, selected: list[Scored], limit: int
    ) -> Packed:
        """Fit the question's demonstrations (the pool without the question itself) and passages
        into ``limit`` prompt tokens (order in the module doc)."""
        example = record.example
        kept = [d for d in self.demos(generator) if d.example.id != example.id][: self.m]
        counts = [len(d.hits) for d in kept]
        whole = self._block(selected)

        def over() -> bool:
            return generator.prompt_tokens(self.messages(kept, counts, example.question, whole)) > limit

        demo_docs_dropped = demos_dropped = 0
        while kept and over():
            if any(c > 1 for c in counts):
                j = max(range(len(kept)), key=lambda i: (counts[i], i))  # most documents; last on ties
                counts[j] -= 1
                demo_docs_dropped += 1
            else:
                kept.pop()
                counts.pop()
                demos_dropped += 1
        packed = pack(
            generator,
            selected,
            lambda docs: self.messages(kept, counts, example.question, docs),
            limit,
            order=self.retrieval.ordered,
            evidence=example.evidence,
        )
        record.provenance.details.update(demo_ids=[d.example.id for d in kept], demo_documents=list(counts))
        record.provenance.measures.update(
            demos_dropped=demos_dropped, demo_documents_dropped=demo_docs_dropped
        )
        return packed

    def contexts(
        self, records: Sequence[Record], generator: Generator, corpus: Sequence[Document] | None
    ) -> list[Packed]:
        self.demos(generator)  # checks the parameters and retrieves for the pool before the questions
        return super().contexts(records, generator, corpus)
