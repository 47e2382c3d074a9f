"""Oracle retrieval: the chunks that contain the gold evidence (the retrieval upper bound).

A chunk matches a gold sentence when its text contains that sentence (whitespace normalised) and
it comes from the sentence's document; when the evidence's ``doc_id`` names no document of the
corpus (a dataset whose evidence ids differ from its corpus ids), containment alone decides.
Score = number of gold sentences the chunk contains; best first, then chunk position. Chunks with
no gold sentence are never returned, so a query can get fewer than ``k`` chunks.
"""

from __future__ import annotations

from collections.abc import Sequence

from ragkit.registry import register
from ragkit.retrievers._common import check_evidence
from ragkit.retrievers.base import Retriever
from ragkit.types import Corpus, Evidence, Scored


def _normal(text: str) -> str:
    return " ".join(text.split())


@register("retriever", "oracle")
class OracleRetriever(Retriever):
    version = "1"
    aux_tokens_: int = 0

    def __init__(self) -> None:
        pass  # no parameters: the evidence decides everything

    def retrieve(
        self,
        queries: Sequence[str],
        corpus: Corpus,
        k: int,
        *,
        evidence: Sequence[Sequence[Evidence]] | None = None,
    ) -> list[list[Scored]]:
        evidence = check_evidence(evidence, queries, "oracle")
        by_doc: dict[str, list[int]] = {}  # a shared corpus is large: only scan the gold document
        for i, chunk in enumerate(corpus.chunks):
            by_doc.setdefault(chunk.doc_id, []).append(i)
        texts = [_normal(c.text) for c in corpus.chunks]
        everything = range(len(corpus))
        out = []
        for gold in evidence:
            counts = [0] * len(corpus)
            for ev in gold:
                sentence = _normal(ev.text)
                if not sentence:
                    continue
                for i in by_doc.get(ev.doc_id, everything):
                    if sentence in texts[i]:
                        counts[i] += 1
            hits = [(counts[i], c) for i, c in enumerate(corpus.chunks) if counts[i] > 0]
            hits.sort(key=lambda h: (-h[0], h[1].position))
            out.append([Scored(chunk, float(n)) for n, chunk in hits[: max(k, 0)]])
        return out
