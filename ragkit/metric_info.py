"""What each per-question metric is called in tables and which interval it gets.

One name and one interval method per metric, whatever the table (the run table, ``report --by``,
MLflow): a 0/1 metric (contains-answer, a judge's verdict, evidence hit) gets a Wilson score
interval; a graded one (F1, answer≈, evidence recall, MRR) a seeded percentile bootstrap. The
method follows the metric's type, never the values it happens to take: an answer≈ column that is
all zeros on 8 questions is still graded, and gets the same interval in every table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ragkit.metrics import bootstrap_interval, wilson_interval


@dataclass(frozen=True)
class MetricInfo:
    label: str  # the name every table uses
    kind: Literal["binary", "graded"]
    leads_because: str = ""  # why a table leads with it, when it does


METRICS: dict[str, MetricInfo] = {
    "judge_correct": MetricInfo("judge", "binary", "a judge model grades the answers"),
    "task_score": MetricInfo(
        "task score",
        "graded",
        "the benchmark's own metric (LongBench, L-Eval, LooGLE, RULER, NeedleBench: F1, Rouge-L,"
        " multiple-choice accuracy, exact match rules), as its paper reports it",
    ),
    "summhay_joint": MetricInfo(
        "SummHay joint (judge)",
        "graded",
        "Summary of a Haystack: insight coverage (judged) x citation F1 against the insights' documents",
    ),
    "summhay_joint_approx": MetricInfo(
        "SummHay joint≈",
        "graded",
        "Summary of a Haystack: insight coverage (lexical approximation) x citation F1 against the"
        " insights' documents; a judge (evaluation.judge) scores coverage better",
    ),
    "summhay_coverage": MetricInfo("coverage (judge)", "graded"),
    "summhay_citation": MetricInfo("citation (judge)", "graded"),
    "summhay_coverage_approx": MetricInfo("coverage≈", "graded"),
    "summhay_citation_approx": MetricInfo("citation≈", "graded"),
    "citation_recall": MetricInfo("cite recall", "graded"),
    "citation_precision": MetricInfo("cite precision", "graded"),
    "citation_f1": MetricInfo("cite F1", "graded"),
    "cites": MetricInfo("citing", "binary"),
    "judged_citation_recall": MetricInfo("cite recall (judge)", "graded"),
    "judged_citation_precision": MetricInfo("cite precision (judge)", "graded"),
    "judged_citation_f1": MetricInfo("cite F1 (judge)", "graded"),
    "support_accepts_quote": MetricInfo("judge accepts quote (control)", "binary"),
    "support_rejects_other": MetricInfo("judge rejects other passage (control)", "binary"),
    "longform_approx": MetricInfo(
        "answer≈ (approx)",
        "graded",
        "free-form answers: EM and contains-answer cannot grade sentences; answer≈ is the share of the"
        " reference's content words in the answer (a judge model grades better)",
    ),
    "needle_exact": MetricInfo("needle exact", "binary", "needle values are scored exactly (RULER)"),
    "needle_recall": MetricInfo("needle recall", "graded"),
    "contains_answer": MetricInfo(
        "acc (contains)",
        "binary",
        "short answers; small models answer in sentences, so a reference found in the answer"
        " (contains-answer) is read rather than exact match",
    ),
    "evidence_recall": MetricInfo(
        "evidence recall@k",
        "graded",
        "retrieval only (no generator): the share of gold evidence in the top k",
    ),
    "evidence_hit": MetricInfo("evidence hit@k", "binary"),
    "mrr": MetricInfo("MRR", "graded"),
    "answer_in_context": MetricInfo("answer in context (proxy)", "binary"),
    "em": MetricInfo("EM", "binary"),
    "f1": MetricInfo("F1 (SQuAD)", "graded"),  # the official SQuAD F1; HotpotQA's is f1_hotpotqa
    "f1_hotpotqa": MetricInfo("F1 (HotpotQA official)", "graded"),
    "em_squad_v2": MetricInfo("EM (SQuAD v2 official)", "binary"),
    "f1_squad_v2": MetricInfo("F1 (SQuAD v2 official)", "graded"),
    "ruler_match_all": MetricInfo("RULER match-all", "graded", "RULER's own needle score"),
    "ruler_match_part": MetricInfo("RULER match-part", "binary"),
    "answer_recall_approx": MetricInfo("answer recall≈ (approx)", "graded"),
    "refusal_approx": MetricInfo("refusal≈ (approx)", "binary"),
    "abstention_correct": MetricInfo("abstention correct", "binary"),
    "gold_survived": MetricInfo("gold survived", "binary"),
    "truncated": MetricInfo("truncated", "binary"),
    "dropped_share": MetricInfo("share of tokens dropped", "graded"),
    "compression": MetricInfo("compression", "graded"),
    "judge_accepts_reference": MetricInfo("judge accepts reference (control)", "binary"),
    "judge_rejects_mismatch": MetricInfo("judge rejects mismatch (control)", "binary"),
}


def label(metric: str) -> str:
    info = METRICS.get(metric)
    return info.label if info else metric


def is_binary(metric: str) -> bool:
    info = METRICS.get(metric)
    return info is not None and info.kind == "binary"


def interval(metric: str, values: Sequence[float] | np.ndarray, seed: int = 0) -> tuple[float, float]:
    """The 95% interval of ``metric``'s mean over ``values`` (NaN left out), by the metric's type.
    Metrics not listed here are treated as graded (a bootstrap is valid for any bounded score);
    ``seed`` seeds the bootstrap (the experiment's seed)."""
    data = np.asarray(values, dtype=float)
    data = data[~np.isnan(data)]
    if is_binary(metric):
        return wilson_interval(float(data.sum()), int(data.size))
    return bootstrap_interval(data, seed=seed)


def resolve(name: str, available: Sequence[str]) -> str:
    """The metric column ``name`` means (its column name or its table label), or a KeyError
    listing the metrics these results have."""
    if name in available:
        return name
    by_label = {label(m): m for m in available}
    if name in by_label:
        return by_label[name]
    listed = ", ".join(f"{m} ({label(m)})" if label(m) != m else m for m in available)
    raise KeyError(f"unknown metric {name!r}; these results have: {listed}")
