"""Self-Route (Li et al., EMNLP 2024 industry track, "Retrieval Augmented Generation or
Long-Context LLMs? A Comprehensive Study and Hybrid Approach", §5): answer with RAG while letting
the model declare the question unanswerable from the retrieved passages; only those questions go
to the full context. A routed question pays for both calls (its effective context length is the
sum of both prompts).

Plus :func:`oracle_route`, the analysis of the headroom of any router: per question, the better
of a RAG and a full-context run (the cheaper one on ties).

The RAG step is :class:`~ragkit.strategies.rag.RAG` with ``abstain=True`` and the second step
:class:`~ragkit.strategies.full_context.FullContext`, so prompts (and generation cache entries)
are exactly those of the two arms. "Unanswerable" is :func:`ragkit.metrics.is_abstention`, the
same test the abstention metrics use. ``budget`` caps a question's total: the full-context prompt
gets what the RAG call left, and a question with less than ``min_route_tokens`` left is not routed
(its RAG answer stands; provenance says why).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import pandas as pd

from ragkit.constraints import Count, NonNegativeInt, Tokens
from ragkit.data.chunking import Chunker
from ragkit.generators.base import Generator
from ragkit.metrics import is_abstention
from ragkit.pruners.base import Pruner
from ragkit.registry import register
from ragkit.rerankers.base import Reranker
from ragkit.rerankers.order import Order
from ragkit.retrievers.base import Retriever
from ragkit.strategies.base import Strategy
from ragkit.strategies.context import retrieval_depth
from ragkit.strategies.full_context import FullContext
from ragkit.strategies.rag import RAG
from ragkit.types import Cost, Document, Example, Prediction


@register("strategy", "route")
class SelfRoute(Strategy):
    version = "2"  # 2: tightened abstention detection (an answer after "but ..." is not routed)

    def __init__(
        self,
        *,
        retriever: Retriever,
        k: Count = 5,
        reranker: Reranker | None = None,
        rerank_depth: Count | None = None,
        pruner: Pruner | None = None,
        order: Order = "score",
        chunker: Chunker | None = None,
        truncation: Literal["middle", "end", "start"] = "middle",
        budget: Tokens | None = None,
        min_route_tokens: NonNegativeInt = 64,
        max_new_tokens: Tokens | None = None,
    ) -> None:
        self.retriever = retriever
        self.k = k
        self.reranker = reranker
        self.rerank_depth = rerank_depth
        self.pruner = pruner
        self.order = order
        self.chunker = chunker
        self.truncation = truncation
        self.budget = budget
        self.min_route_tokens = min_route_tokens
        self.max_new_tokens = max_new_tokens

    def rag(self) -> RAG:
        """The first step, rebuilt when the runner has since wrapped the retriever in its cache."""
        current = getattr(self, "rag_", None)
        if current is None or current.retriever is not self.retriever:
            self.rag_ = RAG(
                retriever=self.retriever,
                k=self.k,
                reranker=self.reranker,
                rerank_depth=self.rerank_depth,
                pruner=self.pruner,
                order=self.order,
                budget=self.budget,
                chunker=self.chunker,
                abstain=True,
                max_new_tokens=self.max_new_tokens,
            )
        return self.rag_

    def retrieval_depth(self) -> int:
        # RAG's rule, not self.rag(): the runner asks while iterating this object's attributes,
        # so building the inner RAG now would change them under it.
        return retrieval_depth(self.k, self.reranker, self.rerank_depth)

    def _full(self, budget: int | None) -> FullContext:
        return FullContext(truncation=self.truncation, budget=budget, max_new_tokens=self.max_new_tokens)

    def _left(self, spent: int) -> int | None:
        return None if self.budget is None else self.budget - spent

    def run(
        self,
        examples: Sequence[Example],
        generator: Generator,
        corpus: Sequence[Document] | None = None,
    ) -> list[Prediction]:
        first = self.rag().run(examples, generator, corpus)
        routed: dict[int, int | None] = {}
        for i, p in enumerate(first):
            abstained = is_abstention(p.answer) or is_abstention(str(p.provenance.get("raw_answer", "")))
            left = self._left(p.cost.input_tokens)
            p.provenance = {"rag": p.provenance, "rag_answer": p.answer, "routed": False}
            if abstained and left is not None and left < self.min_route_tokens:
                p.provenance["route_skipped"] = f"budget: {left} tokens left"
            elif abstained:
                routed[i] = left
        # Without a budget every routed question shares one full-context run (one batched call);
        # with one, each gets the rest of its own budget.
        groups: dict[int | None, list[int]] = {}
        for i, left in routed.items():
            groups.setdefault(left, []).append(i)
        for left, indices in groups.items():
            second = self._full(left).run([examples[i] for i in indices], generator, corpus)
            for i, p in zip(indices, second, strict=True):
                head = first[i]
                first[i] = Prediction(
                    head.example_id,
                    p.answer,
                    head.cost + p.cost,
                    {**head.provenance, "routed": True, "full_context": p.provenance},
                )
        for p in first:  # the metrics read these at the top level
            inner = p.provenance["full_context"] if p.provenance["routed"] else p.provenance["rag"]
            for key in ("evidence_recall", "gold_survived", "raw_answer", "cached"):
                p.provenance[key] = inner.get(key)
            p.provenance["dropped_tokens"] = inner.get("dropped_tokens", 0)
        return first

    def estimate(
        self,
        examples: Sequence[Example],
        generator: Generator,
        corpus: Sequence[Document] | None = None,
    ) -> list[Cost]:
        """The routed upper bound: every question pays for both calls."""
        rag = self.rag().estimate(examples, generator, corpus)
        out = []
        for example, cost in zip(examples, rag, strict=True):
            [full] = self._full(self._left(cost.input_tokens)).estimate([example], generator, corpus)
            out.append(cost + full)
        return out


def oracle_route(
    rag: pd.DataFrame, full: pd.DataFrame, metric: str = "contains_answer", cost: str = "cost_input_tokens"
) -> dict[str, Any]:
    """Headroom of routing: per question the better of two runs' per-question scores (rows of
    ``scores.parquet``: ``example_id``, ``metric``, ``cost``), the cheaper one on ties.

    Returns the mean score and cost of RAG, full context and the oracle, and the share of
    questions where only full context is right ("full_only") and only RAG is ("rag_only")."""
    both = rag[["example_id", metric, cost]].merge(
        full[["example_id", metric, cost]], on="example_id", suffixes=("_rag", "_full")
    )
    if both.empty:
        raise ValueError("the two runs share no questions")
    s_rag, s_full = both[f"{metric}_rag"], both[f"{metric}_full"]
    c_rag, c_full = both[f"{cost}_rag"], both[f"{cost}_full"]
    take_full = (s_full > s_rag) | ((s_full == s_rag) & (c_full < c_rag))
    oracle = s_full.where(take_full, s_rag)
    return {
        "n_questions": len(both),
        "rag": float(s_rag.mean()),
        "full_context": float(s_full.mean()),
        "oracle": float(oracle.mean()),
        "headroom_over_best": float(oracle.mean() - max(s_rag.mean(), s_full.mean())),
        "rag_tokens": float(c_rag.mean()),
        "full_context_tokens": float(c_full.mean()),
        "oracle_tokens": float(c_full.where(take_full, c_rag).mean()),
        "routed_share": float(take_full.mean()),
        "full_only": float((s_full > s_rag).mean()),
        "rag_only": float((s_rag > s_full).mean()),
    }
