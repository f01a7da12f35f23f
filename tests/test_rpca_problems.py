"""Robust-PCA problem generators and metrics."""

import numpy as np
import pytest
import torch

from unfolding.rpca_problems import (low_rank_plus_sparse, mask_scores, relative_error,
                                     sample_low_rank_plus_sparse, synthetic_video)


def test_low_rank_plus_sparse_has_the_stated_structure():
    Y, L, S = low_rank_plus_sparse(300, 200, rank=4, outlier_fraction=0.1, outlier_magnitude=2.0, random_state=0)
    assert Y.shape == L.shape == S.shape == (300, 200) and Y.dtype == np.float64
    np.testing.assert_array_equal(Y, L + S)
    s = np.linalg.svd(L, compute_uv=False)
    assert s[4] < 1e-10 * s[0] and s[3] > 1e-3 * s[0]  # rank exactly 4
    fraction = np.mean(S != 0)
    assert abs(fraction - 0.1) < 4 * np.sqrt(0.1 * 0.9 / S.size)  # binomial, 4 sigma
    bound = 2.0 * np.abs(L).mean()
    assert np.abs(S).max() <= bound and np.abs(S).max() > 0.95 * bound  # uniform in [-bound, bound]
    # Uniform values: mean |S| on the support is bound / 2.
    assert np.abs(S[S != 0]).mean() == pytest.approx(bound / 2, rel=0.03)


def test_low_rank_plus_sparse_stacks_dtypes_and_seeds():
    Y, L, S = low_rank_plus_sparse(20, rank=2, n_problems=3, dtype=np.float32, random_state=1)
    assert Y.shape == (3, 20, 20) and Y.dtype == np.float32
    assert not np.array_equal(L[0], L[1])
    again = low_rank_plus_sparse(20, rank=2, n_problems=3, dtype=np.float32, random_state=1)[0]
    np.testing.assert_array_equal(Y, again)
    # The torch sampler is the implementation: same draws on any generator it is given.
    g = torch.Generator().manual_seed(5)
    Yt, Lt, St = sample_low_rank_plus_sparse(2, 10, 12, 3, 0.2, 1.0, g)
    assert Yt.shape == (2, 10, 12) and torch.equal(Yt, Lt + St)


@pytest.mark.parametrize("kwargs, match", [
    ({"rank": 0}, "rank must be a positive integer"),
    ({"rank": 11}, "larger than the matrix allows"),
    ({"outlier_fraction": 1.0}, r"outlier_fraction must be in \[0, 1\)"),
    ({"outlier_fraction": -0.1}, r"outlier_fraction must be in \[0, 1\)"),
    ({"outlier_magnitude": float("nan")}, "outlier_magnitude"),
])
def test_low_rank_plus_sparse_rejects_bad_parameters(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        low_rank_plus_sparse(10, **kwargs)


def test_synthetic_video_ground_truth():
    video = synthetic_video(n_frames=30, height=24, width=32, rank=2, n_objects=2, object_size=4, noise=0.0,
                            random_state=3)
    assert video.frames.shape == video.background.shape == video.masks.shape == (30, 24, 32)
    # The background is exactly rank 2 as a (pixels x frames) matrix.
    s = np.linalg.svd(video.as_matrix("background"), compute_uv=False)
    assert s[2] < 1e-10 * s[0] and s[1] > 1e-3 * s[0]
    # Noiseless: frames = background + foreground, foreground nonzero only on the masks.
    np.testing.assert_allclose(video.frames, video.background + video.foreground, atol=1e-12)
    assert not np.any(video.foreground[~video.masks])
    # Each frame shows at most 2 squares of 4x4 pixels, and the objects move.
    per_frame = video.masks.reshape(30, -1).sum(axis=1)
    assert np.all(per_frame <= 2 * 16) and np.all(per_frame >= 16)
    assert not np.array_equal(video.masks[0], video.masks[-1])
    noisy = synthetic_video(n_frames=30, height=24, width=32, rank=2, n_objects=2, object_size=4, noise=0.1,
                            random_state=3)
    residual = noisy.frames - noisy.background - noisy.foreground
    assert residual.std() == pytest.approx(0.1 * video.background.std(), rel=0.05)


def test_synthetic_video_rejects_bad_parameters():
    with pytest.raises(ValueError, match="object_size"):
        synthetic_video(height=8, width=8, object_size=9)
    with pytest.raises(ValueError, match="rank"):
        synthetic_video(n_frames=2, rank=3)
    with pytest.raises(ValueError, match="noise"):
        synthetic_video(noise=-1.0)


def test_metrics():
    truth = np.zeros((4, 4), dtype=bool)
    truth[:2, :2] = True  # 4 pixels
    predicted = np.zeros_like(truth)
    predicted[:2, :3] = True  # 6 pixels, 4 right
    scores = mask_scores(predicted, truth)
    assert scores["iou"] == pytest.approx(4 / 6)
    assert scores["precision"] == pytest.approx(4 / 6) and scores["recall"] == 1.0
    assert scores["f_measure"] == pytest.approx(2 * (4 / 6) / (4 / 6 + 1))
    assert relative_error(np.array([3.0, 4.0]) * 1.1, np.array([3.0, 4.0])) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="all zeros"):
        relative_error(np.ones(2), np.zeros(2))
    with pytest.raises(ValueError, match="shape mismatch"):
        mask_scores(truth, truth[:2])
