"""Model-judged citation quality, in the sense of ALCE (Gao et al., 2023, "Enabling Large Language
Models to Generate Text with Citations") and L-CiteEval (Tang et al., 2024), with the experiment's
judge generator in place of their NLI model.

For each statement of an answer (:func:`ragkit.citations.statements`, citations removed), with at
most :data:`AT_MOST` of its citations (L-CiteEval's default):

- recall: 1 when the judge finds the statement supported by its cited passages together; 0 when
  it cites nothing or a number that points to no passage shown. ``judged_citation_recall`` is the
  mean over the answer's statements.
- precision: a citation of a supported statement counts when its passage supports the statement on
  its own, or when the other citations without it do not (it is needed); a statement's single
  citation counts when the statement is supported. ``judged_citation_precision`` is the share of
  the answer's citations that count (0 without citations). ``judged_citation_f1`` per answer.

Control verdicts, as :mod:`ragkit.judge` has them, check the judge on every answer that cites:
``support_accepts_quote`` is 1 when it finds a sentence copied from a cited passage supported by
that passage, ``support_rejects_other`` is 1 when it finds that sentence unsupported by another
question's cited passage. A judge below :data:`ragkit.judge.CONTROL_MINIMUM` on either gets a
warning: its support verdicts mean little. Verdicts are cached like every greedy generation.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import pandas as pd

from ragkit.cache import Cache, get_cache
from ragkit.citations import statements
from ragkit.data.sentences import split_sentences
from ragkit.generators.base import Generator, Message
from ragkit.judge import CONTROL_MINIMUM, judge_model_name, verdicts
from ragkit.types import Example, Prediction

SUPPORT_RUBRIC_VERSION = "1"
AT_MOST = 3
SYSTEM = "You are a strict fact checker. You decide whether passages support a claim."
PROMPT = """\
Passages:
{passages}

Claim: {claim}

Is the claim fully supported by the passages above? Reply with one word, SUPPORTED or UNSUPPORTED.
Verdict:"""
_VERDICT = re.compile(r"\b(unsupported|not\s+supported|supported|yes|no)\b", flags=re.IGNORECASE)
COLUMNS = [
    "judged_citation_recall",
    "judged_citation_precision",
    "judged_citation_f1",
    "support_accepts_quote",
    "support_rejects_other",
]


def parse_support(reply: str) -> bool:
    """True for SUPPORTED (or yes); anything else, an unparseable reply included, is False: an
    unreadable judge lowers the scores rather than inflating them."""
    match = _VERDICT.search(reply)
    return bool(match) and " ".join(match.group(1).lower().split()) in ("supported", "yes")


def messages(passages: Sequence[str], claim: str) -> list[Message]:
    body = "\n\n".join(f"[{i + 1}] {' '.join(p.split())}" for i, p in enumerate(passages))
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": PROMPT.format(passages=body, claim=claim.strip())},
    ]


def citation_record(prediction: Prediction) -> dict[str, Any] | None:
    """The ``citations`` record a strategy with ``citations: true`` left in the provenance."""
    provenance = prediction.provenance
    details = provenance if isinstance(provenance, dict) else getattr(provenance, "details", {})
    record = details.get("citations") if isinstance(details, dict) else None
    return record if isinstance(record, dict) else None


def raw_answer(prediction: Prediction) -> str:
    from ragkit.task_metrics import raw_output

    return raw_output(prediction)


class _Asks:
    """Judge requests collected across answers, asked in one batch per round."""

    def __init__(self, generator: Generator) -> None:
        self.generator = generator
        self.pending: list[list[Message]] = []

    def add(self, passages: Sequence[str], claim: str) -> int:
        self.pending.append(messages(passages, claim))
        return len(self.pending) - 1

    def run(self) -> list[bool]:
        replies = verdicts(self.generator, self.pending)
        self.pending = []
        return [parse_support(r) for r in replies]


def judge_citations(
    examples: Sequence[Example],
    predictions: Sequence[Prediction],
    generator: Generator,
    *,
    cache: Cache | None = None,
) -> pd.DataFrame:
    """``example_id`` and :data:`COLUMNS` for every answer with a citation record (none: empty)."""
    from ragkit.cached import CachedGenerator

    if not isinstance(generator, CachedGenerator):
        generator = CachedGenerator(generator, cache or get_cache())
    by_id = {p.example_id: p for p in predictions}
    items = []  # (example id, texts by number, statements)
    for example in examples:
        prediction = by_id.get(example.id)
        record = citation_record(prediction) if prediction else None
        if record is None:
            continue
        n = len(record.get("passages") or [])
        items.append((example.id, dict(record.get("texts") or {}), statements(raw_answer(prediction), n), n))
    if not items:
        return pd.DataFrame(columns=["example_id", *COLUMNS])
    asks = _Asks(generator)
    # Round 1: is each statement supported by its citations together?
    joint: list[list[int | None]] = []
    for _, texts, stated, n in items:
        row = []
        for s in stated:
            numbers = s.numbers[:AT_MOST]
            ok = numbers and all(1 <= x <= n and str(x) in texts for x in numbers)
            row.append(asks.add([texts[str(x)] for x in numbers], s.text) if ok else None)
        joint.append(row)
    supported = asks.run()
    # Round 2: for supported statements citing several passages, does each one alone support it?
    alone: dict[tuple[int, int, int], int] = {}
    for i, (_, texts, stated, _) in enumerate(items):
        for j, s in enumerate(stated):
            if joint[i][j] is not None and supported[joint[i][j]] and len(s.numbers[:AT_MOST]) > 1:
                for x in s.numbers[:AT_MOST]:
                    alone[(i, j, x)] = asks.add([texts[str(x)]], s.text)
    alone_ok = asks.run() if alone else []
    # Round 3: a citation that does not support alone is needed if the others without it fail.
    without: dict[tuple[int, int, int], int] = {}
    for (i, j, x), k in alone.items():
        if not alone_ok[k]:
            _, texts, stated, _ = items[i]
            others = [y for y in stated[j].numbers[:AT_MOST] if y != x]
            without[(i, j, x)] = asks.add([texts[str(y)] for y in others], stated[j].text)
    without_ok = asks.run() if without else []
    controls = _controls(items, asks)
    rows = []
    for i, (example_id, _, stated, _) in enumerate(items):
        recall = precision = 0.0
        citations = 0
        for j, s in enumerate(stated):
            ok = joint[i][j] is not None and supported[joint[i][j]]
            recall += ok
            numbers = s.numbers[:AT_MOST]
            citations += len(numbers)
            if ok and len(numbers) > 1:
                for x in numbers:
                    needed = alone_ok[alone[(i, j, x)]] or not without_ok[without[(i, j, x)]]
                    precision += needed
            else:
                precision += ok
        r = recall / len(stated) if stated else 0.0
        p = precision / citations if citations else 0.0
        rows.append(
            {
                "example_id": example_id,
                "judged_citation_recall": r,
                "judged_citation_precision": p,
                "judged_citation_f1": 2 * p * r / (p + r) if p + r else 0.0,
                **controls.get(
                    i, {"support_accepts_quote": float("nan"), "support_rejects_other": float("nan")}
                ),
                "support_judge_model": judge_model_name(generator),
            }
        )
    return pd.DataFrame(rows)


def _quote(text: str) -> str | None:
    """A sentence of the passage long enough to be a claim (four words or more)."""
    return next((s for s in split_sentences(text) if len(s.split()) >= 4), None)


def _controls(items: list[tuple[str, dict[str, str], Any, int]], asks: _Asks) -> dict[int, dict[str, float]]:
    """Control verdicts per answer that cites: a copied sentence against its own passage (should
    be supported) and against another answer's cited passage (should not)."""
    cited = [(i, next(iter(texts.values()))) for i, (_, texts, _, _) in enumerate(items) if texts]
    plans = []
    for position, (i, passage) in enumerate(cited):
        quote = _quote(passage)
        if quote is None:
            continue
        other = next(
            (
                p
                for step in range(1, len(cited))
                if quote not in (p := cited[(position + step) % len(cited)][1])
            ),
            None,
        )
        plans.append((i, asks.add([passage], quote), asks.add([other], quote) if other else None))
    results = asks.run() if plans else []
    return {
        i: {
            "support_accepts_quote": float(results[accept]),
            "support_rejects_other": float("nan") if reject is None else float(not results[reject]),
        }
        for i, accept, reject in plans
    }


def control_warning(summary: Any) -> str | None:
    """A warning when the support controls (means in ``summary``) show the judge does not tell
    supported claims from unsupported ones; None when it does or was not run."""
    weak = []
    for column, what in (
        ("support_accepts_quote", "found only {:.0%} of sentences copied from a passage supported by it"),
        ("support_rejects_other", "rejected only {:.0%} of those sentences against other passages"),
    ):
        value = summary.get(column)
        if value is not None and not pd.isna(value) and value < CONTROL_MINIMUM:
            weak.append(what.format(value))
    if not weak:
        return None
    return (
        f"the citation judge {' and '.join(weak)} (control verdicts; {CONTROL_MINIMUM:.0%} expected):"
        " its judged citation scores mean little. Use a stronger judge model."
    )
