"""Numba CPU kernels for CSR products.

The kernels take raw CSR arrays and a preallocated output; all validation
happens in :mod:`sciml.sparse._api`.  Conventions that make them fast:

* Row pointers and column indices arrive viewed as *unsigned* integers.
  With signed indices numba emits a negative-index wrap-around check on
  every ``data[j]`` load and ``x[col]`` gather, which blocks vectorisation
  (measured: 1.4x -> 2x scipy's speed on a 2-D Poisson matrix).  The views
  are zero-copy; the structure is trusted (see ``check_csr``).
* The kernels release the GIL (``nogil``).  Calling them from several Python
  threads at once needs numba's ``omp`` or ``tbb`` threading layer; the
  ``workqueue`` fallback aborts on concurrent parallel regions.
* ``fastmath`` enables only reassociation and contraction (FMA), so row sums
  may be reordered and vectorised, but NaN and inf still propagate as IEEE
  754 says (no ``nnan``/``ninf`` flags).
* Work is split into row chunks of roughly equal nonzero count
  (:func:`row_partition`), not equal row count, so power-law row lengths do
  not leave threads idle.
* Accumulation happens in the output's dtype (float32 stays float32, as in
  scipy), through a typed ``zero`` passed by the caller.
* Products of fewer than ``SERIAL_WORK`` multiply-adds run on a serial
  kernel.  Starting a parallel region costs about 4 us (median, 2 threads),
  so on 2-D Poisson matrices the serial SpMV wins up to about 10k nonzeros
  and SpMM with 8 columns up to about 30k multiply-adds; and on a busy
  machine a parallel region waits for its slowest thread (a 1k-row CG
  solve took up to 100x longer while other processes ran).  The crossover
  is measured by ``python -m benchmarks spmv`` (its small-product rows,
  summary ``serial_crossover_work``).
"""

import numba
import numpy as np
from numba import njit, prange

# Reassociation and FMA contraction only: keeps NaN/inf semantics intact.
_FASTMATH = {"reassoc", "contract"}
_OPTS = dict(cache=True, nogil=True, fastmath=_FASTMATH)

# Products with fewer multiply-adds than this (nnz times the dense operand's
# columns) run serially; measured on 2 cores, see the module docstring.
SERIAL_WORK = 16384


@njit(cache=True, nogil=True)
def row_partition(indptr, n_chunks):
    """Split rows into ``n_chunks`` contiguous ranges of about equal nonzeros.

    Parameters
    ----------
    indptr : ndarray of int, shape (n_rows + 1,)
        CSR row pointer (signed).
    n_chunks : int
        Number of ranges wanted (at most one per row).

    Returns
    -------
    bounds : ndarray of int64, shape (n_chunks + 1,)
        Non-decreasing row boundaries; chunk ``c`` covers rows
        ``bounds[c]:bounds[c + 1]`` (possibly empty).
    """
    n_rows = indptr.shape[0] - 1
    nnz = np.int64(indptr[n_rows])
    n_chunks = max(1, min(n_chunks, n_rows))
    bounds = np.empty(n_chunks + 1, dtype=np.int64)
    bounds[0] = 0
    for c in range(1, n_chunks):
        bounds[c] = np.searchsorted(indptr, nnz * c // n_chunks)
    bounds[n_chunks] = n_rows
    return bounds


# Each product is written once, over a range of rows (or of output rows for the
# transposed products' reduction), as an inlined serial function; the
# parallel kernel runs it per row chunk under ``prange`` and the serial kernel
# over all rows.  Small products take the serial kernel (see
# ``SERIAL_WORK``): a parallel region costs microseconds to start and, on a
# busy machine, far more when a worker thread is descheduled at the barrier.


@njit(inline="always", **_OPTS)
def _spmv_rows(indptr, indices, data, x, y, start, stop, zero):
    """y[i] = (A @ x)[i] for rows start:stop."""
    for i in range(start, stop):
        acc = zero
        for j in range(indptr[i], indptr[i + 1]):
            acc += data[j] * x[indices[j]]
        y[i] = acc


@njit(inline="always", **_OPTS)
def _spmv_dot_rows(indptr, indices, data, x, y, start, stop, zero):
    """:func:`_spmv_rows` for square A, returning sum_i x[i] * y[i] over the rows."""
    dot = zero
    for i in range(start, stop):
        acc = zero
        for j in range(indptr[i], indptr[i + 1]):
            acc += data[j] * x[indices[j]]
        y[i] = acc
        dot += x[i] * acc
    return dot


@njit(parallel=True, **_OPTS)
def csr_spmv(indptr, indices, data, x, y, bounds, zero):
    """y = A @ x."""
    for c in prange(bounds.shape[0] - 1):
        _spmv_rows(indptr, indices, data, x, y, bounds[c], bounds[c + 1], zero)


@njit(**_OPTS)
def csr_spmv_serial(indptr, indices, data, x, y, zero):
    """y = A @ x on the calling thread."""
    _spmv_rows(indptr, indices, data, x, y, 0, y.shape[0], zero)


@njit(parallel=True, **_OPTS)
def csr_spmv_dot(indptr, indices, data, x, y, bounds, zero):
    """y = A @ x for square A, returning ``x . y`` (CG's curvature) from the same pass."""
    dot = zero
    for c in prange(bounds.shape[0] - 1):
        dot += _spmv_dot_rows(indptr, indices, data, x, y, bounds[c], bounds[c + 1], zero)
    return dot


@njit(**_OPTS)
def csr_spmv_dot_serial(indptr, indices, data, x, y, zero):
    """:func:`csr_spmv_dot` on the calling thread."""
    return _spmv_dot_rows(indptr, indices, data, x, y, 0, y.shape[0], zero)


@njit(inline="always", **_OPTS)
def _spmm_rows(indptr, indices, data, X, Y, start, stop, zero):
    k = X.shape[1]
    for i in range(start, stop):
        yi = Y[i]
        for t in range(k):
            yi[t] = zero
        for j in range(indptr[i], indptr[i + 1]):
            a = data[j]
            xr = X[indices[j]]
            for t in range(k):
                yi[t] += a * xr[t]


@njit(parallel=True, **_OPTS)
def csr_spmm(indptr, indices, data, X, Y, bounds, zero):
    """Y = A @ X for C-contiguous X of shape (n_cols, k).

    Accumulates straight into the output row (hot in L1) instead of a
    per-row temporary, whose allocation halved the speed at large k.
    """
    for c in prange(bounds.shape[0] - 1):
        _spmm_rows(indptr, indices, data, X, Y, bounds[c], bounds[c + 1], zero)


@njit(**_OPTS)
def csr_spmm_serial(indptr, indices, data, X, Y, zero):
    """Y = A @ X on the calling thread."""
    _spmm_rows(indptr, indices, data, X, Y, 0, Y.shape[0], zero)


@njit(inline="always", **_OPTS)
def _rspmv_rows(indptr, indices, data, x, buf, start, stop, zero):
    """Scatter rows start:stop of A.T @ x into buf (zeroed first)."""
    for t in range(buf.shape[0]):
        buf[t] = zero
    for i in range(start, stop):
        xi = x[i]
        for j in range(indptr[i], indptr[i + 1]):
            buf[indices[j]] += data[j] * xi


@njit(parallel=True, **_OPTS)
def csr_rspmv(indptr, indices, data, x, y, bounds, zero, scratch):
    """y = A.T @ x, scattering each row chunk into its own scratch row.

    ``scratch`` has shape (n_chunks - 1, n_cols): chunk 0 scatters into ``y``
    directly and chunk ``c > 0`` into ``scratch[c - 1]``; the rows are summed
    into ``y`` at the end.
    """
    n_chunks = bounds.shape[0] - 1
    n_cols = y.shape[0]
    for c in prange(n_chunks):
        _rspmv_rows(indptr, indices, data, x, y if c == 0 else scratch[c - 1], bounds[c], bounds[c + 1], zero)
    if n_chunks > 1:
        for t in prange(n_cols):
            acc = y[t]
            for c in range(n_chunks - 1):
                acc += scratch[c, t]
            y[t] = acc


@njit(**_OPTS)
def csr_rspmv_serial(indptr, indices, data, x, y, zero):
    """y = A.T @ x on the calling thread (the serial scatter)."""
    _rspmv_rows(indptr, indices, data, x, y, 0, x.shape[0], zero)


@njit(inline="always", **_OPTS)
def _rspmm_rows(indptr, indices, data, X, buf, start, stop, zero):
    k = X.shape[1]
    for r in range(buf.shape[0]):
        for t in range(k):
            buf[r, t] = zero
    for i in range(start, stop):
        xr = X[i]
        for j in range(indptr[i], indptr[i + 1]):
            a = data[j]
            br = buf[indices[j]]
            for t in range(k):
                br[t] += a * xr[t]


@njit(parallel=True, **_OPTS)
def csr_rspmm(indptr, indices, data, X, Y, bounds, zero, scratch):
    """Y = A.T @ X for X of shape (n_rows, k); scratch as in :func:`csr_rspmv`."""
    n_chunks = bounds.shape[0] - 1
    n_cols, k = Y.shape
    for c in prange(n_chunks):
        _rspmm_rows(indptr, indices, data, X, Y if c == 0 else scratch[c - 1], bounds[c], bounds[c + 1], zero)
    if n_chunks > 1:
        for r in prange(n_cols):
            for c in range(n_chunks - 1):
                for t in range(k):
                    Y[r, t] += scratch[c, r, t]


@njit(**_OPTS)
def csr_rspmm_serial(indptr, indices, data, X, Y, zero):
    """Y = A.T @ X on the calling thread."""
    _rspmm_rows(indptr, indices, data, X, Y, 0, X.shape[0], zero)


@njit(inline="always", **_OPTS)
def _sddmm_rows(indptr, indices, G, X, out, start, stop, zero):
    k = X.shape[1]
    for i in range(start, stop):
        gi = G[i]
        for j in range(indptr[i], indptr[i + 1]):
            xr = X[indices[j]]
            acc = zero
            for t in range(k):
                acc += gi[t] * xr[t]
            out[j] = acc


@njit(parallel=True, **_OPTS)
def csr_sddmm(indptr, indices, G, X, out, bounds, zero):
    """out[j] = G[i] . X[indices[j]] for every stored entry j of row i.

    The gradient of ``A @ X`` with respect to A's stored values, given the
    output gradient G (shape (n_rows, k)) and X (shape (n_cols, k)).
    """
    for c in prange(bounds.shape[0] - 1):
        _sddmm_rows(indptr, indices, G, X, out, bounds[c], bounds[c + 1], zero)


@njit(**_OPTS)
def csr_sddmm_serial(indptr, indices, G, X, out, zero):
    """:func:`csr_sddmm` on the calling thread."""
    _sddmm_rows(indptr, indices, G, X, out, 0, G.shape[0], zero)


def num_threads():
    """Threads numba's parallel kernels run on (``numba.get_num_threads``)."""
    return numba.get_num_threads()


def is_serial(work):
    """Whether a product of ``work`` multiply-adds should run serially."""
    return work < SERIAL_WORK or num_threads() == 1
