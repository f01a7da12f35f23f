import io
import pickle

import numpy as np
import pytest
import torch
from sklearn.base import RegressorMixin, clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import Ridge
from sklearn.utils.estimator_checks import parametrize_with_checks
from sklearn.utils.validation import validate_data

from sciml.base import (
    BaseTorchEstimator,
    as_tensor,
    check_random_state_torch,
    load,
    reset_parameters,
    resolve_device,
    to_numpy,
)


# ---------------------------------------------------------------------------
# a minimal family estimator, written the way the families are meant to be
# ---------------------------------------------------------------------------
def _ridge_loss(module, X, y, alpha):
    """Ridge objective / n_samples (same minimiser as sklearn's Ridge)."""
    r = module(X).squeeze(-1) - y
    return (r @ r + alpha * (module.weight**2).sum()) / X.shape[0]


class _TorchRidge(RegressorMixin, BaseTorchEstimator):
    """Ridge regression trained by the shared loop (Adam, then L-BFGS)."""

    def __init__(self, alpha=1.0, max_iter=10, lbfgs_iter=50, lr=0.05,
                 random_state=None, device="auto", verbose=False, n_threads=1):
        self.alpha = alpha
        self.max_iter = max_iter
        self.lbfgs_iter = lbfgs_iter
        self.lr = lr
        self.random_state = random_state
        self.device = device
        self.verbose = verbose
        self.n_threads = n_threads

    def fit(self, X, y):
        X, y = validate_data(self, X, y, y_numeric=True, dtype=np.float64)
        device = self._resolve_device()
        with torch.device("meta"):  # no draw from the global RNG
            net = torch.nn.Linear(X.shape[1], 1, dtype=torch.float64)
        net = reset_parameters(net.to_empty(device=device), self._make_generator())
        Xt, yt = as_tensor(X, device), as_tensor(y.astype(np.float64), device)
        self._train(
            net, lambda: _ridge_loss(net, Xt, yt, self.alpha),
            lr=self.lr, max_iter=self.max_iter, lbfgs_iter=self.lbfgs_iter,
            lbfgs_kwargs={"tolerance_grad": 1e-10, "tolerance_change": 1e-14},
        )
        self.module_ = net
        self.coef_ = to_numpy(net.weight).ravel()
        self.intercept_ = float(net.bias)
        return self

    def predict(self, X):
        self._check_fitted()
        X = validate_data(self, X, reset=False, dtype=np.float64)
        with torch.no_grad(), self._thread_limit():
            return to_numpy(self.module_(as_tensor(X, self.device_)).squeeze(-1))


class _OtherEstimator(_TorchRidge):
    pass


def _expected_failed_checks(estimator):
    # Every check passes; kept so that a future failure is added here with a reason.
    return {}


@parametrize_with_checks(
    [_TorchRidge(max_iter=5, lbfgs_iter=30)],
    expected_failed_checks=_expected_failed_checks,
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((80, 4))
    y = X @ np.array([1.0, -2.0, 0.5, 0.0]) + 3.0 + 0.1 * rng.standard_normal(80)
    return X, y


def _assert_same_fitted(a, b):
    assert type(a) is type(b)
    assert a.get_params() == b.get_params()
    fitted = sorted(k for k in vars(a) if k.endswith("_") and not k.startswith("__"))
    assert fitted == sorted(k for k in vars(b) if k.endswith("_") and not k.startswith("__"))
    assert fitted, "estimator is not fitted"
    for k in fitted:
        x, y = getattr(a, k), getattr(b, k)
        if isinstance(x, torch.nn.Module):
            sx, sy = x.state_dict(), y.state_dict()
            assert sx.keys() == sy.keys()
            assert all(torch.equal(sx[n], sy[n]) for n in sx), k
        elif isinstance(x, torch.Tensor):
            assert torch.equal(x, y), k
        elif isinstance(x, np.ndarray):
            np.testing.assert_array_equal(x, y, err_msg=k)
        else:
            assert x == y, k


# ---------------------------------------------------------------------------
# numerics
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("alpha", [0.1, 10.0])
def test_matches_sklearn_ridge(data, alpha):
    X, y = data
    est = _TorchRidge(alpha=alpha, random_state=0).fit(X, y)
    ref = Ridge(alpha=alpha).fit(X, y)
    np.testing.assert_allclose(est.coef_, ref.coef_, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(est.intercept_, ref.intercept_, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(est.predict(X), ref.predict(X), rtol=1e-6, atol=1e-6)
    assert est.n_iter_ == len(est.loss_curve_) > 0
    assert est.stop_reason_ in ("converged", "max_iter")
    assert est.device_ == torch.device("cpu")
    assert isinstance(est.predict(X), np.ndarray)


# ---------------------------------------------------------------------------
# randomness
# ---------------------------------------------------------------------------
def test_seed_reproducibility(data):
    X, y = data
    fit = lambda seed: _TorchRidge(max_iter=2, lbfgs_iter=0, random_state=seed).fit(X, y)
    a, b, c = fit(7), fit(7), fit(8)
    np.testing.assert_array_equal(a.coef_, b.coef_)
    assert a.loss_curve_ == b.loss_curve_
    assert not np.allclose(a.coef_, c.coef_)
    # RandomState / Generator instances are accepted (a seed is drawn from them)
    d = fit(np.random.RandomState(0))
    e = fit(np.random.default_rng(0))
    f = fit(None)
    assert np.all(np.isfinite(np.r_[d.coef_, e.coef_, f.coef_]))


def test_global_rng_untouched(data):
    X, y = data
    torch_state, np_state = torch.random.get_rng_state(), np.random.get_state()
    for seed in (None, 0, np.random.default_rng(1)):
        _TorchRidge(max_iter=2, lbfgs_iter=2, random_state=seed).fit(X, y)
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    after = np.random.get_state()
    assert after[0] == np_state[0] and np.array_equal(after[1], np_state[1])
    assert after[2:] == np_state[2:]


def test_check_random_state_torch():
    g1, g2 = check_random_state_torch(3), check_random_state_torch(np.int64(3))
    assert torch.equal(torch.rand(4, generator=g1), torch.rand(4, generator=g2))
    n1 = torch.rand(4, generator=check_random_state_torch(None))
    n2 = torch.rand(4, generator=check_random_state_torch(None))
    assert not torch.equal(n1, n2)
    rs = np.random.RandomState(0)
    assert not torch.equal(  # the instance advances, as in sklearn
        torch.rand(4, generator=check_random_state_torch(rs)),
        torch.rand(4, generator=check_random_state_torch(rs)),
    )
    for bad in (-1, 2**64, 1.5, "0", True):
        with pytest.raises(ValueError, match="random_state"):
            check_random_state_torch(bad)


def test_reset_parameters_is_seeded_and_complete():
    def make():
        with torch.device("meta"):
            net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(),
                                      torch.nn.LayerNorm(8), torch.nn.Linear(8, 1))
        return net.to_empty(device="cpu")

    state = torch.random.get_rng_state()
    a = reset_parameters(make(), check_random_state_torch(0))
    b = reset_parameters(make(), check_random_state_torch(0))
    assert torch.equal(torch.random.get_rng_state(), state)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb) and torch.isfinite(pa).all()
    bound = 1 / np.sqrt(3)  # torch's default scheme
    assert a[0].weight.abs().max() <= bound and a[0].bias.abs().max() <= bound
    assert torch.equal(a[2].weight, torch.ones(8))

    class Custom(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.theta = torch.nn.Parameter(torch.zeros(2))

    with pytest.raises(TypeError, match="cannot initialise Custom"):
        reset_parameters(Custom(), check_random_state_torch(0))


# ---------------------------------------------------------------------------
# devices (no GPU here: CUDA is mocked where needed)
# ---------------------------------------------------------------------------
def test_device_resolution_on_cpu_machine(data, monkeypatch):
    X, y = data
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    quick = dict(max_iter=1, lbfgs_iter=0)
    assert _TorchRidge(device="auto", **quick).fit(X, y).device_ == torch.device("cpu")
    assert _TorchRidge(device=torch.device("cpu"), **quick).fit(X, y).device_.type == "cpu"
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        _TorchRidge(device="cuda").fit(X, y)
    with pytest.raises(RuntimeError, match="'cuda:1' requested"):
        resolve_device("cuda:1")
    for bad in ("gpu", "cuda:x", "", 3):
        with pytest.raises(ValueError, match="Invalid device"):
            _TorchRidge(device=bad).fit(X, y)
    with pytest.raises(ValueError, match="Unsupported device type 'meta'"):
        resolve_device("meta")


def test_device_resolution_with_mocked_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device(torch.device("cuda", 1)) == torch.device("cuda", 1)
    with pytest.raises(RuntimeError, match="only 2 CUDA device"):
        resolve_device("cuda:2")


def test_no_cuda_probe_before_fit(monkeypatch):
    def boom():
        raise AssertionError("CUDA probed outside fit")

    monkeypatch.setattr(torch.cuda, "is_available", boom)
    est = _TorchRidge(device="auto")
    clone(est).get_params()
    pickle.loads(pickle.dumps(est))


# ---------------------------------------------------------------------------
# saving, loading, pickling
# ---------------------------------------------------------------------------
def test_save_load_round_trip(data, tmp_path):
    X, y = data
    est = _TorchRidge(alpha=0.5, random_state=1).fit(X, y)
    path = tmp_path / "ridge.pt"
    est.save(path)
    assert path.is_file() and list(tmp_path.iterdir()) == [path]  # one file
    for loaded in (_TorchRidge.load(path), load(str(path)), BaseTorchEstimator.load(path)):
        _assert_same_fitted(est, loaded)
        np.testing.assert_array_equal(loaded.predict(X), est.predict(X))

    buf = io.BytesIO()  # file objects work too
    est.save(buf)
    buf.seek(0)
    _assert_same_fitted(est, _TorchRidge.load(buf))

    # an unfitted estimator round-trips as well
    unfitted = _TorchRidge(alpha=3.0)
    unfitted.save(tmp_path / "u.pt")
    assert _TorchRidge.load(tmp_path / "u.pt").get_params() == unfitted.get_params()


def test_load_refuses_other_class_and_foreign_files(data, tmp_path):
    X, y = data
    path = tmp_path / "ridge.pt"
    _TorchRidge(max_iter=1, lbfgs_iter=0).fit(X, y).save(path)
    with pytest.raises(TypeError, match="not a .*_OtherEstimator"):
        _OtherEstimator.load(path)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="not an estimator file"):
        _TorchRidge.load(tmp_path / "foreign.pt")
    torch.save({"magic": "sciml-estimator", "format_version": 99, "estimator": None},
               tmp_path / "future.pt")
    with pytest.raises(ValueError, match="format version 99"):
        load(tmp_path / "future.pt")


def test_pickle_round_trip(data):
    X, y = data
    est = _TorchRidge(random_state=2).fit(X, y)
    loaded = pickle.loads(pickle.dumps(est))
    _assert_same_fitted(est, loaded)
    np.testing.assert_array_equal(loaded.predict(X), est.predict(X))
    assert loaded.module_ is not est.module_


def test_cuda_trained_model_unpickles_on_cpu(data, monkeypatch):
    # No GPU here: build the state on the CPU, then claim it was trained on CUDA.
    X, y = data
    est = _TorchRidge(random_state=0, device="cpu").fit(X, y)
    expected = est.predict(X)
    est.set_params(device="cuda")
    est.device_ = torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    state = est.__getstate__()
    assert state["device_"] == torch.device("cpu")
    assert est.device_ == torch.device("cuda", 0)  # the live object is untouched

    for loaded in (pickle.loads(pickle.dumps(est)), _load_via_file(est)):
        assert loaded.device_ == torch.device("cpu")
        assert loaded.device == "cuda"  # the parameter is kept as given
        assert all(p.device.type == "cpu" for p in loaded.module_.parameters())
        np.testing.assert_array_equal(loaded.predict(X), expected)


def _load_via_file(est):
    buf = io.BytesIO()
    est.save(buf)
    buf.seek(0)
    return type(est).load(buf)


def test_getstate_does_not_copy_cpu_state_or_mutate(data):
    X, y = data
    est = _TorchRidge(max_iter=1, lbfgs_iter=0).fit(X, y)
    before = dict(vars(est))
    state = est.__getstate__()
    assert state["module_"] is est.module_  # CPU objects are passed through
    assert vars(est) == before


@pytest.mark.gpu
def test_real_cuda_round_trip(data):
    X, y = data
    est = _TorchRidge(device="cuda", random_state=0).fit(X, y)
    assert next(est.module_.parameters()).is_cuda
    loaded = pickle.loads(pickle.dumps(est))
    assert next(est.module_.parameters()).is_cuda  # live object untouched
    assert loaded.device_ == torch.device("cpu")
    assert not next(loaded.module_.parameters()).is_cuda
    np.testing.assert_allclose(loaded.predict(X), est.predict(X), rtol=1e-12)
    np.testing.assert_allclose(est.coef_, Ridge().fit(X, y).coef_, rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------
# fitted-ness and verbosity
# ---------------------------------------------------------------------------
def test_unfitted_predict_raises(data):
    with pytest.raises(NotFittedError):
        _TorchRidge().predict(data[0])


def test_verbose_progress_bar(data, capsys):
    X, y = data
    _TorchRidge(max_iter=3, lbfgs_iter=2, verbose=False).fit(X, y)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    _TorchRidge(max_iter=3, lbfgs_iter=2, verbose=True).fit(X, y)
    out = capsys.readouterr()
    assert out.out == "" and "_TorchRidge" in out.err and "it/s" in out.err


def test_as_tensor_handles_readonly_arrays():
    X = np.arange(6.0).reshape(2, 3)
    X.flags.writeable = False
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = as_tensor(X)
    assert torch.equal(t, torch.arange(6.0, dtype=torch.float64).reshape(2, 3))
    w = np.ones(3)
    assert as_tensor(w).data_ptr() == w.ctypes.data  # writable arrays are not copied


def test_flipped_and_byte_swapped_arrays_become_tensors():
    """torch wraps neither negative strides nor big-endian data: they are copied, values kept."""
    from sciml._validation import as_real_tensor

    X = np.arange(12.0).reshape(3, 4)
    for view in (X[::-1], X[:, ::-1], X[::-1, ::-2], X.astype(">f8")):
        np.testing.assert_array_equal(as_tensor(view).numpy(), view)
        np.testing.assert_array_equal(
            as_real_tensor(view, "X", ndims=(2,), expected="2-D")[0].numpy(), view)


# --- the shared dense-input validator ------------------------------------------------------
def test_as_real_tensor_accepts_and_converts():
    import scipy.sparse

    from sciml._validation import as_real_tensor

    kw = {"ndims": (2, 3), "expected": "a matrix or a stack"}
    A = np.arange(6.0).reshape(2, 3)
    T, is_torch = as_real_tensor(A, "Y", **kw)
    assert not is_torch and T.dtype == torch.float64 and np.shares_memory(T.numpy(), A)  # no copy
    T, _ = as_real_tensor(np.arange(6).reshape(2, 3), "Y", **kw)  # integers: float64
    assert T.dtype == torch.float64 and T[1, 2] == 5
    T, _ = as_real_tensor(A.astype(">f8"), "Y", **kw)  # big-endian
    np.testing.assert_array_equal(T.numpy(), A)
    readonly = A.copy()
    readonly.flags.writeable = False
    assert as_real_tensor(readonly, "Y", **kw)[0].sum() == 15
    T, is_torch = as_real_tensor(torch.ones(2, 2, dtype=torch.float32), "Y", **kw)
    assert is_torch and T.dtype == torch.float32
    # a model dtype: everything real is cast to it, float16 and booleans included
    T, _ = as_real_tensor(np.ones((2, 2), dtype=np.float16), "Y", dtype=torch.float32, **kw)
    assert T.dtype == torch.float32
    T, _ = as_real_tensor(torch.eye(2, dtype=torch.bool), "Y", dtype=torch.float64, **kw)
    assert T.dtype == torch.float64 and T.trace() == 2
    with pytest.raises(TypeError, match="sparse matrix type"):
        as_real_tensor(scipy.sparse.eye(3, format="csr"), "Y", **kw)


@pytest.mark.parametrize(
    "X, dtype, error, match",
    [
        (np.ones((2, 2), dtype=complex), None, TypeError, "Y must be real-valued, got complex"),
        (torch.ones(2, 2, dtype=torch.complex64), None, TypeError, "real-valued"),
        (np.array([["a", "b"]]), None, TypeError, "numeric array"),
        (np.ones((2, 2), dtype=np.float16), None, TypeError, "float32 or float64"),
        (torch.ones(2, 2, dtype=torch.bfloat16), None, TypeError, "float32 or float64"),
        (np.ones(3), None, ValueError, r"Y must be a matrix or a stack, got shape \(3,\)"),
        (np.ones((0, 3)), None, ValueError, "empty"),
        (np.array([[1.0, np.nan]]), None, ValueError, "NaN or inf"),
        (torch.tensor([[1.0, float("inf")]]), None, ValueError, "NaN or inf"),
        (np.array([[1.0, 1e300]]), torch.float32, ValueError, "too large for torch.float32"),
    ],
)
def test_as_real_tensor_bad_input(X, dtype, error, match):
    from sciml._validation import as_real_tensor

    with pytest.raises(error, match=match):
        as_real_tensor(X, "Y", ndims=(2, 3), expected="a matrix or a stack", dtype=dtype)
