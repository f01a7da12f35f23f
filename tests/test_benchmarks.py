"""The benchmark harness and the JSON contract (tiny sizes: not a speed test)."""

import json

import pytest

from benchmarks import BENCHMARKS
from benchmarks.__main__ import main
from benchmarks._harness import format_table, time_calls
from benchmarks.spmv import SMALL_SIDES
from sciml import data
from sciml.sparse import _cpu


def test_spmv_benchmark_writes_the_json_contract(tmp_path, capsys):
    path = tmp_path / "spmv.json"
    assert main(["spmv", "--quick", "--scale", "0.0005", "--json", str(path)]) == 0
    result = json.loads(path.read_text())
    assert result["benchmark"] == "spmv" and result["quick"] is True
    assert result["machine"]["read_bandwidth_gbs"] > 0
    assert {"numpy", "scipy", "numba", "torch"} <= set(result["machine"]["versions"])
    methods = {c["method"] for c in result["cases"]}
    assert {"sciml", "scipy", "torch"} <= methods
    def rows(op, k, case=None):
        return {c["method"]: c for c in result["cases"]
                if c["op"] == op and c["k"] == k and c["dtype"] == "float64" and (case is None or c["case"] == case)}

    for case in result["cases"]:
        ours = rows(case["op"], case["k"], case["case"])["sciml"]
        # > 1 means ours is faster: the anchor's time over ours.
        assert case["ours_speedup"] == pytest.approx(case["ms"] / ours["ms"])
        assert case["gflops"] == pytest.approx(2 * case["nnz"] * case["k"] / case["ms"] / 1e6)
        if not case["op"].endswith("-small"):  # the small products are in cache: no bandwidth figure
            assert case["bw_fraction"] == pytest.approx(case["gbs"] / case["probe_gbs"])
    small = [c for c in result["cases"] if c["op"].endswith("-small")]
    assert {c["method"] for c in small} == {"serial kernel", "parallel kernel", "sciml", "scipy"}
    assert {c["nnz"] for c in small} == {data.poisson_2d(side).nnz for side in SMALL_SIDES}
    crossover = result["summary"]["serial_crossover_work"]
    assert crossover is None or crossover in {c["nnz"] * c["k"] for c in small}
    assert result["summary"]["serial_work"] == _cpu.SERIAL_WORK
    first = result["cases"][0]["case"]
    spmv_a, spmm_a = rows("spmv", 1, first), rows("spmm", 64, first)
    summary = result["summary"]
    assert summary["spmv_speedup_vs_scipy"] == pytest.approx(spmv_a["scipy"]["ms"] / spmv_a["sciml"]["ms"])
    assert summary["spmv_bandwidth_fraction"] == pytest.approx(spmv_a["sciml"]["bw_fraction"])
    assert summary["spmm_speedup_vs_scipy"] == pytest.approx(spmm_a["scipy"]["ms"] / spmm_a["sciml"]["ms"])
    assert summary["spmm_speedup_vs_torch"] == pytest.approx(spmm_a["torch"]["ms"] / spmm_a["sciml"]["ms"])
    out = capsys.readouterr().out
    assert "spmv_speedup_vs_scipy" in out and f"wrote {path}" in out


def test_every_registered_benchmark_has_the_module_interface():
    import importlib

    for module_name in BENCHMARKS.values():
        module = importlib.import_module(module_name)
        assert callable(module.add_arguments) and callable(module.main) and module.__doc__


def test_unknown_benchmark_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["nonexistent"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_pinns_bad_fisher_noise_is_a_usage_error():
    with pytest.raises(SystemExit, match="fisher-noise"):
        main(["pinns", "--problems", "P4", "--fisher-noise", "-0.1"])


def test_time_calls_interleaves_after_one_warm_up_each():
    calls = []
    result = time_calls({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeat=3)
    assert calls == ["a", "b"] * 4  # warm-up round, then 3 interleaved rounds
    for best, median in result.values():
        assert 0 <= best <= median


def test_format_table_of_no_cases_is_the_header():
    assert format_table([], ["a", "bb"]).splitlines() == ["a  bb", "-  --"]


def test_format_table_aligns_columns():
    text = format_table([{"a": 1.23456, "b": "x"}, {"a": None, "b": "long"}], ["a", "b"])
    lines = text.splitlines()
    assert lines[0].split() == ["a", "b"]
    assert lines[2].split() == ["1.23", "x"] and lines[3].split() == ["-", "long"]
    assert len({len(line) for line in lines}) == 1


@pytest.mark.slow
def test_unfolding_benchmark_contract(tmp_path):
    """The quick unfolding benchmark with a tiny budget (minutes: slow)."""
    path = tmp_path / "unfolding.json"
    assert main(["unfolding", "--quick", "--budget", "2", "--json", str(path)]) == 0
    result = json.loads(path.read_text())
    assert result["benchmark"] == "unfolding"
    summary = result["summary"]
    assert set(summary) >= {
        "nmse_db_noiseless_16", "nmse_db_40db_16", "unsup_ista_lasso_gap_16", "sup_ista_nmse_db_16",
        "unsup_ista_nmse_db_16", "iht_unfolded_l0_obj_16", "iht_3000_l0_obj", "train_seconds_max",
    }
    rows = {(c["case"], c["method"]): c for c in result["cases"]}
    assert summary["sup_ista_nmse_db_16"] == rows[("S4", "unfolded ISTA, supervised")]["nmse_db"]
    assert summary["iht_3000_l0_obj"] == rows[("S5 p=0.1", "IHT 3000 it")]["objective"]
    # The anchors are what they claim: more IHT iterations never raise the objective.
    assert summary["iht_3000_l0_obj"] <= summary["iht_16_l0_obj"]


@pytest.mark.slow
def test_rpca_benchmark_contract(tmp_path):
    """The quick RPCA benchmark with a tiny training budget (minutes: slow)."""
    path = tmp_path / "rpca.json"
    assert main(["rpca", "--quick", "--budget", "3", "--json", str(path)]) == 0
    result = json.loads(path.read_text())
    assert result["benchmark"] == "rpca"
    summary = result["summary"]
    assert set(summary) >= {"lrpca_relerr_15", "scaledgd_relerr_15", "rpca_speedup_vs_ialm", "video_iou",
                            "train_seconds", "r2_lrpca_relerr_15", "r2_speedup_vs_ialm",
                            "r2_speedup_vs_ialm_randomized"}
    rows = {(c["case"], c["method"], c.get("iters")): c for c in result["cases"]}
    assert summary["lrpca_relerr_15"] == rows[("R1 n=300 r=5", "LearnedRPCA", 15)]["rel_err"]
    assert summary["r2_lrpca_relerr_15"] == rows[("R2 n=300 r=15", "LearnedRPCA", 15)]["rel_err"]
    r2_ialm = next(c for c in result["cases"] if c["case"] == "R2 n=300 r=15" and c["method"] == "IALM (full SVD)")
    assert summary["r2_ialm_relerr"] == r2_ialm["rel_err"] < 1e-5
    # The anchors are what they claim: IALM converges to tol 1e-7 here, and 60
    # tuned ScaledGD iterations beat 15.
    assert summary["ialm_relerr"] < 1e-5
    assert summary["scaledgd_relerr_60"] < summary["scaledgd_relerr_15"]
    assert 0 <= summary["video_iou"] <= 1 and summary["video_iou_ialm"] > 0.5


@pytest.mark.slow
def test_sindy_benchmark_contract(tmp_path):
    """The quick equation-discovery benchmark against PySINDy (minutes: slow)."""
    pytest.importorskip("pysindy")
    path = tmp_path / "sindy.json"
    assert main(["sindy", "--quick", "--json", str(path)]) == 0
    result = json.loads(path.read_text())
    assert result["benchmark"] == "sindy" and result["quick"] is True
    summary = result["summary"]
    assert set(summary) >= {
        "lorenz_success_5pct_defaults", "lorenz_success_10pct_defaults", "pysindy_lorenz_success_5pct_defaults",
        "burgers_success_10pct", "kdv_success_25pct", "weak_speedup_vs_pysindy", "plain_fit_time_ratio",
    }
    rows = {(c["case"], c["method"]): c for c in result["cases"]}
    methods = ("ours defaults", "ours tuned", "pysindy defaults", "pysindy weak tuned")
    for case in ("lorenz 1%", "lorenz 5%", "lorenz 10%", "lorenz low-data 2%", "burgers 1%", "burgers 10%",
                 "kdv 1%", "kdv 25%"):
        for method in methods:
            row = rows[(case, method)]
            assert 0 <= row["success"] <= 1 and row["n_seeds"] >= 1 and row["fit_time_s"] > 0
    assert summary["lorenz_success_5pct_defaults"] == rows[("lorenz 5%", "ours defaults")]["success"]
    assert summary["lorenz_success_10pct_defaults"] == rows[("lorenz 10%", "ours defaults")]["success"]
    assert summary["lorenz_coef_err_5pct_defaults"] == rows[("lorenz 5%", "ours defaults")]["coef_err_median"]
    assert summary["pysindy_lorenz_success_5pct_defaults"] == rows[("lorenz 5%", "pysindy defaults")]["success"]
    assert summary["burgers_success_10pct"] == rows[("burgers 10%", "ours defaults")]["success"]
    assert summary["kdv_success_25pct"] == rows[("kdv 25%", "ours defaults")]["success"]
    assert summary["pysindy_kdv_success_25pct_weak_tuned"] == rows[("kdv 25%", "pysindy weak tuned")]["success"]
    # Tuned rows name the winning threshold; the defaults rows have none.
    assert rows[("lorenz 5%", "ours tuned")]["threshold"] > 0
    assert rows[("lorenz 5%", "ours defaults")]["threshold"] is None
    # Timing rows: the ratios are what they claim.
    weak = {c["method"].split()[0]: c for c in result["cases"] if c["case"].startswith("timing weak")}
    assert summary["weak_speedup_vs_pysindy"] == weak["pysindy"]["ours_speedup"]
    assert summary["weak_speedup_vs_pysindy"] == pytest.approx(weak["pysindy"]["best_s"] / weak["ours"]["best_s"])
    plain = {c["method"].split()[0]: c for c in result["cases"] if c["case"].startswith("timing plain")}
    assert summary["plain_fit_time_ratio"] == pytest.approx(plain["ours"]["best_s"] / plain["pysindy"]["best_s"])


@pytest.mark.slow
def test_solvers_benchmark_contract(tmp_path):
    """The quick solver benchmark with a tiny training budget (minutes: slow)."""
    pytest.importorskip("pyamg")
    path = tmp_path / "solvers.json"
    assert main(["solvers", "--quick", "--budget", "5", "--json", str(path)]) == 0
    result = json.loads(path.read_text())
    assert result["benchmark"] == "solvers" and result["quick"] is True
    summary = result["summary"]
    assert set(summary) >= {"dcdm_iters_64", "icpcg_iters_64", "dcdm_iter_ratio_vs_icpcg", "dcdm_converged_fraction",
                            "dcdm_iter_growth", "dcdm_single_grid_iter_growth", "train_s", "cg_speedup_vs_scipy",
                            "cg_speedup_vs_scipy_worst"}
    rows = {(c["system"], c["rhs"], c["method"]): c for c in result["cases"]}
    assert {m for _, _, m in rows} == {"dcdm", "dcdm_single_grid", "scipy_cg", "sciml_cg", "ic0_pcg", "amg_pcg"}
    cg_speedups = [rows[(s, k, "scipy_cg")]["s_1e-6"] / case["s_1e-6"]
                   for (s, k, m), case in rows.items() if m == "sciml_cg"]
    assert summary["cg_speedup_vs_scipy_worst"] == pytest.approx(min(cg_speedups))
    assert summary["icpcg_iters_64"] == rows[("box3d_32", "randn", "ic0_pcg")]["iters_1e-6"]
    assert summary["dcdm_iters_64"] == rows[("box3d_32", "randn", "dcdm")]["iters_1e-6"]
    if summary["dcdm_iters_64"] is not None:
        assert summary["dcdm_iter_ratio_vs_icpcg"] == pytest.approx(
            summary["dcdm_iters_64"] / summary["icpcg_iters_64"])
    assert summary["dcdm_iter_ratio_vs_icpcg_worst"] >= summary["dcdm_iter_ratio_vs_icpcg"]
    dcdm = [c for c in result["cases"] if c["method"] == "dcdm"]
    assert summary["dcdm_converged_fraction"] == sum(c["converged"] for c in dcdm) / len(dcdm)
    for case in result["cases"]:
        if not case["method"].startswith("dcdm"):  # the anchors are what they claim
            assert case["converged"]
        if case["converged"]:  # 1e-4 comes no later than 1e-6
            assert case["iters_1e-4"] <= case["iters_1e-6"] and case["s_1e-4"] <= case["s_1e-6"]
    for (system, kind, method), case in rows.items():
        if method == "sciml_cg":  # the same method as scipy's, to rounding
            assert abs(case["iters_1e-6"] - rows[(system, kind, "scipy_cg")]["iters_1e-6"]) <= 2
        if method == "ic0_pcg":
            assert case["iters_1e-6"] < rows[(system, kind, "scipy_cg")]["iters_1e-6"]
            assert rows[(system, kind, "amg_pcg")]["iters_1e-6"] < case["iters_1e-6"]
            assert rows[(system, kind, "amg_pcg")]["setup_s"] > 0


def test_gpu_solver_benchmark_code_path_on_the_cpu(capsys):
    """The GPU solver comparison's code, run on the CPU at 8^3 (the CG anchors
    are what they claim: converged, and our CG on tensors takes scipy's iterations)."""
    import numpy as np
    import scipy.sparse.linalg as spla
    import torch

    from benchmarks import _solvers_cuda
    from solvers.problems import RHS_KINDS, poisson, rhs

    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match="needs a CUDA GPU"):
            main(["solvers", "--device", "cuda"])
    with pytest.raises(SystemExit, match="--model is for --device cuda"):
        main(["solvers", "--model", "model.pt"])
    result = _solvers_cuda._run("cpu", 8, budget=1.0, seed=0, model_path=None)
    rows = {(c["rhs"], c["method"]): c for c in result["cases"]}
    dcdm_methods = ("dcdm", "dcdm_keep4", "dcdm_single_grid_keep2")
    assert set(rows) == {(kind, m) for kind in RHS_KINDS for m in (*dcdm_methods, "sciml_cg")}
    problem = poisson((8, 8, 8))
    for kind in RHS_KINDS:
        b = rhs(problem, kind, random_state=1)
        count = []
        spla.cg(problem.A, b, rtol=_solvers_cuda.RTOL, atol=0.0, callback=count.append)
        assert abs(rows[(kind, "sciml_cg")]["iters"] - len(count)) <= 1
        for method in (*dcdm_methods, "sciml_cg"):
            case = rows[(kind, method)]
            assert case["converged"] and case["rel_residual"] <= 1.0001e-6 and case["s"] > 0
    summary = result["summary"]
    assert summary["gpu_cg_anchor"] == "sciml_cg" and summary["gpu_grid"] == 8
    speedups = [rows[(kind, "sciml_cg")]["s"] / rows[(kind, "dcdm")]["s"] for kind in RHS_KINDS]
    assert summary["gpu_dcdm_speedup_vs_cg"] == pytest.approx(min(speedups))
    assert summary["gpu_dcdm_iters"] == rows[("randn", "dcdm")]["iters"] and np.isfinite(summary["gpu_train_s"])


@pytest.mark.slow
def test_pinns_benchmark_contract(tmp_path):
    """The quick PINN benchmark, DeepXDE included (about 3 minutes: slow)."""
    pytest.importorskip("deepxde")
    path = tmp_path / "pinns.json"
    assert main(["pinns", "--quick", "--json", str(path)]) == 0
    result = json.loads(path.read_text())
    assert result["benchmark"] == "pinns" and result["quick"] is True
    summary = result["summary"]
    assert set(summary) >= {"burgers_rel_l2", "burgers_time_ratio_vs_deepxde", "lorenz_max_param_err",
                            "lorenz_time_s", "kfield_rel_err", "fisher_symbolic_recovered"}
    rows = {(c["problem"], c["method"]): c for c in result["cases"]}
    assert summary["burgers_rel_l2"] == rows[("P1 burgers", "pinns")]["error"]
    assert summary["kfield_rel_err"] == rows[("P3 k(x)", "pinns")]["error"]
    assert 0 <= summary["fisher_symbolic_recovered"] <= 1
    # the budgets hold (one round of overrun at most)
    assert rows[("P2 lorenz", "pinns")]["wall_s"] < 40 + 10
    # the noise floor row is the ODE's own maximum-likelihood fit: below 5 % at 5 % noise
    assert rows[("P2 lorenz", "mle (ODE shooting)")]["error"] < 0.05
    # P4's noise floor: least squares with the form of f given, on the same data
    floor = rows[("P4 fisher f(u)", "least squares (ODE, form given)")]
    assert floor["error"] < 0.05 and summary["fisher_least_squares_f_rel_err"] == floor["error"]
    assert summary["fisher_noise"] == 0.015


def test_fisher_least_squares_recovers_the_reaction_from_clean_data():
    """The P4 noise-floor estimator: on noise-free observations the coefficients of f = u - u^2 come back
    to the accuracy of its spline initial condition and 201-cell solver."""
    from benchmarks.pinns import fisher_least_squares
    from pinns.data import fisher_observations

    X, y = fisher_observations(0.0)
    a, b = fisher_least_squares(X, y)
    assert abs(a - 1) < 2e-3 and abs(b + 1) < 2e-3
