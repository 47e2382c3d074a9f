"""Prefix reuse for the transformers generator: prompts sharing a long prefix (the same documents
before different questions) are answered from one KV cache of that prefix.

The last prefix is kept between calls: the runner hands a document's questions over in several
batches, each a call. One prefix only, so memory stays bounded (SmolLM2, 8k tokens: ~380 MB in
float32). A mixin of :class:`~ragkit.generators.transformers.TransformersGenerator`: it uses that
class's ``_run`` (one ``model.generate``) and ``_answer`` (text and output tokens of a row).
"""

from __future__ import annotations

import time
from typing import Any

from ragkit.generators._prefix import MIN_SHARED_TOKENS, common_prefix
from ragkit.generators.base import Generation, GenerationRequest


def cache_argument(model: Any) -> str:
    """The name under which this transformers version takes a KV cache (``cache`` from 5.2x on,
    ``past_key_values`` before: vLLM's venv pins an older transformers than the main one)."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


class PrefixReuse:
    held_prefix_: tuple[list[int], Any] | None = None  # (token ids, their KV cache)
    model_: Any
    hf_tokenizer_: Any
    batch_size: int
    max_new_tokens: int

    def _held_match(self, ids: list[int]) -> int:
        """Tokens of ``ids`` covered by the held prefix cache (0 when under the reuse threshold)."""
        if self.held_prefix_ is None:
            return 0
        shared = min(common_prefix(self.held_prefix_[0], ids), len(ids) - 1)
        return shared if shared >= MIN_SHARED_TOKENS else 0

    def _prefix_cache(self, prefix: list[int]) -> tuple[Any, int, float]:
        """A KV cache of ``prefix`` (the held one when it covers it), the prompt tokens computed
        for it now (0 when held) and the seconds that took."""
        import torch
        from transformers import DynamicCache

        if self.held_prefix_ is not None and self.held_prefix_[0] == prefix:
            return self.held_prefix_[1], 0, 0.0
        model = self.model_
        cache = DynamicCache(config=model.config)
        started = time.perf_counter()
        with torch.inference_mode():
            tokens = torch.tensor([prefix], device=model.device)
            model(tokens, use_cache=True, **{cache_argument(model): cache})
        if model.device.type == "cuda":
            torch.cuda.synchronize()
        self.held_prefix_ = (list(prefix), cache)
        return cache, len(prefix), time.perf_counter() - started

    def _with_prefix(
        self, ids: list[list[int]], shared: int, requests: list[GenerationRequest]
    ) -> list[Generation]:
        """Answer prompts whose first ``shared`` tokens are the same from one KV cache of them,
        in batches: each row is the prefix, left padding, then its own tokens, so the padding
        sits between the cached prefix and the row's tokens (masked; position ids follow the
        attention mask, so every token keeps its unpadded position: logits match one-by-one runs
        to float rounding). The question that computes the prefix is charged its tokens and
        seconds; the others only what they computed themselves."""
        import copy
        import functools

        import torch

        held = self._held_match(ids[0])
        if held and all(common_prefix(self.held_prefix_[0], i) >= held for i in ids):  # type: ignore[index]
            shared = held  # the held prefix covers the whole group: nothing to compute for it
        cache, computed, seconds = self._prefix_cache(ids[0][:shared])
        pad = self.hf_tokenizer_.pad_token_id
        size = max(1, self.batch_size)
        kinds = self._by_decoding(requests)
        batches = [(key, m[j : j + size]) for key, m in kinds.items() for j in range(0, len(m), size)]
        out: dict[int, Generation] = {}
        for (max_new, stops), batch in batches:
            own = [ids[i][shared:] for i in batch]
            width = max(len(o) for o in own)
            rows = [ids[batch[0]][:shared] + [pad] * (width - len(o)) + o for o in own]
            mask = [[1] * shared + [0] * (width - len(o)) + [1] * len(o) for o in own]
            past = copy.deepcopy(cache)  # generate() appends to it; the prefix stays for the next
            if len(batch) > 1:
                past.batch_repeat_interleave(len(batch))
            as_tensor = functools.partial(torch.tensor, device=self.model_.device)
            encoded = {"input_ids": as_tensor(rows), "attention_mask": as_tensor(mask)}
            output, prefill, decode = self._run(encoded, max_new, stops, past=past)
            total = sum(len(o) for o in own)
            for row, (i, o) in enumerate(zip(batch, own, strict=True)):
                text, n_out = self._answer(output[row, len(rows[0]) :].tolist(), self._eos_ids(), pad, stops)
                out[i] = Generation(
                    text=text,
                    input_tokens=len(ids[i]),
                    output_tokens=n_out,
                    prefill_seconds=prefill * len(o) / total + seconds,
                    decode_seconds=decode / len(batch),
                    prefill_tokens=len(o) + computed,
                    meta={"prefix_reused": shared - computed},
                )
                computed, seconds = 0, 0.0
        return [out[i] for i in range(len(ids))]
