"""Model-internal methods of the transformers generator on a tiny random Llama: GemFilter's token
selection and speculative decoding with a draft reading another prompt (greedy output identical)."""

from __future__ import annotations

import math

import pytest

from ragkit.budget import call_flops, layers_flops
from ragkit.generators import _gemfilter as gem
from ragkit.generators.base import GenerationRequest, UnsupportedMethod
from ragkit.generators.openai import OpenAIGenerator
from ragkit.generators.transformers import TransformersGenerator
from tests.tiny_llama import build_tiny_llama

WORDS = ["the", "capital", "of", "france", "is", "paris", "who", "wrote", "hamlet", "what", "sky", "blue"]
DOCUMENT = " ".join(["the capital of france is paris . who wrote hamlet ? the sky is blue ."] * 6)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = build_tiny_llama(tmp_path_factory.mktemp("tiny-llama-methods"), WORDS, max_positions=512)
    return TransformersGenerator(model=folder, max_new_tokens=12, prefix_reuse=False)


def ask(text: str, method: dict | None = None, max_new: int = 12) -> GenerationRequest:
    return GenerationRequest([{"role": "user", "content": text}], max_new_tokens=max_new, method=method)


def test_selection_keeps_the_tail_and_the_best_pooled_positions():
    scores = [0.0] * 20
    scores[5] = 10.0  # pooled over 5 neighbours, 3..7 share its mass
    kept = gem.select(scores, keep=7, protect=2, pool=5)
    assert kept == sorted(kept) and len(kept) == 7
    assert {18, 19} <= set(kept) and {3, 4, 5, 6, 7} <= set(kept)
    assert gem.select(scores, keep=1, protect=0, pool=1) == [5]  # the published rule, no pooling
    assert gem.select(scores, keep=30) == list(range(20))
    assert gem.ranges([1, 2, 3, 7, 9, 10]) == [[1, 4], [7, 8], [9, 11]]


def test_default_filter_layer_attends_to_the_whole_context():
    assert gem.default_layer(30, None) == 13  # SmolLM2: 45% of the depth
    assert gem.default_layer(32, None) == 14
    gemma = (512, 512, 512, 512, 512, None) * 3
    assert gem.default_layer(18, gemma) == 5  # a global layer, never a 512-token local one


def test_scores_rank_positions_as_the_attention_weights_do(tiny):
    """Summed over heads, the log of each head's softmax differs from the recorded logits by a
    per-head constant and the scale: the same ranking of positions."""
    import torch

    model = tiny._load_model()
    ids = tiny.tokenizer.encode(tiny.render(ask(DOCUMENT).messages))
    scores, _ = gem.token_scores(model, ids, layer=1)
    model.set_attn_implementation("eager")
    try:
        with torch.inference_mode():
            attentions = model(torch.tensor([ids]), output_attentions=True).attentions[1]
    finally:
        model.set_attn_implementation("sdpa")
    log_sum = attentions[0, :, -1, :].log().sum(0)
    scaled = torch.tensor(scores) * model.model.layers[1].self_attn.scaling
    assert torch.allclose(scaled - scaled.mean(), log_sum - log_sum.mean(), atol=1e-3)
    assert model.config._attn_implementation == "sdpa"  # the filter pass put the model back


def test_gemfilter_accounting_and_a_keep_larger_than_the_prompt(tiny):
    plain = tiny.generate([ask(DOCUMENT)])[0]
    whole = tiny.generate([ask(DOCUMENT, {"name": "gemfilter", "keep": 10_000, "layer": 0})])[0]
    assert whole.text == plain.text
    assert whole.flops == call_flops(tiny.model_info(), plain.input_tokens, whole.output_tokens)
    got = tiny.generate([ask(DOCUMENT, {"name": "gemfilter", "keep": 16, "layer": 0, "protect": 3})])[0]
    info = tiny.model_info()
    assert got.input_tokens == plain.input_tokens  # the model read the whole prompt
    assert got.meta["kept_tokens"] == 16 and sum(b - a for a, b in got.meta["kept"]) == 16
    assert got.meta["kept"][-1][1] == got.input_tokens  # the protected tail
    assert got.prefill_tokens == 16 + math.ceil(got.input_tokens * 1 / info.n_layers)
    expected = layers_flops(info, got.input_tokens, 1) + call_flops(info, 16, got.output_tokens)
    assert got.flops == pytest.approx(expected)
    assert got.flops < call_flops(info, got.input_tokens, got.output_tokens)
    with pytest.raises(ValueError, match="outside the model's layers"):
        tiny.generate([ask(DOCUMENT, {"name": "gemfilter", "keep": 16, "layer": 9})])


@pytest.mark.parametrize("draft", [DOCUMENT, "the sky is blue . who wrote hamlet ?", "paris"])
def test_speculative_output_is_the_plain_greedy_output(tiny, draft):
    plain = tiny.generate([ask(DOCUMENT, max_new=24)])[0]
    method = {"name": "speculative", "draft": ask(draft).messages, "lookahead": 3}
    got = tiny.generate([ask(DOCUMENT, method, max_new=24)])[0]
    assert got.text == plain.text and got.output_tokens == plain.output_tokens
    draft_tokens = len(tiny.tokenizer.encode(tiny.render(ask(draft).messages)))
    assert got.input_tokens == plain.input_tokens + draft_tokens == got.meta["target_tokens"] + draft_tokens
    assert 0 <= got.meta["accepted"] <= got.meta["proposed"]
    if draft == DOCUMENT:  # the draft reads what the target reads: it is always right
        assert got.meta["acceptance"] == 1.0


def test_engines_without_the_model_in_process_refuse_methods():
    generator = OpenAIGenerator(model="m", base_url="http://127.0.0.1:9", context_window=512)
    with pytest.raises(UnsupportedMethod, match="needs the model in process"):
        generator.generate([ask("hi", {"name": "gemfilter", "keep": 4})])
