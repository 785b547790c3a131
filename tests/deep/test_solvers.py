"""Each solver against the exact dense solve on tiny networks."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from deep_helpers import IGNORE_JIT, NOT_STATIONARY, classification_data, tiny_mlp, train, trained_mlp  # noqa: E402
from deep_helpers import one_torch_thread  # noqa: E402, F401 (autouse fixture)
from rif.deep import (  # noqa: E402
    LiSSADivergenceError,
    SingularHessianError,
    SolverConvergenceWarning,
    TorchInfluence,
    UnsupportedLayerError,
)

pytestmark = [IGNORE_JIT, NOT_STATIONARY]


def _fit(model, X, y, solver, loss="cross_entropy", **kw):
    kw.setdefault("damping", 0.1)
    return TorchInfluence(model, loss, (X, y), solver=solver, dtype=torch.float64, **kw).fit()


def _rhs(ti, r=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(ti.n_params_, r, generator=gen, dtype=torch.float64)


def test_cg_matches_exact_and_reports_residuals():
    model, X, y = trained_mlp()
    exact = _fit(model, X, y, "exact")
    cg = _fit(model, X, y, "cg", cg_tol=1e-10)
    B = _rhs(exact)
    torch.testing.assert_close(cg.solver_.solve(B), exact.solver_.solve(B), rtol=1e-7, atol=1e-9)
    record = cg.solve_log_[-1]
    assert record["solver"] == "cg" and record["n_rhs"] == 3 and record["converged"]
    assert record["relative_residuals"].shape == (3,)
    assert record["max_relative_residual"] < 1e-8
    assert exact.damping_ == pytest.approx(0.1 * exact.curvature_trace_ / exact.n_params_)


def test_cg_warns_when_iterations_run_out():
    model, X, y = trained_mlp()
    cg = _fit(model, X, y, "cg", cg_max_iter=2, damping=1e-4)
    with pytest.warns(SolverConvergenceWarning):
        cg.solver_.solve(_rhs(cg))
    assert cg.solve_log_[-1]["max_relative_residual"] > 1e-6


def test_lissa_deterministic_converges_to_exact():
    model, X, y = trained_mlp()
    exact = _fit(model, X, y, "exact", damping=1.0)
    lissa = _fit(model, X, y, "lissa", damping=1.0, lissa_depth=400)
    B = _rhs(exact)
    x_exact = exact.solver_.solve(B)
    x = lissa.solver_.solve(B)
    assert float(torch.linalg.norm(x - x_exact) / torch.linalg.norm(x_exact)) < 1e-4
    assert lissa.solve_log_[-1]["max_relative_residual"] < 1e-4


def test_lissa_minibatch_repeats_are_close():
    model, X, y = trained_mlp()
    exact = _fit(model, X, y, "exact", damping=1.0)
    lissa = _fit(model, X, y, "lissa", damping=1.0, lissa_depth=200, lissa_repeats=4,
                 lissa_batch_size=15, lissa_scale=2.0 * exact.solver_.curvature.n_samples
                 * exact.mean_eigenvalue_ * 10)
    B = _rhs(exact, 1)
    x_exact = exact.solver_.solve(B)
    x = lissa.solver_.solve(B)
    cos = float((x * x_exact).sum() / (torch.linalg.norm(x) * torch.linalg.norm(x_exact)))
    assert cos > 0.9


def test_lissa_divergence_raises_clear_error():
    model, X, y = trained_mlp()
    lissa = _fit(model, X, y, "lissa", lissa_scale=1e-3, lissa_depth=50)
    with pytest.raises(LiSSADivergenceError, match="increase lissa_scale"):
        lissa.solver_.solve(_rhs(lissa))
    with pytest.raises(LiSSADivergenceError):
        lissa.scores(X[:2], y[:2], method="if", linear=True)
    assert issubclass(LiSSADivergenceError, ValueError)


def test_cg_on_indefinite_hessian_raises():
    model = tiny_mlp(seed=3)          # untrained: the true Hessian is indefinite
    X, y = classification_data(seed=3)
    cg = _fit(model, X, y, "cg", curvature="hessian", damping=1e-6, damping_mode="absolute")
    with pytest.raises(SingularHessianError, match="non-positive curvature"):
        cg.solver_.solve(_rhs(cg, 8))
    with pytest.raises(SingularHessianError, match="not positive definite"):
        _fit(model, X, y, "exact", curvature="hessian", damping=1e-6, damping_mode="absolute")


def test_true_hessian_exact_and_cg_agree_when_positive_definite():
    model, X, y = trained_mlp()
    exact = _fit(model, X, y, "exact", curvature="hessian", damping=1.0)
    cg = _fit(model, X, y, "cg", curvature="hessian", damping=1.0, cg_tol=1e-10)
    B = _rhs(exact)
    torch.testing.assert_close(cg.solver_.solve(B), exact.solver_.solve(B), rtol=1e-6, atol=1e-8)


# -- K-FAC / EK-FAC ------------------------------------------------------------------------
def _linear_regression():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3).double()
    X = torch.randn(25, 4, dtype=torch.float64)
    y = torch.randn(25, 3, dtype=torch.float64)
    return model, X, y


@pytest.mark.parametrize("solver", ["kfac", "ekfac"])
def test_kfac_exact_for_a_linear_layer_with_squared_loss(solver):
    """For f = W x + b and l = |f - y|^2 / 2 the GGN is exactly (sum a a^T) (x) I."""
    model, X, y = _linear_regression()
    exact = _fit(model, X, y, "exact", loss="mse")
    approx = _fit(model, X, y, solver, loss="mse")
    B = _rhs(exact)
    torch.testing.assert_close(approx.solver_.solve(B), exact.solver_.solve(B), rtol=1e-9, atol=1e-11)


def test_ekfac_eigenvalues_are_the_exact_diagonal_in_the_kronecker_basis():
    model, X, y = trained_mlp()
    ek = _fit(model, X, y, "ekfac")
    dense = ek.solver_.curvature.dense()
    for layer in ek.solver_.layers:
        QA, QS = ek.solver_.QA[layer.name], ek.solver_.QS[layer.name]
        lam = ek.solver_.eigenvalues[layer.name]
        for r, c in [(0, 0), (1, 2), (QS.shape[0] - 1, QA.shape[0] - 1)]:
            M = torch.outer(QS[:, r], QA[:, c])[None]
            v = torch.zeros(1, ek.n_params_, dtype=torch.float64)
            layer.from_matrix(M, v)
            assert float(v[0] @ dense @ v[0]) == pytest.approx(float(lam[r, c]), rel=1e-8, abs=1e-10)


@pytest.mark.parametrize("solver", ["kfac", "ekfac"])
def test_kfac_inverse_is_consistent_and_close_to_exact(solver):
    model, X, y = trained_mlp()
    exact = _fit(model, X, y, "exact", damping=3.0)
    approx = _fit(model, X, y, solver, damping=3.0, report_residuals=True)
    B = _rhs(exact, 4)
    x = approx.solver_.solve(B)
    torch.testing.assert_close(approx.solver_.approx_matmat(x), B, rtol=1e-9, atol=1e-9)
    x_exact = exact.solver_.solve(B)
    cos = (x * x_exact).sum(0) / (torch.linalg.norm(x, dim=0) * torch.linalg.norm(x_exact, dim=0))
    assert float(cos.min()) > 0.7
    assert "max_relative_residual" in approx.solve_log_[-1]


def test_kfac_conv2d_runs_and_ekfac_diagonal_is_exact():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 3, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
        torch.nn.Linear(3 * 5 * 5, 4)).double()
    X = torch.randn(12, 1, 5, 5, dtype=torch.float64)
    y = torch.randint(0, 4, (12,))
    train(model, torch.nn.functional.cross_entropy, X, y, steps=50)
    ek = _fit(model, X, y, "ekfac", damping=1.0)
    dense = ek.solver_.curvature.dense()
    conv = ek.solver_.layers[0]
    QA, QS, lam = ek.solver_.QA[conv.name], ek.solver_.QS[conv.name], ek.solver_.eigenvalues[conv.name]
    for r, c in [(0, 0), (2, 5), (1, 9)]:
        v = torch.zeros(1, ek.n_params_, dtype=torch.float64)
        conv.from_matrix(torch.outer(QS[:, r], QA[:, c])[None], v)
        assert float(v[0] @ dense @ v[0]) == pytest.approx(float(lam[r, c]), rel=1e-8, abs=1e-10)
    k = _fit(model, X, y, "kfac", damping=1.0)
    s = k.scores(X[:3], y[:3], method="if", linear=True)
    assert np.isfinite(s).all()


def test_kfac_rejects_unsupported_layers():
    class WithNorm(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 3)
            self.norm = torch.nn.LayerNorm(3)

        def forward(self, x):
            return self.norm(self.fc(x))

    model = WithNorm().double()
    X, y = classification_data()
    with pytest.raises(UnsupportedLayerError, match="norm"):
        _fit(model, X, y, "kfac")
    ti = _fit(model, X, y, "kfac", params="fc")        # restricting to supported layers works
    assert ti.n_params_ == 15
    with pytest.raises(ValueError, match="gnh"):
        TorchInfluence(model, "cross_entropy", (X, y), curvature="hessian", solver="kfac")


def test_ekfac_rif_subtracts_each_samples_share_of_the_eigenvalues():
    model, X, y = trained_mlp()
    ek = _fit(model, X, y, "ekfac", damping=0.1)
    B, A = ek.solver_.curvature.sample_factors(np.arange(ek.n_samples_))
    terms = ek.solver_.sample_terms(B, A)
    for layer in ek.solver_.layers:          # the shares add up to the corrected eigenvalues
        torch.testing.assert_close(terms[layer.name].sum(0), ek.solver_.eigenvalues[layer.name])
    si = ek.self_influence("rif")
    assert np.isfinite(si).all() and np.all((ek.leverage_ >= 0) & (ek.leverage_ < 1))
    assert np.all(ek.self_influence("rif", linear=True) >= ek.self_influence("if", linear=True) - 1e-12)
    both = ek.params_change([3, 4], "newton")
    assert np.isfinite(both).all()
    exact = _fit(model, X, y, "exact", damping=0.1)
    from scipy.stats import spearmanr
    assert spearmanr(si, exact.self_influence("rif"))[0] > 0.8
