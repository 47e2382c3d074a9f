"""How selected passages are ordered in the prompt (applied after selection, never before).

- ``score``: best first (the usual RAG layout).
- ``score-reversed``: best last, closest to the question.
- ``original``: original document order (order-preserving RAG, "In Defense of RAG in the Era of
  Long-Context Language Models", Yu et al. 2024): selection by score, presentation by position.
- ``lost-in-the-middle``: best passages at both ends, weakest in the middle ("Lost in the Middle",
  Liu et al. 2023): ranks 1, 3, 5, ... from the front and 2, 4, 6, ... from the back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

from ragkit.types import Scored

Order = Literal["score", "score-reversed", "original", "lost-in-the-middle"]


def by_score(items: Sequence[Scored]) -> list[Scored]:
    return sorted(items, key=lambda s: (-s.score, s.chunk.position))


def score_reversed(items: Sequence[Scored]) -> list[Scored]:
    return by_score(items)[::-1]


def original_order(items: Sequence[Scored]) -> list[Scored]:
    return sorted(items, key=lambda s: s.chunk.position)


def lost_in_the_middle(items: Sequence[Scored]) -> list[Scored]:
    ranked = by_score(items)
    front, back = ranked[0::2], ranked[1::2]
    return front + back[::-1]


ORDERS: dict[str, Callable[[Sequence[Scored]], list[Scored]]] = {
    "score": by_score,
    "score-reversed": score_reversed,
    "original": original_order,
    "lost-in-the-middle": lost_in_the_middle,
}


def apply_order(order: str, items: Sequence[Scored]) -> list[Scored]:
    try:
        return ORDERS[order](items)
    except KeyError:
        raise ValueError(f"unknown order {order!r}; expected one of {sorted(ORDERS)}") from None
