"""Adapter for the published Provence checkpoint (naver/provence-reranker-debertav3-v1).

Used as its authors intend: ``AutoModel.from_pretrained(model, trust_remote_code=True)`` and
``model.process(questions, contexts, title=..., threshold=...)``, which splits each passage into
sentences itself (with nltk), keeps those whose mean token keep-probability clears ``threshold``
and returns ``{"pruned_context": ..., "reranking_score": ...}`` shaped like its inputs. The pruned
text becomes the chunk's text, the reranking score its score (when ``rerank``), and an empty
pruned text drops the passage (unless ``keep_empty``).

Because the threshold is applied inside ``process()``, cached outputs are keyed WITH the threshold
(a sweep runs the model once per threshold); reproducing its sentence rounding outside would mean
re-implementing the checkpoint's own code. ``trust_remote_code`` runs the checkpoint's Python
(``modeling_provence.py``): use a copy you trust. ragkit never downloads it: put it in the local
Hugging Face cache (``huggingface-cli download naver/provence-reranker-debertav3-v1``) or give a
local folder; it also needs ``pip install nltk`` and nltk's ``punkt_tab`` data. CC BY-NC 4.0.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from ragkit.constraints import Count, Device, Fraction
from ragkit.pruners._scoring import ScoringItem, ScoringPruner, SentenceScores, normalise, pruned_chunk
from ragkit.registry import register
from ragkit.types import Chunk

DEFAULT_MODEL = "naver/provence-reranker-debertav3-v1"


@register("pruner", "provence")
class ProvencePruner(ScoringPruner):
    version = "1"
    selection_params = ("keep_empty", "rerank")  # threshold is applied inside process(): part of the key

    def __init__(
        self,
        *,
        model: str = DEFAULT_MODEL,
        threshold: Fraction = 0.1,
        always_select_title: bool = False,
        rerank: bool = True,
        keep_empty: bool = False,
        batch_size: Count = 32,
        device: Device = "auto",
    ) -> None:
        self.model = model
        self.threshold = threshold
        self.always_select_title = always_select_title
        self.rerank = rerank
        self.keep_empty = keep_empty
        self.batch_size = batch_size
        self.device = device

    def warm_up(self) -> None:
        self._load()

    def _load(self) -> Any:
        if getattr(self, "model_", None) is not None:
            return self.model_
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoModel

        from ragkit.pruners._lite_model import resolve_device

        try:
            model = AutoModel.from_pretrained(self.model, trust_remote_code=True, local_files_only=True)
        except Exception as exc:  # OSError, ValueError, ImportError (nltk) ...
            raise RuntimeError(
                f"provence pruner: cannot load {self.model!r} offline (field 'model'). ragkit never downloads"
                " models at run time: download it once where you have internet"
                f" (huggingface-cli download {self.model}) so it is in the local Hugging Face cache, or set"
                " 'model' to a local copy; it also needs `pip install nltk` and nltk's punkt_tab data."
                " For a pruner that works offline, use provence-lite (ragkit train-pruner)."
                f" Cause: {type(exc).__name__}: {exc}"
            ) from exc
        self.model_ = model.to(resolve_device(self.device)).eval()
        return self.model_

    def _count(self, text: str) -> int:
        tokenizer = getattr(self.model_, "tokenizer", None)
        if tokenizer is not None and callable(tokenizer):
            return len(tokenizer(text)["input_ids"])
        return len(text.split())

    def _score(self, items: Sequence[ScoringItem]) -> list[SentenceScores]:
        model = self._load()
        groups: dict[str, list[int]] = {}
        for i, it in enumerate(items):
            groups.setdefault(it.query, []).append(i)
        questions = list(groups)
        contexts = [[items[i].chunk.text for i in groups[q]] for q in questions]
        titles = [[items[i].chunk.title for i in groups[q]] for q in questions]
        has_titles = all(t for group in titles for t in group)
        output = model.process(
            questions,
            contexts,
            title=titles if has_titles else None,
            threshold=self.threshold,
            batch_size=self.batch_size,
            always_select_title=self.always_select_title and has_titles,
            reorder=False,
            enable_warnings=False,
        )
        pruned, scores = output["pruned_context"], output["reranking_score"]
        out: list[SentenceScores | None] = [None] * len(items)
        for g, q in enumerate(questions):
            for j, i in enumerate(groups[q]):
                text = str(pruned[g][j])
                kept = normalise(text)
                sentences = [1.0 if normalise(s) in kept else 0.0 for s in items[i].sentences]
                tokens = self._count(f"{q} {items[i].chunk.title} {items[i].chunk.text}")
                out[i] = SentenceScores(sentences, float(scores[g][j]), tokens, text)
        return [s for s in out if s is not None]

    def apply(self, chunk: Chunk, sentences: list[str], scores: SentenceScores) -> Chunk | None:
        text = (scores.text or "").strip()
        if not text:
            return None
        keep = [s >= 0.5 for s in scores.sentences]
        # Provence's own text (its sentence split may differ from ours); meta records which of ours survived.
        return replace(pruned_chunk(chunk, sentences, keep), text=text)
