"""The four estimators against dense reference routes, and the theory as properties."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import naive
from conftest import CONFIGS, FAMILIES, make_problem
from rif._estimators import params_change_one


def change(prob, index, method):
    return params_change_one(prob, np.asarray(index, dtype=np.intp), method)


def assert_close(got, want, rtol):
    scale = max(np.max(np.abs(want)), 1e-300)
    assert np.max(np.abs(got - want)) <= rtol * scale, (got, want)


@pytest.mark.parametrize("family,scaling,intercept,weights", CONFIGS)
@pytest.mark.parametrize("k", [1, 3, 12])
def test_estimators_match_dense_routes(family, scaling, intercept, weights, k):
    prob = make_problem(family, n=40, d=5, scaling=scaling, intercept=intercept, weights=weights)
    index = np.arange(0, 3 * k, 3)
    assert_close(change(prob, index, "if"), naive.influence(prob, index), 1e-9)
    assert_close(change(prob, index, "newton"), naive.newton_step(prob, index), 1e-9)
    assert_close(change(prob, index, "rif"), naive.rescaled_influence(prob, index), 1e-9)


@pytest.mark.parametrize("family,scaling,intercept,weights", CONFIGS)
def test_retrain_reaches_the_leave_k_out_optimum(family, scaling, intercept, weights):
    prob = make_problem(family, n=40, d=5, scaling=scaling, intercept=intercept, weights=weights)
    index = np.array([1, 5, 9, 20])
    theta = prob.theta + change(prob, index, "retrain")
    grad, hess = naive.dense_gradient_hessian(prob, theta, naive.without(prob, index))
    # the Newton decrement ||grad||_{H^-1} bounds the distance to the optimum in the H-norm
    assert np.sqrt(grad @ np.linalg.solve(hess, grad)) < 1e-9


@pytest.mark.parametrize("family", FAMILIES)
def test_leverages_match_dense_hat_diagonal(family):
    prob = make_problem(family, n=50, d=6, weights=True)
    np.testing.assert_allclose(prob.leverage, naive.leverages(prob), rtol=1e-10, atol=1e-14)


# -- the theory, as properties -----------------------------------------------------------
scaling_st = st.sampled_from(["fixed", "per_sample"])


@st.composite
def problem_and_set(draw, family=None):
    fam = family or draw(st.sampled_from(FAMILIES))
    n = draw(st.integers(15, 40))
    d = draw(st.integers(1, 6))
    prob = make_problem(fam, n=n, d=d, seed=draw(st.integers(0, 10_000)),
                        weights=draw(st.booleans()), scaling=draw(scaling_st),
                        intercept=draw(st.booleans()), penalty=draw(st.floats(0.05, 5.0)))
    k = draw(st.integers(1, n // 3))
    index = draw(st.lists(st.integers(0, n - 1), min_size=k, max_size=k, unique=True))
    if fam == "binomial":  # keep both classes among the remaining samples
        keep = np.setdiff1d(np.arange(n), index)
        if np.unique(prob.y[keep]).size < 2:
            index = index[:1]
    return prob, np.array(index, dtype=np.intp)


@given(problem_and_set(family="gaussian"))
def test_squared_loss_newton_step_is_the_exact_refit(case):
    prob, index = case
    assert_close(change(prob, index, "newton"), change(prob, index, "retrain"), 1e-8)


@given(problem_and_set())
def test_rif_equals_newton_step_for_one_sample(case):
    prob, index = case
    assert_close(change(prob, index[:1], "rif"), change(prob, index[:1], "newton"), 1e-9)


@given(problem_and_set())
def test_leverages_in_unit_interval_and_rescale_at_least_one(case):
    prob, _ = case
    assert np.all(prob.leverage >= 0) and np.all(prob.leverage < 1)
    assert np.all(prob.rescale_factor >= 1)


@given(problem_and_set(), st.sampled_from(["if", "rif"]))
def test_if_and_rif_are_additive_over_disjoint_sets(case, method):
    prob, index = case
    if index.size < 2:
        return
    left, right = index[: index.size // 2], index[index.size // 2:]
    assert_close(change(prob, index, method), change(prob, left, method) + change(prob, right, method), 1e-10)


@given(problem_and_set())
def test_newton_step_matches_dense_solve_for_any_set(case):
    """Sets with k < p take the Woodbury path, larger ones the dense p x p solve."""
    prob, index = case
    assert_close(change(prob, index, "newton"), naive.newton_step(prob, index), 1e-8)
