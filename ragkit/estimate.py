"""``ragkit estimate``: the token side of every configuration's cost before any generation.

Retrieval, reranking and pruning may run (their results are cached and reused by the real run);
generators only load their tokenizers. Output tokens are the ``max_new_tokens`` upper bound.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ragkit.config import Experiment
from ragkit.runner import prepare
from ragkit.types import stable_hash


def estimate_experiment(experiment: Experiment, *, limit: int | None = None) -> pd.DataFrame:
    from ragkit.budget import call_flops

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
        flops = [call_flops(info, c.input_tokens, c.output_tokens) for c in costs]
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
                "window": generator.context_window,
            }
        )
    return pd.DataFrame(rows).fillna("")
