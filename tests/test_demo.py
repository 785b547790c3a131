"""The demo runs end to end and its numbers are what they claim to be."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from rif._demo import print_demo, run_demo
from rif.cli import main


@pytest.fixture(scope="module")
def result():
    return run_demo(seed=0)


def test_demo_table_covers_every_fraction_and_set(result):
    assert [(r["fraction"], r["set"]) for r in result["rows"]] == [
        (f, s) for f in (0.01, 0.02, 0.05, 0.10) for s in ("random", "most influential")]
    assert len(result["points"]) == 10


def test_demo_retrain_column_is_a_real_refit(result):
    aud = result["auditor"]
    i = result["points"][0]["index"]
    keep = np.setdiff1d(np.arange(result["n_train"]), [i])
    prob = aud.problem_
    refit = LogisticRegression(C=1.0, solver="newton-cholesky", tol=1e-12).fit(prob.X[keep], prob.y[keep])
    theta = np.append(refit.coef_.ravel(), refit.intercept_)
    np.testing.assert_allclose(prob.theta + aud.params_change([i], "retrain"), theta, rtol=1e-6, atol=1e-9)


def test_demo_most_influential_sets_raise_the_test_loss(result):
    for row in result["rows"]:
        if row["set"] == "most influential":
            assert row["retrain"] > 0


def test_demo_rif_bounds_hold_against_the_refits(result):
    """Each printed RIF bound is at least RIF's error against the exact refit; the random sets,
    where RIF is accurate, get one."""
    bounded = [row for row in result["rows"] if row["rif_bound"] is not None]
    assert {row["set"] for row in bounded} >= {"random"}
    for row in bounded:
        assert row["rif_bound"] >= abs(row["rif"] - row["retrain"]) * (1 - 1e-9)


def test_cli_prints_the_tables(capsys, result):
    lines = []
    print_demo(result, out=lines.append)
    text = "\n".join(lines)
    assert "most influential" in text and "Worst-predicted test point" in text
    assert main(["demo"]) == 0
    assert "retrain" in capsys.readouterr().out
