"""Plain data types that flow between stages.

Every stage takes and returns these; none of them knows which concrete component produced it.
They are dataclasses (not pydantic models) because they are created by the million in hot loops
and only need to be cheap and serialisable with :func:`to_dict` / ``from_dict``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any


def stable_hash(obj: Any, length: int = 16) -> str:
    """Hash of a JSON-serialisable object, independent of dict order (the basis of cache keys)."""
    blob = json.dumps(obj, sort_keys=True, default=str, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:length]


@dataclass(frozen=True)
class Evidence:
    """One piece of gold evidence: a sentence (or passage) of a document that supports the answer."""

    doc_id: str
    text: str
    sentence: int | None = None  # index of the sentence inside the document, when known


@dataclass(frozen=True)
class Document:
    """A source document. ``sentences`` is filled when the dataset ships its own sentence split
    (HotpotQA does); chunkers and pruners use it instead of re-splitting."""

    id: str
    text: str
    title: str = ""
    sentences: tuple[str, ...] = ()


@dataclass
class Example:
    """One question with its references and either its own documents or a shared corpus."""

    id: str
    question: str
    answers: list[str]
    documents: list[Document] = field(default_factory=list)  # empty => shared corpus retrieval
    evidence: list[Evidence] = field(default_factory=list)
    answerable: bool = True
    meta: dict[str, Any] = field(default_factory=dict)  # type, level, source file, haystack depth...


@dataclass(frozen=True)
class Chunk:
    """A retrievable unit cut from a document. ``position`` is its index in the original
    document order of its corpus, used by order-preserving packing and full-context runs."""

    id: str
    doc_id: str
    text: str
    title: str = ""
    position: int = 0
    meta: tuple[tuple[str, Any], ...] = ()  # immutable extras, e.g. (("sentence_offsets", ...),)


@dataclass(frozen=True)
class Corpus:
    """The chunks a retriever searches, with a fingerprint used for index and cache keys."""

    chunks: tuple[Chunk, ...]
    key: str

    @classmethod
    def from_chunks(cls, chunks: Sequence[Chunk]) -> Corpus:
        chunks = tuple(chunks)
        digest = stable_hash([(c.id, c.text) for c in chunks], length=24)
        return cls(chunks=chunks, key=digest)

    def __len__(self) -> int:
        return len(self.chunks)


@dataclass
class Scored:
    """A chunk with a score from the stage that produced it (higher is better)."""

    chunk: Chunk
    score: float


@dataclass
class Context:
    """What a strategy hands a generator: the chosen chunks, the text and what packing did."""

    chunks: list[Scored]
    text: str
    tokens: int
    dropped_tokens: int = 0  # tokens cut to fit a budget or window; recorded, never silent
    gold_survived: bool | None = None  # whether every gold evidence text is still in ``text``


@dataclass
class AuxUse:
    """What an auxiliary stage (retriever, reranker, pruner) spent on one query in one call,
    returned by the call itself: tokens its own models read, seconds, and any generator calls it
    made (a listwise LLM reranker), which are charged to the question like the strategy's own.
    Cached results carry the cost of their original computation, so a configuration's cost does
    not depend on what ran before it."""

    tokens: int = 0
    seconds: float = 0.0
    generations: list[Any] = field(default_factory=list)  # ragkit.generators.base.Generation
    requests: list[Any] = field(default_factory=list)  # ... and the GenerationRequest of each


class Batch(list):  # type: ignore[type-arg]
    """The per-query results of one stage call (a ``list`` of them, so callers that only want the
    results index it as before) with ``use``: what the call cost per query (:class:`AuxUse`).
    Retrievers, rerankers and pruners return one; :func:`uses` reads it back."""

    def __init__(self, results: Sequence[Any] = (), use: Sequence[AuxUse] | None = None) -> None:
        super().__init__(results)
        self.use: list[AuxUse] = list(use) if use is not None else [AuxUse() for _ in self]
        if len(self.use) != len(self):
            raise ValueError(f"{len(self.use)} uses for {len(self)} results")


def uses(results: Sequence[Any]) -> list[AuxUse]:
    """Per-query cost of a stage call's results: its :class:`Batch` ``use``, or zeros for a plain
    list (a component that runs no model)."""
    use = getattr(results, "use", None)
    return list(use) if use is not None else [AuxUse() for _ in results]


def split_evenly(total: int, n: int) -> list[int]:
    """``total`` tokens shared by ``n`` queries of one batched call, summing exactly to ``total``
    (the first ``total % n`` get one more), so no token is lost to rounding."""
    share, extra = divmod(total, n)
    return [share + (1 if i < extra else 0) for i in range(n)]


@dataclass
class Cost:
    """What answering one question cost. ``input_tokens`` summed over all generator calls is the
    *effective context length*, the budget axis of "Inference Scaling for Long-Context RAG".
    ``prefill_tokens_computed`` is what the engine really ran through the model: fewer when a
    prefix shared with other questions (the same documents) was computed once and reused. It is a
    cost column beside the budget axis, never the axis itself: the paper's budget counts what the
    model reads, and a question's reuse depends on which other questions ran with it."""

    input_tokens: int = 0
    output_tokens: int = 0
    calls: int = 0
    prefill_tokens_computed: int = 0
    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0
    aux_tokens: int = 0  # tokens read by auxiliary models: embedder, reranker, pruner, judge
    aux_seconds: float = 0.0
    flops: float = 0.0
    dollars: float = 0.0

    @property
    def effective_context_tokens(self) -> int:
        return self.input_tokens

    @property
    def seconds(self) -> float:
        return self.prefill_seconds + self.decode_seconds + self.aux_seconds

    def __add__(self, other: Cost) -> Cost:
        return Cost(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    def to_dict(self) -> dict[str, float]:
        out: dict[str, float] = asdict(self)
        out["effective_context_tokens"] = self.effective_context_tokens
        out["seconds"] = self.seconds
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Cost:
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        # Records written before prefix reuse existed computed every input token.
        values.setdefault("prefill_tokens_computed", values.get("input_tokens", 0))
        return cls(**values)


@dataclass
class Call:
    """One generator call made for a question: what it read and wrote, and in which role."""

    role: str  # "answer", "step", "worker", "manager", "extract", "rerank", ...
    input_tokens: int
    output_tokens: int
    seconds: float = 0.0  # prefill and decode
    cached: bool = False
    truncated_tokens: int = 0  # prompt tokens the generator itself had to cut
    output: str = ""
    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0
    messages: list[dict[str, str]] = field(default_factory=list)  # the prompt, long contents clipped


@dataclass
class Stage:
    """One auxiliary stage's work for a question (retrieve, rerank, prune, or a strategy's own):
    the chunk ids it passed on, best first, with their scores, and what its models read."""

    name: str
    ids: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    tokens: int = 0
    seconds: float = 0.0


_PROVENANCE_SCALARS = ("raw_answer", "context_ids", "context_tokens", "dropped_tokens", "gold_survived")


@dataclass
class Provenance:
    """What a strategy did for one question. The typed fields are what every strategy fills and
    what metrics, reports and traces read; ``measures`` are a strategy's own per-question numbers
    (pruning compression, IterDRAG's rounds, whether Self-Route routed), which become score columns
    and configuration means; ``details`` holds the rest of its record (demonstration ids,
    sub-queries, nested steps) as JSON."""

    raw_answer: str = ""
    context_ids: list[str] = field(default_factory=list)  # the chunks the answering prompt showed
    context_tokens: int | None = None  # tokens of that context (None: not measured)
    dropped_tokens: int = 0  # tokens cut to fit a budget or window; recorded, never silent
    gold_survived: bool | None = None  # every gold evidence text still in the context shown
    evidence_recall: float | None = None  # share of gold evidence in what the strategy selected
    stages: list[Stage] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    measures: dict[str, float | int | bool | None] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def cached(self) -> bool:
        """Whether every generator call was a cache hit (False when none was made)."""
        return bool(self.calls) and all(c.cached for c in self.calls)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Provenance:
        """Typed provenance, or the string-keyed dict of runs written before it was typed (the five
        keys every strategy wrote become fields, numbers become measures, the rest details)."""
        if "stages" in data or "calls" in data or "measures" in data:
            return cls(
                **{k: data[k] for k in (*_PROVENANCE_SCALARS, "evidence_recall") if k in data},
                stages=[Stage(**s) for s in data.get("stages", [])],
                calls=[Call(**c) for c in data.get("calls", [])],
                measures=dict(data.get("measures", {})),
                details=dict(data.get("details", {})),
            )
        old = dict(data)
        out = cls(**{k: old.pop(k) for k in _PROVENANCE_SCALARS if k in old and old[k] is not None})
        out.evidence_recall = old.pop("evidence_recall", None)
        old.pop("cached", None)
        for key, value in old.items():
            if isinstance(value, bool | int | float):
                out.measures[key] = float(value)
            else:
                out.details[key] = value
        return out


@dataclass
class Prediction:
    """A strategy's answer to one example, with its cost and what each stage did (provenance)."""

    example_id: str
    answer: str
    cost: Cost = field(default_factory=Cost)
    provenance: Provenance = field(default_factory=Provenance)

    def to_dict(self) -> dict[str, Any]:
        return {
            "example_id": self.example_id,
            "answer": self.answer,
            "cost": self.cost.to_dict(),
            "provenance": self.provenance.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Prediction:
        return cls(
            example_id=data["example_id"],
            answer=data["answer"],
            cost=Cost.from_dict(data.get("cost", {})),
            provenance=Provenance.from_dict(data.get("provenance") or {}),
        )
