"""Haystacks: any QA dataset with evidence, padded with distractor passages to a target length in
tokens of the generator's tokenizer, with the gold evidence at a controlled depth.

For each question of ``base`` (HotpotQA, SQuAD, ...), its gold passages (the documents its evidence
points to; all its documents when it has no evidence, so give SQuAD ``corpus: paragraph``) form one
block. Around it go distractors: first the question's own other documents (``own_distractors``,
HotpotQA's 8 topical distractors), then passages drawn at random from the other questions of the
whole base dataset, skipping any with the title of one of the question's own documents or that
contain one of its answers (so a distractor cannot answer the question). Passages are added while
they fit: the total lands at most ``length`` tokens and less than one passage under it. The gold
block then goes at the passage boundary nearest ``depth`` (0.0: first, 1.0: last, "random": a
seeded uniform draw) of the distractor tokens.

Lengths are counted the way the full-context prompt shows passages (``Document [i] (Title: t) text``
plus the blank line between passages), each passage once (counts are cached by text), so the
haystack's ``actual_tokens`` is the prompt's documents block within about a token per passage.
Building is linear in ``length``: distractors are drawn lazily, never by shuffling the whole pool.

Deterministic by ``seed``: a question's distractor order depends only on (seed, question id), so a
longer haystack extends a shorter one and every depth of a sweep has the same distractors.
``meta`` records ``length``, ``depth``, ``actual_tokens``, ``evidence_position`` (the realised depth:
share of distractor tokens before the gold block), ``evidence_index`` and ``n_passages``.
"""

from __future__ import annotations

import itertools
import logging
import random
import re
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ragkit.data.base import DatasetError, DatasetLoader, LoadedDataset, unique_documents
from ragkit.registry import register
from ragkit.types import Chunk, Document, Example, stable_hash

log = logging.getLogger(__name__)

MAX_SKIPS = 8  # candidates that do not fit, tried before the haystack is declared full
_LABEL_INDEX = 10  # passages are counted with a two-digit label, "Document [10]"
_NEVER_EXCLUDE = {"yes", "no", "true", "false"}  # answers too common to filter distractors on


# -- token counting --------------------------------------------------------------------------------
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


# -- the pool of distractor passages ---------------------------------------------------------------
@dataclass(frozen=True)
class _Pool:
    documents: tuple[Document, ...]


_POOLS: OrderedDict[str, _Pool] = OrderedDict()


def _pool(base: DatasetLoader) -> _Pool:
    """Unique passages of every question of ``base`` (its sample, ids and partition lifted)."""
    params = base.get_params()
    for name, value in (("sample", None), ("ids", None), ("partition", "all")):
        if name in params:
            params[name] = value
    whole = type(base)(**params)
    key = stable_hash(whole.spec())
    if key not in _POOLS:
        loaded = whole.load()
        groups = [e.documents for e in loaded.examples]
        if loaded.corpus:
            groups.append(loaded.corpus)
        documents, _ = unique_documents(groups)
        _POOLS[key] = _Pool(tuple(d for d in documents if d.text.strip()))
        while len(_POOLS) > 2:
            _POOLS.popitem(last=False)
    return _POOLS[key]


def _answer_pattern(example: Example) -> re.Pattern[str] | None:
    answers = [a.strip() for a in example.answers if a.strip() and a.strip().lower() not in _NEVER_EXCLUDE]
    if not answers:
        return None
    alternatives = "|".join(re.escape(a) for a in sorted(answers, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", flags=re.IGNORECASE)


def pool_candidates(
    rng: random.Random, pool: Sequence[Document], skip: Callable[[Document], bool]
) -> Iterator[Document]:
    """Pool passages in a seeded random order, drawn lazily (cost proportional to what is used);
    past half the pool, the rest is shuffled once so the draw never stalls."""
    n = len(pool)
    seen: set[int] = set()
    while len(seen) < n // 2:
        i = rng.randrange(n)
        if i in seen:
            continue
        seen.add(i)
        if not skip(pool[i]):
            yield pool[i]
    rest = [i for i in range(n) if i not in seen]
    rng.shuffle(rest)
    for i in rest:
        if not skip(pool[i]):
            yield pool[i]


# -- the loader ---------------------------------------------------------------------------------------
@register("dataset", "haystack")
class Haystack(DatasetLoader):
    """Questions of ``base`` with each one's documents replaced by one haystack of ``length``
    tokens (an int or "8k"), gold evidence at ``depth``. ``tokenizer`` names the generator whose
    tokenizer counts (use the one you run)."""

    version = "1"

    def __init__(
        self,
        *,
        base: DatasetLoader,
        length: int | str = 4096,
        depth: float | Literal["random"] = 0.5,
        tokenizer: str = "smollm2",
        distractors: Literal["other-examples"] = "other-examples",
        own_distractors: bool = True,
        sample: int | None = None,
        seed: int = 0,
        partition: Literal["all", "eval", "train"] = "all",
        ids: list[str] | None = None,
    ) -> None:
        self.base = base
        self.length = length
        self.depth = depth
        self.tokenizer = tokenizer
        self.distractors = distractors
        self.own_distractors = own_distractors
        self.sample = sample
        self.seed = seed
        self.partition = partition
        self.ids = ids

    def spec(self) -> dict[str, Any]:
        return {**super().spec(), "base": self.base.spec()}

    def source_path(self) -> Path | None:
        return self.base.source_path()

    def describe(self) -> dict[str, Any]:
        """The base dataset's description: building every haystack just to count them is waste."""
        info = self.base.describe()
        info["type"] = self.registry_name
        info["note"] = f"haystacks of {self.length} tokens ({self.tokenizer}); base: {info.get('note', '')}"
        return info

    def load(self) -> LoadedDataset:
        length = parse_length(self.length, "haystack")
        depth = parse_depth(self.depth, "haystack")
        if self.distractors != "other-examples":
            raise DatasetError(
                f"haystack dataset: field 'distractors' is {self.distractors!r}; expected 'other-examples'"
            )
        loaded = self.base.load()
        examples = self.select(loaded.examples)
        pool = _pool(self.base).documents
        counter = token_counter(self.tokenizer)
        corpus = {d.id: d for d in loaded.corpus or []}
        out = [self.build(e, corpus, pool, counter, length, depth) for e in examples]
        over = sum(e.meta["actual_tokens"] > length for e in out)
        if over:
            log.warning("haystack: %d question(s) have gold passages longer than %d tokens", over, length)
        revision = f"haystack:{loaded.revision}:pool={len(pool)}"
        return LoadedDataset(out, None, revision)

    def build(
        self,
        example: Example,
        corpus: dict[str, Document],
        pool: Sequence[Document],
        counter: TokenCounter,
        length: int,
        depth: float | str,
    ) -> Example:
        """One question's haystack (a new Example; ``example`` is not changed)."""
        documents = list(example.documents)
        gold_ids = list(dict.fromkeys(e.doc_id for e in example.evidence))
        if not documents:  # a shared-corpus dataset: the gold passages come from the corpus
            missing = [i for i in gold_ids if i not in corpus]
            if missing or not gold_ids:
                raise DatasetError(
                    f"haystack dataset: question {example.id!r} has no documents and no gold passage in"
                    " the base dataset's corpus; use a base with per-question documents"
                )
            documents = [corpus[i] for i in gold_ids]
        gold = [d for d in documents if d.id in gold_ids] or documents
        negatives = [d for d in documents if d not in gold] if self.own_distractors else []
        rng = seeded(self.seed, example.id)
        rng.shuffle(negatives)
        titles = {d.title for d in documents} | {d.id for d in documents}
        pattern = _answer_pattern(example)

        def skip(doc: Document) -> bool:
            return doc.title in titles or doc.id in titles or bool(pattern and pattern.search(doc.text))

        gold_tokens = sum(counter.count_many([rendered(d) for d in gold]))
        candidates = itertools.chain(negatives, pool_candidates(rng, pool, skip))
        chosen, counts = fill(candidates, counter, length - gold_tokens)
        value = seeded(self.seed, example.id, "depth").random() if depth == "random" else float(depth)
        index, realised = insertion_point(counts, value)
        passages = _unique_ids([*chosen[:index], *gold, *chosen[index:]], keep={d.id for d in gold})
        meta = {
            **example.meta,
            "length": length,
            "depth": depth,
            "actual_tokens": gold_tokens + sum(counts),
            "evidence_position": realised,
            "evidence_index": index,
            "n_passages": len(passages),
            "haystack_base": self.base.registry_name,
        }
        return Example(
            id=example.id,
            question=example.question,
            answers=list(example.answers),
            documents=passages,
            evidence=list(example.evidence),
            answerable=example.answerable,
            meta=meta,
        )


def _unique_ids(documents: list[Document], keep: set[str]) -> list[Document]:
    """Distractor ids made unique (gold ids are kept: evidence points at them)."""
    from dataclasses import replace

    used = set(keep)
    out = []
    for doc in documents:
        if doc.id in keep:
            out.append(doc)
            continue
        new_id, n = doc.id, 1
        while new_id in used:
            n += 1
            new_id = f"{doc.id} [{n}]"
        used.add(new_id)
        out.append(doc if new_id == doc.id else replace(doc, id=new_id))
    return out
