"""The allocation model's validation with its uncertainty: "the model is wrong" or "too few questions".

R^2 and regret (:mod:`ragkit.regret`) are computed from configuration means over N questions, so
they carry the sampling noise of those means. Here:

- **bootstrap over questions**: the same resample of question ids for every configuration (the
  comparisons are paired), each configuration's mean recomputed, the model refitted and R^2,
  regret and the scores of the picks recomputed; percentile intervals over resamples;
- **noise ceiling**: the R^2 a perfect model (the true score of every configuration) would reach
  against measured means that carry sampling noise: 1 - sum_c var(mean_c) / sum_c (y_c - mean y)^2
  over the fitted configurations, with var(mean_c) the variance of configuration c's mean
  (its per-question variance / n). An R^2 near the ceiling says the rest is noise: more questions,
  not another model; an R^2 far below it says the model misses structure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ragkit.allocation import DEFAULT_DIMS, Dim, split_column
from ragkit.suggestion import (
    BUDGET,
    FITS,
    STRATEGY,
    TOKENS,
    declared,
    fit_for,
    fit_results,
    group_of,
    parametric,
    with_budget,
)

# Quantities whose intervals the bootstrap reports, per (group, budget) from the regret table.
REGRET_COLUMNS = (
    "grid_best_score",
    "model_pick_score",
    "regret",
    "largest_k_score",
    "largest_k_regret",
    "full_context_score",
    "full_context_regret",
)


def question_matrix(scores: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per-question ``metric``: one row per question id, one column per config_hash (NaN where a
    configuration did not answer the question)."""
    for column in ("example_id", "config_hash", metric):
        if column not in scores:
            raise KeyError(f"the per-question scores have no {column!r} column")
    return scores.pivot_table(index="example_id", columns="config_hash", values=metric, aggfunc="mean")


def noise_ceiling(results: pd.DataFrame, matrix: pd.DataFrame, metric: str) -> float:
    """The R^2 of a perfect model on these configurations (see the module docstring); NaN when the
    scores do not vary. ``results`` rows are the fitted configurations (with config_hash)."""
    columns = [h for h in results["config_hash"] if h in matrix.columns]
    if len(columns) < 2:
        return float("nan")
    values = matrix[columns]
    n = values.notna().sum(axis=0).to_numpy(float)
    variance = values.var(axis=0, ddof=1).to_numpy(float) / np.maximum(n, 1)
    means = values.mean(axis=0).to_numpy(float)
    total = float(((means - means.mean()) ** 2).sum())
    return 1.0 - float(np.nansum(variance)) / total if total > 0 else float("nan")


def _r2_by_group(fits: dict[str, Any], results: pd.DataFrame, by: str) -> dict[str, float]:
    out = {}
    for key, group in results.groupby(group_of(results), sort=True):
        gf = fit_for(fits, group, by)
        if gf is not None:
            out[str(key)] = float(gf.model.metrics["r2"])
    return out


def bootstrap_validation(
    results: pd.DataFrame,
    scores: pd.DataFrame,
    budgets: Sequence[int],
    metric: str,
    dims: Sequence[Dim] = DEFAULT_DIMS,
    *,
    by: str = "generator+dataset",
    fit: str = "max",
    n_boot: int = 200,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, pd.DataFrame]:
    """Bootstrap intervals over questions for R^2 per group (with the noise ceiling) and for the
    regret table's scores and regrets per (group, budget). Returns ``{"fit": ..., "regret": ...}``:
    point values from the measured means, ``*_low`` / ``*_high`` percentile bounds. Budgets are
    compared with the measured per-question token statistic (resampling moves scores, not the
    configurations' lengths)."""
    from ragkit.regret import regret_table

    clean = with_budget(results, fit).dropna(subset=[metric, TOKENS])
    # Only the columns the fits read: hundreds of refits on a wide results frame cost seconds each.
    keep = {"config_hash", "config_name", "n_questions", metric, STRATEGY, *FITS.values(), BUDGET}
    keep |= {d.column for d in dims}
    for strategy_type in clean[STRATEGY].dropna().unique() if STRATEGY in clean else ():
        found = declared(str(strategy_type))  # theta columns each strategy declares (Dim.column "")
        keep |= {split_column(column)[0] for column in (found[0].values() if found else ())}
    clean = clean[[c for c in clean.columns if c in keep or c.startswith(("generator.", "dataset."))]]
    matrix = question_matrix(scores[scores["config_hash"].isin(clean["config_hash"])], metric)
    fits = fit_results(clean, metric, dims, by=by)
    point_r2 = _r2_by_group(fits, clean, by)
    point = regret_table(clean, budgets, metric, dims, by=by, fit=fit, checks=False)
    rng = np.random.default_rng(seed)
    values = matrix.to_numpy(float)
    r2_draws: dict[str, list[float]] = {k: [] for k in point_r2}
    regret_draws: list[pd.DataFrame] = []
    hashes = list(matrix.columns)
    for _ in range(n_boot):
        rows = values[rng.integers(0, len(values), size=len(values))]
        with np.errstate(invalid="ignore"):
            means = pd.Series(np.nanmean(rows, axis=0), index=hashes)
        resampled = clean.assign(**{metric: clean["config_hash"].map(means).fillna(clean[metric])})
        draws = _r2_by_group(fit_results(resampled, metric, dims, by=by), resampled, by)
        for key, value in draws.items():
            r2_draws.setdefault(key, []).append(value)
        table = regret_table(resampled, budgets, metric, dims, by=by, fit=fit, checks=False)
        regret_draws.append(table.assign(draw=len(regret_draws)))
    tail = (1 - level) / 2
    fit_rows = []
    for key, group in clean.groupby(group_of(clean), sort=True):
        if str(key) not in point_r2:
            continue
        draws = np.array(r2_draws[str(key)], dtype=float)
        fit_rows.append(
            {
                "group": key,
                "n_questions": len(matrix),
                "n_configurations": len(parametric(group)),
                "r2": point_r2[str(key)],
                "r2_low": float(np.nanquantile(draws, tail)) if draws.size else np.nan,
                "r2_high": float(np.nanquantile(draws, 1 - tail)) if draws.size else np.nan,
                "noise_ceiling": noise_ceiling(parametric(group), matrix, metric),
            }
        )
    regret = point.copy()
    if regret_draws and not regret.empty:
        stacked = pd.concat(regret_draws, ignore_index=True)
        for column in REGRET_COLUMNS:
            if column not in stacked:
                continue
            grouped = stacked.groupby(["group", "budget"])[column]
            low, high = grouped.quantile(tail), grouped.quantile(1 - tail)
            keys = pd.MultiIndex.from_frame(regret[["group", "budget"]])
            regret[f"{column}_low"] = low.reindex(keys).to_numpy()
            regret[f"{column}_high"] = high.reindex(keys).to_numpy()
        per_draw = stacked.groupby("draw")
        summary = {
            c: per_draw[c].mean()
            for c in ("regret", "largest_k_regret", "full_context_regret")
            if c in stacked
        }
        regret.attrs["mean_regret_draws"] = pd.DataFrame(summary)
    return {"fit": pd.DataFrame(fit_rows), "regret": regret}


def mean_regret_summary(validation: dict[str, pd.DataFrame], level: float = 0.95) -> pd.DataFrame:
    """Mean regret over budgets (and groups) of the model's pick and the baselines, with the
    bootstrap interval of that mean (0 is the oracle: the grid-best configuration itself)."""
    regret = validation["regret"]
    draws = regret.attrs.get("mean_regret_draws", pd.DataFrame())
    tail = (1 - level) / 2
    rows = [{"pick": "oracle (grid best)", "mean regret": 0.0, "low": 0.0, "high": 0.0}]
    for column, label in (
        ("regret", "allocation model"),
        ("largest_k_regret", "always largest k"),
        ("full_context_regret", "always full context"),
    ):
        if column not in regret or regret[column].isna().all():
            continue
        values = draws[column].dropna() if column in draws else pd.Series(dtype=float)
        rows.append(
            {
                "pick": label,
                "mean regret": float(regret[column].mean()),
                "low": float(values.quantile(tail)) if len(values) else np.nan,
                "high": float(values.quantile(1 - tail)) if len(values) else np.nan,
            }
        )
    return pd.DataFrame(rows)


def reading(r2: float, high: float, ceiling: float) -> str:
    """What a fit's R^2 says next to its noise ceiling (see the module docstring)."""
    if np.isnan(ceiling):
        return "-"
    if ceiling < 0.5:
        verdict = f"noise-dominated: a perfect model would reach R^2 {ceiling:.2f}; more questions needed"
    elif (not np.isnan(high) and high >= ceiling) or r2 >= ceiling - 0.05:
        verdict = "fits as well as the sampling noise allows"
    else:
        verdict = "misses structure: R^2 is below what the noise allows"
    return verdict


def fit_quality_table(validation: dict[str, pd.DataFrame], label: Any = str) -> pd.DataFrame:
    """The table to read: per group, R^2 with its bootstrap interval, the noise ceiling, a reading."""
    rows = []
    for row in validation["fit"].to_dict("records"):
        interval = "" if np.isnan(row["r2_low"]) else f" [{row['r2_low']:.2f}, {row['r2_high']:.2f}]"
        rows.append(
            {
                "group": label(row["group"]),
                "questions": row["n_questions"],
                "configurations": row["n_configurations"],
                "R^2 [95% CI]": f"{row['r2']:.3f}{interval}",
                "noise ceiling": f"{row['noise_ceiling']:.3f}",
                "reading": reading(row["r2"], row["r2_high"], row["noise_ceiling"]),
            }
        )
    return pd.DataFrame(rows)


def with_interval(frame: pd.DataFrame, column: str, digits: int = 3) -> pd.Series:
    """``column`` as "value [low, high]" where the bootstrap bounds exist."""
    from ragkit.report import format_interval

    return frame.apply(format_interval, axis=1, args=(column,), bounds=("_low", "_high"), digits=digits)
