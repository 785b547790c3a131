"""Robustness audits (rif._robustness): targets, standard errors, methods against brute force."""

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LinearRegression, LogisticRegression

import rif
from rif import _robustness as R


def small_problem(family, seed, n=18, d=2, penalty=0.5):
    """Tiny problems with a weak first coefficient, so that small sets can flip it."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    beta = np.r_[0.6, rng.normal(scale=0.5, size=d - 1)]
    eta = X @ beta + 0.2
    if family == "binomial":
        y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float)
        y[:2] = [0, 1]
    elif family == "poisson":
        y = rng.poisson(np.exp(0.5 * eta)).astype(float)
    else:
        y = eta + rng.normal(scale=1.0, size=n)
    return rif.GLMProblem(X, y, family, penalty=penalty)


def target_after(problem, target, index):
    """The target at an exact refit without ``index``, by rif's retrain."""
    theta = problem.theta + problem.params_change(index, method="retrain")
    w = problem.sample_weight.copy()
    w[index] = 0.0
    return target.value(problem, theta, w)


# -- standard errors against statsmodels ---------------------------------------------------
@pytest.mark.parametrize("family, sm_family", [("binomial", sm.families.Binomial()),
                                               ("poisson", sm.families.Poisson()),
                                               ("gaussian", sm.families.Gaussian())])
@pytest.mark.parametrize("se, cov_type", [("model", "nonrobust"), ("hc0", "HC0")])
def test_standard_errors_match_statsmodels(family, sm_family, se, cov_type):
    from conftest import synthetic

    X, y, _ = synthetic(family, n=80, d=3, seed=3)
    prob = rif.GLMProblem(X, y, family)
    fit = sm.GLM(y, np.column_stack([X, np.ones(len(y))]), family=sm_family).fit(cov_type=cov_type)
    for j in range(prob.n_params):
        ours = R.standard_error(prob, prob.theta, prob.sample_weight, j, se)
        assert ours == pytest.approx(fit.bse[j], rel=1e-6)
    z = R.make_target(prob, ("z", 1), se).value(prob, prob.theta, prob.sample_weight)
    assert z == pytest.approx(fit.tvalues[1], rel=1e-6)


@pytest.mark.parametrize("family", ["binomial", "poisson", "gaussian"])
def test_weighted_standard_errors_are_those_of_repeated_rows(family):
    from conftest import synthetic

    X, y, _ = synthetic(family, n=50, d=2, seed=4)
    w = np.random.default_rng(0).integers(1, 4, size=50).astype(float)
    prob = rif.GLMProblem(X, y, family, sample_weight=w)
    reps = w.astype(int)
    twin = rif.GLMProblem(np.repeat(X, reps, axis=0), np.repeat(y, reps), family)
    for se in ("model", "hc0"):
        for j in range(prob.n_params):
            assert R.standard_error(prob, prob.theta, prob.sample_weight, j, se) == pytest.approx(
                R.standard_error(twin, twin.theta, twin.sample_weight, j, se), rel=1e-7)


def test_model_se_matches_ols_after_removal():
    """The z-statistic at a removal set is OLS's t on the remaining rows (a refit by statsmodels)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 2))
    y = X @ [0.5, -0.2] + rng.normal(size=30)
    prob = rif.GLMProblem(X, y, "gaussian")
    tgt = R.make_target(prob, ("z", 0))
    drop = np.array([2, 7, 11])
    keep = np.setdiff1d(np.arange(30), drop)
    ols = sm.OLS(y[keep], np.column_stack([X[keep], np.ones(keep.size)])).fit()
    assert target_after(prob, tgt, drop) == pytest.approx(ols.tvalues[0], rel=1e-8)


# -- methods against brute force on tiny problems -------------------------------------------
CASES = [(fam, seed) for fam in ("gaussian", "binomial", "poisson") for seed in range(4)]


@pytest.fixture(scope="module")
def brute_results():
    out = []
    for fam, seed in CASES:
        prob = small_problem(fam, seed)
        size, best = R.brute_force(prob, ("coef", 0), max_size=3)
        found = {m: prob.robustness(("coef", 0), method=m, max_fraction=0.5) for m in R.ROBUSTNESS_METHODS}
        out.append((fam, seed, prob, size, best, found))
    return out


def test_brute_force_set_flips_and_smaller_ones_do_not(brute_results):
    fam, seed, prob, size, best, _ = next(r for r in brute_results if r[3] is not None and r[3] >= 2)
    tgt = R.make_target(prob, ("coef", 0))
    sign = np.sign(prob.theta[0])
    assert np.sign(target_after(prob, tgt, np.array(best))) == -sign
    for i in best:                                    # no single member (a smaller set) flips it
        assert np.sign(target_after(prob, tgt, np.array([i]))) == sign


def test_every_verified_set_really_flips_and_is_not_below_the_minimum(brute_results):
    for fam, seed, prob, size, _, found in brute_results:
        for method, res in found.items():
            if not res.found:
                continue
            tgt = R.make_target(prob, ("coef", 0))
            after = target_after(prob, tgt, res.indices)
            assert res.refit_value == pytest.approx(after, abs=1e-9)
            assert res.verified == (np.sign(after) != np.sign(prob.theta[0]))
            if res.verified:
                # a verified flip smaller than the enumerated minimum would contradict the enumeration
                assert res.n_units >= (size if size is not None else 4), (fam, seed, method)


def test_greedy_is_within_one_of_the_brute_force_minimum(brute_results):
    solvable = [r for r in brute_results if r[3] is not None]
    assert len(solvable) >= 6
    close = [r[5]["greedy"].verified and r[5]["greedy"].n_units <= r[3] + 1 for r in solvable]
    assert np.mean(close) >= 0.9, [(r[0], r[1], r[3], r[5]["greedy"].n_units) for r in solvable]
    for r in brute_results:                        # greedy always verifies a flip here
        assert r[5]["greedy"].verified


def test_greedy_needs_no_more_rows_than_one_sort(brute_results):
    """The published AMIP picture: re-ranking at exact refits never needs more rows than one sort."""
    for fam, seed, _, _, _, found in brute_results:
        for method in ("if", "rif"):
            if found[method].verified:
                assert found["greedy"].n_units <= found[method].n_units, (fam, seed, method)


def test_one_shot_prediction_is_the_summed_influence():
    prob = small_problem("binomial", 0)
    for method in ("if", "rif"):
        res = prob.robustness(("coef", 0), method=method, max_fraction=0.5)
        assert res.found
        predicted = prob.theta[0] + prob.params_change(res.indices, method=method)[0]
        assert res.predicted_value == pytest.approx(predicted, rel=1e-10)
        assert res.refit_value == pytest.approx(res.theta[0], rel=1e-12)


def test_unverified_prediction_is_reported():
    """Gaussian seed 5: the two best RIF rows are predicted to flip the sign; the refit does not."""
    prob = small_problem("gaussian", 5)
    res = prob.robustness(("coef", 0), method="rif", max_fraction=0.5)
    assert res.found and not res.verified
    assert np.sign(res.predicted_value) != np.sign(res.value)
    assert np.sign(res.refit_value) == np.sign(res.value)
    assert "NOT verified" in res.summary()


# -- targets ------------------------------------------------------------------------------
def test_significance_goal_loses_significance():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 2))
    y = X @ [0.35, 0.0] + rng.normal(size=60)
    prob = rif.GLMProblem(X, y, "gaussian")
    for se in ("model", "hc0"):
        res = prob.robustness(("coef", 0), goal="significance", se=se, max_fraction=0.3)
        keep = np.setdiff1d(np.arange(60), res.indices)
        ols = sm.OLS(y[keep], np.column_stack([X[keep], np.ones(keep.size)])).fit(
            cov_type="nonrobust" if se == "model" else "HC0")
        assert res.verified and abs(res.value) > 1.96
        assert res.refit_value == pytest.approx(ols.tvalues[0], rel=1e-7)
        assert abs(ols.tvalues[0]) < 1.959963984540054


def test_threshold_combination_and_decision_targets():
    prob = small_problem("binomial", 2, n=40, d=3)
    c = np.array([1.0, -1.0, 0.5])
    res = prob.robustness(("combination", c), threshold=float(c @ prob.theta[:3]) - 0.3, max_fraction=0.5)
    assert res.verified and res.goal == "threshold"
    assert res.refit_value == pytest.approx(c @ res.theta[:3])
    assert res.refit_value < res.threshold
    x = np.array([0.3, -1.0, 0.2])
    res = prob.robustness(("decision", x), max_fraction=0.5)
    assert res.value == pytest.approx(x @ prob.theta[:3] + prob.theta[3])
    assert res.verified and np.sign(res.refit_value) != np.sign(res.value)


@pytest.mark.parametrize("family, seed", [("binomial", 2), ("gaussian", 2), ("poisson", 4)])
def test_groups_remove_whole_groups_and_match_brute_force(family, seed):
    prob = small_problem(family, seed, n=24)
    groups = np.repeat(np.arange(8), 3)
    size, best = R.brute_force(prob, ("coef", 0), groups=groups, max_size=3)
    for method in ("greedy", "rif", "if"):
        res = prob.robustness(("coef", 0), groups=groups, method=method, max_fraction=0.5)
        if not res.found:
            continue
        assert res.unit_kind == "groups"
        np.testing.assert_array_equal(res.indices, np.flatnonzero(np.isin(groups, res.units)))
        if res.verified:
            assert res.n_units >= (size or 4)
    res = prob.robustness(("coef", 0), groups=groups, max_fraction=0.5)
    assert res.verified and size is not None and res.n_units <= size + 1


def test_auditor_names_coefficients_and_rows():
    rng = np.random.default_rng(4)
    X = pd.DataFrame(rng.normal(size=(50, 2)), columns=["ruggedness", "distance"],
                     index=[f"country{i}" for i in range(50)])
    y = X["ruggedness"] * 0.2 + rng.normal(size=50)
    aud = rif.InfluenceAuditor(LinearRegression()).fit(X, y)
    res = aud.robustness(("coef", "ruggedness"), max_fraction=0.3)
    assert res.target == "coef[ruggedness]" and res.verified
    np.testing.assert_array_equal(res.row_labels, X.index.to_numpy()[res.indices])
    keep = np.setdiff1d(np.arange(50), res.indices)
    refit = LinearRegression().fit(X.iloc[keep], y.iloc[keep])
    assert refit.coef_[0] == pytest.approx(res.refit_value, rel=1e-8)
    with pytest.raises(ValueError, match="unknown coefficient name"):
        aud.robustness(("coef", "nope"))


def test_logistic_auditor_flip_verified_by_scikit_learn():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(80, 3))
    y = (rng.random(80) < 1 / (1 + np.exp(-(0.4 * X[:, 0] + X[:, 1])))).astype(int)
    aud = rif.InfluenceAuditor(LogisticRegression(C=2.0)).fit(X, y)
    res = aud.robustness(("coef", 0), max_fraction=0.3)
    keep = np.setdiff1d(np.arange(80), res.indices)
    refit = LogisticRegression(C=2.0, tol=1e-12, max_iter=10_000).fit(X[keep], y[keep])
    assert res.verified
    assert refit.coef_[0, 0] == pytest.approx(res.refit_value, abs=1e-6)
    assert np.sign(refit.coef_[0, 0]) != np.sign(aud.estimator_.coef_[0, 0])


def test_per_step_and_rank_options():
    prob = small_problem("poisson", 3, n=40)
    base = prob.robustness(("coef", 0), max_fraction=0.5)
    for kwargs in ({"per_step": 3}, {"rank": "if"}, {"rank": "newton"}):
        res = prob.robustness(("coef", 0), max_fraction=0.5, **kwargs)
        assert res.verified
        assert res.n_units <= base.n_units + 3


def test_nothing_found_within_the_allowed_fraction():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 1))
    y = 3 * X[:, 0] + 0.1 * rng.normal(size=40)
    res = rif.GLMProblem(X, y, "gaussian").robustness(("coef", 0), max_fraction=0.05)
    assert not res.found and not res.verified and res.indices.size == 0
    assert "found no removal set" in res.summary()


def test_inputs_are_validated_and_not_modified():
    prob = small_problem("binomial", 0)
    theta = prob.theta.copy()
    for bad, err in [(dict(target=("coef", 9)), ValueError), (dict(target=("coef", 1.5)), TypeError),
                     (dict(target="coef"), TypeError), (dict(target=("beta", 0)), ValueError),
                     (dict(target=("combination", [1.0])), ValueError),
                     (dict(target=("decision", [1.0])), ValueError),
                     (dict(target=("coef", 0), method="lp"), ValueError),
                     (dict(target=("coef", 0), goal="flip"), ValueError),
                     (dict(target=("coef", 0), goal="threshold"), ValueError),
                     (dict(target=("coef", 0), goal="significance", threshold=1.0), ValueError),
                     (dict(target=("combination", [1.0, 0.0]), goal="significance"), ValueError),
                     (dict(target=("coef", 0), se="hc3"), ValueError),
                     (dict(target=("coef", 0), max_fraction=0.0), ValueError),
                     (dict(target=("coef", 0), per_step=0), ValueError),
                     (dict(target=("coef", 0), rank="lp"), ValueError),
                     (dict(target=("coef", 0), groups=np.zeros(5)), ValueError),
                     (dict(target=("coef", 0), groups=np.zeros(18)), ValueError)]:
        with pytest.raises(err):
            prob.robustness(**bad)
    with pytest.raises(ValueError, match="not significant"):
        prob.robustness(("coef", 0), goal="significance", alpha=1e-9)
    np.testing.assert_array_equal(prob.theta, theta)


@pytest.mark.parametrize("rank", ["newton", "rif"])       # NaN score / a refit that fails
def test_group_whose_removal_leaves_a_singular_hessian_is_never_chosen(rank):
    """Unpenalised OLS where one group holds the only rows with x1 != 0: its leave-out Hessian is singular."""
    rng = np.random.default_rng(3)
    X = np.column_stack([rng.normal(size=30), np.r_[rng.normal(size=3), np.zeros(27)]])
    y = 0.1 * X[:, 0] + X[:, 1] + rng.normal(size=30)
    groups = np.r_[np.zeros(3), np.repeat(np.arange(1, 10), 3)]
    prob = rif.GLMProblem(X, y, "gaussian")
    res = prob.robustness(("coef", 0), groups=groups, max_fraction=0.9, rank=rank)
    assert res.verified and 0 not in res.units
    assert np.sign(res.refit_value) != np.sign(res.value)


def test_a_set_that_makes_the_classes_separable_is_never_a_verified_flip():
    """Unpenalised logistic: dropping the two overlapping rows leaves no finite optimum."""
    x = np.r_[np.linspace(-3, -0.5, 10), np.linspace(0.5, 3, 10), [0.2, -0.2]]
    y = np.r_[np.zeros(10), np.ones(10), [0.0, 1.0]]
    prob = rif.GLMProblem(x[:, None], y, "binomial")
    target = 3 * prob.theta[0]
    for method in ("greedy", "rif", "if"):
        res = prob.robustness(("coef", 0), threshold=target, method=method, max_fraction=0.5)
        if res.verified:
            assert not set(res.indices) >= {20, 21}
            assert np.isfinite(res.refit_value) and res.refit_value > target
        else:
            assert not (res.found and np.isfinite(res.refit_value) and res.refit_value > target)


@given(seed=st.integers(0, 10_000), family=st.sampled_from(["gaussian", "binomial", "poisson"]))
@settings(max_examples=10)
def test_property_greedy_sets_verify_and_respect_the_enumerated_minimum(seed, family):
    """Greedy stops only on an exact refit that flips, so every set it proposes verifies, and
    no verified set can be smaller than the smallest one found by enumeration."""
    prob = small_problem(family, seed, n=12)
    size, _ = R.brute_force(prob, ("coef", 0), max_size=2)
    for method in R.ROBUSTNESS_METHODS:
        res = prob.robustness(("coef", 0), method=method, max_fraction=0.5)
        if method == "greedy":
            assert res.found == res.verified
        if res.verified:
            assert res.n_units >= (size if size is not None else 3)
            assert np.sign(res.refit_value) != np.sign(res.value)
