import pytest

from ragkit import registry
from ragkit.generators.base import GenerationRequest
from ragkit.generators.scripted import ScriptedGenerator
from ragkit.rerankers.order import apply_order
from ragkit.strategies.prompts import clean_answer
from ragkit.types import Chunk, Cost, Scored


def scored(n):
    return [
        Scored(Chunk(id=f"c{i}", doc_id=f"d{i}", text=f"t{i}", position=i), score=float(n - i))
        for i in range(n)
    ]


def test_orders():
    items = scored(5)  # scores 5,4,3,2,1 at positions 0..4
    shuffled = [items[3], items[0], items[4], items[1], items[2]]
    assert [s.chunk.id for s in apply_order("score", shuffled)] == ["c0", "c1", "c2", "c3", "c4"]
    assert [s.chunk.id for s in apply_order("original", shuffled)] == ["c0", "c1", "c2", "c3", "c4"]
    assert [s.chunk.id for s in apply_order("score-reversed", shuffled)] == ["c4", "c3", "c2", "c1", "c0"]
    # best at both ends, weakest in the middle
    assert [s.chunk.id for s in apply_order("lost-in-the-middle", shuffled)] == ["c0", "c2", "c4", "c3", "c1"]
    with pytest.raises(ValueError, match="unknown order"):
        apply_order("random", items)


@pytest.mark.parametrize(
    "raw, clean",
    [
        ("Paris.", "Paris"),
        ("Answer: Paris\nbecause ...", "Paris"),
        ("The answer is 1994.", "1994"),
        ('  "yes"  ', "yes"),
        ("", ""),
    ],
)
def test_clean_answer(raw, clean):
    assert clean_answer(raw) == clean


def test_registry_did_you_mean():
    with pytest.raises(registry.RegistryError, match="did you mean 'scripted'"):
        registry.get("generator", "scriptd")
    with pytest.raises(registry.RegistryError, match="unknown component kind"):
        registry.names("retreiver")


def test_params_model_rejects_unknown_and_wrong_types():
    with pytest.raises(Exception, match="max_new_token"):
        registry.build("generator", "scripted", {"max_new_token": 3})
    with pytest.raises(Exception, match="valid integer"):
        registry.build("generator", "scripted", {"max_new_tokens": "many"})
    gen = registry.build("generator", "scripted", {"max_new_tokens": 3})
    assert gen.get_params()["max_new_tokens"] == 3 and gen.spec()["type"] == "scripted"


def test_generator_window_guard_records_truncation():
    gen = ScriptedGenerator(context_window=20, max_new_tokens=4, default="ok")
    long = " ".join(f"w{i}" for i in range(50))
    [out] = gen.generate([GenerationRequest([{"role": "user", "content": long}])])
    assert out.input_tokens == 16  # window 20 minus 4 reserved for the answer
    assert out.truncated_tokens == len(gen.render([{"role": "user", "content": long}]).split()) - 16


def test_cost_addition():
    total = Cost(input_tokens=10, calls=1, flops=2.0) + Cost(input_tokens=5, output_tokens=3, calls=1)
    assert total.effective_context_tokens == 15 and total.calls == 2 and total.output_tokens == 3


def test_split_evenly_loses_no_token():
    from ragkit.types import split_evenly

    assert split_evenly(10, 3) == [4, 3, 3]
    assert split_evenly(2, 4) == [1, 1, 0, 0]
    assert sum(split_evenly(12345, 7)) == 12345
