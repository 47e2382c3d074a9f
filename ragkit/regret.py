"""Regret of the allocation model's picks against the grid-best configuration per budget.

The paper's validation (Tables 3 and 4 of "Inference Scaling for Long-Context RAG"): fitted on
everything, on the configurations within a smaller budget (length extrapolation) and on the
generator's other datasets (domain transfer), next to the "always largest k" and "always full
context" baselines. Kept apart from :mod:`ragkit.suggestion`, which it only reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ragkit.allocation import DEFAULT_DIMS, Dim
from ragkit.suggestion import (
    BUDGET,
    STRATEGY,
    TOKENS,
    dataset_columns,
    fit_columns,
    fit_for,
    fit_results,
    group_of,
    informativeness_table,
    parametric,
    row_key,
    theta_of,
    with_budget,
)


def _pick(rows: Any, metric: str, scores: np.ndarray | None = None) -> tuple[str, float]:
    if rows.empty:
        return "", float("nan")
    pos = int(np.argmax(scores if scores is not None else rows[metric].to_numpy(float)))
    return str(rows.iloc[pos].get("config_name", "")), float(rows.iloc[pos][metric])


def regret_table(
    results: Any,
    budgets: Sequence[int],
    metric: str,
    dims: Sequence[Dim] = DEFAULT_DIMS,
    *,
    by: str = "generator+dataset",
    fit: str = "max",
    checks: bool = True,
) -> Any:
    """Per (generator, dataset) and budget: the grid-best parametric configuration within the
    budget and the regret (grid-best score - measured score of the pick) of

    - ``model_pick``: the model fitted on everything (``by``: see :func:`fit_results`);
    - ``lobo_pick`` (length extrapolation, the paper's Table 4): fitted only on configurations
      within the previous, smaller budget;
    - ``transfer_pick`` (domain generalisation, the paper's Table 3; when the generator has other
      datasets): fitted on the generator's other datasets, with i measured on this one;
    - the baselines "always largest k" (plain RAG) and "always full context" (a negative regret
      means the baseline beat every parametric configuration).

    A configuration fits a budget by the per-question statistic ``fit`` (:func:`with_budget`).
    ``checks=False`` leaves out the leave-one-budget-out and transfer fits (the bootstrap of
    :mod:`ragkit.validation` refits hundreds of times)."""

    budgets = sorted(budgets)
    clean = with_budget(results, fit).dropna(subset=[metric, TOKENS, BUDGET])
    fits = fit_results(clean, metric, dims, by=by)
    keys = group_of(clean)
    generator = clean.apply(lambda r: row_key(r, fit_columns(clean, "generator")), axis=1)
    records = []
    for key, group in clean.groupby(keys, sort=True):
        params = parametric(group)
        gf = fit_for(fits, group, by)
        pooled = clean[generator == generator[group.index[0]]] if by == "generator" else group
        transfer, target_info = None, None
        others = clean[(generator == generator[group.index[0]]) & (keys != key)]
        if checks and not parametric(others).empty and not params.empty:
            transfer = fit_for(fit_results(others, metric, dims, by="generator"), others, "generator")
            target_info, _ = informativeness_table(params, metric, dims, dataset_columns(clean))
        for j, budget in enumerate(budgets):
            pool = params[params[BUDGET] <= budget]
            record: dict[str, Any] = {"group": key, "budget": budget, "n_candidates": len(pool)}
            best_name, best = _pick(pool, metric)
            record |= {"grid_best": best_name, "grid_best_score": best}
            if gf is not None and not pool.empty:
                name, score = _pick(pool, metric, gf.predict_rows(pool, dims))
                record |= {"model_pick": name, "model_pick_score": score, "regret": best - score}
            if checks and j > 0 and not pool.empty:
                small = fit_for(
                    fit_results(pooled, metric, dims, by=by, max_tokens=budgets[j - 1]), group, by
                )
                if small is not None:
                    name, score = _pick(pool, metric, small.predict_rows(pool, dims))
                    record |= {
                        "lobo_pick": name,
                        "lobo_pick_score": score,
                        "lobo_regret": best - score,
                        "lobo_train_points": small.model.metrics["n_points"],
                    }
            if transfer is not None and not pool.empty:
                name, score = _pick(pool, metric, transfer.predict_rows(pool, dims, target_info))
                record |= {
                    "transfer_pick": name,
                    "transfer_pick_score": score,
                    "transfer_regret": best - score,
                }
            rag = pool[pool[STRATEGY] == "rag"]
            if not rag.empty:
                k = theta_of(rag, dims)[:, [d.name for d in dims].index("k")]
                largest = rag[k == k.max()]
                name, score = _pick(largest, metric)
                record |= {"largest_k_pick": name, "largest_k_score": score, "largest_k_regret": best - score}
            fc = group[(group[STRATEGY] == "full_context") & (group[BUDGET] <= budget)]
            if not fc.empty:
                widest = fc[fc[BUDGET] == fc[BUDGET].max()]
                score = float(widest[metric].mean())
                record |= {"full_context_score": score, "full_context_regret": best - score}
            records.append(record)
    return pd.DataFrame(records)


def oracle_routes(results: pd.DataFrame, scores: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Oracle routing (per question the better of a RAG configuration and full context) for every
    RAG configuration paired with each full-context configuration of the same group: the upper
    bound of any router between the two, next to the allocation model's regret."""
    from ragkit.strategies.route import oracle_route

    if STRATEGY not in results or not results[STRATEGY].isin(["full_context"]).any():
        return pd.DataFrame()
    if scores.empty or "config_hash" not in scores:
        return pd.DataFrame()
    rows = []
    for key, group in results.groupby(group_of(results), sort=True):
        fulls = group[group[STRATEGY] == "full_context"]
        for _, full in fulls.iterrows():
            fc = scores[scores["config_hash"] == full["config_hash"]]
            for _, rag in group[group[STRATEGY] == "rag"].iterrows():
                rs = scores[scores["config_hash"] == rag["config_hash"]]
                if rs.empty or fc.empty:
                    continue
                rows.append(
                    {
                        "group": key,
                        "rag_config": rag["config_name"],
                        "full_context_config": full["config_name"],
                        **oracle_route(rs, fc, metric),
                    }
                )
    return pd.DataFrame(rows)
