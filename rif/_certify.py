"""Certified error bounds for a leave-k-out estimate, from one pass over the data at the estimate
(and, for loose ones, one product with its chord step, which sharpens them, and a pass at its
landing point).

Let F be the objective without the set S, theta* its minimiser, theta_e = theta^ + dtheta_est
an estimate, g = grad F(theta_e), and H_0 = H_{-S}(theta^) the leave-S-out Hessian at theta^,
which the Newton step already factorises (Woodbury on H).

**Curvature along the way.** The logistic and Poisson losses satisfy |l'''| <= M l'' with
M = 1 (squared loss: M = 0), so log l'' is M-Lipschitz in eta and, for every theta,

    c_i(theta) / c_i(theta^) in [e^{-a_i}, e^{a_i}],   a_i = M |x~_i^T (theta - theta^)|.

Within H_0-distance t of theta_e, a_i <= alpha_i + beta_i t with alpha_i = M |x~_i^T dtheta_est|
(read off the same pass that gives g) and beta_i = M ||x~_i||_{H_0^{-1}} <= M (q_i / (1 - gamma))^{1/2},
where H_0 >= (1 - gamma) H; 1 - gamma is proved from the matrix the leave-out factorisation
already formed (see :meth:`Certifier.factor`). In the whitened coordinates of H_0 the Hessian of
F is I + sum_i (c_i(theta) / c_i - 1) u_i u_i^T with ||u_i||^2 <= h_i / (1 - gamma) (h_i the
cached leverages), so its eigenvalues lie in [1 - low(t), 1 + high(t)] (:class:`_Drift`), where,
for every threshold T,

    low(t), high(t) <= f(T) + sum_{a_i > T} f(a_i) h_i / (1 - gamma),   f(a) = 1 - e^{-a}, e^a - 1.

(T = max_i a_i gives the single exponential e^{-m - s_0 t} of a generalized self-concordance
argument; smaller T pay off when the samples that move most carry little curvature.)

**The bound.** Along u = (theta* - theta_e) / rho, rho = ||theta* - theta_e||_{H_0}, the
directional derivative of the convex F rises from g^T u >= -delta' (delta' = ||g||_{H_0^{-1}}) to 0
at rho, at a rate of at least 1 - low(t); so rho is at most the first r at which the integral
of (1 - low)^+ from 0 to r reaches delta'. That is ``bound_h``; the estimate is then *certified*.
On the segment from theta_e to theta* the averaged Hessian lies between (1 - low(rho)) H_0 and
(1 + high(rho)) H_0, so the error is H_0^{-1} g up to a vector of H_0-norm at most

    spread_h = min(max(high / (1 + high), low / (1 - low)) delta', high rho),

which gives the parameter bound

    ||theta_e - theta*||_2 <= ||H_0^{-1} g||_2 + spread_h / sqrt(lambda_min(H_0)),

and bounds the chord step's landing point theta_e - H_0^{-1} g by spread_h alone. For a target
f(theta) = sum_j phi_j(x~_j^T theta), a dual-weighted residual bound

    |f(theta*) - f(theta_e)| <= |grad f^T H_0^{-1} g| + spread_h ||grad f||_{H_0^{-1}}
                                + (1/2) sum_j kappa_j t_j^2,   t_j = rho ||x~_j||_{H_0^{-1}},

with kappa_j a bound of |phi_j''| within t_j of eta_j (the same exponential argument). The same
expansion around the chord point theta_c = theta_e - H_0^{-1} g, which lies within spread_h of
theta*, gives |f(theta_c) - f(theta_e)| (computed exactly) + spread_h ||grad f(theta_c)||_{H_0^{-1}}
+ (1/2) sum_j kappa_j (spread_h ||x~_j||_{H_0^{-1}})^2; the smaller of the two is returned (for
squared loss, spread_h = 0 and the second is the exact error).

**Sharpening** (:meth:`Certifier.sharpen`, from one more product X~ w with the chord step w =
H_0^{-1} g): each sample's own move along w replaces the worst case, spread_h is bounded through
||D b|| and the drift over the hull of theta_e and a ball around the chord point, and a Brouwer
fixed-point test on that ball certifies some estimates the radius integral could not. The
effects' second-order term is bounded through the top eigenvalue of X~_t H^{-1} X~_t^T as well
as point by point (:func:`_curvature_weighted_square`).
**Through the chord point** (:meth:`Certifier.refine_all`, one more pass for the certificates still
loose): the pass at theta_c certifies it, theta* within rho_c, with the same factorisation, and
the triangle inequality bounds theta_e by delta' + rho_c (H_0-norm) and ||H_0^{-1} g||_2 + bound(theta_c);
effects add theta_c's own effect bound to |f(theta_e) - f(theta_c)|, computed exactly.
When the integral never reaches delta' and sharpening does not help, only strong convexity is left:
||theta_e - theta*||_2 <= ||g||_2 / lambda without an unpenalised intercept (not certified),
and nothing (inf) with one.
"""

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from . import _design, _rounding
from ._config import BLOCK_VALUES
from ._families import Binomial, Gaussian, Poisson

#: :meth:`Certifier.refine_all` makes a pass at the chord point when the H_0-norm bound exceeds
#: delta' (its least possible value there) by more than this fraction
_REFINE_LOOSENESS = 0.2
#: ... and takes up to this many chord points more, along the chain, for chord points its pass leaves
#: uncertified or only loosely certified (:func:`_far_from_proved`; scalar GLMs, see
#: :attr:`Certifier.refine_depth`). On ESC-50's distribution at
#: 1600 x 512 (per-sample lambda = 1e-3, 30 sets of 1-10 %) four took the RIF estimates certified
#: from 2 to 6 and their median test-loss bound from 4.2x to 1.4x the error (one: 2 certified; six
#: and more: 7, 1.1-1.3x, up to twice the time); at 3200 x 256 the median from 1.3x to 1.05x, in the
#: same time: the passes cost little beside the factorisations (docs/benchmarks.md)
_REFINE_DEPTH = 4


def loose(cert):
    """Whether a certificate may gain from more work (sharpening, a pass at its chord point): not
    certified, or its H_0-norm bound more than ``_REFINE_LOOSENESS`` above delta' = ||g||_{H_0^{-1}},
    near which the true distance lies when the curvature barely drifts."""
    return not cert.certified or not cert.bound_h <= (1.0 + _REFINE_LOOSENESS) * cert.delta_prime


def _far_from_proved(cert):
    """Whether a chord point's certificate is worth the next chord point's pass: not certified, or its
    H_0-norm bound more than ``_CHAIN_LOOSENESS`` times delta' (far looser than what :func:`loose`
    refines)."""
    return not cert.certified or not cert.bound_h <= _CHAIN_LOOSENESS * cert.delta_prime


#: :func:`_far_from_proved`'s factor
_CHAIN_LOOSENESS = 4.0


#: above every per-sample curvature l'' that underflows (its true value is then below 5e-324):
#: the drift bounds c(theta) <= c(theta_e) e^a are multiplicative, and a computed 0 would drop a
#: sample whose curvature can grow by more than the range of floats
CURVATURE_FLOOR = 1e-300


def curvature_above(curvature, weights):
    """An upper bound of each sample's weighted curvature w_i l''_i (computed as ``curvature``):
    at least w_i CURVATURE_FLOOR where w_i > 0, exactly 0 where w_i = 0."""
    return np.where(weights > 0, np.maximum(curvature, weights * CURVATURE_FLOOR), 0.0)


#: sigma'' is bounded by 1 / (6 sqrt 3) over the real line
_SIGMOID_CURVATURE = 1.0 / (6.0 * np.sqrt(3.0))


def concordance(family):
    """M with |l'''| <= M l'' for the family's loss, or None when rif knows no such constant."""
    if isinstance(family, Gaussian):
        return 0.0
    if isinstance(family, (Binomial, Poisson)):
        return 1.0
    return None


@dataclass
class Certified:
    """An estimate with a rigorous error bound (arrays over sets for a batch).

    Attributes
    ----------
    value : float or ndarray
        The estimate itself, as without ``certify``.
    bound : float or ndarray
        Upper bound on ||dtheta_est - dtheta*||_2 (parameters) or |effect_est - effect*|
        (effects); ``inf`` when nothing can be said.
    bound_h : float or ndarray
        For parameters, the bound in the norm of H_{-S}(theta^) (NaN for effects).
    certified : bool or ndarray
        True when the sharp (self-concordance) route applied; False when only the loose
        strong-convexity bound (or none) holds.
    reason : str or ndarray of str
        Why an estimate is not certified ("" when it is).
    method : str or ndarray of str
        The estimator that produced ``value`` (with ``method="auto"``, the one chosen per set).
    """

    value: object
    bound: object
    bound_h: object
    certified: object
    reason: object
    method: object = field(default=None)

    def __repr__(self):
        """One line: the value's shape (its number for a scalar) and the bounds (their range over a
        batch), what was certified and by which estimator."""
        value = np.asarray(self.value)
        shown = f"{float(value):.6g}" if value.ndim == 0 else f"<array of shape {value.shape}>"
        bound = np.asarray(self.bound, dtype=float)
        if bound.ndim == 0:
            rest = (f"bound={float(bound):.3g}, bound_h={float(self.bound_h):.3g}, certified={bool(self.certified)}, "
                    f"method={self.method!r}" + (f", reason={self.reason!r}" if self.reason else ""))
        else:
            methods = dict(zip(*np.unique(np.asarray(self.method, dtype=str), return_counts=True)))
            rest = (f"bound in [{bound.min():.3g}, {bound.max():.3g}], certified {int(np.sum(self.certified))} of "
                    f"{bound.size}, methods {', '.join(f'{m}: {k}' for m, k in methods.items())}")
        return f"Certified(value={shown}, {rest})"


@dataclass
class _SetCertificate:
    bound: float
    bound_h: float
    certified: bool
    reason: str
    rho: float = np.inf
    spread_h: float = np.inf         # ||theta_e - theta* - H_0^{-1} g||_{H_0} bound
    solve: object = None
    step: np.ndarray = None          # H_0^{-1} g (also when not certified, for a chord step)
    theta_e: np.ndarray = None
    gamma: float = 1.0
    next_bound: float = np.inf       # bounds for theta_e - step, the chord step from theta_e
    next_bound_h: float = np.inf
    # for the effects' first-order drift term (scalar GLMs): the pass, the drift at rho, delta'
    index: np.ndarray = None
    alpha: np.ndarray = None
    drift_at_rho: tuple = (np.inf, np.inf)
    delta_prime: float = np.inf
    effect_columns: tuple = None     # (gradients, their H_0^{-1} solves, the target) made by prepare_effects
    effect_rows: np.ndarray = None   # X~ [step, solves], (n, 3); X~ step alone, (n, 1), while uncertified
    curvature_e: np.ndarray = None   # l''(eta_i) at theta_e from the pass (scalar GLMs; None: not known)
    chord_effect: tuple = None       # (target, bound of |f(theta_c) - f(theta*)|) from effect_bound
    effect_points: tuple = None      # (target, [(theta, bound of |f(theta) - f(theta*)|), ...]) from effect_bound
    gradient: np.ndarray = None      # grad F_S(theta_e) and F_S(theta_e) from the pass (None: not known)
    value: float = None
    chord_point: object = None       # the certificate of theta_e - step from its own pass (refine_all)
    # the computed gradient's rounding: a bound of ||fl(g) - g||_{H_0^{-1}}, and what it adds to every
    # H_0-norm bound of theta* (rif._rounding; already included in rho, spread_h and the bounds)
    gradient_error_h: float = 0.0
    rounding: float = 0.0

    def summary(self):
        """The bound alone (bound, bound_h, certified, reason), without the per-set work arrays."""
        return _SetCertificate(self.bound, self.bound_h, self.certified, self.reason)


@dataclass
class _SetFactor:
    """H_0 = H_{-S}(theta^) of one set: its solve and ``floor`` <= lambda_min(H^{-1/2} H_0 H^{-1/2})
    (= 1 - gamma), or ``solve=None`` with the reason when H_0 is (numerically) singular."""

    solve: object
    floor: float
    reason: str = ""


class _Drift:
    """How far the curvature of F_S may drift from H_0 within H_0-distance t of theta_e.

    With u_i = c_i^{1/2} H_0^{-1/2} x~_i (curvature at theta^), H_0^{-1/2} grad^2 F_S(theta) H_0^{-1/2}
    = I + sum_{i not in S} (c_i(theta) / c_i - 1) u_i u_i^T, and c_i(theta) / c_i lies in
    [e^{-a_i}, e^{a_i}] for a_i = alpha_i + beta_i t (alpha_i = M |x~_i^T dtheta_est|, beta_i =
    M ||x~_i||_{H_0^{-1}} <= M (q_i / (1 - gamma))^{1/2}). For any threshold T, the samples with
    a_i <= T move the spectrum by at most f(T) and each other sample by at most f(a_i) ||u_i||^2,
    ||u_i||^2 <= h_i / (1 - gamma); so the eigenvalues lie in [1 - low(t), 1 + high(t)] with

        low(t), high(t) = min_T [f(T) + sum_{a_i > T} f(a_i) h_i / (1 - gamma)],

    f(a) = 1 - e^{-a} and e^a - 1. T = max_i a_i gives the single-exponential bound; lower
    thresholds pay off when the samples that move most (large |x~_i^T dtheta| or ||x~_i||) carry
    little curvature, as the well-classified ones of a near-separable fit do. Only the ``_TOP``
    samples largest in alpha and in q enter the sums; T stays at or above what the others can
    reach.
    """

    def __init__(self, certifier, index, alpha, floor):
        n = len(alpha)
        by_q = certifier.q_order
        if n > _TOP:
            by_alpha = np.argpartition(alpha, n - _TOP - 1)
            candidates = np.union1d(by_alpha[n - _TOP:], by_q[:_TOP])
            self.alpha_rest = float(alpha[by_alpha[n - _TOP - 1]])
            self.beta_rest = certifier.M * float(np.sqrt(certifier.reach[by_q[_TOP]] / floor))
        else:
            candidates = np.arange(n)
            self.alpha_rest = self.beta_rest = 0.0
        self.alpha = alpha[candidates]
        self.beta = certifier.M * np.sqrt(certifier.reach[candidates] / floor)
        self.weight = certifier.leverages[candidates] / floor
        removed = np.zeros(n, dtype=bool)
        removed[index] = True
        self.weight[removed[candidates]] = 0.0                  # removed samples are not in F_S

    @classmethod
    def of(cls, alpha, beta, weight, alpha_rest=0.0, beta_rest=0.0):
        """The drift of candidate samples that move by a_i = alpha_i + beta_i t and weigh ``weight``
        (||u_i||^2 in the whitened coordinates of the Hessian compared with), the others' moves
        bounded by alpha_rest + beta_rest t (for :mod:`rif._certify_dense`, at the exact Hessian
        of the estimate)."""
        drift = cls.__new__(cls)
        drift.alpha, drift.beta, drift.weight = (np.ascontiguousarray(a, dtype=float) for a in (alpha, beta, weight))
        drift.alpha_rest, drift.beta_rest = float(alpha_rest), float(beta_rest)
        return drift

    def bounds(self, ts, sides=(0, 1)):
        """(low(t), high(t)) for each t in ``ts`` (only the ``sides`` asked for; None for the other),
        by :func:`rif._kernels.drift_bounds`."""
        from ._kernels import drift_bounds

        ts = np.ascontiguousarray(ts, dtype=float)
        out = [None, None]
        for side in sides:
            out[side] = np.empty(ts.size)
            drift_bounds(self.alpha, self.beta, self.weight, self.alpha_rest, self.beta_rest, ts, side, out[side])
        return out[0], out[1]

    def radius(self, delta_prime):
        """An upper bound of rho = ||theta* - theta_e||_{H_0}: the directional derivative of F_S from
        theta_e towards theta* starts at >= -delta_prime and rises at a rate >= 1 - low(t), so it
        cannot reach 0 before the integral of (1 - low)^+ reaches delta_prime (F_S is convex, so
        nothing lies beyond). inf when the integral stays short over the grid."""
        if delta_prime == 0.0:
            return 0.0
        ts = delta_prime * _RADIUS_GRID
        rate = np.clip(1.0 - self.bounds(ts, sides=(0,))[0], 0.0, None)    # on [t_{k-1}, t_k], low <= low(t_k)
        reached = np.concatenate([[0.0], np.cumsum(np.diff(ts) * rate[1:])])
        hit = np.flatnonzero(reached >= delta_prime)
        if hit.size == 0:
            return np.inf
        k = hit[0]
        return float(ts[k - 1] + (delta_prime - reached[k - 1]) / rate[k])


#: samples largest in alpha and in q taken one by one into the curvature drift (the rest in bulk)
_TOP = 64
#: radii around the chord point tried, as multiples of delta', for an estimate not yet certified
_CHORD_GRID = np.geomspace(1e-3, 2.0, 24)
#: the radius is found on this grid of multiples of delta' (rho >= delta' always)
_RADIUS_GRID = np.concatenate([[0.0, 0.5, 1.0], 1.0 + np.geomspace(1e-4, 20.0, 24)])


#: :attr:`Certifier.lambda_min` proves lambda_min(H) by a factorisation up to this many parameters
#: when lambda alone already bounds it (above, lambda is kept: the factorisation's p^3 / 3 would
#: outweigh the certificates themselves)
_PROVED_LAMBDA_SIZE = 4096
#: ... trying these fractions of the Ritz value (the first that factorises is kept)
_PROVED_LAMBDA_FRACTIONS = (0.99, 0.95, 0.9, 0.75, 0.5, 0.25, 0.1)


class Certifier:
    """Certificates for removal sets of one problem (caches what all sets share)."""

    #: chord points :meth:`refine_all` may take along a chain beyond the first
    refine_depth = _REFINE_DEPTH

    def __init__(self, problem):
        self.problem = problem
        self.M = concordance(problem.family)

    @cached_property
    def lambda_min(self):
        """A proved lower bound of the smallest eigenvalue of H, through which every H-norm bound
        becomes a 2-norm one: the larger of lambda (without an unpenalised intercept, H >= lambda I)
        and the floor a factorisation of H - tau I proves (:func:`rif._linalg.certified_floor`,
        tau within a few per cent of lambda_min(H); one p^3 / 3 factorisation or two, once per
        problem). The data's curvature can lift lambda_min(H) far above lambda: 12.5 times at
        ESC-50's shape under the per-sample penalty (40 against 3.2 at n = 3200, d = 256), every
        2-norm bound's remainder then 3.5 times smaller. Without an intercept the factorisation is
        skipped above :data:`_PROVED_LAMBDA_SIZE` parameters and where p >= n (the data leave
        directions with the penalty alone); the dual route bounds ||H^{-1}|| by its kernel factor."""
        from ._linalg import certified_floor

        problem = self.problem
        lam = problem.penalty_total(problem.sample_weight)
        penalised = lam if not problem.fit_intercept and lam > 0 else 0.0
        if problem.route == "dual":
            return penalised or 1.0 / (problem.base_factor.inverse_norm_bound * (1.0 + 1e-8))
        p = problem.n_params
        if penalised > 0 and (p > _PROVED_LAMBDA_SIZE or p >= problem.n_samples):
            return penalised
        # (more columns and steps than for a leave-out floor: H's smallest eigenvalues cluster, and
        # this runs once per problem; 8 columns and 4 steps came out 12 % low at ESC-50's shape)
        proved = certified_floor(problem.hessian, problem.base_factor.cholesky, n_vectors=16, n_iter=12,
                                 fractions=_PROVED_LAMBDA_FRACTIONS, try_gershgorin=False)
        return max(penalised, proved)

    @property
    def reach(self):
        """q_i = x~_i^T H^{-1} x~_i: M q_i^{1/2} ||theta - theta_e||_H bounds how far sample i's
        linear predictor moves."""
        return self.problem.raw_leverage

    @cached_property
    def q_order(self):
        """Samples by decreasing q_i."""
        return np.argsort(-self.reach, kind="stable")

    @cached_property
    def leverages(self):
        """h_i = c_i q_i, the curvature-weighted leverages (||u_i||^2 at H_0 = H)."""
        problem = self.problem
        return curvature_above(problem.curvature, problem.sample_weight) * problem.raw_leverage

    # -- the leave-out factor of a set ---------------------------------------------------------
    def factor(self, index):
        """The :class:`_SetFactor` of removing ``index``: the Newton step's own factorisation of
        H_0 (Woodbury below p samples, H_0 itself from p on, the kernel's on the dual route) and
        a proved lower bound of 1 - gamma from the matrix that factorisation already formed."""
        from ._errors import SingularHessianError
        from ._estimators import leave_out_hessian
        from ._linalg import certified_floor
        from ._solvers import _cho_solver, direct_leave_out

        problem = self.problem
        if len(index) == 0:
            return _SetFactor(problem.base_factor.solve, 1.0)
        delta = float(problem.sample_penalty[index].sum())
        share = delta / problem.penalty_total(problem.sample_weight) if delta > 0 else 0.0
        try:
            if problem.route == "dual":
                return self._checked(leave_out_hessian(problem, index).solve, 1.0 - self._dual_gamma(index, share))
            if len(index) >= problem.n_params:
                # H_0 formed directly: the pencil (H_0, H) has the fractions of curvature kept
                hessian, chol, _ = direct_leave_out(problem, index)
                floor = certified_floor(hessian, chol, problem.hessian, max(self.lambda_min, 1e-300))
                return self._checked(_cho_solver(chol), floor)
            lo = leave_out_hessian(problem, index)
            # Woodbury's block I - W D W^T: its eigenvalues below one are the fractions kept (D = I)
            inner = min(1.0, certified_floor(lo.inner, lo.chol))
            if delta > 0 and np.all(lo.d == 1.0):
                floor = inner * (1.0 - share)        # built on H - delta P^T P >= (1 - delta / lambda) H
            else:
                floor = inner - share                 # D >= I, and delta P^T P <= (delta / lambda) H
            return self._checked(lo.solve, floor)
        except SingularHessianError:
            return _SetFactor(None, 0.0, "the leave-out Hessian is (numerically) singular")

    def gradient_error(self, index, dtheta, weights, alpha, floor):
        """Bounds of fl(g) - g in the 2-norm and in H_0^{-1}'s (H_0 >= ``floor`` H) for the gradient
        the pass computed at theta^ + dtheta (:mod:`rif._rounding`), from the per-sample values at
        theta^ and each linear predictor's move there: |eta_i - eta^_i| <= alpha_i / M, and
        ||x~_i|| ||dtheta|| for squared loss."""
        problem, M = self.problem, self.M
        residual_hat, eta_hat, above = self._at_theta_hat
        move = alpha / M if M > 0 else _rounding.row_norms(problem) * float(np.linalg.norm(dtheta))
        with np.errstate(over="ignore", invalid="ignore"):
            grown = np.expm1(alpha) / M if M > 0 else move        # int_0^move e^{M t} dt (inf past floats)
            # each curvature grows from above its computed value: one that underflowed to 0 still
            # grows without bound over a move past the range of floats (inf, never 0 times inf)
            residual = residual_hat + np.where(above > 0, above * grown, 0.0)
        return _rounding.scalar_gradient_error(problem, weights, problem.theta + dtheta, residual,
                                               above, eta_hat + move, move, M,
                                               floor * self.lambda_min, above, floor,
                                               _rounding.summation_length(problem))

    @cached_property
    def _at_theta_hat(self):
        """|r_i|, |eta_i| and curvature_above(c_i) at theta^ (H >= X~^T C X~): what :meth:`gradient_error`
        grows from."""
        problem = self.problem
        return (np.abs(problem.residual), np.abs(problem.eta),
                curvature_above(problem.curvature, problem.sample_weight))

    @staticmethod
    def _public(vector):
        """A parameter vector in the order the user sees (the problem's own here)."""
        return vector

    @staticmethod
    def _checked(solve, floor):
        if not floor > 1e-12:
            return _SetFactor(solve, 0.0, "no positive floor of the leave-out Hessian's curvature relative to H "
                                          "could be proved (it is (nearly) singular, or the set removes too much)")
        return _SetFactor(solve, float(floor))

    def _dual_gamma(self, index, share):
        """gamma on the dual route: the largest eigenvalue of C_S^{1/2} X~_S H^{-1} X~_S^T C_S^{1/2}
        (from the kernel's row products), plus the penalty share removed."""
        problem = self.problem
        root = np.sqrt(problem.curvature[index])
        block = problem.base_factor.row_products(index, index)
        block = root[:, None] * block * root[None, :]
        return float(np.linalg.eigvalsh(0.5 * (block + block.T))[-1]) + share

    # -- one pass at the estimates ---------------------------------------------------------------
    def evaluate(self, sets, dthetas, curvatures=False):
        """(g, alpha, F_S(theta_e)) per set, and with ``curvatures`` l''(eta_e) last: g = grad F_S(theta_e),
        alpha_i = M |x~_i^T dtheta_est| for the kept samples (0 for the removed ones) and each
        sample's unweighted curvature at theta_e (for the effects' drift terms), both of shape (n,).

        In-memory X: one pass for up to 64 sets at once, eta = X~ Theta_e and X~^T (W o l'(eta))
        as matrix products; a dask X: one pass per set."""
        problem = self.problem
        out = []
        if _design.is_dask(problem.X):
            for index, dtheta in zip(sets, dthetas):
                weights = problem.sample_weight.copy()
                weights[index] = 0.0
                theta_e = problem.theta + dtheta
                eta_e = problem._eta_at(theta_e)
                deviation = np.where(weights > 0, np.abs(eta_e - problem.eta), 0.0)
                loss, d1, d2 = problem.family.derivatives(eta_e, problem.y)
                lam = problem.penalty_total(weights)
                g = (_design.rmatvec(problem.X, weights * d1, problem.fit_intercept)
                     + lam * problem.penalty_diag * theta_e)
                value = float(weights @ loss + 0.5 * lam * (problem.penalty_diag @ theta_e**2))
                out.append((g, self.M * deviation, value) + ((d2,) if curvatures else ()))
            return out
        group = int(min(64, max(1, BLOCK_VALUES // problem.n_samples)))
        for start in range(0, len(sets), group):
            chunk = sets[start:start + group]
            thetas = (problem.theta + np.asarray(dthetas[start:start + group])).T          # (p, g)
            weights = np.repeat(problem.sample_weight[:, None], len(chunk), axis=1)
            for k, index in enumerate(chunk):
                weights[index, k] = 0.0
            values, grads, deviation, *second = _design.loss_gradients(
                problem.X, thetas, problem.fit_intercept, problem.y, weights, problem.family, problem.offset,
                reference=problem.eta, curvatures=curvatures)
            for k in range(len(chunk)):
                lam = problem.penalty_total(weights[:, k])
                g = grads[:, k] + lam * problem.penalty_diag * thetas[:, k]
                value = float(values[k] + 0.5 * lam * (problem.penalty_diag @ thetas[:, k]**2))
                out.append((g, self.M * deviation[:, k], value)
                           + ((np.ascontiguousarray(second[0][:, k]),) if curvatures else ()))
        return out

    # -- the certificate -----------------------------------------------------------------------
    def certify_set(self, index, dtheta, factor=None):
        """The :class:`_SetCertificate` of the estimate ``dtheta`` for removing ``index``."""
        if self.M is None:
            return _SetCertificate(np.inf, np.inf, False, f"no certificate for the {self.problem.family.name} family")
        (g, alpha, value, *curvature), = self.evaluate([index], [dtheta], curvatures=True)
        return self.certify(index, dtheta, g, alpha, self.factor(index) if factor is None else factor, value,
                            *curvature)

    def certify(self, index, dtheta, g, alpha, factor, value=None, curvature=None):
        """The certificate from the pass at the estimate (``g``, ``alpha``, and the objective
        ``value`` and each sample's curvature l''(eta_e) if known) and the set's ``factor``."""
        out = self._certify(index, dtheta, g, alpha, factor)
        out.gradient, out.value, out.curvature_e = g, value, curvature
        return out

    def _certify(self, index, dtheta, g, alpha, factor):
        problem = self.problem
        if self.M is None:
            return _SetCertificate(np.inf, np.inf, False, f"no certificate for the {problem.family.name} family")
        weights = problem.sample_weight.copy()
        weights[index] = 0.0
        lam_s = problem.penalty_total(weights)
        theta_e = problem.theta + dtheta
        if not (np.all(np.isfinite(g)) and np.all(np.isfinite(alpha))):
            return _SetCertificate(np.inf, np.inf, False, "the gradient at the estimate is not finite")
        if factor.solve is None:
            return self._loose(g, lam_s, factor.reason)
        solve, one_minus_gamma = factor.solve, factor.floor
        step = solve(g)
        with np.errstate(over="ignore", invalid="ignore"):        # a far estimate: inf, no sharp bound
            delta_prime = float(np.sqrt(max(g @ step, 0.0)))
        step = self._public(step)
        # >= ||fl(g) - g||_2 and ||fl(g) - g||_{H_0^{-1}}
        error, error_h = self.gradient_error(index, dtheta, weights, alpha, one_minus_gamma)
        if factor.reason:
            out = self._loose(g, lam_s, factor.reason, error)
            out.solve, out.step, out.theta_e = solve, step, theta_e
            return out
        lam_min_h0 = one_minus_gamma * self.lambda_min
        root = np.sqrt(lam_min_h0) if lam_min_h0 > 0 else 0.0
        drift = _Drift(self, index, alpha, one_minus_gamma)
        # everything below holds for theta*_eps, the minimiser of the objective tilted by the rounding
        # (whose gradient at theta_e is the computed g); rounding = the further way to theta*
        rho = drift.radius(delta_prime)
        if not np.isfinite(rho):
            out = self._loose(g, lam_s, "outside the self-concordant region (the curvature cannot be bounded "
                                        "below far enough from the estimate)", error)
            out.solve, out.step, out.theta_e, out.gamma = solve, step, theta_e, 1.0 - one_minus_gamma
            out.index, out.alpha, out.delta_prime = index, alpha, delta_prime       # for sharpen
            out.gradient_error_h = error_h
            return out
        low, high = drift.bounds(np.array([rho]))
        low, high = float(low[0]), float(high[0])
        # the averaged Hessian on [theta_e, theta*] lies between (1 - low) H_0 and (1 + high) H_0
        inverse_drift = max(high / (1.0 + high), low / (1.0 - low) if low < 1.0 else np.inf)
        spread_h = float(min(inverse_drift * delta_prime, high * rho))
        rounding = _rounding.tilt(error_h, rho, lambda r: 1.0 - float(drift.bounds(np.array([r]))[0][0]))
        rho, spread_h = rho + rounding, spread_h + rounding
        spread = spread_h / root if root > 0 else np.inf
        bound = float(np.linalg.norm(step) + spread)
        if not np.isfinite(bound):
            return _SetCertificate(np.inf, float(rho), False, "the 2-norm bound overflows", step=step, solve=solve,
                                   theta_e=theta_e)
        return _SetCertificate(bound, float(rho), True, "", float(rho), spread_h, solve, step, theta_e,
                               1.0 - one_minus_gamma, float(spread), spread_h, index, alpha, (low, high), delta_prime,
                               gradient_error_h=error_h, rounding=rounding)

    def sharpen(self, cert, xw):
        """Tighten a certificate's spread_h (and with it rho, the 2-norm bound and the chord point's
        bounds) in place, given x~_i^T w for every sample, w = H_0^{-1} g its chord step.

        In H_0's whitened coordinates, with b = H_0^{-1/2} g and H_bar = I + D the averaged Hessian on
        [theta_e, theta*] (see :class:`_FirstOrderDrift`), theta_c - theta* = H_0^{-1/2} (I + D)^{-1} D b, so
        ||theta_c - theta*||_{H_0} <= ||D b|| / (1 - low) with ||D b||^2 <= sum_i f_i^2 c_i (x~_i^T w)^2,
        f_i = e^{alpha_i + s_i} - 1 and s_i = min(beta_i rho, M |x~_i^T w| + beta_i spread_h) (theta* lies
        within spread_h of theta_c); each sample weighs its own move instead of the worst one's. The
        drift is taken over the hull of theta_e and that ball and the bound iterated, and an estimate
        not yet certified may be certified by a fixed-point test (see :meth:`_sharpen_with`); then
        rho <= delta' + spread_h."""
        if cert.step is None or cert.alpha is None or not np.isfinite(cert.delta_prime):
            return
        kept = curvature_above(self.problem.curvature, self.problem.sample_weight)
        kept[cert.index] = 0.0
        self._sharpen_with(cert, self.M * np.abs(xw), kept * xw**2)

    def _sharpen_with(self, cert, move, form):
        """:meth:`sharpen` from each kept sample's move M |x~_i^T w| along the chord step and its
        form c_i (x~_i^T w)^2 (0 for the removed samples); softmax regression gives the span of
        X~_i w and W_i^T A_i W_i instead.

        For a radius r around theta_c, every point of the hull of theta_e and that ball moves eta_i
        from theta_e by at most move_i + beta_i r, so the thresholded drift (:class:`_Drift`, with
        alpha_i + move_i in place of alpha_i) bounds the averaged Hessian H_bar(theta) = I + D(theta) on
        [theta_e, theta] for every theta in the ball, and T(theta) = theta_e - H_bar(theta)^{-1} g lies
        within c(r) = min(max(high/(1 + high), low/(1 - low)) delta', ||D b|| / (1 - low)) of theta_c.
        T's fixed points are the zeros of grad F_S. So when theta* is already known to be in the ball,
        ||theta* - theta_c|| <= c(r); and when c(r) <= r, T maps the ball into itself and has a fixed
        point there (Brouwer), which proves theta* in it: this certifies estimates the radius
        integral could not."""
        if cert.step is None or cert.alpha is None or not np.isfinite(cert.delta_prime):
            return
        floor = 1.0 - cert.gamma
        if not floor > 0.0:
            return
        beta = self.M * np.sqrt(self.reach / floor)
        hull = _Drift(self, cert.index, cert.alpha + move, floor)
        delta_prime, known = cert.delta_prime, cert.certified
        old_low, old_high = cert.drift_at_rho if known else (np.inf, np.inf)

        def contraction(radii):
            """(c(r), low(r), high(r)) for each radius r, as arrays."""
            low, high = hull.bounds(radii)
            low, high = np.minimum(low, old_low), np.minimum(high, old_high)
            out = np.full(len(radii), np.inf)
            for k in np.flatnonzero(low < 1.0):
                along = move + beta * radii[k]
                if known:           # theta* also lies within rho of theta_e
                    along = np.minimum(along, beta * cert.rho)
                with np.errstate(over="ignore", invalid="ignore"):       # far moves: no bound from this term
                    moved = float(np.sqrt(max(np.expm1(cert.alpha + along) ** 2 @ form, 0.0)))
                moved = moved if np.isfinite(moved) else np.inf
                drift_k = max(high[k] / (1.0 + high[k]) if np.isfinite(high[k]) else 1.0, low[k] / (1.0 - low[k]))
                out[k] = min(drift_k * delta_prime, moved / (1.0 - low[k]))
                if not known and out[k] <= radii[k]:
                    break           # the grid search needs only the first radius that fits
            return out, low, high

        if known:
            radius = cert.spread_h
        else:
            # the smallest radius of the grid that T provably maps into itself
            radii = delta_prime * _CHORD_GRID
            fits = np.flatnonzero(contraction(radii)[0] <= radii)
            if not fits.size:
                return
            radius = float(radii[fits[0]])
        for _ in range(2):
            # (low, high) at a radius bound the drift for any smaller one too
            bound, low, high = (float(v[0]) for v in contraction(np.array([radius])))
            if not bound < radius:
                break
            radius = bound
        # radius bounds theta_c's distance to theta*_eps; theta* lies a further ``rounding`` away
        rounding = cert.rounding if known else _rounding.tilt(
            cert.gradient_error_h, radius, lambda r: 1.0 - float(hull.bounds(np.array([r]))[0][0]))
        radius = radius + rounding
        if known and not radius < cert.spread_h:
            return
        lam_min_h0 = floor * self.lambda_min
        next_bound = radius / np.sqrt(lam_min_h0) if lam_min_h0 > 0 else np.inf
        bound = float(np.linalg.norm(cert.step) + next_bound)
        if not np.isfinite(bound):
            return
        cert.rho = cert.bound_h = min(cert.rho if known else np.inf, delta_prime + radius)
        cert.bound = min(bound, cert.bound)          # an uncertified estimate's loose bound may still be smaller
        cert.spread_h, cert.next_bound_h, cert.next_bound = radius, radius, next_bound
        cert.drift_at_rho = (low, high)
        cert.certified, cert.reason, cert.rounding = True, "", rounding

    def sharpen_all(self, certs):
        """:meth:`sharpen` for a batch of certificates: x~_i^T w for all of them as one product of X
        per group of sets."""
        problem = self.problem
        work = [c for c in certs if c.step is not None and c.alpha is not None and np.isfinite(c.delta_prime)]
        group = int(min(64, max(1, BLOCK_VALUES // problem.n_samples)))
        for start in range(0, len(work), group):
            chunk = work[start:start + group]
            rows = _design.linear_predictor_columns(problem.X, np.column_stack([c.step for c in chunk]),
                                                    problem.fit_intercept)
            for k, c in enumerate(chunk):
                self.sharpen(c, np.asarray(rows[:, k]))

    def refine_all(self, certs, curvatures=False, depth=None):
        """Tighten loose certificates through their chord points, with one more pass for all of them.

        The chord point theta_c = theta_e - w (w = H_0^{-1} g) lies far closer to theta* than theta_e
        does wherever the estimate is off, but ``spread_h``, its bound from the pass at theta_e, can
        be many times its true distance when the curvature drifts far (p close to n, large sets).
        A pass at theta_c certifies it directly, in the same norm and with the same factorisation:
        theta* lies within rho_c of theta_c. By the triangle inequality, with ||w||_{H_0} = delta',

            ||theta_e - theta*||_{H_0} <= delta' + rho_c,   ||theta_e - theta*||_2 <= ||w||_2 + bound_c,

        and rho_c replaces spread_h wherever the chord point's distance to theta* is used (the
        effects). An estimate the pass at theta_e did not certify is certified when its chord point
        is. Only the certificates whose H_0-norm bound exceeds delta' by more than
        ``_REFINE_LOOSENESS`` (or that are not certified) take the pass; the chord points' passes are
        one matrix product per group of sets (keeping each sample's curvature at the chord points
        with ``curvatures``, for their effects' bounds).

        A chord point its own pass leaves uncertified, or certifies only loosely
        (:func:`_far_from_proved`), is refined the same way, up to ``depth`` (by default
        :attr:`refine_depth`) more chord points along
        the chain (each one pass for the sets still open, and only while the chain contracts, delta'
        falling by half at least); a certified one certifies the points before it in turn (at
        n/d = 12 with 10 % sets, two thirds of the RIF estimates were certified only by the second
        chord point)."""
        problem = self.problem
        work = [c for c in certs
                if c.step is not None and c.alpha is not None and c.theta_e is not None and c.solve is not None
                and 1.0 - c.gamma > 1e-12 and np.isfinite(c.delta_prime) and loose(c)]
        if not work:
            return
        depth = self.refine_depth if depth is None else depth
        points = certify_params(problem, [c.index for c in work],
                                [c.theta_e - c.step - problem.theta for c in work],
                                [_SetFactor(c.solve, 1.0 - c.gamma) for c in work], curvatures)
        self.sharpen_all([point for point in points if loose(point)])
        if depth > 0:
            self.refine_all([point for cert, point in zip(work, points)
                             if _far_from_proved(point) and point.delta_prime <= 0.5 * cert.delta_prime],
                            curvatures, depth - 1)
        for cert, point in zip(work, points):
            if point.certified:
                self._through_chord_point(cert, point)
            elif np.isfinite(point.bound):
                # theta* within point.bound of theta_c (its loose bound, through its own chain where
                # that gave a smaller one), so within ||w|| + point.bound of theta_e
                cert.bound = min(cert.bound, float(np.linalg.norm(cert.step)) + point.bound)

    def _through_chord_point(self, cert, point):
        """:meth:`refine_all` for one certificate, given its chord point's certified ``point``."""
        known = cert.certified
        rho = min(cert.delta_prime + point.rho, self._two_steps_h(cert, point) + point.spread_h)
        spread_h = point.rho
        next_bound = point.bound
        if known:
            rho, spread_h = min(rho, cert.rho), min(spread_h, cert.spread_h)
            next_bound = min(next_bound, cert.next_bound)
        # theta_e - theta* = w + w_c + (theta_cc - theta*), theta_cc = theta_c - w_c the chord point's own
        # chord point, within point.next_bound of theta*: where theta_cc lies far closer to theta* than
        # theta_c, ||w + w_c|| is about the whole error (the two steps partly cancel when the chord
        # iterations oscillate); an uncertified estimate's loose bound still holds, and may be smaller
        through_next = float(np.linalg.norm(cert.step + point.step)) + point.next_bound
        bound = min(float(np.linalg.norm(cert.step)) + next_bound, through_next, cert.bound)
        if not np.isfinite(bound):
            return
        drift = _Drift(self, cert.index, cert.alpha, 1.0 - cert.gamma)
        if not known:
            # the effects' first-order term reads the estimate's own gradient as exact: the minimiser of
            # that tilted objective lies within ``rounding`` of theta*
            cert.rounding = _rounding.tilt(cert.gradient_error_h, rho,
                                           lambda r: 1.0 - float(drift.bounds(np.array([r]))[0][0]))
        # the drift along [theta_e, theta*] (and on to that minimiser), within the (new) rho of theta_e
        low, high = drift.bounds(np.array([rho + cert.rounding]))
        low, high = float(low[0]), float(high[0])
        if known:
            low, high = min(low, cert.drift_at_rho[0]), min(high, cert.drift_at_rho[1])
        cert.rho = cert.bound_h = float(rho)
        cert.spread_h = cert.next_bound_h = float(spread_h)
        cert.next_bound, cert.bound = float(next_bound), float(bound)
        cert.drift_at_rho = (low, high)
        cert.certified, cert.reason = True, ""
        cert.chord_point = point

    @staticmethod
    def _two_steps_h(cert, point):
        """||w + w_c||_{H_0} for an estimate's chord step w = H_0^{-1} g and its chord point's w_c =
        H_0^{-1} g_c: (g + g_c)^T H_0^{-1} (g + g_c), one more solve (inf where a gradient is not
        kept). The form is taken 1 + 8 eps larger, and an absolute 8 eps (delta'^2 + delta_c'^2) is
        added for the rounding of the sum g + g_c, as the delta' of every certificate is read off
        its own computed solve."""
        if cert.gradient is None or point.gradient is None or cert.solve is None:
            return np.inf
        total = cert.gradient + point.gradient
        form = float(total @ cert.solve(total))
        eps = np.finfo(float).eps
        slack = 8.0 * eps * (cert.delta_prime**2 + point.delta_prime**2)
        return float(np.sqrt(max(form, 0.0) * (1.0 + 8.0 * eps) + slack))

    def _loose(self, g, lam_s, reason, error=0.0):
        problem = self.problem
        if not problem.fit_intercept and lam_s > 0:
            # strong convexity: ||theta_e - theta*|| <= ||grad F_S(theta_e)|| / lambda, the true gradient
            # within ``error`` of the computed one
            return _SetCertificate(float((_norm_unscaled(g) + error) / lam_s), np.inf, False, reason)
        return _SetCertificate(np.inf, np.inf, False, reason + "; with an unpenalised intercept no loose bound holds")

    # -- effects -------------------------------------------------------------------------
    def prepare_effects(self, certs, targets, refine=False):
        """Compute, for a batch of certificates and their targets, the products with X that
        :class:`_FirstOrderDrift` needs (dtheta_est, H_0^{-1} g and H_0^{-1} grad f at theta_e and at
        the chord point) as one matrix product per group of sets, reading X once for the group
        instead of once per set; each certificate keeps its columns. The certificates are sharpened
        by these products and, with ``refine``, the loose ones through their chord points
        (:meth:`refine_all`). A certificate that is not certified needs only x~_i^T w to be
        sharpened; the target's columns follow, in one more product for all of them, for those
        that sharpening or their chord points certify (an uncertified estimate's effect bound
        reads none of them)."""
        from ._targets import EtaTarget

        work = [(c, t) for c, t in zip(certs, targets)
                if c.step is not None and c.alpha is not None and isinstance(t, EtaTarget)]
        self._effect_products(work, sharpen=True)
        if refine:
            from ._targets import CallableTarget

            # (callable targets are not certified: their sets need no pass at the chord point)
            self.refine_all([c for c, t in zip(certs, targets) if not isinstance(t, CallableTarget)], curvatures=True)
            self._effect_products([(c, t) for c, t in work if c.certified and c.effect_columns is None])
            # the chord points' own effect bounds (effect_bound), with their products batched too
            points = [(c.chord_point, t) for c, t in zip(certs, targets) if c.chord_point is not None]
            if points:
                self.prepare_effects([c for c, _ in points], [t for _, t in points])

    def _effect_products(self, work, sharpen=False):
        """The products of :meth:`prepare_effects` for the (certificate, target) pairs ``work``:
        x~_i^T w for every certificate and, for the certified ones, x~_i^T H_0^{-1} grad f at theta_e
        and at the chord point; with ``sharpen``, each certificate sharpened by its x~_i^T w, and the
        target's columns of those it certifies formed afterwards."""
        problem = self.problem
        group = int(min(16, max(1, BLOCK_VALUES // (4 * problem.n_samples))))
        late = []
        for start in range(0, len(work), group):
            chunk = work[start:start + group]
            columns, spans = [], []
            for c, t in chunk:
                if c.certified:
                    grads = [t.gradient(c.theta_e), t.gradient(c.theta_e - c.step)]
                    c.effect_columns = (grads, [c.solve(grad) for grad in grads], t)
                spans.append((len(columns), len(columns) + (3 if c.certified else 1)))
                columns += [c.step] + (c.effect_columns[1] if c.certified else [])
            # (each set's columns come out contiguous)
            rows = _design.linear_predictor_columns(problem.X, np.column_stack(columns), problem.fit_intercept)
            for (c, t), (first, last) in zip(chunk, spans):
                c.effect_rows = rows[:, first:last]
                if sharpen:
                    self.sharpen(c, c.effect_rows[:, 0])         # may certify an estimate the pass alone did not
                    if c.certified and c.effect_columns is None:
                        late.append((c, t))
        if late:
            self._effect_products(late)

    def eval_leverage(self, target):
        """The :class:`_EvalReach` of an EtaTarget's rows (None for other targets)."""
        return eval_reach(self.problem, target) if hasattr(target, "X") else None

    def effect_bound(self, cert, target, eval_leverage):
        """|f(theta*) - f(theta_e)| bound for an EtaTarget ``target`` (see the module doc);
        ``eval_leverage``, an :class:`_EvalReach`, holds x~_j^T H^{-1} x~_j of the target's rows and
        a bound of the largest eigenvalue of X~_t H^{-1} X~_t^T."""
        from ._targets import EtaTarget

        if not isinstance(target, EtaTarget):
            return np.inf, False, "callable targets are not certified"
        if cert.effect_rows is None:
            self.prepare_effects([cert], [target])          # the products with X, and the sharpened spread
        if not cert.certified:
            return self._loose_effect(cert, target), False, cert.reason
        if cert.step is None:
            return _finite_or_not(self._ball_effect(cert, target))
        floor = 1.0 - cert.gamma
        reach = np.sqrt(eval_leverage.q / floor)                          # ||x~_j||_{H_0^{-1}} bounds
        # around theta_e: the first-order term through H_0^{-1} g, the second over the radius rho;
        # around the chord point theta_c = theta_e - H_0^{-1} g, within spread_h of theta*: the
        # change from theta_e to theta_c exactly, the rest over the radius spread_h
        theta_c = cert.theta_e - cert.step
        if cert.effect_columns is not None and cert.effect_columns[2] is target:
            grad, grad_c = cert.effect_columns[0]               # (prepare_effects formed them at these points)
        else:
            grad, grad_c = target.gradient(cert.theta_e), target.gradient(theta_c)
        first, first_c = _FirstOrderDrift(self, cert).bounds([grad, grad_c], [float(grad @ cert.step), 0.0])
        t, t_c = cert.rho * reach, cert.spread_h * reach
        kappa = self._phi_curvature(target, target.eta(cert.theta_e), t)
        kappa_c = self._phi_curvature(target, target.eta(theta_c), t_c)
        top = eval_leverage.top / floor                                    # >= lambda_max(X~_t H_0^{-1} X~_t^T)
        # |f(theta_c) - f(theta*)| <= first_c + the second-order term over spread_h
        at_chord = first_c + 0.5 * _curvature_weighted_square(kappa_c, t_c**2, cert.spread_h**2 * top)
        around = first + 0.5 * _curvature_weighted_square(kappa, t**2, cert.rho**2 * top)
        bound = self._through_points(cert, target, around, theta_c, at_chord,
                                     lambda point: self.effect_bound(point, target, eval_leverage))
        if not np.isfinite(bound):
            return np.inf, False, "the target's bound is not finite"
        return bound, True, ""

    @staticmethod
    def _through_points(cert, target, around, theta_c, around_c, bound_point):
        """The effect bound of ``cert`` through the points of its chain: theta_e (``around`` bounds
        |f(theta_e) - f(theta*)| there), its chord point theta_c (``around_c``) and, where the chord
        point has a certificate of its own, every point of that one's chain (``bound_point(point)``
        bounds them and leaves them on it). For each point P with |f(P) - f(theta*)| <= B_P,

            |f(theta_e) - f(theta*)| <= |f(theta_e) - f(P)| + B_P,

        the change to P computed exactly, not as a sum of the steps along the chain (chord steps
        that overshoot and come back would add up). Returns the smallest, and keeps the same bound
        for theta_c (:meth:`chord_effect_bound`) and the points with their bounds on ``cert``."""
        points = [(cert.theta_e, around), (theta_c, around_c)]
        point = cert.chord_point
        if point is not None and point.certified:
            bound_point(point)
            if point.effect_points is not None and point.effect_points[0] is target:
                points += point.effect_points[1]
        thetas = np.array([theta for theta, _ in points])
        bounds = np.array([bound for _, bound in points], dtype=float)
        with np.errstate(over="ignore", invalid="ignore"):
            from_e = np.abs(target.changes(cert.theta_e, thetas[1:] - cert.theta_e)) + bounds[1:]
            from_c = (np.abs(target.changes(theta_c, thetas[2:] - theta_c)) + bounds[2:] if len(points) > 2
                      else np.empty(0))
        at_chord = min([around_c] + [float(v) for v in from_c if np.isfinite(v)])
        cert.chord_effect = (target, at_chord if np.isfinite(at_chord) else np.inf)
        cert.effect_points = (target, points)
        return min([around] + [float(v) for v in from_e if np.isfinite(v)])

    @staticmethod
    def chord_effect_bound(cert, target):
        """The bound of |f(theta_c) - f(theta*)| at the chord point theta_c = theta_e - H_0^{-1} g that
        :meth:`effect_bound` found for ``target`` along the way (inf if it found none)."""
        found = cert.chord_effect
        return found[1] if found is not None and found[0] is target else np.inf

    def _phi_curvature(self, target, eta, t, labels=None):
        """Bounds of |phi_j''| within t_j of eta_j (``labels``: the labels of ``eta``'s entries,
        the target's own by default)."""
        from ._targets import _decision

        family = self.problem.family
        labels = target.y if labels is None else labels
        if target.phi is _decision:
            return np.zeros_like(eta)
        if target.change is not None:                    # the loss
            if isinstance(family, Gaussian):
                return np.ones_like(eta)
            _, _, d2 = family.derivatives(eta, labels)
            with np.errstate(over="ignore"):
                grown = np.maximum(d2, CURVATURE_FLOOR) * np.exp(self.M * t)
            return np.minimum(grown, 0.25) if isinstance(family, Binomial) else grown
        # the probability of the label (binomial): |sigma''| <= sigma' and sigma' grows at most e^t
        _, _, d2 = family.derivatives(eta, labels)
        with np.errstate(over="ignore"):
            return np.minimum(np.maximum(d2, CURVATURE_FLOOR) * np.exp(t), _SIGMOID_CURVATURE)

    def _ball_effect(self, cert, target):
        """|f(theta*) - f(theta_e)| for a certificate that holds theta* within ``cert.bound`` of
        theta_e in the 2-norm and nothing more (a refit's, :mod:`rif._certify_refit`): by Taylor,
        |f(theta*) - f(theta_e)| <= ||grad f(theta_e)|| bound + sum_j kappa_j t_j^2 / 2, as each eta_j
        moves by at most t_j = ||x~_j|| bound and kappa_j >= |phi_j''| within t_j of eta_j."""
        eta = target.eta(cert.theta_e)
        t = np.sqrt(_row_norms_sq(target.X, target.fit_intercept)) * cert.bound
        with np.errstate(over="ignore", invalid="ignore"):          # far estimates: an inf bound
            first = float(np.linalg.norm(target.gradient(cert.theta_e))) * cert.bound
            bound = first + 0.5 * float(self._phi_curvature(target, eta, t) @ t**2)
        return np.inf if np.isnan(bound) else bound

    def _loose_effect(self, cert, target):
        """Lipschitz bound from the parameter bound, where phi' is bounded, and the second-order
        bound over the same ball (:meth:`_ball_effect`) where the estimate is known."""
        from ._targets import _decision

        if not np.isfinite(cert.bound):
            return np.inf
        family = self.problem.family
        row_norms = np.sqrt(_row_norms_sq(target.X, target.fit_intercept))
        bound = np.inf
        if target.phi is _decision:
            bound = float(row_norms.sum() * cert.bound)
        elif isinstance(family, Binomial):
            lipschitz = 1.0 if target.change is not None else 0.25
            bound = float(lipschitz * row_norms.sum() * cert.bound)
        if cert.theta_e is not None:
            bound = min(bound, self._ball_effect(cert, target))
        return bound


def _finite_or_not(bound):
    """(bound, certified, reason) of an effect bound that is rigorous wherever it is finite."""
    if not np.isfinite(bound):
        return np.inf, False, "the target's bound is not finite"
    return bound, True, ""


def _curvature_weighted_square(kappa, t2, scale):
    """A bound of sum_j kappa_j (x~_j^T d)^2 over every d with ||d||_{H_0} <= r, given t2_j >=
    r^2 ||x~_j||^2_{H_0^{-1}} (each point alone) and scale >= r^2 lambda_max(X~_t H_0^{-1} X~_t^T) (all
    points together): for any T >= 0 the sum is at most T sum_j (x~_j^T d)^2 + sum_j (kappa_j - T)^+
    (x~_j^T d)^2 <= T scale + sum_j (kappa_j - T)^+ t2_j. The minimum over T in {0, kappa_j}; T = 0 is
    the point-by-point bound, which a single direction d cannot reach for many points at once
    (sum_j t2_j is r^2 tr(X~_t H_0^{-1} X~_t^T), up to the rank of X~_t times the top eigenvalue).
    For stacks (``kappa`` and ``t2`` of shape (B, m), ``scale`` (B,)), one bound per row."""
    kappa, t2 = np.asarray(kappa, dtype=float), np.asarray(t2, dtype=float)
    stacked = kappa.ndim == 2
    kappa, t2 = np.atleast_2d(kappa), np.atleast_2d(t2)
    scale = np.broadcast_to(np.asarray(scale, dtype=float), kappa.shape[:1])
    with np.errstate(over="ignore", invalid="ignore"):
        plain = np.array([k @ w for k, w in zip(kappa, t2)])     # (as one row's dot: the same rounding)
        out = plain.copy()
        sharp = np.isfinite(plain) & np.isfinite(scale) & (kappa.shape[1] > 0)
        if sharp.any():
            order = np.argsort(-kappa[sharp], axis=1, kind="stable")
            k, w = np.take_along_axis(kappa[sharp], order, 1), np.take_along_axis(t2[sharp], order, 1)
            above_kw = np.cumsum(k * w, axis=1) - k * w                   # over the larger kappa's
            above_w = np.cumsum(w, axis=1) - w
            # (fmin: a NaN threshold sum, inf - inf, leaves the point-by-point bound)
            out[sharp] = np.fmin(plain[sharp], np.min(k * scale[sharp, None] + above_kw - k * above_w, axis=1))
    out = np.where(np.isfinite(plain), out, np.inf)     # (a curvature or a reach beyond floats: nothing to say)
    return out if stacked else float(out[0])


class _FirstOrderDrift:
    """Bounds of |grad f^T (theta_e - theta*)| = |grad f^T H_0^{-1} g + grad f^T (H_bar^{-1} - H_0^{-1}) g|,
    H_bar the averaged Hessian along [theta_e, theta*], sharper than spread_h ||grad f||_{H_0^{-1}}.

    In H_0's whitened coordinates H_bar = I + D, D = sum_i r_i u_i u_i^T with r_i c_i = c_bar_i - c_i
    (the averaged curvature of sample i less its curvature at theta^); with a = H_0^{-1/2} grad f,
    b = H_0^{-1/2} g, v = H_0^{-1} grad f and w = H_0^{-1} g,

        a^T ((I + D)^{-1} - I) b = -a^T D b + (D a)^T (I + D)^{-1} (D b),
        a^T D b = sum_i (c_bar_i - c_i) (x~_i^T v) (x~_i^T w).

    Along [theta_e, theta*] eta_i moves from its value at theta_e by at most s_i = min(beta_i rho,
    M |x~_i^T w| + beta_i spread_h) (theta* lies within spread_h of the chord point theta_e - w), so
    c_bar_i is within a factor e^{+-s_i} of c_i(theta_e), which the pass at theta_e gives; so a^T D b
    is T_1 = sum_i (c_i(theta_e) - c_i) (x~_i^T v)(x~_i^T w), computed with its signs, up to
    sum_i c_i(theta_e) (e^{s_i} - 1) |x~_i^T v| |x~_i^T w|, and the last term is at most
    ||D a|| min(||D b|| / (1 - low), spread_h), with
    ||D y|| <= min(high ||y||, (sum_i f_i^2 c_i (x~_i^T H_0^{-1} y)^2)^{1/2})
    and f_i = e^{alpha_i + s_i} - 1 (||U|| <= 1 for U = [u_i]): (I + D)^{-1} D b is
    H_0^{1/2} (theta* - theta_c), as H_0^{1/2} (theta_e - theta*) = (I + D)^{-1} b. Costs one product
    of X with a few columns per certificate.
    """

    def __init__(self, certifier, cert):
        self.certifier, self.cert = certifier, cert
        self._rows = None

    def bounds(self, grads, mains):
        """Bounds of |main - grad^T (H_bar^{-1} - H_0^{-1}) g| for each pair, as laid out above, with
        ``main`` = grad^T H_0^{-1} g (0 for the part beyond an exactly computed change); gradients in
        the problem's own parameter order."""
        cert = self.cert
        cached = cert.effect_columns is not None and len(grads) == 2 and all(
            np.array_equal(a, b) for a, b in zip(grads, cert.effect_columns[0]))
        solved = cert.effect_columns[1] if cached else [cert.solve(grad) for grad in grads]
        self._cached_rows = cert.effect_rows if cached else None
        norms = [float(np.sqrt(max(grad @ v, 0.0))) for grad, v in zip(grads, solved)]
        plain = [abs(main) + cert.spread_h * norm for main, norm in zip(mains, norms)]
        low, high = cert.drift_at_rho
        if cert.alpha is None or not (np.isfinite(high) and low < 1.0) or not any(plain):
            return plain
        out = []
        for bound, main, norm, (first, error, moved_a, moved_b) in zip(plain, mains, norms, self._terms(solved)):
            # (I + D)^{-1} D b is theta* - theta_c in H_0's whitened coordinates: at most spread_h long
            second = min(high * norm, moved_a) * min(min(high * cert.delta_prime, moved_b) / (1.0 - low), cert.spread_h)
            # (for theta*_eps; theta* lies within ``rounding`` of it in H_0's norm)
            out.append(min(bound, abs(main - first) + error + second + norm * cert.rounding))
        return out

    def _terms(self, solved):
        """(T_1, its error bound, the bounds of ||D a|| and ||D b||) for each v in ``solved``: one
        product of X with [w, v...] gives x~_i^T w and every x~_i^T v; the curvature at theta_e is
        the pass's (else one more product gives eta there)."""
        certifier, cert = self.certifier, self.cert
        problem = certifier.problem
        rows = getattr(self, "_cached_rows", None)
        if rows is None:
            columns = [cert.step] + list(solved)
            rows = _design.linear_predictor_columns(problem.X, np.column_stack(columns), problem.fit_intercept)
        from ._kernels import first_order_drift_terms

        weights = problem.sample_weight.copy()
        weights[cert.index] = 0.0
        d2 = cert.curvature_e
        if d2 is None:
            d2 = problem.family.derivatives(problem._eta_at(cert.theta_e), problem.y)[2]
        at_estimate = weights * d2
        at_hat = problem.curvature.copy()
        at_hat[cert.index] = 0.0
        # how far eta_i can move from theta_e along [theta_e, theta*]: at most beta_i rho, and, since
        # theta* lies within spread_h of theta_e - w, at most M |x~_i^T w| + beta_i spread_h (the
        # kernel forms the sums of the class docstring over the samples)
        sums = np.zeros((rows.shape[1] - 1, 3))
        moved_w = first_order_drift_terms(at_estimate, at_hat, np.ascontiguousarray(cert.alpha, dtype=float),
                                          certifier.reach, np.ascontiguousarray(rows[:, 0]),
                                          rows[:, 1:], float(certifier.M),
                                          1.0 - cert.gamma, float(cert.rho), float(cert.spread_h), sums)
        moved_b = float(np.sqrt(max(moved_w, 0.0)))
        return [(float(first), float(error), float(np.sqrt(max(moved_a, 0.0))), moved_b)
                for first, error, moved_a in sums]


class _SoftmaxFirstOrderDrift(_FirstOrderDrift):
    """:class:`_FirstOrderDrift` for softmax regression: each sample's curvature is the K x K block
    A_i, the averaged one is within e^{+-s_i} of A_i(theta_e) (Loewner order), s_i = min(beta_i rho,
    M span(W_i) + beta_i spread_h), and within e^{+-(alpha_i + s_i)} of A_i, so with V_i = X~_i v and
    W_i = X~_i w (K-vectors, v and w in block order),

        T_1 = sum_i V_i^T (A_i(theta_e) - A_i) W_i,
        |a^T D b - T_1| <= sum_i (e^{s_i} - 1) (V_i^T A_i(theta_e) V_i)^{1/2} (W_i^T A_i(theta_e) W_i)^{1/2},
        ||D y||^2 <= sum_i f_i^2 Y_i^T A_i Y_i;

    the spread is sharpened first (:meth:`Certifier.sharpen`, with W_i^T A_i W_i as each form).
    """

    def _sample_terms(self, eta=None, w_rows=None):
        """The per-sample arrays of the drift terms, from eta = X~ Theta_e and W = X~ w (formed here
        unless given). A_i(theta_e) = w_i (diag p_i - p_i p_i^T) enters only through its forms, from
        the probabilities (:func:`rif._kernels.softmax_forms`); A_i at theta^ through the stored blocks."""
        if self._rows is None:
            from ._kernels import softmax_probabilities

            certifier, cert = self.certifier, self.cert
            problem = certifier.problem
            if eta is None:
                eta, w_rows = _class_rows(problem, [problem.from_public(cert.theta_e), problem.from_public(cert.step)])
            weights = problem.sample_weight.copy()
            weights[cert.index] = 0.0
            kept = weights > 0
            prob = np.empty(eta.shape)
            softmax_probabilities(np.ascontiguousarray(eta, dtype=float), prob)
            w_rows = np.ascontiguousarray(w_rows, dtype=float)
            move, forms_hat = certifier._sharpen_rows(cert, w_rows, kept)
            beta = certifier.M * np.sqrt(certifier.reach / (1.0 - cert.gamma))
            # the span of eta_i's move from theta_e along [theta_e, theta*] (see _FirstOrderDrift)
            along = np.minimum(beta * cert.rho, move + beta * cert.spread_h)
            forms_w = weights * _softmax_forms(prob, w_rows, w_rows)
            self._rows = (w_rows, prob, weights, kept, np.expm1(along), np.expm1(cert.alpha + along) ** 2,
                          np.sqrt(np.clip(forms_w, 0.0, None)))
            self._moved_b = float(np.sqrt(max(forms_hat @ self._rows[5], 0.0)))
        return self._rows

    def _terms(self, solved):
        from ._kernels import softmax_drift_terms

        problem, cert = self.certifier.problem, self.cert
        if self._rows is None:          # X~ Theta_e, X~ w and every X~ v as one product
            eta, w_rows, *solved_rows = _class_rows(
                problem, [problem.from_public(cert.theta_e), problem.from_public(cert.step)] + list(solved))
            self._sample_terms(eta, w_rows)
        else:
            solved_rows = _class_rows(problem, list(solved))
        w_rows, prob, weights, kept, grow, moved, root_w = self._rows
        if not solved_rows:
            return []
        # per vector v, in one pass over the samples (the kernel): T_1 = sum_i V_i^T (A_i(theta_e) -
        # A_i) W_i over the kept samples, its error sum_i (e^{s_i} - 1) (V_i^T A_i(theta_e) V_i)^{1/2}
        # (W_i^T A_i(theta_e) W_i)^{1/2}, and ||D a||^2 <= sum_i f_i^2 V_i^T A_i V_i
        sums = np.empty((len(solved_rows), 4))
        softmax_drift_terms(prob, np.stack(solved_rows, axis=1), w_rows, problem.proba, problem.sample_weight,
                            weights, kept, grow, moved, root_w, sums)
        return [(float(at_e - at_hat), float(error), float(np.sqrt(max(moved_a, 0.0))), self._moved_b)
                for at_e, at_hat, error, moved_a in sums]


class MultinomialCertifier(Certifier):
    """Certificates of parameter changes for softmax regression (:mod:`rif._multinomial`).

    The softmax curvature A(eta) = diag p - p p^T obeys, for any change Delta of the K linear
    predictors, e^{-2 s} A(eta) <= A(eta + Delta) <= e^{2 s} A(eta) with s = max_c Delta_c -
    min_c Delta_c: v^T A v = (1/2) sum_{c,c'} p_c p_c' (v_c - v_c')^2, and every p_c p_c' changes
    by e^{Delta_c + Delta_c'} / Z^2 with Z = sum_j p_j e^{Delta_j} in [e^{min Delta}, e^{max Delta}].
    So the argument of :class:`Certifier` holds with M = 2 (M = 1 for K = 2), alpha_i = M s(Delta eta_i^e),
    q_i = max_{c,c'} ||(e_c - e_c') (x) x~_i||^2_{H^^{-1}} (the span's reach) and h_i the largest
    eigenvalue of the K x K leverage M_i, all in the norm of H^ = H + kappa Pi_N (the intercepts'
    common direction, along which the objective is flat and every estimate and gradient has no
    component). Effects are certified through K x K blocks (:class:`_SoftmaxFirstOrderDrift`).

    **The classes' common directions.** F_S separates exactly: the data see only the part of Theta
    with sum_c Theta_c = 0 (and the intercepts' common direction, lifted), and the penalty adds
    (lambda / 2) ||P_f Theta||^2 for the common part P_f Theta of the penalised coefficients, whose
    minimiser is 0. So each pass's gradient is taken without its common part on the penalised
    coordinates (:func:`_without_common_part`; in exact arithmetic lambda P_f Theta_e, in floating
    point mostly rounding, which 1 / lambda would amplify past every bound where lambda is small),
    the certificate bounds the rest of the error in the norms above, and the common part of the
    error, exactly P_f Theta_e, is added to the bounds (:func:`common_part_norm`, in
    :func:`rif._attribution._certified_result`).
    """

    #: (on digits, K = 10, chains up to four chord points deeper cost a quarter more time and
    #: certified nothing more: the chord points of its 5 % sets stay beyond the leave-out route)
    refine_depth = 1

    def __init__(self, problem):
        self.problem = problem
        self.M = self.constant(problem.n_classes)

    def sharpen_all(self, certs):
        """:meth:`Certifier.sharpen` for softmax regression: W_i = X~_i w (K-vectors) for the chord step
        w, as one product of the design per group of sets, each sample's move M span(W_i) and form
        W_i^T A_i W_i."""
        from ._multinomial import _dense

        problem = self.problem
        K, p1 = problem.n_classes, problem.p1
        work = [c for c in certs if c.step is not None and c.alpha is not None and np.isfinite(c.delta_prime)]
        group = int(min(16, max(1, BLOCK_VALUES // (K * problem.n_samples))))
        for start in range(0, len(work), group):
            chunk = work[start:start + group]
            steps = np.concatenate([problem.from_public(c.step).reshape(K, p1) for c in chunk])    # (g K, p1)
            rows = _dense(problem.design @ steps.T).reshape(problem.n_samples, len(chunk), K)
            for k, cert in enumerate(chunk):
                kept = problem.sample_weight > 0
                kept[cert.index] = False
                self._sharpen_rows(cert, np.ascontiguousarray(rows[:, k]), kept)

    def _sharpen_rows(self, cert, w_rows, kept):
        """:meth:`_sharpen_with` from W_i = X~_i w (n, K) and the curvature blocks A_i of the ``kept``
        samples (a mask; the removed ones count 0); returns each sample's move M span(W_i) and form
        W_i^T A_i W_i, centred (:func:`_curvature_forms`)."""
        move = self.M * _row_span(w_rows)
        forms = np.where(kept, _curvature_forms(self.problem, w_rows), 0.0)
        self._sharpen_with(cert, move, forms)
        return move, forms

    @staticmethod
    def constant(n_classes):
        """M with A(eta + Delta) within e^{+-M span(Delta)} A(eta): 2, and 1 for K = 2, where
        p_0 p_1 changes by e^{s} / (p_0 + p_1 e^{s})^2 in [e^{-|s|}, e^{|s|}] (Delta = (0, s))."""
        return 1.0 if n_classes == 2 else 2.0

    @cached_property
    def lambda_min(self):
        """A proved lower bound of the smallest eigenvalue of H^ on V = {sum_c Theta_c = 0}, where
        every estimate, gradient and error lies (A_i 1 = 0, and the penalty treats all classes
        alike): on its complement 1 (x) R^{p1}, H^ has only the penalty and kappa. H^ + c Pi,
        Pi = (1/K) 1 1^T (x) I projecting on the complement and c >= ||H^||, has the same
        eigenvalues on V and larger ones elsewhere."""
        from ._linalg import certified_floor, spd_cholesky

        problem = self.problem
        K, p1 = problem.n_classes, problem.p1
        lifted = problem.hessian.copy()
        lift = float(np.abs(lifted).sum(axis=0).max())
        for j in range(p1):
            idx = j + p1 * np.arange(K)
            lifted[np.ix_(idx, idx)] += lift / K
        return certified_floor(lifted, spd_cholesky(lifted, "the lifted multinomial Hessian"), n_vectors=16,
                               n_iter=12, fractions=_PROVED_LAMBDA_FRACTIONS, try_gershgorin=False)

    @cached_property
    def reach(self):
        Q = self.problem.leverage_blocks
        diag = np.einsum("ncc->nc", Q)
        pairs = diag[:, :, None] + diag[:, None, :] - 2.0 * Q
        return np.clip(pairs.reshape(len(Q), -1).max(axis=1), 0.0, None)

    @cached_property
    def leverages(self):
        """The drift weights: each h_i = lambda_max(W_i Q_i W_i) raised by its rounding. W_i comes from
        an eigendecomposition of A_i with its negative eigenvalues clipped, so W_i^2 = A_i + E_i with
        ||E_i|| within a few K eps ||A_i|| (W_i itself may be off by sqrt(eps) along A_i's null
        direction, where Q_i can be large: 1 / lambda when the penalty is small); lambda_max(W Q W) =
        lambda_max(Q^{1/2} W^2 Q^{1/2}) then moves by at most ||Q_i|| ||E_i||, and forming W Q W and
        its top eigenvalue adds as much again. Traces bound both norms (PSD blocks). Relative to h_i
        this is about K eps for most samples; it matters where h_i is tiny against ||Q_i|| ||A_i||
        and the certificate multiplies it by a growth factor up to e^{2 a_i}."""
        problem = self.problem
        K = problem.n_classes
        Q = np.clip(np.einsum("icc->i", problem.leverage_blocks), 0.0, None)
        return problem.leverage + 8.0 * (K + 2) * np.finfo(float).eps * self._curvature_traces * Q

    @cached_property
    def _curvature_traces(self):
        """tr A_i at theta^ (weighted), for every sample (its diagonal formed without cancellation,
        see :attr:`rif.MultinomialProblem.curvature`)."""
        return np.einsum("icc->i", self.problem.curvature)

    def _public(self, vector):
        return self.problem.to_public(vector)

    def gradient_error(self, index, dtheta, weights, alpha, floor, at_estimate=None, anchor=None):
        """Bounds of fl(g) - g in the 2-norm and in the norm of A^{-1} for softmax regression
        (:mod:`rif._rounding`), A = H^_{-S}(theta^) >= ``floor`` H^: |r_ic| <= w_i, each p_c - y_c
        off by (K + 4) eps, and the linear predictors' rounding delta_i (|delta_ic| <= d_i) moving r_i by
        A_i(theta_e) delta_i, at most 2 tr(A_i) d_i in the 1-norm; in A^{-1}'s norm the sum of those
        moves is at most (sum_i delta_i^T A_i(theta_e) A_i^{+} A_i(theta_e) delta_i / floor)^{1/2}
        <= (sum_i e^{2 alpha_i} K d_i^2 tr A_i / floor)^{1/2}, as A_i(theta_e) <= e^{alpha_i} A_i.
        ``at_estimate`` = (tr A_i(theta_e) per unit weight, lambda_low) takes the blocks at theta_e
        itself as the reference instead, A = H^(theta_e) with lambda_min(A) >= lambda_low.
        ``anchor`` = (w_i tr A_i(theta_j), lambda_low) takes those at another point theta_j,
        A = H^(theta_j) with lambda_min(A) >= lambda_low, ``alpha`` then bounding M times each span of
        the change of eta_i from theta_j."""
        problem = self.problem
        K = problem.n_classes
        kept = weights > 0
        norms = _rounding.row_norms(problem)[kept]
        theta = problem.theta_block + problem.from_public(dtheta)
        theta_norm = float(np.linalg.norm(theta.reshape(K, problem.p1), axis=1).max())
        w = weights[kept]
        d = (problem.p1 + 2) * _rounding.EPS * norms * theta_norm
        if at_estimate is None:
            # tr A_i at the reference point, weighted
            hat = self._curvature_traces[kept] if anchor is None else anchor[0][kept]
            with np.errstate(over="ignore", invalid="ignore"):
                grow = np.exp(alpha[kept] + self.M * d)
                # (a trace that underflowed to 0 times an overflowed growth: at most 1 per unit weight,
                # and no bound in A^{-1}'s norm)
                spread = np.fmin(hat * grow / np.where(w > 0, w, 1.0), 1.0)
                reference = np.nan_to_num(hat * grow**2, nan=np.inf)
            lam_low = floor * self.lambda_min if anchor is None else anchor[1]
        else:
            spread = np.minimum(at_estimate[0][kept] * np.exp(self.M * d), 1.0)
            reference, lam_low, floor = w * spread * np.exp(self.M * d), at_estimate[1], 1.0
        rest = w * (K * (K + 4) + 2.0 * (kept.sum() + 1)) * _rounding.EPS
        rest = (1.0 + 4.0 * _rounding.EPS) * float(np.sum(rest * norms)) \
            + 2.0 * _rounding.EPS * problem.penalty * float(np.linalg.norm(theta))
        # removing the gradient's common part (:func:`_without_common_part`) rounds by at most
        # (2 (K + 1) K^{1/2} + 1) eps ||g||, and ||g|| <= sum_i w_i 2^{1/2} ||x~_i|| + lambda ||theta||
        # (||p_i - e_y||_2 <= 2^{1/2})
        rest += (2.0 * (K + 1) * np.sqrt(K) + 2.0) * _rounding.EPS * (
            np.sqrt(2.0) * float(np.sum(w * norms)) + problem.penalty * float(np.linalg.norm(theta)))
        whole = rest + (1.0 + 4.0 * _rounding.EPS) * float(np.sum(2.0 * w * spread * d * norms))
        if not lam_low > 0:
            return whole, np.inf
        with np.errstate(over="ignore", invalid="ignore"):
            moved = np.sqrt(float(np.sum(K * d**2 * reference)) / floor)
        return whole, (1.0 + 4.0 * _rounding.EPS) * moved + rest / np.sqrt(lam_low)

    def factor(self, index):
        """Woodbury on H^ (kK x kK) while kK <= P / 2, else H^_{-S} formed from the removed rows."""
        from ._errors import SingularHessianError
        from ._linalg import certified_floor, spd_cholesky
        from ._solvers import _cho_solver

        problem = self.problem
        if len(index) == 0:
            return _SetFactor(problem.factor.solve, 1.0)
        try:
            if 2 * len(index) * problem.n_classes <= problem.n_params:
                lo = problem.leave_out(index)
                return self._checked(lo.solve, min(1.0, certified_floor(lo.inner, lo.chol)))
            hessian = problem.hessian - problem.removed_hessian(index)
            chol = spd_cholesky(hessian, f"the Hessian without the {len(index)} removed sample(s)")
            floor = certified_floor(hessian, chol, problem.hessian, max(self.lambda_min, 1e-300))
            return self._checked(_cho_solver(chol), floor)
        except SingularHessianError:
            return _SetFactor(None, 0.0, "the leave-out Hessian is (numerically) singular")

    def evaluate(self, sets, dthetas, curvatures=False):
        """(g in block order, alpha_i = M times the max-minus-min over classes of the change of eta_i,
        and F_S(theta_e) where the pass forms it); a dense X~ takes one pass for up to 64 sets at
        once (:func:`rif._multinomial.dense_softmax_passes`). ``curvatures`` is not used here (the
        effects' drift terms form their own)."""
        from ._kernels import softmax_residual
        from ._multinomial import _dense, dense_softmax_passes

        problem = self.problem
        K, p1 = problem.n_classes, problem.p1
        out = []
        if isinstance(problem.design, np.ndarray):
            group = int(min(64, max(1, BLOCK_VALUES // (problem.n_samples * K))))
            for start in range(0, len(sets), group):
                chunk = sets[start:start + group]
                Thetas = np.stack([(problem.theta_block + problem.from_public(d)).reshape(K, p1)
                                   for d in dthetas[start:start + group]])
                weights = np.repeat(problem.sample_weight[:, None], len(chunk), axis=1)
                for j, index in enumerate(chunk):
                    weights[index, j] = 0.0
                values, grads, spans = dense_softmax_passes(problem.design, Thetas, problem.y, weights,
                                                            reference=problem.predictors)
                for j in range(len(chunk)):
                    penalised = Thetas[j] * problem.penalty_diag[:p1]
                    g = _without_common_part(grads[j] + problem.penalty * penalised, problem.penalty_diag[:p1])
                    value = float(values[j]) + 0.5 * problem.penalty * float(np.sum(penalised ** 2))
                    out.append((g.ravel(), np.where(weights[:, j] > 0, self.M * spans[:, j], 0.0), value))
            return out
        for index, dtheta in zip(sets, dthetas):
            weights = problem.sample_weight.copy()
            weights[index] = 0.0
            theta = problem.theta_block + problem.from_public(dtheta)
            eta = np.ascontiguousarray(problem.eta_at(theta))
            change = eta - problem.predictors
            alpha = np.where(weights > 0, self.M * _row_span(change), 0.0)
            softmax_residual(eta, problem.y, weights)                        # eta now holds the residuals
            Theta = theta.reshape(K, p1)
            g = _dense(problem.design.T @ eta).T + problem.penalty * (Theta * problem.penalty_diag[:p1])
            g = _without_common_part(g, problem.penalty_diag[:p1])
            out.append((g.ravel(), alpha, None))            # the objective is not formed here
        return out

    # -- effects -------------------------------------------------------------------------
    def eval_leverage(self, target):
        """Q_j = X~_j H^^{-1} X~_j^T (K x K) of a SoftmaxTarget's rows (None for other targets)."""
        from ._multinomial import SoftmaxTarget, design_blocks

        if not isinstance(target, SoftmaxTarget):
            return None
        if target.rows is self.problem.design:
            blocks = self.problem.leverage_blocks
        elif isinstance(target.rows, np.ndarray):
            blocks = self.problem.row_inverse_products(target.rows)
        else:
            blocks = np.concatenate([self.problem.row_inverse_products(rows) for _, rows in design_blocks(target.rows)])
        # the parameter moves stay in V (see lambda_min), so eta_j moves by a class-centred change:
        # only C Q_j C counts, C = I - 1 1^T / K
        K = self.problem.n_classes
        center = np.eye(K) - 1.0 / K
        return _EvalReach(center @ blocks @ center, self._eval_top(target.rows, center))

    def _eval_top(self, rows, center):
        """An upper bound of the largest eigenvalue of H^^{-1/2} (C kron X~_t^T X~_t) H^^{-1/2} (block order),
        the most sum_j ||C X~_j d||^2 reaches over ||d||_{H^} <= 1; inf for training or sparse rows and
        for sizes above _TOP_EIGEN_SIZE."""
        problem = self.problem
        K = problem.n_classes
        if rows is problem.design or not isinstance(rows, np.ndarray) or K * min(rows.shape) > _TOP_EIGEN_SIZE:
            return np.inf
        if rows.shape[0] <= rows.shape[1]:
            # C kron X~^T X~ = B B^T with B = C kron X~^T: the (Km x Km) matrix B^T H^^{-1} B
            B = np.kron(center, rows.T)
            gram = B.T @ problem.inverse @ B
        else:
            # the (P x P) matrix L^T (C kron X~^T X~) L, H^^{-1} = L L^T
            L = np.linalg.cholesky(problem.inverse)
            gram = L.T @ np.kron(center, rows.T @ rows) @ L
        top = float(np.linalg.eigvalsh(0.5 * (gram + gram.T))[-1])
        return top + 64.0 * len(gram) * np.finfo(float).eps * float(max(np.trace(gram), 0.0))

    def effect_bound(self, cert, target, reach):
        """|f(theta*) - f(theta_e)| for a SoftmaxTarget, the dual-weighted residual of
        :meth:`Certifier.effect_bound` with K-dimensional linear predictors: eta_j moves by
        ||delta_j||^2 <= r^2 tr(Q_j) / (1 - gamma) and span(delta_j) <= r (q_j / (1 - gamma))^{1/2}
        within H_0-distance r, and phi_j's Hessian is bounded by 0 (decision), min(1/2, e^{M span}
        lambda_max A(eta_j)) (loss: A itself, Var_p(v) <= ||v||^2 / 2) or 2 min(1, p_y e^{span})
        (probability: p_y ((e_y - p)(e_y - p)^T - A))."""
        from ._multinomial import SoftmaxTarget

        if not isinstance(target, SoftmaxTarget):
            return np.inf, False, "callable targets are not certified"
        if not cert.certified:
            self.sharpen_all([cert])                        # may certify it
        if not cert.certified:
            # the loose bound over its ball, where it has one
            loose = self._ball_effect(cert, target) if cert.theta_e is not None and np.isfinite(cert.bound) else np.inf
            return loose, False, cert.reason
        if cert.step is None:
            return _finite_or_not(self._ball_effect(cert, target))
        problem, floor = self.problem, 1.0 - cert.gamma
        blocks, top = reach.q, reach.top / floor
        size = np.einsum("jcc->j", blocks) / floor                     # ||delta_j||^2 per unit r^2
        diag = np.einsum("jcc->jc", blocks)
        span_reach = np.sqrt(np.clip((diag[:, :, None] + diag[:, None, :] - 2.0 * blocks).reshape(len(blocks), -1)
                                     .max(axis=1), 0.0, None) / floor)

        def second_order(theta, radius):
            kappa = self._phi_curvature(target, target.eta(problem.from_public(theta)), radius * span_reach)
            return 0.5 * _curvature_weighted_square(kappa, size * radius**2, top * radius**2)

        theta_c = cert.theta_e - cert.step
        grad, grad_c = target.gradient(cert.theta_e), target.gradient(theta_c)
        first, first_c = _SoftmaxFirstOrderDrift(self, cert).bounds(
            [problem.from_public(grad), problem.from_public(grad_c)], [float(grad @ cert.step), 0.0])
        at_chord = first_c + second_order(theta_c, cert.spread_h)          # >= |f(theta_c) - f(theta*)|
        bound = self._through_points(cert, target, first + second_order(cert.theta_e, cert.rho), theta_c, at_chord,
                                     lambda point: self.effect_bound(point, target, reach))
        if not np.isfinite(bound):
            return np.inf, False, "the target's bound is not finite"
        return bound, True, ""

    def _ball_effect(self, cert, target):
        """:meth:`Certifier._ball_effect` for a SoftmaxTarget: eta_j = Theta x~_j moves by
        ||delta_j||_2 <= ||x~_j|| ||dTheta||_F <= t_j = ||x~_j|| bound, with a span of at most
        2^{1/2} t_j, so |f(theta*) - f(theta_e)| <= ||grad f(theta_e)|| bound + sum_j kappa_j t_j^2 / 2."""
        eta = target.eta(self.problem.from_public(cert.theta_e))
        t = np.sqrt(_row_norms_sq(target.rows, False)) * cert.bound
        first = float(np.linalg.norm(target.gradient(cert.theta_e))) * cert.bound
        with np.errstate(over="ignore", invalid="ignore"):
            bound = first + 0.5 * float(self._phi_curvature(target, eta, np.sqrt(2.0) * t) @ t**2)
        return np.inf if np.isnan(bound) else bound

    def _phi_curvature(self, target, eta, span):
        """Bounds of ||grad^2 phi_j|| while eta_j moves by a span of at most ``span``."""
        if target.kind == "decision":
            return np.zeros(len(eta))
        top = eta.max(axis=1, keepdims=True)
        prob = np.exp(eta - top)
        prob /= prob.sum(axis=1, keepdims=True)
        if target.kind == "loss":
            curvature = np.linalg.eigvalsh(
                -prob[:, :, None] * prob[:, None, :] + np.einsum("jc,cd->jcd", prob, np.eye(prob.shape[1])))[:, -1]
            return np.minimum(0.5, curvature * np.exp(self.M * span))
        p_label = prob[np.arange(len(eta)), target.y]
        return 2.0 * np.minimum(1.0, p_label * np.exp(span))


def _without_common_part(grad, penalty_diag):
    """A softmax gradient (K, p1) without its classes' mean on the penalised coordinates (see
    :class:`MultinomialCertifier`)."""
    grad = np.array(grad, dtype=float).reshape(len(grad), -1)
    penalised = penalty_diag > 0
    grad[:, penalised] -= grad[:, penalised].mean(axis=0)
    return grad


def common_part_norm(problem, dtheta):
    """||P_f Theta_e||_2 for each row of ``dtheta`` (n_sets, n_params; public order), Theta_e =
    Theta^ + dtheta: the norm of the classes' common part of the penalised coefficients, where every
    minimiser has none (see :class:`MultinomialCertifier`), taken (1 + 4 K eps) larger and plus
    2 (K + 1) eps ||Theta_e|| for its own rounding."""
    K, p1 = problem.n_classes, problem.p1
    blocks = (problem.theta_block[None, :] + np.array([problem.from_public(d) for d in dtheta])).reshape(-1, K, p1)
    penalised = problem.penalty_diag[:p1] > 0
    common = blocks[:, :, penalised].mean(axis=1)                                  # (n_sets, penalised)
    eps = np.finfo(float).eps
    size = np.sqrt(K) * np.linalg.norm(common, axis=1)
    return size * (1.0 + 4.0 * K * eps) + 2.0 * (K + 1) * eps * np.linalg.norm(blocks.reshape(len(blocks), -1), axis=1)


def _class_rows(problem, vectors):
    """X~_i V for each block-order vector V of a softmax model, shape (n, K) each, from one product
    with the design."""
    from ._multinomial import _dense

    K, p1 = problem.n_classes, problem.p1
    if not vectors:
        return []
    stacked = np.concatenate([np.asarray(v, dtype=float).reshape(K, p1) for v in vectors])       # (B K, p1)
    if isinstance(problem.design, np.ndarray):      # (in row blocks on rif's threads, when large)
        rows = _design.linear_predictor_columns(problem.design, stacked.T, False)
    else:
        rows = _dense(problem.design @ stacked.T)
    return [rows[:, b * K:(b + 1) * K] for b in range(len(vectors))]


def _softmax_forms(prob, left, right):
    """V_i^T (diag p_i - p_i p_i^T) W_i for probabilities p (n, K) and rows V, W (n, K)
    (:func:`rif._kernels.softmax_forms`)."""
    from ._kernels import softmax_forms

    out = np.empty(len(prob))
    softmax_forms(np.asarray(prob, dtype=float), np.asarray(left, dtype=float), np.asarray(right, dtype=float), out)
    return out


def _curvature_forms(problem, rows):
    """W_i^T A_i W_i at theta^ for rows W (n, K): w_i sum_c p_c (W_ic - p^T W_i)^2 from the probabilities,
    a sum of non-negative terms within a few eps of the true form (the stored blocks diag p - p p^T,
    formed entry by entry, lose a nearly certain sample's curvature to cancellation, and their form
    can come out negative: the drift bounds multiply these forms by growth factors up to e^{2 a})."""
    return problem.sample_weight * _softmax_forms(problem.proba, rows, rows)


def _row_span(rows):
    """max_c - min_c of each row of an (n, K) array, one column at a time (NumPy's reductions
    along a short last axis are several times slower)."""
    high = np.array(rows[:, 0], dtype=float)
    low = high.copy()
    for c in range(1, rows.shape[1]):
        np.maximum(high, rows[:, c], out=high)
        np.minimum(low, rows[:, c], out=low)
    return high - low


def _row_norms_sq(X, fit_intercept):
    """||x~_j||_2^2 per row."""
    import scipy.sparse as sp

    sq = np.asarray(X.multiply(X).sum(axis=1)).ravel() if sp.issparse(X) else np.einsum("ij,ij->i", X, X)
    return sq + (1.0 if fit_intercept else 0.0)


# -- what the attribution methods call ----------------------------------------------------------------
def check_rtol(rtol):
    """rtol as a float in (0, 1), or a ValueError naming it."""
    if isinstance(rtol, bool) or not isinstance(rtol, (int, float, np.integer, np.floating)):
        raise TypeError(f"rtol must be a number in (0, 1), got {rtol!r}")
    if not (np.isfinite(rtol) and 0.0 < rtol < 1.0):
        raise ValueError(f"rtol must lie in (0, 1), got {rtol!r}")
    return float(rtol)


def certifier(problem):
    """The problem's :class:`Certifier` (made once)."""
    from ._multinomial import MultinomialProblem

    cache = problem.__dict__.setdefault("_certifier", None)
    if cache is None:
        kind = MultinomialCertifier if isinstance(problem, MultinomialProblem) else Certifier
        cache = problem.__dict__["_certifier"] = kind(problem)
    return cache


def certify_params(problem, sets, dthetas, factors=None, curvatures=False):
    """The :class:`_SetCertificate` of each parameter change in ``dthetas`` (n_sets, p) for ``sets``;
    ``factors``, a list of :class:`_SetFactor` (or None) per set, is filled in where missing and
    reused; with ``curvatures``, each scalar GLM certificate keeps the pass's curvature at its
    estimate (for effects)."""
    cert = certifier(problem)
    factors = [None] * len(sets) if factors is None else factors
    if cert.M is None:
        return [cert.certify_set(index, d) for index, d in zip(sets, dthetas)]
    certs = []
    for j, (index, dtheta, (g, m, value, *curvature)) in enumerate(zip(sets, dthetas,
                                                                       cert.evaluate(sets, dthetas, curvatures))):
        if factors[j] is None:
            factors[j] = cert.factor(index)
        certs.append(cert.certify(index, dtheta, g, m, factors[j], value, *curvature))
    return certs


def unbatch(result):
    """The single-set form of a one-set :class:`Certified`."""
    value = result.value[0]
    return Certified(value if np.ndim(value) else float(value), float(result.bound[0]), float(result.bound_h[0]),
                     bool(result.certified[0]), str(result.reason[0]), str(result.method[0]))


@dataclass
class _EvalReach:
    """q_j = x~_j^T H^{-1} x~_j of a target's rows, and ``top`` >= lambda_max(X~_t H^{-1} X~_t^T)
    (inf where not computed)."""

    q: np.ndarray
    top: float = np.inf


#: the largest min(m, p) for which the evaluation rows' top eigenvalue is computed (a dense
#: symmetric eigenvalue problem of that size, once per target)
_TOP_EIGEN_SIZE = 2048


def eval_reach(problem, target):
    """The :class:`_EvalReach` of a target's rows (training rows: the cached leverages, no top)."""
    if target.X is problem.X:
        return _EvalReach(problem.raw_leverage)
    rows = _design.rows(target.X, np.arange(target.X.shape[0]), problem.fit_intercept)
    if problem.route == "dual":
        solved = problem.base_factor.solve(rows.T)
        q = np.einsum("ij,ji->i", rows, solved)
        gram = rows @ solved if len(rows) <= _TOP_EIGEN_SIZE else None          # X~_t H^{-1} X~_t^T
    else:
        u = problem.base_factor.to_white(rows.T)                                # (p, m), u^T u = X~_t H^{-1} X~_t^T
        q = np.einsum("ij,ij->j", u, u)
        small = min(u.shape)
        gram = None if small > _TOP_EIGEN_SIZE else (u @ u.T if u.shape[0] == small else u.T @ u)
    if gram is None:
        return _EvalReach(q)
    top = float(np.linalg.eigvalsh(0.5 * (gram + gram.T))[-1])
    # rounding of the Gram product and of the eigensolver, relative to its trace (>= its norm)
    margin = 64.0 * len(gram) * np.finfo(float).eps * float(max(q.sum(), 0.0))
    return _EvalReach(q, top + margin)


def _norm_unscaled(v):
    """||v||_2 without overflow in its squares (entries past 1e154, as a gradient far outside the
    self-concordant region may have): computed on v / max|v_i|; inf for a non-finite v."""
    top = float(np.max(np.abs(v))) if np.size(v) else 0.0
    if not np.isfinite(top):
        return np.inf
    return top * float(np.linalg.norm(v / top)) if top > 0 else 0.0


def relative_ok(value_norm, bound, rtol):
    """Whether the bound proves a relative error <= rtol: bound <= rtol (|value| - bound); for
    arrays of sets, elementwise."""
    if np.ndim(bound) == 0 and np.ndim(value_norm) == 0:
        return bool(np.isfinite(bound) and bound <= rtol * max(value_norm - bound, 0.0))
    with np.errstate(invalid="ignore"):
        return np.isfinite(bound) & (bound <= rtol * np.maximum(value_norm - bound, 0.0))
