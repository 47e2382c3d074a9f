"""The strategy contract.

A strategy answers questions: ``run(examples, generator, corpus) -> predictions``, one
:class:`~ragkit.types.Prediction` per example, in order. It composes stages (retriever, reranker,
pruner, generator) that it receives already built (and, in a runner, already wrapped in caches);
it never reaches inside one. What the runner and the analyses need from it is declared, not
discovered:

- ``retrievers()``: the retrieval settings it reads, whose retrievers the runner wraps in one
  shared cache (retrieval runs once per question at the deepest ``k`` of a sweep);
- ``theta``: the allocation model's dimensions its configurations move along (Yue et al., 2024:
  ``k`` documents, ``m`` demonstrations, ``n`` iterations, or others such as ``calls``), each read
  from a result column, and ``family``, whose informativeness its fit uses;
- each prediction's :class:`~ragkit.types.Cost` (every generator call's input tokens summed: the
  effective context length; the auxiliary stages' tokens and seconds as their calls returned them)
  and typed :class:`~ragkit.types.Provenance`, both built through a :class:`Record` so that cost is
  exactly the sum of what was recorded.

``tests/test_strategy_contract.py`` checks every registered strategy against this.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, ClassVar

from ragkit.component import Component
from ragkit.generators.base import Generation, GenerationRequest, Generator
from ragkit.types import AuxUse, Call, Context, Cost, Document, Example, Prediction, Provenance, Scored, Stage

if TYPE_CHECKING:
    from ragkit.strategies.retrieval import Retrieval


class Strategy(Component, ABC):
    # Allocation dimension -> the result column it is read from: a swept parameter
    # ("strategy.retrieval.k") or a per-configuration mean the strategy measures ("workers").
    # Empty: the strategy is ranked by its measured score only (full context, Self-Route).
    theta: ClassVar[Mapping[str, str]] = {}
    # Whose informativeness (i_doc, i_shot) the allocation model gives this strategy's rows; ""
    # means its own registry name. RAG is DRAG with m = 0, so RAG says "drag".
    family: ClassVar[str] = ""
    # False for a strategy that never calls the generator (retrieval only): the only kind an
    # experiment with a non-answering generator (``generator: none``) may run.
    answers: ClassVar[bool] = True
    # Parameters added after configurations were first run, left out of a configuration's identity
    # while at their default (ragkit.config._expand_fields): an old run keeps its folder.
    late_params: ClassVar[frozenset[str]] = frozenset({"citations"})

    def retrievers(self) -> list[Retrieval]:
        """The retrieval settings this strategy reads. The runner replaces each one's
        ``retriever`` with a shared cache that retrieves once at the deepest ``depth()`` any
        configuration asks of it; a strategy that shares a setting with an inner step (Self-Route's
        RAG call) shares the cache with it."""
        return []

    @classmethod
    def allocation_family(cls) -> str:
        return cls.family or cls.registry_name

    @abstractmethod
    def run(
        self,
        examples: Sequence[Example],
        generator: Generator,
        corpus: Sequence[Document] | None = None,
    ) -> list[Prediction]:
        """Answer every example. ``corpus`` is the shared corpus when the dataset has one;
        otherwise each example carries its own ``documents``."""

    def estimate(
        self,
        examples: Sequence[Example],
        generator: Generator,
        corpus: Sequence[Document] | None = None,
    ) -> list[Cost]:
        """The token side of the cost per example without generating (``ragkit estimate``).
        Output tokens are the upper bound ``max_new_tokens``. Strategies whose later calls depend
        on earlier outputs return an upper bound and say so in their docstring."""
        raise NotImplementedError(f"{type(self).__name__} does not implement estimate()")


def prompt_limit(generator: Generator, max_new_tokens: int | None, budget: int | None) -> int:
    """Most tokens one prompt may take: what the window leaves for the answer, and the budget."""
    window = generator.input_limit(max_new_tokens)
    return window if budget is None else min(budget, window)


def generation_cost(generation: Generation, generator: Generator) -> Cost:
    """Cost of one generator call, FLOPs included (see ragkit.budget)."""
    from ragkit.budget import call_flops

    return Cost(
        input_tokens=generation.input_tokens,
        output_tokens=generation.output_tokens,
        calls=1,
        prefill_tokens_computed=generation.prefill_tokens_computed,
        prefill_seconds=generation.prefill_seconds,
        decode_seconds=generation.decode_seconds,
        flops=generation.flops
        if generation.flops is not None
        else call_flops(generator.model_info(), generation.input_tokens, generation.output_tokens),
    )


# A call record keeps each prompt message up to this many characters (head and tail): enough for
# every prompt of a 4k-token window, while a 128k-token context does not put megabytes per question
# into predictions.jsonl (the context's chunk ids are recorded whole beside it).
MESSAGE_CHARS = 24_000


def clip(text: str, limit: int = MESSAGE_CHARS) -> str:
    if len(text) <= limit:
        return text
    head, tail = (limit * 2) // 3, limit // 3
    return f"{text[:head]}\n[... {len(text) - head - tail} characters not recorded ...]\n{text[-tail:]}"


class Record:
    """One question's answer in the making. Every generator call and every auxiliary stage goes
    through :meth:`call` and :meth:`stage`, which add to the question's cost and provenance
    together, so a call cannot be charged without being recorded or recorded without being
    charged."""

    def __init__(self, example: Example) -> None:
        self.example = example
        self.cost = Cost()
        self.provenance = Provenance()

    def call(
        self,
        generation: Generation,
        generator: Generator,
        role: str = "answer",
        request: GenerationRequest | None = None,
    ) -> str:
        """Charge one generator call (its prompt counts towards the effective context) and
        record it with its prompt (``request``; the driver builds the question's MLflow trace from
        these records); returns its text."""
        self.cost = self.cost + generation_cost(generation, generator)
        self.provenance.calls.append(
            Call(
                role=role,
                input_tokens=generation.input_tokens,
                output_tokens=generation.output_tokens,
                seconds=generation.prefill_seconds + generation.decode_seconds,
                cached=generation.cached,
                truncated_tokens=generation.truncated_tokens,
                output=generation.text,
                prefill_seconds=round(generation.prefill_seconds, 6),
                decode_seconds=round(generation.decode_seconds, 6),
                messages=[
                    {"role": m["role"], "content": clip(m["content"])}
                    for m in (request.messages if request else [])
                ],
            )
        )
        self.provenance.dropped_tokens += generation.truncated_tokens
        return generation.text

    def stage(
        self, name: str, hits: Sequence[Scored], use: AuxUse, generator: Generator | None = None
    ) -> None:
        """Charge one auxiliary stage's work on this question as its call returned it: its models'
        tokens and seconds, and any generator calls it made (charged like the strategy's own)."""
        self.provenance.stages.append(
            Stage(
                name=name,
                ids=[s.chunk.id for s in hits],
                scores=[round(float(s.score), 6) for s in hits],
                tokens=use.tokens,
                seconds=use.seconds,
            )
        )
        self.cost.aux_tokens += use.tokens
        self.cost.aux_seconds += use.seconds
        if use.generations:
            if generator is None:
                raise ValueError(f"stage {name!r} made generator calls but no generator was given to charge")
            requests = list(use.requests) + [None] * (len(use.generations) - len(use.requests))
            for generation, request in zip(use.generations, requests, strict=True):
                self.call(generation, generator, role=name, request=request)

    def absorb(self, step: Prediction, role: str) -> None:
        """Take over the cost, calls and stages of a strategy run as one step of this one
        (Self-Route's RAG and full-context calls); its calls' roles get ``role`` in front."""
        self.cost = self.cost + step.cost
        self.provenance.calls += [replace(c, role=f"{role}.{c.role}") for c in step.provenance.calls]
        self.provenance.stages += step.provenance.stages

    def show(self, context: Context) -> None:
        """What the answering prompt shows: its chunks, their tokens, the tokens cut to fit and
        whether every gold evidence text survived."""
        self.provenance.context_ids = [s.chunk.id for s in context.chunks]
        self.provenance.context_tokens = context.tokens
        self.provenance.dropped_tokens += context.dropped_tokens
        self.provenance.gold_survived = context.gold_survived
        record_answer_in_context(self, context.text)

    def prediction(self, answer: str) -> Prediction:
        return Prediction(self.example.id, answer, self.cost, self.provenance)


def record_answer_in_context(record: Record, text: str) -> None:
    """The measure ``answer_in_context``: 1.0 when a reference answer occurs (as contains-answer
    reads it) in the context the answering prompt shows. A proxy for "could the generator have
    answered from what it saw", which separates a retrieval or truncation miss from a reading miss;
    not recorded for unanswerable questions or examples without references."""
    from ragkit.metrics import contains_answer

    example = record.example
    if example.answerable and any(a.strip() for a in example.answers):
        record.provenance.measures["answer_in_context"] = contains_answer(text, example.answers)
