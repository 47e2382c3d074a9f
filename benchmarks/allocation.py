"""How well does the computation allocation model fit and pick configurations on a finished sweep?

    python benchmarks/allocation.py [experiments/inference_scaling.yaml | PARENT_RUN_ID]
        [--metric contains_answer] [--budget 512 --budget 1k ...] [--by generator] [--synthetic]

Prints, per generator and dataset: R^2 and MSE of the fit (score and logit space), the
leave-one-configuration-out MSE (the honest one with few points), R^2's bootstrap interval over
questions and the noise ceiling (the R^2 a perfect model reaches given each configuration's
sampling noise: R^2 near it = the rest is noise, far below = the model misses structure); per
budget (a configuration fits when every question does, --fit max, as in the paper) the grid-best
configuration, the regret of the model's pick (fitted on everything), the leave-one-budget-out
regret (fitted only on configurations within the previous, smaller budget: the paper's length
extrapolation), the leave-one-dataset-out regret when a generator has several datasets (the
paper's domain generalisation) and the regret of the baselines "always the largest k" (plain RAG)
and "always full context", each with a bootstrap interval over questions (--bootstrap N
resamples, paired: the same questions for every configuration), and the mean regret over budgets of
the model, the baselines and the oracle (the grid best, 0 by definition) with intervals.
``--synthetic`` first checks that the fit recovers known coefficients from scores simulated from
the model itself.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from ragkit.allocation import DEFAULT_DIMS, fit, log_theta, parse_dim, sigmoid, with_dims
from ragkit.budget import parse_tokens
from ragkit.regret import regret_table
from ragkit.suggestion import (
    BY,
    TOKENS,
    GroupFit,
    fit_for,
    fit_results,
    group_of,
    parametric,
    short_label,
    theta_of,
)


def synthetic_check(seed: int = 0, n_questions: int = 100) -> None:
    """Scores drawn (binomially, N questions) from a known model over 3 datasets; fitted back."""
    rng = np.random.default_rng(seed)
    a, b, c = np.array([0.12, 0.05, 0.25]), np.array([0.8, -0.4, 0.0]), -1.0
    grid = np.array(list(itertools.product([0, 1, 2, 4, 8, 16], [0, 1, 2, 4], [1, 2, 3])), dtype=float)
    infos = [np.array([0.3, 0.05, 0]), np.array([0.05, 0.2, 0]), np.array([0.15, 0.1, 0])]
    theta = np.vstack([grid] * len(infos))
    info = np.vstack([np.tile(i, (len(grid), 1)) for i in infos])
    truth = sigmoid((log_theta(theta, DEFAULT_DIMS) * (a + b * info)).sum(axis=1) + c)
    scores = rng.binomial(n_questions, truth) / n_questions
    started = time.perf_counter()
    model = fit(theta, scores, info, n_questions=n_questions)
    took = time.perf_counter() - started
    print(f"synthetic: {len(theta)} configurations x {n_questions} questions, fit in {took * 1e3:.1f} ms")
    print(f"  a true {a} fitted {np.round(model.a, 3)}")
    print(f"  b true {b[:2]} fitted {np.round(model.b[:2], 3)} (b_n not identified: i_n = 0)")
    print(
        f"  c true {c} fitted {model.c:.3f}; R^2 {model.metrics['r2']:.3f}, MSE {model.metrics['mse']:.5f}\n"
    )


def loo_mse(rows: pd.DataFrame, metric: str, gf: GroupFit, dims=DEFAULT_DIMS) -> float:
    """Leave-one-configuration-out squared error of the score (the model refitted without it;
    informativeness as measured on all rows)."""
    theta = theta_of(rows, dims)
    info = gf.info_rows(rows, dims)
    y = rows[metric].to_numpy(float)
    n_q = rows["n_questions"].to_numpy(float) if "n_questions" in rows else None
    errors = []
    for i in range(len(rows)):
        keep = np.arange(len(rows)) != i
        model = fit(
            theta[keep], y[keep], info[keep], n_questions=None if n_q is None else n_q[keep], dims=dims
        )
        errors.append((model.predict(theta[i : i + 1], info[i])[0] - y[i]) ** 2)
    return float(np.mean(errors)) if errors else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("source", nargs="?", default="experiments/inference_scaling.yaml")
    parser.add_argument("--metric", default="contains_answer")
    parser.add_argument("--budget", action="append", help="repeatable; default 256 ... 8k")
    parser.add_argument(
        "--dim", action="append", default=[], help="extra theta dimension, as in ragkit suggest"
    )
    parser.add_argument("--by", choices=BY, default="generator+dataset", help="as in ragkit suggest")
    parser.add_argument("--synthetic", action="store_true", help="also run the coefficient-recovery check")
    parser.add_argument("--fit", choices=("max", "p95", "mean"), default="max", help="as in ragkit suggest")
    parser.add_argument("--bootstrap", type=int, default=200, help="resamples of the questions")
    args = parser.parse_args()
    if args.synthetic:
        synthetic_check()
    from ragkit.report import load_results, load_scores
    from ragkit.suggestion import fill_token_statistics
    from ragkit.validation import bootstrap_validation, mean_regret_summary, reading

    results = load_results(args.source)
    if results.empty:
        sys.exit(f"no finished configurations for {args.source}; run the experiment first")
    scores = load_scores(args.source)
    results = fill_token_statistics(results, scores)
    budgets = [parse_tokens(b) for b in (args.budget or ["256", "512", "1k", "2k", "4k", "8k"])]
    metric = args.metric
    clean = results.dropna(subset=[metric, TOKENS])
    print(f"{args.source}: {len(clean)} finished configurations, metric {metric}, budgets {budgets}\n")
    dims = with_dims([parse_dim(d) for d in args.dim])
    fits = fit_results(clean, metric, dims, by=args.by)
    started = time.perf_counter()
    validation = bootstrap_validation(
        clean, scores, budgets, metric, dims, by=args.by, fit=args.fit, n_boot=args.bootstrap
    )
    took = time.perf_counter() - started
    quality = {str(r["group"]): r for r in validation["fit"].to_dict("records")}
    keys = group_of(clean)
    for key, group in clean.groupby(keys, sort=True):
        gf = fit_for(fits, group, args.by)
        if gf is None:
            continue
        m = gf.model.metrics
        loo = loo_mse(parametric(group).dropna(subset=[metric, TOKENS]), metric, gf, dims)
        print(f"[{short_label(str(key))}]")
        print(
            f"  fit on {m['n_points']} configurations ({m['n_params']} parameters): R^2 {m['r2']:.3f}, "
            f"MSE {m['mse']:.5f}; logit R^2 {m['r2_logit']:.3f}, MSE {m['mse_logit']:.4f}; "
            f"leave-one-out MSE {loo:.5f}"
        )
        q = quality.get(str(key))
        if q is not None:
            print(
                f"  R^2 {q['r2']:.3f} [95% CI {q['r2_low']:.3f}, {q['r2_high']:.3f}] over {q['n_questions']}"
                f" questions; noise ceiling {q['noise_ceiling']:.3f}: "
                + reading(q["r2"], q["r2_high"], q["noise_ceiling"])
            )
        here = gf.info_doc().get(gf.dataset_key(group.iloc[0]), {})
        shown = {family: (np.round(v["i"], 3).tolist(), v["from"]) for family, v in here.items()}
        print(
            f"  fitted {'across datasets' if args.by == 'generator' else 'on this dataset'}: "
            f"a = {np.round(gf.model.a, 3)}, b = {np.round(gf.model.b, 3)}, c = {gf.model.c:.3f}; "
            f"informativeness i per strategy (and where it was measured) = {shown}"
        )
    table = regret_table(clean, budgets, metric, dims, by=args.by, fit=args.fit)
    bounds = [c for c in validation["regret"].columns if c.endswith(("_low", "_high"))]
    table = table.merge(
        validation["regret"][["group", "budget", *bounds]], on=["group", "budget"], how="left"
    )
    numeric = table.copy()
    columns = [
        "budget",
        "n_candidates",
        "grid_best",
        "grid_best_score",
        "model_pick",
        "regret",
        "lobo_pick",
        "lobo_regret",
        "lobo_train_points",
        "transfer_pick",
        "transfer_regret",
        "largest_k_pick",
        "largest_k_regret",
        "full_context_regret",
    ]
    from ragkit.validation import with_interval

    for column in ("grid_best_score", "regret", "largest_k_regret", "full_context_regret"):
        if column in table and f"{column}_low" in table:
            table[column] = with_interval(table, column, 3)
    with pd.option_context("display.width", 250, "display.max_columns", 20, "display.max_colwidth", 24):
        print(f"\nregret per budget (grid-best score - measured score of the pick), fit: {args.fit},")
        print(f"[95% CI] over {args.bootstrap} paired resamples of the questions ({took:.1f} s):")
        view = table.assign(group=table["group"].map(lambda k: short_label(str(k))))
        print(view[["group"] + [c for c in columns if c in table]].round(4).to_string(index=False))
        print("\nmean regret over budgets with the bootstrap interval of that mean:")
        print(mean_regret_summary(validation).round(4).to_string(index=False))
    summary = {
        "model (in-sample)": numeric["regret"].mean() if "regret" in numeric else float("nan"),
        "leave-one-budget-out": numeric["lobo_regret"].mean() if "lobo_regret" in numeric else float("nan"),
        "leave-one-dataset-out": (
            numeric["transfer_regret"].mean() if "transfer_regret" in numeric else float("nan")
        ),
        "always largest k": numeric["largest_k_regret"].mean()
        if "largest_k_regret" in numeric
        else float("nan"),
        "always full context": (
            numeric["full_context_regret"].mean() if "full_context_regret" in numeric else float("nan")
        ),
    }
    print("\nmean regret over budgets: " + ", ".join(f"{k} {v:.4f}" for k, v in summary.items()))


if __name__ == "__main__":
    main()
