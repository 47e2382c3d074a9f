"""Your own questions from a JSONL file, one question per line::

    {"id": "q1", "question": "...", "answers": ["..."],           # or "answer": "..."
     "documents": ["text", {"id": "d1", "title": "T", "text": "..."}],
     "evidence": ["a sentence", {"doc_id": "d1", "text": "..."}],
     "answerable": true, "anything_else": "goes to Example.meta"}

Either every line has ``documents`` (each question brings its own), or none has and the loader's
``corpus:`` names a JSONL of ``{"id", "title"?, "text"}`` documents shared by all questions.
``id`` defaults to ``line<N>``; a question without answers needs ``"answerable": false``. Every
malformed line fails with ``<file>:<line>: field '<name>': expected ..., got ...``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ragkit.data.base import (
    DatasetError,
    DatasetLoader,
    LoadedDataset,
    Partition,
    file_revision,
    fresh,
    read_memoised,
    require_file,
)
from ragkit.registry import register
from ragkit.types import Document, Evidence, Example

log = logging.getLogger(__name__)

_KNOWN = ("id", "question", "answers", "answer", "documents", "evidence", "answerable")
_DOC_KEYS = ("id", "title", "text", "sentences")


def _kind(value: Any) -> str:
    return {type(None): "null", dict: "object", list: "list", str: "string"}.get(
        type(value), type(value).__name__
    )


class _Line:
    """Validation of one line's fields, with errors that say ``file:line: field ...``."""

    def __init__(self, file: Path, number: int) -> None:
        self.where = f"{file}:{number}"

    def error(self, field: str, message: str) -> DatasetError:
        return DatasetError(f"{self.where}: field '{field}': {message}")

    def string(self, value: Any, field: str, *, empty_ok: bool = False) -> str:
        if not isinstance(value, str):
            raise self.error(field, f"expected a string, got {_kind(value)}")
        if not empty_ok and not value.strip():
            raise self.error(field, "expected a non-empty string")
        return value

    def strings(self, value: Any, field: str) -> list[str]:
        if not isinstance(value, list):
            raise self.error(field, f"expected a list of strings, got {_kind(value)}")
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise self.error(field, f"expected a list of strings, got {_kind(item)} at [{i}]")
        return list(value)

    def ident(self, value: Any, field: str) -> str:
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise self.error(field, f"expected a string or integer id, got {_kind(value)}")
        return str(value)


def _document(line: _Line, raw: Any, field: str, default_id: str) -> Document:
    if isinstance(raw, str):
        return Document(id=default_id, text=raw)
    if not isinstance(raw, dict):
        raise line.error(field, f"expected a string or an object with 'text', got {_kind(raw)}")
    unknown = [k for k in raw if k not in _DOC_KEYS]
    if unknown:
        raise line.error(f"{field}.{unknown[0]}", f"unknown key; a document has {', '.join(_DOC_KEYS)}")
    if "text" not in raw:
        raise line.error(f"{field}.text", "missing")
    sentences = line.strings(raw["sentences"], f"{field}.sentences") if "sentences" in raw else []
    return Document(
        id=line.ident(raw["id"], f"{field}.id") if "id" in raw else default_id,
        text=line.string(raw["text"], f"{field}.text", empty_ok=True),
        title=line.string(raw.get("title", ""), f"{field}.title", empty_ok=True),
        sentences=tuple(s.strip() for s in sentences if s.strip()),
    )


def _evidence(line: _Line, raw: Any, field: str) -> Evidence:
    if isinstance(raw, str):
        return Evidence(doc_id="", text=line.string(raw, field))  # doc_id found at load time
    if not isinstance(raw, dict):
        raise line.error(field, f"expected a string or an object with 'doc_id' and 'text', got {_kind(raw)}")
    for key in ("doc_id", "text"):
        if key not in raw:
            raise line.error(f"{field}.{key}", "missing")
    sentence = raw.get("sentence")
    if sentence is not None and (isinstance(sentence, bool) or not isinstance(sentence, int)):
        raise line.error(f"{field}.sentence", f"expected an integer, got {_kind(sentence)}")
    return Evidence(
        line.ident(raw["doc_id"], f"{field}.doc_id"), line.string(raw["text"], f"{field}.text"), sentence
    )


def _example(line: _Line, record: dict[str, Any], number: int) -> Example:
    if "question" not in record:
        raise line.error("question", "missing")
    if "answers" in record and "answer" in record:
        raise line.error("answer", "give 'answers' (a list) or 'answer' (a string), not both")
    if "answers" in record:
        answers = line.strings(record["answers"], "answers")
    elif "answer" in record:
        answers = [line.string(record["answer"], "answer")]
    else:
        answers = []
    answerable = record.get("answerable", True)  # a forgotten 'answers' must not pass as "unanswerable"
    if not isinstance(answerable, bool):
        raise line.error("answerable", f"expected true or false, got {_kind(answerable)}")
    if answerable and not answers:
        raise line.error(
            "answers",
            "missing or empty; give 'answers': [...] or set 'answerable': false for an unanswerable question",
        )
    documents = []
    if "documents" in record:
        if not isinstance(record["documents"], list):
            raise line.error("documents", f"expected a list, got {_kind(record['documents'])}")
        documents = [
            _document(line, d, f"documents[{j}]", f"d{j}") for j, d in enumerate(record["documents"])
        ]
        seen: set[str] = set()
        for j, doc in enumerate(documents):
            if doc.id in seen:
                raise line.error(f"documents[{j}].id", f"{doc.id!r} used twice in this line")
            seen.add(doc.id)
    raw_evidence = record.get("evidence", [])
    if not isinstance(raw_evidence, list):
        raise line.error("evidence", f"expected a list, got {_kind(raw_evidence)}")
    return Example(
        id=line.ident(record["id"], "id") if "id" in record else f"line{number}",
        question=line.string(record["question"], "question"),
        answers=answers,
        documents=documents,
        evidence=[_evidence(line, e, f"evidence[{j}]") for j, e in enumerate(raw_evidence)],
        answerable=answerable,
        meta={k: v for k, v in record.items() if k not in _KNOWN},
    )


def _records(path: Path) -> list[tuple[int, dict[str, Any]]]:
    out = []
    with open(path, encoding="utf-8") as handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as exc:
                raise DatasetError(
                    f"{path}:{number}: not valid JSON ({exc.msg} at column {exc.colno})"
                ) from None
            if not isinstance(record, dict):
                raise DatasetError(f"{path}:{number}: expected a JSON object, got {_kind(record)}")
            out.append((number, record))
    return out


@dataclass(frozen=True)
class _Questions:
    examples: tuple[Example, ...]
    lines: tuple[int, ...]
    has_documents: tuple[bool, ...]


def parse_questions(path: Path) -> _Questions:
    examples, lines, has_documents = [], [], []
    first_line: dict[str, int] = {}
    for number, record in _records(path):
        example = _example(_Line(path, number), record, number)
        if example.id in first_line:
            raise DatasetError(
                f"{path}:{number}: field 'id': {example.id!r} already used on line {first_line[example.id]}"
            )
        first_line[example.id] = number
        examples.append(example)
        lines.append(number)
        has_documents.append("documents" in record)
    return _Questions(tuple(examples), tuple(lines), tuple(has_documents))


def parse_corpus(path: Path) -> tuple[Document, ...]:
    documents: list[Document] = []
    first_line: dict[str, int] = {}
    for number, record in _records(path):
        line = _Line(path, number)
        if "id" not in record:
            raise line.error("id", "missing (every corpus document needs an id)")
        doc = _document(line, record, "document", "")
        if doc.id in first_line:
            raise line.error("id", f"{doc.id!r} already used on line {first_line[doc.id]}")
        first_line[doc.id] = number
        documents.append(doc)
    return tuple(documents)


def _squash(text: str) -> str:
    return " ".join(text.split())


@register("dataset", "jsonl")
class JsonlDataset(DatasetLoader):
    version = "1"

    def __init__(
        self,
        *,
        path: str,
        corpus: str | None = None,
        sample: int | None = None,
        seed: int = 0,
        partition: Partition = "all",
        ids: list[str] | None = None,
    ) -> None:
        self.path = path
        self.corpus = corpus
        self.sample = sample
        self.seed = seed
        self.partition = partition
        self.ids = ids

    def source_path(self) -> Path:
        return require_file(self.path, "jsonl", "path")

    def note(self) -> str:
        return f"shared corpus {self.corpus}" if self.corpus else "documents per question"

    def load(self) -> LoadedDataset:
        path = self.source_path()
        parsed = read_memoised(path, parse_questions)
        corpus: tuple[Document, ...] | None = None
        if self.corpus is not None:
            corpus = read_memoised(require_file(self.corpus, "jsonl", "corpus"), parse_corpus)
        for number, has_docs in zip(parsed.lines, parsed.has_documents, strict=True):
            if corpus is None and not has_docs:
                raise DatasetError(
                    f"{path}:{number}: field 'documents': missing; every line needs 'documents' unless the"
                    " dataset sets 'corpus:' to a JSONL file of documents shared by all questions"
                )
            if corpus is not None and has_docs:
                raise DatasetError(
                    f"{path}:{number}: field 'documents': this line has its own documents but the dataset"
                    f" also sets 'corpus: {self.corpus}'; use one or the other"
                )
        chosen = [fresh(e) for e in self.select(parsed.examples)]
        line_of = dict(zip((e.id for e in parsed.examples), parsed.lines, strict=True))
        not_found = 0
        for example in chosen:
            documents = example.documents if corpus is None else corpus
            by_id = {d.id: d for d in documents} if corpus is None else self._corpus_index(corpus)
            resolved = []
            for j, ev in enumerate(example.evidence):
                if not ev.doc_id:  # a bare sentence: attribute it to the first document containing it
                    owner = next((d for d in documents if _squash(ev.text) in _squash(d.text)), None)
                    not_found += owner is None
                    resolved.append(replace(ev, doc_id=owner.id) if owner else ev)
                    continue
                if ev.doc_id not in by_id:
                    where = "the corpus" if corpus is not None else "this line's documents"
                    raise DatasetError(
                        f"{path}:{line_of[example.id]}: field 'evidence[{j}].doc_id':"
                        f" {ev.doc_id!r} is not in {where}"
                    )
                not_found += _squash(ev.text) not in _squash(by_id[ev.doc_id].text)
                resolved.append(ev)
            example.evidence = resolved
        if not_found:
            log.warning("%s: %d evidence texts are not found verbatim in any document", path, not_found)
        revision = file_revision(path)
        if self.corpus is not None:
            revision += f";corpus-{file_revision(require_file(self.corpus, 'jsonl', 'corpus'))}"
        return LoadedDataset(chosen, list(corpus) if corpus is not None else None, revision)

    def _corpus_index(self, corpus: tuple[Document, ...]) -> dict[str, Document]:
        if getattr(self, "corpus_index_", (None, None))[0] is not corpus:
            self.corpus_index_ = (corpus, {d.id: d for d in corpus})
        return self.corpus_index_[1]
