"""The unfolded RPCA network (LRPCA) and the LearnedRPCA estimator, on small problems."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from unfolding.rpca_classical import scaledgd_init, scaledgd_step
from unfolding.rpca_estimators import LearnedRPCA
from unfolding.rpca_networks import UnfoldedRPCA, rms
from unfolding.rpca_problems import low_rank_plus_sparse, relative_error

SHAPE = (80, 80)
RANK = 3


@pytest.fixture(scope="module")
def test_problems():
    return low_rank_plus_sparse(*SHAPE, rank=RANK, outlier_fraction=0.1, n_problems=4, random_state=11)


@pytest.fixture(scope="module")
def trained():
    # 8 layers, 150 steps on 8 synthetic 80x80 problems: ~3 s on one thread.
    return LearnedRPCA(rank=RANK, n_layers=8, problem={"shape": SHAPE}, max_iter=150, lr=0.05,
                       random_state=0).fit()


def _classical(Y, n_layers, step=0.7, threshold=2.0, decay=0.6):
    """ScaledGD with a geometric schedule, written out with the classical functions."""
    Yt = torch.as_tensor(Y)
    scale = rms(Yt)
    left, right = scaledgd_init(Yt, RANK, threshold * scale, torch.Generator().manual_seed(0))
    for k in range(1, n_layers + 1):
        left, right, _ = scaledgd_step(Yt, left, right, step, threshold * decay**k * scale)
    return (left @ right.mT).numpy()


def test_untrained_network_is_classical_scaledgd(test_problems):
    Y, L, _ = test_problems
    net = UnfoldedRPCA(6, step=0.7, threshold=2.0, decay=0.6, residual_floor=0)
    with torch.no_grad():
        left, right = net(torch.as_tensor(Y), RANK, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose((left @ right.mT).numpy(), _classical(Y, 6), rtol=1e-12, atol=1e-12)
    # The floor stays below the classical schedule's thresholds here: same result with it.
    floored = UnfoldedRPCA(6, step=0.7, threshold=2.0, decay=0.6)
    with torch.no_grad():
        left, right = floored(torch.as_tensor(Y), RANK, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose((left @ right.mT).numpy(), _classical(Y, 6), rtol=1e-12, atol=1e-12)


def test_residual_floor_is_the_median_absolute_residual():
    Y, L, _ = low_rank_plus_sparse(300, rank=RANK, outlier_fraction=0.1, random_state=3)
    Yt = torch.as_tensor(Y)
    left, right = scaledgd_init(Yt, RANK, 2.0 * rms(Yt), torch.Generator().manual_seed(0))
    sampled = UnfoldedRPCA._floor_sampler(Yt)(left, right)
    full = (left @ right.mT - Yt).abs().median()
    assert sampled.shape == (1, 1)
    assert abs(float(sampled) / float(full) - 1) < 0.05  # 4096 of 90,000 entries
    batch = UnfoldedRPCA._floor_sampler(torch.stack([Yt, 2 * Yt]))(torch.stack([left, 2 * left]),
                                                                    torch.stack([right, right]))
    np.testing.assert_allclose(batch.flatten().numpy(), [float(sampled), 2 * float(sampled)], rtol=1e-12)


def test_residual_floor_keeps_layers_from_stalling():
    """Thresholds that fall faster than the error freeze ScaledGD; the floor keeps it converging."""
    Y, L, _ = low_rank_plus_sparse(200, rank=RANK, outlier_fraction=0.2, random_state=5)
    errors = {}
    for floor in (0.0, 5.0):
        net = UnfoldedRPCA(30, step=0.7, threshold=2.0, decay=0.6, residual_floor=floor)
        with torch.no_grad():
            net.log_threshold[3:] = np.log(1e-12)  # a schedule far below the error after layer 2
            outputs = net(torch.as_tensor(Y), RANK, generator=torch.Generator().manual_seed(0), return_all=True)
        errors[floor] = [relative_error((left @ right.mT).numpy(), L) for left, right in outputs]
    stalled, floored = errors[0.0], errors[5.0]
    assert stalled[-1] > 0.9 * stalled[2]  # frozen from layer 3 on
    # With the floor alone as the schedule, still converging (measured 4.1e-6 against 4.0e-2).
    assert floored[-1] < stalled[-1] / 1e3 and floored[-1] < floored[-10] / 5


def test_training_beats_the_classical_schedule_on_new_problems(trained, test_problems):
    Y, L, _ = test_problems
    learned = np.mean([relative_error(trained.decompose(Y[i])[0], L[i]) for i in range(len(Y))])
    # The network started from the schedule tuned on the training problems
    # (schedule="auto"); training improves on that classical optimum.
    classical = np.mean([relative_error(_classical(Y[i], 8, **trained.schedule_), L[i]) for i in range(len(Y))])
    assert learned < classical / 10, (learned, classical)
    assert trained.layer_error_.shape == (8,)
    assert trained.layer_error_[-1] < trained.layer_error_[0] / 100
    assert trained.steps_.shape == (8,) and trained.thresholds_.shape == (9,)
    assert len(trained.loss_curve_) == trained.n_iter_ == 150


def test_decomposition_adds_up_and_S_is_sparse(trained, test_problems):
    Y, L, S = test_problems
    L_hat, S_hat = trained.decompose(Y)
    assert L_hat.shape == S_hat.shape == Y.shape
    for i in range(len(Y)):
        assert np.linalg.matrix_rank(L_hat[i], tol=1e-8 * np.abs(L_hat[i]).max()) == RANK
        # Away from the outliers, S_hat is zero but for small residuals of L's error (the residual
        # floor's threshold, the default, measured 0-1.9 % of the entries of these 80 x 80 problems,
        # against 0-0.5 % without it); on them, it matches S.
        assert np.count_nonzero(S_hat[i][S[i] == 0]) <= 0.025 * S[i].size
        # S_hat is Y - L_hat soft-thresholded at one threshold, at least the last learned one.
        residual = Y[i] - L_hat[i]
        support = S_hat[i] != 0
        shrink = np.abs(residual[support]) - np.abs(S_hat[i][support])
        threshold = shrink.mean()
        np.testing.assert_allclose(shrink, threshold, rtol=1e-9)
        np.testing.assert_array_equal(np.sign(S_hat[i][support]), np.sign(residual[support]))
        assert np.all(np.abs(residual[~support]) <= threshold * (1 + 1e-9))
        assert threshold >= trained.thresholds_[-1] * np.sqrt(np.mean(Y[i] ** 2)) * (1 - 1e-9)


def test_scale_equivariant_and_any_size(trained, test_problems):
    Y, L, _ = test_problems
    L1, S1 = trained.decompose(Y[0])
    L2, S2 = trained.decompose(1e3 * Y[0])
    np.testing.assert_allclose(L2, 1e3 * L1, rtol=1e-9, atol=1e-9 * np.abs(L2).max())
    np.testing.assert_allclose(S2, 1e3 * S1, rtol=1e-9, atol=1e-9 * np.abs(L2).max())
    # Trained on 80x80; a 120x100 matrix of rank 2 is fine too.
    Yb, Lb, _ = low_rank_plus_sparse(120, 100, rank=2, outlier_fraction=0.1, random_state=3)
    assert relative_error(trained.decompose(Yb, rank=2)[0], Lb) < 1e-3


def test_torch_in_torch_out_and_float32(trained, test_problems):
    Y, L, _ = test_problems
    L_np, _ = trained.decompose(Y[0])
    L_t, S_t = trained.decompose(torch.as_tensor(Y[0]))
    assert isinstance(L_t, torch.Tensor) and L_t.dtype == torch.float64
    np.testing.assert_allclose(L_t.numpy(), L_np, rtol=0, atol=1e-12)
    L32, _ = trained.decompose(Y[0].astype(np.float32))
    assert L32.dtype == np.float32


def test_layerwise_and_unsupervised_training_improve_on_the_initial_schedule(test_problems):
    Y, L, _ = test_problems

    def error(model):
        return np.mean([relative_error(model.decompose(Y[i])[0], L[i]) for i in range(len(Y))])

    common = {"rank": RANK, "n_layers": 6, "random_state": 0}
    tuned = LearnedRPCA(**common, problem={"shape": SHAPE}, max_iter=0).fit()  # the tuned classical schedule
    layerwise = LearnedRPCA(**common, problem={"shape": SHAPE}, training="layerwise", steps_per_layer=25,
                            max_iter=0).fit()
    assert layerwise.n_iter_ == 6 * 25
    assert error(layerwise) < error(tuned) / 2  # measured 5.0e-4 vs 2.8e-3
    # Unsupervised: trained on observations only, no low-rank truth, so it
    # starts from the default schedule.
    default = LearnedRPCA(**common, schedule={"threshold": 2.0, "decay": 0.6, "step": 0.7}, max_iter=0).fit(Y, L)
    unsup = LearnedRPCA(**common, loss="unsupervised", max_iter=100).fit(Y)
    assert unsup.schedule_ == default.schedule_ and unsup.layer_error_ is None
    assert error(unsup) < error(default) / 3  # measured 2.3e-3 vs 1.4e-2


def test_fit_on_user_data_and_reproducibility(test_problems):
    Y, L, _ = test_problems
    a = LearnedRPCA(rank=RANK, n_layers=4, max_iter=20, random_state=5).fit(Y, L)
    b = LearnedRPCA(rank=RANK, n_layers=4, max_iter=20, random_state=5).fit(Y, L)
    np.testing.assert_array_equal(a.steps_, b.steps_)
    np.testing.assert_array_equal(a.thresholds_, b.thresholds_)
    np.testing.assert_array_equal(a.decompose(Y[0])[0], b.decompose(Y[0])[0])
    assert clone(a).get_params() == a.get_params()


def test_pickle_and_save_load_lose_nothing(trained, test_problems, tmp_path):
    Y = test_problems[0][0]
    expected = trained.decompose(Y)
    restored = pickle.loads(pickle.dumps(trained))
    path = tmp_path / "lrpca.pt"
    trained.save(path)
    loaded = LearnedRPCA.load(path)
    for model in (restored, loaded):
        np.testing.assert_array_equal(model.decompose(Y)[0], expected[0])
        np.testing.assert_array_equal(model.decompose(Y)[1], expected[1])
        np.testing.assert_array_equal(model.thresholds_, trained.thresholds_)


def test_decompose_is_deterministic_whatever_the_random_state(test_problems):
    """The randomised SVD (min(m, n) > 4 (rank + 10)) draws from inference_seed_, fixed in fit."""
    Y = np.random.default_rng(5).standard_normal((150, 150))
    for random_state in (None, np.random.default_rng(3), 7):
        model = LearnedRPCA(rank=2, n_layers=3, problem={"shape": (40, 40)}, n_problems=2, max_iter=3,
                            random_state=random_state).fit()
        first = model.decompose(Y)
        restored = pickle.loads(pickle.dumps(model))
        for L, S in (model.decompose(Y), restored.decompose(Y)):
            np.testing.assert_array_equal(L, first[0])
            np.testing.assert_array_equal(S, first[1])
    assert model.inference_seed_ == 7  # an int random_state is the seed itself


def test_decompose_integer_tensors_and_zero_matrices(trained, test_problems):
    Y = np.round(test_problems[0][:2] * 10)
    L, S = trained.decompose(Y)
    Lt, St = trained.decompose(torch.from_numpy(Y.astype(np.int64)))
    assert Lt.dtype == St.dtype == torch.float64  # not truncated back to int
    np.testing.assert_array_equal(Lt.numpy(), L)
    np.testing.assert_array_equal(St.numpy(), S)
    # An all-zero matrix is exactly L = S = 0, alone or in a stack.
    L0, S0 = trained.decompose(np.zeros(SHAPE))
    assert not L0.any() and not S0.any()
    stack = np.stack([np.zeros(SHAPE), Y[0]])
    Ls, Ss = trained.decompose(stack)
    assert not Ls[0].any() and not Ss[0].any()
    L1, S1 = trained.decompose(Y[0])
    np.testing.assert_allclose(Ls[1], L1, rtol=1e-10, atol=1e-10 * np.abs(L1).max())


def test_bad_input_gets_clear_errors(trained, test_problems):
    Y, L, _ = test_problems
    with pytest.raises(NotFittedError):
        LearnedRPCA().decompose(Y[0])
    with pytest.raises(ValueError, match="NaN or inf"):
        trained.decompose(np.where(np.eye(SHAPE[0]) > 0, np.nan, Y[0]))
    with pytest.raises(ValueError, match="rank must be an integer"):
        trained.decompose(Y[0][:2], rank=3)
    with pytest.raises(ValueError, match="matrix .* or a stack"):
        trained.decompose(Y[0, 0])
    with pytest.raises(TypeError, match="real-valued"):
        trained.decompose(Y[0].astype(np.complex128))
    with pytest.raises(ValueError, match="outlier_fraction must be in"):
        LearnedRPCA(problem={"outlier_fraction": 1.0}).fit()
    with pytest.raises(ValueError, match="larger than the matrix allows"):
        LearnedRPCA(rank=90, problem={"shape": SHAPE}).fit()
    with pytest.raises(ValueError, match="keys among"):
        LearnedRPCA(problem={"size": 3}).fit()
    with pytest.raises(ValueError, match="needs the true low-rank parts"):
        LearnedRPCA(rank=RANK).fit(Y)
    with pytest.raises(ValueError, match="shape of X"):
        LearnedRPCA(rank=RANK).fit(Y, L[:2])
    with pytest.raises(ValueError, match="loss must be"):
        LearnedRPCA(loss="l2").fit()
    with pytest.raises(ValueError, match="schedule must be 'auto' or a dict"):
        LearnedRPCA(schedule={"step": 0.5}).fit()
    with pytest.raises(ValueError, match="residual_floor must be a finite number >= 0"):
        LearnedRPCA(residual_floor=-1.0).fit()
    with pytest.raises(ValueError, match="decay must be a positive number"):
        LearnedRPCA(schedule={"step": 0.5, "threshold": 1.0, "decay": -1.0}).fit()


@pytest.mark.gpu
def test_cuda_tensor_runs_on_the_gpu_and_matches_the_cpu(trained, test_problems):
    Y = test_problems[0][0]
    L_cpu, S_cpu = trained.decompose(torch.as_tensor(Y))
    L_gpu, S_gpu = trained.decompose(torch.as_tensor(Y, device="cuda"))
    assert L_gpu.device.type == "cuda"
    # The randomised SVD's sketch comes from a CUDA generator there: equal up
    # to the initialisation's accuracy, which the layers contract.
    assert relative_error(L_gpu, L_cpu) < 1e-6
    assert relative_error(S_gpu, S_cpu) < 1e-3
    on_gpu = LearnedRPCA(rank=RANK, n_layers=4, problem={"shape": SHAPE}, max_iter=10, device="cuda",
                         random_state=0).fit()
    assert on_gpu.device_.type == "cuda" and on_gpu.module_.log_step.device.type == "cuda"
    restored = pickle.loads(pickle.dumps(on_gpu))
    assert restored.module_.log_step.device.type == "cpu"
    # Same network; the randomised SVD's sketch differs between CPU and CUDA generators.
    assert relative_error(restored.decompose(Y)[0], on_gpu.decompose(Y)[0]) < 1e-4
