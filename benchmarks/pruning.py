"""Pruner benchmark: evidence-sentence recall vs compression on held-out HotpotQA, and throughput.

For N eval-partition HotpotQA questions (never used to train provence-lite), every one of the 10
paragraphs is a candidate. Each scoring pruner scores all sentences once (a fresh cache, so the
timing is real), then a threshold sweep traces its recall-vs-compression curve:
- recall: share of gold supporting-fact sentences still in the pruned context (micro average);
- compression: share of context tokens removed (MiniLM WordPiece tokens; title not counted).
Curves are compared at matched compression by linear interpolation; the oracle is one point.

    python benchmarks/pruning.py --questions 300 --model .ragkit/models/provence-lite
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def load_questions(n: int, seed: int):
    from ragkit.registry import build

    examples = build("dataset", "hotpotqa", {"partition": "eval", "sample": n, "seed": seed}).load().examples
    chunker = build("chunker", "passage")
    return [(e, chunker.chunk(e.documents)) for e in examples]


def gold_flags(examples) -> list[list[list[bool]]]:
    """Per question, per paragraph chunk, per sentence: is it a gold evidence sentence?"""
    from ragkit.pruners._scoring import chunk_sentences, normalise
    from ragkit.pruners.oracle import is_evidence

    out = []
    for example, chunks in examples:
        by_doc: dict[str, list[str]] = {}
        for ev in example.evidence:
            by_doc.setdefault(ev.doc_id, []).append(normalise(ev.text))
        out.append([[is_evidence(s, by_doc.get(c.doc_id, [])) for s in chunk_sentences(c)] for c in chunks])
    return out


def curve(keep_masks, gold, lengths) -> tuple[float, float]:
    """(recall, compression) of one selection: keep_masks[q][c][s] booleans."""
    kept_gold = total_gold = kept_tokens = total_tokens = 0
    for q_keep, q_gold, q_len in zip(keep_masks, gold, lengths, strict=True):
        for c_keep, c_gold, c_len in zip(q_keep, q_gold, q_len, strict=True):
            for k, g, n in zip(c_keep, c_gold, c_len, strict=True):
                kept_gold += k and g
                total_gold += g
                kept_tokens += n if k else 0
                total_tokens += n
    return kept_gold / max(total_gold, 1), 1 - kept_tokens / max(total_tokens, 1)


def recall_at(points: list[tuple[float, float, float]], compression: float) -> float | None:
    """Recall interpolated at a compression level from (threshold, recall, compression) points."""
    pts = sorted((c, r) for _, r, c in points)
    xs, ys = [c for c, _ in pts], [r for _, r in pts]
    if not xs or compression < xs[0] or compression > xs[-1]:
        return None
    return float(np.interp(compression, xs, ys))


def max_compression_at(points, recall: float) -> float:
    ok = [c for _, r, c in points if r >= recall]
    return max(ok) if ok else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--questions", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default=".ragkit/models/provence-lite", help="provence-lite model folder")
    parser.add_argument("--cache-dir", default=None, help="score cache (default: a fresh temporary one)")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    os.environ["RAGKIT_CACHE_DIR"] = args.cache_dir or tempfile.mkdtemp(prefix="ragkit-pruning-bench-")

    from ragkit.pruners._lite_model import base_model_path
    from ragkit.pruners._scoring import ScoringItem, chunk_sentences
    from ragkit.pruners.oracle import OraclePruner
    from ragkit.registry import build

    t0 = time.perf_counter()
    examples = load_questions(args.questions, args.seed)
    gold = gold_flags(examples)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_model_path(), local_files_only=True)
    lengths = [
        [
            [len(ids) for ids in tokenizer(chunk_sentences(c), add_special_tokens=False)["input_ids"]]
            for c in chunks
        ]
        for _, chunks in examples
    ]
    n_passages = sum(len(chunks) for _, chunks in examples)
    n_gold = sum(g for q in gold for c in q for g in c)
    print(
        f"{len(examples)} eval-partition HotpotQA questions, {n_passages} paragraphs, {n_gold} gold sentences"
    )
    print(f"data loaded in {time.perf_counter() - t0:.0f}s")

    pruners = {
        "provence-lite": (
            build("pruner", "provence-lite", {"model": args.model, "threshold": 0.5}),
            [round(0.01 * i, 2) for i in range(1, 100)],
        ),
        "sentence-similarity": (
            build("pruner", "sentence-similarity", {"threshold": 0.0, "keep_ratio": None}),
            [round(-0.2 + 0.01 * i, 2) for i in range(0, 101)],
        ),
    }
    results: dict[str, dict] = {}
    for name, (pruner, grid) in pruners.items():
        items = [ScoringItem(e.question, c, chunk_sentences(c)) for e, chunks in examples for c in chunks]
        pruner._load()  # throughput excludes loading the weights
        start = time.perf_counter()
        scores = pruner.scores(items)
        seconds = time.perf_counter() - start
        it = iter(scores)
        nested = [[next(it).sentences for _ in chunks] for _, chunks in examples]
        points = []
        for threshold in grid:
            masks = [[[s >= threshold for s in c] for c in q] for q in nested]
            recall, compression = curve(masks, gold, lengths)
            points.append((threshold, recall, compression))
        results[name] = {"points": points, "seconds": seconds, "passages_per_second": n_passages / seconds}
    lite = pruners["provence-lite"][0]
    results["provence-lite"]["default_threshold"] = float(lite.config_.get("default_threshold", 0.5))

    # The oracle, through the real pruner (it needs evidence, not a model).
    start = time.perf_counter()
    pruned = OraclePruner().prune(
        [e.question for e, _ in examples],
        [[_scored(c) for c in chunks] for _, chunks in examples],
        evidence=[e.evidence for e, _ in examples],
    )
    seconds = time.perf_counter() - start
    masks = []
    for (_, chunks), kept in zip(examples, pruned, strict=True):
        by_id = {s.chunk.id: dict(s.chunk.meta)["kept_sentences"] for s in kept}
        masks.append([[i in by_id.get(c.id, ()) for i in range(len(chunk_sentences(c)))] for c in chunks])
    recall, compression = curve(masks, gold, lengths)
    results["oracle"] = {
        "points": [(None, recall, compression)],
        "seconds": seconds,
        "passages_per_second": n_passages / max(seconds, 1e-9),
    }

    report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


def _scored(chunk):
    from ragkit.types import Scored

    return Scored(chunk, 0.0)


def report(results: dict[str, dict]) -> None:
    levels = (0.5, 0.6, 0.7, 0.8)
    print()
    print("recall of gold evidence sentences at matched compression (interpolated)")
    print(
        f"{'pruner':<22}"
        + "".join(f"{'@' + format(c, '.0%'):>9}" for c in levels)
        + f"{'max compr. @90% rec.':>22}{'passages/s':>12}"
    )
    for name, r in results.items():
        if name == "oracle":
            continue
        cells = "".join(
            f"{v:>9.3f}" if (v := recall_at(r["points"], c)) is not None else f"{'-':>9}" for c in levels
        )
        print(
            f"{name:<22}{cells}{max_compression_at(r['points'], 0.9):>22.3f}{r['passages_per_second']:>12.1f}"
        )
    _, recall, compression = results["oracle"]["points"][0]
    print(f"{'oracle':<22} recall {recall:.3f} at compression {compression:.3f}")
    lite = results.get("provence-lite", {})
    if "default_threshold" in lite:
        t = lite["default_threshold"]
        point = min(lite["points"], key=lambda p: abs(p[0] - t))
        print(
            f"provence-lite at its calibrated default threshold {t:.2f}: recall {point[1]:.3f},"
            f" compression {point[2]:.3f}"
        )
    print()
    print("curves (threshold: recall / compression)")
    for name, r in results.items():
        if name == "oracle":
            continue
        shown = r["points"][:: max(1, len(r["points"]) // 12)]
        print(f"  {name}: " + ", ".join(f"{t:g}: {rec:.2f}/{c:.2f}" for t, rec, c in shown))


if __name__ == "__main__":
    sys.exit(main())
