"""The learned conjugate-direction solver against CG, IC(0)-PCG and AMG-PCG, in one run.

Systems (:mod:`solvers.problems`): the finite-volume Poisson matrix on a box
with Dirichlet walls, 2-D 128^2 and 256^2 and 3-D 32^3 and 64^3
(``--quick``: 2-D 64^2 and 128^2, 3-D 16^3 and 32^3), each with the three
right-hand-side families ``randn``, ``a_randn`` (high frequency) and
``smooth`` (Gaussian random field, low frequency); and, on the larger grid
of each dimension, a geometry the network never saw: the fluid-style domain
(solid walls, open top) around obstacles (cylinders in 2-D, a sphere in
3-D), with ``randn`` and ``smooth`` right-hand sides.

Methods, all on one thread (numba's included) and the same systems:

* ``dcdm``: :class:`solvers.dcdm.DCDMSolver`, one network per dimension
  trained on a small Dirichlet box (2-D 32^2, 3-D 16^3) before the timed
  solves; its training time is ``train_s`` and is not counted in the solve
  times, as the network is trained once for every system after it.
* ``dcdm_single_grid``: the same network with ``coarse_levels=0``, its
  directions from the fine grid only (the paper's method plus the residual
  step): what the multilevel directions add.
* ``scipy_cg``: :func:`scipy.sparse.linalg.cg`.
* ``sciml_cg``: :func:`solvers.cg.cg` without a preconditioner, the drop-in
  for scipy's (its matrix checks timed).
* ``ic0_pcg``: :func:`solvers.cg.cg` with ``M="ic0"`` (factorisation timed).
* ``amg_pcg``: scipy's ``cg`` preconditioned by one V-cycle of PyAMG's
  smoothed aggregation (hierarchy setup timed); skipped without PyAMG
  (``pip install .[solvers]``).

The CG methods first run once on an 8^2 system, so that numba's one-time
compilation after installation is not counted.  Every method is timed from
before its setup, and a callback records the
true residual ``||b - A x_k||`` after each iteration with its own time taken
off the clock, so iterations and seconds to ``1e-6`` and to ``1e-4`` (the
paper's tolerance) are read from one run per method. The CG anchors run to
``1e-7`` by their own (recurrence) test so that the true residual's crossing
of ``1e-6`` is seen; DCDM stops on the true residual at ``1e-6``.

Summary: ``dcdm_iters_64`` and ``icpcg_iters_64`` (iterations to 1e-6 on
the 3-D box at 64^3, ``randn`` as in the issue; quick: 32^3),
``dcdm_iter_ratio_vs_icpcg`` (their ratio) and
``dcdm_iter_ratio_vs_icpcg_worst`` (the largest ratio over the
right-hand-side families on that grid: IC(0) gains most on ``a_randn``),
``dcdm_converged_fraction`` (systems and right-hand sides where DCDM reached
1e-6 within 100 iterations, over all tried), ``dcdm_iter_growth`` (the
largest ratio of iterations on the larger box to the smaller, over
dimensions and families; ``dcdm_single_grid_iter_growth`` the same for the
single-grid ablation), ``dcdm_speedup_vs_icpcg_64`` (IC(0)-PCG's time
over ours at that grid: on CPU the network is the cost, see the issue),
``cg_speedup_vs_scipy`` and ``cg_speedup_vs_scipy_worst`` (scipy's ``cg``
time to 1e-6 over ``sciml_cg``'s, the median and the smallest over every
system and right-hand side) and ``train_s``.

``--device cuda`` runs the GPU comparison instead (``benchmarks._solvers_cuda``).
"""

from __future__ import annotations

import time

import numba
import numpy as np
import scipy.sparse.linalg

from sciml.threads import thread_limit
from solvers.cg import cg
from solvers.problems import RHS_KINDS, obstacle_mask, poisson, rhs

from ._harness import emit, machine_info

TABLE_COLUMNS = ["system", "rhs", "method", "iters_1e-6", "s_1e-6", "iters_1e-4", "s_1e-4", "converged", "setup_s"]
TOLERANCES = {"1e-6": 1e-6, "1e-4": 1e-4}
DCDM_MAXITER = 100
ANCHOR_MAXITER = 5000
TRAIN_GRID = {2: 32, 3: 16}
OBSTACLE = {2: "cylinders", 3: "sphere"}


def add_arguments(parser):
    parser.add_argument("--budget", type=float, default=None,
                        help="training seconds per network (default 600, quick 150)")
    parser.add_argument("--seed", type=int, default=0, help="training and right-hand-side seed")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cpu: the systems above against CG, IC(0)-PCG and AMG-PCG; cuda: the 3-D box at "
                             "128^3 (quick 64^3) against CG on the GPU (CuPy's, and torch CG on our kernels); "
                             "--budget then defaults to 120 s (quick 60)")
    parser.add_argument("--model", default=None, metavar="PATH",
                        help="cuda only: a 3-D DCDMSolver written by save() instead of training one")


class _Clock:
    """Seconds and true residual after each iteration; the residual's own time is not counted."""

    def __init__(self, A, b):
        self.A, self.b = A, b
        self.start = time.perf_counter()
        self.paused = 0.0
        self.setup = None  # seconds of setup, where a method reports it
        self.times, self.residuals = [], []

    def __call__(self, xk):
        now = time.perf_counter()
        self.times.append(now - self.start - self.paused)
        self.residuals.append(float(np.linalg.norm(self.b - self.A @ xk)))
        self.paused += time.perf_counter() - now

    def crossing(self, tol):
        """(iterations, seconds) at which ``||r|| <= tol ||b||`` first held, or (None, None)."""
        target = tol * np.linalg.norm(self.b)
        for k, r in enumerate(self.residuals):
            if r <= target:
                return k + 1, self.times[k]
        return None, None


def _dcdm_solver(ndim, budget, seed):
    from solvers.dcdm import DCDMSolver

    n = TRAIN_GRID[ndim]
    return DCDMSolver(max_iter=10**7, max_time=budget, random_state=seed, device="cpu").fit(poisson((n,) * ndim))


def _methods(problem, model):
    """name -> function(b, clock) running the method from its setup on."""
    A = problem.A

    def dcdm(b, clock):
        return model.solve(problem, b, rtol=TOLERANCES["1e-6"], maxiter=DCDM_MAXITER, callback=clock)

    def dcdm_single_grid(b, clock):
        return model.solve(problem, b, rtol=TOLERANCES["1e-6"], maxiter=DCDM_MAXITER, coarse_levels=0,
                           callback=clock)

    def scipy_cg(b, clock):
        return scipy.sparse.linalg.cg(A, b, rtol=TOLERANCES["1e-6"] / 10, maxiter=ANCHOR_MAXITER, callback=clock)

    def sciml_cg(b, clock):
        return cg(A, b, rtol=TOLERANCES["1e-6"] / 10, maxiter=ANCHOR_MAXITER, callback=clock)

    def ic0_pcg(b, clock):
        return cg(A, b, rtol=TOLERANCES["1e-6"] / 10, maxiter=ANCHOR_MAXITER, M="ic0", callback=clock)

    methods = {"dcdm": dcdm, "dcdm_single_grid": dcdm_single_grid, "scipy_cg": scipy_cg, "sciml_cg": sciml_cg,
               "ic0_pcg": ic0_pcg}
    try:
        import pyamg
    except ImportError:
        return methods

    def amg_pcg(b, clock):
        M = pyamg.smoothed_aggregation_solver(A).aspreconditioner(cycle="V")
        clock.setup = time.perf_counter() - clock.start
        return scipy.sparse.linalg.cg(A, b, rtol=TOLERANCES["1e-6"] / 10, maxiter=ANCHOR_MAXITER, M=M, callback=clock)

    methods["amg_pcg"] = amg_pcg
    return methods


def _warm_up():
    """Run the CG methods once on a tiny system: numba compiles a kernel on its first call
    after installation (cached on disk afterwards), which is no part of a solve's time."""
    problem = poisson((8, 8))
    b = rhs(problem, "randn", random_state=0)
    for M in (None, "ic0"):
        cg(problem.A, b, rtol=1e-8, M=M)
    scipy.sparse.linalg.cg(problem.A, b, rtol=1e-8)


def _systems(quick):
    """(name, ndim, n, problem, rhs kinds, box?) in run order."""
    grids = {2: (64, 128), 3: (16, 32)} if quick else {2: (128, 256), 3: (32, 64)}
    for ndim, sizes in grids.items():
        for n in sizes:
            shape = (n,) * ndim
            yield f"box{ndim}d_{n}", ndim, n, poisson(shape), RHS_KINDS, True
        n = sizes[-1]
        shape = (n,) * ndim
        obstacles = obstacle_mask(shape, OBSTACLE[ndim])
        problem = poisson(shape, boundary="neumann", obstacles=obstacles, drop_isolated=True)
        yield f"{OBSTACLE[ndim]}{ndim}d_{n}", ndim, n, problem, ("randn", "smooth"), False


def run(quick=False, budget=None, seed=0):
    budget = (150.0 if quick else 600.0) if budget is None else float(budget)
    cases, models, train_s = [], {}, {}
    previous_numba_threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        with thread_limit(1):
            machine = machine_info()  # the thread counts the run used
            _warm_up()
            for name, ndim, n, problem, kinds, is_box in _systems(quick):
                if ndim not in models:
                    models[ndim] = _dcdm_solver(ndim, budget, seed)
                    train_s[ndim] = models[ndim].train_time_
                for kind in kinds:
                    b = rhs(problem, kind, random_state=seed + 1)
                    for method, solve in _methods(problem, models[ndim]).items():
                        clock = _Clock(problem.A, b)
                        solve(b, clock)
                        case = {"system": name, "ndim": ndim, "n": n, "box": is_box, "rhs": kind, "method": method,
                                "setup_s": clock.setup}
                        for label, tol in TOLERANCES.items():
                            case[f"iters_{label}"], case[f"s_{label}"] = clock.crossing(tol)
                        limit = DCDM_MAXITER if method.startswith("dcdm") else ANCHOR_MAXITER
                        case["converged"] = case["iters_1e-6"] is not None and case["iters_1e-6"] <= limit
                        cases.append(case)
    finally:
        numba.set_num_threads(previous_numba_threads)
    summary = _summary(cases, quick)
    summary["train_s"] = float(max(train_s.values()))
    return {"benchmark": "solvers", "quick": bool(quick), "machine": machine, "cases": cases,
            "summary": summary}


def _summary(cases, quick):
    def find(system, rhs_kind, method):
        for case in cases:
            if case["system"] == system and case["rhs"] == rhs_kind and case["method"] == method:
                return case
        return None

    large3d = f"box3d_{32 if quick else 64}"
    dcdm, ic0 = find(large3d, "randn", "dcdm"), find(large3d, "randn", "ic0_pcg")
    ratios = []
    for kind in RHS_KINDS:
        ours, theirs = find(large3d, kind, "dcdm"), find(large3d, kind, "ic0_pcg")
        if ours["converged"] and theirs["iters_1e-6"]:
            ratios.append(float(ours["iters_1e-6"] / theirs["iters_1e-6"]))
        else:
            ratios.append(float("inf"))
    def growth(method):
        ratios = []
        boxes = sorted({(c["ndim"], c["n"]) for c in cases if c["box"]})
        for ndim in sorted({d for d, _ in boxes}):
            small, large = [n for d, n in boxes if d == ndim][:2]
            for kind in RHS_KINDS:
                a, b = find(f"box{ndim}d_{small}", kind, method), find(f"box{ndim}d_{large}", kind, method)
                converged = a["converged"] and b["converged"]
                ratios.append(b["iters_1e-6"] / a["iters_1e-6"] if converged else float("inf"))
        return float(max(ratios))

    ours_runs = [c for c in cases if c["method"] == "dcdm"]
    cg_speedups = [find(c["system"], c["rhs"], "scipy_cg")["s_1e-6"] / c["s_1e-6"]
                   for c in cases if c["method"] == "sciml_cg" and c["converged"]]
    if len(cg_speedups) < sum(c["method"] == "sciml_cg" for c in cases):
        cg_speedups.append(0.0)  # a system sciml_cg did not solve counts as the worst case
    return {
        "dcdm_iters_64": dcdm["iters_1e-6"],
        "icpcg_iters_64": ic0["iters_1e-6"],
        "dcdm_iter_ratio_vs_icpcg": ratios[RHS_KINDS.index("randn")],
        "dcdm_iter_ratio_vs_icpcg_worst": float(max(ratios)),
        "dcdm_converged_fraction": sum(c["converged"] for c in ours_runs) / len(ours_runs),
        "dcdm_iter_growth": growth("dcdm"),
        "dcdm_single_grid_iter_growth": growth("dcdm_single_grid"),
        "dcdm_speedup_vs_icpcg_64": (ic0["s_1e-6"] / dcdm["s_1e-6"]) if dcdm["converged"] else 0.0,
        "cg_speedup_vs_scipy": float(np.median(cg_speedups)),
        "cg_speedup_vs_scipy_worst": float(min(cg_speedups)),
    }


def main(args, json_path=None):
    if args.device == "cuda":
        from ._solvers_cuda import TABLE_COLUMNS as columns
        from ._solvers_cuda import run_cuda

        result = run_cuda(quick=args.quick, budget=args.budget, seed=args.seed, model_path=args.model)
    else:
        if args.model is not None:
            raise SystemExit("--model is for --device cuda; the CPU run trains its own networks")
        result, columns = run(quick=args.quick, budget=args.budget, seed=args.seed), TABLE_COLUMNS
    emit(result, table_columns=columns, json_path=json_path)
    return result
