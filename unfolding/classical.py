r"""Classical sparse-recovery iterations, batched over many signals.

The baselines of the unfolded networks: ISTA and FISTA for the Lasso

.. math:: F(x) = \tfrac12 \|Ax - y\|_2^2 + \lambda \|x\|_1,

iterative hard thresholding (IHT) for the l0-penalised and the k-sparse
least-squares problems, and an accurate Lasso reference for relative-gap
metrics.

Conventions
-----------
* Samples are rows: ``Y`` is ``(n_samples, m)``, codes ``X`` are
  ``(n_samples, n)``, as in :mod:`unfolding.problems`. Every signal is solved
  independently with the same ``A``, ``lam`` and step; objective values
  reported are means over the batch.
* ``lam`` multiplies the *unscaled* data term ``0.5 * ||Ax - y||^2``.
  scikit-learn's :class:`~sklearn.linear_model.Lasso` divides the data term
  by the number of rows of its design matrix (here ``m``), so it solves the
  same problem with ``alpha = lam / m`` (and ``fit_intercept=False``).
* ``A`` is a dense ``numpy.ndarray`` (products with BLAS), a
  ``scipy.sparse`` CSR array/matrix (products with :func:`sciml.sparse.spmm`)
  or a real :class:`scipy.sparse.linalg.LinearOperator` (products with its
  ``matmat`` / ``rmatmat``, the adjoint).
  Computation runs in A's dtype (float32 or float64; integer dense ``A`` is
  promoted to float64); ``Y``, ``X0`` and ``X_true`` are cast to it.
* Internally a batch is stored transposed, ``(n, n_samples)`` C-contiguous,
  so that every product is one ``A @ Z`` / ``A.T @ R`` with a C-contiguous
  dense operand, as the sparse core requires, without per-iteration copies.
* The loops run inside :func:`sciml.threads.thread_limit` (``n_threads=1``
  by default, the toolkit's thread policy); the numba sparse kernels keep
  their own thread count.
"""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass

import sys

import numpy as np
import scipy.sparse as sp

from sciml._validation import check_nonneg_int, check_real
from sciml.prox import hard_threshold, hard_threshold_topk, soft_threshold
from sciml.threads import thread_limit

from .problems import _check_batch, _check_matrix

__all__ = [
    "IterativeResult",
    "LassoReference",
    "ista",
    "fista",
    "iht",
    "lipschitz_constant",
    "lasso_objective",
    "l0_objective",
    "lasso_solution",
    "lasso_relative_gap",
]

# Above this size (min(m, n)) the Lipschitz constant comes from ARPACK
# instead of a dense eigen-decomposition of the smaller Gram matrix.
_DENSE_NORM_MAX = 1000


# --------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------


@dataclass
class IterativeResult:
    """Output of :func:`ista`, :func:`fista` and :func:`iht`.

    Attributes
    ----------
    X : numpy.ndarray, shape (n_samples, n)
        Final iterates, one code per row, in A's dtype.
    n_iter : int
        Iterations run (fewer than requested only with ``tol > 0``).
    objective : numpy.ndarray of shape (n_iter + 1,) or None
        Batch-mean objective of the iterates, ``objective[0]`` at ``X0`` and
        ``objective[i]`` after ``i`` iterations (float64); None when
        ``record=False``. For FISTA these are the values at the iterates
        ``x_k``, not at the extrapolated points.
    converged : bool
        Whether the stopping test ``||X_k - X_{k-1}||_F <= tol * ||X_k||_F``
        held at the last iteration (with ``tol=0`` only at an exact fixed
        point; False when ``n_iter == 0``).
    nmse_db : numpy.ndarray of shape (n_iter + 1,) or None
        NMSE (dB, see :func:`unfolding.problems.nmse_db`) of every iterate
        against ``X_true``; None when ``X_true`` was not given.
    """

    X: np.ndarray
    n_iter: int
    objective: np.ndarray | None
    converged: bool
    nmse_db: np.ndarray | None = None

    def iterations_to_nmse(self, target_db):
        """First iteration whose NMSE is at or below ``target_db``.

        Parameters
        ----------
        target_db : float

        Returns
        -------
        int or None
            The smallest ``i`` with ``nmse_db[i] <= target_db``, or None if
            no recorded iterate reaches it.

        Raises
        ------
        ValueError
            If the run recorded no NMSE (``X_true`` was not given).
        """
        if self.nmse_db is None:
            raise ValueError("no NMSE was recorded: pass X_true to the solver")
        hits = np.flatnonzero(self.nmse_db <= target_db)
        return int(hits[0]) if hits.size else None


@dataclass
class LassoReference:
    """Output of :func:`lasso_solution`.

    Attributes
    ----------
    X : numpy.ndarray, shape (n_samples, n)
        The Lasso solutions, one per row.
    F_star : float
        Batch-mean objective ``F(X)`` (the reference value ``F*``).
    duality_gap : float
        Largest relative duality gap ``(P - D) / P`` over the batch: a
        certificate that ``(F(X) - F_true*) / F_true* <= duality_gap``.
    n_iter : int
        FISTA iterations run.
    converged : bool
        Whether ``duality_gap <= tol``.
    """

    X: np.ndarray
    F_star: float
    duality_gap: float
    n_iter: int
    converged: bool


# --------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------


def _is_linear_operator(A):
    # Whoever built a LinearOperator imported scipy.sparse.linalg; looking it up
    # here keeps importing this module free of that import.
    linalg = sys.modules.get("scipy.sparse.linalg")
    return linalg is not None and isinstance(A, linalg.LinearOperator)


def _check_linear_operator(A, name="A"):
    """A real float32/float64 :class:`~scipy.sparse.linalg.LinearOperator` (returned as is)."""
    if A.dtype not in (np.float32, np.float64):
        raise TypeError(
            f"{name} is a LinearOperator of dtype {A.dtype}; it must be float32 or float64 "
            "(a real operator, whose adjoint is its transpose)"
        )
    return A


def _check_sensing(A, name="A"):
    """A dense/CSR matrix (see ``_check_matrix``) or a real LinearOperator."""
    if _is_linear_operator(A):
        return _check_linear_operator(A, name)
    return _check_matrix(A, name)


def _prepare(A, Y, X0=None, X_true=None, *, x0_name="X0"):
    """Validated operator and transposed (column-per-signal) batches."""
    A = _check_sensing(A)
    n = A.shape[1]
    Y = _check_batch(Y, "Y", A.shape, 0, A.dtype)
    n_samples = Y.shape[0]
    if n_samples == 0:
        raise ValueError(f"Y has no signals (shape {Y.shape}): pass at least one row of {A.shape[0]} measurements")
    batches = []
    for name, X in ((x0_name, X0), ("X_true", X_true)):
        if X is None:
            batches.append(None)
            continue
        X = _check_batch(X, name, A.shape, 1, A.dtype)
        if X.shape[0] != n_samples:
            raise ValueError(
                f"shape mismatch: {name} has shape {X.shape} but Y has shape {Y.shape}; "
                f"expected {name}.shape == ({n_samples}, {n})"
            )
        batches.append(np.ascontiguousarray(X.T))
    Z0, Xt_true = batches
    if Z0 is None:
        Z0 = np.zeros((n, n_samples), dtype=A.dtype)
    return _Operator(A), np.ascontiguousarray(Y.T), Z0, Xt_true


class _Operator:
    """``A @ Z`` and ``A.T @ R`` for column batches: dense BLAS, the sparse core or a LinearOperator."""

    def __init__(self, A):
        self.A = A
        self.sparse = sp.issparse(A)
        self.linear_operator = _is_linear_operator(A)
        self.shape = A.shape
        self.dtype = A.dtype
        if self.sparse:
            # sciml.sparse imports torch: only pay for it with a sparse A.
            from sciml.sparse import spmm

            self._spmm = spmm

    def _owned(self, out):
        # The loop updates products in place: a C-contiguous, writable array in A's dtype.
        out = np.asarray(out)
        if out.dtype != self.dtype or not out.flags.c_contiguous or not out.flags.writeable:
            out = np.array(out, dtype=self.dtype, order="C")
        return out

    def fwd(self, Z):
        if self.linear_operator:
            return self._owned(self.A.matmat(Z))
        return self._spmm(self.A, Z) if self.sparse else self.A @ Z

    def adj(self, R):
        if self.linear_operator:
            return self._owned(self.A.rmatmat(R))
        return self._spmm(self.A, R, transpose=True) if self.sparse else self.A.T @ R


# --------------------------------------------------------------------------
# objectives and the Lipschitz constant
# --------------------------------------------------------------------------


def _half_sq(R):
    # Per-column 0.5 * ||r||^2, accumulated in float64 also for float32 data.
    return 0.5 * np.einsum("ij,ij->j", R, R, dtype=np.float64)


def _l1(Z):
    return np.sum(np.abs(Z), axis=0, dtype=np.float64)


def _l0(Z):
    return np.count_nonzero(Z, axis=0).astype(np.float64)


def lasso_objective(A, X, Y, lam):
    """Batch-mean Lasso objective ``mean_i 0.5 ||A x_i - y_i||^2 + lam ||x_i||_1``.

    Parameters
    ----------
    A : numpy.ndarray, scipy.sparse CSR array/matrix or LinearOperator, shape (m, n)
    X : array_like, shape (n_samples, n)
        Codes, one per row.
    Y : array_like, shape (n_samples, m)
        Measurements, one per row.
    lam : float
        Positive l1 weight (unscaled data term, see the module notes).

    Returns
    -------
    float

    Raises
    ------
    ValueError
        On shape mismatches, NaN/inf, or ``lam <= 0``.
    TypeError
        On unsupported types (sparse non-CSR ``A``, non-real ``lam``).
    """
    lam = check_real("lam", lam)
    op, Yt, Zt, _ = _prepare(A, Y, X0=X, x0_name="X")
    return float(np.mean(_half_sq(op.fwd(Zt) - Yt) + lam * _l1(Zt)))


def l0_objective(A, X, Y, lam0):
    """Batch-mean l0 objective ``mean_i 0.5 ||A x_i - y_i||^2 + lam0 ||x_i||_0``.

    ``||x||_0`` counts the exactly nonzero entries.

    Parameters
    ----------
    A : numpy.ndarray, scipy.sparse CSR array/matrix or LinearOperator, shape (m, n)
    X : array_like, shape (n_samples, n)
    Y : array_like, shape (n_samples, m)
    lam0 : float
        Positive weight of the l0 penalty.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        On shape mismatches, NaN/inf, or ``lam0 <= 0``.
    TypeError
        On unsupported types.
    """
    lam0 = check_real("lam0", lam0)
    op, Yt, Zt, _ = _prepare(A, Y, X0=X, x0_name="X")
    return float(np.mean(_half_sq(op.fwd(Zt) - Yt) + lam0 * _l0(Zt)))


def default_step(A):
    """ISTA's step ``1 / ||A||_2^2``, with a clear error where it does not exist (A = 0)."""
    lipschitz = lipschitz_constant(A)
    if not lipschitz > 0:
        raise ValueError("A is zero (||A||_2 = 0): the default step 1 / ||A||_2^2 is undefined and every "
                         "signal is unobservable; check the sensing matrix")
    return 1.0 / lipschitz


def lipschitz_constant(A):
    """``L = ||A||_2^2``, the Lipschitz constant of ``x -> A.T (A x - y)``.

    Parameters
    ----------
    A : numpy.ndarray, scipy.sparse CSR array/matrix or LinearOperator, shape (m, n)

    Returns
    -------
    float
        The largest singular value of ``A``, squared (computed in float64).

    Notes
    -----
    For ``min(m, n) <= 1000`` (the standard problems) it is the largest
    eigenvalue of the smaller Gram matrix ``A A^T`` or ``A^T A`` (LAPACK,
    exact to rounding). Larger matrices, and every
    :class:`~scipy.sparse.linalg.LinearOperator` (which is never densified),
    use ARPACK (:func:`scipy.sparse.linalg.svds`, tolerance 0, i.e. machine
    precision) on a ``LinearOperator`` whose products go through
    :mod:`sciml.sparse` for a sparse ``A`` (and through the operator's own
    products, in float64, for an operator), started from a fixed vector so
    that the result is deterministic and numpy's global RNG is untouched.
    """
    A = _check_sensing(A)
    m, n = A.shape
    if min(m, n) == 0:
        return 0.0
    if _is_linear_operator(A):
        return _operator_norm_squared(A)
    if min(m, n) <= _DENSE_NORM_MAX:
        # Sparse-times-sparse-transpose is scipy's sparse GEMM, not a SpMV/SpMM
        # of the core; densifying is fine at this size.
        B = A.toarray() if sp.issparse(A) else A
        B = np.asarray(B, dtype=np.float64)
        G = B @ B.T if m <= n else B.T @ B
        return float(np.linalg.eigvalsh(G)[-1])
    from scipy.sparse.linalg import LinearOperator

    if sp.issparse(A):
        from sciml.sparse import spmv

        A64 = A.astype(np.float64) if A.dtype != np.float64 else A
        lin = LinearOperator(
            (m, n),
            matvec=lambda v: spmv(A64, np.ascontiguousarray(v, dtype=np.float64).ravel()),
            rmatvec=lambda v: spmv(A64, np.ascontiguousarray(v, dtype=np.float64).ravel(), transpose=True),
            dtype=np.float64,
        )
    else:
        lin = np.asarray(A, dtype=np.float64)
    return _largest_singular_value(lin) ** 2


def _largest_singular_value(lin):
    """ARPACK's largest singular value from a fixed start (deterministic, global RNG untouched)."""
    from scipy.sparse.linalg import svds

    v0 = np.random.default_rng(0).standard_normal(min(lin.shape))
    s = svds(lin, k=1, tol=0, v0=v0, return_singular_vectors=False, solver="arpack")
    return float(s[0])


def _operator_norm_squared(A):
    """``||A||_2^2`` of a LinearOperator through its products, in float64."""
    from scipy.sparse.linalg import LinearOperator

    m, n = A.shape
    if min(m, n) == 1:
        # ARPACK needs k < min(m, n): the operator is one row or column, get it.
        B = A.matmat(np.eye(n)) if n == 1 else A.rmatmat(np.eye(m))
        return float(np.sum(np.square(np.asarray(B, dtype=np.float64))))
    lin = LinearOperator(
        (m, n),
        matvec=lambda v: np.asarray(A.matvec(v), dtype=np.float64),
        rmatvec=lambda v: np.asarray(A.rmatvec(v), dtype=np.float64),
        dtype=np.float64,
    )
    return _largest_singular_value(lin) ** 2


# --------------------------------------------------------------------------
# the shared loop
# --------------------------------------------------------------------------


def _nmse_db_cols(Z, Xt_true, ref):
    err = float(np.sum(np.square(Z - Xt_true, dtype=np.float64)))
    return -np.inf if err == 0 else 10.0 * math.log10(err / ref)


def _proximal_gradient(op, Yt, Z, step, prox, penalty, n_iter, *, momentum=False, restart=False,
                       tol=0.0, record=True, Xt_true=None, stop=None):
    """Batched proximal gradient / FISTA on 0.5 ||A z - y||^2 + penalty(z), per column.

    ``prox(V)`` is the prox of ``step * penalty``; ``penalty(Z)`` returns the
    per-column penalty values (float64). ``stop(Z, AZ)`` (optional) is called
    after every iteration and ends the loop when it returns True.

    Returns (Z, AZ, n_run, objective list or None, nmse list or None, converged).
    """
    AZ = op.fwd(Z)
    objective = [float(np.mean(_half_sq(AZ - Yt) + penalty(Z)))] if record else None
    if Xt_true is not None:
        ref = float(np.sum(np.square(Xt_true, dtype=np.float64)))
        if ref == 0:
            raise ValueError("X_true is all zeros, so the NMSE is undefined")
        nmse = [_nmse_db_cols(Z, Xt_true, ref)]
    else:
        nmse = None
    # One momentum parameter per signal, so that restarts act per signal;
    # without restarts all entries stay equal (Beck-Teboulle's scalar t_k).
    t = np.ones(Z.shape[1])
    Z_prev = AZ_prev = None
    converged = False
    n_run = 0
    for it in range(n_iter):
        if momentum and it > 0:
            t_next = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t * t))
            beta = ((t - 1.0) / t_next).astype(Z.dtype)
            t = t_next
            W = Z - Z_prev
            W *= beta
            W += Z
            # A is linear: A W follows from the stored A z_k, A z_{k-1}
            # without a second forward product per iteration.
            AW = AZ - AZ_prev
            AW *= beta
            AW += AZ
        else:
            W, AW = Z, AZ
        V = op.adj(AW - Yt)
        V *= -step  # in place: V = W - step * grad, without temporaries
        V += W
        Z_new = np.ascontiguousarray(prox(V))
        if restart:
            # O'Donoghue & Candes gradient restart: momentum points uphill.
            uphill = np.einsum("ij,ij->j", W - Z_new, Z_new - Z, dtype=np.float64) > 0
            t[uphill] = 1.0
        Z_prev, AZ_prev = Z, AZ
        Z, AZ = Z_new, op.fwd(Z_new)
        n_run = it + 1
        if record:
            objective.append(float(np.mean(_half_sq(AZ - Yt) + penalty(Z))))
        if nmse is not None:
            nmse.append(_nmse_db_cols(Z, Xt_true, ref))
        if tol > 0 or it == n_iter - 1:  # two extra passes: only when needed
            converged = float(np.linalg.norm(Z - Z_prev)) <= tol * float(np.linalg.norm(Z))
            if tol > 0 and converged:
                break
        if stop is not None and stop(Z, AZ):
            converged = True
            break
    return Z, AZ, n_run, objective, nmse, converged


def _result(Z, n_run, objective, nmse, converged):
    return IterativeResult(
        X=np.ascontiguousarray(Z.T),
        n_iter=n_run,
        objective=None if objective is None else np.asarray(objective, dtype=np.float64),
        converged=bool(converged),
        nmse_db=None if nmse is None else np.asarray(nmse, dtype=np.float64),
    )


def _lasso(A, Y, lam, n_iter, step, X0, tol, record, X_true, n_threads, momentum):
    lam = check_real("lam", lam)
    n_iter = check_nonneg_int("n_iter", n_iter)
    step = check_real("step", step, allow_none=True)
    tol = check_real("tol", tol, positive=False)
    op, Yt, Z0, Xt_true = _prepare(A, Y, X0, X_true)
    with thread_limit(n_threads):
        if step is None:
            step = default_step(op.A)
        threshold = lam * step
        out = _proximal_gradient(
            op, Yt, Z0, step, lambda V: soft_threshold(V, threshold), lambda Z: lam * _l1(Z),
            n_iter, momentum=momentum, tol=tol, record=record, Xt_true=Xt_true,
        )
    Z, _, n_run, objective, nmse, converged = out
    return _result(Z, n_run, objective, nmse, converged)


# --------------------------------------------------------------------------
# public solvers
# --------------------------------------------------------------------------

def ista(A, Y, lam, *, n_iter=100, step=None, X0=None, tol=0.0, record=True, X_true=None, n_threads=1):
    """ISTA: proximal gradient descent for the Lasso, for every row of ``Y``.

    ``x <- soft_threshold(x - step * A^T (A x - y), lam * step)``. With
    ``step <= 1/L`` the objective is non-increasing and converges as O(1/k).

    Parameters
    ----------
    A : numpy.ndarray, scipy.sparse CSR array/matrix or LinearOperator, shape (m, n)
        Sensing matrix; float32 or float64 (integer dense ``A`` becomes float64).
    Y : array_like, shape (n_samples, m)
        Measurements, one signal per row; cast to A's dtype.
    lam : float
        Positive l1 weight ``lambda`` of ``0.5 ||Ax - y||^2 + lambda ||x||_1``
        (sklearn's ``Lasso`` uses ``alpha = lam / m``).
    n_iter : int, default 100
        Number of iterations (>= 0).
    step : float, optional
        Gradient step; default ``1 / L`` with ``L = ||A||_2^2``
        (:func:`lipschitz_constant`). Convergence is guaranteed for
        ``step <= 1 / L``.
    X0 : array_like, shape (n_samples, n), optional
        Initial codes; zeros by default.
    tol : float, default 0.0
        Stop early once ``||X_k - X_{k-1}||_F <= tol * ||X_k||_F`` (Frobenius
        norms over the whole batch). 0 runs exactly ``n_iter`` iterations.
    record : bool, default True
        Record the batch-mean objective of every iterate.
    X_true : array_like, shape (n_samples, n), optional
        True codes; if given, the NMSE (dB) of every iterate is recorded.
    n_threads : int or None, default 1
        Thread limit for BLAS/torch inside the loop
        (:func:`sciml.threads.thread_limit`); None leaves the settings alone.

    Returns
    -------
    IterativeResult
        ``X`` (n_samples, n); ``objective`` (n_iter + 1,) with the batch-mean
        ``F`` at ``X0`` first; ``nmse_db`` (n_iter + 1,) if ``X_true``.

    Raises
    ------
    ValueError
        If ``A`` or ``Y`` is not 2-D, ``Y.shape[1] != A.shape[0]``, ``X0``
        or ``X_true`` is not ``(n_samples, n)``, an input has NaN/inf,
        ``lam``/``step`` is not positive and finite, ``n_iter < 0`` or
        ``tol < 0``.
    TypeError
        If ``A`` is sparse but not CSR, a dtype is unsupported, or a scalar
        parameter has the wrong type (e.g. a float ``n_iter``).
    """
    return _lasso(A, Y, lam, n_iter, step, X0, tol, record, X_true, n_threads, momentum=False)


def fista(A, Y, lam, *, n_iter=100, step=None, X0=None, tol=0.0, record=True, X_true=None, n_threads=1):
    """FISTA (Beck & Teboulle 2009): ISTA with Nesterov momentum, for every row of ``Y``.

    ``x_k = soft_threshold(w_k - step * A^T (A w_k - y), lam * step)``,
    ``t_{k+1} = (1 + sqrt(1 + 4 t_k^2)) / 2``,
    ``w_{k+1} = x_k + (t_k - 1) / t_{k+1} * (x_k - x_{k-1})``, with
    ``t_1 = 1`` and ``w_1 = x_0``. The objective converges as O(1/k^2) but
    is not monotone; one forward and one adjoint product per iteration, as
    in ISTA (``A w`` is combined from the stored ``A x_k``).

    Parameters
    ----------
    A : numpy.ndarray, scipy.sparse CSR array/matrix or LinearOperator, shape (m, n)
        Sensing matrix; float32 or float64 (integer dense ``A`` becomes float64).
    Y : array_like, shape (n_samples, m)
        Measurements, one signal per row; cast to A's dtype.
    lam : float
        Positive l1 weight ``lambda`` of ``0.5 ||Ax - y||^2 + lambda ||x||_1``
        (sklearn's ``Lasso`` uses ``alpha = lam / m``).
    n_iter : int, default 100
        Number of iterations (>= 0).
    step : float, optional
        Gradient step; default ``1 / L`` with ``L = ||A||_2^2``
        (:func:`lipschitz_constant`). Convergence is guaranteed for
        ``step <= 1 / L``.
    X0 : array_like, shape (n_samples, n), optional
        Initial codes; zeros by default.
    tol : float, default 0.0
        Stop early once ``||X_k - X_{k-1}||_F <= tol * ||X_k||_F`` (Frobenius
        norms over the whole batch). 0 runs exactly ``n_iter`` iterations.
    record : bool, default True
        Record the batch-mean objective of every iterate.
    X_true : array_like, shape (n_samples, n), optional
        True codes; if given, the NMSE (dB) of every iterate is recorded.
    n_threads : int or None, default 1
        Thread limit for BLAS/torch inside the loop
        (:func:`sciml.threads.thread_limit`); None leaves the settings alone.

    Returns
    -------
    IterativeResult
        ``X`` (n_samples, n); ``objective`` (n_iter + 1,) with the batch-mean
        ``F`` at ``X0`` first; ``nmse_db`` (n_iter + 1,) if ``X_true``.

    Raises
    ------
    ValueError
        If ``A`` or ``Y`` is not 2-D, ``Y.shape[1] != A.shape[0]``, ``X0``
        or ``X_true`` is not ``(n_samples, n)``, an input has NaN/inf,
        ``lam``/``step`` is not positive and finite, ``n_iter < 0`` or
        ``tol < 0``.
    TypeError
        If ``A`` is sparse but not CSR, a dtype is unsupported, or a scalar
        parameter has the wrong type (e.g. a float ``n_iter``).
    """
    return _lasso(A, Y, lam, n_iter, step, X0, tol, record, X_true, n_threads, momentum=True)


def iht(A, Y, *, lam0=None, k=None, n_iter=100, step=None, X0=None, tol=0.0, record=True, X_true=None,
        n_threads=1):
    r"""Iterative hard thresholding, for every row of ``Y``.

    Two variants, chosen by passing exactly one of ``lam0`` and ``k``:

    * ``lam0``: the l0-penalised problem
      ``F0(x) = 0.5 ||Ax - y||^2 + lam0 ||x||_0`` with
      ``x <- hard_threshold(x - step * A^T (A x - y), sqrt(2 * lam0 * step))``.
      The threshold is the prox of ``step * lam0 * ||.||_0``: per entry,
      ``argmin_z 0.5 (z - v)^2 + step * lam0 [z != 0]`` costs ``v^2 / 2`` at
      ``z = 0`` and ``step * lam0`` at ``z = v``, so ``v`` is kept iff
      ``|v| > sqrt(2 * lam0 * step)``. With ``step <= 1/L`` the quadratic
      ``f(x_k) + <grad, z - x_k> + ||z - x_k||^2 / (2 step)`` majorises the
      data term, so ``F0`` is non-increasing (Blumensath & Davies 2008).
    * ``k``: the known-sparsity variant (projection onto k-sparse vectors):
      ``x <- hard_threshold_topk(x - step * A^T (A x - y), k)`` per signal.
      The same majorisation makes ``0.5 ||Ax - y||^2`` non-increasing.

    Parameters
    ----------
    A : numpy.ndarray, scipy.sparse CSR array/matrix or LinearOperator, shape (m, n)
    Y : array_like, shape (n_samples, m)
        Measurements, one signal per row.
    lam0 : float, optional
        Positive l0 weight.
    k : int, optional
        Entries kept per signal, ``1 <= k <= n``.
    n_iter : int, default 100
    step : float, optional
        Default ``1 / L``, ``L = ||A||_2^2``. Monotonicity needs ``step <= 1/L``.
    X0 : array_like, shape (n_samples, n), optional
        Zeros by default.
    tol : float, default 0.0
        Early stop as in :func:`ista`.
    record : bool, default True
        Record the batch-mean ``F0`` (``lam0`` variant) or
        ``0.5 ||Ax - y||^2`` (``k`` variant) per iterate.
    X_true : array_like, shape (n_samples, n), optional
        Record the NMSE (dB) per iterate.
    n_threads : int or None, default 1

    Returns
    -------
    IterativeResult

    Raises
    ------
    ValueError
        If neither or both of ``lam0`` and ``k`` are given, ``lam0`` is not
        positive, ``k`` is outside ``[1, n]``, or for the input problems
        listed in :func:`ista`.
    TypeError
        If ``k`` is not an integer, or for the type problems listed in :func:`ista`.
    """
    if (lam0 is None) == (k is None):
        raise ValueError("iht: pass exactly one of lam0 (l0 penalty) and k (sparsity level)")
    n_iter = check_nonneg_int("n_iter", n_iter)
    step = check_real("step", step, allow_none=True)
    tol = check_real("tol", tol, positive=False)
    op, Yt, Z0, Xt_true = _prepare(A, Y, X0, X_true)
    n = op.shape[1]
    if k is not None:
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, numbers.Integral):
            raise TypeError(f"k must be an integer, got {k!r} of type {type(k).__name__}")
        if not 1 <= k <= n:
            raise ValueError(f"k must be between 1 and n = {n} (A's columns), got {k}")
        k = int(k)
    else:
        lam0 = check_real("lam0", lam0)
    with thread_limit(n_threads):
        if step is None:
            step = default_step(op.A)
        if k is not None:
            # Columns are signals in the internal layout: top-k along axis 0.
            prox = lambda V: hard_threshold_topk(V, k, axis=0)  # noqa: E731
            penalty = lambda Z: np.zeros(Z.shape[1])  # noqa: E731
        else:
            threshold = math.sqrt(2.0 * lam0 * step)
            prox = lambda V: hard_threshold(V, threshold)  # noqa: E731
            penalty = lambda Z: lam0 * _l0(Z)  # noqa: E731
        out = _proximal_gradient(op, Yt, Z0, step, prox, penalty, n_iter, tol=tol, record=record,
                                 Xt_true=Xt_true)
    Z, _, n_run, objective, nmse, converged = out
    return _result(Z, n_run, objective, nmse, converged)


# --------------------------------------------------------------------------
# the Lasso reference
# --------------------------------------------------------------------------


def _lasso_gap(op, Yt, Z, AZ, lam):
    """Per-column primal value P and relative duality gap (P - D) / P."""
    R = Yt - AZ
    # Dual-feasible point: the residual scaled into {theta : ||A^T theta||_inf <= lam}.
    c = np.max(np.abs(op.adj(R)), axis=0).astype(np.float64)
    scale = np.minimum(1.0, lam / np.maximum(c, np.finfo(np.float64).tiny))
    P = _half_sq(R) + lam * _l1(Z)
    # D(theta) = <y, theta> - 0.5 ||theta||^2, written without the cancelling
    # 0.5 ||y||^2 - 0.5 ||y - theta||^2.
    yr = np.einsum("ij,ij->j", Yt, R, dtype=np.float64)
    D = scale * yr - scale * scale * _half_sq(R)
    gap = np.maximum(P - D, 0.0)
    rel = np.where(P > 0, gap / np.where(P > 0, P, 1.0), 0.0)
    return P, rel


def lasso_solution(A, Y, lam, *, tol=1e-10, max_iter=20000, check_every=10, n_threads=1):
    """Accurate Lasso solutions, the reference for :func:`lasso_relative_gap`.

    FISTA with step ``1/L`` and per-signal gradient restarts (O'Donoghue &
    Candes 2015, linear convergence on the Lasso in practice), run until the
    relative duality gap of every signal is at most ``tol``. The gap is a
    certificate: ``(F(x) - F*) / F* <= (P - D) / P``.

    Parameters
    ----------
    A : numpy.ndarray, scipy.sparse CSR array/matrix or LinearOperator, shape (m, n)
    Y : array_like, shape (n_samples, m)
    lam : float
        Positive l1 weight (sklearn's ``alpha = lam / m``).
    tol : float, default 1e-10
        Target relative duality gap (per signal). Reaching 1e-10 needs
        float64 data.
    max_iter : int, default 20000
    check_every : int, default 10
        Iterations between duality-gap checks (each costs one adjoint product).
    n_threads : int or None, default 1

    Returns
    -------
    LassoReference
        ``X``, ``F_star`` (batch-mean objective), ``duality_gap`` (largest
        relative gap), ``n_iter``, ``converged``.

    Raises
    ------
    ValueError, TypeError
        For the input problems listed in :func:`ista`, ``tol < 0``,
        ``max_iter < 0`` or ``check_every < 1``.

    Warns
    -----
    RuntimeWarning
        If ``max_iter`` iterations do not reach ``tol``.
    """
    lam = check_real("lam", lam)
    tol = check_real("tol", tol, positive=False)
    max_iter = check_nonneg_int("max_iter", max_iter)
    check_every = check_nonneg_int("check_every", check_every)
    if check_every < 1:
        raise ValueError("check_every must be at least 1")
    op, Yt, Z0, _ = _prepare(A, Y)
    with thread_limit(n_threads):
        step = default_step(op.A)
        threshold = lam * step
        counter = [0]

        def stop(Z, AZ):
            counter[0] += 1
            if counter[0] % check_every:
                return False
            return bool(np.all(_lasso_gap(op, Yt, Z, AZ, lam)[1] <= tol))

        Z, AZ, n_run, _, _, _ = _proximal_gradient(
            op, Yt, Z0, step, lambda V: soft_threshold(V, threshold), lambda Z: lam * _l1(Z),
            max_iter, momentum=True, restart=True, record=False, stop=stop,
        )
        P, rel = _lasso_gap(op, Yt, Z, AZ, lam)
    gap = float(np.max(rel)) if rel.size else 0.0
    converged = gap <= tol
    if not converged:
        warnings.warn(
            f"lasso_solution: relative duality gap {gap:.3g} > tol = {tol:g} after {n_run} "
            "iterations; raise max_iter or tol",
            RuntimeWarning,
            stacklevel=2,
        )
    return LassoReference(X=np.ascontiguousarray(Z.T), F_star=float(np.mean(P)), duality_gap=gap,
                          n_iter=n_run, converged=converged)


def lasso_relative_gap(A, X, Y, lam, F_star=None):
    """Relative objective gap ``(F(X) - F*) / F*`` of a batch of Lasso estimates.

    Parameters
    ----------
    A : numpy.ndarray, scipy.sparse CSR array/matrix or LinearOperator, shape (m, n)
    X : array_like, shape (n_samples, n)
        Estimates, one per row.
    Y : array_like, shape (n_samples, m)
    lam : float
    F_star : float, optional
        Batch-mean optimal objective for these ``Y`` (e.g.
        ``lasso_solution(A, Y, lam).F_star``, to reuse across methods);
        computed with :func:`lasso_solution` when omitted.

    Returns
    -------
    float
        ``(lasso_objective(A, X, Y, lam) - F_star) / F_star``; >= 0 up to the
        reference's own accuracy.

    Raises
    ------
    ValueError
        If ``F_star`` is not positive and finite (it is 0 only for ``Y = 0``,
        where the relative gap is undefined), or for the input problems of
        :func:`lasso_objective`.
    """
    F = lasso_objective(A, X, Y, lam)
    if F_star is None:
        F_star = lasso_solution(A, Y, lam).F_star
    F_star = check_real("F_star", F_star)
    return (F - F_star) / F_star
