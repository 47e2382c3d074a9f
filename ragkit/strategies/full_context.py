"""Full context: every document, in original order, in one prompt fitted to the model window.

When the documents do not fit, tokens are cut (from the middle by default, the LongBench
convention: the start and the end of a long input carry the most signal) and the cut is
recorded per question: how many tokens were dropped and whether all gold evidence survived.
Never silent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from ragkit.generators._prefix import computed_tokens
from ragkit.generators.base import Generator, Message
from ragkit.registry import register
from ragkit.strategies._common import answer_once
from ragkit.strategies.base import Strategy
from ragkit.strategies.context import evidence_in
from ragkit.strategies.prompts import format_chunk, question_messages
from ragkit.types import Chunk, Cost, Document, Example, Prediction


def _as_chunks(documents: Sequence[Document]) -> list[Chunk]:
    return [
        Chunk(id=d.id, doc_id=d.id, text=d.text, title=d.title, position=i) for i, d in enumerate(documents)
    ]


def cut_tokens(ids: list[int], keep: int, where: str) -> list[int]:
    """Keep ``keep`` of ``ids``, dropping from the middle, the end or the start."""
    if keep >= len(ids):
        return ids
    if keep <= 0:
        return []
    if where == "end":
        return ids[:keep]
    if where == "start":
        return ids[len(ids) - keep :]
    head = keep // 2
    return ids[:head] + ids[len(ids) - (keep - head) :]


@register("strategy", "full_context")
class FullContext(Strategy):
    version = "1"

    def __init__(
        self,
        *,
        truncation: Literal["middle", "end", "start"] = "middle",
        budget: int | None = None,
        abstain: bool = False,
        max_new_tokens: int | None = None,
    ) -> None:
        self.truncation = truncation
        self.budget = budget
        self.abstain = abstain
        self.max_new_tokens = max_new_tokens

    def _prepare(
        self, example: Example, generator: Generator, corpus: Sequence[Document] | None
    ) -> tuple[list[Message], int, dict[str, Any]]:
        documents = example.documents or list(corpus or [])
        block = "\n\n".join(format_chunk(i + 1, c) for i, c in enumerate(_as_chunks(documents)))

        def make(docs: str) -> list[Message]:
            return question_messages(example.question, docs, abstain=self.abstain)

        limit = generator.input_limit(self.max_new_tokens)
        if self.budget is not None:
            limit = min(limit, self.budget)
        overhead = generator.prompt_tokens(make(""))
        tokenizer = generator.tokenizer
        ids = tokenizer.encode(block)
        full = len(ids)
        text, kept = block, full
        total = generator.prompt_tokens(make(text))
        if total > limit:
            kept = max(limit - overhead, 0)
            for _ in range(8):  # decode/encode at the cut can shift counts by a few tokens
                text = tokenizer.decode(cut_tokens(ids, kept, self.truncation))
                total = generator.prompt_tokens(make(text))
                if total <= limit or kept == 0:
                    break
                kept = max(kept - (total - limit), 0)
        messages = make(text)
        provenance = {
            "context_tokens": total - overhead,
            "full_context_tokens": full,
            "dropped_tokens": full - kept if text != block else 0,
            "truncated": text != block,
            "n_documents": len(documents),
            "gold_survived": None if not example.evidence else evidence_in(example.evidence, [text]) == 1.0,
            "evidence_recall": evidence_in(example.evidence, [text]),
        }
        return messages, total, provenance

    def run(
        self,
        examples: Sequence[Example],
        generator: Generator,
        corpus: Sequence[Document] | None = None,
    ) -> list[Prediction]:
        prepared = [self._prepare(e, generator, corpus) for e in examples]
        return answer_once(
            generator,
            examples,
            [messages for messages, _, _ in prepared],
            [provenance for _, _, provenance in prepared],
            self.max_new_tokens,
        )

    def estimate(
        self,
        examples: Sequence[Example],
        generator: Generator,
        corpus: Sequence[Document] | None = None,
    ) -> list[Cost]:
        max_new = self.max_new_tokens or generator.max_new_tokens
        prepared = [self._prepare(e, generator, corpus) for e in examples]
        costs = [Cost(input_tokens=tokens, output_tokens=max_new, calls=1) for _, tokens, _ in prepared]
        if getattr(generator, "prefix_reuse", False):
            # Questions over the same documents share their prompt up to the question; an engine
            # reusing prefixes computes that part once (the runner sends them together).
            ids = [generator.tokenizer.encode(generator.render(m)) for m, _, _ in prepared]
            for cost, computed in zip(costs, computed_tokens(ids), strict=True):
                cost.prefill_tokens_computed = computed
        return costs
