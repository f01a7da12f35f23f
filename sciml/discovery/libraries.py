"""Candidate-function libraries.

ODE libraries are any scikit-learn transformer with ``get_feature_names_out``
(``sklearn.preprocessing.PolynomialFeatures`` is the default: it is fast and
names terms as ``x``, ``x^2``, ``x y``) or any PySINDy feature library
(``pysindy.PolynomialLibrary``, ``FourierLibrary``, ``CustomLibrary``, their
sums and tensor products), used as they are.

PDE libraries are :class:`PDELibrary`: spatial derivatives of monomials of the
fields, ``d^a (u^k v^l ...)``, written in conservative form so that the same
library serves the strong form (differentiate the data) and the weak form
(integrate by parts onto the test function): ``u u_x`` appears as
``(u^2)_x = 2 u u_x``.
"""

from __future__ import annotations

import copy
import itertools

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.preprocessing import PolynomialFeatures

from .._validation import check_nonneg_int, check_positive_int
from ..prox import _is_tensor

__all__ = ["PDELibrary", "FittedLibrary"]


class FittedLibrary:
    """A fitted ODE library: evaluation and term names, whatever its origin.

    Parameters
    ----------
    library : transformer
        scikit-learn transformer or PySINDy feature library (cloned, then fit).
    X : ndarray of shape (n_samples, n_variables)
        Data to fit it on.
    variable_names : list of str
    """

    def __init__(self, library, X, variable_names):
        if not (hasattr(library, "fit") and hasattr(library, "transform")):
            raise TypeError(
                "library must be a scikit-learn transformer or a PySINDy feature library "
                f"(with fit and transform), got {type(library).__name__}"
            )
        try:
            fresh = clone(library)
        except (AttributeError, TypeError, RuntimeError):
            # Some PySINDy libraries (CustomLibrary) keep parameters clone cannot read back.
            fresh = copy.deepcopy(library)
        self.library = fresh.fit(X)
        if hasattr(self.library, "get_feature_names_out"):
            names = self.library.get_feature_names_out(list(variable_names))
        elif hasattr(self.library, "get_feature_names"):
            names = self.library.get_feature_names(list(variable_names))
        else:
            names = [f"f{i}" for i in range(self.transform(X).shape[1])]
        self.names = [str(n) for n in names]

    def transform(self, X):
        """Evaluate every term: an ``(n_samples, n_terms)`` array.

        A torch tensor stays on its device for ``PolynomialFeatures`` (through
        its ``powers_``); any other library is evaluated on the CPU and its
        result moved back to the tensor's device.
        """
        if _is_tensor(X):
            import torch

            powers = getattr(self.library, "powers_", None)
            if isinstance(self.library, PolynomialFeatures) and powers is not None:
                powers = torch.as_tensor(powers, dtype=X.dtype, device=X.device)
                return torch.prod(X[:, None, :] ** powers[None, :, :], dim=2)
            values = self.transform(X.detach().cpu().double().numpy())
            return torch.as_tensor(values, dtype=X.dtype, device=X.device)
        out = self.library.transform(X)
        if hasattr(out, "toarray"):
            out = out.toarray()
        return np.asarray(out, dtype=np.float64)


class PDELibrary(BaseEstimator):
    """Spatial derivatives of monomials of the fields, in conservative form.

    Terms are ``d^a m(u)`` for every monomial ``m`` of the fields with total
    degree ``1..degree`` and every spatial multi-index ``a`` with total order
    ``0..derivative_order``, plus the constant ``1`` with ``include_bias``.

    Parameters
    ----------
    degree : int, default=3
        Highest total degree of the monomials.
    derivative_order : int, default=4
        Highest total order of the spatial derivatives.
    include_bias : bool, default=True

    Examples
    --------
    >>> PDELibrary(degree=2, derivative_order=2).feature_names(["u"], ["x"])
    ['1', 'u', 'u_x', 'u_xx', 'u^2', '(u^2)_x', '(u^2)_xx']
    """

    def __init__(self, degree=3, derivative_order=4, include_bias=True):
        self.degree = degree
        self.derivative_order = derivative_order
        self.include_bias = include_bias

    def terms(self, n_variables, n_spatial):
        """The terms as ``(exponents, alpha)`` pairs; the bias is ``(zeros, zeros)``.

        Parameters
        ----------
        n_variables : int
        n_spatial : int

        Returns
        -------
        list of (tuple of int, tuple of int)
        """
        degree = check_positive_int("degree", self.degree)
        order = check_nonneg_int("derivative_order", self.derivative_order)
        out = []
        if self.include_bias:
            out.append(((0,) * n_variables, (0,) * n_spatial))
        alphas = [a for total in range(order + 1) for a in _multi_indices(n_spatial, total)]
        for total_degree in range(1, degree + 1):
            for exps in _multi_indices(n_variables, total_degree):
                for alpha in alphas:
                    out.append((exps, alpha))
        return out

    def feature_names(self, variable_names, axis_names):
        """Readable names of :meth:`terms`, e.g. ``u_xx`` or ``(u^2)_x``."""
        names = []
        for exps, alpha in self.terms(len(variable_names), len(axis_names)):
            mono = _monomial_name(exps, variable_names)
            if not any(alpha):
                names.append(mono)
                continue
            sub = "".join(ax * a for ax, a in zip(axis_names, alpha))
            simple = sum(exps) == 1
            names.append(f"{mono}_{sub}" if simple else f"({mono})_{sub}")
        return names


def _multi_indices(n, total):
    """All tuples of n non-negative ints summing to ``total`` (lexicographically descending)."""
    if n == 0:
        return [()] if total == 0 else []
    result = []
    for combo in itertools.combinations_with_replacement(range(n), total):
        exps = [0] * n
        for i in combo:
            exps[i] += 1
        result.append(tuple(exps))
    return result


def _monomial_name(exps, variable_names):
    if not any(exps):
        return "1"
    parts = []
    for name, e in zip(variable_names, exps):
        if e == 1:
            parts.append(name)
        elif e > 1:
            parts.append(f"{name}^{e}")
    return " ".join(parts)


def monomial_values(fields, exps):
    """Evaluate the monomial ``prod_i fields[..., i] ** exps[i]`` (numpy or torch, same type back)."""
    out = fields[..., 0] * 0 + 1
    for i, e in enumerate(exps):
        if e:
            out = out * fields[..., i] ** e
    return out
