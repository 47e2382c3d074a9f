"""ALR² retrieve-then-reason (Li et al., 2024, "ALR²: A Retrieve-then-Reason Framework for
Long-context Question Answering", arXiv 2410.03227).

The generator itself is the retriever: a first call reads the question's whole context (fitted to
the window like full context, cut from the middle by default) and copies out the sentences needed
to answer; a second call reasons over those sentences alone and answers. The paper *aligns* the
model to both steps by fine-tuning; ragkit runs the same two steps by prompting the generator as
it is (the paper's retrieve-then-reason prompting), so the gap between a small model's extraction
and the gold evidence is what the measures show:

- ``extraction_recall``: the share of gold evidence sentences the extraction recovered (a sentence
  counts when at least 80% of its SQuAD-normalised words are in the extraction; a small model
  rarely copies word for word). Only where the dataset has gold evidence (HotpotQA does).
- ``extraction_grounded``: the share of extracted lines (of three words or more) that occur
  verbatim (normalised) in the context: the paper's "retrieval hallucination" is 1 minus this.
- ``extracted_tokens``: the length of the extraction.

Cost: both calls count towards the effective context (the whole context once, then the short
reasoning prompt). ``budget`` caps the sum: the first call's context is fitted to the budget less
the room the second call needs (its instructions and a full-length extraction); the extraction is
cut if the second call would still exceed it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import ClassVar, Literal

from ragkit.constraints import Tokens
from ragkit.generators.base import GenerationRequest, Generator, Message
from ragkit.metrics import normalize_answer
from ragkit.registry import register
from ragkit.strategies.base import Record, Strategy
from ragkit.strategies.context import fit_context
from ragkit.strategies.prompts import SYSTEM, clean_answer
from ragkit.types import Cost, Document, Evidence, Example, Prediction

EXTRACT_SYSTEM = "You find the sentences in the documents that are needed to answer a question."
EXTRACT = (
    "Documents:\n{documents}\n\nQuestion: {question}\nCopy, word for word, the sentences from the"
    " documents that are needed to answer the question, one per line. Do not answer the question"
    " yet.\nRelevant sentences:"
)
REASON = "Relevant sentences:\n{evidence}\n\nQuestion: {question}\nAnswer (a few words only):"
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s*")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
RECALLED = 0.8  # share of a gold sentence's words an extraction must hold for it to count


def extraction_recall(evidence: Sequence[Evidence], extraction: str) -> float | None:
    if not evidence:
        return None
    words = set(normalize_answer(extraction).split())
    found = 0
    for item in evidence:
        gold = normalize_answer(item.text).split()
        found += bool(gold) and sum(w in words for w in gold) / len(gold) >= RECALLED
    return found / len(evidence)


def extracted_lines(text: str) -> list[str]:
    """The extraction's sentences: one per line as asked, and split at sentence ends too (a small
    model often runs them together), bullets and numbering dropped."""
    pieces = (p for raw in text.splitlines() for p in _SENTENCE_END.split(raw))
    return [line for piece in pieces if (line := _BULLET.sub("", piece).strip())]


def grounded(lines: Sequence[str], context: str) -> float | None:
    """Share of extracted lines of three words or more that occur verbatim in the context."""
    normal = normalize_answer(context)
    checked = [n for n in (normalize_answer(line) for line in lines) if len(n.split()) >= 3]
    return sum(n in normal for n in checked) / len(checked) if checked else None


@register("strategy", "alr2")
class ALR2(Strategy):
    version = "2"  # 2: a cut context no longer depends on the question's length (prefix reuse)
    theta: ClassVar = {"k": "n_documents"}  # it reads every document, as full context does

    def __init__(
        self,
        *,
        evidence_tokens: Tokens = 128,
        truncation: Literal["middle", "end", "start"] = "middle",
        budget: Tokens | None = None,
        max_new_tokens: Tokens | None = None,
    ) -> None:
        self.evidence_tokens = evidence_tokens
        self.truncation = truncation
        self.budget = budget
        self.max_new_tokens = max_new_tokens

    @staticmethod
    def extract_messages(documents: str, question: str) -> list[Message]:
        user = EXTRACT.format(documents=documents, question=question)
        return [{"role": "system", "content": EXTRACT_SYSTEM}, {"role": "user", "content": user}]

    @staticmethod
    def reason_messages(evidence: str, question: str) -> list[Message]:
        user = REASON.format(evidence=evidence or "(none)", question=question)
        return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]

    def _extract_prompt(self, record: Record, generator: Generator, corpus) -> tuple[list[Message], int]:
        question = record.example.question
        limit = generator.input_limit(self.evidence_tokens)
        if self.budget is not None:
            reserve = generator.prompt_tokens(self.reason_messages("x " * self.evidence_tokens, question)) + 8
            limit = min(limit, self.budget - reserve)
        return fit_context(
            record,
            generator,
            corpus,
            lambda docs: self.extract_messages(docs, question),
            limit,
            self.truncation,
        )

    def _reason_input(self, record: Record, generator: Generator, evidence: str) -> str:
        """The extraction, cut at the end if the reasoning call would exceed the budget."""
        if self.budget is None:
            return evidence
        question = record.example.question
        limit = self.budget - record.cost.input_tokens
        ids = generator.tokenizer.encode(evidence)
        keep = len(ids)
        text = evidence
        while keep > 0 and generator.prompt_tokens(self.reason_messages(text, question)) > limit:
            keep -= max(1, generator.prompt_tokens(self.reason_messages(text, question)) - limit)
            text = generator.tokenizer.decode(ids[: max(keep, 0)])
        return text if keep > 0 else ""

    def run(
        self,
        examples: Sequence[Example],
        generator: Generator,
        corpus: Sequence[Document] | None = None,
    ) -> list[Prediction]:
        records = [Record(e) for e in examples]
        prompts = [self._extract_prompt(r, generator, corpus) for r in records]
        requests = [GenerationRequest(m, max_new_tokens=self.evidence_tokens) for m, _ in prompts]
        extractions = []
        for record, (messages, _), request, generation in zip(
            records, prompts, requests, generator.generate(requests), strict=True
        ):
            text = record.call(generation, generator, role="extract", request=request)
            lines = extracted_lines(text)
            evidence = "\n".join(lines)
            context = messages[-1]["content"]
            record.provenance.measures.update(
                extraction_recall=extraction_recall(record.example.evidence, evidence),
                extraction_grounded=grounded(lines, context),
                extracted_tokens=generator.count_tokens(evidence),
            )
            record.provenance.details["extraction"] = lines
            extractions.append(self._reason_input(record, generator, evidence))
        requests = [
            GenerationRequest(self.reason_messages(e, r.example.question), max_new_tokens=self.max_new_tokens)
            for r, e in zip(records, extractions, strict=True)
        ]
        out = []
        for record, request, generation in zip(records, requests, generator.generate(requests), strict=True):
            record.provenance.raw_answer = record.call(generation, generator, role="reason", request=request)
            out.append(record.prediction(clean_answer(generation.text)))
        return out

    def estimate(
        self,
        examples: Sequence[Example],
        generator: Generator,
        corpus: Sequence[Document] | None = None,
    ) -> list[Cost]:
        """An upper bound: the extraction is full length; capped by ``budget``."""
        max_new = self.max_new_tokens or generator.max_new_tokens
        out = []
        for example in examples:
            record = Record(example)
            _, first = self._extract_prompt(record, generator, corpus)
            second = generator.prompt_tokens(
                self.reason_messages("x " * self.evidence_tokens, example.question)
            )
            total = first + second if self.budget is None else min(first + second, self.budget)
            out.append(Cost(input_tokens=total, output_tokens=self.evidence_tokens + max_new, calls=2))
        return out
