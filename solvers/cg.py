"""Conjugate gradients and preconditioned CG on the sparse core.

``cg(A, b, x0=None, *, rtol, atol, maxiter, M, callback)`` keeps scipy's
names and stopping rule (``||b - A x|| <= max(rtol * ||b||, atol)``) and
returns the solution together with a :class:`CGResult` carrying the
iteration count, the residual history, the convergence flag and, when the
iteration stops early, the reason. Products with ``A`` run through
:func:`sciml.sparse.spmv`; preconditioners are :class:`Jacobi` and
:class:`IncompleteCholesky` (IC(0), factorisation and triangular solves in
numba), or anything scipy accepts as ``M`` (an approximation of ``A^-1``).

Bad input gets a clear error before iterating: a non-square, non-symmetric or
non-finite matrix, a non-positive diagonal (so not positive definite), a
right-hand side of the wrong size or with NaN. A breakdown found during the
iteration (``p^T A p <= 0``: the matrix is indefinite; a preconditioner that
is not positive definite; non-finite values) returns a result flagged
``converged=False`` with the reason, never a silent wrong answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numba
import numpy as np
import scipy.sparse as sp

from sciml._validation import check_positive_int, check_real
from sciml.sparse import spmv
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
        ``"converged"``, ``"maxiter"``, or the breakdown found.
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
    A : scipy.sparse matrix/array or dense ndarray
    symmetry_rtol : float, default=1e-10
        Largest ``|A - A^T|`` allowed, relative to ``max |A|``.

    Returns
    -------
    scipy.sparse.csr_array
        float64 (float32 kept), sorted indices.

    Raises
    ------
    TypeError, ValueError
        Naming the first problem: not square, non-finite entries, not
        symmetric (with the size of the asymmetry), a diagonal entry ``<= 0``
        (with its row: such a matrix is not positive definite).
    """
    if isinstance(A, np.ndarray):
        if A.ndim != 2:
            raise ValueError(f"A must be a 2-D matrix, got shape {A.shape}")
        A = sp.csr_array(A)
    elif sp.issparse(A):
        A = sp.csr_array(A)
    else:
        raise TypeError(f"A must be a scipy.sparse matrix or a numpy array, got {type(A).__name__}")
    if A.shape[0] != A.shape[1]:
        raise ValueError(f"A must be square, got shape {A.shape}")
    if A.dtype not in (np.float32, np.float64):
        if A.dtype.kind in "biu":
            A = A.astype(np.float64)
        else:
            raise TypeError(f"A must have a real float dtype, got {A.dtype}")
    if not np.all(np.isfinite(A.data)):
        raise ValueError("A contains NaN or infinity")
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
    diag = A.diagonal()
    bad = np.flatnonzero(diag <= 0)
    if bad.size:
        raise ValueError(
            f"A is not positive definite: diagonal entry A[{bad[0]}, {bad[0]}] = {diag[bad[0]]:.3g} <= 0"
        )
    return A


class Jacobi:
    """Diagonal (Jacobi) preconditioner ``z = r / diag(A)``.

    Parameters
    ----------
    A : scipy.sparse matrix
        Its diagonal must be positive.
    """

    def __init__(self, A):
        diag = np.asarray(sp.csr_array(A).diagonal(), dtype=np.float64)
        if np.any(diag <= 0) or not np.all(np.isfinite(diag)):
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
    if isinstance(M, str):
        if M == "jacobi":
            return Jacobi(A)
        if M in ("ic0", "ichol"):
            return IncompleteCholesky(A)
        raise ValueError(f"M must be None, 'jacobi', 'ic0', a callable, a LinearOperator or a matrix; got {M!r}")
    if callable(M):
        return M
    if hasattr(M, "matvec"):
        return M.matvec
    if sp.issparse(M) or isinstance(M, np.ndarray):
        if M.shape != A.shape:
            raise ValueError(f"M has shape {M.shape}, A has {A.shape}")
        return lambda r: M @ r
    raise TypeError(f"M must be a callable, a LinearOperator or a matrix, got {type(M).__name__}")


def cg(A, b, x0=None, *, rtol=1e-5, atol=0.0, maxiter=None, M=None, callback=None, n_threads=1):
    """Solve ``A x = b`` for symmetric positive definite ``A`` by (preconditioned) CG.

    Parameters
    ----------
    A : scipy.sparse matrix or ndarray, shape (n, n)
        Symmetric positive definite (validated by :func:`check_spd_matrix`).
    b : array_like of shape (n,)
    x0 : array_like of shape (n,), optional
        Starting guess (default zeros).
    rtol, atol : float, default 1e-5 and 0.0
        Stop when ``||b - A x|| <= max(rtol * ||b||, atol)`` (scipy's rule),
        checked on the true residual.
    maxiter : int, optional
        Default ``10 * n``.
    M : None, "jacobi", "ic0", callable, LinearOperator or matrix, optional
        Preconditioner: an approximation of ``A^-1`` applied to residuals.
    callback : callable, optional
        Called as ``callback(xk)`` after every iteration.
    n_threads : int or None, default=1
        BLAS/torch threads during the iteration (the toolkit's thread policy;
        the sparse products use numba's own threads).

    Returns
    -------
    x : ndarray of shape (n,)
    result : CGResult

    Examples
    --------
    >>> from sciml.data import poisson_2d
    >>> import numpy as np
    >>> A = poisson_2d(32)
    >>> x, res = cg(A, np.ones(A.shape[0]), rtol=1e-8, M="ic0")
    >>> res.converged, res.n_iter < 40
    (True, True)
    """
    A = check_spd_matrix(A)
    n = A.shape[0]
    b = _check_vector(b, n, "b")
    x = np.zeros(n) if x0 is None else _check_vector(x0, n, "x0", copy=True)
    rtol = check_real("rtol", rtol, positive=False)
    atol = check_real("atol", atol, positive=False)
    maxiter = 10 * n if maxiter is None else check_positive_int("maxiter", maxiter)
    precond = _as_preconditioner(M, A)
    A64 = A if A.dtype == np.float64 else A.astype(np.float64)
    tolerance = max(rtol * float(np.linalg.norm(b)), atol)

    with thread_limit(n_threads):
        x, history, reason, n_iter = _cg_loop(A64, b, x, precond, tolerance, maxiter, callback)
    return x, CGResult(
        converged=reason == "converged",
        n_iter=n_iter,
        residual_norms=np.asarray(history),
        reason=reason,
        tolerance=tolerance,
    )


def _cg_loop(A, b, x, precond, tolerance, maxiter, callback):
    r = b - spmv(A, x)
    history = [float(np.linalg.norm(r))]
    if history[0] <= tolerance:
        return x, history, "converged", 0
    z = precond(r) if precond is not None else r
    p = z.copy()
    rz = float(r @ z)
    if not rz > 0:
        return x, history, _breakdown_reason(rz, "the preconditioner"), 0
    for k in range(1, maxiter + 1):
        Ap = spmv(A, p)
        pAp = float(p @ Ap)
        if not pAp > 0:
            return x, history, _breakdown_reason(pAp, "A"), k - 1
        alpha = rz / pAp
        x += alpha * p
        r -= alpha * Ap
        res = float(np.linalg.norm(r))
        if callback is not None:
            callback(x)
        if res <= tolerance:
            # Confirm on the true residual (the recurrence drifts in floating point).
            r = b - spmv(A, x)
            res = float(np.linalg.norm(r))
            if res <= tolerance:
                history.append(res)
                return x, history, "converged", k
        history.append(res)
        if not np.isfinite(res):
            return x, history, "breakdown: the residual became non-finite", k
        z = precond(r) if precond is not None else r
        rz_new = float(r @ z)
        if not rz_new > 0:
            return x, history, _breakdown_reason(rz_new, "the preconditioner"), k
        p = z + (rz_new / rz) * p
        rz = rz_new
    history[-1] = float(np.linalg.norm(b - spmv(A, x)))
    return x, history, "maxiter", maxiter


def _breakdown_reason(value, what):
    if not np.isfinite(value):
        return "breakdown: non-finite values"
    return f"breakdown: {what} is not positive definite (curvature {value:.3g} <= 0)"
