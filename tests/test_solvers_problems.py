"""Poisson problem generators of the learned-solver family."""

import time

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from sciml.data import poisson_2d, poisson_3d
from solvers.problems import (BOUNDARIES, COEFFICIENTS, OBSTACLES, PoissonProblem, coefficient_field,
                              gaussian_random_field, obstacle_mask, poisson, rhs)


def _assert_spd(A):
    dense = A.toarray()
    np.testing.assert_array_equal(dense, dense.T)
    np.linalg.cholesky(dense)  # raises LinAlgError unless positive definite


def _rayleigh(A, b):
    return float(np.mean(np.einsum("ij,ij->j", b, A @ b) / np.einsum("ij,ij->j", b, b)))


@pytest.mark.parametrize("n", [1, 2, 5])
def test_plain_dirichlet_is_sciml_data_poisson(n):
    for shape, reference in [((n, n), poisson_2d(n)), ((n, n, n), poisson_3d(n))]:
        A = poisson(shape).A
        assert isinstance(A, sp.csr_array) and A.dtype == np.float64 and A.has_canonical_format
        for attr in ("indptr", "indices", "data"):
            got, want = getattr(A, attr), getattr(reference, attr)
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)
    A32 = poisson((4, 4), dtype=np.float32).A
    assert A32.dtype == np.float32 and (A32 != poisson_2d(4, dtype=np.float32)).nnz == 0


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("obstacles", [None, *OBSTACLES])
@pytest.mark.parametrize("coefficient", [None, *COEFFICIENTS])
@pytest.mark.parametrize("shape", [(9, 10), (5, 6, 7)])
def test_every_combination_is_symmetric_positive_definite(shape, boundary, obstacles, coefficient):
    problem = poisson(shape, boundary=boundary, obstacles=obstacles, coefficient=coefficient, random_state=0)
    assert problem.A.has_canonical_format and problem.A.shape == (problem.n_rows,) * 2
    _assert_spd(problem.A)
    if obstacles is not None:
        assert 0 < problem.n_rows < np.prod(shape)


def test_neumann_walls_have_zero_row_sums_except_next_to_the_open_face():
    solid = obstacle_mask((10, 12, 14), "sphere")
    for coefficient in (None, coefficient_field((10, 12, 14), random_state=1)):
        problem = poisson((10, 12, 14), boundary="neumann", obstacles=solid, coefficient=coefficient)
        sums = problem.to_grid(problem.A.sum(axis=1))
        top = problem.mask[..., -1]
        assert np.all(sums[..., -1][top] > 0)  # the open face: the cell's k
        np.testing.assert_allclose(sums[..., :-1][problem.mask[..., :-1]], 0, atol=1e-12)
        if coefficient is not None:
            np.testing.assert_allclose(sums[..., -1][top], coefficient[..., -1][top])
    # Dirichlet on every wall: positive sums on all boundary cells, including the bottom.
    sums = poisson((5, 6), boundary="dirichlet").A.sum(axis=1).reshape(5, 6)
    assert np.all(sums[:, 0] > 0) and np.all(sums[0] > 0) and np.all(sums[1:-1, 1:-1] == 0)


def test_obstacle_cells_have_no_rows_and_round_trip():
    solid = np.zeros((6, 7), dtype=bool)
    solid[2:4, 1:3] = True
    problem = poisson((6, 7), obstacles=solid)
    assert problem.n_rows == 42 - 4
    assert np.all(problem.index[solid] == -1) and not problem.mask[solid].any()
    np.testing.assert_array_equal(np.sort(problem.index[~solid]), np.arange(38))
    # No coupling across a fluid-solid face and no diagonal contribution from it.
    A = problem.A.toarray()
    assert A[problem.index[1, 1], problem.index[1, 1]] == 3  # its lower neighbour (2, 1) is solid
    assert A[problem.index[1, 2], problem.index[1, 2]] == 3 and A[problem.index[1, 2]].sum() == 0
    rng = np.random.default_rng(0)
    x = rng.standard_normal(problem.n_rows)
    grid = problem.to_grid(x)
    assert grid.shape == (6, 7) and np.all(grid[solid] == 0) and grid[1, 1] == x[problem.index[1, 1]]
    np.testing.assert_array_equal(problem.from_grid(grid), x)
    X = rng.standard_normal((problem.n_rows, 3)).astype(np.float32)
    G = problem.to_grid(X)
    assert G.shape == (6, 7, 3) and G.dtype == np.float32
    np.testing.assert_array_equal(problem.from_grid(G), X)
    # The row order is C order over the fluid cells, so a grid operator can act on grids.
    np.testing.assert_array_equal(problem.from_grid(np.arange(42.0).reshape(6, 7)), np.flatnonzero(~solid))
    # torch tensors stay torch tensors.
    t = torch.as_tensor(X)
    Gt = problem.to_grid(t)
    assert isinstance(Gt, torch.Tensor) and Gt.shape == (6, 7, 3)
    np.testing.assert_array_equal(Gt.numpy(), G)
    assert torch.equal(problem.from_grid(Gt), t)


def test_problem_is_frozen_and_read_only():
    problem = poisson((4, 5), obstacles="box", coefficient="layers")
    with pytest.raises(AttributeError):
        problem.boundary = "neumann"
    for array in (problem.mask, problem.index, problem.coefficient):
        with pytest.raises(ValueError, match="read-only"):
            array[0, 0] = 0
    assert "PoissonProblem(shape=(4, 5)" in repr(problem) and problem.ndim == 2


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_constant_coefficient_scales_the_matrix(boundary):
    A = poisson((5, 4, 3), boundary=boundary, obstacles="sphere").A
    A2 = poisson((5, 4, 3), boundary=boundary, obstacles="sphere", coefficient=np.full((5, 4, 3), 2.0)).A
    assert (A2 != 2 * A).nnz == 0


def test_harmonic_mean_face_coefficients_by_hand():
    k = np.array([[1.0, 3.0]])  # shape (1, 2): two cells along the last axis
    # Face between them: 2 * 1 * 3 / (1 + 3) = 1.5.  Dirichlet: cell 0 has 3 wall faces (k = 1),
    # cell 1 has 3 wall faces (k = 3).
    np.testing.assert_allclose(poisson((1, 2), coefficient=k).A.toarray(), [[3 + 1.5, -1.5], [-1.5, 9 + 1.5]])
    # Neumann: only cell 1 touches the open face (high end of the last axis).
    np.testing.assert_allclose(poisson((1, 2), boundary="neumann", coefficient=k).A.toarray(),
                               [[1.5, -1.5], [-1.5, 3 + 1.5]])
    # The solid cell's coefficient is never read.
    A = poisson((1, 3), coefficient=np.array([[1.0, 3.0, 0.0]]), obstacles=np.array([[False, False, True]])).A
    np.testing.assert_allclose(A.toarray(), [[4.5, -1.5], [-1.5, 6 + 1.5]])  # cell 1's right face is solid: Neumann


def test_disconnected_fluid_raises_or_is_dropped():
    solid = np.zeros((7, 7), dtype=bool)
    solid[1:6, 1:6] = True
    solid[3, 3] = False  # one fluid cell walled in
    with pytest.raises(ValueError, match=r"1 fluid cell\(s\) in 1 region\(s\) are cut off"):
        poisson((7, 7), obstacles=solid)
    problem = poisson((7, 7), obstacles=solid, drop_isolated=True)
    assert problem.n_rows == 49 - 25 and not problem.mask[3, 3] and problem.index[3, 3] == -1
    _assert_spd(problem.A)
    # Neumann: a wall across the last axis without a gap cuts the bottom off from the open face...
    wall = np.zeros((4, 6), dtype=bool)
    wall[:, 3] = True
    with pytest.raises(ValueError, match=r"12 fluid cell\(s\) in 1 region\(s\).*open face"):
        poisson((4, 6), boundary="neumann", obstacles=wall)
    # ...which is fine with Dirichlet walls all round.
    _assert_spd(poisson((4, 6), boundary="dirichlet", obstacles=wall).A)


@pytest.mark.parametrize("kind", OBSTACLES)
@pytest.mark.parametrize("shape", [(24, 20), (12, 10, 16)])
def test_obstacle_shapes_keep_fluid_connected_to_the_open_face(kind, shape):
    solid = obstacle_mask(shape, kind, random_state=2)
    assert solid.shape == shape and solid.dtype == bool and 0 < solid.sum() < solid.size
    # Every fluid cell reaches the open face: the strictest boundary assembles without dropping any.
    problem = poisson(shape, boundary="neumann", obstacles=solid)
    assert problem.n_rows == solid.size - solid.sum()
    assert not solid[..., -1].all()


def test_obstacle_shapes_details():
    ball = obstacle_mask((9, 9, 9), "sphere", radius=0.3)
    assert ball[4, 4, 4] and not ball[0, 0, 0] and ball.sum() == ball[::-1, ::-1, ::-1].sum()
    np.testing.assert_array_equal(ball, np.transpose(ball, (1, 2, 0)))  # symmetric
    box = obstacle_mask((8, 10), "box", size=0.5)
    np.testing.assert_array_equal(np.argwhere(box).min(axis=0), [2, 2])
    np.testing.assert_array_equal(np.argwhere(box).max(axis=0), [5, 7])
    channel = obstacle_mask((10, 16), "channel", gap=0.2, thickness=2)
    np.testing.assert_array_equal(np.flatnonzero(channel.any(axis=0)), [7, 8])
    np.testing.assert_array_equal(np.flatnonzero(~channel[:, 7]), [4, 5])  # the gap
    a = obstacle_mask((16, 16, 16), "cylinders", count=3, random_state=5)
    assert np.array_equal(a, obstacle_mask((16, 16, 16), "cylinders", count=3, random_state=5))
    assert not np.array_equal(a, obstacle_mask((16, 16, 16), "cylinders", count=3, random_state=6))
    np.testing.assert_array_equal(a, np.broadcast_to(a[:1], a.shape))  # cylinders along axis 0
    # By name in poisson, with the random_state passed on.
    np.testing.assert_array_equal(poisson((16, 16, 16), obstacles="cylinders", random_state=7).mask,
                                  ~obstacle_mask((16, 16, 16), "cylinders", random_state=7))


def test_coefficient_fields():
    k = coefficient_field((32, 24), contrast=100.0, random_state=0)
    assert k.shape == (32, 24) and k.min() == pytest.approx(1) and k.max() == pytest.approx(100)
    np.testing.assert_array_equal(k, coefficient_field((32, 24), contrast=100.0, random_state=0))
    # Smooth: neighbouring cells differ far less than the range.
    assert np.abs(np.diff(np.log(k), axis=0)).max() < 0.3 * np.log(100)
    layers = coefficient_field((3, 8), kind="layers", contrast=5.0, n_layers=4)
    np.testing.assert_array_equal(layers, np.broadcast_to([1, 1, 5, 5, 1, 1, 5, 5], (3, 8)))
    np.testing.assert_array_equal(coefficient_field((4, 4), contrast=1.0, random_state=0), np.ones((4, 4)))
    problem = poisson((8, 8), coefficient="lognormal", random_state=3)
    np.testing.assert_array_equal(problem.coefficient, coefficient_field((8, 8), random_state=3))


def test_gaussian_random_field_statistics():
    f = gaussian_random_field((64, 64), correlation_length=4.0, n=20, random_state=0)
    assert f.shape == (64, 64, 20)
    np.testing.assert_allclose(f.mean(axis=(0, 1)), 0, atol=1e-12)
    np.testing.assert_allclose(f.std(axis=(0, 1)), 1)
    # Correlation exp(-r^2 / (2 l^2)): about 0.97 at one cell, 0.61 at l, small at 3 l.
    corr = [np.mean(f[:-r] * f[r:]) for r in (1, 4, 12)]
    assert corr[0] > 0.9 and 0.4 < corr[1] < 0.8 and abs(corr[2]) < 0.15
    np.testing.assert_array_equal(gaussian_random_field((8, 9), random_state=1),
                                  gaussian_random_field((8, 9), n=1, random_state=1)[..., 0])


@pytest.mark.parametrize("shape", [(32, 32), (16, 16, 16)])
def test_rhs_families_shapes_norms_and_frequencies(shape):
    problem = poisson(shape, obstacles="sphere")
    q = {}
    for kind in ("randn", "a_randn", "smooth"):
        b = rhs(problem, kind, n=6, random_state=0)
        assert b.shape == (problem.n_rows, 6) and b.dtype == np.float64
        np.testing.assert_allclose(np.linalg.norm(b, axis=0), 1)
        np.testing.assert_array_equal(b, rhs(problem, kind, n=6, random_state=0))
        assert not np.array_equal(b, rhs(problem, kind, n=6, random_state=1))
        one = rhs(problem, kind, random_state=0)
        assert one.shape == (problem.n_rows,)
        np.testing.assert_array_equal(one, rhs(problem, kind, n=1, random_state=0)[:, 0])
        np.testing.assert_array_equal(b[:, :2], rhs(problem, kind, n=2, random_state=0))  # draws column by column
        q[kind] = _rayleigh(problem.A, b)
    # Rayleigh quotients x'Ax / x'x: smooth (low modes) << randn (~ mean diagonal) << A randn (high modes).
    d = 2 * len(shape)
    assert q["smooth"] < 0.25 * q["randn"] and 0.8 * d < q["randn"] < 1.1 * d and q["a_randn"] > 1.2 * q["randn"]
    assert rhs(poisson(shape, dtype=np.float32), "a_randn", n=2, random_state=0).dtype == np.float32
    assert _rayleigh(problem.A, rhs(problem, "smooth", n=4, correlation_length=1.0, random_state=0)) > q["smooth"]


def test_64_cubed_assembles_quickly():
    start = time.perf_counter()
    problem = poisson((64, 64, 64), boundary="neumann", obstacles="sphere", coefficient="lognormal", random_state=0)
    elapsed = time.perf_counter() - start
    n = 64**3 - int((~problem.mask).sum())
    assert problem.A.shape == (n, n) and problem.A.indices.dtype == np.int32
    assert problem.A.nnz < 7 * n and problem.A.nnz > 6.5 * n
    assert elapsed < 2.0


@pytest.mark.parametrize("call, error, match", [
    (lambda: poisson(8), TypeError, r"pass \(8, 8\) for 2-D"),
    (lambda: poisson((8,)), ValueError, "2 or 3 dimensions"),
    (lambda: poisson((8, 0)), ValueError, r"shape\[1\] must be a positive integer"),
    (lambda: poisson((4, 4), boundary="periodic"), ValueError, "unknown boundary 'periodic'"),
    (lambda: poisson((4, 4), boundary=None), TypeError, "boundary must be one of"),
    (lambda: poisson((4, 4), obstacles=np.zeros((4, 4), int)), TypeError, "obstacles must be a boolean array"),
    (lambda: poisson((4, 4), obstacles=np.zeros((4, 5), bool)), ValueError, r"obstacles has shape \(4, 5\)"),
    (lambda: poisson((4, 4), obstacles=np.ones((4, 4), bool)), ValueError, "no fluid cell"),
    (lambda: poisson((4, 4), obstacles="torus"), ValueError, "unknown obstacles 'torus'"),
    (lambda: poisson((2, 2), coefficient=[[1, 2], [0, 1]]), ValueError, r"positive and finite.*k\[1, 0\] = 0"),
    (lambda: poisson((2, 2), coefficient=[[1, np.nan], [1, 1]]), ValueError, "positive and finite"),
    (lambda: poisson((2, 2), coefficient=np.ones((2, 2), bool)), TypeError, "real numeric"),
    (lambda: poisson((2, 2), coefficient="smooth"), ValueError, "unknown coefficient 'smooth'"),
    (lambda: poisson((2, 2), dtype=np.int64), TypeError, "float32 or float64"),
    (lambda: poisson((2, 2), drop_isolated="yes"), TypeError, "drop_isolated must be a bool"),
    (lambda: obstacle_mask((8, 8), "sphere", gap=0.1), TypeError, r"'sphere' takes parameters \['radius'\]"),
    (lambda: obstacle_mask((8, 8), "sphere", radius=0.7), ValueError, r"sphere radius must be in \(0, 0.5\]"),
    (lambda: obstacle_mask((8, 8), "box", size=1.0), ValueError, r"box size must be in \(0, 1.0\)"),
    (lambda: obstacle_mask((8, 8), "cylinders", count=0), ValueError, "cylinders count must be a positive"),
    (lambda: coefficient_field((4, 4), contrast=0.5), ValueError, "contrast must be >= 1"),
    (lambda: coefficient_field((4, 4), kind="layered"), ValueError, "unknown coefficient kind"),
    (lambda: gaussian_random_field((4, 4), correlation_length=-1), ValueError, "correlation_length"),
    (lambda: rhs(poisson((4, 4)), "ones"), ValueError, "unknown rhs kind 'ones'"),
    (lambda: rhs(poisson((4, 4)), "randn", n=0), ValueError, "n must be a positive integer"),
    (lambda: rhs(poisson((4, 4)), "randn", correlation_length=2.0), ValueError, "'smooth' rhs only"),
    (lambda: rhs(poisson_2d(4), "randn"), TypeError, "problem must be a PoissonProblem"),
    (lambda: poisson((4, 4)).to_grid(np.ones(15)), ValueError, r"shape \(16, \.\.\.\)"),
    (lambda: poisson((4, 4)).from_grid(np.ones((4, 5))), ValueError, r"shape \(4, 4\)"),
])
def test_bad_input_is_named(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_problem_checks_mask_against_matrix():
    with pytest.raises(ValueError, match="mask has 4 fluid cells but A has 9 rows"):
        PoissonProblem(A=poisson_2d(3), shape=(2, 2), mask=np.ones((2, 2), bool),
                       index=np.arange(4).reshape(2, 2), boundary="dirichlet")
