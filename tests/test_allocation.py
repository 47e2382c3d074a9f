import itertools

import numpy as np
import pandas as pd
import pytest

from ragkit.allocation import (
    DEFAULT_DIMS,
    Dim,
    empirical_logit,
    fit,
    log_theta,
    parse_dim,
    sigmoid,
    with_dims,
)
from ragkit.regret import regret_table
from ragkit.suggestion import (
    declared_dims,
    fit_results,
    group_of,
    informativeness,
    informativeness_table,
    parametric,
    suggest,
    theta_of,
)

A = np.array([0.20, 0.08, 0.30])
B = np.array([0.8, -0.4, 0.0])
C = 0.5
GRID = np.array(list(itertools.product([0, 1, 2, 4, 8], [0, 1, 2, 4], [1, 2, 3])), dtype=float)
INFO = {
    "easy": np.array([0.30, 0.05, 0.0]),
    "hard": np.array([0.05, 0.20, 0.0]),
    "mid": np.array([0.1, 0.1, 0]),
}


def truth(theta, info):
    """Eq. 2 of the paper with its log(theta + 0.01)."""
    return sigmoid((np.log(np.asarray(theta, float) + 0.01) * (A + B * info)).sum(axis=1) + C)


def test_recovers_known_coefficients_exactly_from_noise_free_data():
    theta = np.vstack([GRID] * 3)
    info = np.vstack([np.tile(INFO[name], (len(GRID), 1)) for name in ("easy", "hard", "mid")])
    model = fit(theta, truth(theta, info), info)
    np.testing.assert_allclose(model.a, A, atol=1e-8)
    np.testing.assert_allclose(model.b[:2], B[:2], atol=1e-8)
    assert list(model.b_identified) == [True, True, False]  # i_iter is 0 everywhere: b_n unidentifiable
    assert model.c == pytest.approx(C, abs=1e-8)
    assert model.metrics["r2_logit"] == pytest.approx(1.0) and model.metrics["mse"] < 1e-15


def test_recovers_coefficients_from_binomial_scores():
    rng = np.random.default_rng(0)
    theta = np.vstack([GRID] * 3)
    info = np.vstack([np.tile(INFO[name], (len(GRID), 1)) for name in ("easy", "hard", "mid")])
    n = 4000
    scores = rng.binomial(n, truth(theta, info)) / n
    model = fit(theta, scores, info, n_questions=n)
    np.testing.assert_allclose(model.a, A, atol=0.06)
    np.testing.assert_allclose(model.b[:2], B[:2], atol=0.35)
    assert model.c == pytest.approx(C, abs=0.08)
    assert model.metrics["r2"] > 0.95


def test_single_dataset_fits_the_combined_slope():
    info = INFO["easy"]
    model = fit(GRID, truth(GRID, info), info)
    np.testing.assert_allclose(model.slopes(), A + B * info, atol=1e-8)  # a absorbs b * i
    assert not model.b_identified.any()
    np.testing.assert_allclose(model.predict(GRID, info), truth(GRID, info), atol=1e-10)


def test_zero_and_one_scores_stay_finite():
    logits = empirical_logit([0.0, 1.0, 0.5], n_questions=50)
    assert np.all(np.isfinite(logits))
    assert logits[0] == pytest.approx(np.log(0.5 / 50.5)) and logits[2] == pytest.approx(0.0)
    assert np.all(np.isfinite(empirical_logit([0.0, 1.0])))  # no N: clipped
    model = fit(GRID[:10], np.r_[np.zeros(5), np.ones(5)], n_questions=30)
    assert np.all(np.isfinite(model.a)) and np.isfinite(model.c)


def test_log_theta_shifts_by_the_papers_epsilon():
    x = log_theta([[0, 0, 1], [1, 2, 3]], DEFAULT_DIMS)
    np.testing.assert_allclose(x, np.log([[0.01, 0.01, 1.01], [1.01, 2.01, 3.01]]))  # App. H: ε = 0.01
    dims = (Dim("k", "strategy.retrieval.k", offset=0.0),)
    with pytest.raises(ValueError, match="offset"):
        log_theta([[0]], dims)


def test_extra_dimension_from_config():
    dims = (*DEFAULT_DIMS, Dim("keep", "strategy.pruner.keep_ratio", default=1.0, offset=0.0))
    theta = np.array([[k, m, 1, r] for k in (1, 2, 4, 8) for m in (0, 1) for r in (0.25, 0.5, 1.0)], float)
    coef = np.array([0.4, 0.1, 0.0, 0.3])
    scores = sigmoid(log_theta(theta, dims) @ coef - 1.0)
    model = fit(theta, scores, dims=dims)
    np.testing.assert_allclose(model.a, coef, atol=1e-8)
    assert list(model.a_identified) == [True, True, False, True]  # n never varies: left out, not split


def test_parse_dim_and_with_dims():
    assert parse_dim("keep=strategy.pruner.keep_ratio:default=1:offset=0") == Dim(
        "keep", "strategy.pruner.keep_ratio", default=1.0, offset=0.0
    )
    assert parse_dim("depth=strategy.rerank_depth") == Dim("depth", "strategy.rerank_depth", offset=0.01)
    assert parse_dim("n=strategy.n:default=1:shift=1") == Dim("n", "strategy.n", default=1.0, shift=1.0)
    assert parse_dim("n=strategy.n:default=1:min=1") == Dim("n", "strategy.n", default=1.0, minimum=1.0)
    for bad in ("keep", "keep=col:scale=2", "keep=col:offset=x"):
        with pytest.raises(ValueError, match="--dim"):
            parse_dim(bad)
    dims = with_dims([parse_dim("keep=strategy.pruner.keep_ratio"), parse_dim("k=strategy.k:offset=1")])
    assert [d.name for d in dims] == ["k", "m", "n", "keep"] and dims[0].offset == 1.0  # k replaced
    # dimensions strategies declare come after the paper's: known ones with their reading
    declared = with_dims([], ["k", "calls", "workers"])
    assert [d.name for d in declared] == ["k", "m", "n", "calls", "workers"]
    assert declared[3].default == 1.0 and declared[4].default == 0.0 and not declared[3].column
    with pytest.raises(ValueError, match="twice"):
        with_dims([parse_dim("k=a"), parse_dim("k=b")])


def test_extra_dimension_read_from_result_columns():
    dims = (*DEFAULT_DIMS, parse_dim("keep=strategy.pruner.keep_ratio:default=1:offset=0"))
    rows = []
    for k, keep in itertools.product([1, 2, 4, 8], [0.25, 0.5, None]):
        theta = np.array([[k, 0, 1, 1.0 if keep is None else keep]])
        score = sigmoid(log_theta(theta, dims) @ np.array([0.4, 0, 0, 0.5]) - 1.0)[0]
        rows.append(
            {
                "strategy.type": "rag",
                "strategy.retrieval.k": k,
                "strategy.pruner.keep_ratio": keep,
                "effective_context_tokens": 100 * k,
                "contains_answer": score,
            }
        )
    [gf] = fit_results(pd.DataFrame(rows), "contains_answer", dims).values()
    np.testing.assert_allclose(gf.model.a[[0, 3]], [0.4, 0.5], atol=1e-8)  # no pruner = keep ratio 1


# -- result frames ---------------------------------------------------------------------------
def frame(info=INFO["easy"], tokens_per_doc=100, dataset="hotpotqa", iter_info=None):
    """Results as load_results gives them, scored exactly by the model (plus full context): RAG
    (m = 0), DRAG and IterDRAG (n = 1, 2, 3 sub-queries, and n = 0 where i is measured);
    ``iter_info``: IterDRAG's true i."""
    rows = []
    grid = [(k, m, n, None) for k, m, n in itertools.product([0, 1, 2, 4, 8], [0, 1, 2], [0, 1, 2, 3])]
    # IterDRAG's own one-round runs (n = 0 sub-queries: theta_n = 1), which its informativeness needs
    grid += [(k, m, 0, "iterdrag") for k, m in ((0, 0), (1, 0), (0, 1))]
    for k, m, n, forced in grid:
        strategy = forced or ("rag" if (m == 0 and n == 0) else ("drag" if n == 0 else "iterdrag"))
        theta = np.array([[k, m, n + 1]], float)  # RAG and DRAG: n = 1 (§4.1); IterDRAG n + 1 rounds
        i = INFO[iter_info] if strategy == "iterdrag" and iter_info else info
        rows.append(
            {
                "config_name": f"{strategy} k={k}"
                + (f" m={m}" if strategy != "rag" else "")
                + (f" n={n}" if strategy == "iterdrag" else ""),
                "strategy.type": strategy,
                "strategy.retrieval.k": k,
                "strategy.m": m if strategy != "rag" else None,
                "strategy.n": n if strategy == "iterdrag" else None,
                "generator.model": "smollm2",
                "dataset.name": dataset,
                "effective_context_tokens": 50 + (n + 1) * (m + 1) * (k * tokens_per_doc + 20),
                "effective_context_tokens_max": 50 + (n + 1) * (m + 1) * (k * tokens_per_doc + 20),
                "contains_answer": float(truth(theta, i)[0]),
                "n_questions": 10_000,
            }
        )
    rows.append(
        {
            "config_name": "full_context",
            "strategy.type": "full_context",
            "generator.model": "smollm2",
            "dataset.name": dataset,
            "effective_context_tokens": 1500,
            "effective_context_tokens_max": 1500,
            "contains_answer": 0.2,
            "n_questions": 10_000,
        }
    )
    return pd.DataFrame(rows)


def test_theta_reads_rag_and_drag_as_one_iteration():
    rows = pd.DataFrame(
        {
            "strategy.type": ["rag", "drag", "iterdrag", "iterdrag"],
            "strategy.retrieval.k": [4, 2, 1, 1],
            "strategy.m": [None, 2, 1, 1],
            "strategy.n": [None, None, 0, 3],
        }
    )
    # IterDRAG's n sub-queries are n + 1 rounds: n = 0 is one call like DRAG, n = 1 is two
    rows = pd.concat([rows, rows.iloc[[2]].assign(**{"strategy.n": 1})], ignore_index=True)
    np.testing.assert_array_equal(theta_of(rows), [[4, 0, 1], [2, 2, 1], [1, 1, 1], [1, 1, 4], [1, 1, 2]])


def test_informativeness_from_zero_one_shot_and_one_document_runs():
    results = frame()
    base = truth([[0, 0, 1]], INFO["easy"])[0]
    i = informativeness(results[results["strategy.type"] != "iterdrag"], "contains_answer")
    assert i[0] == pytest.approx(truth([[1, 0, 1]], INFO["easy"])[0] - base)
    assert i[1] == pytest.approx(truth([[0, 1, 1]], INFO["easy"])[0] - base)
    assert i[2] == 0.0


def test_informativeness_per_strategy_with_drag_as_the_fallback():
    results = frame(iter_info="hard")
    table, sources = informativeness_table(results, "contains_answer", DEFAULT_DIMS, ["dataset.name"])
    drag, iterdrag = table[("dataset.name=hotpotqa", "drag")], table[("dataset.name=hotpotqa", "iterdrag")]
    base = truth([[0, 0, 1]], INFO["hard"])[0]
    assert iterdrag[0] == pytest.approx(truth([[1, 0, 1]], INFO["hard"])[0] - base)  # IterDRAG's own runs
    assert drag[0] == pytest.approx(
        informativeness(results[results["strategy.type"] != "iterdrag"], "contains_answer")[0]
    )
    assert sources[("dataset.name=hotpotqa", "iterdrag")] == {"k": "iterdrag", "m": "iterdrag"}
    # no k=0, k=1
    sweep = results[(results["strategy.type"] != "iterdrag") | (results["strategy.retrieval.k"] >= 2)]
    table, sources = informativeness_table(sweep, "contains_answer", DEFAULT_DIMS, ["dataset.name"])
    np.testing.assert_allclose(table[("dataset.name=hotpotqa", "iterdrag")], drag)
    assert sources[("dataset.name=hotpotqa", "iterdrag")] == {"k": "drag", "m": "drag"}


def test_fit_results_fits_per_dataset_and_per_generator_across_datasets():
    results = pd.concat([frame(), frame(INFO["hard"], dataset="other")], ignore_index=True)
    fits = fit_results(results, "contains_answer")
    assert len(fits) == 2
    for gf in fits.values():
        assert gf.model.metrics["r2_logit"] > 0.999  # exact data, slope = a + b*i per dataset
    pooled = fit_results(results, "contains_answer", by="generator")
    [gf] = pooled.values()
    assert gf.model.b_identified[:2].all() and not gf.model.b_identified[2]  # b_n: i_iter = 0
    assert set(gf.info) == {
        (d, f) for d in ("dataset.name=hotpotqa", "dataset.name=other") for f in ("drag", "iterdrag")
    }
    with pytest.raises(ValueError, match="by="):
        fit_results(results, "contains_answer", by="dataset")


def test_strategies_with_different_informativeness_identify_b_on_one_dataset():
    [gf] = fit_results(frame(iter_info="hard"), "contains_answer").values()
    assert gf.model.b_identified[:2].all()
    assert gf.model.metrics["r2_logit"] > 0.999


def test_pooled_fit_still_suggests_per_dataset():
    results = pd.concat([frame(), frame(INFO["hard"], dataset="other")], ignore_index=True)
    table = suggest(results, [100_000], "contains_answer", top=100, by="generator")
    assert set(table["group"]) == set(group_of(results))
    by_dataset = {}
    for key, part in table.groupby("group"):
        own = results[group_of(results) == key].set_index("config_name")["contains_answer"]
        measured = part.dropna(subset=["measured"]).set_index("configuration")["measured"]
        np.testing.assert_allclose(measured, own[measured.index])  # only this dataset's runs
        by_dataset[key] = part.set_index("configuration")["predicted"]
    first, second = by_dataset.values()
    assert not np.allclose(first["drag k=4 m=1"], second["drag k=4 m=1"])  # each dataset's own i


def test_suggestion_respects_budgets_and_ranks_by_prediction():
    results = frame()
    table = suggest(results, [500, 2000, 8000], "contains_answer", top=100)
    assert set(table["budget"]) == {500, 2000, 8000}
    assert (table["tokens"] <= table["budget"]).all()
    for _, part in table.groupby("budget"):
        assert list(part["rank"]) == list(range(1, len(part) + 1))
        assert part["score"].is_monotonic_decreasing
    small = table[table["budget"] == 500]
    assert "full_context" not in set(small["configuration"])  # 1500 tokens do not fit 500
    assert "full_context" in set(table[table["budget"] == 2000]["configuration"])
    modelled = table[(table["basis"] == "model") & (table["tokens_source"] == "measured")]
    np.testing.assert_allclose(modelled["predicted"], modelled["measured"], atol=1e-3)


def test_untried_combinations_get_estimated_tokens_and_their_strategys_informativeness():
    results = frame(iter_info="hard")
    dropped = results[~results["config_name"].isin(["drag k=4 m=1", "iterdrag k=4 m=1 n=2"])]
    table = suggest(dropped, [100_000], "contains_answer", top=200)
    untried = table[table["configuration"].str.contains("not run")]
    assert (untried["tokens_source"] == "estimated").all()
    # the dropped two, as theta: DRAG k=4 m=1 is one round, IterDRAG's 2 sub-queries three
    wanted = ["drag k=4 m=1 n=1 (not run)", "iterdrag k=4 m=1 n=3 (not run)"]
    rows = untried[untried["configuration"].isin(wanted)].set_index("strategy")
    assert len(rows) == 2
    assert rows.loc["drag", "tokens"] == pytest.approx(50 + 2 * (4 * 100 + 20), rel=0.05)
    assert rows.loc["iterdrag", "tokens"] == pytest.approx(50 + 3 * 2 * (4 * 100 + 20), rel=0.05)
    measured = results.set_index("config_name")["contains_answer"]
    assert rows.loc["drag", "predicted"] == pytest.approx(measured["drag k=4 m=1"], abs=1e-3)
    assert rows.loc["iterdrag", "predicted"] == pytest.approx(measured["iterdrag k=4 m=1 n=2"], abs=1e-3)


def test_regret_is_zero_when_the_model_is_exact_and_baselines_are_reported():
    results = frame()
    table = regret_table(results, [500, 2000, 8000], "contains_answer")
    assert len(table) == 3
    np.testing.assert_allclose(table["regret"], 0.0, atol=1e-9)
    later = table[table["budget"] > 500]
    assert later["lobo_regret"].notna().all() and (later["lobo_regret"] >= 0).all()
    assert (table["largest_k_regret"] >= -1e-12).all()
    assert table.loc[table["budget"] == 500, "full_context_regret"].isna().all()  # does not fit
    assert table.loc[table["budget"] == 2000, "full_context_regret"].notna().all()
    assert "transfer_regret" not in table  # one dataset: nothing to transfer from


def test_regret_reports_leave_one_dataset_out_transfer():
    results = pd.concat(
        [frame(), frame(INFO["hard"], dataset="other"), frame(INFO["mid"], dataset="third")],
        ignore_index=True,
    )
    table = regret_table(results, [2000, 8000], "contains_answer", by="generator")
    assert len(table) == 6 and table["transfer_regret"].notna().all()
    assert (table["transfer_regret"] >= 0).all() and (table["regret"] >= -1e-12).all()


def test_theta_is_read_from_the_columns_each_strategy_declares():
    """RAG's k is its swept parameter; Chain of Agents' k and n are its measured means (documents
    read, workers called); a strategy without theta (full context) is not parametric."""
    rows = pd.DataFrame(
        {
            "strategy.type": ["rag", "chain_of_agents", "full_context"],
            "strategy.retrieval.k": [4, None, None],
            "n_documents": [None, 10.0, 10.0],
            "workers": [None, 3.0, None],
        }
    )
    dims = with_dims([], declared_dims(rows))
    assert [d.name for d in dims] == ["k", "m", "n"]
    np.testing.assert_array_equal(theta_of(rows, dims)[:2], [[4, 0, 1], [10, 0, 3]])
    assert parametric(rows)["strategy.type"].tolist() == ["rag", "chain_of_agents"]
