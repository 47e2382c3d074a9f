"""Free-form scoring: the judge metric with a scripted judge, and the judge-free approximations."""

import math

import pytest

from ragkit.cache import Cache
from ragkit.generators.scripted import ScriptedGenerator
from ragkit.judge import RUBRIC_VERSION, UNANSWERABLE_REFERENCE, judge, parse_verdict
from ragkit.longform import answer_recall, refusal, score_example, score_frame
from ragkit.types import Example, Prediction

EXAMPLES = [
    Example("a", "What is the capital of France?", ["The capital of France is Paris."]),
    Example("b", "Who wrote Dracula?", ["Bram Stoker wrote it."]),
    Example("c", "What colour is the sky?", ["Blue."]),
    Example("d", "What is the 2030 forecast?", ["The report gives no forecast."], answerable=False),
]
ANSWERS = {"a": "Paris", "b": "Mary Shelley", "c": "hmm", "d": "The report does not say."}
# The scripted judge grades by the candidate answer it is shown.
SCRIPT = {
    "Candidate answer: Paris": "CORRECT",
    "Candidate answer: Mary Shelley": "Incorrect. The reference says Bram Stoker.",
    "Candidate answer: hmm": "I cannot tell.",
    "Candidate answer: The report does not say": " correct",
}


def _predictions():
    return [Prediction(e.id, ANSWERS[e.id]) for e in EXAMPLES]


def test_parse_verdict():
    assert parse_verdict("CORRECT") is True
    assert parse_verdict(" correct.") is True
    assert parse_verdict("INCORRECT") is False
    assert parse_verdict("Verdict: not correct") is False
    assert parse_verdict("The answer is wrong.") is False
    assert parse_verdict("Correct, though the reference is wrong about the date") is True
    assert parse_verdict("I cannot tell") is None
    assert parse_verdict("") is None


def test_judge_grades_logs_and_caches(tmp_path):
    cache = Cache(tmp_path / "cache")
    generator = ScriptedGenerator(script=SCRIPT, default="???", max_new_tokens=16)
    verdicts = judge(EXAMPLES, _predictions(), generator, cache=cache).set_index("example_id")
    assert verdicts["judge_correct"].to_dict() == {"a": 1.0, "b": 0.0, "c": 0.0, "d": 1.0}
    assert verdicts["judge_parsed"].to_dict() == {"a": 1.0, "b": 1.0, "c": 0.0, "d": 1.0}
    assert verdicts.loc["b", "judge_raw"].startswith("Incorrect.")
    assert verdicts.loc["a", "judge_model"].startswith("scripted:")
    prompt = verdicts.loc["a", "judge_prompt"]
    assert "Reference answer: The capital of France is Paris." in prompt
    assert "Candidate answer: Paris" in prompt and "Reply with one word, CORRECT or INCORRECT" in prompt
    assert f"Reference answer: {EXAMPLES[3].answers[0]}" in verdicts.loc["d", "judge_prompt"]
    assert len(generator.prompts_) == 12  # 4 answers + 4 references + 4 mismatched references
    again = judge(EXAMPLES, _predictions(), generator, cache=cache)
    assert len(generator.prompts_) == 12  # every verdict came from the cache
    assert again["judge_correct"].tolist() == verdicts["judge_correct"].tolist()
    assert RUBRIC_VERSION


def test_control_verdicts_catch_a_judge_that_accepts_anything(tmp_path):
    from ragkit.judge import NOT_GIVEN_CANDIDATE, control_warning

    yes_man = ScriptedGenerator(default="CORRECT")
    frame = judge(EXAMPLES, _predictions(), yes_man, cache=Cache(tmp_path / "a"))
    assert frame["judge_correct"].tolist() == [1.0] * 4
    assert frame["judge_accepts_reference"].tolist() == [1.0] * 4
    assert frame["judge_rejects_mismatch"].tolist() == [0.0] * 4
    prompts = "\n".join(yes_man.prompts_)
    assert "Candidate answer: Bram Stoker wrote it." in prompts  # b's own reference as a control
    assert f"Candidate answer: {NOT_GIVEN_CANDIDATE}" in prompts  # the right reply for d
    # a's mismatch is the next answerable question's reference: b's
    assert (
        "What is the capital of France?\nReference answer: The capital of France is Paris.\n"
        "Candidate answer: Bram Stoker wrote it." in prompts
    )
    warning = control_warning(frame.mean(numeric_only=True).to_dict())
    assert warning is not None and "rejected only 0% of other questions' references" in warning

    # a judge that reads the reference: accepts it, rejects the others' references
    fair = ScriptedGenerator(
        script={
            "Reference answer: The capital of France is Paris.\nCandidate answer: The capital": "CORRECT",
            "Reference answer: Bram Stoker wrote it.\nCandidate answer: Bram": "CORRECT",
            "Reference answer: Blue.\nCandidate answer: Blue.": "CORRECT",
            f"Candidate answer: {NOT_GIVEN_CANDIDATE}": "CORRECT",
        },
        default="INCORRECT",
    )
    fair_frame = judge(EXAMPLES, _predictions(), fair, cache=Cache(tmp_path / "b"))
    assert fair_frame["judge_accepts_reference"].tolist() == [1.0] * 4
    assert fair_frame["judge_rejects_mismatch"].tolist() == [1.0] * 4
    assert control_warning(fair_frame.mean(numeric_only=True).to_dict()) is None


def test_unanswerable_without_reference_gets_a_stated_reference(tmp_path):
    example = Example("u", "Who won in 2090?", [], answerable=False)
    generator = ScriptedGenerator(default="CORRECT")
    frame = judge([example], [Prediction("u", "unanswerable")], generator, cache=Cache(tmp_path))
    assert f"Reference answer: {UNANSWERABLE_REFERENCE}" in frame.loc[0, "judge_prompt"]


def test_judge_needs_every_prediction(tmp_path):
    with pytest.raises(ValueError, match="no prediction for 1 example"):
        judge(EXAMPLES, _predictions()[:3], ScriptedGenerator(), cache=Cache(tmp_path))


def test_runner_merges_judge_verdicts(experiment_dict, tmp_path):
    from ragkit.config import load_experiment
    from ragkit.runner import run_experiment

    experiment_dict["evaluation"] = {
        "judge": {"type": "scripted", "script": {"Paris": "CORRECT"}, "default": "INCORRECT"}
    }
    experiment_dict["arms"] = [{"strategy": "full_context"}]
    (result,) = run_experiment(load_experiment(experiment_dict))
    scores = result.scores.set_index("example_id")
    assert scores.loc["q1", "judge_correct"] == 1.0  # the scripted model answers "Paris" to q1
    assert scores.loc["q5", "judge_correct"] == 0.0
    assert result.summary["judge_correct"] == pytest.approx(1 / 6)
    assert "judge_raw" in scores.columns and "judge_prompt" in scores.columns


# -- approximations without a judge ------------------------------------------------------------
def test_answer_recall_counts_content_words():
    reference = "The net loss decreased to $1,093,095 in 2024."
    assert answer_recall("Net loss decreased to $1,093,095 in 2024", [reference]) == 1.0
    # content words: net, loss, decreased, 1093095, 2024 -> 3 of 5 found
    assert answer_recall("the loss was 1,093,095 in 2024", [reference]) == pytest.approx(3 / 5)
    assert answer_recall("I do not know", [reference]) == 0.0
    assert answer_recall("Paris", ["It is in Paris.", "Lyon"]) == 1.0  # best reference
    assert answer_recall("anything", []) == 0.0


def test_refusal_detection():
    assert refusal("The document does not provide the projected growth rate.")
    assert refusal("This information is not specified in the filing.")
    assert refusal("unanswerable")
    assert not refusal("Revenue grew by 12% to $4.5 million.")
    assert not refusal("The company was founded in 1999 in Ohio.")


def test_longform_scores_are_named_approximate():
    located = Example("x", "q?", ["Revenue was $1,234."], meta={"answer_format": "free-form"})
    hallu = Example("y", "q?", ["Not given."], answerable=False, meta={"answer_format": "free-form"})
    short = Example("z", "q?", ["Paris"])
    good = score_example(located, Prediction("x", "It was $1,234 of revenue"))
    assert good["answer_recall_approx"] == 1.0 and good["longform_approx"] == 1.0
    assert math.isnan(good["refusal_approx"])
    refused = score_example(hallu, Prediction("y", "The filing does not mention it."))
    assert refused["refusal_approx"] == 1.0 and math.isnan(refused["answer_recall_approx"])
    assert score_example(hallu, Prediction("y", "It is $5."))["longform_approx"] == 0.0
    assert score_example(short, Prediction("z", "Paris")) == {}
    frame = score_frame([located, short], [Prediction("x", "no"), Prediction("z", "Paris")])
    assert list(frame["example_id"]) == ["x", "z"]
    assert "answer_recall_approx" in frame.columns
