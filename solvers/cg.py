"""Conjugate gradients and preconditioned CG on the sparse core.

``cg(A, b, x0=None, *, rtol, atol, maxiter, M, callback)`` keeps scipy's
names and stopping rule (``||b - A x|| <= max(rtol * ||b||, atol)``) and
returns the solution together with a :class:`CGResult` carrying the
iteration count, the residual history, the convergence flag and, when the
iteration stops early, the reason. Products with ``A`` run on the sparse
core: on numpy through a matrix prepared once per solve, with ``p^T A p``
from the same pass and the vector updates fused (each vector read once per
update), on torch through :func:`sciml.sparse.spmv`; preconditioners are :class:`Jacobi` and
:class:`IncompleteCholesky` (IC(0), factorisation and triangular solves in
numba), or anything scipy accepts as ``M`` (an approximation of ``A^-1``).

Given torch tensors, the same iteration runs in torch on their device (CPU
or CUDA, where the products use the sparse core's CUDA kernels) and returns
a tensor, as CuPy's ``cg`` does for CuPy arrays; the matrix is then checked
on that device too.

Bad input gets a clear error before iterating: a non-square, non-symmetric or
non-finite matrix, a non-positive diagonal (so not positive definite), a
right-hand side of the wrong size or with NaN. A breakdown found during the
iteration (``p^T A p <= 0``: the matrix is indefinite; a preconditioner that
is not positive definite; non-finite values) or a tolerance below the
attainable accuracy (stagnation of the true residual) returns a result
flagged ``converged=False`` with the reason, never a silent wrong answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numba
import numpy as np
import scipy.sparse as sp
import torch

from sciml._validation import as_real_tensor, check_positive_int, check_real
from sciml.sparse import check_csr, spmm, spmv, to_torch_csr
from sciml.sparse._api import HostOperator
from sciml.threads import thread_limit

__all__ = ["CGResult", "cg", "Jacobi", "IncompleteCholesky", "check_spd_matrix"]


@dataclass(frozen=True)
class CGResult:
    """What a CG run did.

    Attributes
    ----------
    converged : bool
        Whether the true residual met ``max(rtol * ||b||, atol)``.
    n_iter : int
        Iterations taken (matrix products after the initial residual).
    residual_norms : ndarray of shape (n_iter + 1,)
        ``||r_k||`` (2-norm) from the initial residual on; the last entry is
        the true residual ``||b - A x||``.
    reason : str
        ``"converged"``, ``"maxiter"``, the breakdown found, or
        ``"stagnation: ..."`` when the true residual stops decreasing above
        the tolerance (the attainable accuracy in the working precision).
    tolerance : float
        The absolute residual target ``max(rtol * ||b||, atol)``.
    n_residual_steps : int
        Learned solvers only: iterations that stepped along the residual
        because the learned direction made no progress (0 for CG).
    """

    converged: bool
    n_iter: int
    residual_norms: np.ndarray = field(repr=False)
    reason: str
    tolerance: float
    n_residual_steps: int = 0

    @property
    def relative_residuals(self):
        """``residual_norms / ||r_0||``."""
        r0 = self.residual_norms[0]
        return self.residual_norms / r0 if r0 > 0 else self.residual_norms


def check_spd_matrix(A, *, symmetry_rtol=1e-10):
    """Validate a matrix for CG: square CSR float, finite, symmetric, positive diagonal.

    Parameters
    ----------
    A : scipy.sparse matrix/array, dense ndarray or torch tensor
        A torch tensor (sparse CSR or COO, or dense) is checked on its own
        device, without a copy to the host, in a few sparse products.
    symmetry_rtol : float, default=1e-10
        Largest ``|A - A^T|`` allowed, relative to ``max |A|``. For torch
        tensors the test is a probe with two random vectors ``v`` (fixed
        seed), row by row: ``|(A - A^T) v|_i`` at most ``symmetry_rtol``
        plus the rounding of the products (``(k_i + k'_i) eps`` for row i's
        and column i's nonzero counts) times the larger of ``(|A| |v|)_i``
        and ``(|A^T| |v|)_i``. An asymmetry that both vectors happen to miss
        (a set of measure zero) passes; CG's true-residual test still stops
        it from reporting a wrong solution as converged. Being per row, the
        probe can refuse a matrix that the scipy test, relative to
        ``max |A|``, accepts (a small asymmetry in a row of small entries).

    Returns
    -------
    scipy.sparse.csr_array or torch.Tensor
        float64 (float32 kept), sorted indices; for a torch tensor a sparse
        CSR tensor on its device (``A`` itself when it was a float CSR
        tensor that does not require grad).

    Raises
    ------
    TypeError, ValueError
        Naming the first problem: not square, non-finite entries, not
        symmetric (with the size of the asymmetry), a diagonal entry ``<= 0``
        (with its row: such a matrix is not positive definite).
    """
    if isinstance(A, torch.Tensor):
        return _check_spd_tensor(A, symmetry_rtol)
    if isinstance(A, np.ndarray):
        if A.ndim != 2:
            raise ValueError(f"A must be a 2-D matrix, got shape {A.shape}")
        A = sp.csr_array(A)
    elif sp.issparse(A):
        A = sp.csr_array(A)
    else:
        raise TypeError(
            f"A must be a scipy.sparse matrix, a numpy array or a torch tensor, got {type(A).__name__}"
        )
    if A.shape[0] != A.shape[1]:
        raise ValueError(f"A must be square, got shape {A.shape}")
    if A.dtype not in (np.float32, np.float64):
        if A.dtype.kind in "biu":
            A = A.astype(np.float64)
        else:
            raise TypeError(f"A must have a real float dtype, got {A.dtype}")
    check_csr(A)  # out-of-range indices would make every later step read out of bounds
    if not np.all(np.isfinite(A.data)):
        raise ValueError("A contains NaN or infinity")
    if not A.has_canonical_format:
        # Sorting happens in place: on a copy, not in the caller's arrays (which may be read-only).
        A = A.copy()
        A.sum_duplicates()
        A.sort_indices()
    scale = float(np.abs(A.data).max()) if A.nnz else 0.0
    asym = A - A.T
    gap = float(np.abs(asym.data).max()) if asym.nnz else 0.0
    if gap > symmetry_rtol * max(scale, np.finfo(np.float64).tiny):
        raise ValueError(
            f"A is not symmetric: max |A - A^T| = {gap:.3g} (relative {gap / scale:.3g}); "
            "CG needs a symmetric positive definite matrix"
        )
    _check_diagonal(A.diagonal())
    return A


def _check_diagonal(diag):
    """A positive diagonal (numpy or torch), else an error naming the first bad row."""
    bad = diag <= 0
    if bool(bad.any()):
        row = int(bad.nonzero()[0][0])
        raise ValueError(
            f"A is not positive definite: diagonal entry A[{row}, {row}] = {float(diag[row]):.3g} <= 0"
        )


def _torch_diagonal(A):
    """The diagonal of a torch sparse CSR matrix (duplicates summed), on its device."""
    crow, col, values = A.crow_indices(), A.col_indices(), A.values()
    n = A.shape[0]
    rows = torch.repeat_interleave(torch.arange(n, device=crow.device, dtype=crow.dtype), crow.diff(),
                                   output_size=col.shape[0])
    on_diagonal = rows == col
    diag = torch.zeros(n, dtype=values.dtype, device=values.device)
    return diag.index_add_(0, rows[on_diagonal], values[on_diagonal])


def _asymmetry(A, values, symmetry_rtol, n_probes=2):
    """Worst ``|(A v - A^T v)_i| / max((|A| |v|)_i, (|A^T| |v|)_i)`` over the rows beyond tolerance, else 0.

    For a symmetric matrix the two products differ only by the rounding of
    their sums, at most ``(k_i + k'_i) u`` of that scale for row i's and
    column i's nonzero counts and unit roundoff ``u``; the tolerance allows
    twice that (``eps = 2 u``) plus ``symmetry_rtol``. Costs a handful of
    sparse products, where an exact ``A - A^T`` would sort every nonzero.
    """
    if values.numel() == 0:
        return 0.0
    n, dtype, device = A.shape[0], A.dtype, A.device
    magnitude = values.abs()
    top = magnitude.max()
    unit, unit_magnitude = values / top, magnitude / top  # |products| <= 6 k: no overflow
    generator = torch.Generator(device=device).manual_seed(0)
    v = torch.randn(n, n_probes, generator=generator, dtype=dtype, device=device)
    gap = (spmm(A, v, values=unit) - spmm(A, v, transpose=True, values=unit)).abs()
    v = v.abs()
    scale = torch.maximum(spmm(A, v, values=unit_magnitude), spmm(A, v, transpose=True, values=unit_magnitude))
    counts = A.crow_indices().diff().to(dtype) + spmv(
        A, torch.ones(n, dtype=dtype, device=device), transpose=True, values=torch.ones_like(values))
    allowed = (symmetry_rtol + counts.unsqueeze(1) * torch.finfo(dtype).eps) * scale
    ratio = gap / scale.clamp_min(torch.finfo(dtype).tiny)
    return float(torch.where(gap > allowed, ratio, 0).max())


def _check_spd_tensor(A, symmetry_rtol):
    """check_spd_matrix for a torch tensor, on its device; returns a sparse CSR tensor."""
    if A.device.type not in ("cpu", "cuda"):
        raise ValueError(f"A is on device {A.device}; the solvers run on CPU and CUDA devices")
    if A.dim() != 2:
        raise ValueError(f"A must be a 2-D matrix, got shape {tuple(A.shape)}")
    if A.shape[0] != A.shape[1]:
        raise ValueError(f"A must be square, got shape {tuple(A.shape)}")
    if A.requires_grad:
        A = A.detach()
    if A.dtype not in (torch.float32, torch.float64):
        if A.is_floating_point() or A.is_complex() or A.dtype == torch.bool:
            raise TypeError(f"A must have a real float32 or float64 dtype, got {A.dtype}")
        A = A.to(torch.float64)
    if A.layout != torch.sparse_csr:
        if A.layout not in (torch.strided, torch.sparse_coo):
            raise TypeError(f"A must be a dense, sparse CSR or sparse COO tensor, got layout {A.layout}")
        A = A.to_sparse_csr()
    check_csr(A)  # out-of-range indices would make every later step read out of bounds
    values, nnz = A.values(), int(A.crow_indices()[-1])
    if values.shape[0] != nnz:
        raise ValueError(
            f"A stores {values.shape[0]} values but crow_indices[-1] = {nnz}: not a valid torch CSR tensor"
        )
    if not bool(torch.isfinite(values).all()):
        raise ValueError("A contains NaN or infinity")
    ratio = _asymmetry(A, values, symmetry_rtol)
    if ratio > 0:
        raise ValueError(
            f"A is not symmetric: |(A - A^T) v| reaches {ratio:.3g} times |A| |v| for a random v; "
            "CG needs a symmetric positive definite matrix"
        )
    _check_diagonal(_torch_diagonal(A))
    return A


class Jacobi:
    """Diagonal (Jacobi) preconditioner ``z = r / diag(A)``.

    Parameters
    ----------
    A : scipy.sparse matrix or torch sparse CSR tensor
        Its diagonal must be positive. For a tensor the preconditioner
        applies to tensors on its device, in its dtype.
    """

    def __init__(self, A):
        if isinstance(A, torch.Tensor):
            diag = _torch_diagonal(A if A.layout == torch.sparse_csr else A.to_sparse_csr()).detach()
            valid = bool(((diag > 0) & torch.isfinite(diag)).all())
        else:
            diag = np.asarray(sp.csr_array(A).diagonal(), dtype=np.float64)
            valid = bool(np.all((diag > 0) & np.isfinite(diag)))
        if not valid:
            raise ValueError("Jacobi needs a positive, finite diagonal")
        self.inverse_diagonal = 1.0 / diag

    def __call__(self, r):
        """Apply the preconditioner to a residual."""
        return r * self.inverse_diagonal


@numba.njit(cache=True)
def _ic0_factor(indptr, indices, data, n, shift):
    """IC(0) of the lower triangle (CSR, sorted): values of L with A's lower pattern.

    Returns (l_indptr, l_indices, l_data, failed_row); failed_row is -1 on success.
    """
    # Lower-triangle pattern (including the diagonal, last in each row).
    counts = np.zeros(n + 1, dtype=np.int64)
    for i in range(n):
        for p in range(indptr[i], indptr[i + 1]):
            if indices[p] <= i:
                counts[i + 1] += 1
    l_indptr = np.cumsum(counts)
    l_indices = np.empty(l_indptr[-1], dtype=np.int64)
    l_data = np.empty(l_indptr[-1], dtype=np.float64)
    for i in range(n):
        q = l_indptr[i]
        for p in range(indptr[i], indptr[i + 1]):
            if indices[p] <= i:
                l_indices[q] = indices[p]
                l_data[q] = data[p]
                q += 1
    for i in range(n):
        start, end = l_indptr[i], l_indptr[i + 1]
        if end == start or l_indices[end - 1] != i:
            return l_indptr, l_indices, l_data, i  # no diagonal entry
        for q in range(start, end):
            k = l_indices[q]
            # sum over j < k of L[i, j] * L[k, j]: merge the two sorted rows.
            s = 0.0
            if k == i:
                # diagonal: sum of squares of the row's off-diagonal entries
                for t in range(start, end - 1):
                    s += l_data[t] * l_data[t]
                pivot = l_data[q] * (1.0 + shift) - s
                if not pivot > 0.0:
                    return l_indptr, l_indices, l_data, i
                l_data[q] = np.sqrt(pivot)
            else:
                # Row i before column k, and row k without its diagonal.
                a, a_end = start, q
                b, b_end = l_indptr[k], l_indptr[k + 1] - 1
                while a < a_end and b < b_end:
                    ca, cb = l_indices[a], l_indices[b]
                    if ca == cb:
                        s += l_data[a] * l_data[b]
                        a += 1
                        b += 1
                    elif ca < cb:
                        a += 1
                    else:
                        b += 1
                l_data[q] = (l_data[q] - s) / l_data[l_indptr[k + 1] - 1]
    return l_indptr, l_indices, l_data, -1


@numba.njit(cache=True)
def _ic0_solve(l_indptr, l_indices, l_data, r):
    """z = (L L^T)^-1 r: forward substitution with L, backward with L^T (row-oriented L)."""
    n = r.shape[0]
    y = np.empty(n)
    for i in range(n):
        s = r[i]
        end = l_indptr[i + 1] - 1
        for q in range(l_indptr[i], end):
            s -= l_data[q] * y[l_indices[q]]
        y[i] = s / l_data[end]
    for i in range(n - 1, -1, -1):
        end = l_indptr[i + 1] - 1
        y[i] = y[i] / l_data[end]
        v = y[i]
        for q in range(l_indptr[i], end):
            y[l_indices[q]] -= l_data[q] * v
    return y


class IncompleteCholesky:
    """Zero-fill incomplete Cholesky, IC(0): ``A ~ L L^T`` with ``L`` on A's lower pattern.

    Parameters
    ----------
    A : scipy.sparse matrix
        Symmetric positive definite (checked as in :func:`check_spd_matrix`).
    shift : float, default=0.0
        Relative diagonal shift: pivots use ``(1 + shift) * A[i, i]``. IC(0)
        exists for M-matrices (all our Poisson matrices); for other SPD
        matrices a small shift (e.g. 1e-3) avoids a breakdown.

    Raises
    ------
    ValueError
        If a pivot is not positive (naming the row and suggesting ``shift``).
    """

    def __init__(self, A, *, shift=0.0):
        A = check_spd_matrix(A)
        shift = check_real("shift", shift, positive=False)
        indptr, indices, data, failed = _ic0_factor(
            A.indptr.astype(np.int64), A.indices.astype(np.int64), A.data.astype(np.float64), A.shape[0], shift
        )
        if failed >= 0:
            raise ValueError(
                f"IC(0) broke down at row {failed} (non-positive pivot): the matrix is not an M-matrix; "
                "pass a small shift, e.g. IncompleteCholesky(A, shift=1e-3)"
            )
        self.L = sp.csr_array((data, indices, indptr), shape=A.shape)

    def __call__(self, r):
        """Apply ``(L L^T)^-1`` to a residual."""
        return _ic0_solve(self.L.indptr, self.L.indices, self.L.data, np.ascontiguousarray(r, dtype=np.float64))


def _check_vector(v, n, name, *, copy=False):
    """A real, finite float64 vector of ``n`` entries (a column or row of ``n`` is accepted)."""
    v = np.asarray(v)
    if v.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be real, got dtype {v.dtype}")
    if v.size != n or v.ndim > 2:
        raise ValueError(f"{name} has {v.size} entries (shape {np.shape(v)}); the system has {n} rows")
    v = np.array(v, dtype=np.float64).ravel() if copy else v.astype(np.float64, copy=False).ravel()
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name} contains NaN or infinity")
    return v


def _as_preconditioner(M, A):
    if M is None:
        return None
    on_torch = isinstance(A, torch.Tensor)
    if isinstance(M, str):
        if M == "jacobi":
            return Jacobi(A)
        if M in ("ic0", "ichol"):
            if on_torch:
                raise TypeError(
                    "M='ic0' runs its triangular solves on the host with numpy; for torch tensors "
                    "use M='jacobi' or a callable that maps a residual tensor to a tensor"
                )
            return IncompleteCholesky(A)
        raise ValueError(f"M must be None, 'jacobi', 'ic0', a callable, a LinearOperator or a matrix; got {M!r}")
    if isinstance(M, torch.Tensor):
        if not on_torch:
            raise TypeError("M is a torch tensor but the system is numpy; pass both as torch tensors or neither")
        if tuple(M.shape) != tuple(A.shape) or M.device != A.device or M.dtype != A.dtype:
            raise ValueError(
                f"M must match A: A is {tuple(A.shape)} {A.dtype} on {A.device}, "
                f"M is {tuple(M.shape)} {M.dtype} on {M.device}"
            )
        return lambda r: M @ r
    if isinstance(M, (Jacobi, IncompleteCholesky)):
        built_on_torch = isinstance(getattr(M, "inverse_diagonal", None), torch.Tensor)
        if built_on_torch != on_torch:
            system, built = ("torch", "a scipy matrix") if on_torch else ("numpy", "a torch tensor")
            if isinstance(M, IncompleteCholesky):
                built = "a scipy matrix (it solves on the host)"
            raise TypeError(
                f"M is a {type(M).__name__} built from {built} but the system is {system}; "
                "build it from the same kind of matrix, or pass M='jacobi'"
            )
        if on_torch:
            d = M.inverse_diagonal
            if tuple(d.shape) != (A.shape[0],) or d.dtype != A.dtype or d.device != A.device:
                raise ValueError(
                    f"M is a Jacobi preconditioner of {tuple(d.shape)} {d.dtype} on {d.device}, "
                    f"but A is {tuple(A.shape)} {A.dtype} on {A.device}"
                )
        return M
    if callable(M) and not hasattr(M, "matvec"):
        return _checked_output(M, A.shape[0], on_torch)
    if on_torch:
        raise TypeError(
            f"M is a {type(M).__name__}, which works on numpy arrays; for torch tensors pass "
            "'jacobi', a torch tensor or a callable that maps a residual tensor to a tensor"
        )
    if hasattr(M, "matvec"):
        return _checked_output(M.matvec, A.shape[0], on_torch)
    if sp.issparse(M) or isinstance(M, np.ndarray):
        if M.shape != A.shape:
            raise ValueError(f"M has shape {M.shape}, A has {A.shape}")
        return _checked_output(lambda r: M @ r, A.shape[0], on_torch)
    raise TypeError(f"M must be a callable, a LinearOperator or a matrix, got {type(M).__name__}")


def _checked_output(apply, n, on_torch):
    """A user's preconditioner, its output checked: a vector of n real entries.

    A column (n, 1) is flattened, as scipy's LinearOperator does; anything
    else of the wrong size, type or dtype is refused with an error naming it,
    rather than broadcast against the search direction.
    """

    def checked(r):
        z = apply(r)
        if on_torch:
            if not isinstance(z, torch.Tensor) or z.numel() != n or not z.is_floating_point():
                got = f"{type(z).__name__} of shape {tuple(getattr(z, 'shape', ()))}"
                raise ValueError(f"the preconditioner M must return a float tensor of {n} entries, got a {got}")
            return z.reshape(n).to(r.dtype)
        z = np.asarray(z)
        if z.size != n or z.dtype.kind not in "biuf":
            raise ValueError(
                f"the preconditioner M must return a real vector of {n} entries, got shape {z.shape} "
                f"and dtype {z.dtype}"
            )
        return np.ascontiguousarray(z, dtype=np.float64).reshape(n)

    return checked


def _prepare_torch(A, b, x0):
    """The system on torch's side: (A as sparse CSR, b, x) on one device, in one dtype.

    The device is that of the first tensor among b, A and x0; the dtype is
    b's if b is a float tensor, else A's if A is one, else float64. Arrays
    are converted; tensors must already match (no silent moves or casts).
    A scipy or numpy ``A`` is checked on the host and copied to the device.
    """
    tensors = {name: v for name, v in (("b", b), ("A", A), ("x0", x0)) if isinstance(v, torch.Tensor)}
    device = next(iter(tensors.values())).device
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"the system is on device {device}; the solvers run on CPU and CUDA devices")
    for name, v in tensors.items():
        if v.device != device:
            first = next(iter(tensors))
            raise ValueError(f"{name} is on {v.device} but {first} is on {device}: mismatched devices; move one")
    floats = [v.dtype for v in (b, A) if isinstance(v, torch.Tensor) and v.dtype in (torch.float32, torch.float64)]
    dtype = floats[0] if floats else torch.float64
    if isinstance(A, torch.Tensor) and A.dtype != dtype and not (A.is_floating_point() or A.is_complex()):
        A = A.to(dtype)  # an integer matrix takes b's dtype, as an integer b takes A's
    A = check_spd_matrix(A)
    if isinstance(A, torch.Tensor):
        if A.dtype != dtype:
            raise TypeError(f"A has dtype {A.dtype} but b has {dtype}; cast one of them explicitly")
    else:
        A = to_torch_csr(A.astype(np.float32 if dtype == torch.float32 else np.float64), device=device)
    n = A.shape[0]

    def vector(v, name):
        if isinstance(v, torch.Tensor):
            if v.layout != torch.strided:
                raise TypeError(f"{name} must be a dense tensor, got layout {v.layout}")
            if v.is_floating_point() and v.dtype != dtype:
                raise TypeError(f"{name} has dtype {v.dtype} but the system is {dtype}; cast it explicitly")
        # as_real_tensor casts arrays and integers to the system's dtype and
        # refuses NaN, inf and values the cast overflows.
        t, _ = as_real_tensor(v, name, ndims=(1, 2), expected=f"a vector of {n} entries", dtype=dtype,
                              device=device)
        if t.numel() != n:
            raise ValueError(f"{name} has {t.numel()} entries (shape {tuple(t.shape)}); the system has {n} rows")
        return t.reshape(n)

    b = vector(b, "b").contiguous()
    x = torch.zeros(n, dtype=dtype, device=device) if x0 is None else vector(x0, "x0").clone()
    return A, b, x


def cg(A, b, x0=None, *, rtol=1e-5, atol=0.0, maxiter=None, M=None, callback=None, n_threads=1):
    """Solve ``A x = b`` for symmetric positive definite ``A`` by (preconditioned) CG.

    Parameters
    ----------
    A : scipy.sparse matrix, ndarray or torch tensor, shape (n, n)
        Symmetric positive definite (validated by :func:`check_spd_matrix`).
        A torch tensor (sparse CSR, COO or dense) is checked and used on its
        device.
    b : array_like or torch.Tensor of shape (n,)
        If ``b``, ``A`` or ``x0`` is a torch tensor, the iteration runs in
        torch on the tensors' device (all tensors on one device), in b's
        dtype if it is a float tensor, else A's (float32 or float64), and
        ``x`` is returned as a tensor there. Arrays are converted; tensors
        of another float dtype are refused. A scipy ``A`` is then checked on
        the host and copied to the device on every call: pass it as a torch
        sparse CSR tensor (:func:`sciml.sparse.to_torch_csr`) to solve
        repeatedly.
    x0 : array_like or torch.Tensor of shape (n,), optional
        Starting guess (default zeros); not modified.
    rtol, atol : float, default 1e-5 and 0.0
        Stop when ``||b - A x|| <= max(rtol * ||b||, atol)`` (scipy's rule),
        checked on the true residual.
    maxiter : int, optional
        Default ``10 * n``.
    M : None, "jacobi", "ic0", callable, LinearOperator or matrix, optional
        Preconditioner: an approximation of ``A^-1`` applied to residuals.
        With torch tensors: None, "jacobi", a torch matrix or a callable on
        tensors ("ic0" solves triangular systems on the host and is refused).
    callback : callable, optional
        Called as ``callback(xk)`` after every iteration.
    n_threads : int or None, default=1
        BLAS/torch threads during the iteration (the toolkit's thread policy;
        the sparse products use numba's own threads).

    Returns
    -------
    x : ndarray of shape (n,), or torch.Tensor for torch input
    result : CGResult

    Notes
    -----
    On torch tensors the iteration runs without autograd on ``b / ||b||``
    (``||b||`` taken in float64) so that float32 dot products neither
    underflow nor overflow; ``x``, the residual norms and the callback's
    ``xk`` are scaled back.

    The stopping test is confirmed on the true residual ``b - A x``. Where
    the recurrence residual has drifted below the tolerance but the true one
    has not, CG restarts from ``x``; once three such restarts in a row make
    no progress (neither a 10 % reduction of the best true residual nor half
    the remaining gap to the tolerance), the run stops as ``"stagnation"``
    (not converged), returning the best iterate checked, rather than
    continuing to ``maxiter``. A tolerance below the attainable accuracy,
    roughly ``eps * ||A|| ||x|| / ||b||``, ends there. It depends on ``b``:
    on 2-D Poisson matrices of 128^2 to 256^2 it is about ``1e-6`` in float32
    and ``1e-15`` in float64 for random ``b``, but ``1e-4`` and ``1e-13``
    for ``b = ones`` (a smooth solution).

    On a GPU each iteration reads two scalars back to the host (``p^T A p``
    for the breakdown test and ``||r||`` for the stopping test; three with a
    preconditioner), which synchronises the device.

    Examples
    --------
    >>> from sciml.data import poisson_2d
    >>> import numpy as np
    >>> A = poisson_2d(32)
    >>> x, res = cg(A, np.ones(A.shape[0]), rtol=1e-8, M="ic0")
    >>> res.converged, res.n_iter < 40
    (True, True)

    The same system on torch tensors (on a GPU, ``device="cuda"``):

    >>> import torch
    >>> from sciml.sparse import to_torch_csr
    >>> x, res = cg(to_torch_csr(A), torch.ones(A.shape[0], dtype=torch.float64), rtol=1e-8)
    >>> type(x).__name__, res.converged
    ('Tensor', True)
    """
    rtol = check_real("rtol", rtol, positive=False)
    atol = check_real("atol", atol, positive=False)
    if any(isinstance(v, torch.Tensor) for v in (A, b, x0)):
        A, b, x = _prepare_torch(A, b, x0)
        maxiter = 10 * A.shape[0] if maxiter is None else check_positive_int("maxiter", maxiter)
        precond = _as_preconditioner(M, A)
        with thread_limit(n_threads), torch.no_grad():
            # Iterate on b / ||b||: float32 dot products of b-sized vectors
            # underflow or overflow at everyday scales (entries near 1e-20 or
            # 1e19), which would fake convergence. The norm is taken in float64.
            b_norm = float(torch.linalg.vector_norm(b, dtype=torch.float64))
            tolerance = max(rtol * b_norm, atol)
            scale = b_norm if 0 < b_norm < math.inf else 1.0
            b, x = b / scale, x / scale
            scaled_callback = callback if callback is None or scale == 1.0 else (lambda xk: callback(xk * scale))
            x, history, reason, n_iter = _cg_loop(_TensorOps(A), b, x, precond, tolerance / scale, maxiter,
                                                  scaled_callback)
            x = x * scale if scale != 1.0 else x
        history = [h * scale for h in history]
    else:
        A = check_spd_matrix(A)
        n = A.shape[0]
        b = _check_vector(b, n, "b")
        x = np.zeros(n) if x0 is None else _check_vector(x0, n, "x0", copy=True)
        A = A if A.dtype == np.float64 else A.astype(np.float64)
        maxiter = 10 * n if maxiter is None else check_positive_int("maxiter", maxiter)
        precond = _as_preconditioner(M, A)
        with thread_limit(n_threads):
            # ||b|| inside the limit too: an unlimited BLAS pool keeps spinning
            # after the call and stalls the sparse kernels' threads that follow.
            tolerance = max(rtol * _norm(b), atol)
            x, history, reason, n_iter = _cg_loop(_HostOps(A), b, x, precond, tolerance, maxiter, callback)
    return x, CGResult(
        converged=reason == "converged",
        n_iter=n_iter,
        residual_norms=np.asarray(history),
        reason=reason,
        tolerance=tolerance,
    )


def _norm(v):
    """||v||_2 as a float, for numpy arrays and tensors alike (as numpy computes it)."""
    return math.sqrt(float(v @ v))


# Stop after this many failed true-residual checks in a row without progress
# (see _cg_loop): the attainable accuracy is reached.
_STAGNANT_CHECKS = 3


def _copy(v):
    return v.clone() if isinstance(v, torch.Tensor) else v.copy()


class _TensorOps:
    """CG's vector operations on torch tensors (any device), products by :func:`sciml.sparse.spmv`."""

    def __init__(self, A):
        self.A = A

    def matvec(self, x):
        return spmv(self.A, x)

    def matvec_dot(self, p):
        """``(A p, p . A p)``."""
        Ap = spmv(self.A, p)
        return Ap, float(p @ Ap)

    def step(self, x, r, p, Ap, alpha):
        """``x += alpha p``, ``r -= alpha A p`` in place; returns ``r . r``."""
        x += alpha * p
        r -= alpha * Ap
        return float(r @ r)

    def direction(self, z, beta, p):
        """The next direction ``z + beta p`` (``p`` may be overwritten)."""
        return z + beta * p


class _HostOps:
    """CG's vector operations on the host, fused: each pass reads a vector once.

    ``A p`` and ``p . A p`` come from one pass over A (the sparse core's
    :class:`~sciml.sparse._api.HostOperator`, prepared once per solve), and
    the two updates and ``r . r`` from one pass over the vectors: about a
    third less memory traffic per iteration than separate numpy operations,
    and no per-call validation.
    """

    def __init__(self, A):
        self.operator = HostOperator(A)
        self.Ap = np.empty(A.shape[0], dtype=np.float64)

    def matvec(self, x):
        return self.operator.matvec(x)

    def matvec_dot(self, p):
        return self.Ap, self.operator.matvec_dot(p, self.Ap)

    def step(self, x, r, p, Ap, alpha):
        return float(_cg_step(x, r, p, Ap, alpha))

    def direction(self, z, beta, p):
        _cg_direction(z, beta, p)
        return p


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _cg_step(x, r, p, Ap, alpha):
    rr = 0.0
    for i in range(x.shape[0]):
        x[i] += alpha * p[i]
        ri = r[i] - alpha * Ap[i]
        r[i] = ri
        rr += ri * ri
    return rr


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _cg_direction(z, beta, p):
    for i in range(p.shape[0]):
        p[i] = z[i] + beta * p[i]


def _cg_loop(ops, b, x, precond, tolerance, maxiter, callback):
    """CG on numpy arrays (``ops`` a :class:`_HostOps`) or torch tensors (:class:`_TensorOps`)."""
    r = b - ops.matvec(x)
    history = [_norm(r)]
    if not math.isfinite(history[0]):
        return x, history, "breakdown: the initial residual is not finite (the values overflow the dtype)", 0
    if history[0] <= tolerance:
        return x, history, "converged", 0
    z = precond(r) if precond is not None else r
    p = _copy(z)
    rz = float(r @ z)
    if not rz > 0:
        return x, history, _breakdown_reason(rz, "the preconditioner"), 0
    best_true, best_x, stagnant_checks = math.inf, None, 0
    for k in range(1, maxiter + 1):
        Ap, pAp = ops.matvec_dot(p)
        if not pAp > 0:
            return x, history, _breakdown_reason(pAp, "A"), k - 1
        alpha = rz / pAp
        rr = ops.step(x, r, p, Ap, alpha)
        res = math.sqrt(rr) if rr >= 0 else math.nan
        if callback is not None:
            callback(x)
        restart = False
        if res <= tolerance:
            # Confirm on the true residual (the recurrence drifts in floating point).
            r = b - ops.matvec(x)
            rr = float(r @ r)
            res = math.sqrt(rr)
            if res <= tolerance:
                history.append(res)
                return x, history, "converged", k
            # The recurrence drifted away from the true residual: restart from
            # x (the old direction belongs to the drifted residual), and stop
            # once restarts no longer reduce the true residual. Progress is a
            # 10 % reduction or half the remaining gap to the tolerance.
            progress = res < 0.9 * best_true or res - tolerance <= 0.5 * (best_true - tolerance)
            stagnant_checks = 0 if progress else stagnant_checks + 1
            if res < best_true:
                best_true, best_x = res, _copy(x)
            if stagnant_checks >= _STAGNANT_CHECKS:
                history.append(best_true)
                dtype = str(b.dtype).removeprefix("torch.")
                return best_x, history, (
                    f"stagnation: the true residual stays at {best_true / history[0]:.3g} of the initial one while "
                    f"the recurrence reaches the tolerance ({tolerance / history[0]:.3g} of it): the attainable "
                    f"accuracy for this system in {dtype}; use a larger rtol{' or float64' if dtype != 'float64' else ''}"
                ), k
            restart = True
        history.append(res)
        if not math.isfinite(res):
            return x, history, "breakdown: the residual became non-finite", k
        z = precond(r) if precond is not None else r
        rz_new = float(r @ z) if precond is not None else rr
        if not rz_new > 0:
            return x, history, _breakdown_reason(rz_new, "the preconditioner"), k
        p = _copy(z) if restart else ops.direction(z, rz_new / rz, p)
        rz = rz_new
    history[-1] = _norm(b - ops.matvec(x))
    if history[-1] > best_true:  # a restart left a better iterate behind
        x, history[-1] = best_x, best_true
    return x, history, "maxiter", maxiter


def _breakdown_reason(value, what):
    if not np.isfinite(value):
        return "breakdown: non-finite values"
    return f"breakdown: {what} is not positive definite (curvature {value:.3g} <= 0)"
