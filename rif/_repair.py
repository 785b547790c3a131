"""Label repair: the fit with some training labels corrected, and suspects to inspect.

For a GLM with canonical link the per-sample loss is l(y, eta) = b(eta) - y eta
(+ a term free of eta), so l'' does not depend on y. Replacing the labels y_i
by y'_i for i in S changes the sum-form objective (see :mod:`rif._problem`) to

    L'(theta) = L(theta) + sum_{i in S} w_i (y_i - y'_i) eta_i(theta),

whose Hessian equals H everywhere and whose gradient at theta^ is
sum_{i in S} w_i (y_i - y'_i) x~_i. Hence

    "newton"   dtheta = H^{-1} sum_{i in S} w_i (y'_i - y_i) x~_i
               (one Newton step of L' from theta^; exact for the Gaussian family,
               and the influence-function estimate of the relabelling),
    "retrain"  dtheta = argmin L' - theta^, by Newton's method warm-started at theta^.

Suspected wrong labels are ranked by self-influence, the change of a sample's
own loss when it is removed: largest first (``method="rif"`` rescales the
influence-function value by 1 / (1 - h_i)).
"""

import numpy as np

from . import _design
from ._removal import index_set
from ._validation import check_vector

REPAIR_METHODS = ("newton", "retrain")


def check_relabel(problem, index, new_labels):
    """Validated (index, new labels) in the problem's encoding."""
    index = index_set(index, problem.n_samples)
    new = problem.family.check_target(check_vector(np.atleast_1d(np.asarray(new_labels)), index.size,
                                                   "new_labels"))
    y = problem.y.copy()
    y[index] = new
    if problem.family.name == "binomial":
        remaining = y[problem.sample_weight > 0]
        if remaining.min() == remaining.max():
            raise ValueError("the new labels leave a single class; the classifier would be undefined")
    return index, new, y


def relabel_params_change(problem, index, new_labels, method="newton"):
    """theta' - theta^ when the labels of ``index`` become ``new_labels``.

    Parameters
    ----------
    problem : GLMProblem
    index : array-like of int or boolean mask
    new_labels : array-like of shape (len(index),)
        In the problem's encoding (0/1 for the binomial family).
    method : {"newton", "retrain"}, default "newton"

    Returns
    -------
    ndarray of shape (n_params,)
    """
    if method not in REPAIR_METHODS:
        raise ValueError(f"method must be one of {REPAIR_METHODS}, got {method!r}")
    index, new, y = check_relabel(problem, index, new_labels)
    if method == "newton":
        coef = problem.sample_weight[index] * (new - problem.y[index])
        grad = _design.rows(problem.X, index, problem.fit_intercept).T @ coef
        return problem.base_factor.solve(np.asarray(grad, dtype=float).ravel())
    from ._problem import GLMProblem

    refit = GLMProblem(problem.X, y, problem.family, problem.theta, sample_weight=problem.sample_weight,
                       penalty=problem.penalty, penalty_scaling=problem.penalty_scaling,
                       fit_intercept=problem.fit_intercept, refine=True, tol=problem.tol,
                       max_iter=problem.max_iter)
    return refit.theta - problem.theta


def suspect_order(self_influence):
    """Training samples ordered from most to least suspicious (largest self-influence first)."""
    score = np.nan_to_num(np.asarray(self_influence, dtype=float), nan=-np.inf)
    return np.argsort(-score, kind="stable")
