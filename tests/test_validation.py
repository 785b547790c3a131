"""Bad input gets a clear, typed error or warning, and the caller's arrays are never touched."""

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression, PoissonRegressor, Ridge

import rif
from conftest import synthetic


@pytest.fixture(scope="module")
def aud():
    X, y, _ = synthetic("binomial", n=40, seed=31)
    return rif.InfluenceAuditor(LogisticRegression()).fit(X, y), X, y


@pytest.mark.parametrize("where", ["X", "y", "sample_weight"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_input_is_refused(where, bad):
    X, y, _ = synthetic("gaussian", n=30, seed=32)
    w = np.ones(30)
    {"X": X[3], "y": y, "sample_weight": w}[where][3] = bad
    with pytest.raises(ValueError, match="NaN|inf"):
        rif.GLMProblem(X, y, "gaussian", sample_weight=w)
    with pytest.raises(ValueError, match="NaN|inf"):
        rif.InfluenceAuditor(Ridge()).fit(X, y, sample_weight=w)


def test_shape_mismatches_are_named():
    X, y, _ = synthetic("gaussian", n=30, seed=33)
    with pytest.raises(ValueError, match=r"y must have shape \(30,\)"):
        rif.GLMProblem(X, y[:-1], "gaussian")
    with pytest.raises(ValueError, match="2-D"):
        rif.GLMProblem(X[:, 0], y, "gaussian")
    with pytest.raises(ValueError, match="theta must have shape"):
        rif.GLMProblem(X, y, "gaussian", theta=np.zeros(2))
    with pytest.raises(TypeError, match="numeric"):
        rif.GLMProblem(X.astype(str), y, "gaussian")
    aud = rif.InfluenceAuditor(Ridge()).fit(X, y)
    with pytest.raises(ValueError, match="features"):
        aud.scores(X[:, :2], y)
    with pytest.raises(ValueError, match=r"y must have shape \(30,\)"):
        aud.effect([0], target="loss", X=X, y=y[:5])
    with pytest.raises(ValueError, match="needs labels"):
        aud.effect([0], target="loss", X=X)
    with pytest.raises(ValueError, match="evaluation data"):
        aud.effect([0], target="decision")


def test_family_targets_are_checked():
    X, _, _ = synthetic("gaussian", n=30, seed=34)
    with pytest.raises(ValueError, match="binary"):
        rif.GLMProblem(X, np.arange(30) % 3, "binomial")
    with pytest.raises(ValueError, match="one class"):
        rif.GLMProblem(X, np.ones(30), "binomial", penalty=1.0)
    with pytest.raises(ValueError, match="non-negative counts"):
        rif.GLMProblem(X, np.arange(30) - 3.0, "poisson")
    with pytest.raises(ValueError, match="non-negative"):
        rif.GLMProblem(X, np.ones(30), "gaussian", sample_weight=-np.ones(30))
    with pytest.raises(ValueError, match="unknown family"):
        rif.GLMProblem(X, np.ones(30), "gamma")
    with pytest.raises(ValueError, match="Only binary and multiclass classification"):
        rif.InfluenceAuditor(LogisticRegression()).fit(X, np.linspace(0.1, 3.0, 30))   # continuous
    with pytest.raises(ValueError, match="class indices"):
        rif.GLMProblem(X, (np.arange(30) % 3) + 0.5, "multinomial", penalty=1.0)
    with pytest.raises(ValueError):
        rif.InfluenceAuditor(PoissonRegressor()).fit(X, np.arange(30) - 3.0)


@pytest.mark.parametrize("remove,error,match", [
    ([1, 1, 2], ValueError, "duplicate"),
    ([3, 1, 3], ValueError, "duplicate"),                 # unsorted sets are checked as sorted ones
    ([5, 40, 2], ValueError, r"\[0, 40\); got min 2, max 40"),
    ([2, -1, 5], ValueError, r"got min -1, max 5"),
    ([0, 40], ValueError, r"\[0, 40\)"),
    ([-1], ValueError, r"\[0, 40\)"),
    ([], ValueError, "empty"),
    ([0.0, 1.0], TypeError, "integers"),
    (np.ones(39, bool), ValueError, "mask"),
    (np.zeros(40, bool), ValueError, "empty"),
    ([[1, 2], [3, 3]], ValueError, r"duplicate.*set 1"),
])
def test_bad_removal_sets(aud, remove, error, match):
    auditor, _, _ = aud
    with pytest.raises(error, match=match):
        auditor.params_change(remove)


def test_removing_a_whole_class_or_everything_is_refused(aud):
    auditor, _, y = aud
    with pytest.raises(ValueError, match="every sample of class"):
        auditor.params_change(np.flatnonzero(y == 1), method="if")
    with pytest.raises(ValueError, match="every"):
        auditor.params_change(np.arange(40))


def test_unknown_method_and_target(aud):
    auditor, X, y = aud
    with pytest.raises(ValueError, match="method must be one of"):
        auditor.params_change([0], method="exact")
    with pytest.raises(ValueError, match="target must be one of"):
        auditor.effect([0], target="accuracy", X=X, y=y)
    with pytest.raises(ValueError, match="per-sample scores support"):
        auditor.scores(X, y, target="self_loss")
    with pytest.raises(ValueError, match="gradient"):
        auditor.effect([0], target=lambda th: th.sum(), linear=True)
    with pytest.raises(ValueError, match="one removal set"):
        auditor.unlearn([[0], [1]])


def test_proba_target_needs_a_classifier():
    X, y, _ = synthetic("gaussian", n=30, seed=35)
    aud = rif.InfluenceAuditor(Ridge()).fit(X, y)
    with pytest.raises(ValueError, match="classifier"):
        aud.effect([0], target="proba", X=X, y=y)


def test_singular_hessian_is_refused():
    rng = np.random.default_rng(36)
    X, y = rng.normal(size=(5, 8)), rng.normal(size=5)
    # fitted as scikit-learn fits it, with a warning; attribution is refused
    with pytest.warns(UserWarning, match="Hessian is singular"):
        aud = rif.InfluenceAuditor(LinearRegression()).fit(X, y)
    np.testing.assert_allclose(aud.predict(X), LinearRegression().fit(X, y).predict(X))
    for call in (lambda: aud.params_change([0]), lambda: aud.scores(X, y), lambda: aud.leverage_,
                 lambda: aud.self_influence(), lambda: aud.unlearn([0])):
        with pytest.raises(rif.SingularHessianError):
            call()
    with pytest.raises(rif.SingularHessianError):
        rif.GLMProblem(X, y, "gaussian")
    X = rng.normal(size=(40, 2))
    with pytest.raises(rif.SingularHessianError, match="separable"):
        rif.GLMProblem(X, (X[:, 0] > 0).astype(float), "binomial")  # separable, unpenalised
    # a collinear design: rank deficient although n > d
    X = rng.normal(size=(30, 3))
    X[:, 2] = X[:, 0] + X[:, 1]
    with pytest.raises(rif.SingularHessianError):
        rif.GLMProblem(X, rng.normal(size=30), "gaussian")


def test_removal_that_makes_the_hessian_singular_is_refused():
    """Unpenalised, 4 parameters: keeping only 3 samples leaves H_{-S} singular."""
    X, y, _ = synthetic("gaussian", n=8, d=3, seed=37)
    aud = rif.InfluenceAuditor(LinearRegression()).fit(X, y)
    for method in ("newton", "retrain"):
        with pytest.raises(rif.SingularHessianError):
            aud.params_change(np.arange(5), method=method)
    aud.params_change(np.arange(5), method="if")  # still defined: uses the full H


def test_leverage_one_is_flagged_not_returned():
    rng = np.random.default_rng(38)
    X = rng.normal(size=(30, 3))
    X[:, 2] = 0.0
    X[0, 2] = 1.0  # only sample 0 informs the third coefficient: h_0 = 1
    y = X[:, 0] + rng.normal(size=30)
    with pytest.warns(rif.LeverageWarning, match="leverage numerically 1"):
        aud = rif.InfluenceAuditor(LinearRegression()).fit(X, y)
    assert np.isinf(aud.rescale_factor_[0]) and np.all(np.isfinite(aud.rescale_factor_[1:]))
    with pytest.raises(rif.NearSingularLeverageError, match=r"sample\(s\) \[0\]"):
        aud.params_change([0, 4], method="rif")
    with pytest.raises(rif.SingularHessianError):
        aud.params_change([0, 4], method="newton")
    scores = aud.scores(X[:3], y[:3], method="rif")
    assert np.all(np.isnan(scores[0])) and np.all(np.isfinite(scores[1:]))
    assert np.isnan(aud.self_influence("rif")[0])


def test_callers_arrays_are_never_modified():
    X, y, w = synthetic("poisson", n=50, seed=39, weights=True)
    X_te, y_te, _ = synthetic("poisson", n=6, seed=40)
    copies = [a.copy() for a in (X, y, w, X_te, y_te)]
    remove = np.array([3, 1, 2])
    remove_copy = remove.copy()
    aud = rif.InfluenceAuditor(PoissonRegressor(alpha=0.1)).fit(X, y, sample_weight=w)
    for method in ("if", "rif", "newton", "retrain"):
        aud.effect(remove, target="loss", X=X_te, y=y_te, method=method)
        aud.scores(X_te, y_te, method=method)
    aud.self_influence()
    aud.unlearn(remove)
    for before, after in zip(copies + [remove_copy], (X, y, w, X_te, y_te, remove)):
        np.testing.assert_array_equal(before, after)
    assert not aud.problem_.theta.flags.writeable


def test_given_theta_is_not_frozen_or_modified():
    X, y, _ = synthetic("binomial", n=40, seed=41)
    theta = rif.GLMProblem(X, y, "binomial", penalty=1.0).theta.copy()
    given = theta.copy()
    prob = rif.GLMProblem(X, y, "binomial", given, penalty=1.0, refine=False)
    assert given.flags.writeable and not prob.theta.flags.writeable
    np.testing.assert_array_equal(given, theta)


def test_the_class_check_counts_only_positively_weighted_samples():
    X, y, _ = synthetic("binomial", n=40, seed=33)
    weights = np.ones(40)
    ones = np.flatnonzero(y == 1)
    weights[ones[:3]] = 0.0                       # these class-1 samples do not count
    problem = rif.GLMProblem(X, y, "binomial", penalty=1.0, sample_weight=weights)
    with pytest.raises(ValueError, match="every sample of class 1"):
        problem.params_change(ones[3:], "if")
    assert problem.params_change(ones[4:], "if").shape == (problem.n_params,)
    with pytest.raises(ValueError, match=r"every sample of class 0.*set 1"):
        problem.params_change([[0], np.flatnonzero(y == 0)], "if")
    with pytest.raises(ValueError, match="every"):
        problem.params_change(np.flatnonzero(weights > 0), "if")
