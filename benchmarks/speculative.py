"""RAPID (retrieval-augmented speculative decoding) against plain long-context decoding.

Same prompts for both: the full-context prompt of each question (RULER-style needles in Paul
Graham's essays and HotpotQA haystacks, SmolLM2 tokens), greedy. RAPID's drafter is the same
model reading the RAG prompt (BM25, k = 3 passages of ~200 tokens for needles, k = 3 paragraphs for
HotpotQA); the target verifies ``lookahead`` drafted tokens per forward pass.

Per question: plain decoding (the transformers generator, ``model.generate``) and RAPID (ragkit's
loop); also plain greedy decoding in ragkit's own loop (the same forward calls as RAPID, one token
at a time), which separates the speculation's effect from the two loops' overheads. Reported:
acceptance rate (accepted / proposed draft tokens), tokens per target pass, decode seconds per
output token, speed-ups, and whether RAPID's output tokens are identical to plain decoding's.

    python benchmarks/speculative.py                  # 4k tokens, 6 + 6 questions, lookahead 4
    python benchmarks/speculative.py --lengths 2048 --n 2 --lookahead 2 4
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from gemfilter import examples  # the same needle and HotpotQA haystacks as the GemFilter benchmark


def own_loop(generator, ids: list[int], max_new: int) -> tuple[list[int], float]:
    """Plain greedy decoding with the forward calls RAPID's loop makes: tokens, decode seconds."""
    from transformers import DynamicCache

    from ragkit.generators._speculative import _forward

    model = generator.model_
    eos = generator._eos_ids()
    cache = DynamicCache(config=model.config)
    tokens = [int(_forward(model, ids, cache)[-1].argmax())]
    started = time.perf_counter()
    while len(tokens) < max_new and tokens[-1] not in eos:
        tokens.append(int(_forward(model, [tokens[-1]], cache)[-1].argmax()))
    return tokens, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lengths", type=int, nargs="+", default=[4096])
    parser.add_argument("--n", type=int, default=6, help="questions of each kind per length")
    parser.add_argument("--lookahead", type=int, nargs="+", default=[4])
    parser.add_argument("--max-new", type=int, default=32)
    args = parser.parse_args()

    import pandas as pd

    from ragkit.generators.base import GenerationRequest
    from ragkit.generators.transformers import TransformersGenerator
    from ragkit.retrievers.bm25 import BM25Retriever
    from ragkit.strategies.base import Record
    from ragkit.strategies.full_context import FullContext
    from ragkit.strategies.rapid import RAPID
    from ragkit.strategies.retrieval import Retrieval

    generator = TransformersGenerator(model="smollm2", dtype="float32", prefix_reuse=False, batch_size=1)
    generator._load_model()
    rows = []
    started = time.perf_counter()
    for length in args.lengths:
        for kind in ("needle", "hotpotqa"):
            batch = examples(kind, length, args.n)  # needle haystacks come as ~200-token passages
            rapid_strategy = RAPID(retrieval=Retrieval(retriever=BM25Retriever(), k=3))
            drafts = rapid_strategy.contexts([Record(e) for e in batch], generator, None)
            for example, packed in zip(batch, drafts, strict=True):
                messages = FullContext()._prepare(Record(example), generator, None)[0]
                ids = generator.tokenizer.encode(generator.render(messages))
                [plain] = generator.generate([GenerationRequest(messages, max_new_tokens=args.max_new)])
                loop_tokens, loop_s = own_loop(generator, ids, args.max_new)
                for lookahead in args.lookahead:
                    method = {"name": "speculative", "draft": packed.messages, "lookahead": lookahead}
                    [rapid] = generator.generate(
                        [GenerationRequest(messages, max_new_tokens=args.max_new, method=method)]
                    )
                    rows.append(
                        {
                            "length": length,
                            "kind": kind,
                            "lookahead": lookahead,
                            "target tokens": len(ids),
                            "draft tokens": rapid.meta["draft_tokens"],
                            "output tokens": plain.output_tokens,
                            "acceptance": rapid.meta["acceptance"],
                            "tokens/pass": rapid.output_tokens / max(1, rapid.meta["rounds"] + 1),
                            "plain decode s/token": plain.decode_seconds / max(1, plain.output_tokens - 1),
                            "loop decode s/token": loop_s / max(1, len(loop_tokens) - 1),
                            "rapid decode s/token": rapid.decode_seconds / max(1, rapid.output_tokens - 1),
                            "plain s": plain.prefill_seconds + plain.decode_seconds,
                            "rapid s": rapid.prefill_seconds + rapid.decode_seconds,
                            "identical": rapid.text == plain.text
                            and rapid.output_tokens == plain.output_tokens,
                        }
                    )
            print(
                f"{length} {kind}: done at {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True
            )
    frame = pd.DataFrame(rows)
    table = frame.groupby(["length", "kind", "lookahead"]).mean(numeric_only=True)
    table["decode speed-up vs generate"] = table["plain decode s/token"] / table["rapid decode s/token"]
    table["decode speed-up vs own loop"] = table["loop decode s/token"] / table["rapid decode s/token"]
    table["total speed-up"] = table["plain s"] / table["rapid s"]
    table["identical"] = frame.groupby(["length", "kind", "lookahead"])["identical"].agg(
        lambda s: f"{int(s.sum())}/{len(s)}"
    )
    print(f"SmolLM2-135M float32, CPU, greedy, {args.max_new} new tokens at most; drafter = the same model on"
          f" BM25 k=3; {time.perf_counter() - started:.0f} s in all")  # fmt: skip
    print(table.reset_index().round(3).to_string(index=False))


if __name__ == "__main__":
    main()
