"""GemFilter and RAPID as strategies: requests, costs and provenance with the scripted generator,
then on a tiny random Llama (RAPID's answers are full context's; GemFilter cuts FLOPs)."""

from __future__ import annotations

import pytest

from ragkit.budget import call_flops
from ragkit.generators.scripted import ScriptedGenerator
from ragkit.generators.transformers import TransformersGenerator
from ragkit.retrievers.bm25 import BM25Retriever
from ragkit.strategies.base import Record
from ragkit.strategies.full_context import FullContext
from ragkit.strategies.gemfilter import GemFilter, question_tail
from ragkit.strategies.rapid import RAPID
from ragkit.strategies.retrieval import Retrieval
from ragkit.types import Document, Evidence, Example
from tests.tiny_llama import build_tiny_llama

WORDS = [
    "the",
    "capital",
    "of",
    "france",
    "is",
    "paris",
    "who",
    "wrote",
    "hamlet",
    "what",
    "sky",
    "blue",
    "question",
]


def haystack(n_docs: int = 6) -> list[Example]:
    filler = [Document(f"d{i}", "the sky is blue . " * 8, title="") for i in range(n_docs)]
    gold = Document("gold", "the capital of france is paris .")
    documents = [*filler[:3], gold, *filler[3:]]
    return [
        Example(
            "q1",
            "what is the capital of france ?",
            ["paris"],
            documents=documents,
            evidence=[Evidence("gold", "the capital of france is paris .")],
        )
    ]


def test_gemfilter_asks_for_the_method_and_charges_the_whole_prompt():
    generator = ScriptedGenerator(context_window=4096, script={"france": "paris"})
    strategy = GemFilter(keep=20)
    [prediction] = strategy.run(haystack(), generator)
    [full] = FullContext().run(haystack(), generator)
    assert prediction.answer == "paris"
    assert prediction.cost.input_tokens == full.cost.input_tokens  # the filter layers read it all
    provenance = prediction.provenance
    assert provenance.measures["filter_layer"] == 0  # 45% of the scripted model's 2 layers
    tail = question_tail(generator, FullContext()._prepare(Record(haystack()[0]), generator, None)[0])
    assert provenance.measures["protected_tokens"] == tail > 5  # "Question: ... Answer (a few words only):"
    [estimate] = strategy.estimate(haystack(), generator)
    [full_estimate] = FullContext().estimate(haystack(), generator)
    assert estimate.input_tokens == full_estimate.input_tokens
    info = generator.model_info()
    assert 0 < estimate.flops < call_flops(info, full_estimate.input_tokens, full_estimate.output_tokens)
    assert estimate.prefill_tokens_computed == 20 + -(-estimate.input_tokens * 1 // 2)
    with pytest.raises(ValueError, match="'keep' must be a positive"):
        GemFilter(keep=0)


def test_rapid_reads_both_prompts():
    generator = ScriptedGenerator(context_window=4096, script={"france": "paris"})
    strategy = RAPID(retrieval=Retrieval(retriever=BM25Retriever(), k=1), lookahead=3)
    [prediction] = strategy.run(haystack(), generator)
    [full] = FullContext().run(haystack(), generator)
    assert prediction.answer == "paris"
    draft = prediction.provenance.measures["draft_tokens"]
    assert prediction.cost.input_tokens == full.cost.input_tokens + draft
    assert prediction.cost.calls == 1  # one request reads both prompts
    assert prediction.provenance.context_ids == ["gold#0"]  # the drafter's retrieved context
    [estimate] = strategy.estimate(haystack(), generator)
    assert estimate.input_tokens == prediction.cost.input_tokens and estimate.calls == 1


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = build_tiny_llama(tmp_path_factory.mktemp("tiny-llama-strategies"), WORDS, max_positions=512)
    return TransformersGenerator(model=folder, max_new_tokens=10, prefix_reuse=False)


def test_on_a_real_model_rapid_answers_as_full_context(tiny):
    examples = haystack()
    [full] = FullContext().run(examples, tiny)
    [rapid] = RAPID(retrieval=Retrieval(retriever=BM25Retriever(), k=1), lookahead=2).run(examples, tiny)
    assert rapid.provenance.raw_answer == full.provenance.raw_answer
    assert rapid.cost.output_tokens == full.cost.output_tokens
    assert 0 <= rapid.provenance.measures["acceptance"] <= 1
    assert rapid.cost.flops > full.cost.flops  # the drafter's work is extra compute


def test_on_a_real_model_gemfilter_keeps_what_it_says(tiny):
    examples = haystack()
    [full] = FullContext().run(examples, tiny)
    [gem] = GemFilter(keep=24, layer=1).run(examples, tiny)
    assert gem.provenance.measures["kept_tokens"] == 24
    assert gem.cost.input_tokens == full.cost.input_tokens
    assert gem.cost.flops < full.cost.flops
    assert isinstance(gem.provenance.measures["evidence_kept"], float)
    [everything] = GemFilter(keep=10_000, layer=1).run(examples, tiny)
    assert everything.provenance.raw_answer == full.provenance.raw_answer
    assert everything.provenance.measures["evidence_kept"] == 1.0
