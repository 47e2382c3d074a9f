"""``ragkit report --by``: a metric per method and per value of example fields or swept settings.

A field is a per-question column (``truncated``, ``answerable``), an example's metadata
(``meta_type`` is ``--by type``), a setting in the configuration names (``k`` in "rag k=4"), or
``length``: the haystack's target length where the dataset sets one, else the question's
document length (its documents' full-context tokens, as the generator's tokenizer counts them),
bucketed by powers of two (``2k-4k``) so that any dataset breaks down by it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from ragkit.metric_info import interval, resolve

LENGTH_COLUMN = "document_tokens"  # per question: full-context tokens of its documents
_NOT_FIELDS = {"example_id", "question", "answer", "references", "config_hash", "config_name"}
_MAX_VALUES = 12  # a column with more distinct values is a measurement, not a field to group by


def length_bucket(tokens: float) -> str | None:
    """``"<1k"``, ``"1k-2k"``, ``"2k-4k"``, ... (k = 1024 tokens); None when unknown."""
    if tokens is None or pd.isna(tokens):
        return None
    if tokens < 1024:
        return "<1k"
    low = 2 ** math.floor(math.log2(tokens / 1024))
    return f"{low}k-{2 * low}k"


def _length_buckets(tokens: pd.Series) -> pd.Series:
    labels = tokens.map(length_bucket)
    order = sorted(labels.dropna().unique(), key=lambda v: 0 if v == "<1k" else int(v.split("k")[0]))
    return pd.Series(pd.Categorical(labels, categories=order, ordered=True), index=tokens.index)


def metric_columns(scores: pd.DataFrame) -> list[str]:
    """The per-question columns ``--metric`` accepts: numeric scores with data (not costs, ids or
    example metadata)."""
    return [
        c
        for c in scores.columns
        if not c.startswith(("cost_", "meta_", "swept_"))
        and c not in _NOT_FIELDS
        and c != LENGTH_COLUMN
        and pd.api.types.is_numeric_dtype(scores[c])
        and scores[c].notna().any()
    ]


def _field_column(scores: pd.DataFrame, name: str) -> tuple[pd.DataFrame, str]:
    for candidate in (name, f"meta_{name}"):
        if candidate in scores.columns:
            return scores, candidate
    if name == "length" and LENGTH_COLUMN in scores.columns and scores[LENGTH_COLUMN].notna().any():
        return scores.assign(swept_length=_length_buckets(scores[LENGTH_COLUMN])), "swept_length"
    swept = name_field(scores["config_name"], name)
    if swept.isna().all():
        raise KeyError(
            f"no column {name!r} (or meta_{name}) in the per-question scores, and no configuration"
            f" name has {name}=...; fields to break down by: {', '.join(breakdown_fields(scores))}"
        )
    return scores.assign(**{f"swept_{name}": swept}), f"swept_{name}"


def breakdown(
    scores: pd.DataFrame, by: Sequence[str], metric: str = "contains_answer", pool: Sequence[str] = ()
) -> pd.DataFrame:
    """Mean ``metric`` (with its 95% interval and count) per method and per value of the ``by``
    fields. The method is the configuration name without its ``field=value`` parts for the
    ``by`` fields: in a haystack sweep, "rag length=2000 depth=0.5" counts as method "rag" in a
    breakdown by length and depth, so each arm gets one row per (length, depth). Fields in
    ``pool`` leave the method name too, so their questions are pooled: ``by=["length"],
    pool=["depth"]`` gives one row per arm and length over all depths. A pooled row counts a
    question once per pooled value (the same questions at three depths), so its interval, which
    treats rows as independent, is narrower than the evidence warrants: read it as descriptive.
    The interval is the metric's own (:mod:`ragkit.metric_info`), the same as in the run table."""
    metric = resolve(metric, metric_columns(scores))
    columns = []
    for name in by:
        scores, column = _field_column(scores, name)
        columns.append(column)
    prefixes = tuple(f"{name}=" for name in [*by, *pool])
    frame = scores.assign(
        method=scores["config_name"].map(
            lambda n: " ".join(t for t in str(n).split(" ") if not t.startswith(prefixes))
        )
    )
    rows = []
    for keys, group in frame.groupby(["method", *columns], dropna=False, sort=True, observed=True):
        values = group[metric].astype(float).dropna().to_numpy()
        low, high = interval(metric, values) if len(values) else (float("nan"), float("nan"))
        fields = [c.removeprefix("meta_").removeprefix("swept_") for c in columns]
        row = dict(zip(["method", *fields], keys, strict=True))
        row.update({metric: values.mean() if len(values) else float("nan"), "95% CI low": low})
        row.update({"95% CI high": high, "n": len(values)})
        rows.append(row)
    return pd.DataFrame(rows)


def name_field(config_names: pd.Series, field: str) -> pd.Series:
    """The value of ``field`` in each configuration name ("drag k=4 m=2" has k=4), numeric where
    every value is, NaN where a name lacks it: swept settings (k, m, a dataset's name) are in
    the names, not in the per-question columns, and break down the same way."""
    prefix = f"{field}="
    values = config_names.astype(str).map(
        lambda n: next((t.removeprefix(prefix) for t in n.split(" ") if t.startswith(prefix)), None)
    )
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().sum() != values.notna().sum():
        return values
    whole = numeric.dropna().mod(1).eq(0).all()
    return numeric.astype("Int64") if whole else numeric  # k=4, not 4.0, beside a method without k


def breakdown_fields(scores: pd.DataFrame) -> list[str]:
    """Every field ``--by`` accepts for these scores: example metadata, ``length``, the settings
    in the configuration names, and per-question columns with few values (``truncated``,
    ``answerable``, ``gold_survived``, ...)."""
    fields = [c.removeprefix("meta_") for c in scores.columns if c.startswith("meta_")]
    if LENGTH_COLUMN in scores.columns and scores[LENGTH_COLUMN].notna().any():
        fields.append("length")
    for name in scores["config_name"].astype(str).unique():
        fields += [t.split("=", 1)[0] for t in name.split(" ") if "=" in t]
    for column in scores.columns:
        if column in _NOT_FIELDS or column.startswith(("meta_", "cost_")) or column == LENGTH_COLUMN:
            continue
        values = scores[column].dropna()
        if len(values) and values.nunique() <= _MAX_VALUES:
            fields.append(column)
    return list(dict.fromkeys(fields))
