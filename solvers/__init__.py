"""Solvers for large sparse symmetric positive definite systems.

:func:`~solvers.cg.cg` is conjugate gradients on the sparse core with scipy's
signature, optionally preconditioned by :class:`~solvers.cg.Jacobi` or
:class:`~solvers.cg.IncompleteCholesky` (IC(0)); it returns the solution and a
:class:`~solvers.cg.CGResult` (iterations, residual history, convergence flag,
reason). The learned conjugate-direction solver lands with its issue.
"""

from .cg import CGResult, IncompleteCholesky, Jacobi, cg, check_spd_matrix

__all__ = ["cg", "CGResult", "Jacobi", "IncompleteCholesky", "check_spd_matrix"]
