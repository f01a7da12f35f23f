"""sciml.sparse on a real GPU through torch CUDA tensors (and CuPy if present).

Marked ``gpu``: skipped automatically where no CUDA GPU is available.  The
kernels themselves are also tested under the CUDA simulator
(``tests/cudasim``); these tests cover what the simulator cannot: torch's
CUDA tensors, streams and the autograd op on the device.
"""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from sciml import data
from sciml.sparse import rspmv, spmm, spmv, to_torch_csr

pytestmark = pytest.mark.gpu

DTYPES = [(np.float32, torch.float32, 2e-5), (np.float64, torch.float64, 1e-12)]


def close(actual, expected, rtol):
    actual = actual.detach().cpu().numpy().astype(np.float64)
    scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("np_dtype, torch_dtype, rtol", DTYPES)
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_torch_cuda_products_match_scipy(np_dtype, torch_dtype, rtol, index_dtype):
    A = data.power_law_csr(3000, 2000, mean_nnz_per_row=7, random_state=0).astype(np_dtype)
    A.indptr, A.indices = A.indptr.astype(index_dtype), A.indices.astype(index_dtype)
    tA = to_torch_csr(A, device="cuda")
    gen = np.random.default_rng(0)
    x, z = gen.standard_normal(2000).astype(np_dtype), gen.standard_normal(3000).astype(np_dtype)
    X = gen.standard_normal((2000, 16)).astype(np_dtype)
    B = A.astype(np.float64)
    y = spmv(tA, torch.from_numpy(x).cuda())
    assert y.is_cuda and y.dtype == torch_dtype
    close(y, B @ x, rtol)
    close(rspmv(tA, torch.from_numpy(z).cuda()), B.T @ z, rtol)
    close(spmm(tA, torch.from_numpy(X).cuda()), B @ X, rtol)
    close(spmm(tA, torch.from_numpy(np.ascontiguousarray(z[:, None])).cuda(), transpose=True), B.T @ z[:, None], rtol)


def test_runs_on_the_current_torch_stream():
    A = data.poisson_2d(300)
    tA = to_torch_csr(A, device="cuda")
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        # Produced on `stream`: a launch on the default stream could race it.
        x = torch.arange(A.shape[1], dtype=torch.float64, device="cuda").sin_() * 3.0
        y = spmv(tA, x)
    stream.synchronize()
    close(y, A @ (np.sin(np.arange(A.shape[1])) * 3.0), 1e-12)


@pytest.mark.parametrize("transpose", [False, True])
def test_autograd_on_cuda(transpose):
    A = data.random_csr(15, 11, nnz_per_row=3, random_state=1, sort=False)
    values = torch.tensor(A.data, device="cuda", requires_grad=True)
    tA = to_torch_csr(A, device="cuda")
    n = A.shape[0] if transpose else A.shape[1]
    X = torch.randn(n, 3, dtype=torch.float64, device="cuda", requires_grad=True)
    assert torch.autograd.gradcheck(lambda v, X: spmm(tA, X, values=v, transpose=transpose), (values, X))
    x = torch.randn(n, dtype=torch.float64, device="cuda", requires_grad=True)
    assert torch.autograd.gradcheck(lambda v, x: spmv(tA, x, values=v, transpose=transpose), (values, x))


def test_cpu_and_cuda_operands_are_refused():
    A = data.poisson_2d(4)
    with pytest.raises(ValueError, match="mismatched devices"):
        spmv(to_torch_csr(A, device="cuda"), torch.ones(16, dtype=torch.float64))
    with pytest.raises(ValueError, match="mismatched devices"):
        spmv(A, torch.ones(16, dtype=torch.float64, device="cuda"))


def test_cupy_inputs():
    cupy = pytest.importorskip("cupy")
    cupyx_sparse = pytest.importorskip("cupyx.scipy.sparse")
    A = data.power_law_csr(500, 400, random_state=2)
    cA = cupyx_sparse.csr_matrix(A)
    x = np.random.default_rng(3).standard_normal(400)
    y = spmv(cA, cupy.asarray(x))
    assert isinstance(y, cupy.ndarray)
    np.testing.assert_allclose(cupy.asnumpy(y), A @ x, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("np_dtype", [np.float32, np.float64])
def test_every_spmv_kernel_on_a_large_irregular_matrix(np_dtype):
    """Beyond the simulator's reach: thousands of concurrent merge tiles, rows
    over many tiles (atomics racing), and the auto choice on real matrices.
    Checked row by row against the rounding bound of a sum in any order,
    ``|error| <= row length * eps * (|A| @ |x|)``."""
    from numba import cuda

    from sciml.sparse import _cuda

    n = 300_000
    A = data.power_law_csr(n, mean_nnz_per_row=10, random_state=0)
    dense_row = sp.csr_array((np.ones(n), (np.zeros(n, dtype=np.int64), np.arange(n))), shape=A.shape)
    A = sp.csr_array(A + dense_row).astype(np_dtype)  # row 0 spans hundreds of merge tiles
    x = np.random.default_rng(0).standard_normal(n).astype(np_dtype)
    A64, x64 = A.astype(np.float64), x.astype(np.float64)

    def check(y, transpose=False, x64=x64):
        B = A64.T.tocsr() if transpose else A64
        bound = np.diff(B.indptr) * np.finfo(np_dtype).eps * (abs(B) @ np.abs(x64)) + 1e-300
        error = np.abs(y.cpu().numpy().astype(np.float64) - B @ x64)
        assert np.all(error <= bound), f"worst error {np.max(error / bound):.3g} x the rounding bound"

    tA = to_torch_csr(A, device="cuda")
    views = [cuda.as_cuda_array(t, sync=False) for t in (tA.crow_indices(), tA.col_indices(), tA.values())]
    xv = cuda.as_cuda_array(torch.from_numpy(x).cuda(), sync=False)
    assert _cuda._resolve_kernel("auto", views[0], A.nnz, 0) == "merge"
    for kernel in ("merge", "vector", "scalar", "auto"):
        for _ in range(2):  # the atomically summed rows may round differently each run
            y = torch.full((n,), float("nan"), dtype=tA.dtype, device="cuda")
            _cuda.spmv(*views, xv, cuda.as_cuda_array(y, sync=False), kernel=kernel)
            check(y)
    check(spmv(tA, torch.from_numpy(x).cuda()))
    # The transposed product: row 0 is one thread's serial walk for the row-per-thread scatter.
    for kernel in ("merge", "scalar", "auto"):
        y = torch.full((n,), float("nan"), dtype=tA.dtype, device="cuda")
        _cuda.spmv(*views, xv, cuda.as_cuda_array(y, sync=False), transpose=True, kernel=kernel)
        check(y, transpose=True)
    # SpMM both ways, column by column (balanced: each row's pieces added atomically).
    X = torch.from_numpy(np.random.default_rng(1).standard_normal((n, 4)).astype(np_dtype)).cuda()
    Xv = cuda.as_cuda_array(X, sync=False)
    for kernel in ("merge", "scalar", "auto"):
        for transpose in (False, True):
            Y = torch.full((n, 4), float("nan"), dtype=tA.dtype, device="cuda")
            _cuda.spmm(*views, Xv, cuda.as_cuda_array(Y, sync=False), transpose=transpose, kernel=kernel)
            for column in range(4):
                check(Y[:, column], transpose, x64=X[:, column].cpu().numpy().astype(np.float64))
    P = data.poisson_2d(500)
    P_indptr = cuda.as_cuda_array(to_torch_csr(P, device="cuda").crow_indices(), sync=False)
    assert _cuda._resolve_kernel("auto", P_indptr, P.nnz, 0) == "vector"


def test_small_products_do_not_warn_about_occupancy():
    """numba-cuda warns on grids under 128 blocks; a library call on a small
    matrix is the user's choice, not a mistake to warn about."""
    import warnings

    A = to_torch_csr(data.poisson_2d(8), device="cuda")
    x = torch.ones(64, dtype=torch.float64, device="cuda")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        spmv(A, x), rspmv(A, x), spmm(A, x[:, None].contiguous())
    assert not [w for w in caught if "under-utilization" in str(w.message)]
