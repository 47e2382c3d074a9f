"""The generator contract: ``generate(requests) -> generations`` plus the token side of cost.

Strategies build chat messages; a generator renders them (its chat template, or a plain completion
layout for base models), counts their tokens with its own tokenizer, and generates. Fitting a
context into the window is the strategy's job (it knows what may be cut); a generator that still
receives an over-long prompt cuts the oldest tokens and reports ``truncated_tokens`` rather than
crash.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Protocol

import pydantic
from typing_extensions import TypedDict  # pydantic validates typing's TypedDict only on 3.12+

from ragkit.component import Component

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": "..."}


class Tokenizer(Protocol):
    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...


class UnsupportedMethod(ValueError):
    """A request asks for a model-internal method this engine cannot run."""


@dataclass
class GenerationRequest:
    messages: list[Message]
    max_new_tokens: int | None = None  # None: the generator's own default
    stop: tuple[str, ...] = ()
    # A model-internal method in place of the plain prefill and greedy decode, as a mapping with
    # its ``name`` and settings: {"name": "gemfilter", "keep": 512, "layer": 13} (select prompt
    # tokens with the early layers), {"name": "speculative", "draft": [messages], "lookahead": 4}
    # (a draft reads other messages and the model verifies its tokens). Engines list the names
    # they run in ``Generator.methods``; the generation cache keys on it.
    method: dict[str, Any] | None = None


@dataclass
class Generation:
    text: str
    input_tokens: int
    output_tokens: int
    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0
    truncated_tokens: int = 0
    cached: bool = False
    meta: dict[str, Any] = field(default_factory=dict)
    # Prompt tokens the engine actually ran through the model: fewer than ``input_tokens`` when a
    # shared prefix's KV cache was reused. None: all of them (engines that cannot tell).
    prefill_tokens: int | None = None
    # FLOPs of the call when a model-internal method changed them (GemFilter runs the prompt
    # through a few layers only); None: the standard estimate from the token counts.
    flops: float | None = None

    @property
    def prefill_tokens_computed(self) -> int:
        return self.input_tokens if self.prefill_tokens is None else self.prefill_tokens


_Dollars = Annotated[float, pydantic.Field(ge=0)]
_Rate = Annotated[float, pydantic.Field(gt=0)]


class Prices(TypedDict, total=False):
    """A generator's prices (its catalog entry's ``prices:``), in dollars. API-served models use the
    per-token prices; self-hosted engines the hourly price of the machine they run on (GPU or CPU),
    charged on each question's measured seconds. ``prefill_tokens_per_second`` and
    ``decode_tokens_per_second`` are the throughput that hour buys (``benchmarks/generation.py``
    measures it): ``ragkit estimate`` needs them to price hours before anything ran."""

    __pydantic_config__ = pydantic.ConfigDict(extra="forbid")  # type: ignore[misc]

    input_per_million: _Dollars
    output_per_million: _Dollars
    gpu_hour: _Dollars
    prefill_tokens_per_second: _Rate
    decode_tokens_per_second: _Rate


@dataclass(frozen=True)
class ModelInfo:
    """What FLOPs estimates need: parameter count, layers, hidden size; and what the KV-cache
    model (:mod:`ragkit.serving`) needs: attention heads, key/value heads (fewer than the heads
    under grouped-query attention), the head size and each layer's sliding window (None: the
    layer attends to the whole context). Unknown attention facts stay None and the serving model
    assumes multi-head attention over the hidden size, the usual estimate."""

    n_params: int
    n_layers: int
    d_model: int
    context_window: int
    n_heads: int | None = None
    n_kv_heads: int | None = None
    head_dim: int | None = None
    layer_windows: tuple[int | None, ...] | None = None
    vocab_size: int | None = None  # the output projection's share of the parameters


class Generator(Component, ABC):
    """Base of every generator. Subclasses implement ``tokenizer``, ``render``, ``model_info`` and
    ``_generate``; this class provides token counting and the window guard."""

    max_new_tokens: int = 32
    prices: Prices | None = None
    # Model-internal methods this engine runs (``GenerationRequest.method``): the transformers
    # generator has the model in process; servers only see prompts.
    methods: ClassVar[tuple[str, ...]] = ()
    # Constructor arguments that never change a generated text (what an answer costs in dollars;
    # whether a shared prefix's KV cache is reused, which changes only float rounding, as batch
    # composition does): left out of spec(), so the generation cache keeps its entries when they
    # change. They stay in the run's resolved configuration and MLflow params.
    output_neutral: ClassVar[tuple[str, ...]] = ("prices", "prefix_reuse")

    def spec(self) -> dict[str, Any]:
        return {k: v for k, v in super().spec().items() if k not in self.output_neutral}

    @property
    @abstractmethod
    def tokenizer(self) -> Tokenizer:
        """The model's own tokenizer (loaded lazily, without the weights when possible)."""

    @abstractmethod
    def render(self, messages: Sequence[Message]) -> str:
        """The exact prompt text the model sees for ``messages`` (chat template applied)."""

    @abstractmethod
    def model_info(self) -> ModelInfo:
        """Size facts for FLOPs accounting and the context window."""

    @abstractmethod
    def _generate(self, prompts: list[str], requests: list[GenerationRequest]) -> list[Generation]:
        """Generate for already rendered and window-fitted prompts."""

    # -- shared behaviour ---------------------------------------------------------------------
    def check_method(self, request: GenerationRequest) -> None:
        name = (request.method or {}).get("name")
        if request.method is not None and name not in self.methods:
            runs = f"runs {', '.join(self.methods)}" if self.methods else "runs no model-internal method"
            raise UnsupportedMethod(
                f"generator {type(self).__name__} {runs}; {name!r} needs the model in process "
                "(type: transformers)"
            )

    @property
    def context_window(self) -> int:
        return self.model_info().context_window

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text))

    def prompt_tokens(self, messages: Sequence[Message]) -> int:
        return self.count_tokens(self.render(messages))

    def decoding(self) -> dict[str, Any]:
        """Decoding parameters that change outputs (part of the generation cache key)."""
        return {"max_new_tokens": self.max_new_tokens, "temperature": 0.0}

    def gpus(self, available: bool) -> int:
        """GPUs a worker holding this generator reserves (a cluster executor asks for them per
        worker); ``available``: whether the cluster has any. 0: it runs on CPUs, or calls a server."""
        return 0

    def input_limit(self, max_new_tokens: int | None = None) -> int:
        """Most prompt tokens that leave room for the answer inside the window."""
        return self.context_window - (max_new_tokens or self.max_new_tokens)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        prompts, cut = [], []
        for request in requests:
            self.check_method(request)
            prompt = self.render(request.messages)
            ids = self.tokenizer.encode(prompt)
            limit = self.input_limit(request.max_new_tokens)
            if len(ids) > limit:  # last-resort guard: keep the end (question and instructions)
                cut.append(len(ids) - limit)
                prompt = self.tokenizer.decode(ids[len(ids) - limit :])
            else:
                cut.append(0)
            prompts.append(prompt)
        outputs = self._generate(prompts, list(requests))
        for output, dropped in zip(outputs, cut, strict=True):
            output.truncated_tokens += dropped
        return outputs
