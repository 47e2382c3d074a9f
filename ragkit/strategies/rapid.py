"""RAPID: retrieval-augmented speculative decoding (Chen et al., ICML 2025, arXiv 2502.20330).

The answer is the long-context answer: the target reads the full-context prompt (every
document, cut to the window as full context cuts it). A drafter reads RAG's prompt for the same
question (retrieve, rerank, prune, pack: every RAG setting applies) and proposes ``lookahead``
tokens at a time, which the target verifies in one forward pass (:mod:`ragkit.generators.
_speculative`). Under greedy decoding the output equals full context's; what changes is the time
(a draft step over a short cache is cheaper than a target step over a long one) and the compute.
The drafter is the same model (RAPID's self-speculation setting). RAPID's knowledge transfer
(a target distribution shifted toward the drafter's) changes the output and is not implemented.

Cost: two prompts are read, so the effective context is the target's prompt plus the draft's
(and ``calls`` is 2); FLOPs count both prefills, every draft token proposed and every token the
target verified (rejected ones included). Provenance has the acceptance rate. Needs a generator
with the model in process (``type: transformers``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from ragkit.data.chunking import Chunker
from ragkit.generators.base import GenerationRequest, Generator
from ragkit.pruners.base import Pruner
from ragkit.registry import register
from ragkit.rerankers.base import Reranker
from ragkit.rerankers.order import Order
from ragkit.retrievers.base import Retriever
from ragkit.strategies._common import record_call
from ragkit.strategies.base import generation_cost
from ragkit.strategies.context import aux_seconds
from ragkit.strategies.full_context import FullContext
from ragkit.strategies.prompts import clean_answer
from ragkit.strategies.rag import RAG
from ragkit.types import Cost, Document, Example, Prediction


@register("strategy", "rapid")
class RAPID(RAG):
    version = "1"

    def __init__(
        self,
        *,
        retriever: Retriever,
        k: int = 5,
        lookahead: int = 4,
        reranker: Reranker | None = None,
        rerank_depth: int | None = None,
        pruner: Pruner | None = None,
        order: Order = "score",
        budget: int | None = None,
        truncation: Literal["middle", "end", "start"] = "middle",
        chunker: Chunker | None = None,
        abstain: bool = False,
        max_new_tokens: int | None = None,
    ) -> None:
        super().__init__(
            retriever=retriever,
            k=k,
            reranker=reranker,
            rerank_depth=rerank_depth,
            pruner=pruner,
            order=order,
            budget=budget,
            chunker=chunker,
            abstain=abstain,
            max_new_tokens=max_new_tokens,
        )
        if lookahead < 1:
            raise ValueError(f"rapid: field 'lookahead' must be at least 1, got {lookahead}")
        self.lookahead = lookahead
        self.truncation = truncation

    def _target(self) -> FullContext:
        # the budget bounds the drafter's RAG prompt; the target reads the whole context
        return FullContext(
            truncation=self.truncation, abstain=self.abstain, max_new_tokens=self.max_new_tokens
        )

    def run(
        self,
        examples: Sequence[Example],
        generator: Generator,
        corpus: Sequence[Document] | None = None,
    ) -> list[Prediction]:
        drafts = self.contexts(examples, generator, corpus)
        target = self._target()
        full = [target._prepare(e, generator, corpus) for e in examples]
        requests = [
            GenerationRequest(
                messages,
                max_new_tokens=self.max_new_tokens,
                method={"name": "speculative", "draft": packed.messages, "lookahead": self.lookahead},
            )
            for (packed, _, _), (messages, _, _) in zip(drafts, full, strict=True)
        ]
        predictions = []
        for example, (packed, provenance, aux), (_, _, target_info), request, generation in zip(
            examples, drafts, full, requests, generator.generate(requests), strict=True
        ):
            meta = generation.meta
            provenance.update(
                raw_answer=generation.text,
                draft_tokens=meta.get("draft_tokens", packed.prompt_tokens),
                target_tokens=meta.get("target_tokens"),
                target_context_tokens=target_info["context_tokens"],
                target_truncated=target_info["truncated"],
                target_evidence_recall=target_info["evidence_recall"],
                proposed=meta.get("proposed"),
                accepted=meta.get("accepted"),
                acceptance=meta.get("acceptance"),
                verification_rounds=meta.get("rounds"),
            )
            record_call(provenance, generation, request)
            cost = generation_cost(generation, generator)
            cost.calls = 2  # the drafter and the target each read a prompt
            cost.aux_tokens += aux
            cost.aux_seconds += aux_seconds(provenance)
            predictions.append(Prediction(example.id, clean_answer(generation.text), cost, provenance))
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
        out = []
        for example, (packed, provenance, aux) in zip(
            examples, self.contexts(examples, generator, corpus), strict=True
        ):
            tokens = target._prepare(example, generator, corpus)[1]
            out.append(
                Cost(
                    input_tokens=tokens + packed.prompt_tokens,
                    output_tokens=max_new,
                    calls=2,
                    aux_tokens=aux,
                    aux_seconds=aux_seconds(provenance),
                    flops=call_flops(info, tokens, max_new) + call_flops(info, packed.prompt_tokens, max_new),
                )
            )
        return out
