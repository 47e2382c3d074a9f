"""A small rule-based sentence splitter with character offsets.

Why our own and not nltk's punkt: punkt's model is a separate download (``nltk.download``), which
ragkit must never do at run time, and syntok/pysbd are extra dependencies for a job where a
well-tested regex is good enough: chunk boundaries and pruner units need to be sensible, not
linguistically perfect. Datasets that ship their own split (HotpotQA) keep theirs.

Rules: a sentence ends at ``.``, ``!``, ``?`` or ``…`` (a run of them, optionally followed by
closing quotes or brackets) followed by whitespace and a character that can start a sentence (not a
lowercase letter). A single ``.`` does not end a sentence after a known abbreviation ("Dr.",
"Mt.", "Jan."), a single letter ("J. R. R. Tolkien") or a dotted acronym ("U.S.", "e.g."); the
price is that "... in the U.S. The next ..." stays one sentence. A blank line always ends one.
"""

from __future__ import annotations

import re

# Lower-cased, without the dot. "etc", "no", "inc", "ltd" and "co" are left out on purpose: they end
# sentences about as often as they sit inside one ("... Industries Ltd. The film was shot ...").
_ABBREVIATION_WORDS = """
    mr mrs ms dr prof sr jr st mt ft fr rev gen col lt sgt capt cmdr adm gov sen rep pres hon
    vs v cf al approx ca est dept univ assn nos op vol vols pp fig figs ed eds
    jan feb mar apr jun jul aug sep sept oct nov dec
    ave blvd rd
"""
ABBREVIATIONS = frozenset(_ABBREVIATION_WORDS.split())
# Abbreviations that are only abbreviations before a number ("No. 5", "Art. 3"); "No." alone ends.
NUMBER_ABBREVIATIONS = frozenset({"no", "art", "sec", "ch", "p"})

# The end of a candidate sentence: terminal punctuation, closing quotes/brackets, then whitespace.
_CANDIDATE = re.compile(r"([.!?…]+)([\"'”’»)\]]*)(\s+)")
_PARAGRAPH = re.compile(r"\n[ \t\r\f\v]*\n\s*")
_ACRONYM = re.compile(r"(?:[^\W\d_]\.)+[^\W\d_]")  # U.S / e.g / U.S.A (the last dot is the match)
_OPENERS = frozenset("([\"'“‘")


def _ends_sentence(text: str, punct_start: int, punct: str, next_char: str) -> bool:
    if next_char.islower():
        return False
    if punct != ".":
        return True
    start = punct_start  # walk back over the word touching the punctuation (words are short)
    while start > 0 and not text[start - 1].isspace() and text[start - 1] not in _OPENERS:
        start -= 1
    token = text[start:punct_start]
    if not token:
        return True
    if len(token) == 1 and token.isalpha():  # an initial: "J. R. R. Tolkien"
        return False
    if token.lower() in ABBREVIATIONS or (token.lower() in NUMBER_ABBREVIATIONS and next_char.isdigit()):
        return False
    return not _ACRONYM.fullmatch(token)


def _boundaries(text: str) -> list[int]:
    """Offsets where a new sentence starts (after the whitespace that ends the previous one)."""
    cuts = set()
    for match in _CANDIDATE.finditer(text):
        end = match.end()
        if end >= len(text):
            continue  # trailing punctuation and whitespace belong to the last sentence
        if _ends_sentence(text, match.start(1), match.group(1), text[end]):
            cuts.add(end)
    for match in _PARAGRAPH.finditer(text):
        if match.start() > 0 and match.end() < len(text):
            cuts.add(match.end())
    return sorted(cuts)


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` character spans of the sentences of ``text``.

    The spans are contiguous and cover the text exactly: each span keeps the whitespace that
    follows its sentence, and the first one any leading whitespace, so
    ``"".join(text[s:e] for s, e in spans) == text``. An empty text has no spans.
    """
    if not text:
        return []
    starts = [0, *_boundaries(text)]
    return [(s, e) for s, e in zip(starts, [*starts[1:], len(text)], strict=True)]


def trimmed_spans(text: str, spans: list[tuple[int, int]] | None = None) -> list[tuple[int, int]]:
    """The spans with surrounding whitespace removed; whitespace-only spans dropped."""
    out = []
    for start, end in sentence_spans(text) if spans is None else spans:
        piece = text[start:end]
        stripped = piece.strip()
        if stripped:
            left = start + len(piece) - len(piece.lstrip())
            out.append((left, left + len(stripped)))
    return out


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text``, stripped of surrounding whitespace (empty ones dropped)."""
    return [text[s:e] for s, e in trimmed_spans(text)]
