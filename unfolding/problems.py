"""Sparse-recovery problems shared by the tests, the benchmark and the tutorial.

The standard problem of the LISTA literature (Gregor & LeCun 2010; Chen et al.
2018): a sensing matrix ``A`` of shape ``(m, n) = (250, 500)`` with
``N(0, 1/m)`` entries and unit-norm columns, codes ``x`` that are
Bernoulli(``p = 0.1``) x ``N(0, 1)``, and measurements ``y = A x`` (plus,
optionally, Gaussian noise at a given SNR).

Conventions
-----------
* Samples are rows (scikit-learn's convention): codes ``X`` have shape
  ``(n_samples, n)``, measurements ``Y = X @ A.T`` have shape
  ``(n_samples, m)``.
* Every generator takes ``random_state`` (None, an int or a
  ``numpy.random.Generator``), draws from
  ``numpy.random.default_rng(random_state)`` and never touches numpy's
  global RNG.
* ``A`` may be a dense ``numpy.ndarray`` or a ``scipy.sparse`` CSR
  array/matrix; sparse products go through :mod:`sciml.sparse`.
"""

from __future__ import annotations

import math
import numbers
import sys
from dataclasses import dataclass

import numpy as np
import scipy.fft
import scipy.sparse as sp

from sciml._validation import check_float_dtype, check_positive_int

__all__ = [
    "gaussian_matrix",
    "partial_dct_matrix",
    "bernoulli_gaussian",
    "measure",
    "SensingProblem",
    "standard_problem",
    "nmse_db",
]


# --------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------


def _is_tensor(obj):
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.Tensor)


def _check_matrix(A, name="A"):
    """A as a float dense ndarray or a scipy CSR matrix; errors name the problem."""
    if _is_tensor(A):
        raise TypeError(f"{name} must be a numpy array or a scipy.sparse CSR matrix, got a torch.Tensor")
    if sp.issparse(A):
        if A.format != "csr":
            raise TypeError(
                f"{name} is a scipy.sparse {A.format.upper()} matrix; only CSR is supported, "
                f"convert explicitly with {name}.tocsr()"
            )
        if A.ndim != 2:
            raise ValueError(f"{name} must be 2-D, got shape {A.shape}")
        if A.dtype not in (np.float32, np.float64):
            raise TypeError(f"{name} has dtype {A.dtype}; sparse {name} must be float32 or float64")
        if not np.isfinite(A.data).all():
            raise ValueError(f"{name} contains NaN or inf")
        return A
    A = np.asarray(A)
    if A.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {A.shape}")
    if A.dtype.kind in "biu":
        A = A.astype(np.float64)  # documented promotion, as in sciml.prox
    elif A.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name} must have a float32 or float64 dtype, got {A.dtype}")
    if not np.isfinite(A).all():
        raise ValueError(f"{name} contains NaN or inf")
    return A


def _check_batch(X, name, A_shape, axis, dtype):
    """A finite 2-D batch of shape (n_samples, A_shape[axis]) cast to `dtype`."""
    width, width_name = A_shape[axis], ("m", "n")[axis]
    if _is_tensor(X):
        raise TypeError(f"{name} must be a numpy array, got a torch.Tensor (use .detach().cpu().numpy())")
    X = np.asarray(X)
    if X.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be real numeric, got dtype {X.dtype}")
    if X.ndim != 2:
        hint = f"; for a single signal pass {name}[None, :]" if X.ndim == 1 else ""
        raise ValueError(f"{name} must be 2-D (n_samples, {width_name}), got shape {X.shape}{hint}")
    if X.shape[1] != width:
        raise ValueError(
            f"shape mismatch: {name} has shape {X.shape} but A has shape {tuple(A_shape)}; "
            f"expected {name}.shape[1] == A.shape[{axis}] == {width}"
        )
    X = X.astype(dtype, copy=False)
    if not np.isfinite(X).all():
        raise ValueError(f"{name} contains NaN or inf")
    return X


# --------------------------------------------------------------------------
# sensing matrices and codes
# --------------------------------------------------------------------------


def gaussian_matrix(m, n, *, normalize_columns=True, dtype=np.float64, random_state=None):
    """Gaussian sensing matrix with ``N(0, 1/m)`` entries.

    Parameters
    ----------
    m, n : int
        Number of measurements (rows) and of code entries (columns).
    normalize_columns : bool, default True
        Scale every column to unit Euclidean norm (the standard problem);
        with ``N(0, 1/m)`` entries the norms are already close to 1.
    dtype : {numpy.float64, numpy.float32}, default numpy.float64
        Drawn in float64 and cast, so both dtypes give the same matrix up to
        rounding.
    random_state : None, int or numpy.random.Generator, default None

    Returns
    -------
    A : numpy.ndarray, shape (m, n)

    Raises
    ------
    TypeError
        If ``m`` or ``n`` is not an integer or ``dtype`` is not a float type.
    ValueError
        If ``m`` or ``n`` is smaller than 1.

    Examples
    --------
    >>> A = gaussian_matrix(250, 500, random_state=0)
    >>> A.shape, bool(np.allclose(np.linalg.norm(A, axis=0), 1.0))
    ((250, 500), True)
    """
    m, n = check_positive_int("m", m), check_positive_int("n", n)
    dtype = check_float_dtype(dtype)
    rng = np.random.default_rng(random_state)
    A = rng.standard_normal((m, n)) / math.sqrt(m)
    if normalize_columns:
        A /= np.linalg.norm(A, axis=0)
    return A.astype(dtype, copy=False)


def partial_dct_matrix(m, n, *, normalize_columns=True, dtype=np.float64, random_state=None):
    """``m`` random rows of the orthonormal ``n x n`` DCT-II matrix.

    Parameters
    ----------
    m, n : int
        Number of rows kept (``1 <= m <= n``) and the DCT size.
    normalize_columns : bool, default True
        Scale every column to unit norm. Without it the rows are orthonormal
        (``A @ A.T == I``) and the column norms are about ``sqrt(m / n)``.
    dtype : {numpy.float64, numpy.float32}, default numpy.float64
    random_state : None, int or numpy.random.Generator, default None
        Picks the rows (without replacement; returned in increasing order).

    Returns
    -------
    A : numpy.ndarray, shape (m, n)
        ``A @ x`` is a subset of the coefficients ``scipy.fft.dct(x,
        norm="ortho")`` (before column scaling).

    Raises
    ------
    TypeError
        If ``m`` or ``n`` is not an integer or ``dtype`` is not a float type.
    ValueError
        If ``m`` or ``n`` is smaller than 1 or ``m > n``.
    """
    m, n = check_positive_int("m", m), check_positive_int("n", n)
    if m > n:
        raise ValueError(f"partial_dct_matrix needs m <= n, got m={m} > n={n}")
    dtype = check_float_dtype(dtype)
    rng = np.random.default_rng(random_state)
    rows = np.sort(rng.choice(n, size=m, replace=False))
    # Column j is dct(e_j), so D @ x == dct(x): the orthonormal DCT-II matrix.
    D = scipy.fft.dct(np.eye(n), norm="ortho", axis=0)
    A = D[rows]
    if normalize_columns:
        norms = np.linalg.norm(A, axis=0)
        # A DCT column can vanish on the kept rows only for tiny m (e.g. the
        # kept rows are all zeros of one cosine); refuse rather than divide by 0.
        if np.any(norms == 0):
            raise ValueError(
                f"partial_dct_matrix: a column is zero on the {m} kept rows; "
                "use more rows or another random_state"
            )
        A = A / norms
    return np.ascontiguousarray(A, dtype=dtype)


def bernoulli_gaussian(n_samples, n, *, p=0.1, dtype=np.float64, random_state=None):
    """Bernoulli-Gaussian codes: each entry is nonzero with probability ``p``.

    Parameters
    ----------
    n_samples, n : int
        Number of codes (rows) and their length.
    p : float, default 0.1
        Probability that an entry is nonzero, in ``[0, 1]``.
    dtype : {numpy.float64, numpy.float32}, default numpy.float64
    random_state : None, int or numpy.random.Generator, default None

    Returns
    -------
    X : numpy.ndarray, shape (n_samples, n)
        ``X = B * G`` with ``B ~ Bernoulli(p)`` and ``G ~ N(0, 1)`` independent.

    Raises
    ------
    TypeError
        If a size is not an integer, ``p`` is not a real number or ``dtype``
        is not a float type.
    ValueError
        If a size is smaller than 1 or ``p`` is outside ``[0, 1]``.
    """
    n_samples, n = check_positive_int("n_samples", n_samples), check_positive_int("n", n)
    if isinstance(p, (bool, np.bool_)) or not isinstance(p, numbers.Real):
        raise TypeError(f"p must be a real number in [0, 1], got {p!r}")
    if not 0.0 <= p <= 1.0:  # also rejects NaN
        raise ValueError(f"p must be in [0, 1], got {p!r}")
    dtype = check_float_dtype(dtype)
    rng = np.random.default_rng(random_state)
    support = rng.random((n_samples, n)) < p
    X = np.where(support, rng.standard_normal((n_samples, n)), 0.0)
    return X.astype(dtype, copy=False)


# --------------------------------------------------------------------------
# measurements
# --------------------------------------------------------------------------


def _apply(A, X):
    """X @ A.T for a batch X (n_samples, n), dense BLAS or the sparse core."""
    if sp.issparse(A):
        # Imported here: sciml.sparse imports torch, which dense users skip.
        from sciml.sparse import spmm

        # spmm wants a C-contiguous (n, n_samples) operand of A's dtype.
        return np.ascontiguousarray(spmm(A, np.ascontiguousarray(X.T)).T)
    return X @ A.T


def measure(A, X, *, snr_db=None, random_state=None):
    """Measurements ``Y = X @ A.T``, optionally with Gaussian noise.

    Parameters
    ----------
    A : numpy.ndarray or scipy.sparse CSR array/matrix, shape (m, n)
        float32 or float64 (integer dense input is promoted to float64).
    X : array_like, shape (n_samples, n)
        Codes, one per row; cast to A's dtype.
    snr_db : float or None, default None
        ``None`` gives noiseless measurements. Otherwise white Gaussian noise
        ``E`` is added, scaled so that the batch SNR
        ``10 * log10(||X A^T||_F^2 / ||E||_F^2)`` equals ``snr_db`` exactly
        (up to rounding). If ``X A^T`` is zero the noise is zero too.
    random_state : None, int or numpy.random.Generator, default None
        Draws the noise (unused when ``snr_db is None``).

    Returns
    -------
    Y : numpy.ndarray, shape (n_samples, m)
        C-contiguous, A's dtype.

    Raises
    ------
    TypeError
        If ``A`` is sparse but not CSR, or a dtype is unsupported.
    ValueError
        If ``A`` or ``X`` is not 2-D, their shapes do not match, they contain
        NaN/inf, or ``snr_db`` is not finite.
    """
    A = _check_matrix(A)
    X = _check_batch(X, "X", A.shape, 1, A.dtype)
    Y = _apply(A, X)
    if snr_db is None:
        return Y
    if isinstance(snr_db, (bool, np.bool_)) or not isinstance(snr_db, numbers.Real):
        raise TypeError(f"snr_db must be a real number or None, got {snr_db!r}")
    if not math.isfinite(snr_db):
        raise ValueError(f"snr_db must be finite (use None for noiseless), got {snr_db!r}")
    rng = np.random.default_rng(random_state)
    # Noise in float64 so that the SNR is exact to ~1e-12 dB before the cast.
    E = rng.standard_normal(Y.shape)
    signal = float(np.sum(np.square(Y, dtype=np.float64)))
    sigma = math.sqrt(signal / (10.0 ** (snr_db / 10.0) * float(np.sum(E * E))))
    return (Y + sigma * E).astype(A.dtype, copy=False)


@dataclass
class SensingProblem:
    """A sensing matrix and a code distribution, sampled on demand.

    Parameters
    ----------
    A : numpy.ndarray or scipy.sparse CSR array/matrix, shape (m, n)
        Sensing matrix.
    p : float, default 0.1
        Bernoulli-Gaussian sparsity (probability of a nonzero code entry).
    snr_db : float or None, default None
        Measurement SNR in dB; None means noiseless.

    Examples
    --------
    >>> problem = standard_problem(random_state=0)
    >>> Y, X = problem.sample(8, random_state=1)
    >>> Y.shape, X.shape
    ((8, 250), (8, 500))
    """

    A: object
    p: float = 0.1
    snr_db: float | None = None

    @property
    def m(self) -> int:
        """Number of measurements (rows of A)."""
        return int(self.A.shape[0])

    @property
    def n(self) -> int:
        """Code length (columns of A)."""
        return int(self.A.shape[1])

    def sample(self, n_samples, random_state=None):
        """Draw codes and their measurements.

        Parameters
        ----------
        n_samples : int
        random_state : None, int or numpy.random.Generator, default None
            One generator draws the codes, then the noise.

        Returns
        -------
        Y : numpy.ndarray, shape (n_samples, m)
            Measurements (noisy if ``snr_db`` is set) -- first, as the
            network input in ``fit(Y, X)``.
        X : numpy.ndarray, shape (n_samples, n)
            The true codes, in A's dtype.
        """
        rng = np.random.default_rng(random_state)
        dtype = self.A.dtype if self.A.dtype in (np.float32, np.float64) else np.float64
        X = bernoulli_gaussian(n_samples, self.n, p=self.p, dtype=dtype, random_state=rng)
        Y = measure(self.A, X, snr_db=self.snr_db, random_state=rng)
        return Y, X


def standard_problem(m=250, n=500, p=0.1, snr_db=None, random_state=0, *, dtype=np.float64):
    """The LISTA benchmark problem: Gaussian ``A`` (250 x 500), ``p = 0.1``.

    Parameters
    ----------
    m, n : int, default 250, 500
    p : float, default 0.1
    snr_db : float or None, default None
        Noiseless by default.
    random_state : None, int or numpy.random.Generator, default 0
        Draws ``A`` (fixed by default, so that every user sees the same matrix).
    dtype : {numpy.float64, numpy.float32}, default numpy.float64

    Returns
    -------
    SensingProblem
        With ``A = gaussian_matrix(m, n, normalize_columns=True)``.
    """
    A = gaussian_matrix(m, n, normalize_columns=True, dtype=dtype, random_state=random_state)
    return SensingProblem(A=A, p=p, snr_db=snr_db)


# --------------------------------------------------------------------------
# metric
# --------------------------------------------------------------------------


def nmse_db(X_hat, X):
    """Normalised mean squared error of a batch, in dB.

    ``10 * log10(sum ||x_hat - x||^2 / sum ||x||^2)`` over all samples (the
    ratio of sums, not the mean of per-sample ratios, as in the LISTA papers).

    Parameters
    ----------
    X_hat, X : numpy.ndarray or torch.Tensor, same shape
        Estimate and truth. Two tensors are compared on their device in
        float64; otherwise tensors are copied to numpy.

    Returns
    -------
    float
        NMSE in dB; ``-inf`` for an exact estimate, NaN if an input has NaN.

    Raises
    ------
    ValueError
        If the shapes differ or ``X`` is all zeros (the NMSE is undefined).
    """
    if _is_tensor(X_hat) and _is_tensor(X):
        if tuple(X_hat.shape) != tuple(X.shape):
            raise ValueError(f"nmse_db: shape mismatch, X_hat has shape {tuple(X_hat.shape)} "
                             f"but X has shape {tuple(X.shape)}")
        x_hat = X_hat.detach().double()
        x = X.detach().double().to(x_hat.device)
        err, ref = float((x_hat - x).square().sum()), float(x.square().sum())
    else:
        x_hat = X_hat.detach().cpu().numpy() if _is_tensor(X_hat) else X_hat
        x = X.detach().cpu().numpy() if _is_tensor(X) else X
        x_hat, x = np.asarray(x_hat, dtype=np.float64), np.asarray(x, dtype=np.float64)
        if x_hat.shape != x.shape:
            raise ValueError(f"nmse_db: shape mismatch, X_hat has shape {x_hat.shape} but X has shape {x.shape}")
        err, ref = float(np.sum(np.square(x_hat - x))), float(np.sum(np.square(x)))
    if ref == 0.0:
        raise ValueError("nmse_db: X is all zeros, so the normalised error is undefined")
    if math.isnan(err) or math.isnan(ref):
        return math.nan
    return -math.inf if err == 0.0 else 10.0 * math.log10(err / ref)
