"""What an experiment file may do to the machine that runs it (README, "Trust and safety")."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
import yaml
from typer.testing import CliRunner

from ragkit.cli import app
from ragkit.config import ConfigError, load_experiment
from ragkit.generators.openai import OpenAIGenerator
from ragkit.generators.scripted import ScriptedGenerator
from ragkit.runner import run_experiment
from ragkit.security import ALLOW_INSECURE_KEY_ENV, redact


def write(tmp_path, spec, name="exp.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec))
    return path


def test_a_yaml_cannot_import_code_without_allow_code(experiment_dict, tmp_path, monkeypatch):
    """The issue's exploit: a planted hubconf.py run through torch.hub.load from a YAML factory."""
    planted = tmp_path / "planted"
    planted.mkdir()
    marker = tmp_path / "pwned"
    (planted / "hubconf.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\ndef model(**kw): pass\n")
    experiment_dict["arms"] = [
        {
            "strategy": "rag",
            "retriever": {
                "type": "llamaindex",
                "factory": "torch.hub:load",
                "options": {"repo_or_dir": str(planted), "model": "model", "source": "local"},
            },
        }
    ]
    path = write(tmp_path, experiment_dict)
    monkeypatch.chdir(tmp_path)
    for command in (["run", str(path)], ["estimate", str(path)], ["check", str(path)]):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 2, result.output
        assert "arms[0].retriever.factory" in result.output and "--allow-code" in result.output
    assert not marker.exists()
    # with the user's say-so the file is accepted (it is code, and the user trusts it)
    assert load_experiment(path, allow_code=True).configurations


def test_llama_index_modules_need_no_opt_in(experiment_dict):
    experiment_dict["arms"] = [
        {
            "strategy": "rag",
            "retriever": {
                "type": "llamaindex",
                "factory": "llama_index.retrievers.bm25:BM25Retriever.from_defaults",
            },
            "chunker": {"type": "llamaindex", "parser": "llama_index.core.node_parser:SentenceSplitter"},
        }
    ]
    assert load_experiment(experiment_dict).configurations
    experiment_dict["arms"][0]["chunker"]["parser"] = "llama_index_evil.core.node_parser:X"  # a look-alike
    with pytest.raises(ConfigError, match="allow-code"):
        load_experiment(experiment_dict)


def test_api_key_env_must_name_an_api_key(experiment_dict):
    experiment_dict["generator"] = {"type": "openai", "model": "m", "api_key_env": "AWS_SECRET_ACCESS_KEY"}
    with pytest.raises(ConfigError, match=r"generator\.api_key_env: expected .*_API_KEY"):
        load_experiment(experiment_dict)
    experiment_dict["generator"]["api_key_env"] = "MY_SERVER_API_KEY"
    assert load_experiment(experiment_dict).configurations


@pytest.mark.parametrize(
    ("base_url", "allowed"),
    [
        ("http://example.com/v1", False),
        ("http://10.0.0.5:8000/v1", False),
        ("https://example.com/v1", True),
        ("http://127.0.0.1:8000/v1", True),
        ("http://localhost:8000/v1", True),
        ("http://[::1]:8000/v1", True),
    ],
)
def test_a_key_never_goes_over_plain_http_off_this_machine(base_url, allowed, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    monkeypatch.delenv(ALLOW_INSECURE_KEY_ENV, raising=False)
    generator = OpenAIGenerator(model="m", base_url=base_url)
    if allowed:
        generator.check()
        return
    with pytest.raises(ValueError, match="unencrypted"):
        generator.check()
    with pytest.raises(ValueError, match="unencrypted"):  # also when called directly, before any request
        generator._generate(["hi"], [])
    monkeypatch.setenv(ALLOW_INSECURE_KEY_ENV, "1")  # the user's opt-in
    generator.check()
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.delenv(ALLOW_INSECURE_KEY_ENV)
    generator.check()  # no key, nothing to protect


def test_redact_hides_credentials_in_urls():
    assert redact("https://alice:s3cret@example.com/v1") == "https://alice:***@example.com/v1"
    assert redact("postgresql://u:p%40ss@db:5432/mlflow") == "postgresql://u:***@db:5432/mlflow"
    assert redact("https://host/v1?api_key=abc&x=1") == "https://host/v1?api_key=***&x=1"
    assert redact({"a": ["http://u:pw@h/"], "b": 3}) == {"a": ["http://u:***@h/"], "b": 3}
    assert redact("plain text: no url") == "plain text: no url"


def test_credentials_are_redacted_everywhere_a_run_writes_its_config(experiment_dict, tmp_path):
    secret_url = "https://alice:hunter2@example.com/v1?token=t0ps3cret"
    experiment_dict["generator"]["script"] = {"France": "Paris", "server": secret_url}
    experiment_dict["description"] = f"served from {secret_url}"
    experiment_dict["arms"] = [{"strategy": "full_context"}]
    (result,) = run_experiment(load_experiment(experiment_dict))
    client = mlflow.MlflowClient(tracking_uri=experiment_dict["tracking_uri"])
    child = client.get_run(result.run_id)
    parent = client.get_run(child.data.tags["mlflow.parentRunId"])
    written = [
        (result.run_dir / "config.yaml").read_text(),
        repr(child.data.params),
        repr(child.data.tags),
        repr(parent.data.params),
        Path(client.download_artifacts(parent.info.run_id, "experiment.yaml", str(tmp_path))).read_text(),
    ]
    for text in written:
        assert "hunter2" not in text and "t0ps3cret" not in text
    assert "alice:***@example.com" in written[0]


def test_names_that_are_paths_are_rejected(experiment_dict, tmp_path):
    for name in ("../../../../tmp/x", "a/b", "..", "a\\b"):
        experiment_dict["name"] = name
        with pytest.raises(ConfigError, match="name: expected a name, not a path"):
            load_experiment(experiment_dict)
    assert not (tmp_path.parent / "x").exists()


def test_the_scripted_generator_still_builds(tmp_path):
    # the declared ranges do not get in the way of ordinary construction in code
    assert ScriptedGenerator(script={"a": "b"}, max_new_tokens=4).max_new_tokens == 4
