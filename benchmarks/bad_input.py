"""How fast bad input is refused: the malformed-experiment corpus, YAML bombs, and the cost of the
hardening on good input (reading a YAML, appending predictions).

    python benchmarks/bad_input.py [--subprocess N]

Prints one table per part. Every corpus case must end with exit code 2 and one `error:` line (the
test suite checks that); here only the time to the error is measured, in process (typer's
CliRunner on the real CLI) and, for the first N cases, as a real `ragkit run` process.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ragkit.cli import app  # noqa: E402
from tests.test_bad_configs import CASES, CORPUS, header, write_dataset  # noqa: E402


def corpus_times(folder: Path) -> list[tuple[str, float, int]]:
    from typer.testing import CliRunner

    out = []
    for path in CASES:
        info = header(path)
        env = dict(item.split("=", 1) for item in shlex.split(info.get("env", "")))
        started = time.perf_counter()
        result = CliRunner().invoke(app, ["run", str(path), *shlex.split(info.get("args", ""))], env=env)
        out.append((path.stem, time.perf_counter() - started, result.exit_code))
        shutil.rmtree(folder / "runs", ignore_errors=True)
    return out


def yaml_bombs() -> list[tuple[str, float, str]]:
    from ragkit import safe_yaml

    def laughs(levels: int) -> str:
        lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
        lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, levels)]
        return "\n".join(lines) + "\n"

    cases = {
        "billion laughs, 9 levels (9^9 values)": laughs(9),
        "nesting 3000 deep": "a: " + "[" * 3000 + "]" * 3000,
        "k: 1.5 million values (3 MB)": "k: [" + ", ".join(["1"] * 1_500_000) + "]",
        "quickstart.yaml (good input)": (REPO / "experiments" / "quickstart.yaml").read_text(),
    }
    out = []
    for name, text in cases.items():
        started = time.perf_counter()
        try:
            safe_yaml.loads(text.encode())
            outcome = "accepted"
        except safe_yaml.YamlProblem as exc:
            outcome = str(exc)[:60]
        out.append((name, time.perf_counter() - started, outcome))
    return out


def append_cost(folder: Path) -> tuple[float, float]:
    """Seconds to append 100 batches of 16 predictions (one write + fsync per batch), then read back."""
    from ragkit.predictions_file import append_predictions, read_predictions
    from ragkit.types import Prediction

    path = folder / "predictions.jsonl"
    started = time.perf_counter()
    for batch in range(100):
        append_predictions(path, [Prediction(f"q{batch}-{i}", "Zürich " * 20) for i in range(16)])
    written = time.perf_counter() - started
    started = time.perf_counter()
    assert len(read_predictions(path)) == 1600
    return written, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subprocess", type=int, default=5, help="corpus cases also run as processes")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp())
    write_dataset(folder)
    shutil.copytree(CORPUS / "data", folder / "data")
    import os

    os.chdir(folder)
    times = corpus_times(folder)
    seconds = sorted(t for _, t, _ in times)
    print(f"## {len(times)} malformed experiments, in process (CliRunner on the real CLI)\n")
    print("| cases | exit 2 | median s | p95 s | max s | slowest |")
    print("| --- | --- | --- | --- | --- | --- |")
    slowest = max(times, key=lambda row: row[1])
    p95 = seconds[int(0.95 * (len(seconds) - 1))]
    print(
        f"| {len(times)} | {sum(code == 2 for _, _, code in times)} | {statistics.median(seconds):.3f} |"
        f" {p95:.3f} | {seconds[-1]:.3f} | {slowest[0]} |"
    )
    print("\n## As real processes (`ragkit run FILE`, including Python start-up)\n")
    print("| case | seconds | exit code |")
    print("| --- | --- | --- |")
    for path in CASES[: args.subprocess]:
        started = time.perf_counter()
        command = [sys.executable, "-m", "ragkit.cli", "run", str(path)]
        done = subprocess.run(command, cwd=folder, capture_output=True, timeout=120)
        print(f"| {path.stem} | {time.perf_counter() - started:.2f} | {done.returncode} |")
    print("\n## YAML read with ragkit.safe_yaml\n")
    print("| input | seconds | outcome |")
    print("| --- | --- | --- |")
    for name, took, outcome in yaml_bombs():
        print(f"| {name} | {took:.3f} | {outcome} |")
    written, read = append_cost(folder)
    print("\n## predictions.jsonl: 100 batches of 16 (one write + fsync per batch)\n")
    print(f"| write s | read back s |\n| --- | --- |\n| {written:.3f} | {read:.3f} |")


if __name__ == "__main__":
    main()
