"""Certified error bounds: never below the true error, tight where the theory is sharp."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rif
from rif import GLMProblem


def _data(family, n, d, seed, scale=2.0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) * scale / np.sqrt(d)
    eta = X @ rng.standard_normal(d)
    if family == "binomial":
        y = (rng.uniform(size=n) < 1 / (1 + np.exp(-eta))).astype(float)
        y[:2] = [0.0, 1.0]
    elif family == "gaussian":
        y = eta + rng.standard_normal(n)
    else:
        y = rng.poisson(np.exp(0.5 * eta)).astype(float)
        y[0] = 1.0
    return X, y


def _sets(X, rng, k, clustered):
    n = X.shape[0]
    if clustered:                      # the k nearest neighbours of a random sample
        centre = X[rng.integers(2, n)]
        order = np.argsort(np.linalg.norm(X - centre, axis=1))
        return np.sort(order[order >= 2][:k])
    return np.sort(2 + rng.choice(n - 2, k, replace=False))


@settings(max_examples=25, deadline=None)
@given(family=st.sampled_from(["binomial", "gaussian", "poisson"]), n=st.integers(20, 200),
       ratio=st.sampled_from([2, 4, 8, 32, 128]), intercept=st.booleans(),
       scaling=st.sampled_from(["fixed", "per_sample"]), weighted=st.booleans(), clustered=st.booleans(),
       fraction=st.sampled_from([0.01, 0.05]), seed=st.integers(0, 2**16))
def test_the_bound_is_never_below_the_error(family, n, ratio, intercept, scaling, weighted, clustered,
                                            fraction, seed):
    d = max(1, n // ratio)
    X, y = _data(family, n, d, seed)
    rng = np.random.default_rng(seed)
    weights = rng.uniform(0.5, 2.0, n) if weighted else None
    penalty = 1.0 if scaling == "fixed" else 1.0 / n
    problem = GLMProblem(X, y, family, penalty=penalty, penalty_scaling=scaling, fit_intercept=intercept,
                         sample_weight=weights, tol=1e-13)
    index = _sets(X, rng, max(1, int(fraction * n)), clustered)
    truth = problem.params_change(index, "retrain")
    X_eval, y_eval = _data(family, 10, d, seed + 1)
    targets = ["loss", "decision"] + (["proba"] if family == "binomial" else [])
    effects = {t: problem.effect(index, t, X_eval, y_eval, dtheta=truth) for t in targets}
    scale = 1e-9 * (1.0 + np.linalg.norm(truth))
    for method in ("if", "rif", "newton", "retrain"):
        cert = problem.params_change(index, method, certify=True)
        assert not np.isnan(cert.bound)
        assert cert.bound >= np.linalg.norm(cert.value - truth) - scale, (method, cert)
        for t in targets:
            eff = problem.effect(index, t, X_eval, y_eval, method=method, certify=True)
            assert not np.isnan(eff.bound)
            assert eff.bound >= abs(eff.value - effects[t]) - 1e-9 * (1 + abs(effects[t])), (method, t, eff)


def test_bounds_are_tight_and_vanish_at_the_optimum():
    X, y = _data("binomial", 4000, 20, 0)
    problem = GLMProblem(X, y, "binomial", penalty=1.0, tol=1e-13)
    index = np.arange(2, 42)
    truth = problem.params_change(index, "retrain")
    for method in ("rif", "newton"):
        cert = problem.params_change(index, method, certify=True)
        err = np.linalg.norm(cert.value - truth)
        assert cert.certified and err <= cert.bound <= 1.5 * err
    at_optimum = problem.params_change(index, "retrain", certify=True)
    assert at_optimum.certified and at_optimum.bound < 1e-10 * np.linalg.norm(truth)
    # squared loss: the Newton step is exact and so is its certificate
    Xg, yg = _data("gaussian", 300, 10, 1)
    gaussian = GLMProblem(Xg, yg, "gaussian", penalty=1.0)
    newton = gaussian.params_change([3, 4, 5], "newton", certify=True)
    assert newton.bound < 1e-12 and newton.bound_h < 1e-12
    # the IF bound on squared loss is its exact error
    exact = gaussian.params_change([3, 4, 5], "retrain")
    influence = gaussian.params_change([3, 4, 5], "if", certify=True)
    np.testing.assert_allclose(influence.bound, np.linalg.norm(influence.value - exact), rtol=1e-8)


def test_auto_takes_the_cheapest_estimate_that_proves_the_tolerance():
    X, y = _data("binomial", 600, 150, 3)
    problem = GLMProblem(X, y, "binomial", penalty=1.0, tol=1e-13)
    rng = np.random.default_rng(0)
    sets = [_sets(X, rng, k, clustered) for k in (6, 30) for clustered in (False, True)]
    result = problem.params_change(sets, "auto", certify=True, rtol=0.05)
    assert result.value.shape == (4, problem.n_params) and result.bound.shape == (4,)
    assert set(result.method) <= {"rif", "newton", "retrain"}
    truth = problem.params_change(sets, "retrain")
    for value, exact in zip(result.value, truth):
        assert np.linalg.norm(value - exact) <= 0.05 * np.linalg.norm(exact) + 1e-12
    plain = problem.params_change(sets, "auto", rtol=0.05)
    np.testing.assert_allclose(plain, result.value)
    effect = problem.effect(sets[0], "loss", X[:20], y[:20], method="auto", certify=True)
    assert effect.method in ("rif", "newton", "retrain") and np.isfinite(effect.bound)


def test_certificates_on_the_dual_route_and_through_the_auditor():
    from sklearn.linear_model import LogisticRegression

    X, y = _data("binomial", 60, 150, 5)
    problem = GLMProblem(X, y, "binomial", penalty=1.0, fit_intercept=False, tol=1e-13)
    assert problem.route == "dual"
    index = np.array([3, 9, 20])
    truth = problem.params_change(index, "retrain")
    cert = problem.params_change(index, "newton", certify=True)
    assert cert.bound >= np.linalg.norm(cert.value - truth) - 1e-12
    aud = rif.InfluenceAuditor(LogisticRegression(C=1.0)).fit(X[:, :10], y)
    batch = aud.params_change([[1, 2], [3]], "rif", certify=True)
    assert isinstance(batch, rif.Certified) and batch.bound.shape == (2,) and batch.certified.dtype == bool


def test_bad_arguments_get_clear_answers():
    X, y = _data("binomial", 100, 3, 7)
    problem = GLMProblem(X, y, "binomial", penalty=1.0)
    for rtol in (0.0, -0.1, 1.0, float("nan")):
        with pytest.raises(ValueError, match="rtol"):
            problem.params_change([3], "auto", rtol=rtol)
    with pytest.raises(TypeError, match="rtol"):
        problem.params_change([3], "rif", certify=True, rtol="5%")
    with pytest.raises(TypeError, match="certify"):
        problem.params_change([3], "rif", certify="yes")
    with pytest.raises(ValueError, match="method"):
        problem.params_change([3], "best", certify=True)
    with pytest.raises(ValueError, match="dtheta"):
        problem.effect([3], "loss", X[:2], y[:2], dtheta=np.zeros(4), certify=True)
    with pytest.raises(ValueError, match="linear"):
        problem.effect([3], "loss", X[:2], y[:2], certify=True, linear=True)
    callable_target = problem.effect([3], lambda theta: theta[0], certify=True)
    assert callable_target.bound == np.inf and not callable_target.certified
    from rif._multinomial import MultinomialProblem

    multi = MultinomialProblem(X, np.arange(100) % 3, 3, penalty=1.0)
    with pytest.raises(rif.UnsupportedEstimatorError, match="not yet"):
        multi.params_change([3], "rif", certify=True)
