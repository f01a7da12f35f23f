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

Inputs are scipy.sparse CSR arrays/matrices or torch sparse CSR tensors for
``A``, and numpy arrays or CPU torch tensors for the dense operand (used
zero-copy; the result has the dense operand's type).  With torch tensors
that require grad, products are differentiable in the dense operand and,
through ``values=``, in A's nonzeros.
"""

from ._api import check_csr, rspmv, spmm, spmv, to_torch_csr

__all__ = ["spmv", "rspmv", "spmm", "check_csr", "to_torch_csr"]
