"""Answer metrics, per-question score rows and aggregates with intervals.

Official scorers, reimplemented from their published definitions (tests/test_metrics_conformance.py
checks them on hand-worked cases):

- ``em`` and ``f1`` follow the official SQuAD v1.1/v2.0 evaluation script: normalisation (lower
  case, drop ASCII punctuation, drop the articles a/an/the, collapse whitespace), F1 over
  normalised tokens with counts, the maximum over references. A reference that normalises to
  nothing is dropped; with none left the only right answer is an empty one (SQuAD v2's rule).
- ``em_squad_v2`` / ``f1_squad_v2`` (when the dataset has unanswerable questions): the official
  SQuAD v2 scores everywhere, so an unanswerable question is right only when the prediction is
  empty (normalises to nothing): the convention of the SQuAD v2 leaderboard.
- ``f1_hotpotqa``: the official HotpotQA F1 (hotpot_evaluate_v1): as SQuAD's, except that a
  prediction or reference that normalises to "yes", "no" or "noanswer" scores 0 unless both are
  equal, and an empty prediction scores 0.
- ``ruler_match_all`` / ``ruler_match_part`` (needles): RULER's string_match_all (the share of
  references found) and string_match_part (1 if any is found), case-insensitive substrings of the
  raw output. ragkit's stricter ``needle_recall`` / ``needle_exact`` match whole numbers.

ragkit's own measures, named as such:

- *contains-answer* (a reference occurs in the prediction as whole words, after a tokenisation
  that also reads curly quotes, guillemets, ellipses, possessives and hyphen compounds) is the
  accuracy to read for small models that answer in sentences.
- Unanswerable questions in ``em``, ``f1`` and ``contains_answer``: 1.0 when the model declined,
  detected by phrase patterns (:func:`is_abstention`, an approximation: a model that writes
  "unanswerable" is right here and wrong under the official SQuAD v2 rule, which only accepts an
  empty answer).

Intervals and paired tests are in :mod:`ragkit.stats` (re-exported here).
"""

from __future__ import annotations

import json
import math
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ragkit.stats import (  # noqa: F401  (re-exported: the metrics API before ragkit.stats)
    Z95,
    bootstrap_interval,
    paired_difference,
    required_paired_sample_size,
    required_sample_size,
    wilson_interval,
)
from ragkit.types import Evidence, Example, Prediction, Provenance

# Bumped whenever a change here (or in longform/judge scoring) changes a score: part of every
# configuration's scoring key, so `ragkit run` re-scores saved predictions scored by older code.
SCORING_VERSION = "2"

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def squad_v2_references(answers: Sequence[str]) -> list[str]:
    """The official SQuAD v2 gold list: references that normalise to something, else [""] (the
    only right answer is then an empty one)."""
    return [a for a in answers if normalize_answer(a)] or [""]


def exact_match(prediction: str, answers: Sequence[str]) -> float:
    """Official SQuAD exact match, the maximum over references (empty references: see above)."""
    norm = normalize_answer(prediction)
    return float(any(norm == normalize_answer(a) for a in squad_v2_references(answers)))


def _token_f1(pred: list[str], gold: list[str]) -> float:
    """F1 of token counts; 0 without overlap (an empty side included)."""
    same = sum((Counter(pred) & Counter(gold)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def _f1(prediction: str, answer: str) -> float:
    pred, gold = normalize_answer(prediction).split(), normalize_answer(answer).split()
    if not pred or not gold:  # SQuAD v2: an empty side scores 1 only when both are empty
        return float(pred == gold)
    return _token_f1(pred, gold)


def f1(prediction: str, answers: Sequence[str]) -> float:
    """Official SQuAD token F1, the maximum over references (no references: right only if empty)."""
    return max(_f1(prediction, a) for a in squad_v2_references(answers))


_HOTPOT_SPECIAL = ("yes", "no", "noanswer")


def _f1_hotpotqa(prediction: str, answer: str) -> float:
    pred, gold = normalize_answer(prediction), normalize_answer(answer)
    if (pred in _HOTPOT_SPECIAL or gold in _HOTPOT_SPECIAL) and pred != gold:
        return 0.0
    return _token_f1(pred.split(), gold.split())  # HotpotQA: empty-empty is 0 too


def f1_hotpotqa(prediction: str, answers: Sequence[str]) -> float:
    """Official HotpotQA answer F1 (yes/no/noanswer only by exact match), max over references."""
    return max((_f1_hotpotqa(prediction, a) for a in answers), default=0.0)


# -- contains-answer: ragkit's tokenisation ----------------------------------------------------
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u2032": "'", "`": "'"})
_POSSESSIVE = re.compile(r"(?<=\w)'s\b")


def _is_punctuation(ch: str) -> bool:
    return unicodedata.category(ch)[0] in "PS"  # all Unicode punctuation and symbols


def contains_forms(text: str) -> set[str]:
    """The word sequences ``text`` is read as by :func:`contains_answer`: NFKC (an ellipsis is
    "..."), curly apostrophes made straight, lower case, every Unicode punctuation mark or symbol
    (curly quotes, guillemets, dashes) either a space or nothing (so "New York-based" holds
    "new york" and "Spider-Man" matches "spiderman"), a possessive "'s" either dropped or kept,
    articles dropped."""
    text = unicodedata.normalize("NFKC", text).translate(_APOSTROPHES).lower()
    forms = set()
    for variant in {text, _POSSESSIVE.sub("", text)}:
        for joiner in (" ", ""):
            plain = "".join(joiner if _is_punctuation(ch) else ch for ch in variant)
            forms.add(" ".join(_ARTICLES.sub(" ", plain).split()))
    return forms


def contains_answer(prediction: str, answers: Sequence[str]) -> float:
    """1.0 when a reference occurs in the prediction as whole words (``contains_forms`` of both):
    "paris" is in "It is Paris.", "Bram Stoker" in "Bram Stoker's novel", but "par" is not in
    "Paris". References that normalise to nothing are dropped (SQuAD v2); with none left, only an
    empty prediction is right."""
    references = [forms for forms in map(contains_forms, answers) if any(forms)]
    predicted = [f" {form} " for form in contains_forms(prediction)]
    if not references:
        return float(not any(form.strip() for form in predicted))
    wanted = [f" {ref} " for forms in references for ref in forms if ref]
    return float(any(ref in form for ref in wanted for form in predicted))


# -- RULER's needle scorers --------------------------------------------------------------------
_CONTROL = re.compile(r"[\x00-\x1f]")


def _ruler_text(prediction: str) -> str:
    """RULER's post-processing of a prediction: control characters become newlines, then strip."""
    return _CONTROL.sub("\n", prediction.strip()).strip().lower()


def ruler_match_all(prediction: str, references: Sequence[str]) -> float:
    """RULER's string_match_all: the share of references that occur (case-insensitively, as
    substrings) in the prediction; 0.0 without references."""
    text = _ruler_text(prediction)
    return sum(r.lower() in text for r in references) / len(references) if references else 0.0


def ruler_match_part(prediction: str, references: Sequence[str]) -> float:
    """RULER's string_match_part: 1.0 when any reference occurs in the prediction (as above)."""
    text = _ruler_text(prediction)
    return float(any(r.lower() in text for r in references))


# -- abstention (ragkit's approximation) -------------------------------------------------------
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
# After a declining phrase, these turn it into an answer: "does not mention Paris, but Paris is the
# answer", "I don't know; however, it is Paris". A concessive "although" usually is not one.
ANSWER_AFTER_ABSTENTION = re.compile(
    r"\b(?:but|however|instead|nevertheless|nonetheless)\b|\bthe answer is\b|\banswer:", flags=re.IGNORECASE
)


def is_abstention(prediction: str) -> bool:
    """Whether an answer declines (phrase patterns; an approximation, see the module docstring):
    a declining phrase not followed by a contrast that goes on to answer."""
    text = prediction.replace("\u2019", "'")
    match = _ABSTENTION.search(text)
    return bool(match) and not ANSWER_AFTER_ABSTENTION.search(text, match.end())


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
        else:  # ragkit's refusal approximation (the official SQuAD v2 rule is em/f1_squad_v2)
            em = f1_ = contains = float(abstained)
        official = example.answers if example.answerable else []
        provenance = prediction.provenance
        row: dict[str, Any] = {
            "example_id": example.id,
            "em": em,
            "f1": f1_,
            "contains_answer": contains,
            "f1_hotpotqa": f1_hotpotqa(answer, example.answers) if example.answerable else math.nan,
            "em_squad_v2": exact_match(answer, official),
            "f1_squad_v2": f1(answer, official),
            "abstained": abstained,
            "answerable": example.answerable,
            "abstention_correct": float(abstained != example.answerable),
            "evidence_recall": _float(provenance.evidence_recall),
            "dropped_tokens": float(provenance.dropped_tokens),
            "gold_survived": _float(provenance.gold_survived),
        }
        if provenance.measures.get("retrieval_only"):  # no answer to grade: recall@k, hit@k, MRR
            nan = math.nan
            row.update(em=nan, f1=nan, contains_answer=nan, f1_hotpotqa=nan, em_squad_v2=nan)
            row.update(f1_squad_v2=nan, abstained=nan, abstention_correct=nan)
        row.update({f"cost_{k}": v for k, v in prediction.cost.to_dict().items()})
        row.update(truncation(provenance))
        row.update({f"meta_{k}": _scalar(v) for k, v in example.meta.items()})
        rows.append(row)
    if not rows:
        return pd.DataFrame(columns=["example_id", "em", "f1", "contains_answer"])
    frame = pd.DataFrame(rows)
    if frame["answerable"].all():  # the official SQuAD v2 scores equal em and f1 then
        frame = frame.drop(columns=["em_squad_v2", "f1_squad_v2"])
    return frame


def truncation(provenance: Provenance) -> dict[str, float]:
    """``truncated`` (1.0 when tokens of the question's context were cut to fit the window or
    budget) and ``dropped_share`` (the share of the context's tokens cut: of the full documents
    for full context, of the selected passages for RAG)."""
    dropped = float(provenance.dropped_tokens)
    shown = float(provenance.context_tokens or 0)
    whole = provenance.measures.get("full_context_tokens") or (shown + dropped)
    return {"truncated": float(dropped > 0), "dropped_share": dropped / whole if whole else 0.0}


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


# The per-question budget constraint (the paper's Eq. 1 asks every question to fit): percentiles
# and the maximum of effective context tokens, beside the mean.
TOKEN_PERCENTILES = (50, 90, 95)


def summarize(scores: pd.DataFrame, seed: int = 0) -> dict[str, float]:
    """Aggregates of :func:`score` rows (names as in RESULTS.md). Metrics without data (no gold
    evidence, no unanswerable questions) are left out rather than NaN, which JSON cannot hold.
    Other numeric columns (e.g. a judge's verdicts merged in by the runner) are averaged too."""
    from ragkit.metric_info import METRICS, interval

    n = len(scores)
    out: dict[str, float] = {"n_questions": float(n)}
    if n == 0:
        return out
    for name in ("em", "contains_answer", "f1"):  # one interval method per metric type (metric_info)
        if scores[name].isna().all():  # retrieval only: no answers graded
            continue
        out[name] = float(scores[name].mean())
        out[f"{name}_ci_low"], out[f"{name}_ci_high"] = interval(name, scores[name].to_numpy(), seed=seed)
    graded = "abstained" in scores and scores["abstained"].notna().any()
    if graded and "answerable" in scores and not scores["answerable"].astype(bool).all():
        out["abstention_accuracy"] = float(scores["abstention_correct"].mean())
    if graded:
        out["abstention_rate"] = float(scores["abstained"].astype(float).mean())
    for name in ("evidence_recall", "dropped_tokens", "gold_survived"):
        if name in scores and scores[name].notna().any():
            values = scores[name].astype(float).dropna().to_numpy()
            out[name] = float(values.mean())
            if name in METRICS:
                out[f"{name}_ci_low"], out[f"{name}_ci_high"] = interval(name, values, seed=seed)
    for name, column in _COST_MEANS.items():
        if column in scores:
            out[name] = float(scores[column].mean())
    if "cost_effective_context_tokens" in scores:
        tokens = scores["cost_effective_context_tokens"].astype(float).to_numpy()
        for q in TOKEN_PERCENTILES:
            out[f"effective_context_tokens_p{q}"] = float(np.percentile(tokens, q))
        out["effective_context_tokens_max"] = float(tokens.max())
    for column in scores.columns:
        extra = column not in _PER_QUESTION and not column.startswith(("cost_", "meta_"))
        if extra and pd.api.types.is_numeric_dtype(scores[column]) and scores[column].notna().any():
            values = scores[column].astype(float).dropna()
            out[column] = float(values.mean())
            if column in METRICS:  # the metrics tables show get intervals, over the questions they apply to
                out[f"{column}_ci_low"], out[f"{column}_ci_high"] = interval(
                    column, values.to_numpy(), seed=seed
                )
    return out
