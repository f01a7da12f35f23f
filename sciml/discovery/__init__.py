"""Equation discovery: SINDy-style sparse identification of ODEs and PDEs.

Estimators (:class:`SINDy` for ODEs, :class:`PDESINDy` for PDEs) compose a
candidate-function library, a differentiation (a derivative estimator, or the
weak form :class:`WeakForm`, the default) and a sparse-regression optimizer
(:class:`STLSQ`, :class:`IHT`, :class:`ISTA`, :class:`SR3`, :class:`BestSubset`, bagged by
:class:`EnsembleOptimizer`). The optimizers also work inside ``pysindy.SINDy``.
Trajectory generators for tests and examples are in
:mod:`sciml.discovery.data`.
"""

from .differentiation import (
    Differentiator,
    FiniteDifference,
    SavitzkyGolay,
    SpectralDerivative,
    TotalVariation,
)
from .estimators import PDESINDy, SINDy, WeakForm
from .libraries import PDELibrary
from .optimizers import IHT, ISTA, SR3, STLSQ, BestSubset, EnsembleOptimizer, SparseRegressor

__all__ = [
    "SINDy",
    "PDESINDy",
    "WeakForm",
    "PDELibrary",
    "SparseRegressor",
    "STLSQ",
    "IHT",
    "ISTA",
    "SR3",
    "BestSubset",
    "EnsembleOptimizer",
    "Differentiator",
    "FiniteDifference",
    "SavitzkyGolay",
    "SpectralDerivative",
    "TotalVariation",
]
