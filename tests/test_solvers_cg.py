"""CG / PCG on the sparse core against scipy and dense references."""

import doctest
import importlib

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator
from scipy.sparse.linalg import cg as scipy_cg

from sciml.data import poisson_2d, poisson_3d
from solvers.cg import CGResult, IncompleteCholesky, Jacobi, cg, check_spd_matrix


def _rhs(n, seed=0):
    return np.random.default_rng(seed).standard_normal(n)


@pytest.mark.parametrize("M", [None, "jacobi", "ic0"])
def test_solution_matches_dense_solve(M):
    A = poisson_2d(20)
    b = _rhs(A.shape[0])
    x, res = cg(A, b, rtol=1e-10, M=M)
    ref = np.linalg.solve(A.toarray(), b)
    assert res.converged and res.reason == "converged"
    np.testing.assert_allclose(x, ref, rtol=1e-8, atol=1e-8 * np.abs(ref).max())
    assert res.residual_norms[-1] == pytest.approx(np.linalg.norm(b - A @ x))
    assert res.residual_norms[-1] <= res.tolerance
    assert res.residual_norms.shape == (res.n_iter + 1,)


def test_iterations_match_scipy():
    A = poisson_2d(48)
    b = _rhs(A.shape[0], 1)
    count = []
    scipy_cg(A, b, rtol=1e-6, callback=lambda xk: count.append(1))
    _, res = cg(A, b, rtol=1e-6)
    assert abs(res.n_iter - len(count)) <= 1


def test_ic0_is_exact_cholesky_without_fill_and_matches_pattern():
    # Tridiagonal: IC(0) has no fill to drop, so it is the exact Cholesky factor.
    n = 50
    T = sp.diags_array([-np.ones(n - 1), 2.5 * np.ones(n), -np.ones(n - 1)], offsets=[-1, 0, 1], format="csr")
    L = IncompleteCholesky(T).L.toarray()
    np.testing.assert_allclose(L, np.linalg.cholesky(T.toarray()), rtol=1e-12, atol=1e-14)
    # 2-D Poisson: L L^T equals A on A's pattern (the defining property of IC(0)).
    A = poisson_2d(16)
    L = IncompleteCholesky(A).L
    product = (L @ L.T).toarray()
    on_pattern = A.toarray() != 0
    np.testing.assert_allclose(product[on_pattern], A.toarray()[on_pattern], atol=1e-12)
    assert sp.tril(L, k=-1).nnz + L.shape[0] == L.nnz  # lower triangular with A's pattern


def test_preconditioners_cut_iterations():
    A = poisson_3d(16)
    b = _rhs(A.shape[0], 2)
    _, plain = cg(A, b, rtol=1e-6)
    _, ic0 = cg(A, b, rtol=1e-6, M="ic0")
    assert ic0.n_iter < 0.6 * plain.n_iter
    # Jacobi helps when the diagonal varies.
    d = np.exp(np.random.default_rng(0).uniform(-3, 3, A.shape[0]))
    D = sp.diags_array(np.sqrt(d))
    B = (D @ A @ D).tocsr()
    _, plain = cg(B, b, rtol=1e-6, maxiter=5000)
    _, jac = cg(B, b, rtol=1e-6, M="jacobi")
    assert jac.converged and jac.n_iter < 0.5 * plain.n_iter


def test_preconditioner_forms_are_equivalent():
    A = poisson_2d(12)
    b = _rhs(A.shape[0], 3)
    jac = Jacobi(A)
    inv_diag = sp.diags_array(1.0 / A.diagonal())
    op = LinearOperator(A.shape, matvec=jac, dtype=np.float64)
    results = [cg(A, b, rtol=1e-8, M=M)[0] for M in ("jacobi", jac, op, inv_diag)]
    for x in results[1:]:
        np.testing.assert_allclose(x, results[0], rtol=1e-12)


def test_x0_callback_atol_and_maxiter():
    A = poisson_2d(16)
    b = _rhs(A.shape[0], 4)
    exact = np.linalg.solve(A.toarray(), b)
    x, res = cg(A, b, x0=exact)
    assert res.n_iter == 0 and res.converged
    calls = []
    _, res = cg(A, b, rtol=0.0, atol=1e-3, callback=lambda xk: calls.append(xk.copy()))
    assert res.converged and len(calls) == res.n_iter and res.tolerance == 1e-3
    _, res = cg(A, b, rtol=1e-12, maxiter=3)
    assert not res.converged and res.reason == "maxiter" and res.n_iter == 3
    assert res.residual_norms[-1] == pytest.approx(np.linalg.norm(b - A @ cg(A, b, rtol=1e-12, maxiter=3)[0]))
    rel = res.relative_residuals
    assert rel[0] == 1.0


def test_indefinite_matrix_is_flagged_not_silently_solved():
    # Positive diagonal, but indefinite: the breakdown is found during the iteration.
    A = sp.csr_array(np.array([[1.0, 2.0], [2.0, 1.0]]))
    x, res = cg(A, np.array([1.0, -1.0]))
    assert not res.converged and "not positive definite" in res.reason
    assert isinstance(res, CGResult)


@pytest.mark.parametrize(
    "A, b, match, exc",
    [
        (sp.csr_array(np.ones((3, 4))), np.ones(3), "square", ValueError),
        (sp.csr_array(np.array([[2.0, 1.0], [0.0, 2.0]])), np.ones(2), "symmetric", ValueError),
        (sp.csr_array(np.array([[2.0, 0.0], [0.0, -1.0]])), np.ones(2), "positive definite", ValueError),
        (sp.csr_array(np.array([[2.0, np.nan], [np.nan, 2.0]])), np.ones(2), "NaN", ValueError),
        (poisson_2d(3), np.ones(8), "rows", ValueError),
        (poisson_2d(3), np.r_[np.ones(8), np.nan], "NaN", ValueError),
        ("not a matrix", np.ones(2), "scipy.sparse", TypeError),
    ],
)
def test_bad_input(A, b, match, exc):
    with pytest.raises(exc, match=match):
        cg(A, b)


def test_bad_options():
    A = poisson_2d(4)
    b = np.ones(A.shape[0])
    with pytest.raises(ValueError, match="M must be"):
        cg(A, b, M="amg")
    with pytest.raises(ValueError, match="x0"):
        cg(A, b, x0=np.ones(3))
    with pytest.raises(ValueError, match="rtol"):
        cg(A, b, rtol=-1.0)
    # Kershaw's matrix: SPD but not an M-matrix, and IC(0) breaks down on it;
    # the message says what to do, and the shift it suggests works.
    S = sp.csr_array(np.array([[3.0, -2, 0, 2], [-2, 3, -2, 0], [0, -2, 3, -2], [2, 0, -2, 3]]))
    assert np.linalg.eigvalsh(S.toarray()).min() > 0
    with pytest.raises(ValueError, match="shift"):
        IncompleteCholesky(S)
    x, res = cg(S, np.ones(4), rtol=1e-10, M=IncompleteCholesky(S, shift=1.0))
    assert res.converged
    np.testing.assert_allclose(S @ x, np.ones(4), atol=1e-9)


def test_check_spd_matrix_accepts_dense_and_int():
    A = check_spd_matrix(np.array([[2, -1], [-1, 2]]))
    assert sp.issparse(A) and A.dtype == np.float64


def test_docstring_examples():
    # The package re-exports the function under the module's name: fetch the module itself.
    module = importlib.import_module("solvers.cg")
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
