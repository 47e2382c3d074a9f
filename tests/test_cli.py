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
    flat = " ".join(result.output.split())
    # 6 questions, 25% discordance: no difference up to 0.25 is detectable; 3 configurations
    assert "paired design" in flat and "6 questions detect" in flat and "Holm over 2 comparisons" in flat


def test_detectable_difference_inverts_the_paired_sample_size():
    from ragkit.estimate import power_note
    from ragkit.stats import detectable_paired_difference, required_paired_sample_size

    delta = detectable_paired_difference(400, 0.2)
    assert (
        required_paired_sample_size(delta + 1e-4, 0.2) <= 400 < required_paired_sample_size(delta - 1e-3, 0.2)
    )
    assert "400 questions detect an accuracy difference of" in power_note(400, 2, 0.2)


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
    # the published benchmarks are listed as needing the user's copy, with what was not found
    for name in ("longbench", "longbench-v2", "l-eval", "loogle", "ruler", "needlebench"):
        assert f" {name} " in result.output
    assert "your copy (path:)" in result.output and "field 'path'" in result.output


def test_paired_against_a_baseline_uses_the_shared_questions():
    import pandas as pd

    from ragkit.report import paired_against

    rows = [("aaa", "base", f"q{i}", v) for i, v in enumerate([0, 0, 0, 0, 1, 1])]
    rows += [("bbb", "better", f"q{i}", 1) for i in range(6)]
    rows += [("ccc", "partial", "q4", 0), ("ccc", "partial", "q5", 0)]  # answered only two questions
    scores = pd.DataFrame(rows, columns=["config_hash", "config_name", "example_id", "contains_answer"])
    table = paired_against(scores, "base").set_index("configuration")
    assert table.attrs["comparisons"] == 2 and table.attrs["correction"] == "holm"
    assert table.loc["better", "contains_answer - baseline"] == round(4 / 6, 3)
    # 4 discordant questions, all in favour: exact McNemar p = 2 / 2**4 = 0.125; partial: 0-2,
    # p = 2 / 2**2 = 0.5. Holm over 2: 0.125 * 2 = 0.25, max(0.5 * 1, 0.25) = 0.5
    assert table.loc["better", "discordant +/-"] == "4/0" and table.loc["better", "test"] == "McNemar exact"
    assert (table.loc["better", "p"], table.loc["better", "p (holm)"]) == ("0.125", "0.250")
    assert table.loc["partial", "p (holm)"] == "0.500"
    assert table.loc["better", "reading"] == "not distinguishable"  # the bootstrap interval is [0.33, 1]
    assert table.loc["partial", "contains_answer - baseline"] == -1.0
    assert table.loc["partial", "n (shared)"] == 2
    assert len(paired_against(scores, "bb")) == 2  # a config-hash prefix names the baseline too
    many = [("aaa", "base", f"q{i}", 0) for i in range(12)] + [
        ("bbb", "better", f"q{i}", 1) for i in range(12)
    ]
    big = pd.DataFrame(many, columns=scores.columns)
    decided = paired_against(big, "base", correction="none").iloc[0]  # 12-0: p = 2 / 4096
    assert decided["p"] == "<0.001" and decided["reading"] == "differs (McNemar)"


def test_report_baseline_prints_paired_differences_and_rejects_unknown_names(experiment_dict, tmp_path):
    path = write(tmp_path, experiment_dict)
    assert runner.invoke(app, ["run", str(path)]).exit_code == 0
    result = runner.invoke(app, ["report", str(path), "--baseline", "full_context"])
    assert result.exit_code == 0, result.output
    assert "paired difference against full_context" in result.output and "n (shared)" in result.output
    assert "2 comparisons" in result.output and "p (holm)" in result.output and "McNemar" in result.output
    assert "Holm-adjusted p-values" in result.output
    bonferroni = runner.invoke(
        app, ["report", str(path), "--baseline", "full_context", "--correction", "bonferroni"]
    )
    assert bonferroni.exit_code == 0 and "p (bonferroni)" in bonferroni.output
    wrong = runner.invoke(app, ["report", str(path), "--baseline", "full_context", "--correction", "sidak"])
    assert wrong.exit_code == 2 and "--correction 'sidak'" in wrong.output
    bad = runner.invoke(app, ["report", str(path), "--baseline", "nope"])
    assert bad.exit_code == 2 and "no configuration 'nope'" in bad.output and "full_context" in bad.output
    no_by = runner.invoke(app, ["report", str(path), "--plot", str(tmp_path / "p.png")])
    assert no_by.exit_code == 2 and "give one or two --by fields" in no_by.output


def test_breakdown_groups_by_method_and_pools_other_fields():
    import pandas as pd

    from ragkit.report import breakdown

    rows = []
    for length in (1000, 2000):
        for depth in (0.0, 1.0):
            for arm, right in (("rag", 1.0), ("full_context", float(depth == 0.0))):
                name = f"{arm} length={length} depth={depth}"
                rows += [(name, length, depth, right, f"q{i}") for i in range(4)]
    scores = pd.DataFrame(
        rows, columns=["config_name", "meta_length", "meta_depth", "contains_answer", "example_id"]
    )
    joint = breakdown(scores, ["length", "depth"])
    assert set(joint["method"]) == {"rag", "full_context"} and len(joint) == 8 and set(joint["n"]) == {4}
    by_length = breakdown(scores, ["length"], pool=["depth"]).set_index(["method", "length"])
    assert by_length.loc[("full_context", 1000), "contains_answer"] == 0.5  # right at depth 0 only
    assert by_length.loc[("rag", 2000), "n"] == 8
    assert by_length.loc[("rag", 2000), "95% CI low"] < 1.0  # Wilson interval for a 0/1 metric
    unpooled = breakdown(scores, ["length"])  # depth stays in the method name when not pooled
    assert "full_context depth=0.0" in set(unpooled["method"])


def test_breakdown_by_a_setting_swept_in_the_configuration_names():
    import pandas as pd
    import pytest

    from ragkit.report import breakdown

    rows = [("rag k=1", 0.0), ("rag k=1", 1.0), ("rag k=4", 1.0), ("drag k=4 m=2", 1.0)]
    rows += [("full_context", 0.0), ("full_context", 0.0)]
    scores = pd.DataFrame(rows, columns=["config_name", "contains_answer"]).assign(
        example_id=[f"q{i}" for i in range(len(rows))]
    )
    by_k = breakdown(scores, ["k"])
    rag = by_k[by_k["method"] == "rag"].set_index("k")
    assert rag.loc[1, "contains_answer"] == 0.5 and rag.loc[4, "n"] == 1  # k parsed as a number
    assert set(by_k["method"]) == {"rag", "drag m=2", "full_context"}
    assert by_k.loc[by_k["method"] == "full_context", "k"].isna().all()  # no k: its own row
    with pytest.raises(KeyError, match="fields to break down by: k, m"):
        breakdown(scores, ["depth"])


def test_tables_lead_with_the_metric_that_grades_the_answers():
    import pandas as pd

    from ragkit.metrics import summarize
    from ragkit.report import default_metric, display_table

    base = {"em": [0.0, 0.0], "f1": [0.2, 0.4], "contains_answer": [0.0, 0.0]}
    short = pd.DataFrame({**base, "example_id": ["a", "b"]})
    free = short.assign(longform_approx=[0.5, 1.0], answer_recall_approx=[0.5, 1.0])
    judged = free.assign(judge_correct=[1.0, 0.0])
    rows = []
    for name, scores in (("short", short), ("free", free), ("judged", judged)):
        rows.append({"config_name": name, **summarize(scores)})
    assert rows[1]["longform_approx_ci_low"] <= 0.75 <= rows[1]["longform_approx_ci_high"]
    assert 0.0 < rows[2]["judge_correct_ci_low"] < 0.5 < rows[2]["judge_correct_ci_high"] < 1.0  # Wilson
    assert default_metric(pd.DataFrame(rows[:1])) == "contains_answer"
    assert default_metric(pd.DataFrame(rows[:2])) == "longform_approx"
    assert default_metric(pd.DataFrame(rows)) == "judge_correct"
    table = display_table(pd.DataFrame(rows[:1]))
    assert "acc (contains) [95% CI]" in table.columns and "EM" in table.columns
    table = display_table(pd.DataFrame(rows))
    # free-form answers: EM and contains-answer (0 by design on sentences) give way to the judge and answer≈
    assert list(table.columns[1:3]) == ["judge [95% CI]", "answer≈ (approx) [95% CI]"]
    assert "EM" not in table.columns and "acc (contains) [95% CI]" not in table.columns
    assert table.loc[0, "judge [95% CI]"] == "-"  # the unjudged configuration has no verdicts


def test_breakdown_plot_draws_lines_or_a_heatmap(tmp_path):
    import pandas as pd
    import pytest

    from ragkit.plots import breakdown_plot
    from ragkit.report import breakdown

    rows = [
        (f"{arm} length={length} depth={depth}", length, depth, float(arm == "rag"), f"q{i}")
        for arm in ("rag", "full_context")
        for length in (1000, 8000)
        for depth in (0.0, 1.0)
        for i in range(3)
    ]
    scores = pd.DataFrame(
        rows, columns=["config_name", "meta_length", "meta_depth", "contains_answer", "example_id"]
    )
    heatmap = breakdown_plot(
        breakdown(scores, ["length", "depth"]), ["length", "depth"], "contains_answer", tmp_path / "grid.png"
    )
    lines = breakdown_plot(
        breakdown(scores, ["length"], pool=["depth"]), ["length"], "contains_answer", tmp_path / "lines.png"
    )
    assert heatmap.stat().st_size > 1000 and lines.stat().st_size > 1000
    with pytest.raises(ValueError, match="one or two fields"):
        breakdown_plot(
            breakdown(scores, ["length", "depth"]),
            ["length", "depth", "x"],
            "contains_answer",
            tmp_path / "bad.png",
        )
    # task types across, and a k sweep where full context has no k (a dashed reference line)
    typed = scores.assign(meta_type=["comparison", "reasoning", "location"] * (len(scores) // 3))
    by_type = breakdown_plot(breakdown(typed, ["type"]), ["type"], "contains_answer", tmp_path / "t.png")
    swept = pd.DataFrame(
        {
            "config_name": ["rag k=1", "rag k=4", "drag k=1 m=1", "full_context"],
            "contains_answer": [0.0, 1.0, 1.0, 0.0],
            "example_id": ["q0"] * 4,
        }
    )
    by_k = breakdown_plot(breakdown(swept, ["k"]), ["k"], "contains_answer", tmp_path / "k.png")
    k_by_m = breakdown_plot(breakdown(swept, ["k", "m"]), ["k", "m"], "contains_answer", tmp_path / "km.png")
    assert all(p.stat().st_size > 1000 for p in (by_type, by_k, k_by_m))


def test_report_shows_older_versions_results_and_says_so(experiment_dict, tmp_path, monkeypatch):
    from ragkit.generators.scripted import ScriptedGenerator

    path = write(tmp_path, experiment_dict)
    assert runner.invoke(app, ["run", str(path)]).exit_code == 0
    before = runner.invoke(app, ["report", str(path)])
    assert "older component versions" not in before.output
    # an upgrade bumps the generator's version: every configuration hashes anew, settings unchanged
    monkeypatch.setattr(ScriptedGenerator, "version", "99", raising=False)
    result = runner.invoke(app, ["report", str(path), "--by", "k"])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "3 of 3 configurations are from runs of older component versions" in out
    assert "generator.version 1->99" in out and f"ragkit run {path}" in out
    assert "acc (contains) by k" in out  # per-question scores come from the older run folders too


def test_report_points_to_runs_the_yaml_no_longer_matches(experiment_dict, tmp_path):
    path = write(tmp_path, experiment_dict)
    assert runner.invoke(app, ["run", str(path)]).exit_code == 0
    experiment_dict["generator"]["default"] = "something else"  # every configuration hashes anew
    write(tmp_path, experiment_dict)
    result = runner.invoke(app, ["report", str(path)])
    assert result.exit_code == 2
    out = " ".join(result.output.split())
    assert "holds 3 finished configurations from other settings or ragkit versions" in out
    assert "Report them by their MLflow parent run" in out and "ragkit report RUN_ID" in out


# The command line, with the scripted generator blocking in its second call until a signal comes
# (it says so on stderr first, so the test sends the signal at that moment, not after a guess).
BLOCKING_RUN = """
import sys, threading
from ragkit.generators import scripted
original = scripted.ScriptedGenerator._generate
calls = []
def blocking(self, prompts, requests):
    calls.append(1)
    if len(calls) == 2:
        print("BLOCKED", file=sys.stderr, flush=True)
        threading.Event().wait()  # a long model call; only a signal ends it
    return original(self, prompts, requests)
scripted.ScriptedGenerator._generate = blocking
from ragkit.cli import app
app(["run", sys.argv[1]])
"""


def test_ctrl_c_stops_a_run_at_once_keeps_its_answers_and_resumes(experiment_dict, tmp_path):
    import signal
    import subprocess
    import sys

    from ragkit.predictions_file import read_predictions

    path = write(tmp_path, experiment_dict)
    # A subprocess of Python, not of a shell: a shell's background job ignores SIGINT
    process = subprocess.Popen(
        [sys.executable, "-c", BLOCKING_RUN, str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for line in process.stderr:
            if "BLOCKED" in line:
                break
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130
    assert "interrupted: finished questions are saved in" in stderr and "Traceback" not in stderr
    run_dir = next(p for p in (tmp_path / "runs" / "test-exp").iterdir() if p.is_dir())
    assert len(read_predictions(run_dir / "predictions.jsonl")) == 2  # the first batch survived
    again = runner.invoke(app, ["run", str(path)])
    assert again.exit_code == 0, again.output
    assert len(read_predictions(run_dir / "predictions.jsonl")) == 6


def test_report_takes_the_set_overrides_the_run_was_made_with(experiment_dict, tmp_path):
    path = write(tmp_path, experiment_dict)
    elsewhere = f"output_dir={tmp_path / 'elsewhere'}"
    ran = runner.invoke(app, ["run", str(path), "--set", elsewhere, "--set", "arms.0.k=2"])
    assert ran.exit_code == 0, ran.output
    plain = runner.invoke(app, ["report", str(path)])
    assert plain.exit_code == 2 and "no finished configurations" in plain.output  # the YAML's own folder
    report = runner.invoke(
        app, ["report", str(path), "--set", elsewhere, "--set", "arms.0.k=2", "--metric", "f1"]
    )
    assert report.exit_code == 0, report.output
    flat = " ".join(report.output.split())
    # the run's two configurations (k=2 and full context), not the YAML's k sweep; scores read too
    assert "0.667" in flat and "full_context" in flat and "k=1" not in flat
    assert flat.count("0.611") >= 4  # F1 in the results table and in the --metric table, both rows
    bad = runner.invoke(app, ["report", str(path), "--set", "arms.0.k=banana"])
    assert bad.exit_code == 2 and "error:" in bad.output and "k" in bad.output
    run_id = runner.invoke(app, ["report", "0123abcd", "--set", elsewhere])
    assert run_id.exit_code == 2 and "--set changes an experiment YAML" in run_id.output
