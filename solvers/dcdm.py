"""The learned conjugate-direction solver (DCDM, Kaneda et al., "A Deep Conjugate
Direction Method for Iteratively Solving Linear Systems").

A convolutional network ``f`` learns to approximate the action of ``A^-1`` up to
a scale. It is trained unsupervised on right-hand sides ``b`` built from Ritz
vectors of a Lanczos run on one training matrix (biased toward the low end of
the spectrum, where CG is slow), with the scale-invariant loss

    || b - A q (q^T b) / (q^T A q) ||^2,   q = f(b),

the residual left after the optimal step along ``q``. The solver uses
``f(r / ||r||)`` as the next search direction, A-orthogonalises it against the
directions of the ``n_directions`` most recent iterations (the public code
keeps 2; here all by default), takes the exact line-search step and
recomputes the true residual every iteration, so the stopping test
``||b - A x|| <= max(rtol ||b||, atol)`` is never fooled by a drifting
recurrence.

Three additions make it fast and robust on grids and geometries it was not
trained on:

* **Multilevel directions** (``coarse_levels``): a network trained on a
  small box approximates ``A^-1`` well for the error it saw there, but on a
  grid 4-8 times larger it misses the smoothest error, and the iteration
  count grows with the grid like CG's. Each iteration therefore also applies
  the same network to the residual block-averaged onto grids coarsened 2x,
  4x, ... (down to 4 cells), and interpolates its output back as a further
  direction: the network acts as the coarse solver of a multigrid-like
  hierarchy. Every direction is A-orthogonalised and line-searched, so the
  iteration minimises the energy over all of them.
* **A residual step** (``residual_step``): the residual made A-orthogonal
  to the kept directions (CG's direction) closes each iteration.
* **A stagnation guard**: a learned direction nearly orthogonal to the
  residual, which would make no progress, is skipped
  (``CGResult.n_residual_steps`` counts the iterations where every learned
  direction was), so the iteration never stagnates.

The network is fully convolutional, so a model trained on one grid solves
problems on larger grids and other geometries (``PoissonProblem`` from
:mod:`solvers.problems` carries the grid maps). Matrix products go through
:mod:`sciml.sparse` (its autograd op during training; its CUDA kernels for
CUDA tensors).
"""

from __future__ import annotations

import collections
import math
import time

import numpy as np
import torch

from sciml._validation import check_nonneg_int, check_positive_int, check_real
from sciml.base import BaseTorchEstimator, reset_parameters
from sciml.sparse import spmm, spmv, to_torch_csr

from .cg import CGResult, _check_vector, check_spd_matrix

__all__ = ["lanczos_ritz", "ritz_rhs", "DCDMNetwork", "DCDMSolver"]


def lanczos_ritz(A, n_steps, *, random_state=None):
    """Ritz values and vectors of ``n_steps`` Lanczos steps (full reorthogonalisation).

    Parameters
    ----------
    A : scipy.sparse matrix, SPD, shape (n, n)
    n_steps : int
        Lanczos steps (at most ``n``).
    random_state : None, int or numpy.random.Generator

    Returns
    -------
    values : ndarray of shape (m,)
        Ritz values, ascending.
    vectors : ndarray of shape (n, m)
        Orthonormal Ritz vectors.
    """
    A = check_spd_matrix(A).astype(np.float64)
    n = A.shape[0]
    m = min(check_positive_int("n_steps", n_steps), n)
    rng = np.random.default_rng(random_state)
    V = np.zeros((n, m))
    alpha = np.zeros(m)
    beta = np.zeros(m)
    v = rng.standard_normal(n)
    v /= np.linalg.norm(v)
    for j in range(m):
        V[:, j] = v
        w = spmv(A, v)
        alpha[j] = v @ w
        # Full reorthogonalisation (twice is enough) keeps the basis orthonormal.
        for _ in range(2):
            w -= V[:, : j + 1] @ (V[:, : j + 1].T @ w)
        if j + 1 < m:
            beta[j] = np.linalg.norm(w)
            if beta[j] < 1e-12 * abs(alpha[j]):
                m = j + 1
                break
            v = w / beta[j]
    T = np.diag(alpha[:m]) + np.diag(beta[: m - 1], 1) + np.diag(beta[: m - 1], -1)
    values, Y = np.linalg.eigh(T)
    return values, V[:, :m] @ Y


def ritz_rhs(vectors, n_rhs, *, low_fraction=0.5, low_weight=9.0, random_state=None):
    """Training right-hand sides: random combinations of Ritz vectors, biased low.

    ``b = sum_j c_j v_j`` with ``c_j ~ N(0, 1)`` times ``low_weight`` on the
    lowest ``low_fraction`` of the Ritz vectors (ascending order) and 1 on the
    rest, normalised to unit norm.

    Parameters
    ----------
    vectors : ndarray of shape (n, m)
        Ritz vectors, ascending Ritz values.
    n_rhs : int
    low_fraction : float, default=0.5
    low_weight : float, default=9.0
    random_state : None, int or numpy.random.Generator

    Returns
    -------
    ndarray of shape (n, n_rhs)
    """
    rng = np.random.default_rng(random_state)
    m = vectors.shape[1]
    weights = np.ones(m)
    weights[: max(1, int(round(low_fraction * m)))] = low_weight
    coefs = rng.standard_normal((m, check_positive_int("n_rhs", n_rhs))) * weights[:, None]
    B = vectors @ coefs
    return B / np.linalg.norm(B, axis=0, keepdims=True)


class _ResBlock(torch.nn.Module):
    """``x + conv(relu(conv(x)))``."""

    def __init__(self, conv, channels):
        super().__init__()
        self.a = conv(channels, channels, 3, padding=1)
        self.b = conv(channels, channels, 3, padding=1)

    def forward(self, x):
        return x + self.b(torch.relu(self.a(x)))


class DCDMNetwork(torch.nn.Module):
    """The direction network: a small residual U-Net on the grid (2-D or 3-D).

    Maps ``(batch, 1, *grid)`` to ``(batch, 1, *grid)``; fully convolutional,
    so it applies to any grid size.

    Parameters
    ----------
    ndim : {2, 3}
    channels : int, default=16
    levels : int, default=2
        Number of 2x average-pooling levels; grids are zero-padded to a
        multiple of ``2**levels`` (zero is the solid/outside value).
    """

    def __init__(self, ndim, channels=16, levels=2):
        super().__init__()
        if ndim not in (2, 3):
            raise ValueError(f"ndim must be 2 or 3, got {ndim!r}")
        conv = torch.nn.Conv2d if ndim == 2 else torch.nn.Conv3d
        pool = torch.nn.AvgPool2d if ndim == 2 else torch.nn.AvgPool3d
        self.ndim, self.levels = ndim, levels
        self.inp = conv(1, channels, 3, padding=1)
        self.down = torch.nn.ModuleList([_ResBlock(conv, channels) for _ in range(levels)])
        self.bottom = _ResBlock(conv, channels)
        self.up = torch.nn.ModuleList([_ResBlock(conv, channels) for _ in range(levels)])
        self.pool = pool(2)
        self.out = conv(channels, 1, 3, padding=1)

    def forward(self, x):
        size = x.shape[2:]
        h = self.inp(_pad_to_multiple(x, 2**self.levels))
        skips = []
        for block in self.down:
            h = block(h)
            skips.append(h)
            h = self.pool(h)
        h = self.bottom(h)
        for block, skip in zip(self.up, reversed(skips)):
            h = block(torch.nn.functional.interpolate(h, scale_factor=2, mode="nearest") + skip)
        out = self.out(h)
        return out[(slice(None), slice(None)) + tuple(slice(0, s) for s in size)]


class DCDMSolver(BaseTorchEstimator):
    """Learned conjugate-direction solver for Poisson-type SPD systems on grids.

    Parameters
    ----------
    channels : int, default=16
    levels : int, default=2
    n_lanczos : int, default=200
        Lanczos steps for the Ritz vectors of the training matrix.
    n_rhs : int, default=1000
        Training right-hand sides.
    batch_size : int, default=16
    lr : float, default=1e-3
    max_iter : int, default=2000
        Optimizer steps.
    max_time : float or None, default=None
        Wall-clock budget of the optimizer loop in seconds (the Lanczos run
        before it is not counted; ``train_time_`` is). A time budget makes
        the number of steps, so the fitted network, depend on the machine's
        speed: for repeatable fits bound ``max_iter`` instead.
    n_directions : int or "all", default="all"
        How many of the most recent iterations' directions each new one is
        A-orthogonalised against. The public code keeps 2 (one direction per
        iteration), which suffices on the training box but stagnates on
        larger grids and other geometries without coarse levels (3-D 64^3
        box: 100+ iterations with 2, 16 with all, for a network trained on
        16^3). Each kept direction stores two vectors, and an iteration
        makes up to ``coarse_levels + 2`` directions.
    coarse_levels : int or "auto", default="auto"
        Grids, each coarser by 2x, on which the network is also applied
        every iteration (the residual block-averaged onto the coarse grid,
        the output interpolated back bi- or trilinearly), each output a
        further search direction. ``"auto"`` coarsens until the shortest
        side of the grid has 4 cells; an integer is capped there. ``0`` is
        the single-grid method. They cost one more product with ``A`` each,
        and a network evaluation on 1/4 (2-D) or 1/8 (3-D) as many cells as
        the last, and make the iteration count nearly independent of the
        grid size (see ``python -m benchmarks solvers``).
    residual_step : bool, default=True
        After the learned directions, also step along the residual made
        A-orthogonal to the kept directions (CG's direction): one more
        product with ``A`` per iteration, negligible next to the network.
        ``False`` with ``coarse_levels=0`` is the paper's method (with the
        stagnation guard).
    dtype : {"float32", "float64"}, default="float32"
        Network precision (the solver's vectors are float64).
    random_state, device, verbose, n_threads
        As for every torch estimator of the toolkit.

    Attributes
    ----------
    network_ : torch.nn.Module
    loss_curve_ : list of float
    train_time_ : float
    device_ : torch.device
    """

    # Models saved before the parameter existed load with its default.
    coarse_levels = "auto"

    def __init__(
        self,
        channels=16,
        levels=2,
        n_lanczos=200,
        n_rhs=1000,
        batch_size=16,
        lr=1e-3,
        max_iter=2000,
        max_time=None,
        n_directions="all",
        coarse_levels="auto",
        residual_step=True,
        dtype="float32",
        random_state=None,
        device="auto",
        verbose=False,
        n_threads=1,
    ):
        self.channels = channels
        self.levels = levels
        self.n_lanczos = n_lanczos
        self.n_rhs = n_rhs
        self.batch_size = batch_size
        self.lr = lr
        self.max_iter = max_iter
        self.max_time = max_time
        self.n_directions = n_directions
        self.coarse_levels = coarse_levels
        self.residual_step = residual_step
        self.dtype = dtype
        self.random_state = random_state
        self.device = device
        self.verbose = verbose
        self.n_threads = n_threads

    def fit(self, problem, y=None):
        """Train the direction network on one problem's matrix.

        Parameters
        ----------
        problem : solvers.problems.PoissonProblem
            The training matrix with its grid.
        y : None
            Ignored.

        Returns
        -------
        self
        """
        _check_problem(problem)
        check_positive_int("channels", self.channels)
        check_positive_int("levels", self.levels)
        _check_n_directions(self.n_directions, 1)
        _resolve_coarse_levels(self.coarse_levels, problem.shape)
        batch = check_positive_int("batch_size", self.batch_size)
        check_real("lr", self.lr)
        dtype = self._torch_dtype()
        device = self._resolve_device()
        seed = np.random.default_rng(self.random_state)
        start = time.perf_counter()
        with self._thread_limit():
            _, vectors = lanczos_ritz(problem.A, self.n_lanczos, random_state=seed)
            B = ritz_rhs(vectors, self.n_rhs, random_state=seed)
        B = torch.as_tensor(B, dtype=dtype, device=device)
        A = to_torch_csr(problem.A.astype(np.float32 if dtype == torch.float32 else np.float64), device=device)
        generator = self._make_generator()
        # Built on the meta device (torch's own initialisation would draw
        # from the global RNG) and initialised on the CPU from random_state,
        # so that the starting network is the same on every device.
        with torch.device("meta"):
            network = DCDMNetwork(problem.ndim, self.channels, self.levels)
        network = reset_parameters(network.to_empty(device="cpu").to(dtype=dtype), self._make_generator("cpu"))
        network = network.to(device=device)

        def loss_fn():
            cols = torch.randint(0, B.shape[1], (batch,), generator=generator, device=device)
            b = B[:, cols]
            q = _apply(network, problem, b)
            Aq = spmm(A, q.contiguous())
            scale = (q * b).sum(0) / (q * Aq).sum(0).clamp_min(1e-30)
            return ((b - Aq * scale).pow(2).sum(0)).mean()

        self._train(network, loss_fn, lr=self.lr, max_iter=check_positive_int("max_iter", self.max_iter),
                    max_time=self.max_time, patience=None)
        self.network_ = network.eval()
        self.train_time_ = time.perf_counter() - start
        return self

    def solve(self, problem, b, *, x0=None, rtol=1e-6, atol=0.0, maxiter=100, n_directions=None,
              coarse_levels=None, callback=None):
        """Solve ``A x = b`` with the learned directions.

        The iteration runs in float64 on the network's device (``device_``):
        on a GPU the products with ``A`` use :mod:`sciml.sparse`'s CUDA
        kernels and no vector leaves the GPU until ``x`` is returned. ``A``
        is copied there once per problem and device (cached on the problem).

        Parameters
        ----------
        problem : solvers.problems.PoissonProblem
            The system's matrix and grid (any size or geometry).
        b : array_like of shape (n_rows,)
        x0 : array_like, optional
        rtol, atol : float
            Stop when ``||b - A x|| <= max(rtol * ||b||, atol)`` (true residual).
        maxiter : int, default=100
            Iterations; each evaluates the network once on the grid and once
            on each coarse grid.
        n_directions : int, "all" or None
            Overrides the estimator's ``n_directions``.
        coarse_levels : int, "auto" or None
            Overrides the estimator's ``coarse_levels``.
        callback : callable, optional
            ``callback(xk)`` after every iteration, with ``xk`` a numpy array
            (on a GPU a copy, made only when a callback is given).

        Returns
        -------
        x : ndarray of shape (n_rows,)
        result : solvers.cg.CGResult
        """
        self._check_fitted(["network_"])
        _check_problem(problem)
        n = problem.A.shape[0]
        b = _check_vector(b, n, "b")
        x0 = None if x0 is None else _check_vector(x0, n, "x0", copy=True)
        maxiter = check_positive_int("maxiter", maxiter)
        residual_step = bool(self.residual_step)
        keep = _check_n_directions(self.n_directions if n_directions is None else n_directions, maxiter)
        levels = _resolve_coarse_levels(self.coarse_levels if coarse_levels is None else coarse_levels,
                                        problem.shape)
        if problem.ndim != self.network_.ndim:
            raise ValueError(f"problem is {problem.ndim}-D but the network was trained on a {self.network_.ndim}-D grid")
        rtol, atol = check_real("rtol", rtol, positive=False), check_real("atol", atol, positive=False)
        parameter = next(self.network_.parameters())
        # The whole iteration runs in float64 on the network's device: on a
        # GPU no vector crosses to the host until the solution is returned.
        device = parameter.device
        A = problem._matrix_for(device)
        b = torch.tensor(b, dtype=torch.float64, device=device)  # a copy: the caller's b may be read-only
        x = torch.zeros(n, dtype=torch.float64, device=device) if x0 is None else torch.as_tensor(x0, device=device)
        # Per iteration a list of (p / p^T A p, A p), the directions all
        # mutually A-orthogonal: the current iteration's and the `keep` before it.
        directions = collections.deque(maxlen=keep + 1)
        reason = "maxiter"
        n_iter = n_residual_steps = 0
        # Every vector operation inside the thread limit: an unlimited pool
        # keeps spinning after its call and stalls the sparse kernels' threads.
        with self._thread_limit(), torch.no_grad():
            tolerance = max(rtol * float(torch.linalg.vector_norm(b)), atol)
            r = b - spmv(A, x)
            history = [float(torch.linalg.vector_norm(r))]
            if history[0] <= tolerance:
                return x.cpu().numpy(), CGResult(True, 0, np.asarray(history), "converged", tolerance)
            for k in range(1, maxiter + 1):
                block = []
                directions.append(block)
                # The network on the grid, then on each coarser grid (each on
                # the residual left by the steps before it), then the residual.
                for level in [*range(levels + 1), None]:
                    if level is None:
                        if block and not residual_step:
                            break
                        n_residual_steps += not block
                        p = r.clone()
                    else:
                        p = _direction(self.network_, problem, r, level, parameter)
                    p = _a_orthogonalise(p, directions)
                    # One host sync for the three scalars.
                    pr, p_norm, r_norm = torch.stack(
                        [p @ r, torch.linalg.vector_norm(p), torch.linalg.vector_norm(r)]).tolist()
                    # Safeguard against stagnation: a learned direction (nearly)
                    # orthogonal to the residual makes no progress and is
                    # skipped; the residual, made A-orthogonal like CG's
                    # direction, always makes progress.
                    if not abs(pr) > _MIN_COSINE * p_norm * r_norm:
                        continue
                    Ap = spmv(A, p)
                    pAp = float(p @ Ap)
                    if not (pAp > 0 and np.isfinite(pAp)):
                        reason = "breakdown: the search direction has no positive curvature (is A positive definite?)"
                        break
                    step = pr / pAp
                    x.add_(p, alpha=step)
                    r.sub_(Ap, alpha=step)
                    block.append((p.div_(pAp), Ap))
                if reason != "maxiter":
                    n_iter = k - 1
                    break
                r = b - spmv(A, x)
                history.append(float(torch.linalg.vector_norm(r)))
                n_iter = k
                if callback is not None:
                    callback(x.cpu().numpy())
                if history[-1] <= tolerance:
                    reason = "converged"
                    break
                if not math.isfinite(history[-1]):
                    reason = "breakdown: the residual became non-finite"
                    break
        return x.cpu().numpy(), CGResult(reason == "converged", n_iter, np.asarray(history), reason, tolerance,
                                         n_residual_steps)


# Below this cosine between the network's direction and the residual, the
# direction is skipped (the step along a direction is proportional to it).
_MIN_COSINE = 1e-3
# The coarsest grid of the multilevel directions keeps at least this many
# cells along its shortest side.
_MIN_COARSE = 4


def _a_orthogonalise(q, directions):
    """``q`` made A-orthogonal to the kept directions, a sequence of lists of
    ``(p / p^T A p, A p)`` (modified Gram-Schmidt, in place)."""
    for block in directions:
        for p_scaled, Ap in block:
            # Two kernels per direction, and the coefficient stays on q's
            # device: no host sync (on a GPU these launches are the cost).
            q.addcmul_(p_scaled, q @ Ap, value=-1.0)
    return q


def _resolve_coarse_levels(value, shape):
    """``coarse_levels`` as an int for a grid: at most as many halvings as leave
    ``_MIN_COARSE`` cells along the grid's shortest side (``"auto"``: all of them)."""
    most = max(0, math.floor(math.log2(min(shape) / _MIN_COARSE)))
    if isinstance(value, str):
        if value != "auto":
            raise ValueError(f'coarse_levels must be a non-negative integer or "auto", got {value!r}')
        return most
    return min(check_nonneg_int("coarse_levels", value), most)


def _direction(network, problem, r, level, parameter):
    """The network's direction (float64, on the network's device) for the
    residual ``r`` (a float64 tensor there), computed on the grid coarsened
    ``level`` times.

    Coarsening averages 2^level-wide blocks of cells (solid cells count as 0);
    the network's output on the coarse grid is interpolated back (bi- or
    trilinear), so it carries the smooth part of the error that the network
    on the fine grid, trained on a smaller box, does not reach.
    """
    # Normalised in float64 first: in the network's float32 the squares of a
    # tiny or huge residual would under- or overflow.
    rn = (r / torch.linalg.vector_norm(r)).to(parameter.dtype)
    if level == 0:
        return _apply(network, problem, rn[:, None])[:, 0].double()
    grid = problem.to_grid(rn)[None, None]
    factor = 2**level
    pool = torch.nn.functional.avg_pool2d if problem.ndim == 2 else torch.nn.functional.avg_pool3d
    coarse = pool(_pad_to_multiple(grid, factor), factor)
    norm = coarse.norm()
    if not norm > 0:  # r has no component the coarse grid sees
        return torch.zeros_like(r)
    out = network(coarse / norm)
    fine = torch.nn.functional.interpolate(out, scale_factor=factor, mode="bilinear" if problem.ndim == 2 else "trilinear",
                                           align_corners=False)
    fine = fine[(0, 0) + tuple(slice(0, size) for size in problem.shape)]
    return problem.from_grid(fine).double()


def _pad_to_multiple(x, step):
    """``(batch, channels, *grid)`` zero-padded at the high end of each grid axis to a multiple of ``step``."""
    pad = []
    for size in reversed(x.shape[2:]):
        pad += [0, (-size) % step]
    return torch.nn.functional.pad(x, pad)


def _check_n_directions(value, maxiter):
    """``n_directions`` as an int (``"all"``: ``maxiter``)."""
    if isinstance(value, str):
        if value != "all":
            raise ValueError(f'n_directions must be a positive integer or "all", got {value!r}')
        return maxiter
    return check_positive_int("n_directions", value)


def _check_problem(problem):
    for attr in ("A", "shape", "to_grid", "from_grid", "ndim"):
        if not hasattr(problem, attr):
            raise TypeError(
                f"expected a solvers.problems.PoissonProblem (matrix with its grid), got {type(problem).__name__}"
            )


def _apply(network, problem, vectors):
    """Network on columns of vectors (n_rows, batch) -> (n_rows, batch), through the grid."""
    grid = problem.to_grid(vectors)  # (*shape, batch)
    grid = grid.movedim(-1, 0).unsqueeze(1)  # (batch, 1, *shape)
    out = network(grid).squeeze(1).movedim(0, -1)  # (*shape, batch)
    return problem.from_grid(out)
