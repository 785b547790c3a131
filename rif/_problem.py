"""A fitted GLM problem in sum form, with its cached second-order quantities.

Conventions (one for the whole package):

    L_w(theta) = sum_i w_i l(y_i, eta_i) + (lambda(w) / 2) ||P theta||^2,
    eta_i = x~_i^T theta,  x~_i = (x_i, 1) with an intercept (stored last in theta),

where P^T P = diag(1, ..., 1, 0) leaves the intercept unpenalised and

* ``penalty_scaling="fixed"``:       lambda(w) = penalty
  (scikit-learn's LogisticRegression with lambda = 1/C, Ridge with lambda = alpha);
* ``penalty_scaling="per_sample"``:  lambda(w) = penalty * sum_i w_i
  (PoissonRegressor with lambda = alpha, the mean-form objective
  (1/n) sum l + (lambda/2)||theta||^2 of the RIF paper's code).

Removing a set S sets w_i = 0 for i in S, so under the second convention the
penalty shrinks with the data. With the per-sample gradients

    g~_i = w_i l'_i x~_i + penalty_i P^T P theta^,   penalty_i = (per_sample ? penalty w_i : 0)

removing S subtracts exactly sum_{i in S} g~_i from the gradient, which is zero
at the optimum theta^; so the leave-S-out gradient at theta^ is -sum_{i in S} g~_i, and the
Hessian is H = X~^T diag(c) X~ + lambda P^T P with curvature c_i = w_i l''_i.
"""

import warnings
from functools import cached_property

import numpy as np

from . import _design
from ._errors import LeverageWarning, RetrainConvergenceWarning, SingularHessianError
from ._separation import raise_if_separated
from ._attribution import AttributionMixin
from ._audit import AuditMixin
from ._families import get_family
from ._config import LEVERAGE_TOL, MAX_DENSE_PARAMS
from ._linalg import WhitenedHessian
from ._dual import KernelHessian, gram_matrix
from ._validation import check_array as _check_array
from ._validation import check_bool, check_non_negative, check_settings, check_weight_range
from ._validation import check_vector as _check_vector

PENALTY_SCALINGS = ("fixed", "per_sample")
#: route="auto" takes the dual (n x n kernel) route from p >= DUAL_RATIO * n on under the fixed
#: penalty, and from p > n on under the per-sample penalty
DUAL_RATIO = 1.5
ROUTES = ("auto", "primal", "dual")


class GLMProblem(AttributionMixin, AuditMixin):
    """A GLM fitted in sum form, with lazily cached Hessian and leverages.

    Parameters
    ----------
    X : array-like or CSR matrix of shape (n, d)
    y : array-like of shape (n,)
        Binomial targets encoded 0/1; Poisson targets non-negative.
    family : {"binomial", "gaussian", "poisson"} or Family
    theta : array-like of shape (p,), optional
        Coefficients with the intercept last. If omitted, the problem is
        solved from zero by Newton's method.
    sample_weight : array-like of shape (n,), optional
        Non-negative weights w_i; default all ones.
    penalty : float, default 0.0
        L2 strength: lambda itself (``"fixed"``) or lambda per unit of sample
        weight (``"per_sample"``).
    penalty_scaling : {"fixed", "per_sample"}, default "fixed"
    fit_intercept : bool, default True
    refine : bool, default True
        Polish ``theta`` with Newton iterations to ``tol`` so that the
        stationarity grad L(theta^) = 0 that every estimator relies on holds to
        working precision (scikit-learn's default tolerances leave 1e-4
        gradients). The move is recorded in :attr:`refine_shift`.
    tol, max_iter : float, int
        Convergence settings of the Newton refinement and of exact refits
        (see :mod:`rif._solvers`).
    n_jobs, progress
        Parallelism and progress bar of many exact refits (see
        :class:`rif.InfluenceAuditor`).
    offset : array-like of shape (n,), optional
        A fixed term added to each training sample's linear predictor,
        eta_i = x~_i^T theta + offset_i (statsmodels' ``offset`` plus
        ``log(exposure)``). Evaluation data passed to the attribution methods
        get no offset.

    route : {"auto", "primal", "dual"}, default "auto"
        How H^{-1} is applied. ``"primal"`` factorises the p x p Hessian
        (O(n p^2 + p^3)); ``"dual"`` factorises the n x n kernel
        lambda I + C^{1/2} X X^T C^{1/2} instead (O(n^2 p + n^3), see :mod:`rif._dual`),
        which needs an L2 penalty on every feature and, under ``"per_sample"``,
        equal positive weights. ``"auto"`` takes the dual when it applies and
        p >= 1.5 n under the fixed penalty (near n = p the primal's refits are
        about twice as fast), p > n under the per-sample penalty (where the
        kernel also replaces RIF's second p x p factorisation), and for dask
        arrays always the primal. Both give the same
        answers; the chosen one is in :attr:`route`.
    copy_X : bool, default True
        Keep a private copy of ``X`` (float64, or CSR), so that editing the
        caller's array after construction cannot change later answers. False
        reads a float64 array in place (no extra memory); it must then not be
        modified. Dask arrays are never copied.

    Notes
    -----
    The caller's arrays are never modified; every computation runs in float64
    (other dtypes, float32 included, are converted).
    The attribution methods (``params_change``, ``loo_params_change``,
    ``effect``, ``scores``, ``self_influence``) are those of
    :class:`rif.InfluenceAuditor`, with labels in the problem's own encoding.
    """

    def __new__(cls, X=None, y=None, family=None, *args, **kwargs):
        if isinstance(family, str) and family == "multinomial":
            # softmax regression is its own problem class (K x K curvature per sample)
            from ._multinomial import MultinomialProblem

            allowed = {"penalty_scaling": ("fixed",), "route": ("auto", "primal"), "offset": ()}
            for name, values in allowed.items():
                value = kwargs.pop(name, None)
                if value is not None and not (isinstance(value, str) and value in values):
                    raise ValueError(f"{name}={value if isinstance(value, str) else type(value).__name__!r} "
                                     "is not supported for the multinomial family")
            labels = np.asarray(y)
            return MultinomialProblem(X, y, int(labels.max()) + 1 if labels.size else 0, *args, **kwargs)
        return super().__new__(cls)

    def __init__(self, X, y, family, theta=None, *, sample_weight=None, penalty=0.0,
                 penalty_scaling="fixed", fit_intercept=True, refine=True,
                 tol=1e-10, max_iter=100, n_jobs=None, progress=None, offset=None, copy_X=True,
                 route="auto"):
        from ._solvers import newton_refit

        # settings first: nothing below may run with an invalid one
        self.family = get_family(family)
        check_settings(tol, max_iter, n_jobs, progress, "GLMProblem")
        refine, fit_intercept = check_bool(refine, "refine"), check_bool(fit_intercept, "fit_intercept")
        copy_X = check_bool(copy_X, "copy_X")
        if not isinstance(route, str) or route not in ROUTES:
            raise ValueError(f"route must be one of {ROUTES}, got {route!r}")
        if penalty_scaling not in PENALTY_SCALINGS:
            raise ValueError(f"penalty_scaling must be one of {PENALTY_SCALINGS}, got {penalty_scaling!r}")
        self.penalty = check_non_negative(penalty, "penalty")
        self.X = _check_array(X, "X", copy=copy_X)
        n, d = self.X.shape
        if n == 0 or d == 0:
            raise ValueError(f"X must have at least one sample and one feature, got shape {self.X.shape}")
        self.y = self.family.check_target(_check_vector(y, n, "y"))
        w = np.ones(n) if sample_weight is None else _check_vector(sample_weight, n, "sample_weight")
        if np.any(w < 0):
            raise ValueError("sample_weight must be non-negative")
        check_weight_range(w, "sample_weight")
        self.sample_weight = w
        self.offset = None
        if offset is not None:
            self.offset = _check_vector(offset, n, "offset")
            if not np.all(np.isfinite(self.offset)):
                raise ValueError("offset must be finite")
            if not np.any(self.offset):
                self.offset = None
        if self.family.name == "binomial" and np.unique(self.y[w > 0]).size < 2:
            raise ValueError("the binomial family needs positively weighted samples of both classes; "
                             "the data have only one class")
        if self.family.name == "poisson" and fit_intercept and not np.any(self.y[w > 0] > 0):
            raise ValueError("y is 0 for every (positively weighted) sample: the Poisson fit with an "
                             "unpenalised intercept has no optimum (the intercept goes to -infinity)")
        self.penalty_scaling = penalty_scaling
        self.fit_intercept = fit_intercept
        self.n_samples, self.n_features = n, d
        self.n_params = _design.n_params(self.X, self.fit_intercept)
        self.route = self._choose_route(route)
        if self.route == "dual" and n > MAX_DENSE_PARAMS:
            raise ValueError(
                f"{n} samples: the dual route keeps the n x n kernel dense; at most {MAX_DENSE_PARAMS} "
                "samples are supported")
        if self.route == "primal" and self.n_params > MAX_DENSE_PARAMS:
            raise ValueError(
                f"{self.n_params} parameters: rif keeps the p x p Hessian dense, which needs about "
                f"{3 * 8 * self.n_params**2 / 1e9:.0f} GB here; at most {MAX_DENSE_PARAMS} parameters are "
                "supported. Reduce the features first (selection, hashing, or a projection)"
            )
        self.penalty_diag = np.ones(self.n_params)
        if self.fit_intercept:
            self.penalty_diag[-1] = 0.0
        self.tol, self.max_iter, self.n_jobs, self.progress = tol, max_iter, n_jobs, progress

        theta0 = np.zeros(self.n_params) if theta is None else _check_vector(theta, self.n_params, "theta").copy()
        self.refine_shift, self.refine_n_iter, self._cholesky = 0.0, 0, None
        may_separate = self.family.name == "binomial" and self.penalty == 0
        if theta is None or refine:
            try:
                result = newton_refit(self, self.sample_weight, theta0, tol=tol, max_iter=max_iter)
            except SingularHessianError:
                if may_separate:        # the usual cause: name it, with the samples and features
                    raise_if_separated(self.X, self.y, self.sample_weight, self.fit_intercept)
                raise
            if may_separate and (not result.converged or self._saturated(result.theta)):
                raise_if_separated(self.X, self.y, self.sample_weight, self.fit_intercept)
            if not result.converged:
                warnings.warn(
                    f"Newton refinement of theta did not converge in {result.n_iter} iterations "
                    f"(gradient norm {result.gradient_norm:.2e}); estimates assume stationarity",
                    RetrainConvergenceWarning, stacklevel=2,
                )
            self.refine_shift = float(np.max(np.abs(result.theta - theta0)))
            self.refine_n_iter = result.n_iter
            theta0 = result.theta
            if result.hessian is not None:
                # Newton's last Hessian was formed one step (< tol relative) before theta^;
                # reusing it saves the O(n p^2) pass at a relative error O(tol).
                self.__dict__["hessian"] = result.hessian
                self._cholesky = result.cholesky
            if result.kernel is not None:        # the same for the dual route's kernel factor
                self.__dict__["base_factor"] = result.kernel
        self.theta = theta0
        self.theta.setflags(write=False)

    def _choose_route(self, route):
        """'primal' or 'dual' (see the ``route`` parameter), with a ValueError naming why the
        dual cannot serve when it was asked for."""
        if route == "primal":
            return "primal"
        w = self.sample_weight
        why = None
        if _design.is_dask(self.X):
            why = "X is a dask array (the kernel would gather it)"
        elif not self.penalty > 0:
            why = "it needs an L2 penalty (penalty > 0) on every feature"
        elif self.penalty_scaling == "per_sample" and np.ptp(w[w > 0]) > 0:
            why = ('under penalty_scaling="per_sample" it needs equal positive weights (each '
                   "sample's penalty share would shift H differently)")
        if route == "dual":
            if why is not None:
                raise ValueError(f"route='dual' does not apply: {why}; use route='primal'")
            return "dual"
        # near n = p the primal's refits run about twice as fast (one pass and two p x p triangular
        # solves per chord step, against three passes and the kernel's solves). Under the fixed penalty
        # its one factorisation then costs about as much as the kernel's, so the dual pays from
        # p >= 1.5 n; under the per-sample penalty RIF needs a second one (of H - pi P^T P) and the
        # kernel route saves both (measured at 1800 x 2048: 3.5x the floor primal, 0.95x dual)
        if self.penalty_scaling == "per_sample":
            wide = self.n_params > self.n_samples
        else:
            wide = self.n_params >= DUAL_RATIO * self.n_samples
        return "dual" if why is None and wide else "primal"

    @cached_property
    def gram(self):
        """The kernel G = X X^T, shape (n, n) (dual route only)."""
        return gram_matrix(self.X)

    def kernel_hessian(self, curvature, lam, what="the Hessian"):
        """:class:`rif._dual.KernelHessian` of X~^T diag(curvature) X~ + lam P^T P."""
        return KernelHessian(self.X, self.gram, curvature, lam, self.fit_intercept, what)

    def newton_factor(self, theta, weights, what):
        """A factorisation of the Hessian of L_w at ``theta`` with ``solve(b)`` = H^{-1} b, as the
        refits need it: the p x p Cholesky factor (with ``hessian`` and ``cholesky``), or on the
        dual route the kernel factor. Raises SingularHessianError(what) when not definite."""
        if self.route == "dual":
            _, _, d2 = self.family.derivatives(self._eta_at(theta), self.y)
            try:
                return self.kernel_hessian(weights * d2, self.penalty_total(weights), what)
            except SingularHessianError:
                raise SingularHessianError(what) from None
        from ._solvers import cholesky_factor

        return cholesky_factor(self.hessian_at(theta, weights, threads=True), what)

    def _saturated(self, theta):
        """Whether some fitted probability is numerically 0 or 1 (|eta| > 30, p < 1e-13)."""
        return bool(np.max(np.abs(self._eta_at(theta)[self.sample_weight > 0])) > 30.0)

    # -- the attribution interface (rif._attribution) ----------------------------
    def _problem(self):
        return self

    def _labels(self, y):
        return y

    # -- the objective for arbitrary weights (used by the refits) ---------------
    def penalty_total(self, weights):
        """lambda(w): the L2 strength of the objective with sample weights ``weights``."""
        if self.penalty_scaling == "fixed":
            return self.penalty
        return self.penalty * weights.sum()

    def objective(self, theta, weights):
        """L_w(theta)."""
        eta = self._eta_at(theta)
        loss = self.family.loss(eta, self.y)
        return weights @ loss + 0.5 * self.penalty_total(weights) * (self.penalty_diag @ theta**2)

    def value_gradient(self, theta, weights):
        """L_w(theta) and its gradient from one pass over the rows (O(n p))."""
        value, grad = _design.loss_gradient(self.X, theta, self.fit_intercept, self.y, weights, self.family,
                                             self.offset)
        lam = self.penalty_total(weights)
        return value + 0.5 * lam * (self.penalty_diag @ theta**2), grad + lam * self.penalty_diag * theta

    def value_gradients(self, thetas, weights):
        """L_w(theta) and its gradient for g pairs at once: ``thetas`` (p, g), ``weights`` (n, g).

        One pass for all: eta = X~ Theta and X~^T (W o l'(eta)) as matrix products.
        Returns values (g,) and gradients (p, g).
        """
        values, grads = _design.loss_gradients(self.X, thetas, self.fit_intercept, self.y, weights, self.family,
                                                self.offset)
        lam = np.array([self.penalty_total(weights[:, k]) for k in range(thetas.shape[1])])
        return (values + 0.5 * lam * (self.penalty_diag @ thetas**2),
                grads + lam * (self.penalty_diag[:, None] * thetas))

    def hessian_at(self, theta, weights, threads=False):
        """Hessian of L_w at ``theta``: X~^T diag(w l''(eta)) X~ + lambda(w) P^T P.

        ``threads``: form the Gram product on rif's pass threads rather than
        BLAS's (for callers that hold BLAS to one thread).
        """
        eta = self._eta_at(theta)
        _, _, d2 = self.family.derivatives(eta, self.y)
        hess = _design.weighted_gram(self.X, weights * d2, self.fit_intercept, threads)
        hess[np.diag_indices_from(hess)] += self.penalty_total(weights) * self.penalty_diag
        return hess

    def gradient_hessian(self, theta, weights):
        """Gradient and Hessian of L_w at ``theta``."""
        return self.value_gradient(theta, weights)[1], self.hessian_at(theta, weights)

    # -- cached quantities at theta^ -------------------------------------------
    def _eta_at(self, theta):
        """x~_i^T theta + offset_i for the training rows."""
        eta = _design.linear_predictor(self.X, theta, self.fit_intercept)
        return eta if self.offset is None else eta + self.offset

    @cached_property
    def eta(self):
        """Linear predictor at theta^ (offset included), shape (n,)."""
        return self._eta_at(self.theta)

    @cached_property
    def _derivatives(self):
        return self.family.derivatives(self.eta, self.y)

    @property
    def loss(self):
        """Per-sample (unweighted) loss at theta^."""
        return self._derivatives[0]

    @property
    def d1(self):
        """l'(y_i, eta_i) at theta^."""
        return self._derivatives[1]

    @property
    def d2(self):
        """l''(eta_i) at theta^."""
        return self._derivatives[2]

    @cached_property
    def residual(self):
        """r_i = w_i l'_i, so that the data part of g~_i is r_i x~_i."""
        return self.sample_weight * self.d1

    @cached_property
    def curvature(self):
        """c_i = w_i l''_i, the weight of x~_i x~_i^T in H."""
        return self.sample_weight * self.d2

    @cached_property
    def sample_penalty(self):
        """penalty_i: each sample's share of lambda (zero under the fixed convention)."""
        if self.penalty_scaling == "fixed":
            return np.zeros(self.n_samples)
        return self.penalty * self.sample_weight

    @cached_property
    def hessian(self):
        """H = X~^T diag(c) X~ + lambda P^T P at theta^, shape (p, p)."""
        return self.hessian_at(self.theta, self.sample_weight)

    @cached_property
    def base_factor(self):
        """:class:`WhitenedHessian` of H by Cholesky alone: what every basis-free use needs
        (H^{-1} b, H^{-1}, the leverages), with no eigendecomposition under either convention.
        On the dual route, the kernel factor of H (:class:`rif._dual.KernelHessian`)."""
        if self.route == "dual":
            return self.kernel_hessian(self.curvature, self.penalty_total(self.sample_weight))
        return WhitenedHessian(self.hessian, None, self._cholesky)

    @cached_property
    def factor(self):
        """:class:`WhitenedHessian` of H in the basis the estimators work in: ``base_factor``
        under the fixed penalty; under the per-sample penalty the generalised eigenbasis that
        diagonalises the penalty shifts (O(10 p^3), built only when RIF, NS or a refit needs it)."""
        shiftable = self.penalty_scaling == "per_sample" and self.penalty > 0
        if not shiftable or self.route == "dual":   # the dual shifts by a kernel factor per shift
            return self.base_factor
        return WhitenedHessian(self.hessian, self.penalty_diag, self.base_factor.cholesky)

    @cached_property
    def uniform_penalty_share(self):
        """The one value pi of every positive penalty share penalty_i, or None (fixed penalty,
        no positive share, or shares that differ because the weights do)."""
        shares = self.sample_penalty[self.sample_penalty > 0]
        if shares.size == 0 or np.any(shares != shares[0]):
            return None
        return float(shares[0])

    @property
    def shifted_factor(self):
        """Cholesky :class:`WhitenedHessian` of H - pi P^T P, pi = ``uniform_penalty_share``: the
        Hessian from which every sample's leave-one-out Hessian is a rank-one downdate."""
        return self.shift_factor(self.uniform_penalty_share)

    #: penalty-shifted Cholesky factors kept at once (each holds two p x p arrays)
    _SHIFT_CACHE = 4

    def shift_factor(self, delta):
        """Cholesky :class:`WhitenedHessian` of H - delta P^T P, the Hessian after removing samples
        whose penalty shares sum to delta (per-sample convention); the last few are cached."""
        cache = self.__dict__.setdefault("_shift_factors", {})
        if delta not in cache:
            if len(cache) >= self._SHIFT_CACHE:
                cache.pop(next(iter(cache)))
            if self.route == "dual":
                cache[delta] = self.kernel_hessian(self.curvature, self.penalty_total(self.sample_weight) - delta,
                                                   "the Hessian without the removed penalty share")
                return cache[delta]
            shifted = self.hessian.copy()
            shifted[np.diag_indices_from(shifted)] -= delta * self.penalty_diag
            cache[delta] = WhitenedHessian(shifted)
        return cache[delta]

    def use_shift_factors(self, deltas):
        """Whether penalty shifts ``deltas`` should each get a Cholesky factor of their own rather
        than the generalised eigenbasis: only with equal weights (so that a few distinct shifts
        cover many sets), at most ``_SHIFT_CACHE`` distinct shifts over the problem's life, and
        while the eigenbasis (about 10 p^3) has not been built anyway."""
        if self.route == "dual":
            return True             # every shift is one n x n factorisation; no eigenbasis exists
        if self.uniform_penalty_share is None or "factor" in self.__dict__:
            return False
        # counted over the problem's life, so that a loop over sets of many sizes switches too
        seen = self.__dict__.setdefault("_shifts_seen", set())
        wanted = seen | (set(np.atleast_1d(deltas).tolist()) - {0.0})
        if len(wanted) > self._SHIFT_CACHE:
            return False
        seen |= wanted
        return True

    @cached_property
    def penalty_gradient_white(self):
        """V^T P^T P theta^: the whitened penalty part of g~_i per unit penalty_i."""
        return self.factor.to_white(self.penalty_diag * self.theta)

    def white_rows(self, index):
        """U = X~_S V: whitened design rows, shape (k, p)."""
        return self.factor.to_white(_design.rows(self.X, index, self.fit_intercept).T).T

    @cached_property
    def raw_leverage(self):
        """q_i = x~_i^T H^{-1} x~_i = ||V^T x~_i||^2, shape (n,): one pass of triangular solves."""
        if self.route == "dual":
            return self.base_factor.leverages[1]
        factor = self.base_factor          # ||V^T x~||^2 = x~^T H^{-1} x~ in any whitening basis

        def squared_norms(block):
            u = factor.to_white(block.T)
            return np.einsum("ij,ij->j", u, u)

        return _design.map_rows(self.X, self.fit_intercept, squared_norms)

    @cached_property
    def leverage(self):
        """Generalised leverage h_i = c_i x~_i^T H^{-1} x~_i in [0, 1), shape (n,)."""
        if self.route == "dual":
            return self.base_factor.leverages[0]
        return self.curvature * self.raw_leverage

    @cached_property
    def one_minus_leverage(self):
        """1 - h_i, shape (n,); on the dual route computed without cancellation near h_i = 1."""
        if self.route == "dual":
            return self.base_factor.leverages[2]
        return 1.0 - self.leverage

    @cached_property
    def singular_leverage(self):
        """Boolean mask of samples with 1 - h_i < LEVERAGE_TOL."""
        mask = self.one_minus_leverage < LEVERAGE_TOL
        if mask.any():
            warnings.warn(
                f"{mask.sum()} training sample(s) have leverage numerically 1 "
                f"(1 - h_i < {LEVERAGE_TOL:.1e}); their rescale factors are inf and "
                "rescaled-influence or Newton estimates that remove them are refused",
                LeverageWarning, stacklevel=3,
            )
        return mask

    @cached_property
    def rescale_factor(self):
        """1 / (1 - h_i) >= 1, inf where the leverage is numerically one."""
        with np.errstate(divide="ignore"):
            factor = 1.0 / self.one_minus_leverage
        factor[self.singular_leverage] = np.inf
        return factor

    @classmethod
    def from_statsmodels(cls, results, alpha=None, **kwargs):
        """The problem fitted by a statsmodels model (see :mod:`rif._statsmodels`).

        Parameters
        ----------
        results : statsmodels results of GLM, OLS, WLS, Logit, Probit or Poisson
        alpha : float, optional
            The ridge strength of results from ``fit_regularized(L1_wt=0)``.
        **kwargs
            ``refine``, ``tol``, ``max_iter``, ``n_jobs``, ``progress``.

        Returns
        -------
        GLMProblem
            theta in statsmodels' order (no separate intercept: the constant is
            an exog column), with ``feature_names`` and ``row_labels``.
        """
        from ._statsmodels import problem_from_statsmodels

        return problem_from_statsmodels(results, alpha, **kwargs)
