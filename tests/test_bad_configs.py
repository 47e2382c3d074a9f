"""Every malformed experiment in tests/bad_configs/ stops `ragkit run` with exit code 2 and one
`error:` line naming the file and the field, before any model loads: no traceback, no hang.

Each file starts with ``# field: <what the error line must name>`` and optionally ``# args: ...``
(extra command-line arguments) and ``# env: NAME=value``. Most cases run in process (typer's
CliRunner on the real CLI); a handful run as real subprocesses. Add a case by adding a file.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragkit.cli import app
from tests.conftest import FILLER, QUESTIONS

CORPUS = Path(__file__).parent / "bad_configs"
CASES = sorted(CORPUS.glob("[0-9][0-9][0-9]-*.yaml"))
HANG_GUARD_SECONDS = 60  # a case still running after this is a hang (they take well under a second)
SUBPROCESS_CASES = (
    "billion-laughs-in-options",
    "nesting-3000-flow",
    "not-utf8",
    "dup-dataset-key",
    "generator-device-tpu9",
    "sweep-over-limit",
)


def header(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in path.read_bytes().decode("latin-1").splitlines():
        if not line.startswith("# ") or ":" not in line:
            break
        key, value = line[2:].split(":", 1)
        out[key.strip()] = value.strip()
    return out


def write_dataset(folder: Path) -> None:
    with open(folder / "qa.jsonl", "w") as handle:
        for qid, question, answers, title, evidence in QUESTIONS:
            documents = [{"id": t, "title": t, "text": text} for t, text in FILLER]
            documents.append({"id": title, "title": title, "text": evidence})
            record = {"id": qid, "question": question, "answers": answers, "documents": documents}
            handle.write(json.dumps(record) + "\n")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad-configs")
    write_dataset(folder)
    shutil.copytree(CORPUS / "data", folder / "data")
    return folder


@pytest.fixture
def no_model_loads(monkeypatch):
    """Loading a tokenizer, weights or an embedder fails the case: errors come before."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the error")

    from ragkit.generators import _hf, transformers
    from ragkit.retrievers import _embedder

    monkeypatch.setattr(_hf.HFPromptGenerator, "_load_meta", refuse)
    monkeypatch.setattr(transformers.TransformersGenerator, "_load_model", refuse)
    monkeypatch.setattr(_embedder, "load_embedder", refuse)


@contextlib.contextmanager
def hang_guard(seconds: int):
    def fail(signum, frame):
        raise AssertionError(f"still running after {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def check_output(path: Path, output: str, exit_code: int) -> str:
    expected = header(path)["field"]
    assert exit_code == 2, f"exit code {exit_code}:\n{output}"
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    (error,) = errors
    assert str(path) in error, error
    assert expected in error, f"expected {expected!r} in: {error}"
    return error


def test_the_corpus_is_large_enough(capsys):
    with capsys.disabled():
        print(f"\n{len(CASES)} malformed experiment files in {CORPUS}")
    assert len(CASES) >= 150
    assert all("field" in header(p) for p in CASES), [p.name for p in CASES if "field" not in header(p)]


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_malformed_experiment_fails_with_one_error_line(path, workdir, monkeypatch, no_model_loads):
    monkeypatch.chdir(workdir)
    info = header(path)
    env = dict(item.split("=", 1) for item in shlex.split(info.get("env", "")))
    args = shlex.split(info.get("args", ""))
    with hang_guard(HANG_GUARD_SECONDS):
        result = CliRunner().invoke(app, ["run", str(path), *args], env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    check_output(path, result.output, result.exit_code)
    assert not (workdir / "runs").exists() or not any((workdir / "runs").rglob("predictions.jsonl"))


@pytest.mark.parametrize("slug", SUBPROCESS_CASES)
def test_malformed_experiment_in_a_real_process(slug, workdir):
    (path,) = [p for p in CASES if p.stem[4:] == slug]
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "ragkit.cli", "run", str(path)],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_SECONDS,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
    )
    check_output(path, done.stdout + done.stderr, done.returncode)
    assert done.stderr.startswith("error:"), done.stderr  # the error goes to stderr, alone
    print(f"{slug}: {time.perf_counter() - started:.1f} s including start-up")


@pytest.mark.parametrize(
    "command",
    [["run"], ["check"], ["estimate"], ["report"], ["suggest", "--budget", "4k"], ["ui"]],
    ids=lambda c: c[0],
)
def test_every_command_reports_a_bad_file_the_same_way(command, workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    (path,) = [p for p in CASES if p.stem.endswith("dup-dataset-key")]
    result = CliRunner().invoke(app, [command[0], str(path), *command[1:]])
    check_output(path, result.output, result.exit_code)
