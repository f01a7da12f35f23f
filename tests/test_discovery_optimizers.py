"""Sparse-regression optimizers: numerics, model selection, ensembles, sklearn contract."""

import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from sciml.discovery.optimizers import IHT, ISTA, SR3, STLSQ, BestSubset, EnsembleOptimizer, selection_loss

ALL = [STLSQ, IHT, ISTA, SR3, BestSubset]


def _problem(n=300, p=10, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    coef = np.zeros((2, p))
    coef[0, [1, 4]] = [2.0, -0.5]
    coef[1, [0, 3, 7]] = [1.0, 3.0, -0.8]
    Y = X @ coef.T + noise * rng.standard_normal((n, 2))
    return X, Y, coef


@pytest.mark.parametrize("cls", ALL)
def test_recovers_support_and_values_automatically(cls):
    X, Y, coef = _problem(noise=0.01)
    model = cls().fit(X, Y)
    np.testing.assert_array_equal(model.coef_ != 0, coef != 0)
    # Unbiased refit: least squares on the right support, so errors are at the noise level.
    np.testing.assert_allclose(model.coef_, coef, atol=5e-3)
    if cls is not BestSubset:
        assert model.path_["loss"].shape == (2, model.n_path)
    assert model.complexity == 5


@pytest.mark.parametrize("cls", [STLSQ, IHT, SR3])
def test_fixed_threshold_is_scale_free(cls):
    """Thresholds act on shares of rms(y): rescaling columns and targets changes nothing but units."""
    X, Y, coef = _problem(noise=0.01, seed=1)
    scale_x = np.array([1e-3, 1e3, 1.0, 50.0, 1e-2, 7.0, 1.0, 0.1, 2.0, 1e4])
    base = cls(threshold=0.05).fit(X, Y)
    scaled = cls(threshold=0.05).fit(X * scale_x, Y * 1e6)
    np.testing.assert_array_equal(base.coef_ != 0, scaled.coef_ != 0)
    np.testing.assert_allclose(scaled.coef_ * scale_x / 1e6, base.coef_, rtol=1e-8, atol=1e-12)


def test_stlsq_matches_least_squares_on_support():
    X, Y, _ = _problem(noise=0.1, seed=2)
    model = STLSQ(threshold=0.1).fit(X, Y[:, 0])
    support = np.flatnonzero(model.coef_[0])
    ref = np.linalg.lstsq(X[:, support], Y[:, 0], rcond=None)[0]
    np.testing.assert_allclose(model.coef_[0, support], ref, rtol=1e-10)
    assert model.predict(X).shape == (len(X),)


def test_unnormalized_threshold_is_in_data_units():
    """normalize_columns=False thresholds raw coefficients, as PySINDy's STLSQ does."""
    X, Y, coef = _problem(seed=3)
    model = STLSQ(threshold=0.6, normalize_columns=False).fit(X, Y[:, 0])
    # -0.5 is below 0.6 in raw units and goes; 2.0 stays.
    np.testing.assert_array_equal(np.flatnonzero(model.coef_[0]), [1])


def test_ridge_alpha_shrinks_toward_zero():
    X, Y, _ = _problem(seed=4)
    plain = STLSQ(threshold=0.01).fit(X, Y[:, 0]).coef_
    ridge = STLSQ(threshold=0.01, alpha=1.0).fit(X, Y[:, 0]).coef_
    assert np.linalg.norm(ridge) < np.linalg.norm(plain)


def test_ista_plain_and_accelerated_agree():
    X, Y, _ = _problem(noise=0.05, seed=5)
    a = ISTA(alpha=0.01, unbias=False, tol=1e-12, max_iter=20000).fit(X, Y)
    b = ISTA(alpha=0.01, unbias=False, accelerated=False, tol=1e-12, max_iter=20000).fit(X, Y)
    np.testing.assert_allclose(a.coef_, b.coef_, atol=1e-6)
    # KKT conditions of the lasso on the scaled problem: |grad| <= alpha off the support.
    Xs = X / np.sqrt(np.mean(X**2, axis=0))
    ys = Y[:, 0] / np.sqrt(np.mean(Y[:, 0] ** 2))
    w = a.coef_[0] * np.sqrt(np.mean(X**2, axis=0)) / np.sqrt(np.mean(Y[:, 0] ** 2))
    grad = Xs.T @ (ys - Xs @ w) / len(X)
    on = w != 0
    np.testing.assert_allclose(grad[on], 0.01 * np.sign(w[on]), atol=1e-6)
    assert np.all(np.abs(grad[~on]) <= 0.01 + 1e-6)


def test_selection_criteria():
    X, Y, coef = _problem(noise=0.05, seed=6)
    y = Y[:, 0]
    ls = np.linalg.lstsq(X, y, rcond=None)[0]
    for criterion in ("mstls", "bic", "aicc"):
        assert selection_loss(X, y, coef[0], ls, criterion) < selection_loss(X, y, ls, ls, criterion)
    # The full least-squares model scores exactly its term fraction under MSTLS.
    assert selection_loss(X, y, ls, ls, "mstls") == pytest.approx(1.0)
    with pytest.raises(ValueError, match="criterion"):
        selection_loss(X, y, ls, ls, "aic")


def test_ensemble_inclusion_probabilities_and_intervals():
    X, Y, coef = _problem(noise=0.3, seed=7)
    ens = EnsembleOptimizer(STLSQ(threshold=0.05), n_models=40, random_state=0).fit(X, Y)
    np.testing.assert_array_equal(ens.coef_ != 0, coef != 0)
    assert np.all(ens.inclusion_probability_[coef != 0] == 1.0)
    assert np.all(ens.inclusion_probability_[coef == 0] < 0.5)
    lo, hi = ens.coef_interval_
    assert np.all((lo <= coef + 1e-12) & (coef - 1e-12 <= hi))
    assert ens.coef_samples_.shape == (40, 2, 10)
    again = EnsembleOptimizer(STLSQ(threshold=0.05), n_models=40, random_state=0).fit(X, Y)
    np.testing.assert_array_equal(ens.coef_samples_, again.coef_samples_)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: STLSQ(threshold=-1.0), "threshold"),
        (lambda: STLSQ(threshold="big"), "'auto'"),
        (lambda: STLSQ(selection="aic"), "selection"),
        (lambda: STLSQ(max_iter=0), "max_iter"),
        (lambda: SR3(regularizer="l2"), "regularizer"),
        (lambda: ISTA(alpha=float("nan")), "alpha"),
        (lambda: EnsembleOptimizer(subsample=1.5), "subsample"),
        (lambda: EnsembleOptimizer(inclusion_threshold=2.0), "inclusion_threshold"),
    ],
)
def test_bad_parameters(make, match):
    X, Y, _ = _problem(n=50)
    with pytest.raises((ValueError, TypeError), match=match):
        make().fit(X, Y)


def test_bad_input():
    X, Y, _ = _problem(n=50)
    Xn = X.copy()
    Xn[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        STLSQ().fit(Xn, Y)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        STLSQ().fit(X, Y[:-1])
    model = STLSQ().fit(X, Y)
    with pytest.raises(ValueError, match="features"):
        model.predict(X[:, :3])


# Short "auto" paths keep the contract checks fast; the path length changes no API behaviour.
@parametrize_with_checks(
    [
        STLSQ(),
        STLSQ(threshold=0.05),
        IHT(n_path=8),
        ISTA(n_path=8),
        SR3(n_path=8),
        SR3(regularizer="l1", n_path=8),
        BestSubset(),
        BestSubset(max_terms=2),
        EnsembleOptimizer(n_models=5, random_state=0),
    ]
)
def test_sklearn_contract(estimator, check):
    check(estimator)


def test_best_subset_finds_a_small_term_beside_cancelling_large_ones():
    """A threshold path drops a small true term when large ones nearly cancel; best subset keeps it."""
    rng = np.random.default_rng(8)
    n = 400
    a = rng.standard_normal(n)
    b = a + 0.05 * rng.standard_normal(n)  # nearly collinear with a
    c = rng.standard_normal(n)
    X = np.column_stack([a, b, c, rng.standard_normal((n, 4))])
    y = 10 * a - 10 * b + 0.05 * c + 1e-3 * rng.standard_normal(n)
    model = BestSubset().fit(X, y)
    np.testing.assert_array_equal(np.flatnonzero(model.coef_[0]), [0, 1, 2])
    np.testing.assert_allclose(model.coef_[0, :3], [10, -10, 0.05], rtol=1e-2)
    # Exhaustive means exhaustive: it matches a brute-force BIC minimum.
    import itertools

    best = min(
        (
            selection_loss(X, y, _ls_on(X, y, S), _ls_on(X, y, range(7)), "bic"),
            S,
        )
        for k in range(1, 5)
        for S in itertools.combinations(range(7), k)
    )
    assert set(best[1]) == {0, 1, 2}


def _ls_on(X, y, support):
    coef = np.zeros(X.shape[1])
    support = list(support)
    coef[support] = np.linalg.lstsq(X[:, support], y, rcond=None)[0]
    return coef


def test_best_subset_refuses_huge_searches():
    X = np.random.default_rng(0).standard_normal((100, 40))
    with pytest.raises(ValueError, match="STLSQ"):
        BestSubset(max_terms=10).fit(X, X[:, 0])


def test_best_subset_refuses_a_growing_search_cut_short():
    # max_terms=None grows the support size; stopping at max_subsets would return a
    # 1-term model as if the search had been exhaustive.
    rng = np.random.default_rng(0)
    X = rng.standard_normal((100, 10))
    y = 2 * X[:, 1] - 0.5 * X[:, 4] + X[:, 7]
    with pytest.raises(ValueError, match="max_subsets=10"):
        BestSubset(max_subsets=10).fit(X, y)
    np.testing.assert_array_equal(np.flatnonzero(BestSubset().fit(X, y).coef_[0]), [1, 4, 7])


@pytest.mark.parametrize("cls", [IHT, ISTA, SR3])
def test_auto_path_drops_tiny_terms_on_clean_lorenz(cls):
    """Clean Lorenz: the 7 true terms, none of the spurious 1e-4-share ones the path used to keep."""
    from sciml.discovery import SINDy
    from sciml.discovery.data import lorenz, lorenz_coefficients

    t, X = lorenz(t_end=5.0)
    model = SINDy(feature_names=list("xyz"), optimizer=cls()).fit(X, t=t)
    co = lorenz_coefficients()
    truth = np.array([[co[v].get(n, 0.0) for n in model.term_names_] for v in "xyz"])
    assert model.complexity == 7
    np.testing.assert_allclose(model.coef_, truth, atol=1e-3)


def test_auto_tie_break_takes_the_sparsest_penalty():
    # On a clean 2-term problem many penalties give the same refit; ISTA's grid
    # descends, so the sparsest (largest) tied alpha is the first, not the last.
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 6))
    model = ISTA().fit(X, 2 * X[:, 1] - 0.5 * X[:, 4])
    loss, values = model.path_["loss"][0], model.path_["values"]
    tied = loss <= loss.min() + 1e-12
    assert tied.sum() > 1 and values[0] > values[-1]
    assert model.strength_[0] == values[tied].max()
    np.testing.assert_allclose(model.coef_[0], [0, 2, 0, 0, -0.5, 0], atol=1e-10)
