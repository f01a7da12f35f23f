"""Unfolded Robust PCA (LRPCA, Cai, Liu & Yin 2021): ScaledGD with learned steps and thresholds.

Layer ``k`` is one :func:`unfolding.rpca_classical.scaledgd_step`

    S   <- soft(Y - L R^T, zeta_k * rms(Y))
    L   <- L - eta_k (L R^T + S - Y) R (R^T R)^{-1}
    R   <- R - eta_k (L R^T + S - Y)^T L (L^T L)^{-1}

with a learned step ``eta_k`` and threshold ``zeta_k`` per layer, after the
spectral initialisation ``SVD_r(Y - soft(Y, zeta_0 rms(Y)))``.  Thresholds
are relative to the root-mean-square entry of ``Y``, so the network is
equivariant to scaling ``Y``, and its 2 K parameters do not depend on the
matrix size or the rank: a network trained on 500 x 500 matrices applies
to 1000 x 1000 ones, and to another rank.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .rpca_classical import scaledgd_init, scaledgd_step

__all__ = ["UnfoldedRPCA", "rms"]


def rms(Y):
    """Root-mean-square entry of each matrix of a (..., m, n) tensor, shape (..., 1, 1)."""
    return Y.square().mean(dim=(-2, -1), keepdim=True).sqrt()


class UnfoldedRPCA(nn.Module):
    """The LRPCA network: ScaledGD layers with a learned step and threshold each.

    Parameters
    ----------
    n_layers : int
    step : float, default=0.7
        Initial step of every layer.
    threshold : float, default=2.0
        Initialisation threshold ``zeta_0`` (relative to ``rms(Y)``); layer
        ``k`` starts at ``threshold * decay**k``: the classical ScaledGD
        schedule the training improves on.
    decay : float, default=0.6

    Attributes
    ----------
    log_step : torch.nn.Parameter of shape (n_layers,)
    log_threshold : torch.nn.Parameter of shape (n_layers + 1,)
        ``log zeta_k``; entry 0 is the initialisation's threshold (not
        trained by gradient: the estimator selects it on the training
        problems, since the SVD it feeds makes its gradient unreliable).
    """

    def __init__(self, n_layers, *, step=0.7, threshold=2.0, decay=0.6):
        super().__init__()
        self.n_layers = int(n_layers)
        self.log_step = nn.Parameter(torch.full((self.n_layers,), math.log(step), dtype=torch.float64))
        schedule = [math.log(threshold) + k * math.log(decay) for k in range(self.n_layers + 1)]
        self.log_threshold = nn.Parameter(torch.tensor(schedule, dtype=torch.float64))

    def initialize(self, Y, rank, generator=None):
        """The spectral initialisation: factors ``(left, right)`` of shape (..., m, r), (..., n, r)."""
        threshold = self.log_threshold[0].detach().exp().to(Y.device, Y.dtype)
        return scaledgd_init(Y, rank, threshold * rms(Y), generator)

    def forward(self, Y, rank=None, *, factors=None, n_layers=None, start=0, return_all=False, generator=None):
        """Run layers ``start .. n_layers - 1``.

        Parameters
        ----------
        Y : torch.Tensor of shape (..., m, n)
        rank : int or None
            Rank of the low-rank part; needed unless ``factors`` is given.
        factors : tuple of torch.Tensor or None
            ``(left, right)`` to start from (the output of :meth:`initialize`
            or of earlier layers); ``None`` runs the initialisation.
        n_layers : int or None
            Stop after this many layers (default: all).
        start : int, default=0
            Index of the first layer to run (``factors`` are its input).
        return_all : bool, default=False
            Return the list of every layer's ``(left, right)``.
        generator : torch.Generator or None
            For the randomised SVD of the initialisation on large matrices.

        Returns
        -------
        left, right : torch.Tensor
            The last layer's factors, ``L = left @ right.mT``; a list of
            such pairs with ``return_all``.  (The outliers follow from them:
            ``S = soft(Y - L, zeta_K rms(Y))``.)
        """
        n_layers = self.n_layers if n_layers is None else int(n_layers)
        if factors is None:
            if rank is None:
                raise ValueError("UnfoldedRPCA.forward needs the rank or initial factors")
            factors = self.initialize(Y, rank, generator)
        left, right = factors
        scale = rms(Y)
        steps = self.log_step.exp().to(Y.device, Y.dtype)
        thresholds = self.log_threshold.exp().to(Y.device, Y.dtype)
        outputs = []
        for k in range(start, n_layers):
            left, right, _ = scaledgd_step(Y, left, right, steps[k], thresholds[k + 1] * scale,
                                           return_sparse=False)
            outputs.append((left, right))
        if return_all:
            return outputs
        return left, right
