"""What a context costs a server: KV-cache memory, concurrency and time bounds on a chosen GPU.

The model of Fu (2024), "Challenges in deploying long-context transformers: a theoretical peak
performance analysis" (arXiv 2405.08944): on one accelerator the weights stay resident, every
concurrent request holds its KV cache in the memory left over, prefill is bound by compute (its
FLOPs over the peak FLOP/s) and each decode step by memory bandwidth (the weights plus the KV
cache read once per step). The extra cost of a long context traces back to the KV cache's size:
it caps concurrency and lengthens every decode step.

- KV cache per token: keys and values (2) x key/value heads x head size x bytes per value, summed
  over layers; grouped-query attention shares one key/value head between several query heads,
  and a sliding-window layer (Gemma 3's local layers) holds at most its window of tokens.
- Concurrency: ``floor((memory x utilisation - weights) / KV cache per question)``. The
  utilisation (default 0.9, vLLM's ``gpu_memory_utilization``) leaves room for activations and
  the engine itself, which the paper's peak analysis ignores.
- Time bounds are rooflines: each phase takes at least ``max(FLOPs / peak FLOP/s, bytes read /
  bandwidth)``. FLOPs are ragkit's one currency (:func:`ragkit.budget.call_flops`). Real engines
  reach a fraction of these peaks, so these are lower bounds on seconds and upper bounds on
  throughput.
- A prefix shared by several questions (the same documents before different questions) is held
  and prefilled once when the generator reuses prefixes: the estimate passes the tokens each
  question computes itself (``Cost.prefill_tokens_computed``), and the shared prefix is spread
  over the questions that share it.

The accelerators are a catalog (``gpus/*.yaml``: memory, bandwidth, peak FLOP/s per dtype and
where the numbers come from); a ``gpus/`` folder of your own adds or overrides entries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pydantic

from ragkit.generators.base import ModelInfo

BYTES_PER_VALUE = {"float32": 4, "bfloat16": 2, "float16": 2, "float8": 1}
DEFAULT_UTILISATION = 0.9  # vLLM's default gpu_memory_utilization


class Hardware(pydantic.BaseModel):
    """One accelerator (a ``gpus/`` catalog entry). Peaks are dense (no structured sparsity)."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    name: str
    memory_gb: float = pydantic.Field(gt=0, description="memory for weights and KV cache, 1e9 bytes")
    bandwidth_gb_s: float = pydantic.Field(gt=0, description="memory bandwidth, 1e9 bytes per second")
    peak_tflops: dict[str, pydantic.PositiveFloat] = pydantic.Field(description="dense peak per dtype")
    dtype: str = pydantic.Field("bfloat16", description="what weights and KV cache are stored in")
    source: str

    @pydantic.model_validator(mode="after")
    def _known_dtypes(self) -> Hardware:
        for name in [*self.peak_tflops, self.dtype]:
            if name not in BYTES_PER_VALUE:
                raise ValueError(f"unknown dtype {name!r}; expected one of {', '.join(BYTES_PER_VALUE)}")
        if self.dtype not in self.peak_tflops:
            raise ValueError(f"dtype {self.dtype!r} has no peak_tflops entry")
        return self

    def peak_flops(self, dtype: str) -> float:
        if dtype not in self.peak_tflops:
            raise ValueError(f"{self.name} lists no peak for {dtype!r} (has {', '.join(self.peak_tflops)})")
        return self.peak_tflops[dtype] * 1e12


def load_hardware(name: str) -> Hardware:
    """The ``gpus/`` catalog entry ``name``; ValueError naming the file and field when it is bad,
    or the entries there are when it is unknown."""
    from ragkit.config import ConfigError, catalog_dirs, catalog_names, find_catalog, read_yaml

    path = find_catalog("gpu", name)
    if path is None:
        searched = ", ".join(str(d) for d in catalog_dirs("gpu"))
        raise ValueError(
            f"unknown GPU {name!r}; expected one of {', '.join(catalog_names('gpu'))} "
            f"(catalog folders searched: {searched})"
        )
    data = read_yaml(path)
    try:
        return Hardware(**(data or {}))
    except (pydantic.ValidationError, TypeError) as exc:
        errors = exc.errors() if isinstance(exc, pydantic.ValidationError) else [{"loc": (), "msg": str(exc)}]
        first = errors[0]
        raise ConfigError(path, ".".join(str(p) for p in first["loc"]), first["msg"]) from None


@dataclass(frozen=True)
class KVShape:
    """Per layer, the values one token adds to the KV cache and how many tokens the layer keeps."""

    values_per_token: tuple[int, ...]  # 2 x key/value heads x head size, per layer
    windows: tuple[int | None, ...]  # None: the whole context
    assumed_mha: bool = False  # attention facts unknown: multi-head attention over d_model

    @classmethod
    def of(cls, info: ModelInfo) -> KVShape:
        assumed = info.n_kv_heads is None or info.head_dim is None
        # unknown heads: one key and one value vector of the hidden size per layer
        per_layer = 2 * info.d_model if assumed else 2 * int(info.n_kv_heads) * int(info.head_dim)  # type: ignore[arg-type]
        windows = info.layer_windows or (None,) * info.n_layers
        if len(windows) != info.n_layers:
            raise ValueError(f"{len(windows)} layer windows for {info.n_layers} layers")
        return cls((per_layer,) * info.n_layers, tuple(windows), assumed)

    def values(self, tokens: float) -> float:
        """Values held for a sequence of ``tokens`` tokens (windowed layers hold their window)."""
        return sum(
            v * (tokens if w is None else min(tokens, w))
            for v, w in zip(self.values_per_token, self.windows, strict=True)
        )

    def values_per_token_all_layers(self) -> int:
        """Values one token adds while the sequence is shorter than every window."""
        return sum(self.values_per_token)


@dataclass
class Serving:
    """One configuration's serving figures on one accelerator (means over its questions)."""

    kv_bytes_per_token: float
    kv_bytes_per_question: float
    weights_bytes: float
    max_concurrency: int
    prefill_seconds: float  # one question alone on the accelerator, a lower bound
    decode_seconds: float  # one question alone: every step reads the weights and its KV cache
    questions_per_second: float  # at max concurrency, an upper bound on throughput


def serving(
    info: ModelInfo,
    hardware: Hardware,
    questions: list[dict[str, float]],
    *,
    dtype: str | None = None,
    utilisation: float = DEFAULT_UTILISATION,
) -> Serving:
    """Serving figures for questions given as ``{"input", "computed", "output", "calls"}`` (the
    prompt tokens a question reads, those it computes itself after prefix reuse, its output tokens
    and its generator calls; calls are taken as equal in size, as only their totals are known
    before anything runs). Means over the questions; concurrency from the mean KV cache."""
    from ragkit.budget import call_flops

    if not questions:
        raise ValueError("no questions to estimate")
    dtype = dtype or hardware.dtype
    size = BYTES_PER_VALUE[dtype]
    peak, bandwidth = hardware.peak_flops(dtype), hardware.bandwidth_gb_s * 1e9
    shape = KVShape.of(info)
    weights = info.n_params * size
    kv_held, prefill, decode, step_kv, step_flops, outputs = [], [], [], [], [], []
    for q in questions:
        calls = max(1.0, q["calls"])
        n_in, out = q["input"] / calls, q["output"] / calls
        shared = max(0.0, q["input"] - q["computed"]) / calls
        # Held while decoding: the tokens it computed itself (a shared prefix is held once, so
        # its share is already spread over the group's questions) plus its answer.
        kv_held.append(shape.values(n_in - shared + out) * size)
        flops = call_flops(info, round(n_in), 0) - call_flops(info, round(shared), 0)
        prefill.append(calls * max(flops / peak, weights / bandwidth))
        middle = n_in + out / 2  # decode steps read, on average, the cache at mid-answer
        bytes_read = weights + shape.values(middle) * size
        per_step_flops = call_flops(info, round(middle) + 1, 0) - call_flops(info, round(middle), 0)
        decode.append(calls * out * max(bytes_read / bandwidth, per_step_flops / peak))
        step_kv.append(calls * out * shape.values(middle) * size)
        step_flops.append(calls * out * per_step_flops)
        outputs.append(calls * out)
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    free = hardware.memory_gb * 1e9 * utilisation - weights
    per_question = mean(kv_held)
    concurrency = max(0, math.floor(free / per_question)) if per_question > 0 else 0
    return Serving(
        kv_bytes_per_token=shape.values_per_token_all_layers() * size,
        kv_bytes_per_question=per_question,
        weights_bytes=weights,
        max_concurrency=concurrency,
        prefill_seconds=mean(prefill),
        decode_seconds=mean(decode),
        questions_per_second=_throughput(
            concurrency,
            mean(prefill),
            mean(outputs),
            mean(step_kv),
            mean(step_flops),
            weights,
            bandwidth,
            peak,
        ),
    )


def _throughput(
    concurrency: int,
    prefill: float,
    steps: float,
    kv_read: float,
    flops: float,
    weights: float,
    bandwidth: float,
    peak: float,
) -> float:
    """Questions per second with ``concurrency`` questions in flight (continuous batching): each
    question's prefill is compute it cannot share; decode steps serve all of them at once, reading
    the weights once per step and every question's KV cache. Per question of the batch, decoding
    takes ``steps`` steps; ``kv_read`` and ``flops`` are its KV bytes read and FLOPs over them."""
    if concurrency <= 0 or steps <= 0:
        return concurrency / prefill if prefill > 0 and concurrency > 0 else 0.0
    c = concurrency
    decode = max((steps * weights + c * kv_read) / bandwidth, c * flops / peak)
    return c / (c * prefill + decode)


def cost_rows(costs: list[Any]) -> list[dict[str, float]]:
    """:func:`serving`'s input from estimated costs (:class:`ragkit.types.Cost`)."""
    return [
        {
            "input": float(c.input_tokens),
            "computed": float(c.prefill_tokens_computed or c.input_tokens),
            "output": float(c.output_tokens),
            "calls": float(max(1, c.calls)),
        }
        for c in costs
    ]


def format_bytes(value: float) -> str:
    """Decimal units, as GPU memory is quoted (80 GB = 80e9 bytes)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.0f} B"
