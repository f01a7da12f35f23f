"""Tests for sciml.prox: values against references, prox optimality, numpy/torch
agreement, dtype/device preservation, gradients, and input validation."""

import doctest
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays
from scipy.optimize import minimize_scalar

import sciml.prox as prox
from sciml.prox import (
    hard_threshold,
    hard_threshold_topk,
    singular_value_threshold,
    soft_threshold,
    svt,
)

RTOL = {np.float32: 1e-5, np.float64: 1e-12}
TORCH_DTYPE = {np.float32: torch.float32, np.float64: torch.float64}
FAST = settings(max_examples=40, deadline=None)

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
nonneg = st.floats(0, 1e6, allow_nan=False, allow_infinity=False)
# Values whose square does not underflow, for references that compare x**2.
no_underflow = st.floats(-1, 1).filter(lambda v: v == 0 or abs(v) > 1e-100)


def float_arrays(dtype=np.float64, elements=finite, min_dims=1, max_dims=3):
    return arrays(dtype, array_shapes(min_dims=min_dims, max_dims=max_dims, max_side=6), elements=elements)


def random_matrix(rng, m, n, singular_values, dtype=np.float64):
    """m x n matrix with the given singular values (min(m, n) of them)."""
    U, _ = np.linalg.qr(rng.standard_normal((m, m)))
    V, _ = np.linalg.qr(rng.standard_normal((n, n)))
    r = len(singular_values)
    return (U[:, :r] * np.asarray(singular_values)) @ V[:, :r].T


# ----------------------------------------------------------------------------
# soft thresholding
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("x", [-3.0, -1.2, -0.4, 0.0, 0.3, 0.9, 2.5])
@pytest.mark.parametrize("t", [0.0, 0.5, 1.0])
def test_soft_threshold_minimises_prox_objective(x, t):
    # argmin_z 0.5 (z - x)^2 + t |z|, found numerically.
    res = minimize_scalar(lambda z: 0.5 * (z - x) ** 2 + t * abs(z), bounds=(-5, 5),
                          method="bounded", options={"xatol": 1e-10})
    z = float(soft_threshold(np.array(x), t))
    assert z == pytest.approx(res.x, abs=1e-6)
    grid = np.linspace(-5, 5, 100001)
    assert z == pytest.approx(grid[np.argmin(0.5 * (grid - x) ** 2 + t * np.abs(grid))], abs=2e-4)


@FAST
@given(x=float_arrays(), t=nonneg)
def test_soft_threshold_closed_form(x, t):
    expected = np.sign(x) * np.maximum(np.abs(x) - t, 0)
    np.testing.assert_array_equal(soft_threshold(x, t), expected)


@FAST
@given(x=float_arrays(elements=st.floats(-10, 10)), data=st.data())
def test_soft_threshold_per_coordinate_threshold(x, data):
    t = data.draw(arrays(np.float64, x.shape[-1:], elements=st.floats(0, 10)))
    expected = np.sign(x) * np.maximum(np.abs(x) - t, 0)
    np.testing.assert_array_equal(soft_threshold(x, t), expected)
    # Objective at the output is no larger than at nearby points.
    z = soft_threshold(x, t)
    f = lambda z: 0.5 * (z - x) ** 2 + t * np.abs(z)  # noqa: E731
    for dz in (1e-3, -1e-3):
        assert np.all(f(z) <= f(z + dz) + 1e-12)


def test_soft_threshold_values_and_scalar_inputs():
    np.testing.assert_array_equal(
        soft_threshold([-3, -1, 0, 0.5, 4], 1.0), [-2.0, 0.0, 0.0, 0.0, 3.0]
    )
    out = soft_threshold(2.5, 1)
    assert isinstance(out, np.ndarray) and out.dtype == np.float64 and out == 1.5
    np.testing.assert_array_equal(soft_threshold([1.0, -1.0], 0), [1.0, -1.0])
    np.testing.assert_array_equal(soft_threshold([1.0, -1.0, 5.0], np.inf), [0.0, 0.0, 0.0])


def test_soft_threshold_nan_propagates():
    for x in (np.array([np.nan, 2.0, -0.5]), torch.tensor([np.nan, 2.0, -0.5])):
        out = np.asarray(soft_threshold(x, 1.0))
        assert np.isnan(out[0]) and out[1] == 1.0 and out[2] == 0.0


# ----------------------------------------------------------------------------
# hard thresholding
# ----------------------------------------------------------------------------


def test_hard_threshold_values():
    x = np.array([-3.0, -1.0, -0.5, 0.0, 1.0, 1.5, np.inf, np.nan])
    out = hard_threshold(x, 1.0)
    np.testing.assert_array_equal(out[:-1], [-3.0, 0.0, 0.0, 0.0, 0.0, 1.5, np.inf])
    assert np.isnan(out[-1])
    # inf threshold zeroes everything finite or not, without inf*0 = NaN.
    np.testing.assert_array_equal(hard_threshold(x[:-1], np.inf), np.zeros(7))
    tout = hard_threshold(torch.from_numpy(x), 1.0).numpy()
    np.testing.assert_array_equal(tout, out)


@FAST
@given(x=float_arrays(elements=no_underflow.map(lambda v: 5 * v)), t=no_underflow.map(abs))
def test_hard_threshold_is_l0_prox(x, t):
    # prox of lam ||z||_0 with lam = t^2 / 2: per entry z in {0, x}, pick the cheaper;
    # at a tie (|x| == t) zero wins.
    lam = t * t / 2
    z = hard_threshold(x, t)
    cost_keep = lam * np.ones_like(x)
    cost_zero = 0.5 * x**2
    expected = np.where(cost_zero > cost_keep, x, 0.0)
    # The comparison |x| > t is the exact form; the cost comparison can differ
    # only by rounding at |x| == t.
    close = np.isclose(np.abs(x), t, rtol=1e-12, atol=0)
    np.testing.assert_array_equal(z[~close], expected[~close])
    np.testing.assert_array_equal(z, np.where(np.abs(x) > t, x, 0.0))
    assert np.all(hard_threshold(np.full(3, t), t) == 0)


# ----------------------------------------------------------------------------
# top-k
# ----------------------------------------------------------------------------


def topk_reference(x, k, axis=-1):
    """Per-slice reference: rank by (NaN first, -|x|, index)."""
    x = np.ascontiguousarray(np.moveaxis(np.asarray(x, dtype=float), axis, -1))
    out = np.zeros(x.shape)
    flat_x, flat_o = x.reshape(-1, x.shape[-1]), out.reshape(-1, x.shape[-1])
    for row, orow in zip(flat_x, flat_o):
        order = sorted(range(len(row)), key=lambda i: (not np.isnan(row[i]),
                                                       0.0 if np.isnan(row[i]) else -abs(row[i]), i))
        for i in order[:k]:
            orow[i] = row[i]
    return np.moveaxis(out, -1, axis)


def argsort_reference(x, k):
    # Independent check with np.argsort (stable) for NaN-free rows.
    out = np.zeros_like(x)
    idx = np.argsort(-np.abs(x), axis=-1, kind="stable")[..., :k]
    np.put_along_axis(out, idx, np.take_along_axis(x, idx, axis=-1), axis=-1)
    return out


# Small integers make ties (including +-v and -0.0/0.0) frequent.
tie_elements = st.integers(-3, 3).map(float)


@FAST
@given(x=arrays(np.float64, array_shapes(min_dims=1, max_dims=3, max_side=7), elements=tie_elements),
       k=st.integers(0, 8), data=st.data())
def test_topk_matches_reference_with_ties(x, k, data):
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    out = hard_threshold_topk(x, k, axis=axis)
    np.testing.assert_array_equal(out, topk_reference(x, k, axis))
    if axis in (-1, x.ndim - 1):
        np.testing.assert_array_equal(out, argsort_reference(x, k))
    # torch gives the same entries, ties included.
    tout = hard_threshold_topk(torch.from_numpy(x), k, axis=axis)
    np.testing.assert_array_equal(tout.numpy(), out)
    n = x.shape[axis]
    assert np.all(np.count_nonzero(out, axis=axis) <= min(k, n))


def test_topk_tie_breaking_and_edge_k():
    x = np.array([[1.0, -2.0, 2.0, -1.0, 0.5], [0.0, -0.0, 0.0, 1.0, 0.0]])
    np.testing.assert_array_equal(hard_threshold_topk(x, 1), [[0, -2.0, 0, 0, 0], [0, 0, 0, 1.0, 0]])
    np.testing.assert_array_equal(hard_threshold_topk(x, 3), [[1.0, -2.0, 2.0, 0, 0], [0, 0, 0, 1.0, 0]])
    np.testing.assert_array_equal(hard_threshold_topk(x, 0), np.zeros_like(x))
    for k in (5, 6, 100):
        out = hard_threshold_topk(x, k)
        np.testing.assert_array_equal(out, x)
        assert out is not x
    np.testing.assert_array_equal(hard_threshold_topk(np.array([np.int64(7), 3, -9]), np.int64(2)),
                                  [7.0, 0.0, -9.0])
    assert hard_threshold_topk(np.zeros((2, 0)), 1).shape == (2, 0)


def test_topk_nan_ranks_first():
    x = np.array([[1.0, np.nan, -np.inf, 3.0, np.nan]])
    for out in (hard_threshold_topk(x, 2), hard_threshold_topk(torch.from_numpy(x), 2).numpy()):
        assert np.isnan(out[0, 1]) and np.isnan(out[0, 4])
        np.testing.assert_array_equal(out[0, [0, 2, 3]], 0.0)
    out = hard_threshold_topk(x, 3)
    assert out[0, 2] == -np.inf and out[0, 3] == 0.0


# ----------------------------------------------------------------------------
# singular value thresholding
# ----------------------------------------------------------------------------


def svt_reference(X, t):
    U, s, Vh = np.linalg.svd(X, full_matrices=False)
    return U @ np.diag(np.maximum(s - t, 0)) @ Vh


@pytest.mark.parametrize("shape", [(6, 4), (4, 6), (5, 5), (1, 3), (3, 1)])
@pytest.mark.parametrize("t", [0.0, 0.7, 2.0, 100.0])
def test_svt_against_explicit_svd(shape, t):
    rng = np.random.default_rng(0)
    X = rng.standard_normal(shape)
    Z, rank = singular_value_threshold(X, t, return_rank=True)
    np.testing.assert_allclose(Z, svt_reference(X, t), rtol=1e-12, atol=1e-12)
    s = np.linalg.svd(X, compute_uv=False)
    assert rank.shape == () and int(rank) == np.sum(s > t)
    # Singular values shrink by t (and are floored at 0): rank drops.
    sz = np.linalg.svd(Z, compute_uv=False)
    np.testing.assert_allclose(sz, np.maximum(s - t, 0), atol=1e-12)
    assert np.linalg.matrix_rank(Z, tol=1e-10) == int(rank)
    if t == 0:
        np.testing.assert_allclose(Z, X, atol=1e-12)


def test_svt_prox_optimality():
    # Z = prox(X) iff (X - Z)/t is a subgradient of ||.||_* at Z:
    # G = U1 V1^T + W with U1^T W = 0, W V1 = 0, ||W||_2 <= 1.
    rng = np.random.default_rng(1)
    X = random_matrix(rng, 7, 5, [6.0, 4.0, 2.5, 1.0, 0.3])
    t = 1.5
    Z, rank = svt(X, t, return_rank=True)
    assert int(rank) == 3
    U, s, Vh = np.linalg.svd(Z, full_matrices=False)
    U1, V1 = U[:, :3], Vh[:3].T
    G = (X - Z) / t
    W = G - U1 @ V1.T
    np.testing.assert_allclose(U1.T @ W, 0, atol=1e-12)
    np.testing.assert_allclose(W @ V1, 0, atol=1e-12)
    assert np.linalg.norm(W, 2) <= 1 + 1e-12
    # And the objective is not improved by random perturbations.
    F = lambda Y: 0.5 * np.sum((Y - X) ** 2) + t * np.linalg.norm(Y, "nuc")  # noqa: E731
    f0 = F(Z)
    for _ in range(20):
        D = rng.standard_normal(X.shape)
        assert f0 <= F(Z + 1e-3 * D) + 1e-12


def test_svt_batched_equals_per_slice():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((2, 3, 5, 4))
    t = rng.uniform(0.2, 2.0, size=(2, 3))
    Z, rank = svt(X, t, return_rank=True)
    assert Z.shape == X.shape and rank.shape == (2, 3) and rank.dtype == np.intp
    for i in range(2):
        for j in range(3):
            Zij, rij = svt(X[i, j], t[i, j], return_rank=True)
            np.testing.assert_allclose(Z[i, j], Zij, rtol=1e-12, atol=1e-12)
            assert rank[i, j] == rij
    # A scalar threshold and a broadcast one (shape (3,)) agree with the full one.
    np.testing.assert_allclose(svt(X, 0.5), svt(X, np.full((2, 3), 0.5)), atol=1e-14)
    np.testing.assert_allclose(svt(X, t[0]), np.stack([svt(X[i], t[0]) for i in range(2)]), atol=1e-12)
    tX = torch.from_numpy(X)
    tZ, trank = svt(tX, torch.from_numpy(t), return_rank=True)
    np.testing.assert_allclose(tZ.numpy(), Z, rtol=1e-10, atol=1e-12)
    assert trank.dtype == torch.int64 and trank.tolist() == rank.tolist()


def test_svt_empty_and_integer():
    for shape in [(0, 3, 4), (2, 0, 3), (3, 0)]:
        Z, r = svt(np.zeros(shape), 1.0, return_rank=True)
        assert Z.shape == shape and r.shape == shape[:-2]
        tZ = svt(torch.zeros(shape), 1.0)
        assert tZ.shape == shape
    Z = svt(np.array([[3, 0], [0, 1]]), 0.5)
    assert Z.dtype == np.float64
    np.testing.assert_allclose(Z, [[2.5, 0], [0, 0.5]], atol=1e-15)


# ----------------------------------------------------------------------------
# numpy / torch agreement and dtype preservation
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_torch_agree_and_dtypes_preserved(dtype):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 4, 5)).astype(dtype)
    tx = torch.from_numpy(x.copy())
    tdt = TORCH_DTYPE[dtype]
    t_vec = rng.uniform(0, 1, size=5)  # float64 per-coordinate threshold
    t_bat = rng.uniform(0.1, 1, size=3)
    rtol = RTOL[dtype]
    cases = [
        (soft_threshold, (0.5,), (0.5,)),
        (soft_threshold, (t_vec,), (torch.from_numpy(t_vec),)),
        (soft_threshold, (np.float64(0.5),), (torch.tensor(0.5, dtype=torch.float64),)),
        (hard_threshold, (0.5,), (0.5,)),
        (hard_threshold, (t_vec,), (torch.from_numpy(t_vec),)),
        (hard_threshold_topk, (2,), (2,)),
        (lambda a, k: hard_threshold_topk(a, k, axis=1), (2,), (2,)),
        (svt, (0.8,), (0.8,)),
        (svt, (t_bat,), (torch.from_numpy(t_bat),)),
    ]
    for fn, np_args, torch_args in cases:
        out = fn(x, *np_args)
        tout = fn(tx, *torch_args)
        assert isinstance(out, np.ndarray) and out.dtype == dtype, fn
        assert isinstance(tout, torch.Tensor) and tout.dtype == tdt and tout.device == tx.device
        np.testing.assert_allclose(tout.numpy(), out, rtol=rtol, atol=rtol * 10)
    # Elementwise operators are bit-identical across backends.
    for fn, arg in ((soft_threshold, 0.3), (hard_threshold, 0.3), (hard_threshold_topk, 3)):
        np.testing.assert_array_equal(fn(tx, arg).numpy(), fn(x, arg))
    np.testing.assert_array_equal(tx.numpy(), x)  # inputs untouched


def test_float32_not_upcast_and_integer_promotion():
    x32 = np.array([1.5, -0.2, 3.0], dtype=np.float32)
    for thr in (0.5, np.float64(0.5), np.array(0.5), np.array([0.5, 0.5, 0.5]), 1):
        assert soft_threshold(x32, thr).dtype == np.float32
        assert hard_threshold(x32, thr).dtype == np.float32
    assert svt(np.eye(2, dtype=np.float32), 0.1).dtype == np.float32
    assert hard_threshold_topk(x32, 1).dtype == np.float32
    # Integer / bool data -> float64 (numpy), default dtype (torch).
    assert soft_threshold(np.array([1, 2, 3]), 1).dtype == np.float64
    assert hard_threshold(np.array([True, False]), 0.5).dtype == np.float64
    np.testing.assert_array_equal(soft_threshold(np.array([3, -5]), 1), [2.0, -4.0])
    assert soft_threshold(torch.tensor([3, -5]), 1).dtype == torch.get_default_dtype()
    assert hard_threshold_topk(torch.tensor([3, -5]), 1).tolist() == [0.0, -5.0]
    # float16 is kept by the elementwise operators.
    assert soft_threshold(np.ones(2, np.float16), 0.5).dtype == np.float16
    assert soft_threshold(torch.ones(2, dtype=torch.float16), 0.5).dtype == torch.float16


# ----------------------------------------------------------------------------
# gradients
# ----------------------------------------------------------------------------


def test_gradcheck_soft_threshold():
    x = torch.tensor([[-2.0, -0.7, 0.3, 1.4], [0.05, -1.9, 2.6, -0.2]], dtype=torch.float64,
                     requires_grad=True)
    t_vec = torch.tensor([0.5, 0.4, 1.0, 0.1], dtype=torch.float64, requires_grad=True)
    t_sc = torch.tensor(0.55, dtype=torch.float64, requires_grad=True)
    # No |x| within 1e-6 of its threshold, so finite differences stay on one piece.
    assert torch.autograd.gradcheck(soft_threshold, (x, t_vec))
    assert torch.autograd.gradcheck(soft_threshold, (x, t_sc))
    assert torch.autograd.gradcheck(lambda a: soft_threshold(a, 0.55), (x,))


def test_soft_threshold_gradient_values_at_kinks():
    x = torch.tensor([-2.0, -1.0, 0.0, 0.5, 1.0, 3.0], dtype=torch.float64, requires_grad=True)
    t = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    soft_threshold(x, t).sum().backward()
    # d/dx: 1 outside the dead zone, 0 inside and at 0 and at the kinks |x| = t.
    assert x.grad.tolist() == [1.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    # d/dt: sum of -sign(x) over |x| > t.
    assert t.grad.item() == 0.0
    t.grad = None
    soft_threshold(x[3:], t).sum().backward()
    assert t.grad.item() == -1.0
    # t = 0 (identity) still gives gradient 1 away from x = 0.
    y = torch.tensor([-0.5, 0.5], dtype=torch.float64, requires_grad=True)
    soft_threshold(y, 0.0).sum().backward()
    assert y.grad.tolist() == [1.0, 1.0]


def test_gradcheck_hard_threshold_and_topk():
    x = torch.tensor([[-2.0, -0.7, 0.3, 1.4, 0.9], [0.05, -1.9, 2.6, -0.2, 1.1]], dtype=torch.float64,
                     requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: hard_threshold(a, 0.5), (x,))
    t = torch.tensor([0.5, 0.4, 1.0, 0.1, 2.0], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: hard_threshold(a, t), (x,))
    for k, axis in ((2, -1), (1, 0), (0, -1), (5, -1)):
        assert torch.autograd.gradcheck(lambda a: hard_threshold_topk(a, k, axis=axis), (x,))
    hard_threshold_topk(x, 2).sum().backward()
    assert x.grad.tolist() == [[1.0, 0.0, 0.0, 1.0, 0.0], [0.0, 1.0, 1.0, 0.0, 0.0]]
    # k = 0 output stays connected to the graph (zeros, zero gradient).
    x.grad = None
    hard_threshold_topk(x, 0).sum().backward()
    assert torch.count_nonzero(x.grad) == 0


def test_gradcheck_svt():
    rng = np.random.default_rng(4)
    # Distinct singular values, none within 0.4 of the threshold.
    X = torch.from_numpy(random_matrix(rng, 5, 4, [4.0, 3.0, 1.2, 0.5])).requires_grad_(True)
    t = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda A: svt(A, 2.0), (X,))
    assert torch.autograd.gradcheck(svt, (X, t))
    Xb = torch.from_numpy(np.stack([random_matrix(rng, 3, 4, [3.0, 2.0, 0.4]),
                                    random_matrix(rng, 3, 4, [5.0, 1.5, 0.2])])).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda A: svt(A, torch.tensor([1.0, 1.0], dtype=torch.float64)), (Xb,))
    # d/dt of <Z, G> with G = I-like probe: -sum over kept of u_i^T G v_i.
    Z = svt(X, t)
    Z.sum().backward()
    U, s, Vh = torch.linalg.svd(X.detach(), full_matrices=False)
    expected = -sum((U[:, i] @ torch.ones(5, 4, dtype=torch.float64) @ Vh[i]) for i in range(2))
    assert t.grad.item() == pytest.approx(expected.item(), rel=1e-10)


def test_validation_keeps_autograd_working():
    t = torch.nn.Parameter(torch.tensor([0.2, 0.3]))
    x = torch.tensor([[1.0, -1.0], [0.1, 2.0]])
    soft_threshold(x, t).sum().backward()
    # d/dt_j = sum over rows of -sign(x_ij) [|x_ij| > t_j].
    assert t.grad.tolist() == [-1.0, 0.0]
    t.grad = None
    soft_threshold(x, t).pow(2).sum().backward()
    # d/dt_j sum z^2 = sum 2 z_ij (-sign(x_ij)) = -2 sum |z_ij|.
    np.testing.assert_allclose(t.grad.numpy(), [-2 * 0.8, -2 * (0.7 + 1.7)], rtol=1e-6)


# ----------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------


ELEMENTWISE = [soft_threshold, hard_threshold]


@pytest.mark.parametrize("fn", ELEMENTWISE + [svt])
def test_bad_thresholds(fn):
    X = np.ones((2, 3))
    tX = torch.ones(2, 3)
    for bad in (-0.1, np.float32(-1), np.array(-1.0), -1):
        with pytest.raises(ValueError, match="threshold must be non-negative"):
            fn(X, bad)
        if not isinstance(bad, np.ndarray):
            with pytest.raises(ValueError, match="threshold must be non-negative"):
                fn(tX, bad)
    with pytest.raises(ValueError, match="threshold must be non-negative"):
        fn(tX, torch.tensor(-1.0, requires_grad=True))
    for nan in (np.nan, np.array(np.nan), np.float32(np.nan)):
        with pytest.raises(ValueError, match="threshold must not be NaN"):
            fn(X, nan)
    with pytest.raises(ValueError, match="threshold must not be NaN"):
        fn(tX, float("nan"))
    with pytest.raises(ValueError, match="threshold must not be NaN"):
        fn(tX, torch.tensor(float("nan")))
    # Mixed backends.
    with pytest.raises(TypeError, match="numpy array but threshold is a torch.Tensor"):
        fn(X, torch.tensor(0.5))
    with pytest.raises(TypeError, match="torch.Tensor but threshold is a numpy array"):
        fn(tX, np.array(0.5))
    with pytest.raises(TypeError, match="threshold must be"):
        fn(tX, [0.5])
    # Complex / non-numeric thresholds.
    with pytest.raises(TypeError, match="threshold must be real"):
        fn(X, 1 + 1j)
    with pytest.raises(TypeError, match="threshold must be real"):
        fn(tX, 1 + 1j)
    with pytest.raises(TypeError, match="threshold must be real"):
        fn(tX, torch.tensor(1 + 1j))
    with pytest.raises(TypeError, match="threshold must be a real number"):
        fn(X, "0.5")


def test_bad_threshold_shapes():
    with pytest.raises(ValueError, match=r"threshold of shape \(3,\) does not broadcast to x's shape \(2, 4\)"):
        soft_threshold(np.ones((2, 4)), np.ones(3))
    with pytest.raises(ValueError, match="does not broadcast"):
        hard_threshold(torch.ones(4), torch.ones(2, 4))
    with pytest.raises(ValueError, match=r"does not broadcast to the batch shape"):
        svt(np.ones((2, 3, 3)), np.ones(3))
    with pytest.raises(ValueError, match=r"does not broadcast to the batch shape"):
        svt(torch.ones(3, 3), torch.ones(3))


@pytest.mark.parametrize("fn", ELEMENTWISE + [svt, lambda x, t: hard_threshold_topk(x, 1)])
def test_complex_input_rejected(fn):
    with pytest.raises(TypeError, match="complex"):
        fn(np.ones((2, 2), dtype=complex), 0.5)
    with pytest.raises(TypeError, match="complex"):
        fn(torch.ones(2, 2, dtype=torch.complex64), 0.5)
    with pytest.raises(TypeError, match="real numeric dtype"):
        fn(np.array([["a", "b"]]), 0.5)


def test_topk_bad_k_and_axis():
    x = np.ones((2, 3))
    for fn_x in (x, torch.ones(2, 3)):
        with pytest.raises(ValueError, match="k must be non-negative"):
            hard_threshold_topk(fn_x, -1)
        for bad in (2.0, 1.5, "2", None, True):
            with pytest.raises(TypeError, match="k must be an integer"):
                hard_threshold_topk(fn_x, bad)
        for axis in (2, -3, 10):
            with pytest.raises(ValueError, match=f"axis {axis} is out of range for an array of dimension 2"):
                hard_threshold_topk(fn_x, 1, axis=axis)
        with pytest.raises(TypeError, match="axis must be an integer"):
            hard_threshold_topk(fn_x, 1, axis=1.0)
    with pytest.raises(ValueError, match="dimension 0"):
        hard_threshold_topk(3.0, 1)


def test_svt_bad_shapes_dtypes_and_values():
    with pytest.raises(ValueError, match=r"at least 2 dimensions.*shape \(3,\)"):
        svt(np.ones(3), 0.1)
    with pytest.raises(ValueError, match=r"shape \(\)"):
        svt(torch.tensor(1.0), 0.1)
    with pytest.raises(TypeError, match="float32 or float64"):
        svt(np.ones((2, 2), np.float16), 0.1)
    with pytest.raises(TypeError, match="float32 or float64"):
        svt(torch.ones(2, 2, dtype=torch.bfloat16), 0.1)
    for bad in (np.nan, np.inf):
        X = np.ones((3, 3))
        X[1, 2] = bad
        with pytest.raises(ValueError, match="X contains NaN or inf"):
            svt(X, 0.1)
        with pytest.raises(ValueError, match="X contains NaN or inf"):
            svt(torch.from_numpy(X), 0.1)


# ----------------------------------------------------------------------------
# module hygiene, docs, compile, GPU
# ----------------------------------------------------------------------------


def test_docstring_examples():
    result = doctest.testmod(prox, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 5 and result.failed == 0


def test_import_is_silent_and_does_not_import_torch():
    code = "import sys, sciml.prox; assert 'torch' not in sys.modules"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout == "" and res.stderr == ""


def test_public_api():
    assert set(prox.__all__) == {"soft_threshold", "hard_threshold", "hard_threshold_topk",
                                 "singular_value_threshold", "svt"}
    assert prox.svt is prox.singular_value_threshold
    for name in prox.__all__:
        doc = getattr(prox, name).__doc__
        for section in ("Parameters", "Returns", "Raises", "Examples"):
            assert section in doc, (name, section)


@pytest.mark.slow
def test_torch_compile_fullgraph():
    def f(x, t):
        return soft_threshold(x, t) + hard_threshold(x, t) + hard_threshold_topk(x, 2) + svt(x, t)

    x = torch.randn(4, 6)
    t = torch.nn.Parameter(torch.tensor(0.3))
    for dynamic in (False, True):
        compiled = torch.compile(f, backend="eager", fullgraph=True, dynamic=dynamic)
        torch.testing.assert_close(compiled(x, t), f(x, t))
        x2 = torch.randn(3, 7)
        torch.testing.assert_close(compiled(x2, t), f(x2, t))


@pytest.mark.gpu  # tests/conftest.py skips it where no CUDA GPU is available
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_device_and_dtype_preserved(dtype):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 5, 4))
    cx = torch.tensor(x, dtype=dtype, device="cuda")
    t_param = torch.tensor(0.4, dtype=dtype, device="cuda", requires_grad=True)
    rtol = 1e-5 if dtype == torch.float32 else 1e-12
    for fn, arg in ((soft_threshold, t_param), (hard_threshold, t_param), (hard_threshold_topk, 2),
                    (svt, t_param), (soft_threshold, torch.tensor(0.4, dtype=torch.float64))):
        out = fn(cx, arg)
        assert out.device == cx.device and out.dtype == dtype
        ref = fn(cx.cpu(), arg.detach().cpu() if isinstance(arg, torch.Tensor) else arg)
        torch.testing.assert_close(out.cpu(), ref, rtol=rtol, atol=10 * rtol)
    svt(cx, t_param).sum().backward()
    assert t_param.grad is not None and t_param.grad.device == cx.device
    with pytest.raises(ValueError, match="threshold is on device"):
        soft_threshold(cx, torch.ones(4))
    with pytest.raises(ValueError, match="threshold must be non-negative"):
        soft_threshold(cx, torch.tensor(-1.0, device="cuda"))
