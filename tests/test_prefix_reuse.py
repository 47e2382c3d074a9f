"""Prefix reuse: prompts sharing their documents compute that prefix once, with the same answers."""

from __future__ import annotations

import pytest

from ragkit.generators._prefix import adjacent_order, common_prefix, group_by_prefix
from ragkit.generators.base import GenerationRequest
from ragkit.generators.transformers import TransformersGenerator
from ragkit.runner import documents_together
from ragkit.types import Cost, Document, Example
from tests.tiny_llama import build_tiny_llama

WORDS = ["the", "capital", "of", "france", "is", "paris", "who", "wrote", "hamlet", "what", "sky", "blue"]


@pytest.fixture(scope="module")
def long_model(tmp_path_factory):
    """A tiny random Llama with a window long enough for a 256+-token shared document."""
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama-long"), WORDS, max_positions=1024)


DOCUMENT = " ".join(["the capital of france is paris ."] * 45)  # 315 tokens shared by its questions
QUESTIONS = ["who wrote hamlet ?", "what is the capital of france ?", "is the sky blue ?", "what sky ?"]


def ask(question: str, document: str = DOCUMENT) -> GenerationRequest:
    return GenerationRequest([{"role": "user", "content": f"{document} {question}"}], max_new_tokens=6)


def test_grouping_by_token_prefix():
    a, b, c = [1] * 300 + [5, 6], [1] * 300 + [7], [2] * 300
    groups = group_by_prefix([a, c, b])
    assert [(g.members, g.shared) for g in groups] == [([0, 2], 300), ([1], 0)]
    assert group_by_prefix([a, a])[0].shared == len(a) - 1  # a member keeps a token of its own
    assert group_by_prefix([[*a[:100], 9], [*a[:100], 8]])[0].shared == 0  # under the threshold
    assert adjacent_order([a, c, b]) == [0, 2, 1]
    assert common_prefix([1, 2, 3], [1, 2]) == 2


def test_reuse_gives_the_same_answers_and_computes_the_prefix_once(long_model):
    plain = TransformersGenerator(model=long_model, prefix_reuse=False, batch_size=4)
    reuse = TransformersGenerator(model=long_model, batch_size=4)
    requests = [ask(q) for q in QUESTIONS]
    expected = plain.generate(requests)
    got = reuse.generate(requests)
    assert [g.text for g in got] == [e.text for e in expected]
    assert [g.input_tokens for g in got] == [e.input_tokens for e in expected]
    assert all(e.prefill_tokens_computed == e.input_tokens for e in expected)
    ids = [reuse.tokenizer.encode(reuse.render(r.messages)) for r in requests]
    shared = group_by_prefix(ids)[0].shared
    assert shared > 300
    computed = sorted(g.prefill_tokens_computed for g in got)
    # one question computed the prefix and its own tokens, the others only their own
    assert computed[-1] == next(g.input_tokens for g in got if g.prefill_tokens_computed == computed[-1])
    assert sum(computed) == sum(g.input_tokens for g in got) - shared * (len(got) - 1)
    # the next call (the runner's next batch of the same document) reuses the held prefix
    [again] = reuse.generate([ask("the sky ?")])
    assert again.prefill_tokens_computed == again.input_tokens - shared
    assert again.text == plain.generate([ask("the sky ?")])[0].text


def test_prompts_without_a_long_shared_prefix_are_batched_as_before(long_model):
    gen = TransformersGenerator(model=long_model, batch_size=4)
    outs = gen.generate([ask(q, document="paris") for q in QUESTIONS])
    assert all(o.prefill_tokens_computed == o.input_tokens for o in outs)
    assert gen.held_prefix_ is None


def test_prefix_reuse_is_not_part_of_the_generation_cache_key(long_model):
    assert (
        TransformersGenerator(model=long_model, prefix_reuse=False).spec()
        == TransformersGenerator(model=long_model).spec()
    )


def test_runner_puts_a_documents_questions_together():
    doc_a, doc_b = Document("a", "text a"), Document("b", "text b")
    examples = [
        Example("1", "q", [], [doc_a]), Example("2", "q", [], [doc_b]), Example("3", "q", [], [doc_a]),
        Example("4", "q", [], []), Example("5", "q", [], [doc_b]), Example("6", "q", [], []),
    ]  # fmt: skip
    assert [e.id for e in documents_together(examples)] == ["1", "3", "2", "5", "4", "6"]


def test_old_records_computed_every_prompt_token():
    assert Cost.from_dict({"input_tokens": 40}).prefill_tokens_computed == 40
    assert Cost.from_dict({"input_tokens": 40, "prefill_tokens_computed": 5}).prefill_tokens_computed == 5


def test_a_cut_document_is_cut_the_same_for_every_question_about_it(long_model):
    """Full context over a document longer than the window: questions of different lengths must
    see the same cut document, so their prompts share everything before the question (before the
    fixed question allowance, each question cut the document at its own place)."""
    from ragkit.generators._prefix import computed_tokens
    from ragkit.strategies.base import Record
    from ragkit.strategies.full_context import FullContext

    words = DOCUMENT.split()
    text = " ".join(words[i % len(words)] + ("" if i % 7 else " .") for i in range(900))
    doc = Document(id="d", text=text)
    generator = TransformersGenerator(model=long_model, context_window=512, max_new_tokens=8)
    ids, dropped = [], []
    for n, question in enumerate(QUESTIONS):
        record = Record(Example(id=str(n), question=question, answers=["paris"], documents=[doc]))
        messages, tokens = FullContext()._prepare(record, generator, None)
        assert tokens <= 512 - 8
        ids.append(generator.tokenizer.encode(generator.render(messages)))
        dropped.append(record.provenance.dropped_tokens)
    assert min(dropped) > 0 and len(set(dropped)) == 1
    shared = min(common_prefix(ids[0], other) for other in ids[1:])
    assert shared >= max(len(i) for i in ids) - 32  # all but the question and the answer cue
    assert sum(computed_tokens(ids)) <= len(ids[0]) + 3 * 32
