import yaml
from typer.testing import CliRunner

from ragkit.cli import app

runner = CliRunner()


def write(tmp_path, spec):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_run_prints_table_and_report_reads_it(experiment_dict, tmp_path):
    path = write(tmp_path, experiment_dict)
    result = runner.invoke(app, ["run", str(path), "--set", "arms.0.k=2"])
    assert result.exit_code == 0, result.output
    assert "rag" in result.output and "full_context" in result.output
    assert "acc (contains)" in result.output and "eff. ctx tokens" in result.output
    assert "0.667" in result.output  # 4 of 6 right by construction
    report = runner.invoke(app, ["report", str(path)])
    assert report.exit_code == 0 and "0.667" in report.output


def test_estimate_prints_tokens_without_generating(experiment_dict, tmp_path):
    path = write(tmp_path, experiment_dict)
    result = runner.invoke(app, ["estimate", str(path)])
    assert result.exit_code == 0, result.output
    assert "eff. ctx mean" in result.output and "full_context" in result.output
    assert not (tmp_path / "runs").exists()  # nothing was run


def test_bad_yaml_exits_with_the_field(experiment_dict, tmp_path):
    experiment_dict["arms"][0]["retriever"] = "bm52"
    path = write(tmp_path, experiment_dict)
    result = runner.invoke(app, ["run", str(path)])
    assert result.exit_code == 2
    assert "arms[0].retriever" in result.output and "bm25" in result.output


def test_datasets_lists_packaged_data():
    result = runner.invoke(app, ["datasets"])
    assert result.exit_code == 0, result.output
    assert "hotpotqa-distractor" in result.output and "7405" in result.output
