"""Prompt texts shared by every strategy, so RAG and full-context arms differ only in context.

Small instruction models (SmolLM2-135M) answer in whole sentences unless pushed hard, which makes
exact match 0 everywhere; the instructions ask for a few words, the user turn ends with an
"Answer:" cue, and :func:`clean_answer` strips the usual preambles. The raw text is kept in
provenance.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ragkit.generators.base import Message
from ragkit.types import Chunk

SYSTEM = (
    "You answer questions from the given documents. Reply with the answer only: a short phrase of a "
    "few words (a name, a date, a number, yes or no). Do not write a sentence or an explanation."
)
ABSTAIN = " If the documents do not contain the answer, reply exactly: unanswerable"
CLOSED_BOOK_SYSTEM = (
    "Answer the question. Reply with the answer only: a short phrase of a few words (a name, a date, "
    "a number, yes or no). Do not write a sentence or an explanation."
)


def format_chunk(index: int, chunk: Chunk, text: str | None = None) -> str:
    body = chunk.text if text is None else text
    title = f" (Title: {chunk.title})" if chunk.title else ""
    return f"Document [{index}]{title} {body}"


def format_documents(chunks: Sequence[Chunk]) -> str:
    return "\n\n".join(format_chunk(i + 1, c) for i, c in enumerate(chunks))


def question_messages(question: str, documents: str, *, abstain: bool = False) -> list[Message]:
    """Chat messages for one question with its documents block (empty: closed book)."""
    if not documents:
        return [
            {"role": "system", "content": CLOSED_BOOK_SYSTEM},
            {"role": "user", "content": f"Question: {question}\nAnswer:"},
        ]
    system = SYSTEM + (ABSTAIN if abstain else "")
    user = f"Documents:\n{documents}\n\nQuestion: {question}\nAnswer (a few words only):"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


_PREAMBLE = re.compile(
    r"^(?:the\s+)?(?:final\s+)?(?:short\s+)?answer(?:\s+is)?\s*[:\-]?\s*|^(?:it\s+is|it's)\s+",
    flags=re.IGNORECASE,
)


def clean_answer(text: str) -> str:
    """First non-empty line, without an "Answer:" preamble, quotes or a final full stop."""
    line = next((ln.strip() for ln in text.strip().splitlines() if ln.strip()), "")
    line = _PREAMBLE.sub("", line).strip()
    line = line.strip("\"'`*").strip()
    return line[:-1] if line.endswith(".") and not line.endswith("..") else line
