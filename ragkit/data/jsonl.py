"""Your own questions from a JSON Lines file (or a JSON array file), one question per record::

    {"id": "q1", "question": "...", "answers": ["..."],           # or "answer": "..."
     "documents": ["text", {"id": "d1", "title": "T", "text": "..."}],
     "evidence": ["d1", "a sentence", {"doc_id": "d1", "text": "..."}],
     "answerable": true, "anything_else": "goes to Example.meta"}

Either every record has ``documents`` (each question brings its own), or none has and the
loader's ``corpus:`` names a file of ``{"id", "title"?, "text"}`` documents shared by all
questions. ``id`` defaults to ``line<N>``; a question without answers needs
``"answerable": false``. A file of another shape loads through ``fields:`` (see
:mod:`ragkit.data.records`); evidence entries are document ids or text (see
:mod:`ragkit.data.evidence`). Every malformed record fails with
``<file>:<line>: field '<name>': expected ..., got ...``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ragkit.constraints import Count, Seed
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
from ragkit.data.evidence import EVIDENCE_MODES, Documents, EvidenceMode, Item, resolve
from ragkit.data.records import MISSING, FieldMap, Place, Record, kind, lookup, read_records
from ragkit.registry import register
from ragkit.types import Document, Example, stable_hash

log = logging.getLogger(__name__)

AnswerFormat = Literal["short", "free-form"]


def _document(place: Place, raw: Any, field: str, default_id: str, fields: FieldMap) -> tuple[Document, bool]:
    """A document and its ``supporting`` flag (False when the map names none)."""
    if isinstance(raw, str):
        return Document(id=default_id, text=place.string(raw, field)), False
    if not isinstance(raw, dict):
        raise place.error(field, f"expected a string or an object with 'text', got {kind(raw)}")
    keys = fields.document
    if not fields.given:  # a file in ragkit's own layout: an unknown key is a typo
        unknown = [k for k in raw if k not in keys.values()]
        if unknown:
            raise place.error(
                f"{field}.{unknown[0]}",
                f"unknown key; a document has {', '.join(keys.values())}"
                " (a file of another shape loads with the dataset's fields: setting)",
            )

    def get(name: str, default: Any = MISSING) -> Any:
        value = lookup(raw, keys[name]) if name in keys else MISSING
        return default if value is MISSING else value

    text = get("text")
    if text is MISSING:
        raise place.error(f"{field}.{keys['text']}", "missing")
    raw_id = get("id")
    sentences = get("sentences", [])
    supporting = get("supporting", False)
    return (
        Document(
            id=default_id if raw_id is MISSING else place.ident(raw_id, f"{field}.{keys['id']}"),
            text=place.string(text, f"{field}.{keys['text']}"),
            title=place.string(get("title", ""), f"{field}.{keys['title']}", empty_ok=True),
            sentences=tuple(
                s.strip() for s in place.strings(sentences, f"{field}.{keys['sentences']}") if s.strip()
            ),
        ),
        place.flag(supporting, f"{field}.{keys.get('supporting', '')}"),
    )


def _evidence_item(place: Place, raw: Any, field: str) -> Item:
    if isinstance(raw, str | int) and not isinstance(raw, bool):
        value = place.string(raw, field) if isinstance(raw, str) else str(raw)
        return Item(field, value.strip() if isinstance(raw, str) else value)
    if not isinstance(raw, dict):
        raise place.error(
            field, f"expected a document id, a text or an object with 'doc_id', got {kind(raw)}"
        )
    if "doc_id" not in raw:
        raise place.error(f"{field}.doc_id", "missing")
    sentence = raw.get("sentence")
    if sentence is not None and (isinstance(sentence, bool) or not isinstance(sentence, int)):
        raise place.error(f"{field}.sentence", f"expected an integer, got {kind(sentence)}")
    text = place.string(raw["text"], f"{field}.text") if "text" in raw else ""
    return Item(field, text, place.ident(raw["doc_id"], f"{field}.doc_id"), sentence)


def _value(record: dict[str, Any], fields: FieldMap, name: str) -> tuple[str, Any]:
    """The record's key and value for ragkit's field ``name`` (value MISSING when absent)."""
    for key in fields.keys(name):
        value = lookup(record, key)
        if value is not MISSING:
            return key, value
    return fields.keys(name)[0], MISSING


def _answers(place: Place, record: dict[str, Any], fields: FieldMap) -> list[str]:
    present = [(k, lookup(record, k)) for k in fields.keys("answers")]
    present = [(k, v) for k, v in present if v is not MISSING]
    if "answers" not in fields.question and len(present) > 1:
        raise place.error("answer", "give 'answers' (a list) or 'answer' (a string), not both")
    answers: list[str] = []
    for key, value in present:
        one_ok = key != "answers" or "answers" in fields.question  # ragkit's own 'answers' is a list
        if key == "answer" and "answers" not in fields.question:
            answers.append(place.string(value, key))
        else:
            answers += place.strings(value, key, one_ok=one_ok)
    return list(dict.fromkeys(a for a in answers if a.strip()))


@dataclass(frozen=True)
class Parsed:
    """A question record, parsed; the evidence is resolved at load time (it depends on the
    loader's ``evidence:`` setting and on the corpus)."""

    example: Example  # read-only (memoised); evidence empty until resolved
    where: str
    has_documents: bool
    documents_key: str
    evidence: tuple[Item, ...]


def _question(record: Record, fields: FieldMap) -> Parsed:
    place, data = Place(record.where), record.data
    key, question = _value(data, fields, "question")
    if question is MISSING:
        raise place.error(key, "missing")
    answers = _answers(place, data, fields)
    key_answerable, answerable = _value(data, fields, "answerable")
    answerable = (
        True if answerable is MISSING else answerable
    )  # a forgotten 'answers' must not pass as "unanswerable"
    if not isinstance(answerable, bool):
        raise place.error(key_answerable, f"expected true or false, got {kind(answerable)}")
    if answerable and not answers:
        raise place.error(
            fields.keys("answers")[0],
            "missing or empty; give 'answers': [...] or set 'answerable': false for an unanswerable question",
        )
    docs_key, raw_documents = _value(data, fields, "documents")
    documents: list[Document] = []
    items: list[Item] = []
    if raw_documents is not MISSING:
        if not isinstance(raw_documents, list):
            raise place.error(docs_key, f"expected a list, got {kind(raw_documents)}")
        seen: set[str] = set()
        for j, raw in enumerate(raw_documents):
            doc, supporting = _document(place, raw, f"{docs_key}[{j}]", f"d{j}", fields)
            if doc.id in seen:
                raise place.error(f"{docs_key}[{j}].id", f"{doc.id!r} used twice in this line")
            seen.add(doc.id)
            documents.append(doc)
            if supporting:
                items.append(Item(f"{docs_key}[{j}].{fields.document['supporting']}", "", doc.id))
    ev_key, raw_evidence = _value(data, fields, "evidence")
    if raw_evidence is not MISSING:
        if not isinstance(raw_evidence, list):
            raise place.error(ev_key, f"expected a list, got {kind(raw_evidence)}")
        items = [_evidence_item(place, e, f"{ev_key}[{j}]") for j, e in enumerate(raw_evidence)] + items
    key_id, raw_id = _value(data, fields, "id")
    consumed = fields.consumed()
    example = Example(
        id=f"line{record.number}" if raw_id is MISSING else place.ident(raw_id, key_id),
        question=place.string(question, key),
        answers=answers,
        documents=documents,
        answerable=answerable,
        meta={k: v for k, v in data.items() if k not in consumed},
    )
    return Parsed(example, record.where, raw_documents is not MISSING, docs_key, tuple(items))


def _read(path: Path, fields: FieldMap, what: str) -> list[Record]:
    records = read_records(path)
    if not records:
        raise DatasetError(f"{path}: the file is empty (no {what}); expected JSON Lines or a JSON array")
    return records


def parse_questions(path: Path, fields: FieldMap) -> tuple[Parsed, ...]:
    parsed: list[Parsed] = []
    first: dict[str, str] = {}
    for record in _read(path, fields, "questions"):
        item = _question(record, fields)
        if item.example.id in first:
            raise Place(record.where).error(
                fields.keys("id")[0], f"{item.example.id!r} already used on {first[item.example.id]}"
            )
        first[item.example.id] = record.label
        parsed.append(item)
    return tuple(parsed)


def parse_corpus(path: Path, fields: FieldMap) -> Documents:
    documents: list[Document] = []
    first: dict[str, str] = {}
    for record in _read(path, fields, "documents"):
        place = Place(record.where)
        id_key = fields.document["id"]
        if lookup(record.data, id_key) is MISSING:
            raise place.error(id_key, "missing (every corpus document needs an id)")
        doc, _ = _document(place, record.data, "document", "", fields)
        if doc.id in first:
            raise place.error(id_key, f"{doc.id!r} already used on {first[doc.id]}")
        first[doc.id] = record.label
        documents.append(doc)
    return Documents(documents)


@register("dataset", "jsonl")
class JsonlDataset(DatasetLoader):
    """Questions from a JSON Lines or JSON array file. ``evidence``: how bare evidence strings
    are read (``auto``: a document id of the question if it is one, else text). A question whose
    evidence entries all fail to match is an error unless ``allow_missing_evidence``; entries
    that fail are left out (counted in a warning). ``answer_format: free-form`` scores answers
    as sentences (answer≈) for records that do not say otherwise."""

    version = "2"
    local_copy = True

    def __init__(
        self,
        *,
        path: str,
        corpus: str | None = None,
        fields: dict[str, Any] | None = None,
        evidence: EvidenceMode = "auto",
        allow_missing_evidence: bool = False,
        answer_format: AnswerFormat | None = None,
        sample: Count | None = None,
        seed: Seed = 0,
        partition: Partition = "all",
        ids: list[str] | None = None,
    ) -> None:
        self.path = path
        self.corpus = corpus
        self.fields = fields
        self.evidence = evidence
        self.allow_missing_evidence = allow_missing_evidence
        self.answer_format = answer_format
        self.sample = sample
        self.seed = seed
        self.partition = partition
        self.ids = ids

    def source_path(self) -> Path:
        return require_file(self.path, "jsonl", "path")

    def note(self) -> str:
        return f"shared corpus {self.corpus}" if self.corpus else "documents per question"

    def _parse(self, path: Path, parser: Any) -> Any:
        fields = FieldMap(self.fields)

        def parse(source: Path) -> Any:
            return parser(source, fields)

        # memoised per file and field map (read_memoised keys on the parser's name)
        parse.__qualname__ = f"{parser.__qualname__}[{stable_hash(self.fields or {})}]"
        return read_memoised(path, parse)

    def load(self) -> LoadedDataset:
        if self.evidence not in EVIDENCE_MODES:
            raise DatasetError(
                f"jsonl dataset: field 'evidence' is {self.evidence!r}; expected one of {EVIDENCE_MODES}"
            )
        if self.answer_format not in (None, "short", "free-form"):
            raise DatasetError(
                f"jsonl dataset: field 'answer_format' is {self.answer_format!r}; expected short or free-form"
            )
        path = self.source_path()
        parsed: tuple[Parsed, ...] = self._parse(path, parse_questions)
        corpus: Documents | None = None
        if self.corpus is not None:
            corpus = self._parse(require_file(self.corpus, "jsonl", "corpus"), parse_corpus)
        for item in parsed:
            if corpus is None and not item.has_documents:
                raise DatasetError(
                    f"{item.where}: field '{item.documents_key}': missing; every line needs documents"
                    " unless the dataset sets 'corpus:' to a file of documents shared by all questions"
                )
            if corpus is not None and item.has_documents:
                raise DatasetError(
                    f"{item.where}: field '{item.documents_key}': this line has its own documents but the"
                    f" dataset also sets 'corpus: {self.corpus}'; use one or the other"
                )
        by_example = {id(p.example): p for p in parsed}
        chosen = self.select([p.example for p in parsed])
        out, left_out = [], 0
        for original in chosen:
            item = by_example[id(original)]
            example = fresh(original)
            example.evidence, failed = self._resolve(item, corpus)
            left_out += len(failed)
            if self.answer_format and "answer_format" not in example.meta:
                example.meta["answer_format"] = self.answer_format
            out.append(example)
        if left_out:
            log.warning(
                "%s: %d evidence entries match no document and are left out (the first of each question"
                " whose entries all fail is an error unless allow_missing_evidence: true)",
                path,
                left_out,
            )
        revision = file_revision(path)
        if self.corpus is not None:
            revision += f";corpus-{file_revision(require_file(self.corpus, 'jsonl', 'corpus'))}"
        return LoadedDataset(out, list(corpus.documents) if corpus is not None else None, revision)

    def _resolve(self, item: Parsed, corpus: Documents | None):
        documents = corpus if corpus is not None else Documents(item.example.documents)
        where = "the corpus" if corpus is not None else "this line's documents"
        for entry in item.evidence:
            if entry.doc_id is not None and entry.doc_id not in documents.by_id:
                raise DatasetError(
                    f"{item.where}: field '{entry.field}.doc_id': {entry.doc_id!r} is not in {where}"
                )
        evidence, failed = resolve(item.evidence, documents, self.evidence, where)
        if failed and not evidence and not self.allow_missing_evidence:
            first = failed[0]
            raise DatasetError(
                f"{item.where}: field '{first.item.field}': {first.reason} (evidence: {self.evidence});"
                f" none of this question's {len(failed)} evidence entries matches. Set the dataset's"
                " 'evidence: ids' or 'evidence: text' to say how to read them, or"
                " 'allow_missing_evidence: true' to load such questions without evidence"
            )
        return evidence, failed
