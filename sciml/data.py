"""Problem generators shared by tests, benchmarks and tutorials.

Sparse test matrices for the core: finite-difference Poisson operators and
random CSR matrices with uniform or power-law row lengths.  Every generator
takes ``random_state`` (None, an int, or a ``numpy.random.Generator``) and
never touches numpy's global RNG.
"""

from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse as sp

from ._validation import check_float_dtype, check_positive_int, check_real

__all__ = ["poisson_2d", "poisson_3d", "random_csr", "power_law_csr"]


def _laplacian_1d(n, dtype):
    return sp.diags_array(
        [-np.ones(n - 1), 2 * np.ones(n), -np.ones(n - 1)],
        offsets=[-1, 0, 1],
        shape=(n, n),
        format="csr",
        dtype=dtype,
    )


def _kron_sum(ops):
    """Kronecker sum: sum over d of I x ... x ops[d] x ... x I, as CSR."""
    total = None
    for d, op in enumerate(ops):
        term = op
        for e, other in enumerate(ops):
            if e != d:
                eye = sp.identity(other.shape[0], dtype=op.dtype, format="csr")
                term = sp.kron(term, eye, format="csr") if e > d else sp.kron(eye, term, format="csr")
        total = term if total is None else total + term
    total = sp.csr_array(total)
    total.sort_indices()
    return total


def poisson_2d(n, *, dtype=np.float64):
    """The 5-point Laplacian on an ``n x n`` grid with Dirichlet boundaries.

    Parameters
    ----------
    n : int
        Interior grid points per side; the matrix has ``n**2`` rows.
    dtype : {numpy.float64, numpy.float32}

    Returns
    -------
    A : scipy.sparse.csr_array, shape (n**2, n**2)
        Symmetric positive definite, ``4`` on the diagonal, ``-1`` off it
        (unscaled by the grid spacing), sorted int32 indices.

    Examples
    --------
    >>> poisson_2d(3).toarray()[4]
    array([ 0., -1.,  0., -1.,  4., -1.,  0., -1.,  0.])
    """
    n = check_positive_int("n", n)
    lap = _laplacian_1d(n, check_float_dtype(dtype))
    return _kron_sum([lap, lap])


def poisson_3d(n, *, dtype=np.float64):
    """The 7-point Laplacian on an ``n x n x n`` grid with Dirichlet boundaries.

    Parameters
    ----------
    n : int
        Interior grid points per side; the matrix has ``n**3`` rows.
    dtype : {numpy.float64, numpy.float32}

    Returns
    -------
    A : scipy.sparse.csr_array, shape (n**3, n**3)
        Symmetric positive definite, ``6`` on the diagonal, ``-1`` off it.
    """
    n = check_positive_int("n", n)
    lap = _laplacian_1d(n, check_float_dtype(dtype))
    return _kron_sum([lap, lap, lap])


def _csr_from_row_lengths(row_lengths, n_cols, rng, dtype, sort):
    n_rows = row_lengths.shape[0]
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(row_lengths, out=indptr[1:])
    nnz = int(indptr[-1])
    index_dtype = np.int32 if max(nnz, n_cols) < np.iinfo(np.int32).max else np.int64
    indices = rng.integers(0, n_cols, size=nnz, dtype=index_dtype)
    data = rng.standard_normal(nnz).astype(dtype, copy=False)
    A = sp.csr_array((data, indices, indptr.astype(index_dtype)), shape=(n_rows, n_cols))
    if sort:
        # Duplicate column draws are summed so that the result is canonical.
        A.sum_duplicates()
    return A


def random_csr(n_rows, n_cols=None, *, nnz_per_row=10, dtype=np.float64, random_state=None, sort=True):
    """A random CSR matrix with the same number of draws in every row.

    Column indices are uniform (gather-latency bound: no locality), values
    standard normal.

    Parameters
    ----------
    n_rows : int
    n_cols : int, optional
        Defaults to `n_rows`.
    nnz_per_row : int, default 10
        Column draws per row; with ``sort=True`` duplicates are merged, so a
        row may end with fewer stored entries.
    dtype : {numpy.float64, numpy.float32}
    random_state : None, int or numpy.random.Generator
    sort : bool, default True
        Return canonical CSR (sorted, no duplicates).  ``False`` keeps the
        raw draws: unsorted, possibly duplicated column indices.

    Returns
    -------
    A : scipy.sparse.csr_array, shape (n_rows, n_cols)
    """
    n_rows = check_positive_int("n_rows", n_rows)
    n_cols = n_rows if n_cols is None else check_positive_int("n_cols", n_cols)
    nnz_per_row = check_positive_int("nnz_per_row", nnz_per_row)
    rng = _rng(random_state)
    lengths = np.full(n_rows, nnz_per_row, dtype=np.int64)
    return _csr_from_row_lengths(lengths, n_cols, rng, check_float_dtype(dtype), sort)


def _rng(random_state):
    """numpy's Generator from None, a non-negative int or a Generator, with an error naming random_state."""
    if random_state is None or isinstance(random_state, np.random.Generator):
        return np.random.default_rng(random_state)
    if isinstance(random_state, (bool, np.bool_)) or not isinstance(random_state, numbers.Integral) or random_state < 0:
        raise ValueError(f"random_state must be None, a non-negative int or a numpy Generator, got {random_state!r}")
    return np.random.default_rng(int(random_state))


def power_law_csr(n_rows, n_cols=None, *, mean_nnz_per_row=10, exponent=2.0, dtype=np.float64, random_state=None):
    """A random CSR matrix whose row lengths follow a power law.

    Irregular rows (a few very long, most short) are the hard case for
    row-parallel kernels; this is the standard test for load balancing.

    Parameters
    ----------
    n_rows : int
    n_cols : int, optional
        Defaults to `n_rows`.
    mean_nnz_per_row : float, default 10
        Target mean row length (rows are capped at `n_cols`).
    exponent : float, default 2.0
        Tail exponent of the Pareto row-length distribution (> 1).
    dtype : {numpy.float64, numpy.float32}
    random_state : None, int or numpy.random.Generator

    Returns
    -------
    A : scipy.sparse.csr_array, shape (n_rows, n_cols), canonical
    """
    n_rows = check_positive_int("n_rows", n_rows)
    n_cols = n_rows if n_cols is None else check_positive_int("n_cols", n_cols)
    if not check_real("exponent", exponent) > 1:
        raise ValueError(f"exponent must be > 1, got {exponent!r}")
    check_real("mean_nnz_per_row", mean_nnz_per_row)
    rng = _rng(random_state)
    raw = rng.pareto(exponent, size=n_rows) + 1.0
    lengths = np.minimum(np.rint(raw * mean_nnz_per_row / raw.mean()), n_cols).astype(np.int64)
    return _csr_from_row_lengths(lengths, n_cols, rng, check_float_dtype(dtype), sort=True)
