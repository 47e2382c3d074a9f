"""Haystack build throughput and how it scales with the target length.

Builds HotpotQA haystacks at several targets (32k and 128k included) with a real tokenizer and
prints, per target, the build time and tokens per second with a cold token-count cache (every
passage tokenized) and a warm one (counts reused, e.g. the second depth of a sweep). A build
that is linear in the target length has a flat seconds-per-1k-tokens column; the last line fits
``seconds = a + b * length`` and reports how far the largest target is from the line.

    python benchmarks/haystack.py                      # SmolLM2's tokenizer, 8 questions
    python benchmarks/haystack.py --tokenizer gemma3-270m --questions 4 --targets 32k 128k
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokenizer", default="smollm2")
    parser.add_argument("--questions", type=int, default=8)
    parser.add_argument("--targets", nargs="+", default=["8k", "16k", "32k", "64k", "128k"])
    args = parser.parse_args()

    from ragkit.budget import parse_tokens
    from ragkit.data._haystack_tools import token_counter
    from ragkit.data.haystack import Haystack, _pool
    from ragkit.data.hotpotqa import HotpotQA

    base = HotpotQA()
    started = time.perf_counter()
    pool = _pool(base)
    print(f"pool: {len(pool):,} unique HotpotQA paragraphs, loaded in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    counter = token_counter(args.tokenizer)
    print(f"tokenizer {args.tokenizer!r} loaded in {time.perf_counter() - started:.1f} s")

    rows = []
    print(f"\n{'target':>8} {'tokens built':>13} {'cold s':>8} {'cold tok/s':>11} {'s/1k tok':>9} "
          f"{'warm s':>7} {'warm tok/s':>11} {'texts tokenized':>16}")  # fmt: skip
    for target in [parse_tokens(t) for t in args.targets]:
        loader = Haystack(
            base=base, length=target, depth=0.5, tokenizer=args.tokenizer, sample=args.questions
        )
        counter.counts.clear()  # cold: every passage is tokenized
        encoded = counter.encoded
        started = time.perf_counter()
        examples = loader.load().examples
        cold = time.perf_counter() - started
        tokenized = counter.encoded - encoded
        started = time.perf_counter()
        Haystack(base=base, length=target, depth=0.0, tokenizer=args.tokenizer, sample=args.questions).load()
        warm = time.perf_counter() - started
        built = sum(e.meta["actual_tokens"] for e in examples)
        rows.append((target, cold))
        print(
            f"{target:>8,} {built:>13,} {cold:>8.2f} {built / cold:>11,.0f} {1000 * cold / built:>9.4f}"
            f" {warm:>7.2f} {built / warm:>11,.0f} {tokenized:>16,}"
        )

    # Least-squares line through (target, seconds): linear cost means a small intercept and the
    # largest target close to the line.
    n = len(rows)
    mean_x = sum(x for x, _ in rows) / n
    mean_y = sum(y for _, y in rows) / n
    slope = sum((x - mean_x) * (y - mean_y) for x, y in rows) / max(
        sum((x - mean_x) ** 2 for x, _ in rows), 1
    )
    intercept = mean_y - slope * mean_x
    largest, observed = rows[-1]
    predicted = intercept + slope * largest
    print(
        f"\nfit over {args.questions} questions: seconds = {intercept:.3f} + {slope * 1000:.4f} * target/1k;"
        f" at {largest:,} tokens the line predicts {predicted:.2f} s, measured {observed:.2f} s"
        f" ({100 * (observed - predicted) / predicted:+.0f}%)"
    )


if __name__ == "__main__":
    main()
