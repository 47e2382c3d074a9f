"""MLflow traces per question, built by the driver from what each prediction recorded.

Execution may run on other processes or machines (executors), so no span is opened inside a
component. After a configuration finishes, the driver turns each (sampled) prediction into one
trace with MLflow's low-level tracing client, which takes explicit start and end times and parent
span ids (``MlflowClient.start_trace`` / ``start_span`` / ``end_span`` / ``end_trace``):

    <configuration name>            CHAIN       question -> answer, linked to the child run
      retrieve / rerank / prune ... RETRIEVER / RERANKER / PARSER: each stage the strategy ran
                                    (Provenance.stages) -> chunk ids and scores, tokens, seconds
      pack context                  PARSER      the context the answering prompt showed
      generate [i]                  CHAT_MODEL  prompt messages -> output, token usage, seconds
                                    (Provenance.calls: every generator call, its role)
      score                         EVALUATOR   answer, references -> the question's metrics

Span durations are the measured seconds the prediction carries (a cached generation keeps the
seconds of its original call and says ``cached``); spans are laid end to end from the moment the
trace is logged, since a batch's questions ran together and carry no wall-clock start of their own.
The question's accuracy scores are also logged as assessments (feedback from code), which fill
MLflow's GenAI quality and evaluation views.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterator, Sequence
from typing import Any

from ragkit.types import Call, Example, Prediction, Provenance

log = logging.getLogger(__name__)

# Per-question scores shown in the score span. The accuracy ones (report.HEADLINES) and F1 are
# also logged as assessments, which MLflow's quality views chart; each is one store transaction,
# so EM (about 0 for models that answer in sentences), evidence recall and the references (in the
# score span's inputs) stay in the span only.
SCORES = (
    "contains_answer",
    "f1",
    "em",
    "judge_correct",
    "longform_approx",
    "needle_exact",
    "needle_recall",
    "evidence_recall",
)
FEEDBACK = ("contains_answer", "f1", "judge_correct", "longform_approx", "needle_exact", "needle_recall")
SOURCE_ID = "ragkit.metrics"
SPAN_BATCH = "MLFLOW_ASYNC_TRACE_LOGGING_MAX_SPAN_BATCH_SIZE"


@contextlib.contextmanager
def tracking_uri(uri: str) -> Iterator[None]:
    """MLflow's tracing client exports to the global tracking URI: point it at ``uri`` while
    traces are logged, then restore the previous URI and ``MLFLOW_TRACKING_URI`` (which
    ``set_tracking_uri`` also sets, and which ragkit reads to pick a store). Each switch rebuilds
    MLflow's tracer and its store connection (seconds), so the runner enters this once per
    experiment and the traces of each configuration reuse it."""
    import os

    import mlflow

    previous = mlflow.get_tracking_uri() if mlflow.tracking.is_tracking_uri_set() else None
    if previous == uri:  # already there (the runner points it once per experiment): no reset
        yield
        return
    saved = {name: os.environ.get(name) for name in ("MLFLOW_TRACKING_URI", SPAN_BATCH)}
    # Spans are exported in batches (one store transaction each, read when the tracer is built):
    # MLflow's default of 5 spans is about a transaction per question; a configuration's traces
    # go in a few. A value the user set is kept.
    os.environ.setdefault(SPAN_BATCH, "256")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _ns(seconds: float) -> int:
    return max(1_000, int(seconds * 1e9)) if seconds == seconds else 1_000  # at least 1 µs


class _Builder:
    """Lays one question's spans end to end under its root span."""

    def __init__(self, client: Any, trace_id: str, root_id: str, start_ns: int) -> None:
        self.client = client
        self.trace_id = trace_id
        self.clock = start_ns
        self.parents = [root_id]

    def span(
        self,
        name: str,
        kind: str,
        seconds: float,
        inputs: Any,
        outputs: Any,
        attributes: dict[str, Any] | None = None,
    ) -> None:
        span = self.client.start_span(
            name,
            trace_id=self.trace_id,
            parent_id=self.parents[-1],
            span_type=kind,
            inputs=inputs,
            attributes=attributes or {},
            start_time_ns=self.clock,
        )
        self.clock += _ns(seconds)
        self.client.end_span(self.trace_id, span.span_id, outputs=outputs, end_time_ns=self.clock)

    @contextlib.contextmanager
    def group(self, name: str, attributes: dict[str, Any]) -> Iterator[None]:
        """A CHAIN span around nested stages (Self-Route's RAG attempt and its fallback)."""
        span = self.client.start_span(
            name,
            trace_id=self.trace_id,
            parent_id=self.parents[-1],
            span_type="CHAIN",
            attributes=attributes,
            start_time_ns=self.clock,
        )
        self.parents.append(span.span_id)
        try:
            yield
        finally:
            self.parents.pop()
            self.clock += 1_000
            self.client.end_span(self.trace_id, span.span_id, end_time_ns=self.clock)

    def stages(self, question: str, provenance: Provenance) -> None:
        """Spans for what one strategy recorded: its stages in the order they ran, the context it
        packed, then its generator calls."""
        self.stage_spans(question, provenance)
        self.pack(provenance)
        for index, call in enumerate(provenance.calls):
            self.call(index, call)

    def stage_spans(self, question: str, provenance: Provenance) -> None:
        for stage in provenance.stages:
            outputs: Any = [
                {"chunk_id": i, "score": s} for i, s in zip(stage.ids, stage.scores, strict=False)
            ]
            if stage.name == "prune":
                outputs = {"kept": outputs, **_pruning(provenance.measures)}
            self.span(
                stage.name,
                STAGE_KINDS.get(stage.name, "PARSER"),
                stage.seconds,
                {"query": question, "tokens_read": stage.tokens},
                outputs,
            )

    def pack(self, context: Provenance | dict[str, Any]) -> None:
        """The context the answering prompt showed (a provenance, or a step's summary of one)."""
        fields = context.to_dict() if isinstance(context, Provenance) else context
        if fields.get("context_ids") or fields.get("context_tokens") is not None:
            self.span(
                "pack context",
                "PARSER",
                0.0,
                {},
                {
                    key: fields.get(key)
                    for key in ("context_ids", "context_tokens", "dropped_tokens", "gold_survived")
                },
            )

    def call(self, index: int, call: Call) -> None:
        usage = {"input_tokens": call.input_tokens, "output_tokens": call.output_tokens}
        usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"]
        self.span(
            f"generate [{index + 1}]",
            "CHAT_MODEL",
            call.seconds,
            {"messages": call.messages},
            {"role": "assistant", "content": call.output},
            {
                "mlflow.chat.tokenUsage": usage,
                "role": call.role,
                "prefill_seconds": call.prefill_seconds,
                "decode_seconds": call.decode_seconds,
                "truncated_tokens": call.truncated_tokens,
                "cached": call.cached,
            },
        )


STAGE_KINDS = {"retrieve": "RETRIEVER", "rerank": "RERANKER", "search": "RETRIEVER"}


def _pruning(measures: dict[str, Any]) -> dict[str, Any]:
    names = ("tokens_before_pruning", "tokens_after_pruning", "compression", "evidence_after_pruning")
    return {name: measures[name] for name in names if name in measures}


def _value(value: Any) -> Any:
    """A JSON-safe scalar for span outputs and feedback (NaN: not applicable -> None)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def log_traces(
    uri: str,
    *,
    experiment_id: str,
    run_id: str,
    configuration: str,
    config_hash: str,
    examples: Sequence[Example],
    predictions: Sequence[Prediction],
    scores: Sequence[dict[str, Any]],
    limit: int | None,
) -> list[str]:
    """One trace per question (the first ``limit`` of them; None: all), linked to ``run_id``,
    with the question's scores as assessments. Returns the trace ids."""
    if limit == 0 or not predictions:
        return []
    import mlflow
    from mlflow.entities import AssessmentSource

    chosen = list(zip(examples, predictions, scores, strict=True))[: limit if limit is not None else None]
    logged: list[tuple[str, dict[str, Any]]] = []
    with tracking_uri(uri):
        client = mlflow.MlflowClient(tracking_uri=uri)
        for example, prediction, row in chosen:
            start = time.time_ns()
            root = client.start_trace(
                configuration,
                span_type="CHAIN",
                inputs={"question": example.question},
                attributes={"example_id": example.id, "config_hash": config_hash},
                tags={
                    "ragkit.config_name": configuration,
                    "ragkit.config_hash": config_hash,
                    "ragkit.example_id": example.id,
                },
                experiment_id=experiment_id,
                start_time_ns=start,
                run_id=run_id,
            )
            builder = _Builder(client, root.trace_id, root.span_id, start)
            provenance = prediction.provenance
            # A strategy that ran others as steps (Self-Route: RAG, then maybe full context) records
            # their calls under "step.role": one group span per step, in the order they ran.
            steps = list(dict.fromkeys(c.role.split(".", 1)[0] for c in provenance.calls if "." in c.role))
            if steps:
                for i, step in enumerate(steps):
                    summary = provenance.details.get(step, {})
                    attributes = {"routed": provenance.measures.get("routed")} if i == 0 else {}
                    with builder.group(step, {k: v for k, v in attributes.items() if v is not None}):
                        if i == 0:  # the stages belong to the first step (its retrieval)
                            builder.stage_spans(example.question, provenance)
                        if isinstance(summary, dict):
                            builder.pack(summary)
                        own = [c for c in provenance.calls if c.role.startswith(f"{step}.")]
                        for index, call in enumerate(own):
                            builder.call(index, call)
            else:
                builder.stages(example.question, provenance)
            if not provenance.calls:
                # predictions from before calls were recorded: one span with the totals
                builder.call(
                    0,
                    Call(
                        role="answer",
                        input_tokens=prediction.cost.input_tokens,
                        output_tokens=prediction.cost.output_tokens,
                        seconds=prediction.cost.prefill_seconds + prediction.cost.decode_seconds,
                        prefill_seconds=prediction.cost.prefill_seconds,
                        decode_seconds=prediction.cost.decode_seconds,
                        output=provenance.raw_answer or prediction.answer,
                    ),
                )
            metrics = {name: _value(row[name]) for name in SCORES if name in row}
            builder.span(
                "score",
                "EVALUATOR",
                0.0,
                {"answer": prediction.answer, "references": example.answers},
                metrics,
            )
            client.end_trace(
                root.trace_id,
                outputs={"answer": prediction.answer},
                attributes={
                    "effective_context_tokens": prediction.cost.effective_context_tokens,
                    "calls": prediction.cost.calls,
                    "seconds": round(prediction.cost.seconds, 6),
                },
                end_time_ns=builder.clock,
            )
            logged.append((root.trace_id, metrics))
        mlflow.flush_trace_async_logging()  # assessments attach to traces already in the store
        source = AssessmentSource(source_type="CODE", source_id=SOURCE_ID)
        for trace_id, metrics in logged:
            for name, value in metrics.items():
                if name in FEEDBACK and value is not None:
                    mlflow.log_feedback(trace_id=trace_id, name=name, value=value, source=source)
    return [trace_id for trace_id, _ in logged]
