"""Per-sample gradients and curvature products against explicit autograd computations."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from deep_helpers import IGNORE_JIT, NOT_STATIONARY, classification_data, tiny_mlp, trained_mlp  # noqa: E402
from deep_helpers import one_torch_thread  # noqa: E402, F401 (autouse fixture)
from rif.deep._curvature import Curvature  # noqa: E402
from rif.deep._functional import FunctionalModel  # noqa: E402
from rif.deep._gradients import per_sample_gradients, per_sample_jacobians  # noqa: E402
from rif.deep._losses import get_loss  # noqa: E402

pytestmark = [IGNORE_JIT, NOT_STATIONARY]


def _flat_forward(fm, X):
    return lambda theta: fm.forward(theta, X)


@pytest.mark.parametrize("loss_name", ["cross_entropy", "mse", "bce"])
def test_per_sample_gradients_match_python_loop(loss_name):
    n_out = 1 if loss_name == "bce" else 3
    model = tiny_mlp(n_out=n_out)
    X, y = classification_data(n=9)
    if loss_name == "mse":
        y = torch.randn(9, 3, dtype=torch.float64)
    if loss_name == "bce":
        y = (y > 0).double()
    loss = get_loss(loss_name)
    fm = FunctionalModel(model, device="cpu", dtype=torch.float64)
    y = loss.check_target(y, n_out)
    G = per_sample_gradients(fm, loss, X, y, batch_size=4)
    for i in range(9):
        ref = model
        ref.zero_grad()
        loss(ref(X[i:i + 1]).reshape(1, -1), y[i:i + 1]).sum().backward()
        expected = torch.cat([p.grad.reshape(-1) for p in ref.parameters()])
        torch.testing.assert_close(G[i], expected, rtol=1e-10, atol=1e-12)


def test_params_restriction_selects_the_right_slice():
    model = tiny_mlp()
    X, y = classification_data(n=7)
    loss = get_loss("cross_entropy")
    full = per_sample_gradients(FunctionalModel(model, dtype=torch.float64), loss, X, y)
    last = per_sample_gradients(FunctionalModel(model, params="2", dtype=torch.float64), loss, X, y)
    n_first = sum(p.numel() for p in model[0].parameters())
    torch.testing.assert_close(last, full[:, n_first:])
    fm = FunctionalModel(model, params=[model[2].weight], dtype=torch.float64)
    assert fm.names == ["2.weight"]


def _explicit_gnh(fm, loss, X, y):
    J = torch.autograd.functional.jacobian(_flat_forward(fm, X), fm.theta)   # (n, K, p)
    with torch.no_grad():
        A = loss.output_hessian(fm.forward(fm.theta, X), y)
    return torch.einsum("nkp,nkl,nlq->pq", J, A, J), J


@pytest.mark.parametrize("loss_name", ["cross_entropy", "mse"])
def test_gnh_products_match_explicit_jacobian(loss_name):
    model, X, y = trained_mlp()
    loss = get_loss(loss_name)
    if loss_name == "mse":
        y = torch.randn(X.shape[0], 3, dtype=torch.float64)
    fm = FunctionalModel(model, dtype=torch.float64)
    y = loss.check_target(y, 3)
    G, J = _explicit_gnh(fm, loss, X, y)
    curv = Curvature("gnh", fm, loss, X, y, batch_size=7)
    V = torch.randn(fm.n_params, 3, dtype=torch.float64)
    torch.testing.assert_close(curv.matmat(V), G @ V, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(curv.dense(), G, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(per_sample_jacobians(fm, X), J)
    assert curv.trace() == pytest.approx(float(torch.trace(G)), rel=1e-10)


def test_hessian_and_fisher_products():
    model, X, y = trained_mlp()
    loss = get_loss("cross_entropy")
    fm = FunctionalModel(model, dtype=torch.float64)

    def total(theta):
        return loss(fm.forward(theta, X), y).sum()
    H = torch.autograd.functional.hessian(total, fm.theta)
    V = torch.randn(fm.n_params, 2, dtype=torch.float64)
    hess = Curvature("hessian", fm, loss, X, y, batch_size=8)
    torch.testing.assert_close(hess.matmat(V), H @ V, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(hess.dense(), 0.5 * (H + H.T), rtol=1e-9, atol=1e-10)
    G = per_sample_gradients(fm, loss, X, y)
    fisher = Curvature("fisher", fm, loss, X, y, batch_size=8)
    torch.testing.assert_close(fisher.matmat(V), G.T @ (G @ V))
    torch.testing.assert_close(fisher.dense(), G.T @ G)
    assert fisher.trace() == pytest.approx(float((G ** 2).sum()))
    # the true Hessian differs from the GGN away from a linear model, and the Fisher from both
    gnh = Curvature("gnh", fm, loss, X, y).dense()
    assert not torch.allclose(gnh, H, rtol=1e-3) and not torch.allclose(gnh, G.T @ G, rtol=1e-3)


def test_callable_loss_uses_autodiff_output_hessian():
    model, X, y = trained_mlp()
    builtin = get_loss("cross_entropy")
    custom = get_loss(lambda out, yy: torch.nn.functional.cross_entropy(out, yy, reduction="none"))
    with torch.no_grad():
        out = model(X)
    torch.testing.assert_close(custom.output_hessian(out, y), builtin.output_hessian(out, y))
    np.testing.assert_allclose(custom(out, y).numpy(), builtin(out, y).numpy())
