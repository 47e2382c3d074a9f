"""Each benchmark's own metric, so a loaded benchmark is scored the way its paper scores it.

A loader names the metric of every example in ``Example.meta["metric"]`` (LongBench's F1 or
Rouge-L per task, LongBench v2's multiple-choice accuracy, L-Eval's exam rules, RULER's string
match, ...). :func:`score_task` looks the name up here and returns ``task_score``, one number in
[0, 1] per question (the benchmarks report it x100), which tables lead with ("task score").

Metrics read the raw model output (``raw_answer`` in provenance), not ragkit's cleaned first line:
a summary or a list of words is more than one line, and each benchmark has its own rule for what
part of the output counts (LongBench's few-shot tasks keep the first line: ``meta["first_line"]``).

The generic metrics are here; rules that belong to one benchmark (L-Eval's option parsing,
LongBench's paragraph-number rule, ...) live in its loader module and register with
:func:`task_metric`, so a benchmark and its scoring are read in one place.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any

from ragkit.metrics import f1
from ragkit.types import Example, Prediction

# fn(raw output, example) -> score in [0, 1], or a dict with "task_score" and extra columns.
Metric = Callable[[str, Example], "float | dict[str, float]"]
METRICS: dict[str, Metric] = {}
# Metric names whose functions live in a loader module: imported on first use.
_PROVIDERS = {
    "longbench_classification": "ragkit.data.longbench",
    "longbench_retrieval": "ragkit.data.longbench",
    "longbench_count": "ragkit.data.longbench",
    "longbench_code_sim": "ragkit.data.longbench",
    "choice": "ragkit.data.longbench_v2",
    "leval_exam": "ragkit.data.leval",
    "loogle_cloze": "ragkit.data.loogle",
    "needlebench_keywords": "ragkit.data.needlebench",
}


def task_metric(name: str) -> Callable[[Metric], Metric]:
    """Decorator: register ``fn(raw_output, example)`` as metric ``name``: it returns the score in
    [0, 1], or a dict with ``task_score`` and extra columns (e.g. a lenient variant)."""

    def decorator(fn: Metric) -> Metric:
        METRICS[name] = fn
        return fn

    return decorator


def get_metric(name: str) -> Metric:
    if name not in METRICS and name in _PROVIDERS:
        importlib.import_module(_PROVIDERS[name])
    if name not in METRICS:
        raise KeyError(f"unknown task metric {name!r}; known: {sorted(set(METRICS) | set(_PROVIDERS))}")
    return METRICS[name]


def raw_output(prediction: Prediction) -> str:
    """The generator's whole output for the final answer (the cleaned answer when not recorded).
    Provenance is a dict in runs written before it was typed, an object with ``raw_answer`` since."""
    provenance = prediction.provenance
    raw = (
        provenance.get("raw_answer")
        if isinstance(provenance, dict)
        else getattr(provenance, "raw_answer", "")
    )
    return str(raw or prediction.answer or "")


def score_task(example: Example, prediction: Prediction) -> dict[str, Any]:
    """``{"task_score": ..., "task_metric": name}`` for examples whose loader named a metric,
    else ``{}``."""
    name = example.meta.get("metric")
    if not name:
        return {}
    output = raw_output(prediction)
    if example.meta.get("first_line"):  # LongBench's rule for its few-shot tasks
        output = output.lstrip("\n").split("\n")[0]
    value = get_metric(str(name))(output, example)
    scores = dict(value) if isinstance(value, dict) else {"task_score": value}
    return {**{k: float(v) for k, v in scores.items()}, "task_metric": str(name)}


# -- generic metrics -------------------------------------------------------------------------------
@task_metric("qa_f1")
def qa_f1(output: str, example: Example) -> float:
    """SQuAD token F1 (normalised: lower case, no punctuation or articles), best reference: the
    F1 of LongBench's QA tasks, L-Eval's ``f1`` records and RULER-style QA."""
    return f1(output, example.answers)


@functools.cache
def _rouge_scorer() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def rouge_l(output: str, references: list[str]) -> float:
    """Rouge-L F-measure (Google's ``rouge-score``, no stemming, as L-Eval computes it), best
    reference. Its tokenizer keeps ASCII letters and digits only."""
    if not output.strip():
        return 0.0
    scorer = _rouge_scorer()
    return max((scorer.score(ref, output)["rougeL"].fmeasure for ref in references), default=0.0)


@task_metric("rouge_l")
def rouge_l_metric(output: str, example: Example) -> float:
    """Rouge-L F1 for long answers (summaries, query-focused answers)."""
    return rouge_l(output, example.answers)


@task_metric("string_match_all")
def string_match_all(output: str, example: Example) -> float:
    """RULER's ``string_match_all``: the share of references found (case-insensitively, as
    substrings) in the output; variable tracking and word-frequency tasks."""
    refs = example.answers
    low = output.lower()
    return sum(r.lower() in low for r in refs) / len(refs) if refs else 0.0


@task_metric("string_match_part")
def string_match_part(output: str, example: Example) -> float:
    """RULER's ``string_match_part``: 1 when any reference occurs in the output (its QA tasks)."""
    low = output.lower()
    return float(any(r.lower() in low for r in example.answers))
