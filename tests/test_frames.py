"""Labelled outputs (as_frame=True) and top_influential: the same numbers, labelled."""

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression, Ridge

import rif


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(40, 2)), columns=["age", "dose"], index=[f"p{i}" for i in range(40)])
    y = (X["age"] + rng.normal(size=40) > 0).astype(int)
    return rif.InfluenceAuditor(LogisticRegression()).fit(X, y), X, y


def test_frames_hold_the_array_results(fitted):
    aud, X, y = fitted
    s = aud.params_change([0, 3], as_frame=True)
    assert list(s.index) == ["age", "dose", "intercept"]
    np.testing.assert_array_equal(s.to_numpy(), aud.params_change([0, 3]))
    batch = aud.params_change([[0], [1, 2]], method="newton", as_frame=True)
    np.testing.assert_array_equal(batch.to_numpy(), aud.params_change([[0], [1, 2]], method="newton"))
    loo = aud.loo_params_change(as_frame=True)
    assert list(loo.index) == list(X.index) and list(loo.columns) == ["age", "dose", "intercept"]
    np.testing.assert_array_equal(loo.to_numpy(), aud.loo_params_change())
    si = aud.self_influence(method="if", as_frame=True)
    assert list(si.index) == list(X.index)
    np.testing.assert_array_equal(si.to_numpy(), aud.self_influence(method="if"))
    sc = aud.scores(X.iloc[5:8], y.iloc[5:8], as_frame=True)
    assert list(sc.columns) == ["p5", "p6", "p7"] and list(sc.index) == list(X.index)
    np.testing.assert_array_equal(sc.to_numpy(), aud.scores(X.iloc[5:8], y.iloc[5:8]))
    assert isinstance(aud.self_influence(), np.ndarray)          # NumPy stays the default


def test_arrays_get_positional_labels():
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(30, 2)), rng.normal(size=30)
    aud = rif.InfluenceAuditor(Ridge(alpha=1.0)).fit(X, y)
    assert list(aud.params_change([1], as_frame=True).index) == ["x0", "x1", "intercept"]
    assert list(aud.self_influence(as_frame=True).index) == list(range(30))
    prob = rif.GLMProblem(X, y, "gaussian", fit_intercept=False)
    assert list(prob.loo_params_change(as_frame=True).columns) == ["x0", "x1"]


def test_top_influential(fitted):
    aud, X, y = fitted
    table = aud.top_influential(X.iloc[:4], y.iloc[:4], k=5)
    assert len(table) == 20 and list(table["eval"].unique()) == ["p0", "p1", "p2", "p3"]
    effects = aud.scores(X.iloc[:4], y.iloc[:4], target="proba")
    for j, (label, part) in enumerate(table.groupby("eval", sort=False)):
        expected = np.argsort(-np.abs(effects[:, j]), kind="stable")[:5]
        np.testing.assert_array_equal(part["train_position"], expected)
        np.testing.assert_array_equal(part["train"], X.index.to_numpy()[expected])
        np.testing.assert_allclose(part["effect"], effects[expected, j])
        assert list(part["rank"]) == [1, 2, 3, 4, 5]
    decision = aud.top_influential(X.iloc[:2], k=3)               # no labels: the decision value
    np.testing.assert_allclose(decision["effect"].iloc[0],
                               aud.effect([decision["train_position"].iloc[0]], "decision", X.iloc[:1]))
    with pytest.raises(ValueError, match="k must"):
        aud.top_influential(X.iloc[:2], k=0)
