"""Derivatives of network outputs with respect to their inputs, for residuals.

A residual is written as a plain function of the collocation points ``X``
(shape ``(n, d)``, with ``requires_grad``) and the network output ``u``
(shape ``(n, k)``).  These helpers take derivatives of one output column
with respect to input columns through autograd, keeping the graph so that
the residual can itself be differentiated during training::

    def burgers(X, u, p):
        u_t = derivative(u, X, 1)
        u_x = derivative(u, X, 0)
        u_xx = derivative(u, X, 0, order=2)
        return u_t + u * u_x - p["nu"] * u_xx

Every helper returns a column, shape ``(n, 1)``, so that terms combine
without broadcasting surprises.  Repeated calls with the same arguments are
cheap: the first derivative of a column is cached on the output tensor for
the duration of one residual evaluation.
"""

import numbers

__all__ = ["derivative", "gradient", "laplacian", "divergence"]


def _check(u, X):
    import torch

    if not isinstance(u, torch.Tensor) or not isinstance(X, torch.Tensor):
        raise TypeError("u and X must be torch tensors.")
    if X.ndim != 2:
        raise ValueError(f"X must have shape (n_points, n_inputs), got {tuple(X.shape)}.")
    if not X.requires_grad:
        raise ValueError(
            "X does not require grad: derivatives are taken with respect to the "
            "collocation points passed to the residual; do not detach or copy them."
        )
    if u.ndim == 1:
        u = u[:, None]
    if u.ndim != 2 or u.shape[0] != X.shape[0]:
        raise ValueError(
            f"u must have shape (n_points, n_outputs) with n_points={X.shape[0]}, "
            f"got {tuple(u.shape)}."
        )
    return u


def _column(u, component):
    if u.shape[1] == 1 and component is None:
        return u
    if component is None:
        raise ValueError(
            f"u has {u.shape[1]} columns: say which one to differentiate with component=."
        )
    if not isinstance(component, numbers.Integral) or not -u.shape[1] <= component < u.shape[1]:
        raise ValueError(f"component {component!r} is out of range for {u.shape[1]} outputs.")
    component = int(component) % u.shape[1]
    return u[:, component : component + 1]


def _axes(axes, d, name="axes"):
    """Input columns as a list of ints in ``[0, d)``; ValueError for anything else."""
    if isinstance(axes, numbers.Integral) or isinstance(axes, (str, bytes)):
        axes = [axes]
    try:
        axes = list(axes)
    except TypeError:
        raise ValueError(f"{name} must be an input column (int) or a sequence of them, got {axes!r}.") from None
    for a in axes:
        if isinstance(a, bool) or not isinstance(a, numbers.Integral):
            raise ValueError(f"{name} must name input columns by int, got {a!r}.")
        if not -d <= a < d:
            raise ValueError(f"axis {a} is out of range for {d} input columns.")
    return [int(a) % d for a in axes]


def _grad(col, X):
    """Full gradient of a column w.r.t. X, shape (n, d); zero if col does not depend on X."""
    import torch

    cache = getattr(col, "_sciml_grad", None)
    if cache is not None and cache[0] is X:
        return cache[1]
    # A column outside the graph (a constant, or the derivative of an
    # expression linear in X) has a zero gradient; autograd would refuse it.
    g = None
    if col.requires_grad:
        (g,) = torch.autograd.grad(
            col, X, grad_outputs=torch.ones_like(col), create_graph=True, allow_unused=True
        )
    if g is None:
        g = torch.zeros_like(X)
    try:
        col._sciml_grad = (X, g)
    except (AttributeError, RuntimeError):  # pragma: no cover - views may refuse attributes
        pass
    return g


def derivative(u, X, axis, order=1, component=None):
    """Partial derivative ``d^order u / d x_axis^order`` at the collocation points.

    Parameters
    ----------
    u : torch.Tensor of shape (n, k) or (n,)
        Network output (or any tensor computed from ``X``).
    X : torch.Tensor of shape (n, d)
        The points ``u`` was computed at; must require grad.
    axis : int or sequence of int
        Input column to differentiate along.  A sequence gives a mixed
        derivative, e.g. ``(0, 1)`` for ``d2u/dx dt`` (``order`` is then
        ignored).
    order : int, default=1
        Order of the derivative along ``axis``.
    component : int or None, default=None
        Output column of ``u``; may be omitted when ``u`` has one column.

    Returns
    -------
    torch.Tensor of shape (n, 1)
    """
    u = _check(u, X)
    col = _column(u, component)
    if isinstance(axis, numbers.Integral) and not isinstance(axis, bool):
        if isinstance(order, bool) or not isinstance(order, numbers.Integral) or order < 1:
            raise ValueError(f"order must be an int >= 1, got {order!r}.")
        axes = _axes(axis, X.shape[1], "axis") * int(order)
    else:
        axes = _axes(axis, X.shape[1], "axis")
        if not axes:
            raise ValueError("axis must name at least one input column.")
    for a in axes:
        col = _grad(col, X)[:, a : a + 1]
    return col


def gradient(u, X, axes=None, component=None):
    """Gradient of one output column with respect to the inputs.

    Parameters
    ----------
    u, X, component
        As in :func:`derivative`.
    axes : sequence of int or None, default=None
        Input columns to keep (e.g. the spatial ones); ``None`` keeps all.

    Returns
    -------
    torch.Tensor of shape (n, len(axes))
    """
    u = _check(u, X)
    g = _grad(_column(u, component), X)
    return g if axes is None else g[:, _axes(axes, X.shape[1])]


def laplacian(u, X, axes=None, component=None):
    """Laplacian ``sum_i d2u/dx_i^2`` over the given input columns.

    Parameters
    ----------
    u, X, component
        As in :func:`derivative`.
    axes : sequence of int or None, default=None
        The spatial columns; ``None`` uses every column (pass the spatial
        ones explicitly for a time-dependent problem).

    Returns
    -------
    torch.Tensor of shape (n, 1)
        Zeros for an empty ``axes`` (an empty sum).
    """
    import torch

    u = _check(u, X)
    col = _column(u, component)
    axes = range(X.shape[1]) if axes is None else _axes(axes, X.shape[1])
    return sum((derivative(col, X, a, order=2) for a in axes), torch.zeros_like(col))


def divergence(F, X, axes=None):
    """Divergence ``sum_i dF_i/dx_i`` of a vector field given column-wise.

    Parameters
    ----------
    F : torch.Tensor of shape (n, m)
        Flux components; column ``i`` is differentiated along ``axes[i]``.
    X : torch.Tensor of shape (n, d)
    axes : sequence of int or None, default=None
        Input column of each component; ``None`` is ``0, 1, ..., m - 1``.

    Returns
    -------
    torch.Tensor of shape (n, 1)
    """
    F = _check(F, X)
    axes = range(F.shape[1]) if axes is None else list(axes)
    if len(axes) != F.shape[1]:
        raise ValueError(f"F has {F.shape[1]} components but {len(axes)} axes were given.")
    return sum(derivative(F, X, a, component=i) for i, a in enumerate(axes))
