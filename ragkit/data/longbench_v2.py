"""LongBench v2 (Bai et al., 2024, "LongBench v2: Towards Deeper Understanding and Reasoning on
Realistic Long-context Multitasks"): 503 four-option multiple-choice questions over contexts of 8k
to 2M words, in six domains.

Layout: the dataset's ``data.json`` (``path``), a JSON array of records with ``_id``, ``domain``,
``sub_domain``, ``difficulty`` (easy/hard), ``length`` (short/medium/long), ``question``,
``choice_A`` .. ``choice_D``, ``answer`` (a letter) and ``context``.

Mapping. The context is one long document (set a ``chunker`` on RAG arms). The question carries
the choices and LongBench v2's answer format, as its zero-shot prompt does: "Format your response
as follows: "The correct answer is (insert answer here)"". ``meta``: ``type`` (the domain),
``sub_domain``, ``difficulty``, ``length`` and the metric.

Metric (``task_score``): accuracy with LongBench v2's own answer extraction (``pred.py``):
asterisks removed, then the letter in "The correct answer is (X)", else in "The correct answer is
X"; anything else is wrong. A small model that answers "(B)" or "B" scores 0: that is the
benchmark's rule, and ``choice_lenient`` (a column of its own) shows how much of the gap is format.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ragkit.constraints import Count, Seed
from ragkit.data._benchmark_tools import document, local_path, read_records, string
from ragkit.data.base import (
    DatasetError,
    DatasetLoader,
    LoadedDataset,
    Partition,
    file_revision,
    fresh,
    read_memoised,
)
from ragkit.registry import register
from ragkit.task_metrics import task_metric
from ragkit.types import Example

LETTERS = ("A", "B", "C", "D")
REQUIRED = ("_id", "question", "answer", "context", *(f"choice_{x}" for x in LETTERS))
FORMAT = 'Format your response as follows: "The correct answer is (insert answer here)".'


@dataclass(frozen=True)
class _Parsed:
    examples: tuple[Example, ...]


def question_text(question: str, choices: dict[str, str]) -> str:
    lines = [f"What is the correct answer to this question: {question.strip()}", "Choices:"]
    lines += [f"({x}) {choices[x].strip()}" for x in LETTERS]
    return "\n".join(lines) + f"\n\n{FORMAT}"


def parse_data(path: Path) -> _Parsed:
    examples = []
    for where, record in read_records(path, REQUIRED):
        answer = string(record, "answer", where).strip()
        if answer not in LETTERS:
            raise DatasetError(f"{where}: field 'answer': expected one of {LETTERS}, got {answer!r}")
        example_id = f"longbench-v2-{record['_id']}"
        choices = {x: string(record, f"choice_{x}", where) for x in LETTERS}
        examples.append(
            Example(
                id=example_id,
                question=question_text(string(record, "question", where, empty_ok=False), choices),
                answers=[answer],
                documents=[document(f"{example_id}/context", string(record, "context", where))],
                meta={
                    "type": record.get("domain"),
                    "sub_domain": record.get("sub_domain"),
                    "difficulty": record.get("difficulty"),
                    "length": record.get("length"),
                    "metric": "choice",
                    "benchmark": "longbench-v2",
                },
            )
        )
    return _Parsed(tuple(examples))


@register("dataset", "longbench-v2")
class LongBenchV2(DatasetLoader):
    """LongBench v2 from a local ``data.json``, optionally one difficulty, some lengths, domains."""

    version = "1"
    local_copy = True

    def __init__(
        self,
        *,
        path: str,
        domains: list[str] | None = None,
        difficulty: Literal["easy", "hard"] | None = None,
        lengths: list[Literal["short", "medium", "long"]] | None = None,
        sample: Count | None = None,
        seed: Seed = 0,
        partition: Partition = "all",
        ids: list[str] | None = None,
    ) -> None:
        self.path = path
        self.domains = domains
        self.difficulty = difficulty
        self.lengths = lengths
        self.sample = sample
        self.seed = seed
        self.partition = partition
        self.ids = ids

    def source_path(self) -> Path:
        path = local_path(self.path)
        if path.is_dir():
            path = path / "data.json"
        if not path.is_file():
            raise DatasetError(
                f"longbench-v2 dataset: field 'path': file not found: {path.resolve()};"
                " expected LongBench v2's data.json (or the folder holding it)"
            )
        return path

    def load(self) -> LoadedDataset:
        path = self.source_path()
        examples = read_memoised(path, parse_data).examples
        known = sorted({str(e.meta["type"]) for e in examples})
        unknown = [d for d in self.domains or [] if d not in known]
        if unknown:
            raise DatasetError(
                f"longbench-v2 dataset: field 'domains': {unknown} not in the data; available: {known}"
            )

        def keep(e: Example) -> bool:
            return (
                (self.domains is None or e.meta["type"] in self.domains)
                and (self.difficulty is None or e.meta["difficulty"] == self.difficulty)
                and (self.lengths is None or e.meta["length"] in self.lengths)
            )

        selected = [fresh(e) for e in self.select(examples, keep)]
        return LoadedDataset(selected, None, f"longbench-v2:{file_revision(path)}")


_STRICT = (re.compile(r"The correct answer is \(([A-D])\)"), re.compile(r"The correct answer is ([A-D])"))
# "(B)", or a bare letter followed by ".", ")", ":" or the end ("B.", "answer: C"; not "A cat").
_LENIENT = re.compile(r"\(([A-D])\)|\b([A-D])(?=[.):]|\s*$)")


def extract_choice(output: str) -> str | None:
    """The letter LongBench v2 reads from an output, or None."""
    text = output.replace("*", "")
    for pattern in _STRICT:
        match = pattern.search(text)
        if match:
            return match.group(1)
    return None


def lenient_choice(output: str) -> str | None:
    """The strict letter, else the first stand-alone A-D ("(B)", "B.", "answer: C")."""
    strict = extract_choice(output)
    if strict is not None:
        return strict
    match = _LENIENT.search(output.replace("*", ""))
    return (match.group(1) or match.group(2)) if match else None


@task_metric("choice")
def choice(output: str, example: Example) -> dict[str, float]:
    return {
        "task_score": float(extract_choice(output) in example.answers),
        "choice_lenient": float(lenient_choice(output) in example.answers),
    }
