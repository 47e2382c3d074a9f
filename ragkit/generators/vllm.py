"""Generation with vLLM's offline engine (``vllm.LLM``) on CUDA machines.

Same interface and prompts as the transformers generator (tokenizer, rendering and model facts come
from the same HF files, so token counts agree and ``ragkit estimate`` works without vLLM). Prompts
are sent as token ids, so vLLM adds no second BOS to a rendered chat template.
vLLM is imported inside methods: it is an optional extra that pins a CUDA torch.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ragkit.generators._hf import HFPromptGenerator, PromptStyle
from ragkit.generators.base import Generation, GenerationRequest, Prices
from ragkit.registry import register

INSTALL_HINT = "the vllm generator needs vLLM: pip install 'ragkit[vllm]' on a CUDA machine"


@register("generator", "vllm")
class VLLMGenerator(HFPromptGenerator):
    """Greedy decoding (``temperature=0``) with continuous batching over all requests of a call."""

    version = "1"

    def __init__(
        self,
        *,
        model: str = "smollm2",
        gguf_file: str | None = None,
        max_new_tokens: int = 32,
        dtype: str = "auto",
        context_window: int | None = None,
        prompt_style: PromptStyle = "auto",
        stop: list[str] | None = None,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
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
        self.prices = prices
        self.engine_ = None

    def decoding(self) -> dict[str, Any]:
        return {
            "max_new_tokens": self.max_new_tokens,
            "temperature": 0.0,
            "stop": list(self.stop or []),
            "prompt_style": self.resolved_prompt_style(),
            "weights": self.model_fingerprint(),
        }

    def engine_kwargs(self) -> dict[str, Any]:
        """Arguments of ``vllm.LLM`` (a GGUF file is passed as a path with its converted tokenizer)."""
        self._load_meta()
        folder, gguf = self._source()
        kwargs: dict[str, Any] = {
            "model": str(Path(folder) / gguf) if gguf else folder,
            "dtype": self.dtype,
            "tensor_parallel_size": self.tensor_parallel_size,
            "gpu_memory_utilization": self.gpu_memory_utilization,
            "seed": 0,
        }
        converted = self._converted_dir()
        if converted is not None and (converted / "tokenizer_config.json").is_file():
            kwargs["tokenizer"] = str(converted)
        if self.context_window_:
            kwargs["max_model_len"] = self.context_window_
        return kwargs

    def _engine(self) -> Any:
        if self.engine_ is None:
            try:
                import vllm
            except ImportError as exc:
                raise ImportError(INSTALL_HINT) from exc
            self.engine_ = vllm.LLM(**self.engine_kwargs())
        return self.engine_

    def _generate(self, prompts: list[str], requests: list[GenerationRequest]) -> list[Generation]:
        engine = self._engine()
        from vllm import SamplingParams

        params = [
            SamplingParams(
                temperature=0.0,
                max_tokens=request.max_new_tokens or self.max_new_tokens,
                stop=list(self.stop_strings(request)) or None,
            )
            for request in requests
        ]
        inputs = [{"prompt_token_ids": self.tokenizer.encode(p)} for p in prompts]
        started = time.perf_counter()
        outputs = engine.generate(inputs, params, use_tqdm=False)
        wall = time.perf_counter() - started
        # Requests overlap under continuous batching, so per-request latencies would count the
        # same GPU time several times: each request gets an equal share of the call's wall time,
        # split into prefill and decode by its own first-token timing when vLLM reports it.
        share = wall / max(1, len(outputs))
        results = []
        for output in outputs:
            completion = output.outputs[0]
            fraction = _prefill_fraction(output)
            results.append(
                Generation(
                    text=completion.text.strip(),
                    input_tokens=len(output.prompt_token_ids),
                    output_tokens=len(completion.token_ids),
                    prefill_seconds=share * (fraction or 0.0),
                    decode_seconds=share * (1.0 - (fraction or 0.0)),
                    meta={} if fraction is not None else {"timing": "wall-time share, not split"},
                )
            )
        return results


def _prefill_fraction(output: Any) -> float | None:
    """Share of a request's latency spent before its first token, from vLLM's request metrics
    (their names differ across vLLM versions; None when they are absent)."""
    metrics = getattr(output, "metrics", None)
    start = getattr(metrics, "first_scheduled_time", None) or getattr(metrics, "arrival_time", None)
    first = getattr(metrics, "first_token_time", None)
    last = getattr(metrics, "last_token_time", None) or getattr(metrics, "finished_time", None)
    if not (start and first and last) or last <= start:
        return None
    return min(1.0, max(0.0, (first - start) / (last - start)))
