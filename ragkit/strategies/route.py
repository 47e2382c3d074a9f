"""Self-Route (Li et al., EMNLP 2024 industry track, "Retrieval Augmented Generation or
Long-Context LLMs? A Comprehensive Study and Hybrid Approach", §5): answer with RAG while letting
the model declare the question unanswerable from the retrieved passages; only those questions go
to the full context. A routed question pays for both calls (its effective context length is the
sum of both prompts).

Plus :func:`oracle_route`, the analysis of the headroom of any router: per question, the better
of a RAG and a full-context run (the cheaper one on ties).

The RAG step is :class:`~ragkit.strategies.rag.RAG` with ``abstain=True`` on this strategy's own
retrieval setting (so the runner's shared retrieval cache serves it) and the second step
:class:`~ragkit.strategies.full_context.FullContext`, so prompts (and generation cache entries)
are exactly those of the two arms. "Unanswerable" is :func:`ragkit.metrics.is_abstention`, the
same test the abstention metrics use. ``budget`` caps a question's total: the full-context prompt
gets what the RAG call left, and a question with less than ``min_route_tokens`` left is not routed
(its RAG answer stands; provenance says why).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import pandas as pd

from ragkit.constraints import Count, NonNegativeInt, Tokens
from ragkit.generators.base import Generator
from ragkit.metrics import is_abstention
from ragkit.registry import register
from ragkit.strategies.base import Record, Strategy
from ragkit.strategies.full_context import FullContext
from ragkit.strategies.rag import RAG
from ragkit.strategies.retrieval import Retrieval
from ragkit.types import Cost, Document, Example, Prediction, Provenance


def _summary(provenance: Provenance) -> dict[str, Any]:
    """One step's provenance without its calls and stages (those are the route's own lists)."""
    out = provenance.to_dict()
    out.pop("calls")
    out.pop("stages")
    return out


@register("strategy", "route")
class SelfRoute(Strategy):
    # RAG reads k = 0 as closed book; routing needs retrieved passages to judge answerability
    settings_constraints: ClassVar = {"retrieval.k": Count}
    version = "3"  # 2: tightened abstention detection (an answer after "but ..." is not routed); 3: its
    # full-context branch cuts a context independently of the question (prefix reuse)

    def __init__(
        self,
        *,
        retrieval: Retrieval,
        truncation: Literal["middle", "end", "start"] = "middle",
        budget: Tokens | None = None,
        min_route_tokens: NonNegativeInt = 64,
        max_new_tokens: Tokens | None = None,
    ) -> None:
        self.retrieval = retrieval
        self.truncation = truncation
        self.budget = budget
        self.min_route_tokens = min_route_tokens
        self.max_new_tokens = max_new_tokens

    def retrievers(self) -> list[Retrieval]:
        return [self.retrieval]  # the RAG step reads this same setting, so it shares its cache

    def rag(self) -> RAG:
        """The first step: RAG on this strategy's own retrieval setting, allowed to abstain."""
        return RAG(
            retrieval=self.retrieval, budget=self.budget, abstain=True, max_new_tokens=self.max_new_tokens
        )

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
        records = [Record(e) for e in examples]
        routed: dict[int, int | None] = {}
        for i, (record, p) in enumerate(zip(records, first, strict=True)):
            record.absorb(p, "rag")
            record.provenance.details.update(rag=_summary(p.provenance), rag_answer=p.answer)
            abstained = is_abstention(p.answer) or is_abstention(p.provenance.raw_answer)
            left = self._left(p.cost.input_tokens)
            if abstained and left is not None and left < self.min_route_tokens:
                record.provenance.details["route_skipped"] = f"budget: {left} tokens left"
            elif abstained:
                routed[i] = left
        # Without a budget every routed question shares one full-context run (one batched call);
        # with one, each gets the rest of its own budget.
        groups: dict[int | None, list[int]] = {}
        for i, left in routed.items():
            groups.setdefault(left, []).append(i)
        answers = {i: (p.answer, p.provenance) for i, p in enumerate(first)}
        for left, indices in groups.items():
            second = self._full(left).run([examples[i] for i in indices], generator, corpus)
            for i, p in zip(indices, second, strict=True):
                records[i].absorb(p, "full_context")
                records[i].provenance.details["full_context"] = _summary(p.provenance)
                answers[i] = (p.answer, p.provenance)
        out = []
        for i, record in enumerate(records):
            answer, step = answers[i]  # the step that answered sets what the answer was read from
            provenance = record.provenance
            provenance.raw_answer, provenance.context_ids = step.raw_answer, step.context_ids
            provenance.context_tokens, provenance.dropped_tokens = step.context_tokens, step.dropped_tokens
            provenance.gold_survived, provenance.evidence_recall = step.gold_survived, step.evidence_recall
            provenance.measures["routed"] = i in routed
            out.append(record.prediction(answer))
        return out

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
