"""Each scikit-learn estimator maps to the right sum-form objective: exact refits agree."""

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import (LinearRegression, LogisticRegression, PoissonRegressor, Ridge,
                                  SGDClassifier)

import rif
from conftest import synthetic

ESTIMATORS = [
    pytest.param(lambda: LogisticRegression(C=0.3, solver="newton-cholesky", tol=1e-12, max_iter=1000),
                 "binomial", id="logistic-l2"),
    pytest.param(lambda: LogisticRegression(C=np.inf, solver="newton-cholesky", tol=1e-12, max_iter=1000),
                 "binomial", id="logistic-unpenalised"),
    pytest.param(lambda: LogisticRegression(C=2.0, class_weight={0: 1.0, 1: 3.0}, solver="newton-cholesky",
                                            tol=1e-12, max_iter=1000), "binomial", id="logistic-class-weight"),
    pytest.param(lambda: LogisticRegression(C=0.3, fit_intercept=False, solver="lbfgs", tol=1e-12, max_iter=5000),
                 "binomial", id="logistic-nointercept-lbfgs"),
    pytest.param(LinearRegression, "gaussian", id="linear"),
    pytest.param(lambda: Ridge(alpha=3.0), "gaussian", id="ridge"),
    pytest.param(lambda: Ridge(alpha=3.0, fit_intercept=False), "gaussian", id="ridge-nointercept"),
    pytest.param(lambda: PoissonRegressor(alpha=0.05, solver="newton-cholesky", tol=1e-12, max_iter=1000),
                 "poisson", id="poisson-per-sample-penalty"),
    pytest.param(lambda: PoissonRegressor(alpha=0.05, fit_intercept=False, solver="newton-cholesky",
                                          tol=1e-12, max_iter=1000), "poisson", id="poisson-nointercept"),
]


def theta_of(est):
    coef = np.ravel(est.coef_)
    return np.append(coef, np.ravel(est.intercept_)[0]) if est.fit_intercept else coef


@pytest.mark.parametrize("make,family", ESTIMATORS)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_retrain_equals_refitting_the_estimator(make, family, weighted):
    X, y, w = synthetic(family, n=80, d=4, seed=3, weights=weighted)
    aud = rif.InfluenceAuditor(make()).fit(X, y, sample_weight=w)
    remove = np.array([0, 3, 4, 10, 11, 30, 41, 77])
    keep = np.setdiff1d(np.arange(len(y)), remove)
    refit = make().fit(X[keep], y[keep], sample_weight=None if w is None else w[keep])
    want = theta_of(refit)
    got = theta_of(aud.estimator_) + aud.params_change(remove, method="retrain")
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8 * np.abs(want).max())
    # and the refined full-data fit is scikit-learn's own optimum
    full = make().fit(X, y, sample_weight=w)
    np.testing.assert_allclose(theta_of(aud.estimator_), theta_of(full), rtol=1e-6,
                               atol=1e-8 * np.abs(theta_of(full)).max())


def test_poisson_penalty_shrinks_with_the_data():
    """PoissonRegressor's mean-form objective is the per_sample convention, lambda = alpha * sum w."""
    X, y, _ = synthetic("poisson", n=50, seed=2)
    aud = rif.InfluenceAuditor(PoissonRegressor(alpha=0.2)).fit(X, y)
    assert aud.problem_.penalty_scaling == "per_sample"
    assert aud.problem_.penalty_total(aud.problem_.sample_weight) == pytest.approx(0.2 * 50)


def test_unlearn_retrain_predicts_like_the_refitted_estimator():
    X, y, _ = synthetic("binomial", n=80, seed=4)
    make = lambda: LogisticRegression(C=1.0, solver="newton-cholesky", tol=1e-12)  # noqa: E731
    aud = rif.InfluenceAuditor(make()).fit(X, y)
    remove = np.arange(8)
    unlearned = aud.unlearn(remove, method="retrain")
    refit = make().fit(X[8:], y[8:])
    np.testing.assert_allclose(unlearned.predict_proba(X), refit.predict_proba(X), rtol=1e-7, atol=1e-10)
    assert unlearned is not aud.estimator_
    np.testing.assert_allclose(aud.estimator_.coef_, make().fit(X, y).coef_, rtol=1e-6)


@pytest.mark.parametrize("est,match", [
    (LogisticRegression(l1_ratio=1.0, solver="saga"), "L1 or elastic-net"),
    (LogisticRegression(solver="liblinear"), "liblinear"),
    (LogisticRegression(class_weight="balanced"), "balanced"),
    (Ridge(positive=True), "positive"),
    (SGDClassifier(), "not supported"),
])
def test_unsupported_settings_are_named(est, match):
    X, y, _ = synthetic("binomial", n=40, seed=5)
    with pytest.raises(rif.UnsupportedEstimatorError, match=match):
        rif.InfluenceAuditor(est).fit(X, y)


def test_three_classes_fit_the_multinomial_model_and_one_vs_rest_is_refused():
    from sklearn.multiclass import OneVsRestClassifier

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 3)), np.repeat([0, 1, 2], 20)
    aud = rif.InfluenceAuditor(LogisticRegression()).fit(X, y)
    assert aud.problem_.family_name == "multinomial" and aud.problem_.n_params == 12
    with pytest.raises(rif.UnsupportedEstimatorError, match="not supported"):
        rif.InfluenceAuditor(OneVsRestClassifier(LogisticRegression())).fit(X, y)


def test_unfitted_auditor_raises_not_fitted():
    with pytest.raises(NotFittedError):
        rif.InfluenceAuditor(LogisticRegression()).params_change([0])


def test_string_labels_are_encoded_by_classes():
    X, y, _ = synthetic("binomial", n=60, seed=6)
    labels = np.where(y == 1, "spam", "ham")
    aud = rif.InfluenceAuditor(LogisticRegression()).fit(X, labels)
    num = rif.InfluenceAuditor(LogisticRegression()).fit(X, y)
    np.testing.assert_allclose(aud.params_change([1, 2]), num.params_change([1, 2]), rtol=1e-10)
    assert aud.effect([1, 2], target="loss", X=X[:5], y=labels[:5]) == pytest.approx(
        num.effect([1, 2], target="loss", X=X[:5], y=y[:5]), rel=1e-10)


def test_glm_problem_has_the_auditor_interface():
    """GLMProblem on raw arrays with the per_sample convention equals the PoissonRegressor auditor."""
    X, y, w = synthetic("poisson", n=50, seed=8, weights=True)
    aud = rif.InfluenceAuditor(PoissonRegressor(alpha=0.1)).fit(X, y, sample_weight=w)
    prob = rif.GLMProblem(X, y, "poisson", sample_weight=w, penalty=0.1, penalty_scaling="per_sample")
    np.testing.assert_allclose(prob.theta, aud.problem_.theta, rtol=1e-8)
    for method in ("if", "rif", "newton", "retrain"):
        np.testing.assert_allclose(prob.params_change([1, 2, 3], method), aud.params_change([1, 2, 3], method),
                                   rtol=1e-7, atol=1e-12)
        np.testing.assert_allclose(prob.scores(X[:3], y[:3], method=method), aud.scores(X[:3], y[:3], method=method),
                                   rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(prob.self_influence(), aud.self_influence(), rtol=1e-7, atol=1e-12)
