"""The CUDA kernels of sciml.sparse, run under the Numba CUDA simulator.

Run with ``NUMBA_ENABLE_CUDASIM=1 python -m pytest -m cudasim`` (the
variable must be set before numba is imported; ``.ci/run`` does this in a
second pytest process).  The same tests run on a real GPU when the variable
is unset and a GPU is present.  Matrices are tiny: the simulator runs every
CUDA thread as a Python thread.
"""

import numpy as np
import pytest
import scipy.sparse as sp
from numba import cuda

from sciml import data
from sciml.sparse import check_csr, rspmv, spmm, spmv

pytestmark = pytest.mark.cudasim

VALUE_DTYPES = [np.float32, np.float64]
INDEX_DTYPES = [np.int32, np.int64]


def rtol_for(dtype):
    return 2e-5 if np.dtype(dtype) == np.float32 else 1e-12


def assert_close(actual, expected, dtype):
    actual = actual.copy_to_host() if hasattr(actual, "copy_to_host") else np.asarray(actual)
    expected = np.asarray(expected, dtype=np.float64)
    scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=rtol_for(dtype), atol=rtol_for(dtype) * scale)


class DeviceCSR:
    """A minimal GPU CSR matrix (the duck type cupyx.scipy.sparse.csr_matrix fits)."""

    format = "csr"

    def __init__(self, A):
        self.indptr = cuda.to_device(A.indptr)
        self.indices = cuda.to_device(A.indices)
        self.data = cuda.to_device(A.data)
        self.shape = A.shape


def matrices():
    """Tiny matrices with empty rows, long rows, unsorted duplicates."""
    yield "power_law", data.power_law_csr(70, 50, mean_nnz_per_row=4, random_state=0)
    yield "unsorted_duplicates", data.random_csr(40, 30, nnz_per_row=6, random_state=1, sort=False)
    empty_rows = data.random_csr(30, 20, nnz_per_row=3, random_state=2).toarray()
    empty_rows[::3] = 0
    yield "empty_rows", sp.csr_array(empty_rows)
    yield "no_nonzeros", sp.csr_array((9, 7))


CASES = [
    pytest.param(A, vd, idx, id=f"{name}-{np.dtype(vd).name}-{np.dtype(idx).name}")
    for name, A in matrices()
    for vd in VALUE_DTYPES
    for idx in INDEX_DTYPES
]


def prepared(A, value_dtype, index_dtype):
    A = A.astype(value_dtype)
    A.indptr = A.indptr.astype(index_dtype)
    A.indices = A.indices.astype(index_dtype)
    return A, DeviceCSR(A)


@pytest.mark.parametrize("A, value_dtype, index_dtype", CASES)
def test_kernels_match_scipy(A, value_dtype, index_dtype):
    from sciml.sparse import _cuda

    A, dA = prepared(A, value_dtype, index_dtype)
    m, n = A.shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal(n).astype(value_dtype)
    z = rng.standard_normal(m).astype(value_dtype)
    X = rng.standard_normal((n, 3)).astype(value_dtype)
    Z = rng.standard_normal((m, 3)).astype(value_dtype)
    B = A.astype(np.float64)
    for kernel in ("scalar", "vector", "merge", "auto"):
        y = cuda.device_array(m, dtype=value_dtype)
        _cuda.spmv(dA.indptr, dA.indices, dA.data, cuda.to_device(x), y, kernel=kernel)
        assert_close(y, B @ x, value_dtype)
    for kernel in ("scalar", "merge", "auto"):  # row-per-thread and balanced scatter
        y = cuda.to_device(np.full(n, np.nan, dtype=value_dtype))
        _cuda.spmv(dA.indptr, dA.indices, dA.data, cuda.to_device(z), y, transpose=True, kernel=kernel)
        assert_close(y, B.T @ z, value_dtype)
    rows = np.repeat(np.arange(m), np.diff(A.indptr))
    for kernel in ("scalar", "merge", "auto"):  # (row, column) per thread and balanced
        Y = cuda.to_device(np.full((m, 3), np.nan, dtype=value_dtype))
        _cuda.spmm(dA.indptr, dA.indices, dA.data, cuda.to_device(X), Y, kernel=kernel)
        assert_close(Y, B @ X, value_dtype)
        Y = cuda.to_device(np.full((n, 3), np.nan, dtype=value_dtype))
        _cuda.spmm(dA.indptr, dA.indices, dA.data, cuda.to_device(Z), Y, transpose=True, kernel=kernel)
        assert_close(Y, B.T @ Z, value_dtype)
        grad = cuda.to_device(np.full(A.nnz, np.nan, dtype=value_dtype))
        _cuda.sddmm(dA.indptr, dA.indices, cuda.to_device(Z), cuda.to_device(X), grad, kernel=kernel)
        assert_close(grad, (Z[rows].astype(np.float64) * X[A.indices]).sum(axis=1), value_dtype)


@pytest.mark.parametrize("lanes", [1, 2, 8, 32])
def test_vector_kernel_any_lane_count(lanes, monkeypatch):
    from sciml.sparse import _cuda

    monkeypatch.setattr(_cuda, "LANES", lanes)
    A = data.power_law_csr(50, 40, mean_nnz_per_row=9, random_state=3)
    dA = DeviceCSR(A)
    x = np.random.default_rng(1).standard_normal(40)
    y = cuda.device_array(50)
    _cuda.spmv(dA.indptr, dA.indices, dA.data, cuda.to_device(x), y, kernel="vector")
    assert_close(y, A @ x, np.float64)


def csr_with_row_lengths(lengths, n_cols=9, seed=0):
    """A float64 CSR matrix with the given row lengths and random columns."""
    rng = np.random.default_rng(seed)
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    indices = rng.integers(0, n_cols, size=indptr[-1])
    return sp.csr_array((rng.standard_normal(indptr[-1]), indices, indptr), shape=(len(lengths), n_cols))


# Tiles of TILE = 4 threads x 3 items = 12 merge items; a row of length
# TILE - 1 is TILE items (its nonzeros and its end).
TILE = 12
MERGE_EDGE_CASES = {
    "one_row_over_many_tiles": [2, 5 * TILE + 7, 1],
    "rows_end_on_tile_boundaries": [TILE - 1] * 4,
    "rows_end_on_boundaries_after_offset": [TILE // 2 - 1] + [TILE - 1] * 3 + [2],
    "long_rows_back_to_back": [3 * TILE, 2 * TILE + 5, TILE - 1, 0, 4 * TILE],
    "empty_rows_at_both_ends": [0] * 20 + [3, 7, 1] + [0] * 25,
    "single_row": [3 * TILE + 4],
    "single_empty_row": [0],
    "no_nonzeros": [0] * 30,
    "short_rows": [1, 0, 2, 1, 1, 0, 0, 3, 1, 2, 0, 1] * 3,
}


@pytest.mark.parametrize("index_dtype", INDEX_DTYPES)
@pytest.mark.parametrize("value_dtype", VALUE_DTYPES)
@pytest.mark.parametrize("lengths", MERGE_EDGE_CASES.values(), ids=MERGE_EDGE_CASES.keys())
def test_merge_kernel_tile_edge_cases(lengths, value_dtype, index_dtype, monkeypatch):
    from sciml.sparse import _cuda

    monkeypatch.setattr(_cuda, "MERGE_BLOCK", 4)
    monkeypatch.setattr(_cuda, "MERGE_ITEMS", 3)
    A, dA = prepared(csr_with_row_lengths(lengths), value_dtype, index_dtype)
    x = np.random.default_rng(1).standard_normal(A.shape[1]).astype(value_dtype)
    y = cuda.to_device(np.full(A.shape[0], np.nan, dtype=value_dtype))  # every row must be written
    _cuda.spmv(dA.indptr, dA.indices, dA.data, cuda.to_device(x), y, kernel="merge")
    assert_close(y, A.astype(np.float64) @ x, value_dtype)


@pytest.mark.parametrize("items", [1, 3, 8])
@pytest.mark.parametrize("lengths", MERGE_EDGE_CASES.values(), ids=MERGE_EDGE_CASES.keys())
def test_balanced_kernels_edge_cases(lengths, items, monkeypatch):
    """Transposed SpMV, SpMM both ways and SDDMM with `items` nonzeros per
    thread, each thread starting from the row its binary search finds and
    stepping over empty rows."""
    from sciml.sparse import _cuda

    monkeypatch.setattr(_cuda, "SCATTER_ITEMS", items)
    A = csr_with_row_lengths(lengths)
    dA = DeviceCSR(A)
    m, n = A.shape
    rng = np.random.default_rng(3)
    z, X, Z = rng.standard_normal(m), rng.standard_normal((n, 3)), rng.standard_normal((m, 3))
    y = cuda.to_device(np.full(n, np.nan))
    _cuda.spmv(dA.indptr, dA.indices, dA.data, cuda.to_device(z), y, transpose=True, kernel="merge")
    assert_close(y, A.T @ z, np.float64)
    Y = cuda.to_device(np.full((m, 3), np.nan))
    _cuda.spmm(dA.indptr, dA.indices, dA.data, cuda.to_device(X), Y, kernel="merge")
    assert_close(Y, A @ X, np.float64)
    Y = cuda.to_device(np.full((n, 3), np.nan))
    _cuda.spmm(dA.indptr, dA.indices, dA.data, cuda.to_device(Z), Y, transpose=True, kernel="merge")
    assert_close(Y, A.T @ Z, np.float64)
    grad = cuda.to_device(np.full(A.nnz, np.nan))
    _cuda.sddmm(dA.indptr, dA.indices, cuda.to_device(Z), cuda.to_device(X), grad, kernel="merge")
    rows = np.repeat(np.arange(m), np.diff(A.indptr))
    assert_close(grad, (Z[rows] * X[A.indices]).sum(axis=1), np.float64)


@pytest.mark.parametrize("block, items", [(8, 2), (16, 5), (32, 7)])
def test_merge_kernel_tile_shapes_and_workspace(block, items, monkeypatch):
    from sciml.sparse import _cuda

    monkeypatch.setattr(_cuda, "MERGE_BLOCK", block)
    monkeypatch.setattr(_cuda, "MERGE_ITEMS", items)
    A = data.power_law_csr(90, 40, mean_nnz_per_row=6, random_state=7)
    dA = DeviceCSR(A)
    x = np.random.default_rng(2).standard_normal(40)
    size = _cuda.merge_workspace_size(A.shape[0], A.nnz)
    assert size == -(-(A.shape[0] + A.nnz) // (block * items)) + 1
    workspace = cuda.device_array(size + 3, dtype=np.int64)  # larger is fine
    y = cuda.device_array(A.shape[0])
    _cuda.spmv(dA.indptr, dA.indices, dA.data, cuda.to_device(x), y, kernel="merge", workspace=workspace)
    assert_close(y, A @ x, np.float64)
    with pytest.raises(ValueError, match=f"at least {size} entries"):
        _cuda.spmv(dA.indptr, dA.indices, dA.data, cuda.to_device(x), y, kernel="merge",
                   workspace=cuda.device_array(size - 1, dtype=np.int64))


def test_auto_kernel_picks_merge_for_long_rows_and_vector_for_pde(monkeypatch):
    from sciml.sparse import _cuda

    irregular = data.power_law_csr(200, mean_nnz_per_row=10, random_state=0)
    assert np.diff(irregular.indptr).max() > _cuda.LONG_ROW
    poisson = data.poisson_2d(8)
    for A, expected in ((irregular, "merge"), (poisson, "vector")):
        dA = DeviceCSR(A)
        assert _cuda.csr_summary(dA.indptr, A.nnz) == (0, A.nnz, np.diff(A.indptr).max())
        assert _cuda._resolve_kernel("auto", dA.indptr, A.nnz, 0) == expected

    # The public call takes the same choice, from the summary it read once
    # for its checks, and allocates the merge kernel's workspace itself.
    chosen = []
    choose = _cuda.kernel_for
    monkeypatch.setattr(_cuda, "kernel_for", lambda *args: chosen.append(choose(*args)) or chosen[-1])
    dA = DeviceCSR(irregular)
    x = np.random.default_rng(3).standard_normal(irregular.shape[1])
    assert_close(spmv(dA, cuda.to_device(x)), irregular @ x, np.float64)
    assert chosen == ["merge"]


def test_csr_summary_is_cached_per_matrix_in_a_bounded_cache(monkeypatch):
    from sciml.sparse import _cuda

    monkeypatch.setattr(_cuda, "_csr_summaries", {})
    monkeypatch.setattr(_cuda, "_SUMMARY_CACHE_SIZE", 2)
    matrices = [DeviceCSR(data.power_law_csr(60, mean_nnz_per_row=5, random_state=seed)) for seed in range(3)]
    for dA in matrices:
        n_rows = dA.shape[0]
        nnz = dA.indices.shape[0]
        expected = (0, nnz, np.diff(dA.indptr.copy_to_host()).max())
        assert _cuda.csr_summary(dA.indptr, nnz) == expected
        assert (_cuda._device_address(dA.indptr), n_rows, nnz) in _cuda._csr_summaries
    assert len(_cuda._csr_summaries) == 2  # the oldest entry went
    # A second look-up is a dictionary hit: it launches nothing and makes no stream.
    kernel = _cuda._csr_summary_kernel
    monkeypatch.setattr(_cuda, "_csr_summary_kernel", None)

    def no_stream():
        raise AssertionError("a cache hit made a stream")

    assert _cuda.csr_summary(matrices[-1].indptr, matrices[-1].indices.shape[0], no_stream) == expected
    # On a miss a stream factory is called once, and the summary computed on its stream.
    monkeypatch.setattr(_cuda, "_csr_summary_kernel", kernel)
    made = []
    dA = matrices[0]
    assert _cuda.csr_summary(dA.indptr, dA.indices.shape[0], lambda: made.append(1) or 0, refresh=True) == (
        0, dA.indices.shape[0], np.diff(dA.indptr.copy_to_host()).max())
    assert made == [1]


def test_padded_device_matrix_uses_indptr_like_the_cpu():
    """Arrays longer than indptr[-1] (scipy allows it): only the first
    indptr[-1] entries count, on the device as on the CPU."""
    A = data.power_law_csr(40, 30, mean_nnz_per_row=6, random_state=8)
    padded = DeviceCSR(A)
    padded.indices = cuda.to_device(np.concatenate([A.indices, np.full(7, 10**6, A.indices.dtype)]))
    padded.data = cuda.to_device(np.concatenate([A.data, np.full(7, np.nan)]))
    rng = np.random.default_rng(4)
    x, z = rng.standard_normal(30), rng.standard_normal(40)
    assert_close(spmv(padded, cuda.to_device(x)), A @ x, np.float64)
    assert_close(rspmv(padded, cuda.to_device(z)), A.T @ z, np.float64)
    X = rng.standard_normal((30, 3))
    assert_close(spmm(padded, cuda.to_device(X)), A @ X, np.float64)
    values = rng.standard_normal(A.nnz)
    assert_close(spmv(padded, cuda.to_device(x), values=cuda.to_device(values)),
                 sp.csr_array((values, A.indices, A.indptr), shape=A.shape) @ x, np.float64)
    check_csr(padded)


def test_public_api_dispatches_device_arrays_and_returns_device_arrays():
    A = data.random_csr(25, 18, nnz_per_row=4, random_state=4)
    dA = DeviceCSR(A)
    rng = np.random.default_rng(2)
    x, z = rng.standard_normal(18), rng.standard_normal(25)
    y = spmv(dA, cuda.to_device(x))
    assert hasattr(y, "copy_to_host")  # a device array, never silently copied back
    assert_close(y, A @ x, np.float64)
    assert_close(rspmv(dA, cuda.to_device(z)), A.T @ z, np.float64)
    X = rng.standard_normal((18, 2))
    assert_close(spmm(dA, cuda.to_device(X)), A @ X, np.float64)
    out = cuda.device_array(25)
    assert spmv(dA, cuda.to_device(x), out=out, backend="cuda") is out
    assert_close(out, A @ x, np.float64)
    values = rng.standard_normal(A.nnz)
    B = sp.csr_array((values, A.indices, A.indptr), shape=A.shape)
    assert_close(spmv(dA, cuda.to_device(x), values=cuda.to_device(values)), B @ x, np.float64)


def test_device_errors_name_the_problem():
    A = data.random_csr(12, 10, nnz_per_row=3, random_state=5)
    dA = DeviceCSR(A)
    with pytest.raises(ValueError, match="mismatched devices"):
        spmv(A, cuda.to_device(np.ones(10)))
    with pytest.raises(ValueError, match="mismatched devices"):
        spmv(dA, np.ones(10))
    with pytest.raises(ValueError, match="backend='cpu' but A is on the CUDA"):
        spmv(dA, cuda.to_device(np.ones(10)), backend="cpu")
    with pytest.raises(TypeError, match="x has dtype float32 but A has dtype float64"):
        spmv(dA, cuda.to_device(np.ones(10, dtype=np.float32)))
    with pytest.raises(ValueError, match="shape mismatch"):
        spmv(dA, cuda.to_device(np.ones(11)))
    x = cuda.to_device(np.ones(10))
    with pytest.raises(ValueError, match="overlap"):
        spmv(DeviceCSR(sp.csr_array(np.eye(10))), x, out=x)


def test_check_csr_on_device_matrix():
    A = data.random_csr(12, 10, nnz_per_row=3, random_state=6)
    check_csr(DeviceCSR(A))
    bad = A.copy()
    bad.indices[0] = 10
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 10\)"):
        check_csr(DeviceCSR(bad))
    # indptr's ends are checked on a device matrix too (read once per matrix).
    for position, value, message in ((0, 1, r"indptr\[0\] must be 0"), (-1, A.nnz + 1, "does not match len")):
        wrong = A.copy()
        wrong.indptr[position] = value
        with pytest.raises(ValueError, match=message):
            check_csr(DeviceCSR(wrong))
    # check_csr reads indptr again rather than trust the cached summary of
    # whatever matrix held this memory before.
    dA = DeviceCSR(A)
    check_csr(dA)
    wrong = A.indptr.copy()
    wrong[-1] = A.nnz + 1
    dA.indptr.copy_to_device(wrong)
    with pytest.raises(ValueError, match="does not match len"):
        check_csr(dA)
