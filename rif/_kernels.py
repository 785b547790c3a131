"""Numba kernels for the per-sample work of each GLM family.

Each family has one scalar function ``_<family>_<link>(eta, y) -> (l, l', l'')``
giving the per-sample loss and its first two derivatives in the linear
predictor. Two kinds of kernels are built on them:

* ``<family>_<link>_derivatives`` reads ``eta`` and ``y`` and writes, into
  preallocated outputs, the three per-sample arrays. One fused pass replaces
  three NumPy expressions with their temporaries and keeps the numerically
  stable branches in one place. Plain NumPy twins live in ``tests/naive.py``
  and the tests compare the two.
* :func:`dense_value_gradient` computes the objective's data part and its
  gradient in one pass over a dense design, each row read once (see there).

:func:`csr_gram` accumulates the Gram product of a sparse design; :func:`softmax_residual`
gives the multinomial loss and residuals in one pass over the linear predictors. The
certificates' per-sample sums (:func:`first_order_drift_terms`, :func:`softmax_drift_terms`,
:func:`gradient_rounding_sums`) are fused the same way, one pass over the samples each.
"""

import numpy as np
from numba import njit

from ._config import JIT_OPTIONS, REDUCTION_JIT_OPTIONS

#: Family codes understood by :func:`dense_value_gradient`.
BINOMIAL_LOGIT, GAUSSIAN_IDENTITY, POISSON_LOG = 0, 1, 2


@njit(inline="always", **JIT_OPTIONS)
def _binomial_logit(e, y):
    """Logistic loss l = log(1 + e^eta) - y eta, l' = p - y, l'' = p (1 - p).

    With z = exp(-|eta|) both branches share l'' = z / (1 + z)^2, which never
    underflows to a negative or loses digits to cancellation.
    """
    z = np.exp(-abs(e))
    p, d2 = _logistic_from(e, z)
    loss = e + np.log1p(z) - y * e if e > 0.0 else np.log1p(z) - y * e
    return loss, p - y, d2


@njit(inline="always", **JIT_OPTIONS)
def _logistic_from(e, z):
    """(sigma(eta), sigma'(eta)) from z = exp(-|eta|)."""
    p = 1.0 / (1.0 + z) if e > 0.0 else z / (1.0 + z)
    return p, z / ((1.0 + z) * (1.0 + z))


@njit(inline="always", **JIT_OPTIONS)
def _gaussian_identity(e, y):
    """Squared loss l = (y - eta)^2 / 2, l' = eta - y, l'' = 1."""
    r = e - y
    return 0.5 * r * r, r, 1.0


@njit(inline="always", **JIT_OPTIONS)
def _poisson_log(e, y):
    """Half Poisson deviance l = e^eta - y eta + y log y - y, l' = e^eta - y, l'' = e^eta.

    The constant ``y log y - y`` (zero for y = 0) makes l >= 0 with equality
    at a perfect fit; it does not change any gradient or effect.
    """
    mu = np.exp(e)
    const = y * np.log(y) - y if y > 0.0 else 0.0
    return mu - y * e + const, mu - y, mu


@njit(**JIT_OPTIONS)
def binomial_logit_derivatives(eta, y, loss, d1, d2):
    """Per-sample logistic loss and derivatives (see :func:`_binomial_logit`)."""
    for i in range(eta.shape[0]):
        loss[i], d1[i], d2[i] = _binomial_logit(eta[i], y[i])


@njit(**JIT_OPTIONS)
def gaussian_identity_derivatives(eta, y, loss, d1, d2):
    """Per-sample squared loss and derivatives (see :func:`_gaussian_identity`)."""
    for i in range(eta.shape[0]):
        loss[i], d1[i], d2[i] = _gaussian_identity(eta[i], y[i])


@njit(**JIT_OPTIONS)
def poisson_log_derivatives(eta, y, loss, d1, d2):
    """Per-sample half Poisson deviance and derivatives (see :func:`_poisson_log`)."""
    for i in range(eta.shape[0]):
        loss[i], d1[i], d2[i] = _poisson_log(eta[i], y[i])


@njit(**JIT_OPTIONS)
def curvature_terms(eta, y, family, d1, d2, slope):
    """Per-sample l', l'' and the slope (log l'')' of the log curvature, without the loss.

    For the logistic loss (log l'')' = 1 - 2 sigma(eta) = -tanh(eta / 2), formed as
    -sign(eta) (1 - z) / (1 + z) with z = exp(-|eta|); below |eta| = 1/2, 1 - z = -expm1(-|eta|),
    which keeps its relative accuracy near eta = 0 (above, 1 - z >= 0.39 loses none). It is 1 for
    Poisson (l'' = e^eta) and 0 for squared loss. l' and l'' are those of
    :func:`binomial_logit_derivatives` and its siblings. ``family`` is one of the codes of
    :func:`dense_value_gradient`.
    """
    if family == BINOMIAL_LOGIT:
        for i in range(eta.shape[0]):
            e = eta[i]
            a = abs(e)
            z = np.exp(-a)
            p, d2[i] = _logistic_from(e, z)
            d1[i] = p - y[i]
            gap = ((1.0 - z) if a > 0.5 else -np.expm1(-a)) / (1.0 + z)     # tanh(|eta| / 2)
            slope[i] = -gap if e > 0.0 else gap
    elif family == GAUSSIAN_IDENTITY:
        for i in range(eta.shape[0]):
            _, d1[i], d2[i] = _gaussian_identity(eta[i], y[i])
            slope[i] = 0.0
    else:
        for i in range(eta.shape[0]):
            _, d1[i], d2[i] = _poisson_log(eta[i], y[i])
            slope[i] = 1.0


@njit(**REDUCTION_JIT_OPTIONS)
def dense_value_gradient(X, beta, intercept, y, w, family, part_size, first, last, grad_parts, values):
    """sum_i w_i l(y_i, eta_i) and X~^T r, r_i = w_i l'(y_i, eta_i), in one pass over rows of X.

    eta_i = x_i^T beta + intercept. Row i is read once: its dot product gives
    eta_i, and while the row is still in cache r_i x_i is added to the gradient.
    The rows are cut into consecutive parts of ``part_size`` rows; parts
    ``first`` to ``last - 1`` are summed here, part k into ``values[k]`` and
    ``grad_parts[k]`` (shape (parts, d + 1), zeroed by the caller; the last
    column collects sum_i r_i). Summing the parts in order gives the same result
    however the parts were shared among threads (see :mod:`rif._parallel`).
    """
    n, d = X.shape
    for k in range(first, last):
        value = 0.0
        total = 0.0
        grad = grad_parts[k]
        for i in range(k * part_size, min(n, (k + 1) * part_size)):
            row = X[i]
            eta = intercept
            for j in range(d):
                eta += row[j] * beta[j]
            if family == BINOMIAL_LOGIT:
                loss, d1, _ = _binomial_logit(eta, y[i])
            elif family == GAUSSIAN_IDENTITY:
                loss, d1, _ = _gaussian_identity(eta, y[i])
            else:
                loss, d1, _ = _poisson_log(eta, y[i])
            if w[i] != 0.0:                      # zero-weight rows (removed samples) add nothing
                value += w[i] * loss
                r = w[i] * d1
                total += r
                for j in range(d):
                    grad[j] += r * row[j]
        values[k] = value
        grad[d] = total


@njit(inline="always", **JIT_OPTIONS)
def _row_exponentials(eta, i, out):
    """out[i, c] = exp(eta[i, c] - max_c eta[i, c]) for row i (``out`` may be ``eta``); returns the
    largest entry and the sum of the exponentials (in [1, K], so nothing overflows)."""
    K = eta.shape[1]
    top = eta[i, 0]
    for c in range(1, K):
        if eta[i, c] > top:
            top = eta[i, c]
    total = 0.0
    for c in range(K):
        e = np.exp(eta[i, c] - top)
        out[i, c] = e
        total += e
    return top, total


@njit(**JIT_OPTIONS)
def softmax_residual(eta, y, w):
    """sum_i w_i l_i for the softmax loss l_i = logsumexp(eta_i) - eta_{i, y_i}, overwriting each row
    of ``eta`` (shape (n, K)) with its weighted residual w_i (softmax(eta_i) - e_{y_i}).

    The largest entry of each row is subtracted before exponentiating, so nothing overflows and
    the loss keeps its digits (log of a sum in [1, K]).
    """
    n, K = eta.shape
    value = 0.0
    for i in range(n):
        label = y[i]
        at_label = eta[i, label]
        top, total = _row_exponentials(eta, i, eta)
        shifted_label = at_label - top
        wi = w[i]
        if wi != 0.0:                              # zero-weight rows (removed samples) add nothing
            value += wi * (np.log(total) - shifted_label)
        scale = wi / total
        for c in range(K):
            eta[i, c] *= scale
        eta[i, label] -= wi
    return value


@njit(**JIT_OPTIONS)
def csr_gram(indptr, indices, data, c, out):
    """out += X^T diag(c) X for a CSR matrix X (indptr, indices, data): both triangles.

    Row i adds c_i v_a v_b at (j_a, j_b) for every pair of its stored entries,
    sum_i nnz_i^2 updates in all, written straight into the dense output: no
    sparse intermediate, whose d x d pattern is nearly dense for bag-of-words data.
    """
    for i in range(indptr.shape[0] - 1):
        ci = c[i]
        if ci == 0.0:
            continue
        for a in range(indptr[i], indptr[i + 1]):
            ja = indices[a]
            va = ci * data[a]
            for b in range(indptr[i], indptr[i + 1]):
                out[ja, indices[b]] += va * data[b]


@njit(**JIT_OPTIONS)
def drift_bounds(alpha, beta, weight, alpha_rest, beta_rest, ts, side, out):
    """The thresholded curvature drift of :class:`rif._certify._Drift` at each radius t in ``ts``,
    written into ``out``: with a_i = alpha_i + beta_i t over the candidate samples and the others'
    moves bounded by rest = alpha_rest + beta_rest t,

        out(t) = min( min_{a_k >= rest} [f(a_k) + sum_{a_i above a_k} f(a_i) w_i],
                      f(rest) + sum_{a_i > rest} f(a_i) w_i ),

    f(a) = 1 - e^{-a} (``side`` 0, the lower side) or e^a - 1 (``side`` 1). Samples of weight 0 (the
    removed ones) add nothing, however far they move. Tied a's give the same minimum in any order.
    """
    c = alpha.size
    a = np.empty(c)
    for g in range(ts.size):
        t = ts[g]
        for i in range(c):
            a[i] = alpha[i] + beta[i] * t
        rest = alpha_rest + beta_rest * t
        order = np.argsort(-a)
        best = np.inf
        above = 0.0
        at_rest = -np.expm1(-rest) if side == 0 else np.expm1(rest)
        for k in range(c):
            i = order[k]
            f = -np.expm1(-a[i]) if side == 0 else np.expm1(a[i])
            moved = f * weight[i] if weight[i] > 0.0 else 0.0
            if a[i] >= rest and f + above < best:
                best = f + above
            if a[i] > rest:
                at_rest += moved
            above += moved
        out[g] = min(best, at_rest)


@njit(**JIT_OPTIONS)
def first_order_drift_terms(at_estimate, at_hat, alpha, reach, xw, xv, M, floor, rho, spread_h, out):
    """The sums of :meth:`rif._certify._FirstOrderDrift._terms` in one pass over the samples.

    With beta_i = M (q_i / floor)^{1/2}, s_i = min(beta_i rho, M |x~_i^T w| + beta_i spread_h) and,
    for each column v of ``xv`` (x~_i^T v), adds into ``out`` (m, 3)

        sum_i (c_i(theta_e) - c_i) (x~_i^T v)(x~_i^T w),
        sum_i c_i(theta_e) (e^{s_i} - 1) |x~_i^T v| |x~_i^T w|,
        sum_i (e^{alpha_i + s_i} - 1)^2 c_i (x~_i^T v)^2,

    and returns sum_i (e^{alpha_i + s_i} - 1)^2 c_i (x~_i^T w)^2; ``at_estimate`` holds c_i(theta_e)
    and ``at_hat`` c_i (both 0 for the removed samples, which then add nothing however far they move).
    """
    n, m = xv.shape
    moved_w = 0.0
    for i in range(n):
        a = xw[i]
        beta = M * np.sqrt(reach[i] / floor)
        along = min(beta * rho, M * abs(a) + beta * spread_h)
        signed = (at_estimate[i] - at_hat[i]) * a
        spread = at_estimate[i] * np.expm1(along) * abs(a) if at_estimate[i] != 0.0 else 0.0
        if at_hat[i] != 0.0:
            grow = np.expm1(alpha[i] + along)
            moved = grow * grow * at_hat[i]
        else:
            moved = 0.0
        moved_w += moved * a * a
        for k in range(m):
            v = xv[i, k]
            out[k, 0] += signed * v
            out[k, 1] += spread * abs(v)
            out[k, 2] += moved * v * v
    return moved_w


@njit(**JIT_OPTIONS)
def newton_point_remainders(moves, reach, form, lost, radius, bound, main, scale, M, L, rounds, out):
    """The bounds of :func:`rif._certify_dense._newton_point_bounds` for each set b (row of the
    (B, n) arrays), written into ``out``: starting from ``bound[b]``, ``rounds`` times

        a_i = M min(|x~_i^T w| + b_i r, b_i rho),
        r <- min(r, scale (main + (sum_i eps_i^2 form_i)^{1/2}), scale (sum_i ((a_i / 2) e^{a_i})^2 form_i)^{1/2}),
        eps_i = M b_i r / 2 + a_i^2 (L + M^2 e^{M a_i}) / 6 + lost_i,

    with ``moves`` = |x~_i^T w|, ``reach`` = b_i^2 and ``form`` = c_i (x~_i^T w)^2 (samples of form 0
    add nothing, however far they move)."""
    root = np.empty(moves.shape[1])
    for s in range(moves.shape[0]):
        r = bound[s]
        for i in range(moves.shape[1]):
            root[i] = np.sqrt(reach[s, i])
        for _ in range(rounds):
            expanded = 0.0
            whole = 0.0
            for i in range(moves.shape[1]):
                f = form[s, i]
                if f <= 0.0:
                    continue
                b = root[i]
                a = M * min(moves[s, i] + b * r, b * radius[s])
                grown = np.exp(M * a)
                eps = 0.5 * M * b * r + a * a * (L + M * M * grown) / 6.0 + lost[s, i]
                expanded += eps * eps * f
                half = 0.5 * a * grown
                whole += half * half * f
            candidate = scale[s] * min(main[s] + np.sqrt(expanded), np.sqrt(whole))
            if not candidate < r:
                break
            r = candidate
        out[s] = r


@njit(**JIT_OPTIONS)
def gradient_rounding_sums(code, weights, residual, curvature, eta, move, reference, norms, y, offset, theta_norm,
                           M, eta_eps, sum_eps, out):
    """The per-sample sums of :func:`rif._rounding.scalar_gradient_error` in one pass over the
    samples, for each row b of the (B, n) arrays (``norms``, ``y`` and ``offset`` = |offset_i| are
    (n,), ``theta_norm`` (B,)). With d_i = ``eta_eps`` (||x~_i|| ||theta_b|| + |offset_i|) the
    rounding of eta_i, the change of l' it brings e_i = min(c_i e^{M (move_i + d_i)}, cap_i) d_i and
    the slope s_i of l' (family ``code``; for the logistic loss r_i <= w_i and cap_i = w_i / 4, else
    cap_i = inf), writes into ``out`` (B, 4):

        sum_i (s_i + sum_eps r_i) ||x~_i||,   sum_i e_i ||x~_i||,
        sum_{ref_i > 0} e_i^2 / ref_i,   sum_{ref_i <= 0} e_i ||x~_i||.

    NaN (0 times an overflowed exponential) propagates as in NumPy."""
    B, n = weights.shape
    eps = np.finfo(np.float64).eps
    for b in range(B):
        rest = 0.0
        whole = 0.0
        weighted = 0.0
        unseen = 0.0
        for i in range(n):
            w = weights[b, i]
            r = residual[b, i]
            if code == BINOMIAL_LOGIT:
                slope = 4.0 * eps * w
                if w < r:
                    r = w
                cap = 0.25 * w
            elif code == GAUSSIAN_IDENTITY:
                slope = eps * w * (eta[b, i] + abs(y[i]))
                cap = np.inf
            else:
                slope = 3.0 * eps * w * (np.exp(min(eta[b, i], 709.0)) + abs(y[i]))
                cap = np.inf
            d = eta_eps * (norms[i] * theta_norm[b] + offset[i])
            e = curvature[b, i] * np.exp(M * (move[b, i] + d))
            if e > cap:
                e = cap
            e *= d
            rest += (slope + sum_eps * r) * norms[i]
            whole += e * norms[i]
            if reference[b, i] > 0.0:
                weighted += e * e / reference[b, i]
            else:
                unseen += e * norms[i]
        out[b, 0] = rest
        out[b, 1] = whole
        out[b, 2] = weighted
        out[b, 3] = unseen


@njit(**JIT_OPTIONS)
def softmax_probabilities(eta, out):
    """out_i = softmax(eta_i) for each row of ``eta`` (n, K), the largest entry subtracted first."""
    n, K = eta.shape
    for i in range(n):
        total = _row_exponentials(eta, i, out)[1]
        for c in range(K):
            out[i, c] /= total


@njit(**JIT_OPTIONS)
def softmax_drift_terms(prob, v_rows, w_rows, prob_hat, weights_hat, weights, kept, grow, moved, root_w, out):
    """The sums of :meth:`rif._certify._SoftmaxFirstOrderDrift._terms` in one pass over the samples.

    With A_i(theta_e)'s forms from the probabilities ``prob`` (n, K) and A_i's (at theta^) from
    ``prob_hat`` and the sample weights ``weights_hat``, both centred as in :func:`softmax_forms`,
    W_i = ``w_rows[i]`` and, for each k, V_i = ``v_rows[i, k]`` ((n, m, K)), writes into ``out`` (m, 4)

        sum_i w_i V_i^T A_i(theta_e) W_i,      sum_{i kept} V_i^T A_i W_i,
        sum_i grow_i (max(w_i V_i^T A_i(theta_e) V_i, 0))^{1/2} root_w_i,
        sum_{i kept} moved_i V_i^T A_i V_i,

    (NaN stays NaN). The centred forms V_i^T A_i V_i are sums of non-negative terms: a nearly
    certain sample's block diag p - p p^T, formed entry by entry, loses its true curvature to
    cancellation (p_c - p_c^2 with p_c = 1 - 1e-20) and can give a negative form, which the
    growth factor ``moved`` (up to e^{2 a} for moves a) would turn into a large negative term.
    """
    n, m, K = v_rows.shape
    for k in range(m):
        for j in range(4):
            out[k, j] = 0.0
    for i in range(n):
        mean_w = 0.0
        hat_w = 0.0
        for c in range(K):
            mean_w += prob[i, c] * w_rows[i, c]
            hat_w += prob_hat[i, c] * w_rows[i, c]
        for k in range(m):
            mean_v = 0.0
            hat_v = 0.0
            for c in range(K):
                mean_v += prob[i, c] * v_rows[i, k, c]
                hat_v += prob_hat[i, c] * v_rows[i, k, c]
            at_vw = 0.0
            at_vv = 0.0
            hat_vw = 0.0
            hat_vv = 0.0
            for c in range(K):
                centred = v_rows[i, k, c] - mean_v
                at_vw += prob[i, c] * centred * (w_rows[i, c] - mean_w)
                at_vv += prob[i, c] * centred * centred
                centred = v_rows[i, k, c] - hat_v
                hat_vw += prob_hat[i, c] * centred * (w_rows[i, c] - hat_w)
                hat_vv += prob_hat[i, c] * centred * centred
            out[k, 0] += weights[i] * at_vw
            spread = weights[i] * at_vv
            if spread < 0.0:
                spread = 0.0
            out[k, 2] += grow[i] * np.sqrt(spread) * root_w[i]
            if kept[i]:
                out[k, 1] += weights_hat[i] * hat_vw
                out[k, 3] += moved[i] * (weights_hat[i] * hat_vv)


@njit(**JIT_OPTIONS)
def softmax_forms(prob, left, right, out):
    """out_i = V_i^T (diag p_i - p_i p_i^T) W_i = sum_c p_ic (V_ic - p_i^T V_i)(W_ic - p_i^T W_i) for
    probabilities ``prob`` (n, K) and rows ``left`` V, ``right`` W (n, K): the softmax curvature's
    forms without forming its blocks, centred (so V_i^T A_i V_i >= 0 as computed)."""
    n, K = prob.shape
    for i in range(n):
        mean_left = 0.0
        mean_right = 0.0
        for c in range(K):
            mean_left += prob[i, c] * left[i, c]
            mean_right += prob[i, c] * right[i, c]
        total = 0.0
        for c in range(K):
            total += prob[i, c] * (left[i, c] - mean_left) * (right[i, c] - mean_right)
        out[i] = total
