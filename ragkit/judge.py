"""A judge model grades free-form answers against the reference: correct or incorrect.

The judge is any ragkit generator (a local transformers model, or any OpenAI-compatible server via
the ``openai`` generator), named in an experiment's ``evaluation.judge``. The rubric is fixed
(:data:`RUBRIC`, versioned by :data:`RUBRIC_VERSION`) so verdicts are comparable across runs. Each
verdict's prompt, the judge model and its raw reply are kept in the per-question scores
(``judge_prompt``, ``judge_model``, ``judge_raw``). Verdicts are cached like any greedy generation,
by (judge spec, decoding, prompt), so re-scoring finished predictions costs nothing.

A reply is parsed for its first verdict word; a reply with none (``judge_parsed`` = 0) counts as
incorrect, so an unparseable judge lowers the score rather than inflating it.

Control verdicts check the judge itself on every question, so a judge that says CORRECT to
anything is caught rather than reported as 100% accuracy (a 135M model does exactly that):
``judge_accepts_reference`` is 1.0 when it accepts the reference answer itself (for an unanswerable
question: a statement that the document does not say), ``judge_rejects_mismatch`` is 1.0 when it
rejects another question's reference. Controls do not depend on the predictions, so with the cache
they cost two verdicts per question once per judge, not per configuration.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import pandas as pd

from ragkit.cache import Cache, get_cache
from ragkit.generators.base import GenerationRequest, Generator, Message
from ragkit.types import Example, Prediction, stable_hash

RUBRIC_VERSION = "1"
JUDGE_SYSTEM = "You are a strict grader of answers to questions about documents."
RUBRIC = """\
Grade the candidate answer against the reference answer.

Question: {question}
Reference answer: {reference}
Candidate answer: {candidate}

Rubric:
- CORRECT if the candidate states the key facts of the reference: names, numbers, dates and
  conclusions must agree; wording may differ; extra detail is fine if it does not contradict it.
- INCORRECT if the candidate contradicts the reference, misses its key fact, is too vague to
  check, or declines to answer when the reference gives an answer.
- If the reference says the question cannot be answered from the document, the candidate is
  CORRECT only if it also says the information is not given, and INCORRECT if it answers anyway.

Reply with one word, CORRECT or INCORRECT.
Verdict:"""
UNANSWERABLE_REFERENCE = "The question cannot be answered from the document."
NOT_GIVEN_CANDIDATE = "The document does not give this information."
CONTROL_MINIMUM = 0.8  # control accuracy below which report and run warn that verdicts mean little
MAX_NEW_TOKENS = 8  # one verdict word; a chatty judge is still parsed from its first words
BATCH = 32

# Checked in this order at each position, so "INCORRECT" is not read as "CORRECT".
_VERDICT = re.compile(
    r"\b(incorrect|not\s+correct|wrong|correct)\b",
    flags=re.IGNORECASE,
)
_NEGATIVE = {"incorrect", "not correct", "wrong"}


def parse_verdict(reply: str) -> bool | None:
    """True for CORRECT, False for INCORRECT, None when the reply holds no verdict word. The
    first verdict word wins ("Correct. The reference is wrong about..." is correct)."""
    match = _VERDICT.search(reply)
    if match is None:
        return None
    return " ".join(match.group(1).lower().split()) not in _NEGATIVE


def references_text(example: Example) -> str:
    answers = [a for a in example.answers if a.strip()]
    if not example.answerable and not answers:
        return UNANSWERABLE_REFERENCE
    if len(answers) == 1:
        return answers[0]
    return " OR ".join(f'"{a}"' for a in answers) if answers else UNANSWERABLE_REFERENCE


def judge_messages(example: Example, candidate: str) -> list[Message]:
    prompt = RUBRIC.format(
        question=example.question.strip(),
        reference=references_text(example).strip(),
        candidate=(candidate or "(no answer)").strip(),
    )
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": prompt}]


def judge_model_name(generator: Generator) -> str:
    spec = generator.spec()
    label = spec.get("model") or spec.get("type") or type(generator).__name__
    return f"{spec.get('type', '?')}:{label}:{stable_hash(spec, length=8)}"


def judge(
    examples: Sequence[Example],
    predictions: Sequence[Prediction],
    generator: Generator,
    *,
    cache: Cache | None = None,
) -> pd.DataFrame:
    """One row per example: ``example_id``, ``judge_correct`` (1.0/0.0), ``judge_parsed``,
    ``judge_raw``, ``judge_model``, ``judge_prompt``. ``generator`` is cached through ``cache``
    (the default cache folder's when None) unless the runner already wrapped it."""
    from ragkit.cached import CachedGenerator

    if not isinstance(generator, CachedGenerator):
        generator = CachedGenerator(generator, cache or get_cache())
    by_id = {p.example_id: p for p in predictions}
    missing = [e.id for e in examples if e.id not in by_id]
    if missing:
        raise ValueError(f"judge: no prediction for {len(missing)} example(s), e.g. {missing[:3]}")
    # Summaries are graded insight by insight (ragkit.summhay), not as one answer to a reference.
    examples = [e for e in examples if e.meta.get("answer_format") != "summary"]
    if not examples:
        return pd.DataFrame(columns=COLUMNS)
    messages = [judge_messages(e, by_id[e.id].answer) for e in examples]
    accept = [judge_messages(e, _reference_candidate(e)) for e in examples]
    mismatched = [_mismatch(examples, i) for i in range(len(examples))]
    reject = [judge_messages(e, m) for e, m in zip(examples, mismatched, strict=True) if m is not None]
    replies = verdicts(generator, messages + accept + reject)
    answers, accepted = replies[: len(examples)], replies[len(examples) : 2 * len(examples)]
    rejected = iter(replies[2 * len(examples) :])
    model = judge_model_name(generator)
    rows: list[dict[str, Any]] = []
    for example, message, reply, own, other in zip(
        examples, messages, answers, accepted, mismatched, strict=True
    ):
        verdict = parse_verdict(reply)
        rows.append(
            {
                "example_id": example.id,
                "judge_correct": float(bool(verdict)),
                "judge_parsed": float(verdict is not None),
                "judge_accepts_reference": float(parse_verdict(own) is True),
                "judge_rejects_mismatch": (
                    float("nan") if other is None else float(parse_verdict(next(rejected)) is False)
                ),
                "judge_raw": reply,
                "judge_model": model,
                "judge_prompt": message[-1]["content"],
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)


COLUMNS = [
    "example_id",
    "judge_correct",
    "judge_parsed",
    "judge_accepts_reference",
    "judge_rejects_mismatch",
    "judge_raw",
    "judge_model",
    "judge_prompt",
]


def verdicts(generator: Generator, messages: Sequence[list[Message]]) -> list[str]:
    """The replies to ``messages``, in batches of :data:`BATCH`, a few tokens each (one verdict)."""
    replies: list[str] = []
    for start in range(0, len(messages), BATCH):
        requests = [
            GenerationRequest(m, max_new_tokens=MAX_NEW_TOKENS) for m in messages[start : start + BATCH]
        ]
        replies.extend(g.text for g in generator.generate(requests))
    return replies


def _reference_candidate(example: Example) -> str:
    """What a right answer looks like: the first reference, or "not given" for an unanswerable one."""
    answers = [a for a in example.answers if a.strip()]
    return answers[0] if example.answerable and answers else NOT_GIVEN_CANDIDATE


def _mismatch(examples: Sequence[Example], i: int) -> str | None:
    """A wrong answer for question ``i``: the reference of the next answerable question (cyclic)
    whose reference differs; None when no other question has one."""
    own = {a.strip().lower() for a in examples[i].answers}
    for step in range(1, len(examples)):
        other = examples[(i + step) % len(examples)]
        answers = [a for a in other.answers if a.strip()]
        if other.answerable and answers and answers[0].strip().lower() not in own:
            return answers[0]
    return None


def control_warning(summary: Any) -> str | None:
    """A warning when the control verdicts (means in ``summary``: a dict or a results row) show
    the judge does not separate right answers from wrong ones; None when it does or was not run."""
    accepts = summary.get("judge_accepts_reference")
    rejects = summary.get("judge_rejects_mismatch")
    weak = []
    if accepts is not None and not pd.isna(accepts) and accepts < CONTROL_MINIMUM:
        weak.append(f"accepted only {accepts:.0%} of the reference answers themselves")
    if rejects is not None and not pd.isna(rejects) and rejects < CONTROL_MINIMUM:
        weak.append(f"rejected only {rejects:.0%} of other questions' references")
    if not weak:
        return None
    return (
        f"the judge {' and '.join(weak)} (control verdicts; {CONTROL_MINIMUM:.0%} expected):"
        " its verdicts do not tell right answers from wrong ones. Use a stronger judge model."
    )
