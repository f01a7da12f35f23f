"""Solvers for large sparse symmetric positive definite systems.

:func:`~solvers.cg.cg` is conjugate gradients on the sparse core with scipy's
signature, optionally preconditioned by :class:`~solvers.cg.Jacobi` or
:class:`~solvers.cg.IncompleteCholesky` (IC(0)); it returns the solution and a
:class:`~solvers.cg.CGResult` (iterations, residual history, convergence flag,
reason). :mod:`solvers.problems` generates 2-D/3-D Poisson systems on grids
(Dirichlet or fluid-style Neumann walls, obstacles, variable coefficients) and
right-hand-side families; :mod:`solvers.dcdm` holds the learned
conjugate-direction solver (``DCDMSolver``), imported on demand because it
needs torch.
"""

from .cg import CGResult, IncompleteCholesky, Jacobi, cg, check_spd_matrix

__all__ = ["cg", "CGResult", "Jacobi", "IncompleteCholesky", "check_spd_matrix"]
