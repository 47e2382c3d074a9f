"""Plots of inference-scaling results (matplotlib, Agg backend: files only, no display needed).

:func:`scaling_plot` is the figure of "Inference Scaling for Long-Context RAG" (Yue et al., 2025,
Fig. 1/4) for one generator and dataset: score against effective context length (log2 axis), one
line per strategy through its own best measured configurations, the Pareto front of all measured
configurations, and the allocation model's predicted optimum per budget (dashed) with the
configurations it picks at the requested budgets. :func:`calibration_plot` shows predicted
against measured scores of the fitted configurations.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # before pyplot: headless servers, CI and tests
    import matplotlib.pyplot as plt

    return plt


def pareto_front(tokens: Sequence[float], scores: Sequence[float]) -> list[int]:
    """Indices of the configurations no other beats on both axes (fewer or equal tokens and a
    higher score), ordered by tokens; each one strictly improves on the previous."""
    order = sorted(range(len(tokens)), key=lambda i: (tokens[i], -scores[i]))
    front: list[int] = []
    for i in order:
        if not front or scores[i] > scores[front[-1]]:
            front.append(i)
    return front


def predicted_optimum(candidates: Any, budgets: Sequence[float]) -> list[tuple[float, float, str, float]]:
    """Per budget, the (budget, predicted score, configuration, tokens) of the candidate with the
    best prediction among those whose tokens fit; budgets nothing fits are left out."""
    modelled = candidates[candidates["predicted"].notna()]
    out = []
    for budget in budgets:
        fitting = modelled[modelled["tokens"] <= budget]
        if fitting.empty:
            continue
        best = fitting.loc[fitting["predicted"].idxmax()]
        out.append(
            (float(budget), float(best["predicted"]), str(best["configuration"]), float(best["tokens"]))
        )
    return out


def scaling_plot(
    candidates: Any,
    budgets: Sequence[float],
    path: str | Path,
    *,
    metric: str = "score",
    title: str = "",
    fit: str = "max",
) -> Path:
    """``candidates``: :func:`ragkit.suggestion.candidates` of one group (measured rows have
    ``measured``; model rows ``predicted``); tokens are the per-question statistic ``fit``."""
    plt = _pyplot()
    measured = candidates[candidates["measured"].notna()].reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(8, 5))
    colours = plt.get_cmap("tab10")
    for n, (strategy, rows) in enumerate(measured.groupby("strategy", sort=True)):
        colour = colours(n % 10)
        ax.scatter(rows["tokens"], rows["measured"], color=colour, alpha=0.35, s=18)
        front = pareto_front(rows["tokens"].tolist(), rows["measured"].tolist())
        best = rows.iloc[front]
        ax.plot(best["tokens"], best["measured"], marker="o", color=colour, label=str(strategy), lw=1.5)
    if not measured.empty:
        front = measured.iloc[pareto_front(measured["tokens"].tolist(), measured["measured"].tolist())]
        xs = [*front["tokens"], float(measured["tokens"].max())]
        ys = [*front["measured"], float(front["measured"].iloc[-1])]
        ax.step(xs, ys, where="post", color="black", ls=":", lw=1.2, label="Pareto front (measured)")
    if candidates["predicted"].notna().any():
        low = max(float(candidates["tokens"].min()), 1.0)
        grid = np.geomspace(low, max(float(candidates["tokens"].max()), *budgets, low * 2), 60)
        curve = predicted_optimum(candidates, grid)
        if curve:
            ax.plot(
                [c[0] for c in curve],
                [c[1] for c in curve],
                color="red",
                ls="--",
                lw=1.2,
                label="model: predicted optimum within budget",
            )
        for budget, score, name, _ in predicted_optimum(candidates, budgets):
            ax.scatter([budget], [score], color="red", zorder=5, s=40)
            ax.annotate(
                name, (budget, score), textcoords="offset points", xytext=(4, 6), fontsize=7, color="red"
            )
    ax.set_xscale("log", base=2)
    ys = [v for col in ("measured", "predicted") for v in candidates[col].dropna()]
    ax.set_ylim(0.0, min(1.0, max(ys, default=0.0) * 1.15 + 0.02))  # scores: from 0, no offset
    ax.set_xlabel(f"effective context tokens per question, {fit} over questions (log2)")
    ax.set_ylabel(metric)
    ax.set_title(title or f"{metric} vs effective context length")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def calibration_plot(candidates: Any, path: str | Path, *, metric: str = "score", title: str = "") -> Path:
    """Predicted against measured score for every fitted (measured, parametric) configuration."""
    plt = _pyplot()
    both = candidates[candidates["measured"].notna() & candidates["predicted"].notna()]
    fig, ax = plt.subplots(figsize=(5, 5))
    for n, (strategy, rows) in enumerate(both.groupby("strategy", sort=True)):
        ax.scatter(
            rows["measured"], rows["predicted"], label=str(strategy), color=plt.get_cmap("tab10")(n % 10)
        )
    top = float(max(both["measured"].max(), both["predicted"].max(), 0.05)) if len(both) else 1.0
    ax.plot([0, top], [0, top], color="grey", lw=1, ls="--")
    ax.set_xlabel(f"measured {metric}")
    ax.set_ylabel(f"predicted {metric}")
    ax.set_title(title or "allocation model fit")
    ax.grid(alpha=0.3)
    if len(both):
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _tick(value: Any) -> str:
    return f"{value:g}" if isinstance(value, int | float | np.number) else str(value)


def breakdown_plot(
    frame: Any, fields: Sequence[str], metric: str, path: str | Path, *, title: str = ""
) -> Path:
    """A :func:`ragkit.report.breakdown` table as a figure. One field: the metric against it, one
    line per method with its 95% band. Two fields: the needle-test heatmap, one panel per method,
    the first field across and the second down (e.g. length x depth), each cell labelled with its
    score and question count."""
    plt = _pyplot()
    methods = list(dict.fromkeys(frame["method"]))
    if len(fields) == 1:
        (field,) = fields
        fig, ax = plt.subplots(figsize=(6.5, 4))
        as_number = pd.to_numeric(frame[field], errors="coerce")
        numeric = bool(as_number.notna().sum() == frame[field].notna().sum())
        if numeric:
            frame = frame.assign(**{field: as_number.astype(float)})
        categories = list(dict.fromkeys(frame[field].dropna())) if not numeric else []
        for index, method in enumerate(methods):
            rows = frame[frame["method"] == method]
            if rows[field].isna().all():  # a method without the field (full context in a k sweep)
                ax.axhline(rows[metric].mean(), linestyle="--", color=f"C{index}", label=method)
                continue
            rows = rows.dropna(subset=[field])
            if numeric:
                rows = rows.sort_values(field)
                x = rows[field].to_numpy(float)
                ax.plot(x, rows[metric], marker="o", color=f"C{index}", label=method)
                ax.fill_between(x, rows["95% CI low"], rows["95% CI high"], alpha=0.15, color=f"C{index}")
            else:  # task types and the like: a point per category with its interval, methods side by side
                x = np.array([categories.index(v) for v in rows[field]]) + 0.1 * (index - len(methods) / 2)
                ax.errorbar(
                    x,
                    rows[metric],
                    yerr=[rows[metric] - rows["95% CI low"], rows["95% CI high"] - rows[metric]],
                    fmt="o",
                    capsize=3,
                    color=f"C{index}",
                    label=method,
                )
        if numeric:
            values = frame[field].dropna().to_numpy(float)
            if len(values) and values.min() > 0 and values.max() / values.min() >= 8:
                ax.set_xscale("log", base=2)  # context lengths: 1k, 2k, 4k ... evenly spaced
        else:
            ax.set_xticks(range(len(categories)), [str(c) for c in categories])
        ax.set_xlabel(field)
        ax.set_ylabel(metric)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    elif len(fields) == 2:
        across, down = fields
        fig, axes = plt.subplots(
            1, len(methods), figsize=(3.6 * len(methods) + 1, 3.4), squeeze=False, layout="constrained"
        )
        image = None
        for ax, method in zip(axes[0], methods, strict=True):
            rows = frame[frame["method"] == method]
            values = rows.pivot_table(index=down, columns=across, values=metric, aggfunc="mean")
            counts = rows.pivot_table(index=down, columns=across, values="n", aggfunc="sum")
            ax.set_title(method, fontsize=9)
            if values.empty:  # the method lacks a field (full context in a k x m sweep)
                ax.text(0.5, 0.5, f"{rows[metric].mean():.2f}\n(no {across} x {down})", ha="center")
                ax.set_axis_off()
                continue
            image = ax.imshow(values.to_numpy(float), vmin=0.0, vmax=1.0, cmap="RdYlGn", aspect="auto")
            ax.set_xticks(range(len(values.columns)), [_tick(c) for c in values.columns])
            ax.set_yticks(range(len(values.index)), [_tick(r) for r in values.index])
            ax.set_xlabel(across)
            if ax is axes[0][0]:
                ax.set_ylabel(down)
            for (i, j), value in np.ndenumerate(values.to_numpy(float)):
                if not np.isnan(value):
                    n = int(counts.to_numpy(float)[i, j])
                    ax.text(j, i, f"{value:.2f}\nn={n}", ha="center", va="center", fontsize=7)
        if image is not None:
            fig.colorbar(image, ax=axes.ravel().tolist(), label=metric)
    else:
        raise ValueError(f"a breakdown plot takes one or two fields, got {len(fields)}: {list(fields)}")
    if title:
        fig.suptitle(title, fontsize=10)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path
