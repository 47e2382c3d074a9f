"""Your own data as it comes: evidence by document id or text, JSON arrays, field mapping, empty
texts and files. Each test asserts the exact evidence assignment or the exact error line."""

import json
import logging
import re

import pytest

from ragkit.data.base import DatasetError
from ragkit.data.jsonl import JsonlDataset

DOCS = [
    {"id": "d1", "title": "Marie Curie", "text": "Marie Curie won the Nobel Prize twice."},
    {"id": "d2", "title": "Warsaw", "text": "Warsaw is the capital of Poland."},
    {"id": "d3", "title": "Paris", "text": "Paris is the capital of France."},
]


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _evidence(loaded):
    return [[(e.doc_id, e.text) for e in example.evidence] for example in loaded.examples]


def _line(evidence, documents=DOCS, **extra):
    return {
        "question": "Where was Curie born?",
        "answer": "Warsaw",
        "documents": documents,
        "evidence": evidence,
    }


def test_evidence_as_ids_as_text_and_mixed(tmp_path):
    path = _write(
        tmp_path / "qa.jsonl",
        [
            _line(["d1", "d2"]),  # ids
            _line(["Warsaw is the capital", "won the Nobel Prize"]),  # text
            _line(["d3", "Warsaw is the capital of Poland."]),  # mixed
        ],
    )
    assert _evidence(JsonlDataset(path=str(path)).load()) == [
        [("d1", DOCS[0]["text"]), ("d2", DOCS[1]["text"])],
        [("d2", "Warsaw is the capital"), ("d1", "won the Nobel Prize")],
        [("d3", DOCS[2]["text"]), ("d2", "Warsaw is the capital of Poland.")],
    ]
    ids = _write(tmp_path / "ids.jsonl", [_line(["d2", "d1"])])
    assert _evidence(JsonlDataset(path=str(ids), evidence="ids").load()) == [
        [("d2", DOCS[1]["text"]), ("d1", DOCS[0]["text"])]
    ]
    # evidence: text never reads a string as an id, even one that names a document
    text = _write(tmp_path / "text.jsonl", [_line(["d2", "capital of France"])])
    assert _evidence(JsonlDataset(path=str(text), evidence="text", allow_missing_evidence=True).load()) == [
        [("d3", "capital of France")]
    ]


def test_an_id_that_a_distractor_spells_as_a_word_is_the_document(tmp_path):
    documents = [
        {"id": "silver", "text": "The team finished second in the final."},
        {"id": "gold", "text": "The 1936 relay team set a world record."},
        {"id": "d9", "text": "She won a gold medal in Berlin; golden days followed."},
    ]
    path = _write(tmp_path / "qa.jsonl", [_line(["gold"], documents)])
    assert _evidence(JsonlDataset(path=str(path)).load()) == [[("gold", documents[1]["text"])]]
    # as text, "gold" is the word in d9 ...
    assert _evidence(JsonlDataset(path=str(path), evidence="text").load()) == [[("d9", "gold")]]
    # ... and text is never found inside another word: "golden" does not hold "gold"
    inside = [{"id": "a", "text": "The golden gate."}, {"id": "b", "text": "A gold coin."}]
    path = _write(tmp_path / "inside.jsonl", [_line(["gold"], inside)])
    assert _evidence(JsonlDataset(path=str(path), evidence="text").load()) == [[("b", "gold")]]
    path = _write(tmp_path / "none.jsonl", [_line(["gold"], inside[:1])])
    with pytest.raises(DatasetError) as error:
        JsonlDataset(path=str(path), evidence="text").load()
    assert str(error.value).startswith(
        f"{path}:1: field 'evidence[0]': 'gold' is not text of any document in this line's documents"
        " (evidence: text); none of this question's 1 evidence entries matches."
    )


def test_a_line_whose_evidence_all_fails_is_an_error_unless_allowed(tmp_path, caplog):
    path = _write(
        tmp_path / "qa.jsonl",
        [_line(["d1"]), _line(["d7", "Lyon is in France."]), _line(["d2", "d8"])],
    )
    with pytest.raises(DatasetError) as error:
        JsonlDataset(path=str(path)).load()
    assert str(error.value).startswith(
        f"{path}:2: field 'evidence[0]': 'd7' is not a document id or text of any document in this"
        " line's documents (evidence: auto); none of this question's 2 evidence entries matches."
    )
    with caplog.at_level(logging.WARNING):
        loaded = JsonlDataset(path=str(path), allow_missing_evidence=True).load()
    assert _evidence(loaded) == [[("d1", DOCS[0]["text"])], [], [("d2", DOCS[1]["text"])]]
    assert "3 evidence entries match no document and are left out" in caplog.text
    with pytest.raises(
        DatasetError, match=re.escape(f"{path}:2: field 'evidence[0]': 'd7' is not a document id")
    ):
        JsonlDataset(path=str(path), evidence="ids").load()


def test_evidence_ids_against_a_shared_corpus(tmp_path):
    corpus = _write(tmp_path / "corpus.jsonl", DOCS)
    path = _write(
        tmp_path / "qa.jsonl",
        [
            {"id": "q", "question": "Q?", "answer": "Warsaw", "evidence": ["d2", {"doc_id": "d1"}]},
            {
                "id": "r",
                "question": "R?",
                "answer": "Paris",
                "evidence": [{"doc_id": "d3", "text": "Paris is"}],
            },
        ],
    )
    loaded = JsonlDataset(path=str(path), corpus=str(corpus)).load()
    assert _evidence(loaded) == [[("d2", DOCS[1]["text"]), ("d1", DOCS[0]["text"])], [("d3", "Paris is")]]


def test_a_json_array_file(tmp_path):
    path = tmp_path / "qa.json"
    path.write_text(json.dumps([_line(["d2"]), {**_line(["Paris is"]), "id": "x"}], indent=2))
    loaded = JsonlDataset(path=str(path)).load()
    assert [e.id for e in loaded.examples] == ["line1", "x"]
    assert _evidence(loaded) == [[("d2", DOCS[1]["text"])], [("d3", "Paris is")]]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([_line(["d2"]), {"answer": "x", "documents": ["x"]}]))
    with pytest.raises(DatasetError, match=re.escape(f"{bad}: [1]: field 'question': missing")):
        JsonlDataset(path=str(bad)).load()
    numbers = tmp_path / "numbers.json"
    numbers.write_text("[1, 2]")
    with pytest.raises(DatasetError, match=re.escape(f"{numbers}: [0]: expected a JSON object, got int")):
        JsonlDataset(path=str(numbers)).load()


MUSIQUE_LIKE = {
    "_id": "2hop_1",
    "question_text": "Who founded the company that made the Beetle?",
    "answer": "Ferdinand Porsche",
    "answer_aliases": ["Porsche"],
    "paragraphs": [
        {
            "idx": 0,
            "title": "Beetle",
            "paragraph_text": "The Beetle was made by Volkswagen.",
            "is_supporting": True,
        },
        {"idx": 1, "title": "Mini", "paragraph_text": "The Mini was made by BMC.", "is_supporting": False},
        {
            "idx": 2,
            "title": "VW",
            "paragraph_text": "Volkswagen was founded by Porsche.",
            "is_supporting": True,
        },
    ],
    "answerable": True,
    "hops": 2,
}
MAPPING = {
    "id": "_id",
    "question": "question_text",
    "answers": ["answer", "answer_aliases"],
    "documents": "paragraphs",
    "document": {"id": "idx", "title": "title", "text": "paragraph_text", "supporting": "is_supporting"},
}


def test_field_mapping_from_another_shape_with_a_supporting_flag(tmp_path):
    path = _write(tmp_path / "musique.jsonl", [MUSIQUE_LIKE])
    (example,) = JsonlDataset(path=str(path), fields=MAPPING).load().examples
    assert (example.id, example.question) == ("2hop_1", MUSIQUE_LIKE["question_text"])
    assert example.answers == ["Ferdinand Porsche", "Porsche"]
    assert [(d.id, d.title) for d in example.documents] == [("0", "Beetle"), ("1", "Mini"), ("2", "VW")]
    assert [(e.doc_id, e.text) for e in example.evidence] == [
        ("0", "The Beetle was made by Volkswagen."),
        ("2", "Volkswagen was founded by Porsche."),
    ]
    assert example.meta == {"hops": 2}
    # errors name the file's own keys
    broken = {**MUSIQUE_LIKE, "paragraphs": [{**MUSIQUE_LIKE["paragraphs"][0], "is_supporting": "yes"}]}
    path = _write(tmp_path / "broken.jsonl", [broken])
    with pytest.raises(
        DatasetError,
        match=re.escape(f"{path}:1: field 'paragraphs[0].is_supporting': expected true or false, got string"),
    ):
        JsonlDataset(path=str(path), fields=MAPPING).load()
    with pytest.raises(DatasetError, match=re.escape("field 'fields.document.body': unknown")):
        JsonlDataset(path=str(path), fields={"document": {"body": "x"}}).load()
    with pytest.raises(
        DatasetError, match=re.escape("field 'fields.context': unknown; ragkit's fields are id,")
    ):
        JsonlDataset(path=str(path), fields={"context": "x"}).load()


def test_dpr_like_records_with_dotted_keys(tmp_path):
    record = {
        "q": {"text": "Capital of France?"},
        "answers": "Paris",
        "ctxs": [
            {"id": "w1", "title": "Paris", "text": "Paris is the capital.", "score": 3.1, "has_answer": True}
        ],
    }
    path = _write(tmp_path / "dpr.jsonl", [record])
    fields = {
        "question": "q.text",
        "answers": "answers",
        "documents": "ctxs",
        "document": {"supporting": "has_answer"},
    }
    (example,) = JsonlDataset(path=str(path), fields=fields).load().examples
    assert example.question == "Capital of France?" and example.answers == ["Paris"]
    assert [(e.doc_id, e.text) for e in example.evidence] == [("w1", "Paris is the capital.")]


def test_empty_texts_and_an_empty_file(tmp_path):
    path = _write(tmp_path / "qa.jsonl", [_line(["d1"]), _line([], [DOCS[0], {"id": "e", "text": ""}])])
    with pytest.raises(DatasetError) as error:
        JsonlDataset(path=str(path)).load()
    assert str(error.value) == f"{path}:2: field 'documents[1].text': expected a non-empty string"
    bare = _write(tmp_path / "bare.jsonl", [_line([], ["fine", "  "])])
    with pytest.raises(DatasetError) as error:
        JsonlDataset(path=str(bare)).load()
    assert str(error.value) == f"{bare}:1: field 'documents[1]': expected a non-empty string"
    corpus = _write(tmp_path / "corpus.jsonl", [{"id": "c1", "text": "ok"}, {"id": "c2", "text": " "}])
    questions = _write(tmp_path / "q.jsonl", [{"question": "Q?", "answer": "ok"}])
    with pytest.raises(DatasetError) as error:
        JsonlDataset(path=str(questions), corpus=str(corpus)).load()
    assert str(error.value) == f"{corpus}:2: field 'document.text': expected a non-empty string"
    for name, content in (("empty.jsonl", ""), ("blank.jsonl", "\n \n"), ("empty.json", "[]")):
        empty = tmp_path / name
        empty.write_text(content)
        with pytest.raises(DatasetError) as error:
            JsonlDataset(path=str(empty)).load()
        assert (
            str(error.value)
            == f"{empty}: the file is empty (no questions); expected JSON Lines or a JSON array"
        )


def test_answer_format_is_a_dataset_setting(tmp_path):
    path = _write(
        tmp_path / "qa.jsonl",
        [_line(["d1"]), {**_line(["d1"]), "id": "own", "answer_format": "short"}],
    )
    loaded = JsonlDataset(path=str(path), answer_format="free-form").load()
    assert [e.meta.get("answer_format") for e in loaded.examples] == ["free-form", "short"]
    assert [e.meta.get("answer_format") for e in JsonlDataset(path=str(path)).load().examples] == [
        None,
        "short",
    ]
