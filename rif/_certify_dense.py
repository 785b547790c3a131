"""Certificates from the exact Hessian at each estimate, for problems small enough to form it.

Let F be the objective without the set S, theta* its minimiser, theta_e an estimate,
g = grad F(theta_e) and H_e = grad^2 F(theta_e), formed exactly (n p^2 per set, all the sets of a
group as one matrix product). With b_i = ||x~_i||_{H_e^{-1}} and |l'''| <= M l'', each kept
sample's curvature within H_e-distance t of theta_e lies within e^{-+a_i} of its curvature at
theta_e, a_i = M b_i t, and in H_e's whitened coordinates the Hessian of F there is
I + sum_i (c_i(theta) / c_i(theta_e) - 1) u_i u_i^T with ||u_i||^2 = c_i(theta_e) b_i^2, so its
eigenvalues lie in [1 - low(t), 1 + high(t)]:

    low(t), high(t) <= min_T [f(T) + sum_{a_i > T} f(a_i) ||u_i||^2],   f(a) = 1 - e^{-a}, e^a - 1.

T = max_i a_i gives the closed form e^{-+s t} with s = M max_i b_i.

**The estimate.** Along u = (theta* - theta_e) / rho, rho = ||theta* - theta_e||_{H_e}, the
directional derivative of the convex F rises from g^T u >= -delta (delta = ||g||_{H_e^{-1}}, the
Newton decrement) to 0 at rho at a rate of at least 1 - low(t), so rho is at most the first r at
which the integral of (1 - low)^+ reaches delta. In the closed form, (1 - e^{-s rho}) / s <= delta:

    rho <= -log(1 - s delta) / s   when s delta < 1   (delta itself when s = 0);

the thresholded form (:class:`rif._certify._Drift`) is tried for the estimates this leaves
uncertified.

**The Newton point** theta_N = theta_e - w, w = H_e^{-1} g: theta* - theta_N = H_bar^{-1} (H_bar - H_e) w
with H_bar the Hessian averaged over the segment to theta*, between (1 - low(rho)) H_e and
(1 + high(rho)) H_e. Its distance is bounded twice: by min(max(high / (1 + high), low / (1 - low))
delta, high rho) (second order: in the closed form high rho <= (x / 2) e^x rho for x = s rho), and
sample by sample, with the first-order part of each sample's curvature change computed exactly
(:func:`_newton_point_bounds`, third order left). A refit by Newton steps from theta_e converges
quadratically, so the Newton point is usually certified to a far smaller error by the same
evaluation; an estimate that is not certified itself is bounded through the first of its Newton
points that is (:func:`certify_through`).

**Chord steps** (``method="auto"``): from a Newton point theta_N, the steps theta - H_e^{-1} g(theta)
through the Hessian already formed and inverted at theta_e, each certified by one pass at its
point: within H_e-distance t of a point theta, each sample's curvature lies within
e^{-+M (|x~_i^T (theta - theta_e)| + b_i t)} of c_i(theta_e), the thresholded drift with those shifts
(:func:`_chord_certificates`). They are taken where the first-order part of the Newton point's
error, computed exactly, says one step would prove the tolerance asked: a refit's last Newton
step then costs one pass, not an evaluation of the Hessian.

**Norms.** ||theta_e - theta*||_2 <= min(rho / sqrt(lambda), ||w||_2 + e_N / sqrt(lambda)), lambda a
proved lower bound of lambda_min(H_e) and e_N the Newton point's H_e-norm bound (the second
through theta_N, by the triangle inequality). In the norm of H_0 = H_{-S}(theta^), H_0 <= e^m H_e
with m = M max_{i not in S} |x~_i^T (theta_e - theta^)| (each sample's curvature ratio between the two
points), so H_e-norm bounds grow by at most e^{m/2}, and ||w||_{H_0} is computed exactly.

The route keeps X~ and the products of each row's pairs of entries on the problem
(n p (p + 1) / 2 values, at most 16 MB).
"""

from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np
from scipy.linalg import lapack

from . import _design, _rounding
from ._certify import (
    _TOP,
    _curvature_weighted_square,
    _Drift,
    concordance,
    curvature_above,
    relative_ok,
)
from ._kernels import curvature_terms, newton_point_remainders

#: the exact-Hessian route serves problems with n p^2 up to this: forming each set's Hessian
#: then costs less than the per-set work of the route through H_{-S}(theta^) (see rif._certify);
#: both took the same time near n p^2 = 8e6 (synthetic logistic data, 20 sets of 1-5 %), and the
#: row products it keeps hold n p (p + 1) / 2 values (16 MB here)
MAX_WORK = 4.0e6
#: ... and with at most this many samples: each set's per-sample arithmetic (some 40 operations a
#: sample) is not shared between sets as the other route's passes are, and the two routes took
#: the same time near n = 10000 (200000 x 3: 3.4 times slower)
MAX_SAMPLES = 10_000
#: values in each of a group's (n_sets, n) and (n_sets, p (p + 1) / 2) work arrays together
_GROUP_VALUES = 2**22
#: Newton rounds ``method="auto"`` tries from each estimate before handing a set to the route
#: through H_{-S}(theta^)
_AUTO_ROUNDS = 6
#: evaluations at successive Newton points that certify=True tries for an estimate the evaluation
#: at it does not certify (the estimate is then bounded through the first one certified)
_THROUGH_ROUNDS = 2
#: a certified estimate whose Newton point's bound exceeds this many times the Newton decrement takes
#: the evaluation at its Newton point too (:func:`certify_through`)
_LOOSE_NEWTON = 1.0
#: ... unless its bound is already below this share of the change
_LOOSE_FLOOR = 1e-6
#: chord steps ``method="auto"`` takes from a Newton point through the exact Hessian of the
#: evaluation that made it, before the next round forms a Hessian again (:func:`_chord_chains`)
_CHORD_STEPS = 4
#: ... each only while the last one's Newton decrement fell to at most this share of the one before
_CHORD_SHRINK = 0.5
#: a chord step is taken where this many times the first-order estimate of the Newton point's
#: error proves the tolerance (on breast cancer the estimate ran 2-3 times the error, and chord
#: points' bounds 1.0-4.0 times theirs, 1.6 at the median, over the property tests' draws)
_CHORD_LOOSENESS = 3.0
#: products with the row products of at most this many sets are formed one set at a time
_FEW = 3
#: the rounding of theta_e - w - theta^, relative to the norms of its terms
_ROUNDING = 8 * np.finfo(float).eps


@dataclass
class DenseCertificate:
    """Bounds (2-norm, H_0-norm) on an estimate and on its Newton point theta_e - H_e^{-1} g, given
    as a change from theta^ (None where H_e is not positive definite); ``certified`` False (and
    the bounds inf) where the estimate cannot be proved close; ``delta`` is its Newton decrement."""

    bound: float
    bound_h: float
    certified: bool
    newton: np.ndarray = None
    newton_bound: float = np.inf
    newton_bound_h: float = np.inf
    delta: float = np.inf
    # for effects: ||theta_N - theta*||_{H_e} <= newton_h, and H_e^{-1}
    newton_h: float = np.inf
    inverse: np.ndarray = None
    chord: object = None            # what chord steps through H_e need (a :class:`_Chord`)
    newton_guess: float = np.nan    # an estimate (not a bound) of the Newton point's 2-norm error


@dataclass
class _Chord:
    """What an evaluation at theta_e leaves for chord steps through its Hessian H_e
    (:func:`_chord_certificates`): the set's weights, the linear predictors at theta_e, the
    curvatures there (computed, and the floored upper bounds of :func:`curvature_above`),
    b_i^2 = x~_i^T H_e^{-1} x~_i (0 for the removed samples), H_e^{-1}, a proved lower bound of
    lambda_min(H_e), the solves' widening, e^{m/2} (H_0 <= e^m H_e) and tr H_e."""

    weights: np.ndarray
    eta: np.ndarray
    curvature: np.ndarray
    above: np.ndarray
    reach: np.ndarray
    inverse: np.ndarray
    low: float
    widen: float
    grow: float
    trace: float


_NONE = DenseCertificate(np.inf, np.inf, False)


def applies(problem):
    """Whether ``problem`` is certified through exact Hessians: a scalar GLM with a known
    concordance constant, an in-memory dense X, n <= :data:`MAX_SAMPLES` and
    n p^2 <= :data:`MAX_WORK`."""
    return (hasattr(problem, "family") and concordance(problem.family) is not None
            and isinstance(problem.X, np.ndarray) and problem.n_samples <= MAX_SAMPLES
            and problem.n_samples * problem.n_params ** 2 <= MAX_WORK)


class _Products:
    """What every group shares: X~ (n, p) and the products x~_ia x~_ib of each row's pairs a <= b
    (n, p (p + 1) / 2), through which sum_i c_i x~_i x~_i^T and x~_i^T A x~_i for symmetric A are
    each one matrix product for all the sets of a group."""

    def __init__(self, problem):
        self.problem = problem
        self.rows = _design.rows(problem.X, np.arange(problem.n_samples), problem.fit_intercept)
        p = self.rows.shape[1]
        self.upper = np.triu_indices(p)
        self.pairs = self.rows[:, self.upper[0]] * self.rows[:, self.upper[1]]
        self.twice = np.where(self.upper[0] == self.upper[1], 1.0, 2.0)       # A's off-diagonal counted twice

    @cached_property
    def hessian_factor(self):
        """(L, L^T) with H = L L^T at theta^ (for :func:`_pencil_top`)."""
        from scipy.linalg import cholesky

        chol = cholesky(self.problem.hessian, lower=True, check_finite=False)
        return chol, np.ascontiguousarray(chol.T)

    def grams(self, curvatures):
        """sum_i c_bi x~_i x~_i^T for each row b of ``curvatures`` (B, n): (B, p, p)."""
        p = self.rows.shape[1]
        out = np.empty((len(curvatures), p, p))
        packed = _times(curvatures, self.pairs)
        out[:, self.upper[0], self.upper[1]] = packed
        out[:, self.upper[1], self.upper[0]] = packed
        return out

    def quadratic_forms(self, matrices):
        """x~_i^T A_b x~_i for each symmetric A_b of ``matrices`` (B, p, p): (B, n)."""
        return _times(matrices[:, self.upper[0], self.upper[1]] * self.twice, self.pairs.T)


def _times(A, B):
    """A @ B, a row of A at a time for a few rows (BLAS's matrix products run far slower than
    its matrix-vector products on two or three rows)."""
    if len(A) > _FEW:
        return A @ B
    return np.array([a @ B for a in A]).reshape(len(A), B.shape[1])


def _products(problem):
    cache = problem.__dict__.get("_dense_products")
    if cache is None:
        cache = problem.__dict__["_dense_products"] = _Products(problem)
    return cache


def certify(problem, sets, dthetas, rtol=None):
    """The :class:`DenseCertificate` of each change in ``dthetas`` (n_sets, p) for ``sets``, a group
    of sets at a time (each step one array program over the group). With ``rtol``, an estimate
    whose bound proves that relative accuracy before its Newton point's sample-by-sample bound
    (:func:`_newton_point_bounds`) is formed keeps the Newton point's second-order bound (valid,
    looser): ``method="auto"`` takes the estimate itself then."""
    products = _products(problem)
    n, p = products.rows.shape
    dthetas = np.asarray(dthetas, dtype=float).reshape(len(sets), p)
    group = int(max(1, min(64, _GROUP_VALUES // (4 * n + p * (p + 1)))))
    out = []
    for start in range(0, len(sets), group):
        out += _certify_group(problem, products, concordance(problem.family), sets[start:start + group],
                              dthetas[start:start + group], rtol)
    return out


def _evaluate(problem, products, sets, dthetas):
    """At theta_e = theta^ + dtheta for each set b (row b of every result): theta_e (B, p), its linear
    predictors (B, n), the weights without the set (B, n), the curvatures w_i l''_i (B, n),
    lambda(w) (B,), g = grad F_S(theta_e) (B, p), H_e = grad^2 F_S(theta_e) (B, p, p), the slopes
    (log l'')' at the linear predictors (B, n), l' there (B, n) and the sets' indicators (B, n)."""
    n, p = products.rows.shape
    B = len(sets)
    thetas = problem.theta[None, :] + dthetas
    removed = _removal_mask(n, sets)
    weights = problem.sample_weight[None, :] * (1.0 - removed)
    etas, d1, d2, slopes, lam, grads = _pass(problem, products.rows, thetas, weights)
    curvature = weights * d2
    hessians = products.grams(curvature)
    hessians.reshape(B, p * p)[:, ::p + 1] += lam[:, None] * problem.penalty_diag                # the diagonals
    return thetas, etas, weights, curvature, lam, grads, hessians, slopes, d1, removed


def _pass(problem, rows, thetas, weights):
    """At each theta_b (row b of ``thetas``, with the weights of row b of ``weights``): the linear
    predictors, l', l'' and (log l'')' there (B, n each), lambda(w) (B,) and grad F_w(theta_b) (B, p)."""
    B, n = weights.shape
    etas = thetas @ rows.T
    if problem.offset is not None:
        etas += problem.offset[None, :]
    d1, d2, slopes = (np.empty((B, n)) for _ in range(3))
    curvature_terms(etas.ravel(), np.tile(problem.y, B), problem.family.code, d1.ravel(), d2.ravel(), slopes.ravel())
    lam = np.array([problem.penalty_total(w) for w in weights])
    grads = (weights * d1) @ rows + lam[:, None] * problem.penalty_diag * thetas
    return etas, d1, d2, slopes, lam, grads


def _certify_group(problem, products, M, sets, dthetas, rtol=None):
    rows = products.rows
    n, p = rows.shape
    B = len(sets)
    thetas, etas, weights, curvature, lam, grads, hessians, slopes, d1, removed = _evaluate(problem, products, sets,
                                                                                        dthetas)
    usable = np.all(np.isfinite(grads), axis=1) & np.all(np.isfinite(hessians), axis=(1, 2))
    hessians[~usable] = np.eye(p)
    inverses, definite = _inverses(hessians)
    usable &= definite
    # the solves' relative error, at most about p eps times the condition number: the bounds are
    # widened by twice that, and a set whose H_e is too ill-conditioned for it goes the other route
    accuracy = _solve_accuracy(hessians, inverses)
    low = _lambda_min_lower(hessians, inverses, 0.0 if problem.fit_intercept else lam, accuracy)
    usable &= (low > 0.0) & (accuracy < 1e-3)
    widen = 1.0 + 2.0 * accuracy
    steps = np.einsum("bpq,bq->bp", inverses, grads)                                           # H_e^{-1} g
    delta = np.sqrt(np.maximum(np.einsum("bp,bp->b", grads, steps), 0.0))
    kept = weights > 0
    along = steps @ rows.T                                                                     # x~_i^T w, (B, n)
    if M > 0:
        reach = np.where(kept, np.maximum(products.quadratic_forms(inverses), 0.0), 0.0)      # b_i^2
        s = M * np.sqrt(reach.max(axis=1))
        m = M * np.max(np.where(kept, np.abs(etas - problem.eta[None, :]), 0.0), axis=1)
    else:
        reach, s, m = np.zeros((B, n)), np.zeros(B), np.zeros(B)
    # the drift's weights: curvatures that underflow count at a floor above their true value
    above = curvature_above(curvature, weights)
    rho, newton_h, low_rho = _radii(M, delta, s, reach, above, kept, usable)
    certified = np.isfinite(rho)
    # the bounds so far hold for the minimiser of the objective tilted by the gradient's rounding
    # (rif._rounding), whose gradient at theta_e is the computed one; theta* lies a further
    # ``tilted`` away in H_e's norm (the curvature within r of theta_e is at least e^{-s r} times H_e's)
    _, errors = _rounding.scalar_gradient_error(problem, weights, thetas, weights * np.abs(d1), curvature,
                                                np.abs(etas), 0.0, M, low, curvature)          # H_e >= X~^T C_e X~
    tilted = np.where(certified, _rounding.exponential_tilts(errors, rho, s), np.inf)
    certified &= np.isfinite(tilted)
    root = np.sqrt(low)
    step_norm = np.linalg.norm(steps, axis=1)
    if M > 0:
        refine = certified
        if rtol is not None:         # estimates proved to rtol already need no sharper Newton point
            with np.errstate(invalid="ignore", divide="ignore"):
                first = widen * np.minimum(rho + tilted, step_norm * root + newton_h + tilted) / root
            refine = certified & ~relative_ok(np.linalg.norm(dthetas, axis=1), first, rtol)
        work = (rows, along, slopes, curvature, above, inverses,
                _bend(problem.family))
        newton_h, guess = _newton_point_bounds(M, rho, newton_h, low_rho, reach, work, refine)
    else:
        guess = np.full(B, np.nan)
    rho, newton_h = np.where(certified, rho + tilted, np.inf), np.where(certified, newton_h + tilted, np.inf)
    traces = np.trace(hessians, axis1=1, axis2=2)                                              # tr H_e
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        grow = np.exp(0.5 * m)

        def grown(v):                   # e^{m/2} v, 0 for v = 0 however far theta_e lies
            return np.where(v > 0, grow * v, 0.0)

        bound = np.minimum(rho / root, step_norm + newton_h / root)
        bound_h = np.minimum(grown(rho), _leave_out_norms(problem, removed, steps, along) + grown(newton_h))
        # theta_N - theta^ is itself computed in floating point: its rounding joins its bounds
        rounding = _ROUNDING * (np.linalg.norm(thetas, axis=1) + step_norm)
        newton_bound = newton_h / root + rounding
        guess = widen * guess / root
        newton_bound_h = grown(newton_h) + rounding * np.sqrt(np.trace(problem.hessian))        # H_0 <= H <= tr H
        newton_h = newton_h + rounding * np.sqrt(traces)                                       # >= ||.||_{H_e}
    bound, bound_h, newton_bound, newton_bound_h, newton_h = (widen * v for v in (bound, bound_h, newton_bound,
                                                                                newton_bound_h, newton_h))
    newtons = thetas - steps - problem.theta[None, :]
    out = []
    for b in range(B):
        if not usable[b]:
            out.append(_NONE)
            continue
        chord = (_Chord(weights[b], etas[b], curvature[b], above[b], reach[b], inverses[b], float(low[b]),
                        float(widen[b]), float(grow[b]), float(traces[b])) if M > 0 else None)
        if not certified[b]:
            out.append(DenseCertificate(np.inf, np.inf, False, newtons[b], delta=float(delta[b]), chord=chord))
        else:
            out.append(DenseCertificate(float(bound[b]), float(bound_h[b]), True, newtons[b], float(newton_bound[b]),
                                        float(newton_bound_h[b]), float(delta[b]), float(newton_h[b]), inverses[b],
                                        chord, float(guess[b])))
    return out


def _inverses(hessians):
    """(H^{-1} per matrix of the stack, whether its Cholesky factorisation succeeded), by LAPACK's
    dpotrf and dpotri (the identity where it failed)."""
    out = np.empty_like(hessians)
    definite = np.ones(len(hessians), dtype=bool)
    for b, hessian in enumerate(hessians):
        chol, info = lapack.dpotrf(hessian, lower=1, clean=0)
        if info == 0:
            inverse, info = lapack.dpotri(chol, lower=1)
        out[b] = inverse if info == 0 else np.eye(len(hessian))
        definite[b] = info == 0
    upper, lower = _mirror(hessians.shape[1])                   # dpotri fills the lower triangle:
    flat = out.reshape(len(out), -1)
    flat[:, upper] = flat[:, lower]                             # mirrored into the upper one
    return out, definite


@lru_cache(maxsize=8)
def _mirror(p):
    """Flat positions in a p x p matrix of its strict upper triangle and of their mirror images."""
    strict = np.triu_indices(p, 1)
    return strict[0] * p + strict[1], strict[1] * p + strict[0]


def _top_eigenvalue_upper(matrices):
    """||A^4||_F^{1/4} = (sum_k lambda_k^8)^{1/8} for each symmetric A of the stack: at least its
    largest |eigenvalue| and at most p^{1/8} times it (computed on A / max|A_ij|: no overflow)."""
    scale = np.abs(matrices).max(axis=(1, 2))
    scaled = matrices / np.where(scale > 0, scale, 1.0)[:, None, None]
    squared = np.matmul(scaled, scaled)
    fourth = np.matmul(squared, squared)
    return scale * np.einsum("bij,bij->b", fourth, fourth) ** (1.0 / 8.0)


def _solve_accuracy(hessians, inverses):
    """4 p eps ||H_e||_F ||H_e^{-1}||_F per set: a bound, up to a small constant, of the relative
    error of products with the computed inverse."""
    cond = np.linalg.norm(hessians, axis=(1, 2)) * np.linalg.norm(inverses, axis=(1, 2))
    return 4.0 * hessians.shape[1] * np.finfo(float).eps * cond


def _lambda_min_lower(hessians, inverses, floor, margin=None):
    """A lower bound of lambda_min(H_e) per set, from its inverse: lambda_max(H_e^{-1}) <=
    ||H_e^{-4}||_F^{1/4} = (sum_k mu_k^8)^{1/8}, at most p^{1/8} times it; less a margin for the
    inverse's rounding (p eps times the condition number ||H_e||_F ||H_e^{-1}||_F, relative), and
    never below ``floor`` (lambda, when no intercept is left unpenalised: H_e >= lambda I).
    ``margin``: :func:`_solve_accuracy`'s, where already computed."""
    top = _top_eigenvalue_upper(inverses)                                                  # >= lambda_max(H_e^{-1})
    margin = _solve_accuracy(hessians, inverses) if margin is None else margin
    with np.errstate(divide="ignore", invalid="ignore"):
        low = np.where(margin < 0.5, (1.0 - margin) / top, 0.0)
    return np.maximum(np.where(np.isfinite(low), low, 0.0), floor)


def _radii(M, delta, s, reach, curvature, kept, usable):
    """(rho, the Newton point's H_e-norm bound, low(rho)) per set: the closed form where
    s delta < 1, else the thresholded drift; rho = inf where neither bounds it."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        closed = usable & (s * delta < 1.0)
        rho = np.where(s > 0, -np.log1p(-np.where(closed, s * delta, 0.0)) / s, delta)
        x = s * rho
        newton_h = 0.5 * x * np.exp(x) * rho                    # the averaged drift (x / 2) e^x, times rho
        low_rho = -np.expm1(-x)
    rho, newton_h = np.where(closed, rho, np.inf), np.where(closed, newton_h, np.inf)
    low_rho = np.where(closed, low_rho, 1.0)
    for b in np.flatnonzero(usable & ~closed):
        rho[b], newton_h[b], low_rho[b] = _thresholded(M, float(delta[b]), reach[b], curvature[b], kept[b])
    return rho, newton_h, low_rho


def _thresholded(M, delta, reach, curvature, kept):
    """(rho, the Newton point's H_e-norm bound, low(rho)) from the thresholded drift (inf, inf, 1
    where it cannot bound rho)."""
    # ||u_i||^2 = c_i b_i^2; no shifts: the samples that reach farthest one by one, the others in bulk
    drift = _top_drift(None, M * np.sqrt(reach[kept]), curvature[kept] * reach[kept])
    rho = drift.radius(delta)
    if not np.isfinite(rho):
        return np.inf, np.inf, 1.0
    low, high = (float(v[0]) for v in drift.bounds(np.array([rho])))
    inverse_drift = max(high / (1.0 + high) if np.isfinite(high) else 1.0, low / (1.0 - low) if low < 1.0 else np.inf)
    return rho, min(inverse_drift * delta, high * rho), low


def _newton_point_bounds(M, rho, r, low, reach, work, certified):
    """Bounds of ||theta_N - theta*||_{H_e} per set from each sample's own move, given bounds ``r``;
    and its first-order term ||D w~|| computed alone (NaN where not computed), an
    estimate (not a bound) of that distance.

    theta* - theta_N = H_bar^{-1} (H_bar - H_e) w with w = H_e^{-1} g; whitened, H_bar = I + D with
    D = sum_i phi_i u_i u_i^T, phi_i = c_bar_i / c_i - 1 (c_bar_i sample i's curvature averaged over
    the segment to theta*), sum_i u_i u_i^T <= I and H_bar >= (1 - low) I, so
    ||theta_N - theta*||_{H_e} <= ||D w~|| / (1 - low). With Delta_i = x~_i^T (theta* - theta_e) and
    G(t) = log c_i(eta + t Delta_i) - log c_i, G'(0) = kappa_i Delta_i (kappa = (log l'')' at theta_e),
    |G''| <= L Delta_i^2 (L = 1/2 logistic, 0 Poisson) and |G| <= M t |Delta_i|, so

        |phi_i - kappa_i Delta_i / 2| <= Delta_i^2 (L + M^2 e^{M |Delta_i|}) / 6.

    Delta_i = -x~_i^T w + x~_i^T (theta* - theta_N), the last at most b_i r, and |Delta_i| <= a_i =
    min(|x~_i^T w| + b_i r, b_i rho). So D w~ is H_e^{-1/2} X~^T (c o phi0 o X~ w) with
    phi0_i = -kappa_i x~_i^T w / 2, computed, up to a vector of norm at most
    (sum_i eps_i^2 c_i (x~_i^T w)^2)^{1/2}, eps_i = M b_i r / 2 + a_i^2 (L + M^2 e^{M a_i}) / 6: the
    sample-by-sample error is third order. Each bound r gives a smaller one (the map is monotone
    in r). Samples whose curvature underflows count at its floor in eps (their phi0 term joins eps).
    Where samples move far (a_i of order one), |phi_i| <= (e^{a_i} - 1) / a_i - 1 <= (a_i / 2) e^{a_i}
    alone, through ||D w~|| <= (sum_i phi_i^2 c_i (x~_i^T w)^2)^{1/2}, is the better of the two."""
    guess = np.full(r.shape, np.nan)
    open_ = certified & (r > 0) & (low < 1.0)
    if not open_.any():
        return r, guess
    r = r.copy()
    rows, along, kappa, computed, above, inverses, L = work
    w = along[open_]
    phi0 = -0.5 * kappa[open_] * w
    v = (computed[open_] * phi0 * w) @ rows                                                    # X~^T (c o phi0 o X~ w)
    main = np.sqrt(np.maximum(np.einsum("bp,bpq,bq->b", v, inverses[open_], v), 0.0))
    lost = np.where(computed[open_] > 0, 0.0, np.abs(phi0))     # underflowed curvatures: all of phi in eps
    bounds = np.empty(int(open_.sum()))
    newton_point_remainders(np.ascontiguousarray(np.abs(w)), np.ascontiguousarray(reach[open_]),
                            np.ascontiguousarray(above[open_] * w**2), np.ascontiguousarray(lost), rho[open_],
                            r[open_], main, 1.0 / (1.0 - low[open_]), float(M), float(L), 3, bounds)
    r[open_] = np.where(np.isfinite(bounds), np.minimum(bounds, r[open_]), r[open_])
    guess[open_] = main
    return r, guess


def _bend(family):
    """A bound of |(log l'')''|: sigma (1 - sigma) <= 1/2 for the logistic loss, 0 for Poisson."""
    from ._families import Binomial

    return 0.5 if isinstance(family, Binomial) else 0.0


def _leave_out_norms(problem, removed, steps, along):
    """||w||_{H_0} per set, H_0 = H - X~_S^T C_S X~_S - (lambda(w) - lambda(w_S)) P^T P, from
    ``along`` = X~ w and the sets' indicators ``removed`` (B, n)."""
    value = np.einsum("bp,pq,bq->b", steps, problem.hessian, steps)
    value -= ((removed * along**2) @ problem.curvature
              + (removed @ problem.sample_penalty) * (steps**2 @ problem.penalty_diag))
    return np.sqrt(np.maximum(value, 0.0))


def _removal_mask(n, sets):
    """(len(sets), n): 1.0 where sample i is in set b, else 0.0."""
    mask = np.zeros((len(sets), n))
    lengths = [len(index) for index in sets]
    mask[np.repeat(np.arange(len(sets)), lengths), np.concatenate(sets) if sets else []] = 1.0
    return mask


def _leave_out_norm(problem, index, v):
    """||v||_{H_0} for one set (see :func:`_leave_out_norms`)."""
    return _leave_out_norms(problem, _removal_mask(problem.n_samples, [index]), v[None],
                            (_products(problem).rows @ v)[None])[0]


def certify_through(problem, sets, dthetas, rounds=None):
    """For each set, the certificates of its estimate and, while they are not certified or bound
    their Newton point only loosely (:func:`_loose`), of its successive Newton points (up to
    ``rounds`` more evaluations, :data:`_THROUGH_ROUNDS` by default, each one for all the sets
    still open, and only while the Newton decrement falls)."""
    rounds = _THROUGH_ROUNDS if rounds is None else rounds
    chains = [[cert] for cert in certify(problem, sets, dthetas)]
    for _ in range(rounds):
        open_ = [j for j, chain in enumerate(chains) if (not chain[-1].certified or _loose(chain[-1], dthetas[j]))
                 and chain[-1].newton is not None and (len(chain) == 1 or chain[-1].delta < chain[-2].delta)]
        if not open_:
            break
        for j, cert in zip(open_, certify(problem, [sets[j] for j in open_],
                                          np.array([chains[j][-1].newton for j in open_]))):
            chains[j].append(cert)
    return chains


def _loose(cert, dtheta):
    """Whether a certificate bounds its Newton point no closer to theta* than the Newton step's own
    length (the curvature may drift far within rho: p close to n), while its bound is above
    :data:`_LOOSE_FLOOR` of the change ``dtheta``: the evaluation at that point then bounds the
    estimate through it far more tightly, for one more evaluation. (Near the rounding floor, as at
    a converged refit, the Newton point's bound is rounding and a further evaluation gains nothing.)"""
    return (cert.certified and cert.newton_h > _LOOSE_NEWTON * cert.delta
            and cert.bound > _LOOSE_FLOOR * float(np.linalg.norm(dtheta)))


def params_certificates(problem, sets, dthetas):
    """(bound, bound_h) for each change in ``dthetas``, or None where this route proves nothing.

    The estimate is bounded through every point theta_k of its chain (:func:`certify_through`;
    theta_0 = theta_e) that is certified: ||theta_e - theta*|| <= ||theta_e - theta_k|| +
    bound(theta_k), or ||theta_e - theta_{N,k}|| + the bound of theta_k's own Newton point, in the
    2-norm and in H_0's (computed exactly); the smallest of each is kept."""
    out = []
    for index, dtheta, chain in zip(sets, dthetas, certify_through(problem, sets, dthetas)):
        bounds = []
        for k, cert in enumerate(chain):
            if not cert.certified:
                continue
            if k == 0:
                bounds.append((cert.bound, cert.bound_h))
                continue
            point = chain[k - 1].newton                       # theta_k - theta^, certified by ``cert``
            bounds.append((min(np.linalg.norm(dtheta - point) + cert.bound,
                               np.linalg.norm(dtheta - cert.newton) + cert.newton_bound),
                           min(_leave_out_norm(problem, index, dtheta - point) + cert.bound_h,
                               _leave_out_norm(problem, index, dtheta - cert.newton) + cert.newton_bound_h)))
        out.append((float(min(b for b, _ in bounds)), float(min(h for _, h in bounds))) if bounds else None)
    return out


def _newton_rounds(problem, sets, estimates, judge, rtol=None):
    """For each set, the record ``judge(positions, certificates, current, methods)`` returns (a dict
    position -> record) for the first of its estimate (RIF's) and the Newton points from it that
    it accepts, or None for the sets :data:`_AUTO_ROUNDS` rounds do not settle. A round is one
    evaluation for all the sets still open; a set moves on to its Newton point while its Newton
    decrement falls. ``rtol`` goes to :func:`certify`."""
    records = [None] * len(sets)
    current = np.array(estimates, dtype=float)
    methods = ["rif"] * len(sets)
    active, previous = list(range(len(sets))), {}
    for _ in range(_AUTO_ROUNDS):
        if not active:
            break
        certs = certify(problem, [sets[j] for j in active], current[active], rtol)
        accepted = judge(active, certs, current, methods)
        still, chords = [], {}
        for j, cert in zip(active, certs):
            if j in accepted:
                records[j] = accepted[j]
            elif cert.newton is not None and cert.delta < previous.get(j, np.inf):
                # not proved yet: the Newton step from here, and chord steps from it through this
                # evaluation's Hessian; the next round evaluates at the best of them
                current[j], methods[j], previous[j] = cert.newton, "retrain", cert.delta
                still.append(j)
                if rtol is not None and cert.chord is not None and _chord_expected(cert, rtol):
                    chords[j] = cert.chord
        if chords:
            settled = _chord_chains(problem, chords, previous, current, methods, judge, rtol)
            for j, record in settled.items():
                records[j] = record
            still = [j for j in still if j not in settled]
        active = still
    return records


def _chord_certificates(problem, chords, points):
    """Certificates of the points theta_P = theta^ + ``points`` (n_sets, p) through the exact
    Hessians H_e of earlier evaluations at theta_e (``chords``, one :class:`_Chord` per point), from
    one pass at the points; and the chord steps H_e^{-1} grad F_S(theta_P).

    Within H_e-distance t of theta_P each kept sample's linear predictor lies within
    alpha_i + beta_i t of its value at theta_e (alpha_i = M |x~_i^T (theta_P - theta_e)|, computed;
    beta_i = M b_i), so its curvature within e^{-+(alpha_i + beta_i t)} of c_i(theta_e): the
    thresholded drift of :class:`rif._certify._Drift`, whose radius at delta_P = ||g_P||_{H_e^{-1}}
    bounds ||theta_P - theta*||_{H_e} as at the estimate, with the gradient's rounding (a tilt,
    :func:`rif._rounding.tilt`) added. A chord step theta_P - H_e^{-1} g_P converges linearly, at the
    rate the curvature drifts between theta_e and theta*, and costs one pass (n p) and no Hessian.

    Each certificate is a :class:`DenseCertificate` that says nothing of the earlier point (bound
    inf) and bounds theta_P as its ``newton`` point (``newton_bound``, ``newton_bound_h``, and
    ``newton_h`` in H_e's norm, with ``inverse`` = H_e^{-1}); ``delta`` is delta_P."""
    M = concordance(problem.family)
    rows = _products(problem).rows
    points = np.asarray(points, dtype=float).reshape(len(chords), rows.shape[1])
    thetas = problem.theta[None, :] + points
    weights = np.array([chord.weights for chord in chords])
    etas, d1, d2, _, _, grads = _pass(problem, rows, thetas, weights)
    inverses = np.array([chord.inverse for chord in chords])
    steps = np.einsum("bpq,bq->bp", inverses, grads)                                           # H_e^{-1} g_P
    delta = np.sqrt(np.maximum(np.einsum("bp,bp->b", grads, steps), 0.0))
    low = np.array([chord.low for chord in chords])
    # the computed g_P's rounding in H_e^{-1}'s norm (H_e >= X~^T C_e X~)
    _, errors = _rounding.scalar_gradient_error(problem, weights, thetas, weights * np.abs(d1), weights * d2,
                                                np.abs(etas), 0.0, M, low,
                                                np.array([chord.curvature for chord in chords]))
    # theta_P = fl(theta^ + point) is itself rounded: its distance to theta^ + point joins the bounds
    rounding = _ROUNDING * (np.linalg.norm(thetas, axis=1) + np.linalg.norm(points, axis=1))
    usable = np.all(np.isfinite(grads), axis=1) & np.isfinite(delta)
    root_trace = np.sqrt(np.trace(problem.hessian))
    out = []
    for b, chord in enumerate(chords):
        rho = np.inf
        if usable[b]:
            kept = chord.weights > 0
            alpha = np.where(kept, M * np.abs(etas[b] - chord.eta), 0.0)     # removed samples: weight 0
            drift = _top_drift(alpha, M * np.sqrt(chord.reach), chord.above * chord.reach)
            rho = drift.radius(float(delta[b]))
            if np.isfinite(rho):
                def kappa(r, drift=drift):      # the Hessian within r of theta_P, relative to H_e
                    return max(1.0 - float(drift.bounds(np.array([r]), sides=(0,))[0][0]), 0.0)

                rho += _rounding.tilt(float(errors[b]), rho, kappa)
        if not np.isfinite(rho):
            out.append(DenseCertificate(np.inf, np.inf, False, points[b], delta=float(delta[b])))
            continue
        with np.errstate(over="ignore", invalid="ignore"):
            grown = chord.grow * rho if rho > 0 else 0.0
        widen = chord.widen
        out.append(DenseCertificate(
            np.inf, np.inf, True, points[b],
            newton_bound=widen * (rho / np.sqrt(chord.low) + rounding[b]),
            newton_bound_h=widen * (grown + rounding[b] * root_trace),                        # H_0 <= H <= tr H
            delta=float(delta[b]), newton_h=widen * (rho + rounding[b] * np.sqrt(chord.trace)),
            inverse=chord.inverse))
    return out, steps


def _top_drift(alpha, beta, weight):
    """:class:`rif._certify._Drift` of samples moving by alpha_i + beta_i t with ``weight``: the
    :data:`rif._certify._TOP` largest in alpha and in beta one by one, every other one's move bounded
    by the largest alpha and the largest beta outside those. ``alpha`` None: no shifts (alpha = 0),
    the samples taken by beta alone."""
    n = beta.size
    if alpha is None:
        if n <= _TOP:
            return _Drift.of(np.zeros(n), beta, weight)
        by_beta = np.argpartition(beta, n - _TOP - 1)
        top = by_beta[n - _TOP:]
        return _Drift.of(np.zeros(_TOP), beta[top], weight[top], 0.0, beta[by_beta[n - _TOP - 1]])
    if n <= 2 * _TOP:
        return _Drift.of(alpha, beta, weight)
    by_alpha, by_beta = np.argpartition(alpha, n - _TOP - 1), np.argpartition(beta, n - _TOP - 1)
    candidates = np.union1d(by_alpha[n - _TOP:], by_beta[n - _TOP:])
    return _Drift.of(alpha[candidates], beta[candidates], weight[candidates],
                     alpha[by_alpha[n - _TOP - 1]], beta[by_beta[n - _TOP - 1]])


def _chord_expected(cert, rtol):
    """Whether a chord step from ``cert``'s Newton point is expected to prove ``rtol`` there: the
    evaluation was certified (the curvature drifts little within its reach) and the first-order
    estimate of the Newton point's error, :data:`_CHORD_LOOSENESS` times, proves it."""
    return cert.certified and relative_ok(float(np.linalg.norm(cert.newton)), _CHORD_LOOSENESS * cert.newton_guess,
                                          rtol)


def _chord_chains(problem, chords, deltas, current, methods, judge, rtol):
    """Chord steps for the sets of ``chords`` (position -> :class:`_Chord`), whose ``current``
    points are Newton points of an evaluation with Newton decrements ``deltas`` there: each step one
    pass for all the sets still open (:func:`_chord_certificates`), its points offered to ``judge``
    (as by :func:`_newton_rounds`). A set not accepted moves on to its next chord point, up to
    :data:`_CHORD_STEPS` steps, while the decrement fell to at most :data:`_CHORD_SHRINK` of the
    last and the bound, shrunk at that rate once more, would prove ``rtol``. Returns the accepted
    records (position -> record); each other set's ``current`` point becomes the point of its chain
    with the smallest decrement."""
    settled = {}
    open_ = list(chords)
    points = {j: np.array(current[j]) for j in open_}
    last = {j: deltas[j] for j in open_}
    best = dict(last)
    for _ in range(_CHORD_STEPS):
        if not open_:
            break
        certs, steps = _chord_certificates(problem, [chords[j] for j in open_], np.array([points[j] for j in open_]))
        accepted = judge(open_, certs, current, methods)
        still = []
        for j, cert, step in zip(open_, certs, steps):
            if j in accepted:
                settled[j] = accepted[j]
                continue
            if cert.delta < best[j]:
                current[j], best[j] = points[j], cert.delta
            rate = cert.delta / last[j] if last[j] > 0 else np.inf
            if rate <= _CHORD_SHRINK and relative_ok(float(np.linalg.norm(points[j] - step)),
                                                     rate * cert.newton_bound, rtol):
                points[j], last[j] = points[j] - step, cert.delta
                still.append(j)
        open_ = still
    return settled


def auto(problem, sets, estimates, rtol):
    """``method="auto"`` through exact Hessians: for each set, (value, bound, bound_h, method) for
    the first of its estimate (RIF's) and the Newton points from it whose certified relative error
    is at most ``rtol``, or None for the sets this does not settle (:func:`_newton_rounds`)."""
    def judge(positions, certs, current, methods):
        accepted = {}
        for j, cert in zip(positions, certs):
            if cert.certified and relative_ok(np.linalg.norm(current[j]), cert.bound, rtol):
                accepted[j] = (current[j], cert.bound, cert.bound_h, methods[j])
            elif cert.certified and relative_ok(np.linalg.norm(cert.newton), cert.newton_bound, rtol):
                accepted[j] = (cert.newton, cert.newton_bound, cert.newton_bound_h, "retrain")
        return accepted

    return _newton_rounds(problem, sets, estimates, judge, rtol)


# -- effects ---------------------------------------------------------------------------------------
def effect_records(problem, sets, estimates, targets, reach_of, method, rtol):
    """Certified effects f(theta_{-S}) - f(theta^) through exact Hessians: for each set, (value, bound,
    True, "", method) or None where this route leaves the set open.

    For an estimate theta_e with Newton point theta_N, |f(theta_e) - f(theta*)| <= |f(theta_e) -
    f(theta_N)| (computed) + |f(theta_N) - f(theta*)|, and with d = theta* - theta_N, ||d||_{H_e} <= e_N,

        |f(theta_N) - f(theta*)| <= ||grad f(theta_N)||_{H_e^{-1}} e_N + (1/2) sum_j kappa_j (x~_j^T d)^2,

    kappa_j a bound of |phi_j''| within t_j = e_N ||x~_j||_{H_e^{-1}} of x~_j^T theta_N. The rows' reach is
    taken from H: H_e^{-1} <= mu H^{-1} with mu >= lambda_max(H_e^{-1} H), so t_j^2 <= e_N^2 mu q_j and the
    sum is bounded through mu times the top eigenvalue of X~_t H^{-1} X~_t^T (``reach_of(target)``, a
    :class:`rif._certify._EvalReach`) as well as row by row. The estimate is bounded through every
    certified point of its chain (:func:`certify_through`: its Newton points, while a point is not
    certified or bounds its Newton point loosely), each through its own Newton point theta_N:
    |f(theta_e) - f(theta_N)| + |f(theta_N) - f(theta*)|, the smallest kept. ``method="auto"``
    (``rtol`` its relative accuracy) returns the first of RIF's estimate (``estimates``) and the
    Newton points from it whose bound proves rtol, as for the parameters (:func:`_newton_rounds`)."""
    records = [None] * len(sets)
    if method != "auto":
        chains = certify_through(problem, sets, estimates)
        # every certified point of each chain, (set, certificate) pairs
        pairs = [(j, cert) for j in range(len(sets)) for cert in chains[j] if cert.certified]
        for group in _by_target(list(range(len(pairs))), [targets[j] for j, _ in pairs]):
            target = targets[pairs[group[0]][0]]
            values, newton_values, newton_bounds = _effect_bounds(
                problem, [pairs[k][1] for k in group], [estimates[pairs[k][0]] for k in group], target,
                reach_of(target))
            for k, value, newton_value, newton_bound in zip(group, values, newton_values, newton_bounds):
                # through that point's Newton point: |f(theta_e) - f(theta_N)| + its own bound
                j, bound = pairs[k][0], float(abs(value - newton_value) + newton_bound)
                if records[j] is None or bound < records[j][1]:
                    records[j] = (float(value), bound, True, "", method)
        return records

    def judge(positions, certs, current, methods):
        accepted = {}
        done = {j: cert for j, cert in zip(positions, certs) if cert.certified}
        for group in _by_target(list(done), targets):
            target = targets[group[0]]
            found = _effect_bounds(problem, [done[j] for j in group], current[group], target, reach_of(target))
            for j, value, newton_value, newton_bound in zip(group, *found):
                bound = float(abs(value - newton_value) + newton_bound)
                if relative_ok(abs(value), bound, rtol):
                    accepted[j] = (float(value), bound, True, "", methods[j])
                elif relative_ok(abs(newton_value), newton_bound, rtol):
                    accepted[j] = (float(newton_value), float(newton_bound), True, "", "retrain")
        return accepted

    return _newton_rounds(problem, sets, estimates, judge)


def _by_target(positions, targets):
    """``positions`` grouped by the identity of their target (in order)."""
    groups = {}
    for j in positions:
        groups.setdefault(id(targets[j]), []).append(j)
    return list(groups.values())


def _effect_bounds(problem, certs, estimates, target, reach):
    """For certified sets sharing ``target``: (f(theta_e) - f(theta^) for each of ``estimates``,
    f(theta_N) - f(theta^), a bound of |f(theta_N) - f(theta*)|), theta_N the Newton point of each
    certificate's point (see :func:`effect_records`); one product with the target's rows for all."""
    from ._certify import certifier

    newtons = np.array([cert.newton for cert in certs])
    changes = target.changes(problem.theta, np.concatenate([np.asarray(estimates, dtype=float), newtons]))
    values, newton_values = changes[:len(certs)], changes[len(certs):]
    thetas = problem.theta[None, :] + newtons
    etas = _design.linear_predictor(target.X, thetas.T, target.fit_intercept)                 # (m, n_sets)
    if target.offset is not None:
        etas = etas + target.offset[:, None]
    B, m = len(certs), etas.shape[0]
    labels = None if target.y is None else np.tile(target.y, B)        # for the sets' etas, set by set
    slopes = target.phi(etas.T.ravel(), labels)[1].reshape(B, m).T                          # phi_j'
    grads = np.asarray(target.X.T @ slopes)
    if target.fit_intercept:
        grads = np.vstack([grads, slopes.sum(axis=0)])
    grads = grads.T                                                                            # grad f(theta_N)
    inverses = np.array([cert.inverse for cert in certs])
    radii = np.array([cert.newton_h for cert in certs])
    first = np.sqrt(np.maximum(np.einsum("bp,bpq,bq->b", grads, inverses, grads), 0.0)) * radii
    mus = _pencil_top(problem, inverses)
    t = radii[:, None] * np.sqrt(mus[:, None] * np.maximum(reach.q, 0.0)[None, :])               # (B, m)
    kappa = certifier(problem)._phi_curvature(target, etas.T.ravel(), t.ravel(), labels).reshape(B, m)
    bounds = first + 0.5 * _curvature_weighted_square(kappa, t**2, radii**2 * mus * reach.top)
    return values, newton_values, np.where(np.isfinite(bounds), bounds, np.inf)


def _pencil_top(problem, inverses):
    """Upper bounds of lambda_max(H_e^{-1} H) = lambda_max(L^T H_e^{-1} L) (H = L L^T, cached) for a
    stack of H_e^{-1}, by the same eighth-power argument as :func:`_lambda_min_lower`, plus the
    rounding of the two products, at most 4 p eps ||L||_F^2 ||H_e^{-1}||_F."""
    chol, chol_t = _products(problem).hessian_factor
    pencil = chol_t[None] @ inverses @ chol[None]
    pencil = 0.5 * (pencil + pencil.transpose(0, 2, 1))
    rounding = 4.0 * pencil.shape[1] * np.finfo(float).eps * np.sum(chol**2) * np.linalg.norm(inverses, axis=(1, 2))
    return _top_eigenvalue_upper(pencil) + rounding
