"""The base every stage component shares (scikit-learn style).

Constructors take typed keyword arguments and only store them under the same names; weights and
indexes load lazily on first use and live in attributes ending in ``_``. ``spec()`` is what cache
keys and MLflow params are built from: the registered type, the parameters and the stage version
(bump ``version`` when a change alters outputs, so stale cache entries are not reused).
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

from ragkit.types import stable_hash


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


class Settings(Component):
    """A group of parameters that several components share (the retrieval settings of every
    RAG-like strategy). It has no registry name of its own: in a YAML it is a nested mapping under
    its owner's parameter (``retrieval: {retriever: bm25, k: [1, 3]}``), expanded and swept like
    the owner's own fields, and built before the owner."""
