"""The strategy contract: ``run(examples, generator, corpus) -> predictions``.

A strategy composes stages (retriever, reranker, pruner, generator) that it receives already built
(and, in a runner, already wrapped in caches); it never reaches inside one. It returns one
:class:`~ragkit.types.Prediction` per example, in order, with the question's full :class:`Cost`
(every generator call's input tokens summed: the effective context length) and a provenance dict
(retrieved chunk ids, dropped tokens, whether gold evidence survived, ...).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from ragkit.component import Component
from ragkit.generators.base import Generation, Generator
from ragkit.types import Cost, Document, Example, Prediction


class Strategy(Component, ABC):
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
        on earlier outputs (IterDRAG) return their upper bound and say so in their docstring."""
        raise NotImplementedError(f"{type(self).__name__} does not implement estimate()")


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
