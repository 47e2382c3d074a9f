"""GemFilter's prefill next to the full prefill, and whether the gold evidence survives selection.

For each context length (SmolLM2 tokens of the full-context prompt) and each question of two
kinds (a RULER-style needle in Paul Graham's essays, and a HotpotQA question in a haystack of
other questions' paragraphs, random depth):

- full prefill: one forward pass over the whole prompt (seconds measured; FLOPs from
  ragkit.budget.call_flops);
- GemFilter: the filter pass (layers 0..r, r = the default filter layer) and a fresh prefill of
  the kept tokens, at each keep size (the filter pass is shared by the keep sizes and timed once;
  FLOPs from ragkit.budget.layers_flops + call_flops);
- evidence recall: the share of the gold evidence's tokens that selection kept, and how often all
  of them were kept ("whole"); the question and answer cue (the prompt's tail) are protected
  exactly as the strategy does.

    python benchmarks/gemfilter.py                       # 2k, 4k, 8k; 6 + 6 questions; keep 256/512/1024
    python benchmarks/gemfilter.py --lengths 2048 --n 2  # a quick look
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def examples(kind: str, length: int, n: int) -> list:
    from ragkit.config import build_component, expand_component

    if kind == "needle":
        ref = {"use": "needle-single", "length": length, "depth": "random", "n": n}
    else:
        ref = {"use": "hotpotqa-haystack", "length": length, "depth": "random", "sample": n}
    spec = expand_component("dataset", ref, None, "dataset")[0]
    return build_component("dataset", spec).load().examples[:n]


def evidence_positions(generator, prompt: str, example) -> set[int]:
    """Token positions of the prompt that overlap a gold evidence text."""
    encoded = generator.hf_tokenizer_(
        prompt, add_special_tokens=generator.tokenizer.add_special_tokens, return_offsets_mapping=True
    )
    spans = []
    for evidence in example.evidence:
        start = prompt.find(evidence.text)
        if start >= 0:
            spans.append((start, start + len(evidence.text)))
    return {
        i
        for i, (a, b) in enumerate(encoded["offset_mapping"])
        if b > a and any(a < end and b > start for start, end in spans)
    }


def prefill_seconds(model, ids: list[int]) -> float:
    import torch

    with torch.inference_mode():
        started = time.perf_counter()
        model(torch.tensor([ids]), use_cache=True, logits_to_keep=1)
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lengths", type=int, nargs="+", default=[2048, 4096, 8000])
    parser.add_argument("--n", type=int, default=6, help="questions of each kind per length")
    parser.add_argument("--keep", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--layer", type=int, default=None, help="filter layer (default: ragkit's)")
    args = parser.parse_args()

    import pandas as pd

    from ragkit.budget import call_flops, layers_flops
    from ragkit.generators import _gemfilter as gem
    from ragkit.generators.transformers import TransformersGenerator
    from ragkit.strategies.base import Record
    from ragkit.strategies.full_context import FullContext
    from ragkit.strategies.gemfilter import question_tail

    generator = TransformersGenerator(model="smollm2", dtype="float32", device="cpu")
    model = generator._load_model()
    info = generator.model_info()
    layer = gem.default_layer(info.n_layers, info.layer_windows) if args.layer is None else args.layer
    prefill_seconds(model, generator.tokenizer.encode("warm up " * 64))
    rows = []
    started = time.perf_counter()
    for length in args.lengths:
        for kind in ("needle", "hotpotqa"):
            for example in examples(kind, length, args.n):
                messages, _ = FullContext()._prepare(Record(example), generator, None)
                prompt = generator.render(messages)
                ids = generator.tokenizer.encode(prompt)
                gold = evidence_positions(generator, prompt, example)
                full_s = prefill_seconds(model, ids)
                scores, filter_s = gem.token_scores(model, ids, layer)
                protect = question_tail(generator, messages)
                for keep in args.keep:
                    kept = set(gem.select(scores, keep, protect))
                    selected_s = prefill_seconds(model, [ids[i] for i in sorted(kept)])
                    rows.append(
                        {
                            "length": length,
                            "kind": kind,
                            "keep": keep,
                            "tokens": len(ids),
                            "full s": full_s,
                            "gemfilter s": filter_s + selected_s,
                            "full GFLOPs": call_flops(info, len(ids), 0) / 1e9,
                            "gemfilter GFLOPs": (
                                layers_flops(info, len(ids), layer + 1) + call_flops(info, keep, 0)
                            )
                            / 1e9,
                            "recall": len(gold & kept) / len(gold) if gold else float("nan"),
                            "whole": float(gold <= kept) if gold else float("nan"),
                        }
                    )
            print(
                f"{length} {kind}: done at {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True
            )
    frame = pd.DataFrame(rows)
    table = frame.groupby(["length", "keep"]).agg(
        prompt_tokens=("tokens", "mean"),
        full_s=("full s", "mean"),
        gemfilter_s=("gemfilter s", "mean"),
        full_gflops=("full GFLOPs", "mean"),
        gemfilter_gflops=("gemfilter GFLOPs", "mean"),
    )
    table["speed-up"] = table["full_s"] / table["gemfilter_s"]
    table["FLOPs ratio"] = table["gemfilter_gflops"] / table["full_gflops"]
    recall = frame.pivot_table(
        index=["length", "keep"], columns="kind", values=["recall", "whole"], aggfunc="mean"
    )
    recall.columns = [f"{what} ({kind})" for what, kind in recall.columns]
    out = table.join(recall).reset_index().round(3)
    print(f"SmolLM2-135M float32, CPU; filter layer {layer} of {info.n_layers} (0-based); {args.n} questions"
          f" of each kind per length; {time.perf_counter() - started:.0f} s in all")  # fmt: skip
    print(out.to_string(index=False))


if __name__ == "__main__":
    main()
