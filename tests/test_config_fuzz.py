"""Property test: any mutation of a bundled experiment is either still a valid experiment, or stops
`ragkit check` with exit code 2 and one `error:` line naming the file: never a traceback or a hang.

`check` runs everything `run` does before a model loads; only reading the datasets is replaced by a
stub here (the bundled datasets take seconds to read; bad data has its own cases in bad_configs/).
Examples are bounded and derandomised so CI is fast and reproducible.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from ragkit import runner
from ragkit.cli import app
from ragkit.config import read_yaml

BUNDLED = sorted((Path(__file__).parent.parent / "experiments").glob("*.yaml"))
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["", "..", "../x", "rag", "bm25", "smollm2", "tpu9", "float7", "os:system", "0"])
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


def nodes(node: Any, path: tuple = ()) -> list[tuple]:
    out = [path]
    if isinstance(node, dict):
        for key, value in node.items():
            out += nodes(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out += nodes(value, (*path, index))
    return out


def parent_of(root: Any, path: tuple) -> Any:
    for part in path[:-1]:
        root = root[part]
    return root


@st.composite
def mutated(draw) -> tuple[Path, str]:
    source = draw(st.sampled_from(BUNDLED))
    raw = copy.deepcopy(read_yaml(source))
    path = draw(st.sampled_from(nodes(raw)[1:]))
    holder, last = parent_of(raw, path), path[-1]
    kind = draw(st.sampled_from(["replace", "delete", "add", "rename", "duplicate-line"]))
    if kind == "replace":
        holder[last] = draw(VALUES)
    elif kind == "delete":
        del holder[last]
    elif kind == "add" and isinstance(holder, dict):
        holder[draw(st.text(min_size=1, max_size=10))] = draw(VALUES)
    elif kind == "rename" and isinstance(holder, dict):
        key = str(last)
        typo = key[1:] + key[:1] if len(key) > 1 else key + "x"
        holder[typo] = holder.pop(last)
    text = yaml.safe_dump(raw, sort_keys=False, allow_unicode=True)
    if kind == "duplicate-line":
        lines = text.splitlines(keepends=True)
        top = [i for i, line in enumerate(lines) if line[:1].isalpha()]
        lines.append(lines[draw(st.sampled_from(top))])
        text = "".join(lines)
    return source, text


@pytest.fixture
def stub_data(monkeypatch):
    monkeypatch.setattr(runner, "load_datasets", lambda experiment, limit=None: {})


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=mutated())
def test_a_mutated_bundled_experiment_is_valid_or_one_error_line(case, tmp_path, monkeypatch, stub_data):
    source, text = case
    monkeypatch.chdir(tmp_path)
    path = tmp_path / f"mutated-{source.name}"
    path.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(app, ["check", str(path)])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code in (0, 2), result.output
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        errors = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, result.output
        assert errors[0].startswith(f"error: {path}"), errors[0]
    else:
        assert result.output.startswith("ok:"), result.output
