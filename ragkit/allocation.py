"""The computation allocation model of "Inference Scaling for Long-Context Retrieval Augmented
Generation" (Yue et al., ICLR 2025, arXiv 2410.04343, §5.1 "Formulation and estimation"):

    sigmoid^-1(P(theta)) = (a + b ⊙ i)^T log(theta) + c

``theta = (k, m, n)``: retrieved documents per query, in-context demonstrations and iterations
(IterDRAG's sub-queries; 0 for RAG and DRAG, whose single call the paper counts as n = 1); more
dimensions (a pruner's keep ratio, a reranker's depth) are added with :class:`Dim`. ``P`` is the
score of that configuration, ``i`` the task's informativeness vector and ``a, b, c`` are fitted
by ordinary least squares on a sweep, as in the paper.

Informativeness (§5.1): ``i = (i_doc, i_shot, 0)``, the gain over zero-shot QA (k = 0, m = 0) of
one retrieved document (k = 1, m = 0) and of one demonstration (k = 0, m = 1); iterations get 0.
:func:`informativeness` measures it from those configurations when the sweep has them.

Choices this module documents (the paper's text could not be checked offline, so they are ours):

- zeros in theta (k = 0 closed-book, m = 0 no demonstrations): each dimension is mapped through
  ``log(theta + offset)`` with ``offset = 1`` by default, so "none" contributes exactly zero and
  one unit is ``log 2``; for n this is the paper's log(number of generation rounds), since a
  single-call RAG/DRAG has n = 0 sub-queries here. An offset of 0 gives plain ``log(theta)`` for
  dimensions that are never 0 (e.g. a keep ratio).
- scores of exactly 0 or 1 (sigmoid^-1 is infinite there): the empirical logit
  ``logit((P*N + 0.5) / (N + 1))`` with ``N`` questions (Haldane-Anscombe; the smallest step a
  mean over N questions can show), or clipping to ``[1e-3, 1 - 1e-3]`` when N is unknown.
- with one dataset per fit (the default: per generator and dataset) ``i`` is constant, so ``b ⊙ i``
  cannot be told apart from ``a``; ``b`` is fitted only for dimensions where ``i`` varies across
  the fitted datasets and is 0 (reported as not identified) otherwise.

Fit quality is reported in both spaces: R^2 / MSE of the logit (what least squares minimises)
and of the score itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

CLIP = 1e-3


@dataclass(frozen=True)
class Dim:
    """One dimension of theta: a name, the result column it is read from, the value for
    configurations that lack the parameter (RAG has no demonstrations: m = 0) and the log offset."""

    name: str
    column: str
    default: float = 0.0
    offset: float = 1.0


DEFAULT_DIMS: tuple[Dim, ...] = (
    Dim("k", "strategy.k", default=0.0),
    Dim("m", "strategy.m", default=0.0),
    Dim("n", "strategy.n", default=0.0),
)


def parse_dim(text: str) -> Dim:
    """``"keep=strategy.pruner.keep_ratio:default=1:offset=0"`` -> a :class:`Dim` (the form of
    ``ragkit suggest --dim``): a name, the result column, and optionally the value for rows without
    the column (default 0) and the log offset (default 1)."""
    head, *options = text.split(":")
    name, sep, column = head.partition("=")
    if not sep or not name.strip() or not column.strip():
        raise ValueError(f"--dim {text!r}: expected NAME=COLUMN[:default=X][:offset=Y]")
    values = {"default": 0.0, "offset": 1.0}
    for option in options:
        key, sep, value = option.partition("=")
        if key not in values or not sep:
            raise ValueError(f"--dim {text!r}: unknown option {option!r} (expected default=X or offset=Y)")
        try:
            values[key] = float(value)
        except ValueError:
            raise ValueError(f"--dim {text!r}: {key} must be a number, got {value!r}") from None
    return Dim(name.strip(), column.strip(), default=values["default"], offset=values["offset"])


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
