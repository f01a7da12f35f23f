"""``python -m benchmarks spmv --device cuda``: our numba-cuda kernels against cuSPARSE.

cuSPARSE is reached through ``torch.sparse_csr`` on CUDA (``torch.mv`` and
``@``), and through CuPy when it is installed.  Matrices are sized well
beyond the GPU's L2 cache: (a) the 2-D Poisson matrix on a 2048 x 2048 grid
(4.2M rows), (b) a power-law matrix with 4M rows and 10 nonzeros per row on
average (irregular rows), plus SpMM with k = 16 on both.  The device's
bandwidth is measured in the same run by a device-to-device copy (bytes read
plus bytes written, per second).  Times come from CUDA events around a
batch of calls, so they include launch overhead but not host-side waits.
"""

from __future__ import annotations

import numpy as np
import torch

from sciml import data
from sciml.sparse import _cuda, spmm, spmv, to_torch_csr

from ._harness import machine_info

TABLE_COLUMNS = ["case", "op", "k", "method", "ms", "gbs", "bw_fraction", "ours_speedup"]


def _event_time(fn, calls):
    """Best seconds per call over 5 batches of `calls` calls, CUDA events."""
    fn()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(5):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(calls):
            fn()
        end.record()
        end.synchronize()
        best = min(best, start.elapsed_time(end) / 1e3 / calls)
    return best


def _copy_bandwidth(nbytes=2**30):
    src = torch.empty(nbytes // 4, dtype=torch.float32, device="cuda")
    dst = torch.empty_like(src)
    return 2 * nbytes / _event_time(lambda: dst.copy_(src), calls=10)


def _traffic_bytes(A, k):
    itemsize = A.data.dtype.itemsize
    structure = A.nnz * (itemsize + A.indices.dtype.itemsize) + A.indptr.nbytes
    return structure + (A.shape[0] + A.shape[1]) * k * itemsize


def _methods(A, k):
    tA = to_torch_csr(A, device="cuda")
    gen = torch.Generator(device="cuda").manual_seed(0)
    shape = (A.shape[1],) if k == 1 else (A.shape[1], k)
    x = torch.randn(shape, dtype=torch.float64, device="cuda", generator=gen)
    out = torch.empty((A.shape[0],) + shape[1:], dtype=torch.float64, device="cuda")
    methods = {}
    if k == 1:
        methods["sciml"] = lambda: spmv(tA, x, out=out)
        # The kernels behind the public call, without its host-side checks.
        from numba import cuda

        ip, ii, dd = (cuda.as_cuda_array(v, sync=False) for v in (tA.crow_indices(), tA.col_indices(), tA.values()))
        xv, ov = cuda.as_cuda_array(x, sync=False), cuda.as_cuda_array(out, sync=False)
        stream = cuda.external_stream(torch.cuda.current_stream().cuda_stream)
        # The merge kernel's workspace, allocated once (the view keeps the tensor alive).
        workspace = cuda.as_cuda_array(
            torch.empty(_cuda.merge_workspace_size(A.shape[0], A.nnz), dtype=torch.int64, device="cuda"), sync=False
        )
        for kernel in ("vector", "merge", "scalar"):
            methods[f"sciml kernel={kernel}"] = (
                lambda kernel=kernel: _cuda.spmv(ip, ii, dd, xv, ov, kernel=kernel, workspace=workspace, stream=stream)
            )
        methods["cusparse (torch)"] = lambda: torch.mv(tA, x)
    else:
        methods["sciml"] = lambda: spmm(tA, x, out=out)
        methods["cusparse (torch)"] = lambda: tA @ x
    try:
        import cupy
        import cupyx.scipy.sparse as cusp
    except ImportError:
        return methods, out
    cA = cusp.csr_matrix(
        (cupy.asarray(tA.values()), cupy.asarray(tA.col_indices()), cupy.asarray(tA.crow_indices())),
        shape=A.shape,
    )
    cx = cupy.asarray(x)
    methods["cusparse (cupy)"] = lambda: cA @ cx
    return methods, out


def run_cuda(quick=False, scale=1.0):
    """Run the GPU benchmark and return the JSON-contract dict."""
    if not torch.cuda.is_available():
        raise SystemExit("spmv --device cuda needs a CUDA GPU; torch.cuda.is_available() is False")
    calls = 20 if quick else 100
    bandwidth = _copy_bandwidth()
    side = max(2, round(2048 * scale**0.5))
    n_irregular = max(10, round(4_000_000 * scale))
    matrices = {
        f"poisson2d-{side}^2": data.poisson_2d(side),
        f"power-law-{n_irregular}": data.power_law_csr(n_irregular, mean_nnz_per_row=10, random_state=0),
    }
    plan = [(name, k) for k in (1, 16) for name in matrices]
    cases = []
    for name, k in plan:
        A = matrices[name]
        methods, out = _methods(A, k)
        reference = None
        for method, fn in methods.items():
            fn()
            result = out if method.startswith("sciml") else fn()
            # torch tensors and CuPy arrays (the cupy anchor) alike, as float64 numpy
            result = np.asarray(result.get() if hasattr(result, "get") else result.double().cpu(), dtype=np.float64)
            reference = result if reference is None else reference
            err = np.abs(result - reference).max() / (np.abs(reference).max() + 1e-30)
            if not err <= 1e-10:
                raise AssertionError(f"{method} disagrees with sciml on {name}: relative error {err:.2e}")
        traffic = _traffic_bytes(A, k)
        times = {method: _event_time(fn, calls) for method, fn in methods.items()}
        for method, best in times.items():
            cases.append({
                "case": name, "op": "spmv" if k == 1 else "spmm", "k": k, "method": method,
                "rows": A.shape[0], "nnz": int(A.nnz), "ms": best * 1e3,
                "gbs": traffic / best / 1e9, "bw_fraction": traffic / best / bandwidth,
                "ours_speedup": best / times["sciml"],
            })

    def row(case, k, method):
        return next(c for c in cases if c["case"] == case and c["k"] == k and c["method"] == method)

    poisson, irregular = list(matrices)
    summary = {
        "gpu_spmv_bandwidth_fraction": row(poisson, 1, "sciml")["bw_fraction"],
        "gpu_spmv_speedup_vs_cusparse": row(poisson, 1, "cusparse (torch)")["ms"] / row(poisson, 1, "sciml")["ms"],
        "gpu_spmv_irregular_speedup_vs_cusparse": (
            row(irregular, 1, "cusparse (torch)")["ms"] / row(irregular, 1, "sciml")["ms"]
        ),
        "gpu_spmm_speedup_vs_cusparse": row(poisson, 16, "cusparse (torch)")["ms"] / row(poisson, 16, "sciml")["ms"],
        "gpu_spmm_irregular_speedup_vs_cusparse": (
            row(irregular, 16, "cusparse (torch)")["ms"] / row(irregular, 16, "sciml")["ms"]
        ),
    }
    machine = machine_info()
    machine["gpu"] = torch.cuda.get_device_name()
    machine["copy_bandwidth_gbs"] = bandwidth / 1e9
    return {"benchmark": "spmv", "quick": bool(quick), "device": "cuda", "machine": machine,
            "cases": cases, "summary": summary}
