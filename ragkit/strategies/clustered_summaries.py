"""Clustered summaries: CRAG, "Clustered Retrieved Augmented Generation" (Akesson & Santos, 2024,
arXiv 2406.00029; not Corrective RAG, which shares the acronym).

The paper puts three steps between retrieval and the answer, to cut the tokens the answering prompt
reads: embed the retrieved passages with a sentence-transformers model, group them with k-means,
summarise each group with the LLM, and answer from the summaries. Here, per question:

1. the retrieval setting's passages (retrieve, rerank, keep ``k``, prune: every RAG setting applies);
2. their embeddings (``embedder``: the packaged MiniLM by default, the dense retriever's model;
   title and text, as the dense retriever indexes them), k-means (scikit-learn, ``n_init`` 10, a
   fixed seed) into ``clusters`` groups, fewer when there are fewer distinct passages. Unset, the
   number is chosen per question by the elbow of the k-means inertia curve over 1..``max_clusters``
   (the point farthest below the chord from the first to the last inertia: a fixed rule, so runs
   repeat);
3. one summary call per cluster (its passages in the retrieval setting's order, at most
   ``summary_tokens`` out). ``focused`` summaries see the question and are asked to keep what may
   answer it; ``focused: false`` summarises without it, as summaries written ahead of any question
   would (the paper summarises clusters of product reviews for questions about them);
4. one answering call over the summaries, in RAG's prompt (the summaries are its documents, the
   cluster holding the best passage first), so the arms differ only in context.

Cost: every summary call and the answer are generator calls charged to the question, so the
effective context is the summarised passages plus every summary prompt's instructions plus the
answer prompt: CRAG reads more than RAG over the same passages; what it shortens is the prompt
the answer is generated from (each summary call reads one cluster only). The embedding is
an auxiliary stage (``cluster``: the embedder's tokens and seconds). ``budget`` caps all of it:
the answer's prompt with every summary at full length is reserved first, the rest is shared among
the summary calls (a cluster whose passages need less gives its room to the others; passages that
do not fit are cut and counted as dropped; clusters are dropped, last first, when the room left
cannot give each call 16 tokens of passage).

Provenance: the summary calls (role ``summary``) and the answer; ``context_ids`` are the passages
summarised (the answering prompt shows their summaries); measures ``clusters`` (summary calls),
``passages``, ``source_tokens`` (passage tokens the summaries read), ``summary_tokens`` (tokens
written), ``compression`` (1 - summary / source tokens), ``evidence_in_summaries`` (share of gold
evidence sentences verbatim in the summaries; None without gold evidence) and
``answer_in_summaries`` (a reference answer is in them: whether summarising lost it); details hold
each cluster's passage ids.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ragkit.constraints import Count, Device, Seed, Tokens
from ragkit.generators.base import GenerationRequest, Generator, Message
from ragkit.metrics import contains_answer
from ragkit.registry import register
from ragkit.rerankers.order import by_score
from ragkit.strategies._common import answer_once
from ragkit.strategies.base import Record, Strategy, prompt_limit
from ragkit.strategies.context import Packed, evidence_in, pack
from ragkit.strategies.prompts import format_documents, question_messages
from ragkit.strategies.retrieval import Retrieval
from ragkit.types import AuxUse, Chunk, Cost, Document, Example, Prediction, Scored

SUMMARY_SYSTEM = (
    "You summarise groups of related documents so that questions can be answered from the summaries alone."
)
FOCUSED = (
    "Documents:\n{documents}\n\nQuestion: {question}\nWrite a short summary of the documents above."
    " Keep every fact, name, number and date that may help answer the question; leave out the rest."
    "\nSummary:"
)
GENERIC = (
    "Documents:\n{documents}\n\nWrite a short summary of the documents above. Keep their main facts,"
    " names, numbers and dates.\nSummary:"
)
_EMBEDDERS: dict[tuple[str, str], Any] = {}
MIN_PASSAGE = 16  # a summary call with room for fewer passage tokens than this is not made


def elbow(inertia: Sequence[float]) -> int:
    """How many clusters (1-based) the elbow of a decreasing inertia curve picks: the point
    farthest below the straight line from the first point to the last, both axes scaled to [0, 1]
    (1 when the curve is a line or has under three points)."""
    if len(inertia) < 3 or inertia[0] <= inertia[-1]:
        return 1
    x = np.linspace(0.0, 1.0, len(inertia))
    y = (np.asarray(inertia) - inertia[-1]) / (inertia[0] - inertia[-1])
    below = (1.0 - x) - y  # the chord runs from (0, 1) to (1, 0)
    return int(np.argmax(below)) + 1 if below.max() > 1e-9 else 1


def kmeans(vectors: np.ndarray, clusters: int | None, max_clusters: int, seed: int) -> np.ndarray:
    """Cluster labels for ``vectors``, numbered by first appearance (rows come best passage first,
    so cluster 0 holds the best). Never more clusters than distinct vectors (k-means cannot fill
    more)."""
    from sklearn.cluster import KMeans

    n = len(vectors)
    distinct = len(np.unique(np.round(vectors, 6), axis=0)) if n else 0
    upper = min(distinct, clusters if clusters is not None else max_clusters)
    if upper <= 1:
        return np.zeros(n, dtype=int)

    def fit(c: int) -> Any:
        return KMeans(n_clusters=c, n_init=10, random_state=seed).fit(vectors)

    if clusters is not None:
        labels = fit(upper).labels_
    else:
        fits = [fit(c) for c in range(1, upper + 1)]
        labels = fits[elbow([f.inertia_ for f in fits]) - 1].labels_
    first: dict[int, int] = {}
    for label in labels:
        first.setdefault(int(label), len(first))
    return np.array([first[int(label)] for label in labels], dtype=int)


@dataclass
class _Question:
    record: Record
    groups: list[list[Scored]] = field(default_factory=list)  # clusters, best first
    packed: list[Packed] = field(default_factory=list)  # one summary prompt per cluster kept
    summaries: list[str] = field(default_factory=list)


@register("strategy", "clustered_summaries")
class ClusteredSummaries(Strategy):
    version = "1"
    # k passages go in; clusters + 1 generator calls per question (the summaries and the answer)
    theta: ClassVar = {"k": "strategy.retrieval.k", "calls": "clusters+1"}

    def __init__(
        self,
        *,
        retrieval: Retrieval,
        clusters: Count | None = 3,
        max_clusters: Count = 6,
        summary_tokens: Tokens = 64,
        focused: bool = True,
        embedder: str = "minilm",
        device: Device = "auto",
        seed: Seed = 0,
        budget: Tokens | None = None,
        abstain: bool = False,
        max_new_tokens: Tokens | None = None,
    ) -> None:
        self.retrieval = retrieval
        self.clusters = clusters
        self.max_clusters = max_clusters
        self.summary_tokens = summary_tokens
        self.focused = focused
        self.embedder = embedder
        self.device = device
        self.seed = seed
        self.budget = budget
        self.abstain = abstain
        self.max_new_tokens = max_new_tokens

    def retrievers(self) -> list[Retrieval]:
        return [self.retrieval]

    # -- prompts ------------------------------------------------------------------------------
    def summary_messages(self, documents: str, question: str) -> list[Message]:
        template = FOCUSED if self.focused else GENERIC
        user = template.format(documents=documents, question=question)
        return [{"role": "system", "content": SUMMARY_SYSTEM}, {"role": "user", "content": user}]

    def answer_messages(self, documents: str, question: str) -> list[Message]:
        return question_messages(question, documents, abstain=self.abstain)

    # -- clustering ---------------------------------------------------------------------------
    def _embedder(self) -> Any:
        # One model per (embedder, device) in the process: a sweep builds an instance per
        # configuration and each would load (and warm up) MiniLM again; encoding does not change it.
        key = (self.embedder, self.device)
        if key not in _EMBEDDERS:
            from ragkit.retrievers._embedder import load_embedder

            _EMBEDDERS[key], _ = load_embedder(self.embedder, self.device, "clustered_summaries")
        return _EMBEDDERS[key]

    def _cluster(
        self, records: Sequence[Record], selected: Sequence[list[Scored]]
    ) -> list[list[list[Scored]]]:
        """Each question's passages in clusters, best cluster first. The embedding is each
        question's ``cluster`` stage: one embedder call for the whole batch, its seconds shared
        in proportion to the tokens each question's passages took. (Not cached: ten passages take
        MiniLM a fraction of a second.)"""
        from ragkit.retrievers._common import indexed_text
        from ragkit.retrievers._embedder import embed

        ranked = [by_score(passages) for passages in selected]
        texts = [indexed_text(s.chunk) for passages in ranked for s in passages]
        if not texts:
            for record in records:
                record.stage("cluster", [], AuxUse())
            return [[] for _ in records]
        model = self._embedder()
        started = time.perf_counter()
        embedded = embed(model, [], texts, batch_size=64)
        seconds = time.perf_counter() - started
        total_tokens = sum(embedded.text_tokens) or 1
        out, start = [], 0
        for record, passages in zip(records, ranked, strict=True):
            end = start + len(passages)
            tokens = sum(embedded.text_tokens[start:end])
            labels = kmeans(embedded.texts[start:end], self.clusters, self.max_clusters, self.seed)
            record.stage("cluster", passages, AuxUse(tokens=tokens, seconds=seconds * tokens / total_tokens))
            groups: list[list[Scored]] = [[] for _ in range(int(labels.max()) + 1 if len(labels) else 0)]
            for item, label in zip(passages, labels, strict=True):
                groups[label].append(item)
            record.provenance.details["clusters"] = [[s.chunk.id for s in g] for g in groups]
            out.append(groups)
            start = end
        return out

    # -- budget -------------------------------------------------------------------------------
    def _answer_reserve(self, generator: Generator, question: str, n: int) -> int:
        """The answering prompt's tokens with ``n`` summaries at full length (and a little slack:
        a real tokenizer may count a written summary a token or two above its generated length)."""
        full = "x " * self.summary_tokens
        chunks = [Chunk(id=str(i), doc_id=str(i), text=full, title="", position=i) for i in range(n)]
        return generator.prompt_tokens(self.answer_messages(format_documents(chunks), question)) + 2 * n

    def _plan(self, generator: Generator, question: _Question) -> None:
        """Pack each cluster's summary prompt within the window and the question's budget."""
        example = question.record.example
        window = generator.input_limit(self.summary_tokens)
        groups = question.groups
        while groups:
            limits = self._limits(generator, example.question, groups, window)
            if limits is not None:
                break
            groups = groups[:-1]  # no room for every call: drop the last-ranked cluster
        else:
            limits = []
        question.groups = groups
        question.packed = [
            pack(
                generator,
                group,
                lambda docs: self.summary_messages(docs, example.question),
                limit,
                order=self.retrieval.ordered,
                evidence=example.evidence,
            )
            for group, limit in zip(groups, limits, strict=True)
        ]

    def _limits(
        self, generator: Generator, question: str, groups: list[list[Scored]], window: int
    ) -> list[int] | None:
        """Each summary prompt's token limit: the window, and under a budget a share of what the
        answer leaves (water-filling: a cluster needing less than an equal share gives the rest to
        the others); None when some call would get under MIN_PASSAGE tokens of passage."""
        overhead = generator.prompt_tokens(self.summary_messages("", question))
        if self.budget is None:
            return [window] * len(groups) if window - overhead >= MIN_PASSAGE else None
        room = self.budget - self._answer_reserve(generator, question, len(groups))
        if room - len(groups) * overhead < MIN_PASSAGE * len(groups):
            return None
        need = [generator.prompt_tokens(self.summary_messages(_documents(g), question)) for g in groups]
        limits = [0] * len(groups)
        left = len(groups)
        for i in sorted(range(len(groups)), key=lambda j: need[j]):
            limits[i] = min(need[i], window, room // left)
            room -= limits[i]
            left -= 1
        return limits

    # -- running ------------------------------------------------------------------------------
    def _prepare(
        self, examples: Sequence[Example], generator: Generator, corpus: Sequence[Document] | None
    ) -> list[_Question]:
        questions = [_Question(Record(e)) for e in examples]
        records = [q.record for q in questions]
        selected = self.retrieval.select(records, generator, corpus)
        for question, groups in zip(questions, self._cluster(records, selected), strict=True):
            question.groups = groups
            self._plan(generator, question)
        return questions

    def run(
        self,
        examples: Sequence[Example],
        generator: Generator,
        corpus: Sequence[Document] | None = None,
    ) -> list[Prediction]:
        questions = self._prepare(examples, generator, corpus)
        asking = [(q, p) for q in questions for p in q.packed]
        requests = [GenerationRequest(p.messages, max_new_tokens=self.summary_tokens) for _, p in asking]
        for (question, _), request, generation in zip(
            asking, requests, generator.generate(requests), strict=True
        ):
            text = question.record.call(generation, generator, role="summary", request=request)
            question.summaries.append(text.strip())
        messages = [self._answer_prompt(generator, q) for q in questions]
        predictions = answer_once(generator, [q.record for q in questions], messages, self.max_new_tokens)
        for question, prediction in zip(questions, predictions, strict=True):
            self._measure(generator, question, prediction)
        return predictions

    def _answer_prompt(self, generator: Generator, question: _Question) -> list[Message]:
        """The summaries as the answering prompt's documents, best cluster first, within what the
        budget leaves after the summary calls (and the window)."""
        record = question.record
        limit = prompt_limit(generator, self.max_new_tokens, None)
        if self.budget is not None:
            limit = min(limit, self.budget - record.cost.input_tokens)
        summaries = [
            Scored(
                Chunk(id=f"{record.example.id}#summary{i}", doc_id="", text=text, title="", position=i),
                float(len(question.summaries) - i),
            )
            for i, text in enumerate(question.summaries)
        ]
        packed = pack(
            generator,
            summaries,
            lambda docs: self.answer_messages(docs, record.example.question),
            limit,
            order=by_score,
            evidence=record.example.evidence,
        )
        record.show(packed.context)
        record.provenance.context_ids = [s.chunk.id for p in question.packed for s in p.context.chunks]
        return packed.messages

    def _measure(self, generator: Generator, question: _Question, prediction: Prediction) -> None:
        example, provenance = question.record.example, prediction.provenance
        source = sum(p.context.tokens for p in question.packed)
        written = sum(generator.count_tokens(s) for s in question.summaries)
        provenance.dropped_tokens += sum(p.context.dropped_tokens for p in question.packed)
        provenance.measures.update(
            clusters=len(question.packed),
            passages=sum(len(g) for g in question.groups),
            source_tokens=source,
            summary_tokens=written,
            compression=(1 - written / source) if source else 0.0,
            evidence_in_summaries=evidence_in(example.evidence, question.summaries),
            answer_in_summaries=(
                contains_answer("\n".join(question.summaries), example.answers) if example.answers else None
            ),
        )

    def estimate(
        self,
        examples: Sequence[Example],
        generator: Generator,
        corpus: Sequence[Document] | None = None,
    ) -> list[Cost]:
        """An upper bound: retrieval and clustering run (no generator call), every summary is
        full-length; capped by ``budget``."""
        max_new = self.max_new_tokens or generator.max_new_tokens
        out = []
        for question in self._prepare(examples, generator, corpus):
            n = len(question.packed)
            prompt = question.record.example.question
            total = sum(p.prompt_tokens for p in question.packed) + self._answer_reserve(generator, prompt, n)
            if self.budget is not None:
                total = min(total, self.budget)
            out.append(
                question.record.cost
                + Cost(input_tokens=total, output_tokens=n * self.summary_tokens + max_new, calls=n + 1)
            )
        return out


def _documents(group: Sequence[Scored]) -> str:
    return format_documents([s.chunk for s in group])
