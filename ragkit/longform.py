"""Scores for answers that exact match cannot grade: free-form sentences and needle values.

Free-form answers (LaRA's references are whole sentences) are best graded by a judge model
(:mod:`ragkit.judge`). Without one, two approximations, named as such in every column:

- ``answer_recall_approx``: the share of the reference's content words (SQuAD normalisation,
  English stop words removed) that the prediction contains; the maximum over references. It
  rewards a right fact stated in other words only when the words overlap, and it cannot see a
  contradiction ("increased" vs "decreased" share most words), so read it as a trend, not a grade.
  Only for answerable questions (NaN otherwise).
- ``refusal_approx``: for unanswerable questions (LaRA's "hallucination" type), 1.0 when the
  prediction declines or says the document does not give the information, detected with phrase
  patterns (:data:`REFUSAL_PATTERNS` on top of :data:`ragkit.metrics.ABSTENTION_PATTERNS`).
  NaN for answerable questions.
- ``longform_approx``: one number per question: ``answer_recall_approx`` when answerable,
  ``refusal_approx`` when not.

Needles (:mod:`ragkit.data.needle`) get RULER's own scores, ``ruler_match_all`` (RULER's
string_match_all: the share of expected values found as case-insensitive substrings of the raw
output) and ``ruler_match_part`` (string_match_part: 1.0 when any is), and ragkit's stricter ones:
``needle_recall`` is the share of the expected values that occur in the raw output as whole
numbers (RULER also credits "1234567" inside "91234567"), ``needle_exact`` is 1.0 when all do.

Benchmarks with a metric of their own (LongBench, L-Eval, RULER, ...) add ``task_score`` through
:mod:`ragkit.task_metrics`.

The runner merges :func:`score_frame` into the per-question scores (on ``example_id``) the same way
it merges the judge's verdicts; examples of other datasets get no columns from here.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

import pandas as pd

from ragkit.metrics import is_abstention, normalize_answer, ruler_match_all, ruler_match_part
from ragkit.types import Example, Prediction

# Ways a free-form answer declines that ragkit.metrics' short-answer patterns do not cover.
REFUSAL_PATTERNS: tuple[str, ...] = (
    r"\bnot (?:specified|stated|mentioned|provided|given|disclosed|available|included|reported)\b",
    r"\b(?:does|do|did) not (?:disclose|include|report|give|state|indicate)\b",
    r"\bno (?:specific |such |explicit )?(?:data|details|mention|figures?|projections?)\b",
    r"\b(?:cannot|can ?not|can't|unable to) (?:be )?(?:determined?|found|find|identif(?:y|ied))\b",
    r"\bunknown\b",
    r"\bnone (?:is|are|was|were) (?:given|provided|mentioned)\b",
)
_REFUSAL = re.compile("|".join(REFUSAL_PATTERNS), flags=re.IGNORECASE)


@functools.cache
def stop_words() -> frozenset[str]:
    """scikit-learn's English stop-word list (318 words; a ragkit dependency already), normalised
    the way answers are, so "don't" matches its normalised form "dont"."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(normalize_answer(w) for w in ENGLISH_STOP_WORDS) - {""}


def content_words(text: str) -> list[str]:
    """Normalised tokens of ``text`` without stop words, in order, duplicates removed."""
    stops = stop_words()
    return list(dict.fromkeys(w for w in normalize_answer(text).split() if w not in stops))


def answer_recall(prediction: str, references: Sequence[str]) -> float:
    """Share of a reference's content words found in the prediction; the best reference counts.
    A reference made only of stop words falls back to all its words; 0.0 without references."""
    predicted = set(normalize_answer(prediction).split())
    best = 0.0
    for reference in references:
        wanted = content_words(reference) or normalize_answer(reference).split()
        if wanted:
            best = max(best, sum(w in predicted for w in wanted) / len(wanted))
    return best


def refusal(prediction: str) -> bool:
    """Whether a free-form answer declines or says the information is not given (approximate)."""
    text = prediction.replace("\u2019", "'")
    return is_abstention(text) or bool(_REFUSAL.search(text))


_NUMBER = re.compile(r"\d+")


def needle_recall(output: str, values: Sequence[str]) -> float:
    """Share of ``values`` present in ``output`` as whole numbers (``1234567`` is not found in
    ``91234567``); digits split by thousands separators ("1,234,567") are joined first."""
    if not values:
        return 0.0
    joined = re.sub(r"(?<=\d)[,\u202f](?=\d{3}\b)", "", output)
    found = set(_NUMBER.findall(joined))
    return sum(str(v) in found for v in values) / len(values)


def is_free_form(example: Example) -> bool:
    return example.meta.get("answer_format") == "free-form"


def score_example(example: Example, prediction: Prediction) -> dict[str, Any]:
    """The extra scores of one example (empty for datasets graded by EM/F1 alone): the
    benchmark's own metric when its loader named one (:mod:`ragkit.task_metrics`), exact citation
    scores when the answer was asked for citations (:mod:`ragkit.citations`), Summary-of-a-Haystack
    scores (:mod:`ragkit.summhay`), needle scores, and the free-form approximations."""
    from ragkit import summhay
    from ragkit.citation_judge import citation_record
    from ragkit.citations import exact_scores
    from ragkit.task_metrics import raw_output, score_task

    out: dict[str, Any] = score_task(example, prediction)
    record = citation_record(prediction)  # the strategy ran with citations: true
    if record is not None:
        out.update(exact_scores(raw_output(prediction), record, len(example.evidence)))
    if summhay.is_summary_task(example):
        out.update(summhay.score_example(example, prediction))
    if example.meta.get("task") == "needle":
        # The raw output: the cleaned answer keeps only the first line, and a model may list
        # the values of a multi-value needle one per line.
        raw = prediction.provenance.raw_answer or prediction.answer or ""
        recall = needle_recall(raw, example.answers)
        out.update(
            needle_recall=recall,
            needle_exact=float(recall == 1.0),
            ruler_match_all=ruler_match_all(raw, example.answers),
            ruler_match_part=ruler_match_part(raw, example.answers),
        )
    elif is_free_form(example):
        answer = prediction.answer or ""
        nan = float("nan")
        if example.answerable:
            recall = answer_recall(answer, example.answers)
            out.update(answer_recall_approx=recall, refusal_approx=nan, longform_approx=recall)
        else:
            refused = float(refusal(answer))
            out.update(answer_recall_approx=nan, refusal_approx=refused, longform_approx=refused)
    return out


def score_frame(examples: Sequence[Example], predictions: Sequence[Prediction]) -> pd.DataFrame:
    """``example_id`` plus the columns of :func:`score_example`, one row per example (columns
    only for the kinds of examples present). Merge it into the scores on ``example_id``."""
    by_id = {p.example_id: p for p in predictions}
    rows: list[dict[str, Any]] = []
    for example in examples:
        if example.id in by_id:
            rows.append({"example_id": example.id, **score_example(example, by_id[example.id])})
    return pd.DataFrame(rows, columns=None if rows else ["example_id"])
