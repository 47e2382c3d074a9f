"""LaRA (Li et al., 2025, "LaRA: Benchmarking Retrieval-Augmented Generation and Long-Context LLMs"):
questions over one long document each (~32k or ~128k tokens), in four task types.

Layout under ``path`` (the repository's ``datasets/`` folder)::

    {32k,128k}/{financial,paper,...}/<file>        one long document per file
    query/{32k,128k}_{subset}_{location,reasoning,comp,hallu}.jsonl

Each query record has ``type`` (the subset), ``level`` (the task), ``length``, ``file`` (resolved
as ``{length}/{type}/{file}``), ``question`` and ``answer`` (a free-form sentence). Query files are
read as a stream of JSON values (``json.JSONDecoder.raw_decode``), not line by line, because one
upstream file has a record spanning lines.

Every question gets its whole document as one :class:`Document` (with its sentence split; chunkers
cut it into passages). ``meta`` keeps ``type`` (the task type, spelled out: location, reasoning,
comparison, hallucination) so results break down by it, plus ``level`` (as in the file), ``subset``,
``length``, ``file`` and ``answer_format: free-form`` (graded by :mod:`ragkit.longform` or a judge).
Hallucination questions are unanswerable from the document (``answerable=False``).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ragkit.constraints import Count, Seed
from ragkit.data.base import DatasetError, DatasetLoader, LoadedDataset, Partition, fresh, read_memoised
from ragkit.data.sentences import split_sentences
from ragkit.registry import register
from ragkit.types import Document, Example, stable_hash

# Task names in the files -> the names results are broken down by.
TASKS = {"location": "location", "reasoning": "reasoning", "comp": "comparison", "hallu": "hallucination"}
_ALIASES = {**{v: k for k, v in TASKS.items()}, **{k: k for k in TASKS}}
_QUERY_FILE = re.compile(r"^(?P<length>\d+k)_(?P<subset>[a-z]+)_(?P<level>[a-z]+)\.jsonl$")
REQUIRED = ("question", "answer", "file", "level")


@dataclass(frozen=True)
class _Queries:
    records: tuple[dict[str, Any], ...]
    revision: str


def parse_query_file(path: Path) -> tuple[dict[str, Any], ...]:
    """All JSON objects in ``path``, however they are split across lines. Errors name the file,
    the line and the record."""
    text = path.read_text(encoding="utf-8-sig")
    decoder = json.JSONDecoder()
    records: list[dict[str, Any]] = []
    position = 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position >= len(text):
            break
        line = text.count("\n", 0, position) + 1
        try:
            value, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError as exc:
            raise DatasetError(
                f"{path}: line {line}: record {len(records) + 1} is not valid JSON ({exc.msg})"
            ) from None
        if not isinstance(value, dict):
            raise DatasetError(f"{path}: line {line}: expected a JSON object, got {type(value).__name__}")
        missing = [f for f in REQUIRED if f not in value]
        if missing:
            raise DatasetError(f"{path}: line {line}: record {len(records) + 1} lacks field(s) {missing}")
        records.append(value)
    return tuple(records)


def _read_document(path: Path, collapse: bool = False) -> Document:
    text = path.read_text(encoding="utf-8", errors="replace")
    if collapse:
        text = collapse_whitespace(text)
    # The title is the file name: a company ("Blue Star Foods Corp.") or "32k_paper_3".
    title = path.stem.removeprefix("2024-").removesuffix("-j")
    return Document(id=path.name, text=text, title=title, sentences=tuple(split_sentences(text)))


def _read_collapsed(path: Path) -> Document:  # its own name: read_memoised keys on the parser
    return _read_document(path, collapse=True)


_SPACES = re.compile(r"[ \t\xa0]{2,}")
_BLANK_LINES = re.compile(r"\n[ \t\xa0]*(?:\n[ \t\xa0]*)+")


def collapse_whitespace(text: str) -> str:
    """Runs of spaces/tabs become one space and runs of blank lines one blank line. LaRA's
    financial filings lay tables out with long runs of spaces and newlines; a small base model
    (Gemma 3 270M) continues them and answers with nothing but whitespace. The words and their
    order are unchanged; only the layout is lost (and ~10-20% of the tokens)."""
    return _BLANK_LINES.sub("\n\n", _SPACES.sub(" ", text)).strip()


@register("dataset", "lara")
class LaRA(DatasetLoader):
    """LaRA questions from a local copy of its ``datasets/`` folder (``path``), for one context
    length, some subsets (``financial``, ``paper``, ``book``) and task types (``location``,
    ``reasoning``, ``comparison``/``comp``, ``hallucination``/``hallu``; all when null).
    ``whitespace: collapse`` (the default) collapses the documents' layout whitespace, ``keep``
    reads them byte for byte."""

    version = "2"  # 2: whitespace parameter, collapsed by default
    local_copy = True

    def __init__(
        self,
        *,
        path: str,
        context: Literal["32k", "128k"] = "32k",
        subsets: list[str] | None = None,
        types: list[str] | None = None,
        sample: Count | None = None,
        seed: Seed = 0,
        partition: Partition = "all",
        ids: list[str] | None = None,
        whitespace: Literal["collapse", "keep"] = "collapse",
    ) -> None:
        self.path = path
        self.context = context
        self.subsets = subsets
        self.types = types
        self.sample = sample
        self.seed = seed
        self.partition = partition
        self.ids = ids
        self.whitespace = whitespace

    # -- files ---------------------------------------------------------------------------------
    def root(self) -> Path:
        root = Path(os.path.expandvars(self.path)).expanduser()
        if not (root / "query").is_dir():
            raise DatasetError(
                f"lara dataset: field 'path': {root.resolve()} has no 'query/' folder; expected LaRA's"
                " datasets/ layout: query/<length>_<subset>_<task>.jsonl and <length>/<subset>/<file>"
            )
        return root

    def source_path(self) -> Path:
        return self.root() / "query"

    def query_files(self) -> list[tuple[Path, str, str]]:
        """``(file, subset, level)`` of the selected query files, sorted."""
        found: dict[tuple[str, str], Path] = {}
        for file in sorted(self.source_path().glob("*.jsonl")):
            match = _QUERY_FILE.match(file.name)
            if match and match["length"] == self.context:
                found[(match["subset"], match["level"])] = file
        subsets = sorted({s for s, _ in found})
        if not found:
            raise DatasetError(
                f"lara dataset: no query/{self.context}_<subset>_<task>.jsonl files in {self.root()}"
            )
        wanted_subsets = self.subsets or subsets
        unknown = [s for s in wanted_subsets if s not in subsets]
        if unknown:
            raise DatasetError(
                f"lara dataset: field 'subsets': {unknown} have no {self.context} query files;"
                f" available: {subsets}"
            )
        wanted_levels = list(TASKS)
        if self.types is not None:
            bad = [t for t in self.types if t not in _ALIASES]
            if bad:
                raise DatasetError(
                    f"lara dataset: field 'types': unknown {bad}; expected some of {sorted(set(_ALIASES))}"
                )
            wanted_levels = [_ALIASES[t] for t in self.types]
        return [
            (found[(s, lv)], s, lv)
            for s in sorted(wanted_subsets)
            for lv in wanted_levels
            if (s, lv) in found
        ]

    def document(self, length: str, subset: str, file: str, where: str) -> Document:
        path = self.root() / length / subset / file
        if not path.is_file():
            raise DatasetError(f"{where}: field 'file': document not found: {path}")
        return read_memoised(path, _read_collapsed if self.whitespace == "collapse" else _read_document)

    # -- loading -------------------------------------------------------------------------------
    def load(self) -> LoadedDataset:
        examples: list[Example] = []
        revisions: list[str] = []
        for file, subset, level in self.query_files():
            records = read_memoised(file, parse_query_file)
            revisions.append(f"{file.name}:{stable_hash(records, length=12)}")
            for index, record in enumerate(records):
                where = f"{file}: record {index + 1}"
                length = str(record.get("length") or self.context)
                doc_subset = str(record.get("type") or subset)
                document = self.document(length, doc_subset, str(record["file"]), where)
                task = TASKS.get(str(record["level"]), str(record["level"]))
                meta: dict[str, Any] = {
                    "type": task,
                    "level": record["level"],
                    "subset": doc_subset,
                    "length": length,
                    "file": record["file"],
                    "answer_format": "free-form",
                }
                for extra in ("comp_parts", "context_order"):
                    if extra in record:
                        meta[extra] = record[extra]
                examples.append(
                    Example(
                        id=f"lara-{self.context}-{subset}-{level}-{index:04d}",
                        question=str(record["question"]),
                        answers=[str(record["answer"])],
                        documents=[document],
                        answerable=level != "hallu",
                        meta=meta,
                    )
                )
        selected = [fresh(e) for e in self.select(examples)]
        return LoadedDataset(selected, None, f"lara:{self.context}:{stable_hash(revisions)}")

    def note(self) -> str:
        files = self.query_files()
        return f"LaRA {self.context}: {len(files)} query file(s), subsets {sorted({s for _, s, _ in files})}"
