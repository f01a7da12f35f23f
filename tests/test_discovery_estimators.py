"""SINDy / PDESINDy estimators and the weak form: recovery of known equations, I/O, errors."""

import pickle
import warnings

import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from sciml.discovery import (
    EnsembleOptimizer,
    FiniteDifference,
    PDELibrary,
    PDESINDy,
    SINDy,
    SpectralDerivative,
    STLSQ,
    WeakForm,
)
from sciml.discovery.data import add_noise, burgers, kdv, lorenz, lorenz_coefficients
from sciml.discovery.weak import AxisTestFunctions, corner_wavenumber, kernel_derivative


@pytest.fixture(scope="module")
def lorenz_data():
    return lorenz()


def _lorenz_truth(term_names):
    co = lorenz_coefficients()
    return np.array([[co[v].get(n, 0.0) for n in term_names] for v in "xyz"])


def _rel_err(coef, truth):
    return np.linalg.norm(coef - truth) / np.linalg.norm(truth)


# --- the weak form ------------------------------------------------------------------
def test_weak_derivative_identity_is_exact_for_smooth_data():
    """<phi, u'> = -<phi', u> to quadrature accuracy: the weak form needs no derivative of u."""
    t = np.linspace(0.0, 4.0, 801)
    u = np.sin(3 * t) + 0.2 * t**2
    du = 3 * np.cos(3 * t) + 0.4 * t
    axis = AxisTestFunctions(t, radius=60, degree=8, stride=7)
    lhs = axis.integrate(du, 0, 0)
    rhs = -axis.integrate(u, 1, 0)
    np.testing.assert_allclose(rhs, lhs, rtol=1e-8, atol=1e-10)
    # Second derivative: <phi, u''> = <phi'', u>.
    d2u = -9 * np.sin(3 * t) + 0.4
    np.testing.assert_allclose(axis.integrate(u, 2, 0), axis.integrate(d2u, 0, 0), rtol=1e-6, atol=1e-8)


def test_nonuniform_axis_uses_sparse_quadrature_and_agrees():
    # Jittered sampling (clock noise of 30 % of the step): trapezoid quadrature, second order.
    rng = np.random.default_rng(0)
    t = np.arange(1501) * 4.0 / 1500
    t[1:-1] += rng.uniform(-0.3, 0.3, 1499) * (t[1] - t[0])
    u, du = np.sin(3 * t), 3 * np.cos(3 * t)
    axis = AxisTestFunctions(t, radius=80, degree=8, stride=10)
    assert not axis.uniform
    np.testing.assert_allclose(-axis.integrate(u, 1, 0), axis.integrate(du, 0, 0), rtol=1e-3, atol=1e-3)


def test_kernel_and_corner():
    k = kernel_derivative(10, 4, 0, 0.1)
    assert k[0] == 0 and k[-1] == 0 and k[10] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="must exceed"):
        kernel_derivative(10, 2, 2, 0.1)
    # A band-limited signal plus white noise: the corner sits near the signal's top wavenumber.
    t = np.arange(4096) * 0.01
    rng = np.random.default_rng(0)
    u = np.sin(2 * t) + np.sin(5 * t) + 0.3 * rng.standard_normal(t.size)
    k_c = corner_wavenumber(u, 0, 0.01)
    assert 4 < k_c < 40


# --- ODEs -----------------------------------------------------------------------------
def test_lorenz_clean_exact(lorenz_data):
    t, X = lorenz_data
    model = SINDy(feature_names=["x", "y", "z"]).fit(X, t=t)
    truth = _lorenz_truth(model.term_names_)
    np.testing.assert_array_equal(model.coef_ != 0, truth != 0)
    assert _rel_err(model.coef_, truth) < 1e-5
    assert model.equations(2) == [
        "x' = -10.00 x + 10.00 y",
        "y' = 28.00 x - 1.00 y - 1.00 x z",
        "z' = -2.67 z + 1.00 x y",
    ]


@pytest.mark.parametrize("noise, max_err", [(0.05, 0.03), (0.10, 0.07)])
def test_lorenz_noisy_defaults(lorenz_data, noise, max_err):
    """The shipped defaults, no knowledge of the truth: the issue's coefficient targets."""
    t, X = lorenz_data
    for seed in range(3):
        model = SINDy(feature_names=["x", "y", "z"]).fit(add_noise(X, noise, random_state=seed), t=t)
        truth = _lorenz_truth(model.term_names_)
        np.testing.assert_array_equal(model.coef_ != 0, truth != 0)
        assert _rel_err(model.coef_, truth) < max_err


def test_lorenz_low_data_defaults():
    """200 samples (dt=0.01, T=2) at 2 % noise: PySINDy reaches at most 4/10 here, tuned."""
    t, X = lorenz(dt=0.01, t_end=2.0)
    for seed in range(3):
        model = SINDy(feature_names=["x", "y", "z"]).fit(add_noise(X, 0.02, random_state=seed), t=t)
        truth = _lorenz_truth(model.term_names_)
        np.testing.assert_array_equal(model.coef_ != 0, truth != 0)
        assert _rel_err(model.coef_, truth) < 0.05
        # The short series capped the support and lowered the kernel's degree.
        axis = model.test_functions_[0]
        assert axis.radius <= 6 and axis.degree <= axis.radius


def test_strong_form_on_clean_data(lorenz_data):
    t, X = lorenz_data
    model = SINDy(differentiation=FiniteDifference(order=4), feature_names=list("xyz")).fit(X, t=t)
    truth = _lorenz_truth(model.term_names_)
    np.testing.assert_array_equal(model.coef_ != 0, truth != 0)
    assert _rel_err(model.coef_, truth) < 1e-4
    # Given derivatives skip differentiation.
    x_dot = model.predict(X)
    again = SINDy(differentiation=FiniteDifference(), feature_names=list("xyz")).fit(X, t=t, x_dot=x_dot)
    np.testing.assert_allclose(again.coef_, model.coef_, atol=1e-8)
    assert model.score(X, t=t) > 0.9999


def test_nonuniform_and_multiple_trajectories():
    rng = np.random.default_rng(1)
    t = np.sort(np.concatenate([[0.0, 8.0], rng.uniform(0.0, 8.0, 4000)]))
    _, X1 = lorenz(t=t)
    t2, X2 = lorenz(x0=(5.0, -6.0, 20.0), t_end=6.0)
    model = SINDy(feature_names=list("xyz")).fit([X1, X2], t=[t, t2])
    truth = _lorenz_truth(model.term_names_)
    np.testing.assert_array_equal(model.coef_ != 0, truth != 0)
    assert _rel_err(model.coef_, truth) < 1e-3
    assert len(model.test_functions_) == 2 and not model.test_functions_[0].uniform


def test_simulate_matches_truth(lorenz_data):
    t, X = lorenz_data
    model = SINDy(feature_names=list("xyz")).fit(add_noise(X, 0.01, random_state=0), t=t)
    t_test, X_test = lorenz(x0=(3.0, 4.0, 15.0), t_end=1.0)
    sim = model.simulate(X_test[0], t_test)
    assert np.max(np.abs(sim - X_test)) < 0.05 * np.max(np.abs(X_test))


def test_xarray_in_and_out(lorenz_data):
    xr = pytest.importorskip("xarray")
    t, X = lorenz_data
    ds = xr.Dataset({n: (("time",), X[:, i]) for i, n in enumerate("xyz")}, coords={"time": t})
    model = SINDy().fit(ds)
    assert model.variable_names_ == ["x", "y", "z"]
    ref = SINDy(feature_names=list("xyz")).fit(X, t=t)
    np.testing.assert_allclose(model.coef_, ref.coef_, rtol=1e-12)
    out = model.predict(ds)
    assert isinstance(out, xr.Dataset) and set(out.data_vars) == {"x", "y", "z"}
    np.testing.assert_allclose(out["x"].values, ref.predict(X)[:, 0])
    sim = model.simulate(X[0], t[:20])
    assert isinstance(sim, xr.Dataset) and np.array_equal(sim["time"].values, t[:20])
    # DataArray with (variable, time) dims in either order.
    da = xr.DataArray(X.T, dims=("var", "time"), coords={"time": t, "var": ["x", "y", "z"]})
    np.testing.assert_allclose(SINDy().fit(da).coef_, ref.coef_, rtol=1e-12)


def test_ensemble_gives_uncertainty(lorenz_data):
    t, X = lorenz_data
    model = SINDy(
        feature_names=list("xyz"), optimizer=EnsembleOptimizer(STLSQ(), n_models=10, random_state=0)
    ).fit(add_noise(X, 0.05, random_state=0), t=t)
    truth = _lorenz_truth(model.term_names_)
    np.testing.assert_array_equal(model.coef_ != 0, truth != 0)
    assert np.all(model.inclusion_probability_[truth != 0] == 1.0)
    lo, hi = model.coef_interval_
    assert np.all(lo[truth != 0] < hi[truth != 0])


def test_pickle_round_trip(lorenz_data):
    t, X = lorenz_data
    model = SINDy(feature_names=list("xyz")).fit(X[:2000], t=t[:2000])
    clone = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(clone.coef_, model.coef_)
    np.testing.assert_array_equal(clone.predict(X[:50]), model.predict(X[:50]))
    assert clone.equations() == model.equations()


def test_pysindy_libraries_and_optimizer_interop(lorenz_data):
    ps = pytest.importorskip("pysindy")
    t, X = lorenz_data
    # Their library in our estimator ...
    ours = SINDy(library=ps.PolynomialLibrary(degree=2), feature_names=list("xyz")).fit(X, t=t)
    truth = _lorenz_truth(ours.term_names_)
    np.testing.assert_array_equal(ours.coef_ != 0, truth != 0)
    # ... and our optimizer in their estimator.
    theirs = ps.SINDy(optimizer=STLSQ(), feature_library=ps.PolynomialLibrary(degree=2))
    theirs.fit(X, t=t[1] - t[0], feature_names=list("xyz"))
    np.testing.assert_array_equal(theirs.coefficients() != 0, truth != 0)
    np.testing.assert_allclose(theirs.coefficients(), truth, atol=0.02)


@pytest.mark.parametrize(
    "kwargs, match, exc",
    [
        (dict(t=np.r_[0.0, 0.1, 0.1, np.arange(3, 100) * 0.1]), "repeat", ValueError),
        (dict(t=np.r_[0.0, 0.2, 0.1, np.arange(3, 100) * 0.1]), "decrease", ValueError),
        (dict(t=np.arange(50) * 0.1), "50", ValueError),
        (dict(t=-0.1), "positive", ValueError),
    ],
)
def test_bad_time_stamps(kwargs, match, exc):
    X = np.random.default_rng(0).standard_normal((100, 2))
    with pytest.raises(exc, match=match):
        SINDy().fit(X, **kwargs)


def test_bad_input_messages(lorenz_data):
    t, X = lorenz_data
    Xn = X.copy()
    Xn[10, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        SINDy().fit(Xn, t=t)
    with pytest.raises(TypeError, match="t="):
        SINDy().fit(X, 0.002)
    with pytest.raises(ValueError, match="longer than the axis"):
        SINDy(differentiation=WeakForm(radius=50)).fit(X[:60], t=0.01)
    with pytest.raises(ValueError, match="feature_names"):
        SINDy(feature_names=["a"]).fit(X, t=t)
    model = SINDy().fit(X[:1000], t=t[:1000])
    with pytest.raises(ValueError, match="features"):
        model.predict(X[:, :2])
    with pytest.raises(ValueError, match="x0"):
        model.simulate([1.0, np.nan, 0.0], t[:10])
    with pytest.warns(UserWarning, match="underdetermined"):
        SINDy(library=PDELibrary_free_poly(5), differentiation=WeakForm(radius=20, stride=40)).fit(X[:2000], t=t[:2000])


def PDELibrary_free_poly(degree):
    from sklearn.preprocessing import PolynomialFeatures

    return PolynomialFeatures(degree=degree)


def test_not_fitted():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        SINDy().predict(np.ones((5, 3)))
    with pytest.raises(NotFittedError):
        PDESINDy().equations()


# --- PDEs -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def burgers_data():
    return burgers()


def _pde_truth(names, truth):
    return np.array([truth.get(n, 0.0) for n in names])


@pytest.mark.parametrize("noise", [0.0, 0.10])
def test_burgers_weak(burgers_data, noise):
    t, x, u = burgers_data
    model = PDESINDy().fit(add_noise(u, noise, random_state=0, axis=None), t=t, x=x)
    truth = _pde_truth(model.term_names_, {"u_xx": 0.1, "(u^2)_x": -0.5})
    np.testing.assert_array_equal(model.coef_[0] != 0, truth != 0)
    assert _rel_err(model.coef_[0], truth) < (1e-4 if noise == 0 else 0.05)


def test_kdv_weak_at_25_percent_noise():
    t, x, u = kdv()
    model = PDESINDy().fit(add_noise(u, 0.25, random_state=0, axis=None), t=t, x=x)
    truth = _pde_truth(model.term_names_, {"u_xxx": -1.0, "(u^2)_x": -3.0})
    np.testing.assert_array_equal(model.coef_[0] != 0, truth != 0)
    assert _rel_err(model.coef_[0], truth) < 0.05


def test_burgers_strong_form_spectral(burgers_data):
    t, x, u = burgers_data
    model = PDESINDy(
        library=PDELibrary(degree=2, derivative_order=2),
        differentiation=FiniteDifference(order=4),
        spatial_differentiation=SpectralDerivative(),
    ).fit(u, t=t, x=x)
    truth = _pde_truth(model.term_names_, {"u_xx": 0.1, "(u^2)_x": -0.5})
    np.testing.assert_array_equal(model.coef_[0] != 0, truth != 0)
    assert _rel_err(model.coef_[0], truth) < 1e-2
    # predict evaluates the right-hand side: compare with u_t of the data.
    u_t = FiniteDifference(order=4)(u, t)
    pred = model.predict(u)
    assert pred.shape == u.shape
    assert np.linalg.norm(pred[5:-5] - u_t[5:-5]) / np.linalg.norm(u_t[5:-5]) < 1e-2


def test_pde_xarray(burgers_data):
    xr = pytest.importorskip("xarray")
    t, x, u = burgers_data
    da = xr.DataArray(u.T, dims=("x", "t"), coords={"x": x, "t": t}, name="u")
    model = PDESINDy().fit(da)
    ref = PDESINDy().fit(u, t=t, x=x)
    np.testing.assert_allclose(model.coef_, ref.coef_, rtol=1e-10)
    assert model.axis_names_ == ["x"]


def test_pde_bad_input(burgers_data):
    t, x, u = burgers_data
    bad = u.copy()
    bad[3, 4] = np.inf
    with pytest.raises(ValueError, match="infinity|inf"):
        PDESINDy().fit(bad, t=t, x=x)
    with pytest.raises(ValueError, match="x"):
        PDESINDy().fit(u, t=t, x=x[:-1])
    with pytest.raises(ValueError, match="degree"):
        PDESINDy(differentiation=WeakForm(degree=3)).fit(u, t=t, x=x)
    with pytest.raises(TypeError, match="PDELibrary"):
        PDESINDy(library=PDELibrary_free_poly(2)).fit(u, t=t, x=x)


def test_pde_library_names():
    lib = PDELibrary(degree=2, derivative_order=1, include_bias=False)
    assert lib.feature_names(["u", "v"], ["x"]) == [
        "u", "u_x", "v", "v_x", "u^2", "(u^2)_x", "u v", "(u v)_x", "v^2", "(v^2)_x",
    ]


# --- scikit-learn contract -----------------------------------------------------------------
_PDE_GRID_REASON = (
    "the common checks pass (n_samples, n_features) tables with 1-5 columns, which PDESINDy reads as "
    "a space-time field with 1-5 spatial grid points; no test function or derivative stencil fits "
    "on so few points, so fit refuses with a clear error"
)
_PDE_EXPECTED = {
    name: _PDE_GRID_REASON
    for name in [
        "check_fit_score_takes_y", "check_estimators_overwrite_params", "check_dont_overwrite_parameters",
        "check_estimators_fit_returns_self", "check_readonly_memmap_input", "check_n_features_in_after_fitting",
        "check_positive_only_tag_during_fit", "check_estimators_dtypes", "check_pipeline_consistency",
        "check_estimators_nan_inf", "check_estimators_pickle", "check_f_contiguous_array_estimator",
        "check_methods_sample_order_invariance", "check_methods_subset_invariance", "check_dict_unchanged",
        "check_fit_idempotent", "check_fit_check_is_fitted", "check_n_features_in", "check_fit2d_predict1d",
    ]
}


def _expected_failures(estimator):
    return _PDE_EXPECTED if isinstance(estimator, PDESINDy) else {}


@parametrize_with_checks(
    [SINDy(), SINDy(differentiation=FiniteDifference()), PDESINDy()], expected_failed_checks=_expected_failures
)
def test_sklearn_contract(estimator, check):
    with warnings.catch_warnings():
        # Random tables are short series: the library may outnumber the rows.
        warnings.filterwarnings("ignore", message=".*underdetermined")
        check(estimator)


def test_docstring_examples():
    import doctest

    from sciml.discovery import estimators, libraries, optimizers

    for module in (optimizers, libraries, estimators):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.attempted > 0 and result.failed == 0, module.__name__


# --- torch input: the weak form on the tensor's device ------------------------------------
def _tensor_cases(device):
    torch = pytest.importorskip("torch")
    t, X = lorenz(t_end=5.0)
    Xn = add_noise(X, 0.05, random_state=0)
    rng = np.random.default_rng(3)
    t_jit = t.copy()
    t_jit[1:-1] += rng.uniform(-0.3, 0.3, t.size - 2) * (t[1] - t[0])
    _, X_jit = lorenz(t=t_jit)
    return torch, [(Xn, t), (X_jit, t_jit)], device


@pytest.mark.parametrize("dtype_name, rtol", [("float64", 1e-9), ("float32", 1e-3)])
def test_tensor_input_matches_numpy(dtype_name, rtol):
    torch, cases, device = _tensor_cases("cpu")
    dtype = getattr(torch, dtype_name)
    for X, t in cases:  # a uniform (FFT) and a jittered (sparse quadrature) time axis
        ref = SINDy(feature_names=list("xyz")).fit(X, t=t)
        model = SINDy(feature_names=list("xyz")).fit(torch.as_tensor(X, dtype=dtype), t=t)
        np.testing.assert_array_equal(model.coef_ != 0, ref.coef_ != 0)
        np.testing.assert_allclose(model.coef_, ref.coef_, rtol=rtol, atol=rtol * np.abs(ref.coef_).max())
        assert model.device_ == "cpu"
        out = model.predict(torch.as_tensor(X[:10], dtype=dtype))
        assert isinstance(out, np.ndarray)
    t, x, u = kdv()
    un = add_noise(u, 0.1, random_state=0, axis=None)
    ref = PDESINDy().fit(un, t=t, x=x)
    model = PDESINDy().fit(torch.as_tensor(un, dtype=dtype), t=t, x=x)
    np.testing.assert_array_equal(model.coef_ != 0, ref.coef_ != 0)
    np.testing.assert_allclose(model.coef_, ref.coef_, rtol=rtol, atol=rtol * np.abs(ref.coef_).max())


def test_tensor_input_errors():
    torch = pytest.importorskip("torch")
    X = torch.ones((100, 3))
    X[5, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        SINDy().fit(X, t=0.01)
    with pytest.raises(ValueError, match="2-D"):
        SINDy().fit(torch.ones(100), t=0.01)


@pytest.mark.gpu
def test_cuda_tensor_input_matches_numpy():
    torch, cases, _ = _tensor_cases("cuda")
    for X, t in cases:
        ref = SINDy(feature_names=list("xyz")).fit(X, t=t)
        model = SINDy(feature_names=list("xyz")).fit(torch.as_tensor(X, device="cuda"), t=t)
        assert model.device_.startswith("cuda")
        np.testing.assert_allclose(model.coef_, ref.coef_, rtol=1e-8, atol=1e-8 * np.abs(ref.coef_).max())
    t, x, u = kdv()
    ref = PDESINDy().fit(u, t=t, x=x)
    model = PDESINDy().fit(torch.as_tensor(u, device="cuda"), t=t, x=x)
    np.testing.assert_allclose(model.coef_, ref.coef_, rtol=1e-8, atol=1e-10)


# --- audit regressions ---------------------------------------------------------------
def test_weak_form_ibp_error_of_short_supports():
    """Radius 2 / degree 2 trapezoid sums miss integration by parts by 29 %; radius 5 / degree 5 does not."""
    t = np.arange(101) * 0.01
    assert AxisTestFunctions(t, 2, 2, 1).ibp_error() == pytest.approx(0.294, abs=1e-3)
    assert AxisTestFunctions(t, 5, 5, 1).ibp_error() < 2e-3
    assert AxisTestFunctions(t, 8, 16, 2).ibp_error(4) < 1e-4


def test_short_clean_series_gives_unbiased_coefficients():
    """101 clean samples: the capped support grows until the quadrature is exact enough."""
    t, X = lorenz(dt=0.01, t_end=1.0)
    model = SINDy(feature_names=list("xyz")).fit(X, t=t)
    truth = _lorenz_truth(model.term_names_)
    np.testing.assert_array_equal(model.coef_ != 0, truth != 0)
    assert _rel_err(model.coef_, truth) < 2e-3  # was 30 % too small at radius 2
    assert model.test_functions_[0].radius == 5 and model.test_functions_[0].degree == 5
    with pytest.raises(ValueError, match="integration by parts is off by 79"):
        SINDy(differentiation=WeakForm(radius=2)).fit(X, t=t)


def test_short_linear_system_and_several_short_trajectories():
    from scipy.integrate import solve_ivp
    from sklearn.preprocessing import PolynomialFeatures

    A = np.array([[-0.1, 2.0], [-2.0, -0.1]])
    tt = np.linspace(0.0, 3.0, 40)
    runs = [
        solve_ivp(lambda _, x: A @ x, (0, 3), x0, t_eval=tt, rtol=1e-12, atol=1e-12).y.T
        for x0 in ([2.0, 0.0], [0.0, 1.0])
    ]
    lib = PolynomialFeatures(1, include_bias=False)
    np.testing.assert_allclose(SINDy(library=lib).fit(runs[0], t=tt).coef_, A, atol=2e-3)
    np.testing.assert_allclose(SINDy(library=lib).fit(runs, t=[tt, tt]).coef_, A, atol=2e-3)


def test_randomly_sampled_time_keeps_every_term():
    """1000 random stamps on [0, 2]: the support widens until the trapezoid rule is accurate."""
    rng = np.random.default_rng(0)
    t = np.sort(np.concatenate([[0.0], rng.uniform(0.0, 2.0, 998), [2.0]]))
    _, X = lorenz(t=t)
    model = SINDy(feature_names=list("xyz")).fit(X, t=t)
    truth = _lorenz_truth(model.term_names_)
    np.testing.assert_array_equal(model.coef_ != 0, truth != 0)  # the -y term was lost
    assert _rel_err(model.coef_, truth) < 2e-3
    assert model.test_functions_[0].ibp_error() <= 2e-3


def test_xarray_predict_matches_variables_by_label(lorenz_data):
    xr = pytest.importorskip("xarray")
    t, X = lorenz_data
    t, X = t[:1000], X[:1000]
    da = xr.DataArray(X, dims=("time", "var"), coords={"time": t, "var": list("xyz")})
    model = SINDy().fit(da)
    expected = model.predict(da)
    out = model.predict(da.sel(var=["z", "y", "x"]))
    np.testing.assert_allclose(out.sel(var="x").values, 10 * (X[:, 1] - X[:, 0]), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out.sel(var=["x", "y", "z"]).values, expected.values, rtol=1e-12)
    with pytest.raises(ValueError, match=r"lacks the variables \['z'\]"):
        model.predict(da.assign_coords(var=["x", "y", "w"]))
    ds = xr.Dataset({n: (("time",), X[:, i]) for i, n in enumerate("xyz")}, coords={"time": t})
    model = SINDy().fit(ds)
    shuffled = ds[["z", "x", "y"]]
    np.testing.assert_allclose(model.predict(shuffled)["x"].values, model.predict(ds)["x"].values, rtol=1e-12)
    assert model.score(shuffled) == pytest.approx(model.score(ds), rel=1e-12)


def test_refit_forgets_ensemble_state(lorenz_data):
    t, X = lorenz_data
    model = SINDy(optimizer=EnsembleOptimizer(n_models=3, random_state=0)).fit(X[:1000], t=t[:1000])
    assert hasattr(model, "inclusion_probability_") and hasattr(model, "test_functions_")
    model.set_params(optimizer=STLSQ(), differentiation=FiniteDifference()).fit(X[:1000], t=t[:1000])
    for attr in ("inclusion_probability_", "coef_interval_", "coef_std_", "test_functions_"):
        assert not hasattr(model, attr)


def test_simulate_keeps_the_given_time_stamps(lorenz_data):
    xr = pytest.importorskip("xarray")
    t, X = lorenz_data
    t = t[:1000] + 3.7  # a uniform grid whose rebuilt stamps differ in the last bits
    da = xr.DataArray(X[:1000], dims=("time", "var"), coords={"time": t, "var": list("xyz")})
    sim = SINDy().fit(da).simulate(X[0], t[:200])
    assert np.array_equal(sim["time"].values, t[:200])
    np.testing.assert_allclose(sim.values, X[:200], atol=1e-3 * np.abs(X).max())


def test_pysindy_custom_library():
    ps = pytest.importorskip("pysindy")
    t, X = lorenz(t_end=2.0)
    lib = ps.CustomLibrary(
        library_functions=[lambda a: a, lambda a, b: a * b], function_names=[lambda a: a, lambda a, b: a + " " + b]
    )
    model = SINDy(library=lib, feature_names=list("xyz")).fit(X, t=t)
    assert model.equations(2) == ["x' = -10.00 x + 10.00 y", "y' = 28.00 x - 1.00 y - 1.00 x z", "z' = -2.67 z + 1.00 x y"]


def test_score_pools_several_trajectories(lorenz_data):
    t, X = lorenz_data
    model = SINDy(feature_names=list("xyz")).fit([X[:500], X[500:1000]], t=[t[:500], t[500:1000]])
    score = model.score([X[:500], X[500:1000]], t=[t[:500], t[500:1000]])
    assert 0.9999 < score <= 1.0
    # Pooling is one R^2 over all rows, not a mean of per-trajectory scores.
    from sklearn.metrics import r2_score

    d = [FiniteDifference(order=2)(Xi, ti) for Xi, ti in ((X[:500], t[:500]), (X[500:1000], t[500:1000]))]
    pooled = r2_score(np.vstack(d), np.vstack([model.predict(X[:500]), model.predict(X[500:1000])]))
    assert score == pytest.approx(pooled, rel=1e-12)


def test_bad_parameters_get_clear_errors(lorenz_data, burgers_data):
    t, X = lorenz_data
    with pytest.raises(TypeError, match="radius must be a positive integer, got 5.0"):
        SINDy(differentiation=WeakForm(radius=5.0)).fit(X[:500], t=t[:500])
    with pytest.raises(ValueError, match="precision must be a non-negative integer"):
        SINDy().fit(X[:500], t=t[:500]).equations(precision=-1)
    tb, xb, ub = burgers_data
    with pytest.raises(TypeError, match="spatial_differentiation must be a derivative estimator"):
        PDESINDy(differentiation=FiniteDifference(), spatial_differentiation=3).fit(ub, t=tb, x=xb)
    with pytest.raises(ValueError, match=f"x has {xb.size - 1} coordinates but the data has {xb.size} samples along axis 1"):
        PDESINDy().fit(ub, t=tb, x=xb[:-1])
    with pytest.raises(ValueError, match="x coordinates must be strictly increasing"):
        PDESINDy().fit(ub, t=tb, x=xb[::-1])


def test_pde_predict_on_xarray_layouts():
    xr = pytest.importorskip("xarray")
    from sciml.discovery.data import burgers as burgers_gen

    t, x, u = burgers_gen(nx=64, nt=41, t_end=4.0)  # a non-square grid
    model = PDESINDy(library=PDELibrary(degree=2, derivative_order=2)).fit(u, t=t, x=x)
    ref = model.predict(u)
    da = xr.DataArray(u.T, dims=("x", "t"), coords={"x": x, "t": t})
    out = model.predict(da)
    assert out.dims == ("x", "t")
    np.testing.assert_allclose(out.transpose("t", "x").values, ref, rtol=1e-12)
    ds = xr.Dataset({"u": (("x", "t"), u.T)}, coords={"t": t, "x": x})
    out = model.predict(ds)
    assert isinstance(out, xr.Dataset) and out["u"].dims == ("x", "t")
    np.testing.assert_allclose(out["u"].transpose("t", "x").values, ref, rtol=1e-12)
