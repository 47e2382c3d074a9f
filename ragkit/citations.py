"""Citations in answers: reading them, cutting answers into statements, and scoring them exactly
against gold evidence.

With ``citations: true`` a strategy numbers the passages it shows ("Document [1] ...", as every
prompt already does) and asks for bracketed citations; after generation it records which passage
each number was (:func:`passage_record`). Scoring then needs no model:

- ``citation_recall``: the share of the question's gold evidence items (HotpotQA supporting facts,
  needles, LooGLE evidence sentences, ...) found in the passages the answer cites. It is at most
  ``evidence_recall``, the share found in the passages shown: the two together say whether a miss
  is retrieval's or the answer's.
- ``citation_precision``: the share of the answer's citations that point to a passage holding gold
  evidence (a number that points to no passage shown counts as a wrong citation). An answer
  without citations scores 0, as L-CiteEval and ALCE score it, so read it next to ``cites``.
- ``citation_f1``: their harmonic mean, per answer.
- ``cites``: 1 when the answer cites at least one passage shown; ``n_citations``: how many.

Model-judged support, in ALCE's and L-CiteEval's sense (is each statement entailed by the
passages it cites, is each citation needed), is :mod:`ragkit.citation_judge`.

Parsing is written for small models, which rarely keep one format: "[1]", "[1, 3]", "[1][3]",
"[1-3]", "[Document 2]", "Document [2]", "(1)" and "(1, 3)" (only numbers of passages shown, and
not a list marker at the start of a line, so "(1998)" is not a citation), "Passage 2", "passages 1
and 3". Numbers out of range in brackets or after "passage"/"document" are kept as invalid
citations.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ragkit.data.sentences import split_sentences
from ragkit.types import Evidence

_WORD = r"(?:passages?|documents?|docs?|sources?|refs?|references?)"
_LIST = r"\d+(?:\s*(?:-|–|,|;|&|and)\s*(?:" + _WORD + r"\s*)?\d+)*"
_BRACKET = re.compile(
    r"(?:\b" + _WORD + r"\s*)?\[\s*(?:" + _WORD + r"\s*)?(" + _LIST + r")\s*\]", re.IGNORECASE
)
_PAREN = re.compile(r"\(\s*(?:" + _WORD + r"\s*)?(" + _LIST + r")\s*\)", re.IGNORECASE)
_NAMED = re.compile(r"\b" + _WORD + r"\s+(" + _LIST + r")\b", re.IGNORECASE)
_RANGE = re.compile(r"(\d+)\s*[-–]\s*(\d+)")
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)]|\(\d+\))\s+")
MAX_RANGE = 20  # "[1-300]" is not a citation of 300 passages


@dataclass(frozen=True)
class Statement:
    """One sentence or bullet of an answer, without its citation markers, and the passage numbers
    it cites (1-based, in order, repeats removed)."""

    text: str
    numbers: tuple[int, ...]


def _numbers(group: str) -> list[int]:
    out: list[int] = []
    rest = group
    for match in _RANGE.finditer(group):
        low, high = int(match.group(1)), int(match.group(2))
        if low <= high and high - low < MAX_RANGE:
            out.extend(range(low, high + 1))
            rest = rest.replace(match.group(0), " ", 1)
    out.extend(int(n) for n in re.findall(r"\d+", rest))
    return out


def find_citations(text: str, n_passages: int | None = None) -> list[tuple[int, int, list[int]]]:
    """``(start, end, numbers)`` of every citation marker in ``text``, in order. ``n_passages``
    (when known) decides whether a parenthesised number is a citation."""
    found: list[tuple[int, int, list[int]]] = []
    taken: list[tuple[int, int]] = []

    def free(start: int, end: int) -> bool:
        return all(end <= a or start >= b for a, b in taken)

    for pattern in (_BRACKET, _NAMED, _PAREN):
        for match in pattern.finditer(text):
            if not free(match.start(), match.end()):
                continue
            numbers = _numbers(match.group(1))
            if pattern is _PAREN:
                at_line_start = not text[: match.start()].split("\n")[-1].strip()
                in_range = n_passages is not None and all(1 <= n <= n_passages for n in numbers)
                if at_line_start or not in_range:
                    continue
            taken.append((match.start(), match.end()))
            found.append((match.start(), match.end(), numbers))
    return sorted(found)


def strip_citations(text: str, n_passages: int | None = None) -> str:
    """``text`` without its citation markers, whitespace tidied."""
    out, last = [], 0
    for start, end, _ in find_citations(text, n_passages):
        out.append(text[last:start])
        last = end
    out.append(text[last:])
    joined = "".join(out)
    return " ".join(re.sub(r"\s+([.,;:!?])", r"\1", joined).split())


_LEAD = re.compile(r"^(?:\s*\[[^\]\n]*\])+")


def statements(answer: str, n_passages: int | None = None) -> list[Statement]:
    """The answer cut into statements: each line (bullet markers dropped) into sentences. Citations
    that open a sentence ("Paris. [1] It is...") or make up a whole one ("[2]" on its own line)
    belong to the statement before, where small models put them after the full stop."""
    out: list[Statement] = []

    def numbers_of(text: str) -> tuple[int, ...]:
        return tuple(dict.fromkeys(n for _, _, ns in find_citations(text, n_passages) for n in ns))

    def attach(numbers: tuple[int, ...]) -> None:
        previous = out[-1]
        out[-1] = Statement(previous.text, tuple(dict.fromkeys(previous.numbers + numbers)))

    for line in answer.splitlines():
        for sentence in split_sentences(_BULLET.sub("", line)):
            lead = _LEAD.match(sentence)
            if lead and out and numbers_of(lead.group(0)):
                attach(numbers_of(lead.group(0)))
                sentence = sentence[lead.end() :]
            text = strip_citations(sentence, n_passages)
            if not any(ch.isalnum() for ch in text):
                if out:
                    attach(numbers_of(sentence))
                continue
            out.append(Statement(text, numbers_of(sentence)))
    return out


def cited(answer: str, n_passages: int) -> tuple[list[int], int]:
    """(valid passage numbers cited, in order of first citation; count of invalid citations)."""
    numbers = [n for s in statements(answer, n_passages) for n in s.numbers]
    valid = list(dict.fromkeys(n for n in numbers if 1 <= n <= n_passages))
    invalid = len({n for n in numbers if not 1 <= n <= n_passages})
    return valid, invalid


# -- what a strategy records, and the exact scores -------------------------------------------------
def _squash(text: str) -> str:
    return " ".join(text.split())


def passage_record(answer: str, shown: Sequence[Any], evidence: Sequence[Evidence]) -> dict[str, Any]:
    """What scoring needs to know about the passages an answer could cite, recorded with the
    prediction (``provenance`` details, key ``citations``): each shown passage's chunk and document
    id, which gold evidence items it holds, and the text of the passages the answer cites (for a
    judge). ``shown`` are the chunks in the order the prompt numbered them."""
    wanted = [_squash(e.text) for e in evidence]
    holds = []
    for chunk in shown:
        text = _squash(chunk.text)
        holds.append([i for i, w in enumerate(wanted) if w and w in text])
    valid, _ = cited(answer, len(shown))
    return {
        "passages": [[c.id, c.doc_id] for c in shown],
        "evidence": holds,
        "texts": {str(n): shown[n - 1].text for n in valid},
    }


def exact_scores(answer: str, record: dict[str, Any], n_evidence: int) -> dict[str, float]:
    """The exact citation scores of one answer (see the module docstring); recall, precision and
    F1 only when the question has gold evidence."""
    passages = record.get("passages") or []
    holds = record.get("evidence") or [[] for _ in passages]
    valid, invalid = cited(answer, len(passages))
    out = {"cites": float(bool(valid)), "n_citations": float(len(valid) + invalid)}
    if n_evidence:
        covered = {i for n in valid for i in holds[n - 1]}
        recall = len(covered) / n_evidence
        total = len(valid) + invalid
        precision = sum(bool(holds[n - 1]) for n in valid) / total if total else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out.update(citation_recall=recall, citation_precision=precision, citation_f1=f1)
    return out
