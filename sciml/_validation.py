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


def as_real_tensor(X, name, *, ndims, expected, dtype=None, device=None):
    """``X`` (array-like or torch tensor) as a detached, finite, real float tensor.

    The one validator of dense matrix, stack and video inputs: a clear error
    for sparse, complex, non-numeric, empty, wrongly shaped and non-finite
    input, never a crash inside torch.

    Parameters
    ----------
    X : array-like or torch.Tensor
    name : str
        Used in the error messages.
    ndims : tuple of int
        Accepted numbers of dimensions.
    expected : str
        The accepted shapes in words, completing "``name`` must be ...".
    dtype : torch.dtype or None, default=None
        Cast to it (float16 and integer input included; values it cannot
        hold are an error).  ``None`` keeps float32/float64, turns integers
        and booleans into float64 and refuses other floats.
    device : str, torch.device or None, default=None
        Where the tensor goes; ``None`` keeps a tensor's device (the CPU for
        arrays).

    Returns
    -------
    tensor : torch.Tensor
        Shares memory with ``X`` where no cast or move was needed.
    is_torch : bool
        Whether ``X`` was a tensor (callers return tensors for tensors).
    is_torch : bool
        Whether ``X`` came as a tensor.
    """
    import torch

    is_torch = isinstance(X, torch.Tensor)
    if is_torch:
        T = X.detach()
        if T.is_complex():
            raise TypeError(f"{name} must be real-valued, got complex dtype {T.dtype}")
        floating = T.is_floating_point()
        if dtype is None and floating and T.dtype not in (torch.float32, torch.float64):
            raise TypeError(f"{name} must be float32 or float64 (or integer), got {T.dtype}")
    else:
        if hasattr(X, "toarray") or hasattr(X, "tocsr"):
            raise TypeError(f"{name} must be a dense array or tensor, got the sparse matrix type {type(X).__name__}")
        A = np.asarray(X)
        if A.dtype.kind == "c":
            raise TypeError(f"{name} must be real-valued, got complex dtype {A.dtype}")
        if A.dtype.kind not in "biuf":
            raise TypeError(f"{name} must be a numeric array, got dtype {A.dtype}")
        if not A.dtype.isnative:  # big-endian data: torch needs native order
            A = A.astype(A.dtype.newbyteorder("="))
        floating = A.dtype.kind == "f"
        if dtype is None and floating and A.dtype not in (np.float32, np.float64):
            raise TypeError(f"{name} must be float32 or float64 (or integer), got dtype {A.dtype}")
        if floating and A.dtype.itemsize > 8:  # long double: torch has no such dtype
            A = A.astype(np.float64)
        if not A.flags.writeable or any(stride < 0 for stride in A.strides):
            A = A.copy()  # torch wraps neither a read-only buffer nor a flipped view (X[::-1])
        T = torch.from_numpy(A)
    if T.ndim not in ndims:
        raise ValueError(f"{name} must be {expected}, got shape {tuple(T.shape)}")
    if T.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(T.shape)})")
    if floating and not bool(torch.isfinite(T).all()):
        raise ValueError(f"{name} contains NaN or inf")
    target = dtype if dtype is not None else (T.dtype if floating else torch.float64)
    T = T.to(device=T.device if device is None else device, dtype=target)
    if floating and dtype is not None and not bool(torch.isfinite(T).all()):
        raise ValueError(f"{name} has values too large for {dtype} (the model's dtype)")
    return T, is_torch
