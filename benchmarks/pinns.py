"""PINNs from sparse noisy data: pinns against DeepXDE, in one run on the same data and threads.

Every fit runs on one torch thread (the toolkit's policy; DeepXDE too, through
the same :func:`sciml.threads.thread_limit`).  Ours run in float64 with
Adam then dense BFGS (:class:`sciml.quasi_newton.QuasiNewton`) under a
wall-clock budget; DeepXDE (1.15, PyTorch backend, float32) runs its own
examples' settings.  Errors are measured against references computed here
(:mod:`pinns.data`), not against either method.

Problems (seeds vary the noise, the initial weights and the collocation points):

* P1 Burgers forward, ``nu = 0.01/pi``: error is the relative L2 over
  DeepXDE's reference grid (256 x 100, t in [0, 0.99]) against the Cole-Hopf
  solution.  Ours: hard initial and boundary conditions, 2-[32]x3-1 tanh,
  2000 collocation points resampled by RAD every 500 iterations, 200 Adam
  steps then BFGS, budget 180 s (quick 45 s).  DeepXDE: its example
  (2540/80/160 points, 2-[20]x3-1, 2000 Adam steps then L-BFGS; quick
  500 + 500).  Time to target: the first round end (every 500 iterations)
  at which our error is below DeepXDE's median final error.
* P2 Lorenz parameters (sigma 10, rho 15, beta 8/3, x0 (-8, 7, 27), t in
  [0, 3]), 25 evenly spaced samples with 5 % noise (of each component's
  std), all three unknown from initial guesses 1.  Ours: soft initial
  condition, 1-[20]x3-3, 200 collocation points resampled by RAD between
  continuation stages and every 2000 iterations, BFGS only, with penalty
  continuation (:class:`pinns.Continuation`): the physics weights grow from
  1e-4 to 10 (data weight 1) stage by stage, so the fit tends to the
  ODE-constrained least-squares fit; budget 60 s (quick 40 s).  A hard
  initial condition (``u = x0 + t/3 N``) stalls here: the fast initial
  transient (``x' = 150`` at t = 0) asks N for values near 90 at t = 0.
  DeepXDE: its example
  (1-[40]x3-3, 400 points, Adam 20000 steps; quick 2000).  The noise floor:
  the maximum-likelihood fit of the ODE itself (shooting with
  ``scipy.optimize.least_squares``) on the same data is reported as
  ``mle`` rows.
* P3 hidden field ``k(x)`` of ``0.01 u'' - k u = sin(2 pi x)``, 15 evenly
  spaced observations of u with 2 % noise (of max|u|): error is the relative
  L2 of k on 201 points of [0, 1].  Ours: ``diffusion_reaction()`` with its
  default curvature penalty on log k (1e-5), 1-[20]x3-1 for u, hard boundary conditions,
  budget 70 s (quick 20 s).  DeepXDE: its example (PFNN with u and k
  sub-networks of two 20-wide layers, 50 + 8 points, Adam 20000 steps, quick 2000).
* P4 Fisher-KPP ``u_t = 0.01 u_xx + f(u)`` with ``f = u (1 - u)`` unknown:
  noisy initial condition at 20 points and 3 snapshots x 10 sensors (1.5 %
  of max|u|, ``--fisher-noise``), zero-flux ends.  Ours only (no other library learns a hidden
  term): ``fisher_kpp()`` with its default curvature penalty on f (1e-4),
  1-[20]x3-1 for u, trained for 150 s (quick 40 s), then the symbolic
  refinement (``refine_iter=300``): each best subset of a cubic library, up
  to one term more than the smallest within 5 % of the network, replaces
  the network with trainable coefficients and is refitted with u; the
  sparsest candidate within 2 of the lowest BIC of the data misfit is
  kept.  The wall time includes it.  f error is the relative L2 of the
  fitted model's f (the formula) on the range of u seen in the data;
  ``recovered`` means the formula has exactly the terms u and u^2 with
  coefficients within 5 % of 1 and -1.  The noise floor: least squares of
  ``a u + b u^2`` with the form given, the initial condition a cubic
  B-spline fitted with it, through the method-of-lines solution, on the
  same data (``least squares`` rows; failure: a or b off by over 5 %).  At
  1.5 % noise this floor itself is near 5 % on some draws, so whether a
  seed passes depends on the draw more than on the fit.

Rows are medians over seeds (``n_seeds``); ``failure_rate`` is the share of
seeds whose final error misses a generous bound (P1 10 %, P2 5 %, P3 30 %,
P4: symbolic form not recovered).

Summary keys: ``burgers_rel_l2`` (our median), ``burgers_time_ratio_vs_deepxde``
(our median time to DeepXDE's median error over DeepXDE's median time),
``lorenz_max_param_err``, ``lorenz_time_s``, ``kfield_rel_err``,
``fisher_f_rel_err``, ``fisher_symbolic_recovered`` (fraction of seeds),
``fisher_noise``, ``fisher_least_squares_f_rel_err``,
``fisher_least_squares_within_5pct``, the DeepXDE counterparts ``deepxde_*``
and ``wall_seconds``.
"""

from __future__ import annotations

import math
import time
import warnings

import numpy as np

from ._harness import emit, machine_info

TABLE_COLUMNS = ["problem", "method", "n_seeds", "error", "error_best", "error_worst", "wall_s",
                 "time_to_target_s", "failure_rate", "note"]


def add_arguments(parser):
    parser.add_argument("--seeds", type=int, default=None, help="seeds of ours (default 5, quick 1)")
    parser.add_argument("--deepxde-seeds", type=int, default=None,
                        help="seeds of DeepXDE (default 3, quick 1)")
    parser.add_argument("--problems", default="P1,P2,P3,P4", help="comma-separated subset of P1,P2,P3,P4")
    parser.add_argument("--no-deepxde", action="store_true", help="skip the DeepXDE anchors")
    parser.add_argument("--fisher-noise", type=float, default=0.015,
                        help="P4 noise, relative to max|u| (default 0.015; the issue's range is 0.01-0.02)")


# --- helpers ----------------------------------------------------------------------
def _median(values):
    """Median that counts a missed target (None or inf) as infinitely late; None if that is the median."""
    values = [math.inf if v is None or math.isnan(v) else v for v in values]
    if not values:
        return None
    m = float(np.median(values))
    return m if math.isfinite(m) else None


def _row(problem, method, errors, walls, targets=None, failures=None, note=""):
    return {
        "problem": problem, "method": method, "n_seeds": len(errors),
        "error": _median(errors), "error_best": float(np.min(errors)), "error_worst": float(np.max(errors)),
        "wall_s": _median(walls),
        "time_to_target_s": None if targets is None else _median(targets),
        "failure_rate": None if failures is None else float(np.mean(failures)),
        "note": note,
        "per_seed_error": [float(e) for e in errors],
        "per_seed_wall_s": [float(w) for w in walls],
        "per_seed_time_to_target_s": None if targets is None else targets,
    }


def _first_below(history, target):
    """Elapsed time of the first history entry with error <= target (None if never)."""
    for elapsed, err in history:
        if err <= target:
            return elapsed
    return None


# --- P1 Burgers -----------------------------------------------------------------------
def burgers_ours(seed, budget, X_eval, u_eval):
    import torch

    from pinns import Box, DirichletBC, InitialCondition, PINNRegressor, burgers

    history = []
    norm = np.linalg.norm(u_eval)
    spent = [0.0]

    def callback(model, info):
        t = time.perf_counter()
        err = float(np.linalg.norm(model.predict(X_eval) - u_eval) / norm)
        history.append((info["elapsed"] - spent[0], err))
        spent[0] += time.perf_counter() - t

    model = PINNRegressor(
        burgers(), domain=Box([-1, 0], [1, 1], names=["x", "t"], time="t"),
        conditions=[InitialCondition(_minus_sin_pi, hard=True), DirichletBC(0.0, hard=True)],
        hidden_layer_sizes=(32, 32, 32), n_collocation=2000, resample_every=500, max_iter=200,
        lbfgs_iter=1_000_000, max_time=budget, random_state=seed, callback=callback,
    )
    t0 = time.perf_counter()
    model.fit()
    wall = time.perf_counter() - t0 - spent[0]
    err = float(np.linalg.norm(model.predict(X_eval) - u_eval) / norm)
    del torch
    return err, wall, history


def _minus_sin_pi(X):
    import torch

    return -torch.sin(math.pi * X[:, :1])


def run_burgers(seeds, dx_seeds, quick, use_deepxde):
    from pinns.data import burgers_grid

    X_eval, u_eval = burgers_grid()
    rows, summary = [], {}
    dx_errors, dx_walls = [], []
    if use_deepxde:
        from . import _deepxde

        for seed in range(dx_seeds):
            res = _deepxde.burgers(seed, eval_points=X_eval, reference=u_eval,
                                   adam_iter=500 if quick else 2000, lbfgs_iter=500 if quick else 15000)
            dx_errors.append(res["rel_l2"])
            dx_walls.append(res["time_s"])
        rows.append(_row("P1 burgers", "deepxde", dx_errors, dx_walls,
                         failures=[not e <= 0.1 for e in dx_errors],
                         note=f"adam {500 if quick else 2000} + L-BFGS, float32"))
    target = _median(dx_errors) if dx_errors else 1.7e-2
    errors, walls, targets = [], [], []
    budget = 45.0 if quick else 180.0
    for seed in range(seeds):
        err, wall, history = burgers_ours(seed, budget, X_eval, u_eval)
        errors.append(err)
        walls.append(wall)
        targets.append(_first_below(history, target))
    rows.append(_row("P1 burgers", "pinns", errors, walls, targets, failures=[not e <= 0.1 for e in errors],
                     note=f"budget {budget:.0f} s, float64, BFGS; target {target:.3g}"))
    summary["burgers_rel_l2"] = _median(errors)
    if dx_walls:
        t_ours = _median(targets)
        summary["burgers_time_ratio_vs_deepxde"] = None if t_ours is None else t_ours / _median(dx_walls)
        summary["deepxde_burgers_rel_l2"] = _median(dx_errors)
        summary["deepxde_burgers_time_s"] = _median(dx_walls)
    return rows, summary


# --- P2 Lorenz ----------------------------------------------------------------------------
LORENZ_TRUE = {"sigma": 10.0, "rho": 15.0, "beta": 8.0 / 3.0}
LORENZ_X0 = (-8.0, 7.0, 27.0)


def _param_err(values):
    return max(abs(values[k] - v) / v for k, v in LORENZ_TRUE.items())


def lorenz_ours(seed, budget, t_obs, y_obs):
    from pinns import Box, Continuation, InitialCondition, PINNRegressor, lorenz

    history = []

    def callback(model, info):
        history.append((info["elapsed"], _param_err(
            {k: float(v.detach()) for k, v in model.module_.unknown_values().items()})))

    model = PINNRegressor(
        lorenz(), domain=Box([0], [3], names=["t"], time="t"),
        conditions=[InitialCondition(list(LORENZ_X0))],
        unknowns={"sigma": 1.0, "rho": 1.0, "beta": 1.0}, hidden_layer_sizes=(20, 20, 20),
        n_collocation=200, resample_every=2000, loss_weights={"data": 1.0},
        continuation=Continuation(start=1e-4, stop=10.0), max_iter=0, lbfgs_iter=1_000_000,
        max_time=budget, random_state=seed, callback=callback,
    )
    t0 = time.perf_counter()
    model.fit(t_obs, y_obs)
    return _param_err(model.params_), time.perf_counter() - t0, history


def lorenz_mle(t_obs, y_obs):
    """Maximum-likelihood fit of the ODE itself (the noise floor of the problem)."""
    from scipy.optimize import least_squares

    from pinns.data import lorenz_solution

    t = t_obs.ravel()
    scale = y_obs.std(0)

    def residuals(p):
        return ((lorenz_solution(t, *p, x0=LORENZ_X0) - y_obs) / scale).ravel()

    start = np.array([LORENZ_TRUE[k] for k in ("sigma", "rho", "beta")]) * 1.1
    fit = least_squares(residuals, start, method="lm")
    return _param_err(dict(zip(("sigma", "rho", "beta"), fit.x)))


def run_lorenz(seeds, dx_seeds, quick, use_deepxde):
    from pinns.data import lorenz_observations

    rows, summary = [], {}
    data = {s: lorenz_observations(25, 0.05, random_state=s, **LORENZ_TRUE, x0=LORENZ_X0)
            for s in range(max(seeds, dx_seeds))}
    if use_deepxde:
        from . import _deepxde

        errors, walls = [], []
        iters = 2000 if quick else 20000
        for seed in range(dx_seeds):
            t_obs, y_obs = data[seed]
            res = _deepxde.lorenz(t_obs, y_obs, LORENZ_X0, seed=seed, iterations=iters)
            errors.append(_param_err(dict(zip(("sigma", "rho", "beta"), res["params"]))))
            walls.append(res["time_s"])
        rows.append(_row("P2 lorenz", "deepxde", errors, walls, failures=[not e <= 0.05 for e in errors],
                         note=f"adam {iters}, float32"))
        summary["deepxde_lorenz_max_param_err"] = _median(errors)
        summary["deepxde_lorenz_time_s"] = _median(walls)
    errors, walls, targets, floor = [], [], [], []
    budget = 40.0 if quick else 60.0
    for seed in range(seeds):
        t_obs, y_obs = data[seed]
        err, wall, history = lorenz_ours(seed, budget, t_obs, y_obs)
        errors.append(err)
        walls.append(wall)
        targets.append(_first_below(history, 0.005))
        floor.append(lorenz_mle(t_obs, y_obs))
    rows.append(_row("P2 lorenz", "pinns", errors, walls, targets, failures=[not e <= 0.05 for e in errors],
                     note=f"budget {budget:.0f} s; target 0.5 %"))
    rows.append(_row("P2 lorenz", "mle (ODE shooting)", floor, [0.0] * len(floor),
                     note="noise floor of the data"))
    summary["lorenz_max_param_err"] = _median(errors)
    summary["lorenz_time_s"] = _median(walls)
    summary["lorenz_mle_max_param_err"] = _median(floor)
    return rows, summary


# --- P3 hidden field k(x) -------------------------------------------------------------------
def kfield_ours(seed, budget, x_obs, u_obs, x_eval, k_eval):
    from pinns import Box, DirichletBC, HiddenTermPINN, diffusion_reaction

    model = HiddenTermPINN(
        diffusion_reaction(l=0.01), domain=Box([0], [1], names=["x"]), conditions=[DirichletBC(0.0, hard=True)],
        hidden_layer_sizes=(20, 20, 20), n_collocation=200, resample_every=500, max_iter=500,
        lbfgs_iter=1_000_000, max_time=budget, random_state=seed,
    )
    t0 = time.perf_counter()
    model.fit(x_obs, u_obs)
    wall = time.perf_counter() - t0
    k = model.hidden_term("k", x_eval)[:, 0]
    return float(np.linalg.norm(k - k_eval) / np.linalg.norm(k_eval)), wall


def run_kfield(seeds, dx_seeds, quick, use_deepxde):
    from pinns.data import kfield_observations, kfield_true

    x_eval = np.linspace(0, 1, 201)[:, None]
    k_eval = kfield_true(x_eval[:, 0])
    rows, summary = [], {}
    data = {s: kfield_observations(15, 0.02, random_state=s) for s in range(max(seeds, dx_seeds))}
    if use_deepxde:
        from . import _deepxde

        errors, walls = [], []
        iters = 2000 if quick else 20000
        for seed in range(dx_seeds):
            x_obs, u_obs = data[seed]
            res = _deepxde.kfield(x_obs, u_obs[:, None], seed=seed, eval_x=x_eval, iterations=iters)
            errors.append(float(np.linalg.norm(res["k"] - k_eval) / np.linalg.norm(k_eval)))
            walls.append(res["time_s"])
        rows.append(_row("P3 k(x)", "deepxde", errors, walls, failures=[not e <= 0.3 for e in errors],
                         note=f"adam {iters}, float32"))
        summary["deepxde_kfield_rel_err"] = _median(errors)
    errors, walls = [], []
    budget = 20.0 if quick else 70.0
    for seed in range(seeds):
        x_obs, u_obs = data[seed]
        err, wall = kfield_ours(seed, budget, x_obs, u_obs, x_eval, k_eval)
        errors.append(err)
        walls.append(wall)
    rows.append(_row("P3 k(x)", "pinns", errors, walls, failures=[not e <= 0.3 for e in errors],
                     note=f"budget {budget:.0f} s, curvature penalty 1e-5"))
    summary["kfield_rel_err"] = _median(errors)
    summary["kfield_time_s"] = _median(walls)
    return rows, summary


# --- P4 Fisher-KPP hidden reaction ------------------------------------------------------------
FISHER_D = 0.01  # the known diffusion coefficient, in the data, our equation and the least-squares floor


def _coefficients_within(a, b, r=1.0, rtol=0.05):
    """Whether ``a u + b u^2`` has both coefficients within ``rtol`` of ``r u - r u^2``."""
    return abs(a - r) <= rtol * r and abs(b + r) <= rtol * r


def _recovered(symbolic, r=1.0, rtol=0.05):
    terms = [t for t, c in zip(symbolic["terms"], symbolic["coef"][0]) if c != 0]
    if sorted(terms) != ["u", "u^2"]:
        return False
    coef = dict(zip(symbolic["terms"], symbolic["coef"][0]))
    return _coefficients_within(coef["u"], coef["u^2"], r, rtol)


def fisher_ours(seed, budget, X, y):
    from pinns import Box, HiddenTermPINN, NeumannBC, fisher_kpp

    model = HiddenTermPINN(
        fisher_kpp(D=FISHER_D), domain=Box([0, 0], [1, 4], names=["x", "t"], time="t"),
        conditions=[NeumannBC(0.0, n_points=100)], hidden_layer_sizes=(20, 20, 20), n_collocation=1000,
        resample_every=500, max_iter=500, lbfgs_iter=1_000_000, max_time=budget, random_state=seed,
        refine_iter=300,
    )
    t0 = time.perf_counter()
    model.fit(X, y)
    wall = time.perf_counter() - t0
    err = _fisher_f_err(lambda u: model.hidden_term("f", u[:, None])[:, 0], y)
    sym = model.symbolic_["f"]
    return err, wall, _recovered(sym), sym["expression"]


def _fisher_f_err(f, y):
    """Relative L2 error of ``f(u)`` against ``u (1 - u)`` on the range of u seen in the data."""
    u = np.linspace(max(y.min(), 0.0), y.max(), 200)
    f_true = u * (1 - u)
    return float(np.linalg.norm(f(u) - f_true) / np.linalg.norm(f_true))


def fisher_least_squares(X, y, n_basis=12):
    """ODE-constrained least squares of ``f = a u + b u^2`` on the same data (the noise floor of the problem).

    The form of f is given, not discovered; ``a``, ``b`` and the initial
    condition (a cubic B-spline with ``n_basis`` coefficients, observed at
    ``t = 0`` like every other value) are fitted together to all
    observations through the method-of-lines solution
    (``pinns.data.fisher_kpp_solution``, 201 cells).  Returns ``(a, b)``.
    """
    from scipy.interpolate import BSpline
    from scipy.optimize import least_squares

    from pinns.data import fisher_kpp_solution

    knots = np.concatenate([[0.0] * 3, np.linspace(0.0, 1.0, n_basis - 2), [1.0] * 3])
    initial = X[:, 1] == 0
    B = BSpline.design_matrix(X[initial, 0], knots, 3).toarray()
    coef0 = np.linalg.lstsq(B, y[initial], rcond=None)[0]

    def residuals(p):
        a, b, coef = p[0], p[1], p[2:]
        # a u + b u^2 = r u (1 - u / K) with r = a, K = -a / b
        u = fisher_kpp_solution(X[~initial, 0], X[~initial, 1], D=FISHER_D, r=a, K=-a / b,
                                u0=BSpline(knots, coef, 3), nx=201)
        return np.concatenate([B @ coef - y[initial], u - y[~initial]])

    fit = least_squares(residuals, np.concatenate([[0.9, -0.9], coef0]), x_scale="jac")
    return float(fit.x[0]), float(fit.x[1])


def run_fisher(seeds, quick, noise=0.015):
    from pinns.data import fisher_observations

    errors, walls, recovered, exprs = [], [], [], []
    floor, floor_recovered, floor_coef = [], [], []
    budget = 40.0 if quick else 150.0  # of the 3 minutes per fit, the rest is for the refinement
    for seed in range(seeds):
        X, y = fisher_observations(noise, random_state=seed, D=FISHER_D)
        err, wall, ok, expr = fisher_ours(seed, budget, X, y)
        errors.append(err)
        walls.append(wall)
        recovered.append(ok)
        exprs.append(expr)
        a, b = fisher_least_squares(X, y)
        floor.append(_fisher_f_err(lambda u: a * u + b * u**2, y))
        floor_recovered.append(_coefficients_within(a, b))
        floor_coef.append(f"{a:.4g} u {b:+.4g} u^2")
    rows = [_row("P4 fisher f(u)", "pinns", errors, walls, failures=[not ok for ok in recovered],
                 note=f"noise {noise:.1%}; budget {budget:.0f} s + refinement; seed 0: f = {exprs[0]}"),
            _row("P4 fisher f(u)", "least squares (ODE, form given)", floor, [0.0] * len(floor),
                 failures=[not ok for ok in floor_recovered],
                 note="noise floor: failure = a coefficient off by over 5 %")]
    rows[0]["per_seed_expression"] = exprs
    rows[1]["per_seed_expression"] = floor_coef
    summary = {"fisher_f_rel_err": _median(errors), "fisher_symbolic_recovered": float(np.mean(recovered)),
               "fisher_time_s": _median(walls), "fisher_noise": noise,
               "fisher_least_squares_f_rel_err": _median(floor),
               "fisher_least_squares_within_5pct": float(np.mean(floor_recovered))}
    return rows, summary


# --- driver -----------------------------------------------------------------------------------
def _warm_up():
    """One tiny fit, so that torch's one-off optimizer setup (about 2 s) is not timed in the first case."""
    from pinns import Box, PINNRegressor, diffusion_reaction

    PINNRegressor(diffusion_reaction(k=1.0), domain=Box([0], [1]), hidden_layer_sizes=(4,), n_collocation=8,
                  max_iter=2, lbfgs_iter=2, random_state=0).fit(np.array([[0.5]]), np.array([0.0]))


def run(quick=False, seeds=None, deepxde_seeds=None, problems=("P1", "P2", "P3", "P4"), use_deepxde=True,
        fisher_noise=0.015):
    """Run the selected problems; returns the result dict of the JSON contract."""
    from sciml.threads import thread_limit

    seeds = seeds or (1 if quick else 5)
    dx_seeds = deepxde_seeds or (1 if quick else 3)
    if use_deepxde:
        try:
            from . import _deepxde

            _deepxde._import_deepxde()
        except ImportError as exc:
            warnings.warn(f"DeepXDE is not available ({exc}); running ours only.", RuntimeWarning, stacklevel=2)
            use_deepxde = False
    t0 = time.perf_counter()
    cases, summary = [], {}
    with thread_limit(1):
        machine = machine_info()
        # Starting numba's OpenMP layer (machine_info asks for it) can reset
        # torch's count; every fit (ours and DeepXDE's) enters thread_limit(1).
        machine["torch_threads"] = 1
        _warm_up()
        steps = {
            "P1": lambda: run_burgers(seeds, dx_seeds, quick, use_deepxde),
            "P2": lambda: run_lorenz(seeds, dx_seeds, quick, use_deepxde),
            "P3": lambda: run_kfield(seeds, dx_seeds, quick, use_deepxde),
            "P4": lambda: run_fisher(seeds, quick, fisher_noise),
        }
        for name in problems:
            rows, part = steps[name]()
            cases += rows
            summary.update(part)
    summary["wall_seconds"] = time.perf_counter() - t0
    return {"benchmark": "pinns", "quick": quick, "machine": machine, "cases": cases, "summary": summary}


def main(args, json_path=None):
    problems = tuple(p.strip().upper() for p in args.problems.split(",") if p.strip())
    bad = set(problems) - {"P1", "P2", "P3", "P4"}
    if bad:
        raise SystemExit(f"unknown problems {sorted(bad)}; choose from P1, P2, P3, P4")
    if not 0 <= args.fisher_noise < 1:
        raise SystemExit(f"--fisher-noise must be in [0, 1), got {args.fisher_noise}")
    result = run(quick=args.quick, seeds=args.seeds, deepxde_seeds=args.deepxde_seeds, problems=problems,
                 use_deepxde=not args.no_deepxde, fisher_noise=args.fisher_noise)
    emit(result, table_columns=TABLE_COLUMNS, json_path=json_path)
    return result
