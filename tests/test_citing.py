"""``citations: true`` on RAG and full context: the citing prompt, the citation record, the scores
and table columns it feeds, and an unchanged identity for every configuration that does not cite."""

import json

import pytest
import yaml
from typer.testing import CliRunner

from ragkit.cli import app
from ragkit.config import load_experiment
from ragkit.report import display_table, results_frame
from ragkit.runner import run_experiment
from ragkit.strategies import _citing
from ragkit.strategies.prompts import question_messages
from ragkit.types import Example

runner = CliRunner()


def _arms(**extra):
    return [
        {"strategy": "rag", "retriever": {"type": "bm25"}, "k": [1, 2], **extra},
        {"strategy": "full_context", **extra},
    ]


def test_citations_stay_out_of_the_identity_of_configurations_that_do_not_cite(experiment_dict):
    def hashes(**extra):
        experiment = load_experiment({**experiment_dict, "arms": _arms(**extra)})
        return [c.hash for c in experiment.configurations], experiment.configurations

    unset, configurations = hashes()
    assert all("citations" not in c.resolved["strategy"] for c in configurations)  # old run folders kept
    assert hashes(citations=False)[0] == unset
    citing, configurations = hashes(citations=True)
    assert all(c.resolved["strategy"]["citations"] is True for c in configurations)
    assert not set(citing) & set(unset)


def test_the_citing_prompt_changes_only_the_instructions():
    example = Example(id="x", question="Who?", answers=["Ann"])
    docs = "Document [1] Ann wrote it."
    assert _citing.messages(example, docs) == question_messages("Who?", docs)  # the same cache entries
    short = _citing.messages(example, docs, citations=True)
    assert "square brackets" in short[0]["content"] and docs in short[1]["content"]
    long = Example(id="y", question="Summarize.", answers=["-"], meta={"answer_format": "summary"})
    assert "every sentence or bullet" in _citing.messages(long, docs, citations=True)[0]["content"]
    assert _citing.messages(example, "", citations=True) == question_messages("Who?", "")  # closed book
    assert _citing.answer("Paris [2].", 3, long=False) == "Paris"
    assert _citing.answer("- A [1].\n- B (2).", 3, long=True) == "- A. - B."


def test_citing_run_scores_citations_against_gold_evidence(experiment_dict, tmp_path):
    # full context shows the gold document second (conftest), so "[2]" cites it; RAG at k = 1 shows
    # one passage, so "[2]" points to no passage shown (an invalid citation).
    experiment_dict["generator"]["script"] = {"France": "Paris [2].", "Dracula": "Bram Stoker"}
    experiment_dict["arms"] = _arms(citations=True)
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(experiment_dict))
    result = runner.invoke(app, ["run", str(path)])
    assert result.exit_code == 0, result.output
    assert "cite recall" in " ".join(result.output.split())

    results = run_experiment(load_experiment(path))  # resumed from the run folders
    table = display_table(results_frame(results)).set_index("configuration")
    # what the prompt showed, then what the answer cited
    shown = list(table.columns).index("evidence recall@k [95% CI]")
    assert list(table.columns[shown + 1 : shown + 4]) == [
        "cite recall [95% CI]",
        "cite precision [95% CI]",
        "citing [95% CI]",
    ]
    assert table.loc["full_context", "cite recall [95% CI]"] == "0.167 [0.00, 0.50]"
    assert table.loc["full_context", "citing [95% CI]"].startswith("0.167 [0.03,")  # Wilson for a 0/1 metric
    by_name = {r.configuration.name: r for r in results}
    full = by_name["full_context"].scores.set_index("example_id")
    assert full.loc["q1", "citation_recall"] == 1.0 and full.loc["q1", "citation_precision"] == 1.0
    assert full.loc["q1", "contains_answer"] == 1.0 and full.loc["q1", "em"] == 1.0  # "[2]" stripped
    assert full.loc["q2", "cites"] == 0.0 and full.loc["q2", "citation_precision"] == 0.0
    summary = by_name["full_context"].summary
    assert summary["cites"] == pytest.approx(1 / 6) and summary["citation_recall"] == pytest.approx(1 / 6)
    for metric in ("cites", "citation_recall", "citation_precision"):  # every one with its interval
        assert summary[f"{metric}_ci_low"] <= summary[metric] < summary[f"{metric}_ci_high"]
    first = by_name["rag k=1"].scores.set_index("example_id").loc["q1"]
    assert first["cites"] == 0.0 and first["n_citations"] == 1.0 and first["citation_recall"] == 0.0

    record = next(
        json.loads(line)
        for line in (by_name["full_context"].run_dir / "predictions.jsonl").read_text().splitlines()
        if json.loads(line)["example_id"] == "q1"
    )
    assert record["answer"] == "Paris" and record["provenance"]["raw_answer"] == "Paris [2]."
    citations = record["provenance"]["details"]["citations"]
    assert [doc for _, doc in citations["passages"]] == ["Bread", "France", "Chess"]
    assert citations["evidence"] == [[], [0], []] and list(citations["texts"]) == ["2"]


def test_a_cited_summary_is_scored_against_the_insights_documents(tmp_path):
    from ragkit.data.summary_haystack import SummaryHaystack

    sizes = {"n": 1, "documents": 6, "document_tokens": 30, "subtopics": 2, "insights": 2, "repeat": 2}
    example = SummaryHaystack(tokenizer="scripted", **sizes).load().examples[0]
    ids = [d.id for d in example.documents]
    facts = json.loads(example.meta["insights"])
    bullets = [f"- {f['text']} " + "".join(f"[{ids.index(d) + 1}]" for d in f["docs"]) for f in facts]
    script = {f"give about {example.meta['topic']}": "\n".join(bullets)}  # its question, not the documents
    experiment = {
        "name": "summary-cite",
        "dataset": {"type": "summary-haystack", "tokenizer": "scripted", **sizes},
        "generator": {"type": "scripted", "script": script},
        "arms": [{"strategy": "full_context", "citations": True, "max_new_tokens": 64}],
        "tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "output_dir": str(tmp_path / "runs"),
        "cache_dir": str(tmp_path / "cache"),
        "tracking": {"traces": "off"},
    }
    (result,) = run_experiment(load_experiment(experiment))
    scores = result.scores.set_index("example_id")
    mine, other = scores.loc[example.id], scores.drop(index=example.id).iloc[0]
    assert mine["summhay_coverage_approx"] == 1.0 and mine["summhay_citation_approx"] == 1.0
    assert mine["summhay_joint_approx"] == 1.0 and mine["cites"] == 1.0
    assert other["summhay_joint_approx"] == 0.0  # the other organisation's question got no summary
