"""Reading your own question and corpus files: JSON Lines or one JSON array, with a field map.

A record is one question (or one corpus document). :func:`read_records` accepts JSON Lines (one
object per line, blank lines skipped) and a JSON array of objects (a common distribution
format), whatever the file is called. Every record comes with its place for error messages:
``file:12`` for a JSON Lines line, ``file: [11]`` for an array item (JSON parsers give no line
numbers for values, so the index is the place).

:class:`FieldMap` is the loader's ``fields:`` setting: where ragkit's fields are in a record of
another shape, so a public file loads without a conversion script::

    fields:
      id: _id                        # ragkit name: the record's key ("a.b" reaches into objects)
      answers: [answer, aliases]     # several keys: their answers are joined
      documents: paragraphs
      document: {id: idx, title: title, text: paragraph_text, supporting: is_supporting}

Errors name the file's own keys, so a user reads them against the file they have.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragkit.data.base import DatasetError

QUESTION_FIELDS = ("id", "question", "answers", "documents", "evidence", "answerable")
DOCUMENT_FIELDS = ("id", "title", "text", "sentences", "supporting")
_DEFAULT_DOCUMENT = {name: name for name in DOCUMENT_FIELDS if name != "supporting"}


def kind(value: Any) -> str:
    """The JSON name of a value's type, for messages."""
    return {type(None): "null", dict: "object", list: "list", str: "string", bool: "boolean"}.get(
        type(value), type(value).__name__
    )


@dataclass(frozen=True)
class Record:
    where: str  # "file:12" or "file: [11]"
    number: int  # line number (JSON Lines) or 1-based array position: the default id "line<N>"
    data: dict[str, Any]
    label: str  # the place within the file: "line 12" or "[11]"


def read_records(path: Path) -> list[Record]:
    """The objects of a JSON Lines file or a JSON array file; ``[]`` for an empty file."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:  # name the line, not just the byte offset
        line = raw[: exc.start].count(b"\n") + 1
        raise DatasetError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x})") from None
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError:
            items = None  # not one array: read it as JSON Lines, whose errors name the line
        if isinstance(items, list):
            out = []
            for i, item in enumerate(items):
                if not isinstance(item, dict):
                    raise DatasetError(f"{path}: [{i}]: expected a JSON object, got {kind(item)}")
                out.append(Record(f"{path}: [{i}]", i + 1, item, f"item [{i}]"))
            return out
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}:{number}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(record, dict):
            raise DatasetError(f"{path}:{number}: expected a JSON object, got {kind(record)}")
        out.append(Record(f"{path}:{number}", number, record, f"line {number}"))
    return out


class FieldMap:
    """The ``fields:`` setting, validated: ragkit field -> the record's key(s)."""

    def __init__(self, setting: dict[str, Any] | None, owner: str = "jsonl dataset") -> None:
        setting = dict(setting or {})
        self.given = bool(setting)
        document = setting.pop("document", None) or {}
        if not isinstance(document, dict):
            raise DatasetError(f"{owner}: field 'fields.document': expected a mapping, got {kind(document)}")
        self.question: dict[str, list[str]] = {}
        for name, value in setting.items():
            if name not in QUESTION_FIELDS:
                raise DatasetError(
                    f"{owner}: field 'fields.{name}': unknown; ragkit's fields are"
                    f" {', '.join(QUESTION_FIELDS)} and document (a mapping of {', '.join(DOCUMENT_FIELDS)})"
                )
            self.question[name] = _keys(value, f"{owner}: field 'fields.{name}'", many=name == "answers")
        self.document: dict[str, str] = dict(_DEFAULT_DOCUMENT)
        for name, value in document.items():
            if name not in DOCUMENT_FIELDS:
                raise DatasetError(
                    f"{owner}: field 'fields.document.{name}': unknown; a document's fields are"
                    f" {', '.join(DOCUMENT_FIELDS)}"
                )
            self.document[name] = _keys(value, f"{owner}: field 'fields.document.{name}'", many=False)[0]

    def keys(self, name: str) -> list[str]:
        """The record keys ragkit's question field ``name`` is read from."""
        if name in self.question:
            return self.question[name]
        return ["answers", "answer"] if name == "answers" else [name]

    def consumed(self) -> set[str]:
        """Top-level record keys the map reads (the rest of a record goes to Example.meta)."""
        return {key.split(".")[0] for name in QUESTION_FIELDS for key in self.keys(name)}


def _keys(value: Any, where: str, *, many: bool) -> list[str]:
    values = value if isinstance(value, list) and many else [value]
    if not values or not all(isinstance(v, str) and v.strip() for v in values):
        expected = "a key name or a list of key names" if many else "a key name"
        raise DatasetError(f"{where}: expected {expected}, got {value!r}")
    return list(values)


_MISSING = object()


def lookup(data: dict[str, Any], key: str) -> Any:
    """``data[key]``, where ``"a.b"`` reaches into objects; ``MISSING`` when absent. A key that
    exists as written (dots included) wins over the path."""
    if key in data:
        return data[key]
    value: Any = data
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


MISSING = _MISSING


class Place:
    """One record's errors: ``<file>:<line>: field '<the file's key>': ...``."""

    def __init__(self, where: str) -> None:
        self.where = where

    def error(self, field: str, message: str) -> DatasetError:
        return DatasetError(f"{self.where}: field '{field}': {message}")

    def string(self, value: Any, field: str, *, empty_ok: bool = False) -> str:
        if not isinstance(value, str):
            raise self.error(field, f"expected a string, got {kind(value)}")
        if not empty_ok and not value.strip():
            raise self.error(field, "expected a non-empty string")
        return value

    def strings(self, value: Any, field: str, *, one_ok: bool = False) -> list[str]:
        """A list of strings (or, with ``one_ok``, one string standing for a list of one)."""
        if one_ok and isinstance(value, str):
            return [value]
        expected = "a string or a list of strings" if one_ok else "a list of strings"
        if not isinstance(value, list):
            raise self.error(field, f"expected {expected}, got {kind(value)}")
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise self.error(field, f"expected {expected}, got {kind(item)} at [{i}]")
        return list(value)

    def ident(self, value: Any, field: str) -> str:
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise self.error(field, f"expected a string or integer id, got {kind(value)}")
        return str(value)

    def flag(self, value: Any, field: str) -> bool:
        """true/false, or 1/0 (files written by pandas or numpy often have these)."""
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise self.error(field, f"expected true or false, got {kind(value)} {value!r}")
