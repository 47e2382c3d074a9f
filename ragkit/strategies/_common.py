"""From generator outputs to predictions, the same way in every strategy.

Not a strategy module (the leading underscore keeps registry discovery away from it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ragkit.generators.base import Generation, GenerationRequest, Generator, Message
from ragkit.strategies.base import generation_cost
from ragkit.strategies.prompts import clean_answer
from ragkit.types import Example, Prediction


def record_call(provenance: dict[str, Any], generation: Generation) -> None:
    """What each generator call adds to its question's provenance: ``cached`` stays true only
    while every call was a cache hit, and the prompt tokens the generator had to cut count as
    dropped."""
    provenance["cached"] = provenance.get("cached", True) and generation.cached
    provenance["dropped_tokens"] += generation.truncated_tokens


def answer_once(
    generator: Generator,
    examples: Sequence[Example],
    messages: Sequence[list[Message]],
    provenances: Sequence[dict[str, Any]],
    max_new_tokens: int | None,
) -> list[Prediction]:
    """One generator call per question, all in one batch: each prediction has the cleaned answer,
    the call's cost, and its provenance with the raw answer added. Auxiliary costs (retrieval,
    reranking) are the caller's to add."""
    requests = [GenerationRequest(m, max_new_tokens=max_new_tokens) for m in messages]
    predictions = []
    for example, provenance, generation in zip(
        examples, provenances, generator.generate(requests), strict=True
    ):
        provenance["raw_answer"] = generation.text
        record_call(provenance, generation)
        cost = generation_cost(generation, generator)
        predictions.append(Prediction(example.id, clean_answer(generation.text), cost, provenance))
    return predictions
