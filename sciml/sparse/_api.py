"""Public CSR products: validation, dispatch to the kernels, torch autograd."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from torch.autograd.function import once_differentiable

from . import _cpu

__all__ = ["spmv", "rspmv", "spmm", "check_csr", "to_torch_csr"]

_VALUE_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_INDEX_DTYPES = (np.dtype(np.int32), np.dtype(np.int64))
_UNSIGNED = {np.dtype(np.int32): np.uint32, np.dtype(np.int64): np.uint64}
_TORCH_DTYPES = {torch.float32: np.dtype(np.float32), torch.float64: np.dtype(np.float64)}
_BACKENDS = ("auto", "cpu", "cuda")
# Transposed products scatter each thread's rows into a private buffer; more
# buffer memory than this (or than A itself, if larger) means fewer threads.
_SCRATCH_BUDGET_BYTES = 64 * 2**20


@dataclass(frozen=True)
class _CSR:
    """Validated CSR arrays as numpy views (zero-copy from scipy or torch)."""

    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    shape: tuple[int, int]

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def nnz(self):
        return self.indices.shape[0]


def _torch_to_numpy(t, name):
    """Zero-copy numpy view of a CPU tensor (refusing CUDA, for now)."""
    if t.device.type != "cpu":
        raise ValueError(
            f"{name} is on device {t.device}: sciml.sparse has no CUDA kernels in "
            "this build yet; move the tensors to the CPU with .cpu()"
        )
    return t.detach().numpy()


def _check_backend(backend):
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
    if backend == "cuda":
        raise ValueError(
            "backend='cuda' is not available: sciml.sparse has no CUDA kernels in "
            "this build yet; use backend='cpu' or 'auto' with CPU inputs"
        )


def _as_csr(A) -> tuple[_CSR, torch.device | None]:
    """Validate A and return its CSR arrays, plus its torch device (or None)."""
    device = None
    if sp.issparse(A):
        if A.format != "csr":
            raise TypeError(
                f"A is a scipy.sparse matrix in {A.format.upper()} format; "
                "sciml.sparse works on CSR. Convert it explicitly with A.tocsr() "
                "(a copy you can reuse)."
            )
        if A.ndim != 2:
            raise ValueError(f"A must be 2-D, got shape {A.shape}")
        indptr, indices, data = A.indptr, A.indices, A.data
    elif isinstance(A, torch.Tensor):
        if A.layout != torch.sparse_csr:
            hint = "A.to_sparse_csr()" if A.layout != torch.strided else "a dense product (A @ x)"
            raise TypeError(
                f"A is a torch tensor with layout {A.layout}; sciml.sparse needs "
                f"torch.sparse_csr. Use {hint}."
            )
        if A.dim() != 2:
            raise ValueError(f"A must be a 2-D (unbatched) CSR tensor, got shape {tuple(A.shape)}")
        if A.requires_grad:
            raise TypeError(
                "A requires grad, but gradients do not flow into a torch sparse "
                "tensor here; pass the learnable nonzeros as values=... instead"
            )
        device = A.device
        indptr = _torch_to_numpy(A.crow_indices(), "A")
        indices = _torch_to_numpy(A.col_indices(), "A")
        data = _torch_to_numpy(A.values(), "A")
    elif isinstance(A, (np.ndarray, torch.Tensor)):
        raise TypeError("A must be a sparse CSR matrix; for a dense A use A @ x")
    else:
        raise TypeError(
            "A must be a scipy.sparse CSR array/matrix or a torch sparse CSR tensor, "
            f"got {type(A).__name__}"
        )

    shape = tuple(int(s) for s in A.shape)
    if data.dtype not in _VALUE_DTYPES:
        raise TypeError(
            f"A has dtype {data.dtype}; sciml.sparse supports float32 and float64. "
            "Cast explicitly, e.g. A.astype(np.float64)."
        )
    if indptr.dtype not in _INDEX_DTYPES or indices.dtype != indptr.dtype:
        raise TypeError(
            "A's index arrays must both be int32 or both int64, got indptr "
            f"{indptr.dtype} and indices {indices.dtype}"
        )
    for name, arr in (("indptr", indptr), ("indices", indices), ("data", data)):
        if arr.ndim != 1 or not arr.flags.c_contiguous:
            raise ValueError(f"A.{name} must be a contiguous 1-D array")
    # Cheap O(1) structural checks; check_csr does the O(nnz) ones.
    if indptr.shape[0] != shape[0] + 1:
        raise ValueError(f"A.indptr has length {indptr.shape[0]}, expected n_rows + 1 = {shape[0] + 1}")
    nnz = int(indptr[-1]) if indptr.shape[0] else 0
    if indptr.shape[0] and int(indptr[0]) != 0:
        raise ValueError(f"A.indptr[0] must be 0, got {int(indptr[0])}")
    if nnz < 0 or indices.shape[0] < nnz or data.shape[0] < nnz:
        raise ValueError(
            f"A.indptr[-1] = {nnz} does not match len(indices) = {indices.shape[0]} "
            f"and len(data) = {data.shape[0]}"
        )
    return _CSR(indptr, indices[:nnz], data[:nnz], shape), device


def check_csr(A):
    """Fully validate the structure of a CSR matrix, in O(nnz).

    The products check only what is O(1) (shapes, dtypes, ``indptr[0]`` and
    ``indptr[-1]``) and otherwise trust the structure, as scipy's own
    products do.  Call this once on matrices from untrusted sources:
    out-of-range column indices would otherwise read out of bounds.

    Unsorted and duplicate column indices are valid: the products sum
    duplicates, like scipy.

    Parameters
    ----------
    A : scipy.sparse CSR array/matrix or torch sparse CSR tensor

    Raises
    ------
    TypeError, ValueError
        Naming the first problem found.
    """
    csr, _ = _as_csr(A)
    if csr.shape[0] and np.any(np.diff(csr.indptr) < 0):
        raise ValueError("A.indptr must be non-decreasing")
    if csr.nnz:
        lo, hi = int(csr.indices.min()), int(csr.indices.max())
        if lo < 0 or hi >= csr.shape[1]:
            raise ValueError(
                f"A.indices must lie in [0, {csr.shape[1]}), found values in [{lo}, {hi}]"
            )


def to_torch_csr(A, *, device=None):
    """A scipy.sparse CSR matrix as a torch sparse CSR tensor.

    Zero-copy on the CPU (the tensor shares A's arrays); a copy when
    `device` names another device.

    Parameters
    ----------
    A : scipy.sparse CSR array/matrix
    device : torch.device or str, optional

    Returns
    -------
    torch.Tensor
        Layout ``torch.sparse_csr``, same dtypes as A.
    """
    if not sp.issparse(A):
        raise TypeError(f"A must be a scipy.sparse CSR matrix, got {type(A).__name__}")
    csr, _ = _as_csr(A)
    with warnings.catch_warnings():
        # torch flags its CSR support as beta on every construction.
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        tensor = torch.sparse_csr_tensor(
            torch.from_numpy(csr.indptr),
            torch.from_numpy(csr.indices),
            torch.from_numpy(csr.data),
            size=csr.shape,
            check_invariants=False,
        )
    return tensor if device is None else tensor.to(device)


def _as_dense(x, name, csr, device, ndim, length):
    """Validate a dense operand; return (numpy view, is_torch)."""
    if isinstance(x, torch.Tensor):
        if x.layout != torch.strided:
            raise TypeError(f"{name} must be a dense tensor, got layout {x.layout}")
        if device is not None and x.device != device:
            raise ValueError(f"{name} is on {x.device} but A is on {device}: mismatched devices")
        arr, is_torch = None, True
        dtype = _TORCH_DTYPES.get(x.dtype, str(x.dtype).removeprefix("torch."))
        shape, contiguous = tuple(x.shape), x.is_contiguous()
    elif isinstance(x, np.ndarray):
        if device is not None and device.type != "cpu":
            raise ValueError(f"A is on {device} but {name} is a numpy array: mismatched devices")
        arr, is_torch = x, False
        dtype, shape, contiguous = x.dtype, x.shape, x.flags.c_contiguous
    else:
        raise TypeError(f"{name} must be a numpy.ndarray or torch.Tensor, got {type(x).__name__}")

    if len(shape) != ndim:
        hint = " (use spmm for matrices)" if ndim == 1 else " (use spmv for vectors)"
        raise ValueError(f"{name} must be {ndim}-D, got shape {shape}{hint}")
    if shape[0] != length:
        raise ValueError(
            f"shape mismatch: A has shape {csr.shape} but {name} has shape {shape}; "
            f"expected {name}.shape[0] == {length}"
        )
    if dtype != csr.dtype:
        raise TypeError(
            f"{name} has dtype {dtype} but A has dtype {csr.dtype}; cast one of "
            "them explicitly (no silent conversion)"
        )
    if not contiguous:
        raise ValueError(
            f"{name} must be C-contiguous; make a contiguous copy first "
            "(np.ascontiguousarray(x) or x.contiguous())"
        )
    if is_torch:
        arr = _torch_to_numpy(x, name)
    return arr, is_torch


def _check_out(out, expected_shape, dtype, is_torch, inputs):
    """Validate a user output buffer and return its numpy view."""
    kind = torch.Tensor if is_torch else np.ndarray
    if not isinstance(out, kind):
        raise TypeError(f"out must be a {kind.__module__}.{kind.__name__} like the dense operand")
    arr = _torch_to_numpy(out, "out") if is_torch else out
    if arr.shape != expected_shape:
        raise ValueError(f"out has shape {arr.shape}, expected {expected_shape}")
    if arr.dtype != dtype:
        raise TypeError(f"out has dtype {arr.dtype}, expected {dtype}")
    if not arr.flags.c_contiguous or not arr.flags.writeable:
        raise ValueError("out must be a writeable, C-contiguous array")
    for other in inputs:
        if np.may_share_memory(arr, other):
            raise ValueError("out must not overlap the inputs (the result would be wrong)")
    return arr


def _scratch_chunks(csr, out_row_elems, n_threads):
    """How many private buffers a transposed product may use."""
    per_buffer = max(1, csr.shape[1] * out_row_elems * csr.dtype.itemsize)
    budget = max(_SCRATCH_BUDGET_BYTES, csr.data.nbytes + csr.indices.nbytes)
    return max(1, min(n_threads, 1 + budget // per_buffer))


def _product(csr, dense, out, transpose):
    """Run the right kernel: out = op(A) @ dense, op = transpose or identity."""
    if csr.nnz == 0 or csr.shape[0] == 0:
        out.fill(0)
        return out
    indptr = csr.indptr.view(_UNSIGNED[csr.indptr.dtype])
    indices = csr.indices.view(_UNSIGNED[csr.indices.dtype])
    zero = csr.dtype.type(0)
    n_threads = _cpu.num_threads()
    if not transpose:
        bounds = _cpu.row_partition(csr.indptr, n_threads)
        kernel = _cpu.csr_spmv if dense.ndim == 1 else _cpu.csr_spmm
        kernel(indptr, indices, csr.data, dense, out, bounds, zero)
        return out
    row_elems = 1 if dense.ndim == 1 else dense.shape[1]
    bounds = _cpu.row_partition(csr.indptr, _scratch_chunks(csr, row_elems, n_threads))
    scratch = np.empty((bounds.shape[0] - 2,) + out.shape, dtype=csr.dtype)
    kernel = _cpu.csr_rspmv if dense.ndim == 1 else _cpu.csr_rspmm
    kernel(indptr, indices, csr.data, dense, out, bounds, zero, scratch)
    return out


def _values_grad(csr, left, right):
    """d<left, A @ right>/d values: left (n_rows, k), right (n_cols, k)."""
    out = np.empty(csr.nnz, dtype=csr.dtype)
    if csr.nnz:
        indptr = csr.indptr.view(_UNSIGNED[csr.indptr.dtype])
        indices = csr.indices.view(_UNSIGNED[csr.indices.dtype])
        bounds = _cpu.row_partition(csr.indptr, _cpu.num_threads())
        _cpu.csr_sddmm(indptr, indices, left, right, out, bounds, csr.dtype.type(0))
    return out


def _with_data(csr, data):
    return _CSR(csr.indptr, csr.indices, data, csr.shape)


class _CSRProduct(torch.autograd.Function):
    """op(A) @ X, differentiable in X and in A's stored values."""

    @staticmethod
    def forward(ctx, values, dense, csr, transpose):
        csr = _with_data(csr, values.detach().numpy())
        x = dense.detach().numpy()
        out_shape = (csr.shape[1] if transpose else csr.shape[0],) + x.shape[1:]
        out = _product(csr, x, np.empty(out_shape, dtype=csr.dtype), transpose)
        ctx.save_for_backward(values, dense)
        ctx.csr, ctx.transpose = csr, transpose
        return torch.from_numpy(out)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        values, dense = ctx.saved_tensors
        csr, transpose = ctx.csr, ctx.transpose
        g = grad_out.contiguous().numpy()
        grad_values = grad_dense = None
        if ctx.needs_input_grad[1]:
            grad = np.empty(tuple(dense.shape), dtype=csr.dtype)
            grad_dense = torch.from_numpy(_product(csr, g, grad, not transpose))
        if ctx.needs_input_grad[0]:
            x = dense.detach().numpy()
            if x.ndim == 1:
                x, g = x[:, None], g[:, None]
            # y = A x: dv_ij = g_i . x_j ;  y = A^T x: dv_ij = x_i . g_j
            left, right = (x, g) if transpose else (g, x)
            grad_values = torch.from_numpy(_values_grad(csr, left, right))
        return grad_values, grad_dense, None, None


def _matmul(A, x, transpose, out, values, backend, ndim):
    _check_backend(backend)
    csr, device = _as_csr(A)
    n_in, n_out = (csr.shape[0], csr.shape[1]) if transpose else (csr.shape[1], csr.shape[0])
    x_np, is_torch = _as_dense(x, "x" if ndim == 1 else "X", csr, device, ndim, n_in)

    values_torch = None
    if values is not None:
        if isinstance(values, torch.Tensor) and not is_torch:
            raise TypeError("values is a torch tensor but the dense operand is numpy; use one library")
        v_np, _ = _as_dense(values, "values", csr, device, 1, csr.nnz)
        if is_torch:
            values_torch = values
        csr = _with_data(csr, v_np)

    needs_grad = is_torch and torch.is_grad_enabled() and (
        x.requires_grad or (values_torch is not None and values_torch.requires_grad)
    )
    if needs_grad:
        if out is not None:
            raise TypeError("out= is not supported when gradients are required")
        if values_torch is None:
            values_torch = torch.from_numpy(csr.data)
        return _CSRProduct.apply(values_torch, x, csr, transpose)

    out_shape = (n_out,) + x_np.shape[1:]
    if out is None:
        y = np.empty(out_shape, dtype=csr.dtype)
        result = torch.from_numpy(y) if is_torch else y
    else:
        y = _check_out(out, out_shape, csr.dtype, is_torch, (x_np, csr.data))
        result = out
    _product(csr, x_np, y, transpose)
    return result


def spmv(A, x, *, transpose=False, out=None, values=None, backend="auto"):
    """Sparse matrix-vector product ``y = A @ x`` (or ``A.T @ x``) for CSR A.

    Parallel over rows on the CPU (numba), with row chunks balanced by
    nonzero count.  Inputs are used zero-copy; nothing is converted silently.

    Parameters
    ----------
    A : scipy.sparse CSR array/matrix or torch sparse CSR tensor, shape (m, n)
        float32 or float64 values; int32 or int64 indices.  Other scipy
        formats are refused: convert explicitly with ``A.tocsr()``.
        Unsorted and duplicate column indices are fine (duplicates are
        summed, as in scipy).  Only O(1) structural checks run per call; see
        :func:`check_csr` for a full check of untrusted matrices.
    x : numpy.ndarray or torch.Tensor, shape (n,) (or (m,) if `transpose`)
        C-contiguous, with the same dtype as A.  A CPU torch tensor gives a
        torch tensor back; with ``requires_grad`` the product is
        differentiable (see `values`).
    transpose : bool, default False
        Compute ``A.T @ x`` without forming the transpose.
    out : numpy.ndarray or torch.Tensor, optional
        Preallocated result of shape (m,) (or (n,)), A's dtype, C-contiguous,
        not overlapping the inputs.  Not allowed when gradients are required.
    values : numpy.ndarray or torch.Tensor, shape (nnz,), optional
        Nonzero values to use instead of A's own, with A's sparsity pattern.
        A torch tensor with ``requires_grad`` makes the product
        differentiable with respect to these values (learned sparse
        operators).
    backend : {"auto", "cpu", "cuda"}, default "auto"
        Kernel family.  "auto" follows the inputs' device; this build has
        CPU kernels only, so "cuda" and CUDA tensors raise ``ValueError``.

    Returns
    -------
    y : numpy.ndarray or torch.Tensor
        Same library as `x` (``out`` itself when given).

    Raises
    ------
    TypeError
        Non-CSR or non-float A, mismatched dtypes, unsupported input types.
    ValueError
        Shape mismatch, non-contiguous arrays, mismatched devices, bad `out`.

    Notes
    -----
    Row sums may be reordered for vectorisation (results agree with scipy to
    rounding), but NaN and inf in A or x propagate as IEEE 754 prescribes:
    a NaN in ``x[j]`` makes every ``y[i]`` with a stored ``A[i, j]`` NaN,
    even where that stored value is 0.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from sciml.sparse import spmv
    >>> A = sp.csr_array(np.array([[1.0, 0.0, 2.0], [0.0, 3.0, 0.0]]))
    >>> spmv(A, np.array([1.0, 1.0, 1.0]))
    array([3., 3.])
    >>> spmv(A, np.array([1.0, 2.0]), transpose=True)
    array([1., 6., 2.])
    """
    return _matmul(A, x, bool(transpose), out, values, backend, ndim=1)


def rspmv(A, x, *, out=None, values=None, backend="auto"):
    """Transposed product ``y = A.T @ x``; same as ``spmv(A, x, transpose=True)``.

    See :func:`spmv` for the parameters.  Each thread scatters its rows into
    a private buffer of length n (the buffers are capped at 64 MiB or the
    size of A, whichever is larger; beyond that fewer threads are used).
    """
    return _matmul(A, x, True, out, values, backend, ndim=1)


def spmm(A, X, *, transpose=False, out=None, values=None, backend="auto"):
    """Sparse times dense matrix ``Y = A @ X`` (or ``A.T @ X``) for CSR A.

    Parameters
    ----------
    A : scipy.sparse CSR array/matrix or torch sparse CSR tensor, shape (m, n)
        As in :func:`spmv`.
    X : numpy.ndarray or torch.Tensor, shape (n, k) (or (m, k) if `transpose`)
        C-contiguous (row-major), same dtype as A.
    transpose : bool, default False
        Compute ``A.T @ X`` without forming the transpose.
    out : numpy.ndarray or torch.Tensor, optional
        Preallocated result of shape (m, k) (or (n, k)).
    values : numpy.ndarray or torch.Tensor, shape (nnz,), optional
        Replacement nonzero values, differentiable as in :func:`spmv`.
    backend : {"auto", "cpu", "cuda"}, default "auto"
        As in :func:`spmv`.

    Returns
    -------
    Y : numpy.ndarray or torch.Tensor
        Same library as `X`.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from sciml.sparse import spmm
    >>> A = sp.csr_array(np.array([[1.0, 0.0], [0.0, 2.0]]))
    >>> spmm(A, np.array([[1.0, 2.0], [3.0, 4.0]]))
    array([[1., 2.],
           [6., 8.]])
    """
    return _matmul(A, X, bool(transpose), out, values, backend, ndim=2)

