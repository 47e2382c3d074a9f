"""The allocation model on result tables: fit per (generator, dataset), suggest per budget, regret.

Works on the one-row-per-configuration frame of :func:`ragkit.report.load_results` (dotted params
such as ``strategy.type`` and ``strategy.k``, metrics such as ``contains_answer`` and
``effective_context_tokens``). A configuration fits a budget when its measured (or, for an untried
combination, estimated) mean effective context tokens per question is within it.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ragkit.allocation import DEFAULT_DIMS, AllocationModel, Dim, fit

# -- result frames -------------------------------------------------------------------------------
PARAMETRIC = ("rag", "drag", "iterdrag")  # strategies whose configurations live in theta-space
STRATEGY = "strategy.type"
TOKENS = "effective_context_tokens"


def group_columns(results: Any) -> list[str]:
    """Columns that identify a (generator, dataset) pair: all generator.* and dataset.* params."""
    return [c for c in results.columns if c.startswith(("generator.", "dataset."))]


def _key(row: Any, columns: Sequence[str]) -> str:
    return "|".join(f"{c}={row[c]}" for c in columns)


def theta_of(results: Any, dims: Sequence[Dim] = DEFAULT_DIMS) -> np.ndarray:
    """(N, d) theta of result rows (each dimension's default where the column is missing/NaN, then
    its floor: RAG and DRAG have n = 1)."""
    out = np.empty((len(results), len(dims)))
    for j, dim in enumerate(dims):
        values = results[dim.column] if dim.column in results.columns else [None] * len(results)
        out[:, j] = dim.read(values)
    return out


def parametric(results: Any) -> Any:
    if STRATEGY not in results.columns:
        raise KeyError(f"results have no {STRATEGY!r} column (is this a ragkit results table?)")
    return results[results[STRATEGY].isin(PARAMETRIC)]


def informativeness(results: Any, metric: str, dims: Sequence[Dim] = DEFAULT_DIMS) -> np.ndarray:
    """``(i_doc, i_shot, 0, ...)`` of one (generator, dataset) from its zero-shot (k=0, m=0, n=1),
    one-document (k=1, m=0, n=1) and one-shot (k=0, m=1, n=1) configurations (App. H); a component
    is 0 when the sweep lacks the configurations it needs."""
    rows = parametric(results)
    theta = theta_of(rows, dims)
    names = [d.name for d in dims]
    base = {d.name: d.default for d in dims} | {"k": 0.0, "m": 0.0}

    def score_at(**values: float) -> float | None:
        want = np.array([values.get(n, base.get(n, 0.0)) for n in names])
        hit = np.all(np.isclose(theta, want), axis=1)
        return float(rows[metric][hit].mean()) if hit.any() else None

    info = np.zeros(len(dims))
    zero = score_at()
    if zero is not None:
        for name, unit in (("k", {"k": 1.0}), ("m", {"m": 1.0})):
            one = score_at(**unit)
            if name in names and one is not None:
                info[names.index(name)] = one - zero
    return info


@dataclass
class GroupFit:
    """The model fitted on one group's parametric configurations (see :func:`fit_results`)."""

    key: str
    model: AllocationModel
    info: dict[str, np.ndarray]  # dataset key -> informativeness vector
    data_key: dict[int, str]  # result row index -> dataset key

    def predict_rows(self, rows: Any, dims: Sequence[Dim]) -> np.ndarray:
        info = np.array([self.info.get(self.data_key.get(i, ""), np.zeros(len(dims))) for i in rows.index])
        return self.model.predict(theta_of(rows, dims), info.reshape(len(rows), len(dims)))


def fit_results(
    results: Any,
    metric: str,
    dims: Sequence[Dim] = DEFAULT_DIMS,
    *,
    by: str = "generator+dataset",
    max_tokens: float | None = None,
) -> dict[str, GroupFit]:
    """Fit one model per generator and dataset (``by="generator"``: one per generator across its
    datasets, which identifies ``b``). ``max_tokens`` keeps only configurations that measured at
    most that many effective context tokens (the leave-one-budget-out check)."""
    if metric not in results.columns:
        raise KeyError(
            f"no metric {metric!r} in the results (columns: {', '.join(map(str, results.columns))})"
        )
    rows = parametric(results).dropna(subset=[metric, TOKENS])
    if rows.empty:
        return {}
    columns = group_columns(results)
    gen_cols = [c for c in columns if c.startswith("generator.")] if by == "generator" else columns
    data_cols = [c for c in columns if c.startswith("dataset.")]
    fits: dict[str, GroupFit] = {}
    for key, group in rows.groupby(rows.apply(lambda r: _key(r, gen_cols), axis=1), sort=True):
        data_key = {i: _key(r, data_cols) for i, r in group.iterrows()}
        info = {
            dk: informativeness(group[[data_key[i] == dk for i in group.index]], metric, dims)
            for dk in set(data_key.values())
        }
        used = group if max_tokens is None else group[group[TOKENS] <= max_tokens]
        if used.empty:
            continue
        n_q = used["n_questions"].to_numpy(dtype=float) if "n_questions" in used.columns else None
        info_rows = np.array([info[data_key[i]] for i in used.index]).reshape(len(used), len(dims))
        model = fit(
            theta_of(used, dims), used[metric].to_numpy(dtype=float), info_rows, n_questions=n_q, dims=dims
        )
        fits[str(key)] = GroupFit(str(key), model, info, data_key)
    return fits


def short_label(key: str) -> str:
    """A readable name for a group key: the generator's model (or type) and the dataset's name (or
    type) and sample size."""
    fields = dict(part.split("=", 1) for part in key.split("|") if "=" in part)
    pick = [
        fields.get("generator.model") or fields.get("generator.type"),
        fields.get("dataset.name") or fields.get("dataset.type"),
    ]
    if fields.get("dataset.sample") not in (None, "None", "nan"):
        pick.append(f"sample={fields['dataset.sample']}")
    return " ".join(p for p in pick if p) or key or "all"


def group_of(results: Any, by: str = "generator+dataset") -> Any:
    """The group key of each row (see :func:`fit_results`)."""
    columns = group_columns(results)
    cols = [c for c in columns if c.startswith("generator.")] if by == "generator" else columns
    return results.apply(lambda r: _key(r, cols), axis=1) if len(results) else results.index.to_series()


# -- tokens of configurations that were not run ----------------------------------------------------
def _token_features(theta: np.ndarray) -> np.ndarray:
    """1, each theta_j, their pairwise products and the product of all: effective tokens grow
    with k * m * n (every demonstration and every round carries its own documents)."""
    d = theta.shape[1]
    cols = [np.ones(len(theta))] + [theta[:, j] for j in range(d)]
    cols += [theta[:, j] * theta[:, h] for j in range(d) for h in range(j + 1, d)]
    if d >= 3:
        cols.append(np.prod(theta, axis=1))
    return np.stack(cols, axis=1)


def token_model(rows: Any, dims: Sequence[Dim]) -> np.ndarray:
    """Least-squares coefficients of effective tokens on :func:`_token_features` for one strategy."""
    coef, *_ = np.linalg.lstsq(
        _token_features(theta_of(rows, dims)), rows[TOKENS].to_numpy(float), rcond=None
    )
    return coef


# -- suggestions, regret --------------------------------------------------------------------------
def candidates(results: Any, fit_: GroupFit | None, metric: str, dims: Sequence[Dim] = DEFAULT_DIMS) -> Any:
    """Every configuration of one group that a budget could buy: the measured ones (all strategies)
    and the untried combinations of swept theta values of each parametric strategy (tokens
    estimated). ``score`` is the model's prediction where there is one, else the measurement."""

    names = [d.name for d in dims]
    out = []
    theta = theta_of(results, dims)
    is_param = results[STRATEGY].isin(PARAMETRIC).to_numpy()
    predicted = np.full(len(results), np.nan)
    if fit_ is not None and is_param.any():
        predicted[is_param] = fit_.predict_rows(results[is_param], dims)
    for pos, (_, row) in enumerate(results.iterrows()):
        record = {"configuration": row.get("config_name", ""), "strategy": row[STRATEGY]}
        record |= {n: (theta[pos, j] if is_param[pos] else np.nan) for j, n in enumerate(names)}
        record |= {
            "tokens": float(row[TOKENS]),
            "tokens_source": "measured",
            "predicted": predicted[pos],
            "measured": float(row[metric]),
        }
        out.append(record)
    if fit_ is not None:
        for strategy, rows in results[is_param].groupby(STRATEGY):
            seen = {tuple(t) for t in theta_of(rows, dims)}
            values = [sorted(set(theta_of(rows, dims)[:, j])) for j in range(len(dims))]
            grid = [t for t in itertools.product(*values) if tuple(t) not in seen]
            if not grid:
                continue
            grid_arr = np.array(grid, dtype=float)
            tokens = _token_features(grid_arr) @ token_model(rows, dims)
            dk = next(iter(fit_.info)) if len(fit_.info) == 1 else None
            info = fit_.info[dk] if dk else None
            scores = fit_.model.predict(grid_arr, info)
            for t, tok, score in zip(grid_arr, tokens, scores, strict=True):
                label = " ".join(f"{n}={v:g}" for n, v in zip(names, t, strict=True))
                out.append(
                    {
                        "configuration": f"{strategy} {label} (not run)",
                        "strategy": strategy,
                        **dict(zip(names, t, strict=True)),
                        "tokens": float(max(tok, 0.0)),
                        "tokens_source": "estimated",
                        "predicted": float(score),
                        "measured": np.nan,
                    }
                )
    frame = pd.DataFrame(out)
    frame["score"] = frame["predicted"].where(frame["predicted"].notna(), frame["measured"])
    frame["basis"] = np.where(frame["predicted"].notna(), "model", "measured")
    return frame


def suggest(
    results: Any,
    budgets: Sequence[int],
    metric: str,
    dims: Sequence[Dim] = DEFAULT_DIMS,
    *,
    top: int = 5,
    by: str = "generator+dataset",
) -> Any:
    """Ranked configurations per group and budget: only those whose (measured or estimated)
    effective context tokens fit the budget, best ``score`` first."""

    fits = fit_results(results, metric, dims, by=by)
    keys = group_of(results, by)
    tables = []
    for key, group in results.dropna(subset=[metric, TOKENS]).groupby(keys, sort=True):
        pool = candidates(group, fits.get(str(key)), metric, dims)
        for budget in budgets:
            fitting = pool[pool["tokens"] <= budget].sort_values(["score", "tokens"], ascending=[False, True])
            fitting = fitting.head(top).copy()
            fitting.insert(0, "rank", range(1, len(fitting) + 1))
            fitting.insert(0, "budget", budget)
            fitting.insert(0, "group", key)
            tables.append(fitting)
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


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
) -> Any:
    """Per group and budget: the grid-best parametric configuration within the budget, the
    model's pick (fitted on everything) and its regret, the leave-one-budget-out pick (fitted only
    on configurations within the previous, smaller budget) and its regret, and the regret of the
    baselines "always largest k" (plain RAG) and "always full context". Regret = grid-best score -
    measured score of the pick; a negative baseline regret means the baseline beat every
    parametric configuration."""

    budgets = sorted(budgets)
    clean = results.dropna(subset=[metric, TOKENS])
    fits = fit_results(clean, metric, dims, by=by)
    keys = group_of(clean, by)
    records = []
    for key, group in clean.groupby(keys, sort=True):
        params = parametric(group)
        for j, budget in enumerate(budgets):
            pool = params[params[TOKENS] <= budget]
            record: dict[str, Any] = {"group": key, "budget": budget, "n_candidates": len(pool)}
            best_name, best = _pick(pool, metric)
            record |= {"grid_best": best_name, "grid_best_score": best}
            gf = fits.get(str(key))
            if gf is not None and not pool.empty:
                name, score = _pick(pool, metric, gf.predict_rows(pool, dims))
                record |= {"model_pick": name, "model_pick_score": score, "regret": best - score}
            if j > 0 and not pool.empty:
                small = fit_results(group, metric, dims, by=by, max_tokens=budgets[j - 1]).get(str(key))
                if small is not None:
                    name, score = _pick(pool, metric, small.predict_rows(pool, dims))
                    record |= {
                        "lobo_pick": name,
                        "lobo_pick_score": score,
                        "lobo_regret": best - score,
                        "lobo_train_points": small.model.metrics["n_points"],
                    }
            rag = pool[pool[STRATEGY] == "rag"]
            if not rag.empty:
                k = theta_of(rag, dims)[:, [d.name for d in dims].index("k")]
                largest = rag[k == k.max()]
                name, score = _pick(largest, metric)
                record |= {"largest_k_pick": name, "largest_k_regret": best - score}
            fc = group[(group[STRATEGY] == "full_context") & (group[TOKENS] <= budget)]
            if not fc.empty:
                widest = fc[fc[TOKENS] == fc[TOKENS].max()]
                record |= {"full_context_regret": best - float(widest[metric].mean())}
            records.append(record)
    return pd.DataFrame(records)
