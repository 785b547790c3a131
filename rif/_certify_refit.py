"""Certificates of converged refits through the exact Hessian at the refit's own result.

A refit that moved far from theta^ can lie where the leave-out route's bounds, which compare
the curvature with H_{-S}(theta^), prove nothing, although its gradient is at the rounding
floor (softmax models on digits: 70 % of the 5 % sets). This route bounds such a result
theta_e by the Hessian there instead, as the exact route of :mod:`rif._certify_dense` does for
any estimate of a small problem, with a cruder reach that needs no inverse:

* H_e = grad^2 F_S(theta_e) is formed exactly (for softmax models the lifted H^ = H + kappa Pi_N,
  which agrees with H on the space V in which every gradient and error lies), factorised, and
  lambda_e <= lambda_min(H_e) is the penalty or is proved by :func:`rif._linalg.certified_floor`;
* each kept sample's curvature at theta is at least e^{-M a_i} times its value at theta_e,
  with a_i the change of its linear predictor (for softmax the span of the K changes),
  a_i <= c ||x~_i||_2 ||theta - theta_e||_2 <= c ||x~_i||_2 ||theta - theta_e||_{H_e} / lambda_e^{1/2}
  (c = 1, and c = 2^{1/2} for the span: |(v_k - v_l)^T x~_i| <= 2^{1/2} ||v|| ||x~_i||);
* so, with s = M c max_i ||x~_i||_2 / lambda_e^{1/2} (at least the exact route's
  s = M max_i ||x~_i||_{H_e^{-1}}) and delta = ||g||_{H_e^{-1}}, the closed form of the exact
  route holds: rho = ||theta_e - theta*||_{H_e} <= -log(1 - s delta) / s when s delta < 1, and
  ||theta_e - theta*||_2 <= rho / lambda_e^{1/2}; in the norm of H_{-S}(theta^) <= H, at most
  (tr H)^{1/2} times that.

Where the penalty covers every coordinate, lambda_e is the penalty itself, with no second
factorisation. The gradient's rounding is counted as in every route (:mod:`rif._rounding`), with
the curvature at theta_e as reference. For a converged refit s delta is tiny, so the bound is
about that rounding over lambda_e^{1/2}. Costs one Hessian (n p^2, for softmax n K^2 p^2 / 2)
and one or two p x p factorisations per set, so only refits the other routes leave
uncertified take it.
"""

import numpy as np
from scipy.linalg import LinAlgError, cho_solve, cholesky

from . import _rounding
from ._rounding import _row_norms

#: a set whose solves with H_e may be off by more than this (relative) is left uncertified
_MAX_SOLVE_ERROR = 1e-3


def refit_bound(problem, index, dtheta):
    """(bound, bound_h) for the refit ``dtheta`` (the user's parameter order) of removing ``index``:
    bounds of ||dtheta - dtheta*||_2 and of the same in H_{-S}(theta^)'s norm; None where this
    route proves nothing (see the module doc)."""
    from ._certify import certifier
    from ._linalg import certified_floor

    norms, M = _row_norms(problem), certifier(problem).M
    if norms is None or M is None:
        return None
    softmax = hasattr(problem, "theta_block")
    theta = problem.theta_block + problem.from_public(dtheta) if softmax else problem.theta + dtheta
    weights = problem.sample_weight.copy()
    weights[index] = 0.0
    _, g = problem.value_gradient(theta, weights)
    hessian = problem.hessian_at(theta, weights)
    if not (np.all(np.isfinite(g)) and np.all(np.isfinite(hessian))):
        return None
    try:
        chol = cholesky(hessian, lower=True, check_finite=False)
    except LinAlgError:
        return None
    # <= lambda_min(H_e): the penalty's own floor where it covers every coordinate (no factorisation
    # needed; the data only add to it), else a proved one
    penalised = float(np.min(problem.penalty_diag)) * (problem.penalty if softmax else problem.penalty_total(weights))
    low = penalised if penalised > 0 else certified_floor(hessian, chol)
    if not low > 0.0:
        return None
    p = len(g)
    # the solves' relative error, at most about p eps cond(H_e) (||H_e^{-1}||_F <= p^{1/2} / lambda_e):
    # the bounds are widened by twice that
    accuracy = 4.0 * p * np.finfo(float).eps * np.linalg.norm(hessian) * np.sqrt(p) / low
    if not accuracy < _MAX_SOLVE_ERROR:
        return None
    delta = float(np.sqrt(max(g @ cho_solve((chol, True), g, check_finite=False), 0.0)))
    kept = weights > 0
    s = M * (np.sqrt(2.0) if softmax else 1.0) * float(norms[kept].max()) / np.sqrt(low)
    if not s * delta < 1.0:
        return None
    rho = -np.log1p(-s * delta) / s if s > 0 else delta
    # for the objective tilted by the gradient's rounding (rif._rounding); theta* lies within
    # ``tilted`` of its minimiser, the curvature within r of theta_e being at least e^{-s r} times H_e's
    error_h = _gradient_error(problem, theta, weights, M, low)
    tilted = _rounding.tilt(error_h, rho, lambda r: np.exp(-s * r))
    bound = (1.0 + 2.0 * accuracy) * (rho + tilted) / np.sqrt(low)
    if not np.isfinite(bound):
        return None
    return float(bound), float(bound * np.sqrt(np.trace(problem.hessian)))        # H_{-S} <= H <= tr H


def _gradient_error(problem, theta, weights, M, low):
    """:mod:`rif._rounding`'s bound of ||fl(g) - g||_{H_e^{-1}} at theta (lambda_min(H_e) >= ``low``),
    from the per-sample values there."""
    from ._certify import certifier

    if hasattr(problem, "theta_block"):               # softmax: tr A_i at theta per unit weight
        eta = problem.eta_at(theta)
        prob = np.exp(eta - eta.max(axis=1, keepdims=True))
        prob /= prob.sum(axis=1, keepdims=True)
        spread = np.sum(prob * (1.0 - prob), axis=1)
        return certifier(problem).gradient_error(None, problem.to_public(theta - problem.theta_block), weights,
                                                 None, 1.0, (spread, low))[1]
    eta = problem._eta_at(theta)
    _, d1, d2 = problem.family.derivatives(eta, problem.y)
    return _rounding.scalar_gradient_error(problem, weights, theta, weights * np.abs(d1), weights * d2,
                                           np.abs(eta), 0.0, M, low, weights * d2)[1]


def fill_refits(problem, sets, records):
    """``records`` (estimate, certificate, method) with each uncertified refit ("retrain") bounded
    by :func:`refit_bound` where that proves something."""
    from ._certify import _SetCertificate

    for j, (value, cert, method) in enumerate(records):
        if method == "retrain" and not cert.certified:
            found = refit_bound(problem, sets[j], np.asarray(value, dtype=float))
            if found is not None:
                records[j] = (value, _SetCertificate(found[0], found[1], True, ""), method)
    return records
