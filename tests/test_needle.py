"""Needle-in-a-haystack generator (RULER-style variants) and its exact scoring."""

import json
import re

import pytest

from ragkit.data._haystack_tools import rendered, token_counter
from ragkit.data.base import DatasetError
from ragkit.data.needle import Needle
from ragkit.longform import needle_recall, score_example, score_frame
from ragkit.types import Prediction, Provenance


@pytest.fixture
def essays(tmp_path):
    """A small essay file: 400 distinct sentences of 6 to 14 words."""
    sentences = [" ".join(f"w{i}x{j}" for j in range(6 + i % 9)).capitalize() + "." for i in range(400)]
    path = tmp_path / "essays.json"
    path.write_text(json.dumps({"text": "  ".join(sentences)}))
    return path


def _load(essays, **kwargs):
    params = {"path": str(essays), "tokenizer": "scripted", "length": 600, "n": 6, "passage_tokens": 40}
    params.update(kwargs)
    return Needle(**params).load().examples


def _all_text(example):
    return " ".join(d.text for d in example.documents)


def test_length_within_one_passage(essays):
    counter = token_counter("scripted")
    for length in (300, 600, 2000):
        for example in _load(essays, length=length):
            counts = counter.count_many([rendered(d) for d in example.documents])
            assert example.meta["actual_tokens"] == sum(counts)
            assert sum(counts) <= length
            assert length - sum(counts) < max(counts)


@pytest.mark.parametrize("depth", [0.0, 0.25, 0.5, 0.75, 1.0])
def test_needle_at_depth(essays, depth):
    for example in _load(essays, length=1500, depth=depth):
        text = _all_text(example)
        needle = example.evidence[0].text
        assert text.count(needle) == 1
        words_before = len(text[: text.index(needle)].split())
        share = words_before / (len(text.split()) - len(needle.split()))
        assert share == pytest.approx(depth, abs=0.06)  # a needle goes between sentences
        assert example.meta["evidence_position"] == pytest.approx(depth, abs=0.06)


def test_single_variant(essays):
    examples = _load(essays)
    assert len({e.meta["needle_key"] for e in examples}) == len(examples)
    for example in examples:
        assert len(example.answers) == 1 and re.fullmatch(r"\d{7}", example.answers[0])
        assert example.meta["needle_key"] in example.question
        assert _all_text(example).count("special magic number") == 1
        assert f"is: {example.answers[0]}." in example.evidence[0].text
        assert example.evidence[0].doc_id in {d.id for d in example.documents}


def test_multi_key_variant_has_distractor_needles(essays):
    for example in _load(essays, variant="multi-key", needles=4):
        text = _all_text(example)
        keys = re.findall(r"special magic numbers for ([a-z]+-[a-z]+) is", text)
        assert len(keys) == 4 and len(set(keys)) == 4
        assert example.meta["needle_key"] in keys
        assert example.answers == [re.search(rf"for {example.meta['needle_key']} is: (\d+)", text).group(1)]


def test_multi_value_variant_asks_all_values(essays):
    for example in _load(essays, variant="multi-value", needles=3):
        text = _all_text(example)
        assert len(example.answers) == 3 and len(set(example.answers)) == 3
        for value in example.answers:
            assert f"{example.meta['needle_key']} is: {value}." in text
        assert "all the special magic numbers" in example.question
        assert len(example.evidence) == 3


def test_deterministic_and_same_question_at_every_length(essays):
    a = _load(essays, seed=3)
    b = _load(essays, seed=3)
    assert [_all_text(e) for e in a] == [_all_text(e) for e in b]
    longer = _load(essays, seed=3, length=1200, depth=0.9)
    assert [(e.question, e.answers) for e in a] == [(e.question, e.answers) for e in longer]
    other = _load(essays, seed=4)
    assert [e.answers for e in a] != [e.answers for e in other]


def test_selection_options_apply(essays):
    assert [e.id for e in _load(essays, ids=["needle-0002"])] == ["needle-0002"]
    assert len(_load(essays, sample=2)) == 2


def test_errors_name_the_field(essays):
    with pytest.raises(DatasetError, match="field 'needles'"):
        _load(essays, variant="single", needles=2)
    with pytest.raises(DatasetError, match="field 'needles'"):
        _load(essays, variant="multi-value", needles=1)
    with pytest.raises(DatasetError, match="field 'depth'"):
        _load(essays, depth=-0.1)
    with pytest.raises(DatasetError, match="essays as one string"):
        bad = essays.parent / "bad.json"
        bad.write_text("[1, 2]")
        _load(bad)


def test_needle_recall_is_exact_on_whole_numbers():
    assert needle_recall("The number is 1234567.", ["1234567"]) == 1.0
    assert needle_recall("It is 91234567", ["1234567"]) == 0.0
    assert needle_recall("1,234,567 and 7654321", ["1234567", "7654321", "1111111"]) == pytest.approx(2 / 3)
    assert needle_recall("no numbers", ["1234567"]) == 0.0


def test_needle_scoring_uses_raw_output(essays):
    example = _load(essays, variant="multi-value", needles=3, n=1)[0]
    a, b, c = example.answers
    # The cleaned answer keeps the first line only; the values listed on later lines still count.
    full = Prediction(example.id, a, provenance=Provenance(raw_answer=f"{a}\n{b}\n{c}"))
    part = Prediction(example.id, a, provenance=Provenance(raw_answer=f"{a}, {b}"))
    every = {"ruler_match_all": 1.0, "ruler_match_part": 1.0}
    assert score_example(example, full) == {"needle_recall": 1.0, "needle_exact": 1.0, **every}
    two = {"ruler_match_all": pytest.approx(2 / 3), "ruler_match_part": 1.0}  # RULER's scores
    assert score_example(example, part) == {"needle_recall": pytest.approx(2 / 3), "needle_exact": 0.0, **two}
    frame = score_frame([example], [part])
    assert list(frame.columns) == [
        "example_id",
        *("needle_recall", "needle_exact", "ruler_match_all", "ruler_match_part"),
    ]
