"""Dollars from catalog prices: the arithmetic by hand, then through `ragkit run` and `estimate`."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from ragkit.budget import PriceTable, dollars, estimated_dollars, price_predictions
from ragkit.cli import app
from ragkit.config import bundled_catalog_root, read_yaml
from ragkit.generators.scripted import ScriptedGenerator
from ragkit.types import Cost, Prediction

runner = CliRunner()


def test_price_predictions_by_hand():
    cost = Cost(
        input_tokens=2_000, output_tokens=500, prefill_seconds=3.0, decode_seconds=5.0, aux_seconds=1.0
    )
    prices = {"input_per_million": 1.0, "output_per_million": 4.0, "gpu_hour": 36.0}
    predictions = [Prediction("q", "a", cost)]
    price_predictions(predictions, ScriptedGenerator(prices=prices))
    # 2000 * 1/1e6 + 500 * 4/1e6 + 9 s * 36/3600 = 0.002 + 0.002 + 0.09
    assert predictions[0].cost.dollars == pytest.approx(0.094)
    unpriced = [Prediction("q", "a", Cost(input_tokens=10))]
    price_predictions(unpriced, ScriptedGenerator())
    assert unpriced[0].cost.dollars == 0.0


def test_estimated_dollars_need_a_throughput_for_hourly_prices():
    cost = Cost(input_tokens=1_000, output_tokens=100, prefill_tokens_computed=400)
    hourly = PriceTable(gpu_hour=3.6, prefill_tokens_per_second=100.0, decode_tokens_per_second=10.0)
    # (400 / 100 + 100 / 10) s = 14 s at $3.6/h = $0.014: only computed prefill tokens take time
    assert estimated_dollars(cost, hourly) == pytest.approx(0.014)
    assert estimated_dollars(cost, PriceTable(gpu_hour=3.6)) is None
    assert estimated_dollars(cost, PriceTable(input_per_million=5.0)) == pytest.approx(0.005)
    assert dollars(cost, PriceTable(input_per_million=5.0)) == pytest.approx(0.005)


def test_bundled_hourly_entries_carry_the_throughput_estimate_needs():
    """An hourly price without a measured throughput shows "hourly: no throughput" in estimate."""
    hourly = 0
    for path in sorted((bundled_catalog_root() / "generators").glob("*.yaml")):
        prices = read_yaml(path).get("prices") or {}
        if prices.get("gpu_hour"):
            hourly += 1
            cost = Cost(input_tokens=1_500, output_tokens=32)
            value = estimated_dollars(cost, PriceTable(**prices))
            assert value is not None and value > 0, f"{path.name}: hourly price without a throughput"
    assert hourly >= 3  # smollm2, vllm-cpu, vllm-cpu-server


def test_prices_stay_out_of_the_generation_cache_key():
    assert ScriptedGenerator(prices={"gpu_hour": 9.0}).spec() == ScriptedGenerator().spec()


def test_run_and_estimate_show_dollars_per_question(experiment_dict, tmp_path):
    experiment_dict["generator"]["prices"] = {
        "input_per_million": 1000.0,
        "output_per_million": 2000.0,
        "prefill_tokens_per_second": 100.0,
        "decode_tokens_per_second": 10.0,
    }
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(experiment_dict))
    estimate = runner.invoke(app, ["estimate", str(path)])
    assert estimate.exit_code == 0, estimate.output
    assert "$/q" in estimate.output
    result = runner.invoke(app, ["run", str(path)])
    assert result.exit_code == 0, result.output
    assert "$/question" in result.output
    for summary in (tmp_path / "runs" / "test-exp").glob("*/summary.json"):
        data = json.loads(summary.read_text())
        expected = (data["input_tokens"] * 1000.0 + data["output_tokens"] * 2000.0) / 1e6
        assert data["dollars"] == pytest.approx(expected) and data["dollars"] > 0


def test_bad_prices_fail_before_anything_runs(experiment_dict, tmp_path):
    experiment_dict["generator"]["prices"] = {"gpu_hours": 2.0}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(experiment_dict))
    result = runner.invoke(app, ["run", str(path)])
    assert result.exit_code == 2
    assert "generator.prices" in result.output and "gpu_hours" in result.output
