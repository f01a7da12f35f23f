"""scikit-learn estimator for the unfolded (learned) Robust PCA network."""

from __future__ import annotations

import math
import numbers
import time

import numpy as np
import torch

from sciml._validation import as_real_tensor
from sciml.base import BaseTorchEstimator, check_random_state_torch, to_numpy
from sciml.prox import soft_threshold
from sciml.training import budget_schedule

from .rpca_classical import tune_scaledgd
from .rpca_networks import UnfoldedRPCA
from .rpca_problems import check_rpca_problem, sample_low_rank_plus_sparse

__all__ = ["LearnedRPCA"]

_LOSSES = ("supervised", "unsupervised")
_TRAINING = ("end_to_end", "layerwise")
_PROBLEM_KEYS = {"shape", "outlier_fraction", "outlier_magnitude"}
_DEFAULT_PROBLEM = {"shape": (500, 500), "outlier_fraction": 0.1, "outlier_magnitude": 1.0}
# Candidates for the initialisation threshold zeta_0 (relative to rms(Y)),
# chosen on the training problems: the SVD it feeds has no reliable gradient.
_INIT_THRESHOLDS = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
_DEFAULT_SCHEDULE = {"threshold": 2.0, "decay": 0.6, "step": 0.7}
# Coarse grid for schedule="auto" (48 runs of n_layers iterations: ~6 s at
# 500 x 500 on one thread); faster decays than ScaledGD's usual grid, since
# the schedule is for a few layers.
_TUNE_GRID = {"thresholds": (1.0, 2.0, 3.0, 4.0), "decays": (0.3, 0.4, 0.5, 0.6), "steps": (0.6, 0.8, 1.0)}
# Learning-rate factor over the run (by the larger of step and time progress).
_DECAY = (1.0, 0.3, 0.1)


def _decay(progress):
    return _DECAY[min(int(progress * len(_DECAY)), len(_DECAY) - 1)]


def _check_stack(X, name, dtype):
    """``X`` as a finite float tensor of shape (p, m, n), and whether it was one matrix / a tensor."""
    T, is_tensor = as_real_tensor(X, name, ndims=(2, 3), dtype=dtype,
                                  expected="a matrix (m, n) or a stack of matrices (p, m, n)")
    single = T.ndim == 2
    return (T.unsqueeze(0) if single else T), single, is_tensor


class LearnedRPCA(BaseTorchEstimator):
    """Learned Robust PCA (LRPCA): a trained ScaledGD network splitting ``Y = L + S``.

    ``L`` has rank `rank` and ``S`` is sparse.  The network
    (:class:`unfolding.rpca_networks.UnfoldedRPCA`) is `n_layers` ScaledGD
    iterations whose step sizes and soft thresholds are learned; it starts
    from the classical schedule, so training can only improve on it.
    Thresholds are relative to ``rms(Y)``, so a trained network applies to
    matrices of any size and scale, and to another rank (pass ``rank=`` to
    :meth:`decompose`).

    Parameters
    ----------
    rank : int, default=5
        Rank of the low-rank part (of the training problems, and the
        default at inference).  What carries over between sizes is the
        rank-to-size ratio: a network trained on 500 x 500 matrices at rank
        25 reached 5e-8 on 1000 x 1000 ones at rank 50, while one trained
        at rank 5 reached only 4e-3 there (``python -m benchmarks rpca``,
        R2).  Train at the ratio of the matrices you will decompose.
    n_layers : int, default=15
    loss : {"supervised", "unsupervised"}, default="supervised"
        Supervised: the log relative error of ``L`` against the true low-rank
        part, averaged over the layers (deep supervision keeps every layer
        contracting).  Unsupervised: the RPCA objective of the rank-``r``
        model, ``log ||Y - L||_1 / ||Y||_1`` averaged over the layers; it
        needs no ground truth but converges to a less accurate network.
    training : {"end_to_end", "layerwise"}, default="end_to_end"
        End-to-end: every step trains all layers on the deep-supervised
        loss.  Layer-wise: stage ``t`` trains layers ``1..t`` on the loss of
        their outputs for `steps_per_layer` steps, then all layers are
        fine-tuned end-to-end for `max_iter` steps.  End-to-end is the
        default because it measured better: on 80 x 80, rank 3, 6 layers,
        starting from the fixed default schedule, 150 end-to-end steps reach
        8e-4 relative error, 6 stages of 25 steps 4.6e-3 (and training each layer alone with earlier ones frozen,
        which LRPCA's paper describes, 6.8e-3: each layer then minimises its
        own error and the first ones barely move).
    problem : dict or None, default=None
        Synthetic training problems for ``fit()`` without data: keys
        ``shape`` (default ``(500, 500)``), ``outlier_fraction`` (0.1) and
        ``outlier_magnitude`` (1.0); see
        :func:`unfolding.rpca_problems.low_rank_plus_sparse`.
    n_problems : int, default=8
        Size of the synthetic training pool.
    max_iter : int, default=500
        Adam steps (end-to-end phase).
    steps_per_layer : int, default=30
        Steps per layer-wise stage.
    batch_size : int, default=1
        Training problems per step.
    lr : float, default=0.05
        Adam learning rate on the log-steps and log-thresholds (a relative
        change per step), decayed to 0.3 and 0.1 of it over the run.
    max_time : float or None, default=None
        Wall-clock training budget in seconds (the learning-rate decay
        follows the budget when it binds first).
    schedule : "auto" or dict, default="auto"
        The classical ScaledGD schedule the network starts from: layer ``k``
        has step ``schedule["step"]`` and threshold ``schedule["threshold"]
        * schedule["decay"]**k`` (relative to ``rms(Y)``).  ``"auto"``
        grid-searches it on the first training problem
        (:func:`unfolding.rpca_classical.tune_scaledgd`, `n_layers`
        iterations, a 4 x 4 x 3 grid) when the true low-rank parts are known,
        and otherwise starts from ``{"threshold": 2.0, "decay": 0.6, "step":
        0.7}``.  Starting from the tuned schedule matters: on R1 of the
        benchmark (trained 100 s) the network reached 4e-10 from it and 2e-8
        from the fixed one.
    residual_floor : float, default=5.0
        Each layer's threshold is at least this many median absolute
        residuals ``|L R^T - Y|`` (on a fixed sample of entries), so that on
        problems harder than the training ones (more outliers) the layers do
        not stall once the learned thresholds fall below the error; 0 turns
        it off.  Trained at 10 % outliers and tested at 20 % (1000 x 1000),
        the benchmark's R1 network stalled at 2.2e-5 without it and reached
        5.7e-7 with it (tuned ScaledGD: 7.3e-6); at 10 % both reached a few
        1e-10.  On small matrices (80 x 80) it binds during training too
        and cost up to 2x in error.
    dtype : {"float64", "float32"}, default="float64"
        Computation dtype; float64 is needed for errors below about 1e-6.
    random_state : None, int, numpy RandomState or Generator, default=None
        Draws the synthetic problems, the minibatches and the randomised SVD
        test matrices.  At inference the test matrices come from
        ``inference_seed_``, fixed in ``fit``, so that :meth:`decompose`
        gives the same result on every call and after a reload, whatever
        `random_state` is.
    device : "auto", "cpu", "cuda" or torch.device, default="auto"
    verbose : bool, default=False
    n_threads : int or None, default=1

    Attributes
    ----------
    module_ : UnfoldedRPCA
    schedule_ : dict
        The classical schedule the training started from.
    steps_ : ndarray of shape (n_layers,)
    thresholds_ : ndarray of shape (n_layers + 1,)
        Relative thresholds; entry 0 is the initialisation's.
    layer_error_ : ndarray of shape (n_layers,) or None
        Mean relative error of ``L`` after each layer on the training
        problems, when their low-rank parts are known.
    loss_curve_ : list of float
    n_iter_ : int
    train_time_ : float
        Seconds spent in :meth:`fit`.
    inference_seed_ : int
        Seed of :meth:`decompose`'s randomised SVD test matrices.
    device_ : torch.device

    Examples
    --------
    >>> from unfolding.rpca_problems import low_rank_plus_sparse
    >>> model = LearnedRPCA(rank=3, n_layers=6, problem={"shape": (60, 60)}, max_iter=20,
    ...                     random_state=0).fit()
    >>> Y, L, S = low_rank_plus_sparse(80, rank=3, random_state=1)
    >>> L_hat, S_hat = model.decompose(Y)
    >>> L_hat.shape, S_hat.shape
    ((80, 80), (80, 80))
    """

    # Models pickled before residual_floor existed were trained without it.
    residual_floor = 0.0

    def __init__(
        self,
        rank=5,
        *,
        n_layers=15,
        loss="supervised",
        training="end_to_end",
        problem=None,
        n_problems=8,
        max_iter=500,
        steps_per_layer=30,
        batch_size=1,
        lr=0.05,
        max_time=None,
        schedule="auto",
        residual_floor=5.0,
        dtype="float64",
        random_state=None,
        device="auto",
        verbose=False,
        n_threads=1,
    ):
        self.rank = rank
        self.n_layers = n_layers
        self.loss = loss
        self.training = training
        self.problem = problem
        self.n_problems = n_problems
        self.max_iter = max_iter
        self.steps_per_layer = steps_per_layer
        self.batch_size = batch_size
        self.lr = lr
        self.max_time = max_time
        self.schedule = schedule
        self.residual_floor = residual_floor
        self.dtype = dtype
        self.random_state = random_state
        self.device = device
        self.verbose = verbose
        self.n_threads = n_threads

    # ------------------------------------------------------------------ checks
    def _check_params(self):
        if self.loss not in _LOSSES:
            raise ValueError(f"loss must be one of {_LOSSES}, got {self.loss!r}")
        if self.training not in _TRAINING:
            raise ValueError(f"training must be one of {_TRAINING}, got {self.training!r}")
        self._torch_dtype()
        for name in ("rank", "n_layers", "n_problems", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("max_iter", "steps_per_layer"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        if not ((isinstance(self.schedule, str) and self.schedule == "auto")
                or (isinstance(self.schedule, dict) and set(self.schedule) == set(_DEFAULT_SCHEDULE))):
            raise ValueError(f"schedule must be 'auto' or a dict with keys {sorted(_DEFAULT_SCHEDULE)}, "
                             f"got {self.schedule!r}")
        for name, value in [("lr", self.lr)] + (
                list(self.schedule.items()) if isinstance(self.schedule, dict) else []):
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if isinstance(self.residual_floor, bool) or not (
                isinstance(self.residual_floor, numbers.Real) and math.isfinite(self.residual_floor)
                and self.residual_floor >= 0):
            raise ValueError(f"residual_floor must be a finite number >= 0, got {self.residual_floor!r}")
        if self.max_time is not None and not (isinstance(self.max_time, numbers.Real) and self.max_time > 0):
            raise ValueError(f"max_time must be None or a positive number of seconds, got {self.max_time!r}")
        problem = dict(_DEFAULT_PROBLEM, **(self.problem or {}))
        if not isinstance(self.problem, (dict, type(None))) or not set(problem) <= _PROBLEM_KEYS:
            raise ValueError(f"problem must be None or a dict with keys among {sorted(_PROBLEM_KEYS)}, "
                             f"got {self.problem!r}")
        shape = problem["shape"]
        if not (isinstance(shape, (tuple, list)) and len(shape) == 2):
            raise ValueError(f"problem['shape'] must be a pair (m, n), got {shape!r}")
        return check_rpca_problem(shape, self.rank, problem["outlier_fraction"], problem["outlier_magnitude"])

    # ------------------------------------------------------------------ fitting
    def fit(self, X=None, y=None):
        """Train the network.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (p, m, n) or (m, n), optional
            Observed matrices ``Y = L + S`` to train on.  ``None`` trains on
            `n_problems` synthetic problems drawn as `problem` says.
        y : array-like or torch.Tensor, same shape as X, optional
            Their true low-rank parts; required by ``loss="supervised"``
            with user data.

        Returns
        -------
        self
        """
        start = time.perf_counter()
        m, n, rank, alpha, magnitude = self._check_params()
        device = self._resolve_device()
        torch_dtype = self._torch_dtype()
        generator = check_random_state_torch(self.random_state, device)
        if X is None:
            if y is not None:
                raise ValueError("y was given without X")
            Y, L, _ = sample_low_rank_plus_sparse(self.n_problems, m, n, rank, alpha, magnitude, generator,
                                                  dtype=torch_dtype, device=device)
        else:
            Y = _check_stack(X, "X", torch_dtype)[0].to(device)
            if rank > min(Y.shape[-2:]):
                raise ValueError(f"rank={rank} is larger than the training matrices allow: "
                                 f"min(m, n) = {min(Y.shape[-2:])}")
            L = None
            if y is not None:
                L = _check_stack(y, "y", torch_dtype)[0].to(device)
                if L.shape != Y.shape:
                    raise ValueError(f"y must have the shape of X, {tuple(Y.shape)}, got {tuple(L.shape)}")
                if (L.square().sum(dim=(-2, -1)) == 0).any():
                    raise ValueError("y contains an all-zero low-rank part: the relative error is undefined")
            elif self.loss == "supervised":
                raise ValueError("loss='supervised' needs the true low-rank parts y (or fit() on synthetic problems)")

        with self._thread_limit():
            self.schedule_ = self._initial_schedule(Y, L, rank)
            net = UnfoldedRPCA(self.n_layers, **self.schedule_, residual_floor=self.residual_floor).to(device)
            self._select_init_threshold(net, Y, L, rank, generator)
            with torch.no_grad():
                factors = net.initialize(Y, rank, generator)
        curve, n_iter = [], 0
        if self.training == "layerwise":
            curve, n_iter = self._fit_layerwise(net, Y, L, factors, generator, start)
        if self.max_iter > 0:
            remaining = None if self.max_time is None else self.max_time - (time.perf_counter() - start)
            if remaining is None or remaining > 0:
                result = self._fit_stage(net, Y, L, factors, generator, self.n_layers, self.max_iter, remaining,
                                         f"{type(self).__name__} end-to-end")
                curve, n_iter = curve + result.loss_curve, n_iter + result.n_iter
        self.loss_curve_, self.n_iter_ = curve, n_iter

        self.module_ = net
        self.steps_ = to_numpy(net.log_step.detach().exp())
        self.thresholds_ = to_numpy(net.log_threshold.detach().exp())
        self.layer_error_ = None
        if L is not None:
            with torch.no_grad(), self._thread_limit():
                outputs = net(Y, factors=factors, return_all=True)
                self.layer_error_ = np.array([float(self._errors(left, right, L).sqrt().mean())
                                              for left, right in outputs])
        # decompose()'s randomised SVD draws from this seed: an int
        # random_state is kept, otherwise one seed is drawn here, once.
        self.inference_seed_ = (int(self.random_state) if isinstance(self.random_state, numbers.Integral)
                                else int(torch.randint(2**62, (1,), generator=generator, device=device)))
        self.train_time_ = time.perf_counter() - start
        return self

    @staticmethod
    def _errors(left, right, L):
        """Squared relative errors of ``left @ right.mT`` against each L, shape (p,)."""
        return (left @ right.mT - L).square().sum(dim=(-2, -1)) / L.square().sum(dim=(-2, -1))

    def _layer_loss(self, Y, L, left, right):
        """Per-problem log loss of one layer's output, shape (p,)."""
        tiny = torch.finfo(Y.dtype).tiny
        if self.loss == "supervised":
            return self._errors(left, right, L).clamp_min(tiny).log()
        misfit = (Y - left @ right.mT).abs().sum(dim=(-2, -1)) / Y.abs().sum(dim=(-2, -1))
        return misfit.clamp_min(tiny).log()

    def _select_init_threshold(self, net, Y, L, rank, generator):
        """Set ``zeta_0`` to the candidate whose initialisation has the lowest loss."""
        best = None
        with torch.no_grad():
            for candidate in sorted(set(_INIT_THRESHOLDS) | {float(self.schedule_["threshold"])}):
                net.log_threshold[0] = math.log(candidate)
                left, right = net.initialize(Y, rank, generator)
                value = float(self._layer_loss(Y, L, left, right).mean())
                if best is None or value < best[0]:
                    best = (value, candidate)
            net.log_threshold[0] = math.log(best[1])

    def _initial_schedule(self, Y, L, rank):
        if isinstance(self.schedule, dict):
            return {key: float(value) for key, value in self.schedule.items()}
        if L is None:
            return dict(_DEFAULT_SCHEDULE)
        tuned = tune_scaledgd(Y[0], L[0], rank, n_iter=self.n_layers, random_state=self.random_state,
                              n_threads=self.n_threads, **_TUNE_GRID)
        return {key: tuned[key] for key in _DEFAULT_SCHEDULE}

    def _batch(self, n_available, generator, device):
        size = min(self.batch_size, n_available)
        return torch.randperm(n_available, generator=generator, device=device)[:size]

    def _fit_stage(self, net, Y, L, factors, generator, depth, n_steps, max_time, desc):
        """Train layers 1..depth on the deep-supervised loss of their outputs."""
        left0, right0 = factors

        def loss_fn():
            idx = self._batch(Y.shape[0], generator, Y.device)
            targets = None if L is None else L[idx]
            outputs = net(Y[idx], factors=(left0[idx], right0[idx]), n_layers=depth, return_all=True)
            return torch.stack([self._layer_loss(Y[idx], targets, left, right).mean()
                                for left, right in outputs]).mean()

        return self._train(
            net, loss_fn, optimizer="adam", lr=self.lr, max_iter=n_steps, max_time=max_time,
            lr_schedule=budget_schedule(_decay, n_steps, max_time), restore_best=False, tol=0.0, desc=desc,
        )

    def _fit_layerwise(self, net, Y, L, factors, generator, start):
        """Stage t trains layers 1..t (LISTA-style progressive training)."""
        curve, n_iter = [], 0
        for depth in range(1, self.n_layers + 1):
            remaining = None if self.max_time is None else self.max_time - (time.perf_counter() - start)
            if remaining is not None and remaining <= 0:
                break
            result = self._fit_stage(net, Y, L, factors, generator, depth, self.steps_per_layer, remaining,
                                     f"{type(self).__name__} layers 1-{depth}/{self.n_layers}")
            curve += result.loss_curve
            n_iter += result.n_iter
        return curve, n_iter

    # ------------------------------------------------------------------ inference
    def decompose(self, Y, rank=None, *, n_layers=None):
        """Split ``Y`` into its low-rank and sparse parts.

        Parameters
        ----------
        Y : array-like or torch.Tensor of shape (m, n) or (p, m, n)
            Any size (the network's parameters do not depend on it).  A
            CUDA tensor is processed on its GPU.
        rank : int or None, default=None
            Rank of ``L``; default the trained `rank`.
        n_layers : int or None, default=None
            Use only the first layers (default all).

        Returns
        -------
        L, S : numpy.ndarray, or torch.Tensor for tensor input
            ``S = soft(Y - L, zeta_K rms(Y))``, the last layer's outlier
            estimate from the final ``L``; same shape and float dtype as ``Y``.
        """
        self._check_fitted(["module_"])
        Yt, single, is_tensor = _check_stack(Y, "Y", self._torch_dtype())
        rank = self.rank if rank is None else rank
        if isinstance(rank, bool) or not isinstance(rank, numbers.Integral) or not 1 <= rank <= min(Yt.shape[-2:]):
            raise ValueError(f"rank must be an integer in [1, min(m, n) = {min(Yt.shape[-2:])}], got {rank!r}")
        n_layers = self.n_layers if n_layers is None else n_layers
        if isinstance(n_layers, bool) or not isinstance(n_layers, numbers.Integral) or not 0 <= n_layers <= self.n_layers:
            raise ValueError(f"n_layers must be an integer in [0, {self.n_layers}], got {n_layers!r}")
        device = Y.device if is_tensor else self.device_
        Yt = Yt.to(device)
        net = self.module_  # its 2 K scalars move to Y's device inside forward
        # The seed fixed in fit: the randomised SVD's test matrices are the
        # same on every call, also for random_state=None and after a reload.
        generator = check_random_state_torch(self.inference_seed_, device)
        # An all-zero matrix decomposes exactly as L = S = 0 (and has no
        # rank-r factorisation for ScaledGD's preconditioner to invert).
        nonzero = Yt.flatten(-2).ne(0).any(-1)
        low_rank, sparse = torch.zeros_like(Yt), torch.zeros_like(Yt)
        if bool(nonzero.any()):
            Ynz = Yt[nonzero]
            with torch.no_grad(), self._thread_limit():
                factors = net.initialize(Ynz, int(rank), generator)
                left, right = net(Ynz, factors=factors, n_layers=n_layers)
                part = left @ right.mT
                low_rank[nonzero] = part
                sparse[nonzero] = soft_threshold(Ynz - part, net.outlier_threshold(Ynz, left, right, n_layers))
        if is_tensor:
            out_dtype = Y.dtype if Y.is_floating_point() else Yt.dtype
        else:
            out_dtype = np.float32 if np.asarray(Y).dtype == np.float32 else np.float64
        if single:
            low_rank, sparse = low_rank[0], sparse[0]
        if is_tensor:
            return low_rank.to(out_dtype), sparse.to(out_dtype)
        return to_numpy(low_rank).astype(out_dtype, copy=False), to_numpy(sparse).astype(out_dtype, copy=False)

    def transform(self, Y):
        """The low-rank part of ``Y`` (see :meth:`decompose`)."""
        return self.decompose(Y)[0]
