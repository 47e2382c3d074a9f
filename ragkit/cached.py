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
from ragkit.types import AuxUse, Batch, Corpus, Evidence, Scored, uses


class CachedRetriever(Retriever):
    def __init__(self, inner: Retriever, cache: Cache, depth: int = 0) -> None:
        self.inner = inner
        self.cache = cache
        self.depth = depth
        self.calls_ = 0  # queries actually sent to the inner retriever

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
        by_id = {c.id: c for c in corpus.chunks}
        for key in [key for key, entry in found.items() if not _retrieval_entry_ok(entry, by_id)]:
            # a valid checksum proves the bytes are as written, not that they were written by us
            # (README, "Trust and safety"): an entry naming chunks this corpus lacks is recomputed
            self.cache.discard("retrieval", key, "malformed entry or unknown chunk ids")
            del found[key]

        def usable(entry: Any) -> bool:  # deep enough, or already the whole corpus
            return entry["depth"] >= k or len(entry["hits"]) >= len(corpus)

        missing = [i for i, key in enumerate(keys) if key not in found or not usable(found[key])]
        if missing:
            self.calls_ += len(missing)
            self.inner.warm_up()  # loading the model is start-up, not a question's retrieval time
            started = time.perf_counter()
            fresh = self.inner.retrieve(
                [queries[i] for i in missing], corpus, want, evidence=[ev[i] for i in missing]
            )
            seconds = (time.perf_counter() - started) / len(missing)
            new = {
                keys[i]: {
                    "depth": want,
                    "hits": [[s.chunk.id, s.score] for s in hits],
                    "aux_tokens": use.tokens,
                    "seconds": use.seconds or seconds,
                }
                for i, hits, use in zip(missing, fresh, uses(fresh), strict=True)
            }
            self.cache.put_many("retrieval", new)
            found.update(new)
        # Auxiliary cost (embedder tokens, seconds) is stored with each entry and charged on every
        # use, hit or miss, so a configuration's cost does not depend on what ran before it.
        return Batch(
            [[Scored(by_id[cid], score) for cid, score in found[key]["hits"][:k]] for key in keys],
            [
                AuxUse(tokens=found[key].get("aux_tokens", 0), seconds=found[key].get("seconds", 0.0))
                for key in keys
            ],
        )


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

    def gpus(self, available: bool) -> int:
        return self.inner.gpus(available)

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
        for key in [key for key, entry in found.items() if not _generation_entry_ok(entry)]:
            self.cache.discard("generation", key, "malformed entry")
            del found[key]
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


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _retrieval_entry_ok(entry: Any, by_id: dict[str, Any]) -> bool:
    """A retrieval cache entry has the shape this class writes and names chunks of this corpus."""
    if (
        not isinstance(entry, dict)
        or not _number(entry.get("depth"))
        or not isinstance(entry.get("hits"), list)
    ):
        return False
    return all(
        isinstance(hit, list) and len(hit) == 2 and hit[0] in by_id and _number(hit[1])
        for hit in entry["hits"]
    )


def _generation_entry_ok(entry: Any) -> bool:
    """A generation cache entry has the fields :class:`Generation` takes (the three it requires),
    with text as text and numbers as numbers."""
    if not isinstance(entry, dict) or not {"text", "input_tokens", "output_tokens"} <= entry.keys():
        return False
    if not isinstance(entry["text"], str):
        return False
    # fields this version does not know are dropped when read (see generate), not a damage
    fields = {f.name: str(f.type) for f in dataclasses.fields(Generation)}
    numeric = [k for k in entry if fields.get(k) in ("int", "float", "<class 'int'>", "<class 'float'>")]
    return all(_number(entry[k]) for k in numeric) and isinstance(entry.get("meta", {}), dict)


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
