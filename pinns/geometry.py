"""Domains that collocation points are sampled from.

:class:`Box` is built in: a product of intervals, one of which may be time.
Any DeepXDE geometry (``deepxde.geometry.Disk``, ``Polygon``, CSG
combinations, ``GeometryXTime``...) is accepted too, through
:func:`as_domain`; DeepXDE is imported only by that wrapper's user, never
by this module.

Sampling draws from a local ``torch.Generator``: the global torch and numpy
random states are left as they were.
"""

import numbers

import numpy as np

__all__ = ["Box", "DeepXDEDomain", "as_domain"]


def _seed_from(generator):
    """An integer seed drawn from ``generator`` (for samplers with their own RNG)."""
    import torch

    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator))


class Box:
    """An axis-aligned box ``[lower_0, upper_0] x ... x [lower_d, upper_d]``.

    Parameters
    ----------
    lower, upper : sequence of float
        Bounds of each input column.
    names : sequence of str or None, default=None
        Names of the columns (default ``x0, x1, ...``), used in messages and
        by :func:`~pinns.equations` helpers.
    time : int, str or None, default=None
        The column that is time (index or name).  Its lower face is the
        initial slice (for :class:`~pinns.conditions.InitialCondition`);
        boundary conditions apply on the faces of the other columns only.

    Examples
    --------
    >>> from pinns import Box
    >>> domain = Box([-1, 0], [1, 1], names=["x", "t"], time="t")
    >>> domain.dim, domain.spatial_axes
    (2, (0,))
    """

    def __init__(self, lower, upper, names=None, time=None):
        lower = np.atleast_1d(np.asarray(lower, dtype=float))
        upper = np.atleast_1d(np.asarray(upper, dtype=float))
        if lower.ndim != 1 or lower.shape != upper.shape or lower.size == 0:
            raise ValueError(
                f"lower and upper must be 1-D of the same length, got shapes "
                f"{lower.shape} and {upper.shape}."
            )
        if not (np.all(np.isfinite(lower)) and np.all(np.isfinite(upper))):
            raise ValueError("Box bounds must be finite.")
        if np.any(upper <= lower):
            raise ValueError(f"Box needs lower < upper in every column, got {lower} and {upper}.")
        self.lower, self.upper = lower, upper
        d = lower.size
        self.names = tuple(f"x{i}" for i in range(d)) if names is None else tuple(names)
        if len(self.names) != d:
            raise ValueError(f"{len(self.names)} names for a {d}-column box.")
        if time is None:
            self.time_axis = None
        elif isinstance(time, str):
            if time not in self.names:
                raise ValueError(f"time={time!r} is not one of the names {self.names}.")
            self.time_axis = self.names.index(time)
        elif isinstance(time, numbers.Integral) and not isinstance(time, (bool, np.bool_)) and -d <= time < d:
            self.time_axis = int(time) % d
        else:
            raise ValueError(f"time must be a column index or name, got {time!r}.")

    def __repr__(self):
        time = "" if self.time_axis is None else f", time={self.names[self.time_axis]!r}"
        return f"Box({self.lower.tolist()}, {self.upper.tolist()}, names={list(self.names)}{time})"

    @property
    def dim(self):
        """Number of input columns."""
        return self.lower.size

    @property
    def bounds(self):
        """``(lower, upper)`` arrays, used to scale inputs to ``[-1, 1]``."""
        return self.lower, self.upper

    @property
    def spatial_axes(self):
        """Columns that are not time."""
        return tuple(i for i in range(self.dim) if i != self.time_axis)

    def contains(self, X, rtol=1e-9):
        """Boolean mask of the rows of ``X`` inside the closed box."""
        X = np.asarray(X, dtype=float)
        tol = rtol * (self.upper - self.lower)
        return np.all((X >= self.lower - tol) & (X <= self.upper + tol), axis=1)

    def sample_interior(self, n, generator, method="sobol"):
        """``n`` points in the box, shape ``(n, dim)``, as a float64 torch tensor.

        ``method="sobol"`` gives a scrambled Sobol sequence (even coverage of
        the box with few points); ``"uniform"`` independent uniform draws.
        """
        import torch

        if method == "sobol":
            engine = torch.quasirandom.SobolEngine(self.dim, scramble=True, seed=_seed_from(generator))
            U = engine.draw(n, dtype=torch.float64)
        elif method == "uniform":
            U = torch.rand(n, self.dim, generator=generator, dtype=torch.float64)
        else:
            raise ValueError(f"method must be 'sobol' or 'uniform', got {method!r}.")
        lo, hi = torch.as_tensor(self.lower), torch.as_tensor(self.upper)
        return lo + (hi - lo) * U

    def sample_boundary(self, n, generator):
        """``n`` points on the faces of the spatial columns, with their outward normals.

        Faces are chosen in proportion to their area (for a 1-D spatial
        domain: the two end points, in equal numbers).

        Returns
        -------
        X : torch.Tensor of shape (n, dim)
        normals : torch.Tensor of shape (n, dim)
        """
        import torch

        axes = self.spatial_axes
        if not axes:
            raise ValueError("A box whose only column is time has no spatial boundary.")
        X = self.sample_interior(n, generator, method="uniform")
        widths = self.upper - self.lower
        # Area of the pair of faces normal to each axis: product of the other widths.
        area = np.array([np.prod(np.delete(widths, a)) for a in axes])
        face = torch.multinomial(
            torch.as_tensor(np.repeat(area, 2), dtype=torch.float64), n, replacement=True,
            generator=generator,
        )
        normals = torch.zeros_like(X)
        for k, a in enumerate(axes):
            for side, (bound, sign) in enumerate(((self.lower[a], -1.0), (self.upper[a], 1.0))):
                rows = face == 2 * k + side
                X[rows, a] = bound
                normals[rows, a] = sign
        return X, normals

    def sample_initial(self, n, generator, method="sobol"):
        """``n`` points on the initial slice ``t = lower[time]``."""
        if self.time_axis is None:
            raise ValueError("This box has no time column; give Box(..., time=...) for initial conditions.")
        X = self.sample_interior(n, generator, method=method)
        X[:, self.time_axis] = self.lower[self.time_axis]
        return X


def _is_space_time(geometry):
    """Whether ``geometry`` is a DeepXDE ``GeometryXTime`` (a spatial geometry times a time interval)."""
    return hasattr(geometry, "geometry") and hasattr(geometry, "timedomain")


class DeepXDEDomain:
    """A DeepXDE geometry as a domain (see :func:`as_domain`).

    Interior points are drawn in the geometry's bounding box from the local
    generator and kept when ``geometry.inside`` says so.  Boundary points
    come from DeepXDE's own sampler, run under a seed drawn from the local
    generator with numpy's global state saved and restored around it.

    A ``GeometryXTime`` (which has neither ``inside`` nor ``bbox``) is the
    product of its spatial geometry and its time interval: time is the last
    column, boundary points lie on the spatial boundary at random times and
    initial points on the spatial geometry at ``t0``.
    """

    # Domains pickled before space-time geometries were supported load as plain ones.
    _space_time = False

    def __init__(self, geometry):
        space_time = _is_space_time(geometry)
        needed = ("dim", "random_boundary_points", "boundary_normal", "random_initial_points") if space_time \
            else ("dim", "bbox", "inside", "random_boundary_points", "boundary_normal")
        for attr in needed:
            if not hasattr(geometry, attr):
                raise TypeError(
                    f"{type(geometry).__name__} is not a DeepXDE geometry (it has no {attr!r})."
                )
        if space_time:
            for attr in ("bbox", "inside"):
                if not hasattr(geometry.geometry, attr):
                    raise TypeError(f"The spatial geometry {type(geometry.geometry).__name__} of "
                                    f"{type(geometry).__name__} is not a DeepXDE geometry (it has no {attr!r}).")
            if not all(hasattr(geometry.timedomain, a) for a in ("t0", "t1")):
                raise TypeError(f"The time domain of {type(geometry).__name__} has no t0 and t1.")
        self.geometry = geometry
        self._space_time = space_time
        self.time_axis = geometry.dim - 1 if hasattr(geometry, "timedomain") else None
        self.names = tuple(f"x{i}" for i in range(geometry.dim))

    def __repr__(self):
        return f"DeepXDEDomain({type(self.geometry).__name__})"

    @property
    def dim(self):
        return int(self.geometry.dim)

    @property
    def bounds(self):
        if self._space_time:
            lo, hi = self.geometry.geometry.bbox
            t = self.geometry.timedomain
            return (np.append(np.asarray(lo, dtype=float).ravel(), float(t.t0)),
                    np.append(np.asarray(hi, dtype=float).ravel(), float(t.t1)))
        lo, hi = self.geometry.bbox
        return np.asarray(lo, dtype=float).ravel(), np.asarray(hi, dtype=float).ravel()

    @property
    def spatial_axes(self):
        return tuple(i for i in range(self.dim) if i != self.time_axis)

    def _inside(self, X):
        """Whether each row of ``X`` (numpy, 2-D) is inside the geometry (closed, for DeepXDE's shapes)."""
        if not self._space_time:
            return np.asarray(self.geometry.inside(X), dtype=bool).ravel()
        t = self.geometry.timedomain
        in_time = (X[:, -1] >= t.t0) & (X[:, -1] <= t.t1)
        return np.asarray(self.geometry.geometry.inside(X[:, :-1]), dtype=bool).ravel() & in_time

    def contains(self, X, rtol=1e-9):
        X = np.asarray(X, dtype=float)
        if X.ndim != 2 or X.shape[1] != self.dim:
            raise ValueError(f"X must have shape (n, {self.dim}), got {X.shape}.")
        if self._space_time:
            # GeometryXTime.on_boundary ignores time: check the spatial part and time apart.
            space = self.geometry.geometry
            t = self.geometry.timedomain
            tol = rtol * (float(t.t1) - float(t.t0))
            inside = np.asarray(space.inside(X[:, :-1]), dtype=bool).ravel()
            if hasattr(space, "on_boundary"):
                inside |= np.asarray(space.on_boundary(X[:, :-1]), dtype=bool).ravel()
            return inside & (X[:, -1] >= t.t0 - tol) & (X[:, -1] <= t.t1 + tol)
        inside = self._inside(X)
        on = np.asarray(self.geometry.on_boundary(X), dtype=bool) if hasattr(self.geometry, "on_boundary") else False
        return inside | on

    def sample_interior(self, n, generator, method="uniform"):
        import torch

        lo, hi = (torch.as_tensor(b) for b in self.bounds)
        kept = []
        count = 0
        for _ in range(1000):
            U = lo + (hi - lo) * torch.rand(max(2 * n, 64), self.dim, generator=generator, dtype=torch.float64)
            mask = torch.as_tensor(self._inside(U.numpy()))
            kept.append(U[mask])
            count += int(mask.sum())
            if count >= n:
                return torch.cat(kept)[:n]
        raise RuntimeError(f"Could not sample {n} points inside {self!r}: is the geometry empty?")

    def _with_seed(self, generator, fn):
        state = np.random.get_state()
        try:
            np.random.seed(_seed_from(generator))
            return fn()
        finally:
            np.random.set_state(state)

    def sample_boundary(self, n, generator):
        import torch

        X = self._with_seed(generator, lambda: self.geometry.random_boundary_points(n, random="pseudo"))
        X = np.asarray(X, dtype=float)[:n]
        normals = np.asarray(self.geometry.boundary_normal(X), dtype=float)
        return torch.as_tensor(X), torch.as_tensor(normals)

    def sample_initial(self, n, generator, method="uniform"):
        import torch

        if self.time_axis is None:
            raise ValueError(f"{self!r} has no time axis; use a DeepXDE GeometryXTime.")
        X = self._with_seed(generator, lambda: self.geometry.random_initial_points(n, random="pseudo"))
        return torch.as_tensor(np.asarray(X, dtype=float)[:n])


def as_domain(domain):
    """Accept a :class:`Box`, a DeepXDE geometry, or a ``(lower, upper)`` pair.

    Parameters
    ----------
    domain : Box, deepxde.geometry.Geometry or tuple of (lower, upper)

    Returns
    -------
    Box or DeepXDEDomain
    """
    if isinstance(domain, (Box, DeepXDEDomain)):
        return domain
    if isinstance(domain, tuple) and len(domain) == 2 and not hasattr(domain, "dim"):
        return Box(*domain)
    if hasattr(domain, "random_boundary_points") and (hasattr(domain, "inside") or _is_space_time(domain)):
        return DeepXDEDomain(domain)
    raise TypeError(
        f"domain must be a pinns.Box, a DeepXDE geometry or a (lower, upper) pair, "
        f"got {type(domain).__name__}."
    )
