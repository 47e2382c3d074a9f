"""Shared prompt prefixes: which prompts of a call start with the same long run of tokens.

Full-context arms over datasets with many questions per document (SQuAD v2 articles, LaRA, needle
haystacks) send prompts that are identical up to the question: ragkit's prompts put the system
text and the documents first and the question last (:mod:`ragkit.strategies.prompts`), so the
shared prefix is everything before the question. An engine that computes that prefix once and
reuses its KV cache saves most of the prefill; the transformers generator does it itself, vLLM
with ``enable_prefix_caching`` when the requests sharing a prefix are adjacent, and the openai
generator by sending one request of a group first so that the server has the prefix cached
before the others arrive.

Grouping works on token ids, never text: the tokens of a prefix encoded alone may differ at its
edge from the same text followed by a question, while a common run of the full prompts' ids is
exactly the part whose KV cache is the same (attention is causal).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# Shorter shared runs (the system prompt alone, ~60 tokens in RAG arms) are not worth it: the
# transformers engine gives up batching to reuse a prefix, which costs more than it saves there.
MIN_SHARED_TOKENS = 256


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token sequences."""
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


@dataclass
class PrefixGroup:
    """Prompts (indices into the call's list) that share their first ``shared`` tokens; ``shared``
    is 0 for a prompt that shares no long prefix with another. It is always shorter than every
    member, so each member has at least one token of its own to compute (the next token's logits
    come from it)."""

    members: list[int]
    shared: int = 0


def group_by_prefix(ids: Sequence[Sequence[int]], min_shared: int = MIN_SHARED_TOKENS) -> list[PrefixGroup]:
    """Groups of prompts sharing at least ``min_shared`` leading tokens, members in sorted order.

    Sorting the token sequences puts prompts with a common prefix next to each other, and the
    prefix common to a run of sorted sequences is the smallest common prefix of neighbours, so one
    pass finds every group (O(n log n) comparisons of token lists)."""
    order = sorted(range(len(ids)), key=lambda i: list(ids[i]))
    groups: list[PrefixGroup] = []
    for i in order:
        if groups:
            group = groups[-1]
            previous = ids[group.members[-1]]
            shared = min(common_prefix(previous, ids[i]), len(ids[i]) - 1, len(previous) - 1)
            if len(group.members) > 1:
                shared = min(shared, group.shared)
            if shared >= min_shared:
                group.members.append(i)
                group.shared = shared
                continue
        groups.append(PrefixGroup([i]))
    return groups


def adjacent_order(ids: Sequence[Sequence[int]], min_shared: int = MIN_SHARED_TOKENS) -> list[int]:
    """Indices with the prompts that share a prefix next to each other (groups in order of their
    first appearance, so unrelated prompts keep their order)."""
    groups = group_by_prefix(ids, min_shared)
    groups.sort(key=lambda g: min(g.members))
    return [i for g in groups for i in sorted(g.members)]


def computed_tokens(ids: Sequence[Sequence[int]], min_shared: int = MIN_SHARED_TOKENS) -> list[int]:
    """Prompt tokens an engine that reuses prefixes computes for each prompt when the prompts run
    together: the first of a group computes the shared prefix and its own tokens, the others
    only their own (what the transformers generator reports as ``prefill_tokens``). For
    estimates made before anything runs."""
    out = [len(i) for i in ids]
    for group in group_by_prefix(ids, min_shared):
        for member in group.members[1:]:
            out[member] -= group.shared
    return out
