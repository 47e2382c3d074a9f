"""Building contexts: chunking a question's documents or the shared corpus, checking gold
evidence, packing passages into a token budget.

Shared by every strategy that shows passages to a generator, so they differ only in how they choose
them and call the generator.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ragkit.budget import BudgetError
from ragkit.generators.base import Generator, Message
from ragkit.strategies.prompts import format_chunk
from ragkit.types import Chunk, Context, Corpus, Document, Evidence, Example, Scored

if TYPE_CHECKING:
    from ragkit.strategies.base import Record


def default_chunker():
    from ragkit.registry import build  # lazy: the registry imports strategy modules

    return build("chunker", "passage")


class CorpusBuilder:
    """Chunks per-example documents (every question) or the shared corpus (once per run)."""

    def __init__(self, chunker=None) -> None:
        self.chunker = chunker
        self._shared: tuple[int, Corpus] | None = None

    def _chunker(self):
        if self.chunker is None:
            self.chunker = default_chunker()
        return self.chunker

    def for_example(self, example: Example, shared: Sequence[Document] | None) -> Corpus:
        if example.documents:
            return Corpus.from_chunks(self._chunker().chunk(example.documents))
        if shared is None:
            raise ValueError(f"example {example.id!r} has no documents and the dataset has no shared corpus")
        if self._shared is None or self._shared[0] != id(shared):
            self._shared = (id(shared), Corpus.from_chunks(self._chunker().chunk(shared)))
        return self._shared[1]


def evidence_in(evidence: Sequence[Evidence], texts: Sequence[str]) -> float | None:
    """Fraction of gold evidence sentences found verbatim in any of ``texts`` (None: no evidence)."""
    if not evidence:
        return None
    joined = "\n".join(texts)
    normal = " ".join(joined.split())
    found = sum(1 for e in evidence if " ".join(e.text.split()) in normal)
    return found / len(evidence)


@dataclass
class Packed:
    context: Context
    messages: list[Message]
    prompt_tokens: int


def pack(
    generator: Generator,
    selected: Sequence[Scored],
    make_messages: Callable[[str], list[Message]],
    limit: int,
    *,
    order: Callable[[Sequence[Scored]], list[Scored]],
    evidence: Sequence[Evidence] = (),
) -> Packed:
    """Fit the best passages into ``limit`` prompt tokens, then order them for presentation.

    Passages are admitted by score (best first) while the whole prompt stays within the limit; the
    first one that does not fit is cut to the room left (its tail dropped) and the rest are dropped.
    Every dropped token is counted. Token counts are exact: the final prompt is re-counted with the
    generator's tokenizer and trimmed if joining changed the count.
    """
    overhead = generator.prompt_tokens(make_messages(""))
    room = limit - overhead
    if room <= 0:
        raise BudgetError(
            f"the prompt without documents already takes {overhead} tokens, more than the limit {limit}"
        )
    tokenizer = generator.tokenizer
    admitted: list[Scored] = []
    texts: dict[str, str] = {}
    dropped = 0
    used = 0
    for item in sorted(selected, key=lambda s: (-s.score, s.chunk.position)):
        block_tokens = len(tokenizer.encode(format_chunk(len(admitted) + 1, item.chunk))) + 2
        if used + block_tokens <= room:
            admitted.append(item)
            texts[item.chunk.id] = item.chunk.text
            used += block_tokens
            continue
        body_ids = tokenizer.encode(item.chunk.text)
        keep = room - used - (block_tokens - len(body_ids))
        if keep >= 16:  # a passage cut to a few tokens is noise; drop it whole instead
            admitted.append(item)
            texts[item.chunk.id] = tokenizer.decode(body_ids[:keep])
            dropped += len(body_ids) - keep
            used = room
        else:
            dropped += len(body_ids)
    ordered = order(admitted)
    for _ in range(8):  # joins can merge or split tokens at the boundaries: trim to the exact limit
        documents = "\n\n".join(
            format_chunk(i + 1, s.chunk, texts[s.chunk.id]) for i, s in enumerate(ordered)
        )
        messages = make_messages(documents)
        total = generator.prompt_tokens(messages)
        if total <= limit or not ordered:
            break
        last = max(ordered, key=lambda s: (-s.score, s.chunk.position))  # the weakest passage
        ids = tokenizer.encode(texts[last.chunk.id])
        cut = min(len(ids), total - limit + 1)
        texts[last.chunk.id] = tokenizer.decode(ids[: len(ids) - cut])
        dropped += cut
    context = Context(
        chunks=ordered,
        text=documents,
        tokens=total - overhead,
        dropped_tokens=dropped,
        gold_survived=None if not evidence else evidence_in(evidence, [documents]) == 1.0,
    )
    return Packed(context=context, messages=messages, prompt_tokens=total)


def cut_tokens(ids: list[int], keep: int, where: str) -> list[int]:
    """Keep ``keep`` of ``ids``, dropping from the middle, the end or the start."""
    if keep >= len(ids):
        return ids
    if keep <= 0:
        return []
    if where == "end":
        return ids[:keep]
    if where == "start":
        return ids[len(ids) - keep :]
    head = keep // 2
    return ids[:head] + ids[len(ids) - (keep - head) :]


QUESTION_ALLOWANCE = 32  # tokens of the window a cut context leaves for the question
CUT_GRAIN = 16  # a cut context keeps a multiple of this many tokens


def fit_context(
    record: Record,
    generator: Generator,
    corpus: Sequence[Document] | None,
    make_messages: Callable[[str], list[Message]],
    limit: int,
    truncation: str = "middle",
) -> tuple[list[Message], int]:
    """The question's whole context (its documents, or the shared corpus, in original order) in
    the prompt ``make_messages`` builds, fitted to ``limit`` tokens by cutting from the middle, the
    end or the start; returns the messages and their tokens. The record gets what was shown: the
    documents, the context's tokens, the tokens dropped, the gold-evidence checks and the measures
    ``full_context_tokens``, ``truncated`` and ``n_documents``. Never silent."""
    example = record.example
    documents = example.documents or list(corpus or [])
    chunks = [
        Chunk(id=d.id, doc_id=d.id, text=d.text, title=d.title, position=i) for i, d in enumerate(documents)
    ]
    block = "\n\n".join(format_chunk(i + 1, c) for i, c in enumerate(chunks))
    overhead = generator.prompt_tokens(make_messages(""))
    if overhead > limit:  # not even the question fits: never exceed the budget silently
        raise BudgetError(
            f"the prompt without documents already takes {overhead} tokens, more than the limit {limit}"
        )
    tokenizer = generator.tokenizer
    ids = tokenizer.encode(block)
    full = len(ids)
    text, kept = block, full
    total = generator.prompt_tokens(make_messages(text))
    if total > limit:
        # The documents' share must not depend on the question: the questions about one document
        # then send prompts identical up to the question, which prefix reuse computes once (with a
        # share sized for each question, every question cut the document at its own place and
        # only the part before the cut was shared). The question gets a fixed allowance (its own
        # length when longer), and the share is rounded down to a multiple of CUT_GRAIN so that a
        # token of tokenizer jitter at the seam does not move the cut.
        question = len(tokenizer.encode(example.question)) if example.question else 0
        frame = overhead - question
        kept = max(limit - frame - max(question, QUESTION_ALLOWANCE), 0) // CUT_GRAIN * CUT_GRAIN
        for _ in range(8):  # decode/encode at the cut can shift counts by a few tokens
            text = tokenizer.decode(cut_tokens(ids, kept, truncation))
            total = generator.prompt_tokens(make_messages(text))
            if total <= limit or kept == 0:
                break
            kept = max(kept - (total - limit), 0)
    provenance = record.provenance
    provenance.context_ids = [d.id for d in documents]
    provenance.context_tokens = total - overhead
    provenance.dropped_tokens += full - kept if text != block else 0
    provenance.gold_survived = None if not example.evidence else evidence_in(example.evidence, [text]) == 1.0
    provenance.evidence_recall = evidence_in(example.evidence, [text])
    provenance.measures.update(full_context_tokens=full, truncated=text != block, n_documents=len(documents))
    from ragkit.strategies.base import record_answer_in_context  # base imports this module

    record_answer_in_context(record, text)
    return make_messages(text), total


def chunks_of(items: Sequence[Scored]) -> list[Chunk]:
    return [s.chunk for s in items]
