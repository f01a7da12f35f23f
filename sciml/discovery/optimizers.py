"""Sparse-regression optimizers for equation discovery.

Every optimizer solves, for each target column ``y_k`` of ``Y``, a sparse
least-squares problem ``y_k ~ X xi_k`` and stores ``coef_`` with shape
``(n_targets, n_features)`` (PySINDy's layout, so the optimizers also work as
drop-in optimizers inside :class:`pysindy.SINDy`).

Shared work lives in :class:`SparseRegressor` (the template method, after
PySINDy's ``BaseOptimizer``): validation, column normalisation, the loop over
targets, automatic selection of the sparsity level along a path, the final
least-squares refit on the chosen support, and prediction. Subclasses only
implement ``_reduce`` (one fit at one sparsity level) and say which parameter
sets the sparsity level.

Scale-free thresholds
---------------------
With ``normalize_columns=True`` (the default) each feature column and each
target is scaled to unit root-mean-square before ``_reduce`` runs, so a
coefficient in the scaled problem is the *share of the target's size that the
term explains*: ``threshold=0.05`` drops terms contributing less than 5 % of
``rms(y)``, whatever the units of the data.

Automatic model selection
-------------------------
A sparsity parameter set to ``"auto"`` is chosen without knowing the truth:
the optimizer is fit along a log-spaced path of values and the point that
minimises the selection criterion is kept. The default criterion is the
Bayesian information criterion ``n log(RSS/n) + nnz log n``; ``"aicc"`` is the
corrected Akaike criterion and ``"mstls"`` the Messenger-Bortz loss of MSTLS
(WSINDy, 2021), ``||X (xi - xi_ls)|| / ||X xi_ls|| + ||xi||_0 / n_features``,
which charges ``1/n_features`` per term and so over-prunes small libraries
(on the 10-term Lorenz library it drops the ``-y`` term at every noise level
we tried, where BIC keeps it).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, MultiOutputMixin, RegressorMixin, clone
from sklearn.utils.validation import check_is_fitted, validate_data

from .._validation import check_positive_int, check_real
from ..prox import hard_threshold, soft_threshold

__all__ = [
    "SparseRegressor",
    "STLSQ",
    "IHT",
    "ISTA",
    "SR3",
    "BestSubset",
    "EnsembleOptimizer",
    "selection_loss",
]

_SELECTIONS = ("mstls", "bic", "aicc")
# Smallest scaled coefficient (share of rms(y)) kept along an "auto" path.
_MIN_SHARE = 1e-3


def selection_loss(X, y, coef, coef_ls, criterion="mstls", n_effective=None):
    """Score a sparse fit for model selection (lower is better).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Design matrix (the same scaling as the coefficients).
    y : ndarray of shape (n_samples,)
        Target.
    coef : ndarray of shape (n_features,)
        Candidate sparse coefficients.
    coef_ls : ndarray of shape (n_features,)
        The unregularised least-squares solution (used by ``"mstls"``).
    criterion : {"mstls", "bic", "aicc"}
        ``"mstls"``: ``||X (coef - coef_ls)|| / ||X coef_ls|| + nnz / n_features``
        (Messenger & Bortz). ``"bic"``: ``n log(RSS/n) + nnz log n``.
        ``"aicc"``: ``n log(RSS/n) + 2 nnz + 2 nnz (nnz + 1) / (n - nnz - 1)``.
    n_effective : float or None
        Number of independent rows ``n`` used by the information criteria
        (default: all rows). Rows of a weak-form system from overlapping test
        functions are correlated; counting them all makes every small drop of
        the residual look significant and BIC keeps spurious terms.

    Returns
    -------
    float
    """
    n, p = X.shape
    nnz = int(np.count_nonzero(coef))
    if criterion == "mstls":
        ref = np.linalg.norm(X @ coef_ls)
        if ref == 0:
            return nnz / p
        return float(np.linalg.norm(X @ (coef - coef_ls)) / ref + nnz / p)
    rss = float(np.sum((y - X @ coef) ** 2))
    # A floor keeps an exact fit from scoring -inf; relative to the target's size.
    rss = max(rss, 1e-300 + 1e-24 * float(np.sum(y**2)))
    fit = n * np.log(rss / n)
    if n_effective is not None:
        fit = fit * n_effective / n
        n = n_effective
    if criterion == "bic":
        return float(fit + nnz * np.log(n))
    if criterion == "aicc":
        denom = n - nnz - 1
        correction = 2 * nnz * (nnz + 1) / denom if denom > 0 else np.inf
        return float(fit + 2 * nnz + correction)
    raise ValueError(f"criterion must be one of {_SELECTIONS}, got {criterion!r}")


def _lstsq_on_support(gram, xty, support, ridge):
    """Least squares restricted to ``support`` from the normal equations (ridge >= 0)."""
    coef = np.zeros(gram.shape[0])
    idx = np.flatnonzero(support)
    if idx.size == 0:
        return coef
    sub = gram[np.ix_(idx, idx)]
    if ridge > 0:
        sub = sub + ridge * np.eye(idx.size)
    try:
        coef[idx] = np.linalg.solve(sub, xty[idx])
    except np.linalg.LinAlgError:
        coef[idx] = np.linalg.lstsq(sub, xty[idx], rcond=None)[0]
    return coef


class SparseRegressor(MultiOutputMixin, RegressorMixin, BaseEstimator):
    """Base class: the shared ``fit`` of every sparse-regression optimizer.

    Subclasses set ``_strength_param`` (the name of the parameter that sets the
    sparsity level and may be ``"auto"``), ``_strength_kind`` (``"threshold"``
    for a level on the scaled coefficients, ``"penalty"`` for an l1 weight) and
    implement ``_reduce(X, y, gram, xty, strength, coef0=None)`` returning the
    scaled coefficients of one target and the number of iterations it took
    (``coef0``, when given, is a warm start: the solution at the previous
    point of the ``"auto"`` path).

    Attributes (after ``fit``)
    --------------------------
    coef_ : ndarray of shape (n_targets, n_features)
        Coefficients in the units of the input.
    n_features_in_ : int
    n_targets_ : int
    n_iter_ : ndarray of shape (n_targets,)
        Iterations of the (chosen) fit per target.
    strength_ : ndarray of shape (n_targets,)
        The sparsity level used per target (the chosen one when ``"auto"``).
    path_ : dict or None
        With ``"auto"``: ``{"values": grid, "loss": (n_targets, n_grid),
        "n_nonzero": (n_targets, n_grid)}``.
    """

    _strength_param = "threshold"
    _strength_kind = "threshold"

    # --- hooks -----------------------------------------------------------------
    def _reduce(self, X, y, gram, xty, strength, coef0=None):  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_params(self):
        """Validate the shared parameters; subclasses extend."""
        strength = getattr(self, self._strength_param)
        if isinstance(strength, str):
            if strength != "auto":
                raise ValueError(f"{self._strength_param} must be a non-negative number or 'auto', got {strength!r}")
        else:
            check_real(self._strength_param, strength, positive=False)
        if self.selection not in _SELECTIONS:
            raise ValueError(f"selection must be one of {_SELECTIONS}, got {self.selection!r}")
        check_positive_int("n_path", self.n_path)
        check_positive_int("max_iter", self.max_iter)
        if not isinstance(self.normalize_columns, (bool, np.bool_)):
            raise TypeError(f"normalize_columns must be a bool, got {self.normalize_columns!r}")
        if not isinstance(self.unbias, (bool, np.bool_)):
            raise TypeError(f"unbias must be a bool, got {self.unbias!r}")

    # --- shared work -----------------------------------------------------------
    def fit(self, X, y, *, n_effective=None):
        """Fit the sparse model ``y ~ X coef_.T``.

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features)
            Candidate-function values (the library evaluated on the data).
        y : array_like of shape (n_samples,) or (n_samples, n_targets)
            Targets (derivatives, or the weak-form left-hand side).
        n_effective : float or None, default=None
            Number of independent rows for the information criteria of
            ``"auto"`` (see :func:`selection_loss`); the weak-form estimators
            pass the number of non-overlapping test functions.

        Returns
        -------
        self
        """
        self._check_params()
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True, dtype=np.float64)
        self._y_ndim = y.ndim
        Y = y.reshape(len(y), -1)
        n, p = X.shape
        if self.normalize_columns:
            x_scale = np.sqrt(np.mean(X**2, axis=0))
            x_scale[x_scale == 0] = 1.0
            y_scale = np.sqrt(np.mean(Y**2, axis=0))
            y_scale[y_scale == 0] = 1.0
        else:
            x_scale = np.ones(p)
            y_scale = np.ones(Y.shape[1])
        Xs = X / x_scale
        Ys = Y / y_scale
        gram = Xs.T @ Xs
        xty_all = Xs.T @ Ys

        coef = np.zeros((Y.shape[1], p))
        n_iter = np.zeros(Y.shape[1], dtype=int)
        strength_used = np.zeros(Y.shape[1])
        self._n_samples_fit = n
        self._n_effective_fit = n_effective
        strength = getattr(self, self._strength_param)
        auto = isinstance(strength, str)
        if auto:
            grid = self._strength_grid(Xs, Ys, gram, xty_all)
            path_loss = np.zeros((Y.shape[1], grid.size))
            path_nnz = np.zeros((Y.shape[1], grid.size), dtype=int)
        for k in range(Y.shape[1]):
            xty = xty_all[:, k]
            if auto:
                coef_ls = np.linalg.lstsq(Xs, Ys[:, k], rcond=None)[0]
                fits = []
                warm = None
                for j, value in enumerate(grid):
                    # Warm start from the neighbouring point of the path.
                    warm, iters = self._reduce(Xs, Ys[:, k], gram, xty, value, coef0=warm)
                    c = self._finish(warm, gram, xty, min_share=_MIN_SHARE)
                    fits.append((c, iters))
                    path_loss[k, j] = selection_loss(Xs, Ys[:, k], c, coef_ls, self.selection, n_effective)
                    path_nnz[k, j] = np.count_nonzero(c)
                # The smallest loss; ties go to the sparser model (the largest
                # value: thresholds ascend along the grid, penalties descend).
                tied = np.flatnonzero(path_loss[k] <= path_loss[k].min() + 1e-12)
                best = int(tied[np.argmax(grid[tied])])
                coef[k], n_iter[k] = fits[best]
                strength_used[k] = grid[best]
            else:
                value = None if strength is None else float(strength)
                c, n_iter[k] = self._reduce(Xs, Ys[:, k], gram, xty, value)
                coef[k] = self._finish(c, gram, xty)
                strength_used[k] = np.nan if value is None else value
        self.coef_ = coef * y_scale[:, None] / x_scale[None, :]
        self.n_targets_ = Y.shape[1]
        self.n_iter_ = n_iter
        self.strength_ = strength_used
        self.path_ = (
            {"values": grid, "loss": path_loss, "n_nonzero": path_nnz} if auto else None
        )
        self.intercept_ = np.zeros(Y.shape[1])
        return self

    def _finish(self, coef, gram, xty, min_share=0.0):
        """Refit by least squares on the support (``unbias``), which removes the shrinkage.

        With ``min_share`` (the ``"auto"`` path), refit terms whose scaled
        coefficient is below it are dropped and the rest refit: the floor of
        STLSQ's path and BestSubset's ``min_share``, which IHT, ISTA and SR3
        would otherwise lack (on clean Lorenz they kept 1-8 spurious tiny terms).
        """
        if self.unbias and np.any(coef):
            support = coef != 0
            coef = _lstsq_on_support(gram, xty, support, self._ridge())
            while min_share > 0 and np.any(support & (np.abs(coef) < min_share)):
                support = support & (np.abs(coef) >= min_share)
                coef = _lstsq_on_support(gram, xty, support, self._ridge())
        return coef

    def _ridge(self):
        return 0.0

    def _strength_grid(self, Xs, Ys, gram, xty):
        """The path searched by ``"auto"``: log-spaced, in scaled-coefficient units."""
        if self._strength_kind == "threshold":
            # Shares of the target explained by one term, from 0.1 % to all of it.
            # Below 0.1 % BIC rewards fitting the derivative estimator's own
            # truncation error on clean data with spurious terms.
            return np.logspace(-3, 0, self.n_path)
        # l1 penalty: from alpha_max (all zero) down four decades.
        n = Xs.shape[0]
        alpha_max = float(np.max(np.abs(xty)) / n) if np.any(xty) else 1.0
        return alpha_max * np.logspace(0, -4, self.n_path)

    def predict(self, X):
        """Evaluate ``X @ coef_.T``.

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_targets)
            1-D when ``fit`` was given a 1-D target.
        """
        check_is_fitted(self, "coef_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        out = X @ self.coef_.T
        return out[:, 0] if self._y_ndim == 1 else out

    @property
    def complexity(self):
        """Number of nonzero coefficients (PySINDy's name)."""
        check_is_fitted(self, "coef_")
        return int(np.count_nonzero(self.coef_))

    @property
    def support_(self):
        """Boolean mask of the selected terms, shape (n_targets, n_features)."""
        check_is_fitted(self, "coef_")
        return self.coef_ != 0

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


class STLSQ(SparseRegressor):
    """Sequentially thresholded least squares (Brunton, Proctor & Kutz 2016).

    Alternates a (ridge) least-squares fit on the active terms with dropping
    the terms whose scaled coefficient is below ``threshold``, until the active
    set stops changing.

    Parameters
    ----------
    threshold : float or "auto", default="auto"
        Terms whose scaled coefficient (share of ``rms(y)``; see the module
        notes) is below this are dropped. ``"auto"`` picks it along a path by
        ``selection``.
    alpha : float, default=0.0
        Ridge penalty on the scaled problem, relative to ``n_samples`` (so it
        is scale-aware: ``alpha=1e-3`` adds ``1e-3 * n_samples`` to the
        diagonal of the unit-rms Gram matrix).
    max_iter : int, default=25
        Maximum threshold-refit rounds.
    normalize_columns : bool, default=True
        Scale columns and targets to unit rms before thresholding.
    unbias : bool, default=True
        Final least-squares refit on the support (with the same ridge).
    selection : {"mstls", "bic", "aicc"}, default="bic"
        Criterion for ``threshold="auto"``.
    n_path : int, default=40
        Number of path values tried by ``"auto"``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((200, 6))
    >>> y = 2.0 * X[:, 1] - 0.5 * X[:, 4]
    >>> STLSQ().fit(X, y).coef_.round(6)
    array([[ 0. ,  2. ,  0. ,  0. , -0.5,  0. ]])
    """

    def __init__(
        self,
        threshold="auto",
        *,
        alpha=0.0,
        max_iter=25,
        normalize_columns=True,
        unbias=True,
        selection="bic",
        n_path=40,
    ):
        self.threshold = threshold
        self.alpha = alpha
        self.max_iter = max_iter
        self.normalize_columns = normalize_columns
        self.unbias = unbias
        self.selection = selection
        self.n_path = n_path

    def _check_params(self):
        super()._check_params()
        check_real("alpha", self.alpha, positive=False)

    def _ridge(self):
        return self.alpha * self._n_samples_fit

    def _reduce(self, X, y, gram, xty, threshold, coef0=None):
        ridge = self._ridge()
        support = np.ones(gram.shape[0], dtype=bool)
        coef = _lstsq_on_support(gram, xty, support, ridge)
        for n_iter in range(1, self.max_iter + 1):
            new_support = np.abs(coef) >= threshold
            if np.array_equal(new_support, support):
                break
            support = new_support
            coef = _lstsq_on_support(gram, xty, support, ridge)
        coef[~support] = 0.0
        return coef, n_iter


class IHT(SparseRegressor):
    """Iterative hard thresholding: gradient steps followed by the l0 prox.

    Iterates ``xi <- H(xi + mu X^T (y - X xi))`` with step ``mu = 1/||X||_2^2``
    and :func:`sciml.prox.hard_threshold` at ``threshold`` (scaled units),
    i.e. projected gradient on ``1/2 ||y - X xi||^2 + lam ||xi||_0`` with
    ``lam = threshold^2 / (2 mu)``.

    Parameters
    ----------
    threshold : float or "auto", default="auto"
        Hard-threshold level on the scaled coefficients.
    max_iter : int, default=500
    tol : float, default=1e-8
        Stop when the relative change of the coefficients is below ``tol``.
    normalize_columns, unbias, selection, n_path
        As in :class:`STLSQ`.
    """

    def __init__(
        self,
        threshold="auto",
        *,
        max_iter=500,
        tol=1e-8,
        normalize_columns=True,
        unbias=True,
        selection="bic",
        n_path=40,
    ):
        self.threshold = threshold
        self.max_iter = max_iter
        self.tol = tol
        self.normalize_columns = normalize_columns
        self.unbias = unbias
        self.selection = selection
        self.n_path = n_path

    def _check_params(self):
        super()._check_params()
        check_real("tol", self.tol)

    def _reduce(self, X, y, gram, xty, threshold, coef0=None):
        lipschitz = float(np.linalg.eigvalsh(gram)[-1]) if gram.size else 1.0
        if lipschitz <= 0:
            return np.zeros(gram.shape[0]), 1
        step = 1.0 / lipschitz
        # Scaled coefficients live near 1 while the gradient step scales with
        # 1/n: threshold the coefficients themselves, as the l0 prox does.
        coef = np.zeros(gram.shape[0]) if coef0 is None else coef0.copy()
        n_iter = 0
        for n_iter in range(1, self.max_iter + 1):
            new = hard_threshold(coef + step * (xty - gram @ coef), threshold)
            change = np.linalg.norm(new - coef)
            coef = new
            if change <= self.tol * max(np.linalg.norm(coef), 1e-300):
                break
        return coef, n_iter


class ISTA(SparseRegressor):
    """l1-regularised least squares (the lasso) by (F)ISTA.

    Minimises ``1/(2 n) ||y - X xi||^2 + alpha ||xi||_1`` on the scaled problem
    with :func:`sciml.prox.soft_threshold`; ``accelerated=True`` (default) is
    FISTA (Beck & Teboulle 2009), ``False`` plain ISTA.

    Parameters
    ----------
    alpha : float or "auto", default="auto"
        l1 weight on the scaled problem (scale-free; ``alpha >= max|X^T y|/n``
        gives all zeros). ``"auto"`` searches four decades below that.
    accelerated : bool, default=True
    max_iter : int, default=2000
    tol : float, default=1e-8
    normalize_columns, unbias, selection, n_path
        As in :class:`STLSQ`. With ``unbias=True`` the l1 fit only chooses the
        support and the coefficients are refit by least squares.
    """

    _strength_param = "alpha"
    _strength_kind = "penalty"

    def __init__(
        self,
        alpha="auto",
        *,
        accelerated=True,
        max_iter=2000,
        tol=1e-8,
        normalize_columns=True,
        unbias=True,
        selection="bic",
        n_path=40,
    ):
        self.alpha = alpha
        self.accelerated = accelerated
        self.max_iter = max_iter
        self.tol = tol
        self.normalize_columns = normalize_columns
        self.unbias = unbias
        self.selection = selection
        self.n_path = n_path

    def _check_params(self):
        super()._check_params()
        check_real("tol", self.tol)

    def _reduce(self, X, y, gram, xty, alpha, coef0=None):
        n = X.shape[0]
        g = gram / n
        b = xty / n
        lipschitz = float(np.linalg.eigvalsh(g)[-1]) if g.size else 1.0
        if lipschitz <= 0:
            return np.zeros(g.shape[0]), 1
        step = 1.0 / lipschitz
        coef = np.zeros(g.shape[0]) if coef0 is None else coef0.copy()
        z = coef.copy()
        t = 1.0
        n_iter = 0
        for n_iter in range(1, self.max_iter + 1):
            new = soft_threshold(z - step * (g @ z - b), step * alpha)
            if self.accelerated:
                t_new = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t * t))
                z = new + ((t - 1.0) / t_new) * (new - coef)
                t = t_new
            else:
                z = new
            change = np.linalg.norm(new - coef)
            coef = new
            if change <= self.tol * max(np.linalg.norm(coef), 1e-300):
                break
        return coef, n_iter


class SR3(SparseRegressor):
    """Sparse relaxed regularised regression (Zheng et al. 2019; Champion et al. 2020).

    Minimises ``1/2 ||y - X w||^2 + lam R(v) + 1/(2 nu) ||w - v||^2`` by
    alternating the exact ``w`` update (a linear solve) with ``v = prox(w)``;
    ``coef_`` is the sparse ``v``. ``R`` is l0 (hard threshold) or l1 (soft).

    Parameters
    ----------
    threshold : float or "auto", default="auto"
        The prox threshold on the scaled coefficients (``sqrt(2 lam nu)`` for
        l0, ``lam nu`` for l1).
    nu : float, default=1.0
        Relaxation, in units of the scaled Gram matrix's mean diagonal
        (``nu=1`` weighs the coupling like one unit-rms column over all samples).
    regularizer : {"l0", "l1"}, default="l0"
    max_iter : int, default=200
    tol : float, default=1e-8
    normalize_columns, unbias, selection, n_path
        As in :class:`STLSQ`.
    """

    def __init__(
        self,
        threshold="auto",
        *,
        nu=1.0,
        regularizer="l0",
        max_iter=200,
        tol=1e-8,
        normalize_columns=True,
        unbias=True,
        selection="bic",
        n_path=40,
    ):
        self.threshold = threshold
        self.nu = nu
        self.regularizer = regularizer
        self.max_iter = max_iter
        self.tol = tol
        self.normalize_columns = normalize_columns
        self.unbias = unbias
        self.selection = selection
        self.n_path = n_path

    def _check_params(self):
        super()._check_params()
        check_real("nu", self.nu)
        check_real("tol", self.tol)
        if self.regularizer not in ("l0", "l1"):
            raise ValueError(f"regularizer must be 'l0' or 'l1', got {self.regularizer!r}")

    def _reduce(self, X, y, gram, xty, threshold, coef0=None):
        # nu is relative to the Gram scale (its mean diagonal, n for unit-rms columns).
        p = gram.shape[0]
        coupling = max(float(np.trace(gram)) / max(p, 1), 1e-300) / self.nu
        system = gram + coupling * np.eye(p)
        prox = hard_threshold if self.regularizer == "l0" else soft_threshold
        v = prox(np.linalg.solve(system, xty), threshold) if coef0 is None else coef0.copy()
        n_iter = 0
        for n_iter in range(1, self.max_iter + 1):
            w = np.linalg.solve(system, xty + coupling * v)
            new_v = prox(w, threshold)
            change = np.linalg.norm(new_v - v)
            v = new_v
            if change <= self.tol * max(np.linalg.norm(v), 1e-300):
                break
        return v, n_iter


class BestSubset(SparseRegressor):
    """Best-subset selection: the support that minimises the information criterion.

    Every support of up to ``max_terms`` terms is fit by least squares (from
    the normal equations, so one subset costs a tiny solve) and the one with
    the lowest ``selection`` criterion is kept. Unlike a threshold path, this
    finds a true model whose terms are small next to cancelling large ones
    (the ``-y`` of Lorenz's second equation beside ``28 x - x z``): on 200
    Lorenz samples at 2 % noise, STLSQ's path never contains the true support
    while best-subset BIC recovers it in 9 of 10 seeds.

    The search is exhaustive, so it suits libraries of up to about 20 terms
    (the default estimators use it for up to 15).

    Parameters
    ----------
    max_terms : int or None, default=None
        Largest support tried. ``None`` grows the size until the best
        criterion has not improved for two sizes in a row.
    selection : {"bic", "aicc", "mstls"}, default="bic"
    min_share : float, default=1e-3
        Supports with a term whose scaled coefficient (share of ``rms(y)``)
        is below this are not candidates: the floor of STLSQ's path, for the
        same reason (on clean data the criteria reward fitting the derivative
        estimator's own truncation error with spurious terms).
    max_subsets : int, default=200_000
        Refuse (with a message naming STLSQ) searches larger than this: with
        ``max_terms`` up front, with ``max_terms=None`` when the growing
        search reaches it before the criterion has settled.
    normalize_columns, unbias
        As in :class:`STLSQ` (``unbias`` changes nothing here: every fit is
        already least squares on its support).
    """

    _strength_param = "max_terms"

    def __init__(
        self, max_terms=None, *, selection="bic", min_share=1e-3, max_subsets=200_000, normalize_columns=True, unbias=True
    ):
        self.max_terms = max_terms
        self.selection = selection
        self.min_share = min_share
        self.max_subsets = max_subsets
        self.normalize_columns = normalize_columns
        self.unbias = unbias

    def _check_params(self):
        if self.max_terms is not None:
            check_positive_int("max_terms", self.max_terms)
        if self.selection not in _SELECTIONS:
            raise ValueError(f"selection must be one of {_SELECTIONS}, got {self.selection!r}")
        check_positive_int("max_subsets", self.max_subsets)
        check_real("min_share", self.min_share, positive=False)

    def _reduce(self, X, y, gram, xty, max_terms, coef0=None):
        import itertools
        from math import comb

        p = gram.shape[0]
        limit = p if max_terms is None else min(int(max_terms), p)
        total = sum(comb(p, k) for k in range(1, limit + 1))
        if max_terms is not None and total > self.max_subsets:
            raise ValueError(
                f"best-subset search over {p} terms up to {limit} terms is {total} fits (max_subsets="
                f"{self.max_subsets}); lower max_terms or use STLSQ"
            )
        coef_ls = _lstsq_on_support(gram, xty, np.ones(p, dtype=bool), 0.0)
        best_loss, best = selection_loss(X, y, np.zeros(p), coef_ls, self.selection, self._n_effective_fit), np.zeros(p)
        stale, searched = 0, 0
        for k in range(1, limit + 1):
            searched += comb(p, k)
            if searched > self.max_subsets:
                # Stopping here would return the best of the smaller supports as if searched.
                raise ValueError(
                    f"best-subset search over {p} terms reached {k}-term supports without settling: "
                    f"{searched} fits exceed max_subsets={self.max_subsets}; set max_terms below {k}, "
                    "raise max_subsets or use STLSQ"
                )
            size_best = np.inf
            for subset in itertools.combinations(range(p), k):
                coef = _lstsq_on_support(gram, xty, np.isin(np.arange(p), subset), 0.0)
                if np.min(np.abs(coef[list(subset)])) < self.min_share:
                    continue
                loss = selection_loss(X, y, coef, coef_ls, self.selection, self._n_effective_fit)
                size_best = min(size_best, loss)
                if loss < best_loss:
                    best_loss, best = loss, coef
            stale = 0 if size_best <= best_loss else stale + 1
            if max_terms is None and stale >= 2:
                break
        return best, 1


class EnsembleOptimizer(MultiOutputMixin, RegressorMixin, BaseEstimator):
    """Bagging around any optimizer: inclusion probabilities and intervals.

    Fits clones of ``optimizer`` on ``n_models`` bootstrap resamples of the
    rows, records how often each term is selected (``inclusion_probability_``)
    and the spread of its coefficient, keeps the terms selected in at least
    ``inclusion_threshold`` of the models (stability selection) and refits
    those by least squares on all rows.

    Parameters
    ----------
    optimizer : SparseRegressor or None, default=None
        The base optimizer (default ``STLSQ()``).
    n_models : int, default=50
    subsample : float, default=1.0
        Fraction of rows drawn (with replacement) per model.
    inclusion_threshold : float, default=0.5
        Minimum inclusion probability of a kept term.
    confidence : float, default=0.95
        Coverage of ``coef_interval_`` (percentile interval of the bootstrap
        coefficients).
    random_state : None, int or numpy.random.Generator, default=None

    Attributes
    ----------
    coef_ : ndarray of shape (n_targets, n_features)
    coef_samples_ : ndarray of shape (n_models, n_targets, n_features)
    inclusion_probability_ : ndarray of shape (n_targets, n_features)
    coef_interval_ : ndarray of shape (2, n_targets, n_features)
        Lower and upper percentile bounds.
    coef_std_ : ndarray of shape (n_targets, n_features)
    """

    def __init__(
        self,
        optimizer=None,
        *,
        n_models=50,
        subsample=1.0,
        inclusion_threshold=0.5,
        confidence=0.95,
        random_state=None,
    ):
        self.optimizer = optimizer
        self.n_models = n_models
        self.subsample = subsample
        self.inclusion_threshold = inclusion_threshold
        self.confidence = confidence
        self.random_state = random_state

    def fit(self, X, y, *, n_effective=None):
        """Fit the bagged ensemble; see the class docstring.

        ``n_effective`` (the number of independent rows) is passed on to the
        base optimizer, scaled by ``subsample``.
        """
        n_models = check_positive_int("n_models", self.n_models)
        subsample = check_real("subsample", self.subsample)
        if subsample > 1:
            raise ValueError(f"subsample must be in (0, 1], got {subsample}")
        threshold = check_real("inclusion_threshold", self.inclusion_threshold, positive=False)
        if threshold > 1:
            raise ValueError(f"inclusion_threshold must be in [0, 1], got {threshold}")
        confidence = check_real("confidence", self.confidence)
        if confidence >= 1:
            raise ValueError(f"confidence must be in (0, 1), got {confidence}")
        if self.optimizer is not None and not isinstance(self.optimizer, SparseRegressor):
            raise TypeError(
                f"optimizer must be a sciml.discovery optimizer (SparseRegressor), got {type(self.optimizer).__name__}"
            )
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True, dtype=np.float64)
        self._y_ndim = y.ndim
        Y = y.reshape(len(y), -1)
        base = STLSQ() if self.optimizer is None else self.optimizer
        rng = np.random.default_rng(self.random_state)
        n = X.shape[0]
        m = max(int(round(subsample * n)), min(n, X.shape[1] + 1))
        samples = np.zeros((n_models, Y.shape[1], X.shape[1]))
        for i in range(n_models):
            rows = rng.integers(0, n, size=m)
            n_eff = None if n_effective is None else n_effective * m / n
            samples[i] = clone(base).fit(X[rows], Y[rows], n_effective=n_eff).coef_
        self.coef_samples_ = samples
        self.inclusion_probability_ = np.mean(samples != 0, axis=0)
        q = (1.0 - confidence) / 2.0
        self.coef_interval_ = np.quantile(samples, [q, 1.0 - q], axis=0)
        self.coef_std_ = samples.std(axis=0)
        support = self.inclusion_probability_ >= max(threshold, 1e-12)
        coef = np.zeros((Y.shape[1], X.shape[1]))
        for k in range(Y.shape[1]):
            idx = np.flatnonzero(support[k])
            if idx.size:
                coef[k, idx] = np.linalg.lstsq(X[:, idx], Y[:, k], rcond=None)[0]
        self.coef_ = coef
        self.n_targets_ = Y.shape[1]
        self.intercept_ = np.zeros(Y.shape[1])
        return self

    predict = SparseRegressor.predict
    complexity = SparseRegressor.complexity
    support_ = SparseRegressor.support_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

