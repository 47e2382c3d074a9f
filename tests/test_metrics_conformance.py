"""Conformance of ragkit's scorers with the official definitions, on hand-worked cases.

Expected values are worked out by hand from the published definitions (not by running the code):
- SQuAD v1.1/v2.0 official evaluation: lower case, drop ASCII punctuation (string.punctuation:
  curly quotes, guillemets, dashes and the ellipsis character are NOT in it), drop a/an/the,
  collapse whitespace; EM = normalised equality; F1 over token counts; an empty side scores 1 only
  when both are empty; references that normalise to nothing are dropped and with none left the
  gold list is [""] (unanswerable questions: only an empty prediction is right); max over references.
- HotpotQA official evaluation (hotpot_evaluate_v1): as SQuAD, but if the normalised prediction or
  reference is "yes", "no" or "noanswer" and they differ, F1 is 0; no overlap (empty included) is 0.
- RULER: string_match_all = share of references that are case-insensitive substrings of the
  prediction (control characters replaced by newlines first); string_match_part = 1 if any is.
- contains-answer (ragkit's): a reference is a whole-word subsequence of the prediction after
  reading curly quotes, guillemets, ellipses and dashes as punctuation, possessives and hyphens.
"""

from __future__ import annotations

import pytest

from ragkit.metrics import (
    contains_answer,
    exact_match,
    f1,
    f1_hotpotqa,
    is_abstention,
    ruler_match_all,
    ruler_match_part,
)

# (prediction, references, EM, F1 (SQuAD), F1 (HotpotQA), contains-answer); [] = unanswerable
LITERAL = [
    ("Paris", ["Paris"], 1, 1, 1, 1),
    ("paris.", ["Paris"], 1, 1, 1, 1),
    ("The Paris", ["Paris"], 1, 1, 1, 1),
    ("It is Paris", ["Paris"], 0, 1 / 2, 1 / 2, 1),  # P 1/3, R 1
    ("Paris, France", ["Paris"], 0, 2 / 3, 2 / 3, 1),  # P 1/2, R 1
    ("Parisian", ["Paris"], 0, 0, 0, 0),
    ("", ["Paris"], 0, 0, 0, 0),
    ("", [], 1, 1, 0, 1),  # unanswerable: gold [""]; HotpotQA: no reference, 0
    ("unanswerable", [], 0, 0, 0, 0),  # the official rule: only an empty answer abstains
    ("the", [], 1, 1, 0, 1),  # normalises to nothing = empty
    ("yes", ["yes"], 1, 1, 1, 1),
    ("Yes.", ["yes"], 1, 1, 1, 1),
    ("yes it is", ["yes"], 0, 1 / 2, 0, 1),  # HotpotQA: gold "yes", prediction differs -> 0
    ("no", ["yes"], 0, 0, 0, 0),
    ("no, it is not", ["no"], 0, 2 / 5, 0, 1),  # P 1/4, R 1
    ("yes", ["yes sir"], 0, 2 / 3, 0, 0),  # HotpotQA: prediction "yes" differs from gold -> 0
    ("noanswer", ["Paris"], 0, 0, 0, 0),
    ("noanswer", ["noanswer"], 1, 1, 1, 1),
    ("Denver Broncos", ["Denver Broncos", "Broncos"], 1, 1, 1, 1),
    ("Broncos", ["Denver Broncos"], 0, 2 / 3, 2 / 3, 0),
    ("blue blue sky", ["blue sky sky"], 0, 2 / 3, 2 / 3, 0),  # counts: common 2 of 3 each
    ("Bram Stoker's", ["Bram Stoker"], 0, 1 / 2, 1 / 2, 1),  # "stokers" vs "stoker"
    ("Bram Stoker\u2019s novel", ["Bram Stoker"], 0, 2 / 5, 2 / 5, 1),  # P 1/3, R 1/2
    ("\u201cParis\u201d", ["Paris"], 0, 0, 0, 1),  # curly quotes stay in the token officially
    ("\u00abParis\u00bb", ["Paris"], 0, 0, 0, 1),
    ("Paris\u2026", ["Paris"], 0, 0, 0, 1),
    ("Paris...", ["Paris"], 1, 1, 1, 1),
    ("a New York-based firm", ["New York"], 0, 2 / 5, 2 / 5, 1),  # [new, yorkbased, firm]
    ("Spiderman", ["Spider-Man"], 1, 1, 1, 1),
    ("Spider Man", ["Spider-Man"], 0, 0, 0, 1),
    ("eight legs", ["8", "eight"], 0, 2 / 3, 2 / 3, 1),
    ("8", ["8", "eight"], 1, 1, 1, 1),
    ("1,000", ["1000"], 1, 1, 1, 1),
    ("1 000", ["1000"], 0, 0, 0, 0),
    ("$5 million", ["5 million"], 1, 1, 1, 1),
    ("Th\u00e9\u00e2tre", ["Theatre"], 0, 0, 0, 0),
    ("an apple a day", ["apple"], 0, 2 / 3, 2 / 3, 1),
    ("The the the", ["the"], 1, 1, 0, 1),  # reference dropped -> gold [""]
    ("Paris", ["the"], 0, 0, 0, 0),
    ("Paris", ["", "Paris"], 1, 1, 1, 1),
    ("Paris", ["London", "Paris"], 1, 1, 1, 1),
    ("London and Paris", ["Paris", "London"], 0, 1 / 2, 1 / 2, 1),
    ("PARIS", ["paris"], 1, 1, 1, 1),
    ("  Paris  ", ["Paris"], 1, 1, 1, 1),
    ("Paris\nFrance", ["Paris"], 0, 2 / 3, 2 / 3, 1),
    ("Jean-Paul Sartre", ["Jean-Paul Sartre"], 1, 1, 1, 1),
    ("Sartre", ["Jean-Paul Sartre"], 0, 2 / 3, 2 / 3, 0),
    ("the answer is no", ["no"], 0, 1 / 2, 0, 1),
    ("No.", ["no"], 1, 1, 1, 1),
    ("Nope", ["no"], 0, 0, 0, 0),
    ("Stoker", ["Bram Stoker"], 0, 2 / 3, 2 / 3, 0),
    ("Bram Stokers", ["Bram Stoker's"], 1, 1, 1, 1),
    ("It\u2019s Paris", ["Paris"], 0, 2 / 3, 2 / 3, 1),
    ("Paris!", [], 0, 0, 0, 0),
    ("", ["the"], 1, 1, 0, 1),
    ("The Beatles", ["Beatles"], 1, 1, 1, 1),
    ("Beatles'", ["Beatles"], 1, 1, 1, 1),
    ("Queen Elizabeth II", ["Elizabeth II"], 0, 4 / 5, 4 / 5, 1),  # P 2/3, R 1
    ("II", ["Elizabeth II"], 0, 2 / 3, 2 / 3, 0),
    ("1990s", ["1990"], 0, 0, 0, 0),
    ("in 1990.", ["1990"], 0, 2 / 3, 2 / 3, 1),
    ("March 3, 1990", ["3 March 1990"], 0, 1, 1, 0),  # same tokens, another order
    ("yes", ["Yes", "no"], 1, 1, 1, 1),
    ("no", ["yes", "no"], 1, 1, 1, 1),
    ("maybe", ["yes"], 0, 0, 0, 0),
    ("yes yes", ["yes"], 0, 2 / 3, 0, 1),
    ("noanswer", [], 0, 0, 0, 0),
    ("no answer", ["Paris"], 0, 0, 0, 0),
    ("the Nile river", ["Nile"], 0, 2 / 3, 2 / 3, 1),
    ("Nile", ["the Nile River"], 0, 2 / 3, 2 / 3, 0),
    ("Nile-River", ["Nile River"], 0, 0, 0, 1),
    ("(Paris)", ["Paris"], 1, 1, 1, 1),
    ("Paris\u2014France", ["Paris"], 0, 0, 0, 1),  # an em dash is not ASCII punctuation
    ("Paris\u2013London", ["London"], 0, 0, 0, 1),
    ("Paris's mayor", ["Paris"], 0, 0, 0, 1),  # officially [pariss, mayor]
    ("Xavier", [], 0, 0, 0, 0),
    ("a", [], 1, 1, 0, 1),
    ("An", ["the"], 1, 1, 0, 1),
    ("Paris Paris", ["Paris"], 0, 2 / 3, 2 / 3, 1),
    ("Mount Everest", ["Everest", "Mount Everest"], 1, 1, 1, 1),
]

ANSWERS = [
    "Paris", "Bram Stoker", "1990", "New York City", "eight",
    "Jupiter", "the Nile", "Marie Curie", "blue", "Albert Einstein",
]  # fmt: skip
TOKENS = {"the Nile": 1}  # normalised token counts where not the word count


def _n(answer: str) -> int:
    return TOKENS.get(answer, len(answer.split()))


def constructed() -> list[tuple[str, list[str], float, float, float, float]]:
    """Decorations whose scores follow from the definitions for an answer of n normalised tokens."""
    out = []
    for a in ANSWERS:
        n = _n(a)
        out.append((f"{a}.", [a], 1, 1, 1, 1))
        out.append((f"{a.upper()}!", [a], 1, 1, 1, 1))
        out.append((f"It is {a}", [a], 0, n / (n + 1), n / (n + 1), 1))  # P n/(n+2), R 1
        out.append((f"I think it is {a}, honestly", [a], 0, 2 * n / (2 * n + 5), 2 * n / (2 * n + 5), 1))
        out.append((f"{a}xyz", [a], 0, (n - 1) / n, (n - 1) / n, 0))  # the last token glued
    return out


CASES = LITERAL + constructed()
# Decorations that hide an answer from the official normalisation but not from contains-answer.
CONTAINS_ONLY = [
    (template.format(a), [a], 1)
    for a in ANSWERS
    for template in ("\u00ab{}\u00bb", "\u201c{}\u201d", "{}\u2026", "{}\u2019s", "{}-based")
]


def test_there_are_at_least_100_cases_per_metric():
    assert len(CASES) >= 100 and len(CASES) + len(CONTAINS_ONLY) >= 100
    assert len(RULER) >= 100


@pytest.mark.parametrize(("prediction", "references", "em", "f1_", "hotpot", "contains"), CASES)
def test_official_squad_hotpotqa_and_contains(prediction, references, em, f1_, hotpot, contains):
    assert exact_match(prediction, references) == em
    assert f1(prediction, references) == pytest.approx(f1_)
    assert f1_hotpotqa(prediction, references) == pytest.approx(hotpot)
    assert contains_answer(prediction, references) == contains


@pytest.mark.parametrize(("prediction", "references", "contains"), CONTAINS_ONLY)
def test_contains_reads_quotes_ellipses_possessives_and_compounds(prediction, references, contains):
    assert contains_answer(prediction, references) == contains


def _ruler_cases() -> list[tuple[str, list[str], float, float]]:
    values = [str(1234567 + 1111111 * i) for i in range(10)]
    out = []
    for i, v in enumerate(values):
        w, x = values[(i + 1) % 10], values[(i + 2) % 10]
        out += [
            (f"The special magic number is {v}.", [v], 1, 1),
            (v, [v, w], 1 / 2, 1),
            ("none", [v], 0, 0),
            (f"9{v}", [v], 1, 1),  # substrings count (ragkit's needle_recall would not)
            (f"{v[:3]},{v[3:]}", [v], 0, 0),
            (f"{v[:3]}\x00{v[3:]}", [v], 0, 0),  # a control character becomes a newline
            (f"{v}\n{w}\n{x}", [v, w, x], 1, 1),
            (f"{v} and {w}", [v, w, x, "apple"], 1 / 2, 1),
            (f"APPLE {v}", ["apple", w], 1 / 2, 1),  # case-insensitive
            (f"  {w} ", [v, x], 0, 0),
        ]
    return out


RULER = _ruler_cases()


@pytest.mark.parametrize(("prediction", "references", "match_all", "match_part"), RULER)
def test_ruler_string_match(prediction, references, match_all, match_part):
    assert ruler_match_all(prediction, references) == pytest.approx(match_all)
    assert ruler_match_part(prediction, references) == match_part


@pytest.mark.parametrize(
    ("text", "abstains"),
    [
        ("unanswerable", True),
        ("Unanswerable.", True),
        ("The context does not mention Paris.", True),
        ("does not mention Paris, but Paris is the answer", False),
        ("The text doesn't say; however, it is Paris.", False),
        ("I don't know, but I think it is Paris", False),
        ("I do not know.", True),
        ("The passage does not mention it. The answer is 42.", False),
        ("It mentions France but does not say who wrote it.", True),  # the contrast comes first
        ("There is not enough information to answer.", True),
        ("Not enough information. Answer: Paris", False),
        ("cannot be answered from the documents", True),
        ("Paris", False),
        ("Noanswer Street", False),
        ("No relevant information is provided.", True),
    ],
)
def test_abstention_patterns(text, abstains):
    assert is_abstention(text) == abstains
