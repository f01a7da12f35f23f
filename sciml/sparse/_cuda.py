"""Numba-CUDA kernels for CSR products.

Imported only when a CUDA input arrives (never by ``import sciml.sparse``),
so that importing the toolkit probes no GPU.  The launchers take numba
device arrays (zero-copy views of torch or CuPy memory, made by
:mod:`sciml.sparse._api`) and a stream; everything here also runs under the
Numba CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``), which is how CI tests it.

Kernels
-------
* ``spmv`` "vector" kernel: ``LANES`` threads share a row and read its
  nonzeros coalesced; their partial sums are combined through
  shared memory.  PDE matrices have 5-7 nonzeros per row, for which 4-8
  lanes per row beat both one thread per row (uncoalesced reads) and a warp
  per row (idle lanes).  The shared-memory reduction, rather than warp
  shuffles, keeps the kernel runnable in the simulator.
* ``spmv`` "merge" kernel: merge-path load balancing after Merrill &
  Garland, "Merge-based Parallel Sparse Matrix-Vector Multiplication"
  (SC16).  The merge of the row-end offsets ``indptr[1:]`` with the nonzero
  indices ``0..nnz-1`` (``n_rows + nnz`` items) is cut into equal tiles of
  ``MERGE_BLOCK * MERGE_ITEMS`` items, so every block does the same work
  whatever the row lengths.  A partition kernel finds each tile boundary's
  row by binary search (into an int64 workspace of
  :func:`merge_workspace_size` entries) and zeroes ``y[row]`` where a
  boundary falls inside a row.  A block stages its tile (the products
  ``data[j] * x[indices[j]]`` and the row offsets) in shared memory with
  coalesced reads; each thread walks ``MERGE_ITEMS`` items of it.  A row
  split between threads is finished by the thread that reaches its end,
  adding the carry-outs of the threads before it; rows that cross a tile
  boundary are the only ones accumulated with global atomic adds.
* ``spmv`` "scalar" kernel: one thread per row; the simple reference.
* ``spmv`` "auto" (the default): "merge" when the matrix's longest row has
  more than ``LONG_ROW`` nonzeros, else "vector".  The vector kernel's time
  is set by its longest row (one group of ``LANES`` lanes walks it
  serially), which the merge kernel does not care about, while on short,
  regular rows the vector kernel saves the merge kernel's partition launch
  and shared-memory staging.  The longest row is computed on the device,
  with ``indptr[0]`` and ``indptr[-1]`` for the per-call checks, and read
  back once per matrix (the one synchronisation), then cached (see
  :func:`csr_summary`).
* ``spmm``: one thread per (row, column); consecutive threads read
  consecutive columns of a row of the (row-major) dense operand.  For
  matrices with long rows ("merge", which "auto" picks by the rule above),
  one thread per (``SCATTER_ITEMS`` nonzeros, column), each row's piece
  added atomically into the zeroed output; ``sddmm`` likewise.
* transposed products: scatter with atomic adds into a zeroed output,
  each thread taking one row ("vector"/"scalar") or, for matrices with long
  rows ("merge", which "auto" picks by the same rule as for ``spmv``),
  ``SCATTER_ITEMS`` consecutive nonzeros, its first row found by binary
  search, so no thread walks a long row alone.
* ``sddmm``: the gradient with respect to the stored values.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
from numba import cuda

#: Threads per block for every kernel.
BLOCK = 128
#: Lanes (threads) per row in the vector SpMV kernel.
LANES = 4
#: Threads per block of the merge SpMV kernel.
MERGE_BLOCK = 128
#: Merge items (nonzeros plus row ends) per thread of the merge SpMV kernel;
#: a tile is ``MERGE_BLOCK * MERGE_ITEMS`` items.  7 is CUB's choice for
#: 8-byte values; both constants are first guesses, to be tuned on a GPU.
MERGE_ITEMS = 7
#: "auto" picks the merge kernel when some row has more nonzeros than this.
#: A first guess (16 iterations of the vector kernel's 4 lanes), to be
#: tuned on a GPU.
LONG_ROW = 64
#: Matrices whose summary (indptr ends, longest row) is remembered.
_SUMMARY_CACHE_SIZE = 64


_NUMBA_TYPES = {
    np.dtype(np.float32): np.float32,
    np.dtype(np.float64): np.float64,
    np.dtype(np.int32): np.int32,
    np.dtype(np.int64): np.int64,
}


def _blocks(n_threads):
    return max(1, (n_threads + BLOCK - 1) // BLOCK)


#: numba-cuda warns (NumbaPerformanceWarning) when a grid has fewer blocks.
_FEW_BLOCKS = 128


def _launch(kernel, n_blocks, n_threads, stream, *args):
    """``kernel[n_blocks, n_threads, stream](*args)``, without numba-cuda's
    low-occupancy warning for small grids: small inputs are the caller's
    choice, and a library call should not warn about them."""
    if n_blocks >= _FEW_BLOCKS:
        kernel[n_blocks, n_threads, stream](*args)
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Grid size .* under-utilization")
        kernel[n_blocks, n_threads, stream](*args)


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
    nb_dtype = _NUMBA_TYPES[np.dtype(dtype)]
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


def merge_workspace_size(n_rows, nnz, block=None, items=None):
    """Number of int64 entries the merge SpMV kernel needs as workspace.

    One per tile boundary: ``ceil((n_rows + nnz) / tile) + 1``, with
    ``tile = block * items`` (default ``MERGE_BLOCK * MERGE_ITEMS``).
    """
    tile = (MERGE_BLOCK if block is None else block) * (MERGE_ITEMS if items is None else items)
    return (n_rows + nnz + tile - 1) // tile + 1


@cuda.jit(device=True)
def _merge_path_search(row_ptr, nz_base, diagonal, n_row_ends, n_nonzeros):
    """How many row ends lie among the first `diagonal` items of a merge path.

    The path merges the row ends ``row_ptr[1:n_row_ends + 1]`` with the
    nonzero indices ``nz_base .. nz_base + n_nonzeros - 1``, a row end first
    on ties (CUB's MergePathSearch).  The nonzeros among those items are
    ``diagonal`` minus the result.  (Conditional expressions rather than
    min/max: those are compiled as separate device functions.)
    """
    lo = diagonal - n_nonzeros if diagonal > n_nonzeros else 0
    hi = diagonal if diagonal < n_row_ends else n_row_ends
    while lo < hi:
        pivot = (lo + hi) >> 1
        if row_ptr[pivot + 1] <= nz_base + diagonal - pivot - 1:
            lo = pivot + 1
        else:
            hi = pivot
    return lo


@cuda.jit
def _merge_partition(indptr, tile_items, boundary_rows, y, zero):
    """Row coordinate of each tile boundary on the merge path; zero y[row]
    where the boundary falls inside the row (its tiles then add atomically)."""
    t = cuda.grid(1)
    if t < boundary_rows.shape[0]:
        n_rows = y.shape[0]
        nnz = np.int64(indptr[n_rows])
        diagonal = np.int64(t) * tile_items
        if diagonal > n_rows + nnz:
            diagonal = n_rows + nnz
        row = _merge_path_search(indptr, np.int64(0), diagonal, np.int64(n_rows), nnz)
        boundary_rows[t] = row
        if row < n_rows and diagonal - row > indptr[row]:
            y[row] = zero


@functools.lru_cache(maxsize=None)
def _spmv_merge_kernel(dtype, index_dtype, block, items):
    """The merge SpMV tile kernel for one value/index dtype and tile shape."""
    value_type = _NUMBA_TYPES[np.dtype(dtype)]
    index_type = _NUMBA_TYPES[np.dtype(index_dtype)]
    tile_items = block * items
    row_ptr_size = tile_items + 2  # shared array sizes must be constants

    @cuda.jit
    def kernel(indptr, indices, data, x, y, boundary_rows, zero):
        # The tile's products and row offsets indptr[row0 .. row1 + 1].
        products = cuda.shared.array(tile_items, value_type)
        row_ptr = cuda.shared.array(row_ptr_size, index_type)
        # Each thread's carry-out: the (local) row it stopped in, its partial sum.
        carry_rows = cuda.shared.array(block, np.int32)
        carry_sums = cuda.shared.array(block, value_type)
        tid = cuda.threadIdx.x
        tile = cuda.blockIdx.x
        n_rows = y.shape[0]
        total_items = n_rows + np.int64(indptr[n_rows])
        diag0 = np.int64(tile) * tile_items
        diag1 = diag0 + tile_items
        if diag1 > total_items:  # the last tile
            diag1 = total_items
        row0 = boundary_rows[tile]
        row1 = boundary_rows[tile + 1]
        nz0 = diag0 - row0
        nz1 = diag1 - row1
        tile_rows = row1 - row0  # row ends inside the tile
        tile_nnz = nz1 - nz0

        # Coalesced staging: consecutive threads read consecutive elements.
        for k in range(tid, tile_nnz, block):
            j = nz0 + k
            products[k] = data[j] * x[indices[j]]
        for k in range(tid, tile_rows + 2, block):
            row_ptr[k] = indptr[row0 + k] if row0 + k < n_rows else indptr[n_rows]
        cuda.syncthreads()

        # This thread's start on the tile's merge path (same search as the
        # partition kernel, in shared memory and tile-local coordinates).
        diagonal = np.int64(tid * items)
        if diagonal > tile_rows + tile_nnz:
            diagonal = tile_rows + tile_nnz
        row = _merge_path_search(row_ptr, nz0, diagonal, tile_rows, tile_nnz)
        nz = diagonal - row
        steps = tile_rows + tile_nnz - diagonal
        if steps > items:
            steps = items

        # The first row this thread finishes may have begun in earlier
        # threads: keep it until their carries are known.  Later rows
        # began here and are complete.
        first_row = np.int64(-1)
        first_sum = zero
        acc = zero
        for _ in range(steps):
            if nz0 + nz < row_ptr[row + 1]:
                acc += products[nz]
                nz += 1
            else:
                if first_row < 0:
                    first_row = row
                    first_sum = acc
                else:
                    y[row0 + row] = acc
                acc = zero
                row += 1
        carry_rows[tid] = row
        carry_sums[tid] = acc
        cuda.syncthreads()

        if first_row >= 0:
            total = first_sum
            other = tid - 1
            while other >= 0 and carry_rows[other] == first_row:
                total += carry_sums[other]
                other -= 1
            if first_row == 0 and row_ptr[0] < nz0:
                # The row began in an earlier tile; the partition zeroed it.
                cuda.atomic.add(y, row0, total)
            else:
                y[row0 + first_row] = total
        if tid == block - 1 and row1 < n_rows and nz1 > row_ptr[tile_rows]:
            # Row row1 continues into the next tile; the partition zeroed it.
            total = zero
            other = tid
            while other >= 0 and carry_rows[other] == tile_rows:
                total += carry_sums[other]
                other -= 1
            cuda.atomic.add(y, row1, total)

    return kernel


def _spmv_merge(indptr, indices, data, x, y, workspace, stream):
    block, items = MERGE_BLOCK, MERGE_ITEMS
    nnz = indices.shape[0]
    n_boundaries = merge_workspace_size(y.shape[0], nnz, block, items)
    if workspace is None:
        workspace = cuda.device_array(n_boundaries, dtype=np.int64, stream=stream)
    elif workspace.dtype != np.int64 or workspace.shape[0] < n_boundaries:
        raise ValueError(f"workspace must be an int64 array of at least {n_boundaries} entries")
    boundary_rows = workspace[:n_boundaries]
    zero = data.dtype.type(0)
    _launch(_merge_partition, _blocks(n_boundaries), BLOCK, stream, indptr, block * items, boundary_rows, y, zero)
    tile_kernel = _spmv_merge_kernel(data.dtype, indptr.dtype, block, items)
    _launch(tile_kernel, n_boundaries - 1, block, stream, indptr, indices, data, x, y, boundary_rows, zero)


@cuda.jit
def _csr_summary_kernel(indptr, out):
    """out = [longest row, indptr[0], indptr[-1]] (out[0] zeroed before)."""
    longest = cuda.shared.array(BLOCK, np.int64)
    tid = cuda.threadIdx.x
    n_rows = indptr.shape[0] - 1
    if cuda.grid(1) == 0:
        out[1] = indptr[0]
        out[2] = indptr[n_rows]
    best = np.int64(0)
    for i in range(cuda.grid(1), n_rows, cuda.gridsize(1)):
        length = np.int64(indptr[i + 1] - indptr[i])
        if length > best:
            best = length
    longest[tid] = best
    cuda.syncthreads()
    if tid == 0:
        for other in range(1, BLOCK):
            if longest[other] > best:
                best = longest[other]
        cuda.atomic.max(out, 0, best)


_csr_summaries = {}


def _device_address(arr):
    cai = getattr(arr, "__cuda_array_interface__", None)
    if cai is not None:
        return cai["data"][0]
    return arr._ary.ctypes.data  # the CUDA simulator's arrays wrap numpy


def csr_summary(indptr, n_stored, stream=0, *, refresh=False):
    """``(indptr[0], indptr[-1], longest row)`` of a CSR matrix on the device.

    Computed by one small kernel and read back (the one synchronisation of
    `stream`) on a matrix's first use, then cached in a small dictionary
    keyed by (indptr address, n_rows, `n_stored`).  An entry goes stale when
    a matrix is freed and another with the same shape and stored length
    reuses its memory: for valid matrices (``indptr[0] == 0``,
    ``indptr[-1] == n_stored``, as torch and CuPy keep them) the first two
    values are then still right, and the longest row only chooses between
    kernels that are all correct.

    Parameters
    ----------
    indptr : device array of int32 or int64, shape (n_rows + 1,)
    n_stored : int
        ``len(indices)``, part of the cache key.
    stream : numba stream, 0, or a callable returning one
        A callable is called only on a cache miss (making a numba stream
        object for the caller's torch or CuPy stream is not free).
    refresh : bool, default False
        Recompute (and re-cache) even if cached: for a full validation,
        which must not trust an entry another matrix left at this address.

    Returns
    -------
    first, last, longest : int
    """
    n_rows = indptr.shape[0] - 1
    key = (_device_address(indptr), n_rows, n_stored)
    summary = None if refresh else _csr_summaries.get(key)
    if summary is None:
        if callable(stream):
            stream = stream()
        out = cuda.to_device(np.zeros(3, dtype=np.int64), stream=stream)
        _launch(_csr_summary_kernel, min(_blocks(n_rows), 1024), BLOCK, stream, indptr, out)
        host = out.copy_to_host(stream=stream)
        if stream != 0:  # on a stream the copy is asynchronous: wait before reading
            stream.synchronize()
        longest, first, last = (int(v) for v in host)
        summary = (first, last, longest)
        _csr_summaries.pop(key, None)
        if len(_csr_summaries) >= _SUMMARY_CACHE_SIZE:
            del _csr_summaries[next(iter(_csr_summaries))]  # the oldest
        _csr_summaries[key] = summary
    return summary


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


#: Nonzeros per thread of the balanced ("merge") transposed SpMV, SpMM
#: (per column; the transposed SpMV is its one-column case) and SDDMM kernels.
SCATTER_ITEMS = 8


@cuda.jit(device=True)
def _row_holding(indptr, j, n_rows):
    """The row holding nonzero `j`: the last row that starts at or before it."""
    lo = np.int64(0)
    hi = np.int64(n_rows - 1)
    while lo < hi:
        mid = (lo + hi + 1) >> 1
        if indptr[mid] <= j:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _n_chunks(nnz):
    """Threads (per column) of the balanced kernels: one per ``SCATTER_ITEMS`` nonzeros."""
    return (nnz + SCATTER_ITEMS - 1) // SCATTER_ITEMS


@cuda.jit(device=True)
def _chunk(indptr, n_rows, chunk, items):
    """``(first, last, row)``: nonzeros ``first .. last - 1`` of chunk `chunk`
    of `items`, and the row holding the first (``first >= last`` past the end)."""
    first = np.int64(chunk) * items
    nnz = np.int64(indptr[n_rows])
    last = first + items if first + items < nnz else nnz
    row = _row_holding(indptr, first, n_rows) if first < nnz else np.int64(0)
    return first, last, row


@cuda.jit
def _spmm_balanced(indptr, indices, data, X, Y, items, zero):
    """Y += A @ X (Y zeroed before): thread (chunk, column) sums `items`
    consecutive nonzeros of one column, adding each row's piece atomically."""
    idx = cuda.grid(1)
    t = idx % X.shape[1]
    first, last, row = _chunk(indptr, Y.shape[0], idx // X.shape[1], items)
    if first < last:
        acc = zero
        for j in range(first, last):
            if indptr[row + 1] <= j:  # this row's piece is complete
                cuda.atomic.add(Y, (row, t), acc)
                acc = zero
                while indptr[row + 1] <= j:  # skips empty rows too
                    row += 1
            acc += data[j] * X[indices[j], t]
        cuda.atomic.add(Y, (row, t), acc)


@cuda.jit
def _rspmm_balanced(indptr, indices, data, X, Y, items):
    """Y += A.T @ X (Y zeroed before), thread (chunk, column) scattering `items` nonzeros."""
    idx = cuda.grid(1)
    t = idx % X.shape[1]
    first, last, row = _chunk(indptr, X.shape[0], idx // X.shape[1], items)
    if first < last:
        xi = X[row, t]
        for j in range(first, last):
            while indptr[row + 1] <= j:
                row += 1
                xi = X[row, t]
            cuda.atomic.add(Y, (indices[j], t), data[j] * xi)


@cuda.jit
def _sddmm_balanced(indptr, indices, left, right, out, items, zero):
    """out[j] = left[row(j)] . right[indices[j]], each thread `items` nonzeros."""
    first, last, row = _chunk(indptr, left.shape[0], cuda.grid(1), items)
    if first < last:
        k = left.shape[1]
        for j in range(first, last):
            while indptr[row + 1] <= j:
                row += 1
            c = indices[j]
            acc = zero
            for t in range(k):
                acc += left[row, t] * right[c, t]
            out[j] = acc


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


def kernel_for(longest_row):
    """The kernel "auto" means for a matrix whose longest row has `longest_row`
    nonzeros: "merge" (load-balanced) past ``LONG_ROW``, else "vector"."""
    return "merge" if longest_row > LONG_ROW else "vector"


def _resolve_kernel(kernel, indptr, nnz, stream):
    """`kernel` checked, and "auto" replaced by the matrix's choice (:func:`kernel_for`)."""
    if kernel not in ("auto", "vector", "merge", "scalar"):
        raise ValueError(f"kernel must be 'auto', 'vector', 'merge' or 'scalar', got {kernel!r}")
    if kernel == "auto":
        return kernel_for(csr_summary(indptr, nnz, stream)[2])
    return kernel


def spmv(indptr, indices, data, x, y, *, transpose=False, kernel="auto", workspace=None, stream=0):
    """y = A @ x (or A.T @ x) on device arrays; y is overwritten.

    Parameters
    ----------
    indptr, indices, data, x, y : numba device arrays
        A in CSR form, with ``len(indices) == len(data) == nnz``.
    transpose : bool
        Compute ``A.T @ x``.
    kernel : {"auto", "vector", "merge", "scalar"}
        See the module docstring; with `transpose`, "merge" is the balanced
        scatter and "vector"/"scalar" the row-per-thread one.
    workspace : int64 device array, optional
        At least ``merge_workspace_size(n_rows, nnz)`` entries for the merge
        kernel (allocated here when None; a caching allocator, such as
        torch's, makes that cheaper).  Ignored by the other kernels.
    stream : numba stream or 0
    """
    zero = data.dtype.type(0)
    if y.shape[0] == 0:
        return y
    kernel = _resolve_kernel(kernel, indptr, indices.shape[0], stream)
    if transpose:
        _launch(_zero_1d, _blocks(y.shape[0]), BLOCK, stream, y, zero)
        if x.shape[0] == 0:
            return y
        if kernel == "merge":  # the one-column case of the balanced transposed SpMM
            _launch(_rspmm_balanced, _blocks(_n_chunks(indices.shape[0])), BLOCK, stream, indptr, indices, data,
                    x.reshape(x.shape[0], 1), y.reshape(y.shape[0], 1), SCATTER_ITEMS)
        else:
            _launch(_rspmv, _blocks(x.shape[0]), BLOCK, stream, indptr, indices, data, x, y)
    elif kernel == "scalar":
        _launch(_spmv_scalar, _blocks(y.shape[0]), BLOCK, stream, indptr, indices, data, x, y, zero)
    elif kernel == "vector":
        vector_kernel = _spmv_vector_kernel(data.dtype, LANES)
        _launch(vector_kernel, _blocks(y.shape[0] * LANES), BLOCK, stream, indptr, indices, data, x, y, zero)
    else:
        _spmv_merge(indptr, indices, data, x, y, workspace, stream)
    return y


def spmm(indptr, indices, data, X, Y, *, transpose=False, kernel="auto", stream=0):
    """Y = A @ X (or A.T @ X) on device arrays; Y is overwritten.

    `kernel` as for :func:`spmv`: "merge" (which "auto" picks for long rows)
    gives each thread ``SCATTER_ITEMS`` nonzeros of one column and adds
    each row's piece atomically; the others give each thread a (row, column).
    """
    zero = data.dtype.type(0)
    if Y.shape[0] == 0 or Y.shape[1] == 0:
        return Y
    balanced = _resolve_kernel(kernel, indptr, indices.shape[0], stream) == "merge"
    k = X.shape[1]
    n_threads = _n_chunks(indices.shape[0]) * k
    if transpose or balanced:
        _launch(_zero_2d, _blocks(Y.shape[0] * Y.shape[1]), BLOCK, stream, Y, zero)
    if transpose and balanced:
        _launch(_rspmm_balanced, _blocks(n_threads), BLOCK, stream, indptr, indices, data, X, Y, SCATTER_ITEMS)
    elif transpose:
        _launch(_rspmm, _blocks(X.shape[0] * k), BLOCK, stream, indptr, indices, data, X, Y)
    elif balanced:
        _launch(_spmm_balanced, _blocks(n_threads), BLOCK, stream, indptr, indices, data, X, Y, SCATTER_ITEMS, zero)
    else:
        _launch(_spmm, _blocks(Y.shape[0] * k), BLOCK, stream, indptr, indices, data, X, Y, zero)
    return Y


def sddmm(indptr, indices, left, right, out, *, kernel="auto", stream=0):
    """out[j] = left[i] . right[indices[j]] for each stored entry j of row i.

    `kernel` as for :func:`spmv`: "merge" (which "auto" picks for long rows)
    gives each thread ``SCATTER_ITEMS`` nonzeros, the others a row.
    """
    zero = out.dtype.type(0)
    if out.shape[0] == 0:
        return out
    if _resolve_kernel(kernel, indptr, out.shape[0], stream) == "merge":
        _launch(_sddmm_balanced, _blocks(_n_chunks(out.shape[0])), BLOCK, stream, indptr, indices, left, right,
                out, SCATTER_ITEMS, zero)
    else:
        _launch(_sddmm, _blocks(left.shape[0]), BLOCK, stream, indptr, indices, left, right, out, zero)
    return out
