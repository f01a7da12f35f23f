"""Equation discovery: sciml.discovery against PySINDy 2.x, in one run on the same data.

Every problem comes from :mod:`sciml.discovery.data`; noise is
:func:`~sciml.discovery.data.add_noise` with the seed as ``random_state``
(per variable for Lorenz, the std of the whole field for the PDEs).  Success
is the exact set of nonzero terms, in each method's own library;
``coef_err_median`` is the median over seeds of ``||xi_hat - xi|| / ||xi||``.
Everything runs on one thread (the toolkit's policy), PySINDy too.

Methods per case, in two regimes:

* defaults, no knowledge of the truth: ``ours defaults`` is ``SINDy()`` /
  ``PDESINDy()`` exactly as shipped (weak form, STLSQ with its threshold
  chosen by BIC); ``pysindy defaults`` is ``ps.SINDy()`` (finite differences,
  ``STLSQ(threshold=0.1, alpha=0.05)``), for the PDEs with a
  ``PDELibrary`` (finite differences in space) in place of the polynomial one.
* tuned, the threshold chosen knowing the truth: the best success over a
  threshold grid (ties: the lower median error), and the threshold is
  reported.  ``ours tuned``: our ``STLSQ(threshold)`` (one threshold for all
  equations, in shares of rms(target), over :data:`OURS_THRESHOLDS`) on the
  default weak form; ``ours defaults`` may beat it, as BIC picks a threshold
  per equation.  ``pysindy weak tuned``: PySINDy's ``WeakPDELibrary`` (``K``
  random subdomains drawn once with ``np.random.seed(0)`` and shared by all
  seeds, its default ``H_xt`` and ``p``) and ``ps.STLSQ`` over a grid of
  ``threshold`` (:data:`PS_THRESHOLDS`), ridge ``alpha`` (:data:`PS_ALPHAS`:
  its default 0.05 swamps the small weak-form features, and no threshold
  then recovers KdV even from clean data) and ``normalize_columns``; the
  weak features are computed once per seed and every grid point is fit on
  them (identical to ``ps.SINDy(feature_library=lib).fit``, much cheaper).
  The tuned rows report the winning ``threshold``, ``alpha`` and
  ``normalize_columns``.

Problems:

* Lorenz (sigma 10, rho 28, beta 8/3, x0 (-8, 8, 27), dt 0.002, t in [0, 10],
  degree-2 polynomial library, 10 terms): noise 0, 1, 2, 5, 10, 20 % with 10
  seeds (``--quick``: 1, 5, 10 % with 5 seeds).  PySINDy weak uses ``K=400``.
* Low-data Lorenz: 200 samples (dt 0.01, t in [0, 1.99]) at 2 % noise, 10
  seeds (quick 5).
* Burgers (``u_t = -u u_x + 0.1 u_xx``, 256 x 101) and KdV (``u_t = -6 u u_x
  - u_xxx``, two solitons, 512 x 201) at 0, 1, 5, 10, 25 % noise, 10 seeds
  (quick: Burgers 1 and 10 %, KdV 1 and 25 %, 3 seeds).  Libraries: ours
  ``PDELibrary(degree=3, derivative_order=4)`` (16 terms, conservative form:
  Burgers is ``0.1 u_xx - 0.5 (u^2)_x``, KdV ``-3 (u^2)_x - u_xxx``); PySINDy
  the same degree and derivative order with a bias (20 terms, ``u u_1`` form).
  PySINDy's weak form at ``K=2000`` costs seconds per seed, so it runs on
  fewer seeds (full 5, quick 1; its row's ``n_seeds`` says so).  At 0 % every
  method runs once (the data do not depend on the seed).
* Timing, weak form: ``PDESINDy(differentiation=WeakForm(n_test_functions=
  2000)).fit`` against PySINDy building ``WeakPDELibrary(K=2000)`` and fitting
  ``ps.SINDy`` with it (degree 3, derivative order 4 for both) on clean
  Burgers; best of several fits of ours (after a warm-up) and of 1 (full: 2)
  of PySINDy's (``ps.SINDy`` defaults otherwise), interleaved; the rows also
  score these clean fits.  ``weak_speedup_vs_pysindy`` is PySINDy's time over ours.
* Timing, plain fits: ``SINDy(differentiation=FiniteDifference(),
  optimizer=STLSQ(threshold=0.1, normalize_columns=False))`` against
  ``ps.SINDy()`` on clean Lorenz, round-robin (:func:`time_calls`);
  ``plain_fit_time_ratio`` is ours over PySINDy's (best times).

Per-case ``fit_time_s`` is the median over seeds of one fit (for the
precomputed PySINDy weak features: computing them plus one STLSQ; the
``WeakPDELibrary`` construction, shared by all seeds, is not in it).

Summary: ``lorenz_success_5pct_defaults``, ``lorenz_success_10pct_defaults``
(ours), ``lorenz_coef_err_5pct_defaults``, ``lorenz_coef_err_10pct_defaults``,
``pysindy_lorenz_success_5pct_defaults``,
``pysindy_lorenz_success_10pct_defaults``, ``lorenz_success_10pct_tuned``,
``pysindy_lorenz_success_10pct_weak_tuned``,
``lorenz_low_data_success_2pct_defaults``, ``burgers_success_10pct`` and
``kdv_success_25pct`` (ours, defaults), their ``pysindy_..._defaults`` and
``pysindy_..._weak_tuned`` counterparts, ``weak_fit_seconds_ours``,
``weak_fit_seconds_pysindy``, ``weak_speedup_vs_pysindy``,
``plain_fit_time_ratio``, ``wall_seconds``.
"""

from __future__ import annotations

import time
import warnings

import numpy as np

from sciml.discovery import PDESINDy, SINDy, STLSQ, FiniteDifference, WeakForm
from sciml.discovery.data import add_noise, burgers, kdv, lorenz, lorenz_coefficients
from sciml.threads import thread_limit

from ._harness import emit, machine_info, time_calls

TABLE_COLUMNS = ["case", "method", "n_seeds", "success", "coef_err_median", "nnz_median", "threshold", "alpha",
                 "normalize_columns",
                 "fit_time_s", "best_s", "median_s", "ours_speedup"]

LORENZ_NAMES = ["x", "y", "z"]
# Our thresholds: shares of rms(target) after column normalisation.
OURS_THRESHOLDS = tuple(float(f"{v:.2g}") for v in np.geomspace(1e-3, 0.3, 16))
# PySINDy's STLSQ: thresholds on unscaled coefficients (Lorenz's smallest is
# 1, Burgers' 0.1, KdV's 1) or, with normalize_columns, on coefficients times
# column 2-norms; and its ridge alpha (default 0.05).
PS_THRESHOLDS = tuple(float(f"{v:.2g}") for v in np.geomspace(1e-3, 1e2, 26))
PS_ALPHAS = (0.05, 1e-3, 1e-6)
ODE_WEAK_K = 400
PDE_WEAK_K = 2000
PDE_DEGREE, PDE_DERIVATIVE_ORDER = 3, 4

# True models in each library's own terms.
OURS_PDE_TRUTH = {
    "burgers": {"u_xx": 0.1, "(u^2)_x": -0.5},
    "kdv": {"(u^2)_x": -3.0, "u_xxx": -1.0},
}
PS_PDE_TRUTH = {
    "burgers": {"u_11": 0.1, "uu_1": -1.0},
    "kdv": {"uu_1": -6.0, "u_111": -1.0},
}


def add_arguments(parser):
    parser.add_argument("--seeds", type=int, default=None,
                        help="noise seeds per case (default 10, quick: Lorenz 5, PDEs 3)")


# --- scoring --------------------------------------------------------------------
def _truth_matrix(names, truth_rows):
    """Dense true coefficients (n_equations, n_terms) from ``[{term: value}, ...]``."""
    xi = np.zeros((len(truth_rows), len(names)))
    for i, row in enumerate(truth_rows):
        for term, value in row.items():
            if term not in names:
                raise KeyError(f"true term {term!r} is not in the library {names}")
            xi[i, names.index(term)] = value
    return xi


def _score(coef, names, truth_rows):
    """(exact support?, relative coefficient error, number of nonzeros)."""
    coef = np.asarray(coef, dtype=np.float64)
    xi = _truth_matrix(list(names), truth_rows)
    success = bool(np.array_equal(coef != 0, xi != 0))
    return success, float(np.linalg.norm(coef - xi) / np.linalg.norm(xi)), int(np.count_nonzero(coef))


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _quiet(fn):
    """Run a PySINDy call with its warnings (axis labels, empty models) silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn()


def _seeded_pysindy(fn, seed=0):
    """Call ``fn`` with numpy's global RNG (PySINDy's subdomain draws) seeded, then restore it."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        return fn()
    finally:
        np.random.set_state(state)


class _Tally:
    """Scores per (method, tuning parameters) over seeds; one case row per method."""

    def __init__(self):
        self.scores = {}  # (method, ((param, value), ...)) -> list of (success, err, nnz)
        self.times = {}  # method -> list of seconds

    def add(self, method, params, score, seconds):
        key = (method, tuple(sorted((params or {}).items())))
        self.scores.setdefault(key, []).append(score)
        self.times.setdefault(method, []).append(seconds)

    def rows(self, case, **extra):
        out = {}
        for method in dict.fromkeys(m for m, _ in self.scores):
            candidates = []
            for (m, params), scores in self.scores.items():
                if m != method:
                    continue
                success = float(np.mean([s[0] for s in scores]))
                err = float(np.median([s[1] for s in scores]))
                nnz = float(np.median([s[2] for s in scores]))
                candidates.append((success, err, nnz, dict(params), len(scores)))
            # Best success, then the lower median error (one candidate when untuned).
            success, err, nnz, params, n = max(candidates, key=lambda c: (c[0], -c[1]))
            out[method] = {"case": case, "method": method, **extra, "n_seeds": n, "success": success,
                           "coef_err_median": err, "nnz_median": nnz, "threshold": params.pop("threshold", None),
                           **params, "fit_time_s": float(np.median(self.times[method]))}
        return out


# --- Lorenz ---------------------------------------------------------------------
def _lorenz_truth():
    coefficients = lorenz_coefficients()
    return [coefficients[v] for v in LORENZ_NAMES]


def _ps_ode_weak_library(ps, t):
    return _seeded_pysindy(lambda: _quiet(lambda: ps.WeakPDELibrary(
        function_library=ps.PolynomialLibrary(degree=2), spatiotemporal_grid=t, K=ODE_WEAK_K)))


def _lorenz_case(ps, case, t, X, noise, seeds, truth, extra):
    tally = _Tally()
    ps_lib = _ps_ode_weak_library(ps, t)
    dt = float(t[1] - t[0])
    for seed in seeds:
        Xn = add_noise(X, noise, random_state=seed)
        model, s = _timed(lambda: SINDy(feature_names=LORENZ_NAMES).fit(Xn, t=t))
        tally.add("ours defaults", None, _score(model.coef_, model.term_names_, truth), s)
        for threshold in OURS_THRESHOLDS:
            model, s = _timed(lambda: SINDy(feature_names=LORENZ_NAMES,
                                            optimizer=STLSQ(threshold=threshold)).fit(Xn, t=t))
            tally.add("ours tuned", {"threshold": threshold}, _score(model.coef_, model.term_names_, truth), s)
        model, s = _timed(lambda: _quiet(lambda: ps.SINDy().fit(Xn, t=dt, feature_names=LORENZ_NAMES)))
        tally.add("pysindy defaults", None, _score(model.coefficients(), model.get_feature_names(), truth), s)
        _pysindy_weak_tuned(ps, tally, ps_lib, Xn, LORENZ_NAMES, truth)
    return tally.rows(case, **extra)


def _pysindy_weak_tuned(ps, tally, lib, data, feature_names, truth):
    """PySINDy's weak features once, then ps.STLSQ over its grid (threshold, alpha, normalize_columns)."""
    (G, b), s_features = _timed(lambda: _quiet(lambda: (
        np.asarray(lib.fit_transform(data)), np.asarray(lib.convert_u_dot_integral(data)))))
    names = lib.get_feature_names(feature_names)
    for alpha in PS_ALPHAS:
        for normalize in (False, True):
            for threshold in PS_THRESHOLDS:
                optimizer, s = _timed(lambda: _quiet(lambda: ps.STLSQ(
                    threshold=threshold, alpha=alpha, normalize_columns=normalize).fit(G, b)))
                params = {"threshold": threshold, "alpha": alpha, "normalize_columns": normalize}
                tally.add("pysindy weak tuned", params, _score(optimizer.coef_, names, truth), s_features + s)


# --- PDEs -----------------------------------------------------------------------
def _ps_pde_weak_library(ps, t, x):
    X, T = np.meshgrid(x, t, indexing="ij")
    grid = np.stack([X, T], axis=-1)
    return _seeded_pysindy(lambda: _quiet(lambda: ps.WeakPDELibrary(
        function_library=ps.PolynomialLibrary(degree=PDE_DEGREE, include_bias=False),
        derivative_order=PDE_DERIVATIVE_ORDER, spatiotemporal_grid=grid, include_bias=True, K=PDE_WEAK_K)))


def _ps_pde_strong_model(ps, x):
    library = ps.PDELibrary(function_library=ps.PolynomialLibrary(degree=PDE_DEGREE, include_bias=False),
                            derivative_order=PDE_DERIVATIVE_ORDER, spatial_grid=x, include_bias=True)
    return ps.SINDy(feature_library=library)


def _pde_case(ps, case, problem, t, x, u, noise, seeds, ps_weak_seeds, ps_lib):
    """Rows for one PDE at one noise level."""
    tally = _Tally()
    ours_truth, ps_truth = [OURS_PDE_TRUTH[problem]], [PS_PDE_TRUTH[problem]]
    dt = float(t[1] - t[0])
    for i, seed in enumerate(seeds):
        un = add_noise(u, noise, random_state=seed, axis=None)
        model, s = _timed(lambda: PDESINDy().fit(un, t=t, x=x))
        tally.add("ours defaults", None, _score(model.coef_, model.term_names_, ours_truth), s)
        for threshold in OURS_THRESHOLDS:
            model, s = _timed(lambda: PDESINDy(optimizer=STLSQ(threshold=threshold)).fit(un, t=t, x=x))
            tally.add("ours tuned", {"threshold": threshold}, _score(model.coef_, model.term_names_, ours_truth), s)
        U = un.T[:, :, None]  # PySINDy's layout: (x, t, field)
        model, s = _timed(lambda: _quiet(lambda: _ps_pde_strong_model(ps, x).fit(U, t=dt, feature_names=["u"])))
        tally.add("pysindy defaults", None, _score(model.coefficients(), model.get_feature_names(), ps_truth), s)
        if i < ps_weak_seeds:
            _pysindy_weak_tuned(ps, tally, ps_lib, U, ["u"], ps_truth)
    return tally.rows(case, problem=problem, noise_pct=100 * noise)


def _weak_timing(ps, t, x, u, rounds, ours_repeat):
    """Ours at n_test_functions=2000 against PySINDy's WeakPDELibrary(K=2000), build + fit, clean Burgers."""
    U = u.T[:, :, None]
    dt = float(t[1] - t[0])

    def ours():
        return PDESINDy(differentiation=WeakForm(n_test_functions=PDE_WEAK_K)).fit(u, t=t, x=x)

    def theirs():
        lib = _ps_pde_weak_library(ps, t, x)
        model = _quiet(lambda: ps.SINDy(feature_library=lib).fit(U, t=dt, feature_names=["u"]))
        return lib, model

    model = ours()  # warm-up (PySINDy is plain numpy: no warm-up run, it costs seconds)
    ours_times, ps_times = [], []
    for _ in range(rounds):
        for _ in range(ours_repeat):
            model, s = _timed(ours)
            ours_times.append(s)
        (lib, ps_model), s = _timed(theirs)
        ps_times.append(s)
    n_test = int(np.prod([axis.n_centers for axis in model.test_functions_]))
    ours_score = _score(model.coef_, model.term_names_, [OURS_PDE_TRUTH["burgers"]])
    ps_score = _score(ps_model.coefficients(), ps_model.get_feature_names(), [PS_PDE_TRUTH["burgers"]])
    case = f"timing weak K={PDE_WEAK_K} burgers 0%"
    rows = [
        {"case": case, "method": "ours WeakForm(n_test_functions=2000)", "n_test_functions": n_test,
         "best_s": min(ours_times), "median_s": float(np.median(ours_times)), "n_timed": len(ours_times),
         "success": float(ours_score[0]), "coef_err_median": ours_score[1], "nnz_median": ours_score[2]},
        {"case": case, "method": "pysindy WeakPDELibrary(K=2000) build+fit", "n_test_functions": PDE_WEAK_K,
         "best_s": min(ps_times), "median_s": float(np.median(ps_times)), "n_timed": len(ps_times),
         "success": float(ps_score[0]), "coef_err_median": ps_score[1], "nnz_median": ps_score[2],
         "ours_speedup": min(ps_times) / min(ours_times)},
    ]
    return rows, lib


def _plain_timing(ps, t, X, repeat):
    dt = float(t[1] - t[0])

    def ours():
        return SINDy(differentiation=FiniteDifference(),
                     optimizer=STLSQ(threshold=0.1, normalize_columns=False)).fit(X, t=t)

    def theirs():
        return _quiet(lambda: ps.SINDy().fit(X, t=dt))

    timings = time_calls({"ours": ours, "pysindy": theirs}, repeat=repeat)
    case = "timing plain fit lorenz 0%"
    return [
        {"case": case, "method": "ours FiniteDifference + STLSQ(0.1, unscaled)", "best_s": timings["ours"][0],
         "median_s": timings["ours"][1], "n_timed": repeat},
        {"case": case, "method": "pysindy ps.SINDy()", "best_s": timings["pysindy"][0],
         "median_s": timings["pysindy"][1], "n_timed": repeat,
         "ours_speedup": timings["pysindy"][0] / timings["ours"][0]},
    ]


# --- driver ---------------------------------------------------------------------
def _pct(noise):
    return f"{100 * noise:g}%"


def run(quick=False, seeds=None):
    import pysindy as ps  # optional dependency: the anchor

    start = time.perf_counter()
    n_lorenz = (5 if quick else 10) if seeds is None else int(seeds)
    n_pde = (3 if quick else 10) if seeds is None else int(seeds)
    n_ps_weak = 1 if quick else 5
    lorenz_levels = (0.01, 0.05, 0.1) if quick else (0.0, 0.01, 0.02, 0.05, 0.1, 0.2)
    pde_levels = ({"burgers": (0.01, 0.1), "kdv": (0.01, 0.25)} if quick
                  else {p: (0.0, 0.01, 0.05, 0.1, 0.25) for p in ("burgers", "kdv")})
    cases = []
    results = {}

    with thread_limit(1):
        truth = _lorenz_truth()
        # -- Lorenz noise sweep -------------------------------------------------
        t, X = lorenz(dt=0.002, t_end=10.0)
        for noise in lorenz_levels:
            case = f"lorenz {_pct(noise)}"
            seed_list = [0] if noise == 0 else list(range(n_lorenz))
            rows = _lorenz_case(ps, case, t, X, noise, seed_list, truth,
                                {"problem": "lorenz", "noise_pct": 100 * noise, "n_samples": len(t)})
            results[case] = rows
            cases += rows.values()
        # -- low-data Lorenz ----------------------------------------------------
        t_low, X_low = lorenz(dt=0.01, t_end=1.99)  # 200 samples
        case = "lorenz low-data 2%"
        rows = _lorenz_case(ps, case, t_low, X_low, 0.02, list(range(n_lorenz)), truth,
                            {"problem": "lorenz low-data", "noise_pct": 2.0, "n_samples": len(t_low)})
        results[case] = rows
        cases += rows.values()
        # -- plain-fit timing ---------------------------------------------------
        plain_rows = _plain_timing(ps, t, X, repeat=10 if quick else 30)
        cases += plain_rows
        # -- PDEs ---------------------------------------------------------------
        weak_rows = None
        for problem, generate in (("burgers", burgers), ("kdv", kdv)):
            tp, xp, u = generate()
            if problem == "burgers":
                weak_rows, ps_lib = _weak_timing(ps, tp, xp, u, rounds=1 if quick else 2, ours_repeat=5)
                cases += weak_rows
            else:
                ps_lib = _ps_pde_weak_library(ps, tp, xp)
            for noise in pde_levels[problem]:
                case = f"{problem} {_pct(noise)}"
                seed_list = [0] if noise == 0 else list(range(n_pde))
                rows = _pde_case(ps, case, problem, tp, xp, u, noise, seed_list, n_ps_weak, ps_lib)
                results[case] = rows
                cases += rows.values()

    def get(case, method, key="success"):
        return results[case][method][key]

    summary = {
        "lorenz_success_5pct_defaults": get("lorenz 5%", "ours defaults"),
        "lorenz_success_10pct_defaults": get("lorenz 10%", "ours defaults"),
        "lorenz_coef_err_5pct_defaults": get("lorenz 5%", "ours defaults", "coef_err_median"),
        "lorenz_coef_err_10pct_defaults": get("lorenz 10%", "ours defaults", "coef_err_median"),
        "pysindy_lorenz_success_5pct_defaults": get("lorenz 5%", "pysindy defaults"),
        "pysindy_lorenz_success_10pct_defaults": get("lorenz 10%", "pysindy defaults"),
        "lorenz_success_10pct_tuned": get("lorenz 10%", "ours tuned"),
        "pysindy_lorenz_success_10pct_weak_tuned": get("lorenz 10%", "pysindy weak tuned"),
        "lorenz_low_data_success_2pct_defaults": get("lorenz low-data 2%", "ours defaults"),
        "pysindy_lorenz_low_data_success_2pct_defaults": get("lorenz low-data 2%", "pysindy defaults"),
        "burgers_success_10pct": get("burgers 10%", "ours defaults"),
        "burgers_success_10pct_tuned": get("burgers 10%", "ours tuned"),
        "pysindy_burgers_success_10pct_defaults": get("burgers 10%", "pysindy defaults"),
        "pysindy_burgers_success_10pct_weak_tuned": get("burgers 10%", "pysindy weak tuned"),
        "kdv_success_25pct": get("kdv 25%", "ours defaults"),
        "kdv_success_25pct_tuned": get("kdv 25%", "ours tuned"),
        "pysindy_kdv_success_25pct_defaults": get("kdv 25%", "pysindy defaults"),
        "pysindy_kdv_success_25pct_weak_tuned": get("kdv 25%", "pysindy weak tuned"),
        "weak_fit_seconds_ours": weak_rows[0]["best_s"],
        "weak_fit_seconds_pysindy": weak_rows[1]["best_s"],
        "weak_speedup_vs_pysindy": weak_rows[1]["ours_speedup"],
        "plain_fit_time_ratio": plain_rows[0]["best_s"] / plain_rows[1]["best_s"],
        "wall_seconds": time.perf_counter() - start,
    }
    return {"benchmark": "sindy", "quick": bool(quick), "machine": machine_info(), "cases": cases,
            "summary": summary}


def main(args, json_path=None):
    result = run(quick=args.quick, seeds=args.seeds)
    emit(result, table_columns=TABLE_COLUMNS, json_path=json_path)
    return result
