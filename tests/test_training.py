import functools
import math
import time
import warnings

import numpy as np
import pytest
import torch

from sciml.training import STOP_REASONS, TrainResult, budget_schedule, train


@pytest.fixture
def lstsq_problem():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((200, 6))
    b = A @ rng.standard_normal(6) + 0.1 * rng.standard_normal(200)
    x_ref = np.linalg.lstsq(A, b, rcond=None)[0]
    At, bt = torch.from_numpy(A), torch.from_numpy(b)
    w = torch.zeros(6, dtype=torch.float64, requires_grad=True)
    return w, (lambda: ((At @ w - bt) ** 2).mean()), x_ref


def _check_result(res):
    assert isinstance(res, TrainResult)
    assert len(res.loss_curve) == res.n_iter
    assert res.stop_reason in STOP_REASONS
    finite = [v for v in res.loss_curve if np.isfinite(v)]
    if res.best_iter == res.n_iter:  # the final parameters, evaluated after the loop
        assert res.best_loss < min(finite)
    elif res.best_iter >= 0:
        assert res.best_loss == min(finite)
        assert res.loss_curve[res.best_iter] == res.best_loss


def test_adam_solves_least_squares(lstsq_problem):
    w, loss, x_ref = lstsq_problem
    # constant-lr Adam hovers around the minimum; the cosine decay lands it
    res = train([w], loss, lr=0.05, max_iter=1500, lr_schedule="cosine")
    _check_result(res)
    assert res.stop_reason == "max_iter" and res.n_iter == 1500
    np.testing.assert_allclose(w.detach().numpy(), x_ref, atol=1e-4)
    assert res.loss_curve[-1] < res.loss_curve[0]


def test_lbfgs_phase_solves_least_squares(lstsq_problem):
    w, loss, x_ref = lstsq_problem
    res = train(
        [w], loss, lr=0.05, max_iter=20, lbfgs_iter=100,
        lbfgs_kwargs={"tolerance_grad": 1e-12, "tolerance_change": 1e-15},
    )
    _check_result(res)
    assert 0 < res.n_lbfgs_iter <= 100
    assert res.n_iter == 20 + res.n_lbfgs_iter
    np.testing.assert_allclose(w.detach().numpy(), x_ref, rtol=1e-7, atol=1e-8)


def test_lbfgs_only_on_module():
    rng = np.random.default_rng(1)
    A = torch.from_numpy(rng.standard_normal((50, 3)))
    b = torch.from_numpy(rng.standard_normal((50, 1)))
    lin = torch.nn.Linear(3, 1, dtype=torch.float64)
    torch.nn.init.zeros_(lin.weight)  # deterministic start (construction drew from the global RNG)
    torch.nn.init.zeros_(lin.bias)
    res = train(lin, lambda: ((lin(A) - b) ** 2).mean(), max_iter=0, lbfgs_iter=50)
    _check_result(res)
    X1 = np.hstack([A.numpy(), np.ones((50, 1))])
    ref = np.linalg.lstsq(X1, b.numpy().ravel(), rcond=None)[0]
    got = np.r_[lin.weight.detach().numpy().ravel(), lin.bias.detach().numpy()]
    np.testing.assert_allclose(got, ref, atol=1e-4)  # torch's default L-BFGS tolerances
    assert res.stop_reason == "converged"  # stationary before 50 iterations
    assert res.n_lbfgs_iter == res.n_iter < 50


def test_wall_clock_budget_stops_cleanly():
    w = torch.ones(3, requires_grad=True)

    def slow_loss():
        time.sleep(0.01)
        return (w**2).sum()

    t0 = time.perf_counter()
    res = train([w], slow_loss, lr=1e-2, max_iter=100_000, lbfgs_iter=10, max_time=0.2)
    _check_result(res)
    assert res.stop_reason == "max_time"
    assert 1 <= res.n_iter < 100_000 and res.n_lbfgs_iter == 0
    assert 0.2 <= res.elapsed < 10 and time.perf_counter() - t0 < 10


def test_nonfinite_loss_stops_and_restores_best():
    w = torch.tensor([3.0, -2.0], requires_grad=True)
    seen = []
    k = 7

    def loss_fn():
        seen.append(w.detach().clone())
        loss = ((w - 1.0) ** 2).sum()
        return loss * float("nan") if len(seen) == k + 1 else loss

    with pytest.warns(RuntimeWarning, match="non-finite loss nan at iteration 7"):
        res = train([w], loss_fn, lr=0.1, max_iter=50, restore_best=False)
    _check_result(res)
    assert res.stop_reason == "nonfinite"
    assert res.n_iter == k + 1 and np.isnan(res.loss_curve[-1])
    assert res.best_iter == k - 1  # the loss decreased until the NaN
    assert torch.equal(w.detach(), seen[res.best_iter])  # restored even with restore_best=False
    assert torch.isfinite(w).all()


def test_nonfinite_gradient_blowup_caught_next_step():
    # an inf gradient makes the parameters NaN after the step; the next
    # loss is NaN and the best (finite) parameters come back
    w = torch.tensor([1.0], requires_grad=True)
    calls = []

    def loss_fn():
        calls.append(w.detach().clone())
        scale = torch.tensor(float("inf")) if len(calls) == 3 else torch.tensor(1.0)
        return (w * w.detach() * scale).sum() if len(calls) == 3 else (w**2).sum()

    with pytest.warns(RuntimeWarning):
        res = train([w], loss_fn, optimizer="sgd", lr=0.1, max_iter=10)
    assert res.stop_reason == "nonfinite"
    assert torch.isfinite(w).all()
    assert torch.equal(w.detach(), calls[res.best_iter])


def test_nonfinite_in_lbfgs_phase_and_at_start():
    w = torch.tensor([2.0, 2.0], requires_grad=True)
    n = [0]

    def loss_fn():
        # calls 1-5: Adam, 6: first L-BFGS evaluation, then inf from the
        # line search on
        n[0] += 1
        loss = ((w - 1) ** 2 * torch.tensor([1.0, 100.0])).sum()
        return loss + float("inf") if n[0] > 6 else loss

    # every trial point of the line search is non-finite: it backs off to
    # the start and stops there; no non-finite weights either way
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = train([w], loss_fn, lr=0.01, max_iter=5, lbfgs_iter=20)
    _check_result(res)
    assert res.stop_reason in ("nonfinite", "converged") and res.n_lbfgs_iter < 20
    assert torch.isfinite(w).all()

    w0 = torch.tensor([5.0], requires_grad=True)
    with pytest.warns(RuntimeWarning, match="no finite loss"):
        res = train([w0], lambda: (w0 * float("nan")).sum(), max_iter=5)
    assert res.best_iter == -1 and res.n_iter == 1 and w0.item() == 5.0


def test_divergence_guard():
    w = torch.tensor([1.0], requires_grad=True)
    # SGD with lr > 1 on w**2 multiplies w by (1 - 2 lr) each step: blows up
    with pytest.warns(RuntimeWarning, match="diverging"):
        res = train([w], lambda: (w**2).sum(), optimizer="sgd", lr=1.5, max_iter=100,
                    divergence=1e3)
    assert res.stop_reason == "diverged" and res.n_iter < 100
    assert w.item() == 1.0  # the first iterate was the best


def test_early_stopping_on_plateau():
    w = torch.tensor([0.0], requires_grad=True)
    # decreases for 10 steps, then flat
    n = [0]

    def loss_fn():
        n[0] += 1
        return (w * 0).sum() + max(10.0 - n[0], 0.0)

    res = train([w], loss_fn, max_iter=1000, tol=1e-3, patience=5)
    _check_result(res)
    assert res.stop_reason == "converged"
    assert res.n_iter == 10 + 5
    res = train([w], lambda: (w * 0).sum() + 1.0, max_iter=50)  # patience=None: no stop
    assert res.stop_reason == "max_iter" and res.n_iter == 50


def test_restore_best_restores_argmin_weights():
    w = torch.tensor([0.0, 0.0], requires_grad=True)
    rng = np.random.default_rng(3)
    targets = rng.standard_normal((41, 2)) * 3  # a noisy, non-monotone loss
    targets[40] = 100.0  # the extra evaluation of the final parameters: not the best
    seen = []

    def loss_fn():
        seen.append(w.detach().clone())
        t = torch.from_numpy(targets[len(seen) - 1]).float()
        return ((w - t) ** 2).sum()

    res = train([w], loss_fn, lr=0.3, max_iter=40)
    _check_result(res)
    best = int(np.argmin(res.loss_curve))
    assert 0 < best < 39 and res.best_iter == best
    assert torch.equal(w.detach(), seen[best])

    seen.clear()
    w.data.zero_()
    res = train([w], loss_fn, lr=0.3, max_iter=40, restore_best=False)
    assert len(seen) == 40  # no final evaluation without restore_best
    assert not torch.equal(w.detach(), seen[res.best_iter])


def test_last_update_is_kept_when_it_is_best():
    # 3 gradient steps on a quadratic: each improves, so the parameters after
    # the last one (never in the curve) are the best and are kept
    A = torch.diag(torch.tensor([1.0, 10.0, 100.0], dtype=torch.float64))
    w = torch.ones(3, dtype=torch.float64, requires_grad=True)
    loss = lambda: w @ A @ w
    res = train([w], loss, optimizer="sgd", lr=1e-3, max_iter=3)
    _check_result(res)
    assert res.n_iter == 3 and res.best_iter == 3
    assert float(loss().detach()) == res.best_loss < min(res.loss_curve)


@pytest.mark.parametrize("method", ["lbfgs", "bfgs"])
def test_quasi_newton_records_each_accepted_point(method):
    # A quasi-Newton iteration records the loss where it leaves the
    # parameters, so the curve's last entry is the current loss
    A = torch.diag(torch.tensor([1.0, 10.0, 100.0], dtype=torch.float64))
    w = torch.ones(3, dtype=torch.float64, requires_grad=True)
    loss = lambda: w @ A @ w
    res = train([w], loss, max_iter=0, lbfgs_iter=3, quasi_newton=method)
    _check_result(res)
    assert res.n_iter == 3 and res.best_iter == 2
    assert float(loss().detach()) == res.best_loss == res.loss_curve[-1]
    assert np.all(np.diff(res.loss_curve) < 0)


def test_bfgs_solves_rosenbrock_in_fewer_iterations_than_lbfgs():
    iters = {}
    for method in ("lbfgs", "bfgs"):
        w = torch.tensor([-1.2, 1.0], dtype=torch.float64, requires_grad=True)
        rosen = lambda: (1 - w[0]) ** 2 + 100 * (w[1] - w[0] ** 2) ** 2
        res = train([w], rosen, max_iter=0, lbfgs_iter=500, quasi_newton=method,
                    lbfgs_kwargs={"tolerance_grad": 1e-10})
        np.testing.assert_allclose(w.detach().numpy(), [1.0, 1.0], atol=1e-6)
        assert res.stop_reason == "converged"
        iters[method] = res.n_lbfgs_iter
    assert iters["bfgs"] <= 60 and iters["lbfgs"] <= 60


def test_quasi_newton_argument_errors():
    w = torch.ones(2, dtype=torch.float64, requires_grad=True)
    with pytest.raises(ValueError, match="quasi_newton must be"):
        train([w], lambda: (w**2).sum(), lbfgs_iter=2, quasi_newton="newton")
    with pytest.raises(ValueError, match="Unknown lbfgs_kwargs"):
        train([w], lambda: (w**2).sum(), lbfgs_iter=2, lbfgs_kwargs={"line_search_fn": None})


def test_bad_grad_clip_module_and_quasi_newton_settings_are_refused():
    w = torch.ones(2, dtype=torch.float64, requires_grad=True)
    loss = lambda: (w**2).sum()  # noqa: E731
    for bad in (0, -1.0, math.inf, "a", True):
        with pytest.raises(ValueError, match="grad_clip must be a positive number"):
            train([w], loss, max_iter=2, grad_clip=bad)
    with pytest.raises(TypeError, match=r"pass a list of tensors \(\[w\]\)"):
        train(w, loss, max_iter=2)
    with pytest.raises(ValueError, match="leaf tensors"):
        train([w * 2], loss, max_iter=2)
    for kwargs, match in (({"history_size": 0}, "history_size"), ({"history_size": 2.5}, "history_size"),
                          ({"max_ls": 0}, "max_ls"), ({"tolerance_grad": -1.0}, "tolerance_grad")):
        with pytest.raises((ValueError, TypeError), match=match):
            train([w], loss, max_iter=0, lbfgs_iter=2, lbfgs_kwargs=kwargs)
    with pytest.raises(ValueError, match="max_time must be a positive number"):
        budget_schedule(lambda f: 1.0 - f, 3, max_time=0)


def test_nan_weights_from_a_finite_loss_are_never_returned():
    """The last step's gradient is NaN though its loss is finite; restore_best=False does not
    evaluate the final weights, so the loop checks them itself."""
    w = torch.ones(1, dtype=torch.float64, requires_grad=True)
    calls = [0]

    def loss():
        calls[0] += 1
        value = (w**2).sum()
        if calls[0] == 3:  # sqrt at 0: a NaN gradient under a finite loss
            value = value + torch.sqrt(((w - w.detach()) ** 2).sum())
        return value

    with pytest.warns(RuntimeWarning, match="non-finite parameters after the update of iteration 2"):
        res = train([w], loss, optimizer="sgd", lr=0.1, max_iter=3, restore_best=False)
    assert res.stop_reason == "nonfinite" and bool(torch.isfinite(w).all())
    assert w.item() == pytest.approx(0.8**2)  # the best point seen: after two steps of w -= 0.2 w


def test_optimizers_schedules_and_errors():
    def fresh():
        w = torch.tensor([2.0], requires_grad=True)
        return w, (lambda: ((w - 1) ** 2).sum())

    for opt in ["adam", "ADAMW", "sgd", torch.optim.RMSprop,
                functools.partial(torch.optim.Adam, betas=(0.5, 0.9))]:
        w, loss = fresh()
        res = train([w], loss, optimizer=opt, lr=0.05, max_iter=300)
        assert abs(w.item() - 1) < 0.1, opt

    w, loss = fresh()
    opt = torch.optim.SGD([w], lr=0.1)
    train([w], loss, optimizer=opt, max_iter=100)
    assert abs(w.item() - 1) < 1e-3 and opt.state is not None

    w, loss = fresh()
    plateau = functools.partial(torch.optim.lr_scheduler.ReduceLROnPlateau, patience=2)
    res = train([w], loss, lr=0.5, max_iter=100, lr_schedule=plateau)
    assert res.n_iter == 100

    with pytest.raises(ValueError, match="Unknown optimizer 'lbfgs'"):
        train([w], loss, optimizer="lbfgs")
    with pytest.raises(TypeError, match="not a torch.optim.Optimizer"):
        train([w], loss, optimizer=lambda p, lr: None)
    with pytest.raises(ValueError, match="Unknown lr_schedule"):
        train([w], loss, lr_schedule="step")
    with pytest.raises(ValueError, match="max_iter"):
        train([w], loss, max_iter=-1)
    with pytest.raises(ValueError, match="patience"):
        train([w], loss, patience=0)
    with pytest.raises(ValueError, match="no trainable parameters"):
        train([w.detach()], loss)
    with pytest.raises(TypeError, match="scalar torch.Tensor, got Tensor of shape \\(2,\\)"):
        train([w], lambda: torch.cat([w, w]) ** 2)
    with pytest.raises(TypeError, match="scalar torch.Tensor, got float"):
        train([w], lambda: 1.0)
    with pytest.raises(ValueError, match="does not require grad"):
        train([w], lambda: torch.tensor(1.0))


def test_lbfgs_loss_fn_and_grad_clip():
    w = torch.tensor([5.0], requires_grad=True)
    calls = {"first": 0, "lbfgs": 0}

    def first():
        calls["first"] += 1
        return ((w - 1) ** 2).sum()

    def full():
        calls["lbfgs"] += 1
        return ((w - 1) ** 2).sum()

    res = train([w], first, optimizer="sgd", lr=0.1, max_iter=3, grad_clip=0.5,
                lbfgs_iter=10, lbfgs_loss_fn=full)
    assert calls["first"] == 3 and calls["lbfgs"] >= res.n_lbfgs_iter > 0
    # clipped SGD steps move w by at most lr * 0.5 each
    assert res.loss_curve[2] >= (5 - 2 * 0.05 - 1) ** 2 - 1e-4
    assert abs(w.item() - 1) < 1e-4


def test_thread_policy_inside_loop_and_rng_untouched():
    w = torch.tensor([1.0], requires_grad=True)
    inside = []
    before = torch.get_num_threads()
    torch_rng, np_rng = torch.random.get_rng_state(), np.random.get_state()

    def loss_fn():
        inside.append(torch.get_num_threads())
        return (w**2).sum()

    train([w], loss_fn, max_iter=3, lbfgs_iter=2, n_threads=1)
    assert set(inside) == {1}
    assert torch.get_num_threads() == before
    assert torch.equal(torch.random.get_rng_state(), torch_rng)
    assert all(np.array_equal(a, b) for a, b in zip(np.random.get_state(), np_rng))


def test_progress_bar_only_when_verbose(capsys):
    w = torch.tensor([1.0], requires_grad=True)
    train([w], lambda: (w**2).sum(), max_iter=5, verbose=False)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    train([w], lambda: (w**2).sum(), max_iter=5, verbose=True, desc="mymodel")
    out = capsys.readouterr()
    assert out.out == "" and "mymodel" in out.err and "5/5" in out.err


def test_no_warning_on_clean_run():
    w = torch.tensor([1.0], requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train([w], lambda: (w**2).sum(), max_iter=5, lbfgs_iter=5)


def test_budget_schedule_follows_steps_or_time_whichever_ends_first():
    param = torch.nn.Parameter(torch.zeros(()))
    opt = torch.optim.SGD([param], lr=1.0)
    scheduler = budget_schedule(lambda progress: 1.0 - progress, max_iter=10)(opt)
    for _ in range(4):
        opt.step()
        scheduler.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.6)  # 4 of 10 steps
    opt = torch.optim.SGD([param], lr=1.0)
    scheduler = budget_schedule(lambda progress: 1.0 - progress, max_iter=10, max_time=1e-9)(opt)
    opt.step()
    scheduler.step()
    assert opt.param_groups[0]["lr"] == 0.0  # the time budget is spent: progress clipped to 1


@pytest.mark.parametrize("method", ["lbfgs", "bfgs"])
def test_quasi_newton_backs_off_from_nonfinite_trial_points(method):
    # f = w^4/4 - w (minimum at w = 1) is NaN beyond w = 1.3; the first step
    # from w = 0.5 lands at 1.5, and the line search must back off, not stop
    w = torch.tensor([0.5], dtype=torch.float64, requires_grad=True)

    def loss():
        return (w**4 / 4 - w + 0 * torch.sqrt(1.3 - w)).sum()

    res = train([w], loss, max_iter=0, lbfgs_iter=100, quasi_newton=method,
                lbfgs_kwargs={"tolerance_grad": 1e-12})
    assert res.stop_reason == "converged" and np.all(np.isfinite(res.loss_curve))
    assert float(w.detach()) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("method", ["lbfgs", "bfgs"])
def test_quasi_newton_restarts_from_stale_curvature_instead_of_stopping(method):
    # Curvature that no longer fits the objective (here scaled to 1e-30, as
    # after a large change of a loss weight) gives steps too small to move:
    # that is a restart from steepest descent, not convergence.
    from sciml.quasi_newton import QuasiNewton

    x = torch.tensor([3.0, -2.0, 1.0], dtype=torch.float64, requires_grad=True)
    c = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)

    def closure():
        x.grad = None
        loss = (c * (x - 1) ** 2).sum()
        loss.backward()
        return loss

    qn = QuasiNewton([x], method=method, tolerance_grad=1e-10, tolerance_change=1e-15)
    e = torch.ones(3, dtype=torch.float64)
    if method == "bfgs":
        qn._init_H(e, 1e-30)
    else:
        qn.pairs, qn.gamma = [(e, e, 1.0)], 1e-30
    loss, converged = qn.step(closure)
    assert not converged and loss <= 22.0  # the start's loss; the step may not move, but must not give up
    for _ in range(50):
        loss, converged = qn.step(closure)
        if converged:
            break
    assert converged
    np.testing.assert_allclose(x.detach().numpy(), 1.0, atol=1e-8)
