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

A refit that moved far has usually formed a Hessian of F_S itself, at an iterate theta_j (a
Shamanskii refresh of its chord matrix, or Newton's last iteration: the ``anchor`` of
:class:`rif._solvers.RefitResult`). A = grad^2 F_S(theta_j) then takes H_e's place at no new
Hessian: each sample's curvature at theta is at least e^{-M |x~_i^T (theta - theta_j)|} times its
value at theta_j (for softmax, e^{-M a_i} with a_i the span of the K changes), so within
A-distance r of theta_e at least e^{-m - s r} A with m = M max_{i kept} |x~_i^T (theta_e - theta_j)|
(one product of X with theta_e and theta_j), and the closed form becomes
rho <= -log(1 - s delta e^m) / s for delta = ||g||_{A^{-1}}. A refit that
formed none may take H_{-S}(theta^) itself (theta_j = theta^, :func:`leave_out_anchor`), whose
e^m is large when the set moves far: method='auto' keeps that bound only where it proves rtol.

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

#: a certified refit's bound through an anchor is kept when at most this share of max(1, ||dtheta||)
#: (else the Hessian at the result, whose bound is near the rounding floor, is formed)
ANCHORED_SHARE = 1e-6


def near_floor(estimate, bound):
    """Whether a refit's bound through an anchor is close enough to the rounding floor to keep
    (:data:`ANCHORED_SHARE`): the anchor's drift factor e^m grows with how far the refit went on
    after forming it (digits' softmax refits: up to 5e-5 of the change, against 7e-8 through the
    Hessian at the result)."""
    return bound <= ANCHORED_SHARE * max(1.0, float(np.linalg.norm(estimate)))


def refit_bound(problem, index, dtheta, anchor=None):
    """(bound, bound_h) for the refit ``dtheta`` (the user's parameter order) of removing ``index``:
    bounds of ||dtheta - dtheta*||_2 and of the same in H_{-S}(theta^)'s norm; None where this
    route proves nothing (see the module doc). ``anchor`` = (theta_j, factor), the refit's last
    Hessian of F_S and where it was formed (:class:`rif._solvers.RefitResult`), or
    (theta^, solve, floor, size) from :func:`leave_out_anchor`, is used in place of H_e, with the
    curvature's drift from theta_j to theta_e."""
    from ._certify import certifier

    norms, M = _row_norms(problem), certifier(problem).M
    if norms is None or M is None:
        return None
    softmax = hasattr(problem, "theta_block")
    theta = problem.theta_block + problem.from_public(dtheta) if softmax else problem.theta + dtheta
    weights = problem.sample_weight.copy()
    weights[index] = 0.0
    _, g = problem.value_gradient(theta, weights)
    if not np.all(np.isfinite(g)):
        return None
    found = _reference(problem, weights, theta, anchor, softmax)
    if found is None:
        return None
    reference, solve, low, size = found
    if not low > 0.0:
        return None
    p = len(g)
    # the solves' relative error, at most about p eps cond(A) (||A^{-1}||_F <= p^{1/2} / lambda_min):
    # the bounds are widened by twice that
    accuracy = 4.0 * p * np.finfo(float).eps * size * np.sqrt(p) / low
    if not accuracy < _MAX_SOLVE_ERROR:
        return None
    delta = float(np.sqrt(max(g @ solve(g), 0.0)))
    kept = weights > 0
    s = M * (np.sqrt(2.0) if softmax else 1.0) * float(norms[kept].max()) / np.sqrt(low)
    # the curvature at theta_e is at least e^{-M |x~_i^T (theta_e - theta_j)|} times its value at the
    # anchor theta_j (0 without one), each sample's; so within A-distance r of theta_e, at least e^{-m - s r} A
    # (for softmax models the span of the K changes of eta_i, as in s)
    eta, eta_anchor = _predictors(problem, theta, reference)
    moves = np.ptp(eta - eta_anchor, axis=1) if softmax else np.abs(eta - eta_anchor)
    m = float(M * np.max(moves[kept])) if reference is not theta else 0.0
    # grad F_S(theta_e) = H_bar (theta_e - theta*) with H_bar >= e^{-m} (1 - e^{-s rho}) / (s rho) A on the
    # segment, so 1 - e^{-s rho} <= s delta e^m
    with np.errstate(over="ignore", invalid="ignore"):     # e^m overflows for a far anchor: no bound from it
        reach = s * delta * np.exp(m)
    if not reach < 1.0:
        return None
    rho = -np.log1p(-reach) / s if s > 0 else delta * np.exp(m)
    # for the objective tilted by the gradient's rounding (rif._rounding); theta* lies within
    # ``tilted`` of its minimiser
    error_h = _gradient_error(problem, theta, weights, M, low, eta, eta_anchor)
    tilted = _rounding.tilt(error_h, rho, lambda r: np.exp(-m - s * r))
    bound = (1.0 + 2.0 * accuracy) * (rho + tilted) / np.sqrt(low)
    if not np.isfinite(bound):
        return None
    return float(bound), float(bound * np.sqrt(np.trace(problem.hessian)))        # H_{-S} <= H <= tr H


def _reference(problem, weights, theta, anchor, softmax):
    """(theta_j, solve with A, lambda_min(A) bound, ||A||_F bound) for the reference matrix
    A = grad^2 F_S(theta_j): the Hessian at theta itself (anchor None), a refit's factorised one
    (theta_j, CholeskyFactor), or (theta_j, solve, floor, size) as given (the leave-out factor at
    theta^); None where the Hessian at theta is not definite."""
    if anchor is not None and len(anchor) == 4:
        return anchor
    if anchor is None:
        reference, hessian = theta, problem.hessian_at(theta, weights)
        if not np.all(np.isfinite(hessian)):
            return None
        try:
            chol = cholesky(hessian, lower=True, check_finite=False)
        except LinAlgError:
            return None
    else:
        reference, factor = anchor
        hessian, chol = factor.hessian, factor.cholesky
    return (reference, lambda b: cho_solve((chol, True), b, check_finite=False),
            _curvature_floor(problem, weights, hessian, chol, softmax), float(np.linalg.norm(hessian)))


def _curvature_floor(problem, weights, hessian, chol, softmax):
    """<= lambda_min(A): the penalty's own floor where it covers every coordinate (no factorisation
    needed; the data only add to it), else one proved by a factorisation."""
    from ._linalg import certified_floor

    penalised = float(np.min(problem.penalty_diag)) * (problem.penalty if softmax else problem.penalty_total(weights))
    return penalised if penalised > 0 else certified_floor(hessian, chol)


def _predictors(problem, theta, reference):
    """The linear predictors at theta and at ``reference`` (the same array when it is theta), from
    one product with X for both ((n, K) arrays for softmax models)."""
    if hasattr(problem, "theta_block"):
        eta = problem.eta_at(theta)
        return eta, (eta if reference is theta else problem.eta_at(reference))
    if reference is theta:
        eta = problem._eta_at(theta)
        return eta, eta
    from ._design import linear_predictor_columns

    both = linear_predictor_columns(problem.X, np.column_stack([theta, reference]), problem.fit_intercept)
    if problem.offset is not None:
        both = both + problem.offset[:, None]
    return both[:, 0], both[:, 1]


def _gradient_error(problem, theta, weights, M, low, eta, eta_anchor):
    """:mod:`rif._rounding`'s bound of ||fl(g) - g||_{A^{-1}} at theta (lambda_min(A) >= ``low``), from
    the per-sample values there; A is the Hessian at theta (``eta_anchor`` is ``eta``), or the one at
    the point whose linear predictors are ``eta_anchor`` (A >= X~^T diag(w l''(eta_anchor)) X~, and
    for softmax models A >= sum_i w_i A_i(theta_j) (x) x~_i x~_i^T)."""
    from ._certify import certifier

    if hasattr(problem, "theta_block"):               # softmax: tr A_i per unit weight
        cert, dtheta = certifier(problem), problem.to_public(theta - problem.theta_block)
        spread = _softmax_spread(problem, eta_anchor)
        if eta_anchor is eta:
            return cert.gradient_error(None, dtheta, weights, None, 1.0, (spread, low))[1]
        alpha = M * np.ptp(eta - eta_anchor, axis=1)
        return cert.gradient_error(None, dtheta, weights, alpha, 1.0, anchor=(weights * spread, low))[1]
    _, d1, d2 = problem.family.derivatives(eta, problem.y)
    reference = d2 if eta_anchor is eta else problem.family.derivatives(eta_anchor, problem.y)[2]
    return _rounding.scalar_gradient_error(problem, weights, theta, weights * np.abs(d1), weights * d2,
                                           np.abs(eta), 0.0, M, low, weights * reference, 1.0,
                                           _rounding.summation_length(problem))[1]


def _softmax_spread(problem, eta):
    """tr A_i = sum_k p_ik (1 - p_ik) for linear predictors ``eta`` (n, K), without cancellation
    (:func:`rif._multinomial._one_minus`)."""
    from ._multinomial import _one_minus, softmax_loss

    prob = softmax_loss(eta, problem.y)[1]
    return np.sum(prob * _one_minus(prob), axis=1)


def leave_out_anchor(problem, factor):
    """The anchor (theta^, solve, floor, size) of H_0 = H_{-S}(theta^) = grad^2 F_S(theta^) from the
    set's leave-out factor (:class:`rif._certify._SetFactor`): lambda_min(H_0) >= floor lambda_min(H),
    and ||H_0||_F <= ||H||_F as 0 <= H_0 <= H; None where the factor is not usable."""
    from ._certify import certifier

    if factor is None or factor.solve is None or factor.reason or not factor.floor > 0.0:
        return None
    theta = problem.theta_block if hasattr(problem, "theta_block") else problem.theta
    return theta, factor.solve, factor.floor * certifier(problem).lambda_min, float(np.linalg.norm(problem.hessian))


def fill_anchored(problem, sets, estimates, certificates, anchors, enough=None):
    """``certificates`` of refits with each uncertified one that has an anchor (the refit's last
    Hessian, the leave-out one at theta^, or None) bounded through it by :func:`refit_bound` where
    that proves something (and ``enough(estimate, bound)``, if given, accepts the bound)."""
    from ._certify import _SetCertificate

    out = list(certificates)
    for j, (cert, anchor) in enumerate(zip(certificates, anchors)):
        if anchor is not None and not cert.certified:
            estimate = np.asarray(estimates[j], dtype=float)
            found = refit_bound(problem, sets[j], estimate, anchor)
            if found is not None and (enough is None or enough(estimate, found[0])):
                # a ball around theta_e (no chord step): effects are bounded over it
                # (Certifier.effect_bound)
                out[j] = _SetCertificate(found[0], found[1], True, "", theta_e=problem.theta + estimate)
    return out


def refit_effect_bound(problem, index, dtheta, target, reach, found):
    """(bound, certified, reason) of a refit's effect on ``target``: ``found`` (the leave-out
    route's) unless :func:`refit_bound` through the Hessian at the result certifies the refit, then
    the bound over the ball that proves (:meth:`rif._certify.Certifier.effect_bound`)."""
    from ._certify import _SetCertificate, certifier

    proved = refit_bound(problem, index, np.asarray(dtheta, dtype=float))
    if proved is None:
        return found
    ball = _SetCertificate(proved[0], proved[1], True, "", theta_e=problem.theta + dtheta)
    bound, ok, reason = certifier(problem).effect_bound(ball, target, reach)
    return (bound, ok, reason) if ok else found


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
