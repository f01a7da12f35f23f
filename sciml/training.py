"""The one training loop shared by every torch model family.

Unfolded networks, RPCA networks, PINNs and the learned solver configure
:func:`train` instead of writing their own loop.  It runs, inside
:func:`sciml.threads.thread_limit`:

1. a first-order phase (Adam, AdamW, SGD or any ``torch.optim`` optimizer)
   of at most ``max_iter`` steps, with an optional learning-rate schedule
   and gradient clipping;
2. an optional quasi-Newton phase of at most ``lbfgs_iter`` iterations
   (L-BFGS or dense BFGS with a strong-Wolfe line search,
   :class:`sciml.quasi_newton.QuasiNewton`);

under a shared wall-clock budget, with early stopping on relative
improvement, a non-finite / divergence guard, restoration of the best
parameters and a tqdm progress bar.  The loss callable owns the data: a
family samples its own minibatches or collocation points with its own
``torch.Generator``.
"""

import dataclasses
import math
import numbers
import sys
import time
import warnings

__all__ = ["TrainResult", "train", "budget_schedule", "STOP_REASONS"]

#: Values of :attr:`TrainResult.stop_reason`.
STOP_REASONS = ("max_iter", "converged", "max_time", "nonfinite", "diverged")

_FIRST_ORDER = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD"}


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """Outcome of :func:`train`.

    Attributes
    ----------
    loss_curve : list of float
        Loss of every iteration: for a first-order step, at the parameters
        *before* its update; for a quasi-Newton iteration, at the point its
        line search accepted (where the parameters then are).  First-order
        steps come first.  A final non-finite loss that stopped training is
        included.
    n_iter : int
        Number of iterations run, ``len(loss_curve)``.
    best_loss : float
        Smallest finite loss seen (``inf`` if none was finite).
    best_iter : int
        Index into ``loss_curve`` of ``best_loss``; ``n_iter`` when the final
        parameters (evaluated once after the last update, see
        ``restore_best``) were the best; -1 if no loss was finite.
    stop_reason : str
        One of ``"max_iter"`` (all iterations done), ``"converged"`` (early
        stopping, or L-BFGS found no descent direction), ``"max_time"``
        (wall-clock budget spent), ``"nonfinite"`` (NaN/inf loss),
        ``"diverged"`` (loss exceeded ``divergence`` times the best).
    elapsed : float
        Wall-clock seconds spent in :func:`train`.
    n_lbfgs_iter : int
        How many of the ``n_iter`` iterations were quasi-Newton (L-BFGS or
        BFGS) iterations (they are the last ones of ``loss_curve``).
    """

    loss_curve: list
    n_iter: int
    best_loss: float
    best_iter: int
    stop_reason: str
    elapsed: float
    n_lbfgs_iter: int = 0


class _Stop(Exception):
    """Raised inside a closure to abandon the current step (bad loss)."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


def train(
    module,
    loss_fn,
    *,
    optimizer="adam",
    lr=1e-3,
    max_iter=1000,
    lbfgs_iter=0,
    lbfgs_loss_fn=None,
    lbfgs_kwargs=None,
    quasi_newton="lbfgs",
    max_time=None,
    tol=1e-4,
    patience=None,
    restore_best=True,
    lr_schedule=None,
    grad_clip=None,
    divergence=None,
    n_threads=1,
    verbose=False,
    desc="train",
):
    """Train the parameters of ``module`` by minimising ``loss_fn()``.

    Parameters
    ----------
    module : torch.nn.Module or iterable of torch.Tensor
        The model; its parameters with ``requires_grad=True`` are trained and
        its ``state_dict`` (parameters and buffers) is what "best weights"
        snapshots and restores.  A plain iterable of leaf tensors is accepted
        too.  The module's train/eval mode is left as the caller set it.
    loss_fn : callable
        Called with **no arguments**; returns the loss as a scalar (one
        element) tensor attached to the graph of the trainable parameters.
        Called once per first-order step and one or more times per L-BFGS
        iteration (line search).  It samples its own data (minibatches,
        collocation points) from the family's ``torch.Generator``; a family
        that needs the step index counts calls itself.
    optimizer : {"adam", "adamw", "sgd"}, callable or torch.optim.Optimizer, \
default="adam"
        First-order optimizer.  A callable is a factory called as
        ``optimizer(params, lr=lr)`` (e.g. ``torch.optim.RMSprop`` or
        ``functools.partial(torch.optim.Adam, betas=(0.9, 0.99))``).  An
        already built optimizer is used as is (``lr`` is then ignored), which
        lets a caller keep optimizer state across calls.
    lr : float, default=1e-3
        Learning rate of the first-order phase.
    max_iter : int, default=1000
        Maximum number of first-order steps (0 skips the phase).
    lbfgs_iter : int, default=0
        Maximum number of L-BFGS iterations after the first-order phase
        (0 = no L-BFGS phase).  The phase starts from the best parameters
        so far when ``restore_best``.
    lbfgs_loss_fn : callable or None, default=None
        Loss for the L-BFGS phase, e.g. a full-batch loss; L-BFGS needs a
        deterministic objective.  ``None`` uses ``loss_fn``.
    lbfgs_kwargs : dict or None, default=None
        Arguments of :class:`sciml.quasi_newton.QuasiNewton`:
        ``history_size`` (default 50), ``tolerance_grad`` (1e-9),
        ``tolerance_change`` (1e-12), ``max_ls`` (25 line-search evaluations
        per iteration).  Each of our iterations is one quasi-Newton
        iteration, so budget, guards and progress act per iteration; the
        loss and gradient of the accepted point are reused by the next one,
        so an iteration costs only its line-search evaluations.
    quasi_newton : {"lbfgs", "bfgs"} or QuasiNewton, default="lbfgs"
        Limited-memory or dense BFGS.  An instance (built on the same
        parameters) is used as is and keeps its curvature information
        across calls, e.g. between rounds of collocation resampling
        (``lbfgs_kwargs`` are then ignored).  Dense BFGS stores an ``n x n``
        matrix (``n`` trainable parameters) and converges in several times
        fewer iterations on small, stiff problems such as PINNs.
    max_time : float or None, default=None
        Wall-clock budget in seconds for both phases; checked after each
        iteration, so the last iteration may overrun it.
    tol : float, default=1e-4
        Relative improvement that counts as progress for early stopping: an
        iteration improves if ``loss < best - tol * |best|``.
    patience : int or None, default=None
        Stop a phase (``stop_reason="converged"``) after this many
        consecutive iterations without improvement.  ``None`` disables early
        stopping.  The counter restarts at the L-BFGS phase.
    restore_best : bool, default=True
        Load the parameters with the smallest loss at the end (and before
        the L-BFGS phase).  The parameters after the last update have no
        entry in the curve, so the loss callable is called once more at the
        end (not recorded in ``loss_curve``) to compare them with the best.
        With noisy minibatch losses the "best" loss is noisy too; families
        may prefer ``False`` there.  Regardless of this
        flag, a non-finite or diverged loss restores the best parameters.
    lr_schedule : None, "cosine" or callable, default=None
        Learning-rate schedule of the first-order phase, stepped once per
        step: ``"cosine"`` is ``CosineAnnealingLR(T_max=max_iter)``; a
        callable is called as ``lr_schedule(optimizer)`` and returns a
        scheduler (``ReduceLROnPlateau`` is stepped with the loss).
    grad_clip : float or None, default=None
        Clip the global gradient norm to this value in the first-order phase.
    divergence : float or None, default=None
        Stop with ``stop_reason="diverged"`` when a loss exceeds
        ``divergence * best_loss`` (a blow-up before it becomes NaN).
    n_threads : int or None, default=1
        Thread policy: the loop runs inside
        ``sciml.threads.thread_limit(n_threads)``.
    verbose : bool, default=False
        Show a tqdm progress bar (with the current loss) on stderr.
    desc : str, default="train"
        Label of the progress bar and of warnings.

    Returns
    -------
    result : TrainResult
        Loss curve, iteration counts, best loss and why training stopped.
        The module's parameters are updated in place.

    Warns
    -----
    RuntimeWarning
        When a non-finite loss or a divergence stops training; the best
        parameters seen are restored, never NaN weights.

    Notes
    -----
    Every iteration reads the loss back as a Python float (for the curve and
    the guards), which synchronises a CUDA device once per step.
    """
    import torch
    from tqdm import tqdm

    from .threads import thread_limit

    _check_int(max_iter, "max_iter")
    _check_int(lbfgs_iter, "lbfgs_iter")
    if patience is not None:
        _check_int(patience, "patience", minimum=1)
    if not (isinstance(tol, numbers.Real) and tol >= 0):
        raise ValueError(f"tol must be a non-negative float, got {tol!r}.")
    if max_time is not None and not (
        isinstance(max_time, numbers.Real) and max_time > 0
    ):
        raise ValueError(f"max_time must be a positive number or None, got {max_time!r}.")
    if divergence is not None and not (
        isinstance(divergence, numbers.Real) and divergence > 1
    ):
        raise ValueError(f"divergence must be a number > 1 or None, got {divergence!r}.")
    if grad_clip is not None and not (
        isinstance(grad_clip, numbers.Real) and not isinstance(grad_clip, bool) and 0 < grad_clip < math.inf
    ):
        # 0 freezes the weights and a negative norm flips the gradient, silently.
        raise ValueError(f"grad_clip must be a positive number or None, got {grad_clip!r}.")
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}.")
    from .quasi_newton import QuasiNewton

    if not (isinstance(quasi_newton, QuasiNewton) or quasi_newton in ("lbfgs", "bfgs")):
        raise ValueError(
            f"quasi_newton must be 'lbfgs', 'bfgs' or a QuasiNewton instance, got {quasi_newton!r}."
        )
    qn_kwargs = dict(lbfgs_kwargs or {})
    unknown = set(qn_kwargs) - {"history_size", "tolerance_grad", "tolerance_change", "max_ls"}
    if unknown:
        raise ValueError(
            f"Unknown lbfgs_kwargs {sorted(unknown)}; use history_size, tolerance_grad, "
            "tolerance_change, max_ls."
        )

    if isinstance(module, torch.nn.Module):
        params = [p for p in module.parameters() if p.requires_grad]

        def snapshot():
            return {k: v.detach().clone() for k, v in module.state_dict().items()}

        def load(state):
            module.load_state_dict(state)

    else:
        if isinstance(module, torch.Tensor):
            # list(tensor) would split it into row views that never get a gradient.
            raise TypeError("module is a tensor; pass a list of tensors ([w]) or a torch.nn.Module.")
        params = list(module)
        if not all(isinstance(p, torch.Tensor) for p in params):
            raise TypeError("module must be a torch.nn.Module or an iterable of tensors.")
        params = [p for p in params if p.requires_grad]
        if not all(p.is_leaf for p in params):
            raise ValueError("module's tensors must be leaf tensors (created with requires_grad=True, "
                             "not computed from other tensors): an optimizer cannot update the others.")

        def snapshot():
            return [p.detach().clone() for p in params]

        @torch.no_grad()
        def load(state):
            for p, s in zip(params, state):
                p.copy_(s)

    if not params:
        raise ValueError("module has no trainable parameters (requires_grad=True).")

    curve = []
    # `best` is shared with the closures; the initial weights are the
    # fallback if no loss is ever finite.
    best = {"loss": math.inf, "iter": -1, "state": snapshot()}
    t0 = time.perf_counter()
    n_lbfgs = 0

    def check_loss(loss):
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise TypeError(
                f"loss_fn must return a scalar torch.Tensor, got "
                f"{type(loss).__name__}"
                + (f" of shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor) else "")
                + "."
            )
        if not loss.requires_grad:
            raise ValueError(
                "The loss returned by loss_fn does not require grad: it does not "
                "depend on the trainable parameters (or was computed under no_grad)."
            )

    def record(loss):
        """Validate and record one iteration's loss; snapshot if best."""
        check_loss(loss)
        return record_value(float(loss.detach()))

    def record_value(value):
        curve.append(value)
        it = len(curve) - 1
        if not math.isfinite(value):
            raise _Stop("nonfinite")
        if divergence is not None and best["loss"] > 0 and value > divergence * best["loss"]:
            raise _Stop("diverged")
        if value < best["loss"]:
            best.update(loss=value, iter=it, state=snapshot())
        return value

    bar = tqdm(
        total=max_iter + lbfgs_iter,
        desc=desc,
        disable=not verbose,
        file=sys.stderr,
        dynamic_ncols=True,
        leave=True,
    )

    def tick(value):
        if verbose:
            bar.set_postfix(loss=f"{value:.4e}", refresh=False)
        bar.update(1)

    def out_of_time():
        return max_time is not None and time.perf_counter() - t0 >= max_time

    def run_phases():
        """Both phases; returns the stop reason or raises _Stop."""
        nonlocal n_lbfgs
        stop_reason = "max_iter"
        # ---- first-order phase -----------------------------------------
        if max_iter > 0:
            opt = _make_optimizer(optimizer, params, lr, torch)
            sched = _make_schedule(lr_schedule, opt, max_iter, torch)
            plateau = isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau)
            ref, stale = math.inf, 0
            for _ in range(max_iter):
                opt.zero_grad(set_to_none=True)
                with torch.enable_grad():
                    loss = loss_fn()
                    value = record(loss)
                    loss.backward()
                if grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(params, grad_clip)
                opt.step()
                if sched is not None:
                    sched.step(value) if plateau else sched.step()
                tick(value)
                if out_of_time():
                    raise _Stop("max_time")
                ref, stale = _progress(value, ref, stale, tol)
                if patience is not None and stale >= patience:
                    stop_reason = "converged"
                    break

        # ---- quasi-Newton phase -----------------------------------------
        if lbfgs_iter == 0:
            return stop_reason
        if restore_best and best["iter"] >= 0:
            load(best["state"])
        if isinstance(quasi_newton, QuasiNewton):
            qn = quasi_newton  # keeps its curvature from earlier calls
            qn.reset_objective()
        else:
            qn = QuasiNewton(params, method=quasi_newton, **qn_kwargs)
        stop_reason = "max_iter"
        ref, stale = math.inf, 0

        def closure():
            for p in params:
                p.grad = None
            loss = lbfgs_fn()
            check_loss(loss)
            loss.backward()
            return loss

        for _ in range(lbfgs_iter):
            value, converged = qn.step(closure)
            n_lbfgs += 1
            # The loss of the accepted point, where the parameters now are.
            record_value(value)
            tick(value)
            if out_of_time():
                raise _Stop("max_time")
            if converged:
                return "converged"
            ref, stale = _progress(value, ref, stale, tol)
            if patience is not None and stale >= patience:
                return "converged"
        return stop_reason

    lbfgs_fn = loss_fn if lbfgs_loss_fn is None else lbfgs_loss_fn
    with thread_limit(n_threads):
        try:
            stop_reason = run_phases()
        except _Stop as stop:
            stop_reason = stop.reason
        finally:
            bar.close()
        if restore_best and curve and not n_lbfgs and stop_reason in ("max_iter", "converged", "max_time"):
            # The parameters after the last first-order update were never
            # evaluated (a quasi-Newton iteration records its new point);
            # evaluate them once so that a last good step is not thrown away
            # (grad enabled: PINN losses differentiate w.r.t. their inputs).
            with torch.enable_grad():
                final = float(loss_fn().detach())
            if math.isfinite(final) and final < best["loss"]:
                best.update(loss=final, iter=len(curve), state=None)

    # A finite last loss with a non-finite gradient leaves NaN weights that no
    # loss evaluation saw (restore_best=False skips the final one).
    nan_weights = stop_reason not in ("nonfinite", "diverged") and not all(
        bool(torch.isfinite(p).all()) for p in params)
    if nan_weights:
        stop_reason = "nonfinite"
    if stop_reason in ("nonfinite", "diverged"):
        what = "non-finite" if stop_reason == "nonfinite" else "diverging"
        if best["iter"] >= 0:
            kept = f"restoring the parameters of iteration {best['iter']} (loss {best['loss']:.6g})"
        else:
            kept = "no finite loss was seen; restoring the initial parameters"
        event = (f"non-finite parameters after the update of iteration {len(curve) - 1}" if nan_weights
                 else f"{what} loss {curve[-1]:.6g} at iteration {len(curve) - 1}")
        warnings.warn(
            f"{desc}: {event}; stopping training and {kept}.",
            RuntimeWarning,
            stacklevel=2,
        )
        load(best["state"])
    elif restore_best and best["state"] is not None and best["iter"] >= 0:
        load(best["state"])

    return TrainResult(
        loss_curve=curve,
        n_iter=len(curve),
        best_loss=best["loss"],
        best_iter=best["iter"],
        stop_reason=stop_reason,
        elapsed=time.perf_counter() - t0,
        n_lbfgs_iter=n_lbfgs,
    )


def _check_int(value, name, minimum=0):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}.")


def _progress(value, ref, stale, tol):
    """Early-stopping bookkeeping: (new reference, iterations without progress)."""
    if value < ref - tol * abs(ref) or not math.isfinite(ref):
        return value, 0
    return ref, stale + 1


def _make_optimizer(optimizer, params, lr, torch):
    if isinstance(optimizer, torch.optim.Optimizer):
        return optimizer
    if isinstance(optimizer, str):
        name = _FIRST_ORDER.get(optimizer.lower())
        if name is None:
            raise ValueError(
                f"Unknown optimizer {optimizer!r}; use one of {sorted(_FIRST_ORDER)}, "
                "a factory called as factory(params, lr=lr), or a torch.optim.Optimizer."
            )
        return getattr(torch.optim, name)(params, lr=lr)
    if callable(optimizer):
        opt = optimizer(params, lr=lr)
        if not isinstance(opt, torch.optim.Optimizer):
            raise TypeError(
                f"The optimizer factory returned {type(opt).__name__}, "
                "not a torch.optim.Optimizer."
            )
        return opt
    raise TypeError(
        f"optimizer must be a string, a factory or a torch.optim.Optimizer, "
        f"got {type(optimizer).__name__}."
    )


def budget_schedule(shape, max_iter, max_time=None):
    """An ``lr_schedule`` for :func:`train` that follows the step or the time budget, whichever ends first.

    The learning rate is ``lr * shape(progress)`` with ``progress =
    min(1, max(step / max_iter, elapsed / max_time))``, the clock starting
    when the loop builds the scheduler.  With a time budget the schedule,
    like the number of steps, depends on the machine's speed.

    Parameters
    ----------
    shape : callable
        Maps progress in ``[0, 1]`` to the learning-rate factor.
    max_iter : int
        Steps of the run.
    max_time : float or None, default=None
        Seconds of the run.

    Returns
    -------
    callable
        ``factory(optimizer) -> torch.optim.lr_scheduler.LambdaLR``.
    """
    import torch

    _check_int(max_iter, "max_iter")
    if max_time is not None and not (isinstance(max_time, numbers.Real) and max_time > 0):
        raise ValueError(f"max_time must be a positive number or None, got {max_time!r}.")

    def factory(optimizer):
        start = time.perf_counter()

        def factor(step):
            progress = step / max(max_iter, 1)
            if max_time is not None:
                progress = max(progress, (time.perf_counter() - start) / max_time)
            return shape(min(progress, 1.0))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

    return factory


def _make_schedule(lr_schedule, opt, max_iter, torch):
    if lr_schedule is None:
        return None
    if isinstance(lr_schedule, str):
        if lr_schedule != "cosine":
            raise ValueError(
                f"Unknown lr_schedule {lr_schedule!r}; use None, 'cosine' or a callable."
            )
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max_iter)
    if callable(lr_schedule):
        return lr_schedule(opt)
    raise TypeError(
        f"lr_schedule must be None, 'cosine' or a callable, "
        f"got {type(lr_schedule).__name__}."
    )
