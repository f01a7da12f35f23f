"""DeepXDE anchors for ``python -m benchmarks pinns``.

Each function builds and trains DeepXDE's own example model for one problem
(the forward Burgers example, the Lorenz inverse example, the
diffusion-reaction inverse example with a hidden field ``k(x)``) on the data,
seed and thread count it is given, and returns plain numpy results.

* DeepXDE is imported lazily, on the first call, never at import of this
  module; the backend is pinned to PyTorch (``DDE_BACKEND=pytorch`` unless
  already set), and an ``ImportError`` is raised if another one got loaded.
  The import also takes one dummy ``torch.optim`` step, so that torch's
  one-off lazy import on the first optimizer step (about 2 s) is not timed.
* Silent: what DeepXDE prints at import, while building the problem, at
  ``compile`` and during ``train`` is swallowed (Python-level stdout and
  stderr are redirected).
* Only training is timed (``model.compile`` + ``model.train``).  Checkpoints
  ``(elapsed_seconds, value)`` are taken by a callback every ``period``
  iterations, and the time spent inside the callback is excluded from both
  the checkpoint times and ``time_s``.  DeepXDE's PyTorch L-BFGS calls the
  callbacks once per internal ``optimizer.step``, i.e. every
  ``min(1000, maxiter)`` L-BFGS iterations, so during L-BFGS the checkpoints
  are at that granularity (one per step that crossed a multiple of
  ``period``).
* Global state touched by DeepXDE (its float type, torch's default dtype,
  its L-BFGS options) is restored after each call; thread counts are limited
  only inside :func:`sciml.threads.thread_limit`.
"""

from __future__ import annotations

import contextlib
import io
import os
import time

import numpy as np

from sciml.threads import thread_limit

__all__ = ["burgers", "kfield", "lorenz"]

_BIG = 10**9  # display_every: DeepXDE never reaches it, so never displays
_WARM = False  # whether _warm_up_torch_optim ran in this process


def _import_deepxde():
    """Import DeepXDE with the PyTorch backend, silently.

    Returns
    -------
    dde : module
        The ``deepxde`` module.

    Raises
    ------
    ImportError
        If DeepXDE is not installed, or if the backend it loaded is not
        PyTorch (e.g. ``DDE_BACKEND`` was set to another backend, or DeepXDE
        had already been imported with one).
    """
    os.environ.setdefault("DDE_BACKEND", "pytorch")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        import deepxde as dde
    backend = dde.backend.backend_name
    if backend != "pytorch":
        raise ImportError(
            f"the DeepXDE anchors need DeepXDE's PyTorch backend, but DeepXDE loaded "
            f"{backend!r}; set DDE_BACKEND=pytorch before deepxde is first imported."
        )
    _warm_up_torch_optim()
    return dde


def _warm_up_torch_optim():
    """Take one ``torch.optim.Adam`` step on a dummy parameter, once per process.

    The first optimizer step in a process imports ``torch._dynamo`` (about
    2 s); done here, that one-off import cost stays out of the first timed
    training.
    """
    global _WARM
    if _WARM:
        return
    import torch

    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p], lr=1e-3)
    p.sum().backward()
    with _silent():
        opt.step()
    _WARM = True


@contextlib.contextmanager
def _silent():
    """Swallow Python-level stdout and stderr inside the block."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


@contextlib.contextmanager
def _deepxde_state(dde, seed, dtype):
    """Seed DeepXDE and set its float type; restore the global state on exit.

    Restores torch's default dtype, DeepXDE's float type and its L-BFGS
    options (``set_default_float`` and ``set_LBFGS_options`` change them
    process-wide).
    """
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}.")
    import torch

    lbfgs = dde.optimizers.config.LBFGS_options
    saved = (torch.get_default_dtype(), dde.config.real.precision, dde.config.real.reals, dict(lbfgs))
    try:
        with _silent():
            dde.config.set_default_float(dtype)
            dde.config.set_random_seed(int(seed))
        yield
    finally:
        torch.set_default_dtype(saved[0])
        dde.config.real.precision, dde.config.real.reals = saved[1], saved[2]
        lbfgs.clear()
        lbfgs.update(saved[3])


def _set_lbfgs_maxiter(dde, maxiter):
    """``set_LBFGS_options(maxiter=...)`` plus the per-step split it omits.

    DeepXDE 1.15 computes ``iter_per_step`` / ``fun_per_step`` (the
    ``max_iter`` / ``max_eval`` of each ``torch.optim.LBFGS.step``) only once,
    at import, from the default ``maxiter=15000``; ``set_LBFGS_options`` does
    not update them, so a smaller ``maxiter`` would still run 1000 iterations.
    They are recomputed here with DeepXDE's own formula.
    """
    dde.optimizers.set_LBFGS_options(maxiter=int(maxiter))
    opts = dde.optimizers.config.LBFGS_options
    opts["iter_per_step"] = min(1000, opts["maxiter"])
    opts["fun_per_step"] = opts["maxfun"] * opts["iter_per_step"] // opts["maxiter"]


def _check_period(period):
    period = int(period)
    if period < 1:
        raise ValueError(f"period must be a positive int, got {period}.")
    return period


def _make_recorder(dde, evaluate, period):
    """Build the checkpoint callback (a ``dde.callbacks.Callback`` subclass)."""

    class _Recorder(dde.callbacks.Callback):
        """Record ``(elapsed, evaluate(model))`` every ``period`` iterations.

        ``on_epoch_end`` fires after every Adam step and after every L-BFGS
        ``optimizer.step`` (many iterations); a checkpoint is taken whenever
        ``train_state.iteration`` reached the next multiple of ``period``.
        ``on_train_end`` adds the final state if it was not recorded (the end
        of a phase, or DeepXDE's L-BFGS convergence break, which skips
        ``on_epoch_end``).  Time spent here is accumulated in ``overhead``
        and subtracted from the recorded times.
        """

        def __init__(self):
            super().__init__()
            self.history = []
            self.overhead = 0.0
            self.t0 = None
            self._next = period
            self._dirty = False

        def start(self):
            self.t0 = time.perf_counter()
            self.overhead = 0.0

        def on_epoch_begin(self):
            self._dirty = True

        def on_epoch_end(self):
            if self.model.train_state.iteration >= self._next:
                self._record()

        def on_train_end(self):
            if self._dirty:
                self._record()

        def _record(self):
            t = time.perf_counter()
            elapsed = t - self.t0 - self.overhead
            self.history.append((elapsed, evaluate(self.model)))
            it = self.model.train_state.iteration
            self._next = (it // period + 1) * period
            self._dirty = False
            self.overhead += time.perf_counter() - t

    return _Recorder()


def _train(model, phases, recorder, n_threads):
    """Run ``(compile_args, compile_kwargs, train_kwargs)`` phases, timed and silent.

    Returns the training time in seconds, callback time excluded.
    """
    with thread_limit(n_threads), _silent():
        recorder.start()
        for compile_args, compile_kwargs, train_kwargs in phases:
            model.compile(*compile_args, verbose=0, **compile_kwargs)
            model.train(display_every=_BIG, callbacks=[recorder], verbose=0, **train_kwargs)
        total = time.perf_counter() - recorder.t0
    return total - recorder.overhead


def _constant(value):
    """A one-argument function returning ``value`` (an IC value for DeepXDE)."""
    return lambda x: value


def burgers(
    seed,
    *,
    eval_points,
    reference,
    adam_iter=2000,
    lbfgs_iter=15000,
    n_threads=1,
    period=200,
    dtype="float32",
):
    """DeepXDE's Burgers example: Adam then L-BFGS, relative L2 error.

    ``u_t + u u_x = (0.01/pi) u_xx`` on ``x in [-1, 1]``, ``t in [0, 0.99]``,
    ``u(+-1, t) = 0``, ``u(x, 0) = -sin(pi x)``; 2540 domain, 80 boundary and
    160 initial points; ``FNN([2] + [20]*3 + [1], "tanh", "Glorot normal")``;
    Adam (lr 1e-3) for ``adam_iter`` iterations, then L-BFGS with
    ``maxiter=lbfgs_iter``.

    Parameters
    ----------
    seed : int
        Passed to ``dde.config.set_random_seed``.
    eval_points : array of shape (n, 2)
        Points ``(x, t)`` where the error is measured.
    reference : array of shape (n,) or (n, 1)
        Exact ``u`` at ``eval_points``.
    adam_iter, lbfgs_iter : int
        Iterations of each phase (0 skips the phase).
    n_threads : int, default=1
        Threads during training (:func:`sciml.threads.thread_limit`).
    period : int, default=200
        Checkpoint every ``period`` iterations (L-BFGS: see module notes).
    dtype : {"float32", "float64"}, default="float32"
        DeepXDE's float type.

    Returns
    -------
    result : dict
        ``rel_l2`` (final ``||u - ref|| / ||ref||``), ``time_s`` (training
        seconds) and ``history`` (list of ``(elapsed_s, rel_l2)``).
    """
    dde = _import_deepxde()
    period = _check_period(period)
    eval_points = np.asarray(eval_points, dtype=np.float64).reshape(-1, 2)
    reference = np.asarray(reference, dtype=np.float64).reshape(-1)
    ref_norm = np.linalg.norm(reference)

    def rel_l2(model):
        u = model.predict(eval_points).reshape(-1).astype(np.float64)
        return float(np.linalg.norm(u - reference) / ref_norm)

    nu = 0.01 / np.pi

    def pde(x, y):
        dy_x = dde.grad.jacobian(y, x, i=0, j=0)
        dy_t = dde.grad.jacobian(y, x, i=0, j=1)
        dy_xx = dde.grad.hessian(y, x, i=0, j=0)
        return dy_t + y * dy_x - nu * dy_xx

    with _deepxde_state(dde, seed, dtype):
        with _silent():
            geom = dde.geometry.Interval(-1, 1)
            timedomain = dde.geometry.TimeDomain(0, 0.99)
            geomtime = dde.geometry.GeometryXTime(geom, timedomain)
            bc = dde.icbc.DirichletBC(geomtime, lambda x: 0, lambda _, on_boundary: on_boundary)
            ic = dde.icbc.IC(
                geomtime, lambda x: -np.sin(np.pi * x[:, 0:1]), lambda _, on_initial: on_initial
            )
            data = dde.data.TimePDE(
                geomtime, pde, [bc, ic], num_domain=2540, num_boundary=80, num_initial=160
            )
            net = dde.nn.FNN([2] + [20] * 3 + [1], "tanh", "Glorot normal")
            model = dde.Model(data, net)
        phases = []
        if adam_iter > 0:
            phases.append((("adam",), {"lr": 1e-3}, {"iterations": int(adam_iter)}))
        if lbfgs_iter > 0:
            _set_lbfgs_maxiter(dde, lbfgs_iter)
            phases.append((("L-BFGS",), {}, {}))
        recorder = _make_recorder(dde, rel_l2, period)
        time_s = _train(model, phases, recorder, n_threads)
        with _silent():
            err = rel_l2(model)
    return {"rel_l2": err, "time_s": time_s, "history": recorder.history}


def lorenz(
    t_obs,
    y_obs,
    x0,
    *,
    seed,
    iterations=20000,
    t_end=3.0,
    n_threads=1,
    period=500,
    dtype="float32",
):
    """DeepXDE's Lorenz inverse example: recover ``(C1, C2, C3)`` with Adam.

    ``x' = C1 (y - x)``, ``y' = x (C2 - z) - y``, ``z' = x y - C3 z`` on
    ``t in [0, t_end]``, initial conditions ``x0``, observations of the three
    components at ``t_obs`` (also used as anchors); 400 domain points;
    ``FNN([1] + [40]*3 + [3], "tanh", "Glorot uniform")``; ``C1 = C2 = C3 = 1``
    initially; Adam (lr 1e-3) on the network and the ``C``.

    Parameters
    ----------
    t_obs : array of shape (n,) or (n, 1)
        Observation times.
    y_obs : array of shape (n, 3)
        Observed states.
    x0 : sequence of 3 floats
        Initial state at ``t = 0``.
    seed : int
        Passed to ``dde.config.set_random_seed``.
    iterations : int, default=20000
        Adam iterations.
    t_end : float, default=3.0
        End of the time domain.
    n_threads : int, default=1
        Threads during training.
    period : int, default=500
        Checkpoint every ``period`` iterations.
    dtype : {"float32", "float64"}, default="float32"
        DeepXDE's float type.

    Returns
    -------
    result : dict
        ``params`` (array ``[C1, C2, C3]``), ``time_s`` and ``history`` (list
        of ``(elapsed_s, params)``).
    """
    dde = _import_deepxde()
    period = _check_period(period)
    t_obs = np.asarray(t_obs, dtype=np.float64).reshape(-1, 1)
    y_obs = np.asarray(y_obs, dtype=np.float64).reshape(len(t_obs), 3)
    x0 = [float(v) for v in np.asarray(x0, dtype=np.float64).reshape(3)]

    with _deepxde_state(dde, seed, dtype):
        with _silent():
            C1, C2, C3 = dde.Variable(1.0), dde.Variable(1.0), dde.Variable(1.0)
            variables = [C1, C2, C3]

            def params(model=None):
                return np.array([float(c.detach()) for c in variables])

            def system(x, y):
                y1, y2, y3 = y[:, 0:1], y[:, 1:2], y[:, 2:3]
                dy1_x = dde.grad.jacobian(y, x, i=0)
                dy2_x = dde.grad.jacobian(y, x, i=1)
                dy3_x = dde.grad.jacobian(y, x, i=2)
                return [
                    dy1_x - C1 * (y2 - y1),
                    dy2_x - y1 * (C2 - y3) + y2,
                    dy3_x - y1 * y2 + C3 * y3,
                ]

            def boundary(_, on_initial):
                return on_initial

            geom = dde.geometry.TimeDomain(0, float(t_end))
            # One-argument value functions: DeepXDE counts the arguments, and a
            # second one (even a default) would make it pass auxiliary variables.
            ics = [
                dde.icbc.IC(geom, _constant(v), boundary, component=i)
                for i, v in enumerate(x0)
            ]
            observations = [
                dde.icbc.PointSetBC(t_obs, y_obs[:, i : i + 1], component=i) for i in range(3)
            ]
            data = dde.data.PDE(
                geom,
                system,
                ics + observations,
                num_domain=400,
                num_boundary=2,
                anchors=t_obs,
            )
            net = dde.nn.FNN([1] + [40] * 3 + [3], "tanh", "Glorot uniform")
            model = dde.Model(data, net)
        phases = [
            (
                ("adam",),
                {"lr": 1e-3, "external_trainable_variables": variables},
                {"iterations": int(iterations)},
            )
        ]
        recorder = _make_recorder(dde, params, period)
        time_s = _train(model, phases, recorder, n_threads)
        final = params()
    return {"params": final, "time_s": time_s, "history": recorder.history}


def kfield(
    x_obs,
    u_obs,
    *,
    seed,
    eval_x,
    iterations=20000,
    l=0.01,  # noqa: E741 (the example's name for the diffusion coefficient)
    n_threads=1,
    period=1000,
    dtype="float32",
):
    """DeepXDE's diffusion-reaction inverse example: recover the field ``k(x)``.

    ``l u'' - k(x) u = sin(2 pi x)`` on ``[0, 1]``, ``u(0) = u(1) = 0``, ``u``
    observed at ``x_obs``; the network has outputs ``(u, k)``,
    ``PFNN([1, [20, 20], [20, 20], 2], "tanh", "Glorot uniform")``;
    50 uniform domain points, 8 boundary points; Adam (lr 1e-3).

    Parameters
    ----------
    x_obs : array of shape (n,) or (n, 1)
        Observation points.
    u_obs : array of shape (n,) or (n, 1)
        Observed ``u``.
    seed : int
        Passed to ``dde.config.set_random_seed``.
    eval_x : array of shape (m,) or (m, 1)
        Points where ``k`` and ``u`` are returned.
    iterations : int, default=20000
        Adam iterations.
    l : float, default=0.01
        Diffusion coefficient.
    n_threads : int, default=1
        Threads during training.
    period : int, default=1000
        Checkpoint every ``period`` iterations.
    dtype : {"float32", "float64"}, default="float32"
        DeepXDE's float type.

    Returns
    -------
    result : dict
        ``k`` and ``u`` at ``eval_x`` (1-D arrays), ``time_s`` and ``history``
        (list of ``(elapsed_s, k at eval_x)``).
    """
    dde = _import_deepxde()
    import torch

    period = _check_period(period)
    x_obs = np.asarray(x_obs, dtype=np.float64).reshape(-1, 1)
    u_obs = np.asarray(u_obs, dtype=np.float64).reshape(-1, 1)
    eval_x = np.asarray(eval_x, dtype=np.float64).reshape(-1, 1)
    l = float(l)  # noqa: E741

    def k_at(model):
        return model.predict(eval_x)[:, 1].astype(np.float64)

    def pde(x, y):
        u, k = y[:, 0:1], y[:, 1:2]
        du_xx = dde.grad.hessian(y, x, i=0, j=0, component=0)
        return l * du_xx - k * u - torch.sin(2 * np.pi * x)

    with _deepxde_state(dde, seed, dtype):
        with _silent():
            geom = dde.geometry.Interval(0, 1)
            bc = dde.icbc.DirichletBC(
                geom, lambda x: 0, lambda _, on_boundary: on_boundary, component=0
            )
            observe_u = dde.icbc.PointSetBC(x_obs, u_obs, component=0)
            data = dde.data.PDE(
                geom,
                pde,
                bcs=[bc, observe_u],
                num_domain=50,
                num_boundary=8,
                train_distribution="uniform",
            )
            net = dde.nn.PFNN([1, [20, 20], [20, 20], 2], "tanh", "Glorot uniform")
            model = dde.Model(data, net)
        phases = [(("adam",), {"lr": 1e-3}, {"iterations": int(iterations)})]
        recorder = _make_recorder(dde, k_at, period)
        time_s = _train(model, phases, recorder, n_threads)
        with _silent():
            y = model.predict(eval_x).astype(np.float64)
    return {"k": y[:, 1].copy(), "u": y[:, 0].copy(), "time_s": time_s, "history": recorder.history}
