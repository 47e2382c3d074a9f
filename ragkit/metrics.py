"""Answer metrics, per-question score rows, aggregates with intervals, and paired comparisons.

- Exact match and F1 follow the official SQuAD v1.1/v2.0 evaluation script (normalisation: lower
  case, drop punctuation, drop the articles a/an/the, collapse whitespace; F1 over normalised
  tokens; the maximum over reference answers).
- Unanswerable questions (SQuAD v2 convention): em, f1 and contains_answer are 1.0 when the model
  abstained (see :data:`ABSTENTION_PATTERNS`) and 0.0 otherwise.
- *contains-answer* (a normalised reference occurs in the normalised prediction on word
  boundaries) is the accuracy to read for small models that answer in sentences.
- Intervals are 95%: Wilson score intervals for 0/1 metrics (exact match, contains-answer), a
  seeded percentile bootstrap for F1; :func:`paired_difference` compares two configurations on the
  same questions. Written here rather than taken from scipy/statsmodels: each is a few lines, and
  scipy's bootstrap is not seeded-by-default nor paired on an id column.
"""

from __future__ import annotations

import json
import math
import re
import string
from collections import Counter
from collections.abc import Iterable, Sequence
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from ragkit.types import Evidence, Example, Prediction, Provenance

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)
Z95 = NormalDist().inv_cdf(0.975)


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, answers: Sequence[str]) -> float:
    norm = normalize_answer(prediction)
    return float(any(norm == normalize_answer(a) for a in answers))


def _f1(prediction: str, answer: str) -> float:
    pred, gold = normalize_answer(prediction).split(), normalize_answer(answer).split()
    if not pred or not gold:  # SQuAD v2: an empty side scores 1 only when both are empty
        return float(pred == gold)
    same = sum((Counter(pred) & Counter(gold)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def f1(prediction: str, answers: Sequence[str]) -> float:
    """Token-level F1, the maximum over reference answers (0.0 without references)."""
    return max((_f1(prediction, a) for a in answers), default=0.0)


def contains_answer(prediction: str, answers: Sequence[str]) -> float:
    """1.0 when a (non-empty) normalised reference occurs in the normalised prediction as whole
    words: "paris" is in "it is paris", but "par" is not."""
    padded = f" {normalize_answer(prediction)} "
    return float(any(norm and f" {norm} " in padded for norm in map(normalize_answer, answers)))


# Phrases that mean "I abstain", matched case-insensitively anywhere in the answer. They cover
# ragkit's own instruction ("reply exactly: unanswerable") and the usual ways models decline.
ABSTENTION_PATTERNS: tuple[str, ...] = (
    r"\bunanswerable\b",
    r"\bnot answerable\b",
    r"\bno answer\b",
    r"\bcannot be answered\b",
    r"\bcan ?not answer\b",
    r"\bcan'?t (?:be )?answer(?:ed)?\b",
    r"\bnot enough information\b",
    r"\binsufficient information\b",
    r"\bno (?:relevant )?information\b",
    r"\bi (?:do not|don'?t) know\b",
    r"\b(?:does|do) not (?:mention|contain|provide|say|specify)\b",
    r"\bnot (?:mentioned|provided|stated|specified) in\b",
)
_ABSTENTION = re.compile("|".join(ABSTENTION_PATTERNS), flags=re.IGNORECASE)


def is_abstention(prediction: str) -> bool:
    return bool(_ABSTENTION.search(prediction.replace("\u2019", "'")))


def evidence_recall(evidence: Sequence[Evidence | str], texts: Iterable[str]) -> float | None:
    """Fraction of gold evidence sentences found (whitespace-insensitively) in any of ``texts``;
    None when there is no gold evidence."""
    if not evidence:
        return None
    haystack = "\n".join(" ".join(t.split()) for t in texts)
    wanted = [" ".join((e.text if isinstance(e, Evidence) else e).split()) for e in evidence]
    return sum(1 for w in wanted if w in haystack) / len(wanted)


def _scalar(value: Any) -> Any:
    """Meta values go to parquet columns: keep scalars, write anything else as JSON text."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return json.dumps(value, default=str, sort_keys=True)


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


def score(examples: Sequence[Example], predictions: Sequence[Prediction]) -> pd.DataFrame:
    """One row per example (matched to predictions by id), columns as in RESULTS.md."""
    by_id = {p.example_id: p for p in predictions}
    missing = [e.id for e in examples if e.id not in by_id]
    if missing:
        raise ValueError(f"no prediction for {len(missing)} example(s), e.g. {missing[:3]}")
    rows = []
    for example in examples:
        prediction = by_id[example.id]
        answer = prediction.answer or ""
        abstained = is_abstention(answer)
        if example.answerable:
            em, f1_, contains = (
                exact_match(answer, example.answers),
                f1(answer, example.answers),
                contains_answer(answer, example.answers),
            )
        else:  # SQuAD v2 convention: the right answer to an unanswerable question is to abstain
            em = f1_ = contains = float(abstained)
        provenance = prediction.provenance
        row: dict[str, Any] = {
            "example_id": example.id,
            "em": em,
            "f1": f1_,
            "contains_answer": contains,
            "abstained": abstained,
            "answerable": example.answerable,
            "abstention_correct": float(abstained != example.answerable),
            "evidence_recall": _float(provenance.evidence_recall),
            "dropped_tokens": float(provenance.dropped_tokens),
            "gold_survived": _float(provenance.gold_survived),
        }
        row.update({f"cost_{k}": v for k, v in prediction.cost.to_dict().items()})
        row.update(truncation(provenance))
        row.update({f"meta_{k}": _scalar(v) for k, v in example.meta.items()})
        rows.append(row)
    if not rows:
        return pd.DataFrame(columns=["example_id", "em", "f1", "contains_answer"])
    return pd.DataFrame(rows)


def truncation(provenance: Provenance) -> dict[str, float]:
    """``truncated`` (1.0 when tokens of the question's context were cut to fit the window or
    budget) and ``dropped_share`` (the share of the context's tokens cut: of the full documents
    for full context, of the selected passages for RAG)."""
    dropped = float(provenance.dropped_tokens)
    shown = float(provenance.context_tokens or 0)
    whole = provenance.measures.get("full_context_tokens") or (shown + dropped)
    return {"truncated": float(dropped > 0), "dropped_share": dropped / whole if whole else 0.0}


# -- intervals -------------------------------------------------------------------------------
def wilson_interval(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion (better than the normal one near 0, 1 or small n)."""
    if n <= 0:
        return math.nan, math.nan
    p = successes / n
    denominator = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    low = 0.0 if successes <= 0 else max(0.0, center - half)  # exact ends: no rounding residue
    high = 1.0 if successes >= n else min(1.0, center + half)
    return low, high


def bootstrap_interval(
    values: Sequence[float] | np.ndarray, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (seeded: the same data give the same interval)."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(n_boot, data.size))].mean(axis=1)
    tail = (1 - level) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


# Aggregate name -> per-question column (means over questions).
_COST_MEANS = {
    "effective_context_tokens": "cost_effective_context_tokens",
    "input_tokens": "cost_input_tokens",
    "output_tokens": "cost_output_tokens",
    "calls": "cost_calls",
    "prefill_tokens_computed": "cost_prefill_tokens_computed",
    "aux_tokens": "cost_aux_tokens",
    "seconds_per_question": "cost_seconds",
    "prefill_seconds": "cost_prefill_seconds",
    "decode_seconds": "cost_decode_seconds",
    "flops": "cost_flops",
    "dollars": "cost_dollars",
}
_PER_QUESTION = {
    *("example_id", "em", "f1", "contains_answer", "abstained", "answerable", "abstention_correct"),
    *("evidence_recall", "dropped_tokens", "gold_survived"),
}


def summarize(scores: pd.DataFrame) -> dict[str, float]:
    """Aggregates of :func:`score` rows (names as in RESULTS.md). Metrics without data (no gold
    evidence, no unanswerable questions) are left out rather than NaN, which JSON cannot hold.
    Other numeric columns (e.g. a judge's verdicts merged in by the runner) are averaged too."""
    from ragkit.metric_info import METRICS, interval

    n = len(scores)
    out: dict[str, float] = {"n_questions": float(n)}
    if n == 0:
        return out
    for name in ("em", "contains_answer", "f1"):  # one interval method per metric type (metric_info)
        out[name] = float(scores[name].mean())
        out[f"{name}_ci_low"], out[f"{name}_ci_high"] = interval(name, scores[name].to_numpy())
    if "answerable" in scores and not scores["answerable"].astype(bool).all():
        out["abstention_accuracy"] = float(scores["abstention_correct"].mean())
    if "abstained" in scores:
        out["abstention_rate"] = float(scores["abstained"].astype(float).mean())
    for name in ("evidence_recall", "dropped_tokens", "gold_survived"):
        if name in scores and scores[name].notna().any():
            values = scores[name].astype(float).dropna().to_numpy()
            out[name] = float(values.mean())
            if name in METRICS:
                out[f"{name}_ci_low"], out[f"{name}_ci_high"] = interval(name, values)
    for name, column in _COST_MEANS.items():
        if column in scores:
            out[name] = float(scores[column].mean())
    for column in scores.columns:
        extra = column not in _PER_QUESTION and not column.startswith(("cost_", "meta_"))
        if extra and pd.api.types.is_numeric_dtype(scores[column]) and scores[column].notna().any():
            values = scores[column].astype(float).dropna()
            out[column] = float(values.mean())
            if column in METRICS:  # the metrics tables show get intervals, over the questions they apply to
                out[f"{column}_ci_low"], out[f"{column}_ci_high"] = interval(column, values.to_numpy())
    return out


def paired_difference(
    a: pd.DataFrame, b: pd.DataFrame, metric: str = "contains_answer", n_boot: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of ``a[metric] - b[metric]`` over the questions both answered (joined on example_id),
    with a 95% paired bootstrap interval. An interval excluding 0 supports "A differs from B"."""
    for name, frame in (("a", a), ("b", b)):
        if metric not in frame or "example_id" not in frame:
            raise ValueError(f"{name} needs the columns 'example_id' and {metric!r}")
    joined = a[["example_id", metric]].merge(
        b[["example_id", metric]], on="example_id", suffixes=("_a", "_b")
    )
    if joined.empty:
        raise ValueError("a and b share no example_id: compare configurations on the same questions")
    diffs = (joined[f"{metric}_a"].astype(float) - joined[f"{metric}_b"].astype(float)).to_numpy()
    low, high = bootstrap_interval(diffs, n_boot=n_boot, seed=seed)
    return float(diffs.mean()), low, high


def required_sample_size(p1: float, p2: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Questions per configuration to tell accuracies ``p1`` and ``p2`` apart (two-sided test of
    two independent proportions, Fleiss' formula without continuity correction). Comparing on
    the same questions (paired) usually needs fewer."""
    if p1 == p2:
        raise ValueError("p1 and p2 must differ")
    z_alpha = NormalDist().inv_cdf(1 - alpha / 2)
    z_power = NormalDist().inv_cdf(power)
    mean = (p1 + p2) / 2
    numerator = z_alpha * math.sqrt(2 * mean * (1 - mean)) + z_power * math.sqrt(
        p1 * (1 - p1) + p2 * (1 - p2)
    )
    return math.ceil(numerator**2 / (p1 - p2) ** 2)
