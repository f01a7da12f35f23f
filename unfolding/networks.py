"""Unfolded ISTA / IHT networks: one family, configured by options.

Layer ``k`` maps the current estimate ``x`` to

    x <- prox_k( x - step_k * W_k^T (A x - y) )

with the options

* ``weights="tied"``: ``W_k = A`` (the seed paper's unfolded ISTA/IHT:
  only per-layer steps and thresholds are learned);
* ``weights="analytic"``: ``W_k = W`` computed from A (ALISTA): the
  column-wise minimiser of ``||W^T A||_F`` subject to ``diag(W^T A) = 1``,
  ``W = (A A^T)^{-1} A D``; only steps and thresholds are learned;
* ``weights="untied"``: a learned ``W_k`` per layer (LISTA-CP's coupled
  form), initialised from the analytic ``W``;
* ``prox="soft"``: soft thresholding at a learned ``theta_k`` (l1, ISTA);
  ``prox="hard"``: hard thresholding at ``sqrt(2 * lam0 * step_k)``, the
  proximal operator of ``step_k * lam0 * ||.||_0`` (IHT; hard thresholding
  has no gradient in its threshold, so it is tied to the learned step);
  ``prox="topk"``: keep the k largest entries (known sparsity);
* ``support_selection=True`` (soft only): of the ``p_k`` largest entries
  of each signal, those above the threshold pass unshrunk (LISTA-CPSS's
  ``eta_ss``), ``p_k = min(k * ss_step, ss_max)`` (ALISTA's schedule),
  which removes the shrinkage bias on the found support.

Steps and thresholds are stored as logarithms: positive by construction,
and Adam's updates are relative, which suits thresholds that shrink by
orders of magnitude from the first layer to the last.

Signals are rows at the interface (``(n_samples, n)``).  With a dense A
they stay rows inside (top-k and support selection then work along
contiguous memory: 5x faster than along columns); with a scipy-sparse A
they are columns inside (``(n, batch)``), so that A multiplies through
:func:`sciml.sparse.spmm` without a transpose per layer.  A
:class:`scipy.sparse.linalg.LinearOperator` A uses the same column layout:
its ``matmat`` / ``rmatmat`` run on numpy inside a
:class:`torch.autograd.Function` (:func:`operator_matmul`), so such a
network computes on the CPU only.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg
import torch
from torch import nn
from torch.autograd.function import once_differentiable

from sciml.prox import hard_threshold, hard_threshold_topk, soft_threshold
from sciml.sparse import spmm, to_torch_csr

from .classical import _check_linear_operator, _is_linear_operator, default_step

__all__ = ["UnfoldedNetwork", "analytic_weights", "operator_matmul"]

_WEIGHTS = ("tied", "analytic", "untied")
_PROX = ("soft", "hard", "topk")


def analytic_weights(A):
    """ALISTA's analytic weight matrix (Frobenius version).

    Parameters
    ----------
    A : ndarray of shape (m, n)
        Dense sensing matrix with ``m <= n`` and full row rank.

    Returns
    -------
    W : ndarray of shape (m, n)
        ``W[:, i] = (A A^T)^{-1} a_i / (a_i^T (A A^T)^{-1} a_i)``: column i
        minimises ``||A^T w||_2`` subject to ``w^T a_i = 1``, so that
        ``W^T A`` has a unit diagonal and small off-diagonal entries.
    """
    A = np.asarray(A, dtype=np.float64)
    m, n = A.shape
    rank = np.linalg.matrix_rank(A)
    if rank < m:
        raise ValueError(
            f"analytic weights need A with full row rank ({m} for a {m} x {n} A), but A has rank {rank}: "
            "remove redundant measurements or use weights='tied'"
        )
    gram_inv_A = np.linalg.solve(A @ A.T, A)
    scale = np.einsum("ij,ij->j", A, gram_inv_A)
    if np.any(scale <= 0):
        raise ValueError("A must have full row rank for analytic weights")
    return gram_inv_A / scale


def _apply_operator(operator, X, transpose):
    """``operator @ X`` (or its adjoint's) on a CPU tensor's numpy view, as a tensor of X's dtype."""
    if X.device.type != "cpu":
        raise ValueError(
            f"A is a LinearOperator, which computes on numpy (the CPU), but the operand is on "
            f"{X.device}: run a LinearOperator network on the CPU"
        )
    x = X.detach().resolve_neg().resolve_conj().numpy()
    out = np.asarray(operator.rmatmat(x) if transpose else operator.matmat(x))
    if out.dtype != x.dtype or not out.flags.c_contiguous or not out.flags.writeable:
        out = np.array(out, dtype=x.dtype, order="C")
    return torch.from_numpy(out)


class _OperatorMatmul(torch.autograd.Function):
    """``A @ X`` through a LinearOperator's ``matmat``; the backward applies ``rmatmat``.

    With ``transpose=True`` the roles swap: ``A^T @ X`` by ``rmatmat``, the
    backward by ``matmat``.  Only ``X`` gets a gradient.
    """

    @staticmethod
    def forward(ctx, X, operator, transpose):
        ctx.operator, ctx.transpose = operator, transpose
        return _apply_operator(operator, X, transpose)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        # d<G, A X>/dX = A^T G (real A: the adjoint is the transpose).
        return _apply_operator(ctx.operator, grad, not ctx.transpose), None, None


def operator_matmul(operator, X, transpose=False):
    """Differentiable ``A @ X`` (or ``A^T @ X``) for a real LinearOperator A.

    Parameters
    ----------
    operator : scipy.sparse.linalg.LinearOperator, shape (m, n)
        Real (float32 or float64); its ``matmat`` / ``rmatmat`` compute the
        products on numpy arrays.
    X : torch.Tensor of shape (n, k) (or (m, k) if `transpose`)
        On the CPU.
    transpose : bool, default=False
        Apply the adjoint ``A^T`` (``rmatmat``) instead.

    Returns
    -------
    torch.Tensor of shape (m, k) (or (n, k))
        In X's dtype.  Gradients with respect to X flow through the
        other product (``rmatmat`` for ``A @ X``, ``matmat`` for ``A^T @ X``).

    Raises
    ------
    ValueError
        If X is not on the CPU.
    """
    return _OperatorMatmul.apply(X, operator, bool(transpose))


class _CastOperator(scipy.sparse.linalg.LinearOperator):
    """A LinearOperator whose products are cast to `dtype` (picklable when `operator` is)."""

    def __init__(self, operator, dtype):
        super().__init__(dtype=np.dtype(dtype), shape=operator.shape)
        self.operator = operator

    def _cast(self, out):
        return np.asarray(out).astype(self.dtype, copy=False)

    def _matvec(self, x):
        return self._cast(self.operator.matvec(x))

    def _rmatvec(self, x):
        return self._cast(self.operator.rmatvec(x))

    def _matmat(self, X):
        return self._cast(self.operator.matmat(X))

    def _rmatmat(self, X):
        return self._cast(self.operator.rmatmat(X))


def _cast_operator(operator, dtype):
    """`operator` computing in `dtype` (itself if it already does)."""
    operator = _check_linear_operator(operator)
    if operator.dtype == np.dtype(dtype):
        return operator
    return _CastOperator(operator, dtype)


def _largest_mask(magnitudes, keep, axis):
    """Boolean mask of the `keep` largest entries along `axis` (ties: all kept)."""
    n = magnitudes.shape[axis]
    if magnitudes.device.type == "cpu":
        # numpy's introselect is several times faster than torch.topk on CPU.
        a = magnitudes.numpy()
        cutoff = np.take(np.partition(a, n - keep, axis=axis), [n - keep], axis=axis)
        return magnitudes >= torch.from_numpy(cutoff)
    cutoff = magnitudes.topk(keep, dim=axis).values.narrow(axis, keep - 1, 1)
    return magnitudes >= cutoff


class UnfoldedNetwork(nn.Module):
    """Unfolded proximal-gradient network (LISTA family).

    Parameters
    ----------
    A : ndarray, scipy.sparse CSR matrix or LinearOperator, shape (m, n)
        Sensing matrix (float32 or float64; the network computes in A's
        dtype).  Sparse A is used through :mod:`sciml.sparse`, a
        :class:`scipy.sparse.linalg.LinearOperator` through its ``matmat``
        and ``rmatmat`` (:func:`operator_matmul`; the network then runs on
        the CPU only).  Both need tied weights: analytic and untied weights
        are dense by nature.
    n_layers : int
    weights : {"tied", "analytic", "untied"}
    prox : {"soft", "hard", "topk"}
    support_selection : bool
        Soft thresholding only.
    ss_step, ss_max : float
        Support-selection fraction per layer and its cap (ALISTA: 1.2 % and
        13 % for 10 % sparse codes).
    lam0 : float
        l0 weight of the hard-threshold (IHT) layers.
    k : int
        Entries kept by top-k layers.
    step_init : float, optional
        Initial step; default ``1 / ||A||_2^2`` for tied weights (ISTA's
        step) and 1 for analytic and untied weights.
    threshold_init : float
        Initial soft threshold as a multiple of the step (``lam`` of the
        ISTA that the untrained network reproduces).
    """

    def __init__(
        self,
        A,
        n_layers=16,
        *,
        weights="tied",
        prox="soft",
        support_selection=False,
        ss_step=0.012,
        ss_max=0.13,
        lam0=0.02,
        k=None,
        step_init=None,
        threshold_init=0.1,
    ):
        super().__init__()
        if weights not in _WEIGHTS:
            raise ValueError(f"weights must be one of {_WEIGHTS}, got {weights!r}")
        if prox not in _PROX:
            raise ValueError(f"prox must be one of {_PROX}, got {prox!r}")
        if support_selection and prox != "soft":
            raise ValueError("support_selection applies to soft thresholding (prox='soft') only")
        if prox == "topk" and (k is None or int(k) < 1):
            raise ValueError("prox='topk' needs a positive integer k")
        if prox == "hard" and not lam0 > 0:
            raise ValueError(f"lam0 must be > 0, got {lam0!r}")
        if not threshold_init > 0:
            raise ValueError(f"threshold_init must be > 0, got {threshold_init!r}")
        self.n_layers = int(n_layers)
        self.weights, self.prox = weights, prox
        self.support_selection = bool(support_selection)
        self.ss_step, self.ss_max = float(ss_step), float(ss_max)
        self.lam0, self.k = float(lam0), None if k is None else int(k)

        self.sparse = sp.issparse(A)
        self.operator = _is_linear_operator(A)
        if self.operator:
            _check_linear_operator(A)
        if (self.sparse or self.operator) and weights != "tied":
            kind = "LinearOperator" if self.operator else "sparse"
            raise ValueError(
                f"analytic and untied weights need a dense A (they are dense matrices); a {kind} A "
                "works with weights='tied'"
            )
        dtype = A.dtype
        self.shape = tuple(A.shape)
        if self.operator:
            self._A_op = A
        elif self.sparse:
            self._A_csr = A.tocsr()
        else:
            A = np.asarray(A)
            self.register_buffer("A", torch.from_numpy(np.ascontiguousarray(A)))
        if weights == "tied":
            ista_step = default_step(A)  # ISTA's step, for any kind of A
        else:
            W = analytic_weights(A)  # A is dense here (checked above)
            ista_step = 1.0
            if weights == "analytic":
                self.register_buffer("W", torch.from_numpy(W.astype(dtype)))
            else:
                self.Ws = nn.Parameter(torch.from_numpy(np.repeat(W[None].astype(dtype), self.n_layers, axis=0)))
        step = ista_step if step_init is None else float(step_init)
        if not step > 0:
            raise ValueError(f"step_init must be > 0, got {step_init!r}")
        torch_dtype = torch.float32 if dtype == np.float32 else torch.float64
        self.log_step = nn.Parameter(torch.full((self.n_layers,), math.log(step), dtype=torch_dtype))
        # Soft thresholds start at threshold_init * step: ISTA with lam = threshold_init.
        self.log_threshold = nn.Parameter(
            torch.full((self.n_layers,), math.log(threshold_init * step), dtype=torch_dtype)
        )

    # Networks pickled before LinearOperator support have no `operator` attribute.
    operator = False

    @property
    def columns(self):
        """Whether signals are columns in the internal layout (sparse or LinearOperator A)."""
        return self.sparse or self.operator

    def _sparse_A(self, like):
        """The sparse A for a product with `like`: the scipy matrix for CPU
        operands, a torch CSR copy on `like`'s device otherwise (made once per
        device; a cache, left out of pickles so a GPU-trained network loads
        on the CPU)."""
        if like.device.type == "cpu":
            return self._A_csr
        copies = self.__dict__.setdefault("_A_on_device", {})
        key = str(like.device)
        if key not in copies:
            copies[key] = to_torch_csr(self._A_csr, device=like.device)
        return copies[key]

    def __getstate__(self):
        state = super().__getstate__().copy()
        state.pop("_A_on_device", None)
        return state

    # -- one layer, in the internal layout ---------------------------------------
    # Dense A: X is (batch, n), signals along axis 1.  Sparse or LinearOperator A:
    # X is (n, batch), signals along axis 0.
    def _residual(self, X, Y):
        if self.sparse:
            return spmm(self._sparse_A(X), X) - Y
        if self.operator:
            return operator_matmul(self._A_op, X) - Y
        return X @ self.A.T - Y

    def _gradient(self, R, layer):
        if self.sparse:
            return spmm(self._sparse_A(R), R, transpose=True)
        if self.operator:
            return operator_matmul(self._A_op, R, transpose=True)
        W = self.A if self.weights == "tied" else (self.W if self.weights == "analytic" else self.Ws[layer])
        return R @ W

    def _prox(self, Z, layer):
        axis = 0 if self.columns else 1
        step = self.log_step[layer].exp()
        if self.prox == "hard":
            return hard_threshold(Z, torch.sqrt(2.0 * self.lam0 * step))
        if self.prox == "topk":
            return hard_threshold_topk(Z, self.k, axis=axis)
        threshold = self.log_threshold[layer].exp()
        shrunk = soft_threshold(Z, threshold)
        keep = int(min((layer + 1) * self.ss_step, self.ss_max) * Z.shape[axis]) if self.support_selection else 0
        if keep == 0:
            return shrunk
        # Of the `keep` largest entries per signal, those above the threshold
        # pass unshrunk (LISTA-CPSS's eta_ss, Chen et al. 2018, eq. 13); the
        # others are zero as in soft thresholding.  Passing small selected
        # entries too would keep noise on every selected entry off the
        # support.  Blended arithmetically, which is cheaper than where().
        magnitudes = Z.detach().abs()
        mask = (_largest_mask(magnitudes, keep, axis) & (magnitudes > threshold.detach())).to(Z.dtype)
        return shrunk + mask * (Z - shrunk)

    def start_layer_from(self, layer, source):
        """Copy layer `source`'s learned parameters into layer `layer`.

        Progressive (layer-wise) training with support selection starts
        each new layer from the one before it rather than from the initial
        values: the threshold also gates the selected entries, and a new
        layer at the initial threshold would zero entries the earlier
        layers had already found (a threshold only moves by about ``lr``
        per step).
        """
        with torch.no_grad():
            self.log_step[layer] = self.log_step[source]
            self.log_threshold[layer] = self.log_threshold[source]
            if self.weights == "untied":
                self.Ws[layer] = self.Ws[source]

    def measure(self, X):
        """``A x`` for codes stacked as rows, shape (batch, n) -> (batch, m)."""
        if self.sparse:
            return spmm(self._sparse_A(X), X.T.contiguous()).T
        if self.operator:
            return operator_matmul(self._A_op, X.T).T
        return X @ self.A.T

    def layer(self, X, Y, layer):
        """Apply layer `layer` (0-based) in the internal layout."""
        Z = X - self.log_step[layer].exp() * self._gradient(self._residual(X, Y), layer)
        return self._prox(Z, layer)

    def forward(self, Y, n_layers=None, return_all=False):
        """Run the first `n_layers` layers on measurements Y of shape (batch, m).

        Returns the codes (batch, n), or the list of every layer's codes
        (layer 1 first) with ``return_all=True``.
        """
        n_layers = self.n_layers if n_layers is None else int(n_layers)
        columns = self.columns
        if columns:
            Y = Y.T.contiguous()
            X = torch.zeros((self.shape[1], Y.shape[1]), dtype=Y.dtype, device=Y.device)
        else:
            X = torch.zeros((Y.shape[0], self.shape[1]), dtype=Y.dtype, device=Y.device)
        outputs = []
        for k in range(n_layers):
            X = self.layer(X, Y, k)
            if return_all:
                outputs.append(X.T if columns else X)
        if return_all:
            return outputs
        return X.T if columns else X

    def extra_repr(self):
        return (
            f"shape={self.shape}, n_layers={self.n_layers}, weights={self.weights!r}, "
            f"{'operator=True, ' if self.operator else ''}"
            f"prox={self.prox!r}, support_selection={self.support_selection}"
        )

