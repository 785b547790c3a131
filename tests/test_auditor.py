"""InfluenceAuditor: the scikit-learn protocol, and every output against another route."""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.linear_model import LinearRegression, LogisticRegression, PoissonRegressor, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import naive
import rif
from conftest import synthetic

def _expected_failures(est):
    from sklearn.pipeline import Pipeline

    if isinstance(est.estimator, Pipeline):
        # as in scikit-learn's own Pipeline, sample_weight reaches only the final step, so a
        # StandardScaler fitted on repeated rows differs from one fitted on weighted rows
        return {"check_sample_weight_equivalence_on_dense_data": "preprocessing is fitted unweighted"}
    return {}


@parametrize_with_checks(
    [rif.InfluenceAuditor(LogisticRegression()), rif.InfluenceAuditor(Ridge()),
     rif.InfluenceAuditor(PoissonRegressor()), rif.InfluenceAuditor(LinearRegression()),
     rif.InfluenceAuditor(make_pipeline(StandardScaler(), LogisticRegression()))],
    expected_failed_checks=_expected_failures,
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def logistic():
    X, y, _ = synthetic("binomial", n=70, d=4, seed=21)
    X_te, y_te, _ = synthetic("binomial", n=9, d=4, seed=22)
    make = lambda: LogisticRegression(C=0.7, solver="newton-cholesky", tol=1e-12)  # noqa: E731
    return rif.InfluenceAuditor(make()).fit(X, y), make, X, y, X_te, y_te


def test_pipeline_last_step_delegates(logistic):
    aud, make, X, y, X_te, y_te = logistic
    pipe = make_pipeline(StandardScaler(), rif.InfluenceAuditor(make())).fit(X, y)
    plain = make_pipeline(StandardScaler(), make()).fit(X, y)
    np.testing.assert_allclose(pipe.predict_proba(X_te), plain.predict_proba(X_te), rtol=1e-7)
    np.testing.assert_array_equal(pipe.predict(X_te), plain.predict(X_te))
    assert pipe.score(X_te, y_te) == plain.score(X_te, y_te)
    np.testing.assert_allclose(pipe.decision_function(X_te), plain.decision_function(X_te), rtol=1e-7)
    inner = pipe[-1]
    assert inner.params_change([0, 1]).shape == (X.shape[1] + 1,)
    assert not hasattr(rif.InfluenceAuditor(Ridge()), "predict_proba")


@pytest.mark.parametrize("method", ["if", "rif", "newton", "retrain"])
@pytest.mark.parametrize("target", ["decision", "proba", "loss"])
def test_effect_equals_refitted_predictions_for_retrain_and_callable(logistic, method, target):
    aud, make, X, y, X_te, y_te = logistic
    remove = [2, 3, 5, 8, 13]
    dtheta = aud.params_change(remove, method)
    new = aud.unlearn(remove, method)
    if target == "decision":
        want = new.decision_function(X_te).sum() - aud.decision_function(X_te).sum()
    elif target == "proba":
        pick = lambda P: P[np.arange(len(y_te)), y_te.astype(int)].sum()  # noqa: E731
        want = pick(new.predict_proba(X_te)) - pick(aud.predict_proba(X_te))
    else:
        from sklearn.metrics import log_loss
        want = len(y_te) * (log_loss(y_te, new.predict_proba(X_te), labels=[0, 1])
                            - log_loss(y_te, aud.predict_proba(X_te), labels=[0, 1]))
    got = aud.effect(remove, target=target, X=X_te, y=y_te, method=method)
    assert got == pytest.approx(want, rel=1e-8, abs=1e-12)
    # the same through a user callable of theta, exact and linearised
    tgt = rif._targets.make_target(aud.problem_, target, X_te, y_te)
    f = aud.effect(remove, target=tgt.value, method=method)
    assert f == pytest.approx(got, rel=1e-10, abs=1e-13)
    lin = aud.effect(remove, target=tgt.value, target_gradient=tgt.gradient, method=method, linear=True)
    assert lin == pytest.approx(tgt.gradient(aud.problem_.theta) @ dtheta, rel=1e-10, abs=1e-13)
    assert aud.effect(remove, target=target, X=X_te, y=y_te, method=method, linear=True) == pytest.approx(lin, rel=1e-10, abs=1e-13)


def test_linearised_effect_is_first_order(logistic):
    """exact - linear = O(||dtheta||^2): halving a (scaled) step quarters the gap."""
    aud, _, X, y, X_te, y_te = logistic
    tgt = rif._targets.make_target(aud.problem_, "loss", X_te, y_te)
    theta = aud.problem_.theta
    dtheta = aud.params_change(list(range(10)), "retrain")
    gap = [tgt.value(theta + t * dtheta) - tgt.value(theta) - t * tgt.gradient(theta) @ dtheta for t in (1.0, 0.5)]
    assert gap[1] == pytest.approx(gap[0] / 4, rel=0.1)


@pytest.mark.parametrize("method", ["if", "rif", "newton", "retrain"])
@pytest.mark.parametrize("linear", [False, True])
@pytest.mark.parametrize("target", ["loss", "proba", "decision"])
def test_scores_columns_are_single_sample_effects(logistic, method, linear, target):
    aud, _, X, y, X_te, y_te = logistic
    scores = aud.scores(X_te, y_te, target=target, method=method, linear=linear)
    assert scores.shape == (len(y), len(y_te))
    for i in (0, 17, 69):
        for j in (0, 8):
            want = aud.effect([i], target=target, X=X_te[j:j + 1], y=y_te[j:j + 1], method=method, linear=linear)
            assert scores[i, j] == pytest.approx(want, rel=1e-9, abs=1e-14)


@pytest.mark.parametrize("method", ["if", "rif", "newton", "retrain"])
def test_self_influence_is_the_self_loss_effect(logistic, method):
    aud, _, X, y, *_ = logistic
    si = aud.self_influence(method=method)
    for i in (0, 33, 69):
        assert si[i] == pytest.approx(aud.effect([i], target="self_loss", method=method), rel=1e-9, abs=1e-14)
    if method != "retrain":
        assert np.all(si >= -1e-14)


def test_linear_if_self_influence_is_koh_liang():
    X, y, _ = synthetic("binomial", n=50, seed=23)
    aud = rif.InfluenceAuditor(LogisticRegression()).fit(X, y)
    prob = aud.problem_
    xt = naive.design(X, True)
    g = prob.d1[:, None] * xt
    _, hess = naive.dense_gradient_hessian(prob, prob.theta, prob.sample_weight)
    koh = np.einsum("ij,ji->i", g, np.linalg.solve(hess, g.T))
    np.testing.assert_allclose(aud.self_influence("if", linear=True), koh, rtol=1e-10)
    np.testing.assert_allclose(aud.self_influence("rif", linear=True), koh / (1 - aud.leverage_), rtol=1e-10)


def test_batch_equals_loop(logistic):
    aud, _, X, y, X_te, y_te = logistic
    sets = [np.array([1, 2, 3]), np.array([4]), np.arange(10, 30)]
    for method in ("if", "rif", "newton", "retrain"):
        batch = aud.effect(sets, target="loss", X=X_te, y=y_te, method=method)
        loop = [aud.effect(s, target="loss", X=X_te, y=y_te, method=method) for s in sets]
        np.testing.assert_allclose(batch, loop, rtol=1e-12)
        np.testing.assert_allclose(aud.params_change(sets, method),
                                   [aud.params_change(s, method) for s in sets], rtol=1e-12)
    mask = np.zeros(len(y), bool)
    mask[[1, 2, 3]] = True
    np.testing.assert_allclose(aud.params_change(mask), aud.params_change([1, 2, 3]))


def test_train_loss_target_counts_every_training_sample(logistic):
    aud, *_ = logistic
    prob = aud.problem_
    remove = [4, 9]
    dtheta = aud.params_change(remove, "newton")
    want = prob.family.loss(rif._design.linear_predictor(prob.X, prob.theta + dtheta, True), prob.y).sum() - prob.loss.sum()
    assert aud.effect(remove, target="train_loss", method="newton") == pytest.approx(want, rel=1e-10)


def test_sparse_input_matches_dense():
    X, y, _ = synthetic("poisson", n=60, d=5, seed=24)
    X[np.abs(X) < 0.8] = 0.0
    dense = rif.InfluenceAuditor(PoissonRegressor(alpha=0.1)).fit(X, y)
    sparse = rif.InfluenceAuditor(PoissonRegressor(alpha=0.1)).fit(sp.csr_matrix(X), y)
    np.testing.assert_allclose(sparse.leverage_, dense.leverage_, rtol=1e-8)
    for method in ("if", "rif", "newton", "retrain"):
        np.testing.assert_allclose(sparse.params_change([0, 5, 7], method), dense.params_change([0, 5, 7], method),
                                   rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(sparse.scores(sp.csr_matrix(X[:4]), y[:4]), dense.scores(X[:4], y[:4]),
                               rtol=1e-7, atol=1e-12)


@pytest.mark.parametrize("block_values", [2**22, 500])
def test_wide_sparse_input_matches_dense(monkeypatch, block_values):
    """Wide bag-of-words-like data: blocks shrink with p, the Gram is accumulated block-wise."""
    monkeypatch.setattr(rif._design, "BLOCK_VALUES", block_values)
    rng = np.random.default_rng(25)
    X = sp.random(300, 900, density=0.02, random_state=rng, format="csr")
    y = (rng.random(300) < 0.5).astype(float)
    sparse = rif.GLMProblem(X, y, "binomial", penalty=1.0)
    dense = rif.GLMProblem(X.toarray(), y, "binomial", penalty=1.0)
    np.testing.assert_allclose(sparse.hessian, dense.hessian, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sparse.leverage, dense.leverage, rtol=1e-9, atol=1e-14)
    for method in ("rif", "newton", "retrain"):
        np.testing.assert_allclose(sparse.params_change(np.arange(5), method), dense.params_change(np.arange(5), method),
                                   rtol=1e-8, atol=1e-12)


def test_float32_input_is_computed_in_float64():
    X, y, _ = synthetic("binomial", n=60, seed=26)
    X32 = X.astype(np.float32)
    a = rif.GLMProblem(X32, y, "binomial", penalty=1.0)
    b = rif.GLMProblem(X32.astype(np.float64), y, "binomial", penalty=1.0)
    assert a.X.dtype == np.float64
    np.testing.assert_array_equal(a.leverage, b.leverage)
    np.testing.assert_array_equal(a.params_change([1, 2], "retrain"), b.params_change([1, 2], "retrain"))


def test_too_many_parameters_fail_clearly():
    X = sp.csr_matrix((3, 40000))
    with pytest.raises(ValueError, match="at most 32768 parameters"):
        rif.GLMProblem(X, np.array([0.0, 1.0, 1.0]), "binomial", penalty=1.0, route="primal")
    with pytest.raises(ValueError, match="at most 32768 parameters"):   # no penalty: no dual route
        rif.GLMProblem(X, np.array([0.0, 1.0, 1.0]), "binomial", route="auto")


def test_many_parameters_and_few_samples_take_the_dual_route():
    X = sp.random(5, 40000, density=0.01, format="csr", random_state=0)
    problem = rif.GLMProblem(X, np.array([0.0, 1.0, 1.0, 0.0, 1.0]), "binomial", penalty=1.0)
    assert problem.route == "dual"
    assert problem.params_change([1], "retrain").shape == (40001,)


def test_a_scalar_index_is_a_one_sample_set(logistic):
    aud = logistic[0]
    np.testing.assert_array_equal(aud.params_change(3), aud.params_change([3]))
    np.testing.assert_array_equal(aud.params_change(np.int64(3), "newton"), aud.params_change([3], "newton"))
