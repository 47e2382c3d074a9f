"""Scores of the Summary-of-a-Haystack task (:mod:`ragkit.data.summary_haystack`), as SummHay defines
them (Laban et al., 2024; its ``utils_eval.py``), per question and averaged over its insights:

- coverage: 1 for an insight fully covered by a bullet of the summary, 0.5 partially, 0 not;
- citation: for a covered insight, the F1 of the documents its bullet cites against the documents
  known to hold the insight (precision and recall too); averaged over covered insights;
- joint: coverage x citation F1, averaged over all insights (uncovered ones count 0).

Coverage is decided two ways. With a judge (``evaluation.judge``), SummHay's way: the judge reads
the numbered bullets and one insight and answers FULL_COVERAGE, PARTIAL_COVERAGE or NO_COVERAGE and
the bullet (:func:`judge_summaries`; columns ``summhay_coverage``, ``summhay_citation``,
``summhay_joint``), checked by control verdicts (the insight itself among the bullets must count as
covered; only other organisations' insights must not). Always, a lexical approximation (columns
ending ``_approx``): a bullet fully covers an insight when it holds the insight's value words (its
``key``: "1931", "Lisbon") and at least half its content words, partially when it holds one of the
two. The approximation misses paraphrases of numbers and cannot see a wrong organisation named
with the right value: read it as a trend.

Citation numbers are mapped to documents through the passages the strategy showed (its
``citations`` record), so RAG's renumbered top-k and full context are scored alike.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import pandas as pd

from ragkit.cache import Cache, get_cache
from ragkit.citation_judge import citation_record, raw_answer
from ragkit.citations import Statement, statements
from ragkit.generators.base import GenerationRequest, Generator, Message
from ragkit.judge import CONTROL_MINIMUM
from ragkit.longform import answer_recall, content_words
from ragkit.metrics import normalize_answer
from ragkit.types import Example, Prediction

PARTIAL = 0.5
JUDGE_SYSTEM = "You compare a summary's bullet points with a reference insight."
JUDGE_PROMPT = """\
Bullet points:
{bullets}

Reference insight: {insight}

Is the reference insight covered by one of the bullet points? Reply FULL_COVERAGE, PARTIAL_COVERAGE
or NO_COVERAGE, followed by the number of the bullet that covers it (for example: FULL_COVERAGE 2).
Verdict:"""
_COVERAGE = re.compile(r"\b(FULL|PARTIAL|NO)[ _]?COVERAGE\b\D{0,20}(\d+)?", flags=re.IGNORECASE)
MAX_NEW_TOKENS = 16


def is_summary_task(example: Example) -> bool:
    return example.meta.get("task") == "summary-haystack"


def insights(example: Example) -> list[dict[str, Any]]:
    return json.loads(example.meta["insights"])


def bullets(prediction: Prediction) -> tuple[list[Statement], list[list[str]]]:
    """The summary's statements and, per statement, the documents it cites (through the passages
    the strategy numbered; none without a citation record)."""
    record = citation_record(prediction) or {}
    passages = record.get("passages") or []
    stated = statements(raw_answer(prediction), len(passages))
    docs = [[passages[n - 1][1] for n in s.numbers if 1 <= n <= len(passages)] for s in stated]
    return stated, docs


def lexical_coverage(insight: dict[str, Any], bullet: str, topic: str = "") -> float:
    """1 when ``bullet`` holds the insight's value words and at least half its other content
    words (the organisation's name left out: every insight about it shares those), 0.5 for one of
    the two, else 0."""
    words = set(normalize_answer(bullet).split())
    has_key = all(set(normalize_answer(k).split()) <= words for k in insight["key"])
    named = set(content_words(topic))
    wanted = [w for w in content_words(insight["text"]) if w not in named]
    enough = bool(wanted) and sum(w in words for w in wanted) / len(wanted) >= 0.5
    return 1.0 if has_key and enough else PARTIAL if has_key or enough else 0.0


def _citation(cited: Sequence[str], gold: Sequence[str]) -> tuple[float, float, float]:
    cited_set, gold_set = set(cited), set(gold)
    hit = len(cited_set & gold_set)
    p = hit / len(cited_set) if cited_set else 0.0
    r = hit / len(gold_set) if gold_set else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def aggregate(
    facts: list[dict[str, Any]], matches: list[tuple[float, int | None]], docs: list[list[str]], suffix: str
) -> dict[str, float]:
    """Per-question scores from each insight's (coverage, matched bullet index)."""
    coverage, joint, f1s, ps, rs = [], [], [], [], []
    for fact, (covered, bullet) in zip(facts, matches, strict=True):
        coverage.append(covered)
        f1 = 0.0
        if covered and bullet is not None and 0 <= bullet < len(docs):
            p, r, f1 = _citation(docs[bullet], fact["docs"])
            ps.append(p)
            rs.append(r)
            f1s.append(f1)
        elif covered:  # covered by a bullet the judge named out of range: no citations to score
            ps.append(0.0)
            rs.append(0.0)
            f1s.append(0.0)
        joint.append(covered * f1)
    nan = float("nan")

    def mean(values: list[float]) -> float:
        return sum(values) / len(values) if values else nan

    return {
        f"summhay_coverage{suffix}": mean(coverage),
        f"summhay_citation{suffix}": mean(f1s),
        f"summhay_citation_precision{suffix}": mean(ps),
        f"summhay_citation_recall{suffix}": mean(rs),
        f"summhay_joint{suffix}": mean(joint),
    }


def score_example(example: Example, prediction: Prediction) -> dict[str, float]:
    """The lexical (``_approx``) SummHay scores of one summary."""
    stated, docs = bullets(prediction)
    facts = insights(example)
    topic = str(example.meta.get("topic", ""))
    matches = []
    for fact in facts:
        best = max(
            (
                (lexical_coverage(fact, s.text, topic), answer_recall(s.text, [fact["text"]]), b)
                for b, s in enumerate(stated)
            ),
            default=(0.0, 0.0, None),
        )
        matches.append((best[0], best[2] if best[0] else None))
    return aggregate(facts, matches, docs, "_approx")


# -- judged coverage ---------------------------------------------------------------------------------
def parse_coverage(reply: str) -> tuple[float, int | None]:
    """(coverage, 0-based bullet) from a verdict; unparseable counts as not covered."""
    match = _COVERAGE.search(reply)
    if match is None:
        return 0.0, None
    level = match.group(1).upper()
    covered = 1.0 if level == "FULL" else PARTIAL if level == "PARTIAL" else 0.0
    bullet = int(match.group(2)) - 1 if covered and match.group(2) else None
    return covered, bullet


def _messages(texts: Sequence[str], insight: str) -> list[Message]:
    listed = "\n".join(f"{i + 1}. {t}" for i, t in enumerate(texts)) or "(no bullet points)"
    prompt = JUDGE_PROMPT.format(bullets=listed, insight=insight)
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": prompt}]


def judge_summaries(
    examples: Sequence[Example],
    predictions: Sequence[Prediction],
    generator: Generator,
    *,
    cache: Cache | None = None,
) -> pd.DataFrame:
    """Judged SummHay scores and control verdicts for every summary-haystack example."""
    from ragkit.cached import CachedGenerator

    if not isinstance(generator, CachedGenerator):
        generator = CachedGenerator(generator, cache or get_cache())
    by_id = {p.example_id: p for p in predictions}
    chosen = [e for e in examples if is_summary_task(e) and e.id in by_id]
    if not chosen:
        return pd.DataFrame(columns=["example_id"])
    requests, plan = [], []
    for example in chosen:
        stated, docs = bullets(by_id[example.id])
        facts = insights(example)
        first = len(requests)
        requests += [_messages([s.text for s in stated], f["text"]) for f in facts]
        # controls: the first insight among filler bullets (covered), and other topics' facts (not)
        requests.append(_messages(["The weather was mild.", facts[0]["text"]], facts[0]["text"]))
        requests.append(_messages(_distractors(example, chosen), facts[0]["text"]))
        plan.append((example, facts, docs, first))
    replies = []
    for start in range(0, len(requests), 16):
        batch = [GenerationRequest(m, max_new_tokens=MAX_NEW_TOKENS) for m in requests[start : start + 16]]
        replies += [g.text for g in generator.generate(batch)]
    rows = []
    for example, facts, docs, first in plan:
        matches = [parse_coverage(r) for r in replies[first : first + len(facts)]]
        accept = parse_coverage(replies[first + len(facts)])
        reject = parse_coverage(replies[first + len(facts) + 1])
        rows.append(
            {
                "example_id": example.id,
                **aggregate(facts, matches, docs, ""),
                "summhay_judge_accepts_insight": float(accept[0] > 0),
                "summhay_judge_rejects_other": float(reject[0] == 0),
            }
        )
    return pd.DataFrame(rows)


def _distractors(example: Example, chosen: Sequence[Example]) -> list[str]:
    """Insights about other organisations: the same haystack's other questions', else another's."""
    own = {f["text"] for f in insights(example)}
    for other in chosen:
        texts = [f["text"] for f in insights(other) if f["text"] not in own]
        if texts and other.meta.get("topic") != example.meta.get("topic"):
            return texts
    return ["The sky is blue.", "Bread is made of flour."]


def control_warning(summary: Any) -> str | None:
    weak = [
        f"{what} {summary.get(column):.0%}"
        for column, what in (
            ("summhay_judge_accepts_insight", "found an insight listed among the bullets covered only"),
            ("summhay_judge_rejects_other", "found other topics' insights not covering it only"),
        )
        if summary.get(column) is not None
        and not pd.isna(summary.get(column))
        and summary.get(column) < CONTROL_MINIMUM
    ]
    if not weak:
        return None
    return (
        f"the coverage judge {' and '.join(weak)} of the time (control verdicts; {CONTROL_MINIMUM:.0%}"
        " expected): read the lexical _approx scores instead."
    )
