import pytest
import yaml

from ragkit.config import ConfigError, load_experiment
from ragkit.runner import run_experiment


def write(tmp_path, data, name="exp.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_sweep_expansion_and_names(experiment_dict):
    experiment_dict["arms"][0]["order"] = ["score", "original"]
    experiment = load_experiment(experiment_dict)
    names = [c.name for c in experiment.configurations]
    assert len(names) == 5
    assert "rag k=2 order=original" in names and "full_context" in names
    hashes = {c.hash for c in experiment.configurations}
    assert len(hashes) == 5


def test_arms_of_the_same_strategy_get_distinct_names(experiment_dict):
    bm25 = {"type": "bm25"}
    experiment_dict["arms"] = [
        {"strategy": "rag", "retriever": bm25, "k": 2},
        {"strategy": "rag", "retriever": bm25, "k": 2, "pruner": {"type": "oracle"}},
        {"strategy": "rag", "retriever": bm25, "k": [1, 3]},
        {"strategy": "full_context"},
    ]
    names = [c.name for c in load_experiment(experiment_dict).configurations]
    assert names == [
        "rag k=2 pruner=none",
        "rag k=2 pruner=oracle",
        "rag k=1 pruner=none",
        "rag k=3 pruner=none",
        "full_context",
    ]


def test_a_difference_hidden_inside_a_varying_component_is_named(experiment_dict):
    bm25 = {"type": "bm25"}
    experiment_dict["arms"] = [
        {"strategy": "rag", "retriever": bm25, "pruner": {"type": "sentence-similarity", "threshold": 0.3}},
        {"strategy": "rag", "retriever": bm25, "pruner": {"type": "sentence-similarity", "threshold": 0.5}},
        {"strategy": "rag", "retriever": bm25, "pruner": {"type": "oracle"}},
    ]
    names = [c.name for c in load_experiment(experiment_dict).configurations]
    assert len(set(names)) == 3
    assert names[0].endswith("pruner.threshold=0.3") and names[1].endswith("pruner.threshold=0.5")
    assert names[2] == "rag pruner=oracle"


def test_an_inline_component_next_to_catalog_entries_is_named_by_type(experiment_dict):
    experiment_dict["arms"] = [
        {"strategy": "rag", "retriever": ["bm25-reference", {"type": "oracle"}], "k": 1}
    ]
    names = [c.name for c in load_experiment(experiment_dict).configurations]
    assert names == ["rag retriever=bm25-reference", "rag retriever=oracle"]  # not "retriever=none"


def test_defaults_are_resolved_into_the_config(experiment_dict):
    rag = load_experiment(experiment_dict).configurations[0].resolved["strategy"]
    retrieval = rag["retrieval"]  # the flat form resolves into the nested retrieval setting
    assert retrieval["order"] == "score" and retrieval["reranker"] is None
    assert retrieval["retriever"]["type"] == "bm25" and "k1" in retrieval["retriever"]  # defaults filled in


def test_unknown_component_did_you_mean(experiment_dict, tmp_path):
    experiment_dict["arms"][0]["retriever"] = "bm52"
    path = write(tmp_path, experiment_dict)
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    message = str(info.value)
    assert str(path) in message and "arms[0].retriever" in message and "did you mean 'bm25'" in message


def test_misspelled_parameter(experiment_dict, tmp_path):
    experiment_dict["arms"][0]["kk"] = 3
    path = write(tmp_path, experiment_dict)
    with pytest.raises(
        ConfigError, match=r"arms\[0\]\.kk: unknown parameter for strategy 'rag'.*did you mean 'k'"
    ):
        load_experiment(path)


def test_misspelled_top_level_field(experiment_dict, tmp_path):
    experiment_dict["generater"] = "smollm2"
    with pytest.raises(ConfigError, match="generater: unknown field 'generater'; did you mean 'generator'"):
        load_experiment(write(tmp_path, experiment_dict))


def test_wrong_type(experiment_dict, tmp_path):
    experiment_dict["arms"][0]["k"] = "five"
    with pytest.raises(ConfigError, match=r"arms\[0\]\.k: .*integer.*got text 'five'"):
        load_experiment(write(tmp_path, experiment_dict))


def test_bad_parameter_inside_catalog_override(experiment_dict, tmp_path):
    experiment_dict["arms"][0]["retriever"] = {"use": "bm25", "k_1": 1.2}
    with pytest.raises(ConfigError, match=r"arms\[0\]\.retriever\.k_1: unknown parameter.*did you mean 'k1'"):
        load_experiment(write(tmp_path, experiment_dict))


def test_user_catalog_overrides_bundled(experiment_dict, tmp_path, monkeypatch):
    (tmp_path / "retrievers").mkdir()
    (tmp_path / "retrievers" / "bm25.yaml").write_text("type: bm25\nk1: 0.5\n")
    monkeypatch.chdir(tmp_path)
    experiment_dict["arms"][0]["retriever"] = "bm25"
    resolved = (
        load_experiment(experiment_dict).configurations[0].resolved["strategy"]["retrieval"]["retriever"]
    )
    assert resolved["k1"] == 0.5 and resolved["name"] == "bm25"


def test_missing_dataset_file_stops_before_models(experiment_dict, tmp_path):
    experiment_dict["dataset"]["path"] = str(tmp_path / "nope.jsonl")
    with pytest.raises(ConfigError, match=r"dataset.*nope\.jsonl"):
        run_experiment(load_experiment(experiment_dict))


def test_overrides_from_the_command_line(experiment_dict):
    experiment = load_experiment(experiment_dict, ["arms.0.k=[1,2,3]", "batch_size=4"])
    assert len(experiment.configurations) == 4 and experiment.spec.batch_size == 4
    with pytest.raises(ConfigError, match="not an index"):
        load_experiment(experiment_dict, ["arms.5.k=1"])


def test_unreachable_tracking_server_fails_fast(experiment_dict):
    experiment_dict["tracking_uri"] = "http://127.0.0.1:9"  # discard port: nothing listens
    with pytest.raises(ConfigError, match=r"tracking_uri: .*http://127\.0\.0\.1:9"):
        run_experiment(load_experiment(experiment_dict))


def test_bundled_experiments_validate():
    from pathlib import Path

    for path in sorted(Path(__file__).parent.parent.glob("experiments/*.yaml")):
        experiment = load_experiment(path)
        assert experiment.configurations, path


def test_flat_and_nested_retrieval_settings_resolve_alike(experiment_dict):
    nested = {
        **experiment_dict,
        "arms": [{"strategy": "rag", "retrieval": {"retriever": "bm25", "k": [1, 2]}}],
    }
    flat = {**experiment_dict, "arms": [{"strategy": "rag", "retriever": "bm25", "k": [1, 2]}]}
    a, b = load_experiment(nested), load_experiment(flat)
    assert [c.hash for c in a.configurations] == [c.hash for c in b.configurations]
    assert [c.name for c in a.configurations] == ["rag k=1", "rag k=2"]  # fields of the setting read bare
    # a sweep over whole settings (e.g. YAML anchors of two set-ups)
    both = {"strategy": "rag", "retrieval": [{"retriever": "bm25", "k": 1}, {"retriever": "oracle", "k": 2}]}
    swept = load_experiment({**experiment_dict, "arms": [both]})
    assert [c.resolved["strategy"]["retrieval"]["k"] for c in swept.configurations] == [1, 2]
    with pytest.raises(ConfigError, match=r"arms\[0\]\.k: given twice"):
        load_experiment(
            {
                **experiment_dict,
                "arms": [
                    {"strategy": "rag", "retrieval": {"retriever": "bm25"}, "k": 1, "retriever": "bm25"}
                    | {"retrieval": {"retriever": "bm25", "k": 2}}
                ],
            }
        )
    with pytest.raises(ConfigError, match=r"arms\[0\]\.retrieval\.kk: .*did you mean 'k'"):
        load_experiment(
            {**experiment_dict, "arms": [{"strategy": "rag", "retrieval": {"retriever": "bm25", "kk": 2}}]}
        )
