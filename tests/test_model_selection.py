"""Leave-one-out predictions, scores and LeaveOneOutSearchCV against scikit-learn's
cross-validation with LeaveOneOut() / LeaveOneGroupOut() (n refits each)."""

import numpy as np
import pytest
import statsmodels.api as sm
from sklearn.linear_model import LogisticRegression, PoissonRegressor, Ridge, RidgeCV
from sklearn.metrics import log_loss, make_scorer
from sklearn.model_selection import GridSearchCV, LeaveOneGroupOut, LeaveOneOut, cross_val_predict

import rif
from rif.model_selection import LeaveOneOutSearchCV, loo_predict, loo_score

@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    # scikit-learn's n tiny reference fits are slowed 100x by BLAS thread start-up on a busy machine
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


# one-sample folds: log_loss needs the label set spelled out
LOG_LOSS = make_scorer(log_loss, greater_is_better=False, response_method="predict_proba", labels=[0, 1])


def _binary(n=80, d=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = (rng.random(n) < 1 / (1 + np.exp(-(X @ rng.normal(size=d) + 0.2)))).astype(int)
    return X, y


def _regression(n=60, d=4, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    return X, X @ rng.normal(size=d) + 0.5 + rng.normal(size=n)


def _logistic(C=1.0):
    return LogisticRegression(C=C, solver="newton-cholesky", tol=1e-12, max_iter=1000)


def test_logistic_loo_predictions_match_refits():
    X, y = _binary()
    aud = rif.InfluenceAuditor(_logistic()).fit(X, y)
    reference = cross_val_predict(_logistic(), X, y, cv=LeaveOneOut(), method="predict_proba")[:, 1]
    np.testing.assert_allclose(aud.loo_predict("retrain"), reference, atol=1e-7)
    newton = aud.loo_predict("newton")
    assert np.abs(newton - reference).max() < 0.02        # ALO: second-order error
    assert np.abs(newton - reference).max() < np.abs(aud.predict_proba(X)[:, 1] - reference).max()


def test_ridge_loo_is_exact_and_matches_ridgecv():
    X, y = _regression()
    aud = rif.InfluenceAuditor(Ridge(alpha=2.0)).fit(X, y)
    reference = cross_val_predict(Ridge(alpha=2.0), X, y, cv=LeaveOneOut())
    np.testing.assert_allclose(aud.loo_predict("newton"), reference, rtol=1e-10, atol=1e-10)
    ridge_cv = RidgeCV(alphas=[2.0], store_cv_results=True).fit(X, y)
    np.testing.assert_allclose((y - aud.loo_predict("newton")) ** 2, ridge_cv.cv_results_[:, 0], rtol=1e-8)
    np.testing.assert_allclose(aud.loo_score(scoring="neg_mean_squared_error"), -ridge_cv.cv_results_.mean(),
                               rtol=1e-10)


@pytest.fixture(scope="module")
def loo_reference():
    from sklearn.model_selection import cross_val_score

    X, y = _binary(n=150)
    return X, y, {scoring: cross_val_score(_logistic(), X, y, cv=LeaveOneOut(), scoring=scorer).mean()
                  for scoring, scorer in (("log_loss", LOG_LOSS), ("accuracy", "accuracy"))}


@pytest.mark.parametrize("method, rtol", [("retrain", 1e-8), ("newton", 2e-2)])
def test_loo_score_matches_cross_val_score(method, rtol, loo_reference):
    X, y, references = loo_reference
    reference = references["log_loss"]
    aud = rif.InfluenceAuditor(_logistic()).fit(X, y)
    np.testing.assert_allclose(aud.loo_score(scoring=LOG_LOSS, method=method), reference, rtol=rtol)
    # a scorer name on the pooled predictions gives the same mean for a per-sample loss
    np.testing.assert_allclose(aud.loo_score(scoring="neg_log_loss", method=method),
                               aud.loo_score(scoring=LOG_LOSS, method=method), rtol=1e-12)
    accuracy = aud.loo_score(scoring="accuracy", method="retrain")
    assert accuracy == pytest.approx(references["accuracy"], abs=1e-12)


def test_string_labels():
    X, y = _binary()
    labels = np.where(y == 1, "yes", "no")
    aud = rif.InfluenceAuditor(_logistic()).fit(X, labels)
    assert aud.loo_score(scoring="accuracy") == aud.loo_score(labels, scoring="accuracy")


def test_leave_one_group_out_matches_refits():
    X, y = _binary(n=90)
    groups = np.arange(90) % 9
    aud = rif.InfluenceAuditor(_logistic()).fit(X, y)
    reference = cross_val_predict(_logistic(), X, y, cv=LeaveOneGroupOut(), groups=groups,
                                  method="predict_proba")[:, 1]
    np.testing.assert_allclose(aud.loo_predict("retrain", groups=groups), reference, atol=1e-7)
    assert np.abs(aud.loo_predict("newton", groups=groups) - reference).max() < 0.05
    # squared loss: the group Newton step (Woodbury) is exact
    Xr, yr = _regression()
    g = np.arange(len(yr)) % 6
    ridge = rif.InfluenceAuditor(Ridge(alpha=1.0)).fit(Xr, yr)
    np.testing.assert_allclose(ridge.loo_predict("newton", groups=g),
                               cross_val_predict(Ridge(alpha=1.0), Xr, yr, cv=LeaveOneGroupOut(), groups=g),
                               rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match="groups"):
        ridge.loo_predict(groups=g[:-1])


def test_poisson_loo_predictions():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(30, 3))
    y = rng.poisson(np.exp(X @ [0.3, -0.2, 0.1] + 0.5))
    est = PoissonRegressor(alpha=0.05, solver="newton-cholesky", tol=1e-10, max_iter=100)
    aud = rif.InfluenceAuditor(est).fit(X, y)
    reference = cross_val_predict(est, X, y, cv=LeaveOneOut())
    np.testing.assert_allclose(aud.loo_predict("retrain"), reference, rtol=1e-6)
    assert np.abs(aud.loo_predict("newton") / reference - 1).max() < 0.05     # ALO at n = 30


def test_statsmodels_problem_loo():
    X, y = _binary()
    exog = sm.add_constant(X)
    prob = rif.GLMProblem.from_statsmodels(sm.Logit(y.astype(float), exog).fit(disp=0))
    reference = cross_val_predict(LogisticRegression(C=np.inf, solver="newton-cholesky", tol=1e-12), X, y,
                                  cv=LeaveOneOut(), method="predict_proba")[:, 1]
    np.testing.assert_allclose(loo_predict(prob, "retrain"), reference, atol=1e-6)
    assert loo_score(prob, scoring="neg_log_loss", method="retrain") == pytest.approx(
        -log_loss(y, reference), rel=1e-6)


GRID = {"C": [0.01, 0.1, 1.0, 10.0]}


@pytest.fixture(scope="module")
def grid_reference():
    X, y = _binary(n=100)
    return X, y, GridSearchCV(_logistic(), GRID, cv=LeaveOneOut(), scoring=LOG_LOSS).fit(X, y)


@pytest.mark.parametrize("method, rtol", [("retrain", 1e-8), ("newton", 2e-2)])
def test_search_matches_grid_search_cv(method, rtol, grid_reference):
    X, y, reference = grid_reference
    grid = GRID
    search = LeaveOneOutSearchCV(_logistic(), grid, scoring=LOG_LOSS, method=method).fit(X, y)
    np.testing.assert_allclose(search.cv_results_["mean_test_score"],
                               reference.cv_results_["mean_test_score"], rtol=rtol)
    assert search.best_params_ == reference.best_params_
    np.testing.assert_array_equal(search.cv_results_["rank_test_score"], reference.cv_results_["rank_test_score"])
    np.testing.assert_allclose(search.best_estimator_.coef_, reference.best_estimator_.coef_, rtol=1e-6)
    assert search.predict(X).shape == (100,)


def test_search_with_groups_matches_grid_search_predictions():
    X, y = _regression(n=48)
    groups = np.arange(48) % 8
    grid = {"alpha": [0.1, 1.0, 10.0]}
    search = LeaveOneOutSearchCV(Ridge(), grid, scoring="neg_mean_squared_error").fit(X, y, groups=groups)
    for k, params in enumerate(search.cv_results_["params"]):
        pred = cross_val_predict(Ridge(**params), X, y, cv=LeaveOneGroupOut(), groups=groups)
        np.testing.assert_allclose(search.cv_results_["mean_test_score"][k], -np.mean((y - pred) ** 2), rtol=1e-10)


def test_search_validates():
    X, y = _binary()
    with pytest.raises(ValueError, match="method"):
        LeaveOneOutSearchCV(_logistic(), {"C": [1.0]}, method="exact").fit(X, y)
    with pytest.raises(ValueError, match="no candidates"):
        LeaveOneOutSearchCV(_logistic(), []).fit(X, y)
