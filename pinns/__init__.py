"""Physics-informed networks trained from sparse, noisy observations.

Estimators with scikit-learn's contract:

* :class:`PINNRegressor`: forward problems, data assimilation and inverse
  problems (unknown physical parameters, ``params_``; with noisy data,
  :class:`Continuation` takes them to the equation-constrained fit);
* :class:`HiddenTermPINN`: an auxiliary network learns an unknown term of
  the equation, and a sparse regression names it (``symbolic_``).

Problems read like the mathematics: an :class:`Equation` is a residual
function written with :func:`derivative`, :func:`laplacian`...; ready-made
ones are :func:`burgers`, :func:`heat`, :func:`diffusion_reaction`,
:func:`lorenz` and :func:`fisher_kpp`.  Domains are :class:`Box` or any
DeepXDE geometry; conditions are :class:`DirichletBC`, :class:`NeumannBC`
and :class:`InitialCondition`, soft or hard.  Reference solutions for
checking live in :mod:`pinns.data`.

Importing this package prints nothing and imports neither torch's CUDA
runtime nor DeepXDE (a DeepXDE geometry passed as a domain is used through
its methods; the package never imports DeepXDE itself).
"""

from .conditions import DirichletBC, InitialCondition, NeumannBC
from .equations import (
    Equation,
    HiddenTerm,
    burgers,
    diffusion_reaction,
    fisher_kpp,
    heat,
    lorenz,
)
from .estimators import Continuation, HiddenTermPINN, PINNRegressor, Unknown
from .geometry import Box, as_domain
from .ops import derivative, divergence, gradient, laplacian

__all__ = [
    "Box",
    "Continuation",
    "DirichletBC",
    "Equation",
    "HiddenTerm",
    "HiddenTermPINN",
    "InitialCondition",
    "NeumannBC",
    "PINNRegressor",
    "Unknown",
    "as_domain",
    "burgers",
    "derivative",
    "diffusion_reaction",
    "divergence",
    "fisher_kpp",
    "gradient",
    "heat",
    "laplacian",
    "lorenz",
]
