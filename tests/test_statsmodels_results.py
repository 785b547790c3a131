"""Fitted statsmodels results read as rif problems: same optimum, same leverages,
leave-one-out changes equal to statsmodels refits without the sample."""

import numpy as np
import pytest
import statsmodels.api as sm
from scipy.optimize import minimize

import rif
from rif import UnsupportedEstimatorError

pytestmark = pytest.mark.filterwarnings("ignore:The .* link function does not respect the domain:Warning")
links = sm.families.links
N = 60


def _data(seed=0, n=N):
    rng = np.random.default_rng(seed)
    X = sm.add_constant(rng.uniform(-1, 1, size=(n, 3)))
    eta = X @ [0.3, 0.6, -0.4, 0.3]
    return rng, X, eta


def _cases():
    rng, X, eta = _data()
    yb = (rng.random(N) < 1 / (1 + np.exp(-eta))).astype(float)
    trials = rng.integers(1, 10, N)
    succ = rng.binomial(trials, 1 / (1 + np.exp(-eta)))
    yp = rng.poisson(np.exp(eta)).astype(float)
    expo = rng.uniform(0.5, 2, N)
    yg = rng.gamma(3.0, np.exp(eta) / 3.0)
    yinv = rng.gamma(3.0, 1 / (2.0 + eta) / 3.0)
    yn = eta + rng.normal(size=N)
    w = rng.uniform(0.5, 2, N)
    fw = rng.integers(1, 4, N).astype(float)
    B, P, G = sm.families.Binomial, sm.families.Poisson, sm.families.Gamma
    return {
        "Logit": (sm.Logit, (yb, X), {}),
        "Probit": (sm.Probit, (yb, X), {}),
        "discrete-Poisson-offset": (sm.Poisson, (yp, X), dict(offset=np.log(expo))),
        "GLM-binomial": (sm.GLM, (yb, X), dict(family=B())),
        "GLM-binomial-probit": (sm.GLM, (yb, X), dict(family=B(links.Probit()))),
        "GLM-grouped-var_weights": (sm.GLM, (succ / trials, X), dict(family=B(), var_weights=trials)),
        "GLM-binomial-offset": (sm.GLM, (yb, X), dict(family=B(), offset=0.5 * X[:, 2])),
        "GLM-probit-grouped": (sm.GLM, (succ / trials, X), dict(family=B(links.Probit()), var_weights=trials)),
        "GLM-grouped-2col": (sm.GLM, (np.column_stack([succ, trials - succ]), X), dict(family=B())),
        "GLM-poisson-exposure": (sm.GLM, (yp, X), dict(family=P(), exposure=expo)),
        "GLM-poisson-offset-freq_weights": (sm.GLM, (yp, X), dict(family=P(), offset=0.1 * X[:, 1],
                                                                 freq_weights=fw)),
        "GLM-gaussian-var_weights": (sm.GLM, (yn, X), dict(var_weights=w)),
        "GLM-gamma-log": (sm.GLM, (yg, X), dict(family=G(links.Log()))),
        "GLM-gamma-inverse": (sm.GLM, (yinv, X), dict(family=G())),
        "GLM-negbin-log": (sm.GLM, (yp, X), dict(family=sm.families.NegativeBinomial(alpha=0.7))),
        "OLS": (sm.OLS, (yn, X), {}),
        "WLS": (sm.WLS, (yn, X), dict(weights=w)),
    }


CASES = _cases()


def _fit(model):
    if isinstance(model, sm.GLM):
        return model.fit(tol=1e-13, maxiter=200)
    if isinstance(model, sm.regression.linear_model.RegressionModel):
        return model.fit()
    return model.fit(disp=0, maxiter=200)


def _subset(kwargs, keep):
    out = {}
    for key, value in kwargs.items():
        out[key] = value[keep] if isinstance(value, np.ndarray) else value
    return out


def _refit_without(name, i):
    cls, (endog, exog), kwargs = CASES[name]
    keep = np.arange(len(exog)) != i
    return np.asarray(_fit(cls(endog[keep], exog[keep], **_subset(kwargs, keep))).params)


@pytest.mark.parametrize("name", sorted(CASES))
def test_optimum_and_exact_leave_one_out_match_statsmodels(name):
    cls, args, kwargs = CASES[name]
    res = _fit(cls(*args, **kwargs))
    prob = rif.GLMProblem.from_statsmodels(res)
    scale = np.abs(res.params).max()
    # statsmodels' optimum is rif's: refinement barely moves it
    assert prob.refine_shift < 1e-7 * scale
    assert prob.feature_names == list(res.model.exog_names)
    # exact leave-one-out refits against statsmodels refitted without the sample
    rows = [0, 7, 31]
    retrain = prob.params_change(remove=[[i] for i in rows], method="retrain")
    for k, i in enumerate(rows):
        np.testing.assert_allclose(prob.theta + retrain[k], _refit_without(name, i), rtol=0, atol=1e-7 * scale)
    # the one-step (RIF = leave-one-out Newton) change is close to the refit
    one_step = prob.params_change(remove=[[i] for i in rows], method="rif")
    assert np.abs(one_step - retrain).max() < 0.2 * np.abs(retrain).max()


@pytest.mark.parametrize("name", ["OLS", "WLS", "GLM-gaussian-var_weights"])
def test_least_squares_one_step_is_exact(name):
    cls, args, kwargs = CASES[name]
    prob = rif.GLMProblem.from_statsmodels(_fit(cls(*args, **kwargs)))
    np.testing.assert_allclose(prob.loo_params_change("rif"), prob.loo_params_change("retrain"),
                               rtol=1e-8, atol=1e-11)


@pytest.mark.parametrize("name", ["OLS", "GLM-gaussian-var_weights", "GLM-binomial", "GLM-poisson-exposure",
                                  "GLM-grouped-var_weights", "GLM-gamma-inverse", "GLM-gamma-log",
                                  "GLM-binomial-probit", "GLM-negbin-log"])
def test_leverage_matches_statsmodels_influence(name):
    # GLMInfluence's hat values use the observed Hessian, as rif's do (compared at
    # statsmodels' own estimate: refine=False)
    cls, args, kwargs = CASES[name]
    res = _fit(cls(*args, **kwargs))
    prob = rif.GLMProblem.from_statsmodels(res, refine=False)
    np.testing.assert_allclose(prob.leverage, res.get_influence().hat_matrix_diag, rtol=1e-9, atol=1e-13)


def test_observed_hessian_for_non_canonical_link():
    # Gamma with log link: hat values from the expected (Fisher, IRLS) weights differ from
    # the observed ones; rif's Hessian is the exact one of the objective (finite differences)
    cls, args, kwargs = CASES["GLM-gamma-log"]
    res = _fit(cls(*args, **kwargs))
    prob = rif.GLMProblem.from_statsmodels(res)
    X, irls = args[1], res.model.weights
    fisher_hat = irls * np.einsum("ij,ij->i", X, np.linalg.solve(X.T @ (irls[:, None] * X), X.T).T)
    assert np.abs(prob.leverage - fisher_hat).max() > 1e-3
    theta = prob.theta
    eps = 1e-6
    numeric = np.column_stack([(prob.value_gradient(theta + eps * e, prob.sample_weight)[1]
                                - prob.value_gradient(theta - eps * e, prob.sample_weight)[1]) / (2 * eps)
                               for e in np.eye(len(theta))])
    np.testing.assert_allclose(prob.hessian, numeric, rtol=1e-6, atol=1e-6 * np.abs(numeric).max())


def _ridge_refit(model_cls, endog, exog, alpha, family=None):
    """argmin -loglik/n + alpha/2 ||theta||^2 by a tight BFGS (statsmodels' own objective)."""
    model = model_cls(endog, exog, family=family) if family is not None else model_cls(endog, exog)
    n = len(endog)
    res = minimize(lambda t: -model.loglike(t) / n + 0.5 * alpha * t @ t, np.zeros(exog.shape[1]),
                   jac=lambda t: -model.score(t) / n + alpha * t, method="BFGS", options=dict(gtol=1e-12))
    return res.x


def test_ols_ridge_leave_one_out_matches_statsmodels_refit():
    cls, (y, X), _ = CASES["OLS"]
    alpha = 0.2
    prob = rif.GLMProblem.from_statsmodels(sm.OLS(y, X).fit_regularized(L1_wt=0, alpha=alpha), alpha=alpha)
    assert prob.refine_shift < 1e-10
    for i in (0, 13):
        keep = np.arange(N) != i
        refit = sm.OLS(y[keep], X[keep]).fit_regularized(L1_wt=0, alpha=alpha).params
        np.testing.assert_allclose(prob.theta + prob.params_change([i], "retrain"), refit, atol=1e-10)
        np.testing.assert_allclose(prob.theta + prob.params_change([i], "rif"), refit, atol=1e-10)


def test_glm_ridge_leave_one_out_matches_penalised_refit():
    _, (y, X), _ = CASES["GLM-binomial"]
    alpha = 0.05
    res = sm.GLM(y, X, family=sm.families.Binomial()).fit_regularized(L1_wt=0, alpha=alpha)
    prob = rif.GLMProblem.from_statsmodels(res, alpha=alpha)
    np.testing.assert_allclose(prob.theta, _ridge_refit(sm.GLM, y, X, alpha, sm.families.Binomial()), atol=1e-7)
    keep = np.arange(N) != 5
    refit = _ridge_refit(sm.GLM, y[keep], X[keep], alpha, sm.families.Binomial())
    np.testing.assert_allclose(prob.theta + prob.params_change([5], "retrain"), refit, atol=1e-7)


def test_auditor_from_statsmodels_and_offset_targets():
    cls, args, kwargs = CASES["GLM-poisson-exposure"]
    res = _fit(cls(*args, **kwargs))
    prob = rif.InfluenceAuditor.from_statsmodels(res)
    assert isinstance(prob, rif.GLMProblem)
    assert prob.offset is not None
    # the training-loss targets include the offset: self-loss change against refits
    rows = [[2], [9]]
    exact = prob.effect(rows, target="self_loss", method="retrain")
    refits = [_refit_without("GLM-poisson-exposure", i[0]) for i in rows]
    eta = [X_row @ t + o for X_row, t, o in zip(args[1][[2, 9]], refits, prob.offset[[2, 9]])]
    y = args[0][[2, 9]]
    loss_after = np.exp(eta) - y * np.array(eta)
    loss_before = np.exp(prob.eta[[2, 9]]) - y * prob.eta[[2, 9]]
    np.testing.assert_allclose(exact, loss_after - loss_before, rtol=1e-7)


def test_pandas_names_and_row_labels():
    import pandas as pd

    _, X, eta = _data(3)
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(X[:, 1:], columns=["a", "b", "c"], index=[f"r{i}" for i in range(N)])
    frame = sm.add_constant(frame)
    y = pd.Series(eta + rng.normal(size=N), index=frame.index)
    prob = rif.GLMProblem.from_statsmodels(sm.OLS(y, frame).fit())
    assert prob.feature_names == ["const", "a", "b", "c"]
    assert prob.row_labels[:2] == ["r0", "r1"]


def test_refusals_name_what_is_unsupported():
    _, (y, X), _ = CASES["GLM-poisson-exposure"]
    with pytest.raises(UnsupportedEstimatorError, match="Sqrt"):
        rif.GLMProblem.from_statsmodels(sm.GLM(y, X, family=sm.families.Poisson(links.Sqrt())).fit())
    with pytest.raises(UnsupportedEstimatorError, match="NegativeBinomial"):
        rif.GLMProblem.from_statsmodels(sm.NegativeBinomial(y, X).fit(disp=0))
    res = sm.OLS(y, X).fit_regularized(L1_wt=0, alpha=0.1)
    with pytest.raises(ValueError, match="alpha"):
        rif.GLMProblem.from_statsmodels(res)
    with pytest.raises(UnsupportedEstimatorError, match="one alpha per coefficient"):
        rif.GLMProblem.from_statsmodels(res, alpha=[0.0, 0.1, 0.1, 0.1])
    with pytest.raises(ValueError, match="only for results of fit_regularized"):
        rif.GLMProblem.from_statsmodels(sm.OLS(y, X).fit(), alpha=0.1)
    with pytest.raises(TypeError, match="statsmodels results"):
        rif.GLMProblem.from_statsmodels(np.zeros(3))


# -- the NumPy families: derivatives and deviances ------------------------------------
from hypothesis import given
from hypothesis import strategies as st

from rif import _families


def _family_cases():
    return {
        "binomial_probit": (_families.BinomialProbit(), sm.families.Binomial(links.Probit()), "unit"),
        "binomial_proportion": (_families.BinomialProportion(), sm.families.Binomial(), "unit"),
        "gamma_log": (_families.GammaLog(), sm.families.Gamma(links.Log()), "positive"),
        "gamma_inverse": (_families.GammaInverse(), sm.families.Gamma(), "positive"),
        "negative_binomial": (_families.NegativeBinomialLog(0.6), sm.families.NegativeBinomial(alpha=0.6),
                              "count"),
    }


FAMILY_CASES = _family_cases()


@pytest.mark.parametrize("name", sorted(FAMILY_CASES))
@given(eta=st.floats(-3.0, 3.0), u=st.floats(0.01, 0.99))
def test_family_derivatives_and_half_deviance(name, eta, u):
    family, sm_family, kind = FAMILY_CASES[name]
    if name == "gamma_inverse":
        eta = 0.2 + abs(eta)                              # the inverse link needs eta > 0
    y = {"unit": u, "positive": 3 * u, "count": np.floor(10 * u)}[kind]
    e, yy = np.array([eta]), np.array([y])
    h = 1e-5
    loss, d1, d2 = family.derivatives(e, yy)
    lp, d1p, _ = family.derivatives(e + h, yy)
    lm, d1m, _ = family.derivatives(e - h, yy)
    np.testing.assert_allclose(d1, (lp - lm) / (2 * h), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(d2, (d1p - d1m) / (2 * h), rtol=1e-5, atol=1e-8)
    assert d2[0] >= 0
    mu = family.mean(e)
    np.testing.assert_allclose(mu, sm_family.link.inverse(e), rtol=1e-12)
    # 2 l - (saturated constant) is statsmodels' unit deviance
    sat = 0.0
    if kind == "unit":
        from scipy.special import xlogy
        sat = xlogy(y, y) + xlogy(1 - y, 1 - y)
    np.testing.assert_allclose(2 * (loss + sat), sm_family.resid_dev(yy, mu) ** 2, rtol=1e-9, atol=1e-12)
