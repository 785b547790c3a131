"""effect(..., dtheta=...): targets evaluated on parameter changes the caller already has."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import rif
from conftest import make_problem, synthetic

TARGETS = ("params", "decision", "proba", "loss", "test_loss", "self_loss", "train_loss")


@pytest.fixture(scope="module")
def problem():
    return make_problem("binomial", n=80, d=5, seed=3, penalty=0.05, scaling="per_sample", intercept=False)


@pytest.fixture(scope="module")
def evaluation():
    X, y, _ = synthetic("binomial", n=15, d=5, seed=4)
    return X, y


SETS = [np.array([0, 5, 9]), np.arange(10, 22), np.array([40])]


@pytest.mark.parametrize("method", ["if", "rif", "newton", "retrain"])
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("linear", [False, True])
def test_batch_equals_estimator(problem, evaluation, method, target, linear):
    X, y = evaluation
    # target="params" returns dtheta itself, which is its own linearisation: linear=True changes nothing
    dtheta = problem.params_change(SETS, method=method)
    direct = problem.effect(SETS, target=target, X=X, y=y, method=method, linear=linear)
    given = problem.effect(SETS, target=target, X=X, y=y, dtheta=dtheta, linear=linear)
    np.testing.assert_allclose(given, direct, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("target", ["proba", "train_loss", "self_loss"])
def test_single_set_returns_float(problem, evaluation, target):
    X, y = evaluation
    dtheta = problem.params_change(SETS[1], method="retrain")
    given = problem.effect(SETS[1], target=target, X=X, y=y, dtheta=dtheta)
    assert isinstance(given, float)
    assert given == pytest.approx(problem.effect(SETS[1], target=target, X=X, y=y, method="retrain"),
                                  rel=1e-12, abs=1e-14)


def test_dtheta_skips_the_estimator(problem, evaluation, monkeypatch):
    """With dtheta nothing is estimated or refitted, and method is ignored (even an invalid one)."""
    X, y = evaluation
    dtheta = problem.params_change(SETS, method="rif")
    calls = []
    monkeypatch.setattr(type(problem), "_batch", lambda *a, **k: calls.append(a) or 1 / 0)
    out = problem.effect(SETS, target="loss", X=X, y=y, dtheta=dtheta, method="not-a-method")
    assert calls == [] and out.shape == (3,)


def test_callable_target_and_arbitrary_dtheta(problem):
    """A user's dtheta (not from any estimator) is evaluated as f(theta^ + dtheta) - f(theta^)."""
    rng = np.random.default_rng(0)
    dtheta = rng.normal(size=(3, problem.n_params))
    f = lambda t: float(np.sum(t ** 2))   # noqa: E731
    out = problem.effect(SETS, target=f, dtheta=dtheta)
    np.testing.assert_allclose(out, [f(problem.theta + d) - f(problem.theta) for d in dtheta], rtol=1e-12)


def test_params_target_returns_a_copy(problem):
    dtheta = np.ones((3, problem.n_params))
    out = problem.effect(SETS, target="params", dtheta=dtheta)
    out[:] = 7
    assert np.all(dtheta == 1)


def test_auditor_accepts_dtheta():
    X, y, _ = synthetic("binomial", n=60, d=3, seed=5)
    aud = rif.InfluenceAuditor(LogisticRegression(C=0.5)).fit(X, y)
    sets = [[0, 1, 2], [10, 11]]
    dtheta = aud.params_change(sets, method="newton")
    np.testing.assert_allclose(aud.effect(sets, target="loss", X=X, y=y, dtheta=dtheta),
                               aud.effect(sets, target="loss", X=X, y=y, method="newton"), rtol=1e-12)


@pytest.mark.parametrize("bad, remove, error, match", [
    (np.zeros(5), SETS, ValueError, r"shape \(3, 5\)"),             # one row for a batch
    (np.zeros((3, 4)), SETS, ValueError, r"shape \(3, 5\)"),        # wrong p
    (np.zeros((2, 5)), SETS, ValueError, r"shape \(3, 5\)"),        # wrong number of sets
    (np.zeros((1, 5)), SETS[0], ValueError, r"shape \(5,\)"),       # a batch row for one set
    (np.full(5, np.nan), SETS[0], ValueError, "finite"),
    (np.array(["a"] * 5), SETS[0], TypeError, "numeric"),
])
def test_bad_dtheta(problem, bad, remove, error, match):
    with pytest.raises(error, match=match):
        problem.effect(remove, target="train_loss", dtheta=bad)


def test_dtheta_not_modified(problem, evaluation):
    X, y = evaluation
    dtheta = problem.params_change(SETS, method="if")
    before = dtheta.copy()
    problem.effect(SETS, target="loss", X=X, y=y, dtheta=dtheta)
    np.testing.assert_array_equal(dtheta, before)
