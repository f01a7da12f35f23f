"""The learned conjugate-direction solver: Lanczos/Ritz data, training, solving."""

import copy
import pickle

import numpy as np
import pytest
import scipy.sparse.linalg as spla
import torch

from solvers.cg import cg
from solvers.dcdm import DCDMSolver, _direction, _resolve_coarse_levels, lanczos_ritz, ritz_rhs
from solvers.problems import obstacle_mask, poisson, rhs


def test_lanczos_ritz_values_and_vectors():
    A = poisson((12, 12)).A
    values, vectors = lanczos_ritz(A, 60, random_state=0)
    eig = np.linalg.eigvalsh(A.toarray())
    # Extreme Ritz values converge first.
    assert values[0] == pytest.approx(eig[0], rel=1e-6)
    assert values[-1] == pytest.approx(eig[-1], rel=1e-6)
    np.testing.assert_allclose(vectors.T @ vectors, np.eye(vectors.shape[1]), atol=1e-8)
    # Ritz pairs: V^T A V is diagonal with the Ritz values.
    np.testing.assert_allclose(vectors.T @ (A @ vectors), np.diag(values), atol=1e-8)


def test_ritz_rhs_is_unit_norm_and_biased_low():
    A = poisson((12, 12)).A
    values, vectors = lanczos_ritz(A, 60, random_state=0)
    B = ritz_rhs(vectors, 200, random_state=1)
    np.testing.assert_allclose(np.linalg.norm(B, axis=0), 1.0)
    energy = (vectors.T @ B) ** 2
    low = energy[:30].sum() / energy.sum()
    assert low > 0.9  # weight 9 on the low half: 81 / 82 of the energy in expectation


@pytest.fixture(scope="module")
def trained():
    problem = poisson((16, 16))
    model = DCDMSolver(channels=8, n_lanczos=80, n_rhs=200, max_iter=150, random_state=0, device="cpu")
    return problem, model.fit(problem)


def test_training_reduces_the_scale_invariant_loss(trained):
    _, model = trained
    assert model.n_iter_ == 150
    assert np.mean(model.loss_curve_[-20:]) < 0.3 * np.mean(model.loss_curve_[:5])
    assert model.device_.type == "cpu"


def test_solve_reaches_tolerance_and_matches_direct_solve(trained):
    problem, model = trained
    b = rhs(problem, "randn", random_state=3)
    x, res = model.solve(problem, b, rtol=1e-8, maxiter=200)
    assert res.converged and res.reason == "converged"
    ref = spla.spsolve(problem.A.tocsc(), b)
    np.testing.assert_allclose(x, ref, rtol=1e-6, atol=1e-6 * np.abs(ref).max())
    assert res.residual_norms[-1] == pytest.approx(np.linalg.norm(b - problem.A @ x))
    _, plain = cg(problem.A, b, rtol=1e-8)
    assert res.n_iter < plain.n_iter


def test_solve_on_larger_grids_and_unseen_geometry(trained):
    """The network is fully convolutional: it runs on other grids and geometries.

    Keeping every direction (the default) makes even this briefly trained
    model (150 steps, 8 channels) converge there; keeping the public code's
    2 is never better.
    """
    _, model = trained
    for problem in (
        poisson((32, 32)),
        poisson((24, 24), boundary="neumann", obstacles=obstacle_mask((24, 24), "sphere")),
    ):
        b = rhs(problem, "smooth", random_state=4)
        x, res = model.solve(problem, b, rtol=1e-6, maxiter=200)
        true = np.linalg.norm(b - problem.A @ x)
        assert true == pytest.approx(res.residual_norms[-1])
        assert res.converged and true <= 1e-6 * np.linalg.norm(b)
        _, two = model.solve(problem, b, rtol=1e-6, maxiter=200, n_directions=2)
        assert res.n_iter <= two.n_iter
        paper = copy.deepcopy(model).set_params(residual_step=False)
        _, learned_only = paper.solve(problem, b, rtol=1e-6, maxiter=200)
        assert learned_only.converged and res.n_iter <= learned_only.n_iter
        assert two.converged == (two.residual_norms[-1] <= two.tolerance)


def test_residual_steps_replace_useless_directions(trained):
    """A network whose output makes no progress falls back to the residual: CG itself."""
    problem, model = trained
    useless = copy.deepcopy(model)
    with torch.no_grad():
        useless.network_.out.weight.zero_()
        useless.network_.out.bias.zero_()
    b = rhs(problem, "randn", random_state=6)
    x, res = useless.solve(problem, b, rtol=1e-8, maxiter=500)
    _, plain = cg(problem.A, b, rtol=1e-8)
    assert res.converged and res.n_residual_steps == res.n_iter
    # Residuals A-orthogonalised against every earlier direction are CG's directions.
    assert abs(res.n_iter - plain.n_iter) <= 2
    np.testing.assert_allclose(problem.A @ x, b, atol=1e-8 * np.linalg.norm(b))
    _, learned = model.solve(problem, b, rtol=1e-8, maxiter=500)
    assert learned.n_residual_steps < learned.n_iter


def test_pickle_and_bad_input(trained):
    problem, model = trained
    b = rhs(problem, "randn", random_state=5)
    clone = pickle.loads(pickle.dumps(model))
    np.testing.assert_allclose(clone.solve(problem, b, rtol=1e-6)[0], model.solve(problem, b, rtol=1e-6)[0])
    with pytest.raises(ValueError, match="entries"):
        model.solve(problem, b[:-1])
    with pytest.raises(ValueError, match="NaN"):
        model.solve(problem, np.full_like(b, np.nan))
    with pytest.raises(ValueError, match="n_directions"):
        model.solve(problem, b, n_directions="most")
    with pytest.raises(ValueError, match="n_directions"):
        DCDMSolver(n_directions="two", max_iter=1).fit(problem)
    for bad in ("most", -1, 1.5):
        with pytest.raises((ValueError, TypeError), match="coarse_levels"):
            model.solve(problem, b, coarse_levels=bad)
        with pytest.raises((ValueError, TypeError), match="coarse_levels"):
            DCDMSolver(coarse_levels=bad, max_iter=1).fit(problem)
    cube = poisson((6, 6, 6))
    with pytest.raises(ValueError, match="3-D but the network was trained on a 2-D grid"):
        model.solve(cube, rhs(cube, "randn", random_state=0))
    with pytest.raises(TypeError, match="PoissonProblem"):
        model.solve(problem.A, b)
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        DCDMSolver().solve(problem, b)
    with pytest.raises(ValueError, match="dtype"):
        DCDMSolver(dtype="float16", max_iter=1).fit(problem)
    # A hand-made problem whose matrix is not SPD: the error names it before iterating.
    import dataclasses

    asymmetric = problem.A.tolil()
    asymmetric[0, 1] *= 2.0
    with pytest.raises(ValueError, match="not symmetric"):
        model.solve(dataclasses.replace(problem, A=asymmetric.tocsr()), b)
    with_nan = problem.A.copy()
    with_nan.data[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        model.solve(dataclasses.replace(problem, A=with_nan), b)


def test_fit_leaves_the_global_rng_alone():
    problem = poisson((8, 8))
    torch_state, numpy_state = torch.random.get_rng_state(), np.random.get_state()
    small = dict(channels=4, n_lanczos=20, n_rhs=20, max_iter=3, random_state=0, device="cpu")
    first = DCDMSolver(**small).fit(problem)
    assert torch.equal(torch_state, torch.random.get_rng_state())
    assert np.array_equal(numpy_state[1], np.random.get_state()[1])
    torch.manual_seed(123)  # the global seed plays no part
    second = DCDMSolver(**small).fit(problem)
    torch.random.set_rng_state(torch_state)
    for p, q in zip(first.network_.parameters(), second.network_.parameters()):
        assert torch.equal(p, q)


def test_coarse_levels_stop_at_four_cells_on_the_shortest_side():
    assert _resolve_coarse_levels("auto", (16, 16)) == 2  # 8^2, 4^2
    assert _resolve_coarse_levels("auto", (64, 64, 64)) == 4
    assert _resolve_coarse_levels("auto", (256, 100)) == 4  # 100 -> 50, 25, 12.5, 6.25
    assert _resolve_coarse_levels("auto", (6, 6, 6)) == 0
    assert _resolve_coarse_levels("auto", (3, 40)) == 0
    assert _resolve_coarse_levels(1, (64, 64)) == 1
    assert _resolve_coarse_levels(10, (64, 64)) == 4  # capped
    assert _resolve_coarse_levels(0, (64, 64)) == 0


@pytest.mark.parametrize("shape", [(12, 9), (8, 12, 6)])
def test_coarse_direction_is_the_interpolated_block_average(shape):
    """With the identity for a network, the level-1 direction of a linear field
    is the field itself (block averages of a linear function are its values at
    the block centres, and linear interpolation between them is exact) away
    from the high edges, where the blocks are padded with zeros."""
    problem = poisson(shape)
    grids = np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij")
    field = 1.0 + sum((k + 1) * g for k, g in enumerate(grids))
    r = torch.as_tensor(problem.from_grid(field))
    parameter = torch.zeros((), dtype=torch.float64)
    q = problem.to_grid(_direction(torch.nn.Identity(), problem, r, 1, parameter).numpy())
    padded = np.pad(field, [(0, n % 2) for n in shape])  # zeros, as the solver pads odd sizes
    blocks = padded.reshape(sum(((n // 2, 2) for n in padded.shape), ())).mean(axis=tuple(range(1, 2 * len(shape), 2)))
    scale = 1.0 / np.linalg.norm(blocks)
    # Away from the edges, where interpolation clamps, and from the last two
    # cells of odd sides, whose block average takes in a padded zero.
    interior = tuple(slice(1, n - 1 - n % 2) for n in shape)
    np.testing.assert_allclose(q[interior], scale * field[interior], rtol=1e-12)
    # A field the coarse grid does not see (a checkerboard) gives no direction.
    checker = torch.as_tensor(problem.from_grid((-1.0) ** sum(grids)))
    assert not torch.any(_direction(torch.nn.Identity(), problem, checker, 1, parameter))


def test_n_directions_keeps_that_many_earlier_iterations(trained, monkeypatch):
    """Each direction is A-orthogonalised against the directions of the
    ``n_directions`` previous iterations (and the current one's so far)."""
    import solvers.dcdm as dcdm

    problem, model = trained
    b = rhs(problem, "randn", random_state=8)
    seen = []
    original = dcdm._a_orthogonalise

    def spy(q, directions):
        seen.append(len(directions))
        return original(q, directions)

    monkeypatch.setattr(dcdm, "_a_orthogonalise", spy)
    model.solve(problem, b, rtol=1e-12, maxiter=6, n_directions=2, coarse_levels=0)
    # per iteration: the network's direction, then the residual; blocks held: min(k, 2) + 1
    assert seen[::2] == [1, 2, 3, 3, 3, 3]


def test_coarse_direction_does_not_depend_on_the_residual_scale(trained):
    problem, model = trained
    r = torch.as_tensor(rhs(problem, "smooth", random_state=9))
    parameter = next(model.network_.parameters())  # float32
    with torch.no_grad():
        reference = _direction(model.network_, problem, r, 1, parameter).numpy()
        for scale in (1e-30, 1e30):
            np.testing.assert_allclose(_direction(model.network_, problem, scale * r, 1, parameter).numpy(), reference,
                                       rtol=1e-6, atol=1e-6 * np.abs(reference).max())


def test_coarse_levels_cut_iterations_on_a_larger_grid(trained):
    """The network applied on coarsened grids reaches the smooth error that a
    network trained on a 16^2 box misses on 64^2: fewer iterations, same solution."""
    _, model = trained
    problem = poisson((64, 64))
    b = rhs(problem, "smooth", random_state=7)
    x, multilevel = model.solve(problem, b, rtol=1e-8, maxiter=300)
    _, single = model.solve(problem, b, rtol=1e-8, maxiter=300, coarse_levels=0)
    assert multilevel.converged and single.converged
    assert multilevel.n_iter < 0.7 * single.n_iter
    ref = spla.spsolve(problem.A.tocsc(), b)
    np.testing.assert_allclose(x, ref, rtol=1e-6, atol=1e-6 * np.abs(ref).max())


@pytest.mark.gpu
def test_training_and_solving_on_cuda(trained):
    """The iteration runs on the GPU (float64 vectors, our CUDA SpMV), gives the
    CPU's solution, and a GPU-trained solver loads and solves on the CPU."""
    import io

    problem, model = trained
    on_gpu = copy.deepcopy(model)
    on_gpu.network_.to("cuda")
    b = rhs(problem, "randn", random_state=3)
    x_cpu, res_cpu = model.solve(problem, b, rtol=1e-8, maxiter=200)
    seen = []
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):  # TF32 would change the directions
        x_gpu, res_gpu = on_gpu.solve(problem, b, rtol=1e-8, maxiter=200, callback=seen.append)
    assert isinstance(x_gpu, np.ndarray) and isinstance(seen[-1], np.ndarray)
    assert res_gpu.converged and abs(res_gpu.n_iter - res_cpu.n_iter) <= 2  # rounding may differ
    np.testing.assert_allclose(x_gpu, x_cpu, rtol=1e-6, atol=1e-6 * np.abs(x_cpu).max())
    assert res_gpu.residual_norms[-1] == pytest.approx(np.linalg.norm(b - problem.A @ x_gpu), rel=1e-6)

    fitted = DCDMSolver(channels=8, n_lanczos=40, n_rhs=50, max_iter=30, random_state=0, device="cuda").fit(problem)
    assert fitted.device_.type == "cuda" and np.all(np.isfinite(fitted.loss_curve_))
    buffer = io.BytesIO()
    fitted.save(buffer)
    buffer.seek(0)
    loaded = DCDMSolver.load(buffer)
    assert next(loaded.network_.parameters()).device.type == "cpu"
    _, res = loaded.solve(problem, b, rtol=1e-6, maxiter=300)
    assert res.converged


def test_solve_leaves_a_read_only_b_alone_and_the_problem_pickles_without_device_copies(trained):
    import warnings

    problem, model = trained
    b = rhs(problem, "randn", random_state=10)
    b.setflags(write=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns when it wraps a read-only array
        x, res = model.solve(problem, b, rtol=1e-8, maxiter=200)
    assert res.converged and np.linalg.norm(b - problem.A @ x) <= 1e-8 * np.linalg.norm(b)
    assert problem._device_cache  # the matrix (and grid map) copies used by the solve
    clone = pickle.loads(pickle.dumps(problem))
    assert clone._device_cache == {} and (clone.A != problem.A).nnz == 0
    np.testing.assert_allclose(model.solve(clone, b, rtol=1e-8, maxiter=200)[0], x)
