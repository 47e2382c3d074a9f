"""Listwise reranking by the question's own generator: full ranking in one call, or sliding windows.

- Full ranking (``window: null``, Liu et al., ACL 2025, "Sliding Windows Are Not the End:
  Exploring Full Ranking with Long-Context Large Language Models", arXiv 2412.14574): every
  candidate goes into one prompt and the model writes the whole permutation ("[3] > [1] > ...").
- Sliding windows (RankGPT, Sun et al., EMNLP 2023, arXiv 2304.09542, the strategy the paper
  compares against): windows of ``window`` candidates, moved from the back of the list to the front
  by ``stride``, each ranked by one call, so relevant passages bubble up; candidates in overlapping
  windows are read more than once, which is the cost full ranking saves.

The prompt marks each candidate with its number ([1], [2], ...), cut to ``passage_tokens``
generator tokens (RankGPT cuts passages too), and asks for the permutation only. Parsing: numbers
in the order written, each once, unknown ones ignored; candidates the model left out keep their
previous order after the ones it ranked. Scores are ``n - rank``.

Cost: the generator is the strategy's (``rerank(..., generator=...)``), so its calls go through the
run's generation cache, and every one is returned in ``use`` and charged to its question as a
generator call (effective context tokens, role "rerank"). Windows of different questions are
batched, one step at a time. ``ragkit estimate`` runs these calls too (they are the estimate).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ragkit.constraints import Count, Tokens
from ragkit.generators.base import Generation, GenerationRequest, Generator, Message
from ragkit.registry import register
from ragkit.rerankers.base import Reranker
from ragkit.types import AuxUse, Batch, Scored

SYSTEM = "You rank passages by how useful they are for answering a question."
PROMPT = (
    "Here are {n} passages, each marked with a number in brackets.\n\n{passages}\n\nQuestion: {question}\n"
    "Rank the {n} passages by how useful they are for answering the question, most useful first, in"
    " the form [2] > [1] > [3]. Write only the ranking."
)
_NUMBER = re.compile(r"\d+")


def parse_ranking(text: str, n: int) -> list[int]:
    """0-based positions in the order the model wrote them, each once, then the ones it left out."""
    seen: list[int] = []
    for match in _NUMBER.findall(text):
        i = int(match) - 1
        if 0 <= i < n and i not in seen:
            seen.append(i)
    return seen + [i for i in range(n) if i not in seen]


@register("reranker", "listwise")
class ListwiseReranker(Reranker):
    version = "1"

    def __init__(
        self,
        *,
        window: Count | None = None,
        stride: Count = 10,
        passage_tokens: Tokens | None = 200,
        max_new_tokens: Tokens | None = None,
    ) -> None:
        if window is not None and (window < 2 or not 1 <= stride < window):
            raise ValueError("listwise reranker: window must be >= 2 and 1 <= stride < window")
        self.window = window
        self.stride = stride
        self.passage_tokens = passage_tokens
        self.max_new_tokens = max_new_tokens

    def messages(self, question: str, passages: Sequence[Scored], generator: Generator) -> list[Message]:
        tokenizer = generator.tokenizer
        texts = []
        for i, item in enumerate(passages, start=1):
            text = item.chunk.text
            if self.passage_tokens is not None:
                ids = tokenizer.encode(text)
                text = (
                    tokenizer.decode(ids[: self.passage_tokens]) if len(ids) > self.passage_tokens else text
                )
            title = f"{item.chunk.title}: " if item.chunk.title else ""
            texts.append(f"[{i}] {title}{text}")
        user = PROMPT.format(n=len(passages), passages="\n".join(texts), question=question)
        return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]

    def _windows(self, n: int) -> list[tuple[int, int]]:
        """(start, end) of each call over a list of ``n``, in the order they run."""
        if self.window is None or n <= self.window:
            return [(0, n)] if n > 1 else []
        out, end = [], n
        while True:
            start = max(0, end - self.window)
            out.append((start, end))
            if start == 0:
                return out
            end -= self.stride

    def rerank(
        self,
        queries: Sequence[str],
        candidates: Sequence[Sequence[Scored]],
        *,
        generator: Generator | None = None,
    ) -> list[list[Scored]]:
        if generator is None:
            raise ValueError("the listwise reranker ranks with the question's generator; none was given")
        lists = [list(c) for c in candidates]
        spent: list[list[Generation]] = [[] for _ in lists]
        asked: list[list[GenerationRequest]] = [[] for _ in lists]
        plans = [self._windows(len(c)) for c in lists]
        for step in range(max((len(p) for p in plans), default=0)):
            asking = [
                (q, start, end) for q, p in enumerate(plans) if step < len(p) for start, end in [p[step]]
            ]
            requests = [
                GenerationRequest(
                    self.messages(queries[q], lists[q][start:end], generator),
                    max_new_tokens=self.max_new_tokens or 5 * (end - start) + 8,  # "[12] > " per id
                )
                for q, start, end in asking
            ]
            for (q, start, end), request, generation in zip(
                asking, requests, generator.generate(requests), strict=True
            ):
                order = parse_ranking(generation.text, end - start)
                lists[q][start:end] = [lists[q][start + i] for i in order]
                spent[q].append(generation)
                asked[q].append(request)
        ranked = [[Scored(s.chunk, float(len(items) - r)) for r, s in enumerate(items)] for items in lists]
        return Batch(ranked, [AuxUse(generations=g, requests=r) for g, r in zip(spent, asked, strict=True)])
