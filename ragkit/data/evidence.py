"""Gold evidence as users write it, resolved against a question's documents (or the corpus).

An evidence entry is one of
- a bare string (or integer): a document id (``"d3"``, the most common way public sets state
  evidence) or a sentence/passage of a document's text. The loader's ``evidence:`` setting says
  which: ``ids``, ``text``, or ``auto`` (the default: a string equal to a document id of the
  question is that document, anything else is text);
- ``{"doc_id": ..., "text": ..., "sentence": ...}``: text inside a named document (``text``
  left out: the whole document);
- a document's own flag (``fields: {document: {supporting: is_supporting}}``): that document.

A document given as evidence becomes :class:`~ragkit.types.Evidence` with the document's whole
text, so evidence recall counts it found when the context holds that document (with one chunk per
document, recall@k is then "was the document retrieved").

Text is matched whitespace-insensitively and on word boundaries: "gold" is not found inside
"golden", so a short string cannot pin evidence to the wrong document through another word.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ragkit.types import Document, Evidence

EvidenceMode = Literal["auto", "ids", "text"]
EVIDENCE_MODES: tuple[str, ...] = ("auto", "ids", "text")


@dataclass(frozen=True)
class Item:
    """One evidence entry as written in the file (resolved later, against the chosen corpus)."""

    field: str  # the file's key path, for messages: "evidence[2]", "paragraphs[4].is_supporting"
    value: str  # a bare entry: the string as written; an explicit one: its text ("" = whole document)
    doc_id: str | None = None  # None: a bare entry
    sentence: int | None = None


@dataclass(frozen=True)
class Failure:
    item: Item
    reason: str


def squash(text: str) -> str:
    return " ".join(text.split())


class Documents:
    """A document list prepared for evidence look-ups (ids, whitespace-squashed texts)."""

    def __init__(self, documents: Sequence[Document]) -> None:
        self.documents = list(documents)
        self.by_id = {d.id: d for d in self.documents}
        self._squashed: list[str] | None = None

    def squashed(self) -> list[str]:
        if self._squashed is None:
            self._squashed = [squash(d.text) for d in self.documents]
        return self._squashed


def _pattern(text: str) -> re.Pattern[str]:
    body = re.escape(text)
    if re.match(r"\w", text):
        body = r"(?<!\w)" + body
    if re.search(r"\w$", text):
        body += r"(?!\w)"
    return re.compile(body)


def occurs(text: str, haystack: str) -> bool:
    """Whether squashed ``text`` occurs in squashed ``haystack`` on word boundaries."""
    return text in haystack and _pattern(text).search(haystack) is not None


def resolve(
    items: Sequence[Item], documents: Documents, mode: str, where: str
) -> tuple[list[Evidence], list[Failure]]:
    """Evidence for ``items`` and the items that could not be placed (with why). ``where`` names
    the documents for messages: "this line's documents" or "the corpus"."""
    found: list[Evidence] = []
    failed: list[Failure] = []
    for item in items:
        if item.doc_id is not None:  # explicit: the document is named (a missing one is an error upstream)
            doc = documents.by_id[item.doc_id]
            if not item.value:
                found.append(Evidence(doc.id, doc.text, item.sentence))
            elif occurs(squash(item.value), squash(doc.text)):
                found.append(Evidence(doc.id, item.value, item.sentence))
            else:
                failed.append(Failure(item, f"its text is not in document {doc.id!r}"))
            continue
        if mode != "text" and item.value in documents.by_id:
            doc = documents.by_id[item.value]
            found.append(Evidence(doc.id, doc.text))
            continue
        if mode == "ids":
            failed.append(Failure(item, f"{_short(item.value)} is not a document id in {where}"))
            continue
        wanted = squash(item.value)
        owner = next(
            (
                d
                for d, text in zip(documents.documents, documents.squashed(), strict=True)
                if occurs(wanted, text)
            ),
            None,
        )
        if owner is None:
            what = "a document id or text" if mode == "auto" else "text"
            failed.append(Failure(item, f"{_short(item.value)} is not {what} of any document in {where}"))
        else:
            found.append(Evidence(owner.id, item.value))
    return found, failed


def _short(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")
