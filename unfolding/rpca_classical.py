"""Classical Robust PCA: ``Y = L + S`` with ``L`` low-rank and ``S`` sparse.

ScaledGD (Tong, Ma & Chi 2021) with soft-thresholded outliers, the
algorithm that LRPCA (Cai, Liu & Yin 2021) unfolds: the layers of
:class:`unfolding.rpca_networks.UnfoldedRPCA` are :func:`scaledgd_step`
with learned step sizes and thresholds, so the classical baseline and the
network share one implementation.

The functions here work on torch tensors (CPU or CUDA, batched over
leading axes); the public drivers accept numpy arrays as well and return
the input's type.
"""

from __future__ import annotations

__all__ = ["truncated_svd", "scaledgd_init", "scaledgd_step"]


def truncated_svd(M, rank, generator=None, *, n_oversamples=10, n_power_iter=2):
    """The leading ``rank`` singular triplets of ``M`` (batched over leading axes).

    A full SVD when ``min(m, n) <= 4 * (rank + n_oversamples)``, else the
    randomised range finder (Halko, Martinsson & Tropp 2011) with power
    iterations; its Gaussian test matrix comes from ``generator``, never
    from torch's global RNG.  Differentiable (through QR and the small SVD).

    Parameters
    ----------
    M : torch.Tensor of shape (..., m, n)
    rank : int
    generator : torch.Generator or None
        On ``M``'s device; required by the randomised path.
    n_oversamples : int, default=10
    n_power_iter : int, default=2

    Returns
    -------
    U : torch.Tensor (..., m, rank)
    s : torch.Tensor (..., rank)
    Vh : torch.Tensor (..., rank, n)
    """
    import torch

    m, n = M.shape[-2:]
    width = rank + n_oversamples
    if min(m, n) <= 4 * width:
        U, s, Vh = torch.linalg.svd(M, full_matrices=False)
        return U[..., :rank], s[..., :rank], Vh[..., :rank, :]
    if generator is None:
        raise ValueError("truncated_svd: the randomised SVD needs a torch.Generator")
    omega = torch.randn(M.shape[:-2] + (n, width), generator=generator, dtype=M.dtype, device=M.device)
    Q = torch.linalg.qr(M @ omega).Q
    for _ in range(n_power_iter):  # re-orthonormalise each pass: keeps small singular directions
        Q = torch.linalg.qr(M.mT @ Q).Q
        Q = torch.linalg.qr(M @ Q).Q
    Ub, s, Vh = torch.linalg.svd(Q.mT @ M, full_matrices=False)
    return (Q @ Ub)[..., :rank], s[..., :rank], Vh[..., :rank, :]


def scaledgd_init(Y, rank, threshold, generator=None):
    """Spectral initialisation: ``S0 = soft(Y, threshold)``, factors of ``SVD_r(Y - S0)``.

    Parameters
    ----------
    Y : torch.Tensor of shape (..., m, n)
    rank : int
    threshold : float or torch.Tensor broadcastable to (..., 1, 1)
    generator : torch.Generator or None
        For the randomised SVD of large matrices (see :func:`truncated_svd`).

    Returns
    -------
    left : torch.Tensor (..., m, rank)
        ``U sqrt(Sigma)``.
    right : torch.Tensor (..., n, rank)
        ``V sqrt(Sigma)``, so that ``left @ right.mT`` is the rank-r part.
    """
    from sciml.prox import soft_threshold

    U, s, Vh = truncated_svd(Y - soft_threshold(Y, threshold), rank, generator)
    root = s.sqrt().unsqueeze(-2)
    return U * root, Vh.mT * root


def scaledgd_step(Y, left, right, step, threshold):
    """One ScaledGD iteration for RPCA with soft-thresholded outliers (an LRPCA layer).

    ``S = soft(Y - L R^T, threshold)``, then with ``E = L R^T + S - Y``:
    ``L <- L - step E R (R^T R)^{-1}`` and ``R <- R - step E^T L (L^T L)^{-1}``.
    The preconditioners make the rate independent of ``L``'s condition
    number.

    Parameters
    ----------
    Y : torch.Tensor (..., m, n)
    left, right : torch.Tensor (..., m, r), (..., n, r)
    step, threshold : float or torch.Tensor broadcastable to (..., 1, 1)

    Returns
    -------
    left, right : torch.Tensor
        The updated factors.
    sparse : torch.Tensor (..., m, n)
        The outlier estimate ``S`` of this iteration.
    """
    import torch

    from sciml.prox import soft_threshold

    sparse = soft_threshold(Y - left @ right.mT, threshold)
    residual = left @ right.mT + sparse - Y
    # (E R)(R^T R)^{-1} = solve(R^T R, (E R)^T)^T, since R^T R is symmetric.
    grad_left = torch.linalg.solve(right.mT @ right, (residual @ right).mT).mT
    grad_right = torch.linalg.solve(left.mT @ left, (residual.mT @ left).mT).mT
    return left - step * grad_left, right - step * grad_right, sparse
