"""Chain of Agents (Zhang et al., NeurIPS 2024, "Chain of Agents: Large Language Models
Collaborating on Long-Context Tasks", arXiv 2406.02818, §3 and Algorithm 1).

The question's whole context (its documents in original order, laid out as full context lays them
out) is split into chunks, each read by a *worker* call: worker ``i`` sees its chunk, the question
and the *communication unit* (CU) that worker ``i - 1`` wrote, and writes the next CU, a summary of
everything read so far that keeps the evidence for the question. A *manager* call answers from the
last CU alone. Every worker and the manager are calls of the run's generator, and each prompt
counts towards the question's effective context: about ``source + workers * (instructions + CU)
+ manager``, so CoA costs more than full context but no call reads more than one chunk.

Splitting (the paper fits each chunk to the worker's window, Algorithm 1): ``chunk_tokens`` cuts
the source into chunks of that many tokens (the number of workers follows from the length), or
``workers`` cuts it into that many equal chunks (the chunk size follows); with neither, a chunk is
as large as the worker's window allows (the paper's setting). Cuts fall on token boundaries, as in
the paper's budget-based split. Both are sweepable.

Budget (effective context tokens per question): before each worker call the strategy checks that
the call, plus the manager's call with a full-length CU, still fits; a worker that does not fit
gets its chunk cut to the room left (at least 16 tokens) or is not called, and the unread source
tokens are recorded as dropped. Workers of different questions run batched, one round per chunk
position. Provenance: every worker's and the manager's call (the CUs are the workers' outputs),
``workers`` (worker calls made), ``n_documents``, ``answer_in_summary`` (whether a reference
answer is still in the final CU: where the chain lost it) and the usual evidence checks on the
text the workers read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from ragkit.constraints import Count, Tokens
from ragkit.generators.base import GenerationRequest, Generator, Message
from ragkit.metrics import contains_answer
from ragkit.registry import register
from ragkit.strategies.base import Record, Strategy
from ragkit.strategies.context import evidence_in
from ragkit.strategies.prompts import SYSTEM, clean_answer, format_documents
from ragkit.types import Chunk, Cost, Document, Example, Prediction

WORKER_SYSTEM = "You read one part of a long text at a time and keep notes that help answer a question."
WORKER = (
    "{chunk}\n\n{previous}Question: {question}\n"
    "Read the current part of the text and the summary of the previous parts (if any), and write one"
    " summary of both. Other agents will answer the question from your summary alone, so keep every"
    " fact that may help answer it.\nSummary:"
)
PREVIOUS = "Summary of the previous parts of the text: {cu}\n\n"
MANAGER = (
    "The text was too long to read at once, so agents summarized it part by part. Answer from their"
    " summary.\nSummary: {cu}\n\nQuestion: {question}\nAnswer (a few words only):"
)
MIN_CUT = 16  # a chunk cut to fewer tokens is noise: that worker is not called


@dataclass
class _Chain:
    record: Record
    chunks: list[str]
    source_tokens: int
    cu: str = ""
    read: list[str] = field(default_factory=list)
    stopped: bool = False


def _documents(example: Example, corpus: Sequence[Document] | None) -> list[Document]:
    return example.documents or list(corpus or [])


@register("strategy", "chain_of_agents")
class ChainOfAgents(Strategy):
    version = "1"
    # Workers are sequential calls that each read new context, the analogue of IterDRAG's rounds;
    # both read from the measured means (the number of workers follows the context's length when
    # only the chunk size is set).
    theta: ClassVar = {"k": "n_documents", "n": "workers"}

    def __init__(
        self,
        *,
        workers: Count | None = None,
        chunk_tokens: Tokens | None = None,
        cu_tokens: Tokens = 128,
        budget: Tokens | None = None,
        max_new_tokens: Tokens | None = None,
    ) -> None:
        if workers is not None and chunk_tokens is not None:
            raise ValueError("chain_of_agents: set 'workers' or 'chunk_tokens', not both")
        if (workers is not None and workers < 1) or (chunk_tokens is not None and chunk_tokens < MIN_CUT):
            raise ValueError(f"chain_of_agents: workers must be >= 1 and chunk_tokens >= {MIN_CUT}")
        self.workers = workers
        self.chunk_tokens = chunk_tokens
        self.cu_tokens = cu_tokens
        self.budget = budget
        self.max_new_tokens = max_new_tokens

    # -- prompts ------------------------------------------------------------------------------
    @staticmethod
    def worker_messages(chunk: str, cu: str, question: str) -> list[Message]:
        previous = PREVIOUS.format(cu=cu) if cu else ""
        user = WORKER.format(chunk=chunk, previous=previous, question=question)
        return [{"role": "system", "content": WORKER_SYSTEM}, {"role": "user", "content": user}]

    @staticmethod
    def manager_messages(cu: str, question: str) -> list[Message]:
        user = MANAGER.format(cu=cu, question=question)
        return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]

    # -- splitting ----------------------------------------------------------------------------
    def _split(self, generator: Generator, source: str, question: str) -> list[str]:
        tokenizer = generator.tokenizer
        ids = tokenizer.encode(source)
        if not ids:
            return []
        if self.workers is not None:
            size = math.ceil(len(ids) / self.workers)
        elif self.chunk_tokens is not None:
            size = self.chunk_tokens
        else:  # the worker's window: what its prompt leaves with an empty chunk and a full CU
            overhead = generator.prompt_tokens(self.worker_messages("", "x " * self.cu_tokens, question))
            size = max(MIN_CUT, generator.input_limit(self.cu_tokens) - overhead)
        return [tokenizer.decode(ids[i : i + size]) for i in range(0, len(ids), size)]

    def _start(self, examples: Sequence[Example], generator: Generator, corpus) -> list[_Chain]:
        chains = []
        for example in examples:
            documents = _documents(example, corpus)
            chunks = [
                Chunk(id=d.id, doc_id=d.id, text=d.text, title=d.title, position=i)
                for i, d in enumerate(documents)
            ]
            source = format_documents(chunks)
            record = Record(example)
            record.provenance.context_ids = [d.id for d in documents]
            record.provenance.measures["n_documents"] = len(documents)
            pieces = self._split(generator, source, example.question)
            chains.append(_Chain(record, pieces, generator.count_tokens(source)))
        return chains

    # -- running ------------------------------------------------------------------------------
    def _cut(self, generator: Generator, text: str, excess) -> str | None:
        """``text`` if ``excess(text) <= 0``, else its longest head that fits (None when that is
        under MIN_CUT tokens). Re-checked after each cut: decoding can move a count by a token."""
        over = excess(text)
        if over <= 0:  # fits whole, however short
            return text
        ids = generator.tokenizer.encode(text)
        keep = len(ids) - over
        while keep >= MIN_CUT:
            cut = generator.tokenizer.decode(ids[:keep])
            over = excess(cut)
            if over <= 0:
                return cut
            keep -= max(over, 1)
        return None

    def _worker_input(self, generator: Generator, chain: _Chain, chunk: str) -> str | None:
        """The chunk as the worker may read it: within the window, and within the budget with the
        manager's call (a full-length CU) still to come; cut to the room left, or None."""
        question = chain.record.example.question
        limit = generator.input_limit(self.cu_tokens)
        if self.budget is not None:
            reserve = generator.prompt_tokens(self.manager_messages("x " * self.cu_tokens, question)) + 8
            limit = min(limit, self.budget - chain.record.cost.input_tokens - reserve)

        def excess(text: str) -> int:
            return generator.prompt_tokens(self.worker_messages(text, chain.cu, question)) - limit

        return self._cut(generator, chunk, excess)

    def _manager_input(self, generator: Generator, chain: _Chain) -> str:
        """The last CU, cut if the manager's call would take the question past its budget."""
        if self.budget is None:
            return chain.cu
        question = chain.record.example.question
        limit = self.budget - chain.record.cost.input_tokens

        def excess(text: str) -> int:
            return generator.prompt_tokens(self.manager_messages(text, question)) - limit

        return self._cut(generator, chain.cu, excess) or ""

    def run(
        self,
        examples: Sequence[Example],
        generator: Generator,
        corpus: Sequence[Document] | None = None,
    ) -> list[Prediction]:
        chains = self._start(examples, generator, corpus)
        for position in range(max((len(c.chunks) for c in chains), default=0)):
            asking, requests = [], []
            for chain in chains:
                if chain.stopped or position >= len(chain.chunks):
                    continue
                chunk = self._worker_input(generator, chain, chain.chunks[position])
                if chunk is None:  # no room left: the rest of the source is not read
                    chain.stopped = True
                    continue
                messages = self.worker_messages(chunk, chain.cu, chain.record.example.question)
                requests.append(GenerationRequest(messages, max_new_tokens=self.cu_tokens))
                asking.append((chain, chunk))
            for (chain, chunk), request, generation in zip(
                asking, requests, generator.generate(requests), strict=True
            ):
                chain.cu = chain.record.call(generation, generator, role="worker", request=request).strip()
                chain.read.append(chunk)
        requests = [
            GenerationRequest(
                self.manager_messages(self._manager_input(generator, c), c.record.example.question),
                max_new_tokens=self.max_new_tokens,
            )
            for c in chains
        ]
        return [
            self._finish(chain, request, generation, generator)
            for chain, request, generation in zip(chains, requests, generator.generate(requests), strict=True)
        ]

    def _finish(self, chain: _Chain, request, generation, generator: Generator) -> Prediction:
        record, example = chain.record, chain.record.example
        text = record.call(generation, generator, role="manager", request=request)
        provenance = record.provenance
        read_tokens = sum(generator.count_tokens(t) for t in chain.read)
        provenance.raw_answer = text
        provenance.context_tokens = read_tokens
        provenance.dropped_tokens += max(0, chain.source_tokens - read_tokens)
        provenance.evidence_recall = evidence_in(example.evidence, chain.read)
        provenance.gold_survived = None if not example.evidence else provenance.evidence_recall == 1.0
        provenance.measures.update(
            workers=len(chain.read),
            answer_in_summary=contains_answer(chain.cu, example.answers) if example.answers else None,
        )
        return record.prediction(clean_answer(text))

    def estimate(
        self,
        examples: Sequence[Example],
        generator: Generator,
        corpus: Sequence[Document] | None = None,
    ) -> list[Cost]:
        """An upper bound: every worker writes a full-length CU; capped by ``budget``."""
        max_new = self.max_new_tokens or generator.max_new_tokens
        full_cu = "x " * self.cu_tokens
        out = []
        for chain in self._start(examples, generator, corpus):
            question = chain.record.example.question
            workers = [
                generator.prompt_tokens(self.worker_messages(chunk, full_cu if i else "", question))
                for i, chunk in enumerate(chain.chunks)
            ]
            total = sum(workers) + generator.prompt_tokens(self.manager_messages(full_cu, question))
            if self.budget is not None:
                total = min(total, self.budget)
            calls = len(workers) + 1
            out.append(
                Cost(input_tokens=total, output_tokens=self.cu_tokens * len(workers) + max_new, calls=calls)
            )
        return out
