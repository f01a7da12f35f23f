"""Public CSR products: validation, dispatch to the CPU or CUDA kernels, autograd.

Every input is described once (:func:`_operand`: library, backend, device,
shape, dtype, contiguity), validated, and then viewed zero-copy in the
backend's own array type: numpy arrays for the numba CPU kernels, numba
device arrays for the numba-cuda kernels.  The result is allocated in the
dense operand's library (numpy, torch, CuPy, or numba device arrays).
"""

from __future__ import annotations

import contextlib
import sys
import warnings
import weakref
from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp
import torch
from torch.autograd.function import once_differentiable

from . import _cpu

__all__ = ["spmv", "rspmv", "spmm", "check_csr", "to_torch_csr"]

_VALUE_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_INDEX_DTYPES = (np.dtype(np.int32), np.dtype(np.int64))
_UNSIGNED = {np.dtype(np.int32): np.uint32, np.dtype(np.int64): np.uint64}
_TORCH_TO_NUMPY = {
    torch.float32: np.dtype(np.float32),
    torch.float64: np.dtype(np.float64),
    torch.int32: np.dtype(np.int32),
    torch.int64: np.dtype(np.int64),
}
_NUMPY_TO_TORCH = {v: k for k, v in _TORCH_TO_NUMPY.items()}
_BACKENDS = ("auto", "cpu", "cuda")
# Transposed products scatter each thread's rows into a private buffer; more
# buffer memory than this (or than A itself, if larger) means fewer threads.
_SCRATCH_BUDGET_BYTES = 64 * 2**20


# ---------------------------------------------------------------- operands


@dataclass(frozen=True)
class _Operand:
    """What sciml.sparse needs to know about one array argument."""

    lib: str  # "numpy", "torch", "numba" (device array), "cupy" or "cai"
    backend: str  # "cpu" or "cuda"
    device: torch.device | None  # torch tensors only
    shape: tuple
    dtype: object  # np.dtype, or a name for dtypes we do not support
    contiguous: bool


def _is_numba_device_array(x):
    # Only look if numba.cuda is loaded: whoever made the array imported it.
    return "numba.cuda" in sys.modules and type(x).__module__.startswith("numba.cuda") and hasattr(
        x, "copy_to_host"
    )


def _c_contiguous(shape, strides, itemsize):
    expected = itemsize
    for size, stride in zip(reversed(shape), reversed(strides)):
        if size > 1 and stride != expected:
            return False
        expected *= size
    return True


def _operand(x, name):
    """Describe an array argument; TypeError/ValueError for what we refuse."""
    if isinstance(x, np.ndarray):
        return _Operand("numpy", "cpu", None, x.shape, x.dtype, x.flags.c_contiguous)
    if isinstance(x, torch.Tensor):
        if x.layout != torch.strided:
            raise TypeError(f"{name} must be a dense tensor, got layout {x.layout}")
        if x.device.type not in ("cpu", "cuda"):
            raise ValueError(f"{name} is on device {x.device}; sciml.sparse runs on CPU and CUDA devices")
        dtype = _TORCH_TO_NUMPY.get(x.dtype, str(x.dtype))
        return _Operand("torch", x.device.type, x.device, tuple(x.shape), dtype, x.is_contiguous())
    if _is_numba_device_array(x):
        return _Operand("numba", "cuda", None, tuple(x.shape), np.dtype(x.dtype), bool(x.is_c_contiguous()))
    cai = getattr(x, "__cuda_array_interface__", None)
    if cai is not None:
        dtype = np.dtype(cai["typestr"])
        shape = tuple(cai["shape"])
        strides = cai.get("strides")
        contiguous = strides is None or _c_contiguous(shape, strides, dtype.itemsize)
        lib = "cupy" if type(x).__module__.startswith("cupy") else "cai"
        return _Operand(lib, "cuda", None, shape, dtype, contiguous)
    raise TypeError(
        f"{name} must be a numpy.ndarray, a torch.Tensor or a CUDA array "
        f"(__cuda_array_interface__), got {type(x).__name__}"
    )


def _cuda():
    """numba.cuda, imported on first CUDA use only."""
    from numba import cuda

    return cuda


def _view(x, op):
    """Zero-copy view of x for op.backend: numpy (CPU) or numba device array."""
    if op.lib == "numpy" or op.lib == "numba":
        return x
    if op.lib == "torch":
        t = x.detach()
        return t.numpy() if op.backend == "cpu" else _cuda().as_cuda_array(t, sync=False)
    # Work is queued on the caller's current stream (see _stream), so no sync.
    return _cuda().as_cuda_array(x, sync=False)


def _empty(op, shape, dtype):
    """A new array in op's library and device."""
    if op.lib == "numpy":
        return np.empty(shape, dtype=dtype)
    if op.lib == "torch":
        return torch.empty(shape, dtype=_NUMPY_TO_TORCH[dtype], device=op.device)
    if op.lib == "cupy":
        import cupy

        return cupy.empty(shape, dtype=dtype)
    return _cuda().device_array(shape, dtype=dtype)


def _stream(op):
    """The stream to launch on: the caller's current torch or CuPy stream."""
    if op.backend != "cuda":
        return None
    cuda = _cuda()
    if op.lib == "torch":
        return cuda.external_stream(torch.cuda.current_stream(op.device).cuda_stream)
    if op.lib == "cupy":
        import cupy

        return cuda.external_stream(cupy.cuda.get_current_stream().ptr)
    return 0


def _device_context(op):
    """Make numba's current CUDA device the tensor's (multi-GPU machines)."""
    if op.lib == "torch" and op.backend == "cuda" and op.device.index is not None:
        return _cuda().gpus[op.device.index]
    return contextlib.nullcontext()


# ---------------------------------------------------------------- the matrix


@dataclass(frozen=True)
class _CSR:
    """A validated CSR matrix, its arrays viewed for its backend."""

    indptr: object
    indices: object
    data: object
    shape: tuple[int, int]
    nnz: int
    dtype: np.dtype
    backend: str
    device: torch.device | None  # torch CSR tensors only
    data_source: object  # A's values in A's own library (for autograd)
    longest_row: int | None = None  # GPU matrices: for the kernel choice
    unsigned: tuple | None = None  # host matrices: (indptr, indices) viewed unsigned, see _cpu


def _check_backend(backend):
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")


def _csr_arrays(A):
    """(indptr, indices, data, library tag) of a supported sparse A."""
    if sp.issparse(A):
        if A.format != "csr":
            raise TypeError(
                f"A is a scipy.sparse matrix in {A.format.upper()} format; "
                "sciml.sparse works on CSR. Convert it explicitly with A.tocsr() "
                "(a copy you can reuse)."
            )
        return A.indptr, A.indices, A.data
    if isinstance(A, torch.Tensor):
        if A.layout != torch.sparse_csr:
            hint = "A.to_sparse_csr()" if A.layout != torch.strided else "a dense product (A @ x)"
            raise TypeError(
                f"A is a torch tensor with layout {A.layout}; sciml.sparse needs "
                f"torch.sparse_csr. Use {hint}."
            )
        if A.dim() != 2:
            raise ValueError(f"A must be a 2-D (unbatched) CSR tensor, got shape {tuple(A.shape)}")
        if A.requires_grad:
            raise TypeError(
                "A requires grad, but gradients do not flow into a torch sparse "
                "tensor here; pass the learnable nonzeros as values=... instead"
            )
        return A.crow_indices(), A.col_indices(), A.values()
    if getattr(A, "format", None) == "csr" and all(hasattr(A, a) for a in ("indptr", "indices", "data", "shape")):
        # A GPU CSR matrix such as cupyx.scipy.sparse.csr_matrix.
        return A.indptr, A.indices, A.data
    if isinstance(A, (np.ndarray, torch.Tensor)) or hasattr(A, "__cuda_array_interface__"):
        raise TypeError("A must be a sparse CSR matrix; for a dense A use A @ x")
    raise TypeError(
        "A must be a scipy.sparse CSR array/matrix, a torch sparse CSR tensor or a "
        f"GPU CSR matrix (e.g. cupyx.scipy.sparse.csr_matrix), got {type(A).__name__}"
    )


# The last few scipy matrices seen, validated and viewed: describing a matrix
# costs several microseconds, more than a whole product on a small one.  An
# entry is used only for the same object holding the same arrays and shape,
# and the O(1) structural checks (indptr's ends) run again on every call.  It
# holds A's arrays: those A replaces (A.data = ...) live on until A's next
# product, A's end or the entry's eviction.  Updates tolerate races between
# threads (products release the GIL; a lost entry is only described again).
_HOST_CACHE: dict = {}  # id(A) -> (weakref to A, (indptr, indices, data), shape, _CSR)
_HOST_CACHE_SIZE = 16
_SCIPY_CSR = (sp.csr_array, sp.csr_matrix)


def _as_csr(A, *, fresh=False) -> _CSR:
    """Validate A (O(1) checks) and view its arrays for its backend.

    On a GPU the checks use ``indptr``'s ends as cached per matrix;
    ``fresh=True`` reads them again (for :func:`check_csr`).  A scipy CSR
    matrix's description is cached (see ``_HOST_CACHE``).
    """
    cacheable = type(A) in _SCIPY_CSR
    if cacheable and not fresh:
        entry = _HOST_CACHE.get(id(A))
        if (entry is not None and entry[0]() is A and entry[2] == A.shape and entry[1][0] is A.indptr
                and entry[1][1] is A.indices and entry[1][2] is A.data):
            csr = entry[3]
            if csr.indptr[0] == 0 and csr.indptr[-1] == csr.nnz:
                return csr
    csr = _describe_csr(A, fresh)
    if cacheable:
        if len(_HOST_CACHE) >= _HOST_CACHE_SIZE:
            try:
                _HOST_CACHE.pop(next(iter(_HOST_CACHE)), None)  # the oldest entry
            except (StopIteration, RuntimeError):  # emptied or resized by another thread meanwhile
                pass
        # The entry holds A's arrays; it goes when A does.
        _HOST_CACHE[id(A)] = (weakref.ref(A, _forget), (A.indptr, A.indices, A.data), A.shape, csr)
    return csr


def _forget(ref):
    """Drop the cache entry of a collected matrix (only its own: ids are reused)."""
    for key, entry in list(_HOST_CACHE.items()):
        if entry[0] is ref:
            _HOST_CACHE.pop(key, None)


def _describe_csr(A, fresh):
    indptr, indices, data = _csr_arrays(A)
    ops = {name: _operand(arr, f"A.{name}") for name, arr in (("indptr", indptr), ("indices", indices), ("data", data))}
    backends = {op.backend for op in ops.values()}
    if len(backends) != 1:
        raise ValueError("A's arrays live on different devices")
    backend = backends.pop()
    shape = tuple(int(s) for s in A.shape)
    if len(shape) != 2:
        raise ValueError(f"A must be 2-D, got shape {shape}")
    dtype = ops["data"].dtype
    if dtype not in _VALUE_DTYPES:
        raise TypeError(
            f"A has dtype {dtype}; sciml.sparse supports float32 and float64. "
            "Cast explicitly, e.g. A.astype(np.float64)."
        )
    if ops["indptr"].dtype not in _INDEX_DTYPES or ops["indices"].dtype != ops["indptr"].dtype:
        raise TypeError(
            "A's index arrays must both be int32 or both int64, got indptr "
            f"{ops['indptr'].dtype} and indices {ops['indices'].dtype}"
        )
    for name, op in ops.items():
        if len(op.shape) != 1 or not op.contiguous:
            raise ValueError(f"A.{name} must be a contiguous 1-D array")
    if ops["indptr"].shape[0] != shape[0] + 1:
        raise ValueError(f"A.indptr has length {ops['indptr'].shape[0]}, expected n_rows + 1 = {shape[0] + 1}")
    indptr_v = _view(indptr, ops["indptr"])
    n_indices, n_data = ops["indices"].shape[0], ops["data"].shape[0]
    longest_row = None
    if backend == "cuda":
        # Reading indptr on a GPU waits for the device: read its ends (with
        # the longest row, for the kernel choice) once per matrix, cached.
        from . import _cuda as kernels

        with _device_context(ops["indptr"]):
            first, nnz, longest_row = kernels.csr_summary(indptr_v, n_indices, lambda: _stream(ops["indptr"]),
                                                          refresh=fresh)
    else:
        first, nnz = int(indptr_v[0]), int(indptr_v[shape[0]])
    if first != 0:
        raise ValueError(f"A.indptr[0] must be 0, got {first}")
    if nnz < 0 or n_indices < nnz or n_data < nnz:
        raise ValueError(
            f"A.indptr[-1] = {nnz} does not match len(indices) = {n_indices} and len(data) = {n_data}"
        )
    indices_v = _view(indices, ops["indices"])[:nnz]
    unsigned = None
    if backend == "cpu":
        unsigned = (indptr_v.view(_UNSIGNED[indptr_v.dtype]), indices_v.view(_UNSIGNED[indices_v.dtype]))
    return _CSR(indptr_v, indices_v, _view(data, ops["data"])[:nnz], shape, nnz, dtype, backend,
                ops["data"].device, data, longest_row, unsigned)


def _to_host(arr):
    return arr.copy_to_host() if hasattr(arr, "copy_to_host") else np.asarray(arr)


def check_csr(A):
    """Fully validate the structure of a CSR matrix, in O(nnz).

    The products check only what is O(1) (shapes, dtypes, ``indptr[0]`` and
    ``indptr[-1]``; on a GPU these are read once per matrix and cached by
    address, so a matrix whose memory another one used before may go
    unchecked) and otherwise trust the structure, as scipy's own products
    do.  Call this once on matrices from untrusted
    sources: out-of-range column indices or decreasing row pointers make
    the kernels read (and, for transposed products, write) out of bounds,
    which gives garbage or crashes the process.
    Torch tensors are checked on their device (one synchronisation); other
    matrices on a GPU are copied to the host for the check.

    Unsorted and duplicate column indices are valid: the products sum
    duplicates, like scipy.

    Parameters
    ----------
    A : scipy.sparse CSR array/matrix, torch sparse CSR tensor or GPU CSR matrix

    Raises
    ------
    TypeError, ValueError
        Naming the first problem found.
    """
    csr = _as_csr(A, fresh=True)
    if isinstance(A, torch.Tensor):
        crow, col = A.crow_indices(), A.col_indices()[: csr.nnz]
        lo, hi = torch.aminmax(col) if csr.nnz else (crow.new_zeros(()), crow.new_zeros(()))
        decreasing, lo, hi = torch.stack([(crow.diff() < 0).any().to(lo.dtype), lo, hi]).tolist()
    else:
        indptr, indices = _to_host(csr.indptr), _to_host(csr.indices)
        decreasing = csr.shape[0] and np.any(np.diff(indptr) < 0)
        lo, hi = (int(indices.min()), int(indices.max())) if csr.nnz else (0, 0)
    if decreasing:
        raise ValueError("A.indptr must be non-decreasing")
    if csr.nnz:
        if lo < 0 or hi >= csr.shape[1]:
            raise ValueError(f"A.indices must lie in [0, {csr.shape[1]}), found values in [{lo}, {hi}]")


def to_torch_csr(A, *, device=None):
    """A scipy.sparse CSR matrix as a torch sparse CSR tensor.

    Zero-copy on the CPU (the tensor shares A's arrays); a copy when
    `device` names another device.

    Parameters
    ----------
    A : scipy.sparse CSR array/matrix
    device : torch.device or str, optional

    Returns
    -------
    torch.Tensor
        Layout ``torch.sparse_csr``, same dtypes as A.
    """
    if not sp.issparse(A):
        raise TypeError(f"A must be a scipy.sparse CSR matrix, got {type(A).__name__}")
    csr = _as_csr(A)
    with warnings.catch_warnings():
        # torch flags its CSR support as beta on every construction.
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        tensor = torch.sparse_csr_tensor(
            torch.from_numpy(csr.indptr),
            torch.from_numpy(csr.indices),
            torch.from_numpy(csr.data),
            size=csr.shape,
            check_invariants=False,
        )
    return tensor if device is None else tensor.to(device)


# ---------------------------------------------------------------- dense operands


def _check_dense(op, name, csr, ndim, length):
    """Validate a dense operand's description against A."""
    if op.backend != csr.backend or (
        op.device is not None and csr.device is not None and op.device != csr.device
    ):
        where_x = op.device if op.device is not None else op.backend
        where_a = csr.device if csr.device is not None else csr.backend
        raise ValueError(
            f"{name} is on {where_x} but A is on {where_a}: mismatched devices; move one of them"
        )
    if len(op.shape) != ndim:
        hint = " (use spmm for matrices)" if ndim == 1 else " (use spmv for vectors)"
        raise ValueError(f"{name} must be {ndim}-D, got shape {op.shape}{hint}")
    if op.shape[0] != length:
        raise ValueError(
            f"shape mismatch: A has shape {csr.shape} but {name} has shape {op.shape}; "
            f"expected {name}.shape[0] == {length}"
        )
    if op.dtype != csr.dtype:
        raise TypeError(
            f"{name} has dtype {op.dtype} but A has dtype {csr.dtype}; cast one of "
            "them explicitly (no silent conversion)"
        )
    if not op.contiguous:
        raise ValueError(
            f"{name} must be C-contiguous; make a contiguous copy first "
            "(np.ascontiguousarray(x) or x.contiguous())"
        )


def _device_span(arr):
    """(first, last) byte address of a CUDA view, or None where unknown."""
    cai = getattr(arr, "__cuda_array_interface__", None)
    if cai is None:
        return None
    start = cai["data"][0]
    return start, start + arr.size * arr.dtype.itemsize


def _may_overlap(a, b):
    """Whether two backend views may share memory (bounds check only)."""
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return np.may_share_memory(a, b)
    host_a, host_b = getattr(a, "_ary", None), getattr(b, "_ary", None)
    if host_a is not None and host_b is not None:  # the CUDA simulator's arrays wrap numpy
        return np.may_share_memory(host_a, host_b)
    span_a, span_b = _device_span(a), _device_span(b)
    return span_a is not None and span_b is not None and span_a[0] < span_b[1] and span_b[0] < span_a[1]


def _check_out(out, x_op, expected_shape, dtype, inputs):
    """Validate a user output buffer and return its backend view."""
    op = _operand(out, "out")
    if op.lib != x_op.lib:
        raise TypeError(f"out is a {op.lib} array but the dense operand is {x_op.lib}; use one library")
    if op.backend != x_op.backend or op.device != x_op.device:
        raise ValueError("out is on another device than the dense operand")
    if op.shape != expected_shape:
        raise ValueError(f"out has shape {op.shape}, expected {expected_shape}")
    if op.dtype != dtype:
        raise TypeError(f"out has dtype {op.dtype}, expected {dtype}")
    if op.lib == "torch" and out.requires_grad and torch.is_grad_enabled():
        # As in torch: writing into a tensor autograd tracks would corrupt gradients.
        raise TypeError("out= requires grad; products with out= do not support automatic differentiation")
    view = _view(out, op)
    if not op.contiguous or (isinstance(view, np.ndarray) and not view.flags.writeable):
        raise ValueError("out must be a writeable, C-contiguous array")
    for other in inputs:
        if _may_overlap(view, other):
            raise ValueError("out must not overlap the inputs (the result would be wrong)")
    return view


# ---------------------------------------------------------------- kernels


def _scratch_chunks(csr, out_row_elems, n_threads):
    """How many private buffers a transposed CPU product may use."""
    per_buffer = max(1, csr.shape[1] * out_row_elems * csr.dtype.itemsize)
    budget = max(_SCRATCH_BUDGET_BYTES, csr.data.nbytes + csr.indices.nbytes)
    return max(1, min(n_threads, 1 + budget // per_buffer))


def _unsigned_structure(csr):
    """Zero-copy unsigned views of a host matrix's index arrays (see sciml.sparse._cpu)."""
    return csr.unsigned


_SERIAL_KERNELS = {(False, 1): _cpu.csr_spmv_serial, (False, 2): _cpu.csr_spmm_serial,
                   (True, 1): _cpu.csr_rspmv_serial, (True, 2): _cpu.csr_rspmm_serial}


def _product_cpu(csr, dense, out, transpose):
    if csr.nnz == 0 or csr.shape[0] == 0:
        out.fill(0)
        return
    indptr, indices = _unsigned_structure(csr)
    zero = csr.dtype.type(0)
    row_elems = 1 if dense.ndim == 1 else dense.shape[1]
    if _cpu.is_serial(csr.nnz * row_elems):
        _SERIAL_KERNELS[transpose, dense.ndim](indptr, indices, csr.data, dense, out, zero)
        return
    n_threads = _cpu.num_threads()
    if not transpose:
        bounds = _cpu.row_partition(csr.indptr, n_threads)
        kernel = _cpu.csr_spmv if dense.ndim == 1 else _cpu.csr_spmm
        kernel(indptr, indices, csr.data, dense, out, bounds, zero)
        return
    bounds = _cpu.row_partition(csr.indptr, _scratch_chunks(csr, row_elems, n_threads))
    scratch = np.empty((bounds.shape[0] - 2,) + out.shape, dtype=csr.dtype)
    kernel = _cpu.csr_rspmv if dense.ndim == 1 else _cpu.csr_rspmm
    kernel(indptr, indices, csr.data, dense, out, bounds, zero, scratch)


class HostOperator:
    """A host CSR matrix prepared once for the many products of an iterative solver.

    :func:`spmv` validates and views ``A`` on every call (about 15 us, more
    than the product itself on small systems); a solver loop validates once
    here and then calls the kernel directly.  The operand is trusted: the
    caller passes C-contiguous vectors of A's dtype and the right length.

    Parameters
    ----------
    A : scipy.sparse CSR array/matrix on the host, float32 or float64
    """

    def __init__(self, A):
        csr = _as_csr(A)
        if csr.backend != "cpu":
            raise ValueError("HostOperator needs a matrix on the host")
        self.shape, self.dtype, self.nnz = csr.shape, csr.dtype, csr.nnz
        self._indptr, self._indices = _unsigned_structure(csr)
        self._data, self._zero = csr.data, csr.dtype.type(0)
        self._serial = _cpu.is_serial(csr.nnz)
        self._bounds = None if self._serial else _cpu.row_partition(csr.indptr, _cpu.num_threads())

    def matvec(self, x, out=None):
        """``A @ x`` into ``out`` (allocated if None)."""
        out = np.empty(self.shape[0], dtype=self.dtype) if out is None else out
        if self._serial:
            _cpu.csr_spmv_serial(self._indptr, self._indices, self._data, x, out, self._zero)
        else:
            _cpu.csr_spmv(self._indptr, self._indices, self._data, x, out, self._bounds, self._zero)
        return out

    def matvec_dot(self, x, out):
        """``out = A @ x`` and ``x . out`` from one pass over A (square A only)."""
        if self.shape[0] != self.shape[1]:
            raise ValueError(f"matvec_dot needs a square matrix, got shape {self.shape}")
        if self._serial:
            return float(_cpu.csr_spmv_dot_serial(self._indptr, self._indices, self._data, x, out, self._zero))
        return float(_cpu.csr_spmv_dot(self._indptr, self._indices, self._data, x, out, self._bounds, self._zero))


def _product(csr, dense, out, transpose, op):
    """out = A @ dense (or A.T @ dense) on backend views.

    `op` describes the dense operand: the launch goes on its stream, and any
    workspace is allocated in its library.
    """
    if csr.backend == "cpu":
        _product_cpu(csr, dense, out, transpose)
        return
    from . import _cuda as kernels

    stream = _stream(op)
    kernel, workspace = kernels.kernel_for(csr.longest_row), None
    if dense.ndim == 2:
        kernels.spmm(csr.indptr, csr.indices, csr.data, dense, out, transpose=transpose, kernel=kernel,
                     stream=stream)
        return
    if kernel == "merge" and not transpose:
        # In the operand's library: torch's caching allocator costs far less than a cudaMalloc.
        size = kernels.merge_workspace_size(csr.shape[0], csr.nnz)
        workspace = _view(_empty(op, (size,), np.dtype(np.int64)), op)
    kernels.spmv(
        csr.indptr, csr.indices, csr.data, dense, out,
        transpose=transpose, kernel=kernel, workspace=workspace, stream=stream,
    )


def _values_grad(csr, left, right, out, stream):
    """out[j] = left[i] . right[indices[j]]: d<left, A @ right>/d values."""
    if csr.backend == "cuda":
        from . import _cuda as kernels

        kernels.sddmm(csr.indptr, csr.indices, left, right, out, kernel=kernels.kernel_for(csr.longest_row),
                      stream=stream)
        return
    if csr.nnz:
        indptr, indices = _unsigned_structure(csr)
        zero = csr.dtype.type(0)
        if _cpu.is_serial(csr.nnz * left.shape[1]):
            _cpu.csr_sddmm_serial(indptr, indices, left, right, out, zero)
        else:
            bounds = _cpu.row_partition(csr.indptr, _cpu.num_threads())
            _cpu.csr_sddmm(indptr, indices, left, right, out, bounds, zero)


class _CSRProduct(torch.autograd.Function):
    """op(A) @ X for torch tensors, differentiable in X and in A's stored values."""

    @staticmethod
    def forward(ctx, values, dense, csr, transpose):
        op = _operand(dense, "x")
        csr = replace(csr, data=_view(values, _operand(values, "values")))
        out_shape = (csr.shape[1] if transpose else csr.shape[0],) + tuple(dense.shape[1:])
        out = torch.empty(out_shape, dtype=dense.dtype, device=dense.device)
        with _device_context(op):
            _product(csr, _view(dense, op), _view(out, op), transpose, op)
        ctx.save_for_backward(values, dense)
        ctx.csr, ctx.transpose = csr, transpose
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        values, dense = ctx.saved_tensors
        csr, transpose = ctx.csr, ctx.transpose
        g = grad_out.contiguous()
        op = _operand(g, "grad")
        grad_values = grad_dense = None
        with _device_context(op):
            stream = _stream(op)
            if ctx.needs_input_grad[1]:
                grad_dense = torch.empty_like(dense, memory_format=torch.contiguous_format)
                _product(csr, _view(g, op), _view(grad_dense, op), not transpose, op)
            if ctx.needs_input_grad[0]:
                x = dense.detach()
                if x.dim() == 1:
                    x, g = x.unsqueeze(1), g.unsqueeze(1)
                # y = A x: dv_ij = g_i . x_j ;  y = A^T x: dv_ij = x_i . g_j
                left, right = (x, g) if transpose else (g, x)
                grad_values = torch.empty_like(values)
                _values_grad(csr, _view(left, op), _view(right, op), _view(grad_values, op), stream)
        return grad_values, grad_dense, None, None


def _matmul(A, x, transpose, out, values, backend, ndim):
    _check_backend(backend)
    csr = _as_csr(A)
    if backend != "auto" and backend != csr.backend:
        raise ValueError(
            f"backend={backend!r} but A is on the {csr.backend.upper()}; move the inputs, "
            "or use backend='auto'"
        )
    name = "x" if ndim == 1 else "X"
    n_in, n_out = (csr.shape[0], csr.shape[1]) if transpose else (csr.shape[1], csr.shape[0])
    x_op = _operand(x, name)
    _check_dense(x_op, name, csr, ndim, n_in)

    values_torch = None
    if values is not None:
        v_op = _operand(values, "values")
        if v_op.lib != x_op.lib:
            raise TypeError(
                f"values is a {v_op.lib} array but the dense operand is {x_op.lib}; use one library"
            )
        _check_dense(v_op, "values", csr, 1, csr.nnz)
        if v_op.lib == "torch":
            values_torch = values
        csr = replace(csr, data=_view(values, v_op), data_source=values)

    needs_grad = x_op.lib == "torch" and torch.is_grad_enabled() and (
        x.requires_grad or (values_torch is not None and values_torch.requires_grad)
    )
    if needs_grad:
        if out is not None:
            raise TypeError("out= is not supported when gradients are required")
        if values_torch is None:
            values_torch = torch.as_tensor(csr.data_source, device=x.device)
        return _CSRProduct.apply(values_torch, x, csr, transpose)

    x_view = _view(x, x_op)
    out_shape = (n_out,) + tuple(x_op.shape[1:])
    if out is None:
        result = _empty(x_op, out_shape, csr.dtype)
        y = _view(result, x_op)
    else:
        y = _check_out(out, x_op, out_shape, csr.dtype, (x_view, csr.data, csr.indices, csr.indptr))
        result = out
    with _device_context(x_op):
        _product(csr, x_view, y, transpose, x_op)
    if out is not None and x_op.lib == "torch":
        # The kernel wrote through a view autograd cannot see: bump the
        # version so that backward through an earlier use of `out` raises
        # instead of using the overwritten values.
        torch.autograd.graph.increment_version(out)
    return result


def spmv(A, x, *, transpose=False, out=None, values=None, backend="auto"):
    """Sparse matrix-vector product ``y = A @ x`` (or ``A.T @ x``) for CSR A.

    Parallel over rows on the CPU (numba), with row chunks balanced by
    nonzero count.  Inputs are used zero-copy; nothing is converted silently.

    Parameters
    ----------
    A : scipy.sparse CSR array/matrix, torch sparse CSR tensor (CPU or CUDA) or GPU CSR matrix, shape (m, n)
        A GPU CSR matrix is any object with ``format == "csr"`` and
        ``indptr``/``indices``/``data`` CUDA arrays, such as
        ``cupyx.scipy.sparse.csr_matrix``.
        float32 or float64 values; int32 or int64 indices.  Other scipy
        formats are refused: convert explicitly with ``A.tocsr()``.
        Unsorted and duplicate column indices are fine (duplicates are
        summed, as in scipy).  Only O(1) structural checks run per call; see
        :func:`check_csr` for a full check of untrusted matrices.
    x : numpy.ndarray, torch.Tensor or CUDA array, shape (n,) (or (m,) if `transpose`)
        C-contiguous, with the same dtype as A and on A's device.  A torch
        tensor gives a torch tensor back (CuPy gives CuPy, a numba device
        array a numba device array); with ``requires_grad`` the product is
        differentiable (see `values`).
    transpose : bool, default False
        Compute ``A.T @ x`` without forming the transpose.
    out : numpy.ndarray or torch.Tensor, optional
        Preallocated result of shape (m,) (or (n,)), A's dtype, C-contiguous,
        not overlapping the inputs.  Not allowed when gradients are required.
    values : numpy.ndarray or torch.Tensor, shape (nnz,), optional
        Nonzero values to use instead of A's own, with A's sparsity pattern.
        A torch tensor with ``requires_grad`` makes the product
        differentiable with respect to these values (learned sparse
        operators).
    backend : {"auto", "cpu", "cuda"}, default "auto"
        Kernel family.  "auto" follows the inputs' device: numba CPU kernels
        for host arrays, numba-cuda kernels (``pip install sciml-toolkit[cuda]``)
        for CUDA tensors and arrays, launched on the caller's current torch or
        CuPy stream.  Naming a backend that the inputs do not live on raises
        ``ValueError``; nothing is moved between devices silently.

    Returns
    -------
    y : numpy.ndarray or torch.Tensor
        Same library as `x` (``out`` itself when given).

    Raises
    ------
    TypeError
        Non-CSR or non-float A, mismatched dtypes, unsupported input types.
    ValueError
        Shape mismatch, non-contiguous arrays, mismatched devices, bad `out`.

    Notes
    -----
    Row sums may be reordered for vectorisation (results agree with scipy to
    rounding), but NaN and inf in A or x propagate as IEEE 754 prescribes:
    a NaN in ``x[j]`` makes every ``y[i]`` with a stored ``A[i, j]`` NaN,
    even where that stored value is 0.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from sciml.sparse import spmv
    >>> A = sp.csr_array(np.array([[1.0, 0.0, 2.0], [0.0, 3.0, 0.0]]))
    >>> spmv(A, np.array([1.0, 1.0, 1.0]))
    array([3., 3.])
    >>> spmv(A, np.array([1.0, 2.0]), transpose=True)
    array([1., 6., 2.])
    """
    return _matmul(A, x, bool(transpose), out, values, backend, ndim=1)


def rspmv(A, x, *, out=None, values=None, backend="auto"):
    """Transposed product ``y = A.T @ x``; same as ``spmv(A, x, transpose=True)``.

    See :func:`spmv` for the parameters.  Each thread scatters its rows into
    a private buffer of length n (the buffers are capped at 64 MiB or the
    size of A, whichever is larger; beyond that fewer threads are used).
    """
    return _matmul(A, x, True, out, values, backend, ndim=1)


def spmm(A, X, *, transpose=False, out=None, values=None, backend="auto"):
    """Sparse times dense matrix ``Y = A @ X`` (or ``A.T @ X``) for CSR A.

    Parameters
    ----------
    A : scipy.sparse CSR array/matrix or torch sparse CSR tensor, shape (m, n)
        As in :func:`spmv`.
    X : numpy.ndarray or torch.Tensor, shape (n, k) (or (m, k) if `transpose`)
        C-contiguous (row-major), same dtype as A.
    transpose : bool, default False
        Compute ``A.T @ X`` without forming the transpose.
    out : numpy.ndarray or torch.Tensor, optional
        Preallocated result of shape (m, k) (or (n, k)).
    values : numpy.ndarray or torch.Tensor, shape (nnz,), optional
        Replacement nonzero values, differentiable as in :func:`spmv`.
    backend : {"auto", "cpu", "cuda"}, default "auto"
        As in :func:`spmv`.

    Returns
    -------
    Y : numpy.ndarray or torch.Tensor
        Same library as `X`.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from sciml.sparse import spmm
    >>> A = sp.csr_array(np.array([[1.0, 0.0], [0.0, 2.0]]))
    >>> spmm(A, np.array([[1.0, 2.0], [3.0, 4.0]]))
    array([[1., 2.],
           [6., 8.]])
    """
    return _matmul(A, X, bool(transpose), out, values, backend, ndim=2)
