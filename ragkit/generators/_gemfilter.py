"""GemFilter: the early layers of the model pick the prompt tokens the whole model then reads.

Shi et al. (2024), "Discovering the gems in early layers: accelerating long-context LLMs with
1000x input token reduction" (arXiv 2409.17422). The selection rule, as in the paper's
Algorithm 1 and the authors' implementation:

1. run the prompt through the layers up to the filter layer ``r`` (0-based, as the authors'
   ``select_layer_idx``; ``r + 1`` layers run) and stop inside layer ``r``'s attention;
2. score every prompt position by the last query token's attention logits at layer ``r``:
   ``q_last · k_j`` after rotary embeddings, summed over heads (grouped-query attention repeats
   each key/value head for its query heads), smoothed by a mean over 5 neighbouring positions
   (``avg_pool1d``, kernel 5, the authors' implementation: a token next to a relevant one is
   kept with it);
3. keep the top ``k`` positions, in their original order, and run the full model on those tokens
   alone, with fresh positions 0..k-1 (a new prefill, not a pruned KV cache), then decode.

One addition: ``protect`` tokens at the end of the prompt (the question and the answer cue) are
always kept and count toward ``k``. In the paper's prompts the question ends the input and the
last query's neighbours are selected anyway; a 135M model loses its answer format when the chat
template's last tokens are dropped, so ragkit keeps them explicitly. ``protect=0`` is the rule
as published.

The filter pass swaps the model's attention function for one that records the scores and stops
the forward pass (an exception): no copy of the model, no layer surgery, and the same code for
every architecture transformers runs through its attention interface (Llama, Gemma 3, ...).
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

_IMPLEMENTATION = "ragkit_gemfilter"
POOL = 5  # the authors' avg_pool1d kernel


@dataclass
class _Capture:
    layer: int
    scores: Any = None


class _Stop(Exception):
    """Not an error: ends the filter pass inside the filter layer."""


_CAPTURE: ContextVar[_Capture | None] = ContextVar("ragkit_gemfilter_capture", default=None)
_registered = False


def _attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, **kwargs: Any) -> Any:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    capture = _CAPTURE.get()
    if capture is not None and getattr(module, "layer_idx", None) == capture.layer:
        import torch

        groups = query.shape[1] // key.shape[1]
        keys = key.repeat_interleave(groups, dim=1) if groups > 1 else key
        # (batch, heads, dim) x (batch, heads, positions, dim) -> (batch, positions), over heads
        capture.scores = torch.einsum("bhd,bhpd->bp", query[:, :, -1].float(), keys.float())
        raise _Stop
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


def _register() -> None:
    global _registered
    if not _registered:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

        AttentionInterface.register(_IMPLEMENTATION, _attention)
        AttentionMaskInterface.register(_IMPLEMENTATION, sdpa_mask)
        _registered = True


def default_layer(n_layers: int, windows: tuple[int | None, ...] | None) -> int:
    """A filter layer at ~45% of the depth, as the paper's (13 of 32 in LLaMA 3.1 8B, 19 of 40 in
    Mistral NeMo, 19 of 32 in Phi 3.5): the nearest layer that attends to the whole context (a
    sliding-window layer's last query sees only its window)."""
    target = 0.45 * (n_layers - 1)
    full = [i for i in range(n_layers) if not windows or windows[i] is None] or list(range(n_layers))
    return min(full, key=lambda i: (abs(i - target), i))


def token_scores(model: Any, ids: list[int], layer: int) -> tuple[list[float], float]:
    """Per prompt position, the filter layer's summed last-query logits, and the filter pass's
    seconds (layers 0..layer run, the rest of layer ``layer`` skipped)."""
    import torch

    n_layers = model.config.get_text_config().num_hidden_layers
    if not 0 <= layer < n_layers:
        raise ValueError(f"GemFilter layer {layer} is outside the model's layers 0..{n_layers - 1}")
    _register()
    previous = model.config._attn_implementation
    capture = _Capture(layer)
    token = _CAPTURE.set(capture)
    started = time.perf_counter()
    try:
        model.set_attn_implementation(_IMPLEMENTATION)
        with torch.inference_mode():
            model(torch.tensor([ids], device=model.device), use_cache=False, logits_to_keep=1)
    except _Stop:
        pass
    finally:
        _CAPTURE.reset(token)
        model.set_attn_implementation(previous)
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    if capture.scores is None:
        raise RuntimeError(f"GemFilter: layer {layer} never called the attention interface")
    return capture.scores[0].tolist(), seconds


def select(scores: list[float], keep: int, protect: int = 0, pool: int = POOL) -> list[int]:
    """The kept positions, ascending: the last ``protect`` always, then the best pooled scores."""
    import torch
    import torch.nn.functional as F

    n = len(scores)
    if keep >= n:
        return list(range(n))
    protect = min(protect, keep)
    tail = set(range(n - protect, n))
    values = torch.tensor(scores, dtype=torch.float32)[None, None, :]
    if pool > 1:  # mean over a window centred on each position (zero-padded at the edges)
        values = F.avg_pool1d(values, kernel_size=pool, stride=1, padding=pool // 2)
    values = values[0, 0, :n]
    if protect:
        values[n - protect :] = float("-inf")
    chosen = torch.topk(values, keep - protect).indices.tolist() if keep > protect else []
    return sorted(set(chosen) | tail)


def ranges(positions: list[int]) -> list[list[int]]:
    """Sorted positions as half-open runs ``[[start, end], ...]`` (compact provenance)."""
    out: list[list[int]] = []
    for p in positions:
        if out and out[-1][1] == p:
            out[-1][1] = p + 1
        else:
            out.append([p, p + 1])
    return out
