"""Token accounting in one currency: FLOPs per call, budget parsing, dollars, budget checks.

The budget axis is the *effective context length* (input tokens summed over every generator call
for a question, :attr:`ragkit.types.Cost.effective_context_tokens`), as in "Inference Scaling for
Long-Context RAG" (Yue et al., 2024).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from ragkit.generators.base import ModelInfo
from ragkit.types import Cost, Prediction


class BudgetError(ValueError):
    """The fixed part of a prompt (instructions, question) alone exceeds the token limit (the
    arm's ``budget`` or the model's window): no context can be given, so the configuration
    cannot run as specified. The runner reports it as a configuration error naming the field."""


def call_flops(info: ModelInfo, input_tokens: int, output_tokens: int) -> float:
    """Forward-pass FLOPs of one generator call (prefill of ``input_tokens``, then
    ``output_tokens`` decode steps), with the standard estimate of Kaplan et al. (2020),
    "Scaling Laws for Neural Language Models", Table 1, used by inference-scaling work:

    - ``2·N`` per token for the weight matmuls (a multiply and an add per parameter), with N all
      parameters counted once, so a tied output embedding (the de-embedding matmul) is included;
      for untied models this also counts the input embedding lookup, a small overestimate;
    - ``2·n_layers·c·d_model`` per token for attention over its ``c`` preceding positions (the
      KV cache makes a token at position ``c`` attend to ``c`` keys), summed over positions
      1..T with T = input + output tokens: ``2·L·d·T(T+1)/2``.
    """
    total = input_tokens + output_tokens
    matmuls = 2.0 * info.n_params * total
    attention = 2.0 * info.n_layers * info.d_model * total * (total + 1) / 2.0
    return matmuls + attention


def layers_flops(info: ModelInfo, tokens: int, layers: int) -> float:
    """FLOPs of a forward pass of ``tokens`` tokens through the first ``layers`` transformer
    layers only, without the output projection (GemFilter's filter pass): each layer's share of
    the parameters other than the (de-)embedding matrix, and those layers' attention, counted as
    in :func:`call_flops`. Without a known vocabulary size all parameters are shared out."""
    embedding = (info.vocab_size or 0) * info.d_model
    per_layer = max(info.n_params - embedding, 0) / info.n_layers
    matmuls = 2.0 * per_layer * layers * tokens
    attention = 2.0 * layers * info.d_model * tokens * (tokens + 1) / 2.0
    return matmuls + attention


_SUFFIX = {"": 1, "k": 1024, "m": 1024**2}
_TOKENS = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*([kKmM]?)\s*$")


def parse_tokens(value: int | float | str) -> int:
    """Token counts as people write them: ``16384``, ``"16k"`` (16·1024), ``"1.5k"``, ``"128K"``,
    ``"2M"`` (2·1024²). Binary multiples, as context windows are quoted (a "32k" model has 32768)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a token count such as 16384 or '16k', got {value!r}")
    if isinstance(value, int | float):
        number, multiplier = float(value), 1
    else:
        match = _TOKENS.match(str(value))
        if not match:
            raise ValueError(f"expected a token count such as 16384, '16k', '1.5k' or '2M', got {value!r}")
        number, multiplier = float(match.group(1)), _SUFFIX[match.group(2).lower()]
    tokens = number * multiplier
    if multiplier > 1:
        tokens = round(tokens)  # "1.3k" means about 1331 tokens, not an error
    if not math.isfinite(tokens) or tokens < 0 or tokens != int(tokens):
        raise ValueError(f"expected a whole, non-negative number of tokens, got {value!r}")
    return int(tokens)


class PriceTable(BaseModel):
    """Dollar prices (a generator catalog entry's ``prices:``, see
    :class:`ragkit.generators.base.Prices`). API-priced models use the per-token prices; self-hosted
    ones the hourly price of their machine (charged on the question's measured seconds); both may
    be set. The two throughputs only serve estimates made before anything ran."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_per_million: float = Field(0.0, ge=0, description="dollars per 1M input tokens")
    output_per_million: float = Field(0.0, ge=0, description="dollars per 1M output tokens")
    gpu_hour: float = Field(0.0, ge=0, description="dollars per hour of measured time (GPU or CPU machine)")
    prefill_tokens_per_second: float | None = Field(None, gt=0, description="for estimates of hours")
    decode_tokens_per_second: float | None = Field(None, gt=0, description="for estimates of hours")

    @property
    def priced(self) -> bool:
        return bool(self.input_per_million or self.output_per_million or self.gpu_hour)


# Illustrative numbers only, for trying the arithmetic: NOT current list prices of any provider.
EXAMPLE_PRICES: dict[str, PriceTable] = {
    "example-small-api": PriceTable(input_per_million=0.15, output_per_million=0.60),
    "example-large-api": PriceTable(input_per_million=2.50, output_per_million=10.00),
    "example-rented-gpu": PriceTable(gpu_hour=2.50),
}


def price_table(generator: object) -> PriceTable | None:
    """The generator's ``prices`` as a table (None: unpriced, dollars stay 0)."""
    prices = getattr(generator, "prices", None)
    if not prices:
        return None
    table = prices if isinstance(prices, PriceTable) else PriceTable(**prices)
    return table if table.priced else None


def dollars(cost: Cost, prices: PriceTable) -> float:
    """Dollars for ``cost``: tokens at the token prices plus all measured seconds (generation and
    auxiliary models, which run on the same machine) at the hourly price."""
    return (
        cost.input_tokens * prices.input_per_million / 1e6
        + cost.output_tokens * prices.output_per_million / 1e6
        + cost.seconds * prices.gpu_hour / 3600.0
    )


def estimated_dollars(cost: Cost, prices: PriceTable) -> float | None:
    """Dollars for a cost estimated before generation (no measured seconds): the hourly price is
    applied to the seconds the table's throughputs give for its prefill and decode tokens. None
    when an hourly price has no throughputs to convert tokens into time."""
    seconds = 0.0
    if prices.gpu_hour:
        if not (prices.prefill_tokens_per_second and prices.decode_tokens_per_second):
            return None
        seconds = (
            cost.prefill_tokens_computed / prices.prefill_tokens_per_second
            + cost.output_tokens / prices.decode_tokens_per_second
        )
    return (
        cost.input_tokens * prices.input_per_million / 1e6
        + cost.output_tokens * prices.output_per_million / 1e6
        + seconds * prices.gpu_hour / 3600.0
    )


def price_predictions(predictions: Sequence[Prediction], generator: object) -> None:
    """Fill each prediction's ``cost.dollars`` from the generator's prices (left 0 when unpriced)."""
    table = price_table(generator)
    if table is None:
        return
    for prediction in predictions:
        prediction.cost.dollars = dollars(prediction.cost, table)


def fits_budget(cost: Cost, budget_tokens: int | str) -> bool:
    """Whether a question's effective context length is within ``budget_tokens``."""
    return cost.effective_context_tokens <= parse_tokens(budget_tokens)
