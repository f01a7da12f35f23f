"""SINDy estimators: ODE discovery (:class:`SINDy`) and PDE discovery (:class:`PDESINDy`).

Both compose three parameters, as PySINDy does: a candidate-function
``library``, a ``differentiation`` (a derivative estimator from
:mod:`sciml.discovery.differentiation` for the strong form, or
:class:`WeakForm`, the default, for the integral form) and a sparse-regression
``optimizer`` from :mod:`sciml.discovery.optimizers` (by default the support
is chosen by BIC, so the defaults need no knowledge of the true model:
exhaustively by :class:`~sciml.discovery.optimizers.BestSubset` for libraries
of up to 15 terms, along the threshold path of
:class:`~sciml.discovery.optimizers.STLSQ` for larger ones).

Arrays have time on axis 0: ODE data ``(n_times, n_variables)``, PDE data
``(n_times, n_x[, n_y ...][, n_variables])``. A torch tensor (CPU or CUDA) is
integrated by the weak form on its own device (``torch.fft`` on uniform axes,
the CSR kernels of :mod:`sciml.sparse` on non-uniform ones); only the small
regression system comes back to the CPU, and predictions are numpy. ``xarray.DataArray`` and
``xarray.Dataset`` inputs are accepted; their coordinates give the time (and
space) stamps, their names the variable names, and predictions and
simulations of a model fit on xarray data come back as xarray.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.preprocessing import PolynomialFeatures
from sklearn.utils.validation import check_array, check_is_fitted

from .._validation import check_nonneg_int, check_positive_int, check_real
from ..prox import _is_tensor
from .differentiation import Differentiator, FiniteDifference, _check_coordinates
from .libraries import FittedLibrary, PDELibrary, monomial_values
from .optimizers import STLSQ, BestSubset, EnsembleOptimizer, SparseRegressor
from .weak import AxisTestFunctions, auto_radius

__all__ = ["WeakForm", "SINDy", "PDESINDy"]

_TIME_NAMES = ("t", "time")


class WeakForm(BaseEstimator):
    """The weak (integral) formulation, used as the ``differentiation`` of an estimator.

    Test functions are translates of ``(1 - s^2)^degree`` (Messenger & Bortz)
    on every axis (time, and space for PDEs); see :mod:`sciml.discovery.weak`.

    Parameters
    ----------
    radius : int, tuple of int or "auto", default="auto"
        Support radius in samples, per axis (time first) or one for all.
        ``"auto"`` matches each axis to the corner of the data's spectrum,
        then widens it until the discrete integration by parts is exact to
        0.2 % (:meth:`~sciml.discovery.weak.AxisTestFunctions.ibp_error`);
        a given radius that misses that is refused, since it would bias
        every coefficient (radius 2 at degree 16 by 79 %).
    degree : int, default=16
        Kernel exponent ``p``; must exceed the highest derivative order.
        Larger ``p`` concentrates the kernel (measured on Lorenz at 10 % noise:
        ``p=16`` recovered the model in 10/10 seeds where ``p=4`` managed 5/10).
        Where an ``"auto"`` radius is capped for short series (see
        :meth:`axes`), ``p`` is lowered to the radius (and the radius raised
        where that is not exact enough: to 5 on a uniform time axis).
    stride : int, tuple of int or None, default=None
        Distance between test-function centres in samples; ``None`` is a
        quarter of the radius (neighbouring test functions overlap), unless
        ``n_test_functions`` is given.
    n_test_functions : int or None, default=None
        Target total number of test functions; sets the strides (equal
        fractions of every axis).
    tol : float, default=0.01
        Kernel spectrum left at the data's corner wavenumber by ``"auto"``.
    """

    def __init__(self, radius="auto", degree=16, stride=None, n_test_functions=None, tol=0.01):
        self.radius = radius
        self.degree = degree
        self.stride = stride
        self.n_test_functions = n_test_functions
        self.tol = tol

    def _per_axis(self, value, n_axes, name):
        # Any scalar (a float too) is one value for every axis; check_positive_int names a bad one.
        if value is None or isinstance(value, str) or np.ndim(value) == 0:
            return [value] * n_axes
        value = list(value)
        if len(value) != n_axes:
            raise ValueError(f"{name} has {len(value)} entries for {n_axes} axes (time first)")
        return value

    def axes(self, coords, data, max_order, n_terms=None):
        """One :class:`~sciml.discovery.weak.AxisTestFunctions` per axis of ``data``.

        Parameters
        ----------
        coords : list of ndarray
            Coordinates of each axis (time first).
        data : ndarray
            The fields, axes matching ``coords`` (trailing axes averaged over).
        max_order : list of int
            Highest derivative order put on the kernel of each axis.
        n_terms : int or None
            Library size. On a single (time) axis an ``"auto"`` radius is
            capped so that it holds at least ``2 * n_terms`` non-overlapping
            test functions: fewer independent rows than that leave the model selection
            too little to decide on (on 200 Lorenz samples the corner rule
            alone gives supports of 20-35 samples and 3/10 recoveries at 2 %
            noise, the cap 5 samples and 9/10). The cap yields to the
            quadrature check (on 101 clean Lorenz samples it gives radius 2,
            whose trapezoid sums shrank every coefficient by 30 %; radius 5
            at degree 5 is exact to 0.2 %).

        Returns
        -------
        list of AxisTestFunctions
        """
        n_axes = len(coords)
        degree = check_positive_int("degree", self.degree)
        if degree <= max(max_order):
            raise ValueError(
                f"WeakForm.degree ({degree}) must exceed the highest derivative order in the "
                f"model ({max(max_order)}) so that integration by parts leaves no boundary terms"
            )
        tol = check_real("tol", self.tol)
        radii = self._per_axis(self.radius, n_axes, "radius")
        strides = self._per_axis(self.stride, n_axes, "stride")
        degrees = [degree] * n_axes
        for axis, (c, r) in enumerate(zip(coords, radii)):
            if r is None or (isinstance(r, str) and r == "auto"):
                spacing = float(np.mean(np.diff(c)))
                r = auto_radius(data, axis, spacing, degree, tol=tol)
                capped = False
                if n_terms and n_axes == 1:
                    cap = max(int((len(c) / (1.5 * n_terms) - 1) // 2), 2)
                    if cap < r:
                        r, capped = cap, True
                r, degrees[axis] = _exact_enough(c, r, degree, max_order[axis], capped)
            elif isinstance(r, str):
                raise ValueError(f"radius must be a positive integer or 'auto', got {r!r}")
            else:
                r = check_positive_int("radius", r)
                if 2 * r + 1 <= len(c):
                    error = AxisTestFunctions(c, r, degree, max(1, r // 4)).ibp_error(max_order[axis])
                    if error > _IBP_TOL:
                        raise ValueError(
                            f"WeakForm(radius={r}, degree={degree}) on axis {axis}: the discrete integration "
                            f"by parts is off by {error:.1%} (more than {_IBP_TOL:.1%}), which biases every "
                            "coefficient; use a larger radius, a lower degree or radius='auto'"
                        )
            radii[axis] = r
        out = []
        if self.n_test_functions is not None:
            k = check_positive_int("n_test_functions", self.n_test_functions)
            room = [max(len(c) - 2 * r, 1) for c, r in zip(coords, radii)]
            factor = (np.prod(room) / k) ** (1.0 / n_axes)
            strides = [max(1, int(round(factor))) for _ in room]
        for axis, (c, r, s) in enumerate(zip(coords, radii, strides)):
            s = max(1, r // 4) if s is None else check_positive_int("stride", s)
            out.append(AxisTestFunctions(c, r, degrees[axis], s))
        return out


# Largest tolerated error of the discrete integration by parts (AxisTestFunctions.ibp_error).
_IBP_TOL = 2e-3


def _exact_enough(coords, radius, degree, max_order, capped):
    """Smallest radius from ``radius`` up whose quadrature keeps integration by parts exact enough.

    Returns ``(radius, degree)``; a ``capped`` radius keeps ``degree <= radius``.
    The radius grows by one sample on uniform axes, by a quarter on
    non-uniform ones (second-order quadrature, slower to converge), up to a
    quarter of the axis; past that a warning says the coefficients are biased.
    """
    n = len(coords)
    limit = max(radius, n // 4)
    r = radius
    while True:
        # A short support cannot carry a sharply peaked kernel: p <= radius
        # keeps it spread over the support (on 200 Lorenz samples at 2 % noise:
        # p=4 at radius 4 gave 10/10 recoveries, p=16 6/10).
        p = max(min(degree, r), max_order + 1) if capped else degree
        if 2 * r + 1 > n:  # only the given radius can be too long: growth stops at n // 4
            return r, p
        axis = AxisTestFunctions(coords, r, p, max(1, r // 4))
        error = axis.ibp_error(max_order)
        if error <= _IBP_TOL:
            return r, p
        if r >= limit:
            warnings.warn(
                f"the weak form's quadrature on this {n}-sample axis misses integration by parts by "
                f"{error:.1%} even at radius {r}: the coefficients are biased by about that much; "
                "use more samples (or a uniform grid) or a derivative estimator",
                UserWarning,
                stacklevel=4,
            )
            return r, p
        r = min(limit, r + 1 if axis.uniform else max(r + 1, int(r * 1.25)))


# --- input handling -------------------------------------------------------------
def _is_xarray(obj, kind=None):
    mod = type(obj).__module__
    if not mod.startswith("xarray"):
        return False
    return kind is None or type(obj).__name__ == kind


def _coordinates(t, n, name="t", axis=0):
    """Coordinates of an axis of length ``n`` from a spacing or an array of stamps (validated)."""
    checked, _ = _check_coordinates(t, n, axis, name=name, data="the data")
    if np.ndim(checked) == 0:
        start = 0.0 if np.ndim(t) == 0 else float(np.asarray(t, dtype=np.float64)[0])
        return start + np.arange(n) * checked
    return checked


def _check_tensor(X, ndim, name):
    """Validate a torch tensor input (kept on its device)."""
    import torch

    if X.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D tensor, got shape {tuple(X.shape)}")
    if X.is_complex():
        raise TypeError(f"{name}: complex data not supported")
    if not X.is_floating_point():
        X = X.to(torch.float64)
    if X.shape[0] < 2:
        raise ValueError(f"{name} has {X.shape[0]} samples, at least 2 are needed")
    if not bool(torch.isfinite(X).all()):
        raise ValueError(f"{name} contains NaN or infinity")
    return X.detach()


def _to_numpy(X):
    """float64 numpy from numpy or a tensor on any device (the small regression runs on the CPU)."""
    if _is_tensor(X):
        return X.detach().to("cpu").double().numpy()
    return np.asarray(X, dtype=np.float64)


def _check_y_ignored(y, method):
    if y is not None and np.ndim(y) == 0:
        raise TypeError(
            f"{method}'s second positional argument is ignored (scikit-learn convention); "
            "pass the time as t=... (a spacing or the stamps)"
        )


def _check_min_samples(n, needed, what):
    if n < needed:
        raise ValueError(f"{what}: {n} samples, at least {needed} are needed")


def _dataarray_ode(X):
    dims = list(X.dims)
    if X.ndim != 2:
        raise ValueError(f"an ODE DataArray must be 2-D (time, variable), got dims {tuple(dims)}")
    time_dim = next((d for d in dims if d in _TIME_NAMES), dims[0])
    var_dim = next(d for d in dims if d != time_dim)
    X = X.transpose(time_dim, var_dim)
    t = X[time_dim].values if time_dim in X.coords else None
    names = (
        [str(v) for v in X[var_dim].values]
        if var_dim in X.coords
        else [f"x{i}" for i in range(X.shape[1])]
    )
    meta = {
        "kind": "DataArray", "time_dim": time_dim, "var_dim": var_dim, "name": X.name, "labelled": var_dim in X.coords
    }
    return X.values, t, names, meta


def _dataset_ode(ds):
    names = [str(v) for v in ds.data_vars]
    if not names:
        raise ValueError("the Dataset has no data variables")
    dims = ds[names[0]].dims
    if len(dims) != 1 or any(ds[v].dims != dims for v in names):
        raise ValueError(
            "an ODE Dataset needs 1-D data variables sharing one time dimension; "
            f"got {[(v, ds[v].dims) for v in names]}"
        )
    time_dim = dims[0]
    t = ds[time_dim].values if time_dim in ds.coords else None
    X = np.stack([ds[v].values for v in names], axis=1)
    meta = {"kind": "Dataset", "time_dim": time_dim, "var_dim": None, "name": None, "labelled": True}
    return X, t, names, meta


def _variable_order(names, meta, fitted, fitted_on_labels):
    """Columns of labelled xarray data in the fitted variables' order (``None``: by position).

    Labels decide when the input has them and the fit had them too (xarray
    or ``feature_names``), or when they name every fitted variable; a fitted
    variable missing from labelled input is an error, not a silent shift.
    """
    if names is None or not meta.get("labelled"):
        return None
    if all(n in names for n in fitted):
        return [names.index(n) for n in fitted]
    if fitted_on_labels:
        missing = [n for n in fitted if n not in names]
        raise ValueError(f"the input lacks the variables {missing} the model was fit on (it has {names})")
    return None


def _wrap_ode(values, t, names, meta):
    """Return an (n_times, n_variables) array as the xarray type the model was fit on."""
    if meta is None or meta["kind"] == "numpy":
        return values
    import xarray as xr

    time_dim = meta["time_dim"]
    if meta["kind"] == "Dataset":
        return xr.Dataset({n: ((time_dim,), values[:, i]) for i, n in enumerate(names)}, coords={time_dim: t})
    return xr.DataArray(
        values, dims=(time_dim, meta["var_dim"]), coords={time_dim: t, meta["var_dim"]: names}, name=meta["name"]
    )


def _format_equation(lhs, coef, names, precision):
    terms = []
    for c, name in zip(coef, names):
        if c == 0:
            continue
        value = f"{abs(c):.{precision}f}"
        body = value if name == "1" else f"{value} {name}"
        sign = "-" if c < 0 else "+"
        terms.append((sign, body))
    if not terms:
        return f"{lhs} = 0"
    first_sign, first = terms[0]
    text = ("-" if first_sign == "-" else "") + first
    for sign, body in terms[1:]:
        text += f" {sign} {body}"
    return f"{lhs} = {text}"


# Exhaustive best-subset search is cheap up to this many library terms.
_BEST_SUBSET_MAX_TERMS = 15


def _check_optimizer(optimizer, n_terms):
    if optimizer is None:
        return BestSubset() if n_terms <= _BEST_SUBSET_MAX_TERMS else STLSQ()
    if not (hasattr(optimizer, "fit") and hasattr(optimizer, "get_params")):
        raise TypeError(f"optimizer must be a scikit-learn style regressor, got {type(optimizer).__name__}")
    return optimizer


def _warn_underdetermined(n_rows, n_terms, what):
    if n_rows < n_terms:
        warnings.warn(
            f"the library has {n_terms} terms but the {what} has only {n_rows} rows: the regression is "
            "underdetermined; use a smaller library or more data",
            UserWarning,
            stacklevel=3,
        )


class _DiscoveryMixin:
    """Shared outputs of the fitted models."""

    def equations(self, precision=3):
        """The discovered equations, one string per left-hand side.

        Parameters
        ----------
        precision : int, default=3
            Decimals printed.

        Returns
        -------
        list of str
        """
        check_is_fitted(self, "coef_")
        precision = check_nonneg_int("precision", precision)
        return [
            _format_equation(lhs, row, self.term_names_, precision) for lhs, row in zip(self._lhs_names(), self.coef_)
        ]

    def print(self, precision=3):
        """Print :meth:`equations`."""
        for line in self.equations(precision):
            print(line)

    @property
    def complexity(self):
        """Number of nonzero coefficients."""
        check_is_fitted(self, "coef_")
        return int(np.count_nonzero(self.coef_))

    def _reset(self):
        """Forget fitted state that only some configurations set (a refit must not keep it)."""
        for attr in ("inclusion_probability_", "coef_interval_", "coef_std_", "test_functions_"):
            if attr in self.__dict__:
                delattr(self, attr)

    def _fit_optimizer(self, G, b, n_effective=None):
        optimizer = clone(_check_optimizer(self.optimizer, G.shape[1]))
        _warn_underdetermined(G.shape[0], G.shape[1], "regression system")
        if n_effective is not None and isinstance(optimizer, (SparseRegressor, EnsembleOptimizer)):
            optimizer.fit(G, b, n_effective=n_effective)
        else:
            optimizer.fit(G, b)
        self.optimizer_ = optimizer
        self.coef_ = np.asarray(optimizer.coef_, dtype=np.float64).reshape(b.shape[1], G.shape[1])
        for attr in ("inclusion_probability_", "coef_interval_", "coef_std_"):
            if hasattr(optimizer, attr):
                setattr(self, attr, getattr(optimizer, attr))


class SINDy(_DiscoveryMixin, BaseEstimator):
    """Sparse identification of ODEs ``dx/dt = f(x)`` from trajectories.

    Parameters
    ----------
    library : transformer or None, default=None
        Candidate functions: any scikit-learn transformer with
        ``get_feature_names_out`` or a PySINDy feature library. ``None`` is
        ``PolynomialFeatures(degree=2)``.
    differentiation : WeakForm, Differentiator or None, default=None
        ``None`` is :class:`WeakForm` (no derivative of the data is taken).
        A derivative estimator (``FiniteDifference``, ``SavitzkyGolay``,
        ``SpectralDerivative``, ``TotalVariation``) gives the strong form.
    optimizer : regressor or None, default=None
        ``None``: ``BestSubset()`` for libraries of up to 15 terms, else
        ``STLSQ()`` (both choose the support by BIC). Any optimizer of
        :mod:`sciml.discovery.optimizers`, including ``EnsembleOptimizer`` for
        inclusion probabilities and intervals.
    feature_names : list of str or None, default=None
        Variable names (default: from the xarray input, else ``x0, x1, ...``).

    Attributes
    ----------
    coef_ : ndarray of shape (n_variables, n_terms)
    term_names_ : list of str
    variable_names_ : list of str
    optimizer_ : the fitted optimizer
    n_features_in_ : int
    device_ : str
        Where the weak-form integrals ran: the device of a torch input, else ``"cpu"``.
    inclusion_probability_, coef_interval_, coef_std_ : ndarray
        Present when the optimizer is an ``EnsembleOptimizer``.

    Examples
    --------
    >>> from sciml.discovery import SINDy
    >>> from sciml.discovery.data import lorenz
    >>> t, X = lorenz(t_end=5.0)
    >>> model = SINDy(feature_names=["x", "y", "z"]).fit(X, t=t)
    >>> model.print(precision=2)
    x' = -10.00 x + 10.00 y
    y' = 28.00 x - 1.00 y - 1.00 x z
    z' = -2.67 z + 1.00 x y
    """

    def __init__(self, library=None, differentiation=None, optimizer=None, feature_names=None):
        self.library = library
        self.differentiation = differentiation
        self.optimizer = optimizer
        self.feature_names = feature_names

    # --- inputs ------------------------------------------------------------------
    def _split(self, X, t, x_dot=None):
        """Trajectories as a list of (X, coords, x_dot) plus names and xarray metadata."""
        meta = {"kind": "numpy"}
        names = None
        if _is_xarray(X, "DataArray"):
            X, t_coord, names, meta = _dataarray_ode(X)
            trajectories, times = [X], [t if t_coord is None else t_coord]
        elif _is_xarray(X, "Dataset"):
            X, t_coord, names, meta = _dataset_ode(X)
            trajectories, times = [X], [t if t_coord is None else t_coord]
        elif isinstance(X, (list, tuple)) and len(X) and len(np.shape(X[0])) == 2:
            trajectories = list(X)
            times = list(t) if isinstance(t, (list, tuple)) else [t] * len(trajectories)
            if len(times) != len(trajectories):
                raise ValueError(f"{len(trajectories)} trajectories but {len(times)} time arrays")
        else:
            trajectories, times = [X], [t]
        if x_dot is not None:
            x_dots = list(x_dot) if isinstance(x_dot, (list, tuple)) and np.ndim(x_dot[0]) == 2 else [x_dot]
            if len(x_dots) != len(trajectories):
                raise ValueError(f"{len(trajectories)} trajectories but {len(x_dots)} x_dot arrays")
        else:
            x_dots = [None] * len(trajectories)
        out = []
        n_vars = None
        for i, (Xi, ti, di) in enumerate(zip(trajectories, times, x_dots)):
            Xi = _check_tensor(Xi, 2, "X") if _is_tensor(Xi) else check_array(
                Xi, dtype=np.float64, ensure_min_samples=2, input_name="X"
            )
            if n_vars is not None and Xi.shape[1] != n_vars:
                raise ValueError(f"trajectory {i} has {Xi.shape[1]} variables, the first has {n_vars}")
            n_vars = Xi.shape[1]
            coords = _coordinates(1.0 if ti is None else ti, Xi.shape[0])
            if di is not None:
                di = check_array(di, dtype=np.float64, input_name="x_dot")
                if di.shape != Xi.shape:
                    raise ValueError(f"x_dot has shape {di.shape}, X has {Xi.shape}")
            out.append((Xi, coords, di))
        return out, names, meta

    def fit(self, X, y=None, *, t=1.0, x_dot=None):
        """Discover the ODE from one or several trajectories.

        Parameters
        ----------
        X : array_like of shape (n_times, n_variables), list of those, or xarray
            State samples, time on axis 0. A list of 2-D arrays is several
            trajectories. A ``DataArray`` (dims time and variable) or a
            ``Dataset`` (one 1-D variable per state) gives its own time
            coordinate and names.
        y : None
            Ignored (scikit-learn convention). A scalar here is refused,
            since it is most likely a misplaced time step.
        t : float or array_like, default=1.0
            Time step, or the stamps (strictly increasing; non-uniform is
            fine); a list of them for several trajectories.
        x_dot : array_like or list, optional
            Known derivatives (strong form only): skips differentiation.

        Returns
        -------
        self
        """
        _check_y_ignored(y, "fit")
        self._reset()
        trajectories, names, meta = self._split(X, t, x_dot)
        n_vars = trajectories[0][0].shape[1]
        if self.feature_names is not None:
            names = [str(n) for n in self.feature_names]
            if len(names) != n_vars:
                raise ValueError(f"feature_names has {len(names)} names for {n_vars} variables")
        elif names is None:
            names = [f"x{i}" for i in range(n_vars)]
        library = PolynomialFeatures(degree=2) if self.library is None else self.library
        self.library_ = FittedLibrary(library, np.vstack([_to_numpy(tr[0]) for tr in trajectories]), names)
        self.device_ = str(trajectories[0][0].device) if _is_tensor(trajectories[0][0]) else "cpu"
        method = WeakForm() if self.differentiation is None else self.differentiation
        rows, lhs = [], []
        if isinstance(method, WeakForm):
            if any(tr[2] is not None for tr in trajectories):
                raise ValueError("x_dot is not used by the weak form; pass differentiation=FiniteDifference() etc.")
            self.test_functions_ = []
            for Xi, coords, _ in trajectories:
                (axis,) = method.axes([coords], Xi, [1], n_terms=len(self.library_.names))
                self.test_functions_.append(axis)
                rows.append(axis.integrate(self.library_.transform(Xi), 0, 0))
                lhs.append(-axis.integrate(Xi, 1, 0))
        elif isinstance(method, Differentiator) or callable(method):
            for Xi, coords, di in trajectories:
                # Derivative estimators run on the CPU.
                Xi = _to_numpy(Xi)
                rows.append(self.library_.transform(Xi))
                lhs.append(di if di is not None else _differentiate(method, Xi, coords, 0))
        else:
            raise TypeError(
                f"differentiation must be a WeakForm or a derivative estimator, got {type(method).__name__}"
            )
        G, b = np.vstack([_to_numpy(r) for r in rows]), np.vstack([_to_numpy(r) for r in lhs])
        n_effective = (
            sum(axis.n_independent for axis in self.test_functions_) if isinstance(method, WeakForm) else None
        )
        self._fit_optimizer(G, b, n_effective)
        self.term_names_ = self.library_.names
        self.variable_names_ = names
        self.n_features_in_ = n_vars
        self._meta = meta
        # Variable names that mean something (predict then matches xarray labels to them).
        self._labelled = bool(meta.get("labelled")) or self.feature_names is not None
        return self

    def _lhs_names(self):
        return [f"{n}'" for n in self.variable_names_]

    def _rhs(self, X):
        return self.library_.transform(X) @ self.coef_.T

    def predict(self, X):
        """Evaluate the discovered right-hand side ``f(x)``.

        Parameters
        ----------
        X : array_like of shape (n_samples, n_variables) or xarray

        Returns
        -------
        ndarray of shape (n_samples, n_variables), or xarray like the fit input
        """
        check_is_fitted(self, "coef_")
        t = None
        if _is_xarray(X):
            X, t, names, meta = _dataarray_ode(X) if _is_xarray(X, "DataArray") else _dataset_ode(X)
            order = _variable_order(names, meta, self.variable_names_, self._labelled)
            X = X if order is None else X[:, order]
        X = check_array(_to_numpy(X) if _is_tensor(X) else X, dtype=np.float64, input_name="X")
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input"
            )
        out = self._rhs(X)
        if t is not None:
            return _wrap_ode(out, t, self.variable_names_, meta)
        return out

    def score(self, X, y=None, *, t=1.0, x_dot=None):
        """R^2 of the model's derivatives against finite-difference (or given) ones.

        Parameters
        ----------
        X : array_like of shape (n_times, n_variables), list of those, or xarray
            As in :meth:`fit`; several trajectories are pooled into one score.
        y : None
            Ignored.
        t : float, array_like or list of those, default=1.0
        x_dot : array_like or list, optional

        Returns
        -------
        float
        """
        _check_y_ignored(y, "score")
        check_is_fitted(self, "coef_")
        from sklearn.metrics import r2_score

        trajectories, names, meta = self._split(X, t, x_dot)
        order = _variable_order(names, meta, self.variable_names_, self._labelled)
        # Several trajectories (as fit takes them) are pooled into one R^2.
        true, pred = [], []
        for Xi, coords, di in trajectories:
            Xi = _to_numpy(Xi)
            if order is not None:
                Xi, di = Xi[:, order], (None if di is None else di[:, order])
            true.append(FiniteDifference(order=2)(Xi, coords) if di is None else di)
            pred.append(self.predict(Xi))
        return float(r2_score(np.vstack(true), np.vstack(pred)))

    def simulate(self, x0, t, *, method="LSODA", rtol=1e-10, atol=1e-10, **kwargs):
        """Integrate the discovered ODE with :func:`scipy.integrate.solve_ivp`.

        Parameters
        ----------
        x0 : array_like of shape (n_variables,)
        t : array_like of shape (n_times,)
            Output times (strictly increasing); ``t[0]`` is the start.
        method, rtol, atol, **kwargs
            Passed to ``solve_ivp``.

        Returns
        -------
        ndarray of shape (n_times, n_variables), or xarray like the fit input
            The trajectory; if the solver fails (e.g. the model blows up)
            a RuntimeError says where.
        """
        from scipy.integrate import solve_ivp

        check_is_fitted(self, "coef_")
        x0 = _to_numpy(x0).ravel()
        if x0.size != self.n_features_in_ or not np.all(np.isfinite(x0)):
            raise ValueError(f"x0 must be {self.n_features_in_} finite values, got {x0!r}")
        if np.ndim(t) != 1 or np.size(t) < 2:
            raise ValueError("t must be an array of at least 2 increasing output times")
        _coordinates(t, np.size(t), "t")  # validation only: the stamps are used as given
        t = _to_numpy(t)
        coef_t = self.coef_.T
        lib = self.library_

        def rhs(_, x):
            return (lib.transform(x[None, :]) @ coef_t)[0]

        sol = solve_ivp(rhs, (t[0], t[-1]), x0, t_eval=t, method=method, rtol=rtol, atol=atol, **kwargs)
        if not sol.success:
            raise RuntimeError(f"integration of the discovered model failed at t={sol.t[-1]:.6g}: {sol.message}")
        return _wrap_ode(sol.y.T, t, self.variable_names_, self._meta)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = False
        return tags


def _differentiate(method, X, coords, axis, order=1):
    """Apply a derivative estimator ``order`` times... once with d=order where supported."""
    if isinstance(method, Differentiator):
        deriv = clone(method)
        params = deriv.get_params()
        if "axis" in params:
            deriv.set_params(axis=axis)
        if order != 1:
            if "d" in params:
                deriv.set_params(d=order)
            else:
                out = X
                for _ in range(order):
                    out = deriv(out, coords)
                return out
        return deriv(X, coords)
    # A plain callable f(x, t) differentiating along axis 0.
    moved = np.moveaxis(X, axis, 0)
    out = moved
    for _ in range(order):
        out = np.asarray(method(out, coords))
    return np.moveaxis(out, 0, axis)


class PDESINDy(_DiscoveryMixin, BaseEstimator):
    """Sparse identification of PDEs ``u_t = sum_j xi_j d^a_j f_j(u)`` (PDE-FIND / WSINDy).

    Parameters
    ----------
    library : PDELibrary or None, default=None
        ``None`` is ``PDELibrary(degree=3, derivative_order=4)``.
    differentiation : WeakForm, Differentiator or None, default=None
        ``None`` is :class:`WeakForm`. A derivative estimator gives the
        strong form (PDE-FIND): it differentiates the data in time.
    spatial_differentiation : Differentiator or None, default=None
        Spatial derivatives of the strong form and of :meth:`predict`
        (``None``: ``FiniteDifference(order=4)``). Its ``axis`` and ``d``
        are set per term, so it always acts on the right axis.
    optimizer : regressor or None, default=None
        ``None``: ``BestSubset()`` for libraries of up to 15 terms, else
        ``STLSQ()`` (both choose the support by BIC).
    feature_names : list of str or None, default=None
        Field names (default ``u``, or ``u0, u1, ...``; from a Dataset's variables).

    Attributes
    ----------
    coef_ : ndarray of shape (n_fields, n_terms)
    term_names_ : list of str
    variable_names_, axis_names_ : list of str
    terms_ : list of (exponents, alpha)
    device_ : str
        Where the weak-form integrals ran: the device of a torch input, else ``"cpu"``.
    """

    def __init__(
        self,
        library=None,
        differentiation=None,
        spatial_differentiation=None,
        optimizer=None,
        feature_names=None,
    ):
        self.library = library
        self.differentiation = differentiation
        self.spatial_differentiation = spatial_differentiation
        self.optimizer = optimizer
        self.feature_names = feature_names

    def _parse(self, U, t, x):
        """Fields as (n_t, *spatial, n_vars) plus coordinates and names."""
        meta = {"kind": "numpy"}
        names = None
        axis_names = None
        if _is_xarray(U, "Dataset"):
            names = [str(v) for v in U.data_vars]
            if not names:
                raise ValueError("the Dataset has no data variables")
            dims = U[names[0]].dims
            arrays = [U[v].transpose(*dims).values for v in names]
            U_arr = np.stack(arrays, axis=-1)
            coords_src = U
            meta = {"kind": "Dataset", "dims": dims}
        elif _is_xarray(U, "DataArray"):
            dims = U.dims
            U_arr = U.values
            coords_src = U
            names = [str(U.name)] if U.name is not None else None
            meta = {"kind": "DataArray", "dims": dims, "name": U.name}
        else:
            U_arr = None
        if U_arr is not None:
            time_dim = next((d for d in dims if d in _TIME_NAMES), dims[0])
            order = [dims.index(time_dim)] + [i for i, d in enumerate(dims) if d != time_dim]
            U_arr = np.transpose(U_arr, order + ([U_arr.ndim - 1] if U_arr.ndim > len(dims) else []))
            space_dims = [dims[i] for i in order[1:]]
            t = coords_src[time_dim].values if time_dim in coords_src.coords else t
            x = [coords_src[d].values if d in coords_src.coords else 1.0 for d in space_dims]
            axis_names = [str(d) for d in space_dims]
            meta.update(time_dim=time_dim, space_dims=space_dims)
            if U_arr.ndim == 1 + len(space_dims):
                U_arr = U_arr[..., None]
        else:
            # scikit-learn's checks give the standard messages for sparse,
            # complex, empty, non-finite and too-short input.
            n_spatial = len(x) if isinstance(x, (list, tuple)) else 1
            if _is_tensor(U):
                # Kept on its device: the weak form integrates it there.
                U_arr = _check_tensor(U, U.ndim, "U")
            else:
                U_arr = check_array(
                    U, dtype=np.float64, allow_nd=True, ensure_min_samples=3, ensure_min_features=3, input_name="U"
                )
            x = list(x) if isinstance(x, (list, tuple)) else [x]
            if U_arr.ndim == 1 + n_spatial:
                U_arr = U_arr[..., None]
            elif U_arr.ndim != 2 + n_spatial:
                raise ValueError(
                    f"U has {U_arr.ndim} dimensions; expected (n_times, {n_spatial} spatial axes[, n_fields])"
                )
        if not _is_tensor(U_arr):
            U_arr = np.asarray(U_arr, dtype=np.float64)
            if U_arr.size == 0:
                raise ValueError("U is empty")
            if not np.all(np.isfinite(U_arr)):
                raise ValueError("U contains NaN or inf")
        n_spatial = U_arr.ndim - 2
        coords = [_coordinates(t, U_arr.shape[0], "t")] + [
            _coordinates(xi, U_arr.shape[1 + i], f"x[{i}]" if n_spatial > 1 else "x", 1 + i) for i, xi in enumerate(x)
        ]
        for i, c in enumerate(coords):
            _check_min_samples(c.size, 3, f"axis {i} of U")
        if axis_names is None:
            axis_names = ["x", "y", "z"][:n_spatial] if n_spatial <= 3 else [f"x{i}" for i in range(n_spatial)]
        n_vars = U_arr.shape[-1]
        if self.feature_names is not None:
            names = [str(n) for n in self.feature_names]
        elif names is None:
            names = ["u"] if n_vars == 1 else [f"u{i}" for i in range(n_vars)]
        if len(names) != n_vars:
            raise ValueError(f"{len(names)} field names for {n_vars} fields")
        return U_arr, coords, names, axis_names, meta

    def _library(self):
        lib = PDELibrary() if self.library is None else self.library
        if not isinstance(lib, PDELibrary):
            raise TypeError(f"library must be a PDELibrary, got {type(lib).__name__}")
        return lib

    def fit(self, U, y=None, *, t=1.0, x=1.0):
        """Discover the PDE from one space-time field (or several coupled fields).

        Parameters
        ----------
        U : array_like of shape (n_times, n_x[, ...][, n_fields]) or xarray
            Time on axis 0. A ``DataArray``/``Dataset`` gives its own
            coordinates (the time dimension is ``t``/``time`` or the first).
        y : None
            Ignored (scikit-learn convention).
        t : float or array_like, default=1.0
            Time step or stamps.
        x : float, array_like, or list of those, default=1.0
            Spatial step or coordinates; a list for several spatial axes.

        Returns
        -------
        self
        """
        _check_y_ignored(y, "fit")
        self._reset()
        self._spatial()  # validated up front, though only the strong form and predict use it
        U, coords, names, axis_names, meta = self._parse(U, t, x)
        lib = self._library()
        n_spatial = U.ndim - 2
        terms = lib.terms(U.shape[-1], n_spatial)
        method = WeakForm() if self.differentiation is None else self.differentiation
        if isinstance(method, WeakForm):
            max_order = [1] + [max([a[i] for _, a in terms] + [0]) for i in range(n_spatial)]
            axes = method.axes(coords, U, max_order, n_terms=len(terms))
            self.test_functions_ = axes
            G, b = _weak_pde_system(U, axes, terms)
            n_effective = float(np.prod([axis.n_independent for axis in axes]))
        elif isinstance(method, Differentiator) or callable(method):
            U = _to_numpy(U)  # derivative estimators run on the CPU
            G = _strong_pde_terms(U, coords, terms, self._spatial())
            b = _differentiate(method, U, coords[0], 0).reshape(-1, U.shape[-1])
            n_effective = None
        else:
            raise TypeError(
                f"differentiation must be a WeakForm or a derivative estimator, got {type(method).__name__}"
            )
        self._fit_optimizer(G, b, n_effective)
        self.device_ = str(U.device) if _is_tensor(U) else "cpu"
        self.terms_ = terms
        self.term_names_ = lib.feature_names(names, axis_names)
        self.variable_names_ = names
        self.axis_names_ = axis_names
        self.n_features_in_ = int(np.prod(U.shape[1:]))
        self._coords = coords
        self._meta = meta
        return self

    def _spatial(self):
        method = self.spatial_differentiation
        if method is None:
            return FiniteDifference(order=4)
        if not (isinstance(method, Differentiator) or callable(method)):
            raise TypeError(
                "spatial_differentiation must be a derivative estimator (FiniteDifference, SpectralDerivative, ...) "
                f"or a callable f(u, x), got {method!r}"
            )
        return method

    def _lhs_names(self):
        return [f"{n}_t" for n in self.variable_names_]

    def predict(self, U, *, x=None):
        """Evaluate the discovered right-hand side on fields (strong form).

        Parameters
        ----------
        U : array_like or xarray
            Fields shaped as in :meth:`fit`.
        x : optional
            Spatial coordinates; default: those seen in ``fit``.

        Returns
        -------
        ndarray shaped like ``U`` (with the field axis when there are several),
        or xarray like the input: a ``DataArray`` with its dimensions in the
        input's order, a ``Dataset`` with one variable per field.
        """
        check_is_fitted(self, "coef_")
        if x is None:
            x = [c for c in self._coords[1:]]
            x = x[0] if len(x) == 1 else x
        is_xr = _is_xarray(U)
        if _is_xarray(U, "Dataset") and all(n in U.data_vars for n in self.variable_names_):
            # Fields by name, not by the Dataset's order.
            U = U[list(self.variable_names_)]
        template = U
        # The input's own layout (its time dimension need not be first), not the fit's.
        U_arr, coords, _, _, meta = self._parse(U, 1.0, x)
        U_arr = _to_numpy(U_arr)
        if U_arr.shape[-1] != len(self.variable_names_):
            raise ValueError(f"U has {U_arr.shape[-1]} fields, the model has {len(self.variable_names_)}")
        G = _strong_pde_terms(U_arr, coords, self.terms_, self._spatial())
        out = (G @ self.coef_.T).reshape(U_arr.shape)
        if U_arr.shape[-1] == 1 and not is_xr:
            squeeze = np.ndim(U) == U_arr.ndim - 1
            out = out[..., 0] if squeeze else out
        if _is_xarray(template, "DataArray"):
            return template.copy(data=out[..., 0].transpose(*_inverse_order(template.dims, meta)))
        if _is_xarray(template, "Dataset"):
            import xarray as xr

            dims = meta["dims"]
            inverse = _inverse_order(dims, meta)
            fields = [str(v) for v in template.data_vars]
            return xr.Dataset(
                {v: (dims, out[..., i].transpose(*inverse)) for i, v in enumerate(fields)}, coords=template.coords
            )
        return out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = False
        return tags


def _inverse_order(dims, meta):
    """Axis permutation from the time-first layout back to ``dims``."""
    dims = list(dims)
    time_dim = meta.get("time_dim", dims[0])
    order = [dims.index(time_dim)] + [i for i, d in enumerate(dims) if d != time_dim]
    return list(np.argsort(order))


def _weak_pde_system(U, axes, terms):
    """Weak-form matrix ``G`` (test functions x terms) and left-hand side ``b``."""
    n_vars = U.shape[-1]
    n_spatial = U.ndim - 2
    rows = []
    monomials = {}
    for exps, alpha in terms:
        if exps not in monomials:
            values = monomial_values(U, exps)
            # Time first: the time kernel never carries a derivative on the right-hand side.
            monomials[exps] = axes[0].integrate(values, 0, 0)
        out = monomials[exps]
        for i in range(n_spatial):
            out = axes[i + 1].integrate(out, alpha[i], i + 1)
        rows.append(_to_numpy(out).ravel() * (-1.0) ** sum(alpha))
    G = np.stack(rows, axis=1)
    lhs = []
    for v in range(n_vars):
        out = axes[0].integrate(U[..., v], 1, 0)
        for i in range(n_spatial):
            out = axes[i + 1].integrate(out, 0, i + 1)
        lhs.append(-_to_numpy(out).ravel())
    return G, np.stack(lhs, axis=1)


def _strong_pde_terms(U, coords, terms, spatial):
    """Strong-form library: every term evaluated on the grid, one column each."""
    cols = []
    for exps, alpha in terms:
        values = monomial_values(U, exps)
        for i, a in enumerate(alpha):
            if a:
                values = _differentiate(spatial, values, coords[i + 1], i + 1, order=a)
        cols.append(values.ravel())
    return np.stack(cols, axis=1)
