"""``predictions.jsonl``: the resume point of a configuration, one finished question per line.

Written by the driver only, one batch at a time: the batch's lines are encoded first and reach the
file in **one** ``write`` on an ``O_APPEND`` descriptor, then ``fsync``, so a kill leaves at most the
last line cut short (it used to be written in several buffer-sized pieces, and a cut in the middle of
a UTF-8 character blocked every later resume).

Read defensively, line by line from bytes: a line that is not UTF-8, not JSON, not an object or not
shaped like a prediction (a torn write, random bytes, a hand edit) is reported with its line number
and skipped, so that question is simply recomputed. A question that appears twice keeps its last
line (idempotent per question id).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ragkit.types import Prediction

log = logging.getLogger(__name__)


def _problem(record: Any) -> str | None:
    """What makes a decoded line unusable as a prediction (None: nothing)."""
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not an object"
    if not isinstance(record.get("example_id"), str) or not isinstance(record.get("answer"), str):
        return "'example_id' and 'answer' must be text"
    cost = record.get("cost", {})
    if not isinstance(cost, dict) or any(
        isinstance(v, bool) or not isinstance(v, int | float) for v in cost.values()
    ):
        return "'cost' must map names to numbers"
    if not isinstance(record.get("provenance", {}), dict):
        return "'provenance' must be an object"
    return None


def parse_line(raw: bytes) -> tuple[Prediction | None, str | None]:
    """A prediction from one line of bytes, or why it is damaged."""
    try:
        record = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return None, "not UTF-8 (cut mid-character or overwritten)"
    except json.JSONDecodeError as exc:
        return None, f"not JSON ({exc.msg})"
    problem = _problem(record)
    if problem:
        return None, problem
    try:
        return Prediction.from_dict(record), None
    except (TypeError, ValueError, KeyError, AttributeError) as exc:  # any other shape mismatch
        return None, f"not a prediction ({exc})"


def read_predictions(path: Path) -> dict[str, Prediction]:
    """Finished predictions by question id; damaged lines are reported and skipped (recomputed)."""
    done: dict[str, Prediction] = {}
    if not path.exists():
        return done
    damaged: list[tuple[int, str]] = []
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            if not raw.strip():
                continue
            prediction, problem = parse_line(raw)
            if prediction is None:
                damaged.append((number, problem or "unreadable"))
                continue
            done[prediction.example_id] = prediction
    if damaged:
        shown = "; ".join(f"line {n}: {why}" for n, why in damaged[:3])
        more = f" (and {len(damaged) - 3} more)" if len(damaged) > 3 else ""
        log.warning(
            "%s: %d damaged line(s) skipped, their questions will be recomputed: %s%s",
            path,
            len(damaged),
            shown,
            more,
        )
    return done


def encode_batch(predictions: Sequence[Prediction]) -> bytes:
    return b"".join(
        (json.dumps(p.to_dict(), ensure_ascii=False, default=str) + "\n").encode("utf-8") for p in predictions
    )


def append_predictions(path: Path, predictions: Sequence[Prediction]) -> None:
    """Append one batch: one write, then fsync (see the module docstring)."""
    if not predictions:
        return
    data = encode_batch(predictions)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data  # a kill left a line without its newline: never glue onto it
        view = memoryview(data)
        while view:  # a regular file takes it in one call; loop in case the OS returns short
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
