"""sciml.sparse on the CPU: agreement with scipy, autograd, bad input."""

import os

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sciml import data
from sciml.sparse import check_csr, rspmv, spmm, spmv, to_torch_csr

VALUE_DTYPES = [np.float32, np.float64]
INDEX_DTYPES = [np.int32, np.int64]


def rtol_for(dtype):
    return 2e-5 if np.dtype(dtype) == np.float32 else 1e-12


def assert_close(actual, expected, dtype):
    """Compare relative to the result's scale (sums cancel, so use atol too)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=rtol_for(dtype), atol=rtol_for(dtype) * scale)


def with_index_dtype(A, index_dtype):
    A = A.copy()
    A.indptr = A.indptr.astype(index_dtype)
    A.indices = A.indices.astype(index_dtype)
    return A


@st.composite
def csr_matrices(draw, max_dim=40):
    """CSR matrices with empty rows, unsorted and duplicate column indices."""
    n_rows = draw(st.integers(0, max_dim))
    n_cols = draw(st.integers(0, max_dim))
    lengths = draw(st.lists(st.integers(0, 6 if n_cols else 0), min_size=n_rows, max_size=n_rows))
    nnz = sum(lengths)
    indices = draw(st.lists(st.integers(0, max(0, n_cols - 1)), min_size=nnz, max_size=nnz))
    values = draw(
        st.lists(st.floats(-1e3, 1e3, allow_nan=False, width=32), min_size=nnz, max_size=nnz)
    )
    value_dtype = draw(st.sampled_from(VALUE_DTYPES))
    index_dtype = draw(st.sampled_from(INDEX_DTYPES))
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64).astype(index_dtype)
    A = sp.csr_array(
        (np.array(values, dtype=value_dtype), np.array(indices, dtype=index_dtype), indptr),
        shape=(n_rows, n_cols),
    )
    if draw(st.booleans()):
        # Arrays longer than indptr[-1]: only the first nnz entries count.
        A.data = np.concatenate([A.data, np.full(3, np.nan, dtype=value_dtype)])
        A.indices = np.concatenate([A.indices, np.zeros(3, dtype=index_dtype)])
    return A


def dense_reference(A, values=None):
    """Dense float64 copy; duplicates are summed, as they must be."""
    nnz = int(A.indptr[-1])
    data = (A.data[:nnz] if values is None else values).astype(np.float64)
    rows = np.repeat(np.arange(A.shape[0]), np.diff(A.indptr))
    D = np.zeros(A.shape)
    np.add.at(D, (rows, A.indices[:nnz]), data)
    return D


def check_products_against_dense(A, seed, k):
    rng = np.random.default_rng(seed)
    dtype = A.dtype
    D = dense_reference(A)
    m, n = A.shape
    x, z = rng.standard_normal(n).astype(dtype), rng.standard_normal(m).astype(dtype)
    X, Z = rng.standard_normal((n, k)).astype(dtype), rng.standard_normal((m, k)).astype(dtype)

    y = spmv(A, x)
    assert y.dtype == dtype and y.shape == (m,)
    assert_close(y, D @ x, dtype)
    assert_close(spmv(A, z, transpose=True), D.T @ z, dtype)
    assert_close(rspmv(A, z), D.T @ z, dtype)
    Y = spmm(A, X)
    assert Y.dtype == dtype and Y.shape == (m, k)
    assert_close(Y, D @ X, dtype)
    assert_close(spmm(A, Z, transpose=True), D.T @ Z, dtype)

    # Replacement values, numpy and torch (no grad): the pattern stays A's.
    values = rng.standard_normal(int(A.indptr[-1])).astype(dtype)
    V = dense_reference(A, values)
    assert_close(spmv(A, x, values=values), V @ x, dtype)
    assert_close(spmm(A, Z, transpose=True, values=values), V.T @ Z, dtype)
    y_t = spmv(A, torch.from_numpy(x), values=torch.from_numpy(values))
    assert isinstance(y_t, torch.Tensor)
    assert_close(y_t.numpy(), V @ x, dtype)


@settings(max_examples=60, deadline=None)
@given(A=csr_matrices(), seed=st.integers(0, 2**32 - 1), k=st.integers(0, 5))
def test_products_match_dense_reference(A, seed, k):
    check_products_against_dense(A, seed, k)


@pytest.mark.slow
@settings(max_examples=2000, deadline=None)
@given(A=csr_matrices(max_dim=200), seed=st.integers(0, 2**32 - 1), k=st.integers(1, 70))
def test_products_match_dense_reference_deep(A, seed, k):
    check_products_against_dense(A, seed, k)


@pytest.mark.parametrize("value_dtype", VALUE_DTYPES)
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES)
@pytest.mark.parametrize("matrix", ["poisson", "random", "power_law", "unsorted_duplicates"])
def test_agrees_with_scipy_on_generated_matrices(matrix, value_dtype, index_dtype):
    if matrix == "poisson":
        A = data.poisson_2d(30)
    elif matrix == "random":
        A = data.random_csr(700, 500, nnz_per_row=7, random_state=1)
    elif matrix == "power_law":
        A = data.power_law_csr(2000, random_state=2)
    else:
        A = data.random_csr(600, 300, nnz_per_row=12, random_state=3, sort=False)
        assert not A.has_canonical_format  # the point of this case
    A = with_index_dtype(A.astype(value_dtype), index_dtype)
    rng = np.random.default_rng(0)
    m, n = A.shape
    x = rng.standard_normal(n).astype(value_dtype)
    z = rng.standard_normal(m).astype(value_dtype)
    X = rng.standard_normal((n, 9)).astype(value_dtype)
    Z = rng.standard_normal((m, 9)).astype(value_dtype)
    B = A.astype(np.float64)  # reference in float64
    assert_close(spmv(A, x), B @ x.astype(np.float64), value_dtype)
    assert_close(rspmv(A, z), B.T @ z.astype(np.float64), value_dtype)
    assert_close(spmm(A, X), B @ X.astype(np.float64), value_dtype)
    assert_close(spmm(A, Z, transpose=True), B.T @ Z.astype(np.float64), value_dtype)


@pytest.mark.parametrize("dtype", VALUE_DTYPES)
def test_adjoint_identity(dtype):
    A = data.random_csr(400, 250, nnz_per_row=8, random_state=4, dtype=dtype)
    rng = np.random.default_rng(1)
    x = rng.standard_normal(250).astype(dtype)
    y = rng.standard_normal(400).astype(dtype)
    lhs = float(np.dot(spmv(A, x).astype(np.float64), y))
    rhs = float(np.dot(x, rspmv(A, y).astype(np.float64)))
    assert lhs == pytest.approx(rhs, rel=float(1e3 * np.finfo(dtype).eps))


def test_transposed_products_use_several_buffers_correctly(monkeypatch):
    """Force many private scatter buffers (more than this machine's threads)."""
    from sciml.sparse import _cpu

    monkeypatch.setattr(_cpu, "num_threads", lambda: 7)
    monkeypatch.setattr(_cpu, "SERIAL_WORK", 0)
    A = data.power_law_csr(3000, random_state=5)
    rng = np.random.default_rng(2)
    z, Z = rng.standard_normal(3000), rng.standard_normal((3000, 4))
    assert_close(rspmv(A, z), A.T @ z, np.float64)
    assert_close(spmm(A, Z, transpose=True), A.T @ Z, np.float64)
    assert_close(spmv(A, z), A @ z, np.float64)


def test_transposed_scratch_is_capped(monkeypatch):
    """A tiny budget falls back to one buffer (serial scatter), still exact."""
    from sciml.sparse import _api, _cpu

    monkeypatch.setattr(_cpu, "num_threads", lambda: 8)
    monkeypatch.setattr(_cpu, "SERIAL_WORK", 0)
    monkeypatch.setattr(_api, "_SCRATCH_BUDGET_BYTES", 1)
    A = data.random_csr(500, 400, nnz_per_row=3, random_state=6)
    assert _api._scratch_chunks(_api._as_csr(A), 64, 8) < 8
    Z = np.random.default_rng(3).standard_normal((500, 64))
    assert_close(spmm(A, Z, transpose=True), A.T @ Z, np.float64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("matrix", ["random", "power_law", "empty_rows"])
def test_serial_and_parallel_kernels_agree_with_scipy(monkeypatch, matrix, dtype):
    """Small products run serially (below _cpu.SERIAL_WORK): both paths, every product."""
    from sciml.sparse import _cpu

    if matrix == "random":
        A = data.random_csr(300, 200, nnz_per_row=5, random_state=7, dtype=dtype)
    elif matrix == "power_law":
        A = data.power_law_csr(400, random_state=8).astype(dtype)
    else:
        A = data.random_csr(300, 200, nnz_per_row=5, random_state=9, dtype=dtype).tolil()
        A[::3] = 0
        A = sp.csr_array(A)
    rng = np.random.default_rng(10)
    x, z = rng.standard_normal(A.shape[1]).astype(dtype), rng.standard_normal(A.shape[0]).astype(dtype)
    X, Z = rng.standard_normal((A.shape[1], 3)).astype(dtype), rng.standard_normal((A.shape[0], 3)).astype(dtype)
    expected = [A @ x, A.T @ z, A @ X, A.T @ Z]
    results = {}
    for path, serial_work in (("serial", 10**12), ("parallel", 0)):
        monkeypatch.setattr(_cpu, "SERIAL_WORK", serial_work)
        monkeypatch.setattr(_cpu, "num_threads", lambda: 3)  # uneven chunks, whatever this machine has
        results[path] = [spmv(A, x), rspmv(A, z), spmm(A, X), spmm(A, Z, transpose=True)]
        for got, want in zip(results[path], expected):
            assert got.dtype == dtype
            assert_close(got, want, dtype)
        # the values gradient of <G, A X> goes through the SDDMM kernel
        values = torch.from_numpy(A.data.copy()).requires_grad_(True)
        G = torch.from_numpy(rng.standard_normal((A.shape[0], 3)).astype(dtype))
        (spmm(to_torch_csr(A), torch.from_numpy(X), values=values) * G).sum().backward()
        rows = np.repeat(np.arange(A.shape[0]), np.diff(A.indptr))
        want = np.einsum("jk,jk->j", G.numpy()[rows], X[A.indices])
        assert_close(values.grad.numpy(), want, dtype)
    for a, b in zip(results["serial"], results["parallel"]):
        assert_close(a, b, dtype)


def test_host_matrix_description_is_cached_safely():
    """spmv caches a scipy matrix's validated description; what a user changes still counts."""
    import gc
    import weakref

    from sciml.sparse import _api

    A = data.random_csr(50, 40, nnz_per_row=4, random_state=11)
    x = np.random.default_rng(12).standard_normal(40)
    assert_close(spmv(A, x), A @ x, np.float64)
    assert _api._as_csr(A) is _api._as_csr(A)  # described once
    A.data *= 2.0  # values written in place: the same arrays, the new values
    assert_close(spmv(A, x), A @ x, np.float64)
    A.data = A.data[::-1].copy()  # a new array: described again
    assert_close(spmv(A, x), A @ x, np.float64)
    A.indptr[-1] = A.nnz + 5  # structure corrupted in place: the O(1) checks still run
    with pytest.raises(ValueError, match="does not match len"):
        spmv(A, x)
    # The cache does not keep a deleted matrix's arrays alive.
    B = data.random_csr(30, 30, nnz_per_row=3, random_state=13)
    spmv(B, np.ones(30))
    values = weakref.ref(B.data)
    del B
    gc.collect()
    assert values() is None


def test_kernels_stay_in_bounds_as_plain_python():
    """With NUMBA_DISABLE_JIT every kernel runs as Python, whose indexing is bounds-checked:
    tall and wide matrices on both paths (the compiled kernels skip bounds checks)."""
    import subprocess
    import sys

    code = """
import numpy as np, scipy.sparse as sp
from sciml import data
from sciml.sparse import _cpu, spmm, spmv
from sciml.sparse._api import HostOperator
for work in (10**12, 0):
    _cpu.SERIAL_WORK = work
    _cpu.num_threads = lambda: 3
    for shape in ((40, 3), (3, 40), (25, 25)):
        A = data.random_csr(*shape, nnz_per_row=2, random_state=0)
        x, z = np.ones(shape[1]), np.ones(shape[0])
        X, Z = np.ones((shape[1], 2)), np.ones((shape[0], 2))
        for got, want in ((spmv(A, x), A @ x), (spmv(A, z, transpose=True), A.T @ z),
                          (spmm(A, X), A @ X), (spmm(A, Z, transpose=True), A.T @ Z),
                          (HostOperator(A).matvec(x), A @ x)):
            assert np.allclose(got, want), shape
        if shape[0] == shape[1]:
            y = np.empty(shape[0])
            assert np.isclose(HostOperator(A).matvec_dot(x, y), x @ (A @ x))
print("ok")
"""
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-2000:]


def test_host_cache_tolerates_threads():
    """Products from several threads (they release the GIL) evict and forget cache entries concurrently."""
    import sys
    import threading

    errors = []

    def work(seed):
        mats = [sp.csr_array(np.eye(4) * (seed + 1)) for _ in range(20)]  # more than the cache holds
        try:
            for i in range(20000):
                spmv(mats[i % 20], np.ones(4))
        except Exception as exc:  # noqa: BLE001 (collected for the assertion)
            errors.append(exc)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert not errors, errors[:3]


@pytest.mark.parametrize("shape", [(1, 7), (7, 1), (1, 1)])
def test_degenerate_shapes(shape):
    A = sp.random_array(shape, density=1.0, format="csr", rng=np.random.default_rng(0))
    x = np.arange(1.0, shape[1] + 1)
    z = np.arange(1.0, shape[0] + 1)
    assert_close(spmv(A, x), A @ x, np.float64)
    assert_close(rspmv(A, z), A.T @ z, np.float64)
    assert_close(spmm(A, x[:, None]), A @ x[:, None], np.float64)


def test_zero_nonzeros_gives_zeros_even_in_dirty_out():
    A = sp.csr_array((5, 3))
    out = np.full(5, 7.0)
    assert spmv(A, np.ones(3), out=out) is out
    np.testing.assert_array_equal(out, 0.0)
    out_t = np.full(3, 7.0)
    np.testing.assert_array_equal(rspmv(A, np.ones(5), out=out_t), 0.0)
    np.testing.assert_array_equal(spmm(A, np.ones((3, 2))), np.zeros((5, 2)))


def test_out_is_reused_and_returned():
    A = data.poisson_2d(8)
    x = np.random.default_rng(0).standard_normal(64)
    out = np.full(64, np.nan)
    assert spmv(A, x, out=out) is out
    assert_close(out, A @ x, np.float64)
    Out = np.full((64, 3), np.nan)
    assert spmm(A, np.ones((64, 3)), out=Out) is Out
    assert_close(Out, A @ np.ones((64, 3)), np.float64)


def test_nan_and_inf_propagate_as_ieee():
    A = sp.csr_array(np.array([[1.0, 0.0, 2.0], [0.0, 3.0, 0.0], [0.0, 0.0, 0.0]]))
    x = np.array([np.nan, 1.0, np.inf])
    y = spmv(A, x)
    assert np.isnan(y[0])  # nan * 1 + inf * 2
    assert y[1] == 3.0
    assert y[2] == 0.0  # empty row: no stored entry touches the nan
    # A stored zero times inf is nan, as in IEEE and scipy.
    B = sp.csr_array((np.array([0.0]), np.array([0]), np.array([0, 1])), shape=(1, 1))
    assert np.isnan(spmv(B, np.array([np.inf]))[0])
    assert np.isnan(spmm(A, np.array([[np.nan], [1.0], [1.0]]))[0, 0])


def test_csr_matrix_class_is_accepted():
    A = sp.csr_matrix(data.poisson_2d(5))
    x = np.ones(25)
    assert_close(spmv(A, x), A @ x, np.float64)


# ---------------------------------------------------------------- torch


def test_torch_and_scipy_inputs_reach_the_kernel_zero_copy(monkeypatch):
    from sciml.sparse import _cpu

    seen = {}
    real = _cpu.csr_spmv

    def spy(indptr, indices, data, x, y, bounds, zero):
        seen.update(indptr=indptr, indices=indices, data=data, x=x, y=y)
        return real(indptr, indices, data, x, y, bounds, zero)

    monkeypatch.setattr(_cpu, "csr_spmv", spy)
    monkeypatch.setattr(_cpu, "SERIAL_WORK", 0)  # the parallel kernel, even for this small matrix
    monkeypatch.setattr(_cpu, "num_threads", lambda: 2)
    A = data.poisson_2d(5)
    tA = to_torch_csr(A)
    x = torch.ones(25, dtype=torch.float64)
    out = torch.empty(25, dtype=torch.float64)
    spmv(tA, x, out=out)
    assert np.shares_memory(seen["x"], x.numpy()) and np.shares_memory(seen["y"], out.numpy())
    assert np.shares_memory(seen["data"], A.data) and np.shares_memory(seen["indices"], A.indices)
    assert np.shares_memory(seen["indptr"], A.indptr)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torch_dense_operand_is_zero_copy_and_returns_torch(dtype):
    A = data.poisson_2d(6).astype(np.float32 if dtype == torch.float32 else np.float64)
    x = torch.randn(36, dtype=dtype, generator=torch.Generator().manual_seed(0))
    out = torch.empty(36, dtype=dtype)
    y = spmv(A, x, out=out)
    assert y is out
    assert_close(y.numpy(), A @ x.numpy(), A.dtype)
    Y = spmm(A, x.reshape(36, 1))
    assert isinstance(Y, torch.Tensor) and Y.dtype == dtype
    assert_close(Y.numpy(), A @ x.numpy()[:, None], A.dtype)


def test_torch_sparse_csr_matrix_and_numpy_operand():
    A = data.random_csr(50, 30, nnz_per_row=4, random_state=0)
    tA = to_torch_csr(A)
    x = np.random.default_rng(0).standard_normal(30)
    y = spmv(tA, x)
    assert isinstance(y, np.ndarray)
    assert_close(y, A @ x, np.float64)
    assert_close(spmv(tA, torch.from_numpy(x)).numpy(), A @ x, np.float64)


def _gradcheck_problem(seed=0):
    A = data.random_csr(12, 9, nnz_per_row=3, random_state=seed, sort=False)
    values = torch.tensor(A.data, requires_grad=True)
    return A, values


@pytest.mark.parametrize("transpose", [False, True])
def test_spmv_gradcheck(transpose):
    A, values = _gradcheck_problem()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(A.shape[0] if transpose else A.shape[1], dtype=torch.float64, generator=gen,
                    requires_grad=True)
    assert torch.autograd.gradcheck(lambda v, x: spmv(A, x, values=v, transpose=transpose), (values, x))


@pytest.mark.parametrize("transpose", [False, True])
def test_spmm_gradcheck(transpose):
    A, values = _gradcheck_problem(1)
    gen = torch.Generator().manual_seed(1)
    X = torch.randn(A.shape[0] if transpose else A.shape[1], 4, dtype=torch.float64, generator=gen,
                    requires_grad=True)
    assert torch.autograd.gradcheck(lambda v, X: spmm(A, X, values=v, transpose=transpose), (values, X))


def test_gradient_only_for_dense_operand_matches_dense_autograd():
    A = data.poisson_2d(4)
    D = torch.from_numpy(A.toarray())
    x = torch.randn(16, dtype=torch.float64, generator=torch.Generator().manual_seed(2), requires_grad=True)
    (spmv(A, x) ** 2).sum().backward()
    x2 = x.detach().clone().requires_grad_(True)
    ((D @ x2) ** 2).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)


def test_values_gradient_matches_dense_autograd():
    """d/dvalues of a learned sparse operator, against a dense scatter."""
    A, values = _gradcheck_problem(3)
    X = torch.randn(A.shape[1], 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    loss = spmm(A, X, values=values).square().sum()
    loss.backward()
    rows = np.repeat(np.arange(A.shape[0]), np.diff(A.indptr))
    v2 = values.detach().clone().requires_grad_(True)
    dense = torch.zeros(A.shape, dtype=torch.float64).index_put(
        (torch.from_numpy(rows), torch.from_numpy(A.indices.astype(np.int64))), v2, accumulate=True
    )
    (dense @ X).square().sum().backward()
    torch.testing.assert_close(values.grad, v2.grad)


def test_no_grad_path_under_no_grad_context():
    A = data.poisson_2d(3)
    x = torch.ones(9, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        y = spmv(A, x)
    assert not y.requires_grad


# ---------------------------------------------------------------- bad input


@pytest.fixture
def A():
    return data.poisson_2d(4)  # 16 x 16 float64


def test_non_csr_scipy_formats_are_refused(A):
    with pytest.raises(TypeError, match=r"COO format.*A\.tocsr\(\)"):
        spmv(A.tocoo(), np.ones(16))
    with pytest.raises(TypeError, match="CSC format"):
        spmm(A.tocsc(), np.ones((16, 2)))


def test_dense_and_foreign_A_are_refused():
    with pytest.raises(TypeError, match="sparse CSR"):
        spmv(np.eye(3), np.ones(3))
    with pytest.raises(TypeError, match="torch.sparse_csr"):
        spmv(torch.eye(3).to_sparse_coo(), torch.ones(3))
    with pytest.raises(TypeError, match="got list"):
        spmv([[1.0]], np.ones(1))


def test_shape_mismatch(A):
    with pytest.raises(ValueError, match=r"shape mismatch.*\(16, 16\).*\(15,\)"):
        spmv(A, np.ones(15))
    with pytest.raises(ValueError, match="shape mismatch"):
        spmm(A, np.ones((15, 2)))
    with pytest.raises(ValueError, match="must be 1-D.*use spmm"):
        spmv(A, np.ones((16, 2)))
    with pytest.raises(ValueError, match="must be 2-D.*use spmv"):
        spmm(A, np.ones(16))


def test_dtype_problems(A):
    with pytest.raises(TypeError, match="x has dtype float32 but A has dtype float64"):
        spmv(A, np.ones(16, dtype=np.float32))
    with pytest.raises(TypeError, match="x has dtype int64"):
        spmv(A, np.ones(16, dtype=np.int64))
    with pytest.raises(TypeError, match="supports float32 and float64"):
        spmv(A.astype(np.int64), np.ones(16))
    with pytest.raises(TypeError, match="complex128"):
        spmv(A.astype(np.complex128), np.ones(16))
    with pytest.raises(TypeError, match="x has dtype torch.bfloat16|x has dtype bfloat16"):
        spmv(A, torch.ones(16, dtype=torch.bfloat16))


def test_non_contiguous_inputs(A):
    with pytest.raises(ValueError, match="C-contiguous"):
        spmv(A, np.ones(32)[::2])
    with pytest.raises(ValueError, match="C-contiguous"):
        spmm(A, np.asfortranarray(np.ones((16, 3))))
    with pytest.raises(ValueError, match="C-contiguous"):
        spmm(A, torch.ones(3, 16, dtype=torch.float64).T)


def test_bad_out(A):
    x = np.ones(16)
    with pytest.raises(ValueError, match=r"out has shape \(15,\)"):
        spmv(A, x, out=np.empty(15))
    with pytest.raises(TypeError, match="out has dtype float32"):
        spmv(A, x, out=np.empty(16, dtype=np.float32))
    with pytest.raises(ValueError, match="overlap"):
        spmv(A, x, out=x)
    with pytest.raises(TypeError, match="out is a numpy array but the dense operand is torch"):
        spmv(A, torch.ones(16, dtype=torch.float64), out=np.empty(16))
    with pytest.raises(TypeError, match="out= is not supported when gradients"):
        spmv(A, torch.ones(16, dtype=torch.float64, requires_grad=True), out=torch.empty(16, dtype=torch.float64))


def test_out_requiring_grad_is_refused(A):
    x = torch.ones(16, dtype=torch.float64)
    with pytest.raises(TypeError, match="out= requires grad"):
        spmv(A, x, out=torch.zeros(16, dtype=torch.float64, requires_grad=True))
    with torch.no_grad():
        spmv(A, x, out=torch.zeros(16, dtype=torch.float64, requires_grad=True))


def test_out_overwriting_a_saved_tensor_is_caught_by_autograd(A):
    """Writing into a tensor that autograd saved must not corrupt gradients."""
    w = torch.ones(16, dtype=torch.float64, requires_grad=True)
    buf = torch.ones(16, dtype=torch.float64)
    loss = (w * buf).sum()  # saves buf for backward
    spmv(A, torch.ones(16, dtype=torch.float64), out=buf)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_out_must_not_overlap_the_index_arrays():
    A = data.poisson_2d(4)
    indptr = A.indptr.astype(np.int64)  # 17 int64 entries: view 16 of them as 8 float64 rows
    alias = indptr[:16].view(np.float64)[:8]
    first_rows = sp.csr_array((A.data, A.indices.astype(np.int64), indptr[:9]), shape=(8, 16))
    with pytest.raises(ValueError, match="overlap"):
        spmv(first_rows, np.ones(16), out=alias)


def test_bad_values(A):
    with pytest.raises(ValueError, match="values"):
        spmv(A, np.ones(16), values=np.ones(A.nnz - 1))
    with pytest.raises(TypeError, match="values is a torch array but the dense operand is numpy"):
        spmv(A, np.ones(16), values=torch.ones(A.nnz, dtype=torch.float64))
    for requires_grad in (False, True):
        x = torch.ones(16, dtype=torch.float64, requires_grad=requires_grad)
        with pytest.raises(TypeError, match="values is a numpy array but the dense operand is torch"):
            spmv(A, x, values=np.ones(A.nnz))


def test_backend_and_devices(A):
    with pytest.raises(ValueError, match="backend must be one of"):
        spmv(A, np.ones(16), backend="gpu")
    with pytest.raises(ValueError, match="backend='cuda' but A is on the CPU"):
        spmv(A, np.ones(16), backend="cuda")
    tA = to_torch_csr(A)
    meta_x = torch.ones(16, dtype=torch.float64, device="meta")
    with pytest.raises(ValueError, match="on device meta; sciml.sparse runs on CPU and CUDA"):
        spmv(tA, meta_x)


def test_to_torch_csr_is_zero_copy():
    A = data.poisson_2d(3)
    tA = to_torch_csr(A)
    assert tA.layout == torch.sparse_csr and tA.shape == A.shape
    np.testing.assert_array_equal(tA.to_dense().numpy(), A.toarray())
    A.data[0] = 99.0
    assert tA.values()[0].item() == 99.0
    with pytest.raises(TypeError, match="scipy.sparse CSR"):
        to_torch_csr(np.eye(2))


def test_sparse_A_requiring_grad_is_refused():
    values = torch.ones(2, dtype=torch.float64, requires_grad=True)
    tA = torch.sparse_csr_tensor(torch.tensor([0, 1, 2]), torch.tensor([0, 1]), values, size=(2, 2),
                                 check_invariants=True)
    with pytest.raises(TypeError, match="values="):
        spmv(tA, torch.ones(2, dtype=torch.float64))


def test_structure_checks():
    good = data.poisson_2d(3)
    check_csr(good)
    bad_index = good.copy()
    bad_index.indices[3] = 9
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 9\)"):
        check_csr(bad_index)
    negative = good.copy()
    negative.indices[0] = -1
    with pytest.raises(ValueError, match="indices must lie"):
        check_csr(negative)
    bad_ptr = sp.csr_array((np.ones(2), np.array([0, 0]), np.array([0, 2, 1, 2])), shape=(3, 1),
                           copy=False)
    with pytest.raises(ValueError, match="non-decreasing"):
        check_csr(bad_ptr)
    # Torch tensors are checked with torch reductions (on their device); same verdicts.
    for matrix, fails in ((good, None), (bad_index, "indices must lie"), (negative, "indices must lie"),
                          (bad_ptr, "non-decreasing")):
        tensor = torch.sparse_csr_tensor(torch.from_numpy(matrix.indptr), torch.from_numpy(matrix.indices),
                                         torch.from_numpy(matrix.data), size=matrix.shape, check_invariants=False)
        if fails is None:
            check_csr(tensor)
        else:
            with pytest.raises(ValueError, match=fails):
                check_csr(tensor)
    check_csr(to_torch_csr(sp.csr_array((3, 4))))  # no nonzeros
    short = sp.csr_array((np.ones(3), np.array([0, 0, 0]), np.array([0, 1, 2, 3])), shape=(3, 1))
    short.indptr[-1] = 5  # claims more nonzeros than stored
    with pytest.raises(ValueError, match="does not match len"):
        spmv(short, np.ones(1))


def test_generators_name_bad_arguments():
    for kwargs, match in ((dict(exponent="2"), "exponent"), (dict(mean_nnz_per_row=None), "mean_nnz_per_row"),
                          (dict(exponent=1.0), "exponent must be > 1"), (dict(random_state=-1), "random_state"),
                          (dict(random_state=1.5), "random_state")):
        with pytest.raises((TypeError, ValueError), match=match):
            data.power_law_csr(20, **kwargs)
    with pytest.raises(ValueError, match="random_state"):
        data.random_csr(5, random_state="a")
    a, b = data.random_csr(30, random_state=np.int64(4)), data.random_csr(30, random_state=4)
    assert (a != b).nnz == 0  # numpy integer seeds are seeds
