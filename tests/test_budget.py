"""Budget arithmetic checked by hand."""

from __future__ import annotations

import pytest

from ragkit.budget import EXAMPLE_PRICES, PriceTable, call_flops, dollars, fits_budget, parse_tokens
from ragkit.generators.base import ModelInfo
from ragkit.types import Cost


@pytest.mark.parametrize(
    ("text", "tokens"),
    [(4096, 4096), ("4096", 4096), ("16k", 16384), ("32k", 32768), ("1.5k", 1536), ("128K", 131072),
     ("2M", 2097152), (" 8 k ", 8192), ("1.3k", 1331), (2048.0, 2048)],
)  # fmt: skip
def test_parse_tokens(text, tokens):
    assert parse_tokens(text) == tokens


@pytest.mark.parametrize("bad", ["", "k", "16kb", "-4k", "1e3", "ten", 1.5, True, "16 G"])
def test_parse_tokens_rejects_with_a_clear_message(bad):
    with pytest.raises(ValueError, match=r"token count|whole, non-negative"):
        parse_tokens(bad)


def test_call_flops_by_hand():
    info = ModelInfo(n_params=100, n_layers=2, d_model=4, context_window=64)
    # 3 input + 2 output = 5 positions: matmuls 2*100*5 = 1000; attention 2*2*4*(1+2+3+4+5) = 240
    assert call_flops(info, 3, 2) == 1240
    assert call_flops(info, 0, 0) == 0
    smollm2 = ModelInfo(n_params=134_515_008, n_layers=30, d_model=576, context_window=8192)
    flops = call_flops(smollm2, 1000, 24)  # ~2N per token dominates at short context
    assert 2 * 134_515_008 * 1024 < flops < 1.2 * 2 * 134_515_008 * 1024


def test_dollars_by_hand():
    cost = Cost(input_tokens=2_000_000, output_tokens=500_000, prefill_seconds=1800, decode_seconds=1800)
    assert dollars(cost, PriceTable(input_per_million=0.5, output_per_million=2.0)) == pytest.approx(2.0)
    assert dollars(cost, PriceTable(gpu_hour=3.0)) == pytest.approx(3.0)
    assert dollars(cost, EXAMPLE_PRICES["example-rented-gpu"]) == pytest.approx(2.5)
    with pytest.raises(ValueError):
        PriceTable(gpu_hour=-1)


def test_fits_budget_on_effective_context():
    cost = Cost(input_tokens=1500, output_tokens=900, calls=2)  # output tokens do not count
    assert fits_budget(cost, 1500) and fits_budget(cost, "1.5k")
    assert not fits_budget(cost, 1499)
