"""Building blocks shared by the haystack and needle builders: token counting in a generator's
tokenizer (each distinct text once), the passage rendering lengths are counted in, option
parsing, seeded randomness, filling a token budget with passages and placing evidence at a depth.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

from ragkit.data.base import DatasetError
from ragkit.types import Chunk, Document, stable_hash

MAX_SKIPS = 8  # candidates that do not fit, tried before the haystack is declared full
_LABEL_INDEX = 10  # passages are counted with a two-digit label, "Document [10]"


class TokenCounter:
    """Token counts of texts in one tokenizer, each distinct text counted once per process."""

    def __init__(self, lengths: Callable[[list[str]], list[int]], name: str) -> None:
        self.lengths = lengths
        self.name = name
        self.counts: dict[str, int] = {}
        self.encoded = 0  # texts actually tokenized (the rest were cache hits)

    def count_many(self, texts: Sequence[str]) -> list[int]:
        missing = [t for t in dict.fromkeys(texts) if t not in self.counts]
        for start in range(0, len(missing), 512):
            batch = missing[start : start + 512]
            self.counts.update(zip(batch, self.lengths(batch), strict=True))
            self.encoded += len(batch)
        return [self.counts[t] for t in texts]

    def count(self, text: str) -> int:
        return self.count_many([text])[0]


def lengths_of(tokenizer: Any) -> Callable[[list[str]], list[int]]:
    """Batch token lengths without special tokens: HF tokenizers (``.hf`` of ragkit's wrapper)
    encode a batch in one call; anything else with ``encode`` text by text."""
    hf = getattr(tokenizer, "hf", tokenizer)
    if callable(hf) and hasattr(hf, "convert_tokens_to_ids"):
        return lambda texts: [len(ids) for ids in hf(texts, add_special_tokens=False)["input_ids"]]
    return lambda texts: [len(tokenizer.encode(t)) for t in texts]


_COUNTERS: dict[str, TokenCounter] = {}


def token_counter(tokenizer: str, *, loader: str = "haystack") -> TokenCounter:
    """The counter for ``tokenizer``: a generator catalog name (``smollm2``, ``gemma3-270m``) or
    registered type, whose tokenizer loads without the weights; else a local HF tokenizer folder."""
    if tokenizer in _COUNTERS:
        return _COUNTERS[tokenizer]
    from ragkit import registry
    from ragkit.config import build_component, expand_component, find_catalog

    if find_catalog("generator", tokenizer) is not None or tokenizer in registry.names("generator"):
        alternatives = expand_component("generator", tokenizer, None, "tokenizer")
        if len(alternatives) != 1:
            raise DatasetError(f"{loader} dataset: field 'tokenizer': generator {tokenizer!r} is a sweep")
        source = build_component("generator", alternatives[0]).tokenizer
    else:
        try:
            from transformers import AutoTokenizer

            source = AutoTokenizer.from_pretrained(tokenizer, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise DatasetError(
                f"{loader} dataset: field 'tokenizer': {tokenizer!r} is not a generator catalog name"
                f" ({', '.join(_catalog_generators())}), a registered generator type or a local"
                f" Hugging Face tokenizer folder ({exc})"
            ) from None
    _COUNTERS[tokenizer] = TokenCounter(lengths_of(source), tokenizer)
    return _COUNTERS[tokenizer]


def _catalog_generators() -> list[str]:
    from ragkit.config import catalog_names

    return catalog_names("generator")


def rendered(doc: Document) -> str:
    """A passage as the full-context prompt shows it, with the blank line before it (counted as a
    prefix: some tokenizers merge a trailing blank line into one token but split it mid-text)."""
    from ragkit.strategies.prompts import format_chunk

    chunk = Chunk(id=doc.id, doc_id=doc.id, text=doc.text, title=doc.title)
    return "\n\n" + format_chunk(_LABEL_INDEX, chunk)


def parse_depth(depth: float | str, loader: str) -> float | str:
    if depth == "random":
        return depth
    try:
        value = float(depth)
    except (TypeError, ValueError):
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise DatasetError(f"{loader} dataset: field 'depth': expected 0.0 to 1.0 or 'random', got {depth!r}")
    return value


def parse_length(length: int | str, loader: str) -> int:
    from ragkit.budget import parse_tokens

    try:
        value = parse_tokens(length)
    except ValueError as exc:
        raise DatasetError(f"{loader} dataset: field 'length': {exc}") from None
    if value < 1:
        raise DatasetError(f"{loader} dataset: field 'length': must be positive, got {length!r}")
    return value


def seeded(*parts: Any) -> random.Random:
    return random.Random(int(stable_hash(list(parts)), 16))


def insertion_point(counts: Sequence[int], depth: float) -> tuple[int, float]:
    """The boundary ``j`` (0..len(counts)) whose token offset is nearest ``depth`` of the total,
    and the realised depth at it."""
    total = sum(counts)
    if total == 0:
        return 0, 0.0
    target = depth * total
    best, best_offset, offset = 0, 0, 0
    for j in range(len(counts) + 1):
        if abs(offset - target) < abs(best_offset - target):
            best, best_offset = j, offset
        if j < len(counts):
            offset += counts[j]
    return best, best_offset / total


def fill(
    candidates: Iterator[Document], counter: TokenCounter, budget: int
) -> tuple[list[Document], list[int]]:
    """Passages from ``candidates``, in order, while they fit in ``budget`` tokens (skipping up to
    ``MAX_SKIPS`` in a row that do not). Counts in batches sized to what is left."""
    chosen: list[Document] = []
    counts: list[int] = []
    total = skips = 0
    while skips < MAX_SKIPS and total < budget:
        average = (total / len(counts)) if counts else 150.0
        size = max(MAX_SKIPS, int((budget - total) / max(average, 1.0) * 1.1) + 2)
        batch = list(itertools.islice(candidates, size))
        if not batch:
            break
        for doc, n in zip(batch, counter.count_many([rendered(d) for d in batch]), strict=True):
            if total + n <= budget:
                chosen.append(doc)
                counts.append(n)
                total += n
                skips = 0
            else:
                skips += 1
                if skips >= MAX_SKIPS:
                    break
    return chosen, counts


def locate(passages: list[Document], counts: list[int], offset: float) -> tuple[int, int, float]:
    """(passage, sentence boundary inside it, token offset of that boundary) nearest ``offset``."""
    if not passages:
        raise DatasetError("needle dataset: field 'length' leaves no room for a haystack around the needles")
    cumulative = 0
    for p, n in enumerate(counts):
        if offset <= cumulative + n or p == len(counts) - 1:
            inside = len(passages[p].sentences)
            k = round(min(max((offset - cumulative) / max(n, 1), 0.0), 1.0) * inside)
            return p, k, cumulative + n * k / max(inside, 1)
        cumulative += n
    return 0, 0, 0.0


def insert_sentences(
    passages: Sequence[Document],
    counts: Sequence[int],
    items: Sequence[tuple[str, float]],
    loader: str = "needle",
) -> tuple[list[Document], dict[str, str], list[float]]:
    """Each ``(sentence, token offset)`` put at the sentence boundary nearest its offset in the
    haystack ``passages`` (token ``counts``). Returns the new passages, sentence -> id of the
    passage holding it, and each sentence's realised depth (share of the haystack's tokens)."""
    out = list(passages)
    total = sum(counts)
    placed: dict[int, list[tuple[int, str]]] = {}  # passage index -> [(sentence index, sentence)]
    realised = []
    if not out:
        raise DatasetError(
            f"{loader} dataset: field 'length' leaves no room for a haystack around the needles"
        )
    for sentence, offset in items:
        p, k, where = locate(out, list(counts), offset)
        placed.setdefault(p, []).append((k, sentence))
        realised.append(where / total if total else 0.0)
    owner: dict[str, str] = {}
    for p, inserted in placed.items():
        parts = list(out[p].sentences)
        for k, sentence in sorted(inserted, key=lambda x: x[0], reverse=True):
            parts.insert(k, sentence)
        out[p] = replace(out[p], text=" ".join(parts), sentences=tuple(parts))
        for _, sentence in inserted:
            owner[sentence] = out[p].id
    return out, owner, realised
