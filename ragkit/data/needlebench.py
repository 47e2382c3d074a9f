"""NeedleBench's multi-needle reasoning task (Li et al., 2024, "NeedleBench: Can LLMs Do Retrieval
and Reasoning in 1 Million Context Window?"; OpenCompass): 2 to 5 facts ("derivations") that only
answer the question together, hidden in Paul Graham's essays.

Layout: a local copy of the dataset's files (``path``, the folder of the Hugging Face dataset
``opencompass/NeedleBench``): ``multi_needle_reasoning_en.json`` (a JSON array of records with
``derivations``, ``derivation_count``, ``question`` and ``answer``) and ``PaulGrahamEssays.jsonl``
(one ``{"text": essay}`` per line), the haystack.

Construction, as OpenCompass's ``NeedleBenchMultiDataset`` (v1): question ``i`` draws a record with
``needles`` derivations and an essay order (both seeded by ``seed`` and ``i``), fills ``length``
tokens of the generator's tokenizer with essay passages of about ``passage_tokens``, and inserts the
first derivation at ``depth`` and each next one ``diff`` (a share of the haystack) after the
previous, at sentence boundaries. The question is the record's, with NeedleBench's guide sentence
("Before answering, please consider what in the document is most relevant to this question.")
unless ``guide: false``. The derivations are the gold evidence, so evidence recall and citation
scores work here. English only (the Chinese haystacks are other files).

Metric (``task_score``), as ``NeedleBenchMultiEvaluator``: the share of the answer's words found in
the lower-cased output.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragkit.constraints import Count, Fraction, Seed, Tokens
from ragkit.data._benchmark_tools import read_records, require_dir
from ragkit.data._haystack_tools import (
    TokenCounter,
    fill,
    insert_sentences,
    parse_depth,
    parse_length,
    rendered,
    seeded,
    token_counter,
)
from ragkit.data.base import (
    DatasetError,
    DatasetLoader,
    LoadedDataset,
    Partition,
    file_revision,
    read_memoised,
)
from ragkit.data.sentences import split_sentences
from ragkit.registry import register
from ragkit.task_metrics import task_metric
from ragkit.types import Document, Evidence, Example

NEEDLES_FILE = "multi_needle_reasoning_en.json"
ESSAYS_FILE = "PaulGrahamEssays.jsonl"
GUIDE = " Before answering, please consider what in the document is most relevant to this question."
CHARS_PER_TOKEN = 4  # only to cut passages near passage_tokens; lengths are counted exactly


@dataclass(frozen=True)
class _Needles:
    records: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class _Essays:
    essays: tuple[tuple[str, ...], ...]  # each essay's sentences


def parse_needles(path: Path) -> _Needles:
    records = []
    for where, record in read_records(path, ("derivations", "question", "answer")):
        derivations = record["derivations"]
        if not isinstance(derivations, list) or not all(isinstance(d, str) for d in derivations):
            raise DatasetError(f"{where}: field 'derivations': expected a list of strings")
        records.append({**record, "derivation_count": int(record.get("derivation_count", len(derivations)))})
    return _Needles(tuple(records))


def parse_essays(path: Path) -> _Essays:
    essays = []
    for where, record in read_records(path, ("text",)):
        if not isinstance(record["text"], str):
            raise DatasetError(f"{where}: field 'text': expected a string")
        essays.append(tuple(split_sentences(" ".join(record["text"].split()))))
    return _Essays(tuple(e for e in essays if e))


@register("dataset", "needlebench")
class NeedleBench(DatasetLoader):
    """``n`` multi-needle reasoning questions with ``needles`` derivations each, in haystacks of
    ``length`` tokens (an int or "8k") of ``tokenizer`` (a generator catalog name)."""

    version = "1"
    local_copy = True

    def __init__(
        self,
        *,
        path: str,
        length: Tokens | str = 4096,
        depth: Fraction = 0.0,
        diff: Fraction = 0.1,
        needles: Count = 2,
        tokenizer: str = "smollm2",
        n: Count = 20,
        guide: bool = True,
        passage_tokens: Tokens = 200,
        sample: Count | None = None,
        seed: Seed = 0,
        partition: Partition = "all",
        ids: list[str] | None = None,
    ) -> None:
        self.path = path
        self.length = length
        self.depth = depth
        self.diff = diff
        self.needles = needles
        self.tokenizer = tokenizer
        self.n = n
        self.guide = guide
        self.passage_tokens = passage_tokens
        self.sample = sample
        self.seed = seed
        self.partition = partition
        self.ids = ids

    def files(self) -> tuple[Path, Path]:
        root = require_dir(self.path, "needlebench", f"a folder with {NEEDLES_FILE} and {ESSAYS_FILE}")
        for name in (NEEDLES_FILE, ESSAYS_FILE):
            if not (root / name).is_file():
                raise DatasetError(f"needlebench dataset: field 'path': {root / name} not found")
        return root / NEEDLES_FILE, root / ESSAYS_FILE

    def source_path(self) -> Path:
        return self.files()[0]

    def note(self) -> str:
        return f"{self.n} multi-needle reasoning question(s), {self.needles} needles, {self.length} tokens"

    def describe(self) -> dict[str, Any]:
        """Without building the haystacks (that would load the tokenizer to list datasets)."""
        info: dict[str, Any] = {"type": self.registry_name, "path": None, "available": False}
        info.update(questions=self.n, note=self.note(), local_copy=True)
        try:
            info["path"] = str(self.source_path())
            info["available"] = True
        except (DatasetError, OSError) as exc:
            info["note"] = str(exc)
        return info

    def load(self) -> LoadedDataset:
        if not 0.0 <= float(self.diff) <= 1.0:
            raise DatasetError(f"needlebench dataset: field 'diff': expected 0.0 to 1.0, got {self.diff}")
        if self.n < 1 or self.passage_tokens < 1:
            raise DatasetError("needlebench dataset: fields 'n' and 'passage_tokens' must be at least 1")
        length = parse_length(self.length, "needlebench")
        depth = parse_depth(self.depth, "needlebench")
        if depth == "random":
            raise DatasetError("needlebench dataset: field 'depth': expected 0.0 to 1.0")
        needles_path, essays_path = self.files()
        records = [
            r
            for r in read_memoised(needles_path, parse_needles).records
            if r["derivation_count"] == self.needles
        ]
        if not records:
            counts = sorted(
                {r["derivation_count"] for r in read_memoised(needles_path, parse_needles).records}
            )
            raise DatasetError(
                f"needlebench dataset: field 'needles': no record with {self.needles} derivations;"
                f" available: {counts}"
            )
        essays = read_memoised(essays_path, parse_essays).essays
        counter = token_counter(self.tokenizer, loader="needlebench")
        stubs = [Example(id=f"needlebench-{i:04d}", question="", answers=[]) for i in range(self.n)]
        examples = [
            self.build(int(e.id.rsplit("-", 1)[1]), records, essays, counter, length, float(depth))
            for e in self.select(stubs)
        ]
        revision = f"needlebench:{file_revision(needles_path)};{file_revision(essays_path)}"
        return LoadedDataset(examples, None, revision)

    def build(
        self,
        i: int,
        records: list[dict[str, Any]],
        essays: tuple[tuple[str, ...], ...],
        counter: TokenCounter,
        length: int,
        depth: float,
    ) -> Example:
        example_id = f"needlebench-{i:04d}"
        rng = seeded(self.seed, "needlebench", i)
        record = rng.choice(records)
        needles = [" ".join(d.split()) for d in record["derivations"]]
        order = list(range(len(essays)))
        rng.shuffle(order)
        needle_tokens = sum(counter.count_many([" " + s for s in needles])) + len(needles)
        passages, counts = fill(self._passages(example_id, essays, order), counter, length - needle_tokens)
        total = sum(counts)
        # Offsets in the haystack without needles: each next one diff of it after the previous.
        offsets = [min((depth + j * self.diff) * total, total) for j in range(len(needles))]
        passages, owners, realised = insert_sentences(
            passages, counts, list(zip(needles, offsets, strict=True)), loader="needlebench"
        )
        question = str(record["question"]).strip() + (GUIDE if self.guide else "")
        return Example(
            id=example_id,
            question=question,
            answers=[str(record["answer"])],
            documents=passages,
            evidence=[Evidence(doc_id=owners[s], text=s) for s in needles],
            meta={
                "type": "multi-needle reasoning",
                "needles": len(needles),
                "length": length,
                "depth": depth,
                "diff": self.diff,
                "evidence_position": realised[0],
                "actual_tokens": sum(counter.count_many([rendered(d) for d in passages])),
                "n_passages": len(passages),
                "metric": "needlebench_keywords",
                "benchmark": "needlebench",
            },
        )

    def _passages(
        self, example_id: str, essays: tuple[tuple[str, ...], ...], order: list[int]
    ) -> Iterator[Document]:
        """Essay sentences in the question's essay order, about ``passage_tokens`` per passage."""
        size = self.passage_tokens * CHARS_PER_TOKEN
        parts: list[str] = []
        chars = number = 0
        for index in order:
            for sentence in essays[index]:
                parts.append(sentence)
                chars += len(sentence) + 1
                if chars >= size:
                    yield Document(id=f"{example_id}/p{number}", text=" ".join(parts), sentences=tuple(parts))
                    parts, chars, number = [], 0, number + 1
        if parts:
            yield Document(id=f"{example_id}/p{number}", text=" ".join(parts), sentences=tuple(parts))


@task_metric("needlebench_keywords")
def keywords(output: str, example: Example) -> float:
    """The share of the answer's words (lower case) that occur in the lower-cased output."""
    words = example.answers[0].lower().split() if example.answers else []
    low = output.lower()
    return sum(w in low for w in words) / len(words) if words else 0.0
