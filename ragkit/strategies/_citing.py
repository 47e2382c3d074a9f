"""``citations: true``: the prompt asks for bracketed citations of the numbered passages, and the
prediction records which passage each number was, for the scores of :mod:`ragkit.citations`,
:mod:`ragkit.citation_judge` and :mod:`ragkit.summhay`.

Every prompt already numbers its passages ("Document [1] ..."), so citing changes only the
instructions: short answers get "a few words, then the supporting documents' numbers in brackets"
(L-CiteEval and ALCE ask for the same ``[1][3]`` form); free-form answers and summaries
(``answer_format`` ``free-form`` or ``summary``) are asked to end every sentence or bullet with its
citations. Without ``citations`` the prompts are byte-identical to before (the same generation
cache entries). The answer that EM, F1 and contains-answer read is the cleaned answer without its
citation markers; the raw output, citations included, stays in ``provenance.raw_answer``.

Not a strategy module (the leading underscore keeps registry discovery away from it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from ragkit.citations import passage_record, strip_citations
from ragkit.generators.base import Message
from ragkit.strategies.base import Record
from ragkit.strategies.prompts import ABSTAIN, clean_answer, question_messages
from ragkit.types import Chunk, Document, Example, Prediction

CITE_SHORT = (
    "You answer questions from the given documents and cite them. Reply with the answer only: a short"
    " phrase of a few words (a name, a date, a number, yes or no), followed by the numbers of the"
    " documents that support it in square brackets, for example: Paris [2] or 1998 [1][3]. Do not"
    " write an explanation."
)
CITE_LONG = (
    "You answer from the given documents and cite them. Answer in the form the question asks for. End"
    " every sentence or bullet point with the numbers of the documents that support it in square"
    " brackets, for example [2] or [1][3]."
)
CUE_SHORT = "Answer (a few words, then the supporting documents' numbers in brackets):"
CUE_LONG = "Answer (cite the documents' numbers in brackets):"
LONG_FORMATS = ("free-form", "summary")


def is_long(example: Example) -> bool:
    return example.meta.get("answer_format") in LONG_FORMATS


def messages(
    example: Example, documents: str, *, abstain: bool = False, citations: bool = False
) -> list[Message]:
    """The answering prompt: :func:`question_messages` unchanged without ``citations``; with it,
    the same documents block under instructions asking for citations."""
    if not citations or not documents:  # closed book: nothing to cite
        return question_messages(example.question, documents, abstain=abstain)
    long = is_long(example)
    system = (CITE_LONG if long else CITE_SHORT) + (ABSTAIN if abstain else "")
    cue = CUE_LONG if long else CUE_SHORT
    user = f"Documents:\n{documents}\n\nQuestion: {example.question}\n{cue}"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def whole_context(example: Example, corpus: Sequence[Document] | None) -> list[Chunk]:
    """The passages a whole-context prompt numbers: the question's documents (else the shared
    corpus) in order, as :func:`ragkit.strategies.context.fit_context` shows them."""
    documents = example.documents or list(corpus or [])
    return [
        Chunk(id=d.id, doc_id=d.id, text=d.text, title=d.title, position=i) for i, d in enumerate(documents)
    ]


def answer(raw: str, n_passages: int, long: bool) -> str:
    """What the answer metrics read: a short answer cleaned as every strategy cleans it, a long
    one whole; citation markers removed from both."""
    return strip_citations(raw if long else clean_answer(raw), n_passages)


def finish(
    predictions: Sequence[Prediction], records: Sequence[Record], shown: Sequence[Sequence[Chunk]]
) -> list[Prediction]:
    """Predictions of citing prompts: each records its numbered passages (``provenance.details``
    key ``citations``: their chunk and document ids, the gold evidence each holds, the cited
    passages' texts) and answers without citation markers."""
    out = []
    for prediction, record, chunks in zip(predictions, records, shown, strict=True):
        raw = prediction.provenance.raw_answer
        example = record.example
        if chunks:  # closed book (k = 0) shows nothing to cite
            prediction.provenance.details["citations"] = passage_record(raw, chunks, example.evidence)
        out.append(replace(prediction, answer=answer(raw, len(chunks), is_long(example))))
    return out
