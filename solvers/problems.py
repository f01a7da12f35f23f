"""Poisson problems for the solver benchmarks: boxes, obstacles, coefficients, right-hand sides.

The learned conjugate-direction solver (a CNN acting on the grid), CG,
IC(0)-PCG and algebraic multigrid are compared on the same systems
``A x = b``, where ``A`` is the finite-volume Laplacian
``-div(k grad u)`` on the fluid cells of a 2-D or 3-D box.

Conventions
-----------
* Unit grid spacing, scaled like :func:`sciml.data.poisson_2d` /
  :func:`sciml.data.poisson_3d`: with ``k = 1`` a cell's diagonal is its
  number of coupled faces (4 or 6 in the interior) and each neighbour
  coupling is ``-1``.  Without obstacles and coefficients the Dirichlet
  matrix *is* ``poisson_2d(n)`` / ``poisson_3d(n)``.
* Cells are numbered in C order (last axis fastest) over the fluid cells
  only; :class:`PoissonProblem` maps between vectors and grids.
* **Dirichlet** faces (``u = 0``) sit one spacing beyond the last cell, the
  node-centred convention of :mod:`sciml.data`, so a wall face adds the
  cell's own ``k`` to its diagonal.  **Neumann** faces (zero flux) add
  nothing: no coupling, no diagonal.
* ``boundary="dirichlet"``: every box wall is Dirichlet.
  ``boundary="neumann"``: the fluid-style pressure Poisson setting of the
  DCDM paper (Kaneda et al., 2023) -- the box walls are solid (Neumann)
  except one **open face, the high end of the last axis** (``u[..., -1]``'s
  outer face, "the top"), which is Dirichlet.  A pure Neumann problem is
  singular; the open face makes the matrix SPD.
* Faces between fluid and solid (obstacle) cells are always Neumann.
* Face coefficients are the harmonic mean ``2 k_i k_j / (k_i + k_j)`` of the
  two cells; a Dirichlet wall face uses the cell's ``k``.
* Fluid cells with no path to a Dirichlet face would make ``A`` singular;
  :func:`poisson` raises (or, with ``drop_isolated=True``, makes them
  solid).
* Every random generator takes ``random_state`` (None, an int or a
  ``numpy.random.Generator``), draws from
  ``numpy.random.default_rng(random_state)`` and never touches numpy's
  global RNG.  Batches of fields or vectors carry the batch as a trailing
  axis: grids ``(*shape, n)``, vectors ``(n_rows, n)``.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

import numpy as np
import scipy.fft
import scipy.ndimage
import scipy.sparse as sp

from sciml._validation import check_float_dtype, check_positive_int, check_real
from sciml.prox import _is_tensor

__all__ = [
    "PoissonProblem",
    "poisson",
    "obstacle_mask",
    "coefficient_field",
    "gaussian_random_field",
    "rhs",
    "BOUNDARIES",
    "OBSTACLES",
    "COEFFICIENTS",
    "RHS_KINDS",
]

BOUNDARIES = ("dirichlet", "neumann")
OBSTACLES = ("sphere", "box", "cylinders", "channel")
COEFFICIENTS = ("lognormal", "layers")
RHS_KINDS = ("randn", "a_randn", "smooth")

# The parameters each obstacle kind accepts, with their defaults (None: computed from the grid).
_OBSTACLE_PARAMS = {
    "sphere": {"radius": 0.25},
    "box": {"size": 0.5},
    "cylinders": {"count": 4, "radius": 0.12},
    "channel": {"gap": 0.25, "thickness": None},
}


# --------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------


def _check_shape(shape):
    """A grid shape: a tuple of 2 or 3 positive ints."""
    if isinstance(shape, (numbers.Integral, np.integer)) and not isinstance(shape, bool):
        raise TypeError(f"shape must be a tuple of 2 or 3 positive ints, got the int {shape!r}; "
                        f"pass ({shape}, {shape}) for 2-D or ({shape}, {shape}, {shape}) for 3-D")
    try:
        dims = tuple(shape)
    except TypeError:
        raise TypeError(f"shape must be a tuple of 2 or 3 positive ints, got {shape!r}") from None
    if len(dims) not in (2, 3):
        raise ValueError(f"shape must have 2 or 3 dimensions (a 2-D or 3-D grid), got {dims!r}")
    return tuple(check_positive_int(f"shape[{axis}]", n) for axis, n in enumerate(dims))


def _check_choice(name, value, choices):
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {list(choices)}, got {value!r} of type {type(value).__name__}")
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; expected one of {list(choices)}")
    return value


def _check_grid_array(name, value, shape):
    """A numpy array of grid shape (no conversion of dtype)."""
    if _is_tensor(value):
        raise TypeError(f"{name} must be a numpy array, got a torch.Tensor (use .cpu().numpy())")
    value = np.asarray(value)
    if value.shape != shape:
        raise ValueError(f"{name} has shape {value.shape} but the grid has shape {shape}")
    return value


def _check_correlation_length(correlation_length, shape):
    if correlation_length is None:
        return max(shape) / 8.0
    return check_real("correlation_length", correlation_length)


def _slab(ndim, axis, index):
    """Index tuple selecting ``index`` (an int or a slice) along ``axis``."""
    key = [slice(None)] * ndim
    key[axis] = index
    return tuple(key)


def _dirichlet_faces(ndim, boundary):
    """(axis, side) of each Dirichlet wall; side 0 is the low end, -1 the high end."""
    if boundary == "dirichlet":
        return [(axis, side) for axis in range(ndim) for side in (0, -1)]
    return [(ndim - 1, -1)]  # neumann: only the open face, the high end of the last axis


def _connected_to_faces(fluid, faces):
    """Fluid cells connected (through shared faces) to a fluid cell on one of ``faces``."""
    labels, _ = scipy.ndimage.label(fluid)  # default structure: face neighbours only
    touching = np.unique(np.concatenate([labels[_slab(fluid.ndim, axis, side)].ravel() for axis, side in faces]))
    touching = touching[touching > 0]
    return np.isin(labels, touching)


def _readonly(array):
    array.setflags(write=False)
    return array


# --------------------------------------------------------------------------
# the problem
# --------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class PoissonProblem:
    """A Poisson matrix on the fluid cells of a grid, with its grid maps.

    Made by :func:`poisson`; the arrays are read-only.

    Attributes
    ----------
    A : scipy.sparse.csr_array, shape (n_rows, n_rows)
        Symmetric positive definite, canonical (sorted indices, no
        duplicates), float64 unless asked otherwise.
    shape : tuple of int
        The grid, ``(n0, n1)`` or ``(n0, n1, n2)``.
    mask : numpy.ndarray of bool, shape `shape`
        True on fluid cells (unknowns), False on solid cells.
    index : numpy.ndarray of int64, shape `shape`
        Row of each fluid cell (C order over the fluid cells), -1 on solid
        cells.
    boundary : str
        ``"dirichlet"`` or ``"neumann"`` (walls Neumann, the high end of the
        last axis open/Dirichlet); see :func:`poisson`.
    coefficient : numpy.ndarray of float64, shape `shape`, or None
        The cell coefficients ``k``, None for ``k = 1``.

    Examples
    --------
    >>> problem = poisson((3, 4), obstacles=np.pad(np.ones((1, 1), bool), ((1, 1), (1, 2))))
    >>> problem.n_rows, problem.index[1]
    (11, array([ 4, -1,  5,  6]))
    >>> grid = problem.to_grid(np.arange(11.0))
    >>> grid[1], np.array_equal(problem.from_grid(grid), np.arange(11.0))
    (array([4., 0., 5., 6.]), True)
    """

    A: sp.csr_array
    shape: tuple
    mask: np.ndarray
    index: np.ndarray
    boundary: str
    coefficient: np.ndarray | None = None
    _cells: np.ndarray = field(init=False, repr=False)
    _device_cache: dict = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self):
        cells = np.flatnonzero(self.mask)
        if cells.size != self.A.shape[0]:
            raise ValueError(f"PoissonProblem: mask has {cells.size} fluid cells but A has {self.A.shape[0]} rows")
        object.__setattr__(self, "_cells", _readonly(cells))

    def __getstate__(self):
        # The device copies are a cache: a problem used on a GPU unpickles on a CPU-only machine.
        return {**self.__dict__, "_device_cache": {}}

    def __repr__(self):
        solid = int(self.mask.size - self._cells.size)
        coefficient = "None" if self.coefficient is None else "array"
        return (f"PoissonProblem(shape={self.shape}, boundary={self.boundary!r}, n_rows={self.n_rows}, "
                f"nnz={self.A.nnz}, solid_cells={solid}, coefficient={coefficient}, dtype={self.A.dtype})")

    @property
    def n_rows(self) -> int:
        """Number of unknowns (fluid cells), the size of ``A``."""
        return int(self.A.shape[0])

    @property
    def ndim(self) -> int:
        """Grid dimension, 2 or 3."""
        return len(self.shape)

    def _cells_for(self, tensor):
        """The fluid cells' flat indices as a torch tensor on ``tensor``'s device (cached)."""
        import torch

        key = ("cells", str(tensor.device))
        cells = self._device_cache.get(key)
        if cells is None:
            cells = torch.as_tensor(self._cells.copy(), dtype=torch.int64, device=tensor.device)
            self._device_cache[key] = cells
        return cells

    def _matrix_for(self, device):
        """``A`` in float64 as a torch sparse CSR tensor on ``device``, checked
        by :func:`solvers.cg.check_spd_matrix` (cached: a solver called
        repeatedly on one problem checks it and copies it to a GPU once)."""
        import torch

        from sciml.sparse import to_torch_csr

        from .cg import check_spd_matrix

        device = torch.device(device)
        key = ("A64", str(device))
        matrix = self._device_cache.get(key)
        if matrix is None:
            # Checked once per problem and device: a hand-built A that is not
            # SPD gets the error naming the problem, not a breakdown mid-solve.
            matrix = to_torch_csr(check_spd_matrix(self.A).astype(np.float64, copy=False), device=device)
            self._device_cache[key] = matrix
        return matrix

    def to_grid(self, vector):
        """Scatter a vector (or columns of vectors) onto the grid; solid cells are 0.

        Parameters
        ----------
        vector : numpy.ndarray or torch.Tensor, shape (n_rows,) or (n_rows, ...)
            Trailing axes (a batch of columns) are carried along.  A torch
            tensor stays a torch tensor on its device.

        Returns
        -------
        grid : same type and dtype as `vector`, shape ``(*shape, ...)``
        """
        torch_in = _is_tensor(vector)
        if not torch_in:
            vector = np.asarray(vector)
        if vector.ndim < 1 or vector.shape[0] != self.n_rows:
            raise ValueError(f"to_grid expects a vector of shape ({self.n_rows}, ...) (one entry per fluid cell), "
                             f"got shape {tuple(vector.shape)}")
        rest = tuple(vector.shape[1:])
        if torch_in:
            out = vector.new_zeros((self.mask.size,) + rest)
            out[self._cells_for(vector)] = vector
        else:
            out = np.zeros((self.mask.size,) + rest, dtype=vector.dtype)
            out[self._cells] = vector
        return out.reshape(self.shape + rest)

    def from_grid(self, grid):
        """Gather the fluid cells of a grid into a vector (the inverse of :meth:`to_grid`).

        Parameters
        ----------
        grid : numpy.ndarray or torch.Tensor, shape ``(*shape, ...)``
            Trailing axes are carried along; values on solid cells are
            dropped.

        Returns
        -------
        vector : same type and dtype as `grid`, shape (n_rows, ...)
            A new array (never a view of `grid`).
        """
        torch_in = _is_tensor(grid)
        if not torch_in:
            grid = np.asarray(grid)
        if tuple(grid.shape[: self.ndim]) != self.shape:
            raise ValueError(f"from_grid expects an array of shape {self.shape} (+ trailing axes), "
                             f"got shape {tuple(grid.shape)}")
        rest = tuple(grid.shape[self.ndim:])
        flat = grid.reshape((self.mask.size,) + rest)
        return flat[self._cells_for(grid)] if torch_in else flat[self._cells]


def _assemble(fluid, k, boundary):
    """Face-by-face assembly; returns (A as float64 CSR, index grid, per-row Dirichlet weight)."""
    ndim = fluid.ndim
    index = np.full(fluid.shape, -1, dtype=np.int64)
    n_rows = int(np.count_nonzero(fluid))
    index[fluid] = np.arange(n_rows)
    diag = np.zeros(n_rows)
    rows, cols, vals = [], [], []
    for axis in range(ndim):
        lo, hi = _slab(ndim, axis, slice(0, -1)), _slab(ndim, axis, slice(1, None))
        both = fluid[lo] & fluid[hi]
        i, j = index[lo][both], index[hi][both]
        if k is None:
            kf = np.ones(i.size)
        else:
            kf = 2.0 / (1.0 / k[lo][both] + 1.0 / k[hi][both])  # harmonic mean, no overflow
        rows += [i, j]
        cols += [j, i]
        vals += [-kf, -kf]
        diag += np.bincount(i, kf, minlength=n_rows) + np.bincount(j, kf, minlength=n_rows)
    wall = np.zeros(n_rows)
    for axis, side in _dirichlet_faces(ndim, boundary):
        face = _slab(ndim, axis, side)
        on_face = fluid[face]
        kw = np.ones(np.count_nonzero(on_face)) if k is None else k[face][on_face]
        wall += np.bincount(index[face][on_face], kw, minlength=n_rows)
    diag += wall
    ids = np.arange(n_rows)
    # int32 indices where they fit, as scipy (and sciml.data) make them.
    index_dtype = np.int32 if 7 * n_rows < np.iinfo(np.int32).max else np.int64
    row = np.concatenate(rows + [ids]).astype(index_dtype)
    col = np.concatenate(cols + [ids]).astype(index_dtype)
    A = sp.coo_array((np.concatenate(vals + [diag]), (row, col)), shape=(n_rows, n_rows)).tocsr()
    A.sum_duplicates()
    A.sort_indices()
    return A, index, wall


def poisson(shape, *, boundary="dirichlet", obstacles=None, coefficient=None, drop_isolated=False,
            dtype=np.float64, random_state=None):
    """The 5-point (2-D) / 7-point (3-D) finite-volume Laplacian on the fluid cells of a box.

    Discretises ``-div(k grad u) = f`` with unit spacing; see the module
    docstring for the conventions.

    Parameters
    ----------
    shape : tuple of int
        ``(n0, n1)`` or ``(n0, n1, n2)`` cells.
    boundary : {"dirichlet", "neumann"}, default "dirichlet"
        ``"dirichlet"``: ``u = 0`` on every box wall (as
        :func:`sciml.data.poisson_2d`).  ``"neumann"``: the fluid-style
        setting -- zero-flux walls except the open face at the high end of
        the last axis, which is Dirichlet (without it the matrix would be
        singular).
    obstacles : None, numpy.ndarray of bool, or str, default None
        Solid cells, True = solid, of grid shape; or the name of a built-in
        geometry (one of :data:`OBSTACLES`, made by :func:`obstacle_mask`
        with its defaults and `random_state`).  Solid cells are removed
        from the system; fluid-solid faces are Neumann.
    coefficient : None, numpy.ndarray, or str, default None
        Cell coefficients ``k > 0`` of grid shape (only fluid cells are
        read), None for ``k = 1``, or the name of a field kind (one of
        :data:`COEFFICIENTS`, made by :func:`coefficient_field` with its
        defaults and `random_state`).
    drop_isolated : bool, default False
        What to do with fluid cells that have no path to a Dirichlet face
        (they make ``A`` singular): raise ValueError (default) or turn them
        solid.
    dtype : {numpy.float64, numpy.float32}
        dtype of ``A`` (assembled in float64, then cast).
    random_state : None, int or numpy.random.Generator
        Used only for named random `obstacles` ("cylinders") and named
        `coefficient` fields; one generator draws the obstacles, then the
        coefficients.

    Returns
    -------
    PoissonProblem

    Raises
    ------
    ValueError
        Bad shapes or names, an all-solid grid, non-positive or non-finite
        coefficients on fluid cells, or fluid cells cut off from every
        Dirichlet face (unless ``drop_isolated``).
    TypeError
        Arguments of the wrong type (e.g. a non-boolean obstacle array).

    Examples
    --------
    >>> poisson((2, 3)).A.toarray()[0]
    array([ 4., -1.,  0., -1.,  0.,  0.])
    >>> poisson((2, 3), boundary="neumann").A.toarray()[0]  # the open face is u[:, -1]'s outer face
    array([ 2., -1.,  0., -1.,  0.,  0.])
    """
    shape = _check_shape(shape)
    boundary = _check_choice("boundary", boundary, BOUNDARIES)
    dtype = check_float_dtype(dtype)
    if not isinstance(drop_isolated, (bool, np.bool_)):
        raise TypeError(f"drop_isolated must be a bool, got {drop_isolated!r}")
    rng = np.random.default_rng(random_state)

    if obstacles is None:
        solid = np.zeros(shape, dtype=bool)
    elif isinstance(obstacles, str):
        solid = obstacle_mask(shape, _check_choice("obstacles", obstacles, OBSTACLES), random_state=rng)
    else:
        solid = _check_grid_array("obstacles", obstacles, shape)
        if solid.dtype != bool:
            raise TypeError(f"obstacles must be a boolean array (True = solid) or one of {list(OBSTACLES)}, "
                            f"got an array of dtype {solid.dtype}")
    fluid = ~solid
    if not fluid.any():
        raise ValueError(f"obstacles leave no fluid cell: all {fluid.size} cells of the {shape} grid are solid")

    if coefficient is None:
        k = None
    else:
        if isinstance(coefficient, str):
            k = coefficient_field(shape, kind=_check_choice("coefficient", coefficient, COEFFICIENTS),
                                  random_state=rng)
        else:
            k = _check_grid_array("coefficient", coefficient, shape)
            if k.dtype.kind not in "iuf":
                raise TypeError(f"coefficient must be a real numeric array, got dtype {k.dtype}")
            k = k.astype(np.float64)  # a copy: the problem keeps its own
        bad = fluid & ~(np.isfinite(k) & (k > 0))
        if bad.any():
            where = tuple(int(c) for c in np.argwhere(bad)[0])
            raise ValueError(f"coefficient must be positive and finite on fluid cells; {int(bad.sum())} cell(s) "
                             f"are not, e.g. k{list(where)} = {float(k[where])}")
        _readonly(k)

    # Fluid regions with no Dirichlet face make A singular: detect them on the grid.
    if not fluid.all():  # a full box is connected and always has a Dirichlet face
        reached = _connected_to_faces(fluid, _dirichlet_faces(len(shape), boundary))
        cut = fluid & ~reached
        if cut.any():
            if not drop_isolated:
                n_regions = scipy.ndimage.label(cut)[1]
                where = "the open face (high end of the last axis)" if boundary == "neumann" else "the box walls"
                raise ValueError(
                    f"{int(cut.sum())} fluid cell(s) in {n_regions} region(s) are cut off from the Dirichlet "
                    f"boundary ({where}) by obstacles; the matrix would be singular. Pass drop_isolated=True "
                    f"to make them solid")
            fluid = reached
            if not fluid.any():
                raise ValueError("no fluid cell is connected to the Dirichlet boundary; the matrix would be singular")

    A, index, _ = _assemble(fluid, k, boundary)
    if dtype != np.float64:
        A = A.astype(dtype)
    return PoissonProblem(A=A, shape=shape, mask=_readonly(fluid), index=_readonly(index), boundary=boundary,
                          coefficient=k)


# --------------------------------------------------------------------------
# obstacles
# --------------------------------------------------------------------------


def _fraction(kind, name, value, *, upper, closed=False):
    value = check_real(f"{kind} {name}", value)
    if value > upper or (value == upper and not closed):
        raise ValueError(f"{kind} {name} must be in (0, {upper}{']' if closed else ')'}, got {value!r}")
    return value


def obstacle_mask(shape, kind, *, random_state=None, **params):
    """Solid cells of a built-in geometry (True = solid).

    Geometries the learned solver never saw in training.  Fluid pockets
    without a path to the open face (the high end of the last axis) are
    filled in, so every mask gives an SPD matrix with both boundaries of
    :func:`poisson`.

    Parameters
    ----------
    shape : tuple of int
        ``(n0, n1)`` or ``(n0, n1, n2)``.
    kind : {"sphere", "box", "cylinders", "channel"}
        * ``"sphere"``: a disc (2-D) / ball (3-D) in the middle;
          ``radius`` (default 0.25, at most 0.5) as a fraction of the
          smallest side.
        * ``"box"``: a centred solid block; ``size`` (default 0.5, below 1)
          as a fraction of each side.
        * ``"cylinders"``: ``count`` (default 4) random discs (2-D) /
          cylinders along axis 0 (3-D), possibly overlapping, of radius
          between half and all of ``radius`` (default 0.12, fraction of the
          smallest cross-section side); needs `random_state`.  The top cell
          layer (high end of the last axis) stays fluid.
        * ``"channel"``: a wall across the last axis at its middle,
          ``thickness`` cells thick (default ``max(1, n_last // 16)``), with
          a centred gap (a slot in 2-D, a square hole in 3-D) of ``gap``
          (default 0.25) of each other side, at least one cell: the lower
          chamber connects to the open face only through the gap.
    random_state : None, int or numpy.random.Generator
        Used by ``"cylinders"``.
    **params
        The parameters of `kind` listed above.

    Returns
    -------
    solid : numpy.ndarray of bool, shape `shape`

    Examples
    --------
    >>> obstacle_mask((5, 5), "box").astype(int)
    array([[0, 0, 0, 0, 0],
           [0, 1, 1, 1, 0],
           [0, 1, 1, 1, 0],
           [0, 1, 1, 1, 0],
           [0, 0, 0, 0, 0]])
    """
    shape = _check_shape(shape)
    kind = _check_choice("obstacle kind", kind, OBSTACLES)
    allowed = _OBSTACLE_PARAMS[kind]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise TypeError(f"obstacle {kind!r} takes parameters {sorted(allowed)}, got unexpected {unknown}")
    p = {**allowed, **params}
    ndim = len(shape)
    coords = np.ogrid[tuple(slice(0, n) for n in shape)]
    centre = [(n - 1) / 2.0 for n in shape]

    if kind == "sphere":
        radius = _fraction(kind, "radius", p["radius"], upper=0.5, closed=True) * min(shape)
        solid = sum((x - c) ** 2 for x, c in zip(coords, centre)) <= radius**2
    elif kind == "box":
        size = _fraction(kind, "size", p["size"], upper=1.0)
        solid = np.zeros(shape, dtype=bool)
        block = []
        for n in shape:
            margin = max(1, round(n * (1 - size) / 2))  # centred, with a fluid layer on each side
            block.append(slice(margin, n - margin))
        solid[tuple(block)] = True
    elif kind == "cylinders":
        count = check_positive_int("cylinders count", p["count"])
        rng = np.random.default_rng(random_state)
        axes = list(range(ndim)) if ndim == 2 else [1, 2]  # 3-D: cylinders parallel to axis 0
        r_max = _fraction(kind, "radius", p["radius"], upper=0.5, closed=True) * min(shape[a] for a in axes)
        radii = r_max * rng.uniform(0.5, 1.0, size=count)
        solid = np.zeros(shape, dtype=bool)
        for r in radii:
            dist2 = 0
            for a in axes:
                n = shape[a]
                top = n - 2 if a == ndim - 1 else n - 1  # the last axis keeps its top layer fluid
                low, high = min(r, top / 2.0), max(top - r, top / 2.0)
                dist2 = dist2 + (coords[a] - rng.uniform(low, high)) ** 2
            solid |= np.broadcast_to(dist2 <= r * r, shape)
        solid[_slab(ndim, ndim - 1, -1)] = False
    else:  # channel
        gap = _fraction(kind, "gap", p["gap"], upper=1.0, closed=True)
        n_last = shape[-1]
        thickness = max(1, n_last // 16) if p["thickness"] is None else check_positive_int(
            "channel thickness", p["thickness"])
        solid = np.zeros(shape, dtype=bool)
        start = max(1, n_last // 2 - thickness // 2)
        stop = min(start + thickness, n_last - 1)  # keep the top layer fluid
        solid[_slab(ndim, ndim - 1, slice(start, stop))] = True
        hole = []
        for n in shape[:-1]:
            margin = min(round(n * (1 - gap) / 2), (n - 1) // 2)  # centred, at least one cell
            hole.append(slice(margin, n - margin))
        solid[tuple(hole) + (slice(start, stop),)] = False

    solid = np.ascontiguousarray(solid, dtype=bool)
    fluid = ~solid
    if fluid.any():
        solid |= ~_connected_to_faces(fluid, [(ndim - 1, -1)])
    if solid.all():
        raise ValueError(f"obstacle {kind!r} with {p} fills the whole {shape} grid")
    return solid


# --------------------------------------------------------------------------
# random fields
# --------------------------------------------------------------------------


def gaussian_random_field(shape, *, correlation_length=None, n=None, random_state=None):
    """Smooth Gaussian random fields on a grid: white noise filtered by a Gaussian spectrum.

    The covariance is ``exp(-r**2 / (2 l**2))`` (``l`` the correlation
    length in cells).  The noise is filtered by FFT on a box padded by
    ``min(3 l, n)`` cells per axis, so the field is not periodic; each field
    is then standardised (zero mean, unit standard deviation over the grid).

    Parameters
    ----------
    shape : tuple of int
        ``(n0, n1)`` or ``(n0, n1, n2)``.
    correlation_length : float, optional
        In cells; default ``max(shape) / 8``.
    n : int, optional
        Number of fields; None returns one field of grid shape.
    random_state : None, int or numpy.random.Generator

    Returns
    -------
    field : numpy.ndarray of float64, shape `shape` or ``(*shape, n)``
        Fields are drawn one after another: the first ``m`` fields of a
        draw of ``n`` are the draw of ``m`` (``n=None`` is ``n=1``).
    """
    shape = _check_shape(shape)
    length = _check_correlation_length(correlation_length, shape)
    count = 1 if n is None else check_positive_int("n", n)
    rng = np.random.default_rng(random_state)
    padded = tuple(scipy.fft.next_fast_len(s + min(math.ceil(3 * length), s), real=True) for s in shape)
    axes = tuple(range(len(shape)))
    # Filter exp(-l^2 |w|^2 / 4): its square is the spectral density of the Gaussian covariance.
    freqs = [scipy.fft.fftfreq(s) for s in padded[:-1]] + [scipy.fft.rfftfreq(padded[-1])]
    omega2 = sum(np.reshape((2 * np.pi * f) ** 2, [-1 if a == b else 1 for b in axes]) for a, f in enumerate(freqs))
    gain = np.exp(-0.25 * length**2 * omega2)
    crop = tuple(slice(0, s) for s in shape)
    fields = np.empty(shape + (count,))
    for j in range(count):  # one field at a time: bounded memory, and a draw of n starts with the draw of fewer
        f = scipy.fft.irfftn(scipy.fft.rfftn(rng.standard_normal(padded)) * gain, s=padded)[crop]
        f = f - f.mean()
        std = f.std()
        fields[..., j] = f / std if std > 0 else f
    return fields[..., 0].copy() if n is None else fields


def coefficient_field(shape, *, kind="lognormal", contrast=10.0, correlation_length=None, n_layers=4,
                      random_state=None):
    """A positive coefficient field ``k`` for :func:`poisson`, with values in ``[1, contrast]``.

    Parameters
    ----------
    shape : tuple of int
        ``(n0, n1)`` or ``(n0, n1, n2)``.
    kind : {"lognormal", "layers"}, default "lognormal"
        ``"lognormal"``: ``exp`` of a Gaussian random field
        (:func:`gaussian_random_field`) rescaled so that ``min k = 1`` and
        ``max k = contrast`` exactly.  ``"layers"``: `n_layers` equal
        layers across the last axis (strata under the open top face),
        alternating ``1`` and ``contrast``, starting with 1 at the bottom.
    contrast : float, default 10.0
        ``max k / min k`` (>= 1).
    correlation_length : float, optional
        ``"lognormal"`` only; in cells, default ``max(shape) / 8``.
    n_layers : int, default 4
        ``"layers"`` only.
    random_state : None, int or numpy.random.Generator
        ``"lognormal"`` only.

    Returns
    -------
    k : numpy.ndarray of float64, shape `shape`
    """
    shape = _check_shape(shape)
    kind = _check_choice("coefficient kind", kind, COEFFICIENTS)
    contrast = check_real("contrast", contrast)
    if contrast < 1:
        raise ValueError(f"contrast must be >= 1 (it is max k / min k), got {contrast!r}")
    if kind == "layers":
        n_layers = check_positive_int("n_layers", n_layers)
        layer = (np.arange(shape[-1]) * n_layers) // shape[-1]
        return np.broadcast_to(np.where(layer % 2 == 0, 1.0, contrast), shape).copy()
    g = gaussian_random_field(shape, correlation_length=correlation_length, random_state=random_state)
    span = g.max() - g.min()
    if span == 0:
        return np.ones(shape)
    return np.exp(np.log(contrast) * (g - g.min()) / span)


# --------------------------------------------------------------------------
# right-hand sides
# --------------------------------------------------------------------------


def rhs(problem, kind, *, n=None, correlation_length=None, random_state=None):
    """Right-hand sides with unit 2-norm columns.

    Parameters
    ----------
    problem : PoissonProblem
    kind : {"randn", "a_randn", "smooth"}
        ``"randn"``: standard normal entries (all frequencies alike).
        ``"a_randn"``: ``A @ randn``, weighted to high frequencies.
        ``"smooth"``: a Gaussian random field on the grid
        (:func:`gaussian_random_field`) restricted to the fluid cells, low
        frequency.
    n : int, optional
        Number of columns; None returns one vector.
    correlation_length : float, optional
        ``"smooth"`` only; in cells, default ``max(shape) / 8``.
    random_state : None, int or numpy.random.Generator

    Returns
    -------
    b : numpy.ndarray, shape (n_rows,) or (n_rows, n), in ``A``'s dtype
        Columns are drawn one after another: the first ``m`` columns of a
        draw of ``n`` are the draw of ``m`` (``n=None`` is ``n=1``).

    Examples
    --------
    >>> problem = poisson((8, 8))
    >>> b = rhs(problem, "smooth", n=3, random_state=0)
    >>> b.shape, np.allclose(np.linalg.norm(b, axis=0), 1)
    ((64, 3), True)
    """
    if not isinstance(problem, PoissonProblem):
        raise TypeError(f"problem must be a PoissonProblem (made by solvers.problems.poisson), "
                        f"got {type(problem).__name__}")
    kind = _check_choice("rhs kind", kind, RHS_KINDS)
    count = 1 if n is None else check_positive_int("n", n)
    if correlation_length is not None and kind != "smooth":
        raise ValueError(f"correlation_length applies to the 'smooth' rhs only, not {kind!r}")
    rng = np.random.default_rng(random_state)
    if kind == "smooth":
        b = problem.from_grid(gaussian_random_field(problem.shape, correlation_length=correlation_length,
                                                    n=count, random_state=rng))
    else:
        b = rng.standard_normal((count, problem.n_rows)).T  # column by column, as the smooth fields
        if kind == "a_randn":
            A = problem.A if problem.A.dtype == np.float64 else problem.A.astype(np.float64)
            b = np.asarray(A @ b)
    norms = np.linalg.norm(b, axis=0)
    b[:, norms == 0] = 1.0  # only a one-cell smooth field (standardised to 0) can vanish
    b /= np.where(norms == 0, math.sqrt(problem.n_rows), norms)
    b = np.ascontiguousarray(b, dtype=problem.A.dtype)
    return b[:, 0].copy() if n is None else b
