"""GemFilter: the whole context goes in, the model's early layers keep ``keep`` tokens of it, and the
full model answers from those alone (Shi et al., 2024, arXiv 2409.17422).

The prompt is the full-context prompt (every document, cut to the window as full context cuts
it); the selection runs inside the generator (:mod:`ragkit.generators._gemfilter`: the filter
layer's last-query attention logits, summed over heads, pooled over 5 positions, top ``keep`` in
order). The question and answer cue at the end of the prompt are always kept (``protect``), and
count toward ``keep``.

Cost: the effective context is the whole prompt (the filter layers read all of it); FLOPs are the
partial prefill over the layers run plus the full model over the kept tokens and the answer
(:func:`ragkit.budget.layers_flops`); ``prefill_tokens_computed`` weighs the filter pass by the
share of layers it ran. Needs a generator with the model in process (``type: transformers``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

from ragkit.constraints import NonNegativeInt, Tokens
from ragkit.generators.base import GenerationRequest, Generator, Message
from ragkit.registry import register
from ragkit.strategies.base import Record, Strategy
from ragkit.strategies.context import evidence_in
from ragkit.strategies.full_context import FullContext
from ragkit.strategies.prompts import clean_answer
from ragkit.types import Cost, Document, Example, Prediction


def question_tail(generator: Generator, messages: Sequence[Message]) -> int:
    """Prompt tokens from the question on (question, answer cue, the chat template's end)."""
    prompt = generator.render(messages)
    start = prompt.rfind("\n\nQuestion:")
    if start < 0:
        return 0
    return generator.count_tokens(prompt) - generator.count_tokens(prompt[:start])


@register("strategy", "gemfilter")
class GemFilter(Strategy):
    version = "2"  # 2: a cut context no longer depends on the question's length (prefix reuse)

    def __init__(
        self,
        *,
        keep: Tokens = 512,
        layer: NonNegativeInt | None = None,
        protect_question: bool = True,
        truncation: Literal["middle", "end", "start"] = "middle",
        budget: Tokens | None = None,
        abstain: bool = False,
        max_new_tokens: Tokens | None = None,
    ) -> None:
        if keep < 1:
            raise ValueError(f"gemfilter: field 'keep' must be a positive number of tokens, got {keep}")
        self.keep = keep
        self.layer = layer
        self.protect_question = protect_question
        self.truncation = truncation
        self.budget = budget
        self.abstain = abstain
        self.max_new_tokens = max_new_tokens

    def _full(self) -> FullContext:
        return FullContext(
            truncation=self.truncation,
            budget=self.budget,
            abstain=self.abstain,
            max_new_tokens=self.max_new_tokens,
        )

    def filter_layer(self, generator: Generator) -> int:
        from ragkit.generators._gemfilter import default_layer

        info = generator.model_info()
        return default_layer(info.n_layers, info.layer_windows) if self.layer is None else self.layer

    def _request(self, generator: Generator, messages: list[Message]) -> GenerationRequest:
        method: dict[str, Any] = {
            "name": "gemfilter",
            "keep": self.keep,
            "layer": self.filter_layer(generator),
            "protect": question_tail(generator, messages) if self.protect_question else 0,
        }
        return GenerationRequest(messages, max_new_tokens=self.max_new_tokens, method=method)

    def run(
        self,
        examples: Sequence[Example],
        generator: Generator,
        corpus: Sequence[Document] | None = None,
    ) -> list[Prediction]:
        full = self._full()
        records = [Record(e) for e in examples]
        prepared = [full._prepare(r, generator, corpus) for r in records]
        requests = [self._request(generator, messages) for messages, _ in prepared]
        predictions = []
        for record, (messages, _), request, generation in zip(
            records, prepared, requests, generator.generate(requests), strict=True
        ):
            record.provenance.raw_answer = record.call(generation, generator, request=request)
            kept = generation.meta.get("kept")
            measures = record.provenance.measures
            measures.update(
                kept_tokens=generation.meta.get("kept_tokens"),
                filter_layer=request.method["layer"],  # type: ignore[index]
                protected_tokens=request.method["protect"],  # type: ignore[index]
            )
            if kept is not None and record.example.evidence:  # did the gold evidence survive selection?
                text = _kept_text(generator, messages, kept)
                measures["evidence_kept"] = evidence_in(record.example.evidence, [text])
            predictions.append(record.prediction(clean_answer(generation.text)))
        return predictions

    def estimate(
        self,
        examples: Sequence[Example],
        generator: Generator,
        corpus: Sequence[Document] | None = None,
    ) -> list[Cost]:
        from ragkit.budget import call_flops, layers_flops

        info = generator.model_info()
        run = self.filter_layer(generator) + 1
        max_new = self.max_new_tokens or generator.max_new_tokens
        full = self._full()
        out = []
        for example in examples:
            tokens = full._prepare(Record(example), generator, corpus)[1]
            if tokens <= self.keep:
                out.append(Cost(input_tokens=tokens, output_tokens=max_new, calls=1))
                continue
            out.append(
                Cost(
                    input_tokens=tokens,
                    output_tokens=max_new,
                    calls=1,
                    prefill_tokens_computed=self.keep + math.ceil(tokens * run / info.n_layers),
                    flops=layers_flops(info, tokens, run) + call_flops(info, self.keep, max_new),
                )
            )
        return out


def _kept_text(generator: Generator, messages: list[Message], kept: list[list[int]]) -> str:
    ids = generator.tokenizer.encode(generator.render(messages))
    return " ".join(generator.tokenizer.decode(ids[a:b]) for a, b in kept)
