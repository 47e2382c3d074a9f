"""Generation with Hugging Face transformers on CPU or GPU (the default generator).

Tokenizer and config load without the weights (see :mod:`ragkit.generators._hf`), so
``ragkit estimate`` and the haystack builder count tokens cheaply; weights load on the first
``generate``.
"""

from __future__ import annotations

import time
from typing import Any

from ragkit.constraints import Count, Device, Tokens, TorchDtype
from ragkit.generators._hf import (
    HFPromptGenerator,
    PromptStyle,
    cut_at_stop,
    load_dequantised,
    save_dequantised,
)
from ragkit.generators._kv_prefix import PrefixReuse, cache_argument
from ragkit.generators._methods import METHODS, InternalMethods
from ragkit.generators._prefix import group_by_prefix
from ragkit.generators.base import Generation, GenerationRequest, Prices
from ragkit.registry import register


class _PrefillTimer:
    """A logits processor that changes nothing: its first call comes right after the prefill
    forward pass (the first token's logits), which splits one ``generate`` call into prefill and
    decode time without running the prefill twice."""

    def __init__(self, sync: Any = None) -> None:
        self.sync = sync
        self.first: float | None = None

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if self.first is None:
            if self.sync is not None:
                self.sync()  # GPU work is asynchronous: wait for the prefill to really finish
            self.first = time.perf_counter()
        return scores


class _StopStrings:
    """Stops a row once its decoded answer contains a stop string. Written here because
    transformers' own ``stop_strings`` fails on tokenizers whose vocabulary it cannot map to
    strings (word-level ones); decoding a short answer per step is cheap."""

    def __init__(self, tokenizer: Any, stops: tuple[str, ...], prompt_length: int) -> None:
        self.tokenizer = tokenizer
        self.stops = stops
        self.prompt_length = prompt_length

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_length :], skip_special_tokens=True)
        done = [cut_at_stop(text, self.stops)[1] is not None for text in texts]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


@register("generator", "transformers")
class TransformersGenerator(InternalMethods, PrefixReuse, HFPromptGenerator):
    """Greedy decoding with ``transformers``; batched with left padding (prompts of similar length
    are batched together). Requests with a ``method`` (GemFilter, speculative decoding) run one
    at a time through :mod:`._methods`."""

    version = "2"  # 2: stop strings count only after the answer's first non-blank character
    methods = METHODS

    def __init__(
        self,
        *,
        model: str = "smollm2",
        gguf_file: str | None = None,
        max_new_tokens: Tokens = 32,
        batch_size: Count = 8,
        dtype: TorchDtype = "auto",
        device: Device = "auto",
        context_window: Tokens | None = None,
        prompt_style: PromptStyle = "auto",
        stop: list[str] | None = None,
        prefix_reuse: bool = True,
        prices: Prices | None = None,
    ) -> None:
        self.model = model
        self.gguf_file = gguf_file
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.dtype = dtype
        self.device = device
        self.context_window_ = context_window  # read back via the base class property
        self.prompt_style = prompt_style
        self.stop = stop
        self.prefix_reuse = prefix_reuse
        self.prices = prices
        self.model_ = None
        self.held_prefix_ = None  # see PrefixReuse

    def gpus(self, available: bool) -> int:
        if self.device == "auto":
            return 1 if available else 0
        return 1 if self.device.startswith("cuda") else 0

    def resolved_device(self) -> str:
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def resolved_dtype(self) -> str:
        if self.dtype != "auto":
            return self.dtype
        if not self.resolved_device().startswith("cuda"):
            return "float32"  # half precision on CPU is slow and, for small models, less accurate
        import torch

        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"

    def decoding(self) -> dict[str, Any]:
        # spec() already holds every constructor argument; these are what "auto" and a package
        # name resolve to here, which also change outputs.
        return {
            "max_new_tokens": self.max_new_tokens,
            "temperature": 0.0,
            "stop": list(self.stop or []),
            "prompt_style": self.resolved_prompt_style(),
            "dtype": self.resolved_dtype(),
            "device": self.resolved_device().split(":")[0],
            "weights": self.model_fingerprint(),
        }

    def _load_model(self) -> Any:
        if self.model_ is None:
            import torch
            from transformers import AutoModelForCausalLM

            self._load_meta()
            folder, gguf = self._source()
            dtype = getattr(torch, self.resolved_dtype())
            converted = self._converted_dir()
            cached = converted / f"weights-{self.resolved_dtype()}" if converted is not None else None
            loaded = load_dequantised(cached, dtype) if cached is not None else None
            if loaded is None:
                extra = {"gguf_file": gguf} if gguf else {}
                try:
                    loaded = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, **extra)
                except (OSError, ValueError) as exc:
                    raise self._load_error("weights", exc) from exc
                if cached is not None:
                    save_dequantised(cached, loaded)
            self.model_ = loaded.to(self.resolved_device()).eval()
        return self.model_

    def _generate(self, prompts: list[str], requests: list[GenerationRequest]) -> list[Generation]:
        self._load_model()
        pairs = enumerate(zip(prompts, requests, strict=True))
        out: dict[int, Generation] = {i: self._method(p, r) for i, (p, r) in pairs if r.method}
        batched = [i for i in range(len(prompts)) if i not in out]
        if self.prefix_reuse:
            plain, batched = batched, []
            ids = {i: self.tokenizer.encode(prompts[i]) for i in plain}
            for group in group_by_prefix([ids[i] for i in plain]):
                members = [plain[m] for m in group.members]
                shared = group.shared or self._held_match(ids[members[0]])
                if not shared:  # a prompt that shares no long prefix: batched as usual
                    batched += members
                    continue
                done = self._with_prefix([ids[i] for i in members], shared, [requests[i] for i in members])
                out.update(zip(members, done, strict=True))
        if batched:
            done = self._generate_batched([prompts[i] for i in batched], [requests[i] for i in batched])
            out.update(zip(batched, done, strict=True))
        return [out[i] for i in range(len(prompts))]

    def _by_decoding(self, requests: list[GenerationRequest]) -> dict[tuple[int, tuple[str, ...]], list[int]]:
        """Request indices by what one ``generate`` call must share: output limit and stops."""
        groups: dict[tuple[int, tuple[str, ...]], list[int]] = {}
        for i, request in enumerate(requests):
            key = (request.max_new_tokens or self.max_new_tokens, self.stop_strings(request))
            groups.setdefault(key, []).append(i)
        return groups

    def _generate_batched(self, prompts: list[str], requests: list[GenerationRequest]) -> list[Generation]:
        groups = self._by_decoding(requests)
        lengths = [len(p) for p in prompts]  # characters: a free proxy for tokens, only to sort
        out: list[Generation | None] = [None] * len(prompts)
        for (max_new, stops), indices in groups.items():
            indices.sort(key=lambda i: -lengths[i])  # similar lengths together: less padding
            for start in range(0, len(indices), max(1, self.batch_size)):
                batch = indices[start : start + max(1, self.batch_size)]
                for i, generation in zip(
                    batch, self._batch([prompts[i] for i in batch], max_new, stops), strict=True
                ):
                    out[i] = generation
        return [g for g in out if g is not None]

    def _eos_ids(self) -> set[int]:
        eos = self.model_.generation_config.eos_token_id
        return {*(eos if isinstance(eos, list) else [eos]), self.hf_tokenizer_.eos_token_id} - {None}

    def _run(
        self, encoded: dict[str, Any], max_new: int, stops: tuple[str, ...], past: Any = None
    ) -> tuple[Any, float, float]:
        """``model.generate`` greedily; returns the output ids and the prefill and decode seconds.
        With ``past`` (a KV cache of the prompts' first tokens) only the rest is computed."""
        import torch

        tok = self.hf_tokenizer_
        model = self.model_
        cuda = model.device.type == "cuda"
        timer = _PrefillTimer(torch.cuda.synchronize if cuda else None)
        started = time.perf_counter()
        with torch.inference_mode():
            output = model.generate(
                **encoded,
                **({} if past is None else {cache_argument(model): past}),
                max_new_tokens=max_new,
                do_sample=False,
                temperature=None,  # unset sampling knobs a model's generation_config may carry
                top_p=None,
                top_k=None,
                pad_token_id=tok.pad_token_id,
                eos_token_id=sorted(self._eos_ids()),
                logits_processor=[timer],
                stopping_criteria=[_StopStrings(tok, stops, encoded["input_ids"].shape[1])]
                if stops
                else None,
            )
        if cuda:
            torch.cuda.synchronize()
        ended = time.perf_counter()
        first = timer.first or ended
        return output, first - started, ended - first

    def _batch(self, prompts: list[str], max_new: int, stops: tuple[str, ...]) -> list[Generation]:
        tok = self.hf_tokenizer_
        encoded = tok(
            prompts, return_tensors="pt", padding=True, add_special_tokens=self.tokenizer.add_special_tokens
        ).to(self.model_.device)
        output, prefill, decode = self._run(encoded, max_new, stops)
        n_in = encoded["attention_mask"].sum(dim=1).tolist()
        new_ids = output[:, encoded["input_ids"].shape[1] :].tolist()
        # One batched call serves every row: its prefill time is shared in proportion to each
        # prompt's (unpadded) tokens, since prefill work is dominated by per-token matmuls; decode
        # steps run for all rows together until the longest finishes, so each row gets an equal
        # share of the decode time.
        results = []
        for ids, n_prompt in zip(new_ids, n_in, strict=True):
            text, n_out = self._answer(ids, self._eos_ids(), tok.pad_token_id, stops)
            results.append(
                Generation(
                    text=text,
                    input_tokens=int(n_prompt),
                    output_tokens=n_out,
                    prefill_seconds=prefill * n_prompt / max(1, sum(n_in)),
                    decode_seconds=decode / len(prompts),
                )
            )
        return results

    def _answer(
        self, ids: list[int], eos_ids: set[int], pad_id: int | None, stops: tuple[str, ...]
    ) -> tuple[str, int]:
        """The answer text and its output-token count: tokens up to and including EOS (it was
        generated), never the padding after it; with a stop string, up to the token completing it."""
        n = len(ids)
        for j, token in enumerate(ids):
            if token in eos_ids or token == pad_id:
                n = j + 1 if token in eos_ids else j
                break
        decode = self.hf_tokenizer_.decode
        text, stop = cut_at_stop(decode(ids[:n], skip_special_tokens=True), stops)
        if stop is not None:
            n = next(
                m
                for m in range(1, n + 1)
                if cut_at_stop(decode(ids[:m], skip_special_tokens=True), (stop,))[1] is not None
            )
        return text.strip(), n
