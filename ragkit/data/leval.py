"""L-Eval (An et al., 2023, "L-Eval: Instituting Standardized Evaluation for Long Context Language
Models"): 20 tasks over long documents, closed-ended (exam-style, scored exactly) and open-ended
(answers and summaries, scored by n-gram overlap or a judge).

Layout: the repository's ``LEval-data/`` folder (``path``) with ``Closed-ended-tasks/<task>.jsonl``
and ``Open-ended-tasks/<task>.jsonl`` (the older ``Exam/`` and ``Generation/`` folders work too).
Each line is one document: ``input`` (the document), ``instructions`` and ``outputs`` (parallel
lists: several questions per document), ``evaluation`` (exam, f1, rouge, LLM or human) and
``source``.

Mapping: one example per instruction, all sharing their line's document (one long document: set a
``chunker`` on RAG arms). ``meta``: ``type`` (the task), ``group`` (closed/open), ``evaluation``,
``source`` and the metric. Multiple-choice and math instructions get L-Eval's answer-format
request appended ("answer with the letter(s)", "end with: The answer is _").

Metrics (``task_score``), as L-Eval's ``auto_eval.py``: closed-ended tasks by its exam rules
(:func:`exam`); ``f1`` records by SQuAD F1; ``rouge`` records by Rouge-L F1 (``rouge-score``, no
stemming, as L-Eval; L-Eval's headline is the geometric mean of Rouge-1/2/L). Records L-Eval grades
with GPT-4 or humans (``LLM``, ``human``) get Rouge-L too and are marked ``answer_format:
free-form``: give the experiment an ``evaluation.judge`` for a model-graded score. sci_fi is scored
on its document-based verdict only: its second, real-world verdict needs a closed-book call.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragkit.constraints import Count, Seed
from ragkit.data._benchmark_tools import document, pick_tasks, read_records, require_dir, string, strings
from ragkit.data.base import DatasetError, DatasetLoader, LoadedDataset, Partition, fresh, read_memoised
from ragkit.registry import register
from ragkit.task_metrics import task_metric
from ragkit.types import Example, stable_hash

CLOSED = ("coursera", "quality", "tpo", "gsm100", "topic_retrieval_longchat", "codeU", "sci_fi")
OPEN = (
    *("financial_qa", "gov_report_summ", "legal_contract_qa", "meeting_summ", "multidoc_qa"),
    *("narrative_qa", "natural_question", "news_summ", "paper_assistant", "patent_summ"),
    *("review_summ", "scientific_qa", "tv_show_summ"),
)
FOLDERS = ("Closed-ended-tasks", "Open-ended-tasks", "Exam", "Generation")
# Which exam rule a closed-ended task uses, and the answer format L-Eval's prompt asks for.
EXAM_KIND = {
    "coursera": "options",
    "quality": "option",
    "tpo": "option",
    "gsm100": "math",
    "topic_retrieval_longchat": "text",
    "codeU": "code",
    "sci_fi": "verdict",
}
FORMAT = {
    "option": "Answer with the letter of the correct option only (like A or B).",
    "options": "There may be one or several correct options. Answer with their letters only (like A or AB).",
    "math": "End your response with: The answer is _.",
}


@dataclass(frozen=True)
class _Parsed:
    examples: tuple[Example, ...]


def parse_task_file(path: Path) -> _Parsed:
    task = path.stem
    group = "closed" if task in CLOSED else "open"
    examples = []
    for line, (where, record) in enumerate(read_records(path, ("input", "instructions", "outputs"))):
        instructions = strings(record, "instructions", where)
        outputs = strings(record, "outputs", where)
        if len(instructions) != len(outputs):
            raise DatasetError(
                f"{where}: field 'outputs': {len(outputs)} outputs for {len(instructions)} instructions"
            )
        evaluation = str(record.get("evaluation") or ("exam" if group == "closed" else "rouge"))
        doc = document(f"leval-{task}-{line:03d}", string(record, "input", where, empty_ok=False))
        for i, (instruction, output) in enumerate(zip(instructions, outputs, strict=True)):
            meta: dict[str, Any] = {
                "type": task,
                "group": group,
                "evaluation": evaluation,
                "source": record.get("source"),
                "benchmark": "l-eval",
            }
            question = instruction.strip()
            if group == "closed":
                meta["metric"], meta["exam"] = "leval_exam", EXAM_KIND.get(task, "text")
                if meta["exam"] in FORMAT:
                    question += "\n\n" + FORMAT[meta["exam"]]
            else:
                meta["metric"] = "qa_f1" if evaluation == "f1" else "rouge_l"
                if evaluation in ("LLM", "human"):
                    meta["answer_format"] = "free-form"
            examples.append(
                Example(
                    id=f"leval-{task}-{line:03d}-{i:02d}",
                    question=question,
                    answers=[output],
                    documents=[doc],
                    meta=meta,
                )
            )
    return _Parsed(tuple(examples))


@register("dataset", "l-eval")
class LEval(DatasetLoader):
    """L-Eval tasks (``tasks``: all present when null) from a local ``LEval-data/`` folder."""

    version = "1"
    local_copy = True

    def __init__(
        self,
        *,
        path: str,
        tasks: list[str] | None = None,
        sample: Count | None = None,
        seed: Seed = 0,
        partition: Partition = "all",
        ids: list[str] | None = None,
    ) -> None:
        self.path = path
        self.tasks = tasks
        self.sample = sample
        self.seed = seed
        self.partition = partition
        self.ids = ids

    def source_path(self) -> Path:
        return require_dir(
            self.path, "l-eval", "L-Eval's LEval-data/ folder with Closed-ended-tasks/ and Open-ended-tasks/"
        )

    def files(self) -> list[Path]:
        root = self.source_path()
        found: dict[str, Path] = {}
        for folder in FOLDERS:
            for file in sorted((root / folder).glob("*.jsonl")):
                found.setdefault(file.stem, file)
        if not found:
            raise DatasetError(
                f"l-eval dataset: no <task>.jsonl files under {root}/Closed-ended-tasks or Open-ended-tasks"
            )
        return [found[t] for t in pick_tasks(sorted(found), self.tasks, "l-eval")]

    def note(self) -> str:
        return f"L-Eval: {len(self.files())} task file(s)"

    def load(self) -> LoadedDataset:
        examples: list[Example] = []
        revisions = []
        for file in self.files():
            examples.extend(read_memoised(file, parse_task_file).examples)
            stat = file.stat()
            revisions.append([file.name, stat.st_size, stat.st_mtime_ns])
        selected = [fresh(e) for e in self.select(examples)]
        return LoadedDataset(selected, None, f"l-eval:{stable_hash(revisions)}")


# -- L-Eval's exam rules (Evaluation/auto_eval.py and em.py of the L-Eval repository) ---------------
def _strip(text: str) -> str:
    """em.py's normalisation: no punctuation, no lower-case articles, single spaces (no lowering)."""
    text = re.sub(r"[!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~]", "", text)
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def option_letters(output: str, several: bool) -> str:
    """The option letter(s) an output chooses: the first capital A-D anywhere (one correct
    option), or for coursera (``several``) a leading run of letters, else letters standing alone
    before the next "Question"; "A" when none (L-Eval's random guess)."""
    if output in "ABCD" and output:
        return output
    if not several:
        return next((ch for ch in output if ch in "ABCD"), "A")
    lead = re.match(r"[ABCD]+", output)
    if lead and len(lead.group(0)) > 1:
        return "".join(sorted(set(lead.group(0))))
    rest = output[len(lead.group(0)) if lead else 0 :].split("Question")[0]
    letters = (lead.group(0) if lead else "") + "".join(re.findall(r"\s*([A-Z])(?=[\s.)])", rest))
    letters = "".join(sorted(set(re.sub(r"[^A-D]", "", letters))))
    return letters or "A"


def _number(text: str) -> str:
    """gsm100's rule: the token after "The answer is", else the last number-bearing word of the
    first paragraph; its digits up to a decimal point."""
    match = re.search(r"The answer is (\S+)", text)
    if match:
        token = match.group(1)
    else:
        words = text.split("\n\n")[0].split(" ")[::-1]
        token = next((w for w in words if any(ch.isdigit() for ch in w)), "")
    digits = ""
    for ch in token:
        if ch == ".":
            break
        if ch.isdigit():
            digits += ch
    return digits


def _code(text: str) -> str:
    text = re.sub(r"\s+", " ", text)
    for old, new in (
        (",", ""),
        ("'", ""),
        ("\\", ""),
        (".0", ""),
        ("] [", "]["),
        ("[ [", "[["),
        ("] ]", "]]"),
    ):
        text = text.replace(old, new)
    return text


def _code_output(output: str, reference: str) -> str:
    words = len(reference.split())
    text = _code(output)
    for filler in ("will be", "of the code", "is", "would be", "the value of", "the result of", "printed"):
        text = text.replace(filler, "")
    if "the final output" in text:
        return " ".join(re.split(r"\s+", text.split("the final output")[-1])[: words + 3])
    return " ".join(re.split(r"\s+", text)[-(words + 3) :])


def _matches(prediction: str, reference: str) -> float:
    """em.py's ``exact_match_score`` for answers that are not option letters."""
    try:
        return float(float(prediction) == float(reference))
    except ValueError:
        lines = [ln for ln in prediction.split("\n") if len(ln) > 1]
        first = lines[0] if lines else prediction
        return float(reference.lower().replace(" ", "") in first.lower().replace(" ", ""))


def _verdict(text: str) -> str:
    word = next((w for w in text.lower().split() if "true" in w or "false" in w), "")
    return "true" if "true" in word else "false" if "false" in word else "<error>"


@task_metric("leval_exam")
def exam(output: str, example: Example) -> float:
    """1 for a right answer; 0.25 for coursera options that are a strict subset of the right ones."""
    reference = example.answers[0]
    kind = example.meta.get("exam", "text")
    if kind in ("option", "options"):
        gold = re.sub(r"[^A-D]", "", reference.split()[0]) if reference.split() else ""
        gold = _strip(gold or "A")
        chosen = _strip(option_letters(output, several=kind == "options"))
        if chosen == gold:
            return 1.0
        return 0.25 if chosen and set(chosen) <= set(gold) else 0.0
    if kind == "math":
        return _matches(_number(output), _number(reference))
    if kind == "code":
        return _matches(_code_output(output, reference), _code(reference))
    if kind == "verdict":  # "True [fact: False]": the document-based verdict is the part before
        return float(
            _verdict(output.lower().split("[fact:")[0]) == _verdict(reference.lower().split("[fact:")[0])
        )
    return _matches(output, reference)
