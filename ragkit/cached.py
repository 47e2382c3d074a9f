"""Cache wrappers the runner puts around stages; strategies never know they are there.

- :class:`CachedRetriever` retrieves once at the largest k of a sweep (``depth``) and slices for
  smaller k, so a k-sweep costs one retrieval per question.
- :class:`CachedGenerator` caches greedy generations by (model spec, decoding params, prompt),
  keeping the measured timings so cost accounting of a cached answer is that of the real call.
  Sampled outputs are never cached.

Both report the wrapped component's ``spec()``, so cache keys and tracking see the real component.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

from ragkit.cache import Cache, cache_key
from ragkit.generators.base import Generation, GenerationRequest, Generator, Message, ModelInfo, Tokenizer
from ragkit.retrievers.base import Retriever
from ragkit.types import Corpus, Evidence, Scored, split_evenly


class CachedRetriever(Retriever):
    def __init__(self, inner: Retriever, cache: Cache, depth: int = 0) -> None:
        self.inner = inner
        self.cache = cache
        self.depth = depth
        self.calls_ = 0  # queries actually sent to the inner retriever
        # Auxiliary cost (embedder tokens, seconds) is stored with each entry and charged on every
        # use, hit or miss, so a configuration's cost does not depend on what ran before it.
        self.aux_tokens_ = 0
        self.aux_seconds_ = 0.0

    def spec(self) -> dict[str, Any]:
        return self.inner.spec()

    def retrieve(
        self,
        queries: Sequence[str],
        corpus: Corpus,
        k: int,
        *,
        evidence: Sequence[Sequence[Evidence]] | None = None,
    ) -> list[list[Scored]]:
        spec = self.inner.spec()
        ev = evidence or [[] for _ in queries]
        keys = [
            cache_key("retrieval", spec, corpus.key, q, [(e.doc_id, e.text) for e in evs])
            for q, evs in zip(queries, ev, strict=True)
        ]
        found = self.cache.get_many("retrieval", keys)
        want = max(k, self.depth)

        def usable(entry: Any) -> bool:  # deep enough, or already the whole corpus
            return entry["depth"] >= k or len(entry["hits"]) >= len(corpus)

        missing = [i for i, key in enumerate(keys) if key not in found or not usable(found[key])]
        if missing:
            self.calls_ += len(missing)
            self.inner.warm_up()  # loading the model is start-up, not a question's retrieval time
            tokens_before = getattr(self.inner, "aux_tokens_", 0)
            started = time.perf_counter()
            fresh = self.inner.retrieve(
                [queries[i] for i in missing], corpus, want, evidence=[ev[i] for i in missing]
            )
            seconds = (time.perf_counter() - started) / len(missing)
            tokens = split_evenly(getattr(self.inner, "aux_tokens_", 0) - tokens_before, len(missing))
            new = {
                keys[i]: {
                    "depth": want,
                    "hits": [[s.chunk.id, s.score] for s in hits],
                    "aux_tokens": share,
                    "seconds": seconds,
                }
                for i, hits, share in zip(missing, fresh, tokens, strict=True)
            }
            self.cache.put_many("retrieval", new)
            found.update(new)
        for key in keys:
            self.aux_tokens_ += found[key].get("aux_tokens", 0)
            self.aux_seconds_ += found[key].get("seconds", 0.0)
        by_id = {c.id: c for c in corpus.chunks}
        return [[Scored(by_id[cid], score) for cid, score in found[key]["hits"][:k]] for key in keys]


class CachedGenerator(Generator):
    def __init__(self, inner: Generator, cache: Cache) -> None:
        self.inner = inner
        self.cache = cache
        self.generated_ = 0  # requests actually sent to the model

    def spec(self) -> dict[str, Any]:
        return self.inner.spec()

    @property
    def max_new_tokens(self) -> int:  # type: ignore[override]
        return self.inner.max_new_tokens

    @property
    def batch_size(self) -> int | None:
        return getattr(self.inner, "batch_size", None)

    @property
    def methods(self) -> tuple[str, ...]:  # type: ignore[override]
        return self.inner.methods

    @property
    def prefix_reuse(self) -> bool:  # estimates count a shared prefix once when the engine reuses it
        return bool(getattr(self.inner, "prefix_reuse", False))

    @property
    def tokenizer(self) -> Tokenizer:
        return self.inner.tokenizer

    def render(self, messages: Sequence[Message]) -> str:
        return self.inner.render(messages)

    def model_info(self) -> ModelInfo:
        return self.inner.model_info()

    def decoding(self) -> dict[str, Any]:
        return self.inner.decoding()

    @property
    def prices(self) -> Any:  # type: ignore[override]
        return getattr(self.inner, "prices", None)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def prompt_tokens(self, messages: Sequence[Message]) -> int:
        return self.inner.prompt_tokens(messages)

    def input_limit(self, max_new_tokens: int | None = None) -> int:
        return self.inner.input_limit(max_new_tokens)

    def _generate(self, prompts: list[str], requests: list[GenerationRequest]) -> list[Generation]:
        raise NotImplementedError  # generate() is overridden whole

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        decoding = self.inner.decoding()
        if float(decoding.get("temperature") or 0.0) > 0.0:
            return self.inner.generate(requests)
        spec = self.inner.spec()
        keys = [
            # a model-internal method joins the key only when set: plain entries keep their keys
            cache_key("generation", spec, decoding, r.messages, r.max_new_tokens, list(r.stop))
            if r.method is None
            else cache_key("generation", spec, decoding, r.messages, r.max_new_tokens, list(r.stop), r.method)
            for r in requests
        ]
        for request in requests:
            self.inner.check_method(request)
        found = self.cache.get_many("generation", keys)
        missing = [i for i, key in enumerate(keys) if key not in found]
        if missing:
            self.generated_ += len(missing)
            fresh = self.inner.generate([requests[i] for i in missing])
            new = {keys[i]: _to_json(g) for i, g in zip(missing, fresh, strict=True)}
            self.cache.put_many("generation", new)
            found.update(new)
            for i, g in zip(missing, fresh, strict=True):
                found[keys[i]] = {**_to_json(g), "_fresh": True}
        out = []
        for key in keys:
            entry = dict(found[key])
            fresh_flag = entry.pop("_fresh", False)
            # fields this version does not know (an entry written by a newer ragkit sharing the
            # cache) are left out rather than crash the run
            known = {k: v for k, v in entry.items() if k in _GENERATION_FIELDS}
            out.append(Generation(**known, cached=not fresh_flag))
        return out


_GENERATION_FIELDS = {f.name for f in dataclasses.fields(Generation)} - {"cached"}


def _to_json(g: Generation) -> dict[str, Any]:
    return {
        "text": g.text,
        "input_tokens": g.input_tokens,
        "output_tokens": g.output_tokens,
        "prefill_seconds": g.prefill_seconds,
        "decode_seconds": g.decode_seconds,
        "truncated_tokens": g.truncated_tokens,
        "meta": g.meta,
        "prefill_tokens": g.prefill_tokens,
        "flops": g.flops,
    }
