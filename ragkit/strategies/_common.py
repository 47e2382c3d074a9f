"""From generator outputs to predictions, the same way in every strategy.

Not a strategy module (the leading underscore keeps registry discovery away from it).
"""

from __future__ import annotations

from collections.abc import Sequence

from ragkit.generators.base import GenerationRequest, Generator, Message
from ragkit.strategies.base import Record
from ragkit.strategies.prompts import clean_answer
from ragkit.types import Prediction


def answer_once(
    generator: Generator,
    records: Sequence[Record],
    messages: Sequence[list[Message]],
    max_new_tokens: int | None,
) -> list[Prediction]:
    """One answering call per question, all in one batch: each record is charged its call, keeps
    the raw output, and becomes a prediction with the cleaned answer."""
    requests = [GenerationRequest(m, max_new_tokens=max_new_tokens) for m in messages]
    predictions = []
    for record, request, generation in zip(records, requests, generator.generate(requests), strict=True):
        record.provenance.raw_answer = record.call(generation, generator, request=request)
        predictions.append(record.prediction(clean_answer(generation.text)))
    return predictions
