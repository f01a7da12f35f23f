"""scikit-learn estimator for unfolded sparse recovery networks."""

from __future__ import annotations

import copy
import math
import numbers
import time

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import MultiOutputMixin, RegressorMixin
from sklearn.utils.validation import check_array, check_consistent_length, validate_data

from sciml._validation import check_positive_int, check_real
from sciml.base import BaseTorchEstimator, as_tensor, check_random_state_torch, resolve_device, to_numpy

from .classical import _is_linear_operator
from .networks import UnfoldedNetwork, _cast_operator

__all__ = ["UnfoldedSparseCoder", "unfolded_objective"]

_ALGORITHMS = {"ista": "soft", "iht": "hard", "iht_topk": "topk"}
_LOSSES = ("supervised", "unsupervised")
_TRAINING = ("layerwise", "end_to_end")
# Piecewise-constant decay within each layer-wise stage (LISTA-CP practice).
_DECAY = (1.0, 0.2, 0.04)


def unfolded_objective(measure, X, Y, *, algorithm, lam, lam0):
    """Per-signal objective the unsupervised loss minimises (torch).

    ``0.5 ||A x - y||^2 + lam ||x||_1`` for ISTA, ``+ lam0 ||x||_0`` for IHT
    (the count carries no gradient; the data term does), ``0.5 ||A x - y||^2``
    for top-k IHT.
    """
    fit = 0.5 * (measure(X) - Y).square().sum(dim=1)
    if algorithm == "ista":
        return fit + lam * X.abs().sum(dim=1)
    if algorithm == "iht":
        return fit + lam0 * (X != 0).sum(dim=1).to(X.dtype)
    return fit


class UnfoldedSparseCoder(MultiOutputMixin, RegressorMixin, BaseTorchEstimator):
    """Deep-unfolded ISTA/IHT: a trained network from measurements to sparse codes.

    Each of the `n_layers` layers performs one proximal-gradient step with
    learned parameters (see :class:`unfolding.networks.UnfoldedNetwork`):
    per-layer step and threshold (the seed paper's unfolded ISTA/IHT), plus
    ALISTA's analytic weights, LISTA-CP's untied weights and support
    selection as options.

    Measurements and codes may be numpy arrays or torch tensors: a tensor
    given to :meth:`fit` trains on its device (with ``device="auto"``), and
    :meth:`predict` of a tensor returns a tensor on the input's device, in
    its dtype.

    Parameters
    ----------
    A : ndarray, scipy.sparse matrix or scipy.sparse.linalg.LinearOperator of shape (m, n)
        Sensing matrix: a measurement is ``y = A x (+ noise)``.  Sparse A
        works with ``weights="tied"``.  A real (float32/float64)
        :class:`~scipy.sparse.linalg.LinearOperator` works with
        ``weights="tied"`` too: the network applies ``A`` and ``A^T`` with
        its ``matmat`` and ``rmatmat`` (which must compute the adjoint), on
        numpy, so it trains and predicts on the CPU only; its products are
        cast to `dtype`, and ``||A||_2`` (the default step) comes from
        :func:`scipy.sparse.linalg.svds` on it.
    n_layers : int, default=16
    algorithm : {"ista", "iht", "iht_topk"}, default="ista"
        Soft thresholding (l1), hard thresholding at ``sqrt(2 lam0 step)``
        (l0), or keeping the `k` largest entries.
    weights : {"tied", "analytic", "untied"}, default="tied"
    support_selection : bool, default=False
        ALISTA's support selection (ISTA only): of the ``p_k`` largest
        entries of each signal, those above layer ``k``'s threshold pass
        unshrunk (LISTA-CPSS's definition), ``p_k = min(k * ss_step,
        ss_max)`` (fractions of n).
    ss_step, ss_max : float, default=0.012, 0.13
        Support-selection schedule (ALISTA's values for 10 % sparse codes).
        On the standard problem a larger cap trained worse (ALISTA-SS,
        noiseless, 16 layers: -66.7 and -67.4 dB with 0.13 for two seeds,
        -46.3 and -48.4 dB with 0.16).
    loss : {"supervised", "unsupervised"}, default="supervised"
        Supervised: normalised squared error to the true codes ``y``.
        Unsupervised: the original objective with `lam` (ISTA) or `lam0`
        (IHT); needs no ``y``.
    lam : float, default=0.05
        l1 weight of the unsupervised ISTA objective.
    lam0 : float, default=0.02
        l0 weight of the IHT layers and of their unsupervised objective.
    k : int or None, default=None
        Entries kept by ``algorithm="iht_topk"``.
    training : {"layerwise", "end_to_end"}, default="layerwise"
        Layer-wise: stage t trains layers 1..t on the loss at layer t
        (robust; the default); with support selection its new layer starts
        from layer t - 1's learned parameters, otherwise from the initial
        ones (each measured better where it is used: on the standard
        problem, starting every new layer from the previous one took
        ALISTA-SS from -43.3 to -66.7 dB but supervised tied ISTA from
        -27.0 to -14.3 dB).  End-to-end: all layers on the final loss.
    steps_per_layer : int, default=150
        Optimiser steps per stage (end-to-end: ``steps_per_layer *
        n_layers`` steps).  Each stage decays the learning rates (`lr` and
        `weight_lr`) to 0.2 and 0.04 of their values over its last two
        thirds.
    batch_size : int, default=128
    lr : float, default=0.02
        Adam learning rate (steps and thresholds are log-parametrised, so
        this is a relative change per step).
    weight_lr : float, default=5e-4
        Adam learning rate of the untied weight matrices
        (``weights="untied"``): an absolute change per step of entries of
        size about ``1 / sqrt(m)``, so it is much smaller than `lr`
        (LISTA-CP's value).
    synthetic : dict or None, default=None
        ``None`` trains on minibatches of the data given to :meth:`fit`.  A
        dict ``{"p": 0.1, "snr_db": None}`` trains on fresh synthetic
        batches (Bernoulli(p)-Gaussian codes measured through A, noise at
        the SNR); the data given to fit then only serves the per-layer
        diagnostics.
    max_time : float or None, default=None
        Wall-clock training budget in seconds, shared by all stages.
    dtype : {"float32", "float64"}, default="float32"
    random_state : None, int, numpy RandomState or Generator, default=None
    device : "auto", "cpu", "cuda" or torch.device, default="auto"
        Where :meth:`fit` trains.  ``"auto"``: the device of a tensor given
        to fit; otherwise the CPU for a LinearOperator `A`, else CUDA when
        available.  A LinearOperator `A` refuses a CUDA device (or CUDA
        tensors) with a ``ValueError``.  An explicit device wins over the
        data's: tensors are moved to it.
    verbose : bool, default=False
        Progress bar per stage.
    n_threads : int or None, default=1
        Torch/BLAS threads during training and prediction (the toolkit's
        thread policy: one thread is fastest for networks of this size).

    Attributes
    ----------
    module_ : UnfoldedNetwork
    steps_, thresholds_ : ndarray of shape (n_layers,)
        Learned step sizes and soft thresholds (thresholds are unused by
        IHT layers).
    layer_objective_ : ndarray of shape (n_layers,)
        Mean objective (the unsupervised loss) of each layer's output on
        the data given to fit.
    layer_nmse_db_ : ndarray of shape (n_layers,) or None
        NMSE (dB) of each layer's output on the data given to fit, when the
        true codes were given.
    loss_curve_ : list of float
    n_iter_ : int
    n_features_in_ : int
    device_ : torch.device
        The device fit trained on (that of the tensor given to fit, with
        ``device="auto"``).

    Examples
    --------
    >>> from unfolding.problems import standard_problem
    >>> problem = standard_problem(m=20, n=40, random_state=0)
    >>> Y, X = problem.sample(200, random_state=1)
    >>> coder = UnfoldedSparseCoder(problem.A, n_layers=4, steps_per_layer=30, random_state=0)
    >>> coder.fit(Y, X).predict(Y).shape
    (200, 40)
    """

    # Defaults of parameters added later, so that models pickled before them load.
    ss_step, ss_max, weight_lr = 0.012, 0.13, 5e-4

    def __init__(
        self,
        A=None,
        *,
        n_layers=16,
        algorithm="ista",
        weights="tied",
        support_selection=False,
        ss_step=0.012,
        ss_max=0.13,
        loss="supervised",
        lam=0.05,
        lam0=0.02,
        k=None,
        training="layerwise",
        steps_per_layer=150,
        batch_size=128,
        lr=0.02,
        weight_lr=5e-4,
        synthetic=None,
        max_time=None,
        dtype="float32",
        random_state=None,
        device="auto",
        verbose=False,
        n_threads=1,
    ):
        self.A = A
        self.n_layers = n_layers
        self.algorithm = algorithm
        self.weights = weights
        self.support_selection = support_selection
        self.ss_step = ss_step
        self.ss_max = ss_max
        self.loss = loss
        self.lam = lam
        self.lam0 = lam0
        self.k = k
        self.training = training
        self.steps_per_layer = steps_per_layer
        self.batch_size = batch_size
        self.lr = lr
        self.weight_lr = weight_lr
        self.synthetic = synthetic
        self.max_time = max_time
        self.dtype = dtype
        self.random_state = random_state
        self.device = device
        self.verbose = verbose
        self.n_threads = n_threads

    # ------------------------------------------------------------------ checks
    def _check_params(self):
        if self.algorithm not in _ALGORITHMS:
            raise ValueError(f"algorithm must be one of {tuple(_ALGORITHMS)}, got {self.algorithm!r}")
        if self.loss not in _LOSSES:
            raise ValueError(f"loss must be one of {_LOSSES}, got {self.loss!r}")
        if self.training not in _TRAINING:
            raise ValueError(f"training must be one of {_TRAINING}, got {self.training!r}")
        self._torch_dtype()
        for name in ("lam", "lam0", "lr", "weight_lr", "ss_step"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float, np.floating)) and np.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        for name in ("n_layers", "steps_per_layer", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not (isinstance(self.ss_max, (int, float, np.floating)) and 0 < self.ss_max <= 1):
            raise ValueError(f"ss_max must be a fraction in (0, 1], got {self.ss_max!r}")
        if self.synthetic is not None:
            if not isinstance(self.synthetic, dict) or not set(self.synthetic) <= {"p", "snr_db"}:
                raise ValueError("synthetic must be None or a dict with keys 'p' and 'snr_db'")
            p = self.synthetic.get("p", 0.1)
            if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 < p <= 1:
                raise ValueError(f"synthetic['p'] must be in (0, 1], got {p!r}")
            snr_db = self.synthetic.get("snr_db")
            if snr_db is not None and (isinstance(snr_db, bool) or not isinstance(snr_db, numbers.Real)
                                       or not math.isfinite(snr_db)):
                raise ValueError(f"synthetic['snr_db'] must be None or a finite number of decibels, got {snr_db!r}")
        check_real("max_time", self.max_time, allow_none=True)
        if self.k is not None:
            check_positive_int("k", self.k)

    def _check_A(self):
        A = self.A
        if A is None:
            raise ValueError("A (the sensing matrix) must be given")
        if _is_linear_operator(A):
            # TypeError for a non-float32/float64 operator; products cast to `dtype`.
            return _cast_operator(A, self.dtype)
        if sp.issparse(A):
            A = sp.csr_array(A).astype(self.dtype)
            data = A.data
        else:
            A = np.asarray(A, dtype=self.dtype)
            data = A
        if A.ndim != 2:
            raise ValueError(f"A must be a 2-D matrix, got shape {A.shape}")
        if not np.all(np.isfinite(data)):
            raise ValueError("A contains NaN or inf")
        return A

    # ------------------------------------------------------------------ tensors
    def _check_tensor(self, T, name):
        """Validate a tensor as ``validate_data`` validates an array (same messages where they apply)."""
        if T.ndim != 2:
            raise ValueError(
                f"Expected 2D tensor, got {T.ndim}D tensor instead (shape {tuple(T.shape)}): use "
                f"{name}.reshape(-1, 1) if your data has a single feature or {name}.reshape(1, -1) "
                "if it contains a single sample."
            )
        if T.dtype not in (torch.float32, torch.float64):
            raise TypeError(f"{name} must be a float32 or float64 tensor, got {T.dtype}")
        for axis, what in ((0, "sample"), (1, "feature")):
            if T.shape[axis] == 0:
                raise ValueError(
                    f"Found array with 0 {what}(s) (shape={tuple(T.shape)}) while a minimum of 1 is "
                    f"required by {type(self).__name__}."
                )
        T = T.detach()
        if not bool(torch.isfinite(T).all()):
            what = "NaN" if bool(torch.isnan(T).any()) else "infinity"
            raise ValueError(f"Input {name} contains {what}.")
        return T

    def _check_tensor_data(self, X, y, reset):
        """Tensor X (and y: a tensor or array-like), validated; sets or checks ``n_features_in_``."""
        X = self._check_tensor(X, "X")
        if y is not None:
            if not isinstance(y, torch.Tensor):
                y = as_tensor(check_array(y, dtype=[np.float64, np.float32], ensure_2d=False, input_name="y"))
            y = self._check_tensor(y, "y")
            check_consistent_length(X, y)
        # Feature count and names only (the arrays were checked above).
        validate_data(self, X, skip_check_array=True, reset=reset)
        return X, y

    def _fit_device(self, X, operator):
        """The training device: the tensor's for device='auto', the CPU for a LinearOperator A."""
        auto = isinstance(self.device, str) and self.device == "auto"
        if auto and isinstance(X, torch.Tensor):
            device = resolve_device(X.device)
        elif auto and operator:
            device = torch.device("cpu")
        else:
            device = resolve_device(self.device)
        if operator and device.type != "cpu":
            raise ValueError(
                f"A is a LinearOperator, which computes on numpy (the CPU): it cannot train on {device}; "
                "use device='cpu' and numpy arrays or CPU tensors"
            )
        self.device_ = device
        return device

    def _module_on(self, device):
        """The fitted network on `device`: itself, or a copy moved there (the module is small)."""
        net = self.module_
        if net.log_step.device == device:
            return net
        if net.operator:
            raise ValueError(
                f"A is a LinearOperator, which computes on numpy (the CPU): cannot predict on {device}; "
                "pass numpy arrays or CPU tensors"
            )
        return copy.deepcopy(net).to(device)

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y=None):
        """Train the network.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, m)
            Measurements.  A tensor (float32 or float64, finite) trains on
            its device when ``device="auto"`` (a CUDA tensor on its GPU).
        y : array-like or torch.Tensor of shape (n_samples, n), optional
            True codes; required for ``loss="supervised"``, and used for the
            per-layer NMSE diagnostics whenever given.

        Returns
        -------
        self
        """
        self._check_params()
        A = self._check_A()
        if y is None and self.loss == "supervised" and self.synthetic is None:
            raise ValueError("loss='supervised' needs the true codes y (or synthetic batches)")
        tensor_input = isinstance(X, torch.Tensor)
        if tensor_input:
            X, y = self._check_tensor_data(X, y, reset=True)
        elif y is None:
            X = validate_data(self, X, dtype=[np.float64, np.float32])
        else:
            if isinstance(y, torch.Tensor):
                y = to_numpy(y)
            X, y = validate_data(self, X, y, multi_output=True, y_numeric=True, dtype=[np.float64, np.float32])
            y = np.asarray(y, dtype=self.dtype)
        if y is not None and (y.ndim != 2 or y.shape[1] != A.shape[1]):
            raise ValueError(
                f"y must have shape (n_samples, {A.shape[1]}) (A is {A.shape}), got {tuple(y.shape)}"
            )
        if X.shape[1] != A.shape[0]:
            raise ValueError(
                f"X has {X.shape[1]} features (measurements) but A has shape {A.shape}: "
                f"expected {A.shape[0]}"
            )
        if self.algorithm == "iht_topk" and (self.k is None or not 1 <= int(self.k) <= A.shape[1]):
            raise ValueError(f"algorithm='iht_topk' needs k in [1, {A.shape[1]}], got {self.k!r}")

        device = self._fit_device(X, _is_linear_operator(A))
        torch_dtype = self._torch_dtype()
        generator = check_random_state_torch(self.random_state, device)
        net = UnfoldedNetwork(
            A,
            self.n_layers,
            weights=self.weights,
            prox=_ALGORITHMS[self.algorithm],
            support_selection=self.support_selection,
            ss_step=self.ss_step,
            ss_max=self.ss_max,
            lam0=self.lam0,
            k=self.k,
        ).to(device)
        if tensor_input:
            Xt = X.to(device, torch_dtype)
            yt = None if y is None else y.to(device, torch_dtype)
        else:
            Xt = torch.as_tensor(np.asarray(X, dtype=self.dtype), device=device)
            yt = None if y is None else torch.as_tensor(y, device=device)
        sample = self._batch_source(net, Xt, yt, generator, torch_dtype)
        self._fit_layers(net, sample)

        self.module_ = net
        self.steps_ = to_numpy(net.log_step.detach().exp())
        self.thresholds_ = to_numpy(net.log_threshold.detach().exp())
        self.layer_objective_, self.layer_nmse_db_ = self._layer_diagnostics(net, Xt, yt)
        return self

    def _batch_source(self, net, Xt, yt, generator, torch_dtype):
        """A function returning (Y, X or None) training batches."""
        batch = self.batch_size
        if self.synthetic is not None:
            p = float(self.synthetic.get("p", 0.1))
            snr_db = self.synthetic.get("snr_db")
            n = net.shape[1]
            def synthetic_batch():
                support = torch.rand((batch, n), generator=generator, device=Xt.device) < p
                codes = support * torch.randn((batch, n), generator=generator, device=Xt.device, dtype=torch_dtype)
                Y = net.measure(codes)
                if snr_db is not None:
                    noise = torch.randn(Y.shape, generator=generator, device=Y.device, dtype=torch_dtype)
                    scale = Y.norm() / noise.norm() * 10.0 ** (-float(snr_db) / 20.0)
                    Y = Y + scale * noise
                return Y, codes

            return synthetic_batch

        n_samples = Xt.shape[0]

        def data_batch():
            idx = torch.randint(n_samples, (min(batch, n_samples),), generator=generator, device=Xt.device)
            return Xt[idx], None if yt is None else yt[idx]

        return data_batch

    def _loss(self, net, Y, X, n_layers):
        out = net(Y, n_layers=n_layers)
        if self.loss == "supervised":
            return (out - X).square().sum() / X.square().sum().clamp_min(torch.finfo(X.dtype).tiny)
        objective = unfolded_objective(
            net.measure, out, Y, algorithm=self.algorithm, lam=self.lam, lam0=self.lam0
        )
        return objective.mean()

    def _fit_layers(self, net, sample):
        stages = range(1, self.n_layers + 1) if self.training == "layerwise" else [self.n_layers]
        steps = self.steps_per_layer if self.training == "layerwise" else self.steps_per_layer * self.n_layers
        start = time.perf_counter()
        curve, n_iter = [], 0
        for depth in stages:
            remaining = None if self.max_time is None else self.max_time - (time.perf_counter() - start)
            if remaining is not None and remaining <= 0:
                break
            third = max(1, steps // len(_DECAY))
            if self.training == "layerwise" and depth > 1 and self.support_selection:
                net.start_layer_from(depth - 1, depth - 2)

            def loss_fn(depth=depth):
                Y, X = sample()
                return self._loss(net, Y, X, depth)

            result = self._train(
                net,
                loss_fn,
                optimizer=self._optimizer_factory(net),
                lr=self.lr,
                max_iter=steps,
                lr_schedule=lambda opt: torch.optim.lr_scheduler.LambdaLR(
                    opt, lambda s: _DECAY[min(s // third, len(_DECAY) - 1)]
                ),
                restore_best=False,  # minibatch losses are noisy: keep the last weights
                tol=0.0,
                max_time=remaining,
                desc=f"{type(self).__name__} layer {depth}/{self.n_layers}",
            )
            curve += result.loss_curve
            n_iter += result.n_iter
            if result.stop_reason in ("nonfinite", "diverged"):
                break  # the loop restored the best weights and warned
        self.loss_curve_, self.n_iter_ = curve, n_iter

    def _optimizer_factory(self, net):
        """Adam; untied weight matrices get their own (absolute) learning rate `weight_lr`."""
        if self.weights != "untied":
            return "adam"

        def factory(params, lr):
            others = [p for p in params if p is not net.Ws]
            return torch.optim.Adam([{"params": others}, {"params": [net.Ws], "lr": self.weight_lr}], lr=lr)

        return factory

    def _layer_diagnostics(self, net, Xt, yt):
        with torch.no_grad(), self._thread_limit():
            outputs = net(Xt, return_all=True)
            objective = [
                float(unfolded_objective(net.measure, out, Xt, algorithm=self.algorithm, lam=self.lam,
                                         lam0=self.lam0).double().mean())
                for out in outputs
            ]
            nmse = None
            if yt is not None:
                energy = yt.double().square().sum()
                nmse = np.array([
                    float(10 * torch.log10((out.double() - yt.double()).square().sum() / energy))
                    for out in outputs
                ])
        return np.array(objective), nmse

    # ------------------------------------------------------------------ predicting
    def predict(self, X):
        """Sparse codes of measurements X.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, m)
            Measurements.  A tensor (float32 or float64, finite) is
            processed on its own device: on another device than the one fit
            trained on, a copy of the network moved there computes the codes
            (the fitted model is left where it is).  A LinearOperator `A`
            computes on the CPU only and refuses CUDA tensors
            (``ValueError``).

        Returns
        -------
        codes : ndarray or torch.Tensor of shape (n_samples, n)
            A numpy array in the estimator's `dtype` for array input; a
            tensor on X's device, in X's dtype, for tensor input.
        """
        self._check_fitted()
        if isinstance(X, torch.Tensor):
            Xt, _ = self._check_tensor_data(X, None, reset=False)
            net = self._module_on(Xt.device)
            with torch.no_grad(), self._thread_limit():
                return net(Xt.to(net.log_step.dtype)).to(X.dtype)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        Xt = torch.as_tensor(np.asarray(X, dtype=self.dtype), device=self.device_)
        with torch.no_grad(), self._thread_limit():
            return to_numpy(self.module_(Xt))
