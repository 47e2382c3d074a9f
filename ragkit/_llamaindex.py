"""What the llama-index adapters share: the optional import, and objects named ``module:attribute``.

llama-index is an optional extra (``pip install 'ragkit[llamaindex]'``); nothing imports it until a
``llamaindex`` retriever or chunker is used, and then a missing install is one clear error.
"""

from __future__ import annotations

import importlib
from typing import Any

INSTALL_HINT = "pip install 'ragkit[llamaindex]' (llama-index-core)"


def library_version() -> str | None:
    """The installed llama-index-core version (part of cache keys: its internals decide results)."""
    # imported here: importlib.metadata costs ~10 ms, and chunking.py (loaded by every run) imports us
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("llama-index-core")
    except PackageNotFoundError:
        return None


def require(who: str) -> None:
    """Fail with the install command when llama-index-core is missing."""
    try:
        import llama_index.core  # noqa: F401
    except ModuleNotFoundError as exc:
        raise RuntimeError(f"{who} needs llama-index: {INSTALL_HINT}") from exc


def import_object(path: str, who: str, field: str) -> Any:
    """The object named ``"package.module:Name.attr"`` (a class, a function, a classmethod)."""
    module_name, sep, attributes = path.partition(":")
    if not sep or not module_name or not attributes:
        raise ValueError(f"{who}: field '{field}' is {path!r}; expected 'package.module:name'")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:  # not installed, or its import fails: either way, this file is wrong
        raise ValueError(
            f"{who}: field '{field}' is {path!r}, but module {module_name!r} cannot be imported ({exc})"
        ) from exc
    for attribute in attributes.split("."):
        try:
            obj = getattr(obj, attribute)
        except AttributeError:
            raise ValueError(
                f"{who}: field '{field}' is {path!r}, but {module_name!r} has no {attributes!r}"
            ) from None
    return obj
