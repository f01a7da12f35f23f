"""CSR SpMV/SpMM on the CPU: sciml.sparse against scipy.sparse and torch.sparse_csr.

Matrices: (a) the 2-D Poisson 5-point matrix on a 1000 x 1000 grid (1M rows,
5M nonzeros), (b) the 3-D Poisson 7-point matrix on 100^3, (c) a random
1M x 1M matrix with 10 nonzeros per row (gather-latency bound).  SpMV on
all three, transposed SpMV and SpMM with k = 16 and 64 on (a).

Each row reports the best time over the repeats, GFLOP/s (2 flops per
nonzero and column), the effective bandwidth of the compulsory traffic
(values + indices + row pointers + x + y, each touched once) and its
fraction of this machine's read bandwidth.  The methods and a bandwidth
probe run round-robin within each case, so noise on a shared machine hits
them alike and each fraction compares like with like.

The sizes are the issue's.  On hosts whose shared L3 is 100 MB or more
(ours reports 105 MB), (a) and (b) are smaller than the last-level cache;
the probe's 512 MB sweep between calls evicts them, so every timed call
starts from memory rather than from a cache warmed by the previous one.
``--quick`` keeps the sizes (anything smaller would measure the cache) and
drops repeats and the float32 and k = 16 cases.  ``--scale`` shrinks every
matrix for smoke tests; its figures then measure the cache, not memory.

Small products (op ``spmv-small``, ``spmm-small``): 2-D Poisson matrices of
16^2 to 128^2 cells (1k to 81k nonzeros), in cache, with k = 1 and 8.  They
time the serial and the parallel CPU kernel directly (the kernels only, 50
products per timed call), where :data:`sciml.sparse._cpu.SERIAL_WORK`
chooses between them, and the public ``spmv``/``spmm`` against scipy
(per-call validation included).  Summary: ``serial_crossover_work``, the
smallest product (nonzeros x k) among these at which the parallel kernel
beats the serial one (compare with ``serial_work``, the threshold in use),
and ``small_spmv_speedup_vs_scipy``, scipy's time over ours, the median
over the small SpMV cases.
"""

from __future__ import annotations

import numpy as np
import torch

from sciml import data
from sciml.sparse import _api, _cpu, spmm, spmv, to_torch_csr

from ._harness import BandwidthProbe, emit, machine_info, time_calls

TABLE_COLUMNS = ["case", "op", "dtype", "k", "method", "ms", "gflops", "gbs", "bw_fraction", "probe_gbs", "ours_speedup"]


def add_arguments(parser):
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="cpu: against scipy and torch CPU; cuda: against cuSPARSE (torch) and CuPy",
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="fraction of the default row counts (smoke tests only; < 1 measures cache)",
    )


def _matrices(scale):
    side2 = max(2, round(1000 * scale**0.5))
    side3 = max(2, round(100 * scale ** (1 / 3)))
    n_random = max(10, round(1_000_000 * scale))
    return {
        f"poisson2d-{side2}^2": lambda: data.poisson_2d(side2),
        f"poisson3d-{side3}^3": lambda: data.poisson_3d(side3),
        f"random-{n_random}-10/row": lambda: data.random_csr(n_random, nnz_per_row=10, random_state=0),
    }


def _traffic_bytes(A, k):
    """Compulsory memory traffic of one product with k dense columns."""
    itemsize = A.data.dtype.itemsize
    structure = A.nnz * (itemsize + A.indices.dtype.itemsize) + A.indptr.nbytes
    return structure + (A.shape[0] + A.shape[1]) * k * itemsize


def _methods(A, op, k, rng):
    """Callables per method for one product, and the operand they share."""
    dtype = A.dtype
    n_in = A.shape[0] if op == "rspmv" else A.shape[1]
    n_out = A.shape[1] if op == "rspmv" else A.shape[0]
    shape_in = (n_in,) if k == 1 else (n_in, k)
    x = rng.standard_normal(shape_in).astype(dtype)
    out = np.empty((n_out,) if k == 1 else (n_out, k), dtype=dtype)
    transpose = op == "rspmv"
    if k == 1:
        ours = lambda: spmv(A, x, transpose=transpose, out=out)  # noqa: E731
    else:
        ours = lambda: spmm(A, x, out=out)  # noqa: E731
    At = A.T.tocsr() if transpose else None  # what a scipy user would do without it
    scipy_op = (lambda: A.T @ x) if transpose else (lambda: A @ x)
    methods = {"sciml": ours, "scipy": scipy_op}
    if not transpose:
        # torch's CSR on the CPU, zero-copy from the same arrays.
        tA = to_torch_csr(A)
        tx = torch.from_numpy(x)
        methods["torch"] = (lambda: torch.mv(tA, tx)) if k == 1 else (lambda: tA @ tx)
    else:
        methods["scipy(A.T.tocsr() once)"] = lambda: At @ x
    return methods


def _check_agreement(methods, rtol):
    results = {name: np.asarray(fn()) for name, fn in methods.items()}
    ref = results["scipy"]
    scale = np.abs(ref).max() + 1e-30
    for name, value in results.items():
        err = np.abs(value - ref).max() / scale
        if not err <= rtol:
            raise AssertionError(f"{name} disagrees with scipy: relative error {err:.2e}")


def run(quick=False, scale=1.0):
    """Run the benchmark and return the JSON-contract dict."""
    repeat = 10 if quick else 20
    rng = np.random.default_rng(0)
    probe = BandwidthProbe()
    bandwidths = []

    plan = []  # (matrix name, op, dtype, k)
    names = list(_matrices(scale))
    for name in names:
        plan.append((name, "spmv", np.float64, 1))
    plan.append((names[0], "rspmv", np.float64, 1))
    if not quick:
        plan.append((names[0], "spmv", np.float32, 1))
        plan.append((names[0], "spmm", np.float64, 16))
    plan.append((names[0], "spmm", np.float64, 64))

    builders = _matrices(scale)
    cache = {}
    cases = []
    for name, op, dtype, k in plan:
        key = (name, dtype)
        if key not in cache:
            cache[key] = builders[name]().astype(dtype)
        A = cache[key]
        methods = _methods(A, op, k, rng)
        _check_agreement(methods, rtol=1e-4 if dtype == np.float32 else 1e-10)
        flops = 2.0 * A.nnz * k
        traffic = _traffic_bytes(A, k)
        # The slow SpMM anchors take seconds per call: fewer rounds there.
        timings = time_calls({**methods, "bandwidth probe": probe}, repeat=repeat if k == 1 else max(3, repeat // 4))
        bandwidth = probe.nbytes / timings.pop("bandwidth probe")[0]
        bandwidths.append(bandwidth)
        ours_best = timings["sciml"][0]
        for method, (best, median) in timings.items():
            cases.append({
                "case": name,
                "op": op,
                "dtype": np.dtype(dtype).name,
                "k": k,
                "method": method,
                "rows": A.shape[0],
                "nnz": int(A.nnz),
                "ms": best * 1e3,
                "ms_median": median * 1e3,
                "gflops": flops / best / 1e9,
                "gbs": traffic / best / 1e9,
                "bw_fraction": traffic / best / bandwidth,
                "probe_gbs": bandwidth / 1e9,
                "ours_speedup": best / ours_best,
            })

    def ratio(case, op, k, method, dtype="float64"):
        rows = {c["method"]: c["ms"] for c in cases
                if c["case"] == case and c["op"] == op and c["k"] == k and c["dtype"] == dtype}
        return rows[method] / rows["sciml"]

    a = names[0]
    ours_a = next(c for c in cases if c["case"] == a and c["op"] == "spmv" and c["method"] == "sciml"
                  and c["dtype"] == "float64")
    summary = {
        "spmv_speedup_vs_scipy": ratio(a, "spmv", 1, "scipy"),
        "spmv_bandwidth_fraction": ours_a["bw_fraction"],
        "spmm_speedup_vs_scipy": ratio(a, "spmm", 64, "scipy"),
        "spmm_speedup_vs_torch": ratio(a, "spmm", 64, "torch"),
        "spmv_random_speedup_vs_scipy": ratio(names[2], "spmv", 1, "scipy"),
        "rspmv_speedup_vs_scipy": ratio(a, "rspmv", 1, "scipy"),
        "rspmv_speedup_vs_scipy_pretransposed": ratio(a, "rspmv", 1, "scipy(A.T.tocsr() once)"),
    }
    small = _small_cases(repeat=20 if quick else 60)
    cases += small
    summary.update(_small_summary(small))
    machine = machine_info()
    machine["read_bandwidth_gbs"] = float(np.median(bandwidths)) / 1e9
    return {"benchmark": "spmv", "quick": bool(quick), "machine": machine, "cases": cases, "summary": summary}


SMALL_SIDES = (16, 24, 32, 45, 64, 90, 128)
_CALLS = 50  # products per timed call: microsecond products, millisecond timings


def _small_cases(repeat):
    """Serial against parallel kernel, and ours against scipy, on small in-cache products."""
    cases = []
    rng = np.random.default_rng(1)
    n_threads = _cpu.num_threads()
    for side in SMALL_SIDES:
        A = data.poisson_2d(side)
        csr = _api._as_csr(A)
        indptr, indices = _api._unsigned_structure(csr)
        bounds = _cpu.row_partition(A.indptr, n_threads)
        for k in (1, 8):
            x = rng.standard_normal(A.shape[1] if k == 1 else (A.shape[1], k))
            out = np.empty(A.shape[0] if k == 1 else (A.shape[0], k))
            serial, parallel = (_cpu.csr_spmv_serial, _cpu.csr_spmv) if k == 1 else (_cpu.csr_spmm_serial,
                                                                                     _cpu.csr_spmm)
            product = spmv if k == 1 else spmm

            def repeated(fn):
                def run():
                    for _ in range(_CALLS):
                        fn()
                return run

            methods = {
                "serial kernel": repeated(lambda: serial(indptr, indices, A.data, x, out, 0.0)),
                "parallel kernel": repeated(lambda: parallel(indptr, indices, A.data, x, out, bounds, 0.0)),
                "sciml": repeated(lambda: product(A, x, out=out)),
                "scipy": repeated(lambda: A @ x),
            }
            _check_agreement({"sciml": lambda: product(A, x), "scipy": lambda: A @ x}, rtol=1e-12)
            timings = time_calls(methods, repeat=repeat)
            for method, (best, median) in timings.items():
                cases.append({
                    "case": f"poisson2d-{side}^2",
                    "op": "spmv-small" if k == 1 else "spmm-small",
                    "dtype": "float64",
                    "k": k,
                    "method": method,
                    "rows": A.shape[0],
                    "nnz": int(A.nnz),
                    "ms": best * 1e3 / _CALLS,
                    "ms_median": median * 1e3 / _CALLS,
                    "gflops": 2.0 * A.nnz * k * _CALLS / best / 1e9,
                    "ours_speedup": best / timings["sciml"][0],
                })
    return cases


def _small_summary(cases):
    def best_ms(case, k, method):
        return next(c["ms"] for c in cases if c["case"] == case and c["k"] == k and c["method"] == method)

    works, crossover = sorted({(c["nnz"] * c["k"], c["case"], c["k"]) for c in cases}), None
    for work, case, k in works:
        if best_ms(case, k, "parallel kernel") < best_ms(case, k, "serial kernel"):
            crossover = work
            break
    spmv_cases = sorted({c["case"] for c in cases if c["k"] == 1})
    return {
        "serial_crossover_work": crossover,
        "serial_work": _cpu.SERIAL_WORK,
        "small_spmv_speedup_vs_scipy": float(np.median(
            [best_ms(c, 1, "scipy") / best_ms(c, 1, "sciml") for c in spmv_cases])),
    }


def main(args, json_path=None):
    if args.device == "cuda":
        from ._spmv_cuda import TABLE_COLUMNS as columns
        from ._spmv_cuda import run_cuda

        result = run_cuda(quick=args.quick, scale=args.scale)
    else:
        result, columns = run(quick=args.quick, scale=args.scale), TABLE_COLUMNS
    emit(result, table_columns=columns, json_path=json_path)
    return result
