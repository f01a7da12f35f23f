"""The sparse core: CSR products shared by every model family.

All SpMV/SpMM in the toolkit goes through this package, so one kernel
improvement speeds up every family.

Functions
---------
spmv(A, x, *, transpose=False, out=None, values=None, backend="auto")
    ``A @ x`` or ``A.T @ x``.
rspmv(A, x, *, out=None, values=None, backend="auto")
    ``A.T @ x``.
spmm(A, X, *, transpose=False, out=None, values=None, backend="auto")
    ``A @ X`` or ``A.T @ X`` for a dense ``X`` with k columns.
check_csr(A)
    Full O(nnz) structural validation for untrusted matrices.
to_torch_csr(A, *, device=None)
    A scipy CSR matrix as a torch sparse CSR tensor (zero-copy on the CPU).

Inputs are scipy.sparse CSR arrays/matrices, torch sparse CSR tensors or GPU
CSR matrices (CuPy) for ``A``, and numpy arrays, torch tensors, CuPy arrays or
numba device arrays for the dense operand, on A's device (used zero-copy; the
result has the dense operand's type).  CPU inputs run the numba kernels, CUDA
inputs the numba-cuda kernels (``numba.cuda`` is imported on first use).  With torch tensors
that require grad, products are differentiable in the dense operand and,
through ``values=``, in A's nonzeros (first order: the backward pass is not
itself differentiable).
"""

from ._api import check_csr, rspmv, spmm, spmv, to_torch_csr

__all__ = ["spmv", "rspmv", "spmm", "check_csr", "to_torch_csr"]
