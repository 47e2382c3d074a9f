"""Any llama-index retriever as a ragkit retriever (optional extra: ``ragkit[llamaindex]``).

Each corpus becomes llama-index ``TextNode``s, one per chunk: node id = chunk id, text = title and
text (what every ragkit retriever indexes), and ``doc_id``/``title``/``position`` as metadata kept
out of embeddings. ``factory`` says what is built over those nodes:

- ``vector`` (default): llama-index's ``VectorStoreIndex`` with ragkit's offline embedder (``model``,
  as for the ``dense`` retriever: ``minilm`` is the packaged all-MiniLM-L6-v2) behind llama-index's
  embedding interface; ``options`` go to ``index.as_retriever``.
- ``"package.module:callable"``: called as ``callable(nodes=nodes, **options)``; it returns a
  llama-index retriever, or an index (then ``.as_retriever()`` is used). For example
  ``llama_index.retrievers.bm25:BM25Retriever.from_defaults`` (package llama-index-retrievers-bm25).
  Cache keys see the path and the options, not the callable's code: change one of them (or the
  stage's name) when you change what the callable builds.

``k`` is set on the retriever's ``similarity_top_k`` before each call (a few more are fetched so
ties at the cut are broken by chunk position, as in every ragkit retriever); a retriever without that
attribute has its list cut at ``k``. Hits are re-sorted by score, ties by chunk position; a retriever
that returns no scores keeps its order and gets ``1 / rank``. A returned node that is not one of the
corpus's chunks is an error (the callable must index the nodes it is given).

Cost: ``aux_tokens_`` counts the embedder's tokens for ``vector`` (queries and every indexed chunk,
truncated where the model truncates); what an arbitrary callable's models read is invisible to
ragkit and not counted (its seconds are, as retrieval time).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any

from ragkit import _llamaindex
from ragkit.constraints import Count, Device
from ragkit.registry import register
from ragkit.retrievers._common import IndexLRU, indexed_text
from ragkit.retrievers.base import Retriever
from ragkit.security import CodeReference
from ragkit.types import AuxUse, Batch, Chunk, Corpus, Evidence, Scored, split_evenly

VECTOR = "vector"
_TIE_MARGIN = 8  # extra hits asked for so ties at the k-th score are cut by chunk position
_WHO = "llamaindex retriever"


def to_nodes(chunks: Sequence[Chunk]) -> list[Any]:
    """One llama-index ``TextNode`` per chunk (id = chunk id; metadata out of embeddings)."""
    from llama_index.core.schema import TextNode

    nodes = []
    for chunk in chunks:
        metadata = {"doc_id": chunk.doc_id, "title": chunk.title, "position": chunk.position}
        nodes.append(
            TextNode(
                id_=chunk.id,
                text=indexed_text(chunk),
                metadata=metadata,
                excluded_embed_metadata_keys=list(metadata),
                excluded_llm_metadata_keys=list(metadata),
            )
        )
    return nodes


@cache
def _embedding_class() -> type:
    """A llama-index ``BaseEmbedding`` over a loaded sentence-transformers model (built on first
    use: the base class exists only when llama-index is installed)."""
    from llama_index.core.embeddings import BaseEmbedding
    from pydantic import PrivateAttr

    from ragkit.retrievers._embedder import embed

    class RagkitEmbedding(BaseEmbedding):
        """Unit-norm embeddings from ragkit's embedder; ``count`` receives the tokens read."""

        _model: Any = PrivateAttr()
        _count: Any = PrivateAttr()

        def __init__(self, model: Any, count: Callable[[int], None], **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._model = model
            self._count = count

        def _texts(self, texts: list[str]) -> list[list[float]]:
            embedded = embed(self._model, [], texts, self.embed_batch_size)
            self._count(sum(embedded.text_tokens))
            return embedded.texts.tolist()

        def _get_text_embedding(self, text: str) -> list[float]:
            return self._texts([text])[0]

        def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
            return self._texts(texts)

        def _get_query_embedding(self, query: str) -> list[float]:
            return self.query_embeddings([query])[query]

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return self._get_query_embedding(query)

        def query_embeddings(self, queries: Sequence[str]) -> dict[str, list[float]]:
            """Every distinct query embedded in one batch; tokens counted once per query asked."""
            embedded = embed(self._model, queries, [], self.embed_batch_size)
            self._count(sum(embedded.query_tokens[q] for q in queries))
            return {q: e.tolist() for q, e in embedded.queries.items()}

    return RagkitEmbedding


@dataclass
class _Built:
    retriever: Any  # a llama-index BaseRetriever
    by_id: dict[str, Chunk]


@register("retriever", "llamaindex")
class LlamaIndexRetriever(Retriever):
    version = "1"
    aux_tokens_: int = 0  # embedder tokens (``vector`` only); the instance counter shadows this

    def __init__(
        self,
        *,
        factory: Annotated[str, CodeReference(builtin=(VECTOR,))] = VECTOR,
        options: dict[str, Any] | None = None,
        model: str = "minilm",
        device: Device = "auto",
        batch_size: Count = 64,
    ) -> None:
        self.factory = factory
        self.options = options
        self.model = model
        self.device = device
        self.batch_size = batch_size

    def spec(self) -> dict[str, Any]:
        spec = {**super().spec(), "llama_index_core": _llamaindex.library_version()}
        spec.pop("device")
        spec.pop("batch_size")
        if self.factory != VECTOR:  # the embedder is not used
            spec.pop("model")
        return spec

    def _count(self, tokens: int) -> None:
        self.aux_tokens_ += tokens

    def warm_up(self) -> None:
        _llamaindex.require(_WHO)
        if self.factory == VECTOR:
            self._embed_model()
        else:
            self._callable()

    def check(self) -> None:
        """A ``module:callable`` factory is imported now (the experiment file was allowed to name
        it), so a typo fails before any data or model loads instead of at the first batch."""
        if self.factory != VECTOR:
            _llamaindex.require(_WHO)
            self._callable()

    def _callable(self) -> Callable[..., Any]:
        if not hasattr(self, "callable_"):
            obj = _llamaindex.import_object(self.factory, _WHO, "factory")
            if not callable(obj):
                raise ValueError(
                    f"{_WHO}: field 'factory' is {self.factory!r}, which is not callable"
                    " (expected a function or class returning a llama-index retriever or index)"
                )
            self.callable_ = obj
        return self.callable_

    def _embed_model(self) -> Any:
        if not hasattr(self, "embed_model_"):
            from ragkit.retrievers._embedder import load_embedder

            loaded, _ = load_embedder(self.model, self.device, _WHO)
            self.embed_model_ = _embedding_class()(
                loaded, self._count, embed_batch_size=self.batch_size, model_name=self.model
            )
        return self.embed_model_

    def _build(self, corpus: Corpus) -> _Built:
        _llamaindex.require(_WHO)
        nodes = to_nodes(corpus.chunks)
        options = dict(self.options or {})
        if self.factory == VECTOR:
            from llama_index.core import VectorStoreIndex

            index = VectorStoreIndex(nodes, embed_model=self._embed_model(), show_progress=False)
            built = index.as_retriever(**options)
        else:
            try:
                built = self._callable()(nodes=nodes, **options)
            except TypeError as exc:  # most often an option the callable does not take
                raise ValueError(
                    f"{_WHO}: factory {self.factory!r} cannot be called with nodes and field 'options'"
                    f" {self.options!r}: {exc}"
                ) from exc
            if hasattr(built, "as_retriever") and not hasattr(built, "retrieve"):
                built = built.as_retriever()
        if not hasattr(built, "retrieve"):
            raise TypeError(
                f"{_WHO}: factory {self.factory!r} returned {type(built).__name__}; expected a"
                " llama-index retriever (with .retrieve) or an index (with .as_retriever)"
            )
        return _Built(built, {c.id: c for c in corpus.chunks})

    def _hits(self, built: _Built, query: Any, k: int) -> list[Scored]:
        if hasattr(built.retriever, "similarity_top_k"):
            # never more than the corpus: some retrievers (bm25s-based BM25) raise when asked to
            built.retriever.similarity_top_k = min(k + _TIE_MARGIN, len(built.by_id))
        results = built.retriever.retrieve(query)
        hits = []
        for rank, result in enumerate(results, start=1):
            chunk = built.by_id.get(result.node.node_id)
            if chunk is None:
                raise ValueError(
                    f"{_WHO}: factory {self.factory!r} returned node {result.node.node_id!r}, which"
                    " is not a chunk of the corpus (the callable must index the nodes it is given)"
                )
            score = 1.0 / rank if result.score is None else float(result.score)
            hits.append(Scored(chunk, score))
        if all(r.score is not None for r in results):
            hits.sort(key=lambda h: (-h.score, h.chunk.position))
        unique: dict[str, Scored] = {}  # a retriever may return a node twice (e.g. fused lists)
        for hit in hits:
            unique.setdefault(hit.chunk.id, hit)
        return list(unique.values())[:k]

    def retrieve(
        self,
        queries: Sequence[str],
        corpus: Corpus,
        k: int,
        *,
        evidence: Sequence[Sequence[Evidence]] | None = None,
    ) -> list[list[Scored]]:
        if k <= 0 or len(corpus) == 0:
            return [[] for _ in queries]
        if not hasattr(self, "indexes_"):
            self.indexes_: IndexLRU[_Built] = IndexLRU()
        before = self.aux_tokens_
        built = self.indexes_.get(corpus, self._build)
        from llama_index.core.schema import QueryBundle

        embeddings: dict[str, list[float]] = {}
        if self.factory == VECTOR:  # one batch for all queries instead of one encode per query
            embeddings = self._embed_model().query_embeddings(queries)
        hits = [self._hits(built, QueryBundle(query_str=q, embedding=embeddings.get(q)), k) for q in queries]
        # this call's embedder tokens (queries, and the corpus when this call indexed it), shared evenly
        return Batch(hits, [AuxUse(tokens=t) for t in split_evenly(self.aux_tokens_ - before, len(queries))])
