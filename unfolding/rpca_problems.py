"""Robust-PCA problems shared by the tests, the benchmark and the tutorial.

* :func:`low_rank_plus_sparse`: the LRPCA benchmark problem (Cai, Liu & Yin
  2021): ``Y = L + S`` with ``L = U V^T`` of rank ``r`` (Gaussian factors)
  and ``S`` supported on a uniformly random fraction ``alpha`` of the
  entries, its values uniform in ``[-c E|L|, c E|L|]``.
* :func:`synthetic_video`: a low-rank background (fixed textures whose
  brightness varies smoothly in time) occluded by small moving objects,
  with the ground-truth foreground masks.
* :func:`relative_error`, :func:`mask_scores`: the metrics the benchmark
  reports; :func:`foreground_mask`: the one rule that turns any method's
  sparse part into a foreground mask.

Every generator takes ``random_state`` (None, an int or a
``numpy.random.Generator``) and never touches a global RNG.  Batches of
problems for training are drawn on any torch device by
:func:`sample_low_rank_plus_sparse`, the single implementation behind
:func:`low_rank_plus_sparse`.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from sciml._validation import check_float_dtype, check_positive_int

__all__ = [
    "check_rpca_problem",
    "sample_low_rank_plus_sparse",
    "low_rank_plus_sparse",
    "Video",
    "synthetic_video",
    "relative_error",
    "mask_scores",
    "foreground_mask",
]


def check_rpca_problem(shape, rank, outlier_fraction, outlier_magnitude=1.0):
    """Validate the size, rank and outlier parameters of an RPCA problem.

    Parameters
    ----------
    shape : tuple of int
        ``(m, n)``.
    rank : int
    outlier_fraction : float
    outlier_magnitude : float, default=1.0

    Returns
    -------
    m, n, rank, outlier_fraction, outlier_magnitude
        As Python ints and floats.

    Raises
    ------
    ValueError
        Rank not in ``[1, min(m, n)]``, outlier fraction outside ``[0, 1)``,
        or a negative or non-finite magnitude.
    """
    m, n = (check_positive_int(name, value) for name, value in zip(("m", "n"), shape))
    rank = check_positive_int("rank", rank)
    if rank > min(m, n):
        raise ValueError(f"rank={rank} is larger than the matrix allows: min(m, n) = {min(m, n)} for shape {(m, n)}")
    if not isinstance(outlier_fraction, numbers.Real) or not 0 <= outlier_fraction < 1:
        raise ValueError(f"outlier_fraction must be in [0, 1), got {outlier_fraction!r}")
    if not isinstance(outlier_magnitude, numbers.Real) or not (math.isfinite(outlier_magnitude) and outlier_magnitude >= 0):
        raise ValueError(f"outlier_magnitude must be a finite non-negative number, got {outlier_magnitude!r}")
    return m, n, rank, float(outlier_fraction), float(outlier_magnitude)


def sample_low_rank_plus_sparse(batch, m, n, rank, outlier_fraction, outlier_magnitude, generator, *,
                                dtype=None, device=None):
    """Draw a batch of low-rank + sparse problems with torch (any device).

    Parameters
    ----------
    batch : int or None
        Number of problems; ``None`` draws a single ``(m, n)`` problem.
    m, n, rank, outlier_fraction, outlier_magnitude
        Already validated (see :func:`check_rpca_problem`).
    generator : torch.Generator
        On ``device``.
    dtype : torch.dtype, default torch.float64
    device : torch.device or None, default=the generator's device

    Returns
    -------
    Y, L, S : torch.Tensor of shape (batch, m, n) or (m, n)
        ``Y = L + S``; the outlier values are uniform in ``[-c, c]`` with
        ``c = outlier_magnitude * mean|L|`` of each problem.
    """
    import torch

    dtype = torch.float64 if dtype is None else dtype
    device = generator.device if device is None else device
    lead = () if batch is None else (batch,)
    U = torch.randn(lead + (m, rank), generator=generator, dtype=dtype, device=device)
    V = torch.randn(lead + (n, rank), generator=generator, dtype=dtype, device=device)
    L = U @ V.transpose(-1, -2)
    support = torch.rand(lead + (m, n), generator=generator, dtype=dtype, device=device) < outlier_fraction
    values = 2 * torch.rand(lead + (m, n), generator=generator, dtype=dtype, device=device) - 1
    scale = outlier_magnitude * L.abs().mean(dim=(-2, -1), keepdim=True)
    S = torch.where(support, values * scale, torch.zeros((), dtype=dtype, device=device))
    return L + S, L, S


def low_rank_plus_sparse(m, n=None, *, rank=5, outlier_fraction=0.1, outlier_magnitude=1.0, n_problems=None,
                         dtype=np.float64, random_state=None):
    """A random low-rank + sparse matrix ``Y = L + S`` (the LRPCA benchmark problem).

    Parameters
    ----------
    m : int
        Rows.
    n : int or None, default=None
        Columns (``None``: square).
    rank : int, default=5
        Rank of ``L = U V^T``, with standard normal ``U`` (m x r), ``V`` (n x r).
    outlier_fraction : float in [0, 1), default=0.1
        Fraction ``alpha`` of corrupted entries, drawn uniformly at random.
    outlier_magnitude : float, default=1.0
        Outlier values are uniform in ``[-c E|L|, c E|L|]`` with this ``c``
        (``E|L|`` is the mean absolute entry of ``L``).
    n_problems : int or None, default=None
        Draw a stack of this many independent problems (leading axis).
    dtype : {numpy.float64, numpy.float32}, default numpy.float64
    random_state : None, int or numpy.random.Generator

    Returns
    -------
    Y, L, S : numpy.ndarray of shape (m, n) or (n_problems, m, n)

    Examples
    --------
    >>> Y, L, S = low_rank_plus_sparse(100, rank=3, outlier_fraction=0.05, random_state=0)
    >>> Y.shape, int(np.linalg.matrix_rank(L)), bool(np.allclose(Y, L + S))
    ((100, 100), 3, True)
    """
    import torch

    from sciml.base import check_random_state_torch

    m, n, rank, alpha, magnitude = check_rpca_problem((m, m if n is None else n), rank, outlier_fraction,
                                                      outlier_magnitude)
    dtype = check_float_dtype(dtype)
    batch = None if n_problems is None else check_positive_int("n_problems", n_problems)
    generator = check_random_state_torch(np.random.default_rng(random_state))
    torch_dtype = torch.float32 if dtype == np.float32 else torch.float64
    Y, L, S = sample_low_rank_plus_sparse(batch, m, n, rank, alpha, magnitude, generator, dtype=torch_dtype)
    return Y.numpy(), L.numpy(), S.numpy()


@dataclass
class Video:
    """A synthetic video and its ground truth; arrays have shape (n_frames, height, width).

    Attributes
    ----------
    frames : numpy.ndarray
        The observed video (background with objects pasted in, plus noise).
    background : numpy.ndarray
        The low-rank background (``background.reshape(T, -1)`` has rank
        ``rank``).
    foreground : numpy.ndarray
        ``frames - background - noise``: nonzero exactly on ``masks``.
    masks : numpy.ndarray of bool
        Where the moving objects are.
    """

    frames: np.ndarray
    background: np.ndarray
    foreground: np.ndarray
    masks: np.ndarray

    def as_matrix(self, name="frames"):
        """One of the arrays as a (height * width, n_frames) matrix: a column per frame."""
        array = getattr(self, name)
        return array.reshape(array.shape[0], -1).T


def synthetic_video(n_frames=48, height=40, width=40, *, rank=2, n_objects=3, object_size=5, speed=1.0,
                    noise=0.0, dtype=np.float64, random_state=None):
    """A low-rank background with small moving objects, for background subtraction.

    The background is ``sum_k c_k(t) B_k`` with ``rank`` smooth random
    textures ``B_k`` and slowly varying positive weights ``c_k(t)`` (an
    illumination change), so the frames-as-columns background matrix has
    exactly that rank.  Each object is a filled square of side
    ``object_size`` and random intensity that moves in a straight line at
    ``speed`` pixels per frame, bouncing off the borders, and replaces the
    background where it is.

    Parameters
    ----------
    n_frames, height, width : int, default 48, 40, 40
    rank : int, default=2
        Rank of the background.
    n_objects : int, default=3
    object_size : int, default=5
        Side of each square object, in pixels.
    speed : float, default=1.0
        Pixels per frame.
    noise : float, default=0.0
        Standard deviation of additive Gaussian noise, relative to the
        background's standard deviation.
    dtype : {numpy.float64, numpy.float32}
    random_state : None, int or numpy.random.Generator

    Returns
    -------
    Video
    """
    n_frames, height, width = (check_positive_int(name, value) for name, value in
                               zip(("n_frames", "height", "width"), (n_frames, height, width)))
    rank = check_positive_int("rank", rank)
    if rank > min(n_frames, height * width):
        raise ValueError(f"rank={rank} exceeds min(n_frames, height * width) = {min(n_frames, height * width)}")
    object_size = check_positive_int("object_size", object_size)
    if object_size > min(height, width):
        raise ValueError(f"object_size={object_size} does not fit in a {height}x{width} frame")
    if isinstance(n_objects, bool) or not isinstance(n_objects, numbers.Integral) or n_objects < 0:
        raise ValueError(f"n_objects must be a non-negative integer, got {n_objects!r}")
    for name, value in (("speed", speed), ("noise", noise)):
        if not isinstance(value, numbers.Real) or not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite non-negative number, got {value!r}")
    dtype = check_float_dtype(dtype)
    rng = np.random.default_rng(random_state)

    # Smooth textures: white noise low-pass filtered in Fourier space.
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.fftfreq(width)[None, :]
    lowpass = np.exp(-(fx**2 + fy**2) / (2 * 0.08**2))
    textures = np.stack([np.real(np.fft.ifft2(np.fft.fft2(rng.standard_normal((height, width))) * lowpass))
                         for _ in range(rank)])
    textures /= textures.std(axis=(1, 2), keepdims=True)
    textures[0] += 2.0  # a bright mean level, so the weights act as illumination
    t = np.linspace(0.0, 1.0, n_frames)
    phases = rng.uniform(0, 2 * np.pi, rank)
    weights = 1.0 + 0.3 * np.sin(2 * np.pi * t[:, None] * rng.uniform(0.5, 1.5, rank) + phases)
    background = np.einsum("tk,khw->thw", weights, textures)

    frames = background.copy()
    masks = np.zeros(frames.shape, dtype=bool)
    level, spread = background.mean(), background.std()
    for _ in range(n_objects):
        position = rng.uniform([0, 0], [height - object_size, width - object_size])
        angle = rng.uniform(0, 2 * np.pi)
        velocity = speed * np.array([np.sin(angle), np.cos(angle)])
        # Brighter or darker than the background by 1.5-3 of its spreads.
        intensity = level + rng.choice([-1.0, 1.0]) * rng.uniform(1.5, 3.0) * spread
        for frame in range(n_frames):
            row, col = np.round(position).astype(int)
            masks[frame, row:row + object_size, col:col + object_size] = True
            frames[frame, row:row + object_size, col:col + object_size] = intensity
            position = position + velocity
            for axis, limit in enumerate((height - object_size, width - object_size)):
                if not 0 <= position[axis] <= limit:  # bounce off the border
                    velocity[axis] = -velocity[axis]
                    position[axis] = np.clip(position[axis], 0, limit)
    foreground = frames - background
    if noise:
        frames = frames + noise * spread * rng.standard_normal(frames.shape)
    return Video(frames.astype(dtype), background.astype(dtype), foreground.astype(dtype), masks)


def relative_error(estimate, truth):
    """``||estimate - truth||_F / ||truth||_F`` (over all axes), as a float.

    Parameters
    ----------
    estimate, truth : numpy.ndarray or torch.Tensor, same shape

    Returns
    -------
    float

    Raises
    ------
    ValueError
        On a shape mismatch or an all-zero ``truth``.
    """
    estimate = estimate.detach().cpu().numpy() if hasattr(estimate, "detach") else estimate
    truth = truth.detach().cpu().numpy() if hasattr(truth, "detach") else truth
    estimate, truth = np.asarray(estimate, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    if estimate.shape != truth.shape:
        raise ValueError(f"relative_error: shape mismatch, {estimate.shape} vs {truth.shape}")
    norm = np.linalg.norm(truth.ravel())
    if norm == 0:
        raise ValueError("relative_error: truth is all zeros, so the relative error is undefined")
    return float(np.linalg.norm((estimate - truth).ravel()) / norm)


def mask_scores(predicted, truth):
    """Intersection over union and F-measure of boolean foreground masks.

    Parameters
    ----------
    predicted, truth : array-like of bool, same shape

    Returns
    -------
    dict
        ``{"iou": float, "f_measure": float, "precision": float, "recall": float}``
        (scores of empty sets count as 1 when both masks are empty).
    """
    predicted, truth = np.asarray(predicted, dtype=bool), np.asarray(truth, dtype=bool)
    if predicted.shape != truth.shape:
        raise ValueError(f"mask_scores: shape mismatch, {predicted.shape} vs {truth.shape}")
    tp = int(np.count_nonzero(predicted & truth))
    fp = int(np.count_nonzero(predicted & ~truth))
    fn = int(np.count_nonzero(~predicted & truth))
    union = tp + fp + fn
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f_measure = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"iou": tp / union if union else 1.0, "f_measure": f_measure, "precision": precision, "recall": recall}


def foreground_mask(sparse, frames, *, threshold=0.5):
    """The foreground mask of a video's sparse part: ``|S| > threshold * sigma_t``.

    One rule for every method (our networks, IALM, ...), so that their
    masks are compared on equal terms: a pixel of frame ``t`` is foreground
    where the magnitude of the sparse part exceeds ``threshold`` times the
    frame's robust scale ``sigma_t = 1.4826 * median |D_t - median(D_t)|``
    of the *observed* frame ``D_t`` (the standard deviation for Gaussian
    data, insensitive to the objects).  A constant frame (``sigma_t = 0``)
    uses the whole video's robust scale instead; if that is zero too, any
    nonzero ``S`` counts.  The rule is scale-free: multiplying the video
    and ``S`` by a constant leaves the mask unchanged.

    On :func:`synthetic_video` (objects 1.5-3 background spreads from the
    mean level, noise <= 0.1 spread) the default 0.5 keeps the noise out of
    the mask (5 noise deviations or more), while the true foreground itself
    scores IoU 0.94 against the true masks (16 clips at the default size):
    the 6 % of object pixels within half a spread of the background they
    cover are lost by any method.

    Parameters
    ----------
    sparse : array-like or torch.Tensor of shape (..., T, H, W)
        A method's foreground / sparse part.
    frames : array-like or torch.Tensor of the same shape
        The observed video it was computed from.
    threshold : float, default=0.5
        In units of the frame's robust scale.

    Returns
    -------
    numpy.ndarray of bool, shape (..., T, H, W)
    """
    sparse = sparse.detach().cpu().numpy() if hasattr(sparse, "detach") else np.asarray(sparse)
    frames = frames.detach().cpu().numpy() if hasattr(frames, "detach") else np.asarray(frames)
    if sparse.shape != frames.shape:
        raise ValueError(f"foreground_mask: shape mismatch, sparse {sparse.shape} vs frames {frames.shape}")
    if sparse.ndim < 3:
        raise ValueError(f"foreground_mask: expected arrays of shape (..., T, H, W), got shape {sparse.shape}")
    if not isinstance(threshold, numbers.Real) or not (math.isfinite(threshold) and threshold >= 0):
        raise ValueError(f"foreground_mask: threshold must be a finite non-negative number, got {threshold!r}")
    frames = frames.astype(np.float64, copy=False)

    def mad_scale(x, axis):
        center = np.median(x, axis=axis, keepdims=True)
        return 1.4826 * np.median(np.abs(x - center), axis=axis, keepdims=True)

    sigma = mad_scale(frames, (-2, -1))
    whole = mad_scale(frames, (-3, -2, -1))
    sigma = np.where(sigma > 0, sigma, whole)
    return np.abs(sparse) > threshold * sigma
