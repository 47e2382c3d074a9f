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
from pathlib import Path
from typing import Any, Literal

from ragkit.constraints import Count, Fraction, Seed, Tokens
from ragkit.data._haystack_tools import (
    TokenCounter,
    fill,
    insertion_point,
    parse_depth,
    parse_length,
    rendered,
    seeded,
    token_counter,
)
from ragkit.data.base import DatasetError, DatasetLoader, LoadedDataset, Partition, unique_documents
from ragkit.registry import register
from ragkit.types import Document, Example, stable_hash

log = logging.getLogger(__name__)

_NEVER_EXCLUDE = {"yes", "no", "true", "false"}  # answers too common to filter distractors on


# -- the pool of distractor passages ---------------------------------------------------------------
_POOLS: OrderedDict[str, tuple[Document, ...]] = OrderedDict()


def _pool(base: DatasetLoader) -> tuple[Document, ...]:
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
        _POOLS[key] = tuple(d for d in documents if d.text.strip())
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
        length: Tokens | str = 4096,
        depth: Fraction | Literal["random"] = 0.5,
        tokenizer: str = "smollm2",
        distractors: Literal["other-examples"] = "other-examples",
        own_distractors: bool = True,
        sample: Count | None = None,
        seed: Seed = 0,
        partition: Partition = "all",
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
        pool = _pool(self.base)
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
