"""Demonstrations recycled from the question's own context (Cattan et al., 2024, "Can Few-shot
Work in Long-Context? Recycling the Context to Generate Demonstrations", arXiv 2406.13632, later
titled "DoubleDipper").

DRAG's demonstrations are other questions, each with its own retrieved documents, so every shot
costs a context. Here the ``m`` demonstrations are written from the passages the question itself
is shown: for each of ``m`` of its passages (picked in a seeded hash order, the paper's random
choice made reproducible), one generator call writes a question answerable from that passage and
its answer (a model that writes only the question gets a second call that answers it from the
passage with RAG's prompt: SmolLM2-135M rarely writes both). The prompt then shows the documents
once, the demonstrations as question/answer turns whose answers first point to the passage they
came from ("Document [2]. Answer: ..."; the paper's explicit pointing to the relevant paragraph),
and the question, which the model answers the same way. The demonstrations add only a question
and an answer each; the calls that write them are the price, charged to the question (role
"demo").

Budget (effective context tokens per question, all calls): the demonstration-writing calls come
first (sources are dropped, last first, while writing them would leave less than the answer prompt
with the best passage alone); the answer prompt then gets what is left: demonstrations are dropped
(last first) while even the prompt without passages does not fit, then RAG's packer cuts passages.
Provenance: the demonstrations (source passage, question, answer), ``demos`` (kept),
``demos_failed`` (outputs without a question and an answer) and ``pointed_to_gold`` (whether the
passage the answer points to holds gold evidence: the attribution the paper adds).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from ragkit.constraints import NonNegativeInt, Seed, Tokens
from ragkit.generators.base import GenerationRequest, Generator, Message
from ragkit.registry import register
from ragkit.rerankers.order import by_score
from ragkit.strategies._common import answer_once
from ragkit.strategies.base import Record, Strategy, prompt_limit
from ragkit.strategies.context import Packed, pack
from ragkit.strategies.prompts import SYSTEM, clean_answer, format_chunk, question_messages
from ragkit.strategies.retrieval import Retrieval
from ragkit.types import Chunk, Cost, Document, Example, Prediction, Scored, stable_hash

WRITE_SYSTEM = "You write quiz questions about a text."
WRITE = (
    "Document: {passage}\n\nWrite one question that this document answers with a short phrase, and"
    " its answer, in this form:\nQuestion: <question>\nAnswer: <a few words from the document>"
)
POINT = " First name the document that holds the answer, as in 'Document [2]. Answer: <answer>'."
_QA = re.compile(r"question\s*:\s*(?P<q>.+?)\s*answer\s*:\s*(?P<a>[^\n]+)", flags=re.IGNORECASE | re.DOTALL)
_POINTER = re.compile(r"document\s*\[(\d+)\]", flags=re.IGNORECASE)
_ANSWER = re.compile(r"answer\s*:\s*(.+)", flags=re.IGNORECASE | re.DOTALL)
_QUESTION = re.compile(r"^\s*(?:\d+[.)]\s*)?question\s*:\s*", flags=re.IGNORECASE)


@dataclass
class Demo:
    source: int  # 1-based index of the passage in the prompt's documents
    chunk_id: str
    question: str
    answer: str


def parse_demo(text: str) -> tuple[str, str | None] | None:
    """(question, answer) from a written demonstration; (question, None) when the model wrote only
    a question (a line ending in "?"); None when it wrote neither."""
    found = _QA.search(text)
    if found:
        question = " ".join(found["q"].split())
        answer = found["a"].strip().split("\n")[0].strip()
        if question and answer:
            return question, answer
    for line in text.splitlines():
        line = _QUESTION.sub("", line).strip()
        if line.endswith("?") and len(line.split()) >= 3:
            return line, None
    return None


def final_answer(text: str) -> str:
    """The answer after "Answer:" when the model followed the demonstrations' form."""
    found = _ANSWER.search(text)
    return found.group(1) if found else text


@register("strategy", "recycled")
class RecycledDemonstrations(Strategy):
    version = "1"
    theta: ClassVar = {"k": "strategy.retrieval.k", "m": "strategy.m"}

    def __init__(
        self,
        *,
        retrieval: Retrieval,
        m: NonNegativeInt = 2,
        demo_tokens: Tokens = 48,
        seed: Seed = 0,
        budget: Tokens | None = None,
        max_new_tokens: Tokens | None = None,
    ) -> None:
        if m < 0:
            raise ValueError("recycled: m must be >= 0")
        self.retrieval = retrieval
        self.m = m
        self.demo_tokens = demo_tokens
        self.seed = seed
        self.budget = budget
        self.max_new_tokens = max_new_tokens

    def retrievers(self) -> list[Retrieval]:
        return [self.retrieval]

    # -- prompts ------------------------------------------------------------------------------
    @staticmethod
    def write_messages(passage: str) -> list[Message]:
        return [
            {"role": "system", "content": WRITE_SYSTEM},
            {"role": "user", "content": WRITE.format(passage=passage)},
        ]

    @staticmethod
    def messages(demos: Sequence[Demo], question: str, documents: str) -> list[Message]:
        """The documents once, with the first question; then each question in turn (closed book,
        as RAG's, when there are neither documents nor demonstrations)."""
        if not documents and not demos:
            return question_messages(question, "")
        asked = [
            *((d.question, f"Document [{d.source}]. Answer: {d.answer}") for d in demos),
            (question, None),
        ]
        turns: list[Message] = [{"role": "system", "content": SYSTEM + POINT}]
        for i, (q, a) in enumerate(asked):
            user = f"Documents:\n{documents}\n\nQuestion: {q}" if i == 0 else f"Question: {q}"
            turns.append({"role": "user", "content": user})
            if a is not None:
                turns.append({"role": "assistant", "content": a})
        return turns

    # -- running ------------------------------------------------------------------------------
    def _writing_tokens(self, generator: Generator, passage: Chunk) -> int:
        """What writing one demonstration can cost: the question call, and the answering call a
        model that wrote only the question gets (its question at full length)."""
        question = generator.prompt_tokens(self.write_messages(passage.text))
        filler = "x " * self.demo_tokens
        return question + generator.prompt_tokens(question_messages(filler, format_chunk(1, passage)))

    def _sources(self, generator: Generator, record: Record, passages: list[Scored]) -> list[int]:
        """Which passages (0-based, best first) get a demonstration: ``m`` of them in seeded hash
        order, fewer where the budget cannot pay for writing them."""
        order = sorted(range(len(passages)), key=lambda i: stable_hash([self.seed, passages[i].chunk.id]))
        chosen = order[: self.m]
        if self.budget is None or not passages:
            return chosen
        floor = generator.prompt_tokens(
            self.messages([], record.example.question, format_chunk(1, passages[0].chunk))
        )
        while (
            chosen
            and sum(self._writing_tokens(generator, passages[i].chunk) for i in chosen) + floor > self.budget
        ):
            chosen.pop()
        return chosen

    def _write(self, generator: Generator, records: Sequence[Record], selected: list[list[Scored]]):
        """Write every question's demonstrations, batched: one call writes a question and its answer;
        a question written without an answer gets a second call that answers it from its passage
        (RAG's prompt over that one passage; a small model rarely writes both)."""
        plans = [
            (r, passages[i].chunk, i + 1)
            for r, passages in zip(records, selected, strict=True)
            for i in self._sources(generator, r, passages)
        ]
        requests = [
            GenerationRequest(self.write_messages(c.text), max_new_tokens=self.demo_tokens)
            for _, c, _ in plans
        ]
        written: list[tuple[Record, Chunk, int, str, str | None]] = []
        for (record, chunk, source), request, generation in zip(
            plans, requests, generator.generate(requests), strict=True
        ):
            parsed = parse_demo(record.call(generation, generator, role="demo", request=request))
            if parsed is None:
                measures = record.provenance.measures
                measures["demos_failed"] = measures.get("demos_failed", 0) + 1
            else:
                written.append((record, chunk, source, *parsed))
        unanswered = [w for w in written if w[4] is None]
        requests = [
            GenerationRequest(question_messages(q, format_chunk(1, c)), max_new_tokens=self.demo_tokens)
            for _, c, _, q, _ in unanswered
        ]
        answers = {}
        for item, request, generation in zip(unanswered, requests, generator.generate(requests), strict=True):
            answers[id(item)] = clean_answer(
                item[0].call(generation, generator, role="demo", request=request)
            )
        demos: dict[int, list[Demo]] = {id(r): [] for r in records}
        for item in written:
            record, chunk, source, question, answer = item
            answer = answer if answer is not None else answers[id(item)]
            if answer:
                demos[id(record)].append(Demo(source, chunk.id, question, answer))
            else:
                record.provenance.measures["demos_failed"] = (
                    record.provenance.measures.get("demos_failed", 0) + 1
                )
        return [demos[id(r)] for r in records]

    def _answer_prompt(
        self, generator: Generator, record: Record, passages: list[Scored], demos: list[Demo]
    ) -> Packed:
        question, evidence = record.example.question, record.example.evidence
        left = None if self.budget is None else self.budget - record.cost.input_tokens  # after writing
        limit = prompt_limit(generator, self.max_new_tokens, left)
        kept = list(demos)
        while kept and generator.prompt_tokens(self.messages(kept, question, "")) > limit:
            kept.pop()
        # the passages keep their retrieval order, so a demonstration's pointer stays right
        ranked = [Scored(s.chunk, float(len(passages) - r)) for r, s in enumerate(passages)]

        def pack_with(shots: list[Demo]) -> Packed:
            return pack(
                generator,
                ranked,
                lambda docs: self.messages(shots, question, docs),
                limit,
                order=by_score,
                evidence=evidence,
            )

        packed = pack_with(kept)
        shown = {s.chunk.id for s in packed.context.chunks}
        if any(d.chunk_id not in shown for d in kept):  # a pointer to a cut passage would mislead
            kept = [d for d in kept if d.chunk_id in shown]
            packed = pack_with(kept)
        record.provenance.details["demonstrations"] = [vars(d) for d in kept]
        record.provenance.measures["demos"] = len(kept)
        return packed

    def _prepare(self, records: Sequence[Record], generator: Generator, corpus) -> list[Packed]:
        selected = self.retrieval.select(records, generator, corpus)
        demos = self._write(generator, records, selected)
        out = []
        for record, passages, own in zip(records, selected, demos, strict=True):
            packed = self._answer_prompt(generator, record, passages, own)
            record.show(packed.context)
            out.append(packed)
        return out

    def run(
        self,
        examples: Sequence[Example],
        generator: Generator,
        corpus: Sequence[Document] | None = None,
    ) -> list[Prediction]:
        records = [Record(e) for e in examples]
        prepared = self._prepare(records, generator, corpus)
        predictions = answer_once(generator, records, [p.messages for p in prepared], self.max_new_tokens)
        for record, prediction, packed in zip(records, predictions, prepared, strict=True):
            raw = prediction.provenance.raw_answer
            if _ANSWER.search(raw):  # "Document [2]. Answer: Paris" -> "Paris"
                prediction.answer = clean_answer(final_answer(raw))
            pointer = _POINTER.search(raw)
            shown = packed.context.chunks
            gold = {e.doc_id for e in record.example.evidence}
            if pointer and gold and 1 <= int(pointer.group(1)) <= len(shown):
                pointed = shown[int(pointer.group(1)) - 1].chunk.doc_id
                prediction.provenance.measures["pointed_to_gold"] = pointed in gold
        return predictions

    def estimate(
        self,
        examples: Sequence[Example],
        generator: Generator,
        corpus: Sequence[Document] | None = None,
    ) -> list[Cost]:
        """An upper bound: every demonstration takes both writing calls (the answer prompt assumes
        full-length demonstrations); capped by ``budget``."""
        max_new = self.max_new_tokens or generator.max_new_tokens
        records = [Record(e) for e in examples]
        out = []
        for record, passages in zip(records, self.retrieval.select(records, generator, corpus), strict=True):
            sources = self._sources(generator, record, passages)
            writing = sum(self._writing_tokens(generator, passages[i].chunk) for i in sources)
            filler = [Demo(i + 1, passages[i].chunk.id, "x " * (self.demo_tokens // 2), "x") for i in sources]
            documents = "\n\n".join(format_chunk(i + 1, s.chunk) for i, s in enumerate(passages))
            answer = generator.prompt_tokens(self.messages(filler, record.example.question, documents))
            total = writing + answer if self.budget is None else min(writing + answer, self.budget)
            out.append(
                record.cost
                + Cost(
                    input_tokens=total,
                    output_tokens=2 * self.demo_tokens * len(sources) + max_new,
                    calls=2 * len(sources) + 1,
                )
            )
        return out
