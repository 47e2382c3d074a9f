"""``ragkit estimate``: the token side of every configuration's cost before any generation.

Retrieval, reranking and pruning may run (their results are cached and reused by the real run);
generators only load their tokenizers. Output tokens are the ``max_new_tokens`` upper bound, and so
are dollars: priced per token, or per hour at the catalog's throughput, with every prompt token
computed unless the strategy knows a prefix shared between questions that the generator reuses
(full context over documents with several questions), and output tokens at their bound.
:func:`power_note` says what difference the sample can detect in the paired design ragkit uses.

``--gpu`` adds what the configuration costs a server (:mod:`ragkit.serving`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ragkit.config import Experiment
from ragkit.generators.base import ModelInfo
from ragkit.runner import prepare
from ragkit.serving import DEFAULT_UTILISATION, Hardware, cost_rows, format_bytes, serving
from ragkit.types import Cost, stable_hash


def estimate_experiment(
    experiment: Experiment,
    *,
    limit: int | None = None,
    gpu: Hardware | None = None,
    dtype: str | None = None,
    utilisation: float = DEFAULT_UTILISATION,
) -> pd.DataFrame:
    """One row per configuration. With ``gpu``, the serving columns of :mod:`ragkit.serving`:
    KV cache per token and per question, the most questions in flight that fit the accelerator's
    memory after the weights, and prefill / decode time bounds (one question alone) and a
    throughput bound (at that concurrency)."""
    from ragkit.budget import call_flops, estimated_dollars, price_table

    prepared = prepare(experiment, limit=limit)
    rows = []
    for configuration, strategy in zip(experiment.configurations, prepared.strategies, strict=True):
        dataset = prepared.datasets[stable_hash(configuration.resolved["dataset"])]
        generator = prepared.generators[stable_hash(configuration.resolved["generator"])]
        try:
            costs = strategy.estimate(dataset.examples, generator, dataset.corpus)
        except NotImplementedError as exc:
            rows.append({"configuration": configuration.name, "note": str(exc)})
            continue
        tokens = np.array([c.input_tokens for c in costs], dtype=float)
        info = generator.model_info()
        # a strategy whose calls cost other than their tokens say (GemFilter's partial prefill)
        flops = [c.flops or call_flops(info, c.input_tokens, c.output_tokens) for c in costs]
        for c in costs:  # before reuse, every prompt token is computed (an upper bound)
            c.prefill_tokens_computed = c.prefill_tokens_computed or c.input_tokens
        prices = price_table(generator)
        priced = [estimated_dollars(c, prices) for c in costs] if prices is not None else []
        rows.append(
            {
                "configuration": configuration.name,
                "questions": len(costs),
                "eff. ctx mean": round(float(tokens.mean())),
                "p95": round(float(np.percentile(tokens, 95))),
                "max": int(tokens.max()),
                "output ≤": int(np.mean([c.output_tokens for c in costs])),
                "calls": round(float(np.mean([c.calls for c in costs])), 2),
                "aux tokens": round(float(np.mean([c.aux_tokens for c in costs]))),
                "GFLOPs/q": round(float(np.mean(flops)) / 1e9, 1),
                "$/q ≤": _dollars(priced),
                "window": generator.context_window,
                **(_serving_columns(info, gpu, costs, dtype, utilisation) if gpu is not None else {}),
            }
        )
    frame = pd.DataFrame(rows).fillna("")
    if "$/q ≤" in frame and not (frame["$/q ≤"] != "").any():
        frame = frame.drop(columns="$/q ≤")  # no generator has prices
    return frame


def _serving_columns(
    info: ModelInfo, gpu: Hardware, costs: list[Cost], dtype: str | None, utilisation: float
) -> dict[str, object]:
    figures = serving(info, gpu, cost_rows(costs), dtype=dtype, utilisation=utilisation)
    return {
        "KV/token": format_bytes(figures.kv_bytes_per_token),
        "KV/q": format_bytes(figures.kv_bytes_per_question),
        "max concurrent": figures.max_concurrency,
        "prefill s ≥": _seconds(figures.prefill_seconds),
        "decode s ≥": _seconds(figures.decode_seconds),
        "q/s ≤": round(figures.questions_per_second, 1),
    }


def _seconds(value: float) -> str:
    return f"{value:.2g}" if value < 1 else f"{value:.1f}"


def _dollars(values: list[float | None]) -> str:
    """Mean estimated dollars per question; "hourly: no throughput" when an hourly price has no
    throughput to turn tokens into hours; "" when unpriced."""
    from ragkit.report import format_dollars

    if not values:
        return ""
    if any(v is None for v in values):
        return "hourly: no throughput"
    return format_dollars(float(np.mean(values)))


def power_note(questions: int, configurations: int, discordance: float = 0.25) -> str:
    """The smallest accuracy difference ``questions`` paired questions detect (two-sided alpha 0.05,
    power 0.8, Connor's McNemar design with the expected ``discordance``), alone and with a
    Bonferroni/Holm correction over the comparisons of every configuration with one baseline."""
    from ragkit.stats import detectable_paired_difference

    def points(alpha: float) -> str:
        delta = detectable_paired_difference(questions, discordance, alpha=alpha)
        return "none within the discordance" if delta != delta else f"{100 * delta:.1f} points"

    comparisons = max(configurations - 1, 1)
    text = (
        f"paired design (same questions, exact McNemar; {discordance:.0%} of questions expected to"
        f" differ between two configurations): {questions} questions detect an accuracy difference of"
        f" {points(0.05)} (alpha 0.05, power 0.8)"
    )
    if comparisons > 1:
        text += f", {points(0.05 / comparisons)} with Holm over {comparisons} comparisons with a baseline"
    return text + "; more questions or fewer comparisons narrow it."
