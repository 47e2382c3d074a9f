"""LooGLE (Li et al., 2023, "LooGLE: Can Long-Context Language Models Understand Long Contexts?"):
questions over documents of 24k+ tokens (Wikipedia articles, arXiv papers, screenplays), with
short-dependency tasks (QA and cloze answerable from one passage) and long-dependency tasks (QA
that needs evidence spread over the document, summaries).

Layout: the folder (``path``) holding LooGLE's task files, ``<task>.jsonl`` as in the
repository's ``LooGLE-testdata/`` or ``<task>.json`` (the same JSON Lines) as in the Hugging Face
copy's ``data/``: ``shortdep_qa``, ``longdep_qa``, ``shortdep_cloze``, ``longdep_summarization``.
Each line is one document: ``input``, ``title``, ``qa_pairs`` (a Python-literal list of
``{"Q", "A", "S", "type"?}``, or ``"none"``) and ``output`` (the reference summary).

Mapping: one example per QA pair (summaries: one per document) with the document as one long
:class:`Document` (set a ``chunker`` on RAG arms) and the pair's evidence ``S`` (a sentence or a
list of them) as gold evidence: evidence recall and citation scores work on LooGLE. ``meta``:
``type`` (the task), ``qa_type`` (long-dependency QA's comprehension_and_reasoning, computation,
timeline_reorder, multiple_information_retrieval), ``title`` and the metric.

Metrics (``task_score``): Rouge-L F1 for QA and summaries (``rouge-score``; LooGLE's script reports
BLEU, Rouge (recall by default), METEOR, BERTScore and GPT-4 verdicts: add ``evaluation.judge``
for a model-graded score, and ``answer_format: free-form`` lets the approximate answer recall in
too); cloze by LooGLE's exact match: the share of masks whose entity the output gives exactly
(the output is read as a JSON or Python dict of ``"<mask-n>": entity``).
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragkit.constraints import Count, Seed
from ragkit.data._benchmark_tools import document, pick_tasks, read_records, require_dir, string
from ragkit.data.base import DatasetError, DatasetLoader, LoadedDataset, Partition, fresh, read_memoised
from ragkit.registry import register
from ragkit.task_metrics import task_metric
from ragkit.types import Evidence, Example, stable_hash

TASKS = ("shortdep_qa", "longdep_qa", "shortdep_cloze", "longdep_summarization")
SUMMARY_QUESTION = "Write a summary of the paper."
CLOZE_FORMAT = (
    "Each <mask-n> in the text above stands for an entity (a person, location or organisation); the"
    " same mask is the same entity. What are the masked entities? Answer as JSON, for example"
    ' {"<mask-0>": "Bob", "<mask-1>": "Gorrosion Magazine"}.'
)


@dataclass(frozen=True)
class _Parsed:
    examples: tuple[Example, ...]


def _pairs(value: Any, where: str) -> list[dict[str, Any]]:
    """``qa_pairs``: a list, or its Python literal (read with ``ast.literal_eval``, which never runs
    code); ``"none"`` for summaries."""
    if isinstance(value, str):
        if value.strip().lower() == "none":
            return []
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError) as exc:
            raise DatasetError(f"{where}: field 'qa_pairs': not a list literal ({exc})") from None
    if not isinstance(value, list) or not all(isinstance(p, dict) for p in value):
        raise DatasetError(f"{where}: field 'qa_pairs': expected a list of {{Q, A, S}} objects")
    return value


def _evidence(value: Any, doc_id: str) -> list[Evidence]:
    texts = value if isinstance(value, list) else [value] if isinstance(value, str) else []
    return [Evidence(doc_id=doc_id, text=" ".join(str(t).split())) for t in texts if str(t).strip()]


def parse_task_file(path: Path) -> _Parsed:
    task = path.stem
    examples = []
    for line, (where, record) in enumerate(read_records(path, ("input",))):
        title = str(record.get("title") or "")
        doc_id = f"loogle-{task}-{line:03d}"
        doc = document(doc_id, string(record, "input", where, empty_ok=False), title)
        base = {"type": task, "title": title, "benchmark": "loogle"}
        if task == "longdep_summarization":
            examples.append(
                Example(
                    id=doc_id,
                    question=SUMMARY_QUESTION,
                    answers=[string(record, "output", where, empty_ok=False)],
                    documents=[doc],
                    meta={**base, "metric": "rouge_l", "answer_format": "free-form"},
                )
            )
            continue
        for i, pair in enumerate(_pairs(record.get("qa_pairs"), where)):
            if "Q" not in pair or "A" not in pair:
                raise DatasetError(f"{where}: field 'qa_pairs[{i}]': needs 'Q' and 'A'")
            meta: dict[str, Any] = {**base, "qa_type": pair.get("type")}
            if task == "shortdep_cloze":
                answer = pair["A"]
                if not isinstance(answer, dict):
                    raise DatasetError(f"{where}: field 'qa_pairs[{i}].A': expected a dict of masks")
                meta.update(metric="loogle_cloze", masks=json.dumps(answer, ensure_ascii=False))
                question, answers = f"{pair['Q']}\n\n{CLOZE_FORMAT}", [str(v) for v in answer.values()]
            else:
                meta.update(metric="rouge_l", answer_format="free-form")
                question, answers = str(pair["Q"]), [str(pair["A"])]
            examples.append(
                Example(
                    id=f"{doc_id}-{i:02d}",
                    question=question,
                    answers=answers,
                    documents=[doc],
                    evidence=_evidence(pair.get("S"), doc_id),
                    meta=meta,
                )
            )
    return _Parsed(tuple(examples))


@register("dataset", "loogle")
class LooGLE(DatasetLoader):
    """LooGLE tasks (``tasks``: all present when null) from a local folder of its task files."""

    version = "1"
    local_copy = True

    def __init__(
        self,
        *,
        path: str,
        tasks: list[str] | None = None,
        sample: Count | None = None,
        seed: Seed = 0,
        partition: Partition = "all",
        ids: list[str] | None = None,
    ) -> None:
        self.path = path
        self.tasks = tasks
        self.sample = sample
        self.seed = seed
        self.partition = partition
        self.ids = ids

    def source_path(self) -> Path:
        return require_dir(self.path, "loogle", "a folder of LooGLE's <task>.jsonl (or .json) files")

    def files(self) -> list[Path]:
        root = self.source_path()
        found = {}
        for task in TASKS:
            for suffix in (".jsonl", ".json"):
                if (root / f"{task}{suffix}").is_file():
                    found.setdefault(task, root / f"{task}{suffix}")
        return [found[t] for t in pick_tasks([t for t in TASKS if t in found], self.tasks, "loogle")]

    def note(self) -> str:
        return f"LooGLE: {len(self.files())} task file(s)"

    def load(self) -> LoadedDataset:
        examples: list[Example] = []
        revisions = []
        for file in self.files():
            examples.extend(read_memoised(file, parse_task_file).examples)
            stat = file.stat()
            revisions.append([file.name, stat.st_size, stat.st_mtime_ns])
        selected = [fresh(e) for e in self.select(examples)]
        return LoadedDataset(selected, None, f"loogle:{stable_hash(revisions)}")


def _as_dict(output: str) -> dict[str, Any] | None:
    """The first {...} of the output as JSON, else as a Python literal; None when neither."""
    match = re.search(r"\{.*\}", output, flags=re.DOTALL)
    if match is None:
        return None
    for parse in (json.loads, ast.literal_eval):
        try:
            value = parse(match.group(0))
        except (ValueError, SyntaxError):
            continue
        if isinstance(value, dict):
            return value
    return None


@task_metric("loogle_cloze")
def cloze(output: str, example: Example) -> dict[str, float]:
    """LooGLE's exact and partial match, per question: the share of masks whose entity the output
    gives exactly, and the share sharing at least one word with it."""
    masks: dict[str, str] = json.loads(example.meta["masks"])
    given = _as_dict(output) or {}
    if not masks:
        return {"task_score": 0.0, "cloze_partial": 0.0}
    exact = sum(str(given.get(k)) == str(v) for k, v in masks.items() if k in given)
    partial = sum(
        bool(set(str(given[k]).split()) & set(str(v).split())) for k, v in masks.items() if k in given
    )
    return {"task_score": exact / len(masks), "cloze_partial": partial / len(masks)}
