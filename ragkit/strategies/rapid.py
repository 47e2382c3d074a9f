"""RAPID: retrieval-augmented speculative decoding (Chen et al., ICML 2025, arXiv 2502.20330).

The answer is the long-context answer: the target reads the full-context prompt (every
document, cut to the window as full context cuts it). A drafter reads RAG's prompt for the same
question (retrieve, rerank, prune, pack: every RAG setting applies) and proposes ``lookahead``
tokens at a time, which the target verifies in one forward pass (:mod:`ragkit.generators.
_speculative`). Under greedy decoding the output equals full context's; what changes is the time
(a draft step over a short cache is cheaper than a target step over a long one) and the compute.
The drafter is the same model (RAPID's self-speculation setting). RAPID's knowledge transfer
(a target distribution shifted toward the drafter's) changes the output and is not implemented.

Cost: two prompts are read in one generator request, so the effective context is the target's
prompt plus the draft's (one call record holding both; the measures ``draft_tokens`` and
``target_tokens`` split them); FLOPs count both prefills, every draft token proposed and every token the
target verified (rejected ones included). Provenance has the acceptance rate. Needs a generator
with the model in process (``type: transformers``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Literal

from ragkit.constraints import Count, Tokens
from ragkit.generators.base import GenerationRequest, Generator
from ragkit.registry import register
from ragkit.strategies.base import Record
from ragkit.strategies.full_context import FullContext
from ragkit.strategies.prompts import clean_answer
from ragkit.strategies.rag import RAG
from ragkit.strategies.retrieval import Retrieval
from ragkit.types import Cost, Document, Example, Prediction


@register("strategy", "rapid")
class RAPID(RAG):
    version = "2"  # 2: a cut context no longer depends on the question's length (prefix reuse)
    # the answer is full context's (greedy): no allocation dimension moves it
    theta: ClassVar = {}
    family: ClassVar = ""

    def __init__(
        self,
        *,
        retrieval: Retrieval,
        lookahead: Count = 4,
        draft_budget: Tokens | None = None,
        truncation: Literal["middle", "end", "start"] = "middle",
        abstain: bool = False,
        max_new_tokens: Tokens | None = None,
    ) -> None:
        super().__init__(
            retrieval=retrieval, budget=draft_budget, abstain=abstain, max_new_tokens=max_new_tokens
        )
        # kept under its own name too: get_params (the runner's cache binding, specs, pickled
        # units) reads every constructor parameter back by name
        self.draft_budget = draft_budget
        self.lookahead = lookahead
        self.truncation = truncation

    def _target(self) -> FullContext:
        # draft_budget bounds the drafter's RAG prompt; the target reads the whole context (so
        # RAPID has no ``budget``: that name caps everything a question reads, in every strategy)
        return FullContext(
            truncation=self.truncation, abstain=self.abstain, max_new_tokens=self.max_new_tokens
        )

    def run(
        self,
        examples: Sequence[Example],
        generator: Generator,
        corpus: Sequence[Document] | None = None,
    ) -> list[Prediction]:
        records = [Record(e) for e in examples]  # the drafter's: its retrieval stages and context
        drafts = self.contexts(records, generator, corpus)
        target = self._target()
        targets = [Record(e) for e in examples]  # what the target read (measures only)
        full = [target._prepare(r, generator, corpus) for r in targets]
        requests = [
            GenerationRequest(
                messages,
                max_new_tokens=self.max_new_tokens,
                method={"name": "speculative", "draft": packed.messages, "lookahead": self.lookahead},
            )
            for packed, (messages, _) in zip(drafts, full, strict=True)
        ]
        predictions = []
        for record, packed, seen, request, generation in zip(
            records, drafts, targets, requests, generator.generate(requests), strict=True
        ):
            record.provenance.raw_answer = record.call(
                generation, generator, role="speculative", request=request
            )
            meta = generation.meta
            record.provenance.measures.update(
                draft_tokens=meta.get("draft_tokens", packed.prompt_tokens),
                target_tokens=meta.get("target_tokens"),
                target_context_tokens=seen.provenance.context_tokens,
                target_truncated=seen.provenance.measures.get("truncated"),
                target_evidence_recall=seen.provenance.evidence_recall,
                proposed=meta.get("proposed"),
                accepted=meta.get("accepted"),
                acceptance=meta.get("acceptance"),
                verification_rounds=meta.get("rounds"),
            )
            predictions.append(record.prediction(clean_answer(generation.text)))
        return predictions

    def estimate(
        self,
        examples: Sequence[Example],
        generator: Generator,
        corpus: Sequence[Document] | None = None,
    ) -> list[Cost]:
        """Both prompts and the output bound; FLOPs as if each of the two read its prompt and
        decoded the whole answer (the drafter proposes about one token per answer token; the
        target verifies as many, more when proposals are rejected)."""
        from ragkit.budget import call_flops

        info = generator.model_info()
        max_new = self.max_new_tokens or generator.max_new_tokens
        target = self._target()
        records = [Record(e) for e in examples]
        out = []
        for record, packed in zip(records, self.contexts(records, generator, corpus), strict=True):
            tokens = target._prepare(Record(record.example), generator, corpus)[1]
            flops = call_flops(info, tokens, max_new) + call_flops(info, packed.prompt_tokens, max_new)
            out.append(
                record.cost
                + Cost(
                    input_tokens=tokens + packed.prompt_tokens, output_tokens=max_new, calls=1, flops=flops
                )
            )
        return out
