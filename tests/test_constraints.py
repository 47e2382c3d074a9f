"""Every numeric parameter of every registered component declares its range (ragkit.constraints),
so `k: -1`, `batch_size: 0` or `threshold: 7` never reach a component, whoever wrote it."""

from __future__ import annotations

import types
import typing

import annotated_types
import pytest

from ragkit import registry

BOUNDS = (
    annotated_types.Ge,
    annotated_types.Gt,
    annotated_types.Le,
    annotated_types.Lt,
    annotated_types.Interval,
)
COMPONENTS = [
    (kind, name) for kind in registry.KIND_PACKAGES if kind != "judge" for name in registry.names(kind)
]


def _bounds(metadata: typing.Iterable[typing.Any]) -> bool:
    # a Field(ge=...) inside Annotated carries its bounds in its own metadata
    return any(isinstance(item, BOUNDS) or _bounds(getattr(item, "metadata", ())) for item in metadata)


def unbounded_numbers(annotation: typing.Any, metadata: list[typing.Any]) -> list[type]:
    """Numeric members of ``annotation`` (a union's too) that carry no range."""
    members = [annotation]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        metadata = []
    out = []
    for member in members:
        own = list(metadata)
        if typing.get_origin(member) is typing.Annotated:
            member, *own = typing.get_args(member)
        if member in (int, float) and not _bounds(own):
            out.append(member)
    return out


@pytest.mark.parametrize(("kind", "name"), COMPONENTS, ids=[f"{k}-{n}" for k, n in COMPONENTS])
def test_every_numeric_parameter_declares_its_range(kind, name):
    fields = registry.params_model(registry.get(kind, name)).model_fields
    missing = [p for p, info in fields.items() if unbounded_numbers(info.annotation, list(info.metadata))]
    assert not missing, (
        f"{kind} {name!r}: numeric parameters without a declared range: {missing}; annotate them with"
        " ragkit.constraints (Count, Tokens, Fraction, NonNegativeInt, ...)"
    )


def test_the_checker_sees_an_unbounded_number():
    assert unbounded_numbers(int, []) == [int]
    assert unbounded_numbers(int | None, []) == [int]
    assert unbounded_numbers(typing.Annotated[int, annotated_types.Ge(1)] | str, []) == []
