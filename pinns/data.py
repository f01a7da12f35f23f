"""Reference solutions of the ready-made equations, for tests, benchmarks and tutorials.

Each is computed independently of any network: Burgers by the Cole-Hopf
formula (Gauss-Hermite quadrature, agreeing with DeepXDE's reference grid to
3e-12), Lorenz and Fisher-KPP by ``scipy.integrate.solve_ivp`` at tight
tolerances, the diffusion-reaction boundary-value problem by
``scipy.integrate.solve_bvp``.
"""

import numpy as np

__all__ = [
    "burgers_solution",
    "lorenz_solution",
    "diffusion_reaction_solution",
    "kfield_true",
    "fisher_kpp_solution",
    "noisy_samples",
    "burgers_grid",
    "lorenz_observations",
    "kfield_observations",
    "fisher_observations",
]


def burgers_solution(x, t, nu=0.01 / np.pi, n_quad=200):
    """Exact solution of ``u_t + u u_x = nu u_xx``, ``u(x, 0) = -sin(pi x)``, ``u(+-1, t) = 0``.

    The Cole-Hopf transform gives (Basdevant et al. 1986)
    ``u = -int sin(pi (x - e)) f(x - e) G(e) de / int f(x - e) G(e) de`` with
    ``f(y) = exp(-cos(pi y) / (2 pi nu))`` and the heat kernel ``G``; the
    integrals are computed by Gauss-Hermite quadrature in log space.

    Parameters
    ----------
    x, t : array-like
        Broadcastable coordinates, ``x`` in [-1, 1], ``t >= 0``.
    nu : float, default=0.01/pi
    n_quad : int, default=200
        Quadrature nodes (numpy's Gauss-Hermite rule overflows above ~250).

    Returns
    -------
    ndarray
    """
    from scipy.special import logsumexp

    X, T = np.broadcast_arrays(np.asarray(x, dtype=float), np.asarray(t, dtype=float))
    if np.any(T < 0):
        raise ValueError("t must be >= 0.")
    out = -np.sin(np.pi * X)
    z, w = np.polynomial.hermite.hermgauss(n_quad)
    m = T > 0
    xs, ts = X[m][:, None], T[m][:, None]
    y = xs - np.sqrt(4 * nu * ts) * z[None, :]
    logf = -np.cos(np.pi * y) / (2 * np.pi * nu) + np.log(w)[None, :]
    weights = np.exp(logf - logsumexp(logf, axis=1, keepdims=True))
    out = out.copy()
    out[m] = -np.sum(np.sin(np.pi * y) * weights, axis=1)
    return out


def lorenz_solution(t, sigma=10.0, rho=15.0, beta=8.0 / 3.0, x0=(-8.0, 7.0, 27.0)):
    """The Lorenz trajectory from ``x0`` at times ``t`` (DeepXDE's inverse example by default).

    Returns
    -------
    ndarray of shape (len(t), 3)
    """
    from scipy.integrate import solve_ivp

    t = np.asarray(t, dtype=float).ravel()

    def rhs(_, s):
        x, y, z = s
        return [sigma * (y - x), x * (rho - z) - y, x * y - beta * z]

    sol = solve_ivp(rhs, (0.0, float(t.max())), list(x0), t_eval=t, method="DOP853", rtol=1e-12, atol=1e-12)
    return sol.y.T


def kfield_true(x):
    """DeepXDE's hidden reaction field ``k(x) = 0.1 + exp(-0.5 (x - 0.5)^2 / 0.15^2)``."""
    x = np.asarray(x, dtype=float)
    return 0.1 + np.exp(-0.5 * (x - 0.5) ** 2 / 0.15**2)


def diffusion_reaction_solution(x, l=0.01, k=kfield_true, source=None):
    """Solution of ``l u'' - k(x) u = source(x)`` on [0, 1] with ``u(0) = u(1) = 0``.

    Parameters
    ----------
    x : array-like
    l : float, default=0.01
    k : callable, default=kfield_true
    source : callable or None, default=None
        ``None`` is ``sin(2 pi x)``.

    Returns
    -------
    ndarray, the shape of ``x``
    """
    from scipy.integrate import solve_bvp

    src = (lambda s: np.sin(2 * np.pi * s)) if source is None else source
    grid = np.linspace(0.0, 1.0, 401)

    def rhs(s, y):
        return np.vstack([y[1], (k(s) * y[0] + src(s)) / l])

    def bc(ya, yb):
        return np.array([ya[0], yb[0]])

    sol = solve_bvp(rhs, bc, grid, np.zeros((2, grid.size)), tol=1e-10, max_nodes=200000)
    if not sol.success:  # pragma: no cover - the default problem converges
        raise RuntimeError(f"solve_bvp failed: {sol.message}")
    return sol.sol(np.asarray(x, dtype=float))[0]


def fisher_kpp_solution(x, t, D=0.01, r=1.0, u0=None, x_range=(0.0, 1.0), nx=801, K=1.0):
    """Fisher-KPP ``u_t = D u_xx + r u (1 - u / K)`` with zero-flux ends, by the method of lines.

    Second-order finite volumes on ``nx`` cells, integrated by ``solve_ivp``
    (Radau with the tridiagonal Jacobian pattern, rtol 1e-10), then interpolated to ``(x, t)``.

    Parameters
    ----------
    x, t : array-like
        Broadcastable query coordinates.
    D, r : float
    u0 : callable or None, default=None
        Initial condition; ``None`` is ``0.05 + 0.45 exp(-((x - 0.3) / 0.15)^2)``
        (a localised population that grows and spreads, so that the
        solution covers most of ``[0, 1]``).
    x_range : (float, float), default=(0, 1)
    nx : int, default=801
    K : float, default=1.0
        Carrying capacity.

    Returns
    -------
    ndarray
    """
    from scipy.integrate import solve_ivp
    from scipy.interpolate import RegularGridInterpolator

    a, b = map(float, x_range)
    u0 = fisher_initial if u0 is None else u0
    h = (b - a) / nx
    xc = a + h * (np.arange(nx) + 0.5)
    X, T = np.broadcast_arrays(np.asarray(x, dtype=float), np.asarray(t, dtype=float))
    t_end = float(T.max())

    def rhs(_, u):
        up = np.concatenate([u[:1], u, u[-1:]])  # zero flux: mirrored ghost cells
        return D * (up[2:] - 2 * u + up[:-2]) / h**2 + r * u * (1 - u / K)

    n_t = 201
    t_eval = np.linspace(0.0, t_end, n_t) if t_end > 0 else np.array([0.0])
    if t_end > 0:
        from scipy.sparse import diags

        tridiagonal = diags([1.0, 1.0, 1.0], [-1, 0, 1], shape=(nx, nx))
        sol = solve_ivp(rhs, (0.0, t_end), u0(xc), t_eval=t_eval, method="Radau", rtol=1e-10,
                        atol=1e-12, jac_sparsity=tridiagonal)
        U = sol.y
    else:
        U = u0(xc)[:, None]
    # cell centres plus the two end points (zero flux: edge value = first/last cell)
    xg = np.concatenate([[a], xc, [b]])
    Ug = np.vstack([U[:1], U, U[-1:]])
    if U.shape[1] == 1:
        return np.interp(X, xg, Ug[:, 0])
    interp = RegularGridInterpolator((xg, t_eval), Ug, method="cubic")
    return interp(np.stack([X.ravel(), T.ravel()], 1)).reshape(X.shape)


def fisher_initial(x):
    """The default Fisher-KPP initial condition (see :func:`fisher_kpp_solution`)."""
    x = np.asarray(x, dtype=float)
    return 0.05 + 0.45 * np.exp(-(((x - 0.3) / 0.15) ** 2))


def noisy_samples(values, noise, random_state=None, scale="std"):
    """Add Gaussian noise of relative size ``noise`` to each column of ``values``.

    Parameters
    ----------
    values : ndarray of shape (n,) or (n, k)
    noise : float
        Noise level, relative to the column's ``scale``.
    random_state : int, numpy Generator or None
    scale : {"std", "max"}, default="std"
        The column's standard deviation or its maximum absolute value.

    Returns
    -------
    ndarray, same shape
    """
    rng = np.random.default_rng(random_state)
    V = np.asarray(values, dtype=float)
    V2 = V.reshape(len(V), -1)
    s = V2.std(0) if scale == "std" else np.abs(V2).max(0)
    return (V2 + noise * s * rng.standard_normal(V2.shape)).reshape(V.shape)


# ---------------------------------------------------------------------------
# the observation sets of the benchmark and tutorial problems
# ---------------------------------------------------------------------------
def burgers_grid(nx=256, nt=100, t_end=0.99, nu=0.01 / np.pi):
    """DeepXDE's Burgers reference grid (x in [-1, 1], ``nt`` times in [0, t_end]) and the exact u.

    Returns
    -------
    X : ndarray of shape (nx * nt, 2)
        ``(x, t)`` rows.
    u : ndarray of shape (nx * nt,)
    """
    x, t = np.linspace(-1.0, 1.0, nx), np.linspace(0.0, t_end, nt)
    XX, TT = np.meshgrid(x, t, indexing="ij")
    return np.column_stack([XX.ravel(), TT.ravel()]), burgers_solution(XX, TT, nu=nu).ravel()


def lorenz_observations(n=25, noise=0.05, random_state=None, t_end=3.0, **params):
    """``n`` evenly spaced noisy samples of :func:`lorenz_solution` on ``[0, t_end]``.

    Noise is Gaussian with standard deviation ``noise`` times each
    component's standard deviation.

    Returns
    -------
    t : ndarray of shape (n, 1)
    y : ndarray of shape (n, 3)
    """
    t = np.linspace(0.0, t_end, n)
    return t[:, None], noisy_samples(lorenz_solution(t, **params), noise, random_state)


def kfield_observations(n=15, noise=0.02, random_state=None, l=0.01):
    """``n`` evenly spaced observations of :func:`diffusion_reaction_solution` on [0, 1].

    Noise is Gaussian with standard deviation ``noise * max|u|`` (the issue's
    and DeepXDE's convention).

    Returns
    -------
    x : ndarray of shape (n, 1)
    u : ndarray of shape (n,)
    """
    x = np.linspace(0.0, 1.0, n)
    return x[:, None], noisy_samples(diffusion_reaction_solution(x, l=l), noise, random_state, scale="max")


def fisher_observations(noise=0.015, random_state=None, n_initial=20, snapshots=(1.0, 2.0, 3.0),
                        n_sensors=10, D=0.01, r=1.0):
    """Sparse noisy Fisher-KPP data: the initial condition and a few sensor snapshots.

    ``n_initial`` evenly spaced samples at ``t = 0`` and ``n_sensors`` fixed
    sensors in ``[0.05, 0.95]`` read at each time in ``snapshots``; noise is
    Gaussian with standard deviation ``noise * max|u|``.

    Returns
    -------
    X : ndarray of shape (n_initial + n_sensors * len(snapshots), 2)
        ``(x, t)`` rows.
    u : ndarray of shape (len(X),)
    """
    x0 = np.linspace(0.0, 1.0, n_initial)
    sensors = np.linspace(0.05, 0.95, n_sensors)
    X = np.vstack([np.column_stack([x0, np.zeros(n_initial)])]
                  + [np.column_stack([sensors, np.full(n_sensors, float(s))]) for s in snapshots])
    u = fisher_kpp_solution(X[:, 0], X[:, 1], D=D, r=r)
    return X, noisy_samples(u, noise, random_state, scale="max")
