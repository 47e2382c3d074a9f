"""Declared ranges and formats of component parameters (``Annotated`` types for constructors).

A component's constructor is its schema (see :mod:`ragkit.registry`): writing ``k: Count = 5``
instead of ``k: int = 5`` is all it takes for ``k: 0`` or ``k: -1`` in a YAML to be rejected
before any model loads, with the file and field named. Booleans never pass as numbers anywhere
(``sample: true`` is not 1): :mod:`ragkit.config` validates a boolean strictly.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

Count = Annotated[int, Field(ge=1)]  # how many of something: k, rounds, batch sizes, questions
NonNegativeInt = Annotated[int, Field(ge=0)]  # may be zero: demonstrations, overlaps, model sizes
Seed = Annotated[int, Field(ge=0)]  # numpy and torch seeds are non-negative
Tokens = Annotated[int, Field(ge=1)]  # token counts: budgets, windows, tokens to generate
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]  # probabilities, thresholds, ratios, depths
PositiveFraction = Annotated[float, Field(gt=0.0, le=1.0)]  # a share that must not be empty
PositiveFloat = Annotated[float, Field(gt=0.0)]  # seconds, scales
NonNegativeFloat = Annotated[float, Field(ge=0.0)]

_DEVICE = re.compile(r"(auto|cpu|mps|(cuda|xpu|npu)(:\d+)?)")


def _device(value: str) -> str:
    if not _DEVICE.fullmatch(value):
        raise ValueError(f"expected auto, cpu, mps, cuda or cuda:N (got {value!r})")
    return value


# Checked here, not when the model moves to the device: 'tpu9' used to fail after the weights loaded.
Device = Annotated[str, AfterValidator(_device)]
# torch dtypes a transformers model is loaded in ("auto": float32 on CPU, bf16/fp16 on GPU)
TorchDtype = Literal["auto", "float32", "float16", "bfloat16"]
Similarity = Annotated[float, Field(ge=-1.0, le=1.0)]  # cosine similarity thresholds
