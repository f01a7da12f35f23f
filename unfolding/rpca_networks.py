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

A learned schedule fits the convergence speed of its training problems;
on harder ones (more outliers) it would let the threshold fall below the
error of ``L R^T`` on the clean entries, where ``E`` and with it every
update vanish, and the layers stall.  So each layer's threshold is at least
``residual_floor`` times the median absolute residual ``|L R^T - Y|``,
estimated on a fixed random sample of entries: for Gaussian-like clean
residuals 5 medians are 3.4 standard deviations, so most clean entries are
left alone.  Measured on ``python -m benchmarks rpca``'s R1 setting (trained
100 s on 500 x 500 at 10 % outliers, tested on 1000 x 1000): at 20 %
outliers the network without the floor stalled at 2.2e-5 from layer 7 on
(tuned ScaledGD: 7.3e-6), with it reached 5.7e-7; at 10 % both reached a
few 1e-10.  On small matrices (80 x 80, rank 3) the floor binds on the
training problems too and cost up to 2x in error after a short training.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .rpca_classical import scaledgd_init, scaledgd_step

__all__ = ["UnfoldedRPCA", "rms"]

# Entries sampled for the median absolute residual of the threshold floor
# (its relative standard error is about 2 %); the sample is fixed by a seed so
# that the network is deterministic.
_FLOOR_SAMPLE = 4096
_FLOOR_SEED = 20211206


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
    residual_floor : float, default=5.0
        Each layer's threshold is at least this many median absolute
        residuals ``|L R^T - Y|`` (see the module docstring); 0 turns the
        floor off (the network is then exactly ScaledGD with learned
        parameters).

    Attributes
    ----------
    log_step : torch.nn.Parameter of shape (n_layers,)
    log_threshold : torch.nn.Parameter of shape (n_layers + 1,)
        ``log zeta_k``; entry 0 is the initialisation's threshold (not
        trained by gradient: the estimator selects it on the training
        problems, since the SVD it feeds makes its gradient unreliable).
    """

    # Networks pickled before the floor existed run without it, as trained.
    residual_floor = 0.0

    def __init__(self, n_layers, *, step=0.7, threshold=2.0, decay=0.6, residual_floor=5.0):
        super().__init__()
        self.n_layers = int(n_layers)
        self.residual_floor = float(residual_floor)
        if not (math.isfinite(self.residual_floor) and self.residual_floor >= 0):
            raise ValueError(f"residual_floor must be a finite number >= 0, got {residual_floor!r}")
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
        floor = self._floor_sampler(Y) if self.residual_floor > 0 else None
        outputs = []
        for k in range(start, n_layers):
            threshold = self._floored(thresholds[k + 1] * scale, floor, left, right)
            left, right, _ = scaledgd_step(Y, left, right, steps[k], threshold, return_sparse=False)
            outputs.append((left, right))
        if return_all:
            return outputs
        return left, right

    def outlier_threshold(self, Y, left, right, n_layers):
        """The absolute threshold after `n_layers` layers for the factors ``(left, right)``: shape (..., 1, 1).

        ``zeta_{n_layers} rms(Y)``, floored as in the layers (``n_layers >= 1``);
        ``S = soft(Y - left @ right.mT, threshold)`` is the matching outlier
        estimate.
        """
        threshold = self.log_threshold[n_layers].exp().to(Y.device, Y.dtype) * rms(Y)
        floor = self._floor_sampler(Y) if n_layers >= 1 and self.residual_floor > 0 else None
        return self._floored(threshold, floor, left, right)

    def _floored(self, threshold, floor, left, right):
        """``threshold`` raised to ``residual_floor`` median residuals of the factors (``floor=None``: as is)."""
        if floor is None:
            return threshold
        return torch.maximum(threshold, self.residual_floor * floor(left, right))

    @staticmethod
    def _floor_sampler(Y):
        """A function of the factors: the median of ``|L R^T - Y|`` over a fixed sample, shape (..., 1, 1)."""
        m, n = Y.shape[-2:]
        generator = torch.Generator(device=Y.device).manual_seed(_FLOOR_SEED)
        flat = torch.randint(m * n, (min(_FLOOR_SAMPLE, m * n),), generator=generator, device=Y.device)
        rows, cols = flat // n, flat % n
        sampled = Y[..., rows, cols]

        def median_residual(left, right):
            residual = (left[..., rows, :] * right[..., cols, :]).sum(-1) - sampled
            return residual.abs().median(dim=-1).values[..., None, None]

        return median_residual
