"""Tests for unfolding.problems and unfolding.classical: generators, ISTA/FISTA
against scikit-learn's Lasso, IHT recovery and monotonicity, dense/sparse
agreement, and input validation."""

import math
import warnings

import numpy as np
import pytest
import scipy.fft
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
from sklearn.linear_model import Lasso

import unfolding.classical as classical
from sciml.data import random_csr
from unfolding.classical import (
    fista,
    iht,
    ista,
    l0_objective,
    lasso_objective,
    lasso_relative_gap,
    lasso_solution,
    lipschitz_constant,
)
from unfolding.problems import (
    SensingProblem,
    bernoulli_gaussian,
    gaussian_matrix,
    measure,
    nmse_db,
    partial_dct_matrix,
    standard_problem,
)


@pytest.fixture(scope="module")
def standard():
    problem = standard_problem()
    Y, X = problem.sample(64, random_state=1)
    return problem.A, Y, X


@pytest.fixture(scope="module")
def small():
    """A small well-posed Lasso problem (m=40, n=80, 3 signals)."""
    A = gaussian_matrix(40, 80, random_state=3)
    X = bernoulli_gaussian(3, 80, p=0.08, random_state=4)
    Y = measure(A, X, snr_db=30, random_state=5)
    return A, Y, X


@pytest.fixture(scope="module")
def sparse_pair():
    """The same sparse random A as scipy CSR and as a dense array."""
    A_sp = random_csr(60, 120, nnz_per_row=12, random_state=7)
    X = bernoulli_gaussian(5, 120, p=0.1, random_state=8)
    Y = measure(A_sp, X, snr_db=40, random_state=9)
    return A_sp, A_sp.toarray(), Y, X


# ----------------------------------------------------------------------------
# generators
# ----------------------------------------------------------------------------


def test_gaussian_matrix_unit_columns_and_scale():
    A = gaussian_matrix(250, 500, random_state=0)
    assert A.shape == (250, 500) and A.dtype == np.float64 and A.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(A, axis=0), 1.0, rtol=1e-12)
    raw = gaussian_matrix(250, 500, normalize_columns=False, random_state=0)
    assert np.var(raw) * 250 == pytest.approx(1.0, rel=0.02)  # N(0, 1/m) entries
    A32 = gaussian_matrix(250, 500, dtype=np.float32, random_state=0)
    assert A32.dtype == np.float32
    np.testing.assert_allclose(A32, A, rtol=1e-6, atol=1e-7)


def test_bernoulli_gaussian_fraction_and_values():
    X = bernoulli_gaussian(400, 500, p=0.1, random_state=0)
    assert X.shape == (400, 500)
    frac = np.count_nonzero(X) / X.size
    assert abs(frac - 0.1) < 0.005  # 200k draws: std 7e-4
    assert np.std(X[X != 0]) == pytest.approx(1.0, rel=0.03)
    assert np.count_nonzero(bernoulli_gaussian(3, 7, p=0.0, random_state=0)) == 0
    assert np.count_nonzero(bernoulli_gaussian(3, 7, p=1.0, random_state=0)) == 21


def test_partial_dct_rows_orthonormal_and_match_dct():
    A = partial_dct_matrix(64, 128, normalize_columns=False, random_state=0)
    np.testing.assert_allclose(A @ A.T, np.eye(64), atol=1e-12)
    x = np.random.default_rng(1).standard_normal(128)
    full = scipy.fft.dct(x, norm="ortho")
    # The kept rows are a subset of the DCT coefficients.
    rows = [int(np.argmin(np.abs(full - v))) for v in A @ x]
    np.testing.assert_allclose(A @ x, full[rows], atol=1e-12)
    assert len(set(rows)) == 64
    An = partial_dct_matrix(64, 128, random_state=0)
    np.testing.assert_allclose(np.linalg.norm(An, axis=0), 1.0, rtol=1e-12)
    np.testing.assert_allclose(An * np.linalg.norm(A, axis=0), A, atol=1e-12)  # only column scaling


@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 10.0, 40.0])
@pytest.mark.parametrize("sparse", [False, True])
def test_measure_snr_exact(snr_db, sparse, sparse_pair):
    A_sp, A_dense, _, _ = sparse_pair
    A = A_sp if sparse else A_dense
    X = bernoulli_gaussian(16, 120, random_state=2)
    clean = measure(A, X)
    np.testing.assert_allclose(clean, X @ A_dense.T, rtol=1e-12, atol=1e-12)
    Y = measure(A, X, snr_db=snr_db, random_state=3)
    assert Y.shape == (16, 60) and Y.flags.c_contiguous
    snr = 10 * np.log10(np.sum(clean**2) / np.sum((Y - clean) ** 2))
    assert abs(snr - snr_db) < 1e-9


def test_reproducible_and_global_rng_untouched(sparse_pair):
    A_sp, _, Y_sp, _ = sparse_pair
    np.random.seed(1234)
    state = np.random.get_state()
    a = gaussian_matrix(20, 30, random_state=5)
    np.testing.assert_array_equal(a, gaussian_matrix(20, 30, random_state=5))
    np.testing.assert_array_equal(
        partial_dct_matrix(10, 30, random_state=5), partial_dct_matrix(10, 30, random_state=5)
    )
    problem = SensingProblem(a, p=0.2, snr_db=20.0)
    Y1, X1 = problem.sample(4, random_state=6)
    Y2, X2 = problem.sample(4, random_state=np.random.default_rng(6))
    np.testing.assert_array_equal(Y1, Y2)
    np.testing.assert_array_equal(X1, X2)
    assert not np.array_equal(problem.sample(4, random_state=7)[1], X1)
    # Solvers (including the ARPACK path) draw nothing from the global RNG.
    ista(a, Y1, 0.1, n_iter=3)
    iht(a, Y1, k=3, n_iter=3)
    lasso_solution(a, Y1, 0.1)
    lipschitz_constant(A_sp)
    after = np.random.get_state()
    assert after[0] == state[0] and np.array_equal(after[1], state[1]) and after[2:] == state[2:]


def test_sensing_problem_sample_order_and_standard_problem():
    problem = standard_problem()
    assert (problem.m, problem.n, problem.p, problem.snr_db) == (250, 500, 0.1, None)
    np.testing.assert_array_equal(problem.A, gaussian_matrix(250, 500, random_state=0))
    Y, X = problem.sample(5, random_state=0)
    assert Y.shape == (5, 250) and X.shape == (5, 500)
    np.testing.assert_allclose(Y, X @ problem.A.T, rtol=1e-12, atol=1e-12)
    noisy = standard_problem(snr_db=20.0)
    Yn, Xn = noisy.sample(5, random_state=0)
    clean = Xn @ noisy.A.T
    assert 10 * np.log10(np.sum(clean**2) / np.sum((Yn - clean) ** 2)) == pytest.approx(20.0, abs=1e-9)


def test_nmse_db_values_numpy_and_torch():
    X = bernoulli_gaussian(8, 50, p=0.3, random_state=0)
    assert nmse_db(np.zeros_like(X), X) == pytest.approx(0.0, abs=1e-12)
    assert nmse_db(0.9 * X, X) == pytest.approx(-20.0, abs=1e-9)
    assert nmse_db(X, X) == -math.inf
    t = torch.from_numpy(X)
    for pair in [(0.9 * t, t), (0.9 * X, t), (0.9 * t, X)]:
        val = nmse_db(*pair)
        assert isinstance(val, float) and val == pytest.approx(-20.0, abs=1e-9)
    assert nmse_db((0.9 * t).requires_grad_(), t) == pytest.approx(-20.0, abs=1e-9)


# ----------------------------------------------------------------------------
# ISTA / FISTA / the Lasso reference
# ----------------------------------------------------------------------------


def _sklearn_lasso(A, Y, lam):
    m = A.shape[0]
    # sklearn: (1 / (2 m)) ||y - A w||^2 + alpha ||w||_1 == (our F) / m with alpha = lam / m.
    model = Lasso(alpha=lam / m, fit_intercept=False, tol=1e-14, max_iter=200000)
    return np.stack([model.fit(A, y).coef_.copy() for y in Y])


@pytest.mark.parametrize("solver", [ista, fista, "reference"])
def test_converges_to_sklearn_lasso(small, solver):
    A, Y, _ = small
    lam = 0.05
    X_sk = _sklearn_lasso(A, Y, lam)
    if solver == "reference":
        ref = lasso_solution(A, Y, lam, tol=1e-13)
        X_hat = ref.X
        assert ref.converged and ref.duality_gap <= 1e-13
        assert ref.F_star == pytest.approx(lasso_objective(A, X_sk, Y, lam), rel=1e-10)
    else:
        X_hat = solver(A, Y, lam, n_iter=20000, record=False).X
    np.testing.assert_allclose(X_hat, X_sk, atol=1e-7)
    assert np.count_nonzero(X_sk) > 0  # a non-trivial solution


def test_ista_objective_monotone_and_fista_faster(standard):
    A, Y, X = standard
    Y, X = Y[:8], X[:8]
    lam = 0.1
    r_ista = ista(A, Y, lam, n_iter=200)
    r_fista = fista(A, Y, lam, n_iter=200)
    obj = r_ista.objective
    assert obj.shape == (201,) and r_fista.objective.shape == (201,)
    assert np.all(np.diff(obj) <= 1e-12 * obj[:-1])
    assert obj[0] == pytest.approx(0.5 * np.mean(np.sum(Y**2, axis=1)))
    for k in (16, 50, 100, 200):
        assert r_fista.objective[k] <= r_ista.objective[k]
    assert r_ista.objective[-1] == pytest.approx(lasso_objective(A, r_ista.X, Y, lam), rel=1e-12)


def test_standard_problem_nmse_ballpark(standard):
    A, Y, X = standard
    lam = 0.1
    r_ista = ista(A, Y, lam, n_iter=16, X_true=X)
    r_fista = fista(A, Y, lam, n_iter=16, X_true=X)
    assert r_ista.nmse_db.shape == (17,)
    assert r_ista.nmse_db[0] == pytest.approx(0.0)  # X0 = 0
    assert r_ista.nmse_db[-1] == pytest.approx(nmse_db(r_ista.X, X), abs=1e-9)
    assert -9.0 < r_ista.nmse_db[16] < -4.0
    assert r_fista.nmse_db[16] < r_ista.nmse_db[16] - 3.0
    # FISTA reaches ISTA's 16-iteration accuracy in fewer iterations.
    assert r_fista.iterations_to_nmse(r_ista.nmse_db[16]) < 16
    assert r_ista.iterations_to_nmse(-100.0) is None


def test_lasso_relative_gap(small):
    A, Y, _ = small
    lam = 0.05
    ref = lasso_solution(A, Y, lam)
    assert ref.n_iter > 0 and ref.X.shape == (3, 80)
    assert abs(lasso_relative_gap(A, ref.X, Y, lam, F_star=ref.F_star)) < 1e-15
    X16 = ista(A, Y, lam, n_iter=16, record=False).X
    gap = lasso_relative_gap(A, X16, Y, lam, F_star=ref.F_star)
    assert gap > 1e-3
    assert lasso_relative_gap(A, X16, Y, lam) == pytest.approx(gap, rel=1e-8)


def test_lasso_solution_warns_when_not_converged(small):
    A, Y, _ = small
    with pytest.warns(RuntimeWarning, match="duality gap"):
        ref = lasso_solution(A, Y, 0.05, max_iter=5)
    assert not ref.converged and ref.n_iter == 5


def test_warm_start_tol_and_zero_iterations(small):
    A, Y, _ = small
    lam = 0.05
    ref = lasso_solution(A, Y, lam, tol=1e-13)
    r = ista(A, Y, lam, n_iter=50, X0=ref.X, tol=1e-8)
    assert r.converged and r.n_iter == 1 and r.objective.shape == (2,)
    np.testing.assert_allclose(r.X, ref.X, atol=1e-8)
    r = fista(A, Y, lam, n_iter=5000, tol=1e-6)
    assert r.converged and r.n_iter < 5000 and r.objective.shape == (r.n_iter + 1,)
    r = ista(A, Y, lam, n_iter=0, X0=ref.X)
    assert r.n_iter == 0 and r.objective.shape == (1,) and not r.converged
    np.testing.assert_array_equal(r.X, ref.X)


def test_step_and_lipschitz(small, monkeypatch):
    A, Y, _ = small
    L = lipschitz_constant(A)
    assert L == pytest.approx(np.linalg.norm(A, 2) ** 2, rel=1e-12)
    # An explicit step = 1/L reproduces the default exactly.
    np.testing.assert_array_equal(ista(A, Y, 0.05, n_iter=10).X, ista(A, Y, 0.05, n_iter=10, step=1 / L).X)
    # The ARPACK branch (large matrices), dense and sparse, agrees too.
    monkeypatch.setattr(classical, "_DENSE_NORM_MAX", 2)
    assert lipschitz_constant(A) == pytest.approx(L, rel=1e-10)
    assert lipschitz_constant(sp.csr_array(A)) == pytest.approx(L, rel=1e-10)
    assert lipschitz_constant(sp.csr_array(A.astype(np.float32))) == pytest.approx(L, rel=1e-6)


def test_float32_runs_in_float32(small):
    A, Y, _ = small
    r32 = fista(A.astype(np.float32), Y, 0.05, n_iter=50)
    r64 = fista(A, Y, 0.05, n_iter=50)
    assert r32.X.dtype == np.float32 and r32.objective.dtype == np.float64
    np.testing.assert_allclose(r32.X, r64.X, atol=1e-4)


# ----------------------------------------------------------------------------
# IHT
# ----------------------------------------------------------------------------


def test_iht_topk_recovers_exactly_sparse(standard):
    A = standard[0]
    rng = np.random.default_rng(11)
    k, n_samples = 10, 8
    X = np.zeros((n_samples, 500))
    for row in X:
        row[rng.choice(500, size=k, replace=False)] = rng.choice([-1, 1], k) * rng.uniform(0.5, 2.0, k)
    Y = measure(A, X)
    r = iht(A, Y, k=k, n_iter=600, X_true=X)
    assert nmse_db(r.X, X) < -100
    assert np.all(np.count_nonzero(r.X, axis=1) <= k)
    assert np.all(np.diff(r.objective) <= 1e-12 * r.objective[:-1])  # step 1/L: monotone


def test_iht_l0_objective_non_increasing(standard):
    A, Y, X = standard
    Y = Y[:8]
    lam0 = 0.05
    r = iht(A, Y, lam0=lam0, n_iter=100)
    obj = r.objective
    assert np.all(np.diff(obj) <= 1e-12 * obj[:-1])
    assert obj[-1] == pytest.approx(l0_objective(A, r.X, Y, lam0), rel=1e-12)
    # One step is hard thresholding at sqrt(2 lam0 step) of a gradient step.
    step = 0.5 / lipschitz_constant(A)
    one = iht(A, Y, lam0=lam0, n_iter=1, step=step, X0=r.X).X
    V = r.X - step * (r.X @ A.T - Y) @ A
    expected = np.where(np.abs(V) > np.sqrt(2 * lam0 * step), V, 0.0)
    np.testing.assert_allclose(one, expected, atol=1e-12)


# ----------------------------------------------------------------------------
# dense and sparse A agree
# ----------------------------------------------------------------------------


SOLVER_RUNS = pytest.mark.parametrize(
    "run",
    [
        lambda A, Y, X: ista(A, Y, 0.05, n_iter=30, X_true=X),
        lambda A, Y, X: fista(A, Y, 0.05, n_iter=30, X_true=X),
        lambda A, Y, X: iht(A, Y, k=8, n_iter=30, X_true=X),
        lambda A, Y, X: iht(A, Y, lam0=0.01, n_iter=30, X_true=X),
    ],
    ids=["ista", "fista", "iht_k", "iht_lam0"],
)


@SOLVER_RUNS
def test_dense_and_sparse_agree(sparse_pair, run):
    A_sp, A_dense, Y, X = sparse_pair
    r_sp, r_dense = run(A_sp, Y, X), run(A_dense, Y, X)
    np.testing.assert_allclose(r_sp.X, r_dense.X, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(r_sp.objective, r_dense.objective, rtol=1e-10)
    np.testing.assert_allclose(r_sp.nmse_db, r_dense.nmse_db, rtol=1e-8)


def test_dense_and_sparse_objectives_agree(sparse_pair):
    A_sp, A_dense, Y, X = sparse_pair
    assert lasso_objective(A_sp, X, Y, 0.1) == pytest.approx(lasso_objective(A_dense, X, Y, 0.1), rel=1e-12)
    assert l0_objective(A_sp, X, Y, 0.1) == pytest.approx(l0_objective(A_dense, X, Y, 0.1), rel=1e-12)
    assert lipschitz_constant(A_sp) == pytest.approx(lipschitz_constant(A_dense), rel=1e-12)
    ref_sp, ref_dense = lasso_solution(A_sp, Y, 0.05), lasso_solution(A_dense, Y, 0.05)
    assert ref_sp.F_star == pytest.approx(ref_dense.F_star, rel=1e-9)
    r32 = ista(A_sp.astype(np.float32), Y, 0.05, n_iter=30)
    assert r32.X.dtype == np.float32
    np.testing.assert_allclose(r32.X, ista(A_dense, Y, 0.05, n_iter=30).X, atol=1e-4)


# ----------------------------------------------------------------------------
# A as a LinearOperator agrees with the dense matrix
# ----------------------------------------------------------------------------


@SOLVER_RUNS
def test_dense_and_linear_operator_agree(sparse_pair, run):
    _, A_dense, Y, X = sparse_pair
    r_op, r_dense = run(spla.aslinearoperator(A_dense), Y, X), run(A_dense, Y, X)
    np.testing.assert_allclose(r_op.X, r_dense.X, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(r_op.objective, r_dense.objective, rtol=1e-10)
    np.testing.assert_allclose(r_op.nmse_db, r_dense.nmse_db, rtol=1e-8)


def test_dense_and_linear_operator_objectives_agree(sparse_pair):
    A_sp, A_dense, Y, X = sparse_pair
    # A matrix-free operator (only matvec/rmatvec): matmat/rmatmat loop over columns.
    matrix_free = spla.LinearOperator(A_dense.shape, matvec=lambda v: A_dense @ v, rmatvec=lambda v: A_dense.T @ v,
                                      dtype=np.float64)
    for op in (spla.aslinearoperator(A_dense), spla.aslinearoperator(A_sp), matrix_free):
        assert lasso_objective(op, X, Y, 0.1) == pytest.approx(lasso_objective(A_dense, X, Y, 0.1), rel=1e-12)
        assert l0_objective(op, X, Y, 0.1) == pytest.approx(l0_objective(A_dense, X, Y, 0.1), rel=1e-12)
        assert lipschitz_constant(op) == pytest.approx(lipschitz_constant(A_dense), rel=1e-12)
    np.testing.assert_allclose(ista(matrix_free, Y, 0.05, n_iter=10).X, ista(A_dense, Y, 0.05, n_iter=10).X,
                               rtol=1e-9, atol=1e-11)
    ref_op, ref_dense = lasso_solution(spla.aslinearoperator(A_dense), Y, 0.05), lasso_solution(A_dense, Y, 0.05)
    assert ref_op.F_star == pytest.approx(ref_dense.F_star, rel=1e-9)
    r32 = ista(spla.aslinearoperator(A_dense.astype(np.float32)), Y, 0.05, n_iter=30)
    assert r32.X.dtype == np.float32
    np.testing.assert_allclose(r32.X, ista(A_dense, Y, 0.05, n_iter=30).X, atol=1e-4)
    # One row or one column: ARPACK cannot, the products give the norm.
    for B in (A_dense[:1], A_dense[:, :1]):
        assert lipschitz_constant(spla.aslinearoperator(B)) == pytest.approx(np.linalg.norm(B) ** 2, rel=1e-12)


def test_linear_operator_lipschitz_leaves_the_global_rng_alone(sparse_pair):
    state = np.random.get_state()
    lipschitz_constant(spla.aslinearoperator(sparse_pair[1]))
    after = np.random.get_state()
    assert after[0] == state[0] and np.array_equal(after[1], state[1]) and after[2:] == state[2:]


# ----------------------------------------------------------------------------
# input validation
# ----------------------------------------------------------------------------

_A = gaussian_matrix(6, 10, random_state=0)
_Y = np.ones((3, 6))


def _with_nan(a):
    a = np.array(a, dtype=float)
    a.flat[1] = np.nan
    return a


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: ista(_A, np.ones((3, 7)), 0.1), ValueError, r"Y has shape \(3, 7\) but A has shape \(6, 10\)"),
        (lambda: ista(_A, np.ones(6), 0.1), ValueError, r"Y must be 2-D .*Y\[None, :\]"),
        (lambda: ista(_A[0], _Y, 0.1), ValueError, "A must be 2-D"),
        (lambda: ista(_with_nan(_A), _Y, 0.1), ValueError, "A contains NaN or inf"),
        (lambda: ista(_A, _with_nan(_Y), 0.1), ValueError, "Y contains NaN or inf"),
        (lambda: fista(_A, np.full((3, 6), np.inf), 0.1), ValueError, "Y contains NaN or inf"),
        (lambda: ista(_A, _Y, 0.0), ValueError, "lam must be positive"),
        (lambda: fista(_A, _Y, -1.0), ValueError, "lam must be positive"),
        (lambda: ista(_A, _Y, np.nan), ValueError, "lam must be positive and finite"),
        (lambda: ista(_A, _Y, "0.1"), TypeError, "lam must be a positive real"),
        (lambda: ista(_A, _Y, 0.1, n_iter=-1), ValueError, "n_iter must be a non-negative integer"),
        (lambda: ista(_A, _Y, 0.1, n_iter=10.0), TypeError, "n_iter must be a non-negative integer"),
        (lambda: ista(_A, _Y, 0.1, step=0.0), ValueError, "step must be positive"),
        (lambda: ista(_A, _Y, 0.1, tol=-1e-3), ValueError, "tol must be non-negative"),
        (lambda: ista(_A, _Y, 0.1, X0=np.zeros((2, 10))), ValueError, r"X0 has shape \(2, 10\) but Y has shape"),
        (lambda: ista(_A, _Y, 0.1, X0=np.zeros((3, 9))), ValueError, r"X0 has shape \(3, 9\) but A has shape"),
        (lambda: ista(_A, _Y, 0.1, X0=_with_nan(np.zeros((3, 10)))), ValueError, "X0 contains NaN"),
        (lambda: fista(_A, _Y, 0.1, X_true=np.zeros((3, 10))), ValueError, "X_true is all zeros"),
        (lambda: ista(_A, _Y, 0.1, X_true=np.zeros((4, 10))), ValueError, r"X_true has shape \(4, 10\)"),
        (lambda: ista(sp.csc_array(_A), _Y, 0.1), TypeError, r"CSC .*tocsr\(\)"),
        (lambda: ista(torch.ones(6, 10), _Y, 0.1), TypeError, "got a torch.Tensor"),
        (lambda: ista(_A.astype(np.complex128), _Y, 0.1), TypeError, "float32 or float64"),
        (lambda: ista(spla.aslinearoperator(_A.astype(np.complex128)), _Y, 0.1), TypeError,
         "LinearOperator of dtype complex128; it must be float32 or float64"),
        (lambda: lipschitz_constant(spla.aslinearoperator(np.ones((6, 10), dtype=np.int64))), TypeError,
         "LinearOperator of dtype int64"),
        (lambda: ista(spla.aslinearoperator(_A), np.ones((3, 7)), 0.1), ValueError,
         r"Y has shape \(3, 7\) but A has shape \(6, 10\)"),
        (lambda: ista(_A, _Y, 0.1, n_threads=0), ValueError, "n_threads"),
        (lambda: ista(np.zeros((6, 10)), _Y, 0.1), ValueError, r"A is zero \(\|\|A\|\|_2 = 0\)"),
        (lambda: fista(sp.csr_array((6, 10)), _Y, 0.1), ValueError, "A is zero"),
        (lambda: iht(np.zeros((6, 10)), _Y, k=2), ValueError, "A is zero"),
        (lambda: lasso_solution(np.zeros((6, 10)), _Y, 0.1), ValueError, "A is zero"),
        (lambda: ista(_A, np.zeros((0, 6)), 0.1), ValueError, r"Y has no signals \(shape \(0, 6\)\)"),
        (lambda: iht(_A, np.zeros((0, 6)), k=2), ValueError, "Y has no signals"),
        (lambda: iht(_A, _Y), ValueError, "exactly one of lam0"),
        (lambda: iht(_A, _Y, lam0=0.1, k=2), ValueError, "exactly one of lam0"),
        (lambda: iht(_A, _Y, k=0), ValueError, "k must be between 1 and n = 10"),
        (lambda: iht(_A, _Y, k=11), ValueError, "k must be between 1 and n = 10"),
        (lambda: iht(_A, _Y, k=2.0), TypeError, "k must be an integer"),
        (lambda: iht(_A, _Y, k=True), TypeError, "k must be an integer"),
        (lambda: iht(_A, _Y, lam0=-0.1), ValueError, "lam0 must be positive"),
        (lambda: lasso_objective(_A, np.zeros((3, 9)), _Y, 0.1), ValueError, r"X has shape \(3, 9\)"),
        (lambda: l0_objective(_A, np.zeros((3, 10)), _Y, 0.0), ValueError, "lam0 must be positive"),
        (lambda: lasso_solution(_A, _Y, 0.1, check_every=0), ValueError, "check_every"),
        (lambda: lasso_relative_gap(_A, np.zeros((3, 10)), np.zeros((3, 6)), 0.1), ValueError,
         "F_star must be positive"),
        (lambda: gaussian_matrix(0, 5), ValueError, "m must be a positive integer"),
        (lambda: gaussian_matrix(5, 2.5), TypeError, "n must be a positive integer"),
        (lambda: gaussian_matrix(5, 5, dtype=np.int32), TypeError, "float32 or float64"),
        (lambda: partial_dct_matrix(6, 5), ValueError, "m <= n"),
        (lambda: bernoulli_gaussian(3, 5, p=1.5), ValueError, r"p must be in \[0, 1\]"),
        (lambda: bernoulli_gaussian(3, 5, p=np.nan), ValueError, r"p must be in \[0, 1\]"),
        (lambda: measure(_A, np.ones((2, 9))), ValueError, r"X has shape \(2, 9\) but A has shape \(6, 10\)"),
        (lambda: measure(_A, np.ones((2, 10)), snr_db=np.inf), ValueError, "snr_db must be finite"),
        (lambda: measure(_A, _with_nan(np.ones((2, 10)))), ValueError, "X contains NaN"),
        (lambda: measure(sp.coo_array(_A), np.ones((2, 10))), TypeError, "tocsr"),
        (lambda: nmse_db(np.ones((2, 3)), np.ones((3, 2))), ValueError, "shape mismatch"),
        (lambda: nmse_db(np.ones(3), np.zeros(3)), ValueError, "X is all zeros"),
        (lambda: nmse_db(torch.ones(3), torch.ones(4)), ValueError, "shape mismatch"),
    ],
)
def test_bad_inputs(call, exc, match):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning instead of (or before) the error
        with pytest.raises(exc, match=match):
            call()


def test_iterations_to_nmse_needs_x_true(small):
    A, Y, _ = small
    with pytest.raises(ValueError, match="pass X_true"):
        ista(A, Y, 0.05, n_iter=2).iterations_to_nmse(-10)


def test_docstring_examples():
    import doctest

    import unfolding.problems as problems

    for module in (problems, classical):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.failed == 0
