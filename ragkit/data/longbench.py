"""LongBench v1 (Bai et al., 2023, "LongBench: A Bilingual, Multitask Benchmark for Long Context
Understanding"): 21 tasks in six categories, each question with one long context.

Layout: the folder of LongBench's ``data.zip`` (``path``; its ``data/`` subfolder also works) with
one JSON Lines file per task, ``<task>.jsonl`` (LongBench-E, ``e: true``: ``<task>_e.jsonl``).
Each record has ``input`` (the question; empty for summarization and code tasks), ``context``,
``answers`` (a list), ``length`` (words), ``dataset``, ``language``, ``all_classes`` and ``_id``.

Mapping. Multi-document contexts ("Passage 1:", "Paragraph 1:") become one :class:`Document` per
passage, so a retriever ranks LongBench's own passages; other contexts are one long document (set
a ``chunker`` such as ``tokens`` on RAG arms). Tasks whose ``input`` is empty get the instruction
of LongBench's prompt as the question ("Write a one-page summary of the report."). ``meta``:
``type`` (the task), ``category``, ``length``, ``length_bucket`` (LongBench-E's 0-4k/4-8k/8k+),
``metric`` and, for few-shot tasks, ``first_line``.

Metrics (``task_score``), as LongBench's ``eval.py``: QA F1 for QA tasks, Rouge-L F1 for
summaries (``rouge-score``; LongBench's script uses the ``rouge`` package, whose tokenizer
differs slightly), its classification rule (trec), the share of numbers in the output that are the
right paragraph (passage_retrieval_en) or count (passage_count), and its edit similarity of the
first code line (lcc, repobench-p: difflib's ratio, fuzzywuzzy's pure-Python path). The few-shot
tasks are scored on the first line of the output. The Chinese tasks are not loaded: their metrics
need jieba word segmentation, which ragkit does not install. Generation lengths LongBench uses
(``dataset2maxlen``): 32 tokens for QA and synthetic tasks, 64 for trec/code, 128 for
narrativeqa/qasper, 512 for summaries; set ``max_new_tokens`` on the arms to match.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragkit.constraints import Count, Seed
from ragkit.data._benchmark_tools import (
    document,
    labelled_documents,
    pick_tasks,
    read_records,
    require_dir,
    string,
    strings,
)
from ragkit.data.base import DatasetError, DatasetLoader, LoadedDataset, Partition, fresh, read_memoised
from ragkit.registry import register
from ragkit.task_metrics import task_metric
from ragkit.types import Example, stable_hash


@dataclass(frozen=True)
class Task:
    category: str
    metric: str
    question: str = "{input}"  # LongBench's instruction when the record's input is not the question
    split: str | None = None  # "Passage" / "Paragraph": one document per numbered block
    first_line: bool = False


TASKS: dict[str, Task] = {
    "narrativeqa": Task("single-doc QA", "qa_f1"),
    "qasper": Task("single-doc QA", "qa_f1"),
    "multifieldqa_en": Task("single-doc QA", "qa_f1"),
    "hotpotqa": Task("multi-doc QA", "qa_f1", split="Passage"),
    "2wikimqa": Task("multi-doc QA", "qa_f1", split="Passage"),
    "musique": Task("multi-doc QA", "qa_f1", split="Passage"),
    "gov_report": Task("summarization", "rouge_l", "Write a one-page summary of the report."),
    "qmsum": Task("summarization", "rouge_l"),
    "multi_news": Task("summarization", "rouge_l", "Write a one-page summary of all the news."),
    "trec": Task(
        "few-shot",
        "longbench_classification",
        "Determine the type of the question below, following the examples.\n\n{input}",
        first_line=True,
    ),
    "triviaqa": Task("few-shot", "qa_f1", first_line=True),
    "samsum": Task(
        "few-shot",
        "rouge_l",
        "Summarize the dialogue into a few short sentences, following the examples.\n\n{input}",
        first_line=True,
    ),
    "passage_count": Task(
        "synthetic",
        "longbench_count",
        "Some of the paragraphs may be duplicates. How many unique paragraphs are there after"
        " removing duplicates? Answer with the number only.",
        split="Paragraph",
    ),
    "passage_retrieval_en": Task(
        "synthetic",
        "longbench_retrieval",
        'Which paragraph is the following abstract from? Answer like "Paragraph 1".\n\nAbstract: {input}',
        split="Paragraph",
    ),
    "lcc": Task("code", "longbench_code_sim", "Write the next line of the code given in the documents."),
    "repobench-p": Task(
        "code",
        "longbench_code_sim",
        "Using the code in the documents, write the next line of this code:\n\n{input}",
    ),
}
CHINESE = ("multifieldqa_zh", "dureader", "vcsum", "lsht", "passage_retrieval_zh")
REQUIRED = ("input", "context", "answers", "_id")


@dataclass(frozen=True)
class _Parsed:
    examples: tuple[Example, ...]


def _bucket(length: Any) -> str | None:
    if not isinstance(length, int | float):
        return None
    return "0-4k" if length < 4000 else "4-8k" if length < 8000 else "8k+"


def parse_task_file(path: Path) -> _Parsed:
    task = path.stem.removesuffix("_e")
    spec = TASKS[task]
    examples = []
    for where, record in read_records(path, REQUIRED):
        example_id = f"longbench-{task}-{record['_id']}"
        context = string(record, "context", where, empty_ok=False)
        question_input = string(record, "input", where)
        if spec.split:
            documents = labelled_documents(
                context, spec.split, example_id, title_line=spec.split == "Passage"
            )
        else:
            documents = [document(f"{example_id}/context", context)]
        question = spec.question.format(input=question_input.strip()).strip()
        if not question:
            raise DatasetError(f"{where}: field 'input': empty, and task {task!r} needs a question")
        meta: dict[str, Any] = {
            "type": task,
            "category": spec.category,
            "length": record.get("length"),
            "length_bucket": _bucket(record.get("length")),
            "metric": spec.metric,
            "benchmark": "longbench",
        }
        if spec.first_line:
            meta["first_line"] = True
        if spec.metric == "longbench_classification":
            meta["all_classes"] = strings(record, "all_classes", where)
        examples.append(
            Example(
                id=example_id,
                question=question,
                answers=strings(record, "answers", where),
                documents=documents,
                meta=meta,
            )
        )
    return _Parsed(tuple(examples))


@register("dataset", "longbench")
class LongBench(DatasetLoader):
    """LongBench v1 tasks (``tasks``: all English tasks present when null) from a local copy."""

    version = "1"
    local_copy = True

    def __init__(
        self,
        *,
        path: str,
        tasks: list[str] | None = None,
        e: bool = False,
        sample: Count | None = None,
        seed: Seed = 0,
        partition: Partition = "all",
        ids: list[str] | None = None,
    ) -> None:
        self.path = path
        self.tasks = tasks
        self.e = e
        self.sample = sample
        self.seed = seed
        self.partition = partition
        self.ids = ids

    def root(self) -> Path:
        root = require_dir(self.path, "longbench", "LongBench's data/ folder of <task>.jsonl files")
        return root / "data" if not any(root.glob("*.jsonl")) and (root / "data").is_dir() else root

    def source_path(self) -> Path:
        return self.root()

    def files(self) -> list[Path]:
        suffix = "_e.jsonl" if self.e else ".jsonl"
        root = self.root()
        chinese = [t for t in self.tasks or [] if t in CHINESE]
        if chinese:
            raise DatasetError(
                f"longbench dataset: field 'tasks': {chinese} are Chinese tasks, whose metrics need jieba"
                " word segmentation (not installed with ragkit); choose among the English tasks"
            )
        unknown = [t for t in self.tasks or [] if t not in TASKS]
        if unknown:
            raise DatasetError(
                f"longbench dataset: field 'tasks': unknown {unknown}; expected some of {list(TASKS)}"
            )
        available = [t for t in TASKS if (root / f"{t}{suffix}").is_file()]
        if not available and self.tasks is None:
            raise DatasetError(f"longbench dataset: no <task>{suffix} files of English tasks in {root}")
        return [root / f"{t}{suffix}" for t in pick_tasks(available, self.tasks, "longbench")]

    def note(self) -> str:
        return f"LongBench{'-E' if self.e else ''}: {len(self.files())} task file(s)"

    def load(self) -> LoadedDataset:
        examples: list[Example] = []
        revisions = []
        for file in self.files():
            examples.extend(read_memoised(file, parse_task_file).examples)
            stat = file.stat()
            revisions.append([file.name, stat.st_size, stat.st_mtime_ns])
        selected = [fresh(e) for e in self.select(examples)]
        return LoadedDataset(selected, None, f"longbench:{stable_hash(revisions)}")


# -- LongBench's own scoring rules (metrics.py of the LongBench repository) -------------------------
@task_metric("longbench_classification")
def classification(output: str, example: Example) -> float:
    """1/len(matches) when the reference is among the class names found in the output; names that
    are part of the reference (and not it) do not count as matches. (LongBench's loop removes them
    from the list it iterates over, which can skip one; this is the rule it means.)"""
    classes = [str(c) for c in example.meta.get("all_classes") or []]
    best = 0.0
    for reference in example.answers:
        matched = [c for c in classes if c in output]
        matched = [c for c in matched if not (c in reference and c != reference)]
        if reference in matched:
            best = max(best, 1.0 / len(matched))
    return best


def _share_equal(output: str, wanted: str) -> float:
    numbers = re.findall(r"\d+", output)
    return sum(n == wanted for n in numbers) / len(numbers) if numbers else 0.0


@task_metric("longbench_retrieval")
def retrieval(output: str, example: Example) -> float:
    """The share of numbers in the output equal to the reference paragraph's number."""
    best = 0.0
    for reference in example.answers:
        found = re.findall(r"Paragraph (\d+)", reference)
        if found:
            best = max(best, _share_equal(output, found[0]))
    return best


@task_metric("longbench_count")
def count(output: str, example: Example) -> float:
    """The share of numbers in the output equal to the reference count."""
    return max((_share_equal(output, str(r).strip()) for r in example.answers), default=0.0)


@task_metric("longbench_code_sim")
def code_sim(output: str, example: Example) -> float:
    """Similarity of the first output line that is not a comment or code fence to the reference."""
    line = next(
        (ln for ln in output.lstrip("\n").split("\n") if "`" not in ln and "#" not in ln and "//" not in ln),
        "",
    )
    return max(
        (round(100 * difflib.SequenceMatcher(None, line, r).ratio()) / 100 for r in example.answers),
        default=0.0,
    )
