"""The low-rank solver and RIF / Newton steps with the true Hessian, against dense references."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from deep_helpers import IGNORE_JIT, NOT_STATIONARY, trained_mlp  # noqa: E402
from deep_helpers import one_torch_thread  # noqa: E402, F401 (autouse fixture)
from rif import SingularHessianError  # noqa: E402
from rif.deep import TorchInfluence  # noqa: E402

pytestmark = [IGNORE_JIT, NOT_STATIONARY]
KW = dict(damping=0.1, dtype=torch.float64)


@pytest.fixture(scope="module")
def mlp():
    return trained_mlp()


def _sample_hessian(ti, i):
    def loss(th):
        return ti._loss(ti._fm.forward(th, ti._X[i:i + 1]), ti._y[i:i + 1]).sum()
    return torch.func.hessian(loss)(ti.theta_)


def test_full_rank_lowrank_equals_exact_gnh(mlp):
    """rank = p: the low-rank solver, its projected Woodbury RIF and its leverages are the exact ones."""
    model, X, y = mlp
    ex = TorchInfluence(model, "cross_entropy", (X, y), solver="exact", **KW).fit()
    lr = TorchInfluence(model, "cross_entropy", (X, y), solver="lowrank", rank=ex.n_params_, **KW).fit()
    assert lr.solver_name_ == "lowrank" and lr.solver_.U.shape == (ex.n_params_, ex.n_params_)
    for method in ("if", "rif"):
        np.testing.assert_allclose(lr.scores(X[:3], y[:3], method=method, linear=True),
                                   ex.scores(X[:3], y[:3], method=method, linear=True), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(lr.leverage_, ex.leverage_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(lr.params_change([1, 2, 3], "newton"), ex.params_change([1, 2, 3], "newton"),
                               rtol=1e-9, atol=1e-12)


def test_lowrank_ritz_values_and_truncated_inverse(mlp):
    """rank < p: the top Ritz values match the dense spectrum and the solve is the truncated inverse."""
    model, X, y = mlp
    lr = TorchInfluence(model, "cross_entropy", (X, y), solver="lowrank", rank=8, **KW).fit()
    C = lr.solver_.curvature.dense()
    e, Q = torch.linalg.eigh(C)
    top = e.flip(0)[:4]
    torch.testing.assert_close(lr.solver_.eigenvalues[:4], top, rtol=1e-6, atol=1e-10)
    U = Q[:, -8:]
    s = lr.shift_
    approx = U @ torch.diag(e[-8:]) @ U.T + s * torch.eye(lr.n_params_, dtype=torch.float64)
    B = torch.randn(lr.n_params_, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    x = lr.solver_.solve(B)
    torch.testing.assert_close(lr.solver_.approx_matmat(x), B, rtol=1e-10, atol=1e-10)
    ref = torch.linalg.solve(approx, B)
    # the 8th Ritz pair converges last; the solve is still close to the dense rank-8 truncation
    assert float(torch.linalg.norm(x - ref) / torch.linalg.norm(ref)) < 1e-2
    # consistent leave-one-out: the approximation's leverages stay in [0, 1)
    lev = lr.leverage_
    assert np.all((lev >= 0) & (lev < 1))
    assert lr.solve_log_[0]["stage"] == "fit" and lr.solve_log_[0]["iterations"] == lr.solver_.n_passes


def test_hessian_rif_and_newton_exact_route(mlp):
    """curvature='hessian', solver='exact': (H - H_i)^{-1} g_i and (H - H_S)^{-1} g_S densely."""
    model, X, y = mlp
    ti = TorchInfluence(model, "cross_entropy", (X, y), curvature="hessian", solver="exact", damping=1.0,
                        dtype=torch.float64).fit()
    H = ti.solver_.curvature.dense() + ti.shift_ * torch.eye(ti.n_params_, dtype=torch.float64)
    G = ti.train_gradients()
    for i in (0, 4):
        expected = torch.linalg.solve(H - _sample_hessian(ti, i), G[i]).numpy()
        np.testing.assert_allclose(ti.params_change([i], "rif"), expected, rtol=1e-8, atol=1e-12)
    S = [1, 2, 3]
    HS = sum(_sample_hessian(ti, i) for i in S)
    np.testing.assert_allclose(ti.params_change(S, "newton"), torch.linalg.solve(H - HS, G[S].sum(0)).numpy(),
                               rtol=1e-8, atol=1e-12)
    si = ti.self_influence("rif", linear=True)
    np.testing.assert_allclose(si[4], float(G[4] @ torch.linalg.solve(H - _sample_hessian(ti, 4), G[4])),
                               rtol=1e-8)
    with pytest.raises(AttributeError, match="leverage_"):
        _ = ti.leverage_


def test_hessian_rif_lowrank_full_rank_equals_exact(mlp):
    """solver='lowrank' with the (indefinite, damped positive definite) Hessian at rank = p: the exact route."""
    model, X, y = mlp
    kw = dict(curvature="hessian", damping=1.0, dtype=torch.float64)
    ti = TorchInfluence(model, "cross_entropy", (X, y), solver="lowrank", rank=51, **kw).fit()
    ex = TorchInfluence(model, "cross_entropy", (X, y), solver="exact", **kw).fit()
    assert float(torch.linalg.eigvalsh(ex.solver_.curvature.dense())[0]) < 0 and ti.solver_.n_clipped == 0
    np.testing.assert_allclose(ti.scores(X[:3], y[:3], method="rif", linear=True),
                               ex.scores(X[:3], y[:3], method="rif", linear=True), rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(ti.params_change([1, 2, 3], "newton"), ex.params_change([1, 2, 3], "newton"),
                               rtol=1e-8, atol=1e-12)


def test_hessian_lowrank_damped_positive_part(mlp):
    """Small damping: Ritz directions with e_j + s <= 0 keep only s, against the dense construction."""
    model, X, y = mlp
    ti = TorchInfluence(model, "cross_entropy", (X, y), curvature="hessian", solver="lowrank", rank=51,
                        damping=0.2, damping_mode="absolute", dtype=torch.float64).fit()
    C = ti.solver_.curvature.dense()
    e, Q = torch.linalg.eigh(C)
    s = ti.shift_
    assert ti.solver_.n_clipped == int((e + s <= 0).sum()) > 0
    Hp = (Q * torch.where(e + s > 0, e, torch.zeros_like(e))) @ Q.T + s * torch.eye(ti.n_params_, dtype=torch.float64)
    B = torch.randn(ti.n_params_, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(ti.solver_.solve(B), torch.linalg.solve(Hp, B), rtol=1e-8, atol=1e-10)
    G = ti.train_gradients()
    step = ti._loo_steps(np.array([0, 4]), "rif", on_singular="nan")[0]
    for row, i in enumerate((0, 4)):
        Hi = Hp - _sample_hessian(ti, i)
        if float(torch.linalg.eigvalsh(Hi)[0]) > 0:
            torch.testing.assert_close(step[row], torch.linalg.solve(Hi, G[i]), rtol=1e-8, atol=1e-12)
        else:
            assert torch.isnan(step[row]).all()


def test_hessian_rif_refuses_an_indefinite_leave_one_out_hessian(mlp):
    model, X, y = mlp
    ti = TorchInfluence(model, "cross_entropy", (X[:6], y[:6]), curvature="hessian", solver="lowrank",
                        rank=51, damping=1e-3, dtype=torch.float64).fit()
    rows = ti.scores(X[:2], y[:2], method="rif", linear=True)
    bad = np.isnan(rows[:, 0])
    assert bad.any()
    with pytest.raises(SingularHessianError, match="not positive definite"):
        ti.params_change([int(np.flatnonzero(bad)[0])], "rif")


def test_hessian_rif_needs_exact_or_lowrank(mlp):
    model, X, y = mlp
    ti = TorchInfluence(model, "cross_entropy", (X, y), curvature="hessian", solver="cg", damping=1.0,
                        dtype=torch.float64).fit()
    with pytest.raises(ValueError, match="'exact' or 'lowrank'"):
        ti.params_change([0], "rif")


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_rank_is_validated(mlp, bad):
    model, X, y = mlp
    with pytest.raises(ValueError, match="rank"):
        TorchInfluence(model, "cross_entropy", (X, y), solver="lowrank", rank=bad)
