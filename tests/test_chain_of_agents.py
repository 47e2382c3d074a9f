import pytest

from ragkit.config import ConfigError, load_experiment
from ragkit.generators.scripted import ScriptedGenerator
from ragkit.strategies.chain_of_agents import MANAGER, ChainOfAgents
from ragkit.types import Document, Evidence, Example

DOCS = [
    Document(id="a", title="Alpha", text="alpha " * 40),
    Document(id="b", title="Beta", text="The treasure is buried under the old oak tree. " + "beta " * 40),
    Document(id="c", title="Gamma", text="gamma " * 40),
]
EXAMPLE = Example(
    "e1",
    "Where is the treasure buried?",
    ["under the old oak tree"],
    DOCS,
    [Evidence("b", "The treasure is buried under the old oak tree.")],
)


def gen(**script):
    # a worker that saw the treasure sentence says so; the manager answers from the summary
    return ScriptedGenerator(
        script={
            "Summary: NOTE oak": "under the old oak tree",
            "treasure is buried|text: NOTE oak": "NOTE oak tree",
            **script,
        },
        default="NOTE nothing",
        max_new_tokens=8,
        context_window=4096,
    )


def test_workers_pass_the_communication_unit_and_the_manager_reads_only_it():
    g = gen()
    [p] = ChainOfAgents(workers=3, cu_tokens=8).run([EXAMPLE], g)
    assert [c.role for c in p.provenance.calls] == ["worker"] * 3 + ["manager"]
    first, second, _, manager = g.prompts_
    assert "Summary of the previous parts" not in first and "alpha" in first
    assert "Summary of the previous parts of the text: NOTE" in second  # the first worker's CU
    assert "alpha" not in manager and "gamma" not in manager and "NOTE" in manager  # the CU alone
    assert MANAGER.split("{cu}")[0].split("\n")[0] in manager
    assert p.answer == "under the old oak tree" and p.provenance.measures["workers"] == 3
    # every call is charged: the three chunks are read once each, plus instructions and CUs
    assert p.cost.input_tokens == sum(len(prompt.split()) for prompt in g.prompts_)
    assert p.provenance.evidence_recall == 1.0 and p.provenance.dropped_tokens == 0


def test_chunk_size_sets_the_number_of_workers():
    source_words = sum(len(d.text.split()) for d in DOCS) + 12  # plus "Document [i] (Title: X)"
    [p] = ChainOfAgents(chunk_tokens=50, cu_tokens=8).run([EXAMPLE], gen())
    assert p.provenance.measures["workers"] == -(-source_words // 50)
    [one] = ChainOfAgents(cu_tokens=8).run([EXAMPLE], gen())  # the window holds it all: one worker
    assert one.provenance.measures["workers"] == 1 and one.cost.calls == 2


def test_budget_is_a_hard_cap_and_unread_source_is_recorded():
    [free] = ChainOfAgents(workers=3, cu_tokens=8).run([EXAMPLE], gen())
    budget = free.cost.input_tokens // 2
    [p] = ChainOfAgents(workers=3, cu_tokens=8, budget=budget).run([EXAMPLE], gen())
    assert p.cost.input_tokens <= budget
    assert p.provenance.measures["workers"] < 3 and p.provenance.dropped_tokens > 0
    assert p.provenance.calls[-1].role == "manager"  # the manager always answers


def test_a_short_context_still_gets_its_workers():
    short = Example("s", "Where is it?", ["here"], [Document(id="x", title="", text="It is here.")])
    [p] = ChainOfAgents(workers=2, cu_tokens=8).run([short], gen())
    assert p.provenance.measures["workers"] == 2  # parts shorter than a cut's minimum are read whole


def test_estimate_bounds_the_run():
    strategy = ChainOfAgents(workers=2, cu_tokens=8)
    [estimate] = strategy.estimate([EXAMPLE], gen())
    [p] = strategy.run([EXAMPLE], gen())
    assert estimate.calls == p.cost.calls == 3 and estimate.input_tokens >= p.cost.input_tokens


def test_workers_and_chunk_size_together_are_one_clear_error(experiment_dict):
    with pytest.raises(ValueError, match="not both"):
        ChainOfAgents(workers=2, chunk_tokens=64)
    experiment_dict["arms"] = [{"strategy": "chain_of_agents", "workers": [1, 2], "cu_tokens": 8}]
    names = [c.name for c in load_experiment(experiment_dict).configurations]
    assert names == ["chain_of_agents workers=1", "chain_of_agents workers=2"]
    experiment_dict["arms"] = [{"strategy": "chain_of_agents", "workers": "many"}]
    with pytest.raises(ConfigError, match=r"arms\[0\]\.workers"):
        load_experiment(experiment_dict)
