"""Each silent or obscure failure found by outside checks, pinned by a test that failed before its fix."""

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.linear_model import (
    LogisticRegression, LogisticRegressionCV, PoissonRegressor, Ridge, RidgeCV,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import rif
from conftest import synthetic


def _scaled_logistic(seed=0, n=80, d=4):
    """Logistic data on a scale far from standardised, so a missing scaler shows."""
    X, y, _ = synthetic("binomial", n=n + 10, d=d, seed=seed)
    X = X * np.array([30.0, 0.1, 5.0, 2.0])[:d] + 40.0
    return X[:n], y[:n], X[n:], y[n:]


# -- 1. pipelines --------------------------------------------------------------------------
def test_a_wrapped_pipeline_takes_raw_evaluation_data_and_matches_the_manual_route():
    X, y, X_te, y_te = _scaled_logistic()
    aud = rif.InfluenceAuditor(make_pipeline(StandardScaler(), LogisticRegression(C=0.5))).fit(X, y)
    manual = make_pipeline(StandardScaler(), rif.InfluenceAuditor(LogisticRegression(C=0.5))).fit(X, y)
    Z_te = manual[:-1].transform(X_te)
    for method in ("if", "rif", "newton"):
        np.testing.assert_allclose(aud.scores(X_te, y_te, method=method),
                                   manual[-1].scores(Z_te, y_te, method=method), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(aud.effect([1, 2, 3], "loss", X_te, y_te, method="retrain"),
                               manual[-1].effect([1, 2, 3], "loss", Z_te, y_te, method="retrain"), rtol=1e-9)
    np.testing.assert_allclose(aud.predict_proba(X_te), manual.predict_proba(X_te), rtol=1e-9)


def test_unlearn_of_a_wrapped_pipeline_is_the_pipeline_refitted_with_fixed_preprocessing():
    X, y, X_te, _ = _scaled_logistic(1)
    pipe = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, solver="newton-cholesky", tol=1e-12))
    aud = rif.InfluenceAuditor(pipe).fit(X, y)
    out = aud.unlearn([0, 5, 9], method="retrain")
    assert type(out).__name__ == "Pipeline" and out is not aud.estimator_
    keep = np.setdiff1d(np.arange(len(y)), [0, 5, 9])
    scaler = aud.estimator_[0]                          # held fixed: fitted once on all the data
    ref = LogisticRegression(C=0.5, solver="newton-cholesky", tol=1e-12).fit(scaler.transform(X[keep]), y[keep])
    np.testing.assert_allclose(out.decision_function(X_te), ref.decision_function(scaler.transform(X_te)),
                               rtol=1e-7, atol=1e-9)
    # the auditor's own estimator is untouched
    assert not np.allclose(out[-1].coef_, aud.estimator_[-1].coef_)


def test_raw_dataframe_with_strings_to_an_inner_auditor_says_what_to_do():
    X, y, X_te, y_te = _scaled_logistic(2)
    aud = rif.InfluenceAuditor(LogisticRegression()).fit(X, y)
    frame = pd.DataFrame(X_te)
    frame[0] = "x"
    for Z in (frame, frame.to_numpy()):
        with pytest.raises(TypeError, match=r"pipe\[:-1\].transform"):
            aud.scores(Z, y_te)


def test_raw_evaluation_data_to_an_inner_auditor_warns():
    X, y, X_te, y_te = _scaled_logistic(21)
    pipe = make_pipeline(StandardScaler(), rif.InfluenceAuditor(LogisticRegression())).fit(X, y)
    aud = pipe[-1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        aud.scores(pipe[:-1].transform(X_te), y_te)          # the right call is silent
    with pytest.warns(UserWarning, match=r"pipe\[:-1\].transform"):
        aud.scores(X_te, y_te)                               # raw data: off by orders of magnitude


# -- 2. column order -------------------------------------------------------------------------
def test_reordered_dataframe_columns_are_refused():
    X, y, X_te, y_te = _scaled_logistic(3)
    cols = ["a", "b", "c", "d"]
    aud = rif.InfluenceAuditor(LogisticRegression()).fit(pd.DataFrame(X, columns=cols), y)
    good = pd.DataFrame(X_te, columns=cols)
    bad = good[["b", "a", "c", "d"]]
    aud.scores(good, y_te)
    for call in (lambda Z: aud.scores(Z, y_te), lambda Z: aud.effect([0], "loss", Z, y_te),
                 lambda Z: aud.predict(Z)):
        with pytest.raises(ValueError, match="feature names"):
            call(bad)


# -- 3. see tests/test_singular.py --------------------------------------------------------------
# -- 4. overflow -------------------------------------------------------------------------------
def test_poisson_loss_effect_that_overflows_is_finite_or_named():
    X, y, _ = synthetic("poisson", n=60, d=3, seed=4)
    prob = rif.GLMProblem(X, y, "poisson", penalty=0.1)
    big = np.zeros((1, 3))
    big[0, 0] = 720.0 / prob.theta[0]                 # eta ~ 720: e^eta overflows float64
    moderate = big * 500.0 / 720.0                    # e^eta finite, the loss itself huge
    X_te = np.vstack([moderate, [[0.1, 0.2, 0.3]]])
    y_te = np.array([1.0, 1.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value = prob.effect([0, 1], "loss", X_te, y_te, method="rif")
        assert np.isfinite(value)
        # the change agrees with the plain difference where that is representable
        dtheta = prob.params_change([0, 1], "rif")
        eta = np.c_[X_te, np.ones(2)] @ prob.theta
        d_eta = np.c_[X_te, np.ones(2)] @ dtheta
        plain = np.exp(eta + d_eta) - np.exp(eta) - y_te * d_eta
        np.testing.assert_allclose(value, plain.sum(), rtol=1e-6)
        assert np.all(np.isfinite(prob.scores(X_te, y_te, method="rif")))
        X_bad = np.vstack([big, X_te])
        with pytest.raises(OverflowError, match="evaluation sample 0"):
            prob.effect([0, 1], "loss", X_bad, np.r_[1.0, y_te], method="rif")
        with pytest.raises(OverflowError, match="evaluation sample 0"):
            prob.scores(X_bad, np.r_[1.0, y_te], method="rif")


@pytest.mark.parametrize("family", ["binomial", "gaussian", "poisson"])
def test_stable_loss_changes_match_the_plain_difference(family):
    fam = rif._families.get_family(family)
    rng = np.random.default_rng(0)
    eta = rng.normal(scale=3, size=(200, 1))
    d_eta = rng.normal(scale=2, size=(200, 3)) * 10.0 ** rng.integers(-8, 1, size=(200, 3))
    y = (rng.random((200, 1)) < 0.5).astype(float) if family == "binomial" else rng.poisson(2, (200, 1)) * 1.0
    plain = (fam.loss((eta + d_eta).ravel(), np.broadcast_to(y, d_eta.shape).ravel()).reshape(d_eta.shape)
             - fam.loss(eta.ravel(), y.ravel())[:, None])
    stable = fam.loss_change(eta, d_eta, y)
    # the plain difference cancels: it is right to about eps * |loss|, the stable one to eps * |change|
    scale = np.abs(fam.loss(eta.ravel(), y.ravel()))[:, None] + 1.0
    assert np.all(np.abs(stable - plain) <= 1e-13 * scale + 1e-9 * np.abs(plain))


# -- 5. mutation after fit ----------------------------------------------------------------------
@pytest.mark.parametrize("sparse", [False, True])
def test_editing_x_after_fit_does_not_change_answers(sparse):
    X, y, X_te, y_te = _scaled_logistic(5)
    X_in = sp.csr_matrix(X) if sparse else X.copy()
    aud = rif.InfluenceAuditor(LogisticRegression()).fit(X_in, y)
    before = aud.effect([0, 1], "loss", X_te, y_te, method="retrain")
    if sparse:
        X_in.data[:] = 0.0
    else:
        X_in[:] = 0.0
    assert aud.effect([0, 1], "loss", X_te, y_te, method="retrain") == before
    prob = rif.GLMProblem(X.copy(), y, "binomial", penalty=1.0)
    X_own = prob.X
    assert not np.shares_memory(X_own, X)


def test_copy_x_false_reads_in_place():
    X, y, _, _ = _scaled_logistic(6)
    prob = rif.GLMProblem(X, y, "binomial", penalty=1.0, copy_X=False)
    assert np.shares_memory(prob.X, X)


# -- 6. ragged removal batches -------------------------------------------------------------------
def test_mixed_batch_gets_a_clear_error():
    prob = rif.GLMProblem(*synthetic("gaussian", seed=7)[:2], "gaussian")
    with pytest.raises(ValueError, match=r"remove: a batch .* item 1"):
        prob.params_change([[1, 2], 5])


# -- 7. settings ------------------------------------------------------------------------------
BAD_SETTINGS = [("tol", -1.0), ("tol", np.nan), ("tol", "1e-8"), ("tol", 0.0), ("max_iter", 0),
                ("max_iter", 2.5), ("n_jobs", "all"), ("refine", "yes"), ("progress", 3), ("copy_X", None)]


@pytest.mark.parametrize("name, value", BAD_SETTINGS)
def test_bad_auditor_settings_are_refused_before_fitting(name, value):
    X, y, _, _ = _scaled_logistic(8)
    with pytest.raises((ValueError, TypeError), match=name):
        rif.InfluenceAuditor(LogisticRegression(), **{name: value}).fit(X, y)


@pytest.mark.parametrize("name, value", [s for s in BAD_SETTINGS if s[0] != "copy_X"]
                         + [("fit_intercept", "no"), ("copy_X", 1)])
def test_bad_problem_settings_are_refused(name, value):
    X, y, _ = synthetic("gaussian", seed=9)
    with pytest.raises((ValueError, TypeError), match=name):
        rif.GLMProblem(X, y, "gaussian", **{name: value})


# -- 8. invalid estimators ------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [LogisticRegression, None, "LogisticRegression"])
def test_invalid_estimator_gets_a_clear_error_and_tags_do_not_fail(bad):
    aud = rif.InfluenceAuditor(bad)
    aud.__sklearn_tags__()
    X, y, _, _ = _scaled_logistic(10)
    with pytest.raises((TypeError, ValueError), match="estimator"):
        aud.fit(X, y)


# -- 9. weights --------------------------------------------------------------------------------------
def test_negative_weight_is_rifs_error_not_the_estimators():
    X, y, _, _ = _scaled_logistic(11)
    w = np.ones(len(y))
    w[3] = -1.0
    with pytest.raises(ValueError, match="sample_weight"):
        rif.InfluenceAuditor(LogisticRegression()).fit(X, y, sample_weight=w)


@pytest.mark.parametrize("make", [lambda: rif.InfluenceAuditor(Ridge()), None])
def test_a_weight_of_1e300_is_named(make):
    X, y, _ = synthetic("gaussian", seed=12)
    w = np.ones(len(y))
    w[0] = 1e300
    with pytest.raises(ValueError, match="sample_weight spans"):
        if make is None:
            rif.GLMProblem(X, y, "gaussian", sample_weight=w)
        else:
            make().fit(X, y, sample_weight=w)


# -- 10. degenerate targets ------------------------------------------------------------------------
def test_all_zero_poisson_target_is_named():
    X = np.random.default_rng(13).normal(size=(30, 2))
    with pytest.raises(ValueError, match="y is 0 for every"):
        rif.InfluenceAuditor(PoissonRegressor()).fit(X, np.zeros(30))


@pytest.mark.parametrize("quasi", [False, True])
def test_separation_is_named_with_samples_and_features(quasi):
    rng = np.random.default_rng(14)
    X = rng.normal(size=(60, 3))
    y = (X[:, 1] > 0).astype(float)
    if quasi:                      # overlapping classes except a perfectly predicted group
        y = (rng.random(60) < 0.5).astype(float)
        X[:, 1] = 0.0
        X[:10, 1] = 2.0
        y[:10] = 1.0
    with pytest.raises(rif.SeparationError, match=r"separable.*feature\(s\) \[.*1") as info:
        rif.GLMProblem(X, y, "binomial")
    assert isinstance(info.value, rif.SingularHessianError)
    # penalised, the same data are fine
    assert np.all(np.isfinite(rif.GLMProblem(X, y, "binomial", penalty=1.0).leverage))


def test_overlapping_unpenalised_logistic_is_not_called_separated():
    X, y, _ = synthetic("binomial", n=200, d=3, seed=15)
    prob = rif.GLMProblem(X, y, "binomial")
    assert np.all(np.isfinite(prob.leverage))


# -- 11. effect validates before refitting ---------------------------------------------------------
def test_effect_checks_its_target_before_any_refit(monkeypatch):
    from rif import _estimators

    def no_refits(*args, **kwargs):
        raise AssertionError("a refit ran before the arguments were checked")

    monkeypatch.setattr(_estimators, "params_change_batch", no_refits)
    prob = rif.GLMProblem(*synthetic("binomial", seed=16)[:2], "binomial", penalty=1.0)
    for kwargs in ({"target": "los"}, {"target": "loss"}, {"target": "loss", "X": np.ones((2, 4))},
                   {"target": "loss", "X": np.ones((2, 3)), "y": [0, 1]}, {"target": "proba", "linear": "no"},
                   {"target": lambda t: t.sum(), "linear": True}):
        with pytest.raises((ValueError, TypeError)):
            prob.effect([[0, 1], [2, 3]], method="retrain", **kwargs)


# -- newcomer items ------------------------------------------------------------------------------------
def test_logistic_regression_cv_is_audited_at_its_chosen_c():
    X, y, _, _ = _scaled_logistic(17, n=120)
    X = StandardScaler().fit_transform(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        aud = rif.InfluenceAuditor(LogisticRegressionCV(Cs=4, solver="newton-cholesky", tol=1e-12)).fit(X, y)
    C = float(np.ravel(aud.estimator_.C_)[0])
    keep = np.setdiff1d(np.arange(len(y)), [3, 4])
    ref = LogisticRegression(C=C, solver="newton-cholesky", tol=1e-12).fit(X[keep], y[keep])
    np.testing.assert_allclose(aud.problem_.theta + aud.params_change([3, 4], "retrain"),
                               np.append(ref.coef_.ravel(), ref.intercept_), rtol=1e-6, atol=1e-8)


def test_ridge_cv_is_audited_at_its_chosen_alpha():
    X, y, _ = synthetic("gaussian", n=50, seed=18)
    aud = rif.InfluenceAuditor(RidgeCV(alphas=[0.1, 1.0, 10.0])).fit(X, y)
    keep = np.setdiff1d(np.arange(len(y)), [0, 7])
    ref = Ridge(alpha=aud.estimator_.alpha_).fit(X[keep], y[keep])
    np.testing.assert_allclose(aud.problem_.theta + aud.params_change([0, 7], "newton"),
                               np.append(ref.coef_, ref.intercept_), rtol=1e-8)


def test_unsupported_settings_are_refused_before_any_fit(monkeypatch):
    calls = []
    monkeypatch.setattr(LogisticRegressionCV, "fit", lambda self, *a, **k: calls.append(1))
    X, y, _, _ = _scaled_logistic(19)
    for est in (LogisticRegressionCV(refit=False), LogisticRegression(solver="liblinear"),
                LogisticRegression(class_weight="balanced")):
        with pytest.raises(rif.UnsupportedEstimatorError):
            rif.InfluenceAuditor(est).fit(X, y)
    assert not calls


def test_row_labels_of_a_dataframe_index_select_rows():
    X, y, X_te, y_te = _scaled_logistic(20)
    frame = pd.DataFrame(X, index=[f"row_{i}" for i in range(len(y))])
    aud = rif.InfluenceAuditor(LogisticRegression()).fit(frame, y)
    np.testing.assert_array_equal(aud.params_change(["row_17", "row_3"]), aud.params_change([17, 3]))
    np.testing.assert_array_equal(aud.params_change([["row_1"], ["row_2", "row_4"]]),
                                  aud.params_change([[1], [2, 4]]))
    with pytest.raises(ValueError, match="row_999"):
        aud.params_change(["row_999"])


def test_demo_header_shows_the_c_it_ran_with_and_refuses_bad_c(capsys):
    from rif.cli import main

    for bad in ("0", "inf", "-1", "nan"):
        with pytest.raises(SystemExit):
            main(["demo", "--C", bad])
        assert "--C" in capsys.readouterr().err


def test_a_wrapped_pipeline_names_coefficients_by_the_transformed_features():
    """Names of raw columns must never label coefficients of transformed ones."""
    from sklearn.compose import make_column_transformer
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(22)
    frame = pd.DataFrame({"x": rng.normal(size=120), "city": rng.choice(["a", "b", "c"], size=120)},
                         index=[f"r{i}" for i in range(120)])
    y = (frame["x"] + (frame["city"] == "b") + rng.normal(size=120) > 0.5).astype(int)
    pre = make_column_transformer((OneHotEncoder(drop="first"), ["city"]), (StandardScaler(), ["x"]))
    aud = rif.InfluenceAuditor(make_pipeline(pre, LogisticRegression())).fit(frame, y)
    names = list(aud.estimator_[:-1].get_feature_names_out())
    table = aud.influence_table()
    assert [f"dfb_{n}" for n in names] == [c for c in table.columns if c.startswith("dfb_")][:len(names)]
    assert list(table.index[:3]) == ["r0", "r1", "r2"]
    res = aud.robustness(("coef", names[-1]), method="rif")
    assert res.value == pytest.approx(aud.problem_.theta[len(names) - 1])
