"""TorchInfluence: IF / RIF / Newton / retrain against closed forms and rif's GLM auditor."""

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sklearn.linear_model import LogisticRegression, Ridge  # noqa: E402

import rif  # noqa: E402
from deep_helpers import IGNORE_JIT, NOT_STATIONARY, trained_mlp  # noqa: E402
from deep_helpers import one_torch_thread  # noqa: E402, F401 (autouse fixture)
from rif.deep import NearSingularLeverageError, TorchInfluence, embed  # noqa: E402

pytestmark = [IGNORE_JIT, NOT_STATIONARY]


def _head_problem(n=40, hidden=5, seed=0):
    """A frozen random tanh layer feeding a bias-free linear head with one output."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(3, hidden), torch.nn.Tanh(),
                              torch.nn.Linear(hidden, 1, bias=False)).double()
    gen = np.random.default_rng(seed)
    X = gen.normal(size=(n, 3))
    phi = embed(net, X, layer="1")
    return net, X, phi, gen


def test_squared_loss_head_matches_glm_auditor():
    """Network IF/RIF/Newton on a linear last layer with squared loss = rif's exact Ridge auditor."""
    net, X, phi, gen = _head_problem()
    y = phi @ gen.normal(size=phi.shape[1]) + 0.3 * gen.normal(size=len(X))
    alpha = 2.0
    aud = rif.InfluenceAuditor(Ridge(alpha=alpha, fit_intercept=False)).fit(phi, y)
    with torch.no_grad():
        net[2].weight.copy_(torch.tensor(aud.estimator_.coef_)[None])
    ti = TorchInfluence(net, "mse", (X, y), params="2", damping=alpha, damping_mode="absolute",
                        dtype=torch.float64).fit()
    Xt, yt = X[:6], y[:6]
    for method in ("if", "rif"):
        np.testing.assert_allclose(ti.scores(Xt, yt, method=method), aud.scores(phi[:6], yt, method=method),
                                   rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(ti.scores(Xt, yt, method=method, linear=True),
                                   aud.scores(phi[:6], yt, method=method, linear=True), rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(ti.self_influence(method), aud.self_influence(method), rtol=1e-8, atol=1e-12)
    sets = [[0, 3, 5], [7, 8]]
    for method in ("if", "rif", "newton"):
        np.testing.assert_allclose(ti.params_change(sets, method), aud.params_change(sets, method),
                                   rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(ti.effect(sets, "loss", Xt, yt, method), aud.effect(sets, "loss", phi[:6], yt, method),
                                   rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(ti.leverage_, aud.leverage_, rtol=1e-8)


def test_logistic_head_matches_glm_auditor():
    net, X, phi, gen = _head_problem(seed=1)
    y = (phi @ gen.normal(size=phi.shape[1]) + 0.5 * gen.normal(size=len(X)) > 0).astype(float)
    C = 0.5
    aud = rif.InfluenceAuditor(LogisticRegression(C=C, fit_intercept=False)).fit(phi, y)
    with torch.no_grad():
        net[2].weight.copy_(torch.tensor(aud.estimator_.coef_))
    ti = TorchInfluence(net, "bce", (X, y), params=[net[2]], damping=1 / C, damping_mode="absolute",
                        dtype=torch.float64).fit()
    for method in ("if", "rif"):
        np.testing.assert_allclose(ti.scores(X[:4], y[:4], method=method), aud.scores(phi[:4], y[:4], method=method),
                                   rtol=1e-7, atol=1e-12)
        np.testing.assert_allclose(ti.scores(X[:4], y[:4], target="proba", method=method),
                                   aud.scores(phi[:4], y[:4], target="proba", method=method), rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(ti.params_change([[1, 2, 3]], "newton"), aud.params_change([[1, 2, 3]], "newton"),
                               rtol=1e-7)


def test_network_rif_is_the_exact_leave_one_out_newton_step():
    """Multi-output cross-entropy on a whole MLP: Woodbury RIF = dense (H - J_i^T A_i J_i)^{-1} g_i."""
    model, X, y = trained_mlp()
    ti = TorchInfluence(model, "cross_entropy", (X, y), damping=0.05, dtype=torch.float64).fit()
    H = ti.solver_.curvature.dense() + ti.damping_ * torch.eye(ti.n_params_, dtype=torch.float64)
    G = ti.train_gradients()
    B, A = ti.solver_.curvature.sample_factors(np.arange(ti.n_samples_))
    for i in (0, 5, 17):
        Hi = H - B[i].T @ A[i] @ B[i]
        expected = torch.linalg.solve(Hi, G[i]).numpy()
        np.testing.assert_allclose(ti.params_change([i], "rif"), expected, rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(ti.params_change([i], "if"), torch.linalg.solve(H, G[i]).numpy(), rtol=1e-8)
    S = [2, 4, 9]
    HS = H - sum(B[i].T @ A[i] @ B[i] for i in S)
    np.testing.assert_allclose(ti.params_change(S, "newton"), torch.linalg.solve(HS, G[S].sum(0)).numpy(),
                               rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(ti.params_change(S, "rif"), ti.params_change([[i] for i in S], "rif").sum(0))
    si = ti.self_influence("rif")
    assert np.all(np.isfinite(si))
    assert np.all((ti.leverage_ >= 0) & (ti.leverage_ < 1))


def test_fisher_rif_is_sherman_morrison():
    model, X, y = trained_mlp()
    ti = TorchInfluence(model, "cross_entropy", (X, y), curvature="fisher", damping=0.1, dtype=torch.float64).fit()
    G = ti.train_gradients()
    H = G.T @ G + ti.damping_ * torch.eye(ti.n_params_, dtype=torch.float64)
    i = 3
    expected = torch.linalg.solve(H - torch.outer(G[i], G[i]), G[i]).numpy()
    np.testing.assert_allclose(ti.params_change([i], "rif"), expected, rtol=1e-8)


def test_scores_consistency_and_signs():
    model, X, y = trained_mlp()
    ti = TorchInfluence(model, "cross_entropy", (X, y), damping=0.1, dtype=torch.float64).fit()
    Xt, yt = X[:4], y[:4]
    # the IF fast path (solve on the test side) equals the train-side route
    fast = ti.scores(Xt, yt, method="if", linear=True)
    G = ti.train_gradients()
    steps = torch.as_tensor(ti.params_change([[i] for i in range(ti.n_samples_)], "if"))
    ti2 = TorchInfluence(model, "cross_entropy", (Xt, yt), damping=0.1, dtype=torch.float64).fit()
    Gt = ti2.train_gradients()
    np.testing.assert_allclose(fast, (steps @ Gt.T).numpy(), rtol=1e-8, atol=1e-12)
    # self-influence: IF-linear is g^T H^{-1} g >= 0 and equals the diagonal of train-train scores
    si = ti.self_influence("if", linear=True)
    assert np.all(si >= 0)
    np.testing.assert_allclose(si, np.einsum("ij,ij->i", G.numpy(), steps.numpy()), rtol=1e-8)
    # effect of one sample on the summed test loss = row sum of its scores
    for method in ("if", "rif"):
        S = ti.scores(Xt, yt, method=method)
        np.testing.assert_allclose(ti.effect([[3]], "loss", Xt, yt, method=method)[0], S[3].sum(), rtol=1e-8)
        np.testing.assert_allclose(ti.effect([3], "self_loss", method=method), ti.self_influence(method)[3], rtol=1e-8)
    # boolean masks, callable targets, params target
    mask = np.zeros(ti.n_samples_, dtype=bool)
    mask[[1, 2]] = True
    np.testing.assert_allclose(ti.params_change(mask, "if"), ti.params_change([1, 2], "if"))
    np.testing.assert_allclose(ti.effect([1, 2], "params", method="if"), ti.params_change([1, 2], "if"))

    def total_test_loss(m):
        return torch.nn.functional.cross_entropy(m(Xt), yt, reduction="sum")
    for linear in (False, True):
        np.testing.assert_allclose(ti.effect([1, 2], total_test_loss, method="if", linear=linear),
                                   ti.effect([1, 2], "loss", Xt, yt, method="if", linear=linear), rtol=1e-8)
    assert np.isfinite(ti.effect([0], "train_loss", method="rif"))


def test_retrain_equals_newton_for_quadratic_head():
    """Squared loss, linear head at its least-squares optimum: proximal refit = Newton step."""
    net, X, phi, gen = _head_problem(n=30)
    y = phi @ gen.normal(size=phi.shape[1]) + 0.3 * gen.normal(size=len(X))
    coef = np.linalg.lstsq(phi, y, rcond=None)[0]
    with torch.no_grad():
        net[2].weight.copy_(torch.as_tensor(coef)[None])
    before = copy.deepcopy(net.state_dict())
    ti = TorchInfluence(net, "mse", (X, y), params="2", damping=0.5, dtype=torch.float64,
                        retrain_tol=1e-10).fit()
    S = [[0, 4, 7], [11]]
    np.testing.assert_allclose(ti.params_change(S, "retrain"), ti.params_change(S, "newton"), rtol=1e-6, atol=1e-9)
    scores = ti.scores(X[:2], y[:2], method="retrain")
    np.testing.assert_allclose(scores, ti.scores(X[:2], y[:2], method="rif"), rtol=1e-5, atol=1e-9)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_retrain_on_mlp_is_close_to_newton_with_large_damping():
    model, X, y = trained_mlp()
    ti = TorchInfluence(model, "cross_entropy", (X, y), damping=1.0, dtype=torch.float64).fit()
    exact = ti.params_change([0, 1], "retrain")
    for method in ("newton", "rif", "if"):
        approx = ti.params_change([0, 1], method)
        assert np.dot(exact, approx) / (np.linalg.norm(exact) * np.linalg.norm(approx)) > 0.9


def test_user_model_and_data_are_not_modified():
    model, X, y = trained_mlp()
    model.train()
    state = copy.deepcopy(model.state_dict())
    X0, y0 = X.clone(), y.clone()
    ti = TorchInfluence(model, "cross_entropy", (X, y), damping=0.5).fit()
    ti.params_change([0, 1], "retrain")
    ti.scores(X[:2], y[:2])
    assert model.training
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert torch.equal(X, X0) and torch.equal(y, y0)


def test_float32_default_runs_and_is_close_to_float64():
    model, X, y = trained_mlp()
    t32 = TorchInfluence(model.float(), "cross_entropy", (X.float(), y), damping=0.1).fit()
    t64 = TorchInfluence(model, "cross_entropy", (X, y), damping=0.1, dtype=torch.float64).fit()
    assert t32.theta_.dtype == torch.float32
    s32, s64 = t32.scores(X[:3], y[:3]), t64.scores(X[:3], y[:3])
    np.testing.assert_allclose(s32, s64, rtol=2e-3, atol=1e-4)


def test_near_singular_leverage_is_refused():
    """No damping and more parameters than the data can pin down: some C_i carry all of H."""
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1, bias=False).double()
    X = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [1.0, 1.0, 0]], dtype=torch.float64)
    y = torch.randn(4, dtype=torch.float64)
    ti = TorchInfluence(model, "mse", (X, y), damping=0.0, damping_mode="absolute", dtype=torch.float64).fit()
    with pytest.raises(NearSingularLeverageError):
        ti.params_change([2], "rif")
    si = ti.self_influence("rif")
    assert np.isnan(si[2]) and np.isfinite(si[0])


def test_unlearn_returns_a_changed_copy():
    model, X, y = trained_mlp()
    ti = TorchInfluence(model, "cross_entropy", (X, y), damping=0.1, dtype=torch.float64).fit()
    new = ti.unlearn([0, 1], "if")
    dtheta = ti.params_change([0, 1], "if")
    flat = torch.cat([p.detach().reshape(-1) for p in new.parameters()])
    np.testing.assert_allclose((flat - ti.theta_).numpy(), dtheta, rtol=1e-10, atol=1e-14)
    assert new is not model
    with pytest.raises(ValueError, match="one removal set"):
        ti.unlearn([[0], [1]])


def test_weight_decay_head_matches_ridge_auditor_including_retrain():
    """weight_decay = Ridge alpha, no damping: IF/RIF/Newton/retrain all equal the exact GLM."""
    net, X, phi, gen = _head_problem(n=30, seed=2)
    y = phi @ gen.normal(size=phi.shape[1]) + 0.3 * gen.normal(size=len(X))
    alpha = 1.5
    aud = rif.InfluenceAuditor(Ridge(alpha=alpha, fit_intercept=False)).fit(phi, y)
    with torch.no_grad():
        net[2].weight.copy_(torch.tensor(aud.estimator_.coef_)[None])
    ti = TorchInfluence(net, "mse", (X, y), params="2", damping=0.0, damping_mode="absolute",
                        weight_decay=alpha, dtype=torch.float64, retrain_tol=1e-10).fit()
    assert ti.shift_ == alpha
    sets = [[0, 3, 5], [9]]
    for method in ("if", "rif", "newton", "retrain"):
        np.testing.assert_allclose(ti.params_change(sets, method), aud.params_change(sets, method),
                                   rtol=1e-6, atol=1e-9)
