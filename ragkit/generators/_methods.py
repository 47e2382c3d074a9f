"""Model-internal methods of the transformers generator (``GenerationRequest.method``): GemFilter
token selection and RAPID's speculative decoding with a retrieval-context draft. A mixin of
:class:`~ragkit.generators.transformers.TransformersGenerator`, like :mod:`._kv_prefix`: it uses
that class's ``_run`` (one ``model.generate``) and ``_answer`` (text and output tokens of a row).

Each method returns an ordinary :class:`Generation` whose ``input_tokens`` are what the model
read (the whole prompt; for speculation, the target's and the draft's prompts together, as two
calls would count) and whose ``flops`` and ``prefill_tokens`` say what was really computed, so
these methods sit in the same tables and budgets as RAG and full context.
"""

from __future__ import annotations

import math
from typing import Any

from ragkit.generators.base import Generation, GenerationRequest

METHODS = ("gemfilter", "speculative")


class InternalMethods:
    model_: Any
    hf_tokenizer_: Any
    max_new_tokens: int

    def _method(self, prompt: str, request: GenerationRequest) -> Generation:
        method = dict(request.method or {})
        name = method.pop("name")
        max_new = request.max_new_tokens or self.max_new_tokens
        stops = self.stop_strings(request)  # type: ignore[attr-defined]
        ids = self.tokenizer.encode(prompt)  # type: ignore[attr-defined]
        if name == "gemfilter":
            return self._gemfilter(ids, max_new, stops, **method)
        return self._speculative(ids, max_new, stops, **method)

    def _ids_run(self, ids: list[int], max_new: int, stops: tuple[str, ...]) -> tuple[str, int, float, float]:
        """Greedy generation from token ids: answer text, output tokens, prefill and decode s."""
        import torch

        as_tensor = torch.tensor([ids], device=self.model_.device)
        encoded = {"input_ids": as_tensor, "attention_mask": torch.ones_like(as_tensor)}
        output, prefill, decode = self._run(encoded, max_new, stops)  # type: ignore[attr-defined]
        pad = self.hf_tokenizer_.pad_token_id
        text, n_out = self._answer(output[0, len(ids) :].tolist(), self._eos_ids(), pad, stops)  # type: ignore[attr-defined]
        return text, n_out, prefill, decode

    def _gemfilter(
        self, ids: list[int], max_new: int, stops: tuple[str, ...], *, keep: int, layer: int | None = None,
        protect: int = 0, pool: int = 5,
    ) -> Generation:  # fmt: skip
        from ragkit.budget import call_flops, layers_flops
        from ragkit.generators import _gemfilter as gem

        info = self.model_info()  # type: ignore[attr-defined]
        layer = gem.default_layer(info.n_layers, info.layer_windows) if layer is None else layer
        if keep >= len(ids):  # nothing to filter: the plain call
            kept, filter_seconds, filter_flops, run = list(range(len(ids))), 0.0, 0.0, 0
        else:
            scores, filter_seconds = gem.token_scores(self.model_, ids, layer)
            kept = gem.select(scores, keep, protect, pool)
            run = layer + 1
            filter_flops = layers_flops(info, len(ids), run)
        text, n_out, prefill, decode = self._ids_run([ids[i] for i in kept], max_new, stops)
        return Generation(
            text=text,
            input_tokens=len(ids),
            output_tokens=n_out,
            prefill_seconds=filter_seconds + prefill,
            decode_seconds=decode,
            # layer-weighted: the filter pass ran the whole prompt through run/n_layers of the model
            prefill_tokens=len(kept) + math.ceil(len(ids) * run / info.n_layers),
            flops=filter_flops + call_flops(info, len(kept), n_out),
            meta={
                "method": "gemfilter",
                "kept_tokens": len(kept),
                "filter_layer": layer,
                "filter_seconds": round(filter_seconds, 6),
                "kept": gem.ranges(kept),
            },
        )

    def _speculative(
        self, ids: list[int], max_new: int, stops: tuple[str, ...], *, draft: list[dict[str, str]],
        lookahead: int = 4,
    ) -> Generation:  # fmt: skip
        from ragkit.budget import call_flops
        from ragkit.generators._hf import cut_at_stop
        from ragkit.generators._speculative import speculate

        draft_ids = self.tokenizer.encode(self.render(draft))  # type: ignore[attr-defined]
        decode = self.hf_tokenizer_.decode

        def done(tokens: list[int]) -> bool:
            return bool(stops) and cut_at_stop(decode(tokens, skip_special_tokens=True), stops)[1] is not None

        eos = self._eos_ids()  # type: ignore[attr-defined]
        result = speculate(
            self.model_, ids, draft_ids, max_new=max_new, lookahead=lookahead, eos=eos, done=done
        )
        text, n_out = self._answer(result.tokens, eos, self.hf_tokenizer_.pad_token_id, stops)  # type: ignore[attr-defined]
        info = self.model_info()  # type: ignore[attr-defined]
        # target: its prompt, then one pass per round over its last token and the proposal (the
        # rejected tail included: it was computed); draft: its prompt and its proposals
        target_tokens = len(ids) + sum(result.verify_tokens)
        draft_tokens = len(draft_ids) + result.proposed
        flops = call_flops(info, target_tokens, 0) + call_flops(info, draft_tokens, 0)
        return Generation(
            text=text,
            input_tokens=len(ids) + len(draft_ids),
            output_tokens=n_out,
            prefill_seconds=result.target_prefill_seconds + result.draft_prefill_seconds,
            decode_seconds=result.decode_seconds,
            flops=flops,
            meta={
                "method": "speculative",
                "target_tokens": len(ids),
                "draft_tokens": len(draft_ids),
                "proposed": result.proposed,
                "accepted": result.accepted,
                "acceptance": round(result.acceptance, 4),
                "rounds": result.rounds,
                "draft_seconds": round(result.draft_seconds, 6),
                "tokens": result.tokens[:n_out],
            },
        )
