"""Initial and boundary conditions, as soft penalties or hard output transforms.

A condition samples its own points from the domain and returns a residual
that is zero when the condition holds.  ``hard=True`` builds the condition
into the network's output instead (``u = g + d(X) * N(X)`` with ``d`` zero
where the condition applies), which satisfies it exactly and removes a loss
term to balance; it is offered where that transform is well conditioned: an
initial condition with any value, and a Dirichlet condition with a constant
value on every face of a :class:`~pinns.geometry.Box`.
"""

import numbers

import numpy as np

from sciml._validation import check_positive_int

__all__ = ["DirichletBC", "NeumannBC", "InitialCondition"]


def _value(value, X, n_out):
    """Evaluate a condition value (number, sequence or callable of X) as (n, n_out)."""
    import torch

    if callable(value):
        v = value(X)
        if not isinstance(v, torch.Tensor):
            v = torch.as_tensor(np.asarray(v, dtype=float), dtype=X.dtype, device=X.device)
        v = v.to(dtype=X.dtype, device=X.device)
        if v.ndim == 1:
            v = v[:, None]
        if v.shape[0] != X.shape[0] or v.shape[1] not in (1, n_out):
            raise ValueError(
                f"A condition's value function returned shape {tuple(v.shape)} for "
                f"{X.shape[0]} points; expected ({X.shape[0]},) or ({X.shape[0]}, {n_out})."
            )
        return v
    v = torch.as_tensor(np.asarray(value, dtype=float), dtype=X.dtype, device=X.device).reshape(1, -1)
    if v.shape[1] not in (1, n_out):
        raise ValueError(f"A condition value has {v.shape[1]} entries for {n_out} outputs.")
    return v


class _Condition:
    hard = False

    def __init__(self, value=0.0, component=None, n_points=100, hard=False):
        check_positive_int("n_points", n_points)
        if not callable(value):
            # Checked here: a NaN would only surface as a non-finite loss during fit.
            try:
                v = np.asarray(value, dtype=float)
            except (TypeError, ValueError):
                raise TypeError(f"A condition value must be a number, a sequence of numbers or a callable, "
                                f"got {value!r}.") from None
            if v.ndim > 1 or v.size == 0 or not np.all(np.isfinite(v)):
                raise ValueError(f"A constant condition value must be a finite number or a 1-D sequence of "
                                 f"them (one per output), got {value!r}.")
        self.value = value
        self.component = component
        self.n_points = n_points
        self.hard = bool(hard)

    def __repr__(self):
        comp = "" if self.component is None else f", component={self.component}"
        hard = ", hard=True" if self.hard else ""
        value = self.value if not callable(self.value) else getattr(self.value, "__name__", "<function>")
        return f"{type(self).__name__}(value={value!r}{comp}, n_points={self.n_points}{hard})"

    def _columns(self, u):
        if self.component is None:
            return u
        comps = [self.component] if isinstance(self.component, numbers.Integral) else list(self.component)
        return u[:, comps]


class DirichletBC(_Condition):
    """``u = value`` on the spatial boundary.

    Parameters
    ----------
    value : float, sequence or callable, default=0.0
        A finite number (per output column, or one for all), or a function of the
        boundary points ``X`` (torch tensor ``(n, d)``) returning ``(n,)`` or
        ``(n, n_outputs)``.
    component : int, sequence of int or None, default=None
        Output columns the condition applies to; ``None`` means all.
    n_points : int, default=100
        Boundary points sampled for the penalty (resampled with the
        collocation points).
    hard : bool, default=False
        Build the condition into the output: ``u = value + d(X) N(X)`` with
        ``d`` the product of the distances to the faces.  Needs a constant
        ``value`` and a :class:`~pinns.geometry.Box`.
    """

    def sample(self, domain, generator):
        X, _ = domain.sample_boundary(self.n_points, generator)
        return {"X": X}

    def residual(self, points, u_fn):
        X = points["X"]
        u = self._columns(u_fn(X))
        return u - _value(self.value, X, u.shape[1])


class NeumannBC(_Condition):
    """``du/dn = value`` (outward normal derivative) on the spatial boundary.

    Parameters are those of :class:`DirichletBC`; there is no hard variant.
    """

    def __init__(self, value=0.0, component=None, n_points=100):
        super().__init__(value, component, n_points, hard=False)

    def sample(self, domain, generator):
        X, normals = domain.sample_boundary(self.n_points, generator)
        return {"X": X, "normals": normals}

    def residual(self, points, u_fn):
        from .ops import gradient

        X = points["X"].detach().requires_grad_(True)
        u = self._columns(u_fn(X))
        normals = points["normals"].to(X.dtype)
        dn = [(gradient(u, X, component=i) * normals).sum(1, keepdim=True) for i in range(u.shape[1])]
        dn = dn[0] if len(dn) == 1 else __import__("torch").cat(dn, 1)
        return dn - _value(self.value, X, u.shape[1])


class InitialCondition(_Condition):
    """``u(x, t0) = value(x)`` on the initial slice of a time-dependent domain.

    Parameters
    ----------
    value : float, sequence or callable
        As in :class:`DirichletBC`; a callable receives the points with the
        time column included.
    component : int, sequence of int or None, default=None
    n_points : int, default=100
    hard : bool, default=False
        Build the condition into the output: ``u = value(x) + (t - t0) / T *
        N(x, t)``.  Exact, and well conditioned when ``u`` changes on the
        time scale ``T`` of the domain.  A fast initial transient asks ``N``
        for ``u'(t0) T`` at ``t0``: the Lorenz problem of
        ``python -m benchmarks pinns`` (``x' = 150`` at t = 0, T = 3) stalls
        with it and converges with the soft condition.
    """

    def sample(self, domain, generator):
        return {"X": domain.sample_initial(self.n_points, generator)}

    def residual(self, points, u_fn):
        X = points["X"]
        u = self._columns(u_fn(X))
        return u - _value(self.value, X, u.shape[1])


def hard_transform(conditions, domain, n_outputs):
    """The output transform ``u = G(X) + D(X) * N`` for the ``hard`` conditions.

    Parameters
    ----------
    conditions : sequence of conditions
    domain : Box or DeepXDEDomain
    n_outputs : int

    Returns
    -------
    callable or None
        ``transform(X, N) -> u``; ``None`` when no condition is hard.
    """
    import torch

    hard = [c for c in conditions if c.hard]
    if not hard:
        return None
    from .geometry import Box

    if not isinstance(domain, Box):
        raise ValueError("Hard conditions need a pinns.Box domain; use soft conditions (hard=False) on other geometries.")
    ics = [c for c in hard if isinstance(c, InitialCondition)]
    bcs = [c for c in hard if isinstance(c, DirichletBC)]
    if len(ics) > 1 or len(bcs) > 1:
        raise ValueError("At most one hard initial condition and one hard Dirichlet condition.")
    for c in hard:
        if c.component is not None:
            raise ValueError(f"A hard condition applies to every output; drop component= from {c!r}.")
    lo, hi = domain.lower, domain.upper
    if bcs:
        if callable(bcs[0].value):
            raise ValueError("A hard DirichletBC needs a constant value; use hard=False for a function.")
        if not domain.spatial_axes:
            raise ValueError("A hard DirichletBC needs a spatial column in the box.")
    if ics and domain.time_axis is None:
        raise ValueError("A hard InitialCondition needs Box(..., time=...).")
    ta = domain.time_axis

    def transform(X, N):
        scale = torch.ones_like(X[:, :1])
        if ics:
            scale = scale * (X[:, ta : ta + 1] - lo[ta]) / (hi[ta] - lo[ta])
            X0 = X.clone()  # the initial value is a function of x at t0, for every t
            X0[:, ta] = lo[ta]
            G = _value(ics[0].value, X0, n_outputs)
        else:
            G = _value(bcs[0].value, X, n_outputs)
        if bcs:
            for a in domain.spatial_axes:
                half = (hi[a] - lo[a]) / 2
                scale = scale * (X[:, a : a + 1] - lo[a]) * (hi[a] - X[:, a : a + 1]) / half**2
        return G + scale * N

    return transform


def check_hard_consistency(conditions, domain, generator, n_outputs):
    """A hard initial value must equal a hard Dirichlet value on the boundary."""
    import torch

    ics = [c for c in conditions if c.hard and isinstance(c, InitialCondition)]
    bcs = [c for c in conditions if c.hard and isinstance(c, DirichletBC)]
    if not (ics and bcs):
        return
    X, _ = domain.sample_boundary(64, generator)
    X[:, domain.time_axis] = domain.lower[domain.time_axis]
    g = _value(ics[0].value, X, n_outputs)
    c = _value(bcs[0].value, X, n_outputs)
    gap = float(torch.max(torch.abs(g - c)))
    if gap > 1e-6 * (1 + float(torch.max(torch.abs(c)))):
        raise ValueError(
            f"The hard initial condition differs from the hard Dirichlet value on the "
            f"boundary by up to {gap:.3g}: they cannot both hold exactly; make one soft."
        )
