"""Checks of a model config's fields, shared by the VQ-VAE and GPT configs.

A config comes from files a user may hand us (our ``config.json``, an official checkpoint's pickled
options, a training YAML): every field must have the type its annotation says (an integer is never a
string, a float or a bool) and lie within a range that a model on a user's machine can have, and the
whole model must fit a bound on its parameter count, all checked before a single tensor is allocated.
"""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any

from ..errors import ModelError

# Above this many parameters (16 GB of float32) a config is not a model anyone ships for this engine;
# the official GPT has 108 M and its VQ-VAE 28 M.
MAX_PARAMETERS = 4_000_000_000


def check_config_fields(config: Any, what: str, ranges: dict[str, tuple[float, float]]) -> None:
    """Raise ``ModelError`` naming the first field of the dataclass ``config`` whose value has the
    wrong type (annotations "int", "float", "bool", "int | None") or lies outside ``ranges[name]``
    (inclusive)."""
    for f in fields(config):
        value = getattr(config, f.name)
        kind = str(f.type).replace(" ", "")
        if kind == "int|None" and value is None:
            continue
        if kind in ("int", "int|None"):
            ok = isinstance(value, int) and not isinstance(value, bool)
            wanted = "an integer"
        elif kind == "float":
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            wanted = "a finite number"
        elif kind == "bool":
            ok = isinstance(value, bool)
            wanted = "true or false"
        else:
            continue
        if not ok:
            raise ModelError(f"{what} config: {f.name} must be {wanted}, got {value!r}")
        if f.name in ranges:
            lo, hi = ranges[f.name]
            if not lo <= value <= hi:
                raise ModelError(f"{what} config: {f.name} must be between {lo:g} and {hi:g}, got {value!r}")


def check_parameter_count(count: int, what: str) -> None:
    if count > MAX_PARAMETERS:
        raise ModelError(f"{what} config describes a model of {count / 1e9:.1f} billion parameters; this "
                         f"engine loads at most {MAX_PARAMETERS / 1e9:.0f} billion (the official GPT has 0.1)")
