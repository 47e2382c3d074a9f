"""The base every stage component shares (scikit-learn style).

Constructors take typed keyword arguments and only store them under the same names; weights and
indexes load lazily on first use and live in attributes ending in ``_``. ``spec()`` is what cache
keys and MLflow params are built from: the registered type, the parameters and the stage version
(bump ``version`` when a change alters outputs, so stale cache entries are not reused).

Caches are handed down, never fetched: whoever builds components for a run (a unit's worker)
calls :func:`bind_cache` on them, and a stage that caches (embeddings, scores, converted weights)
reads :meth:`Component.stage_cache`. So the experiment's ``cache_dir`` governs every cache, on
whatever machine the unit runs.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, ClassVar

from ragkit.types import stable_hash

if TYPE_CHECKING:
    from ragkit.cache import Cache


class Component:
    version: ClassVar[str] = "1"
    registry_kind: ClassVar[str] = ""
    registry_name: ClassVar[str] = ""

    def get_params(self) -> dict[str, Any]:
        signature = inspect.signature(type(self).__init__)
        return {
            name: getattr(self, name)
            for name, p in signature.parameters.items()
            if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        }

    def check(self) -> None:
        """Cheap checks the runner makes before any data or weights load (a model file exists, a
        key may go to that server); raise ValueError or OSError saying what is wrong. Ranges and
        formats of single parameters are declared in the constructor's annotations instead."""

    def spec(self) -> dict[str, Any]:
        """Identity of this component's outputs: type, version and parameters."""
        return {"type": self.registry_name, "version": self.version, **self.get_params()}

    def spec_hash(self) -> str:
        return stable_hash(self.spec())

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def stage_cache(self) -> Cache:
        """The cache this component was handed by :func:`bind_cache`. A component used on its own
        (a script, a notebook, a benchmark) gets the default folder's (``$RAGKIT_CACHE_DIR`` or
        ``.ragkit/cache``)."""
        bound = getattr(self, "cache_", None)
        if bound is None:
            from ragkit.cache import get_cache

            bound = get_cache()
        return bound


def bind_cache(component: Any, cache: Cache) -> None:
    """Hand ``cache`` to ``component`` and to every component among its parameters, nested ones
    and lists of them included (a hybrid retriever's two retrievers, a strategy's pruner)."""
    seen: set[int] = set()

    def visit(value: Any) -> None:
        if isinstance(value, list | tuple):
            for item in value:
                visit(item)
        elif isinstance(value, Component) and id(value) not in seen:
            seen.add(id(value))
            value.cache_ = cache
            for param in value.get_params().values():
                visit(param)

    visit(component)


class Settings(Component):
    """A group of parameters that several components share (the retrieval settings of every
    RAG-like strategy). It has no registry name of its own: in a YAML it is a nested mapping under
    its owner's parameter (``retrieval: {retriever: bm25, k: [1, 3]}``), expanded and swept like
    the owner's own fields, and built before the owner."""
