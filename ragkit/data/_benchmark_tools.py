"""What the loaders of published long-context benchmarks share: reading a user's local copy (JSON
Lines or a JSON array, errors naming the file, the line and the field), the benchmark folder
itself, cutting a long context into passages, and stable ids.

Not a loader module (the leading underscore keeps registry discovery away from it).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ragkit.data.base import DatasetError
from ragkit.data.sentences import split_sentences
from ragkit.types import Document


def local_path(value: str) -> Path:
    """A user's path with ``$VARS`` and ``~`` expanded."""
    return Path(os.path.expandvars(value)).expanduser()


def require_dir(value: str, loader: str, layout: str) -> Path:
    """The benchmark folder, or an error naming the field and the layout that was expected."""
    root = local_path(value)
    if not root.is_dir():
        raise DatasetError(
            f"{loader} dataset: field 'path': folder not found: {root.resolve()}; expected {layout}"
        )
    return root


def _kind(value: Any) -> str:
    return {type(None): "null", dict: "object", list: "list", str: "string"}.get(
        type(value), type(value).__name__
    )


_REST_IS_BLANK = re.compile(r"\s*\Z")


def read_records(path: Path, required: Sequence[str] = ()) -> tuple[tuple[str, dict[str, Any]], ...]:
    """``(where, record)`` for every JSON object in ``path`` (``where`` is ``file:line``, or
    ``file: record N`` inside a JSON array): a JSON array, JSON Lines, or JSON values one after
    another however they are split across lines (some published "JSON Lines" files have records
    spanning lines). Each record must have the ``required`` fields."""
    text = path.read_text(encoding="utf-8-sig")
    decoder = json.JSONDecoder()
    found: list[tuple[str, Any]] = []
    position = counted = 0
    line = 1
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position >= len(text):
            break
        line += text.count("\n", counted, position)  # counted incrementally: files reach 0.5 GB
        counted = position
        try:
            value, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}:{line}: not valid JSON ({exc.msg})") from None
        if isinstance(value, list) and not found and _REST_IS_BLANK.match(text, position):
            found.extend((f"{path}: record {i + 1}", v) for i, v in enumerate(value))
        else:
            found.append((f"{path}:{line}", value))
    out = []
    for where, value in found:
        if not isinstance(value, dict):
            raise DatasetError(f"{where}: expected a JSON object, got {_kind(value)}")
        missing = [f for f in required if f not in value]
        if missing:
            raise DatasetError(f"{where}: field '{missing[0]}': missing")
        out.append((where, value))
    return tuple(out)


def string(record: dict[str, Any], field: str, where: str, *, empty_ok: bool = True) -> str:
    value = record.get(field)
    if not isinstance(value, str) or (not empty_ok and not value.strip()):
        expected = "a string" if empty_ok else "a non-empty string"
        raise DatasetError(f"{where}: field '{field}': expected {expected}, got {_kind(value)}")
    return value


def strings(record: dict[str, Any], field: str, where: str) -> list[str]:
    value = record.get(field)
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DatasetError(f"{where}: field '{field}': expected a list of strings, got {_kind(value)}")
    return list(value)


def pick_tasks(available: Sequence[str], wanted: Sequence[str] | None, loader: str) -> list[str]:
    """``wanted`` (all of ``available`` when None), checked against what the copy holds."""
    if wanted is None:
        if not available:
            raise DatasetError(f"{loader} dataset: no task files found")
        return list(available)
    unknown = [t for t in wanted if t not in available]
    if unknown:
        raise DatasetError(
            f"{loader} dataset: field 'tasks': {unknown} not found; available: {sorted(available)}"
        )
    return list(wanted)


def document(doc_id: str, text: str, title: str = "") -> Document:
    """A long document with its sentence split (chunkers cut it into passages for RAG)."""
    return Document(id=doc_id, text=text, title=title, sentences=tuple(split_sentences(text)))


_LABELLED = {
    "Passage": re.compile(r"(?:^|\n)\s*Passage (\d+):\s*\n?"),
    "Paragraph": re.compile(r"(?:^|\n)\s*Paragraph (\d+):\s*"),
    "Document": re.compile(r"(?:^|\n)\s*Document (\d+):\s*\n?"),
}


def labelled_documents(text: str, label: str, prefix: str, *, title_line: bool) -> list[Document]:
    """Documents from a context of numbered blocks ("Passage 1:\\n...", "Paragraph 2: ...").
    The block's label ("Paragraph 2") is its id suffix; with ``title_line`` a block whose first
    line is short becomes that block's title (LongBench's and RULER's multi-document QA put the
    Wikipedia title there). Text before the first label, if any, is a document of its own."""
    pattern = _LABELLED[label]
    marks = list(pattern.finditer(text))
    out: list[Document] = []
    head = text[: marks[0].start()].strip() if marks else text.strip()
    if head:
        out.append(document(f"{prefix}/intro", head))
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        body = text[mark.end() : end].strip()
        title = f"{label} {mark.group(1)}"
        if title_line and "\n" in body:
            first, rest = body.split("\n", 1)
            if len(first) <= 200 and rest.strip():
                title, body = first.strip(), rest.strip()
        out.append(document(f"{prefix}/{label.lower()}{mark.group(1)}", body, title))
    return out


def cut_passages(text: str, prefix: str, chars: int, boundary: str = r"(?<=[.!?\n])\s+") -> list[Document]:
    """``text`` cut into passages of about ``chars`` characters at ``boundary`` matches (sentence
    ends and line breaks by default), in order: RULER's synthetic contexts are one block of noise
    sentences, word lists or coded words, and a retriever needs pieces of it."""
    pieces = [p for p in re.split(boundary, text.strip()) if p]
    out: list[Document] = []
    current: list[str] = []
    size = 0
    for piece in pieces:
        if current and size + len(piece) > chars:
            out.append(_passage(prefix, len(out), current))
            current, size = [], 0
        current.append(piece)
        size += len(piece) + 1
    if current:
        out.append(_passage(prefix, len(out), current))
    return out


def _passage(prefix: str, number: int, pieces: list[str]) -> Document:
    return Document(id=f"{prefix}/p{number}", text=" ".join(pieces), sentences=tuple(pieces))
