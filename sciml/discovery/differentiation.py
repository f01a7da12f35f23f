"""Numerical differentiation along a chosen axis, for equation discovery.

Every estimator here is a small scikit-learn style object (``get_params``,
``repr`` and ``sklearn.base.clone`` work; ``__init__`` only stores its
arguments; parameters are checked when the estimator is called).  Calling it,
``deriv(x, t)``, returns an array of ``x``'s shape holding the derivative of
``x`` along ``deriv.axis``:

* ``x`` is a real array of any number of dimensions (at least one);
* ``t`` is either a positive scalar sample spacing or a 1-D array of strictly
  increasing coordinates along ``axis`` (length ``x.shape[axis]``).

Unlike PySINDy's ``SmoothedFiniteDifference``, which smooths along axis 0
whatever axis it is asked to differentiate along, every estimator here works
along ``axis`` only: differentiating a ``(n_t, n_x)`` array along ``axis=1``
gives the transpose of differentiating its transpose along ``axis=0``.

Computations are carried out in float64; the result has the input's floating
dtype (float64 for integer input).
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import scipy.linalg
from sklearn.base import BaseEstimator

from .._validation import check_nonneg_int, check_positive_int, check_real

__all__ = ["Differentiator", "FiniteDifference", "SavitzkyGolay", "SpectralDerivative", "TotalVariation"]

#: Relative spread of the sample spacings below which a grid counts as uniform.
_UNIFORM_RTOL = 1e-9
#: Points per block in the batched local least-squares fits (bounds memory).
_CHUNK = 8192
#: Default TV weight per unit of noise std and of coordinate span (see TotalVariation).
_DEFAULT_TV_ALPHA = 0.2


# ---------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------


def _check_axis(axis, ndim):
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"axis must be an integer, got {axis!r} of type {type(axis).__name__}")
    axis = int(axis)
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} is out of bounds for an array of dimension {ndim}")
    return axis % ndim


def _check_bool(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r} of type {type(value).__name__}")
    return bool(value)


def _check_int_in(name, value, allowed):
    value = check_positive_int(name, value)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {sorted(allowed)}, got {value}")
    return value


def _as_real_array(x):
    """``(x as float64, dtype of the result)``; errors for non-real or non-finite input."""
    x = np.asarray(x)
    if x.dtype.kind in "biu":
        out_dtype = np.dtype(np.float64)
    elif x.dtype.kind == "f":
        out_dtype = x.dtype
    else:
        raise TypeError(f"x must be a real numeric array, got dtype {x.dtype}")
    if x.ndim == 0:
        raise ValueError("x must have at least one dimension, got a scalar")
    x = x.astype(np.float64, copy=False)
    if not np.all(np.isfinite(x)):
        raise ValueError("x contains NaN or infinity")
    return x, out_dtype


def _check_coordinates(t, n, axis, name="t", data="x"):
    """Return ``(t, uniform)``: a positive float spacing, or a float64 coordinate array.

    ``name`` is the coordinate's name and ``data`` the data's, for the messages.
    """
    t_arr = np.asarray(t)
    if t_arr.ndim == 0:
        if t_arr.dtype.kind not in "iuf":
            raise TypeError(f"{name} must be a positive spacing or a 1-D array of coordinates, got {t!r}")
        dt = float(t_arr)
        if not (math.isfinite(dt) and dt > 0):
            raise ValueError(f"the sample spacing {name} must be positive and finite, got {dt!r}")
        return dt, True
    if t_arr.ndim != 1:
        raise ValueError(f"{name} must be a scalar spacing or a 1-D array of coordinates, got an array of shape {t_arr.shape}")
    if t_arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be a real numeric array, got dtype {t_arr.dtype}")
    if t_arr.shape[0] != n:
        raise ValueError(f"{name} has {t_arr.shape[0]} coordinates but {data} has {n} samples along axis {axis}")
    t_arr = t_arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(t_arr)):
        raise ValueError(f"{name} contains NaN or infinity")
    if n < 2:
        return t_arr, False
    steps = np.diff(t_arr)
    bad = np.flatnonzero(steps <= 0)
    if bad.size:
        i = int(bad[0]) + 1
        kind = "repeat" if steps[bad[0]] == 0 else "decrease"
        what = "time stamps" if name == "t" else f"{name} coordinates"
        raise ValueError(f"{what} must be strictly increasing; found a {kind} at index {i}")
    mean = (t_arr[-1] - t_arr[0]) / (n - 1)
    if steps.max() - steps.min() <= _UNIFORM_RTOL * mean:
        return float(mean), True
    return t_arr, False


def _to_columns(x, axis):
    """``x`` with ``axis`` moved first and the rest flattened: shape ``(n, m)``."""
    moved = np.moveaxis(x, axis, 0)
    return moved.reshape(moved.shape[0], -1), moved.shape


def _from_columns(cols, moved_shape, axis):
    return np.moveaxis(cols.reshape(moved_shape), 0, axis)


# ---------------------------------------------------------------------------
# Finite-difference weights
# ---------------------------------------------------------------------------


def _fornberg_weights(offsets, d):
    """Weights of the ``d``-th derivative at 0 from samples at ``offsets``.

    Fornberg's recursion (Math. Comp. 51, 1988), vectorised over the leading
    axes: ``offsets`` has shape ``(..., w)`` (distinct nodes on each row),
    the result the same shape.  Exact for polynomials of degree < w.
    """
    offsets = np.asarray(offsets, dtype=np.float64)
    w = offsets.shape[-1]
    batch = offsets.shape[:-1]
    c = np.zeros((w, d + 1) + batch)
    c[0, 0] = 1.0
    c1 = np.ones(batch)
    c4 = offsets[..., 0]
    for i in range(1, w):
        mn = min(i, d)
        c2 = np.ones(batch)
        c5 = c4
        c4 = offsets[..., i]
        for j in range(i):
            c3 = offsets[..., i] - offsets[..., j]
            c2 = c2 * c3
            if j == i - 1:
                for k in range(mn, 0, -1):
                    c[i, k] = c1 * (k * c[i - 1, k - 1] - c5 * c[i - 1, k]) / c2
                c[i, 0] = -c1 * c5 * c[i - 1, 0] / c2
            for k in range(mn, 0, -1):
                c[j, k] = (c4 * c[j, k] - k * c[j, k - 1]) / c3
            c[j, 0] = c4 * c[j, 0] / c3
        c1 = c2
    return np.moveaxis(c[:, d], 0, -1)


def _window_starts(n, width):
    """Start of the ``width``-sample window centred on every sample, shifted inside at the edges."""
    return np.clip(np.arange(n) - (width - 1) // 2, 0, n - width)


def _apply_local_weights(cols, starts, weights):
    """``out[i] = sum_j weights[i, j] * cols[starts[i] + j]`` for a ``(n, m)`` array."""
    out = np.zeros_like(cols)
    for j in range(weights.shape[1]):
        out += weights[:, j, None] * cols[starts + j]
    return out


# ---------------------------------------------------------------------------
# Base class
# ---------------------------------------------------------------------------


class Differentiator(BaseEstimator):
    """Base class of the derivative estimators: argument checks in one place.

    Subclasses define ``_check_params`` (validate the constructor arguments),
    ``_min_samples(uniform)`` and ``_differentiate(x, t, uniform, axis)``,
    which receives a finite float64 array, the spacing (``uniform`` True) or
    the coordinates (``uniform`` False), and a non-negative axis.
    """

    def __call__(self, x, t=1.0):
        """Derivative of `x` along ``self.axis``; see :meth:`differentiate`."""
        return self.differentiate(x, t)

    def differentiate(self, x, t=1.0):
        """Derivative of `x` along ``self.axis``.

        Parameters
        ----------
        x : array_like of real numbers, ndim >= 1
            Samples; finite.
        t : float or array_like of shape (x.shape[axis],), default 1.0
            A positive sample spacing, or the strictly increasing coordinates
            of the samples along the axis (uniform or not).

        Returns
        -------
        dx : numpy.ndarray, same shape as `x`
            Of `x`'s floating dtype (float64 for integer input).

        Raises
        ------
        ValueError
            Non-finite `x` or `t`; coordinates that repeat or decrease; a
            wrong number of coordinates; too few samples for the method;
            invalid estimator parameters.
        TypeError
            Non-real `x` or parameters of the wrong type.
        """
        self._check_params()
        x, out_dtype = _as_real_array(x)
        x, t, uniform, axis = self._prepare(x, t, self.axis)
        if x.size == 0:
            return np.zeros(x.shape, dtype=out_dtype)
        return np.asarray(self._differentiate(x, t, uniform, axis), dtype=out_dtype)

    def _prepare(self, x, t, axis):
        """Normalise ``(x, t, axis)`` to ``(x, spacing or coordinates, uniform, axis >= 0)``."""
        axis = _check_axis(axis, x.ndim)
        n = x.shape[axis]
        t, uniform = _check_coordinates(t, n, axis)
        needed = self._min_samples(uniform)
        if n < needed:
            raise ValueError(
                f"{self!r} needs at least {needed} samples along axis {axis}"
                f"{'' if uniform else ' on a non-uniform grid'}, got {n}"
            )
        return x, t, uniform, axis

    def _check_params(self):  # pragma: no cover - overridden
        raise NotImplementedError

    def _min_samples(self, uniform):  # pragma: no cover - overridden
        raise NotImplementedError

    def _differentiate(self, x, t, uniform, axis):  # pragma: no cover - overridden
        raise NotImplementedError


# ---------------------------------------------------------------------------
# Finite differences
# ---------------------------------------------------------------------------


class FiniteDifference(Differentiator):
    """Finite-difference derivatives of a given accuracy, edges included.

    On a uniform grid the interior uses the central stencil of accuracy
    `order` (``2*m + 1`` points with ``m = (d + 1) // 2 + order // 2 - 1``)
    and the first and last ``m`` samples use one-sided stencils of
    ``d + order`` points, of the same accuracy, so no sample is dropped.  On
    a non-uniform grid every sample uses the ``d + order`` nearest samples
    (centred, shifted inside at the edges) with Fornberg weights computed for
    that sample, which again gives accuracy `order`.

    Parameters
    ----------
    d : {1, 2, 3, 4}, default 1
        Derivative order.
    order : {2, 4, 6}, default 2
        Accuracy: the error is ``O(h**order)`` for a smooth function.
    axis : int, default 0
        Axis to differentiate along (negative counts from the end).
    periodic : bool, default False
        Treat the samples as one period of a periodic function (the sample
        after the last is the first, one spacing later) and use the central
        stencil everywhere.  Uniform grids only.

    Notes
    -----
    Needs at least ``d + order`` samples (``2*m + 1`` when periodic).

    Examples
    --------
    >>> import numpy as np
    >>> t = np.linspace(0.0, 1.0, 11)
    >>> FiniteDifference(order=2)(t**2, t)[[0, 5, 10]]
    array([0., 1., 2.])
    """

    def __init__(self, d=1, order=2, axis=0, periodic=False):
        self.d = d
        self.order = order
        self.axis = axis
        self.periodic = periodic

    def _check_params(self):
        _check_int_in("d", self.d, {1, 2, 3, 4})
        _check_int_in("order", self.order, {2, 4, 6})
        _check_bool("periodic", self.periodic)

    def _half_width(self):
        return (self.d + 1) // 2 + self.order // 2 - 1

    def _min_samples(self, uniform):
        if self.periodic:
            return 2 * self._half_width() + 1
        return self.d + self.order

    def _differentiate(self, x, t, uniform, axis):
        d = int(self.d)
        cols, moved_shape = _to_columns(x, axis)
        n = cols.shape[0]
        if self.periodic:
            if not uniform:
                raise ValueError("periodic=True needs uniformly spaced samples; pass a spacing or a uniform grid")
            m = self._half_width()
            weights = _fornberg_weights(np.arange(-m, m + 1), d) / t**d
            out = np.zeros_like(cols)
            for j, wj in enumerate(weights):
                out += wj * np.roll(cols, m - j, axis=0)
        elif uniform:
            m = self._half_width()
            width = d + int(self.order)
            central = _fornberg_weights(np.arange(-m, m + 1), d)
            out = np.empty_like(cols)
            out[m : n - m] = 0.0
            for j, wj in enumerate(central):
                out[m : n - m] += wj * cols[j : n - 2 * m + j]
            edge_offsets = np.arange(width)
            for i in range(m):
                out[i] = _fornberg_weights(edge_offsets - i, d) @ cols[:width]
                k = n - 1 - i
                out[k] = _fornberg_weights(edge_offsets + (n - width) - k, d) @ cols[n - width :]
            out /= t**d
        else:
            width = d + int(self.order)
            starts = _window_starts(n, width)
            idx = starts[:, None] + np.arange(width)
            scale = (t[starts + width - 1] - t[starts]) / (width - 1)
            offsets = (t[idx] - t[:, None]) / scale[:, None]
            weights = _fornberg_weights(offsets, d) / scale[:, None] ** d
            out = _apply_local_weights(cols, starts, weights)
        return _from_columns(out, moved_shape, axis)


# ---------------------------------------------------------------------------
# Savitzky-Golay
# ---------------------------------------------------------------------------


def _default_window(n, polyorder):
    """The odd window nearest ``max(polyorder + 2, n // 20)``, at most ``max(51, polyorder + 2)`` and ``n``."""
    w = max(polyorder + 2, n // 20)
    w = min(w, max(51, polyorder + 2))
    w += 1 - w % 2
    if w > n:
        w = n - 1 + n % 2  # the largest odd number <= n
    return w


class SavitzkyGolay(Differentiator):
    """Savitzky-Golay derivatives: local least-squares polynomial fits.

    Every sample's derivative is that of the degree-`polyorder` polynomial
    fitted in the least-squares sense to the `window_length` samples nearest
    to it (the window is centred on the sample and shifted inside at the
    edges, so every sample gets a value).  On a uniform grid this is
    ``scipy.signal.savgol_filter(x, window_length, polyorder, deriv=d,
    delta=dt, axis=axis, mode="interp")``; on a non-uniform grid the same
    fits are done with the actual coordinates (vectorised over samples).

    Parameters
    ----------
    window_length : odd int or None, default None
        Samples per local fit; must exceed `polyorder` and not exceed the
        number of samples.  None picks the odd number nearest
        ``max(polyorder + 2, n // 20)`` (about 5 % of the series: enough
        averaging against noise while the local cubic still follows the
        signal), capped at ``max(51, polyorder + 2)`` and at ``n``.
    polyorder : int, default 3
        Degree of the local polynomials.
    d : int, default 1
        Derivative order, at most `polyorder`; ``d=0`` returns the smoothed
        samples.
    axis : int, default 0

    Notes
    -----
    Needs at least `window_length` samples; with the default window, the
    smallest odd number above `polyorder`.
    """

    def __init__(self, window_length=None, polyorder=3, d=1, axis=0):
        self.window_length = window_length
        self.polyorder = polyorder
        self.d = d
        self.axis = axis

    def _check_params(self):
        polyorder = check_nonneg_int("polyorder", self.polyorder)
        d = check_nonneg_int("d", self.d)
        if d > polyorder:
            raise ValueError(f"d={d} exceeds polyorder={polyorder}: a degree-{polyorder} fit has no {d}-th derivative")
        if self.window_length is not None:
            w = check_positive_int("window_length", self.window_length)
            if w % 2 == 0:
                raise ValueError(f"window_length must be odd, got {w}")
            if polyorder >= w:
                raise ValueError(f"polyorder={polyorder} must be less than window_length={w}")

    def _min_samples(self, uniform):
        if self.window_length is not None:
            return int(self.window_length)
        return int(self.polyorder) + 1 + int(self.polyorder) % 2  # the smallest odd window above polyorder

    def _window(self, n):
        if self.window_length is not None:
            return int(self.window_length)
        return _default_window(n, int(self.polyorder))

    def _differentiate(self, x, t, uniform, axis):
        n = x.shape[axis]
        w, p, d = self._window(n), int(self.polyorder), int(self.d)
        if uniform:
            import scipy.signal  # deferred: scipy.signal takes seconds to import and only this path needs it

            return scipy.signal.savgol_filter(x, w, p, deriv=d, delta=t, axis=axis, mode="interp")
        cols, moved_shape = _to_columns(x, axis)
        starts = _window_starts(n, w)
        weights = np.empty((n, w))
        unit = np.zeros(p + 1)
        unit[d] = 1.0
        for lo in range(0, n, _CHUNK):
            hi = min(lo + _CHUNK, n)
            s = starts[lo:hi]
            local = t[s[:, None] + np.arange(w)]
            scale = 0.5 * (local[:, -1] - local[:, 0])
            z = (local - t[lo:hi, None]) / scale[:, None]
            vander = np.empty((hi - lo, w, p + 1))
            vander[..., 0] = 1.0
            for k in range(1, p + 1):
                np.multiply(vander[..., k - 1], z, out=vander[..., k])
            q, r = np.linalg.qr(vander)  # (k, w, p+1), (k, p+1, p+1)
            # Coefficient d of the fit is e_d^T R^{-1} Q^T y: solve R^T c = e_d, weights Q c.
            c = np.linalg.solve(np.swapaxes(r, 1, 2), np.broadcast_to(unit, (hi - lo, p + 1))[..., None])
            weights[lo:hi] = np.einsum("kwi,ki->kw", q, c[..., 0]) * (math.factorial(d) / scale[:, None] ** d)
        return _from_columns(_apply_local_weights(cols, starts, weights), moved_shape, axis)


# ---------------------------------------------------------------------------
# Spectral
# ---------------------------------------------------------------------------


class SpectralDerivative(Differentiator):
    """Fourier (spectral) derivatives of uniformly sampled periodic data.

    The samples must be one period of a periodic function on a uniform grid
    (the point after the last sample is the first one again: for a grid on
    ``[a, b)`` exclude the endpoint).  The period is ``L = n * dt``; the
    derivative multiplies the ``rfft`` along `axis` by ``(i k)**d`` with
    ``k = 2 pi j / L``.  For odd `d` and even ``n`` the Nyquist mode is set to
    zero (its derivative is not real).  Exact to round-off for band-limited
    data; for non-periodic data use :class:`FiniteDifference`.

    Parameters
    ----------
    d : int, default 1
        Derivative order.
    axis : int, default 0
    filter_fraction : float in (0, 1] or None, default None
        Low-pass filter for noisy data: modes with wavenumber above
        ``filter_fraction`` times the Nyquist wavenumber ``pi / dt`` are set to
        zero before differentiating.  None (or 1) keeps every mode.

    Notes
    -----
    Needs at least 2 samples; non-uniform coordinates raise ValueError.
    """

    def __init__(self, d=1, axis=0, filter_fraction=None):
        self.d = d
        self.axis = axis
        self.filter_fraction = filter_fraction

    def _check_params(self):
        check_positive_int("d", self.d)
        f = check_real("filter_fraction", self.filter_fraction, allow_none=True)
        if f is not None and f > 1:
            raise ValueError(f"filter_fraction must be in (0, 1], got {f!r}")

    def _min_samples(self, uniform):
        return 2

    def _differentiate(self, x, t, uniform, axis):
        if not uniform:
            raise ValueError(
                "SpectralDerivative needs uniformly spaced samples of a periodic function; "
                "use FiniteDifference (or SavitzkyGolay) for non-uniform grids"
            )
        n, d = x.shape[axis], int(self.d)
        k = 2.0 * np.pi * np.fft.rfftfreq(n, d=t)
        multiplier = (1j * k) ** d
        if d % 2 == 1 and n % 2 == 0:
            multiplier[-1] = 0.0
        if self.filter_fraction is not None:
            multiplier[k > float(self.filter_fraction) * np.pi / t * (1 + 1e-12)] = 0.0
        shape = [1] * x.ndim
        shape[axis] = -1
        spectrum = np.fft.rfft(x, axis=axis) * multiplier.reshape(shape)
        return np.fft.irfft(spectrum, n=n, axis=axis)


# ---------------------------------------------------------------------------
# Total variation
# ---------------------------------------------------------------------------


def _noise_std(f):
    """Robust white-noise std estimate of `f` from its fourth differences.

    For white noise of std ``s`` the fourth differences have std
    ``sqrt(70) * s``, while a smooth signal contributes only about
    ``h**4`` times its fourth derivative; the median absolute deviation
    (divided by 0.6745) keeps the estimate robust to the few large
    differences at kinks.
    """
    if f.shape[0] < 5:
        return 0.0
    d4 = np.diff(f, 4)
    return float(np.median(np.abs(d4 - np.median(d4)))) / 0.6744897501960817 / math.sqrt(70.0)


class TotalVariation(Differentiator):
    """Total-variation regularised derivative of noisy data (Chartrand 2011).

    Finds the derivative ``u`` (one value per sample) minimising ::

        alpha * sum_j |u[j+1] - u[j]|  +  1/2 * || c + A u - f ||**2

    where ``A`` is trapezoidal cumulative integration on the sample
    coordinates (uniform or not) and ``c`` an integration constant fitted
    jointly (rather than pinned to the noisy first sample, ``f - f[0]``, as in
    Chartrand's "small" variant).  Solved by lagged-diffusivity iterations:
    each one freezes the TV weights ``1 / sqrt((u[j+1] - u[j])**2 + eps)``
    and solves the resulting quadratic problem exactly, as a sparse
    saddle-point system in ``u`` and the integration constraint's
    multipliers that is pentadiagonal once the two are interleaved
    (``scipy.linalg.solve_banded``: ``O(n)`` per iteration, no dense
    ``A.T @ A``).  TV favours piecewise-constant derivatives, so it keeps
    jumps in ``u`` (kinks in ``f``) sharp while removing noise.

    R. Chartrand, "Numerical differentiation of noisy, nonsmooth data",
    ISRN Applied Mathematics 2011, 164564.

    Parameters
    ----------
    alpha : float or None, default None
        Regularisation weight (units of f times t).  None uses
        ``alpha = 0.2 * sigma * (t[-1] - t[0])`` per column, where ``sigma``
        is a robust estimate of the column's white-noise std from its fourth
        differences (median absolute deviation).  The factor 0.2 was tuned
        on smooth, oscillating and kinked signals with 100 to 8000 samples
        and 0.2 % to 10 % noise: against the best of the factors 0.03 to 3
        its RMS error is typically within 10 %, at worst twice as large
        (a kink at very low noise, where a smaller alpha is better).  It is floored at ``1e-10`` times the
        column's derivative scale times the span, so that the system stays
        regular for noise-free data.
    d : {1}, default 1
        Derivative order: first derivatives only (TV-regularising a
        derivative twice compounds the bias at the edges; use
        :class:`SavitzkyGolay` for higher derivatives of noisy data).
    axis : int, default 0
    max_iter : int, default 50
        Maximum lagged-diffusivity iterations.
    tol : float, default 1e-6
        Stop when the relative change of ``u`` falls below `tol` in every
        column.

    Notes
    -----
    Needs at least 3 samples.  The columns (every index of the other axes)
    are independent problems, each with its own default alpha, solved
    together as the blocks of one banded system.  The method is meant for noisy data: the
    samples nearest the two ends enter the integral with half weight, so
    there the derivative is less well determined, and on noise-free data it
    is less accurate than :class:`FiniteDifference` (interior errors of order
    ``h**2``, larger within a few samples of the ends).
    """

    def __init__(self, alpha=None, d=1, axis=0, max_iter=50, tol=1e-6):
        self.alpha = alpha
        self.d = d
        self.axis = axis
        self.max_iter = max_iter
        self.tol = tol

    def _check_params(self):
        check_real("alpha", self.alpha, allow_none=True)
        d = check_positive_int("d", self.d)
        if d != 1:
            raise ValueError(f"TotalVariation computes first derivatives only (d=1), got d={d}; use SavitzkyGolay for higher derivatives")
        check_positive_int("max_iter", self.max_iter)
        check_real("tol", self.tol, positive=False)

    def _min_samples(self, uniform):
        return 3

    def _differentiate(self, x, t, uniform, axis):
        cols, moved_shape = _to_columns(x, axis)
        n = cols.shape[0]
        coords = np.arange(n) * t if uniform else t
        return _from_columns(self._tv_columns(cols, coords), moved_shape, axis)

    def _tv_columns(self, f, t):
        """TV derivative of every column of ``f`` (shape ``(n, m)``), all columns in one banded solve."""
        n, m = f.shape
        h = np.diff(t)
        span = t[-1] - t[0]
        u = np.gradient(f, t, axis=0)
        tiny = np.finfo(float).tiny
        scale = np.maximum(np.maximum(np.std(u, axis=0), np.max(np.abs(f), axis=0) / span), tiny)
        if self.alpha is None:
            noise = np.array([_noise_std(f[:, j]) for j in range(m)])
            alpha = np.maximum(_DEFAULT_TV_ALPHA * noise * span, 1e-10 * scale * span)
        else:
            alpha = np.full(m, float(self.alpha))
        eps = (1e-6 * scale) ** 2
        # Each iteration solves the saddle-point system of
        #   min 1/2 alpha u'Lu + 1/2 |F - f|^2  subject to  D F = T u
        # (L = D' W D the lagged TV operator, D the difference and T the
        # trapezoid operator, (T u)_j = h_j (u_j + u_{j+1}) / 2, F the
        # antiderivative).  Eliminating F = f - D' lam leaves
        #   [alpha L, -T'; -T, -D D'] [u; lam] = [0; -D f],
        # pentadiagonal when u_0, lam_0, u_1, lam_1, ... are interleaved.  The
        # columns are independent blocks of one banded system (the band
        # entries that would couple neighbouring blocks stay zero).
        size = 2 * n - 1
        ab = np.zeros((5, m, size))
        ab[1, :, 1::2] = -h / 2  # (u_j, lam_j)
        ab[3, :, 0:-1:2] = -h / 2
        ab[1, :, 2::2] = -h / 2  # (lam_j, u_{j+1})
        ab[3, :, 1::2] = -h / 2
        ab[2, :, 1::2] = -2.0  # -D D'
        ab[0, :, 3::2] = 1.0
        ab[4, :, 1:-2:2] = 1.0
        rhs = np.zeros((m, size))
        rhs[:, 1::2] = -np.diff(f, axis=0).T
        rhs = rhs.ravel()
        tol = float(self.tol)
        u = np.ascontiguousarray(u.T)  # (m, n)
        for _ in range(int(self.max_iter)):
            w = alpha[:, None] / np.sqrt(np.diff(u, axis=1) ** 2 + eps[:, None])  # alpha L = D' diag(w) D
            ab[2, :, 0::2] = 0.0
            ab[2, :, 0:-2:2] += w
            ab[2, :, 2::2] += w
            ab[0, :, 2::2] = -w
            ab[4, :, 0:-2:2] = -w
            new = scipy.linalg.solve_banded((2, 2), ab.reshape(5, -1), rhs, check_finite=False)
            new = new.reshape(m, size)[:, 0::2]
            change = np.linalg.norm(new - u, axis=1)
            u = new
            if np.all(change <= tol * np.maximum(np.linalg.norm(u, axis=1), tiny)):
                break
        return u.T
