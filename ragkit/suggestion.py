"""The allocation model on result tables: fit per (generator, dataset), suggest per budget.

Validation of the suggestions (regret against the grid-best) is in :mod:`ragkit.regret`.

Works on the one-row-per-configuration frame of :func:`ragkit.report.load_results` (dotted params
such as ``strategy.type`` and ``strategy.retrieval.k``, metrics such as ``contains_answer`` and
``effective_context_tokens``). A budget is per question, as in the paper's Eq. 1 (every question
must fit: l(x_i; theta) <= L_max): a configuration fits a budget when its measured (or, for an
untried combination, estimated) largest effective context of any question is within it
(``fit="max"``, the default); ``fit="p95"`` allows 5% of questions over, ``fit="mean"`` compares
the mean (what ragkit did before: ``rag bm25 k=1`` with mean 212 and max 347 tokens "fitted" 256).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ragkit.allocation import DEFAULT_DIMS, AllocationModel, Dim, fit, split_column

# -- result frames -------------------------------------------------------------------------------
# Which strategies live in theta-space, and along which dimensions, is what each strategy declares
# (Strategy.theta, Strategy.family): each family has its own informativeness (App. H: "in each
# strategy and task"); RAG declares DRAG's family (RAG is DRAG with m = 0). A family whose own
# sweep lacks the configurations i needs borrows DRAG's, the paper's single-call strategy.
BASE_FAMILY = "drag"
STRATEGY = "strategy.type"
TOKENS = "effective_context_tokens"
BY = ("generator+dataset", "generator")
# --fit: the per-question statistic of effective context tokens a budget is compared with.
FITS = {"max": f"{TOKENS}_max", "p95": f"{TOKENS}_p95", "mean": TOKENS}
FIT_WORDS = {
    "max": "every question within the budget (the paper's Eq. 1)",
    "p95": "95% of questions within the budget",
    "mean": "the mean over questions within the budget (single questions may exceed it)",
}
BUDGET = "budget_tokens"  # the column budgets are compared with (see with_budget)


def with_budget(results: Any, fit: str = "max") -> Any:
    """``results`` with :data:`BUDGET` set to the statistic ``fit`` names (max, p95 or mean of the
    per-question effective context tokens). Results whose summaries lack it (scored before ragkit
    stored per-question statistics) raise KeyError; :func:`fill_token_statistics` fills them from
    the per-question scores."""
    if fit not in FITS:
        raise ValueError(f"fit={fit!r}: expected one of {', '.join(FITS)}")
    if BUDGET in results.columns and results.attrs.get("fit") == fit:
        return results
    column = FITS[fit]
    if column not in results.columns:
        raise KeyError(
            f"the results have no {column!r} (per-question effective context, needed for fit={fit!r}):"
            " `ragkit run` re-scores finished runs with it, or fill_token_statistics() reads it from"
            " the per-question scores"
        )
    out = results.assign(**{BUDGET: results[column].astype(float)})
    out.attrs["fit"] = fit
    return out


def fill_token_statistics(results: Any, scores: Any) -> Any:
    """Per-question percentiles and maxima of effective context tokens, from per-question scores
    (joined on config_hash), where the results lack them."""
    from ragkit.metrics import TOKEN_PERCENTILES

    column = "cost_effective_context_tokens"
    if scores.empty or column not in scores or "config_hash" not in scores:
        return results
    grouped = scores.groupby("config_hash")[column]
    stats = {f"{TOKENS}_max": grouped.max()}
    stats |= {f"{TOKENS}_p{q}": grouped.quantile(q / 100) for q in TOKEN_PERCENTILES}
    out = results.copy()
    for name, series in stats.items():
        filled = out["config_hash"].map(series)
        out[name] = out[name].fillna(filled) if name in out else filled
    return out


def group_columns(results: Any) -> list[str]:
    """Columns that identify a (generator, dataset) pair: all generator.* and dataset.* params."""
    return [c for c in results.columns if c.startswith(("generator.", "dataset."))]


def dataset_columns(results: Any) -> list[str]:
    return [c for c in results.columns if c.startswith("dataset.")]


def fit_columns(results: Any, by: str = "generator+dataset") -> list[str]:
    """The columns one fit is keyed on: generator and dataset, or (``by="generator"``) only the
    generator, pooling its datasets as the paper does."""
    if by not in BY:
        raise ValueError(f"by={by!r}: expected one of {BY}")
    columns = group_columns(results)
    return [c for c in columns if c.startswith("generator.")] if by == "generator" else columns


def row_key(row: Any, columns: Sequence[str]) -> str:
    return "|".join(f"{c}={row[c]}" for c in columns)


@functools.cache
def declared(strategy_type: str) -> tuple[Mapping[str, str], str] | None:
    """The theta a strategy type declares (dimension -> result column) and its informativeness
    family; None for a strategy without theta or one not registered here."""
    from ragkit import registry

    try:
        cls = registry.get("strategy", str(strategy_type))
    except registry.RegistryError:
        return None
    theta = getattr(cls, "theta", None)
    return (dict(theta), cls.allocation_family()) if theta else None


def family_of(strategy_type: str) -> str:
    found = declared(strategy_type)
    if found is None:
        raise KeyError(f"strategy {strategy_type!r} declares no allocation dimensions (theta)")
    return found[1]


def declared_dims(results: Any) -> list[str]:
    """The dimension names the strategies of these results declare, in first-seen order."""
    if STRATEGY not in results.columns:
        return []
    found = [declared(t) for t in results[STRATEGY].dropna().unique()]
    return list(dict.fromkeys(name for d in found if d for name in d[0]))


def theta_of(results: Any, dims: Sequence[Dim] = DEFAULT_DIMS) -> np.ndarray:
    """(N, d) theta of result rows: each dimension read from its own column (``--dim``) or from
    the column the row's strategy declares for it; its default where the strategy does not
    declare it or the value is missing, then its floor (RAG and DRAG have n = 1)."""
    out = np.empty((len(results), len(dims)))
    kinds = results[STRATEGY].tolist() if STRATEGY in results.columns else [None] * len(results)
    own = [(declared(kind) or ({}, ""))[0] if isinstance(kind, str) else {} for kind in kinds]
    for j, dim in enumerate(dims):
        declared_columns = [split_column(theta.get(dim.name, "")) for theta in own]
        columns = [dim.column or column for column, _ in declared_columns]
        shifts = [0.0 if dim.column else shift for _, shift in declared_columns]
        values = [
            results[column].iloc[i] if column and column in results.columns else None
            for i, column in enumerate(columns)
        ]
        out[:, j] = dim.read(values, shifts)
    return out


def parametric(results: Any) -> Any:
    if STRATEGY not in results.columns:
        raise KeyError(f"results have no {STRATEGY!r} column (is this a ragkit results table?)")
    return results[results[STRATEGY].map(lambda t: declared(t) is not None).astype(bool)]


def _informativeness(results: Any, metric: str, dims: Sequence[Dim]) -> np.ndarray:
    """(i_doc, i_shot, 0, ...) with NaN where the configurations it needs were not run."""
    rows = parametric(results)
    theta = theta_of(rows, dims)
    names = [d.name for d in dims]
    base = {d.name: d.default for d in dims} | {"k": 0.0, "m": 0.0}

    def score_at(**values: float) -> float:
        want = np.array([values.get(n, base[n]) for n in names])
        hit = np.all(np.isclose(theta, want), axis=1)
        return float(rows[metric][hit].mean()) if hit.any() else float("nan")

    info = np.zeros(len(dims))
    zero = score_at()
    for name in ("k", "m"):
        if name in names:
            info[names.index(name)] = score_at(**{name: 1.0}) - zero
    return info


def informativeness(results: Any, metric: str, dims: Sequence[Dim] = DEFAULT_DIMS) -> np.ndarray:
    """``(i_doc, i_shot, 0, ...)`` of one strategy on one (generator, dataset) (App. H): the gain of
    one document (k=1, m=0, n=1) and of one demonstration (k=0, m=1, n=1) over zero-shot QA (k=0,
    m=0, n=1); a component is 0 when the rows lack the configurations it needs."""
    return np.nan_to_num(_informativeness(results, metric, dims), nan=0.0)


def informativeness_table(
    rows: Any, metric: str, dims: Sequence[Dim], data_columns: Sequence[str]
) -> tuple[dict[tuple[str, str], np.ndarray], dict[tuple[str, str], dict[str, str]]]:
    """i per (dataset key, strategy family), and where i_doc and i_shot came from: the family's own
    base configurations, else DRAG's on the same dataset (the paper is silent here: IterDRAG sweeps
    often skip its zero-document and zero-shot runs), else nothing (0)."""
    rows = parametric(rows)
    table: dict[tuple[str, str], np.ndarray] = {}
    sources: dict[tuple[str, str], dict[str, str]] = {}
    if rows.empty:
        return table, sources
    data = rows.apply(lambda r: row_key(r, data_columns), axis=1)
    names = [d.name for d in dims]
    for dk, part in rows.groupby(data, sort=True):
        family = part[STRATEGY].map(family_of)
        single = _informativeness(part[family == BASE_FAMILY], metric, dims)
        for fam in sorted(set(family)):
            own = _informativeness(part[family == fam], metric, dims)
            table[(dk, fam)] = np.where(np.isnan(own), np.nan_to_num(single, nan=0.0), own)
            sources[(dk, fam)] = {
                name: (fam if not np.isnan(own[j]) else BASE_FAMILY if not np.isnan(single[j]) else "missing")
                for j, name in enumerate(names)
                if name in ("k", "m")
            }
    return table, sources


def _info_rows(rows: Any, dims: Sequence[Dim], table: dict, data_columns: Sequence[str]) -> np.ndarray:
    out = np.zeros((len(rows), len(dims)))
    for pos, (_, row) in enumerate(rows.iterrows()):
        key = (row_key(row, data_columns), family_of(row[STRATEGY]))
        if key not in table:
            raise KeyError(f"no informativeness for {key} (measured: {sorted(table)})")
        out[pos] = table[key]
    return out


@dataclass
class GroupFit:
    """The model fitted on one group's parametric configurations (see :func:`fit_results`)."""

    key: str
    model: AllocationModel
    info: dict[tuple[str, str], np.ndarray]  # (dataset key, strategy family) -> informativeness
    info_from: dict[tuple[str, str], dict[str, str]]  # ... -> {"k"/"m": family it was measured on}
    data_columns: list[str]

    def info_rows(self, rows: Any, dims: Sequence[Dim], info: dict | None = None) -> np.ndarray:
        """(N, d) informativeness of result rows, from this fit's table or ``info`` (another
        dataset's, for domain transfer)."""
        return _info_rows(rows, dims, self.info if info is None else info, self.data_columns)

    def predict_rows(self, rows: Any, dims: Sequence[Dim], info: dict | None = None) -> np.ndarray:
        return self.model.predict(theta_of(rows, dims), self.info_rows(rows, dims, info))

    def dataset_key(self, row: Any) -> str:
        return row_key(row, self.data_columns)

    def info_doc(self) -> dict[str, dict[str, Any]]:
        """The informativeness table as JSON: dataset key -> family -> {"i", "from"}."""
        out: dict[str, dict[str, Any]] = {}
        for (dk, fam), vec in sorted(self.info.items()):
            out.setdefault(dk, {})[fam] = {"i": vec.tolist(), "from": self.info_from[(dk, fam)]}
        return out


def fit_results(
    results: Any,
    metric: str,
    dims: Sequence[Dim] = DEFAULT_DIMS,
    *,
    by: str = "generator+dataset",
    max_tokens: float | None = None,
) -> dict[str, GroupFit]:
    """Fit one model per generator and dataset, or (``by="generator"``, the paper's estimation)
    one per generator across its datasets, with i per dataset and strategy. ``max_tokens`` keeps
    only configurations that measured at most that many effective context tokens (the
    leave-one-budget-out check; per question, see :func:`with_budget`); i is still measured on
    all of them."""
    if metric not in results.columns:
        raise KeyError(
            f"no metric {metric!r} in the results (columns: {', '.join(map(str, results.columns))})"
        )
    rows = parametric(results).dropna(subset=[metric, TOKENS])
    if rows.empty:
        return {}
    fit_cols, data_cols = fit_columns(results, by), dataset_columns(results)
    fits: dict[str, GroupFit] = {}
    for key, group in rows.groupby(rows.apply(lambda r: row_key(r, fit_cols), axis=1), sort=True):
        info, info_from = informativeness_table(group, metric, dims, data_cols)
        budget_column = BUDGET if BUDGET in group.columns else TOKENS
        used = group if max_tokens is None else group[group[budget_column] <= max_tokens]
        if used.empty:
            continue
        n_q = used["n_questions"].to_numpy(dtype=float) if "n_questions" in used.columns else None
        model = fit(
            theta_of(used, dims),
            used[metric].to_numpy(dtype=float),
            _info_rows(used, dims, info, data_cols),
            n_questions=n_q,
            dims=dims,
        )
        fits[str(key)] = GroupFit(str(key), model, info, info_from, data_cols)
    return fits


def fit_for(fits: dict[str, GroupFit], group: Any, by: str = "generator+dataset") -> GroupFit | None:
    """The fit that covers one (generator, dataset) group of result rows."""
    return fits.get(row_key(group.iloc[0], fit_columns(group, by))) if len(group) else None


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


def group_of(results: Any) -> Any:
    """The (generator, dataset) key of each row: suggestions, regret and plots are per dataset
    whichever way the model was fitted (:func:`fit_for` finds the fit of a group)."""
    columns = group_columns(results)
    return results.apply(lambda r: row_key(r, columns), axis=1) if len(results) else results.index.to_series()


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


def token_model(rows: Any, dims: Sequence[Dim], column: str = TOKENS) -> np.ndarray:
    """Least-squares coefficients of effective tokens (``column``: the mean, or the per-question
    statistic budgets are compared with) on :func:`_token_features` for one strategy."""
    coef, *_ = np.linalg.lstsq(
        _token_features(theta_of(rows, dims)), rows[column].to_numpy(float), rcond=None
    )
    return coef


# -- suggestions, regret --------------------------------------------------------------------------
def candidates(
    results: Any, fit_: GroupFit | None, metric: str, dims: Sequence[Dim] = DEFAULT_DIMS, *, fit: str = "max"
) -> Any:
    """Every configuration of one group that a budget could buy: the measured ones (all strategies)
    and the untried combinations of swept theta values of each parametric strategy (tokens
    estimated). ``tokens`` is the per-question statistic ``fit`` names (:func:`with_budget`),
    ``mean_tokens`` the mean. ``score`` is the model's prediction where there is one, else the
    measurement."""
    results = with_budget(results, fit)

    names = [d.name for d in dims]
    out = []
    theta = theta_of(results, dims)
    is_param = results[STRATEGY].map(lambda t: declared(t) is not None).to_numpy(dtype=bool)
    predicted = np.full(len(results), np.nan)
    if fit_ is not None and is_param.any():
        predicted[is_param] = fit_.predict_rows(results[is_param], dims)
    for pos, (_, row) in enumerate(results.iterrows()):
        record = {"configuration": row.get("config_name", ""), "strategy": row[STRATEGY]}
        record |= {n: (theta[pos, j] if is_param[pos] else np.nan) for j, n in enumerate(names)}
        record |= {
            "tokens": float(row[BUDGET]),
            "mean_tokens": float(row[TOKENS]),
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
            tokens = _token_features(grid_arr) @ token_model(rows, dims, BUDGET)
            means = _token_features(grid_arr) @ token_model(rows, dims)
            scores = fit_.model.predict(grid_arr, fit_.info_rows(rows.iloc[:1], dims)[0])
            for t, tok, mean, score in zip(grid_arr, tokens, means, scores, strict=True):
                label = " ".join(f"{n}={v:g}" for n, v in zip(names, t, strict=True))
                out.append(
                    {
                        "configuration": f"{strategy} {label} (not run)",
                        "strategy": strategy,
                        **dict(zip(names, t, strict=True)),
                        "tokens": float(max(tok, 0.0)),
                        "mean_tokens": float(max(mean, 0.0)),
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
    fit: str = "max",
) -> Any:
    """Ranked configurations per (generator, dataset) and budget: only those whose (measured or
    estimated) effective context tokens per question fit the budget (``fit``: the per-question
    statistic compared, :func:`with_budget`), best ``score`` first. ``by``: how the model is
    fitted (:func:`fit_results`). A configuration without the statistic is left out."""

    clean = with_budget(results, fit).dropna(subset=[metric, TOKENS, BUDGET])
    fits = fit_results(clean, metric, dims, by=by)
    tables = []
    unfit = []  # budgets nothing fits: said, not silently skipped
    for key, group in clean.groupby(group_of(clean), sort=True):
        pool = candidates(group, fit_for(fits, group, by), metric, dims, fit=fit)
        for budget in budgets:
            fitting = pool[pool["tokens"] <= budget].sort_values(["score", "tokens"], ascending=[False, True])
            if fitting.empty and not pool.empty:
                smallest = pool.loc[pool["tokens"].idxmin()]
                unfit.append(
                    {
                        "group": key,
                        "budget": budget,
                        "smallest": smallest["configuration"],
                        "tokens": float(smallest["tokens"]),
                        "mean_tokens": float(smallest["mean_tokens"]),
                    }
                )
            fitting = fitting.head(top).copy()
            fitting.insert(0, "rank", range(1, len(fitting) + 1))
            fitting.insert(0, "budget", budget)
            fitting.insert(0, "group", key)
            tables.append(fitting)
    out = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    out.attrs["unfit"] = unfit
    return out
