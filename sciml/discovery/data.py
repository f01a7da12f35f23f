"""Trajectories with known governing equations, for equation discovery.

Shared by tests, benchmarks and tutorials.  Time is axis 0 of every array:
ODE trajectories have shape ``(n_t, n_vars)``, PDE fields ``(n_t, n_x)``.

* :func:`lorenz` -- the Lorenz-63 system, integrated to ``rtol = atol =
  1e-12``; :func:`lorenz_coefficients` gives its right-hand side as the
  coefficients of a degree-2 polynomial library.
* :func:`burgers` -- viscous Burgers' equation ``u_t = -u u_x + nu u_xx`` on a
  periodic domain, Fourier pseudo-spectral with 2/3 dealiasing and ETDRK4 in
  time (converged to about 1e-8 in the max norm at the default grid).
* :func:`kdv` -- the Korteweg-de Vries equation ``u_t = -6 u u_x - u_xxx``,
  the exact two-soliton solution.
* :func:`add_noise` -- additive Gaussian noise scaled to each variable.

Random draws take ``random_state`` (None, an int or a
``numpy.random.Generator``) and never touch numpy's global RNG.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
from scipy.integrate import solve_ivp

from .._validation import check_positive_int, check_real

__all__ = ["lorenz", "lorenz_coefficients", "burgers", "kdv", "add_noise"]


def _check_pair(name, value, *, increasing=False):
    try:
        a, b = value
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a pair of real numbers, got {value!r}") from None
    out = []
    for v in (a, b):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
            raise TypeError(f"{name} must be a pair of real numbers, got {value!r}")
        if not math.isfinite(v):
            raise ValueError(f"{name} must be finite, got {value!r}")
        out.append(float(v))
    if increasing and not out[0] < out[1]:
        raise ValueError(f"{name} must satisfy {name}[0] < {name}[1], got {value!r}")
    return tuple(out)


def _periodic_grid(nx, x_range):
    a, b = x_range
    return a + (b - a) * np.arange(nx) / nx


# ---------------------------------------------------------------------------
# Lorenz
# ---------------------------------------------------------------------------


def lorenz_coefficients(sigma=10.0, rho=28.0, beta=8.0 / 3.0):
    """The Lorenz right-hand side as polynomial-library coefficients.

    Parameters
    ----------
    sigma, rho, beta : float

    Returns
    -------
    coefficients : dict
        ``{equation: {term: coefficient}}`` with the variables named ``x, y,
        z`` and the terms spelled as a degree-2 polynomial library prints
        them (``"x"``, ``"x y"``, ``"x^2"``; products space-separated in the
        order x, y, z); terms absent from the dict have coefficient 0::

            x' = -sigma x + sigma y
            y' = rho x - y - x z
            z' = x y - beta z

    Examples
    --------
    >>> lorenz_coefficients()["y"]
    {'x': 28.0, 'y': -1.0, 'x z': -1.0}
    """
    sigma, rho, beta = float(sigma), float(rho), float(beta)
    return {
        "x": {"x": -sigma, "y": sigma},
        "y": {"x": rho, "y": -1.0, "x z": -1.0},
        "z": {"x y": 1.0, "z": -beta},
    }


def lorenz(
    t=None,
    *,
    x0=(-8.0, 8.0, 27.0),
    sigma=10.0,
    rho=28.0,
    beta=8.0 / 3.0,
    dt=0.002,
    t_end=10.0,
    rtol=1e-12,
    atol=1e-12,
):
    """A trajectory of the Lorenz-63 system.

    ``x' = sigma (y - x)``, ``y' = x (rho - z) - y``, ``z' = x y - beta z``,
    integrated with ``scipy.integrate.solve_ivp`` (DOP853) and evaluated at
    the requested times by its dense output.

    Parameters
    ----------
    t : array_like of shape (n_t,), optional
        Strictly increasing sample times (uniform or not); the trajectory
        starts at ``t[0]`` from `x0`.  Overrides `dt` and `t_end`.
    x0 : sequence of 3 floats, default (-8, 8, 27)
        Initial state (the classic SINDy example, on the attractor quickly).
    sigma, rho, beta : float, default 10, 28, 8/3
        The chaotic regime.
    dt : float, default 0.002
        Sample spacing when `t` is None: ``t = dt * arange(n_t)`` with
        ``n_t = floor(t_end / dt) + 1`` (5001 samples by default).
    t_end : float, default 10.0
    rtol, atol : float, default 1e-12
        Integrator tolerances.

    Returns
    -------
    t : numpy.ndarray of shape (n_t,)
    X : numpy.ndarray of shape (n_t, 3)
        Columns x, y, z.

    Examples
    --------
    >>> t, X = lorenz(t_end=1.0)
    >>> X.shape
    (501, 3)
    """
    sigma = check_real("sigma", sigma, positive=False)
    rho = check_real("rho", rho, positive=False)
    beta = check_real("beta", beta, positive=False)
    rtol = check_real("rtol", rtol)
    atol = check_real("atol", atol)
    x0 = np.asarray(x0, dtype=np.float64)
    if x0.shape != (3,) or not np.all(np.isfinite(x0)):
        raise ValueError(f"x0 must be 3 finite numbers, got {x0!r}")
    if t is None:
        dt = check_real("dt", dt)
        t_end = check_real("t_end", t_end)
        n_t = int(math.floor(t_end / dt * (1 + 1e-12))) + 1
        t = dt * np.arange(n_t)
    else:
        t = np.asarray(t, dtype=np.float64)
        if t.ndim != 1 or t.shape[0] < 1:
            raise ValueError(f"t must be a non-empty 1-D array of times, got shape {t.shape}")
        if not np.all(np.isfinite(t)):
            raise ValueError("t contains NaN or infinity")
        steps = np.diff(t)
        if np.any(steps <= 0):
            i = int(np.flatnonzero(steps <= 0)[0]) + 1
            raise ValueError(f"time stamps must be strictly increasing; found a repeat or decrease at index {i}")

    def rhs(_, s):
        x, y, z = s
        return [sigma * (y - x), x * (rho - z) - y, x * y - beta * z]

    if t.shape[0] == 1:
        return t, x0[None, :].copy()
    sol = solve_ivp(rhs, (t[0], t[-1]), x0, method="DOP853", t_eval=t, rtol=rtol, atol=atol)
    if not sol.success:  # pragma: no cover - DOP853 on Lorenz does not fail
        raise RuntimeError(f"Lorenz integration failed: {sol.message}")
    return t, np.ascontiguousarray(sol.y.T)


# ---------------------------------------------------------------------------
# Burgers
# ---------------------------------------------------------------------------


def _etdrk4_coefficients(lin, h, n_contour=32):
    """Kassam-Trefethen ETDRK4 coefficients for the diagonal linear part ``lin`` and step ``h``.

    The phi-function combinations are averaged over a circle of radius 1
    around each ``h * lin`` (contour integrals), which avoids the
    cancellation of the direct formulas for small ``h * lin``.
    """
    r = np.exp(1j * np.pi * (np.arange(1, n_contour + 1) - 0.5) / n_contour)
    z = h * lin[:, None] + r[None, :]
    ez = np.exp(z)
    q = h * np.real(np.mean((np.exp(z / 2) - 1) / z, axis=1))
    f1 = h * np.real(np.mean((-4 - z + ez * (4 - 3 * z + z**2)) / z**3, axis=1))
    f2 = h * np.real(np.mean((2 + z + ez * (z - 2)) / z**3, axis=1))
    f3 = h * np.real(np.mean((-4 - 3 * z - z**2 + ez * (4 - z)) / z**3, axis=1))
    return np.exp(h * lin), np.exp(h * lin / 2), q, f1, f2, f3


#: Largest ETDRK4 time step of :func:`burgers` (time-discretisation error ~2e-10 at the defaults).
_BURGERS_STEP = 5e-3


def burgers(nx=256, nt=101, *, nu=0.1, x_range=(-8.0, 8.0), t_end=10.0):
    """Viscous Burgers' equation ``u_t = -u u_x + nu u_xx``, periodic in x.

    The initial condition ``u(0, x) = exp(-(x + 2)**2)`` steepens into a
    viscous shock that then decays (the standard PDE-FIND / PySINDy data
    set).  Space is Fourier pseudo-spectral on ``nx`` points with the 2/3
    rule for the quadratic term; time is ETDRK4 (Kassam and Trefethen 2005:
    the stiff diffusion is integrated exactly) with at most 0.005 per step
    and a whole number of steps between snapshots.  At the defaults the
    time-stepping error is about 2e-10 (against steps 20 times smaller),
    the field agrees with a run on the twice finer grid to about 1e-8 (max
    norm), and generation takes under a second.

    Parameters
    ----------
    nx : int, default 256
        Grid points on ``[x_range[0], x_range[1])`` (endpoint excluded);
        at least 8.
    nt : int, default 101
        Snapshots on ``[0, t_end]`` (both included).
    nu : float, default 0.1
        Viscosity (> 0).
    x_range : pair of floats, default (-8.0, 8.0)
        The periodic domain; the initial pulse must be negligible at its
        ends for the data to be periodic.
    t_end : float, default 10.0

    Returns
    -------
    t : numpy.ndarray of shape (nt,)
    x : numpy.ndarray of shape (nx,)
    u : numpy.ndarray of shape (nt, nx)

    Examples
    --------
    >>> t, x, u = burgers(nx=64, nt=3, t_end=0.1)
    >>> u.shape
    (3, 64)
    """
    nx = check_positive_int("nx", nx)
    if nx < 8:
        raise ValueError(f"nx must be at least 8, got {nx}")
    nt = check_positive_int("nt", nt)
    nu = check_real("nu", nu)
    x_range = _check_pair("x_range", x_range, increasing=True)
    t_end = check_real("t_end", t_end)
    length = x_range[1] - x_range[0]
    x = _periodic_grid(nx, x_range)
    t = np.linspace(0.0, t_end, nt)
    k = 2.0 * np.pi * np.fft.rfftfreq(nx, d=length / nx)
    # 2/3 rule: the quadratic term keeps only wavenumbers below 2/3 of Nyquist.
    keep = np.abs(np.fft.rfftfreq(nx) * nx) < nx / 3.0
    advect = -0.5j * k * keep

    def nonlinear(v):
        u = np.fft.irfft(v * keep, n=nx)
        return advect * np.fft.rfft(u * u)

    v = np.fft.rfft(np.exp(-((x + 2.0) ** 2)))
    u = np.empty((nt, nx))
    u[0] = np.fft.irfft(v, n=nx)
    if nt > 1:
        interval = t_end / (nt - 1)
        steps = max(1, math.ceil(interval / _BURGERS_STEP * (1 - 1e-12)))
        e, e2, q, f1, f2, f3 = _etdrk4_coefficients(-nu * k * k, interval / steps)
        for i in range(1, nt):
            for _ in range(steps):
                nv = nonlinear(v)
                a = e2 * v + q * nv
                na = nonlinear(a)
                b = e2 * v + q * na
                nb = nonlinear(b)
                c = e2 * a + q * (2.0 * nb - nv)
                nc = nonlinear(c)
                v = e * v + f1 * nv + 2.0 * f2 * (na + nb) + f3 * nc
            u[i] = np.fft.irfft(v, n=nx)
    return t, x, u


# ---------------------------------------------------------------------------
# KdV
# ---------------------------------------------------------------------------


def kdv(nx=512, nt=201, *, x_range=(-30.0, 30.0), t_end=20.0, k=(1.1, 0.8), x0=(-14.0, -9.0)):
    """Two-soliton solution of the KdV equation ``u_t = -6 u u_x - u_xxx``.

    The exact (Hirota) solution ``u = 2 d^2/dx^2 log F`` with ::

        F = 1 + exp(eta_1) + exp(eta_2) + A12 exp(eta_1 + eta_2),
        eta_i = k_i (x - x0_i) - k_i**3 t,    A12 = ((k_1 - k_2) / (k_1 + k_2))**2.

    Alone, soliton ``i`` is ``(k_i**2 / 2) sech^2(eta_i / 2)``: amplitude
    ``k_i**2 / 2``, speed ``k_i**2``, centred at ``x0_i + k_i**2 t``.  The
    interaction shifts the faster soliton forward by ``log(1 / A12) / k_1``
    and the slower one back by ``log(1 / A12) / k_2``, so while the faster
    one is still behind, the slower one sits at ``x0_2 + log(1 / A12) / k_2
    + k_2**2 t``.  ``u`` is evaluated in closed form and without overflow:
    ``d^2/dx^2 log F`` is the variance of the slopes ``(0, k_1, k_2, k_1 +
    k_2)`` of the four exponents under their softmax weights.

    Defaults: amplitudes 0.605 and 0.32 at speeds 1.21 and 0.64; the peaks
    start at x = -14.1 (fast) and -4.3 (slow), exchange identity around
    t = 10 and end at 3.8 (slow) and 13.6 (fast), at least 16 units from the
    edges of ``[-30, 30)`` throughout, where ``|u|`` stays below 2e-7; the
    data are periodic to that level, so spectral derivatives apply.

    Parameters
    ----------
    nx : int, default 512
        Grid points on ``[x_range[0], x_range[1])`` (endpoint excluded).
    nt : int, default 201
        Snapshots on ``[0, t_end]`` (both included).
    x_range : pair of floats, default (-30.0, 30.0)
    t_end : float, default 20.0
    k : pair of positive floats, default (1.1, 0.8)
        Soliton wavenumbers (distinct); the first is the faster if larger.
    x0 : pair of floats, default (-14.0, -9.0)
        Phase positions ``x0_i`` of the two solitons.

    Returns
    -------
    t : numpy.ndarray of shape (nt,)
    x : numpy.ndarray of shape (nx,)
    u : numpy.ndarray of shape (nt, nx)

    Examples
    --------
    >>> t, x, u = kdv(nt=3)
    >>> u.shape
    (3, 512)
    """
    nx = check_positive_int("nx", nx)
    nt = check_positive_int("nt", nt)
    x_range = _check_pair("x_range", x_range, increasing=True)
    t_end = check_real("t_end", t_end)
    k1, k2 = _check_pair("k", k)
    if not (k1 > 0 and k2 > 0 and k1 != k2):
        raise ValueError(f"k must be two distinct positive wavenumbers, got {k!r}")
    x01, x02 = _check_pair("x0", x0)
    x = _periodic_grid(nx, x_range)
    t = np.linspace(0.0, t_end, nt)
    eta1 = k1 * (x[None, :] - x01) - k1**3 * t[:, None]
    eta2 = k2 * (x[None, :] - x02) - k2**3 * t[:, None]
    exponents = np.stack([np.zeros_like(eta1), eta1, eta2, eta1 + eta2 + 2.0 * math.log(abs(k1 - k2) / (k1 + k2))])
    slopes = np.array([0.0, k1, k2, k1 + k2])[:, None, None]
    weights = np.exp(exponents - exponents.max(axis=0))
    weights /= weights.sum(axis=0)
    mean = (weights * slopes).sum(axis=0)
    return t, x, 2.0 * (weights * (slopes - mean) ** 2).sum(axis=0)


# ---------------------------------------------------------------------------
# Noise
# ---------------------------------------------------------------------------


def add_noise(X, noise_level, *, random_state=None, axis=0):
    """``X`` plus Gaussian noise scaled to the spread of each variable.

    Parameters
    ----------
    X : array_like of real numbers
        Finite values.
    noise_level : float
        Non-negative: the noise std is ``noise_level`` times the std of the
        data (e.g. 0.01 for "1 % noise").
    random_state : None, int or numpy.random.Generator
    axis : int, tuple of ints or None, default 0
        Axes over which the reference std is taken; it is computed
        separately for every index of the remaining axes.  The default
        ``axis=0`` (time) gives every column of an ODE trajectory
        ``(n_t, n_vars)`` its own scale; pass ``axis=None`` for a PDE field
        ``(n_t, n_x)`` to scale by the std of the whole field (a per-column
        std would give points the field never reaches almost no noise).
        A variable of zero spread gets no noise.

    Returns
    -------
    X_noisy : numpy.ndarray
        A new array of `X`'s shape and floating dtype (float64 for integer
        input).

    Examples
    --------
    >>> add_noise([[0.0, 1.0], [2.0, 3.0]], 0.0)
    array([[0., 1.],
           [2., 3.]])
    """
    noise_level = check_real("noise_level", noise_level, positive=False)
    X = np.asarray(X)
    if X.dtype.kind in "biu":
        X = X.astype(np.float64)
    elif X.dtype.kind != "f":
        raise TypeError(f"X must be a real numeric array, got dtype {X.dtype}")
    if not np.all(np.isfinite(X)):
        raise ValueError("X contains NaN or infinity")
    if axis is not None and X.ndim == 0:
        raise ValueError("X is a scalar; pass axis=None")
    rng = np.random.default_rng(random_state)
    scale = noise_level * np.std(X, axis=axis, keepdims=True, dtype=np.float64)
    noise = rng.standard_normal(X.shape) * scale
    return (X + noise).astype(X.dtype, copy=False)
