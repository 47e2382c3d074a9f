"""Full context: every document, in original order, in one prompt fitted to the model window.

When the documents do not fit, tokens are cut (from the middle by default, the LongBench
convention: the start and the end of a long input carry the most signal) and the cut is
recorded per question: how many tokens were dropped and whether all gold evidence survived.
Never silent (:func:`ragkit.strategies.context.fit_context`, which other strategies reading the
whole context share). ``citations: true`` asks for bracketed citations of the numbered documents
and records them (:mod:`ragkit.strategies._citing`); a document cut from the middle keeps its number.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from ragkit.constraints import Tokens
from ragkit.generators._prefix import computed_tokens
from ragkit.generators.base import Generator, Message
from ragkit.registry import register
from ragkit.strategies import _citing
from ragkit.strategies._common import answer_once
from ragkit.strategies.base import Record, Strategy, prompt_limit
from ragkit.strategies.context import fit_context
from ragkit.types import Cost, Document, Example, Prediction


@register("strategy", "full_context")
class FullContext(Strategy):
    version = "2"  # 2: a cut context no longer depends on the question's length (prefix reuse)

    def __init__(
        self,
        *,
        truncation: Literal["middle", "end", "start"] = "middle",
        budget: Tokens | None = None,
        abstain: bool = False,
        max_new_tokens: Tokens | None = None,
        citations: bool = False,
    ) -> None:
        self.truncation = truncation
        self.budget = budget
        self.abstain = abstain
        self.max_new_tokens = max_new_tokens
        self.citations = citations

    def _prepare(
        self, record: Record, generator: Generator, corpus: Sequence[Document] | None
    ) -> tuple[list[Message], int]:
        """The prompt and its tokens; the record gets the context's provenance."""
        limit = prompt_limit(generator, self.max_new_tokens, self.budget)
        example = record.example
        return fit_context(
            record,
            generator,
            corpus,
            lambda docs: _citing.messages(example, docs, abstain=self.abstain, citations=self.citations),
            limit,
            self.truncation,
        )

    def run(
        self,
        examples: Sequence[Example],
        generator: Generator,
        corpus: Sequence[Document] | None = None,
    ) -> list[Prediction]:
        records = [Record(e) for e in examples]
        prepared = [self._prepare(r, generator, corpus) for r in records]
        predictions = answer_once(generator, records, [m for m, _ in prepared], self.max_new_tokens)
        if not self.citations:
            return predictions
        shown = [_citing.whole_context(r.example, corpus) for r in records]
        return _citing.finish(predictions, records, shown)

    def estimate(
        self,
        examples: Sequence[Example],
        generator: Generator,
        corpus: Sequence[Document] | None = None,
    ) -> list[Cost]:
        max_new = self.max_new_tokens or generator.max_new_tokens
        prepared = [self._prepare(Record(e), generator, corpus) for e in examples]
        costs = [Cost(input_tokens=tokens, output_tokens=max_new, calls=1) for _, tokens in prepared]
        if getattr(generator, "prefix_reuse", False):
            # Questions over the same documents share their prompt up to the question; an engine
            # reusing prefixes computes that part once (the runner sends them together).
            ids = [generator.tokenizer.encode(generator.render(m)) for m, _ in prepared]
            for cost, computed in zip(costs, computed_tokens(ids), strict=True):
                cost.prefill_tokens_computed = computed
        return costs
