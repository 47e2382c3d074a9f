"""Per-question document length: the full-context tokens of a question's documents.

Every arm's scores get it (``document_tokens``), so ``ragkit report --by length`` breaks any
dataset down by how long its documents are, RAG arms included, not only haystacks whose target
length is set. It is counted as the full-context arm counts its block (every document, numbered
and titled, :func:`ragkit.strategies.prompts.format_documents`) with the generator's tokenizer,
before any cut to the window. A shared corpus gives every question the same (whole-corpus)
length, which says nothing, so its questions get none.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ragkit.types import Chunk, Document, Example


def document_block(documents: Sequence[Document]) -> str:
    """The documents as the full-context prompt shows them."""
    from ragkit.strategies.prompts import format_documents

    return format_documents(
        [Chunk(id=d.id, doc_id=d.id, text=d.text, title=d.title, position=i) for i, d in enumerate(documents)]
    )


def document_tokens(
    examples: Sequence[Example], generator: Any, corpus: Sequence[Document] | None = None
) -> list[float]:
    """Full-context tokens of each example's documents (NaN with a shared corpus or no tokenizer).
    Questions over the same documents (a SQuAD article's) are counted once."""
    if corpus is not None or generator is None:
        return [math.nan] * len(examples)
    counted: dict[tuple[int, ...], float] = {}
    out = []
    for example in examples:
        key = tuple(id(d) for d in example.documents)
        if key not in counted:
            counted[key] = float(generator.count_tokens(document_block(example.documents)))
        out.append(counted[key])
    return out
