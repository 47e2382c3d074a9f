"""What the tables say: truncation, the leading metric and why, one interval and one name per
metric, ``--by length`` on any dataset, and ``--metric`` validated with and without ``--by``."""

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from ragkit.cli import app

runner = CliRunner()


def _run(experiment_dict, tmp_path, *extra):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(experiment_dict))
    result = runner.invoke(app, ["run", str(path), *extra])
    assert result.exit_code == 0, result.output
    return path, " ".join(result.output.split())


def test_the_run_table_counts_truncated_questions_and_names_the_leading_metric(experiment_dict, tmp_path):
    # a budget that leaves full context room for about half of each question's documents
    experiment_dict["arms"][1]["budget"] = 85
    path, out = _run(experiment_dict, tmp_path)
    assert "truncated" in out
    scores = pd.concat(pd.read_parquet(p) for p in (tmp_path / "runs").glob("*/*/scores.parquet"))
    full = scores[scores["config_name"] == "full_context"]
    share = (full["dropped_tokens"] / full["full_context_tokens"]).mean()
    assert full["truncated"].all() and 0.2 < share < 0.8
    assert f"6/6 ({share:.0%} of tokens)" in out  # the full-context row: every question cut, mean share
    assert "leading metric: acc (contains) (short answers;" in out
    report = " ".join(runner.invoke(app, ["report", str(path)]).output.split())
    assert f"6/6 ({share:.0%} of tokens)" in report and "leading metric: acc (contains)" in report


def test_report_metric_is_validated_and_works_with_and_without_by(experiment_dict, tmp_path):
    path, _ = _run(experiment_dict, tmp_path)
    bad = runner.invoke(app, ["report", str(path), "--metric", "bogus"])
    text = " ".join(bad.output.split())
    assert bad.exit_code == 2 and "unknown metric 'bogus'; these results have:" in text
    assert "contains_answer (acc (contains))" in text and "f1 (F1 (SQuAD))" in text
    assert "f1_hotpotqa (F1 (HotpotQA official))" in text
    alone = runner.invoke(app, ["report", str(path), "--metric", "f1"])
    assert alone.exit_code == 0, alone.output
    table = alone.output.split("results (95% intervals)")[1]
    assert "F1" in table and "rag k=1" in table.split("leading metric")[1]  # a per-configuration F1 table
    by_label = runner.invoke(app, ["report", str(path), "--metric", "acc (contains)", "--by", "k"])
    assert by_label.exit_code == 0 and "acc (contains) by k" in by_label.output
    wrong = runner.invoke(app, ["report", str(path), "--metric", "bogus", "--by", "k"])
    assert wrong.exit_code == 2 and "unknown metric 'bogus'" in wrong.output


def test_by_length_works_on_any_dataset_and_the_error_lists_every_field(experiment_dict, tmp_path):
    path, _ = _run(experiment_dict, tmp_path)
    result = runner.invoke(app, ["report", str(path), "--by", "length"])
    assert result.exit_code == 0, result.output
    assert "acc (contains) by length" in result.output and "<1k" in result.output
    unknown = runner.invoke(app, ["report", str(path), "--by", "nope"])
    text = " ".join(unknown.output.split())
    assert unknown.exit_code == 2 and "fields to break down by:" in text
    listed = text.split("fields to break down by:")[1]
    for field in ("length", "k", "truncated", "answerable", "gold_survived"):
        assert field in listed


def test_length_buckets_are_powers_of_two_in_order():
    from ragkit.breakdown import breakdown, length_bucket

    assert [length_bucket(t) for t in (10, 1023, 1024, 3000, 4096, 44474)] == [
        "<1k",
        "<1k",
        "1k-2k",
        "2k-4k",
        "4k-8k",
        "32k-64k",
    ]
    scores = pd.DataFrame(
        {
            "config_name": ["rag"] * 4,
            "config_hash": ["h"] * 4,
            "example_id": list("abcd"),
            "contains_answer": [1.0, 0.0, 1.0, 1.0],
            "document_tokens": [9000.0, 500.0, 2500.0, 9100.0],
        }
    )
    table = breakdown(scores, ["length"])
    assert table["length"].astype(str).tolist() == ["<1k", "2k-4k", "8k-16k"]
    assert table["n"].tolist() == [1, 1, 2]


def test_one_interval_method_and_one_name_per_metric():
    from ragkit.breakdown import breakdown
    from ragkit.metric_info import interval, label
    from ragkit.metrics import summarize

    # answer≈ is graded: all zeros on 8 questions is a bootstrap interval in every table, never
    # Wilson's [0, 0.32] because the values happen to be 0/1
    scores = pd.DataFrame(
        {
            "config_name": ["full_context"] * 8,
            "config_hash": ["h"] * 8,
            "example_id": [f"q{i}" for i in range(8)],
            "em": 0.0,
            "f1": 0.0,
            "contains_answer": 0.0,
            "longform_approx": 0.0,
            "meta_type": ["a", "b"] * 4,
        }
    )
    summary = summarize(scores)
    by_type = breakdown(scores, ["type"], "longform_approx")
    pooled = breakdown(scores, [], "longform_approx")
    assert (summary["longform_approx_ci_low"], summary["longform_approx_ci_high"]) == (0.0, 0.0)
    assert (pooled["95% CI low"].item(), pooled["95% CI high"].item()) == (0.0, 0.0)
    assert by_type["95% CI high"].tolist() == [0.0, 0.0]
    # contains-answer is 0/1: Wilson everywhere
    low, high = interval("contains_answer", np.zeros(8))
    assert (summary["contains_answer_ci_low"], summary["contains_answer_ci_high"]) == (low, high)
    assert high == pytest.approx(0.324, abs=1e-3)
    assert label("longform_approx") == "answer≈ (approx)"


def test_answer_in_context_is_measured_on_what_the_prompt_showed():
    """The proxy behind the run table's 'answer in context' column: a reference answer in the
    packed passages (RAG) or in the fitted document (full context, after truncation)."""
    from ragkit.generators.scripted import ScriptedGenerator
    from ragkit.retrievers.bm25 import BM25Retriever
    from ragkit.strategies.full_context import FullContext
    from ragkit.strategies.rag import RAG
    from ragkit.strategies.retrieval import Retrieval
    from ragkit.types import Document, Example

    filler = " ".join(f"word{i}" for i in range(400))
    documents = [
        Document("a", "The capital of France is Paris."),
        Document("b", "Bread is made from flour."),
        Document("c", filler),
    ]
    example = Example("q", "What is the capital of France?", ["Paris"], documents=documents)
    generator = ScriptedGenerator(context_window=4096, script={"France": "Paris"})
    [hit] = RAG(retrieval=Retrieval(retriever=BM25Retriever(), k=1)).run([example], generator)
    assert hit.provenance.measures["answer_in_context"] == 1.0
    elsewhere = Example("q2", "What is bread made from?", ["Paris"], documents=documents)
    [miss] = RAG(retrieval=Retrieval(retriever=BM25Retriever(), k=1)).run([elsewhere], generator)
    assert miss.provenance.measures["answer_in_context"] == 0.0  # flour's passage, not Paris's
    [whole] = FullContext().run([example], generator)
    assert whole.provenance.measures["answer_in_context"] == 1.0
    # cut to a window that keeps only the end of the context: Paris (first document) is gone
    [cut] = FullContext(truncation="start", budget=120).run([example], generator)
    assert cut.provenance.measures["truncated"] and cut.provenance.measures["answer_in_context"] == 0.0


def test_the_run_table_shows_flops_where_they_do_not_follow_the_tokens():
    from ragkit.report import display_table, format_flops

    def frame(flops):
        return pd.DataFrame(
            {
                "config_name": ["full_context", "gemfilter keep=256", "rag"],
                "contains_answer": [0.7, 0.0, 1.0],
                "effective_context_tokens": [4009.0, 4009.0, 721.0],
                "flops": flops,
                "n_questions": [10, 10, 10],
            }
        )

    # GemFilter reads every token but prefills only its filter layers over all of them: its FLOPs
    # per token are 44% of full context's, which the tokens column cannot show
    table = display_table(frame([1.3661e12, 6.026e11, 2.106e11])).set_index("configuration")
    assert list(table["FLOPs/question"]) == ["1.37T", "603G", "211G"]
    # one generator, FLOPs proportional to the tokens (within 25%): the column stays out
    assert "FLOPs/question" not in display_table(frame([1.3661e12, 1.3661e12, 2.106e11])).columns
    assert "FLOPs/question" not in display_table(frame([0.0, 0.0, 0.0])).columns  # none counted
    # three significant digits and an SI prefix, across the sizes a study meets
    assert [format_flops(v) for v in (0.0, 950.0, 2.106e11, 1.3661e12, 2.04e16, None)] == [
        "0",
        "950",
        "211G",
        "1.37T",
        "20.4P",
        "-",
    ]
