"""Obviously correct NumPy twins of the Numba kernels and dense reference routes."""

import numpy as np
from scipy.special import expit, xlogy


def binomial_logit_derivatives(eta, y):
    p = expit(eta)
    return np.logaddexp(0.0, eta) - y * eta, p - y, p * (1.0 - p)


def gaussian_identity_derivatives(eta, y):
    return 0.5 * (y - eta) ** 2, eta - y, np.ones_like(eta)


def poisson_log_derivatives(eta, y):
    mu = np.exp(eta)
    return mu - y * eta + xlogy(y, y) - y, mu - y, mu


TWINS = {
    "binomial": binomial_logit_derivatives,
    "gaussian": gaussian_identity_derivatives,
    "poisson": poisson_log_derivatives,
}


LOG_CURVATURE_SLOPES = {
    "binomial": lambda eta: -np.tanh(0.5 * eta),          # (log sigma (1 - sigma))' = 1 - 2 sigma
    "gaussian": np.zeros_like,
    "poisson": np.ones_like,
}


def design(X, fit_intercept):
    """Dense x~ = (x, 1) rows."""
    X = np.asarray(X.toarray() if hasattr(X, "toarray") else X, dtype=float)
    return np.hstack([X, np.ones((X.shape[0], 1))]) if fit_intercept else X


def dense_gradient_hessian(problem, theta, weights):
    """Gradient and Hessian of L_w built densely from the NumPy twins."""
    xt = design(problem.X, problem.fit_intercept)
    _, d1, d2 = TWINS[problem.family.name](xt @ theta, problem.y)
    lam = problem.penalty if problem.penalty_scaling == "fixed" else problem.penalty * weights.sum()
    pdiag = np.ones(xt.shape[1])
    if problem.fit_intercept:
        pdiag[-1] = 0.0
    grad = xt.T @ (weights * d1) + lam * pdiag * theta
    hess = xt.T @ (xt * (weights * d2)[:, None]) + lam * np.diag(pdiag)
    return grad, hess


def without(problem, index):
    w = problem.sample_weight.copy()
    w[index] = 0.0
    return w


def newton_step(problem, index):
    """One Newton step on L_{-S} from theta^: -H_{-S}^{-1} grad L_{-S}(theta^)."""
    grad, hess = dense_gradient_hessian(problem, problem.theta, without(problem, index))
    return -np.linalg.solve(hess, grad)


def influence(problem, index):
    """H^{-1} (-grad L_{-S}(theta^)): the first-order step with the full Hessian."""
    grad, _ = dense_gradient_hessian(problem, problem.theta, without(problem, index))
    _, hess = dense_gradient_hessian(problem, problem.theta, problem.sample_weight)
    return -np.linalg.solve(hess, grad)


def rescaled_influence(problem, index):
    """Sum of exact leave-one-out Newton steps."""
    return sum(newton_step(problem, [i]) for i in index)


def leverages(problem):
    xt = design(problem.X, problem.fit_intercept)
    _, _, d2 = TWINS[problem.family.name](xt @ problem.theta, problem.y)
    _, hess = dense_gradient_hessian(problem, problem.theta, problem.sample_weight)
    return problem.sample_weight * d2 * np.einsum("ij,ji->i", xt, np.linalg.solve(hess, xt.T))


def drift_bounds(alpha, beta, weight, alpha_rest, beta_rest, ts, side):
    """The thresholded curvature drift (rif._kernels.drift_bounds), with sorts and cumulative sums:
    for each t, the minimum over thresholds T = a_(k) >= rest of f(T) + the weighted f of the larger
    a's, and T = rest itself."""
    f = (lambda a: -np.expm1(-a)) if side == 0 else np.expm1
    a = alpha[:, None] + beta[:, None] * ts[None, :]
    rest = alpha_rest + beta_rest * ts
    order = np.argsort(-a, axis=0, kind="stable")
    a_sorted = np.take_along_axis(a, order, axis=0)
    w = weight[order]
    with np.errstate(over="ignore"):       # e^a - 1 = inf far out, as in the kernel
        fa = f(a_sorted)
    moved = np.where(w > 0, fa * np.where(w > 0, w, 1.0), 0.0)
    above = np.concatenate([np.zeros((1, moved.shape[1])), np.cumsum(moved, axis=0)[:-1]])   # the larger a's
    at_candidates = np.where(a_sorted >= rest[None, :], fa + above, np.inf).min(axis=0)
    with np.errstate(over="ignore"):
        f_rest = f(rest)
    at_rest = f_rest + np.where(a_sorted > rest[None, :], moved, 0.0).sum(axis=0)
    return np.minimum(at_candidates, at_rest)


def first_order_drift_terms(at_estimate, at_hat, alpha, reach, xw, xv, M, floor, rho, spread_h):
    """rif._kernels.first_order_drift_terms as array expressions: (sums (m, 3), the moved sum for w)."""
    beta = M * np.sqrt(reach / floor)
    along = np.minimum(beta * rho, M * np.abs(xw) + beta * spread_h)
    signed = (at_estimate - at_hat) * xw
    with np.errstate(over="ignore", invalid="ignore"):
        spread = np.where(at_estimate != 0, at_estimate * np.expm1(along) * np.abs(xw), 0.0)
        moved = np.where(at_hat != 0, np.expm1(alpha + along) ** 2 * at_hat, 0.0)
    sums = np.column_stack([signed @ xv, spread @ np.abs(xv), moved @ xv**2])
    return sums, float(moved @ xw**2)


def newton_point_remainders(moves, reach, form, lost, radius, bound, main, scale, M, L, rounds):
    """rif._kernels.newton_point_remainders as array expressions."""
    r = bound.copy()
    b = np.sqrt(reach)
    for _ in range(rounds):
        with np.errstate(over="ignore", invalid="ignore"):
            a = M * np.minimum(moves + b * r[:, None], b * radius[:, None])
            grown = np.exp(M * a)
            eps = 0.5 * M * b * r[:, None] + a**2 * (L + M**2 * grown) / 6.0 + lost
            expanded = main + np.sqrt(np.where(form > 0, eps**2 * form, 0.0).sum(axis=1))
            whole = np.sqrt(np.where(form > 0, (0.5 * a * grown) ** 2 * form, 0.0).sum(axis=1))
        candidate = scale * np.minimum(expanded, whole)
        r = np.where(candidate < r, candidate, r)
    return r


def gradient_rounding_sums(code, weights, residual, curvature, eta, move, reference, norms, y, offset, theta_norm,
                           M, eta_eps, sum_eps):
    """rif._kernels.gradient_rounding_sums as array expressions: the sums (B, 4)."""
    eps = np.finfo(float).eps
    cap = np.inf
    if code == 0:                                        # logistic
        slope = 4.0 * eps * weights
        residual, cap = np.minimum(residual, weights), 0.25 * weights
    elif code == 1:                                      # squared loss
        slope = eps * weights * (eta + np.abs(y))
    else:                                                # Poisson
        slope = 3.0 * eps * weights * (np.exp(np.minimum(eta, 709.0)) + np.abs(y))
    d = eta_eps * (norms * theta_norm[:, None] + offset)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        from_eta = np.minimum(curvature * np.exp(M * (move + d)), cap) * d
        seen = reference > 0
        return np.column_stack([
            ((slope + sum_eps * residual) * norms).sum(axis=1),
            (from_eta * norms).sum(axis=1),
            np.where(seen, from_eta**2 / np.where(seen, reference, 1.0), 0.0).sum(axis=1),
            np.where(seen, 0.0, from_eta * norms).sum(axis=1)])


def block_forms(left, blocks, right):
    """left_i^T B_i right_i for rows (n, K) and blocks B (n, K, K), as a batched matrix product."""
    return (left[:, None, :] @ blocks @ right[:, :, None])[:, 0, 0]


def softmax_forms(prob, left, right):
    """rif._kernels.softmax_forms through the blocks diag(p_i) - p_i p_i^T."""
    blocks = np.einsum("ic,cd->icd", prob, np.eye(prob.shape[1])) - prob[:, :, None] * prob[:, None, :]
    return block_forms(left, blocks, right)


def softmax_probabilities(eta):
    """rif._kernels.softmax_probabilities as array expressions."""
    prob = np.exp(eta - eta.max(axis=1, keepdims=True))
    return prob / prob.sum(axis=1, keepdims=True)


def softmax_drift_terms(prob, v_rows, w_rows, prob_hat, weights_hat, weights, kept, grow, moved, root_w):
    """rif._kernels.softmax_drift_terms as array expressions over the blocks, shape (m, 4)."""
    out = []
    for k in range(v_rows.shape[1]):
        v = v_rows[:, k]
        at_vv = np.clip(weights * softmax_forms(prob, v, v), 0.0, None)
        out.append([np.sum(weights * softmax_forms(prob, v, w_rows)),
                    np.sum(np.where(kept, weights_hat * softmax_forms(prob_hat, v, w_rows), 0.0)),
                    np.sum(grow * np.sqrt(at_vv) * root_w),
                    np.sum(np.where(kept, moved * weights_hat * softmax_forms(prob_hat, v, v), 0.0))])
    return np.array(out)
