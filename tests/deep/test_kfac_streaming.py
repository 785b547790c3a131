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
