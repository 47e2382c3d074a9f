"""The computation allocation model of "Inference Scaling for Long-Context Retrieval Augmented
Generation" (Yue et al., ICLR 2025, arXiv 2410.04343; checked against the v2 text, §5.1
"Formulation and Estimation", §5.2 and Appendices F and H):

    sigmoid^-1(P(theta)) ≈ (a + b ⊙ i)^T log(theta) + c        (Eq. 2)

What the paper says, and what this module does:

- theta (§5.1): "the number of documents k, demonstrations m and maximum iterations n". §4.1: "In
  DRAG, an answer can be directly generated upon input context, so n = 1"; IterDRAG allows "up to
  five iterations of query decomposition". Here n is IterDRAG's maximum number of sub-queries and 1
  for RAG and DRAG (RAG is DRAG with m = 0: the paper's DRAG grid starts at m = 0). ragkit's
  IterDRAG parameter ``n`` counts sub-queries, so a question takes up to ``n + 1`` generation
  rounds: IterDRAG declares theta_n = n + 1 (``"strategy.n+1"``, :func:`split_column`), and
  IterDRAG with n = 0 (one call) sits with DRAG at 1 while n = 1 is 2 (reading both as 1 made two
  different configurations identical). More dimensions (a pruner's keep ratio, a reranker's
  depth, generator calls) are ragkit's extension (:class:`Dim`); each strategy declares the
  dimensions it moves along and the result column of each
  (:attr:`ragkit.strategies.base.Strategy.theta`).
- log(0) (§5.1 footnote, App. H): "we shift the values in theta by a small constant ε of 0.01".
  Here every dimension is read as ``log(theta + offset)`` with ``offset = 0.01`` by default, so
  k = 0 (closed book) sits at log 0.01 ≈ -4.6, far below k = 1: a large lever in the fit, as in
  the paper. ``--dim k=strategy.retrieval.k:offset=1`` gives the smoother ``log(k + 1)`` for one
  dimension.
- i (§5.1, App. H): ``i = (i_doc, i_shot, 0)``, computed "in each strategy and task":
  ``i_doc = P(k=1, m=0, n=1) - P(k=0, m=0, n=1)``, ``i_shot = P(k=0, m=1, n=1) - P(k=0, m=0,
  n=1)``; an i_iter "does not yield improved accuracy, so we leave it as 0". Measured per
  dataset and strategy (RAG counted as DRAG) by :func:`ragkit.suggestion.informativeness_table`,
  which falls back to DRAG's i when a strategy's sweep lacks those configurations (our choice).
- estimation (§5.1, App. F/H): ordinary least squares; "we constrain the last element of b,
  leaving six learnable parameters"; a, b, c "are specific to a certain model" and fitted across
  tasks, and i alone carries the task. Here :func:`fit` fits ``b_j`` only where ``i_j`` varies over
  the fitted rows (never ``b_n``: ``i_n = 0``); otherwise ``a`` absorbs ``b ⊙ i``.
  :mod:`ragkit.suggestion` fits per generator and dataset by default, or per generator across its
  datasets (the paper's pooling).
- sigmoid and normalisation (App. F, H): the paper normalises each dataset's and metric's scores
  "by subtracting the mean and dividing by the standard deviation" and uses a sigmoid fitted to
  its own data, ``3.30 / (1 + exp(-1.81 (x + 0.46))) - 2.18``. Not done here (our choice): scores
  stay proportions in [0, 1] under the standard logistic, so predictions are on the metric's own
  scale, and the default fit is per dataset because, unnormalised, one pooled c would have to carry
  every dataset's base rate.
- scores of exactly 0 or 1 (the paper's normalised scores never meet them): the empirical logit
  ``logit((P*N + 0.5) / (N + 1))`` with ``N`` questions (Haldane-Anscombe; the smallest step a mean
  over N questions can show), or clipping to ``[1e-3, 1 - 1e-3]`` when N is unknown;
  :meth:`AllocationModel.predict` undoes the shrinkage.
- validation (§5.2, Tables 2-4 and 8): R^2 and MSE of the fit (Gemini 1.5 Flash: 0.903 and 0.085,
  "excluding peak and valley outliers"), domain generalisation (parameters "learnt from the
  remaining domains", "only i is derived from the target domain") and length extrapolation (fitted
  on shorter context lengths, tested on longer ones). Here R^2 and MSE in score and logit space
  with every point kept; the regret of leave-one-dataset-out (``transfer_*``) and
  leave-one-budget-out (``lobo_*``) picks in :func:`ragkit.regret.regret_table`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

CLIP = 1e-3
EPSILON = 0.01  # the paper's shift of theta before the log (App. H)


@dataclass(frozen=True)
class Dim:
    """One dimension of theta: a name, the result column it is read from ("": the column each
    row's strategy declares for it, :attr:`ragkit.strategies.base.Strategy.theta`), the value for
    configurations that lack it (RAG has no demonstrations: m = 0), the log offset, a shift added
    to the values present (``--dim n=strategy.n:shift=1``) and an optional floor (values below it
    are read as it)."""

    name: str
    column: str = ""
    default: float = 0.0
    offset: float = EPSILON
    minimum: float | None = None
    shift: float = 0.0

    def read(self, values: Any, shifts: Any = None) -> np.ndarray:
        """Column values as theta: present ones plus ``shift`` (and the row's own shift, from the
        column its strategy declares), missing ones (None, NaN) ``default``, then the floor."""
        present = [_number(v, math.nan) for v in values]
        extra = [0.0] * len(present) if shifts is None else list(shifts)
        out = np.array(
            [
                self.default if math.isnan(v) else v + self.shift + e
                for v, e in zip(present, extra, strict=True)
            ],
            dtype=float,
        )
        return out if self.minimum is None else np.maximum(out, self.minimum)


def split_column(declared: str) -> tuple[str, float]:
    """A strategy's declared theta column and the shift added to its values: ``"strategy.n+1"``
    -> (``"strategy.n"``, 1.0) (IterDRAG's n sub-queries are n + 1 generation rounds)."""
    column, sep, shift = declared.rpartition("+")
    if sep and column:
        try:
            return column, float(shift)
        except ValueError:
            pass
    return declared, 0.0


def _number(value: Any, default: float) -> float:
    if value is None or value == "" or value == "None":
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return default if math.isnan(number) else number


# The paper's theta, read from the columns each strategy declares (RAG: strategy.retrieval.k).
# n: DRAG (and RAG) count as one iteration (§4.1); IterDRAG's n sub-queries are n + 1 rounds.
DEFAULT_DIMS: tuple[Dim, ...] = (
    Dim("k"),
    Dim("m"),
    Dim("n", default=1.0, minimum=1.0),
)
# Dimensions beyond the paper's that strategies may declare, with how rows without them read:
# generator calls per question (one for a strategy that does not declare it).
KNOWN_DIMS: dict[str, Dim] = {d.name: d for d in (*DEFAULT_DIMS, Dim("calls", default=1.0, minimum=1.0))}
_OPTIONS = {"default": "default", "offset": "offset", "min": "minimum", "shift": "shift"}


def parse_dim(text: str) -> Dim:
    """``"keep=strategy.pruner.keep_ratio:default=1:offset=0"`` -> a :class:`Dim` (the form of
    ``ragkit suggest --dim``): a name, the result column, and optionally the value for rows without
    the column (default 0), the log offset (default 0.01), a floor (``min=``) and a shift added to
    present values (``shift=``)."""
    head, *options = text.split(":")
    name, sep, column = head.partition("=")
    if not sep or not name.strip() or not column.strip():
        raise ValueError(f"--dim {text!r}: expected NAME=COLUMN[:default=X][:offset=Y][:min=Z][:shift=S]")
    values: dict[str, float | None] = {"default": 0.0, "offset": EPSILON, "minimum": None, "shift": 0.0}
    for option in options:
        key, sep, value = option.partition("=")
        if key not in _OPTIONS or not sep:
            raise ValueError(
                f"--dim {text!r}: unknown option {option!r} (expected default=X, offset=Y, min=Z or shift=S)"
            )
        try:
            values[_OPTIONS[key]] = float(value)
        except ValueError:
            raise ValueError(f"--dim {text!r}: {key} must be a number, got {value!r}") from None
    default, offset, minimum = values["default"], values["offset"], values["minimum"]
    return Dim(
        name.strip(),
        column.strip(),
        default=float(default or 0.0),
        offset=float(offset or 0.0),
        minimum=minimum,
        shift=float(values["shift"] or 0.0),
    )


def with_dims(extra: Sequence[Dim] = (), declared: Sequence[str] = ()) -> tuple[Dim, ...]:
    """:data:`DEFAULT_DIMS`, then the ``declared`` dimension names strategies move along beyond
    them (:data:`KNOWN_DIMS`' reading, else a default of 0), then ``extra``; an extra dimension
    named like another one replaces it (``k=strategy.retrieval.k:offset=1`` reads k as
    log(k + 1))."""
    extra = tuple(extra)
    names = [d.name for d in extra]
    if len(set(names)) != len(names):
        raise ValueError(f"--dim: a dimension is given twice in {names}")
    base = [
        *DEFAULT_DIMS,
        *(KNOWN_DIMS.get(n, Dim(n)) for n in dict.fromkeys(declared) if n not in {"k", "m", "n"}),
    ]
    by_name = {d.name: d for d in extra}
    defaults = tuple(by_name.pop(d.name, d) for d in base)
    return (*defaults, *(d for d in extra if d.name in by_name))


def empirical_logit(scores: Any, n_questions: Any = None) -> np.ndarray:
    """sigmoid^-1 of scores in [0, 1] that stays finite at 0 and 1 (see the module docstring)."""
    p = np.asarray(scores, dtype=float)
    if n_questions is None:
        p = np.clip(p, CLIP, 1 - CLIP)
    else:
        n = np.broadcast_to(np.asarray(n_questions, dtype=float), p.shape)
        p = (p * n + 0.5) / (n + 1.0)
    return np.log(p / (1 - p))


def sigmoid(x: Any) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=float)))


def log_theta(theta: Any, dims: Sequence[Dim]) -> np.ndarray:
    theta = np.atleast_2d(np.asarray(theta, dtype=float))
    offsets = np.array([d.offset for d in dims])
    shifted = theta + offsets
    if np.any(shifted <= 0):
        raise ValueError(
            f"log(theta + offset) needs positive values; got {theta[np.any(shifted <= 0, axis=1)][0]}"
            f" for dimensions {[d.name for d in dims]} (set a Dim offset > 0 for dimensions that can be 0)"
        )
    return np.log(shifted)


@dataclass
class AllocationModel:
    dims: tuple[Dim, ...]
    a: np.ndarray
    b: np.ndarray
    c: float
    b_identified: np.ndarray  # per dimension: whether i varied across the fitted data
    a_identified: np.ndarray | None = None  # per dimension: whether theta varied (else slope 0)
    n_questions: float | None = None  # N of the empirical logit, undone in predict()
    metrics: dict[str, float] = field(default_factory=dict)

    def slopes(self, info: Any = None) -> np.ndarray:
        info = np.zeros(len(self.dims)) if info is None else np.asarray(info, dtype=float)
        return self.a + self.b * info

    def predict_logit(self, theta: Any, info: Any = None) -> np.ndarray:
        x = log_theta(theta, self.dims)
        info = np.zeros(len(self.dims)) if info is None else np.asarray(info, dtype=float)
        info = np.broadcast_to(info, x.shape)
        return (x * (self.a + self.b * info)).sum(axis=1) + self.c

    def predict(self, theta: Any, info: Any = None) -> np.ndarray:
        """Predicted score P(theta) in [0, 1]: the sigmoid of the fitted logit with the empirical
        logit's shrinkage towards 1/2 undone, so a flat score of 0.1 is predicted as 0.1."""
        p = sigmoid(self.predict_logit(theta, info))
        if self.n_questions:
            n = self.n_questions
            p = np.clip((p * (n + 1) - 0.5) / n, 0.0, 1.0)
        return p

    def to_dict(self) -> dict[str, Any]:
        return {
            "dims": [d.name for d in self.dims],
            "log_offsets": [d.offset for d in self.dims],
            "a": [float(v) for v in self.a],
            "b": [float(v) if ok else None for v, ok in zip(self.b, self.b_identified, strict=True)],
            "c": float(self.c),
            **self.metrics,
        }


def _r2(y: np.ndarray, fitted: np.ndarray) -> float:
    total = float(((y - y.mean()) ** 2).sum())
    return 1.0 - float(((y - fitted) ** 2).sum()) / total if total > 0 else float("nan")


def fit(
    theta: Any,
    scores: Any,
    info: Any = None,
    *,
    n_questions: Any = None,
    dims: Sequence[Dim] = DEFAULT_DIMS,
) -> AllocationModel:
    """Least-squares fit of the allocation model on measured configurations.

    ``theta``: (N, d) parameter values; ``scores``: (N,) in [0, 1]; ``info``: (N, d) informativeness
    of each row's task (None: zeros); ``n_questions``: questions behind each score (for the
    empirical logit)."""
    dims = tuple(dims)
    x = log_theta(theta, dims)
    n, d = x.shape
    y = empirical_logit(scores, n_questions)
    if y.shape != (n,):
        raise ValueError(f"{n} configurations but {y.shape} scores")
    info_arr = np.zeros((n, d)) if info is None else np.broadcast_to(np.asarray(info, dtype=float), (n, d))
    # A dimension that never varies (e.g. n = 1 in a sweep without IterDRAG) is collinear with c:
    # its slope is not identified, so it is left out (slope 0) instead of getting an arbitrary split.
    moves = np.ptp(x, axis=0) > 1e-12 if n else np.zeros(d, dtype=bool)
    varies = (np.ptp(info_arr, axis=0) > 1e-12 if n else np.zeros(d, dtype=bool)) & moves
    columns = [x[:, moves]] + [x[:, [j]] * info_arr[:, [j]] for j in range(d) if varies[j]]
    design = np.hstack([*columns, np.ones((n, 1))])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)  # min-norm when under-determined
    a = np.zeros(d)
    a[moves] = coef[: int(moves.sum())]
    b = np.zeros(d)
    b[varies] = coef[int(moves.sum()) : int(moves.sum()) + int(varies.sum())]
    typical_n = None if n_questions is None else float(np.median(np.asarray(n_questions, dtype=float)))
    model = AllocationModel(
        dims=dims,
        a=a,
        b=b,
        c=float(coef[-1]),
        b_identified=varies,
        a_identified=moves,
        n_questions=typical_n,
    )
    fitted_logit = design @ coef
    fitted = model.predict(theta, info_arr)
    raw = np.asarray(scores, dtype=float)
    model.metrics = {
        "n_points": n,
        "n_params": design.shape[1],
        "r2_logit": _r2(y, fitted_logit),
        "mse_logit": float(((y - fitted_logit) ** 2).mean()) if n else float("nan"),
        "r2": _r2(raw, fitted),
        "mse": float(((raw - fitted) ** 2).mean()) if n else float("nan"),
    }
    return model
