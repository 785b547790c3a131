"""Multinomial (softmax) logistic regression in sum form, with its four estimators.

The objective is scikit-learn's ``LogisticRegression`` for K >= 3 classes:

    L_w(Theta) = sum_i w_i l_i + (lambda / 2) ||B||_F^2,
    l_i = logsumexp(eta_i) - eta_{i, y_i},   eta_i = Theta x~_i  (K values),

with Theta = [B | b] the K x (d + 1) matrix of coefficients and unpenalised intercepts.
Internally theta = Theta.ravel() ("block order": class by class); the public order is
scikit-learn's, ``coef_.ravel()`` followed by ``intercept_``.

Per sample, with p_i = softmax(eta_i) and e_y the indicator of its label,

    g~_i = r_i (x) x~_i,   r_i = w_i (p_i - e_y)                       (gradient),
    H    = sum_i A_i (x) x~_i x~_i^T + lambda P^T P,   A_i = w_i (diag p_i - p_i p_i^T).

The over-parameterisation: A_i 1 = 0, so every direction 1 (x) e_j with coordinate j
unpenalised (the intercepts; every coordinate without a penalty) is a null direction N of H,
and the optimum is unique only up to it. Every g~_i is orthogonal to N (its class sum
r_i^T 1 = 0), and so are all leave-k-out Hessians' null spaces. rif therefore works with

    H^ = H + kappa Pi_N   (Pi_N the orthogonal projector on N, kappa the mean diagonal of H),

which is definite, leaves every solve of a right-hand side orthogonal to N unchanged on the
complement and returns no component along N: the minimum-norm solution, the one with
sum_k b_k = 0 (and sum_k B_k = 0) that scikit-learn's solvers also reach from zero.

With X~_i = I_K (x) x~_i^T, Q_i = X~_i H^^{-1} X~_i^T (K x K) and W_i = A_i^{1/2}:

* the generalised leverage is the K x K matrix M_i = W_i Q_i W_i, eigenvalues in [0, 1);
  ``leverage`` reports its largest eigenvalue (1 / (1 - h_i) bounds the rescaling);
* IF:  dtheta = H^^{-1} sum_{i in S} r_i (x) x~_i;
* RIF: dtheta = H^^{-1} sum_{i in S} s_i (x) x~_i, s_i = r_i + W_i (I - M_i)^{-1} W_i Q_i r_i,
  the exact leave-one-out Newton step (push-through of Woodbury), a K x K solve per sample;
* NS:  dtheta = Y r_S + Y W_S (I - W_S Q_SS W_S)^{-1} W_S Q_SS r_S, Y = H^^{-1} X~_S^T,
  a kK x kK system (Woodbury);
* retrain: chord iterations with that leave-out Hessian, as for the binary GLMs.
"""

from functools import cached_property
from types import SimpleNamespace

import numpy as np
import scipy.sparse as sp
from scipy.special import logsumexp

from ._attribution import AttributionMixin
from . import _parallel
from ._config import FUSED_PARTS, LEVERAGE_TOL
from ._errors import NearSingularLeverageError
from ._kernels import softmax_residual
from ._linalg import WhitenedHessian, cho_solve, equilibrated_cholesky
from ._validation import check_array as _check_array
from ._validation import check_bool, check_non_negative, check_settings, check_weight_range
from ._validation import check_vector as _check_vector


def _is_dask(X):
    return type(X).__module__.split(".")[0] == "dask"


class ChunkedDesign:
    """X~ = [X, 1] of a row-chunked dask array X, read one row chunk at a time: products with it
    stream the chunks (X is never gathered whole), row selections compute only those rows."""

    __array_ufunc__ = None          # NumPy defers A @ design to __rmatmul__

    def __init__(self, X, fit_intercept):
        if len(X.chunks[1]) != 1:
            X = X.rechunk({1: -1})
        self.X, self.fit_intercept = X, fit_intercept
        self.shape = (X.shape[0], X.shape[1] + int(fit_intercept))

    def blocks(self):
        """(start, dense block of X~) for each row chunk (rif._design.row_blocks)."""
        from . import _design as design

        for rows, block in design.row_blocks(self.X, self.fit_intercept):
            yield rows.start, block

    def __matmul__(self, B):
        return np.vstack([block @ B for _, block in self.blocks()])

    def __rmatmul__(self, A):
        return sum(A[:, start:start + len(block)] @ block for start, block in self.blocks())

    @property
    def T(self):
        return _TransposedDesign(self)

    def __getitem__(self, index):
        from . import _design as design

        return design.rows(self.X, index, self.fit_intercept)


class _TransposedDesign:
    def __init__(self, design):
        self.design = design

    def __matmul__(self, B):
        """X~^T B for B of shape (n, m), dense or sparse."""
        total = 0.0
        for start, block in self.design.blocks():
            part = B[start:start + len(block)]
            total = total + (np.asarray((part.T @ block)).T if sp.issparse(part) else block.T @ part)
        return total


def _design(X, fit_intercept):
    """X~ = [X, 1] as a dense array, a CSR matrix, or a :class:`ChunkedDesign` of a dask array."""
    if _is_dask(X):
        return ChunkedDesign(X, fit_intercept)
    if not fit_intercept:
        return X
    ones = np.ones((X.shape[0], 1))
    return sp.hstack([X, ones], format="csr") if sp.issparse(X) else np.hstack([X, ones])


def _dense(a):
    return np.asarray(a.toarray() if sp.issparse(a) else a)


def design_blocks(design):
    """(start, dense block) over the rows of X~, whatever its storage."""
    if isinstance(design, ChunkedDesign):
        yield from design.blocks()
        return
    from . import _design as core

    for rows, block in core.row_blocks(design, False):     # the intercept column is already in design
        yield rows.start, block


def dense_softmax_passes(design, Thetas, y, weights, reference=None):
    """The softmax loss and gradient of g coefficient matrices at once, for a dense X~.

    ``Thetas`` has shape (g, K, p1) and ``weights`` (n, g). Returns ``values`` (g,), with
    values[j] = sum_i w_ij l_i(Theta_j), ``grads`` (g, K, p1), grads[j] = R_j^T X~ with R_j the rows
    w_ij (softmax(Theta_j x~_i) - e_{y_i}), and, given ``reference`` eta (n, K), ``spans`` (n, g):
    the max-minus-min over classes of Theta_j x~_i - reference_i (else None).

    The rows are cut into parts (a fixed number, so the sums are the same for any number of
    threads); each part forms the linear predictors of all g matrices as one product, their
    residuals, and its share of all g gradients as a second product while its rows are still in
    cache (single-threaded BLAS), and the parts run on rif's pass threads (:mod:`rif._parallel`),
    as the binary GLMs' fused pass does.
    """
    from ._certify import _row_span

    n = design.shape[0]
    g, K, p1 = Thetas.shape
    parts = max(1, min(FUSED_PARTS, n // 1024))
    size = -(-n // parts)
    values, grads = np.zeros((parts, g)), np.empty((parts, g * K, p1))
    spans = None if reference is None else np.empty((n, g))
    coef = np.ascontiguousarray(Thetas.reshape(g * K, p1).T)               # columns (set, class)

    def run(first, last):
        for k in range(first, last):
            rows = slice(k * size, min(n, (k + 1) * size))
            block = design[rows]
            eta = block @ coef                                              # eta, then the residuals
            for j in range(g):
                cols = slice(j * K, (j + 1) * K)
                resid = np.ascontiguousarray(eta[:, cols])
                if spans is not None:
                    spans[rows, j] = _row_span(resid - reference[rows])
                values[k, j] = softmax_residual(resid, y[rows], np.ascontiguousarray(weights[rows, j]))
                eta[:, cols] = resid
            np.matmul(eta.T, block, out=grads[k])

    if parts == 1:
        run(0, 1)                           # one part: no threads to share the cores with
    else:
        with _parallel.blas_limit(1):       # the parts' threads, not BLAS's, share the cores
            _parallel.run_part_groups(run, parts)
    return values.sum(axis=0), grads.sum(axis=0).reshape(g, K, p1), spans


def softmax_loss(eta, labels):
    """Per-row loss logsumexp(eta) - eta[y] and probabilities softmax(eta), stable."""
    top = eta.max(axis=1, keepdims=True)
    e = np.exp(eta - top)
    total = e.sum(axis=1, keepdims=True)
    lse = (np.log(total) + top)[:, 0]
    return lse - eta[np.arange(len(eta)), labels], e / total


def _one_minus(prob):
    """1 - p_c for probabilities ``prob`` (n, K), the most probable class's summed from the others'
    (1 - p_c itself cancels for a nearly certain sample: 0 where p_c rounds to 1), so that each
    curvature entry p_c (1 - p_c) is within a few eps of its value relative to itself."""
    top = prob.argmax(axis=1)
    is_top = np.arange(prob.shape[1])[None, :] == top[:, None]
    rest = np.where(is_top, 0.0, prob).sum(axis=1)
    return np.where(is_top, rest[:, None], 1.0 - prob)


def _sqrt_psd(A):
    """Symmetric square roots of a stack of PSD matrices, shape (n, K, K)."""
    vals, vecs = np.linalg.eigh(A)
    root = np.sqrt(np.clip(vals, 0.0, None))
    return (vecs * root[:, None, :]) @ np.swapaxes(vecs, 1, 2)


class MultinomialProblem(AttributionMixin):
    """Softmax regression with K >= 3 classes, fitted in sum form (see the module doc).

    Parameters
    ----------
    X : array-like or CSR matrix of shape (n, d)
    y : array-like of shape (n,)
        Class indices 0, ..., K - 1.
    n_classes : int
        K >= 2 (K = 2 is the over-parameterised form of binary logistic regression, with
        theta_binary = B_1 - B_0 at half the penalty; scikit-learn fits binary targets that way).
    theta : array-like of shape (K d + K,) or (K d,), optional
        scikit-learn's order: ``coef_.ravel()`` then ``intercept_``. Solved from zero if omitted.
    sample_weight, penalty, fit_intercept, refine, tol, max_iter, n_jobs, progress, copy_X
        As for :class:`rif.GLMProblem`; the penalty is scikit-learn's 1 / C (fixed convention).
    """

    family_name = "multinomial"
    route = "primal"
    penalty_scaling = "fixed"

    @property
    def operations(self):
        """The estimator operations rif._attribution calls for this problem."""
        return OPERATIONS

    def _problem(self):
        return self

    def _labels(self, y):
        return y

    def __init__(self, X, y, n_classes, theta=None, *, sample_weight=None, penalty=0.0, fit_intercept=True,
                 refine=True, tol=1e-10, max_iter=100, n_jobs=None, progress=None, copy_X=True):
        from ._solvers import newton_refit

        check_settings(tol, max_iter, n_jobs, progress, "MultinomialProblem")
        self.fit_intercept = check_bool(fit_intercept, "fit_intercept")
        refine = check_bool(refine, "refine")
        self.penalty = check_non_negative(penalty, "penalty")
        self.X = _check_array(X, "X", copy=check_bool(copy_X, "copy_X"))
        n, d = self.X.shape
        if n == 0 or d == 0:
            raise ValueError(f"X must have at least one sample and one feature, got shape {self.X.shape}")
        K = int(n_classes)
        if K < 2:
            raise ValueError(f"a multinomial problem needs at least 2 classes, got {K}")
        labels = _check_vector(y, n, "y")
        if not np.all((labels == np.round(labels)) & (labels >= 0) & (labels < K)):
            raise ValueError(f"y must hold class indices 0, ..., {K - 1}")
        self.y = labels.astype(np.intp)
        w = np.ones(n) if sample_weight is None else _check_vector(sample_weight, n, "sample_weight")
        if np.any(w < 0):
            raise ValueError("sample_weight must be non-negative")
        check_weight_range(w, "sample_weight")
        present = np.bincount(self.y[w > 0], minlength=K)
        if np.any(present == 0):
            raise ValueError(f"class(es) {np.flatnonzero(present == 0).tolist()} have no positively weighted "
                             "sample: every class needs one")
        self.sample_weight = w
        self.n_samples, self.n_features, self.n_classes = n, d, K
        self.p1 = d + int(self.fit_intercept)                 # parameters per class
        self.n_params = K * self.p1
        self.design = _design(self.X, self.fit_intercept)
        self.penalty_diag = np.ones(self.n_params)
        free = np.zeros(self.p1, bool)                         # coordinates along which N lies
        if self.fit_intercept:
            free[-1] = True
        if self.penalty == 0:
            free[:] = True
        self.free = free
        if self.fit_intercept:
            self.penalty_diag[self.p1 - 1::self.p1] = 0.0
        self.tol, self.max_iter, self.n_jobs, self.progress = tol, max_iter, n_jobs, progress
        self.offset = None
        theta0 = np.zeros(self.n_params) if theta is None else self.from_public(theta)
        self.refine_shift, self.refine_n_iter, self._cholesky = 0.0, 0, None
        if theta is None or refine:
            result = newton_refit(self, w, theta0, tol=tol, max_iter=max_iter)
            if not result.converged:
                import warnings

                from ._errors import RetrainConvergenceWarning

                warnings.warn(f"Newton refinement of theta did not converge in {result.n_iter} iterations "
                              f"(gradient norm {result.gradient_norm:.2e}); estimates assume stationarity",
                              RetrainConvergenceWarning, stacklevel=2)
            self.refine_shift = float(np.max(np.abs(result.theta - theta0)))
            self.refine_n_iter = result.n_iter
            theta0 = result.theta
            if result.hessian is not None:
                # Newton's last Hessian, one step (< tol relative) before theta^: no third Gram pass
                self.__dict__["hessian"] = result.hessian
                self._cholesky = result.cholesky
        self.theta_block = theta0
        self.theta_block.setflags(write=False)

    # -- parameter orders --------------------------------------------------------------
    def from_public(self, theta):
        """Block order from scikit-learn's (coef_.ravel(), intercept_)."""
        K, d = self.n_classes, self.n_features
        theta = _check_vector(theta, self.n_params, "theta")
        block = np.empty((K, self.p1))
        block[:, :d] = theta[:K * d].reshape(K, d)
        if self.fit_intercept:
            block[:, d] = theta[K * d:]
        return block.ravel()

    def to_public(self, theta_block):
        """scikit-learn's order from block order; works on (..., n_params) arrays."""
        K, d = self.n_classes, self.n_features
        block = np.asarray(theta_block).reshape(theta_block.shape[:-1] + (K, self.p1))
        coef = block[..., :d].reshape(theta_block.shape[:-1] + (K * d,))
        if not self.fit_intercept:
            return coef
        return np.concatenate([coef, block[..., d]], axis=-1)

    @property
    def theta(self):
        """theta^ in scikit-learn's order (coef_.ravel(), then intercept_)."""
        return self.to_public(self.theta_block)

    # -- the objective ------------------------------------------------------------------
    def eta_at(self, theta_block, design=None):
        """Linear predictors Theta x~_i, shape (m, K)."""
        design = self.design if design is None else design
        return _dense(design @ theta_block.reshape(self.n_classes, self.p1).T)

    def penalty_total(self, weights):
        return self.penalty

    def value_gradient(self, theta, weights):
        """L_w and its gradient (block order) at ``theta`` (block order): two products with X~,
        eta = X~ Theta^T and R^T X~ (R the weighted residuals), on rif's pass threads for a dense X~."""
        Theta = theta.reshape(self.n_classes, self.p1)
        weights = np.ascontiguousarray(weights, dtype=float)
        if isinstance(self.design, np.ndarray):
            values, grads, _ = dense_softmax_passes(self.design, Theta[None], self.y, weights[:, None])
            value, grad = float(values[0]), grads[0]
        else:
            resid = np.ascontiguousarray(self.eta_at(theta))
            value = softmax_residual(resid, self.y, weights)                # resid: w_i (p_i - e_yi)
            grad = _dense(self.design.T @ resid).T
        grad = grad + self.penalty * (Theta * self.penalty_diag[:self.p1])
        penalty = 0.5 * self.penalty * float(np.sum((Theta * self.penalty_diag[:self.p1]) ** 2))
        return value + penalty, grad.ravel()

    def _null_basis_scale(self, hessian):
        return float(np.trace(hessian)) / hessian.shape[0]

    def hessian_at(self, theta, weights):
        """H^ = H + kappa Pi_N at ``theta`` for weights ``weights`` (block order), (Kp1, Kp1)."""
        hess = self.curvature_hessian(theta, weights)
        self._add_null(hess, self._null_basis_scale(hess))
        return hess

    def curvature_hessian(self, theta, weights):
        """The Hessian H of L_w itself (singular along N), block order, (Kp1, Kp1): K (K + 1) / 2
        weighted Gram products X~^T diag(w (p_k delta_kl - p_k p_l)) X~ on BLAS's threads."""
        from ._dual import kernel_threads

        _, prob = softmax_loss(self.eta_at(theta), self.y)
        hess = np.empty((self.n_params, self.n_params))
        with kernel_threads(self.n_samples * self.p1 // 64):
            self._gram_blocks(hess, prob, weights)
        hess[np.diag_indices(self.n_params)] += self.penalty * self.penalty_diag
        return hess

    def _gram_blocks(self, hess, prob, weights):
        K, p1, Xt = self.n_classes, self.p1, self.design
        complement = _one_minus(prob)
        if isinstance(Xt, ChunkedDesign):
            blocks = np.zeros((K, K, p1, p1))
            for start, rows in Xt.blocks():            # one pass over the chunks for every block
                part = slice(start, start + len(rows))
                pr, w = prob[part], weights[part]
                for k in range(K):
                    for l in range(k, K):
                        a = w * (pr[:, k] * (complement[part, k] if k == l else -pr[:, l]))
                        blocks[k, l] += rows.T @ (rows * a[:, None])
        for k in range(K):
            for l in range(k, K):
                if isinstance(Xt, ChunkedDesign):
                    block = blocks[k, l]
                else:
                    a = weights * (prob[:, k] * (complement[:, k] if k == l else -prob[:, l]))
                    scaled = Xt.multiply(a[:, None]).tocsr() if sp.issparse(Xt) else Xt * a[:, None]
                    block = _dense(Xt.T @ scaled)
                hess[k * p1:(k + 1) * p1, l * p1:(l + 1) * p1] = block
                if l != k:
                    hess[l * p1:(l + 1) * p1, k * p1:(k + 1) * p1] = block.T

    def _add_null(self, hess, kappa):
        """hess += kappa Pi_N, Pi_N = (1/K) 1 1^T (x) E_free."""
        K, p1 = self.n_classes, self.p1
        for j in np.flatnonzero(self.free):
            idx = j + p1 * np.arange(K)
            hess[np.ix_(idx, idx)] += kappa / K

    def newton_factor(self, theta, weights, what):
        from ._solvers import cholesky_factor

        return cholesky_factor(self.hessian_at(theta, weights), what)

    # -- cached quantities at theta^ --------------------------------------------------------
    @cached_property
    def predictors(self):
        """eta_i = Theta^ x~_i for the training rows, shape (n, K)."""
        return self.eta_at(self.theta_block)

    @cached_property
    def _fit(self):
        loss, prob = softmax_loss(self.predictors, self.y)
        return loss, prob

    @property
    def loss(self):
        return self._fit[0]

    @property
    def proba(self):
        return self._fit[1]

    @cached_property
    def residual(self):
        """r_i = w_i (p_i - e_{y_i}), shape (n, K)."""
        r = self.proba.copy()
        r[np.arange(self.n_samples), self.y] -= 1.0
        return r * self.sample_weight[:, None]

    @cached_property
    def curvature(self):
        """A_i = w_i (diag p_i - p_i p_i^T), shape (n, K, K), each diagonal entry formed as
        p_c (1 - p_c) (:func:`_one_minus`; p_c - p_c^2 cancels for a nearly certain sample, whose
        curvature the certificates grow by up to e^{2 a}), as in the Hessian's blocks."""
        p = self.proba
        K = self.n_classes
        A = -p[:, :, None] * p[:, None, :]
        A[:, np.arange(K), np.arange(K)] = p * _one_minus(p)
        return A * self.sample_weight[:, None, None]

    @cached_property
    def curvature_root(self):
        """W_i = A_i^{1/2}, shape (n, K, K)."""
        return _sqrt_psd(self.curvature)

    @cached_property
    def hessian(self):
        """H^ at theta^ (block order)."""
        return self.hessian_at(self.theta_block, self.sample_weight)

    @cached_property
    def factor(self):
        """Cholesky :class:`rif._linalg.WhitenedHessian` of H^ (definite by construction, checked)."""
        return WhitenedHessian(self.hessian, None, self._cholesky)

    @cached_property
    def inverse(self):
        """H^^{-1} (block order) from the Cholesky factor by LAPACK's dpotri (2 P^3 / 3 flops)."""
        from scipy.linalg import lapack

        from ._dual import kernel_threads

        with kernel_threads(self.n_params):
            inv, info = lapack.dpotri(self.factor.cholesky, lower=1)
        if info != 0:
            return self.factor.inverse
        lower = np.tril_indices(self.n_params, -1)
        inv[lower[1], lower[0]] = inv[lower]          # dpotri fills the lower triangle
        return inv

    def row_inverse_products(self, rows):
        """Q_j = X~_j H^^{-1} X~_j^T for design rows ``rows`` (m, p1) against themselves, (m, K, K)."""
        K, p1 = self.n_classes, self.p1
        inv = self.inverse
        out = np.empty((rows.shape[0], K, K))
        for k in range(K):                                       # Q is symmetric: blocks l >= k only
            z = rows @ inv[k * p1:(k + 1) * p1, k * p1:]          # (m, (K - k) p1): x~^T [H^-1]_{k, l}
            out[:, k, k:] = np.einsum("mlj,mj->ml", z.reshape(rows.shape[0], K - k, p1), rows)
            out[:, k:, k] = out[:, k, k:]
        return out

    @cached_property
    def leverage_blocks(self):
        """Q_i for every training sample, shape (n, K, K)."""
        return np.concatenate([self.row_inverse_products(rows) for _, rows in design_blocks(self.design)])

    @cached_property
    def leverage_matrices(self):
        """M_i = W_i Q_i W_i, the K x K generalised leverages (eigenvalues in [0, 1)), (n, K, K)."""
        W = self.curvature_root
        return W @ self.leverage_blocks @ W

    @cached_property
    def leverage(self):
        """h_i = the largest eigenvalue of M_i, shape (n,)."""
        return np.linalg.eigvalsh(self.leverage_matrices)[:, -1]

    @cached_property
    def singular_leverage(self):
        return 1.0 - self.leverage < LEVERAGE_TOL

    @cached_property
    def rescale_factor(self):
        with np.errstate(divide="ignore"):
            out = 1.0 / (1.0 - self.leverage)
        out[self.singular_leverage] = np.inf
        return out

    # -- per-sample coefficients of the leave-one-out estimates ------------------------------------
    @cached_property
    def rif_coefficients(self):
        """s_i = r_i + W_i (I - M_i)^{-1} W_i Q_i r_i (NaN rows where M_i is numerically singular)."""
        K = self.n_classes
        W, Q, r = self.curvature_root, self.leverage_blocks, self.residual
        inner = np.eye(K) - self.leverage_matrices
        rhs = W @ (Q @ r[..., None])
        bad = self.singular_leverage
        inner[bad] = np.eye(K)
        s = r + (W @ np.linalg.solve(inner, rhs))[..., 0]
        s[bad] = np.nan
        return s

    def coefficients(self, method):
        if method == "if":
            return self.residual
        return self.rif_coefficients

    def check_leverage(self, index):
        bad = np.asarray(index)[self.singular_leverage[index]]
        if bad.size:
            raise NearSingularLeverageError(
                f"sample(s) {bad[:10].tolist()} have leverage numerically 1 (1 - h_i < {LEVERAGE_TOL:.1e}): "
                "removing them leaves the Hessian singular; use method='if', or add an L2 penalty")

    def solve_sums(self, coef, sets):
        """H^^{-1} sum_{i in S} coef_i (x) x~_i for each set, (n_sets, n_params) block order."""
        K, p1 = self.n_classes, self.p1
        lengths = [len(s) for s in sets]
        rows = np.concatenate(sets)
        cols = np.repeat(np.arange(len(sets)), lengths)
        grads = np.empty((len(sets), K, p1))
        for k in range(K):
            indicator = sp.csc_matrix((coef[rows, k], (rows, cols)), shape=(self.n_samples, len(sets)))
            grads[:, k, :] = _dense(self.design.T @ indicator).T
        return self.factor.solve(grads.reshape(len(sets), -1).T).T

    # -- the leave-out Hessian of a set -------------------------------------------------------
    def leave_out(self, index):
        return MultinomialLeaveOut(self, index)

    def refit_solver(self, index):
        """The chord matrix of an exact refit without ``index``: H^_{-S} by Woodbury while kK is small
        against the P parameters, else H^ itself (already factorised). Its chord rate is then the
        largest fraction of curvature the set carries, small for small sets, and each step costs
        one gradient and two triangular solves instead of a kK x kK factorisation up front."""
        if self._woodbury_refit(index):
            return self.leave_out(index).solve
        return self.factor.solve

    def removed_hessian(self, index):
        """sum_{i in S} A_i (x) x~_i x~_i^T (block order), from the removed rows only."""
        K, p1 = self.n_classes, self.p1
        rows = _dense(self.design[index])
        A = self.curvature[index]
        out = np.empty((self.n_params, self.n_params))
        for k in range(K):
            for l in range(k, K):
                block = rows.T @ (rows * A[:, k, l][:, None])
                out[k * p1:(k + 1) * p1, l * p1:(l + 1) * p1] = block
                out[l * p1:(l + 1) * p1, k * p1:(k + 1) * p1] = block.T
        return out

    def _woodbury_refit(self, index):
        return len(index) * self.n_classes * 4 < self.n_params

    def removed_gradient(self, index, coef=None):
        """sum_{i in S} coef_i (x) x~_i in block order; by default coef = r, the gradient g~_i."""
        rows = _dense(self.design[index])
        coef = self.residual if coef is None else coef
        return (coef[index].T @ rows).ravel()

    def leave_out_start(self, index, weights, estimate=True):
        """(theta_0, L_{-S}(theta_0), grad L_{-S}(theta_0)) to start the refit without ``index`` from.

        theta_0 = theta^, whose objective and gradient come from cached quantities without a pass
        over X, so that the first chord step is the Newton step (Woodbury chord matrix) or the
        influence function (H^ as chord matrix). With H^ as chord matrix, the RIF coefficients
        already computed and ``estimate``, theta_0 is instead the RIF estimate,
        theta^ + H^^{-1} sum_S s_i (x) x~_i: its error is about half the influence function's on
        random 1 % sets (measured at 20000 x 200, K = 10), which saves a chord step; its value and
        gradient are then left to the caller (``None``), costing the pass the influence-function
        step would have needed next. (Where the estimate is far off, its objective can exceed
        theta^'s: the caller then starts from theta^ instead, ``estimate=False``.)
        """
        theta = np.array(self.theta_block)
        cached = self.__dict__.get("rif_coefficients")
        if (estimate and not self._woodbury_refit(index) and cached is not None
                and np.all(np.isfinite(cached[index]))):
            return theta + self.factor.solve(self.removed_gradient(index, cached)), None, None
        Theta = theta.reshape(self.n_classes, self.p1) * self.penalty_diag[:self.p1]
        value = float(weights @ self.loss) + 0.5 * self.penalty * float(np.sum(Theta ** 2))
        return theta, value, -self.removed_gradient(index)


class MultinomialLeaveOut:
    """H^_{-S} = H^ - sum_{i in S} A_i (x) x~_i x~_i^T by Woodbury, with Y = H^^{-1} X~_S^T:

        H^_{-S}^{-1} = H^^{-1} + Y W_S (I - W_S Q_SS W_S)^{-1} W_S Y^T.
    """

    def __init__(self, problem, index):
        index = np.asarray(index)
        K, p1, P = problem.n_classes, problem.p1, problem.n_params
        k = index.size
        rows = _dense(problem.design[index])                             # (k, p1)
        # Y[:, (i, c)] = H^-1 (e_c (x) x~_i): the class-c columns of H^-1 times x~_i (matrix products)
        Y = np.swapaxes(problem.inverse.reshape(P, K, p1) @ rows.T, 1, 2).reshape(P, k * K)
        # X~_S H^-1 X~_S^T: row (i, c) is x~_i^T times the class-c rows of Y
        Q = np.swapaxes(rows @ Y.reshape(K, p1, k * K), 0, 1).reshape(k * K, k * K)
        Q = 0.5 * (Q + Q.T)
        roots = problem.curvature_root[index]                             # (k, K, K)
        blocks = np.swapaxes(Q.reshape(k, K, k, K), 1, 2)                 # (k, k, K, K): Q_ij
        wqw = roots[:, None] @ blocks @ roots[None, :]                    # W_i Q_ij W_j
        inner = np.eye(k * K) - np.swapaxes(wqw, 1, 2).reshape(k * K, k * K)
        # I - W Q W keeps, per sample, K - 1 curvature fractions in (0, 1] and 1 along W's null vector
        self.inner = 0.5 * (inner + inner.T)                              # kept for certificates
        self.chol = equilibrated_cholesky(self.inner, f"the Hessian without the {k} removed sample(s)")
        self.problem, self.Y, self.Q, self.roots, self.k = problem, Y, Q, roots, k

    def _w(self, v):
        """W_S v for v of shape (kK,): the samples' K x K roots applied block by block."""
        K = self.problem.n_classes
        return (self.roots @ v.reshape(self.k, K, 1)).ravel()

    def solve(self, b):
        """H^_{-S}^{-1} b (block order)."""
        base = self.problem.factor.solve(b)
        t = self._w(self.Y.T @ b)
        return base + self.Y @ self._w(cho_solve(self.chol, t))

    def newton_step(self, r_S):
        """H^_{-S}^{-1} X~_S^T r_S for residuals r_S of shape (k, K)."""
        r = r_S.ravel()
        correction = self._w(cho_solve(self.chol, self._w(self.Q @ r)))
        return self.Y @ (r + correction)


def check_leave_out_classes(problem, index, position=None):
    """ValueError when a removal set takes every (positively weighted) sample of a class."""
    keep = problem.sample_weight.copy()
    keep[index] = 0.0
    where = "" if position is None else f" (set {position})"
    if not keep.sum() > 0:
        raise ValueError(f"the removal set removes every (positively weighted) sample{where}")
    present = np.bincount(problem.y[keep > 0], minlength=problem.n_classes)
    if np.any(present == 0):
        raise ValueError(f"the removal set removes every sample of class(es) {np.flatnonzero(present == 0).tolist()}; "
                         f"the refitted classifier would be undefined{where}")




# -- the attribution operations (what rif._attribution calls for a multinomial problem) -------------
def _one_set(problem, index, position=None):
    from ._removal import index_set

    arr = index_set(index, problem.n_samples, position)
    check_leave_out_classes(problem, arr, position)
    return arr


def removal_sets(problem, remove):
    from ._removal import split_sets

    return split_sets(remove, lambda index, position: _one_set(problem, index, position))


def refit(problem, index, tol, max_iter, keep_anchor=False, start=None, solve=None):
    """(dtheta in block order, RefitResult) of the exact leave-``index``-out refit (with its last
    Hessian, :attr:`rif._solvers.RefitResult.anchor`, when ``keep_anchor``); ``start`` and
    ``solve`` as in :func:`rif._solvers.chord_refit`, in block order."""
    from ._solvers import chord_refit

    result = chord_refit(problem, index, tol=tol, max_iter=max_iter, keep_anchor=keep_anchor, start=start,
                         solve=solve)
    return result.theta - problem.theta_block, result


def _refit_chunk(problem, sets, tol, max_iter):
    from ._parallel import limit_threads

    with limit_threads(1):                  # the joblib workers already share out the cores
        return [refit(problem, index, tol, max_iter) for index in sets]


def _refits(problem, sets, tol, max_iter, progress, n_jobs=None, anchors=None, starts=None, solves=None):
    """Exact refits of ``sets`` (block order), one after the other or, with ``n_jobs``, in chunks
    through joblib (whose backend, e.g. dask, may spread them over a cluster). ``anchors``, a dict,
    receives the last Hessian each refit formed (:attr:`rif._solvers.RefitResult.anchor`) by
    position in ``sets``, for refits run one after the other; so may ``starts`` and ``solves``
    (one or None per set) give each refit its start and chord matrix (:func:`refit`)."""
    from joblib import Parallel, delayed, effective_n_jobs
    from tqdm.auto import tqdm

    from ._estimators import _progress_disabled, _warn_unconverged

    bar = tqdm(total=len(sets), desc="exact refits", disable=_progress_disabled(progress, len(sets)))
    keep = anchors is not None and n_jobs in (None, 1)
    if n_jobs in (None, 1):
        starts, solves = starts or [None] * len(sets), solves or [None] * len(sets)
        chunks = ([refit(problem, index, tol, max_iter, keep, start, solve)]
                  for index, start, solve in zip(sets, starts, solves))
    else:
        size = max(1, -(-len(sets) // (4 * effective_n_jobs(n_jobs))))
        chunks = Parallel(n_jobs=n_jobs, return_as="generator")(
            delayed(_refit_chunk)(problem, sets[k:k + size], tol, max_iter) for k in range(0, len(sets), size))
    out, results = np.empty((len(sets), problem.n_params)), []
    with bar:
        for chunk in chunks:
            for dtheta, result in chunk:
                if keep and result.anchor is not None:
                    anchors[len(results)] = result.anchor
                out[len(results)] = dtheta
                results.append(result)
            bar.update(len(chunk))
    _warn_unconverged(results)
    return out


def params_change_batch(problem, sets, method, tol=1e-10, max_iter=100, n_jobs=None, progress=None):
    """dtheta for each removal set, (n_sets, n_params) in scikit-learn's order."""
    if method == "retrain":
        return problem.to_public(_refits(problem, sets, tol, max_iter, progress, n_jobs))
    if method in ("rif", "newton"):
        for index in sets:
            problem.check_leverage(index)
    if method == "newton":
        out = np.stack([problem.leave_out(index).newton_step(problem.residual[index]) for index in sets])
    else:
        out = problem.solve_sums(problem.coefficients(method), sets)
    return problem.to_public(out)


def loo_params_change(problem, method, tol=1e-10, max_iter=100, n_jobs=None, progress=None):
    """dtheta_i for each training sample removed alone, (n, n_params) in scikit-learn's order;
    NaN rows (RIF, Newton) where the leverage is numerically one."""
    if method == "retrain":
        sets = [np.array([i]) for i in range(problem.n_samples)]
        return params_change_batch(problem, sets, method, tol, max_iter, n_jobs, progress)
    coef = problem.coefficients("rif" if method == "newton" else method)
    K, p1 = problem.n_classes, problem.p1
    out = np.zeros((problem.n_samples, problem.n_params))
    for start, rows in design_blocks(problem.design):
        part, c = out[start:start + len(rows)], coef[start:start + len(rows)]
        for k in range(K):                # H^-1 (coef_i (x) x~_i) = sum_k coef_ik [H^-1]_{:, k} x~_i
            part += (c[:, k:k + 1] * rows) @ problem.inverse[k * p1:(k + 1) * p1]
    return problem.to_public(out)


def _eta_change_per_sample(problem, rows, method, tol, max_iter, progress, n_jobs=None):
    """Change of eta_j (K values) of design rows ``rows`` (m, p1) for each training sample removed
    alone, shape (n, m, K)."""
    K, p1 = problem.n_classes, problem.p1
    if method == "retrain":
        sets = [np.array([i]) for i in range(problem.n_samples)]
        blocks = _refits(problem, sets, tol, max_iter, progress, n_jobs).reshape(-1, K, p1)
        return np.einsum("jq,ilq->ijl", rows, blocks)
    coef = problem.coefficients("rif" if method == "newton" else method)
    out = np.zeros((problem.n_samples, rows.shape[0], K))
    z = [(rows @ problem.inverse[l * p1:(l + 1) * p1]).reshape(-1, K, p1) for l in range(K)]  # x~_j^T [H^-1]_{l,k}
    for start, train in design_blocks(problem.design):
        part, c = out[start:start + len(train)], coef[start:start + len(train)]
        for l in range(K):
            for k in range(K):
                part[:, :, l] += c[:, k:k + 1] * (train @ z[l][:, k, :].T)
    return out


class SoftmaxTarget:
    """f(theta) = sum_j phi(y_j, eta_j) over evaluation rows, eta_j in R^K.

    ``kind``: "loss" (logsumexp(eta) - eta_y), "proba" (softmax(eta)_y) or "decision" (eta_y, the
    decision value of the class y_j chosen for row j).
    """

    def __init__(self, problem, rows, labels, kind):
        self.problem, self.rows, self.y, self.kind = problem, rows, labels, kind

    def eta(self, theta_block):
        return self.rows @ theta_block.reshape(self.problem.n_classes, self.problem.p1).T

    def phi(self, eta, labels):
        """phi and its gradient in eta, (m,) and (m, K)."""
        m = np.arange(len(eta))
        loss, prob = softmax_loss(eta, labels)
        onehot = np.zeros_like(eta)
        onehot[m, labels] = 1.0
        if self.kind == "loss":
            return loss, prob - onehot
        if self.kind == "proba":
            py = prob[m, labels]
            return py, py[:, None] * (onehot - prob)
        return eta[m, labels], onehot

    def phi_change(self, eta, d_eta, labels):
        """phi(eta + d_eta) - phi(eta) row by row, computed stably for the loss:
        log sum_k p_k exp(d_k) - d_y = log1p(sum_k p_k expm1(d_k)) - d_y where every |d_k| < 1,
        else logsumexp(eta + d) - logsumexp(eta) - d_y (the probabilities p_k may underflow there)."""
        m = np.arange(len(eta))
        if self.kind == "loss":
            _, prob = softmax_loss(eta, labels)
            small = np.abs(d_eta).max(axis=1) < 1.0
            out = np.empty(len(eta))
            out[small] = np.log1p(np.sum(prob[small] * np.expm1(d_eta[small]), axis=1))
            big = ~small
            out[big] = logsumexp(eta[big] + d_eta[big], axis=1) - logsumexp(eta[big], axis=1)
            return out - d_eta[m, labels]
        return self.phi(eta + d_eta, labels)[0] - self.phi(eta, labels)[0]

    def value(self, theta):
        block = self.problem.from_public(theta)
        return float(np.sum(self.phi(self.eta(block), self.y)[0]))

    def gradient(self, theta):
        block = self.problem.from_public(theta)
        grad_eta = self.phi(self.eta(block), self.y)[1]                 # (m, K)
        return self.problem.to_public((grad_eta.T @ self.rows).ravel()[None])[0]

    def changes(self, theta, dthetas, linear=False):
        """f(theta + dtheta_s) - f(theta) (or its linearisation) for each row of ``dthetas`` (public order)."""
        block = self.problem.from_public(theta)
        eta = self.eta(block)
        K, p1 = self.problem.n_classes, self.problem.p1
        steps = np.stack([self.problem.from_public(d) for d in dthetas]).reshape(len(dthetas) * K, p1)
        d_eta = np.swapaxes((self.rows @ steps.T).reshape(-1, len(dthetas), K), 0, 1)   # (n_sets, m, K)
        if linear:
            grad = self.phi(eta, self.y)[1]
            return np.einsum("jl,sjl->s", grad, d_eta)
        return np.array([np.sum(self.phi_change(eta, d, self.y)) for d in d_eta])

    def score_changes(self, d_eta, linear):
        """(n_train, m) changes from per-sample eta changes (n_train, m, K)."""
        eta = self.eta(self.problem.theta_block)
        if linear:
            return np.einsum("jl,ijl->ij", self.phi(eta, self.y)[1], d_eta)
        n, m, K = d_eta.shape
        flat = self.phi_change(np.repeat(eta[None], n, axis=0).reshape(-1, K), d_eta.reshape(-1, K),
                               np.tile(self.y, n))
        with np.errstate(invalid="ignore"):
            return flat.reshape(n, m)


def _eval_rows(problem, X):
    X = _check_array(X, "X")
    if _is_dask(X):
        X = np.asarray(X.compute(), dtype=np.float64)          # evaluation sets are small
    if X.shape[1] != problem.n_features:
        raise ValueError(f"X has {X.shape[1]} features but the model was fitted with {problem.n_features}")
    return _dense(_design(X, problem.fit_intercept))


def _eval_labels(problem, y, m, kind):
    if y is None:
        what = "the class whose decision value is the target" if kind == "decision" else "labels"
        raise ValueError(f"this target needs {what}: pass y")
    labels = _check_vector(y, m, "y")
    if not np.all((labels == np.round(labels)) & (labels >= 0) & (labels < problem.n_classes)):
        raise ValueError(f"y must hold class indices 0, ..., {problem.n_classes - 1}")
    return labels.astype(np.intp)


TARGETS = ("params", "decision", "proba", "loss", "self_loss", "train_loss")


def eta_target(problem, name, X=None, y=None):
    if name not in ("decision", "proba", "loss"):
        raise ValueError(f"per-sample scores support target 'decision', 'proba' or 'loss', got {name!r}")
    if X is None:
        raise ValueError("this target needs evaluation data: pass X (and y)")
    rows = _eval_rows(problem, X)
    return SoftmaxTarget(problem, rows, _eval_labels(problem, y, rows.shape[0], name), name)


def make_target(problem, target, X=None, y=None, removed=None, gradient=None):
    from ._targets import CallableTarget

    if callable(target):
        return CallableTarget(target, gradient)
    if target == "self_loss":
        return SoftmaxTarget(problem, _dense(problem.design[removed]), problem.y[removed], "loss")
    if target == "train_loss":
        design = problem.design
        return SoftmaxTarget(problem, design if isinstance(design, ChunkedDesign) else _dense(design), problem.y, "loss")
    if target in ("decision", "proba", "loss"):
        return eta_target(problem, target, X, y)
    raise ValueError(f"target must be one of {TARGETS} or a callable f(theta), got {target!r}")


def score_changes(problem, tgt, method, linear, tol, max_iter, n_jobs, progress):
    d_eta = _eta_change_per_sample(problem, tgt.rows, method, tol, max_iter, progress, n_jobs)
    return tgt.score_changes(d_eta, linear)


def self_loss_changes(problem, method, linear, tol, max_iter, n_jobs, progress):
    """Each training sample's change of its own loss when removed alone, (n,)."""
    K, p1 = problem.n_classes, problem.p1
    if method == "retrain":
        sets = [np.array([i]) for i in range(problem.n_samples)]
        blocks = _refits(problem, sets, tol, max_iter, progress, n_jobs).reshape(-1, K, p1)
        d_eta = np.concatenate([np.einsum("iq,ilq->il", rows, blocks[start:start + len(rows)])
                                for start, rows in design_blocks(problem.design)])
    else:
        coef = problem.coefficients("rif" if method == "newton" else method)
        d_eta = (problem.leverage_blocks @ coef[..., None])[..., 0]            # Q_i s_i
    tgt = SoftmaxTarget(problem, None, problem.y, "loss")
    eta = problem.predictors
    if linear:
        return np.einsum("il,il->i", tgt.phi(eta, problem.y)[1], d_eta)
    with np.errstate(invalid="ignore"):
        return tgt.phi_change(eta, d_eta, problem.y)


OPERATIONS = SimpleNamespace(
    removal_sets=removal_sets, params_change_batch=params_change_batch, loo_params_change=loo_params_change,
    make_target=make_target, eta_target=eta_target, score_changes=score_changes,
    self_loss_changes=self_loss_changes, diagnostics=False,
)
