"""A Summary-of-a-Haystack task (Laban et al., 2024, "Summary of a Haystack: A Challenge to
Long-Context LLMs and RAG Systems"), built here from needle-style facts in Paul Graham's essays.

SummHay synthesises haystacks of documents in which known *insights* repeat across documents, asks
for a query-focused summary that cites its sources, and scores the coverage of the expected
insights and the quality of the citations against the documents known to hold each insight. This
builds the same structure with facts that no model can know beforehand:

- haystack ``i`` has ``documents`` documents of about ``document_tokens`` tokens of essay text;
- it is about ``subtopics`` fictional organisations (names drawn from word lists, "the Amber
  Falcon Institute"), each with ``insights`` facts from attribute templates with drawn values
  ("The Amber Falcon Institute was founded in 1931.");
- every fact is inserted, at sentence boundaries, into ``repeat`` different documents (so an
  insight is cited correctly only by citing those documents);
- each subtopic is one question: "summarize the insights about <organisation>" as a bulleted list
  with citations, SummHay's format. The other organisations' facts are distractors.

``answers`` are the insight sentences; ``evidence`` every (document, insight) placement, so
evidence recall and exact citation scores work too; ``meta["insights"]`` (JSON) lists each
insight's text, the words that carry its value (``key``, for the lexical check) and its documents.
Scores: :mod:`ragkit.summhay`. Deterministic by ``seed``; the sizes are in ``meta``.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from ragkit.constraints import Count, Seed, Tokens
from ragkit.data._haystack_tools import rendered, seeded, token_counter
from ragkit.data.base import (
    DatasetError,
    DatasetLoader,
    LoadedDataset,
    Partition,
    file_revision,
    read_memoised,
)
from ragkit.data.needle import ADJECTIVES, NOUNS, parse_essays
from ragkit.data.packaged import packaged_data_path
from ragkit.registry import register
from ragkit.types import Document, Evidence, Example

CHARS_PER_TOKEN = 4  # only to size documents; actual tokens are counted
KINDS = ("Institute", "Foundation", "Company", "Society", "Museum", "Laboratory", "Cooperative", "Orchestra")
CITIES = [
    "Lisbon",
    "Osaka",
    "Tromso",
    "Valparaiso",
    "Nairobi",
    "Tallinn",
    "Hobart",
    "Cusco",
    "Tbilisi",
    "Quebec",
    "Windhoek",
    "Bergen",
]
FIELDS = [
    "marine biology",
    "glass recycling",
    "rare books",
    "solar boats",
    "folk music",
    "seed banking",
    "bridge repair",
    "children's theatre",
    "weather balloons",
    "beekeeping",
]
FIRST = [
    "Maren",
    "Tobias",
    "Ilse",
    "Dario",
    "Wendel",
    "Priya",
    "Oskar",
    "Lucia",
    "Hamid",
    "Greta",
    "Nils",
    "Ayla",
]
LAST = [
    "Okafor",
    "Lindqvist",
    "Varga",
    "Moreau",
    "Takeda",
    "Halloran",
    "Brandt",
    "Quispe",
    "Novak",
    "Achterberg",
    "Sato",
    "Ferreira",
]
# Attribute templates: the sentence, and which drawn values carry the insight (the lexical key).
TEMPLATES = (
    ("{e} was founded in {year}.", ("year",)),
    ("{e} has its headquarters in {city}.", ("city",)),
    ("{e} employs {count} people.", ("count",)),
    ("{e} is directed by {person}.", ("person",)),
    ("{e} is best known for its work on {field}.", ("field",)),
    ("{e} has an annual budget of {budget} million dollars.", ("budget",)),
    ("{e} opened a second office in {city2} in {year2}.", ("city2", "year2")),
    ("{e} publishes a yearly report called {report}.", ("report",)),
)


def _values(rng: Any) -> dict[str, str]:
    cities = rng.sample(CITIES, 2)
    return {
        "year": str(rng.randrange(1850, 1990)),
        "year2": str(rng.randrange(1991, 2024)),
        "city": cities[0],
        "city2": cities[1],
        "count": str(rng.randrange(40, 9000)),
        "person": f"{rng.choice(FIRST)} {rng.choice(LAST)}",
        "field": rng.choice(FIELDS),
        "budget": str(rng.randrange(2, 900)),
        "report": f"The {rng.choice(ADJECTIVES).title()} {rng.choice(NOUNS).title()} Review",
    }


@register("dataset", "summary-haystack")
class SummaryHaystack(DatasetLoader):
    """``n`` haystacks of ``documents`` documents, each with ``subtopics`` questions (one per
    organisation) whose ``insights`` facts repeat in ``repeat`` documents each."""

    version = "1"

    def __init__(
        self,
        *,
        n: Count = 5,
        documents: Count = 20,
        document_tokens: Tokens = 150,
        subtopics: Count = 2,
        insights: Count = 3,
        repeat: Count = 3,
        tokenizer: str = "smollm2",
        path: str | None = None,
        sample: Count | None = None,
        seed: Seed = 0,
        partition: Partition = "all",
        ids: list[str] | None = None,
    ) -> None:
        self.n = n
        self.documents = documents
        self.document_tokens = document_tokens
        self.subtopics = subtopics
        self.insights = insights
        self.repeat = repeat
        self.tokenizer = tokenizer
        self.path = path
        self.sample = sample
        self.seed = seed
        self.partition = partition
        self.ids = ids

    def source_path(self) -> Path:
        if self.path is None:
            return packaged_data_path("PaulGrahamEssays.json")
        path = Path(self.path).expanduser()
        if not path.is_file():
            raise DatasetError(f"summary-haystack dataset: field 'path': file not found: {path.resolve()}")
        return path

    def note(self) -> str:
        return (
            f"{self.n} haystack(s) x {self.subtopics} subtopic question(s): {self.documents} documents"
            f" of ~{self.document_tokens} tokens, {self.insights} insights per subtopic in {self.repeat}"
            " documents each"
        )

    def describe(self) -> dict[str, Any]:
        """Without building the haystacks (that would load the tokenizer to list datasets)."""
        info: dict[str, Any] = {"type": self.registry_name, "path": None, "available": False}
        info.update(questions=self.n * self.subtopics, note=self.note())
        try:
            info["path"] = str(self.source_path())
            info["available"] = True
        except (DatasetError, OSError) as exc:
            info["note"] = str(exc)
        return info

    def _check(self) -> None:
        limits = {
            "n": (self.n, 1),
            "documents": (self.documents, 1),
            "document_tokens": (self.document_tokens, 10),
            "subtopics": (self.subtopics, 1),
            "insights": (self.insights, 1),
            "repeat": (self.repeat, 1),
        }
        for field, (value, low) in limits.items():
            if value < low:
                raise DatasetError(
                    f"summary-haystack dataset: field '{field}' must be at least {low}, got {value}"
                )
        if self.insights > len(TEMPLATES):
            raise DatasetError(f"summary-haystack dataset: field 'insights': at most {len(TEMPLATES)}")
        if self.repeat > self.documents:
            raise DatasetError("summary-haystack dataset: field 'repeat' is more than 'documents'")

    def load(self) -> LoadedDataset:
        self._check()
        path = self.source_path()
        sentences = read_memoised(path, parse_essays).sentences
        counter = token_counter(self.tokenizer, loader="summary-haystack")
        stubs = [
            Example(id=f"summhay-{i:03d}-{s}", question="", answers=[])
            for i in range(self.n)
            for s in range(self.subtopics)
        ]
        wanted = {e.id for e in self.select(stubs)}
        examples = []
        for i in range(self.n):
            if any(f"summhay-{i:03d}-{s}" in wanted for s in range(self.subtopics)):
                examples += [e for e in self.haystack(i, sentences, counter) if e.id in wanted]
        return LoadedDataset(examples, None, f"summary-haystack:{file_revision(path)}")

    def haystack(self, i: int, sentences: tuple[str, ...], counter: Any) -> list[Example]:
        """The questions of haystack ``i``: its documents, organisations and placed insights."""
        rng = seeded(self.seed, "summhay", i)
        names = rng.sample([(a, b, k) for a in ADJECTIVES for b in NOUNS for k in KINDS], self.subtopics)
        entities = [f"the {a.title()} {b.title()} {k}" for a, b, k in names]
        documents = self._filler(i, sentences, rng)
        parts = [list(d.sentences) for d in documents]
        topics = []
        for s, entity in enumerate(entities):
            values = _values(rng)
            facts = []
            for t, (template, keys) in enumerate(rng.sample(TEMPLATES, self.insights)):
                text = template.format(e=entity, **values)
                text = text[0].upper() + text[1:]
                docs = sorted(rng.sample(range(self.documents), self.repeat))
                for d in docs:
                    parts[d].insert(rng.randrange(len(parts[d]) + 1), text)
                facts.append(
                    {
                        "id": f"{s}.{t}",
                        "text": text,
                        "key": [values[k] for k in keys],
                        "docs": [documents[d].id for d in docs],
                    }
                )
            topics.append(facts)
        documents = [
            replace(d, text=" ".join(p), sentences=tuple(p)) for d, p in zip(documents, parts, strict=True)
        ]
        actual = sum(counter.count_many([rendered(d) for d in documents]))
        out = []
        for s, (entity, facts) in enumerate(zip(entities, topics, strict=True)):
            question = (
                f"Summarize the {len(facts)} main insights the documents give about {entity}. Write a bullet"
                " point list with one insight per bullet, each a single sentence, and cite the documents"
                " each insight comes from by their numbers, for example [1][4]."
            )
            out.append(
                Example(
                    id=f"summhay-{i:03d}-{s}",
                    question=question,
                    answers=[f["text"] for f in facts],
                    documents=documents,
                    evidence=[Evidence(doc_id=d, text=f["text"]) for f in facts for d in f["docs"]],
                    meta={
                        "task": "summary-haystack",
                        "type": "summary",
                        "answer_format": "summary",
                        "topic": entity,
                        "insights": json.dumps(facts),
                        "distractor_insights": sum(len(t) for k, t in enumerate(topics) if k != s),
                        "n_documents": self.documents,
                        "repeat": self.repeat,
                        "actual_tokens": actual,
                    },
                )
            )
        return out

    def _filler(self, i: int, sentences: tuple[str, ...], rng: Any) -> list[Document]:
        """``documents`` runs of consecutive essay sentences of about ``document_tokens`` each."""
        size = self.document_tokens * CHARS_PER_TOKEN
        out = []
        for d in range(self.documents):
            position = rng.randrange(len(sentences))
            picked: list[str] = []
            while sum(len(s) + 1 for s in picked) < size:
                picked.append(sentences[position % len(sentences)])
                position += 1
            out.append(
                Document(id=f"summhay-{i:03d}/doc{d:02d}", text=" ".join(picked), sentences=tuple(picked))
            )
        return out
