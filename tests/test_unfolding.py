"""Unfolded networks and the UnfoldedSparseCoder estimator (small problems)."""

import pickle

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from unfolding.classical import ista, iht, lasso_objective, lipschitz_constant
from unfolding.estimators import UnfoldedSparseCoder
import unfolding.estimators as estimators
from unfolding.networks import UnfoldedNetwork, analytic_weights, operator_matmul
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


def as_kind(A, kind):
    """The dense matrix A as itself, a CSR array or a LinearOperator."""
    return {"dense": A, "sparse": sp.csr_array(A), "operator": spla.aslinearoperator(A)}[kind]


KINDS = ["dense", "sparse", "operator"]


@pytest.mark.parametrize("kind", KINDS)
def test_untrained_tied_network_is_ista(problem, data, kind):
    Y, _ = data
    lam, L = 0.05, lipschitz_constant(problem.A)
    A = as_kind(problem.A, kind)
    net = UnfoldedNetwork(A, 7, weights="tied", prox="soft", step_init=1.0 / L, threshold_init=lam)
    with torch.no_grad():
        out = net(torch.from_numpy(Y)).numpy()
    reference = ista(problem.A, Y, lam, n_iter=7, record=False).X
    np.testing.assert_allclose(out, reference, rtol=1e-10, atol=1e-12)
    # The default step is ISTA's 1 / ||A||_2^2 (svds on a LinearOperator).
    assert UnfoldedNetwork(A, 2).log_step[0].exp().item() == pytest.approx(1.0 / L, rel=1e-10)


@pytest.mark.parametrize("kind", KINDS)
def test_measure_is_A_times_rows(problem, data, kind):
    _, X = data
    A = as_kind(problem.A, kind)
    net = UnfoldedNetwork(A, 2)
    np.testing.assert_allclose(net.measure(torch.from_numpy(X)).numpy(), X @ problem.A.T, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("transpose", [False, True])
def test_operator_matmul_is_the_product_and_its_adjoint_is_the_gradient(problem, transpose):
    op = spla.aslinearoperator(problem.A)
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(problem.A.shape[0] if transpose else problem.A.shape[1], 3, generator=gen,
                    dtype=torch.float64, requires_grad=True)
    expected = (problem.A.T if transpose else problem.A) @ X.detach().numpy()
    np.testing.assert_allclose(operator_matmul(op, X, transpose=transpose).detach().numpy(), expected,
                               rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(lambda X: operator_matmul(op, X, transpose=transpose), (X,))
    # A float32 operator gives products in the operand's dtype.
    op32 = spla.aslinearoperator(problem.A.astype(np.float32))
    assert operator_matmul(op32, X.detach().float(), transpose=transpose).dtype == torch.float32


def test_operator_network_trains_through_the_operator(problem, data):
    """Parameter gradients through matmat/rmatmat equal those through the dense A."""
    Y, X = data
    grads = []
    for A in (problem.A, spla.aslinearoperator(problem.A)):
        net = UnfoldedNetwork(A, 4)
        out = net(torch.from_numpy(Y[:20]))
        ((out - torch.from_numpy(X[:20])).square().sum() + net.measure(out).square().sum()).backward()
        grads.append((net.log_step.grad.numpy(), net.log_threshold.grad.numpy()))
    np.testing.assert_allclose(grads[1][0], grads[0][0], rtol=1e-9)
    np.testing.assert_allclose(grads[1][1], grads[0][1], rtol=1e-9)


def test_operator_network_computes_on_the_cpu_only(problem):
    net = UnfoldedNetwork(spla.aslinearoperator(problem.A), 2)
    with pytest.raises(ValueError, match="LinearOperator, which computes on numpy"):
        net(torch.empty((4, problem.A.shape[0]), dtype=torch.float64, device="meta"))


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


def test_selected_entries_below_the_threshold_are_zero(problem):
    """LISTA-CPSS's eta_ss: selection lifts the shrinkage only above the threshold."""
    net = UnfoldedNetwork(problem.A, 10, weights="analytic", support_selection=True, ss_step=0.1, ss_max=0.2,
                          step_init=1.0, threshold_init=0.3)  # threshold 0.3 at every layer
    Z = torch.tensor([[5.0, -4.0, 0.5, 3.0, -0.2, 0.1] + [0.0] * 54], dtype=torch.float64, requires_grad=True)
    out = net._prox(Z, layer=0)  # the 6 largest are selected; -0.2 and 0.1 lie below the threshold
    np.testing.assert_allclose(out[0, :6].detach().numpy(), [5.0, -4.0, 0.5, 3.0, 0.0, 0.0])
    out[0, :6].sum().backward()  # selected entries above it: slope 1; below it: 0
    np.testing.assert_allclose(Z.grad[0, :6].numpy(), [1, 1, 1, 1, 0, 0])


@pytest.mark.parametrize("support_selection", [True, False])
def test_layerwise_stages_start_new_layers_from_the_previous_one_with_support_selection(
        problem, data, monkeypatch, support_selection):
    Y, X = data
    starts = []
    original = UnfoldedSparseCoder._train

    def spy(self, module, loss_fn, **kwargs):
        starts.append((module.log_step.detach().clone(), module.log_threshold.detach().clone()))
        return original(self, module, loss_fn, **kwargs)

    monkeypatch.setattr(UnfoldedSparseCoder, "_train", spy)
    coder = small_coder(problem, n_layers=3, steps_per_layer=20, weights="analytic",
                        support_selection=support_selection).fit(Y, X)
    assert len(starts) == 3 and coder.n_iter_ == 60
    initial_step, initial_threshold = starts[0][0][0], starts[0][1][0]
    for depth in (2, 3):
        log_step, log_threshold = starts[depth - 1]
        if support_selection:  # the previous layer's learned values
            assert log_step[depth - 1] == log_step[depth - 2] != initial_step
            assert log_threshold[depth - 1] == log_threshold[depth - 2] != initial_threshold
        else:  # the initial values
            assert log_step[depth - 1] == initial_step and log_threshold[depth - 1] == initial_threshold


def test_class_defaults_for_old_pickles_match_init():
    """The class-level defaults (for models pickled before a parameter existed) are __init__'s."""
    import inspect

    defaults = {name: p.default for name, p in inspect.signature(UnfoldedSparseCoder).parameters.items()}
    for name in ("ss_step", "ss_max", "weight_lr"):
        assert getattr(UnfoldedSparseCoder, name) == defaults[name]


def test_network_options_are_validated(problem):
    with pytest.raises(ValueError, match="weights must be one of"):
        UnfoldedNetwork(problem.A, weights="shared")
    with pytest.raises(ValueError, match="support_selection applies to soft"):
        UnfoldedNetwork(problem.A, prox="hard", support_selection=True)
    with pytest.raises(ValueError, match="need a dense A"):
        UnfoldedNetwork(sp.csr_array(problem.A), weights="analytic")
    with pytest.raises(ValueError, match="need a dense A.*LinearOperator A works with weights='tied'"):
        UnfoldedNetwork(spla.aslinearoperator(problem.A), weights="untied")
    with pytest.raises(TypeError, match="LinearOperator of dtype complex128; it must be float32 or float64"):
        UnfoldedNetwork(spla.aslinearoperator(problem.A.astype(np.complex128)))
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
    for bad_time in (0, -1.0, np.inf):
        with pytest.raises(ValueError, match="max_time must be positive"):
            small_coder(problem, max_time=bad_time).fit(Y, X)
    with pytest.raises(TypeError, match="max_time must be a positive real number"):
        small_coder(problem, max_time="10").fit(Y, X)
    for bad_k in (2.5, True, "a"):
        with pytest.raises(TypeError, match="k must be a positive integer"):
            small_coder(problem, algorithm="iht_topk", k=bad_k).fit(Y, X)
    with pytest.raises(ValueError, match=r"synthetic\['snr_db'\] must be None or a finite number"):
        small_coder(problem, synthetic={"snr_db": "x"}).fit(Y, X)
    with pytest.raises(ValueError, match=r"synthetic\['p'\] must be in"):
        small_coder(problem, synthetic={"p": "0.1"}).fit(Y, X)
    with pytest.raises(ValueError, match="A is zero"):
        UnfoldedSparseCoder(np.zeros_like(problem.A), n_layers=2).fit(Y, X)
    redundant = np.vstack([problem.A, problem.A[:1]])  # a repeated measurement: rank m - 1
    with pytest.raises(ValueError, match="full row rank .* has rank 30"):
        UnfoldedSparseCoder(redundant, weights="analytic", n_layers=2).fit(np.hstack([Y, Y[:, :1]]), X)
    with pytest.raises(NotFittedError):
        small_coder(problem).predict(Y)
    fitted = small_coder(problem, steps_per_layer=2).fit(Y, X)
    with pytest.raises(ValueError, match="features"):
        fitted.predict(Y[:, :10])


# ---------------------------------------------------------------- A as a LinearOperator


@pytest.mark.parametrize("params", [dict(), dict(loss="unsupervised"), dict(algorithm="iht_topk", k=6),
                                    dict(support_selection=True, synthetic={"p": 0.1, "snr_db": 30.0})],
                         ids=["supervised", "unsupervised", "topk", "ss_synthetic"])
def test_fit_predict_with_a_linear_operator_matches_the_dense_matrix(problem, data, params):
    Y, X = data
    params = dict(n_layers=3, steps_per_layer=15, **params)
    dense = small_coder(problem, **params).fit(Y, X)
    op = small_coder(problem, **params).set_params(A=spla.aslinearoperator(problem.A)).fit(Y, X)
    assert op.module_.operator and op.device_ == torch.device("cpu")
    np.testing.assert_allclose(op.predict(Y), dense.predict(Y), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(op.steps_, dense.steps_, rtol=1e-8)
    np.testing.assert_allclose(op.layer_objective_, dense.layer_objective_, rtol=1e-8)


def test_linear_operator_in_float32_and_pickled(problem, data):
    Y, X = data
    # A float64 operator serves a float32 estimator: its products are cast.
    coder = small_coder(problem, dtype="float32", steps_per_layer=5)
    coder.set_params(A=spla.aslinearoperator(problem.A)).fit(Y, X)
    codes = coder.predict(Y)
    assert codes.dtype == np.float32 and coder.module_.log_step.dtype == torch.float32
    clone = pickle.loads(pickle.dumps(coder))
    np.testing.assert_array_equal(clone.predict(Y), codes)


def test_linear_operator_errors(problem, data, monkeypatch):
    Y, X = data
    op = spla.aslinearoperator(problem.A)
    with pytest.raises(ValueError, match="analytic and untied weights need a dense A.*LinearOperator"):
        small_coder(problem, weights="analytic").set_params(A=op).fit(Y, X)
    with pytest.raises(TypeError, match="LinearOperator of dtype complex128; it must be float32 or float64"):
        small_coder(problem).set_params(A=spla.aslinearoperator(problem.A.astype(np.complex128))).fit(Y, X)
    with pytest.raises(TypeError, match="LinearOperator of dtype int64"):
        small_coder(problem).set_params(A=spla.aslinearoperator(np.ones((30, 60), dtype=np.int64))).fit(Y, X)
    # A CUDA device is refused before anything runs there (simulated: no GPU needed).
    monkeypatch.setattr(estimators, "resolve_device", lambda device: torch.device("cuda", 0))
    with pytest.raises(ValueError, match="LinearOperator, which computes on numpy .*cannot train on cuda:0"):
        small_coder(problem, device="cuda").set_params(A=op).fit(Y, X)


# ---------------------------------------------------------------- torch tensors


def test_fit_on_a_cpu_tensor_equals_fit_on_the_array(problem, data):
    Y, X = data
    from_array = small_coder(problem, steps_per_layer=15).fit(Y, X)
    from_tensor = small_coder(problem, steps_per_layer=15).fit(torch.from_numpy(Y), torch.from_numpy(X))
    assert from_tensor.device_ == torch.device("cpu") and from_tensor.n_features_in_ == 30
    np.testing.assert_allclose(from_tensor.predict(Y), from_array.predict(Y), rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(from_tensor.layer_nmse_db_, from_array.layer_nmse_db_)
    # Unsupervised, a float32 tensor, and codes given as an array next to a tensor.
    unsup = small_coder(problem, loss="unsupervised", steps_per_layer=5)
    np.testing.assert_allclose(unsup.fit(torch.from_numpy(Y).float()).predict(Y),
                               small_coder(problem, loss="unsupervised", steps_per_layer=5)
                               .fit(Y.astype(np.float32)).predict(Y), rtol=1e-12, atol=1e-14)
    mixed = small_coder(problem, steps_per_layer=15).fit(torch.from_numpy(Y), X)
    np.testing.assert_array_equal(mixed.predict(Y), from_tensor.predict(Y))


@pytest.mark.parametrize("kind", KINDS)
def test_predict_of_a_tensor_is_a_tensor_of_its_dtype(problem, data, kind):
    Y, X = data
    coder = small_coder(problem, steps_per_layer=5).set_params(A=as_kind(problem.A, kind)).fit(Y, X)
    expected = coder.predict(Y)
    for dtype, rtol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
        codes = coder.predict(torch.from_numpy(Y).to(dtype))
        assert isinstance(codes, torch.Tensor) and codes.dtype == dtype and codes.device.type == "cpu"
        assert not codes.requires_grad
        np.testing.assert_allclose(codes.numpy(), expected, rtol=rtol, atol=10 * rtol)


def test_bad_tensors_get_clear_errors(problem, data):
    Y, X = data
    Yt, Xt = torch.from_numpy(Y), torch.from_numpy(X)
    nan, inf = Yt.clone(), Yt.clone()
    nan[0, 0], inf[1, 1] = float("nan"), float("inf")
    cases = [
        ((nan, Xt), ValueError, "Input X contains NaN"),
        ((inf, Xt), ValueError, "Input X contains infinity"),
        ((Yt, Xt.clone().fill_(float("nan"))), ValueError, "Input y contains NaN"),
        ((Yt[0], Xt), ValueError, "Expected 2D tensor, got 1D tensor"),
        ((Yt[None], Xt), ValueError, "Expected 2D tensor, got 3D tensor"),
        ((Yt.long(), Xt), TypeError, "X must be a float32 or float64 tensor, got torch.int64"),
        ((Yt.to(torch.complex128), Xt), TypeError, "X must be a float32 or float64 tensor, got torch.complex128"),
        ((Yt, Xt.int()), TypeError, "y must be a float32 or float64 tensor, got torch.int32"),
        ((Yt[:0], Xt[:0]), ValueError, r"Found array with 0 sample\(s\)"),
        ((Yt[:, :29], Xt), ValueError, r"X has 29 features .* A has shape \(30, 60\)"),
        ((Yt, Xt[:, :59]), ValueError, r"y must have shape \(n_samples, 60\)"),
        ((Yt, Xt[:10]), ValueError, "inconsistent numbers of samples"),
    ]
    for args, exc, match in cases:
        with pytest.raises(exc, match=match):
            small_coder(problem).fit(*args)
    fitted = small_coder(problem, steps_per_layer=2).fit(Yt, Xt)
    with pytest.raises(ValueError, match="X has 10 features, but UnfoldedSparseCoder is expecting 30"):
        fitted.predict(Yt[:, :10])
    with pytest.raises(ValueError, match="Input X contains NaN"):
        fitted.predict(nan)
    with pytest.raises(TypeError, match="float32 or float64 tensor, got torch.int64"):
        fitted.predict(Yt.long())
    with pytest.raises(ValueError, match="Expected 2D tensor"):
        fitted.predict(Yt[0])


@pytest.mark.gpu
def test_fit_and_predict_on_cuda_tensors(problem, data):
    Y, X = data
    Yg, Xg = torch.from_numpy(Y).cuda(), torch.from_numpy(X).cuda()
    coder = small_coder(problem, steps_per_layer=15).fit(Yg, Xg)  # device="auto": the tensor's GPU
    assert coder.device_ == Yg.device and coder.module_.log_step.device == Yg.device
    codes = coder.predict(Yg.float())
    assert codes.device == Yg.device and codes.dtype == torch.float32
    expected = coder.predict(Y)  # numpy in, numpy out
    np.testing.assert_allclose(codes.cpu().numpy(), expected, rtol=1e-5, atol=1e-5)
    # A CPU tensor for the GPU model: a CPU copy of the network computes it.
    on_cpu = coder.predict(torch.from_numpy(Y))
    assert on_cpu.device.type == "cpu" and coder.module_.log_step.device == Yg.device
    np.testing.assert_allclose(on_cpu.numpy(), expected, rtol=1e-10, atol=1e-12)
    # A CUDA tensor for a CPU model: a GPU copy computes it.
    cpu_model = small_coder(problem, steps_per_layer=15, device="cpu").fit(Yg, Xg)
    assert cpu_model.device_.type == "cpu"
    on_gpu = cpu_model.predict(Yg)
    assert on_gpu.device == Yg.device and cpu_model.module_.log_step.device.type == "cpu"
    np.testing.assert_allclose(on_gpu.cpu().numpy(), cpu_model.predict(Y), rtol=1e-10, atol=1e-12)


@pytest.mark.gpu
def test_linear_operator_refuses_cuda(problem, data):
    Y, X = data
    op = spla.aslinearoperator(problem.A)
    with pytest.raises(ValueError, match="LinearOperator, which computes on numpy .*cannot train on cuda"):
        small_coder(problem).set_params(A=op).fit(torch.from_numpy(Y).cuda(), torch.from_numpy(X).cuda())
    with pytest.raises(ValueError, match="LinearOperator, which computes on numpy .*cannot train on cuda"):
        small_coder(problem, device="cuda").set_params(A=op).fit(Y, X)
    coder = small_coder(problem, steps_per_layer=2).set_params(A=op).fit(Y, X)  # "auto": the CPU
    assert coder.device_.type == "cpu"
    with pytest.raises(ValueError, match="LinearOperator, which computes on numpy .*cannot predict on cuda"):
        coder.predict(torch.from_numpy(Y).cuda())
    net = UnfoldedNetwork(op, 2).cuda()
    with pytest.raises(ValueError, match="LinearOperator, which computes on numpy"):
        net(torch.from_numpy(Y).cuda())


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


@pytest.mark.gpu
def test_sparse_network_runs_on_cuda_and_unpickles_on_the_cpu(problem, data):
    """A sparse A is copied to the operands' GPU once (torch CSR through our
    CUDA kernels); outputs and parameter gradients equal the CPU network's,
    and the copy is not pickled."""
    import copy

    Y, X = data
    net = UnfoldedNetwork(sp.csr_array(problem.A), 4)
    results = []
    for device in ("cpu", "cuda"):
        moved = copy.deepcopy(net).to(device)
        out = moved(torch.from_numpy(Y[:20]).to(device))
        ((out - torch.from_numpy(X[:20]).to(device)).square().sum() + moved.measure(out).square().sum()).backward()
        results.append([t.detach().cpu().numpy() for t in (out, moved.log_step.grad, moved.log_threshold.grad)])
    for cpu, cuda in zip(*results):
        np.testing.assert_allclose(cuda, cpu, rtol=1e-10, atol=1e-12)
    assert [str(device) for device in moved.__dict__["_A_on_device"]] == [str(out.device)]  # "cuda:0"
    clone = pickle.loads(pickle.dumps(moved.cpu()))
    assert "_A_on_device" not in clone.__dict__
    with torch.no_grad():
        np.testing.assert_allclose(clone(torch.from_numpy(Y[:20])).numpy(), results[0][0], rtol=1e-10, atol=1e-12)
