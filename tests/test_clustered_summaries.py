"""Clustered summaries (CRAG): k-means over the passages' embeddings, one charged summary call per
cluster, the answer from the summaries alone; budget, measures and estimate. Scripted generator,
the packaged MiniLM embedder (loaded once per process)."""

from __future__ import annotations

import numpy as np
import pytest

from ragkit.config import ConfigError, load_experiment
from ragkit.generators.scripted import ScriptedGenerator
from ragkit.retrievers.bm25 import BM25Retriever
from ragkit.strategies.clustered_summaries import ClusteredSummaries, elbow, kmeans
from ragkit.strategies.retrieval import Retrieval
from ragkit.types import Document, Evidence, Example

FACT = "The treasure is buried under the old oak tree."
DOCS = [
    Document(id="t1", title="Treasure", text=f"{FACT} Pirates hid the treasure chest long ago."),
    Document(id="b1", title="Bread", text="Bread is baked from flour, water, salt and yeast in an oven."),
    Document(id="c1", title="Chess", text="Chess is a board game in which two players move pieces."),
    Document(id="t2", title="Treasure map", text="The pirate map shows where the treasure chest was hidden."),
    Document(id="b2", title="Baking", text="Bakers knead dough from flour and yeast before baking bread."),
    Document(id="c2", title="Chess rules", text="In chess the king is checkmated when it cannot escape."),
]
EXAMPLE = Example(
    "e1", "Where is the treasure buried?", ["under the old oak tree"], DOCS, [Evidence("t1", FACT)]
)
TOPIC = {"t": "treasure", "b": "bread", "c": "chess"}


def gen() -> ScriptedGenerator:
    # a summary of the treasure cluster keeps the answer; the answer call reads it back
    return ScriptedGenerator(
        script={
            "SUMMARY under the old oak": "under the old oak tree",
            "(?s)oak tree.*Summary:": "SUMMARY under the old oak tree",
            "Summary:": "SUMMARY nothing useful",
        },
        default="no idea",
        context_window=4096,
        max_new_tokens=8,
    )


def strategy(**overrides) -> ClusteredSummaries:
    settings = {"retrieval": Retrieval(retriever=BM25Retriever(), k=6), "clusters": 3, "summary_tokens": 8}
    return ClusteredSummaries(**{**settings, **overrides})


def test_passages_are_clustered_by_topic_and_each_cluster_is_summarised_once():
    g = gen()
    [p] = strategy().run([EXAMPLE], g)
    groups = [[i.split("#")[0] for i in group] for group in p.provenance.details["clusters"]]  # doc ids
    assert len(groups) == 3 and sorted(i for g_ in groups for i in g_) == sorted(d.id for d in DOCS)
    assert all(len({TOPIC[i[0]] for i in group}) == 1 for group in groups)  # one topic per cluster
    assert groups[0][0].startswith("t")  # the cluster holding the best passage comes first
    assert [c.role for c in p.provenance.calls] == ["summary"] * 3 + ["answer"]
    *summaries, answer = g.prompts_
    for group, prompt in zip(groups, summaries, strict=True):  # a summary call reads its cluster only
        others = [d for d in DOCS if d.id not in group]
        assert all(d.text in prompt for d in DOCS if d.id in group)
        assert not any(d.text in prompt for d in others)
    assert "SUMMARY under the old oak tree" in answer and not any(d.text in answer for d in DOCS)
    assert p.answer == "under the old oak tree"
    # every call is charged: the effective context is every prompt the generator read
    assert p.cost.calls == 4 and p.cost.input_tokens == sum(len(x.split()) for x in g.prompts_)
    stages = [s.name for s in p.provenance.stages]
    assert stages == ["retrieve", "cluster"] and p.provenance.stages[1].tokens > 0
    assert p.cost.aux_tokens == sum(s.tokens for s in p.provenance.stages)


def test_measures_say_what_the_summaries_kept():
    [p] = strategy().run([EXAMPLE], gen())
    m = p.provenance.measures
    assert m["clusters"] == 3 and m["passages"] == 6
    assert m["summary_tokens"] == 6 + 3 + 3  # the treasure summary, twice "SUMMARY nothing useful"
    assert m["source_tokens"] > m["summary_tokens"] and 0 < m["compression"] < 1
    assert m["answer_in_summaries"] == 1.0 and m["evidence_in_summaries"] == 0.0  # paraphrased
    assert p.provenance.evidence_recall == 1.0  # the passages clustered held the evidence
    assert p.provenance.gold_survived is False  # the answering prompt shows summaries, not the fact
    assert {i.split("#")[0] for i in p.provenance.context_ids} == {d.id for d in DOCS}


def test_focused_summaries_see_the_question_and_generic_ones_do_not():
    for focused in (True, False):
        g = gen()
        strategy(focused=focused).run([EXAMPLE], g)
        summaries = g.prompts_[:-1]
        assert all(("Where is the treasure buried?" in s) == focused for s in summaries)


def test_fewer_distinct_passages_than_clusters_gives_fewer_clusters():
    same = [Document(id=f"d{i}", title="", text="The same sentence about bread.") for i in range(3)]
    example = Example("s", "What is bread made of?", ["flour"], same)
    [p] = strategy(clusters=3).run([example], gen())
    assert p.provenance.measures["clusters"] == 1 and p.cost.calls == 2


def test_no_passages_answers_closed_book_without_summaries():
    [p] = strategy(retrieval=Retrieval(retriever=BM25Retriever(), k=0)).run([EXAMPLE], gen())
    assert [c.role for c in p.provenance.calls] == ["answer"] and p.provenance.measures["clusters"] == 0


def test_budget_caps_every_call_and_drops_what_does_not_fit():
    [free] = strategy().run([EXAMPLE], gen())
    for fraction in (0.7, 0.45):
        budget = int(fraction * free.cost.input_tokens)
        [p] = strategy(budget=budget).run([EXAMPLE], gen())
        assert p.cost.input_tokens <= budget
        assert p.provenance.calls[-1].role == "answer"  # the answer always comes
        kept = p.provenance.measures["clusters"]
        assert kept < 3 or p.provenance.dropped_tokens > 0  # fewer summaries, or passages cut


def test_elbow_picks_the_knee_of_the_inertia_curve():
    assert elbow([100.0, 20.0, 15.0, 12.0, 10.0]) == 2
    assert elbow([100.0, 90.0, 80.0, 15.0, 12.0, 10.0]) == 4
    assert elbow([4.0, 3.0, 2.0, 1.0]) == 1  # a straight line has no elbow
    assert elbow([5.0, 1.0]) == 1 and elbow([0.0, 0.0, 0.0]) == 1


def test_kmeans_without_a_count_finds_the_blobs_and_numbers_them_by_first_appearance():
    rng = np.random.default_rng(0)
    centres = np.array([[5.0, 0.0], [0.0, 5.0], [-5.0, -5.0]])
    order = [2, 0, 1, 2, 0, 1, 2, 0, 1]
    vectors = centres[order] + rng.normal(scale=0.1, size=(9, 2))
    labels = kmeans(vectors, None, 6, seed=0)
    assert list(labels) == [0, 1, 2] * 3
    two = kmeans(vectors, 2, 6, seed=0)
    assert two[0] == 0 and set(two) == {0, 1}


def test_estimate_bounds_the_run():
    s = strategy()
    [estimate] = s.estimate([EXAMPLE], gen())
    [p] = strategy().run([EXAMPLE], gen())
    assert estimate.calls == p.cost.calls == 4 and estimate.input_tokens >= p.cost.input_tokens
    assert estimate.output_tokens >= p.cost.output_tokens


def test_catalog_entry_and_yaml_fields(experiment_dict):
    experiment_dict["arms"] = [
        {"strategy": "clustered-summaries", "retrieval": {"retriever": "bm25", "k": 4}, "clusters": [2, 3]}
    ]
    configurations = load_experiment(experiment_dict).configurations
    assert [c.name.split()[-1] for c in configurations] == ["clusters=2", "clusters=3"]
    experiment_dict["arms"] = [
        {"strategy": "clustered_summaries", "retrieval": {"retriever": "bm25"}, "clusters": 0}
    ]
    with pytest.raises(ConfigError, match=r"arms\[0\]\.clusters"):
        load_experiment(experiment_dict)


def test_a_run_reports_the_clusters_and_charges_the_summaries(experiment_dict):
    from ragkit.runner import run_experiment

    experiment_dict["arms"] = [
        {"strategy": "clustered_summaries", "retrieval": {"retriever": "bm25", "k": 2}, "clusters": 2}
    ]
    [result] = run_experiment(load_experiment(experiment_dict))
    assert result.summary["clusters"] == pytest.approx(2.0)
    assert result.summary["calls"] == pytest.approx(3.0)
