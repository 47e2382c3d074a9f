"""CORAG (Wang et al., 2024, "CORAG: A Cost-Constrained Retrieval Optimization System for
Retrieval-Augmented Generation", arXiv 2411.00744): choose an ordered *combination* of chunks by
Monte Carlo tree search, scoring each combination as a whole under a hard cost budget, instead of
taking the top k chunks scored one by one.

What ragkit implements (the paper's configuration agent, a model trained to pick the reranker and
search settings per query domain, is not: those are this strategy's swept parameters):

- Candidates: the retrieval setting's ``k`` best chunks (after its reranker and pruner, if any).
- Search tree: a node is an ordered sequence of distinct candidates; a child appends one more
  (candidates tried in retrieval order). A child whose answering prompt would exceed the question's
  token limit (``budget``, the window) is never created: the budget is a hard constraint of the
  search, not its stopping rule. ``max_chunks`` caps the depth.
- Utility of a node, estimated jointly: ``joint(S) - cost_weight * tokens(S) / limit`` (``tokens``:
  what the chunks add to the prompt; ``limit``: the question's token limit). ``joint``
  is the ``scorer`` (a reranker) reading the combination as one passage, the chunks concatenated in
  order (the paper scores combinations with a reranker model); without a scorer it is the weighted
  share of the question's content words the combination covers, each word once however many chunks
  repeat it (IDF weights over the candidates), so redundancy earns nothing. The cost term makes
  utility non-monotonic in the number of chunks, as the paper's is.
- Search budget: ``iterations`` node evaluations per question (each one scorer call on one
  combination). Each iteration descends by UCT (``mean + exploration * sqrt(ln N / n)``) to a node
  with an untried child, evaluates that child and backs its utility up the path. The answer uses the
  best node evaluated (not necessarily a leaf: a shorter combination may beat its extensions).
  Deterministic: no random rollouts, ties go to retrieval order.

Costs: the scorer's tokens and seconds for every evaluation are the question's auxiliary cost (a
"search" stage; an LLM scorer's calls are charged as generator calls); the one answering call is
the effective context. Provenance: the chosen chunks in order, ``chunks_chosen``,
``nodes_evaluated``, ``utility``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from ragkit.constraints import Count, NonNegativeFloat, Tokens
from ragkit.generators.base import Generator
from ragkit.metrics import normalize_answer
from ragkit.registry import register
from ragkit.rerankers.base import Reranker
from ragkit.rerankers.order import by_score
from ragkit.strategies._common import answer_once
from ragkit.strategies.base import Record, Strategy, prompt_limit
from ragkit.strategies.context import pack
from ragkit.strategies.prompts import format_chunk, question_messages
from ragkit.strategies.retrieval import Retrieval
from ragkit.types import AuxUse, Chunk, Cost, Document, Example, Prediction, Scored, uses


def _terms(text: str) -> set[str]:
    """Content words: SQuAD-normalised tokens without scikit-learn's English stop words."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return set(normalize_answer(text).split()) - ENGLISH_STOP_WORDS


@dataclass
class _Node:
    chosen: tuple[int, ...]  # candidate indices, in prompt order
    tokens: int
    untried: list[int]
    utility: float = 0.0
    visits: int = 0
    total: float = 0.0
    children: list[_Node] = field(default_factory=list)


@dataclass
class _Search:
    record: Record
    candidates: list[Scored]
    block_tokens: list[int]
    overhead: int
    limit: int
    root: _Node
    weights: dict[str, float]
    best: _Node | None = None
    evaluated: int = 0
    use: AuxUse = field(default_factory=AuxUse)


@register("strategy", "corag")
class CORAG(Strategy):
    version = "1"
    theta: ClassVar = {"k": "chunks_chosen"}  # the chunks the search settled on (a measured mean)

    def __init__(
        self,
        *,
        retrieval: Retrieval,
        scorer: Reranker | None = None,
        iterations: Count = 32,
        exploration: NonNegativeFloat = 1.0,
        cost_weight: NonNegativeFloat = 0.1,
        max_chunks: Count | None = None,
        budget: Tokens | None = None,
        abstain: bool = False,
        max_new_tokens: Tokens | None = None,
    ) -> None:
        if iterations < 1:
            raise ValueError("corag: iterations must be >= 1")
        self.retrieval = retrieval
        self.scorer = scorer
        self.iterations = iterations
        self.exploration = exploration
        self.cost_weight = cost_weight
        self.max_chunks = max_chunks
        self.budget = budget
        self.abstain = abstain
        self.max_new_tokens = max_new_tokens

    def retrievers(self) -> list[Retrieval]:
        return [self.retrieval]

    # -- the tree -----------------------------------------------------------------------------
    def _children_of(self, search: _Search, chosen: tuple[int, ...], tokens: int) -> list[int]:
        """Candidates that may follow ``chosen`` within the limit and the depth cap."""
        if self.max_chunks is not None and len(chosen) >= self.max_chunks:
            return []
        return [
            i
            for i in range(len(search.candidates))
            if i not in chosen and tokens + search.block_tokens[i] <= search.limit
        ]

    def _select(self, search: _Search) -> tuple[list[_Node], _Node | None]:
        """The path from the root to the next node to evaluate (None: the tree is exhausted)."""
        node, path = search.root, [search.root]
        while True:
            if node.untried:
                i = node.untried.pop(0)
                chosen = (*node.chosen, i)
                tokens = node.tokens + search.block_tokens[i]
                child = _Node(chosen, tokens, self._children_of(search, chosen, tokens))
                node.children.append(child)
                return path, child
            if not node.children:
                return path, None
            log_n = math.log(max(node.visits, 1))
            node = max(
                node.children,
                key=lambda c: c.total / c.visits + self.exploration * math.sqrt(log_n / c.visits),
            )
            path.append(node)

    def _joint(self, search: _Search, chosen: tuple[int, ...]) -> float:
        """Coverage of the question's content words by the combination (the scorer-free utility)."""
        covered = set().union(*(_terms(search.candidates[i].chunk.text) for i in chosen))
        total = sum(search.weights.values())
        return sum(w for t, w in search.weights.items() if t in covered) / total if total else 0.0

    def _evaluate(self, searches: list[tuple[_Search, _Node]], generator: Generator) -> None:
        scores: list[float]
        if self.scorer is None:
            scores = [self._joint(s, node.chosen) for s, node in searches]
        else:
            passages = [[Scored(_combined(s.candidates, node.chosen), 0.0)] for s, node in searches]
            questions = [s.record.example.question for s, _ in searches]
            ranked = self.scorer.rerank(questions, passages, generator=generator)
            scores = [hits[0].score for hits in ranked]
            for (search, _), spent in zip(searches, uses(ranked), strict=True):
                search.use.tokens += spent.tokens
                search.use.seconds += spent.seconds
                search.use.generations += spent.generations
        for (search, node), joint in zip(searches, scores, strict=True):
            context = node.tokens - search.overhead  # what the chunks add to the prompt
            node.utility = joint - self.cost_weight * context / search.limit
            search.evaluated += 1
            if search.best is None or node.utility > search.best.utility:
                search.best = node

    def _search(self, records: Sequence[Record], generator: Generator, corpus) -> list[_Search]:
        limit = prompt_limit(generator, self.max_new_tokens, self.budget)
        searches = []
        for record, candidates in zip(
            records, self.retrieval.select(records, generator, corpus), strict=True
        ):
            question = record.example.question
            overhead = generator.prompt_tokens(question_messages(question, "x", abstain=self.abstain))
            blocks = [
                generator.count_tokens(format_chunk(i + 1, s.chunk)) + 2 for i, s in enumerate(candidates)
            ]
            words = [_terms(s.chunk.text) for s in candidates]
            weights = {
                t: math.log(1 + len(candidates) / (1 + sum(t in w for w in words))) for t in _terms(question)
            }
            search = _Search(record, candidates, blocks, overhead, limit, _Node((), overhead, []), weights)
            search.root.untried = self._children_of(search, (), overhead)
            searches.append(search)
        for _ in range(self.iterations):
            batch = []
            for search in searches:
                path, child = self._select(search)
                if child is not None:
                    batch.append((search, path, child))
            if not batch:
                break
            self._evaluate([(s, c) for s, _, c in batch], generator)
            for _, path, child in batch:
                for node in [*path, child]:
                    node.visits += 1
                    node.total += child.utility
        return searches

    # -- answering ----------------------------------------------------------------------------
    def _prepare(self, records: Sequence[Record], generator: Generator, corpus) -> list:
        prepared = []
        for search in self._search(records, generator, corpus):
            record, example = search.record, search.record.example
            chosen = search.best.chosen if search.best is not None else ()
            # the search's order is the prompt's order: rank it so the packer keeps it
            ordered = [
                Scored(search.candidates[i].chunk, float(len(chosen) - r)) for r, i in enumerate(chosen)
            ]
            record.stage("search", ordered, search.use, generator)
            packed = pack(
                generator,
                ordered,
                lambda docs, q=example.question: question_messages(q, docs, abstain=self.abstain),
                search.limit,
                order=by_score,
                evidence=example.evidence,
            )
            record.show(packed.context)
            record.provenance.measures.update(
                chunks_chosen=len(chosen),
                nodes_evaluated=search.evaluated,
                utility=search.best.utility if search.best is not None else None,
            )
            prepared.append(packed)
        return prepared

    def run(
        self,
        examples: Sequence[Example],
        generator: Generator,
        corpus: Sequence[Document] | None = None,
    ) -> list[Prediction]:
        records = [Record(e) for e in examples]
        prepared = self._prepare(records, generator, corpus)
        return answer_once(generator, records, [p.messages for p in prepared], self.max_new_tokens)

    def estimate(
        self,
        examples: Sequence[Example],
        generator: Generator,
        corpus: Sequence[Document] | None = None,
    ) -> list[Cost]:
        """Exact for the answering call (the search runs: it needs no generator unless the scorer is
        an LLM)."""
        max_new = self.max_new_tokens or generator.max_new_tokens
        records = [Record(e) for e in examples]
        prepared = self._prepare(records, generator, corpus)
        return [
            r.cost + Cost(input_tokens=p.prompt_tokens, output_tokens=max_new, calls=1)
            for r, p in zip(records, prepared, strict=True)
        ]


def _combined(candidates: Sequence[Scored], chosen: Sequence[int]) -> Chunk:
    """A combination as one passage for the scorer: the chunks' texts in order."""
    parts = [candidates[i].chunk for i in chosen]
    return Chunk(
        id="+".join(c.id for c in parts),
        doc_id=parts[0].doc_id if parts else "",
        text="\n".join(c.text for c in parts),
        position=parts[0].position if parts else 0,
    )
