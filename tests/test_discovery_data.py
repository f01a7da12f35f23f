"""Trajectory generators of sciml.discovery.data: the data satisfy their equations."""

import doctest

import numpy as np
import pytest

from sciml.discovery import data
from sciml.discovery.data import add_noise, burgers, kdv, lorenz, lorenz_coefficients
from sciml.discovery.differentiation import FiniteDifference, SpectralDerivative


@pytest.fixture(scope="module")
def lorenz_run():
    return lorenz()


@pytest.fixture(scope="module")
def burgers_run():
    return burgers()


def _lorenz_rhs_from_coefficients(X, coefficients):
    x, y, z = X.T
    terms = {"x": x, "y": y, "z": z, "x^2": x * x, "y^2": y * y, "z^2": z * z, "x y": x * y, "x z": x * z, "y z": y * z}
    return np.stack([sum(c * terms[name] for name, c in coefficients[eq].items()) for eq in "xyz"], axis=1)


# ---------------------------------------------------------------------------
# Lorenz
# ---------------------------------------------------------------------------


def test_lorenz_coefficients_exact_terms():
    assert lorenz_coefficients(10.0, 28.0, 8.0 / 3.0) == {
        "x": {"x": -10.0, "y": 10.0},
        "y": {"x": 28.0, "y": -1.0, "x z": -1.0},
        "z": {"x y": 1.0, "z": -8.0 / 3.0},
    }
    assert lorenz_coefficients(sigma=1.0, rho=2.0, beta=3.0)["z"]["z"] == -3.0


def test_lorenz_grid_and_initial_state(lorenz_run):
    t, X = lorenz_run
    assert t.shape == (5001,) and X.shape == (5001, 3)
    assert np.allclose(np.diff(t), 0.002) and t[0] == 0.0 and t[-1] == pytest.approx(10.0)
    assert np.array_equal(X[0], [-8.0, 8.0, 27.0])
    assert X.flags.c_contiguous


def test_lorenz_derivative_residual(lorenz_run):
    # 6th-order finite differences of the trajectory against the RHS built
    # from lorenz_coefficients: measured max relative residual 2.8e-9.
    t, X = lorenz_run
    rhs = _lorenz_rhs_from_coefficients(X, lorenz_coefficients())
    dX = FiniteDifference(order=6)(X, t)
    assert np.max(np.abs(dX - rhs)) < 1e-7 * np.max(np.abs(rhs))


def test_lorenz_nonuniform_times_match_dense_run(lorenz_run):
    t, X = lorenz_run
    rng = np.random.default_rng(0)
    idx = np.sort(rng.choice(np.arange(1, 1001), size=200, replace=False))
    t_nu = np.concatenate([[0.0], t[idx]])
    t2, X2 = lorenz(t_nu, sigma=10.0)
    assert np.array_equal(t2, t_nu)
    # chaotic growth over t <= 2 amplifies 1e-12 tolerances to well under 1e-8
    assert np.allclose(X2, X[np.concatenate([[0], idx])], rtol=0, atol=1e-8)
    # other parameters change the trajectory and its equation
    t3, X3 = lorenz(t_end=1.0, rho=15.0, x0=(1.0, 1.0, 1.0))
    dX3 = FiniteDifference(order=6)(X3, t3)
    rhs3 = _lorenz_rhs_from_coefficients(X3, lorenz_coefficients(rho=15.0))
    assert np.max(np.abs(dX3 - rhs3)) < 1e-7 * np.max(np.abs(rhs3))


def test_lorenz_errors():
    with pytest.raises(ValueError, match="strictly increasing; found a repeat or decrease at index 2"):
        lorenz([0.0, 0.1, 0.1])
    with pytest.raises(ValueError, match="NaN or infinity"):
        lorenz([0.0, np.nan])
    with pytest.raises(ValueError, match="x0 must be 3 finite numbers"):
        lorenz(x0=(1.0, 2.0))
    with pytest.raises(ValueError, match="dt must be positive"):
        lorenz(dt=0.0)
    with pytest.raises(ValueError, match="t_end must be positive"):
        lorenz(t_end=-1.0)
    assert lorenz([0.5])[1].shape == (1, 3)


# ---------------------------------------------------------------------------
# Burgers
# ---------------------------------------------------------------------------


def test_burgers_grid_and_initial_condition(burgers_run):
    t, x, u = burgers_run
    assert t.shape == (101,) and x.shape == (256,) and u.shape == (101, 256)
    assert t[0] == 0.0 and t[-1] == 10.0
    assert x[0] == -8.0 and x[-1] == pytest.approx(8.0 - 16.0 / 256)  # endpoint excluded
    assert np.allclose(u[0], np.exp(-((x + 2.0) ** 2)), atol=1e-14)
    # it steepens and decays: the peak moves right and drops
    assert x[np.argmax(u[-1])] > x[np.argmax(u[0])] + 1.0
    assert u[-1].max() < 0.8 * u[0].max()


def test_burgers_pde_residual():
    # u_t by 6th-order FD in time (dt = 0.01), u_x, u_xx spectral:
    # measured max |u_t + u u_x - 0.1 u_xx| = 1.8e-8 against max |u_t| = 0.70.
    t, x, u = burgers(nt=1001)
    dx = x[1] - x[0]
    ut = FiniteDifference(order=6, axis=0)(u, t)
    ux = SpectralDerivative(d=1, axis=1)(u, dx)
    uxx = SpectralDerivative(d=2, axis=1)(u, dx)
    residual = ut + u * ux - 0.1 * uxx
    assert np.max(np.abs(residual)) < 1e-6 * np.max(np.abs(ut))


def test_burgers_default_data_recover_coefficients(burgers_run):
    # Least squares of u_t on [u u_x, u_xx] from the default (dt = 0.1) data:
    # measured (-0.9999975, 0.0999991).
    t, x, u = burgers_run
    dx = x[1] - x[0]
    ut = FiniteDifference(order=6, axis=0)(u, t)
    theta = np.stack([(u * SpectralDerivative(axis=1)(u, dx)).ravel(), SpectralDerivative(d=2, axis=1)(u, dx).ravel()], 1)
    coef = np.linalg.lstsq(theta, ut.ravel(), rcond=None)[0]
    assert np.allclose(coef, [-1.0, 0.1], rtol=1e-4)


def test_burgers_converged_against_finer_grid(burgers_run):
    # Twice the grid points: measured max difference 5e-11.
    _, _, u = burgers_run
    _, _, fine = burgers(nx=512)
    assert np.max(np.abs(fine[:, ::2] - u)) < 1e-8


def test_burgers_conserves_mass(burgers_run):
    t, x, u = burgers_run
    mass = u.sum(axis=1) * (x[1] - x[0])
    assert np.max(np.abs(mass - mass[0])) < 1e-10


def test_burgers_errors():
    with pytest.raises(ValueError, match="nu must be positive"):
        burgers(nu=0.0)
    with pytest.raises(ValueError, match="nx must be at least 8"):
        burgers(nx=4)
    with pytest.raises(ValueError, match=r"x_range must satisfy x_range\[0\] < x_range\[1\]"):
        burgers(x_range=(1.0, -1.0))
    t, x, u = burgers(nx=32, nt=1)
    assert u.shape == (1, 32)


# ---------------------------------------------------------------------------
# KdV
# ---------------------------------------------------------------------------


def test_kdv_pde_residual():
    # u_t by 6th-order FD in time, u_x and u_xxx spectral.  Measured: max
    # |u_t + 6 u u_x + u_xxx| = 5e-6 away from the ends (64 points), 1.7e-4
    # overall (the field is periodic only to its edge values, < 2e-7, which
    # spectral third derivatives amplify), against max |u_t| = 0.31.
    t, x, u = kdv()
    dx = x[1] - x[0]
    ut = FiniteDifference(order=6, axis=0)(u, t)
    ux = SpectralDerivative(d=1, axis=1)(u, dx)
    uxxx = SpectralDerivative(d=3, axis=1)(u, dx)
    residual = ut + 6 * u * ux + uxxx
    scale = np.max(np.abs(ut))
    assert np.max(np.abs(residual[:, 64:-64])) < 1e-4 * scale
    assert np.max(np.abs(residual)) < 2e-3 * scale


def test_kdv_two_solitons_overtake_far_from_edges():
    t, x, u = kdv()
    assert u.shape == (201, 512) and t[-1] == 20.0 and x[0] == -30.0
    assert np.max(np.abs(u[:, [0, -1]])) < 2e-7  # effectively periodic

    def peaks(row):
        i = np.flatnonzero((row[1:-1] > row[:-2]) & (row[1:-1] >= row[2:]) & (row[1:-1] > 0.05)) + 1
        return x[i], row[i]

    for row in (u[0], u[-1]):
        pos, height = peaks(row)
        assert len(pos) == 2
        assert np.all(pos > -30.0 + 8) and np.all(pos < 30.0 - 8)
        assert np.allclose(sorted(height), [0.32, 0.605], atol=0.01)  # amplitudes k**2 / 2
    # the tall (fast) soliton starts behind the short one and ends ahead of it
    assert x[np.argmax(u[0])] < peaks(u[0])[0].max()
    assert x[np.argmax(u[-1])] > peaks(u[-1])[0].min()
    # single-soliton speeds far from the interaction: fast one at x0 + k**2 t before it
    assert x[np.argmax(u[0])] == pytest.approx(-14.0, abs=x[1] - x[0])


def test_kdv_conserves_mass():
    # int u dx = 2 [d/dx log F] = 2 (k1 + k2) for all t.
    t, x, u = kdv()
    mass = u.sum(axis=1) * (x[1] - x[0])
    assert np.allclose(mass, 2 * (1.1 + 0.8), rtol=0, atol=1e-5)
    t, x, u = kdv(k=(1.2, 0.5), x0=(-10.0, 0.0), t_end=5.0, nt=11)
    assert np.allclose(u.sum(axis=1) * (x[1] - x[0]), 2 * 1.7, atol=1e-4)


def test_kdv_no_overflow_for_large_arguments():
    t, x, u = kdv(k=(3.0, 2.0), x0=(0.0, 5.0), t_end=50.0, nt=6)
    assert np.all(np.isfinite(u)) and np.all(u >= 0)


def test_kdv_errors():
    with pytest.raises(ValueError, match="two distinct positive wavenumbers"):
        kdv(k=(1.0, 1.0))
    with pytest.raises(ValueError, match="two distinct positive wavenumbers"):
        kdv(k=(1.0, -0.5))
    with pytest.raises(TypeError, match="pair of real numbers"):
        kdv(x0=(1.0, 2.0, 3.0))


# ---------------------------------------------------------------------------
# add_noise
# ---------------------------------------------------------------------------


def test_add_noise_per_variable_scale(lorenz_run):
    _, X = lorenz_run
    noisy = add_noise(X, 0.1, random_state=0)
    assert noisy.shape == X.shape and noisy is not X
    ratio = np.std(noisy - X, axis=0) / np.std(X, axis=0)
    assert np.allclose(ratio, 0.1, rtol=0.05)
    assert np.allclose(np.mean(noisy - X, axis=0), 0.0, atol=0.1 * 4 * np.std(X, axis=0) / np.sqrt(X.shape[0]))


def test_add_noise_whole_field_scale(burgers_run):
    _, _, u = burgers_run
    noisy = add_noise(u, 0.05, random_state=1, axis=None)
    noise = noisy - u
    assert np.std(noise) == pytest.approx(0.05 * np.std(u), rel=0.05)
    # the same std at every location, also where the field is ~0
    per_column = np.std(noise, axis=0)
    assert per_column.min() > 0.5 * 0.05 * np.std(u)


def test_add_noise_reproducible_and_leaves_global_rng_alone():
    X = np.arange(200.0).reshape(100, 2)
    np.random.seed(123)
    state = np.random.get_state()
    a = add_noise(X, 0.01, random_state=7)
    b = add_noise(X, 0.01, random_state=7)
    c = add_noise(X, 0.01, random_state=8)
    d = add_noise(X, 0.01, random_state=np.random.default_rng(7))
    assert np.array_equal(a, b) and np.array_equal(a, d) and not np.array_equal(a, c)
    add_noise(X, 0.01)  # random_state=None: fresh entropy, still not the global RNG
    after = np.random.get_state()
    assert after[0] == state[0] and np.array_equal(after[1], state[1]) and after[2:] == state[2:]


def test_add_noise_dtype_copy_and_zero():
    X = np.linspace(0.0, 1.0, 50, dtype=np.float32)[:, None]
    noisy = add_noise(X, 0.1, random_state=0)
    assert noisy.dtype == np.float32
    X_before = X.copy()
    zero = add_noise(X, 0.0, random_state=0)
    assert np.array_equal(zero, X) and zero is not X
    assert np.array_equal(X, X_before)
    assert add_noise(np.arange(10), 0.1, random_state=0).dtype == np.float64
    constant = add_noise(np.ones((10, 2)), 0.5, random_state=0)
    assert np.array_equal(constant, np.ones((10, 2)))  # zero spread: no noise


def test_add_noise_errors():
    X = np.ones((5, 2))
    for level in (-0.1, np.nan, np.inf):
        with pytest.raises(ValueError, match="noise_level must be non-negative and finite"):
            add_noise(X, level)
    with pytest.raises(TypeError, match="noise_level must be a non-negative real number"):
        add_noise(X, "0.1")
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="X contains NaN or infinity"):
        add_noise(bad, 0.1)
    with pytest.raises(TypeError, match="real numeric array"):
        add_noise(X.astype(complex), 0.1)


def test_docstring_examples_and_public_api():
    result = doctest.testmod(data, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 5 and result.failed == 0
    assert data.__all__ == ["lorenz", "lorenz_coefficients", "burgers", "kdv", "add_noise"]
