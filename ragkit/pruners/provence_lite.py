"""provence-lite: ragkit's own Provence-style pruner (a MiniLM with relevance and keep heads).

It scores each retrieved passage and each of its sentences in one pass (see
``ragkit/pruners/_lite_model.py``), keeps the sentences whose keep score reaches ``threshold``
(possibly none: the passage is then dropped, possibly all) and, when ``rerank``, returns the
passage score as the candidate's score so the strategy's ordering uses it. Scores are cached per
(model, question, passage), so sweeping ``threshold`` runs the model once.

Train the model with ``ragkit train-pruner`` (it writes ``.ragkit/models/provence-lite`` by
default); ``model`` may point to any folder it wrote. ``threshold: null`` uses the threshold that
training calibrated on held-out questions (stored in the model folder).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ragkit.constraints import Count, Device, Fraction, Tokens
from ragkit.pruners._scoring import ScoringItem, ScoringPruner, SentenceScores
from ragkit.registry import register

DEFAULT_MODEL_DIR = ".ragkit/models/provence-lite"


class ModelMissingError(FileNotFoundError):
    """The provence-lite model folder does not exist (or is not one)."""


@register("pruner", "provence-lite")
class ProvenceLitePruner(ScoringPruner):
    version = "1"

    def __init__(
        self,
        *,
        model: str = DEFAULT_MODEL_DIR,
        threshold: Fraction | None = None,
        rerank: bool = True,
        keep_empty: bool = False,
        max_length: Tokens = 256,
        batch_size: Count = 32,
        device: Device = "auto",
    ) -> None:
        self.model = model
        self.threshold = threshold
        self.rerank = rerank
        self.keep_empty = keep_empty
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = device

    def _folder(self) -> Path:
        from ragkit.pruners._lite_model import CONFIG_NAME

        folder = Path(self.model).expanduser()
        if not (folder / CONFIG_NAME).is_file():
            raise ModelMissingError(
                f"provence-lite pruner: no trained model at {folder.resolve()} (field 'model': expected a"
                f" folder with {CONFIG_NAME}). Train one with:  ragkit train-pruner --output {self.model}"
            )
        return folder

    def warm_up(self) -> None:
        self._load()

    def _load(self) -> Any:
        if getattr(self, "model_", None) is not None:
            return self.model_
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from ragkit.pruners._lite_model import Encoder, load, resolve_device

        folder = self._folder()
        self.device_ = resolve_device(self.device)
        self.model_, tokenizer, self.config_ = load(folder, self.device_)
        self.encoder_ = Encoder(tokenizer, self.max_length)
        return self.model_

    def model_identity(self) -> dict[str, Any]:
        # The folder's files and sizes and the training run id: a retrained model gets new cache keys.
        folder = self._folder().resolve()
        files = {
            str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()
        }
        from ragkit.pruners._lite_model import CONFIG_NAME

        return {
            "weights": {"path": str(folder), "files": files, "config": (folder / CONFIG_NAME).read_text()}
        }

    def effective_threshold(self) -> float:
        if self.threshold is not None:
            return self.threshold
        self._load()
        return float(self.config_.get("default_threshold", 0.5))

    def _score(self, items: Sequence[ScoringItem]) -> list[SentenceScores]:
        from ragkit.pruners._lite_model import predict

        model = self._load()
        triples = [(it.query, it.chunk.title, it.sentences) for it in items]
        results = predict(model, self.encoder_, triples, batch_size=self.batch_size, device=self.device_)
        return [SentenceScores(s, p, t) for s, p, t in results]

    def select(self, scores: SentenceScores) -> list[bool]:
        threshold = self.effective_threshold()
        return [s >= threshold for s in scores.sentences]
