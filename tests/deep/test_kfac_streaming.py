"""Streaming K-FAC / EK-FAC scores in the Kronecker eigenbasis against the parameter-space route."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from deep_helpers import IGNORE_JIT, NOT_STATIONARY, train, trained_mlp  # noqa: E402
from deep_helpers import one_torch_thread  # noqa: E402, F401 (autouse fixture)
from rif.deep import TorchInfluence  # noqa: E402

pytestmark = [IGNORE_JIT, NOT_STATIONARY]


def _conv_problem():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 3, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
        torch.nn.Linear(3 * 5 * 5, 4)).double()
    X = torch.randn(14, 1, 5, 5, dtype=torch.float64)
    y = torch.randint(0, 4, (14,))
    train(model, torch.nn.functional.cross_entropy, X, y, steps=50)
    return model, X, y


def _parameter_space(ti, Xt, yt, target):
    """IF and RIF by the parameter-space route: solves / eigenbasis rotations of full gradients."""
    F = ti.gradients(Xt, yt, target=target)
    idx = np.arange(ti.n_samples_)
    s_if = ti.train_gradients() @ ti.solver_.solve(F.T)
    steps, lev = ti._loo_steps(idx, "rif")
    return s_if.numpy(), (steps @ F.T).numpy(), lev.numpy()


@pytest.mark.parametrize("problem", ["mlp", "conv"])
@pytest.mark.parametrize("solver", ["kfac", "ekfac"])
@pytest.mark.parametrize("curvature, target", [("gnh", "loss"), ("fisher", "proba")])
def test_eigenbasis_scores_equal_the_parameter_space_route(problem, solver, curvature, target):
    model, X, y = trained_mlp() if problem == "mlp" else _conv_problem()
    ti = TorchInfluence(model, "cross_entropy", (X, y), solver=solver, curvature=curvature, damping=0.3,
                        dtype=torch.float64, batch_size=8).fit()
    Xt, yt = X[:5], y[:5]
    s_if, s_rif, lev = _parameter_space(ti, Xt, yt, target)
    np.testing.assert_allclose(ti.scores(Xt, yt, target=target, method="if", linear=True), s_if,
                               rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ti.scores(Xt, yt, target=target, method="rif", linear=True), s_rif,
                               rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ti.leverage_, lev, rtol=1e-9, atol=1e-12)
    assert not np.allclose(s_if, s_rif)
    if target == "loss":          # self-influence g_i^T dtheta_i in the eigenbasis
        G = ti.train_gradients()
        steps = ti._loo_steps(np.arange(ti.n_samples_), "rif")[0]
        np.testing.assert_allclose(ti.self_influence("rif", linear=True), (G * steps).sum(1).numpy(),
                                   rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(ti.self_influence("if", linear=True),
                                   (G * ti.solver_.solve(G.T).T).sum(1).numpy(), rtol=1e-9, atol=1e-12)


def test_countsketch_is_an_unbiased_isometry_in_expectation():
    from rif.deep._projection import CountSketch
    P = [CountSketch(40, 8, seed=s, dtype=torch.float64).dense() for s in range(400)]
    mean = sum(p.T @ p for p in P) / len(P)
    assert float((mean - torch.eye(40, dtype=torch.float64)).abs().max()) < 0.15
    one = CountSketch(40, 8, seed=3, dtype=torch.float64)
    V = torch.randn(5, 40, dtype=torch.float64)
    torch.testing.assert_close(one(V), V @ one.dense().T)
    assert int((one.dense() != 0).sum()) == 40          # one nonzero per column


@pytest.mark.parametrize("method", ["if", "rif"])
def test_projected_scores_error_against_unprojected(method):
    """The projected scores' error is measured against the unprojected ones and shrinks with k."""
    model, X, y = trained_mlp()
    ti = TorchInfluence(model, "cross_entropy", (X, y), damping=0.1, dtype=torch.float64).fit()
    Xt, yt = X[:6], y[:6]
    exact = ti.scores(Xt, yt, method=method, linear=True)
    err = {}
    for k in (16, 65536):
        approx = ti.scores(Xt, yt, method=method, linear=True, projection=k)
        err[k] = np.linalg.norm(approx - exact) / np.linalg.norm(exact)
    assert err[65536] < 0.05 and err[65536] < err[16]
    again = ti.scores(X[6:9], y[6:9], method=method, linear=True, projection=65536)    # reuses the kept steps
    exact2 = ti.scores(X[6:9], y[6:9], method=method, linear=True)
    assert np.linalg.norm(again - exact2) / np.linalg.norm(exact2) < 0.05
    with pytest.raises(ValueError, match="linear=True"):
        ti.scores(Xt, yt, method=method, projection=8)
    with pytest.raises(ValueError, match="projection"):
        ti.scores(Xt, yt, method=method, linear=True, projection=0)


def _tensors(obj, seen=None, depth=0):
    seen = set() if seen is None else seen
    if id(obj) in seen or depth > 4:
        return
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v, seen, depth + 1)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v, seen, depth + 1)
    elif hasattr(obj, "__dict__") and type(obj).__module__.startswith("rif"):
        yield from _tensors(vars(obj), seen, depth + 1)


@pytest.mark.parametrize("solver", ["exact", "cg", "ekfac", "lowrank"])
def test_no_n_by_p_gradient_matrix_is_kept(solver):
    model, X, y = trained_mlp()
    ti = TorchInfluence(model, "cross_entropy", (X, y), solver=solver, damping=0.3, dtype=torch.float64,
                        batch_size=7, rank=20).fit()
    ti.scores(X[:3], y[:3], method="rif", linear=True)
    ti.scores(X[:3], y[:3], method="if", linear=True)
    ti.self_influence("rif")
    n, p = ti.n_samples_, ti.n_params_
    shapes = [tuple(t.shape) for t in _tensors(ti)]
    assert shapes and (n, p) not in shapes and (p, n) not in shapes
    assert ti.train_gradients().shape == (n, p)          # computed on request, not kept
    assert (n, p) not in [tuple(t.shape) for t in _tensors(ti)]


@pytest.mark.parametrize("problem", ["mlp", "conv"])
@pytest.mark.parametrize("curvature", ["gnh", "fisher"])
def test_kfac_fit_statistics_from_captured_layers_equal_the_per_sample_route(problem, curvature):
    """The K-FAC fit's trace and gradient sums (from layer captures) = the vmapped per-sample route."""
    from rif.deep._gradients import gradient_sums
    model, X, y = trained_mlp() if problem == "mlp" else _conv_problem()
    ti = TorchInfluence(model, "cross_entropy", (X, y), solver="ekfac", curvature=curvature, damping=0.3,
                        weight_decay=0.2, dtype=torch.float64, batch_size=8).fit()
    assert ti.curvature_trace_ == pytest.approx(ti._curv.trace(), rel=1e-10)
    ref = gradient_sums(ti._fm, ti._loss, ti._X, ti._y, batch_size=5)
    got = ti._grad_sums
    torch.testing.assert_close(got.total, ref.total, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got.abs_total, ref.abs_total, rtol=1e-10, atol=1e-12)
    assert got.norm_total == pytest.approx(ref.norm_total, rel=1e-10)
    assert ti.shift_ == pytest.approx(0.2 + 0.3 * ti.curvature_trace_ / ti.n_params_)
