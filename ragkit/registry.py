"""One registry: (kind, name) -> component class.

Components register themselves with ``@register("retriever", "bm25")``. The modules of a kind's
package are imported on the first look-up of that kind (discovery), so adding a component is one
module and one catalog YAML and nothing else changes. Component modules keep heavy imports (torch,
faiss, transformers) inside methods so discovery stays cheap.

A component's constructor is its schema: keyword-only typed arguments. :func:`params_model` turns
that signature into a pydantic model (extra fields forbidden), which is how a misspelled or
wrongly-typed parameter in a YAML is reported before any model loads.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import pkgutil
import typing
from collections.abc import Callable
from functools import cache
from typing import Any, TypeVar

import pydantic

T = TypeVar("T")

# kind -> packages whose modules are imported to discover that kind's components.
KIND_PACKAGES: dict[str, tuple[str, ...]] = {
    "dataset": ("ragkit.data",),
    "chunker": ("ragkit.data",),
    "retriever": ("ragkit.retrievers",),
    "reranker": ("ragkit.rerankers",),
    "pruner": ("ragkit.pruners",),
    "generator": ("ragkit.generators",),
    "strategy": ("ragkit.strategies",),
    "judge": ("ragkit.generators", "ragkit.judges"),
    "executor": ("ragkit.executors",),
}

_REGISTRY: dict[str, dict[str, type]] = {kind: {} for kind in KIND_PACKAGES}
_DISCOVERED: set[str] = set()


class RegistryError(LookupError):
    """An unknown kind or component name."""


def register(kind: str, name: str) -> Callable[[type[T]], type[T]]:
    """Class decorator: make ``cls`` available as ``name`` of ``kind``."""
    if kind not in _REGISTRY:
        raise RegistryError(f"unknown component kind {kind!r}; known: {sorted(_REGISTRY)}")

    def decorator(cls: type[T]) -> type[T]:
        existing = _REGISTRY[kind].get(name)
        if existing is not None and existing is not cls:
            existing_path = f"{existing.__module__}.{existing.__qualname__}"
            if existing_path != f"{cls.__module__}.{cls.__qualname__}":  # re-import is fine
                raise RegistryError(f"{kind} {name!r} registered twice: {existing_path} and {cls}")
        _REGISTRY[kind][name] = cls
        cls.registry_kind = kind  # type: ignore[attr-defined]
        cls.registry_name = name  # type: ignore[attr-defined]
        return cls

    return decorator


def _discover(kind: str) -> None:
    if kind in _DISCOVERED:
        return
    for package_name in KIND_PACKAGES[kind]:
        try:
            package = importlib.import_module(package_name)
        except ModuleNotFoundError as exc:
            if exc.name == package_name:
                continue  # optional package (e.g. ragkit.judges) not present
            raise
        for info in pkgutil.iter_modules(package.__path__, package_name + "."):
            if not info.name.rsplit(".", 1)[-1].startswith("_"):
                importlib.import_module(info.name)
    _DISCOVERED.add(kind)


def names(kind: str) -> list[str]:
    if kind not in _REGISTRY:
        raise RegistryError(f"unknown component kind {kind!r}; known: {sorted(_REGISTRY)}")
    _discover(kind)
    return sorted(_REGISTRY[kind])


def get(kind: str, name: str) -> type:
    """The class registered as ``name``; an unknown name fails with "did you mean"."""
    known = names(kind)
    try:
        return _REGISTRY[kind][name]
    except KeyError:
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise RegistryError(
            f"unknown {kind} type {name!r}{hint} (registered {kind} types: {', '.join(known)})"
        ) from None


@cache
def params_model(cls: type) -> type[pydantic.BaseModel]:
    """A pydantic model of ``cls.__init__``'s keyword arguments (extra fields forbidden)."""
    signature = inspect.signature(cls.__init__)
    # include_extras: keep the declared ranges (``Count``, ``Tokens``: see ragkit.constraints)
    hints = typing.get_type_hints(cls.__init__, include_extras=True)  # NameError: a bug in that component
    field_defs: dict[str, Any] = {}
    for pname, param in signature.parameters.items():
        if pname == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        annotation = hints.get(pname, Any)
        default = ... if param.default is inspect.Parameter.empty else param.default
        field_defs[pname] = (annotation, default)
    config = pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    return pydantic.create_model(f"{cls.__name__}Params", __config__=config, **field_defs)


def list_typed_params(cls: type) -> set[str]:
    """Names of constructor parameters whose type is itself a list/tuple (not sweep axes)."""
    out = set()
    for pname, info in params_model(cls).model_fields.items():
        origin = typing.get_origin(info.annotation)
        args = typing.get_args(info.annotation)
        candidates = [info.annotation, origin, *[typing.get_origin(a) or a for a in args]]
        if any(c in (list, tuple, set, frozenset) for c in candidates):
            out.add(pname)
    return out


def build(kind: str, type_name: str, params: dict[str, Any] | None = None) -> Any:
    """Validate ``params`` against the component's signature and construct it."""
    cls = get(kind, type_name)
    params = params or {}
    validated = params_model(cls).model_validate(params)
    return cls(**{name: getattr(validated, name) for name in params})
