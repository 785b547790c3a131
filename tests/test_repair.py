"""Label repair and mislabel ranking (rif._repair), checked against refits."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression, PoissonRegressor, Ridge

import rif
from conftest import CONFIGS, make_problem


@pytest.mark.parametrize("family, scaling, intercept, weights", CONFIGS)
def test_retrain_is_the_refit_on_corrected_labels(family, scaling, intercept, weights):
    prob = make_problem(family, scaling=scaling, intercept=intercept, weights=weights)
    index = np.array([3, 10, 17])
    new = 1.0 - prob.y[index] if family == "binomial" else prob.y[index] + np.array([1.0, 2.0, 0.0])
    y = prob.y.copy()
    y[index] = new
    fresh = rif.GLMProblem(prob.X, y, family, sample_weight=prob.sample_weight, penalty=prob.penalty,
                           penalty_scaling=scaling, fit_intercept=intercept)      # solved from zero
    np.testing.assert_allclose(prob.theta + prob.relabel_params_change(index, new, "retrain"), fresh.theta,
                               rtol=1e-8, atol=1e-10)
    step = prob.relabel_params_change(index, new, "newton")
    # one Newton step of the corrected objective: H dtheta = -grad L'(theta^)
    _, grad = fresh.value_gradient(prob.theta, prob.sample_weight)
    np.testing.assert_allclose(prob.hessian @ step, -grad, rtol=1e-8, atol=1e-10)
    if family == "gaussian":                       # quadratic objective: the step is exact
        np.testing.assert_allclose(prob.theta + step, fresh.theta, rtol=1e-8, atol=1e-10)


def test_newton_error_grows_with_the_number_of_repairs():
    prob = make_problem("binomial", n=200, d=5, penalty=1.0)
    errors = []
    for k in (1, 5, 25):
        index = np.arange(k)
        new = 1.0 - prob.y[index]
        exact = prob.relabel_params_change(index, new, "retrain")
        errors.append(np.linalg.norm(prob.relabel_params_change(index, new, "newton") - exact)
                      / np.linalg.norm(exact))
    assert errors[0] < 0.05 and errors[0] < errors[-1]


def test_auditor_repair_matches_scikit_learn_on_corrected_labels():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 3))
    y = np.where(rng.random(120) < 1 / (1 + np.exp(-X @ [1.0, -1.0, 0.5])), "spam", "ham")
    aud = rif.InfluenceAuditor(LogisticRegression(C=0.5)).fit(X, y)
    index = [4, 9, 30]
    new = np.where(y[index] == "spam", "ham", "spam")
    fixed = aud.repair(index, new, method="retrain")
    y_fixed = y.copy()
    y_fixed[index] = new
    ref = LogisticRegression(C=0.5, tol=1e-12, max_iter=10_000).fit(X, y_fixed)
    np.testing.assert_allclose(fixed.coef_, ref.coef_, atol=1e-6)
    assert fixed.intercept_[0] == pytest.approx(ref.intercept_[0], abs=1e-6)
    approx = aud.repair(index, new, method="newton")
    # one step from theta^: a first-order estimate, here within 11 % of the change it estimates
    change = np.linalg.norm(ref.coef_ - aud.estimator_.coef_)
    assert np.linalg.norm(approx.coef_ - ref.coef_) < 0.2 * change
    assert type(fixed) is LogisticRegression and fixed is not aud.estimator_
    np.testing.assert_array_equal(y, np.where(y == "spam", "spam", "ham"))   # untouched


@pytest.mark.parametrize("estimator", [Ridge(alpha=2.0), PoissonRegressor(alpha=0.1)])
def test_auditor_repair_regressors(estimator):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 2))
    y = rng.poisson(np.exp(0.3 * X[:, 0] + 0.5)).astype(float)
    aud = rif.InfluenceAuditor(estimator).fit(X, y)
    y_fixed = y.copy()
    y_fixed[[0, 5]] = [4.0, 0.0]
    ref = rif.InfluenceAuditor(estimator).fit(X, y_fixed).estimator_
    fixed = aud.repair([0, 5], [4.0, 0.0], method="retrain")
    np.testing.assert_allclose(fixed.coef_, ref.coef_, rtol=1e-7, atol=1e-9)


def test_suspect_labels_find_flipped_labels():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(300, 4))
    y = (X @ [2.0, -2.0, 1.0, 0.0] > 0).astype(int)
    flipped = rng.choice(300, size=15, replace=False)
    y[flipped] = 1 - y[flipped]
    aud = rif.InfluenceAuditor(LogisticRegression(C=1.0)).fit(X, y)
    for method in ("if", "rif"):
        top = aud.suspect_labels(30, method=method)
        np.testing.assert_array_equal(top, np.argsort(-aud.self_influence(method=method), kind="stable")[:30])
        assert np.isin(flipped, top).mean() >= 0.6        # random inspection of 10 % finds 10 %


def test_repair_validation():
    prob = make_problem("binomial")
    with pytest.raises(ValueError, match="method"):
        prob.relabel_params_change([0], [1.0], "if")
    with pytest.raises(ValueError, match="new_labels"):
        prob.relabel_params_change([0, 1], [1.0], "newton")
    with pytest.raises(ValueError):
        prob.relabel_params_change([0], [0.5], "newton")
    with pytest.raises(ValueError, match="single class"):
        prob.relabel_params_change(np.arange(prob.n_samples), np.zeros(prob.n_samples), "newton")
    with pytest.raises(ValueError, match="k must"):
        prob.suspect_labels(0)
    with pytest.raises(ValueError, match="method"):
        prob.suspect_labels(3, method="retrain")


@given(seed=st.integers(0, 10_000), family=st.sampled_from(["gaussian", "binomial", "poisson"]),
       k=st.integers(1, 6))
@settings(max_examples=15)
def test_property_relabelling_moves_the_gradient_not_the_hessian(seed, family, k):
    """Canonical links: new labels change the gradient by w_i (y_i - y'_i) x~_i and leave H alone,
    so "newton" solves H dtheta = -grad L'(theta^) and is exact for squared loss."""
    prob = make_problem(family, n=40, d=3, seed=seed % 50, weights=True)
    rng = np.random.default_rng(seed)
    index = rng.choice(prob.n_samples, size=k, replace=False)
    if family == "binomial":
        new = 1.0 - prob.y[index]
    elif family == "poisson":
        new = rng.poisson(2.0, size=k).astype(float)
    else:
        new = prob.y[index] + rng.normal(size=k)
    y = prob.y.copy()
    y[index] = new
    if family == "binomial" and y.min() == y.max():
        return
    twin = rif.GLMProblem(prob.X, y, family, prob.theta, sample_weight=prob.sample_weight,
                          penalty=prob.penalty, refine=False)
    np.testing.assert_allclose(twin.hessian_at(prob.theta, prob.sample_weight),
                               prob.hessian_at(prob.theta, prob.sample_weight), rtol=1e-12, atol=1e-12)
    _, grad = twin.value_gradient(prob.theta, prob.sample_weight)
    step = prob.relabel_params_change(index, new, "newton")
    np.testing.assert_allclose(prob.hessian @ step, -grad, rtol=1e-8, atol=1e-9)
    exact = prob.relabel_params_change(index, new, "retrain")
    _, grad_after = twin.value_gradient(prob.theta + exact, prob.sample_weight)
    assert np.max(np.abs(grad_after)) < 1e-6 * max(1.0, np.max(np.abs(grad)))
    if family == "gaussian":
        np.testing.assert_allclose(step, exact, rtol=1e-8, atol=1e-10)
