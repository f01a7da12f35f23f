"""Derivative estimators of sciml.discovery.differentiation: accuracy, axis semantics, errors."""

import doctest

import numpy as np
import pytest
import scipy.signal
from sklearn.base import clone

from sciml.discovery import differentiation
from sciml.discovery.differentiation import (
    Differentiator,
    FiniteDifference,
    SavitzkyGolay,
    SpectralDerivative,
    TotalVariation,
)

ALL = [FiniteDifference, SavitzkyGolay, SpectralDerivative, TotalVariation]


def sin_derivative(t, d):
    return [np.sin(t), np.cos(t), -np.sin(t), -np.cos(t), np.sin(t)][d]


def mapped_grid(n):
    """A smooth non-uniform grid on [0, 2]: spacing varies by a factor of about 4."""
    s = np.linspace(0.0, 2.0, n)
    return s + 0.1 * np.sin(np.pi * s)


def max_error(est, n, d, uniform):
    t = np.linspace(0.0, 2.0, n) if uniform else mapped_grid(n)
    return np.max(np.abs(est(np.sin(t), t) - sin_derivative(t, d)))


# ---------------------------------------------------------------------------
# FiniteDifference
# ---------------------------------------------------------------------------


def _fd_cases():
    for uniform in (True, False):
        for d in (1, 2, 3, 4):
            for order in (2, 4, 6):
                if d == 4 and order == 6:
                    continue  # round-off (eps / h**4) swamps h**6 before the asymptotic regime; see exactness test
                yield uniform, d, order


@pytest.mark.parametrize("uniform,d,order", list(_fd_cases()))
def test_finite_difference_convergence_order_edges_included(uniform, d, order):
    # Max error over all samples, edges included, on sin(t): halving h must
    # divide it by 2**order (observed order within 0.3 of the nominal one).
    n0 = 21 if (order == 6 and uniform) else 41
    est = FiniteDifference(d=d, order=order)
    coarse, fine = max_error(est, n0, d, uniform), max_error(est, 2 * n0 - 1, d, uniform)
    observed = np.log2(coarse / fine)
    assert abs(observed - order) <= 0.3, (coarse, fine, observed)


@pytest.mark.parametrize("uniform", [True, False])
@pytest.mark.parametrize("d", [1, 2, 3, 4])
@pytest.mark.parametrize("order", [2, 4, 6])
def test_finite_difference_exact_for_polynomials_of_degree_d_plus_order_minus_1(uniform, d, order):
    n = 30
    t = np.linspace(-1.0, 1.0, n) if uniform else np.sort(np.random.default_rng(d + order).uniform(-1, 1, n))
    degree = d + order - 1
    coef = np.random.default_rng(degree).standard_normal(degree + 1)
    poly = np.polynomial.Polynomial(coef)
    got = FiniteDifference(d=d, order=order)(poly(t), t)
    want = poly.deriv(d)(t)
    assert np.allclose(got, want, rtol=0, atol=1e-6 * np.max(np.abs(want)))


def test_finite_difference_second_order_example_and_scalar_spacing():
    t = np.linspace(0.0, 1.0, 11)
    assert np.allclose(FiniteDifference()(t**2, t), 2 * t)  # exact for quadratics, ends included
    assert np.allclose(FiniteDifference()(t**2, 0.1), 2 * t)
    assert np.allclose(FiniteDifference(d=2)(t**3, 0.1), 6 * t)


def test_finite_difference_periodic_uses_central_stencils_everywhere():
    n = 64
    t = 2 * np.pi * np.arange(n) / n
    for order in (2, 4, 6):
        err = [
            np.max(np.abs(FiniteDifference(order=order, periodic=True)(np.sin(3 * s), s) - 3 * np.cos(3 * s)))
            for s in (t, 2 * np.pi * np.arange(2 * n) / (2 * n))
        ]
        assert abs(np.log2(err[0] / err[1]) - order) < 0.3
    # the wrap-around is used: a periodic stencil on a non-periodic ramp is wrong at the ends
    ramp = np.arange(10.0)
    assert FiniteDifference(periodic=True)(ramp)[0] == pytest.approx((1 - 9) / 2)
    with pytest.raises(ValueError, match="uniformly spaced"):
        FiniteDifference(periodic=True)(np.sin(mapped_grid(20)), mapped_grid(20))


def test_finite_difference_long_series_vectorised():
    n = 100_000
    t = np.linspace(0.0, 10.0, n)
    got = FiniteDifference(order=4)(np.sin(t), t)
    assert np.max(np.abs(got - np.cos(t))) < 1e-10
    tn = t + 0.3 * (t[1] - t[0]) * np.sin(t)  # non-uniform
    got = FiniteDifference(order=4, d=2)(np.sin(tn), tn)
    assert np.max(np.abs(got + np.sin(tn))) < 1e-5


# ---------------------------------------------------------------------------
# SavitzkyGolay
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("d", [0, 1, 2])
def test_savitzky_golay_uniform_is_scipy_savgol(d):
    t = np.linspace(0.0, 3.0, 301)
    x = np.sin(2 * t) + 0.01 * np.random.default_rng(0).standard_normal(t.size)
    got = SavitzkyGolay(window_length=21, polyorder=4, d=d)(x, t)
    want = scipy.signal.savgol_filter(x, 21, 4, deriv=d, delta=t[1] - t[0], mode="interp")
    assert np.allclose(got, want, rtol=1e-10, atol=1e-10)


def test_savitzky_golay_default_window():
    # n // 20 rounded up to odd, at least polyorder + 2, at most 51 (and n).
    for n, window in [(400, 21), (100, 5), (5000, 51), (30, 5)]:
        x = np.random.default_rng(n).standard_normal(n)
        want = scipy.signal.savgol_filter(x, window, 3, deriv=1, mode="interp")
        assert np.allclose(SavitzkyGolay()(x), want), n


def test_savitzky_golay_nonuniform_matches_savgol_on_jittered_grid():
    # A grid jittered by 1e-7 spacings takes the non-uniform path (local
    # least squares with the actual coordinates) and must agree with savgol.
    n = 301
    h = 0.01
    t = h * np.arange(n) + 1e-7 * h * np.random.default_rng(1).uniform(-1, 1, n)
    x = np.sin(2 * t) + t**3
    got = SavitzkyGolay(window_length=21, polyorder=4, d=2)(x, t)
    want = scipy.signal.savgol_filter(x, 21, 4, deriv=2, delta=h, mode="interp")
    assert np.allclose(got, want, rtol=0, atol=1e-4 * np.max(np.abs(want)))


@pytest.mark.parametrize("d", [1, 2, 3])
def test_savitzky_golay_nonuniform_exact_for_polynomials(d):
    t = np.sort(np.random.default_rng(d).uniform(0.0, 2.0, 200))
    poly = np.polynomial.Polynomial([0.3, -1.0, 0.5, 2.0])
    got = SavitzkyGolay(window_length=15, polyorder=3, d=d)(poly(t), t)
    assert np.allclose(got, poly.deriv(d)(t), atol=1e-8)


def test_savitzky_golay_accuracy_on_smooth_nonuniform_data():
    t = mapped_grid(401)
    err = np.max(np.abs(SavitzkyGolay(window_length=11, polyorder=5)(np.sin(t), t) - np.cos(t)))
    assert err < 1e-6


# ---------------------------------------------------------------------------
# SpectralDerivative
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("n", [64, 65])
def test_spectral_derivative_of_periodic_sine_to_round_off(d, n):
    length = 4.0
    x = length * np.arange(n) / n - 1.0
    f = np.sin(2 * np.pi * 3 * x / length)
    kk = 2 * np.pi * 3 / length
    want = kk**d * np.sin(2 * np.pi * 3 * x / length + d * np.pi / 2)
    got = SpectralDerivative(d=d)(f, x[1] - x[0])
    assert np.max(np.abs(got - want)) < 1e-10 * kk**d
    assert np.allclose(SpectralDerivative(d=d)(f, x), got)  # coordinates, uniform


def test_spectral_derivative_nyquist_mode_dropped_for_odd_d():
    n = 16
    zigzag = (-1.0) ** np.arange(n)  # the Nyquist mode: its odd derivatives are not real
    assert np.allclose(SpectralDerivative(d=1)(zigzag), 0.0)
    assert np.allclose(SpectralDerivative(d=2)(zigzag), -(np.pi**2) * zigzag)


def test_spectral_derivative_filter_fraction_low_pass():
    n = 128
    x = 2 * np.pi * np.arange(n) / n
    f = np.sin(x) + 1e-2 * np.sin(40 * x)  # mode 40 of Nyquist 64
    dx = x[1] - x[0]
    assert np.max(np.abs(SpectralDerivative(filter_fraction=0.5)(f, dx) - np.cos(x))) < 1e-10
    assert np.max(np.abs(SpectralDerivative(filter_fraction=0.7)(f, dx) - np.cos(x))) > 0.3
    assert np.allclose(SpectralDerivative(filter_fraction=1.0)(f, dx), SpectralDerivative()(f, dx))


def test_spectral_derivative_rejects_nonuniform_grid():
    t = mapped_grid(32)
    with pytest.raises(ValueError, match="FiniteDifference"):
        SpectralDerivative()(np.sin(t), t)


# ---------------------------------------------------------------------------
# TotalVariation
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("uniform", [True, False])
def test_total_variation_beats_finite_differences_on_noisy_data(uniform):
    rng = np.random.default_rng(0)
    n = 500
    t = np.linspace(0.0, 2 * np.pi, n) if uniform else np.sort(rng.uniform(0, 2 * np.pi, n))
    f = np.sin(t) + 0.01 * rng.standard_normal(n)
    rms = {}
    for name, est in [("tv", TotalVariation()), ("fd", FiniteDifference())]:
        rms[name] = np.sqrt(np.mean((est(f, t) - np.cos(t)) ** 2))
    # measured (uniform): tv 0.02, fd 0.5
    assert rms["tv"] < 0.1 * rms["fd"]
    assert rms["tv"] < 0.05


def test_total_variation_keeps_a_kink_sharp():
    rng = np.random.default_rng(1)
    t = np.linspace(-1.0, 1.0, 400)
    f = np.abs(t - 0.1) + 0.01 * rng.standard_normal(t.size)
    u = TotalVariation()(f, t)
    away = np.abs(t - 0.1) > 0.1
    assert np.max(np.abs(u[away] - np.sign(t[away] - 0.1))) < 0.15
    sg = SavitzkyGolay(window_length=41)(f, t)
    assert np.sqrt(np.mean((u - np.sign(t - 0.1)) ** 2)) < np.sqrt(np.mean((sg - np.sign(t - 0.1)) ** 2))


def test_total_variation_noise_free_interior_accuracy():
    t = np.linspace(0.0, 2.0, 1000)
    u = TotalVariation()(np.exp(t), t)
    interior = slice(100, -100)
    assert np.max(np.abs(u[interior] - np.exp(t[interior]))) < 1e-4  # measured 1e-6 (edges: 1e-2)


def test_total_variation_explicit_alpha_trades_bias_for_smoothness():
    rng = np.random.default_rng(2)
    t = np.linspace(0.0, 1.0, 200)
    f = t**2 + 0.01 * rng.standard_normal(t.size)
    rough = TotalVariation(alpha=1e-6)(f, t)
    smooth = TotalVariation(alpha=1.0)(f, t)
    assert np.sum(np.abs(np.diff(smooth))) < 0.5 * np.sum(np.abs(np.diff(rough)))


# ---------------------------------------------------------------------------
# Properties shared by all estimators
# ---------------------------------------------------------------------------


def _make(cls, **params):
    defaults = {SavitzkyGolay: {"window_length": 7}, TotalVariation: {}, FiniteDifference: {}, SpectralDerivative: {}}
    return cls(**{**defaults[cls], **params})


@pytest.mark.parametrize("cls", ALL)
def test_axis_semantics_transpose_equivalence(cls):
    rng = np.random.default_rng(3)
    n_t, n_x = 40, 25
    field = np.cumsum(rng.standard_normal((n_t, n_x)), axis=1) + np.sin(np.linspace(0, 3, n_t))[:, None]
    coords = [0.1] if cls is SpectralDerivative else [0.1, np.linspace(0.0, 2.4, n_x), mapped_grid(n_x)]
    for t in coords:
        along_x = _make(cls, axis=1)(field, t)
        via_transpose = _make(cls, axis=0)(field.T, t).T
        assert np.array_equal(along_x, via_transpose), t
        assert np.array_equal(_make(cls, axis=-1)(field, t), along_x)
        # a 3-D array: the same along axis 1 as along axis 0 of the moved array
        cube = np.stack([field.T, 2 * field.T, -field.T], axis=1)  # (n_x, 3, n_t) -> differentiate along 0
        got = _make(cls, axis=0)(cube, t)
        assert np.allclose(got[:, 0], via_transpose.T)
        assert np.allclose(got[:, 1], 2 * via_transpose.T)
        moved = np.moveaxis(cube, 0, 2)
        assert np.array_equal(_make(cls, axis=2)(moved, t), np.moveaxis(got, 0, 2))


@pytest.mark.parametrize("cls", ALL)
def test_float32_and_integer_inputs(cls):
    n = 64
    x = 2 * np.pi * np.arange(n) / n
    f64 = np.sin(x)
    got32 = _make(cls)(f64.astype(np.float32), x[1] - x[0])
    got64 = _make(cls)(f64, x[1] - x[0])
    assert got32.dtype == np.float32 and got64.dtype == np.float64
    assert np.allclose(got32, got64, rtol=0, atol=1e-4 * np.max(np.abs(got64)))
    ints = np.arange(20) ** 2
    out = _make(cls)(ints)
    assert out.dtype == np.float64 and out.shape == ints.shape


def test_float32_accuracy_is_float32_level():
    t = np.linspace(0.0, 2.0, 201, dtype=np.float32)
    got = FiniteDifference(order=4)(np.sin(t), 0.01)
    assert got.dtype == np.float32
    # error ~ eps32 / h: round-off of float32 samples dominates truncation (h**4 ~ 1e-8)
    assert np.max(np.abs(got - np.cos(t.astype(np.float64)))) < 50 * np.finfo(np.float32).eps / 0.01


@pytest.mark.parametrize("cls", ALL)
def test_sklearn_conventions(cls):
    est = _make(cls, axis=1)
    assert clone(est).get_params() == est.get_params()
    assert isinstance(est, Differentiator)
    assert repr(est).startswith(cls.__name__ + "(")
    f = np.random.default_rng(0).standard_normal((3, 30))
    assert np.array_equal(est(f, 0.5), est.differentiate(f, 0.5))


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ALL)
def test_coordinate_errors(cls):
    est = _make(cls)
    f = np.sin(np.linspace(0, 1, 10))
    t = np.linspace(0, 1, 10)
    repeat = t.copy()
    repeat[4] = repeat[3]
    with pytest.raises(ValueError, match="strictly increasing; found a repeat at index 4"):
        est(f, repeat)
    decrease = t.copy()
    decrease[6] = 0.0
    with pytest.raises(ValueError, match="strictly increasing; found a decrease at index 6"):
        est(f, decrease)
    with pytest.raises(ValueError, match="strictly increasing; found a decrease at index 1"):
        est(f, t[::-1])
    bad = t.copy()
    bad[2] = np.nan
    with pytest.raises(ValueError, match="t contains NaN"):
        est(f, bad)
    with pytest.raises(ValueError, match="t has 9 coordinates but x has 10 samples along axis 0"):
        est(f, t[:9])
    with pytest.raises(ValueError, match="1-D array"):
        est(f, t[None, :])
    for spacing in (0.0, -1.0, np.inf, np.nan):
        with pytest.raises(ValueError, match="spacing t must be positive and finite"):
            est(f, spacing)


@pytest.mark.parametrize("cls", ALL)
def test_sample_errors(cls):
    est = _make(cls)
    f = np.sin(np.linspace(0, 1, 10))
    for bad in (np.nan, np.inf):
        g = f.copy()
        g[3] = bad
        with pytest.raises(ValueError, match="x contains NaN or infinity"):
            est(g)
    with pytest.raises(ValueError, match="at least one dimension"):
        est(np.float64(1.0))
    with pytest.raises(TypeError, match="real numeric array"):
        est(f.astype(complex))
    with pytest.raises(ValueError, match="axis 2 is out of bounds"):
        _make(cls, axis=2)(np.zeros((10, 10)))
    with pytest.raises(TypeError, match="axis must be an integer"):
        _make(cls, axis=1.0)(np.zeros((10, 10)))


@pytest.mark.parametrize(
    "est,n_ok",
    [
        (FiniteDifference(), 3),
        (FiniteDifference(d=2), 4),
        (FiniteDifference(d=3, order=4), 7),
        (FiniteDifference(d=4, order=6), 10),
        (FiniteDifference(d=2, periodic=True), 3),
        (SavitzkyGolay(window_length=9), 9),
        (SavitzkyGolay(polyorder=3), 5),
        (SavitzkyGolay(polyorder=2), 3),
        (SpectralDerivative(), 2),
        (TotalVariation(), 3),
    ],
)
def test_too_few_samples(est, n_ok):
    est(np.arange(float(n_ok)) ** 2)  # enough
    with pytest.raises(ValueError, match=f"needs at least {n_ok} samples along axis 0, got {n_ok - 1}"):
        est(np.arange(float(n_ok - 1)) ** 2)


@pytest.mark.parametrize(
    "est,exc,match",
    [
        (FiniteDifference(d=0), ValueError, "d must be a positive integer"),
        (FiniteDifference(d=5), ValueError, r"d must be one of \[1, 2, 3, 4\]"),
        (FiniteDifference(d=1.0), TypeError, "d must be a positive integer"),
        (FiniteDifference(order=3), ValueError, r"order must be one of \[2, 4, 6\]"),
        (FiniteDifference(order=8), ValueError, r"order must be one of \[2, 4, 6\]"),
        (FiniteDifference(periodic="yes"), TypeError, "periodic must be True or False"),
        (SavitzkyGolay(window_length=8), ValueError, "window_length must be odd"),
        (SavitzkyGolay(window_length=5, polyorder=5), ValueError, "polyorder=5 must be less than window_length=5"),
        (SavitzkyGolay(polyorder=2, d=3), ValueError, "d=3 exceeds polyorder=2"),
        (SavitzkyGolay(window_length=0), ValueError, "window_length must be a positive integer"),
        (SavitzkyGolay(polyorder=-1), ValueError, "polyorder must be a non-negative integer"),
        (SavitzkyGolay(window_length=41), ValueError, "needs at least 41 samples"),
        (SpectralDerivative(d=0), ValueError, "d must be a positive integer"),
        (SpectralDerivative(filter_fraction=0.0), ValueError, "filter_fraction must be positive"),
        (SpectralDerivative(filter_fraction=1.5), ValueError, r"filter_fraction must be in \(0, 1\]"),
        (TotalVariation(d=2), ValueError, "first derivatives only"),
        (TotalVariation(alpha=-1.0), ValueError, "alpha must be positive"),
        (TotalVariation(max_iter=0), ValueError, "max_iter must be a positive integer"),
        (TotalVariation(tol=-1.0), ValueError, "tol must be non-negative"),
    ],
)
def test_bad_parameters(est, exc, match):
    with pytest.raises(exc, match=match):
        est(np.sin(np.linspace(0, 1, 40)), 0.1)


def test_docstring_examples_and_public_api():
    result = doctest.testmod(differentiation, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 1 and result.failed == 0
    assert set(differentiation.__all__) == {c.__name__ for c in ALL} | {"Differentiator"}
