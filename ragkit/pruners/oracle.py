"""Oracle pruning: keep exactly the gold evidence sentences (the upper bound of any pruner).

A sentence of a chunk is kept when, whitespace-normalised, it equals an evidence text of the same
document, contains one (evidence shorter than a sentence, e.g. an answer clause), or is contained in
one (evidence that spans several sentences). Chunks with no evidence are dropped unless
``keep_empty``. It needs the ``evidence`` keyword, which strategies always pass.
"""

from __future__ import annotations

from collections.abc import Sequence

from ragkit.pruners._scoring import chunk_sentences, normalise, pruned_chunk
from ragkit.pruners.base import Pruner
from ragkit.registry import register
from ragkit.types import Evidence, Scored


def is_evidence(sentence: str, evidence: Sequence[str]) -> bool:
    s = normalise(sentence)
    return bool(s) and any(s == e or e in s or s in e for e in evidence if e)


@register("pruner", "oracle")
class OraclePruner(Pruner):
    version = "1"

    def __init__(self, *, keep_empty: bool = False) -> None:
        self.keep_empty = keep_empty

    def prune(
        self,
        queries: Sequence[str],
        candidates: Sequence[Sequence[Scored]],
        *,
        evidence: Sequence[Sequence[Evidence]] | None = None,
    ) -> list[list[Scored]]:
        if evidence is None or len(evidence) != len(queries):
            got = "None" if evidence is None else f"{len(evidence)} lists"
            raise ValueError(
                f"the oracle pruner needs the gold evidence of every query ({len(queries)} queries,"
                f" got {got});"
                " use it on a dataset with evidence (e.g. hotpotqa supporting facts)"
            )
        out = []
        for cands, evs in zip(candidates, evidence, strict=True):
            by_doc: dict[str, list[str]] = {}
            for e in evs:
                by_doc.setdefault(e.doc_id, []).append(normalise(e.text))
            kept = []
            for scored in cands:
                sentences = chunk_sentences(scored.chunk)
                gold = by_doc.get(scored.chunk.doc_id, [])
                keep = [is_evidence(s, gold) for s in sentences]
                if any(keep) or self.keep_empty:
                    kept.append(Scored(pruned_chunk(scored.chunk, sentences, keep), scored.score))
            out.append(kept)
        return out
