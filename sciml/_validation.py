"""Argument checks shared by the core and the model families."""

import math
import numbers

import numpy as np


def check_positive_int(name, value):
    """Return ``int(value)``; TypeError for non-integers, ValueError below 1."""
    return _check_int(name, value, 1, "a positive integer")


def check_float_dtype(dtype):
    """Return ``np.dtype(dtype)`` if it is float32 or float64, else TypeError."""
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    return dtype


def check_nonneg_int(name, value):
    """Return ``int(value)``; TypeError for non-integers, ValueError below 0."""
    return _check_int(name, value, 0, "a non-negative integer")


def _check_int(name, value, minimum, kind):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be {kind}, got {value!r} of type {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be {kind}, got {value}")
    return int(value)


def check_real(name, value, *, positive=True, allow_none=False):
    """A finite real number as a float: positive, or non-negative with ``positive=False``; None passes if allowed."""
    if value is None and allow_none:
        return None
    kind = "positive" if positive else "non-negative"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a {kind} real number, got {value!r} of type {type(value).__name__}")
    value = float(value)
    if not (math.isfinite(value) and (value > 0 if positive else value >= 0)):
        raise ValueError(f"{name} must be {kind} and finite, got {value!r}")
    return value
