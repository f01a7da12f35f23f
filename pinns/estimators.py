"""PINN estimators: forward and data-assimilation, inverse, hidden-term discovery.

The numerics are plain functions (:func:`pinn_losses`, :func:`rad_resample`,
:func:`grad_norm_weights`); :class:`PINNRegressor` validates, builds the
module, runs the toolkit's training loop (:func:`sciml.training.train`) in
rounds between which collocation points are resampled, and stores the
results.  :class:`HiddenTermPINN` adds the symbolic step: each learned hidden
term is sampled over the range it was evaluated on and handed to a sparse
regression of :mod:`sciml.discovery`.
"""

import math
import numbers
import warnings

import numpy as np
from sklearn.base import RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import validate_data

from sciml._validation import check_nonneg_int, check_positive_int, check_real
from sciml.base import BaseTorchEstimator

from .conditions import DirichletBC, InitialCondition, NeumannBC, check_hard_consistency
from .equations import Equation
from .geometry import Box, as_domain
from .ops import gradient

__all__ = ["PINNRegressor", "HiddenTermPINN", "Unknown", "Continuation", "pinn_losses", "rad_resample",
           "grad_norm_weights", "hidden_input_ranges"]


class Unknown:
    """An unknown physical parameter to learn, with its initial guess.

    Parameters
    ----------
    init : float, default=1.0
        Initial guess.
    positive : bool, default=True
        Learn ``log(value)`` so the value stays positive (and steps are
        relative, which suits parameters of different magnitudes).
    """

    def __init__(self, init=1.0, positive=True):
        init = float(init)
        if not math.isfinite(init) or (positive and init <= 0):
            raise ValueError(
                f"The initial guess of a positive unknown must be finite and > 0, got {init!r}; "
                "use Unknown(init, positive=False) for a parameter of any sign."
            )
        self.init = init
        self.positive = bool(positive)

    def __repr__(self):
        return f"Unknown({self.init!r}, positive={self.positive})"


class Continuation:
    """Penalty continuation: the physics weights grow stage by stage during the quasi-Newton phase.

    With noisy observations, a PINN whose physics weight stays small fits
    the noise with a trajectory that does not solve the equation, and its
    unknowns are biased.  The quadratic-penalty method fits the data first
    and then enforces the equation ever more strictly: the weights of the
    residual and soft-condition terms are multiplied by ``start``, then by
    ``factor`` after each stage, up to ``stop``.  As the physics becomes
    exact the fit tends to the equation-constrained least-squares fit of the
    data, which for Gaussian noise is the maximum-likelihood estimate of the
    unknowns (problem P2 of ``python -m benchmarks pinns``: every seed
    reached it).

    A stage ends when ``patience`` quasi-Newton iterations in a row improve
    the loss by less than ``tol`` (relative); new collocation points are
    then drawn (residual-based, as between rounds) unless
    ``resample_every=0``.  The last stage (``stop``) runs until the
    iteration or time budget ends.  The Adam phase, if any, uses ``start``.
    The equation is also enforced at the observation points, where the
    data pull on the network (DeepXDE's example uses such "anchors"; on P2
    the fits reached the maximum-likelihood fit with and without them, so
    they are a precaution, not a measured gain).

    Two ways it can miss, both seen on a one-parameter decay ``u' = -k u``
    fitted to 15 noisy points by a 1-[6]x2-1 network with 64 collocation
    points (once each in six data/seed draws; the other four ended within
    0.15 % of the maximum-likelihood ``k``):

    * The equation holds only where it is enforced: as its weight grows,
      the network can meet the data with a jump narrower than the spacing
      of the collocation points, and then beats the constrained fit on the
      data.  Keep the collocation points dense compared with the
      observations and check :meth:`PINNRegressor.residual` on a fine grid.
    * A stage whose loss keeps falling never ends (a network that can
      interpolate the data does so at a small physics weight); the fit then
      warns that it ran out of budget before ``stop``: raise ``start`` or
      use a smaller network.

    Parameters
    ----------
    start : float, default=1e-4
        Factor of the physics weights in the first stage.
    stop : float, default=10.0
        Factor of the last stage (at least ``start``).
    factor : float, default=10.0
        Growth of the factor from one stage to the next (> 1).
    patience : int, default=300
        Iterations without progress that end a stage.
    tol : float, default=1e-2
        Relative loss decrease that counts as progress within a stage.
    """

    def __init__(self, start=1e-4, stop=10.0, factor=10.0, patience=300, tol=1e-2):
        for name, value in (("start", start), ("stop", stop), ("factor", factor), ("tol", tol)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (
                    math.isfinite(value) and value > 0):
                raise ValueError(f"Continuation {name} must be a finite number > 0, got {value!r}.")
        if stop < start:
            raise ValueError(f"Continuation stop ({stop!r}) must be at least start ({start!r}).")
        if not factor > 1:
            raise ValueError(f"Continuation factor must be > 1, got {factor!r}.")
        if not tol < 1:
            raise ValueError(f"Continuation tol must be < 1 (a relative decrease), got {tol!r}.")
        check_positive_int("Continuation patience", patience)
        self.start, self.stop, self.factor = float(start), float(stop), float(factor)
        self.patience, self.tol = int(patience), float(tol)

    def factors(self):
        """The physics factor of each stage, ``start`` to ``stop``.

        Returns
        -------
        list of float
        """
        n = int(math.floor(math.log(self.stop / self.start) / math.log(self.factor) + 1e-9))
        out = [self.start * self.factor**k for k in range(n + 1)]
        if out[-1] < self.stop * (1 - 1e-9):
            out.append(self.stop)
        out[-1] = self.stop  # exactly stop, not stop within rounding
        return out

    def __repr__(self):
        return (f"Continuation(start={self.start!r}, stop={self.stop!r}, factor={self.factor!r}, "
                f"patience={self.patience!r}, tol={self.tol!r})")


def _is_physics_term(name):
    """Loss terms that continuation scales: the equation's residual(s) and the soft conditions."""
    return name == "residual" or name.startswith(("residual[", "condition["))


def _parse_unknowns(unknowns):
    if unknowns is None:
        return {}
    if not isinstance(unknowns, dict):
        raise TypeError(f"unknowns must be a dict of name -> initial guess, got {type(unknowns).__name__}.")
    out = {}
    for name, v in unknowns.items():
        if not isinstance(v, Unknown):
            if isinstance(v, bool) or not isinstance(v, numbers.Real):
                raise TypeError(f"unknowns[{name!r}] must be a number or an Unknown, got {v!r}.")
            v = Unknown(v)
        out[str(name)] = (v.init, v.positive)
    return out


# ---------------------------------------------------------------------------
# plain numerics
# ---------------------------------------------------------------------------
def pinn_losses(module, equation, known_params, X_col, conditions, cond_points, X_obs, y_obs,
                observed, obs_scale):
    """The loss terms of a PINN, as a dict of name -> mean square.

    Parameters
    ----------
    module : PINNModule
    equation : Equation or None
    known_params : dict of str to float
    X_col : torch.Tensor of shape (n, d) or None
        Collocation points.
    conditions : list of conditions
        The soft ones (hard ones are in the module's transform).
    cond_points : list of dict
        Points of each condition.
    X_obs, y_obs : torch.Tensor or None
        Observations.
    observed : list of int
        Output columns that ``y_obs`` holds.
    obs_scale : torch.Tensor of shape (1, len(observed))
        Data residuals are divided by it (so every observed field counts alike).

    Returns
    -------
    dict of str to torch.Tensor
        ``"residual"`` (or ``"residual[i]"`` per equation of a system),
        ``"condition[j]"`` per soft condition and ``"data"``.
    """
    terms = {}
    if equation is not None and X_col is not None:
        r = equation_residual(module, equation, known_params, X_col)
        if r.shape[1] == 1:
            terms["residual"] = r.pow(2).mean()
        else:
            for i in range(r.shape[1]):
                terms[f"residual[{i}]"] = r[:, i].pow(2).mean()
    for j, (cond, pts) in enumerate(zip(conditions, cond_points)):
        terms[f"condition[{j}]"] = cond.residual(pts, module).pow(2).mean()
    if X_obs is not None:
        u = module(X_obs)[:, observed]
        terms["data"] = ((u - y_obs) / obs_scale).pow(2).mean()
    if equation is not None:
        for name, spec in equation.hidden_terms.items():
            if spec.smoothness > 0 and not getattr(module.hidden[name], "is_formula", False):
                terms[f"smoothness[{name}]"] = spec.smoothness * hidden_smoothness(
                    module.hidden[name], order=spec.smoothness_order)
    return terms


def hidden_smoothness(net, n=64, order=1):
    """Mean squared derivative of a hidden term over its input range (scaled units).

    Inputs are scaled to [-1, 1] (a fixed grid along each input, so the
    penalty is deterministic); derivatives are taken in the scaled inputs,
    so the penalty does not depend on the units of ``z``.  A positive term
    is penalised through ``log h``.  ``order=2`` sums the squares of all
    second derivatives (the thin-plate penalty in two inputs).
    """
    import torch

    d = net.lo.shape[1]
    s = torch.linspace(-1.0, 1.0, n, dtype=net.lo.dtype, device=net.lo.device)
    if d <= 2:
        grid = torch.stack(torch.meshgrid(*([s] * d), indexing="ij"), -1).reshape(-1, d)
    else:  # an unscrambled Sobol set: fixed, and no draw from any RNG
        grid = torch.quasirandom.SobolEngine(d, scramble=False).draw(n * n, dtype=net.lo.dtype).to(net.lo.device)
        grid = grid * 2 - 1
    half_width = (net.hi - net.lo) / 2
    z = (net.lo + (grid + 1) * half_width).detach().requires_grad_(True)
    h = net(z)
    if net.positive:
        h = torch.log(h)
    total = 0.0
    for j in range(h.shape[1]):  # output by output, so that outputs cannot cancel
        g = gradient(h, z, component=j) * half_width
        if order == 1:
            total = total + g.pow(2).sum(1)
            continue
        for i in range(d):
            total = total + (gradient(g[:, i : i + 1], z) * half_width).pow(2).sum(1)
    return total.mean()


class _ReadRecorder(dict):
    """The parameter dict of a probe call: notes the names the residual reads."""

    def __init__(self, params, read):
        super().__init__(params)
        self._read = read

    def __getitem__(self, key):
        self._read.add(key)
        return super().__getitem__(key)

    def get(self, key, default=None):
        self._read.add(key)
        return super().get(key, default)


def equation_residual(module, equation, known_params, X, record=None, read=None):
    """The equation's residual at ``X`` as an ``(n, n_equations)`` tensor, with its shape checked.

    ``record`` replaces the hidden terms (see :func:`hidden_input_ranges`);
    a set ``read`` receives the names of the parameters the residual reads.
    """
    X = X.detach().requires_grad_(True)
    u = module(X)
    p = dict(known_params)
    p.update(module.unknown_values())
    if read is not None:
        p = _ReadRecorder(p, read)
    h = None
    if equation.hidden_terms:
        h = dict(module.hidden) if record is None else record
    r = equation(X, u, p, h)
    import torch

    if not isinstance(r, torch.Tensor):
        raise TypeError(f"The residual of {equation.name!r} returned {type(r).__name__}, not a torch tensor.")
    if r.ndim == 1:
        r = r[:, None]
    if r.ndim != 2 or r.shape[0] != X.shape[0]:
        raise ValueError(
            f"The residual of {equation.name!r} returned shape {tuple(r.shape)} for "
            f"{X.shape[0]} points; it must be ({X.shape[0]},) or ({X.shape[0]}, n_equations)."
        )
    return r


def hidden_input_ranges(module, equation, known_params, X):
    """Range of the inputs each hidden term receives when the residual is evaluated at ``X``.

    Returns
    -------
    dict of str to (lo, hi, of_inputs)
        Per hidden term called by the residual: the column-wise minimum and
        maximum (torch tensors) over all its calls, and whether every call
        was fed columns of ``X`` itself (a term of the coordinates, such as
        ``k(x)``, rather than of the outputs, such as ``f(u)``).
    """
    import torch

    seen = {}
    X = X.detach()

    def recorder(name):
        net = module.hidden[name]

        def call(z):
            z2 = (z[:, None] if z.ndim == 1 else z).detach()
            lo, hi = z2.amin(0), z2.amax(0)
            of_inputs = z2.shape[0] == X.shape[0] and all(
                any(torch.equal(z2[:, i], X[:, j]) for j in range(X.shape[1])) for i in range(z2.shape[1])
            )
            if name in seen:
                lo0, hi0, of0 = seen[name]
                lo, hi, of_inputs = torch.minimum(lo, lo0), torch.maximum(hi, hi0), of_inputs and of0
            seen[name] = (lo, hi, of_inputs)
            return net(z)

        return call

    equation_residual(module, equation, known_params, X, record={n: recorder(n) for n in module.hidden})
    return seen


def grad_norm_weights(terms, params, weights, momentum=0.9):
    """Balance loss terms by their gradient norms (Wang, Wang & Perdikaris 2023).

    Each weight becomes ``sum_j |grad L_j| / |grad L_i|``, smoothed by an
    exponential moving average, so that every term pulls the parameters with
    the same strength.

    Parameters
    ----------
    terms : dict of str to torch.Tensor
    params : list of torch.Tensor
    weights : dict of str to float
        Current weights (updated copy returned).
    momentum : float, default=0.9

    Returns
    -------
    dict of str to float
    """
    import torch

    norms = {}
    for name, loss in terms.items():
        grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        sq = sum(float(g.pow(2).sum()) for g in grads if g is not None)
        norms[name] = math.sqrt(sq)
    total = sum(norms.values())
    new = dict(weights)
    for name, g in norms.items():
        if g > 0 and math.isfinite(g) and math.isfinite(total):
            target = total / g
            old = weights.get(name, 1.0)
            new[name] = momentum * old + (1 - momentum) * target
    return new


def rad_resample(module, equation, known_params, domain, n, generator, pool_factor=4):
    """Residual-based adaptive distribution (RAD, Wu et al. 2023) of collocation points.

    Draws ``pool_factor * n`` uniform candidates and keeps ``n`` of them
    with probability proportional to ``r^2 / mean(r^2) + 1``: points
    concentrate where the residual is large while every region keeps some.

    Returns
    -------
    torch.Tensor of shape (n, d), float64 on the CPU
    """
    import torch

    pool = domain.sample_interior(pool_factor * n, generator, method="uniform")
    dtype, device = module.lower.dtype, module.lower.device
    r = equation_residual(module, equation, known_params, pool.to(device=device, dtype=dtype))
    r2 = r.detach().pow(2).sum(1).to("cpu", torch.float64)
    mean = r2.mean()
    if not torch.isfinite(mean) or mean <= 0:
        return pool[:n]
    p = r2 / mean + 1.0
    idx = torch.multinomial(p / p.sum(), n, replacement=False, generator=generator)
    return pool[idx]


# ---------------------------------------------------------------------------
# estimators
# ---------------------------------------------------------------------------
class PINNRegressor(RegressorMixin, BaseTorchEstimator):
    """A physics-informed network: forward, data-assimilation and inverse problems.

    The network ``u(X)`` is fitted to the observations ``(X, y)`` and to the
    equation's residual at collocation points sampled from ``domain``, plus
    any initial/boundary ``conditions``.  Unknown physical parameters listed
    in ``unknowns`` are learned with it (``params_``).

    Parameters
    ----------
    equation : Equation or None, default=None
        The physics.  ``None`` fits the observations only (a plain network
        regressor, useful as a baseline).
    domain : Box, DeepXDE geometry, (lower, upper) or None, default=None
        Where the equation holds; ``None`` is the bounding box of the
        observations.
    conditions : sequence of DirichletBC, NeumannBC, InitialCondition, default=()
    unknowns : dict of str to float or Unknown, or None, default=None
        Parameters of the equation to learn, with initial guesses (positive
        through a log parametrisation unless ``Unknown(..., positive=False)``).
        Each must be read by the residual (``p[name]`` or ``p.get(name)``).
    observed_outputs : sequence of int or None, default=None
        Output columns that ``y`` holds (``None``: all, in order, so ``y``
        needs one column per output of the equation).
    hidden_layer_sizes : tuple of int, default=(32, 32, 32)
    activation : {"tanh", "sin", "gelu", "silu", "softplus"}, default="tanh"
    fourier_features : int, default=0
        Random Fourier features of the inputs (against spectral bias on
        multi-scale problems); 0 for none.
    fourier_scale : float, default=1.0
        Their frequency scale (standard deviation of ``B``, inputs in [-1, 1]).
    n_collocation : int, default=2000
        Collocation points.
    resample_every : int, default=1000
        Iterations between residual-based resamplings of the collocation and
        condition points (:func:`rad_resample`); 0 keeps the first points.
    loss_weights : "auto", dict or None, default="auto"
        ``"auto"`` balances the terms by gradient norms during the Adam phase
        (:func:`grad_norm_weights`) and freezes them for the quasi-Newton
        phase; a dict maps term names (``"residual"``, ``"residual[i]"``,
        ``"condition[j]"``, ``"data"``) to fixed finite weights >= 0 (missing
        ones are 1); ``None`` weighs all terms 1.  Hidden-term smoothness penalties
        (``"smoothness[name]"``) keep the weight their :class:`HiddenTerm`
        gives them.  With noisy data, gradient-norm balancing drives the data
        weight up as the data term reaches its noise floor; noisy inverse
        problems do better with fixed weights and :class:`Continuation`
        (see ``python -m benchmarks pinns``, problem P2).
    weight_update_every : int, default=100
        Adam steps between weight updates with ``loss_weights="auto"``.
    max_iter : int, default=2000
        Adam steps.
    lr : float, default=1e-3
        Adam learning rate.
    lbfgs_iter : int, default=5000
        Quasi-Newton iterations after Adam (full batch).
    quasi_newton : {"auto", "bfgs", "lbfgs"}, default="auto"
        Dense BFGS (several times fewer iterations than L-BFGS on PINN
        losses; stores an ``n x n`` matrix for ``n`` trainable parameters) or
        L-BFGS.  ``"auto"`` is BFGS up to 6000 parameters (a 290 MB matrix
        in float64), else L-BFGS.  The curvature is kept across resamplings.
    continuation : Continuation or None, default=None
        Penalty continuation of the physics weights over quasi-Newton stages
        (see :class:`Continuation`): for inverse problems with noisy data,
        where it takes the unknowns to the equation-constrained
        least-squares fit.  ``None`` keeps the weights fixed.
    max_time : float or None, default=None
        Wall-clock budget in seconds for the training (all of the fit but
        ``HiddenTermPINN``'s symbolic refinement).
    tol : float, default=1e-9
        Relative loss improvement that counts as progress (early stopping).
    patience : int or None, default=None
        Stop a phase after this many iterations without progress.
    dtype : {"float64", "float32"}, default="float64"
        float64 makes L-BFGS reliable on PINN losses.
    device : {"auto", "cpu", "cuda"} or torch.device, default="auto"
    random_state : int, torch.Generator or None, default=None
    verbose : bool, default=False
    n_threads : int or None, default=1
        Torch threads during fit and predict; one thread is the fastest for
        PINN-sized networks on small machines.
    callback : callable or None, default=None
        Called as ``callback(model, info)`` after every round of
        ``resample_every`` iterations (and at the end of each phase), with
        the model usable for :meth:`predict` and ``info`` a dict with
        ``"iteration"``, ``"elapsed"`` (seconds since fit started) and
        ``"loss"``.  Returning ``True`` stops training.

    Attributes
    ----------
    module_ : PINNModule
    params_ : dict of str to float
        Fitted values of the unknowns.
    n_outputs_ : int
    domain_ : Box or DeepXDEDomain
    loss_weights_ : dict of str to float
        Final weights of the loss terms.
    loss_terms_ : dict of str to float
        Unweighted loss terms at the end of training.
    collocation_points_ : ndarray of shape (n_points, n_features_in_) or None
        The last set of points the residual was enforced at: the
        ``n_collocation`` sampled points, followed, with a ``continuation``
        and observations, by the ``n_samples`` observation points (anchors).
        None without an equation.
    observed_outputs_ : list of int
        The output columns that ``y`` held (empty without data).
    loss_curve_, n_iter_, best_loss_, stop_reason_, device_, n_features_in_

    Examples
    --------
    >>> import numpy as np
    >>> from pinns import Box, PINNRegressor, diffusion_reaction, DirichletBC
    >>> eq = diffusion_reaction(l=1.0, k=1.0)    # u'' - u = sin(2 pi x)
    >>> model = PINNRegressor(eq, domain=Box([0], [1]), conditions=[DirichletBC(0.0, hard=True)],
    ...                       max_iter=200, lbfgs_iter=200, random_state=0).fit()
    >>> x = np.array([[0.25]])
    >>> exact = -1 / (1 + 4 * np.pi**2)          # u = -sin(2 pi x) / (1 + 4 pi^2)
    >>> bool(abs(model.predict(x)[0] - exact) < 1e-4)
    True
    """

    # Models saved before the parameter existed load with its default.
    continuation = None

    def __init__(self, equation=None, domain=None, conditions=(), unknowns=None, observed_outputs=None,
                 hidden_layer_sizes=(32, 32, 32), activation="tanh", fourier_features=0,
                 fourier_scale=1.0, n_collocation=2000, resample_every=1000, loss_weights="auto",
                 weight_update_every=100, max_iter=2000, lr=1e-3, lbfgs_iter=5000, quasi_newton="auto",
                 continuation=None, max_time=None,
                 tol=1e-9, patience=None, dtype="float64", device="auto", random_state=None,
                 verbose=False, n_threads=1, callback=None):
        self.equation = equation
        self.domain = domain
        self.conditions = conditions
        self.unknowns = unknowns
        self.observed_outputs = observed_outputs
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.fourier_features = fourier_features
        self.fourier_scale = fourier_scale
        self.n_collocation = n_collocation
        self.resample_every = resample_every
        self.loss_weights = loss_weights
        self.weight_update_every = weight_update_every
        self.max_iter = max_iter
        self.lr = lr
        self.lbfgs_iter = lbfgs_iter
        self.quasi_newton = quasi_newton
        self.continuation = continuation
        self.max_time = max_time
        self.tol = tol
        self.patience = patience
        self.dtype = dtype
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.n_threads = n_threads
        self.callback = callback

    # -- validation ---------------------------------------------------------------
    def _check_params(self):
        """Validate the parameters; returns the hidden layer sizes as ints (for the module)."""
        from .networks import check_activation, check_layer_sizes

        if self.equation is not None and not isinstance(self.equation, Equation):
            raise TypeError(f"equation must be a pinns.Equation or None, got {type(self.equation).__name__}.")
        layer_sizes = check_layer_sizes(self.hidden_layer_sizes)
        check_activation(self.activation)
        check_nonneg_int("fourier_features", self.fourier_features)
        check_real("fourier_scale", self.fourier_scale)
        check_positive_int("n_collocation", self.n_collocation)
        check_nonneg_int("resample_every", self.resample_every)
        check_positive_int("weight_update_every", self.weight_update_every)
        check_nonneg_int("max_iter", self.max_iter)
        check_nonneg_int("lbfgs_iter", self.lbfgs_iter)
        check_real("lr", self.lr)
        check_real("max_time", self.max_time, allow_none=True)
        check_real("tol", self.tol, positive=False)
        if self.patience is not None:
            check_positive_int("patience", self.patience)
        if not (self.loss_weights is None or self.loss_weights == "auto" or isinstance(self.loss_weights, dict)):
            raise ValueError(f"loss_weights must be 'auto', a dict or None, got {self.loss_weights!r}.")
        if isinstance(self.loss_weights, dict):
            # A negative weight maximises its term; a NaN one ends training at once.
            for name, w in self.loss_weights.items():
                check_real(f"loss_weights[{name!r}]", w, positive=False)
        if not isinstance(self.conditions, (list, tuple)):
            raise TypeError(f"conditions must be a list of conditions, got {type(self.conditions).__name__}.")
        for c in self.conditions:
            if not isinstance(c, (DirichletBC, NeumannBC, InitialCondition)):
                raise TypeError(f"conditions must be DirichletBC, NeumannBC or InitialCondition, got {c!r}.")
        if self.quasi_newton not in ("auto", "bfgs", "lbfgs"):
            raise ValueError(f"quasi_newton must be 'auto', 'bfgs' or 'lbfgs', got {self.quasi_newton!r}.")
        if self.continuation is not None:
            if not isinstance(self.continuation, Continuation):
                raise TypeError(f"continuation must be a pinns.Continuation or None, got {self.continuation!r}.")
            if self.equation is None:
                raise ValueError("continuation scales the physics terms, but there is no equation.")
            if self.lbfgs_iter == 0:
                raise ValueError("continuation acts in the quasi-Newton phase, but lbfgs_iter is 0.")
        if self.max_iter == 0 and self.lbfgs_iter == 0:
            raise ValueError("max_iter and lbfgs_iter are both 0: nothing would be trained.")
        return layer_sizes

    def _validate_observations(self, X, y, domain):
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True, dtype=np.float64)
        self._y_1d = y.ndim == 1
        Y = y.reshape(len(y), -1)
        if domain is not None:
            if X.shape[1] != domain.dim:
                raise ValueError(f"X has {X.shape[1]} columns but the domain has {domain.dim} dimensions.")
            outside = ~domain.contains(X)
            if outside.any():
                rows = np.flatnonzero(outside)
                raise ValueError(
                    f"{rows.size} observation(s) lie outside the domain {domain!r}, e.g. row "
                    f"{rows[0]}: {X[rows[0]].tolist()}."
                )
        return X, Y

    def _observed(self, n_outputs, n_y):
        if self.observed_outputs is None:
            # "All, in order": a y with fewer columns is an error below, never
            # silently the first outputs.
            observed = list(range(n_outputs))
        else:
            entries = np.atleast_1d(self.observed_outputs)
            if entries.ndim != 1:
                raise ValueError(
                    f"observed_outputs must be a sequence of output indices, got {self.observed_outputs!r}.")
            observed = [check_nonneg_int("observed_outputs entries", i) for i in entries]
            if len(set(observed)) != len(observed) or any(not 0 <= i < n_outputs for i in observed):
                raise ValueError(f"observed_outputs {self.observed_outputs!r} must be distinct outputs in [0, {n_outputs}).")
        if len(observed) != n_y:
            raise ValueError(
                f"y has {n_y} column(s) but {len(observed)} observed output(s) "
                f"({'all ' + str(n_outputs) if self.observed_outputs is None else self.observed_outputs}); "
                "set observed_outputs to the outputs that y holds."
            )
        return observed

    # -- fit ---------------------------------------------------------------------------
    def fit(self, X=None, y=None):
        """Fit the network (and unknowns, hidden terms) to data and physics.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or None, default=None
            Observation coordinates, one column per input of the domain.
            ``None`` for a pure forward problem (equation and conditions only).
        y : array-like of shape (n_samples,) or (n_samples, n_observed)
            Observed values (the ``observed_outputs`` columns).

        Returns
        -------
        self : PINNRegressor
        """
        import torch

        from .networks import HardTransform, PINNModule

        layer_sizes = self._check_params()
        eq = self.equation
        domain = None if self.domain is None else as_domain(self.domain)
        if X is not None and y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None "
                "(give both X and y, or neither for a forward problem without data)."
            )
        if X is None and y is not None:
            raise ValueError("y was given without X: give the coordinates of the observations too.")
        if X is None:
            if eq is None:
                raise ValueError("Without an equation there is nothing to fit but data: pass X and y.")
            if domain is None:
                raise ValueError("A forward problem without data needs a domain.")
            if not self.conditions:
                warnings.warn("Fitting an equation with no data and no conditions: the solution is not determined.",
                              UserWarning, stacklevel=2)
            self.n_features_in_ = domain.dim
            Xo = Y = None
            n_outputs = eq.n_outputs
            self._y_1d = n_outputs == 1
        else:
            Xo, Y = self._validate_observations(X, y, domain)
            n_outputs = eq.n_outputs if eq is not None else Y.shape[1]
            if domain is None:
                lo, hi = Xo.min(0), Xo.max(0)
                pad = np.where(hi > lo, 0.0, 0.5)
                domain = Box(lo - pad, hi + pad)
        observed = self._observed(n_outputs, Y.shape[1]) if Y is not None else []
        for c in self.conditions:
            comps = [] if c.component is None else np.atleast_1d(c.component).tolist()
            if any(not isinstance(i, (int, np.integer)) or not 0 <= i < n_outputs for i in comps):
                raise ValueError(f"{c!r}: component must name outputs in [0, {n_outputs}).")
        unknowns = _parse_unknowns(self.unknowns)
        known = {} if eq is None else dict(eq.params)
        if eq is None and (unknowns or self.conditions):
            raise ValueError("unknowns and conditions need an equation.")
        if eq is not None:
            for name in unknowns:
                known.pop(name, None)
        self.domain_ = domain
        self.n_outputs_ = n_outputs
        self.observed_outputs_ = observed

        device = self._resolve_device()
        dtype = self._torch_dtype()
        gen = self._make_generator("cpu")
        soft = [c for c in self.conditions if not c.hard]
        transform = None
        if any(c.hard for c in self.conditions):
            from .conditions import hard_transform

            hard_transform(self.conditions, domain, n_outputs)  # validates
            check_hard_consistency(self.conditions, domain, gen, n_outputs)
            transform = HardTransform(self.conditions, domain, n_outputs)

        # Output scaling from the observations; unobserved outputs keep scale 1.
        out_mean = np.zeros(n_outputs)
        out_scale = np.ones(n_outputs)
        if Y is not None:
            std = Y.std(0) if len(Y) > 1 else np.abs(Y[0])
            std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
            out_scale[observed] = std
            if transform is None:
                out_mean[observed] = Y.mean(0)
        lower, upper = domain.bounds
        hidden_specs = {} if eq is None else eq.hidden_terms
        module = PINNModule(
            domain.dim, n_outputs, layer_sizes, self.activation, lower, upper, out_mean,
            out_scale, self.fourier_features, self.fourier_scale,
            {name: (spec, -1.0, 1.0) for name, spec in hidden_specs.items()}, unknowns, transform,
            gen, dtype,
        ).to(device)

        as_t = lambda A: torch.as_tensor(A, dtype=dtype, device=device)  # noqa: E731
        X_col = None
        if eq is not None:
            X_col = as_t(domain.sample_interior(self.n_collocation, gen))
            if unknowns:
                self._check_unknowns_read(module, eq, known, X_col)
            if hidden_specs:
                self._set_hidden_ranges(module, eq, known, X_col, Y, observed)
        cond_points = [{k: as_t(v) for k, v in c.sample(domain, gen).items()} for c in soft]
        X_obs = None if Xo is None else as_t(Xo)
        y_obs = None if Y is None else as_t(Y)
        obs_scale = as_t(out_scale[observed].reshape(1, -1)) if Y is not None else None

        # "physics": the continuation factor of the residual and condition weights.
        stages = [1.0] if self.continuation is None else self.continuation.factors()
        # Continuation also enforces the equation at the observation points, where
        # the growing data pull acts (DeepXDE's "anchors"; see Continuation).
        # The training loop appends them to every set of collocation points.
        anchors = X_obs if self.continuation is not None and X_obs is not None and X_col is not None else None
        state = {"X_col": X_col, "cond_points": cond_points, "calls": 0, "adam": True, "physics": stages[0],
                 "anchors": anchors}
        weights = {} if self.loss_weights in (None, "auto") else {k: float(v) for k, v in self.loss_weights.items()}
        params = [p for p in module.parameters() if p.requires_grad]

        if isinstance(self.loss_weights, dict):
            with torch.enable_grad():
                names = set(pinn_losses(module, eq, known, X_col, soft, cond_points, X_obs, y_obs, observed,
                                        obs_scale))
            unknown_terms = set(weights) - names
            if unknown_terms:
                raise ValueError(f"loss_weights names {sorted(unknown_terms)}, but the loss terms are {sorted(names)}.")

        def terms():
            return pinn_losses(module, eq, known, state["X_col"], soft, state["cond_points"],
                               X_obs, y_obs, observed, obs_scale)

        def loss_fn():
            t = terms()
            state["term_names"] = t.keys()
            if self.loss_weights == "auto" and state["adam"] and len(t) > 1 + sum(k.startswith("smoothness") for k in t):
                if state["calls"] % self.weight_update_every == 0:
                    # Regularisers keep the weight their user gave them.
                    balanced = {k: v for k, v in t.items() if not k.startswith("smoothness")}
                    weights.update(grad_norm_weights(balanced, params, weights))
                state["calls"] += 1
            return sum(effective_weight(k) * v for k, v in t.items())

        def effective_weight(name):
            return weights.get(name, 1.0) * (state["physics"] if _is_physics_term(name) else 1.0)

        self._fit_loop(module, loss_fn, state, domain, eq, known, gen, soft, as_t, stages)
        self.module_ = module
        self.params_ = {k: float(v.detach()) for k, v in module.unknown_values().items()}
        self.collocation_points_ = None if state["X_col"] is None else state["X_col"].detach().cpu().numpy()
        # The weights training ended with, continuation factor included (every
        # training phase evaluates the loss, so the term names are known).
        final_weights = {k: effective_weight(k) for k in state["term_names"]}
        self._after_training(terms, final_weights, 0 if y_obs is None else y_obs.numel())

        with torch.enable_grad():
            final = terms()
        self.loss_terms_ = {k: float(v.detach()) for k, v in final.items()}
        self.loss_weights_ = {k: effective_weight(k) for k in final}
        self.params_ = {k: float(v.detach()) for k, v in module.unknown_values().items()}  # refitted
        return self

    def _after_training(self, terms, weights, n_data):
        """Hook run once training ends, with the loss still at hand (``HiddenTermPINN``: the symbolic step).

        Parameters
        ----------
        terms : callable
            ``terms() -> dict`` of the loss terms of ``self.module_``.
        weights : dict of str to float
            The loss weights training ended with (1 where absent).
        n_data : int
            Number of observed values.
        """

    def _check_unknowns_read(self, module, eq, known, X_col):
        """Refuse unknowns that the residual never reads (a misspelt name would be "learned" as its guess)."""
        import torch

        read = set()
        with torch.enable_grad():
            equation_residual(module, eq, known, X_col, read=read)
        unread = sorted(set(module.unknown_values()) - read)
        if unread:
            raise ValueError(
                f"unknowns {unread} are never read by the residual of {eq.name!r} (it reads "
                f"{sorted(read)}; the equation's parameters are {sorted(eq.params)}): check their spelling."
            )

    def _set_hidden_ranges(self, module, eq, known, X_col, Y, observed):
        """Scale each hidden term's inputs by the range it is evaluated on (probe call)."""
        import torch

        spec_ranges = {}
        for name, spec in eq.hidden_terms.items():
            if spec.input_range is not None:
                lo, hi = (float(v) for v in spec.input_range)
                if not hi > lo:
                    raise ValueError(f"input_range of hidden term {name!r} must be (low, high) with low < high.")
                spec_ranges[name] = (lo, hi)
        seen = hidden_input_ranges(module, eq, known, X_col)
        for name in eq.hidden_terms:
            net = module.hidden[name]
            if name in spec_ranges:
                lo, hi = spec_ranges[name]
                net.lo.fill_(lo), net.hi.fill_(hi)
                continue
            if name not in seen:
                raise ValueError(f"The residual never calls the hidden term {name!r}.")
            lo, hi, of_inputs = seen[name]
            # A term of the outputs (f(u)): the initial network spans little of
            # their range, the observations span it; use both.  A term of the
            # coordinates (k(x)) keeps the domain's range.
            if Y is not None and not of_inputs and lo.numel() == len(observed):
                ylo = torch.as_tensor(Y.min(0), dtype=lo.dtype, device=lo.device)
                yhi = torch.as_tensor(Y.max(0), dtype=lo.dtype, device=lo.device)
                lo, hi = torch.minimum(lo, ylo), torch.maximum(hi, yhi)
            width = torch.clamp(hi - lo, min=1e-6)
            with torch.no_grad():
                net.lo.copy_((lo - 0.05 * width).reshape(1, -1))
                net.hi.copy_((hi + 0.05 * width).reshape(1, -1))

    def _fit_loop(self, module, loss_fn, state, domain, eq, known, gen, soft, as_t, stages=(1.0,)):
        """Adam then quasi-Newton, in rounds of ``resample_every`` iterations with resampling between.

        ``stages`` are the continuation factors of the physics weights: every
        stage but the last runs quasi-Newton until it stops making progress
        (:class:`Continuation`), the last one the rounds until the budget ends.
        """
        import time

        import torch

        from sciml.training import TrainResult

        t0 = time.perf_counter()
        curve, n_lbfgs, stop = [], 0, "max_iter"
        best_loss, best_iter = math.inf, -1
        every = self.resample_every

        def remaining():
            if self.max_time is None:
                return None
            return self.max_time - (time.perf_counter() - t0)

        def run(n_adam, n_lbfgs_round, optimizer, tol=self.tol, patience=self.patience):
            nonlocal best_loss, best_iter, n_lbfgs
            budget = remaining()
            if budget is not None and budget <= 0:
                return "max_time"
            # While "auto" weights move (Adam rounds), losses before and after an
            # update are not comparable: keep the last weights, not the "best".
            moving = self.loss_weights == "auto" and n_adam > 0
            res = self._train(
                module, loss_fn, optimizer=optimizer, lr=self.lr, max_iter=n_adam, lbfgs_iter=n_lbfgs_round,
                max_time=budget, tol=tol, patience=patience, restore_best=not moving,
                quasi_newton=qn,
            )
            if res.best_loss < best_loss:
                best_loss, best_iter = res.best_loss, len(curve) + res.best_iter
            curve.extend(res.loss_curve)
            n_lbfgs += res.n_lbfgs_iter
            if self.callback is not None and res.loss_curve:
                self.module_ = module
                self.params_ = {k: float(v.detach()) for k, v in module.unknown_values().items()}
                info = {"iteration": len(curve), "elapsed": time.perf_counter() - t0,
                        "loss": res.loss_curve[-1], "physics_factor": state["physics"]}
                if self.callback(self, info) is True:
                    return "callback"
            return res.stop_reason

        def with_anchors(X_col):
            anchors = state["anchors"]
            return X_col if anchors is None else torch.cat([X_col, anchors])

        def resample():
            if eq is None or not every:
                return
            state["X_col"] = with_anchors(as_t(rad_resample(module, eq, known, domain, self.n_collocation, gen)))
            state["cond_points"] = [{k: as_t(v) for k, v in c.sample(domain, gen).items()} for c in soft]

        state["X_col"] = with_anchors(state["X_col"])

        ending = ("max_time", "nonfinite", "diverged", "callback")
        trainable = [p for p in module.parameters() if p.requires_grad]
        adam = torch.optim.Adam(trainable, lr=self.lr)
        qn = self._quasi_newton(trainable)
        done = 0
        while done < self.max_iter:
            n = self.max_iter - done if not every else min(every, self.max_iter - done)
            stop = run(n, 0, adam)
            done += n
            if stop in ending or stop == "converged":
                break
            if done < self.max_iter:
                resample()
        state["adam"] = False
        if stop not in ending and self.lbfgs_iter:
            if self.max_iter:
                resample()
            done = 0
            for i, factor in enumerate(stages):
                if i:
                    resample()
                    # Losses of different stages are not comparable: best_loss_ is the last stage's.
                    best_loss, best_iter = math.inf, -1
                state["physics"] = factor
                if i < len(stages) - 1:  # continuation: quasi-Newton until no progress
                    before = n_lbfgs
                    stop = run(0, self.lbfgs_iter - done, "adam", tol=self.continuation.tol,
                               patience=self.continuation.patience)
                    done += n_lbfgs - before
                    if stop in ending or done >= self.lbfgs_iter:
                        break
                    continue
                while done < self.lbfgs_iter:
                    n = self.lbfgs_iter - done if not every else min(every, self.lbfgs_iter - done)
                    before = n_lbfgs
                    stop = run(0, n, "adam")
                    done += n
                    if stop in ending:
                        break
                    if stop == "converged" and n_lbfgs - before < 10:
                        break
                    if done < self.lbfgs_iter:
                        resample()
        if state["physics"] != stages[-1] and stop not in ("nonfinite", "diverged", "callback"):
            warnings.warn(
                f"The continuation ended at physics factor {state['physics']:.3g} of {stages[-1]:.3g} "
                f"({'max_time' if stop == 'max_time' else 'the iterations'} ran out): the physics is "
                "enforced less strictly than asked; give more time or iterations.",
                ConvergenceWarning, stacklevel=3)
        self.physics_factor_ = state["physics"]
        self._store_train_result(TrainResult(
            loss_curve=curve, n_iter=len(curve), best_loss=best_loss, best_iter=best_iter,
            stop_reason=stop, elapsed=time.perf_counter() - t0, n_lbfgs_iter=n_lbfgs,
        ))
        self.n_lbfgs_iter_ = n_lbfgs

    def _quasi_newton(self, params):
        """The quasi-Newton optimizer of ``params`` (``"auto"``: dense BFGS up to 6000 parameters)."""
        from sciml.quasi_newton import QuasiNewton

        method = self.quasi_newton
        if method == "auto":
            method = "bfgs" if sum(p.numel() for p in params) <= 6000 else "lbfgs"
        return QuasiNewton(params, method=method, history_size=50, tolerance_grad=1e-12, tolerance_change=1e-15)

    # -- prediction -------------------------------------------------------------------
    def _as_input(self, X):
        import torch

        X = validate_data(self, X, reset=False, dtype=np.float64)
        return torch.as_tensor(X, dtype=self.module_.lower.dtype, device=self.module_.lower.device)

    def predict(self, X):
        """The fitted field at ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_outputs)
            1-D when the model has one output and was fitted on a 1-D ``y``
            (or without data).
        """
        import torch

        self._check_fitted("module_")
        Xt = self._as_input(X)
        with torch.no_grad(), self._thread_limit():
            u = self.module_(Xt).cpu().numpy()
        return u[:, 0] if self._y_1d and u.shape[1] == 1 else u

    def score(self, X, y, sample_weight=None):
        """Coefficient of determination R^2 of the prediction of the observed outputs.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_observed)
            Values of the ``observed_outputs_`` columns, as given to
            :meth:`fit` (every output for a model fitted without data).
        sample_weight : array-like of shape (n_samples,) or None, default=None

        Returns
        -------
        float
            R^2, averaged uniformly over the columns of ``y``.
        """
        from sklearn.metrics import r2_score

        self._check_fitted("module_")
        # Only the observed outputs have targets; the inherited score compared
        # y with every output.
        cols = list(self.observed_outputs_) or list(range(self.n_outputs_))
        u = self.predict(X)
        u = u.reshape(len(u), -1)[:, cols]
        y = np.asarray(y)
        n_y = 1 if y.ndim == 1 else y.shape[1] if y.ndim == 2 else -1
        if n_y != len(cols):
            raise ValueError(f"y has shape {y.shape}, but the model predicts {len(cols)} observed output(s) {cols}.")
        return r2_score(y, u[:, 0] if y.ndim == 1 else u, sample_weight=sample_weight)

    def residual(self, X):
        """The equation's residual at ``X`` (zero where the physics is satisfied).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_equations)
        """
        self._check_fitted("module_")
        if self.equation is None:
            raise ValueError("This model has no equation.")
        Xt = self._as_input(X)
        with self._thread_limit():
            r = equation_residual(self.module_, self.equation, self._known_params(), Xt)
        return r.detach().cpu().numpy()

    def _known_params(self):
        known = dict(self.equation.params) if self.equation is not None else {}
        for name in self.params_:
            known.pop(name, None)
        return known

    def _more_tags(self):  # scikit-learn < 1.6
        return {"multioutput": True}

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


class HiddenTermPINN(PINNRegressor):
    """A PINN that learns hidden terms of its equation, then names them.

    The equation declares its unknown terms (``Equation(...,
    hidden_terms={"f": HiddenTerm()})``, or a ready-made one such as
    ``fisher_kpp(D, r=None)``); each is an auxiliary network trained with
    the field network (Podina et al., "A PINN approach to symbolic
    differential operator discovery with sparse data").  After training,
    every hidden term is sampled over the range of inputs it was evaluated on
    and a sparse regression of :mod:`sciml.discovery` turns it into a short
    symbolic expression (``symbolic_``).

    Parameters
    ----------
    symbolic_library : transformer or None, default=None
        Candidate functions of the hidden term's inputs: any scikit-learn
        transformer with ``get_feature_names_out``; ``None`` is
        ``PolynomialFeatures(degree=3)``.
    symbolic_optimizer : regressor or None, default=None
        A sparse regressor of :mod:`sciml.discovery.optimizers`.  ``None``
        takes the smallest best-subset support that fits the network within
        ``symbolic_tol``.
    symbolic_tol : float, default=0.05
        Relative rms misfit (to the network, over the sampled range) that
        the symbolic form may leave, with ``symbolic_optimizer=None``.
    n_symbolic_points : int, default=400
        Points at which each hidden term is sampled for the regression.
    refine_iter : int, default=0
        Quasi-Newton iterations of the symbolic refinement; 0 skips it.
        Read off the network, a formula's coefficients carry the network's
        error where the data say little (near the ends of the range).  The
        refinement puts each candidate formula in the network's place, with
        trainable coefficients (:class:`pinns.networks.PolynomialTerm`), and
        trains it jointly with the field network on the same loss, for
        ``refine_iter`` iterations from the trained state.  The candidates
        are the best subsets of each size up to one more term than the
        ``symbolic_tol`` choice (only the ``symbolic_optimizer``'s support
        when one is given), each scored by the BIC of its data misfit,
        ``n log(data) + k log(n)`` (k nonzero coefficients).  The candidate
        with the fewest terms among those within 2 of the lowest BIC is
        kept (a smaller difference is no evidence either way, and a spurious
        term that absorbs noise would otherwise win about as often as not),
        and the fitted model then uses the formula: :meth:`hidden_term` and
        :meth:`predict` evaluate it.  Terms are refined one after another,
        earlier formulas held fixed.  The choice looks at the data misfit
        only; a warning says when the chosen formula leaves an equation
        residual over 10x the network's (data fitted at the expense of the
        physics, e.g. with loss weights that favour the data).  The formula
        is not constrained positive.  Runs after ``max_time``'s training.
        Needs observations and a :class:`~sklearn.preprocessing.PolynomialFeatures`
        library.
    **kwargs
        The parameters of :class:`PINNRegressor` (all listed explicitly in
        the signature for scikit-learn).

    Attributes
    ----------
    symbolic_ : dict of str to dict
        Per hidden term: ``"expression"`` (str), ``"coef"`` (ndarray of
        shape (n_outputs, n_terms)), ``"terms"`` (list of str), ``"range"``
        (the input range sampled), ``"r2"`` (fit of the expression to the
        network on that range) and ``"refined"`` (bool).  With the
        refinement, also ``"network_coef"`` (the form read off the network
        before it), ``"bic"`` and ``"candidates"`` (each candidate's BIC
        and refined coefficients, keyed by its number of nonzero
        coefficients).
    """

    # Models saved before the parameter existed load with its default.
    refine_iter = 0

    def __init__(self, equation=None, domain=None, conditions=(), unknowns=None, observed_outputs=None,
                 hidden_layer_sizes=(32, 32, 32), activation="tanh", fourier_features=0,
                 fourier_scale=1.0, n_collocation=2000, resample_every=1000, loss_weights="auto",
                 weight_update_every=100, max_iter=2000, lr=1e-3, lbfgs_iter=5000, quasi_newton="auto",
                 continuation=None, max_time=None,
                 tol=1e-9, patience=None, dtype="float64", device="auto", random_state=None,
                 verbose=False, n_threads=1, callback=None, symbolic_library=None, symbolic_optimizer=None,
                 n_symbolic_points=400, symbolic_tol=0.05, refine_iter=0):
        super().__init__(
            equation=equation, domain=domain, conditions=conditions, unknowns=unknowns,
            observed_outputs=observed_outputs, hidden_layer_sizes=hidden_layer_sizes,
            activation=activation, fourier_features=fourier_features, fourier_scale=fourier_scale,
            n_collocation=n_collocation, resample_every=resample_every, loss_weights=loss_weights,
            weight_update_every=weight_update_every, max_iter=max_iter, lr=lr, lbfgs_iter=lbfgs_iter,
            quasi_newton=quasi_newton, continuation=continuation, max_time=max_time, tol=tol, patience=patience,
            dtype=dtype, device=device, random_state=random_state, verbose=verbose, n_threads=n_threads,
            callback=callback,
        )
        self.symbolic_library = symbolic_library
        self.symbolic_optimizer = symbolic_optimizer
        self.n_symbolic_points = n_symbolic_points
        self.symbolic_tol = symbolic_tol
        self.refine_iter = refine_iter

    def fit(self, X=None, y=None):
        """Fit the PINN with its hidden terms, then find their symbolic forms.

        Parameters
        ----------
        X, y
            As in :meth:`PINNRegressor.fit`.

        Returns
        -------
        self : HiddenTermPINN
        """
        if self.equation is None or not getattr(self.equation, "hidden_terms", None):
            raise ValueError("HiddenTermPINN needs an equation with hidden_terms; use PINNRegressor otherwise.")
        check_positive_int("n_symbolic_points", self.n_symbolic_points)
        check_real("symbolic_tol", self.symbolic_tol)
        # Checked before training, not after it: both are cloned and used only by the symbolic step.
        for name, value, methods, kind in (
                ("symbolic_library", self.symbolic_library, ("get_params", "fit_transform", "get_feature_names_out"),
                 "a scikit-learn transformer instance with get_feature_names_out, e.g. PolynomialFeatures(3)"),
                ("symbolic_optimizer", self.symbolic_optimizer, ("get_params", "fit"),
                 "a scikit-learn regressor instance, e.g. sciml.discovery.optimizers.STLSQ()")):
            if value is not None and (isinstance(value, type) or not all(callable(getattr(value, m, None))
                                                                        for m in methods)):
                raise TypeError(f"{name} must be None or {kind}, got {value!r}.")
        if check_nonneg_int("refine_iter", self.refine_iter):
            from sklearn.preprocessing import PolynomialFeatures

            if X is None:
                raise ValueError("refine_iter > 0 chooses the symbolic form by its fit to the data: pass X and y.")
            if self.symbolic_library is not None and not isinstance(self.symbolic_library, PolynomialFeatures):
                raise ValueError("refine_iter > 0 needs a PolynomialFeatures symbolic_library (or None), got "
                                 f"{type(self.symbolic_library).__name__}.")
        return super().fit(X, y)

    def _after_training(self, terms, weights, n_data):
        self.symbolic_ = {name: self._symbolic(name, terms, weights, n_data) for name in self.equation.hidden_terms}

    def hidden_term(self, name, Z):
        """Evaluate the learned hidden term ``name`` at inputs ``Z``.

        Parameters
        ----------
        name : str
        Z : array-like of shape (n, n_inputs) or (n,)

        Returns
        -------
        ndarray of shape (n, n_outputs)
        """
        import torch

        self._check_fitted("module_")
        if name not in self.module_.hidden:
            raise KeyError(f"No hidden term {name!r}; the equation has {list(self.module_.hidden)}.")
        net = self.module_.hidden[name]
        Z = np.asarray(Z, dtype=float)
        Z = Z[:, None] if Z.ndim == 1 else Z
        if Z.ndim != 2 or Z.shape[1] != net.lo.shape[1] or not np.all(np.isfinite(Z)):
            raise ValueError(f"Z must be finite with shape (n, {net.lo.shape[1]}), got {Z.shape}.")
        with torch.no_grad(), self._thread_limit():
            return net(torch.as_tensor(Z, dtype=net.lo.dtype, device=net.lo.device)).cpu().numpy()

    def hidden_range(self, name):
        """The input range of hidden term ``name`` seen at the last collocation points of the fitted model.

        Returns
        -------
        lo, hi : ndarray of shape (n_inputs,)
        """
        self._check_fitted("module_")
        if name not in self.module_.hidden:
            raise KeyError(f"No hidden term {name!r}; the equation has {list(self.module_.hidden)}.")
        seen = hidden_input_ranges(self.module_, self.equation, self._known_params(),
                                   self._as_input(self.collocation_points_))
        lo, hi, _ = seen[name]
        return lo.cpu().numpy(), hi.cpu().numpy()

    def _sparse_fit(self, Theta, H, optimizer):
        """Coefficients of the symbolic form, shape (n_outputs, n_terms).

        With no optimizer given: the smallest support (best subset of each
        size, :class:`~sciml.discovery.optimizers.BestSubset`) whose relative
        rms misfit to the network is at most ``symbolic_tol``.  The network
        is a smooth function, not noisy data, so information criteria (which
        assume independent noise) keep spurious terms that absorb its
        approximation error; a misfit tolerance does not.
        """
        if optimizer is not None:
            return np.atleast_2d(optimizer.fit(Theta, H).coef_)
        rows = []
        for h in H.T:
            scale = np.sqrt(np.mean(h**2)) or 1.0
            coef = None
            for k in range(1, Theta.shape[1] + 1):
                coef = _best_subset(Theta, h, k)
                if np.sqrt(np.mean((Theta @ coef - h) ** 2)) <= self.symbolic_tol * scale:
                    break
            rows.append(coef)
        return np.array(rows)

    def _refine(self, name, powers, Theta, H, coef, fixed_support, terms, weights, n_data):
        """Put candidate formulas in the hidden network's place and refit; keep the best by BIC.

        Returns the chosen coefficients, shape (n_outputs, n_terms), the BIC
        per candidate size and the refined coefficients per candidate size
        (None, {}, {} when every candidate diverged).
        """
        import copy

        import torch

        from .networks import PolynomialTerm

        module = self.module_
        network = module.hidden[name]
        # Formulas already chosen for other terms stay as reported.
        frozen = {id(p) for other, term in module.hidden.items()
                  if other != name and getattr(term, "is_formula", False) for p in term.parameters()}
        with torch.enable_grad():
            residual_before = sum(float(v.detach()) for k, v in terms().items() if k.startswith("residual"))
        if fixed_support:
            candidates = [coef]
        else:
            largest = min(Theta.shape[1], int(np.count_nonzero(coef, axis=1).max()) + 1)
            candidates = [np.array([_best_subset(Theta, h, k) for h in H.T]) for k in range(1, largest + 1)]
        trained = copy.deepcopy(module.state_dict())
        fitted = []
        for candidate in candidates:
            module.hidden[name] = network
            module.load_state_dict(trained)
            support = np.flatnonzero(np.any(candidate != 0, axis=0))
            formula = PolynomialTerm(powers[support], candidate[:, support], network.lo, network.hi,
                                     mask=candidate[:, support] != 0)
            module.hidden[name] = formula
            params = [p for p in module.parameters() if p.requires_grad and id(p) not in frozen]
            qn = self._quasi_newton(params)

            def closure():
                for p in params:
                    p.grad = None
                loss = sum(weights.get(k, 1.0) * v for k, v in terms().items())
                loss.backward()
                return loss

            with self._thread_limit(), torch.enable_grad():
                for _ in range(self.refine_iter):
                    loss, done = qn.step(closure)
                    if done:
                        break
                after = terms()
                data = float(after["data"].detach())
                residual = sum(float(v.detach()) for k, v in after.items() if k.startswith("residual"))
            n_terms = int(np.count_nonzero(candidate))
            score = n_data * math.log(max(data, 1e-300)) + n_terms * math.log(n_data)
            if not math.isfinite(loss):
                score = math.inf
            refined = np.zeros_like(candidate)
            refined[:, support] = (formula.coef * formula.mask).detach().cpu().numpy()
            fitted.append((score, n_terms, formula, copy.deepcopy(module.state_dict()), refined, residual))
        module.hidden[name] = network
        module.load_state_dict(trained)
        bic = {n_terms: score for score, n_terms, *_ in fitted}
        best = _parsimonious(fitted)
        if best is None:
            warnings.warn(f"The symbolic refinement of {name!r} diverged; the network is kept.", UserWarning,
                          stacklevel=3)
            return None, bic, {}
        _, _, formula, state, refined, residual = best
        module.hidden[name] = formula
        module.load_state_dict(state)
        # The choice looks at the data misfit only: the field can fit the data
        # with a wrong formula by giving up the physics.  Say so when it did.
        if residual > _REFINE_RESIDUAL_RATIO * residual_before:
            warnings.warn(
                f"The formula chosen for {name!r} leaves an equation residual {residual / residual_before:.0f}x "
                "the trained network's: the data may be fitted at the expense of the physics (check the loss "
                "weights; symbolic_[name]['bic'] lists the candidates).", UserWarning, stacklevel=3)
        return refined, bic, {n_terms: coef for _, n_terms, _, _, coef, _ in fitted}

    def _symbolic(self, name, loss_terms, weights, n_data):
        from sklearn.base import clone
        from sklearn.preprocessing import PolynomialFeatures

        lo, hi = self.hidden_range(name)
        # Sample inside the range the term was trained on (a grid for one
        # input, uniform draws from a fixed seed for several).
        n = self.n_symbolic_points
        grids = [np.linspace(a, b, n) for a, b in zip(lo, hi)]
        if len(grids) == 1:
            Z = grids[0][:, None]
        else:
            rng = np.random.default_rng(0)
            Z = np.column_stack([rng.uniform(a, b, n) for a, b in zip(lo, hi)])
        H = self.hidden_term(name, Z)
        library = PolynomialFeatures(degree=3) if self.symbolic_library is None else clone(self.symbolic_library)
        optimizer = None if self.symbolic_optimizer is None else clone(self.symbolic_optimizer)
        spec = self.equation.hidden_terms[name]
        in_names = list(spec.input_names)
        Theta = library.fit_transform(Z)
        terms = [str(t) for t in library.get_feature_names_out(in_names)]
        coef = self._sparse_fit(Theta, H, optimizer)
        extra = {"refined": False}
        if self.refine_iter:
            refined, bic, candidates = self._refine(name, library.powers_, Theta, H, coef, optimizer is not None,
                                                    loss_terms, weights, n_data)
            if refined is not None:
                extra = {"refined": True, "network_coef": coef, "bic": bic, "candidates": candidates}
                coef = refined
        pred = Theta @ coef.T
        ss = np.sum((H - H.mean(0)) ** 2)
        r2 = 1.0 - np.sum((H - pred) ** 2) / ss if ss > 0 else float("nan")
        exprs = []
        for row in coef:
            parts = [f"{c:+.4g} {t}" if t != "1" else f"{c:+.4g}" for c, t in zip(row, terms) if c != 0]
            exprs.append(" ".join(parts).lstrip("+") if parts else "0")
        return {"expression": exprs[0] if len(exprs) == 1 else exprs, "coef": coef, "terms": terms,
                "range": (lo, hi), "r2": float(r2), **extra}


# Candidates whose BIC is within this margin of the lowest are not told apart
# by the data (Kass & Raftery 1995: a difference under 2 is "not worth more
# than a bare mention"); the one with the fewest terms among them is kept.
_BIC_MARGIN = 2.0


def _parsimonious(fitted):
    """The refined candidate with the fewest terms among those within ``_BIC_MARGIN`` of the lowest BIC.

    ``fitted`` holds ``(bic, n_terms, ...)`` tuples; None when no BIC is finite.
    """
    finite = [c for c in fitted if math.isfinite(c[0])]
    if not finite:
        return None
    lowest = min(c[0] for c in finite)
    return min((c for c in finite if c[0] <= lowest + _BIC_MARGIN), key=lambda c: (c[1], c[0]))


# Above this ratio of the refined formula's equation residual to the trained
# network's, the refinement warns (a correct formula stays within a few times).
_REFINE_RESIDUAL_RATIO = 10.0


def _best_subset(Theta, h, k):
    """Coefficients of the best least-squares fit of ``h`` with ``k`` columns of ``Theta``."""
    from sciml.discovery.optimizers import BestSubset

    return np.atleast_2d(BestSubset(max_terms=k, min_share=0.0).fit(Theta, h).coef_)[0]
