"""Greedy speculative decoding with a draft that reads a different prompt (RAPID's RAG drafter).

Chen et al. (2025), "Long-context inference with retrieval-augmented speculative decoding"
(RAPID, arXiv 2502.20330): the draft reads a short retrieved context, the target the whole long
context; the draft proposes ``lookahead`` tokens greedily and the target checks them all in one
forward pass, keeping the longest run it agrees with plus its own next token. Under greedy
decoding the output is the target's own greedy output (up to float rounding between a batched
verification pass and single-token steps), so acceptance rate and speed-up are the measures.

Why a loop of our own, not Hugging Face's assisted generation (``generate(assistant_model=)``):
its candidate generators feed the assistant the target's own input ids (or, across tokenizers,
the re-tokenised target text), so the assistant cannot read a different prompt; RAPID's drafter
reads a different, shorter context. The draft here is the same model with the retrieved context
(RAPID's self-speculation setting), which also needs no second model in memory. RAPID's
inference-time knowledge transfer (a target distribution shifted toward the drafter's) changes
the output and is left out: identical greedy output is the check.

Both KV caches are Hugging Face ``DynamicCache`` objects cropped back after a rejection.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Speculation:
    tokens: list[int]  # generated ids (the target's greedy continuation), EOS included if hit
    proposed: int = 0  # draft tokens offered for verification
    accepted: int = 0  # of those, the ones the target agreed with
    rounds: int = 0  # target verification passes
    target_prefill_seconds: float = 0.0
    draft_prefill_seconds: float = 0.0
    decode_seconds: float = 0.0  # draft steps and verification passes together
    draft_seconds: float = 0.0
    verify_tokens: list[int] = field(default_factory=list)  # tokens per verification pass

    @property
    def acceptance(self) -> float:
        return self.accepted / self.proposed if self.proposed else 0.0


def _forward(model: Any, ids: list[int], cache: Any) -> Any:
    import torch

    from ragkit.generators._kv_prefix import cache_argument

    with torch.inference_mode():
        tokens = torch.tensor([ids], device=model.device)
        return model(tokens, use_cache=True, **{cache_argument(model): cache}).logits[0]


def speculate(
    model: Any,
    target_ids: list[int],
    draft_ids: list[int],
    *,
    max_new: int,
    lookahead: int,
    eos: set[int],
    done: Any = None,
) -> Speculation:
    """Greedy continuation of ``target_ids`` by ``model``, drafted by the same model reading
    ``draft_ids``. ``done(tokens)`` says when a stop string has been generated."""
    from transformers import DynamicCache

    sync = _sync(model)
    out = Speculation(tokens=[])
    started = time.perf_counter()
    target_cache = DynamicCache(config=model.config)
    first = int(_forward(model, target_ids, target_cache)[-1].argmax())
    sync()
    out.target_prefill_seconds = time.perf_counter() - started
    started = time.perf_counter()
    draft_cache = DynamicCache(config=model.config)
    _forward(model, draft_ids[:-1], draft_cache) if len(draft_ids) > 1 else None
    sync()
    out.draft_prefill_seconds = time.perf_counter() - started
    draft_fed = len(draft_ids) - 1  # draft context tokens in its cache; the last one is fed next
    draft_context = list(draft_ids)
    out.tokens.append(first)
    decode_started = time.perf_counter()
    while len(out.tokens) < max_new and out.tokens[-1] not in eos and not (done and done(out.tokens)):
        # the draft catches up on what it has not read (its own last proposal, the target's
        # correction) and proposes up to ``lookahead`` tokens
        budget = min(lookahead, max_new - len(out.tokens))
        drafted_at = time.perf_counter()
        pending = (draft_context + out.tokens)[draft_fed:]
        proposal: list[int] = []
        logits = _forward(model, pending, draft_cache)
        draft_fed += len(pending)
        for step in range(budget):
            token = int(logits[-1].argmax())
            proposal.append(token)
            if token in eos or step == budget - 1:
                break
            logits = _forward(model, [token], draft_cache)
            draft_fed += 1
        out.draft_seconds += time.perf_counter() - drafted_at
        # the target reads its last token and the proposal at once: prediction i follows token i
        checked = _forward(model, [out.tokens[-1], *proposal], target_cache).argmax(-1).tolist()
        out.rounds += 1
        out.verify_tokens.append(len(proposal) + 1)
        agreed = 0
        while agreed < len(proposal) and proposal[agreed] == checked[agreed]:
            agreed += 1
        out.proposed += len(proposal)
        out.accepted += agreed
        new = [*proposal[:agreed], checked[agreed]][: max_new - len(out.tokens)]
        for i, token in enumerate(new):  # stop at an end-of-sequence token inside the run
            if token in eos:
                new = new[: i + 1]
                break
        out.tokens += new
        # both caches keep only what stands: the target read its last token and ``agreed`` more;
        # the draft read up to its own ``agreed``-th proposal at most
        _crop(target_cache, len(target_ids) + len(out.tokens) - 1)
        draft_fed = min(draft_fed, len(draft_context) + len(out.tokens) - 1)
        _crop(draft_cache, draft_fed)
    sync()
    out.decode_seconds = time.perf_counter() - decode_started
    return out


def _crop(cache: Any, length: int) -> None:
    """Keep the first ``length`` positions. A negative ``crop`` argument removes that many from
    the end in every transformers version (5.x refuses a positive one; 4.x took it as a length)."""
    extra = cache.get_seq_length() - length
    if extra > 0:
        cache.crop(-extra)


def _sync(model: Any) -> Any:
    import torch

    return torch.cuda.synchronize if model.device.type == "cuda" else (lambda: None)
