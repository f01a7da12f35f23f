"""Unfolded networks and the UnfoldedSparseCoder estimator (small problems)."""

import pickle

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from unfolding.classical import ista, iht, lasso_objective, lipschitz_constant
from unfolding.estimators import UnfoldedSparseCoder
from unfolding.networks import UnfoldedNetwork, analytic_weights
from unfolding.problems import nmse_db, standard_problem


@pytest.fixture(scope="module")
def problem():
    return standard_problem(m=30, n=60, p=0.1, random_state=0)


@pytest.fixture(scope="module")
def data(problem):
    return problem.sample(300, random_state=1)  # (Y, X)


def test_analytic_weights_unit_diagonal_and_optimal_columns(problem):
    A = problem.A
    W = analytic_weights(A)
    np.testing.assert_allclose(np.diag(W.T @ A), 1.0, rtol=1e-10)
    # Column i minimises ||A^T w|| subject to w . a_i = 1: any feasible
    # perturbation d (d . a_i = 0) can only increase the norm.
    rng = np.random.default_rng(0)
    i = 7
    d = rng.standard_normal(A.shape[0])
    d -= (d @ A[:, i]) / (A[:, i] @ A[:, i]) * A[:, i]
    base = np.linalg.norm(A.T @ W[:, i])
    for eps in (1e-3, -1e-3, 1e-1):
        assert np.linalg.norm(A.T @ (W[:, i] + eps * d)) >= base
    assert np.abs(W.T @ A - np.eye(60)).max() < np.abs(A.T @ A - np.eye(60)).max()


@pytest.mark.parametrize("sparse", [False, True])
def test_untrained_tied_network_is_ista(problem, data, sparse):
    Y, _ = data
    lam, L = 0.05, lipschitz_constant(problem.A)
    A = sp.csr_array(problem.A) if sparse else problem.A
    net = UnfoldedNetwork(A, 7, weights="tied", prox="soft", step_init=1.0 / L, threshold_init=lam)
    with torch.no_grad():
        out = net(torch.from_numpy(Y)).numpy()
    reference = ista(problem.A, Y, lam, n_iter=7, record=False).X
    np.testing.assert_allclose(out, reference, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("sparse", [False, True])
def test_measure_is_A_times_rows(problem, data, sparse):
    _, X = data
    A = sp.csr_array(problem.A) if sparse else problem.A
    net = UnfoldedNetwork(A, 2)
    np.testing.assert_allclose(net.measure(torch.from_numpy(X)).numpy(), X @ problem.A.T, rtol=1e-12, atol=1e-12)


def test_untrained_hard_network_is_iht(problem, data):
    Y, _ = data
    L = lipschitz_constant(problem.A)
    net = UnfoldedNetwork(problem.A, 6, weights="tied", prox="hard", lam0=0.02, step_init=1.0 / L)
    with torch.no_grad():
        out = net(torch.from_numpy(Y)).numpy()
    reference = iht(problem.A, Y, lam0=0.02, n_iter=6, record=False).X
    np.testing.assert_allclose(out, reference, rtol=1e-10, atol=1e-12)


def test_support_selection_passes_the_largest_entries_unshrunk(problem):
    net = UnfoldedNetwork(problem.A, 10, weights="analytic", support_selection=True, ss_step=0.1, ss_max=0.2)
    Z = torch.tensor([[5.0, -4.0, 0.5, 3.0, -0.2] + [0.0] * 55], dtype=torch.float64)
    out = net._prox(Z, layer=0)  # keep int(0.1 * 60) = 6 entries unshrunk
    t = net.log_threshold[0].exp().item()
    np.testing.assert_allclose(out[0, :5].detach().numpy(), [5.0, -4.0, 0.5, 3.0, -0.2])
    net2 = UnfoldedNetwork(problem.A, 10, weights="analytic", support_selection=True, ss_step=0.02, ss_max=0.2)
    out2 = net2._prox(Z, layer=0)  # keep int(0.02 * 60) = 1 entry: only the 5
    z = np.array([5.0, -4.0, 0.5, 3.0, -0.2])
    expected = np.sign(z) * np.maximum(np.abs(z) - t, 0.0)
    expected[0] = 5.0
    np.testing.assert_allclose(out2[0, :5].detach().numpy(), expected, atol=1e-12)


def test_untied_weights_train_at_their_own_learning_rate(problem, data):
    """The weight matrices move by Adam steps of about weight_lr, the scalars by lr."""
    Y, X = data
    start = analytic_weights(problem.A)
    n_steps, weight_lr = 12, 1e-4
    coder = small_coder(problem, weights="untied", support_selection=True, ss_step=0.05, ss_max=0.25,
                        n_layers=2, steps_per_layer=n_steps // 2, weight_lr=weight_lr, lr=0.05).fit(Y, X)
    assert coder.module_.ss_step == 0.05 and coder.module_.ss_max == 0.25
    moved = np.abs(coder.module_.Ws.detach().numpy() - start).max(axis=(1, 2))
    # Adam's step is at most lr * (1 - beta1) / sqrt(1 - beta2) ~ 3.2 lr per entry;
    # a weight_lr equal to lr (the old behaviour) would move them by up to 0.6.
    assert 0 < moved.max() <= 3.2 * weight_lr * n_steps
    assert np.abs(np.log(coder.steps_)).max() > 0.05  # the scalars moved at lr


def test_network_options_are_validated(problem):
    with pytest.raises(ValueError, match="weights must be one of"):
        UnfoldedNetwork(problem.A, weights="shared")
    with pytest.raises(ValueError, match="support_selection applies to soft"):
        UnfoldedNetwork(problem.A, prox="hard", support_selection=True)
    with pytest.raises(ValueError, match="need a dense A"):
        UnfoldedNetwork(sp.csr_array(problem.A), weights="analytic")
    with pytest.raises(ValueError, match="positive integer k"):
        UnfoldedNetwork(problem.A, prox="topk")


# ---------------------------------------------------------------- estimator


def small_coder(problem, **params):
    defaults = dict(n_layers=5, steps_per_layer=40, batch_size=64, lr=0.05, random_state=0, dtype="float64")
    return UnfoldedSparseCoder(problem.A, **{**defaults, **params})


def test_supervised_training_beats_ista_at_the_same_depth(problem, data):
    Y, X = data
    coder = small_coder(problem).fit(Y, X)
    ista_5 = nmse_db(ista(problem.A, Y, 0.05, n_iter=5, record=False).X, X)
    assert coder.layer_nmse_db_[-1] < ista_5 - 3.0
    assert nmse_db(coder.predict(Y), X) == pytest.approx(coder.layer_nmse_db_[-1], abs=1e-9)
    assert coder.layer_nmse_db_.shape == coder.layer_objective_.shape == (5,)
    assert len(coder.loss_curve_) == coder.n_iter_ == 5 * 40
    assert coder.steps_.shape == coder.thresholds_.shape == (5,)


def test_unsupervised_training_lowers_the_lasso_objective_below_ista(problem, data):
    Y, X = data
    lam = 0.05
    coder = small_coder(problem, loss="unsupervised", lam=lam).fit(Y)
    assert coder.layer_nmse_db_ is None
    ista_obj = lasso_objective(problem.A, ista(problem.A, Y, lam, n_iter=5, record=False).X, Y, lam)
    assert coder.layer_objective_[-1] == pytest.approx(lasso_objective(problem.A, coder.predict(Y), Y, lam))
    assert coder.layer_objective_[-1] < ista_obj


def test_synthetic_batches_and_iht(problem, data):
    Y, X = data
    coder = small_coder(problem, algorithm="iht", synthetic={"p": 0.1, "snr_db": 30.0}).fit(Y, X)
    reference = iht(problem.A, Y, lam0=0.02, n_iter=5, record=False).X
    assert coder.layer_nmse_db_[-1] < nmse_db(reference, X)


def test_same_seed_same_model_and_global_rng_untouched(problem, data):
    Y, X = data
    torch_state, np_state = torch.random.get_rng_state(), np.random.get_state()
    a = small_coder(problem, steps_per_layer=10).fit(Y, X)
    b = small_coder(problem, steps_per_layer=10).fit(Y, X)
    c = small_coder(problem, steps_per_layer=10, random_state=1).fit(Y, X)
    np.testing.assert_array_equal(a.steps_, b.steps_)
    assert not np.array_equal(a.steps_, c.steps_)
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], np_state[1])


def test_save_load_and_pickle_lose_nothing(problem, data, tmp_path):
    Y, X = data
    coder = small_coder(problem, steps_per_layer=10).fit(Y, X)
    path = tmp_path / "coder.pt"
    coder.save(path)
    loaded = UnfoldedSparseCoder.load(path)
    np.testing.assert_array_equal(loaded.predict(Y), coder.predict(Y))
    np.testing.assert_array_equal(loaded.layer_nmse_db_, coder.layer_nmse_db_)
    assert loaded.get_params()["n_layers"] == 5
    clone = pickle.loads(pickle.dumps(coder))
    np.testing.assert_array_equal(clone.predict(Y), coder.predict(Y))


def test_pipeline_and_grid_search(problem, data):
    Y, X = data
    pipe = make_pipeline(FunctionTransformer(), small_coder(problem, steps_per_layer=10))
    pipe.fit(Y, X)
    assert pipe.predict(Y).shape == X.shape
    search = GridSearchCV(small_coder(problem, steps_per_layer=10), {"lr": [0.01, 0.05]}, cv=2)
    search.fit(Y, X)
    assert search.best_params_["lr"] in (0.01, 0.05)


def test_bad_input_gets_clear_errors(problem, data):
    Y, X = data
    with pytest.raises(ValueError, match=r"X has 29 features .* A has shape \(30, 60\)"):
        small_coder(problem).fit(Y[:, :29], X)
    with pytest.raises(ValueError, match=r"y must have shape \(n_samples, 60\)"):
        small_coder(problem).fit(Y, X[:, :59])
    bad = Y.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        small_coder(problem).fit(bad, X)
    with pytest.raises(ValueError, match="lam must be a positive number"):
        small_coder(problem, loss="unsupervised", lam=0.0).fit(Y)
    with pytest.raises(ValueError, match="needs the true codes y"):
        small_coder(problem).fit(Y)
    with pytest.raises(ValueError, match="A .*must be given"):
        UnfoldedSparseCoder().fit(Y, X)
    A_nan = problem.A.copy()
    A_nan[0, 0] = np.inf
    with pytest.raises(ValueError, match="A contains NaN or inf"):
        UnfoldedSparseCoder(A_nan).fit(Y, X)
    with pytest.raises(ValueError, match="ss_max must be a fraction"):
        small_coder(problem, support_selection=True, ss_max=1.5).fit(Y, X)
    with pytest.raises(ValueError, match="weight_lr must be a positive number"):
        small_coder(problem, weights="untied", weight_lr=-1e-3).fit(Y, X)
    with pytest.raises(NotFittedError):
        small_coder(problem).predict(Y)
    fitted = small_coder(problem, steps_per_layer=2).fit(Y, X)
    with pytest.raises(ValueError, match="features"):
        fitted.predict(Y[:, :10])


def test_diverging_training_stops_with_a_warning_and_keeps_the_best_weights(problem, data):
    Y, X = data
    with pytest.warns(RuntimeWarning):
        coder = small_coder(problem, lr=1e6, steps_per_layer=30).fit(Y, X)
    assert np.all(np.isfinite(coder.predict(Y)))


# ---------------------------------------------------------------- sklearn contract

_TARGET_FIXED_BY_A = (
    "sklearn's generic data has 1-D targets or a feature count unrelated to the sensing matrix; "
    "this estimator maps the m measurements of A to its n codes, so y must be (n_samples, n)"
)
_EXPECTED_FAILURES = {
    name: _TARGET_FIXED_BY_A
    for name in (
        "check_fit_score_takes_y", "check_estimators_overwrite_params", "check_dont_overwrite_parameters",
        "check_estimators_fit_returns_self", "check_readonly_memmap_input", "check_n_features_in_after_fitting",
        "check_positive_only_tag_during_fit", "check_estimators_dtypes", "check_dtype_object",
        "check_pipeline_consistency", "check_estimators_nan_inf", "check_estimators_pickle",
        "check_f_contiguous_array_estimator", "check_regressors_train", "check_regressor_data_not_an_array",
        "check_regressor_multioutput", "check_regressors_no_decision_function", "check_supervised_y_2d",
        "check_regressors_int", "check_methods_sample_order_invariance", "check_methods_subset_invariance",
        "check_fit2d_1sample", "check_fit2d_1feature", "check_dict_unchanged", "check_fit_idempotent",
        "check_fit_check_is_fitted", "check_n_features_in", "check_fit2d_predict1d", "check_requires_y_none",
    )
}


def _check_instance():
    from unfolding.problems import gaussian_matrix

    return UnfoldedSparseCoder(gaussian_matrix(10, 10, random_state=0), n_layers=2, steps_per_layer=3,
                               batch_size=16, random_state=0)


from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402


@parametrize_with_checks([_check_instance()], expected_failed_checks=lambda est: _EXPECTED_FAILURES)
def test_sklearn_contract(estimator, check):
    check(estimator)
