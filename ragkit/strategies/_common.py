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

# A call record keeps each prompt message up to this many characters (head and tail): enough for
# every prompt of a 4k-token window, while a 128k-token context does not put megabytes per
# question into predictions.jsonl (the context's chunk ids are recorded whole beside it).
MESSAGE_CHARS = 24_000


def _clip(text: str, limit: int = MESSAGE_CHARS) -> str:
    if len(text) <= limit:
        return text
    head, tail = (limit * 2) // 3, limit // 3
    return f"{text[:head]}\n[... {len(text) - head - tail} characters not recorded ...]\n{text[-tail:]}"


def record_call(
    provenance: dict[str, Any], generation: Generation, request: GenerationRequest | None = None
) -> None:
    """What each generator call adds to its question's provenance: ``cached`` stays true only
    while every call was a cache hit, and the prompt tokens the generator had to cut count as
    dropped. ``generator_calls`` keeps each call's prompt, output, tokens and seconds, in order:
    the driver builds the question's MLflow trace from it (execution may run elsewhere)."""
    provenance["cached"] = provenance.get("cached", True) and generation.cached
    provenance["dropped_tokens"] += generation.truncated_tokens
    provenance.setdefault("generator_calls", []).append(
        {
            "messages": [
                {"role": m["role"], "content": _clip(m["content"])}
                for m in (request.messages if request else [])
            ],
            "output": generation.text,
            "input_tokens": generation.input_tokens,
            "output_tokens": generation.output_tokens,
            "prefill_seconds": round(generation.prefill_seconds, 6),
            "decode_seconds": round(generation.decode_seconds, 6),
            "truncated_tokens": generation.truncated_tokens,
            "cached": generation.cached,
        }
    )


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
    for example, provenance, request, generation in zip(
        examples, provenances, requests, generator.generate(requests), strict=True
    ):
        provenance["raw_answer"] = generation.text
        record_call(provenance, generation, request)
        cost = generation_cost(generation, generator)
        predictions.append(Prediction(example.id, clean_answer(generation.text), cost, provenance))
    return predictions
