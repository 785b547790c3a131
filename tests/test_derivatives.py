"""Per-sample derivatives and the lifted gradient/Hessian against finite differences."""

import numpy as np
import pytest

from rif import _design
from rif._families import get_family

from conftest import CONFIGS, FAMILIES, make_problem, synthetic


@pytest.mark.parametrize("family", FAMILIES)
def test_family_derivatives_match_finite_differences(family):
    X, y, _ = synthetic(family, n=40)
    fam = get_family(family)
    eta = np.linspace(-3, 3, 40)
    h = 1e-5
    loss, d1, d2 = fam.derivatives(eta, y)
    lp, d1p, _ = fam.derivatives(eta + h, y)
    lm, d1m, _ = fam.derivatives(eta - h, y)
    np.testing.assert_allclose(d1, (lp - lm) / (2 * h), rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(d2, (d1p - d1m) / (2 * h), rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("family,scaling,intercept,weights", CONFIGS)
def test_per_sample_gradients_and_hessians_match_finite_differences(family, scaling, intercept, weights):
    """g~_i and c_i x~_i x~_i^T + penalty_i P^T P are the derivatives of sample i's share."""
    prob = make_problem(family, n=30, d=3, scaling=scaling, intercept=intercept, weights=weights)
    xt = _design.rows(prob.X, np.arange(prob.n_samples), intercept)
    theta = prob.theta + 0.1  # away from the optimum, so gradients are not all ~0

    def share(i, th):
        # sample i's part of the objective: w_i l_i + (penalty_i / 2) ||P theta||^2
        eta = xt[i] @ th
        return (prob.sample_weight[i] * prob.family.loss(np.array([eta]), prob.y[i:i + 1])[0]
                + 0.5 * prob.sample_penalty[i] * prob.penalty_diag @ th**2)

    eta = xt @ theta
    _, d1, d2 = prob.family.derivatives(eta, prob.y)
    eps = 1e-6
    for i in (0, 7, 19):
        grad = prob.sample_weight[i] * d1[i] * xt[i] + prob.sample_penalty[i] * prob.penalty_diag * theta
        hess = prob.sample_weight[i] * d2[i] * np.outer(xt[i], xt[i]) + prob.sample_penalty[i] * np.diag(prob.penalty_diag)
        fd_grad = np.array([(share(i, theta + eps * e) - share(i, theta - eps * e)) / (2 * eps)
                            for e in np.eye(prob.n_params)])
        np.testing.assert_allclose(grad, fd_grad, rtol=1e-6, atol=1e-8)
        eps = 1e-4  # second differences need a larger step: rounding grows as 1/eps^2
        fd_hess = np.array([[(share(i, theta + eps * (a + b)) - share(i, theta + eps * (a - b))
                              - share(i, theta - eps * (a - b)) + share(i, theta - eps * (a + b))) / (4 * eps**2)
                             for b in np.eye(prob.n_params)] for a in np.eye(prob.n_params)])
        np.testing.assert_allclose(hess, fd_hess, rtol=1e-5, atol=1e-6)
        eps = 1e-6


@pytest.mark.parametrize("family,scaling,intercept,weights", CONFIGS)
def test_objective_gradient_and_hessian_match_finite_differences(family, scaling, intercept, weights):
    prob = make_problem(family, n=30, d=3, scaling=scaling, intercept=intercept, weights=weights)
    w = prob.sample_weight.copy()
    w[:5] = 0.0  # a leave-5-out objective: the penalty must shrink under per_sample
    theta = prob.theta + 0.05
    grad, hess = prob.gradient_hessian(theta, w)
    eps = 1e-6
    basis = np.eye(prob.n_params)
    fd_grad = np.array([(prob.objective(theta + eps * e, w) - prob.objective(theta - eps * e, w)) / (2 * eps)
                        for e in basis])
    fd_hess = np.array([(prob.gradient_hessian(theta + eps * e, w)[0]
                         - prob.gradient_hessian(theta - eps * e, w)[0]) / (2 * eps) for e in basis])
    np.testing.assert_allclose(grad, fd_grad, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(hess, fd_hess, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("family,scaling,intercept,weights", CONFIGS)
def test_per_sample_gradients_sum_to_zero_at_the_optimum(family, scaling, intercept, weights):
    prob = make_problem(family, scaling=scaling, intercept=intercept, weights=weights)
    xt = _design.rows(prob.X, np.arange(prob.n_samples), intercept)
    g = prob.residual[:, None] * xt + prob.sample_penalty[:, None] * prob.penalty_diag * prob.theta
    if scaling == "fixed":
        g_total = g.sum(axis=0) + prob.penalty * prob.penalty_diag * prob.theta
    else:
        g_total = g.sum(axis=0)
    assert np.max(np.abs(g_total)) < 1e-9 * max(1.0, np.abs(g).sum())
