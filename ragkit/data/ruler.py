"""RULER's non-needle tasks (Hsieh et al., 2024, "RULER: What's the Real Context Size of Your
Long-Context Language Models?") from the files its ``prepare.py`` writes: variable tracking
(multi-hop), common and frequent word extraction (aggregation) and QA over SQuAD/HotpotQA
paragraphs. RULER's needle tasks are ragkit's ``needle`` dataset, built here at any length.

Layout: the folder RULER writes a length's data to (``path``, e.g. ``<results>/synthetic/4096/data``)
with one folder per task (``vt``, ``cwe``, ``fwe``, ``qa_1``, ``qa_2`` in RULER's
``synthetic.yaml``; any names work) holding ``validation.jsonl`` (``subset``). Each record has
``index``, ``input`` (the whole prompt: the task template with its context and question, after
any few-shot example and inside the model's chat template), ``outputs`` (the expected strings),
``length`` and ``answer_prefix``.

Mapping. A task is recognised by its template's instruction in ``input`` (the last occurrence: the
few-shot example comes first), so folder names and chat templates do not matter. The context
between the instruction and the question becomes passages a retriever can rank: QA's "Document
N:" blocks one document each; the other contexts cut into passages of about ``passage_tokens``
(at sentence ends for variable tracking, between numbered words for common words, between coded
words for frequent words). Variable tracking's gold evidence is the chain's "VAR X = ..."
statements. The few-shot example and RULER's answer prefix are not part of ragkit's prompt (the
prefix is kept in ``meta``). ``meta``: ``type`` (variable_tracking, common_words_extraction,
freq_words_extraction, qa), ``ruler_task`` (the folder), ``length`` (RULER's token count).

Metrics (``task_score``), as RULER's ``evaluate.py``: ``string_match_all`` (the share of expected
strings in the output, case-insensitive) for all but QA, ``string_match_part`` (any) for QA.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragkit.constraints import Count, Seed, Tokens
from ragkit.data._benchmark_tools import (
    cut_passages,
    labelled_documents,
    pick_tasks,
    read_records,
    require_dir,
    string,
    strings,
)
from ragkit.data.base import DatasetError, DatasetLoader, LoadedDataset, Partition, read_memoised
from ragkit.registry import register
from ragkit.types import Document, Evidence, Example, stable_hash

CHARS_PER_TOKEN = 4  # only to size passages


@dataclass(frozen=True)
class Template:
    kind: str
    start: str  # the instruction right before the context
    end: str  # where the question starts after the context
    metric: str
    boundary: str  # where passages may be cut


TEMPLATES = (
    Template(
        "variable_tracking",
        "Memorize and track the chain(s) of variable assignment hidden in the following text.",
        "Question: Find all variables",
        "string_match_all",
        r"(?<=[.!?\n])\s+",
    ),
    Template(
        "common_words_extraction",
        "Below is a numbered list of words. In these words, some appear more often than others."
        " Memorize the ones that appear most often.",
        "Question: What are the",
        "string_match_all",
        r"\s+(?=\d+\.\s)",
    ),
    Template(
        "freq_words_extraction",
        "Read the following coded text and track the frequency of each coded word. Find the three"
        " most frequently appeared coded words.",
        "Question: Do not provide any explanation.",
        "string_match_all",
        r"\s+",
    ),
    Template(
        "qa",
        "The following are given documents.",
        "Answer the question based on the given documents.",
        "string_match_part",
        "",
    ),
)
_NEEDLE = "Some special magic"
_CHAT_END = re.compile(r"<\||\[/INST\]|</s>|<end_of_turn>|<\|eot_id\|>")
_VAR = re.compile(r"VAR ([A-Z]+) = (?:VAR [A-Z]+|\d+)")


def _pattern(text: str) -> re.Pattern[str]:
    """``text`` matched with any whitespace between its words (RULER can strip newlines)."""
    return re.compile(r"\s+".join(re.escape(w) for w in text.split()))


def _split(text: str, where: str) -> tuple[Template, str, str]:
    """(template, context, question) of one RULER input."""
    for template in TEMPLATES:
        starts = list(_pattern(template.start).finditer(text))
        if not starts:
            continue
        begin = starts[-1].end()
        end = _pattern(template.end).search(text, begin)
        if end is None:
            raise DatasetError(
                f"{where}: field 'input': no {template.end!r} after the {template.kind} context"
            )
        question = text[end.start() :]
        if template.kind == "qa":
            question = question[question.rfind("Question:") :]
        question = re.sub(r"^Question:\s*", "", question.strip()).split("\n")[0]
        question = _CHAT_END.split(question)[0].strip()  # the model's chat template may follow
        return template, text[begin : end.start()].strip(), question
    if _NEEDLE in text:
        raise DatasetError(f"{where}: a RULER needle task; use ragkit's `needle` dataset for needles")
    raise DatasetError(f"{where}: field 'input': not one of RULER's vt, cwe, fwe or qa templates")


def _documents(template: Template, context: str, prefix: str, passage_tokens: int) -> list[Document]:
    if template.kind == "qa":
        return labelled_documents(context, "Document", prefix, title_line=True)
    return cut_passages(context, prefix, passage_tokens * CHARS_PER_TOKEN, template.boundary)


def _chain(documents: list[Document], variables: list[str]) -> list[Evidence]:
    wanted = set(variables)
    return [
        Evidence(doc_id=doc.id, text=match.group(0).strip())
        for doc in documents
        for match in _VAR.finditer(doc.text)
        if match.group(1) in wanted
    ]


def read_task_file(path: Path) -> tuple[tuple[str, dict[str, Any]], ...]:
    return read_records(path, ("input", "outputs"))


def task_examples(path: Path, passage_tokens: int) -> list[Example]:
    """The examples of one task file, its passages cut to ``passage_tokens``."""
    folder = path.parent.name
    examples = []
    for where, record in read_memoised(path, read_task_file):
        template, context, question = _split(string(record, "input", where, empty_ok=False), where)
        index = record.get("index", len(examples))
        example_id = f"ruler-{folder}-{index}"
        documents = _documents(template, context, example_id, passage_tokens)
        outputs = [o for o in strings(record, "outputs", where) if o.strip()]
        meta: dict[str, Any] = {
            "type": template.kind,
            "ruler_task": folder,
            "length": record.get("length"),
            "metric": template.metric,
            "answer_prefix": str(record.get("answer_prefix") or "").strip(),
            "benchmark": "ruler",
        }
        examples.append(
            Example(
                id=example_id,
                question=question,
                answers=outputs,
                documents=documents,
                evidence=_chain(documents, outputs) if template.kind == "variable_tracking" else [],
                meta=meta,
            )
        )
    return examples


@register("dataset", "ruler")
class Ruler(DatasetLoader):
    """RULER's non-needle tasks (``tasks``: task folders, all present when null) from the data
    folder its ``prepare.py`` wrote for one sequence length."""

    version = "1"
    local_copy = True

    def __init__(
        self,
        *,
        path: str,
        tasks: list[str] | None = None,
        subset: str = "validation",
        passage_tokens: Tokens = 200,
        sample: Count | None = None,
        seed: Seed = 0,
        partition: Partition = "all",
        ids: list[str] | None = None,
    ) -> None:
        self.path = path
        self.tasks = tasks
        self.subset = subset
        self.passage_tokens = passage_tokens
        self.sample = sample
        self.seed = seed
        self.partition = partition
        self.ids = ids

    def source_path(self) -> Path:
        return require_dir(self.path, "ruler", "RULER's data folder of <task>/validation.jsonl files")

    def files(self) -> list[Path]:
        root = self.source_path()
        found = sorted(d.name for d in root.iterdir() if (d / f"{self.subset}.jsonl").is_file())
        if self.tasks is None:  # RULER's needle folders are left to the needle dataset
            found = [t for t in found if not t.startswith("niah")]
        return [root / t / f"{self.subset}.jsonl" for t in pick_tasks(found, self.tasks, "ruler")]

    def note(self) -> str:
        return f"RULER: {len(self.files())} task folder(s)"

    def load(self) -> LoadedDataset:
        if self.passage_tokens < 1:
            raise DatasetError("ruler dataset: field 'passage_tokens' must be at least 1")
        examples: list[Example] = []
        revisions = []
        for file in self.files():
            examples.extend(task_examples(file, self.passage_tokens))
            stat = file.stat()
            revisions.append([file.parent.name, stat.st_size, stat.st_mtime_ns])
        selected = self.select(examples)  # built here, not shared: no copy needed
        return LoadedDataset(selected, None, f"ruler:{stable_hash([revisions, self.passage_tokens])}")
