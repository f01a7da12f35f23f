"""Compile every CUDA kernel of sciml.sparse to PTX for a Hopper GPU, without a GPU.

The CUDA simulator runs kernels as Python, so it lets through what only the
real compiler refuses (typing errors, a shared-array size that is not a
constant) and says nothing of register spills. This compiles each kernel
with ``numba.cuda.compile_ptx`` for float32/float64 values and int32/int64
indices and prints its PTX size, atomics and local-memory (spill) uses;
it fails if any kernel does not compile or spills.

Needs libNVVM (a CUDA toolkit, e.g. /usr/local/cuda); no GPU. numba asks
the current device for its compute capability while compiling, so that
query is answered with 9.0 here: a development check, not part of CI.

Usage: python .ci/cuda_ptx.py
"""

import sys
import types as pytypes
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numba.cuda.api  # noqa: E402
import numba.cuda.dispatcher  # noqa: E402
import numpy as np  # noqa: E402
from numba import cuda, types  # noqa: E402

_HOPPER = pytypes.SimpleNamespace(compute_capability=(9, 0))
numba.cuda.api.get_current_device = numba.cuda.dispatcher.get_current_device = lambda: _HOPPER

from sciml.sparse import _cuda  # noqa: E402


def main():
    def vec(t):
        return types.Array(t, 1, "C")

    def mat(t):
        return types.Array(t, 2, "C")

    failures = []
    i64 = types.int64
    for value_dtype, v in ((np.float32, types.float32), (np.float64, types.float64)):
        for index_dtype, i in ((np.int32, types.int32), (np.int64, types.int64)):
            merge = _cuda._spmv_merge_kernel(np.dtype(value_dtype), np.dtype(index_dtype),
                                             _cuda.MERGE_BLOCK, _cuda.MERGE_ITEMS)
            kernels = {
                "spmv_scalar": (_cuda._spmv_scalar, (vec(i), vec(i), vec(v), vec(v), vec(v), v)),
                "spmv_vector": (_cuda._spmv_vector_kernel(np.dtype(value_dtype), _cuda.LANES),
                                (vec(i), vec(i), vec(v), vec(v), vec(v), v)),
                "merge_partition": (_cuda._merge_partition, (vec(i), i64, vec(i64), vec(v), v)),
                "spmv_merge": (merge, (vec(i), vec(i), vec(v), vec(v), vec(v), vec(i64), v)),
                "csr_summary": (_cuda._csr_summary_kernel, (vec(i), vec(i64))),
                "rspmv": (_cuda._rspmv, (vec(i), vec(i), vec(v), vec(v), vec(v))),
                "spmm": (_cuda._spmm, (vec(i), vec(i), vec(v), mat(v), mat(v), v)),
                "spmm_balanced": (_cuda._spmm_balanced, (vec(i), vec(i), vec(v), mat(v), mat(v), i64, v)),
                "rspmm": (_cuda._rspmm, (vec(i), vec(i), vec(v), mat(v), mat(v))),
                "rspmm_balanced": (_cuda._rspmm_balanced, (vec(i), vec(i), vec(v), mat(v), mat(v), i64)),
                "sddmm": (_cuda._sddmm, (vec(i), vec(i), mat(v), mat(v), vec(v), v)),
                "sddmm_balanced": (_cuda._sddmm_balanced, (vec(i), vec(i), mat(v), mat(v), vec(v), i64, v)),
                "zero_1d": (_cuda._zero_1d, (vec(v), v)),
                "zero_2d": (_cuda._zero_2d, (mat(v), v)),
            }
            for name, (kernel, signature) in kernels.items():
                label = f"{name} {np.dtype(value_dtype).name}/{np.dtype(index_dtype).name}"
                try:
                    ptx, _ = cuda.compile_ptx(kernel.py_func, signature, cc=(9, 0))
                except Exception as error:  # report every kernel, then fail
                    failures.append(f"{label}: {type(error).__name__}: {error}")
                    continue
                spills = ptx.count(".local")
                print(f"{label:40s} {len(ptx):7d} chars  atomics {ptx.count('atom.'):2d}  local {spills}")
                if spills:
                    failures.append(f"{label}: {spills} local-memory uses (spills)")
    if failures:
        print("\n".join(["FAILED:", *failures]), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
