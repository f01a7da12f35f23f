"""Numba-CUDA kernels for CSR products.

Imported only when a CUDA input arrives (never by ``import sciml.sparse``),
so that importing the toolkit probes no GPU.  The launchers take numba
device arrays (zero-copy views of torch or CuPy memory, made by
:mod:`sciml.sparse._api`) and a stream; everything here also runs under the
Numba CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``), which is how CI tests it.

Kernels
-------
* ``spmv`` "vector" kernel (the default): ``LANES`` threads share a row and
  read its nonzeros coalesced; their partial sums are combined through
  shared memory.  PDE matrices have 5-7 nonzeros per row, for which 4-8
  lanes per row beat both one thread per row (uncoalesced reads) and a warp
  per row (idle lanes).  The shared-memory reduction, rather than warp
  shuffles, keeps the kernel runnable in the simulator.
* ``spmv`` "scalar" kernel: one thread per row; the simple reference.
* ``spmm``: one thread per (row, column); consecutive threads read
  consecutive columns of a row of the (row-major) dense operand.
* transposed products: one thread per stored entry of a row-thread,
  scattering with atomic adds into a zeroed output.
* ``sddmm``: the gradient with respect to the stored values.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import cuda

#: Threads per block for every kernel.
BLOCK = 128
#: Lanes (threads) per row in the vector SpMV kernel.
LANES = 4


def _blocks(n_threads):
    return max(1, (n_threads + BLOCK - 1) // BLOCK)


@cuda.jit
def _spmv_scalar(indptr, indices, data, x, y, zero):
    i = cuda.grid(1)
    if i < y.shape[0]:
        acc = zero
        for j in range(indptr[i], indptr[i + 1]):
            acc += data[j] * x[indices[j]]
        y[i] = acc


@functools.lru_cache(maxsize=None)
def _spmv_vector_kernel(dtype, lanes):
    """The vector SpMV kernel for one value dtype and lane count."""
    nb_dtype = {np.dtype(np.float32): np.float32, np.dtype(np.float64): np.float64}[np.dtype(dtype)]
    rows_per_block = BLOCK // lanes

    @cuda.jit
    def kernel(indptr, indices, data, x, y, zero):
        partial = cuda.shared.array(BLOCK, nb_dtype)
        tid = cuda.threadIdx.x
        lane = tid % lanes
        row = cuda.blockIdx.x * rows_per_block + tid // lanes
        acc = zero
        if row < y.shape[0]:
            for j in range(indptr[row] + lane, indptr[row + 1], lanes):
                acc += data[j] * x[indices[j]]
        partial[tid] = acc
        cuda.syncthreads()
        if lane == 0 and row < y.shape[0]:
            total = partial[tid]
            for other in range(1, lanes):
                total += partial[tid + other]
            y[row] = total

    return kernel


@cuda.jit
def _spmm(indptr, indices, data, X, Y, zero):
    idx = cuda.grid(1)
    k = Y.shape[1]
    i = idx // k
    t = idx - i * k
    if i < Y.shape[0]:
        acc = zero
        for j in range(indptr[i], indptr[i + 1]):
            acc += data[j] * X[indices[j], t]
        Y[i, t] = acc


@cuda.jit
def _zero_1d(out, zero):
    idx = cuda.grid(1)
    if idx < out.shape[0]:
        out[idx] = zero


@cuda.jit
def _zero_2d(out, zero):
    idx = cuda.grid(1)
    k = out.shape[1]
    i = idx // k
    if i < out.shape[0]:
        out[i, idx - i * k] = zero


@cuda.jit
def _rspmv(indptr, indices, data, x, y):
    i = cuda.grid(1)
    if i < x.shape[0]:
        xi = x[i]
        for j in range(indptr[i], indptr[i + 1]):
            cuda.atomic.add(y, indices[j], data[j] * xi)


@cuda.jit
def _rspmm(indptr, indices, data, X, Y):
    idx = cuda.grid(1)
    k = X.shape[1]
    i = idx // k
    t = idx - i * k
    if i < X.shape[0]:
        xi = X[i, t]
        for j in range(indptr[i], indptr[i + 1]):
            cuda.atomic.add(Y, (indices[j], t), data[j] * xi)


@cuda.jit
def _sddmm(indptr, indices, left, right, out, zero):
    i = cuda.grid(1)
    if i < left.shape[0]:
        k = left.shape[1]
        for j in range(indptr[i], indptr[i + 1]):
            c = indices[j]
            acc = zero
            for t in range(k):
                acc += left[i, t] * right[c, t]
            out[j] = acc


def spmv(indptr, indices, data, x, y, *, transpose=False, kernel="vector", stream=0):
    """y = A @ x (or A.T @ x) on device arrays; y is overwritten."""
    zero = data.dtype.type(0)
    if y.shape[0] == 0:
        return y
    if transpose:
        _zero_1d[_blocks(y.shape[0]), BLOCK, stream](y, zero)
        _rspmv[_blocks(x.shape[0]), BLOCK, stream](indptr, indices, data, x, y)
    elif kernel == "scalar":
        _spmv_scalar[_blocks(y.shape[0]), BLOCK, stream](indptr, indices, data, x, y, zero)
    elif kernel == "vector":
        launch = _spmv_vector_kernel(data.dtype, LANES)
        launch[_blocks(y.shape[0] * LANES), BLOCK, stream](indptr, indices, data, x, y, zero)
    else:
        raise ValueError(f"kernel must be 'vector' or 'scalar', got {kernel!r}")
    return y


def spmm(indptr, indices, data, X, Y, *, transpose=False, stream=0):
    """Y = A @ X (or A.T @ X) on device arrays; Y is overwritten."""
    zero = data.dtype.type(0)
    if Y.shape[0] == 0 or Y.shape[1] == 0:
        return Y
    if transpose:
        _zero_2d[_blocks(Y.shape[0] * Y.shape[1]), BLOCK, stream](Y, zero)
        _rspmm[_blocks(X.shape[0] * X.shape[1]), BLOCK, stream](indptr, indices, data, X, Y)
    else:
        _spmm[_blocks(Y.shape[0] * Y.shape[1]), BLOCK, stream](indptr, indices, data, X, Y, zero)
    return Y


def sddmm(indptr, indices, left, right, out, *, stream=0):
    """out[j] = left[i] . right[indices[j]] for each stored entry j of row i."""
    zero = out.dtype.type(0)
    if out.shape[0] == 0:
        return out
    _sddmm[_blocks(left.shape[0]), BLOCK, stream](indptr, indices, left, right, out, zero)
    return out
