"""A scripted generator for tests and dry runs: no model, deterministic, instant.

It answers from a script keyed by a substring of the last user message, otherwise with a fixed
default; tokens are whitespace-separated words, so tests can check token accounting by hand.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ragkit.constraints import NonNegativeInt, Tokens
from ragkit.generators.base import Generation, GenerationRequest, Generator, Message, ModelInfo, Prices
from ragkit.registry import register


class WhitespaceTokenizer:
    """One token per whitespace-separated word; ids index a growing vocabulary."""

    def __init__(self) -> None:
        self._vocab: dict[str, int] = {}
        self._words: list[str] = []

    def encode(self, text: str) -> list[int]:
        ids = []
        for word in text.split():
            if word not in self._vocab:
                self._vocab[word] = len(self._words)
                self._words.append(word)
            ids.append(self._vocab[word])
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        return " ".join(self._words[i] for i in ids)


@register("generator", "scripted")
class ScriptedGenerator(Generator):
    """``script`` maps a regular expression (searched in the last user message) to an answer;
    the first match wins. ``echo_context`` answers with the first context line instead, which
    lets tests see what the generator was shown. ``context_window`` is read back through the
    base class property (from ``model_info``), so ``get_params`` still reports it."""

    # Model-internal methods are accepted and answered as plain prompts (a speculative call also
    # reads its draft's prompt), so strategy tests check plumbing and accounting in milliseconds.
    methods = ("gemfilter", "speculative")

    def __init__(
        self,
        *,
        script: dict[str, str] | None = None,
        default: str = "unknown",
        context_window: Tokens = 4096,
        max_new_tokens: Tokens = 16,
        n_params: NonNegativeInt = 1_000_000,
        prices: Prices | None = None,
    ) -> None:
        self.script = script
        self.default = default
        self.context_window_ = context_window
        self.max_new_tokens = max_new_tokens
        self.n_params = n_params
        self.prices = prices
        self._tokenizer = WhitespaceTokenizer()
        self.prompts_: list[str] = []  # every prompt seen, for tests

    @property
    def tokenizer(self) -> WhitespaceTokenizer:
        return self._tokenizer

    def render(self, messages: Sequence[Message]) -> str:
        return "\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\nassistant:"

    def model_info(self) -> ModelInfo:
        return ModelInfo(n_params=self.n_params, n_layers=2, d_model=64, context_window=self.context_window_)

    def _answer(self, prompt: str) -> str:
        last_user = prompt.rsplit("user:", 1)[-1]
        for pattern, answer in (self.script or {}).items():
            if re.search(pattern, last_user, flags=re.IGNORECASE):
                return answer
        return self.default

    def _generate(self, prompts: list[str], requests: list[GenerationRequest]) -> list[Generation]:
        out = []
        for prompt, request in zip(prompts, requests, strict=True):
            self.prompts_.append(prompt)
            words = self._answer(prompt).split()[: request.max_new_tokens or self.max_new_tokens]
            tokens = len(self._tokenizer.encode(prompt))
            method = request.method or {}
            if method.get("name") == "speculative":
                tokens += len(self._tokenizer.encode(self.render(method["draft"])))
            out.append(
                Generation(
                    text=" ".join(words),
                    input_tokens=tokens,
                    output_tokens=len(words),
                    meta={"method": method["name"]} if method else {},
                )
            )
        return out
