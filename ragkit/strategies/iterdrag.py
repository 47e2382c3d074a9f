"""IterDRAG: iterative demonstration-based RAG (Yue et al., ICLR 2025, arXiv 2410.04343, §3.3,
Fig. 2; the Self-Ask format of Press et al., 2023: "Follow up:", "Intermediate answer:", "So the
final answer is:").

The model reads the demonstrations and the question with its ``k`` retrieved documents and either
asks a simpler sub-query ("Follow up: ...") or answers ("So the final answer is: ..."). For each
sub-query, ``k`` new documents are retrieved (passages already shown are skipped) and given to the
model with the sub-query; it writes "Intermediate answer: ..." and the next follow-up or the final
answer. At most ``n`` sub-queries: the turn that carries the ``n``-th one (or the question itself
when ``n = 0``) asks for the final answer. Every call's prompt counts towards the question's
effective context length.

Chat layout (one turn per step, so any chat template works without continuing an assistant turn):
user "Documents ... Question: q" -> assistant "Follow up: s1" -> user "Documents ... Follow up: s1"
-> assistant "Intermediate answer: a1\\nSo the final answer is: x". Demonstrations use the same
turns; their sub-queries and intermediate answers come from the pool example's gold supporting
facts ("What is known about <title>?" answered by that title's evidence sentences), with
documents retrieved for each sub-query, because HotpotQA ships no decompositions.

Robustness: output that has none of the three markers ends the question with that output as the
answer (a small model often answers directly) and counts one parse failure; a follow-up after the
last allowed one ends with the latest intermediate answer. Budget: the first call is fitted like
DRAG's; a later call that would take the question past ``budget`` effective tokens (or past the
window) is not made, and the latest intermediate answer is the answer. Provenance records the
sub-queries, the documents retrieved per round, every raw output and why the question stopped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from ragkit.constraints import Count, NonNegativeInt, Seed, Tokens
from ragkit.data.base import DatasetLoader
from ragkit.generators.base import GenerationRequest, Generator, Message
from ragkit.registry import register
from ragkit.strategies.base import Record
from ragkit.strategies.drag import DRAG, Demo
from ragkit.strategies.prompts import clean_answer
from ragkit.strategies.retrieval import Retrieval
from ragkit.types import Corpus, Cost, Document, Example, Prediction, Scored, uses

SYSTEM = (
    "You answer multi-hop questions from the given documents. Work one step at a time. If you need a "
    "fact first, write 'Follow up: <simpler question>'. After you get documents for it, write "
    "'Intermediate answer: <short answer>' and then either the next 'Follow up: ...' or, once you "
    "know the answer, 'So the final answer is: <a few words>'."
)
FINAL_CUE = "Now give the final answer: write 'So the final answer is: <a few words>'."
_MARKER = re.compile(
    r"(follow[\s-]*up|intermediate\s+answer|so\s+the\s+(?:final\s+)?answer\s+is)\s*:?", flags=re.IGNORECASE
)


def parse_step(text: str) -> dict[str, str]:
    """The first "Follow up" or "So the final answer is" (whichever comes first wins) and the first
    intermediate answer of one model output: ``{"follow_up"?, "final"?, "intermediate"?}``. A
    marker's text runs to the end of its line or the next marker."""
    out: dict[str, str] = {}
    found = list(_MARKER.finditer(text))
    for i, match in enumerate(found):
        end = found[i + 1].start() if i + 1 < len(found) else len(text)
        rest = text[match.end() : end].strip().split("\n", 1)[0].strip()
        kind = match.group(1).lower()
        if kind.startswith("intermediate"):
            out.setdefault("intermediate", rest)
        elif "follow_up" not in out and "final" not in out:
            out["follow_up" if kind.startswith("follow") else "final"] = rest
    return out


def _step_text(parsed: dict[str, str]) -> str:
    """The assistant turn kept in the conversation: only what the protocol allows (a small model
    often goes on inventing documents and answers after its follow-up)."""
    lines = [f"Intermediate answer: {parsed['intermediate']}"] if "intermediate" in parsed else []
    return "\n".join([*lines, f"Follow up: {parsed['follow_up']}"])


@dataclass
class _State:
    record: Record
    corpus: Corpus
    head: list[Message]  # system, demonstrations, the question turn
    steps: list[tuple[str, str, str]] = field(default_factory=list)  # (assistant text, sub-query, docs)
    shown: set[str] = field(default_factory=set)
    answer: str | None = None
    stop: str = ""
    last_intermediate: str = ""
    parse_failures: int = 0

    @property
    def example(self) -> Example:
        return self.record.example


@register("strategy", "iterdrag")
class IterDRAG(DRAG):
    version = "1"
    # n sub-queries are up to n + 1 generation rounds (the last answers): theta_n = n + 1
    theta: ClassVar = {"k": "strategy.retrieval.k", "m": "strategy.m", "n": "strategy.n+1"}
    family: ClassVar = "iterdrag"

    def __init__(
        self,
        *,
        retrieval: Retrieval,
        m: NonNegativeInt = 2,
        n: Count = 2,
        demonstrations: DatasetLoader | None = None,
        demo_k: NonNegativeInt | None = None,
        seed: Seed = 0,
        budget: Tokens | None = None,
        abstain: bool = False,
        max_new_tokens: Tokens | None = 48,
    ) -> None:
        super().__init__(
            retrieval=retrieval,
            m=m,
            demonstrations=demonstrations,
            demo_k=demo_k,
            seed=seed,
            budget=budget,
            abstain=abstain,
            max_new_tokens=max_new_tokens,
        )
        self.n = n

    # -- prompt ----------------------------------------------------------------------------------
    @staticmethod
    def _documents(block: str) -> str:
        return f"Documents:\n{block}\n\n" if block else ""

    def demo_turns(self, demo: Demo, n_docs: int) -> list[Message]:
        question = f"{self._documents(self._block(demo.hits[:n_docs]))}Question: {demo.example.question}"
        turns: list[Message] = [{"role": "user", "content": question}]
        previous = ""
        for sub, intermediate, hits in demo.steps:
            turns.append({"role": "assistant", "content": f"{previous}Follow up: {sub}"})
            turns.append(
                {"role": "user", "content": f"{self._documents(self._block(hits[:n_docs]))}Follow up: {sub}"}
            )
            previous = f"Intermediate answer: {intermediate}\n"
        turns.append({"role": "assistant", "content": f"{previous}So the final answer is: {demo.answer}"})
        return turns

    def messages(
        self, demos: Sequence[Demo], counts: Sequence[int], question: str, documents: str
    ) -> list[Message]:
        turns = [t for demo, c in zip(demos, counts, strict=False) for t in self.demo_turns(demo, c)]
        user = f"{self._documents(documents)}Question: {question}"
        if self.n == 0:
            user += f"\n\n{FINAL_CUE}"
        return [{"role": "system", "content": SYSTEM}, *turns, {"role": "user", "content": user}]

    def _conversation(self, state: _State) -> list[Message]:
        out = list(state.head)
        for i, (assistant, sub, block) in enumerate(state.steps):
            user = f"{self._documents(block)}Follow up: {sub}"
            if i + 1 == self.n:
                user += f"\n\n{FINAL_CUE}"
            out += [{"role": "assistant", "content": assistant}, {"role": "user", "content": user}]
        return out

    # -- demonstrations: follow-up steps from gold supporting facts ------------------------------
    def _prepare_demos(self, demos: list[Demo], corpora: Sequence[Corpus]) -> None:
        plans: list[tuple[int, str, str]] = []
        for i, demo in enumerate(demos):
            titles = {d.id: d.title or d.id for d in demo.example.documents}
            facts: dict[str, list[str]] = {}
            for evidence in demo.example.evidence:
                facts.setdefault(evidence.doc_id, []).append(evidence.text)
            for doc_id, texts in list(facts.items())[: max(self.n, 1)]:
                plans.append((i, f"What is known about {titles.get(doc_id, doc_id)}?", " ".join(texts)))
        if not plans:
            return
        hits = self._demo_documents(
            [sub for _, sub, _ in plans],
            [corpora[i] for i, _, _ in plans],
            [demos[i].example.evidence for i, _, _ in plans],
        )
        for (i, sub, intermediate), found in zip(plans, hits, strict=True):
            demos[i].steps.append((sub, intermediate, found))

    # -- running -----------------------------------------------------------------------------------
    def _input_limit(self, generator: Generator) -> int:
        return generator.input_limit(self.max_new_tokens)

    def _start(
        self, examples: Sequence[Example], generator: Generator, corpus: Sequence[Document] | None
    ) -> list[_State]:
        records = [Record(e) for e in examples]
        states = []
        for record, packed in zip(records, self.contexts(records, generator, corpus), strict=True):
            state = _State(record, self.retrieval.corpus(record.example, corpus), packed.messages)
            state.shown = {s.chunk.id for s in packed.context.chunks}
            record.provenance.details.update(sub_queries=[], step_retrieved=[])
            states.append(state)
        return states

    def run(
        self,
        examples: Sequence[Example],
        generator: Generator,
        corpus: Sequence[Document] | None = None,
    ) -> list[Prediction]:
        states = self._start(examples, generator, corpus)
        active = list(states)
        while active:
            requests, asking = [], []
            for state in active:
                messages = self._conversation(state)
                tokens = generator.prompt_tokens(messages)
                spent = state.record.cost.input_tokens
                if state.steps and self.budget is not None and spent + tokens > self.budget:
                    self._finish(state, state.last_intermediate, "budget")
                elif state.steps and tokens > self._input_limit(generator):
                    self._finish(state, state.last_intermediate, "window")
                else:
                    requests.append(GenerationRequest(messages, max_new_tokens=self.max_new_tokens))
                    asking.append(state)
            follow: list[tuple[_State, str, str]] = []
            for state, request, generation in zip(
                asking, requests, generator.generate(requests), strict=True
            ):
                text = state.record.call(generation, generator, role="step", request=request)
                parsed = parse_step(text)
                state.last_intermediate = parsed.get("intermediate", state.last_intermediate)
                if "final" in parsed:
                    self._finish(state, parsed["final"], "final")
                elif "follow_up" in parsed and len(state.steps) < self.n:
                    follow.append((state, parsed["follow_up"], _step_text(parsed)))
                elif "follow_up" in parsed:
                    self._finish(state, state.last_intermediate, "max_iterations")
                else:  # none of the markers: the output itself is the answer, counted
                    state.parse_failures += 1
                    self._finish(state, parsed.get("intermediate") or text, "parse_failure")
            self._retrieve_steps(follow)
            active = [s for s in states if s.answer is None]
        return [self._prediction(s) for s in states]

    def _retrieve_steps(self, follow: list[tuple[_State, str, str]]) -> None:
        if not follow:
            return
        depth = self.retrieval.k + max(len(s.shown) for s, _, _ in follow)  # enough to skip what was shown
        hits = self.retrieval.retrieve(
            [sub for _, sub, _ in follow],
            [s.corpus for s, _, _ in follow],
            depth,
            [s.example.evidence for s, _, _ in follow],
        )
        for (state, sub, assistant), found, spent in zip(follow, hits, uses(hits), strict=True):
            fresh: list[Scored] = [h for h in found if h.chunk.id not in state.shown][: self.retrieval.k]
            state.shown |= {h.chunk.id for h in fresh}
            state.record.stage("retrieve", fresh, spent)
            state.steps.append((assistant, sub, self._block(fresh)))
            state.record.provenance.details["sub_queries"].append(sub)
            state.record.provenance.details["step_retrieved"].append([h.chunk.id for h in fresh])

    @staticmethod
    def _finish(state: _State, answer: str, why: str) -> None:
        state.answer = clean_answer(answer)
        state.stop = why

    def _prediction(self, state: _State) -> Prediction:
        provenance = state.record.provenance
        provenance.raw_answer = state.answer or ""
        provenance.measures.update(iterations=len(state.steps), parse_failures=state.parse_failures)
        provenance.details["stop"] = state.stop
        return state.record.prediction(state.answer or "")

    def estimate(
        self,
        examples: Sequence[Example],
        generator: Generator,
        corpus: Sequence[Document] | None = None,
    ) -> list[Cost]:
        """An upper bound: all ``n`` sub-queries happen, each adds ``k`` of the question's longest
        passages and a full-length output to every later call; capped by ``budget``."""
        max_new = self.max_new_tokens or generator.max_new_tokens
        k = self.retrieval.k
        records = [Record(e) for e in examples]
        out = []
        for record, packed in zip(records, self.contexts(records, generator, corpus), strict=True):
            lengths = sorted(
                (
                    generator.count_tokens(c.text)
                    for c in self.retrieval.corpus(record.example, corpus).chunks
                ),
                reverse=True,
            )
            step = sum(lengths[:k]) + 2 * max_new + 16 * (k + 1)  # documents, turns, labels
            calls = [packed.prompt_tokens + j * step for j in range(self.n + 1)]
            total = sum(calls) if self.budget is None else min(sum(calls), max(self.budget, calls[0]))
            out.append(
                record.cost + Cost(input_tokens=total, output_tokens=max_new * (self.n + 1), calls=self.n + 1)
            )
        return out
