"""The Hessian of a ridge-penalised GLM inverted through the n x n kernel (the dual route).

When every feature carries the L2 penalty (lambda > 0), the Hessian

    H = X~^T C X~ + lambda P^T P,   C = diag(c),  X~ = [X, 1],  P^T P = diag(1, ..., 1, 0),

has, on the features alone, A = X^T C X + lambda I, and Woodbury's identity needs only the
n x n matrix

    M = lambda I + C^{1/2} G C^{1/2},   G = X X^T   (the kernel),

    A^{-1} b = (b - X^T C^{1/2} M^{-1} C^{1/2} X b) / lambda.

M >= lambda I is definite, so its Cholesky factor always exists; for p > n it costs
n^3 / 3 instead of the p^3 / 3 of H's, and G costs n^2 p (or far less for sparse X) instead
of H's n p^2. An unpenalised intercept is a rank-one border: with b = X^T c, the Schur
complement s = sum(c) - c^T X A^{-1} X^T c > 0 and a = A^{-1} X^T c = X^T alpha,

    H^{-1} (b_f, b_0) = (A^{-1} b_f - a gamma, gamma),   gamma = (b_0 - a^T b_f) / s,

so one solve reads X twice (X b_f, then X^T of an n-column block) whatever the intercept.
Training rows need no pass at all for their products with X: X x_i = G e_i.

The generalised leverages follow from the diagonal of M^{-1}: C^{1/2} X A^{-1} X^T C^{1/2}
= I - lambda M^{-1}, so

    h_i = 1 - lambda (M^{-1})_ii + c_i (1 - v_i)^2 / s,   v = X a,

one triangular inversion (n^3 / 3) and column norms; 1 - h_i is computed without
cancellation where it matters (near one), as lambda (M^{-1})_ii.
"""

from functools import cached_property

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
from scipy.linalg import lapack

from . import _parallel
from ._config import THREADED_BLAS_SIZE
from ._errors import SingularHessianError
from ._linalg import cho_solve, spd_cholesky


def kernel_threads(n):
    """BLAS threads for an n x n factorisation or product: all of them from THREADED_BLAS_SIZE on."""
    return _parallel.blas_limit(_parallel.available_threads() if n >= THREADED_BLAS_SIZE else 1)


def gram_matrix(X):
    """G = X X^T as a dense (n, n) array: a symmetric rank-k update for dense X (half a
    matrix product), a sparse product for CSR X (cheap when rows share few columns)."""
    n = X.shape[0]
    with kernel_threads(n):
        if sp.issparse(X):
            return np.asarray((X @ X.T).toarray(), dtype=np.float64)
        upper = sla.blas.dsyrk(1.0, np.asarray(X, dtype=np.float64).T, trans=1)   # (X^T)^T X^T = X X^T
    lower = np.tril_indices(n, -1)
    upper[lower] = upper.T[lower]
    return upper


class KernelHessian:
    """H = X~^T diag(c) X~ + lambda P^T P applied and inverted through the kernel G = X X^T.

    It offers what the estimators need of a factorised Hessian without forming a p x p
    matrix: :meth:`solve` (H^{-1} b), :meth:`solve_rows` (H^{-1} X~_S^T for training rows),
    :meth:`row_products` (X~ H^{-1} X~_S^T) and :attr:`leverages`. See the module doc for
    the formulas.

    Parameters
    ----------
    X : ndarray or CSR matrix of shape (n, d)
    gram : ndarray of shape (n, n)
        X X^T (shared between factorisations; not modified).
    curvature : ndarray of shape (n,)
        c_i >= 0.
    lam : float
        The L2 strength lambda > 0 on every feature.
    fit_intercept : bool
    what : str
        How error messages name this matrix.

    Raises
    ------
    SingularHessianError
        If M is numerically singular relative to its own scale (lambda below rounding of
        C^{1/2} G C^{1/2}), or, with an intercept, if the Schur complement s is not
        positive relative to sum(c) (no curvature left to fix the intercept).
    """

    def __init__(self, X, gram, curvature, lam, fit_intercept, what="the Hessian"):
        if not lam > 0:
            raise ValueError("the kernel route needs an L2 penalty on every feature (lambda > 0)")
        n = gram.shape[0]
        self.X, self.gram, self.lam, self.fit_intercept = X, gram, float(lam), fit_intercept
        self.n_samples, self.n_params = n, X.shape[1] + int(fit_intercept)
        self.curvature = np.asarray(curvature, dtype=np.float64)
        self.sqrt_c = np.sqrt(self.curvature)
        kernel = gram * self.sqrt_c[:, None]
        kernel *= self.sqrt_c[None, :]
        kernel[np.diag_indices(n)] += self.lam
        if not np.all(np.isfinite(kernel)):
            raise SingularHessianError(f"{what} has non-finite entries")
        with kernel_threads(n):
            # M >= lambda I, so cond_2(M) <= (lambda + trace C^{1/2} G C^{1/2}) / lambda: when that bound
            # already clears n eps, the equilibrated condition estimate (an O(n^2) read) is not needed
            spread = self.lam / (self.lam + float(self.curvature @ np.diag(gram)))
            if spread > n * np.finfo(float).eps:
                try:
                    self._chol = sla.cholesky(kernel, lower=True, overwrite_a=True, check_finite=False)
                except np.linalg.LinAlgError:
                    raise SingularHessianError(f"{what} is not positive definite") from None
            else:
                self._chol = spd_cholesky(kernel, what)
        del kernel
        if fit_intercept:
            c = self.curvature
            # a = A^{-1} X^T c = X^T alpha with alpha = (c - sqrt(c) M^{-1} sqrt(c) G c) / lambda
            gc = gram @ c
            self._alpha = (c - self._weighted_kernel_solve(gc)) / self.lam
            self._v = gram @ self._alpha                      # v = X a
            self._schur = float(c.sum() - c @ self._v)        # s = sum(c) - c^T X A^{-1} X^T c
            if not self._schur > n * np.finfo(float).eps * max(c.sum(), np.finfo(float).tiny):
                raise SingularHessianError(
                    f"{what} is numerically singular along the intercept (no curvature left to "
                    "determine it)")

    # -- M^{-1} and its diagonal --------------------------------------------------------
    def _weighted_kernel_solve(self, z):
        """C^{1/2} M^{-1} C^{1/2} z for z of shape (n,) or (n, m)."""
        sc = self.sqrt_c if z.ndim == 1 else self.sqrt_c[:, None]
        return sc * cho_solve(self._chol, sc * z)

    def _inner(self, xb, b0):
        """The n-space coefficients of a solve: H^{-1} (b_f, b_0) = ((b_f - X^T z) / lambda, gamma)
        from xb = X b_f; returns (z, gamma) (gamma None without an intercept)."""
        z = self._weighted_kernel_solve(xb)
        if not self.fit_intercept:
            return z, None
        gamma = (b0 - self._alpha @ xb) / self._schur           # (b_0 - a^T b_f) / s
        return z + self.lam * (np.outer(self._alpha, gamma) if xb.ndim == 2 else self._alpha * gamma), gamma

    # -- solves -------------------------------------------------------------------------
    def solve(self, b):
        """H^{-1} b for b of shape (p,) or (p, m): two passes over X."""
        b = np.asarray(b, dtype=np.float64)
        d = self.X.shape[1]
        b_f = b[:d]
        xb = np.asarray(self.X @ b_f)
        z, gamma = self._inner(xb, b[d] if self.fit_intercept else None)
        out_f = (b_f - np.asarray(self.X.T @ z)) / self.lam
        if not self.fit_intercept:
            return out_f
        return np.concatenate([out_f, gamma[None] if b.ndim == 2 else [gamma]], axis=0)

    def _row_inner(self, index):
        """(z, gamma) of H^{-1} X~_S^T for training rows S, from the kernel's columns (no pass)."""
        xb = self.gram[:, index]
        return self._inner(xb, np.ones(len(index)) if self.fit_intercept else None)

    def solve_rows(self, index, inner=None):
        """H^{-1} X~_S^T for the training rows ``index``, shape (p, k): one pass (X^T z).
        ``inner``: their (z, gamma) from :meth:`_row_inner`, if already computed."""
        index = np.asarray(index)
        z, gamma = self._row_inner(index) if inner is None else inner
        rows = self.X[index]
        rows_t = rows.T.toarray() if sp.issparse(rows) else np.asarray(rows).T
        out_f = (rows_t - np.asarray(self.X.T @ z)) / self.lam
        return out_f if gamma is None else np.vstack([out_f, gamma[None]])

    def row_products(self, index, rows=None, inner=None):
        """X~_R H^{-1} X~_S^T for training rows R (default all) against rows S = ``index``,
        shape (|R|, k), from the kernel: no pass over X."""
        index = np.asarray(index)
        z, gamma = self._row_inner(index) if inner is None else inner
        gram = self.gram if rows is None else self.gram[rows]
        out = (gram[:, index] - gram @ z) / self.lam
        return out if gamma is None else out + gamma[None, :]

    def training_products(self, b):
        """X~ H^{-1} b for b of shape (p,) or (p, m): the training rows' linear predictors of a
        solve, from the kernel (one pass, X b_f, instead of three)."""
        b = np.asarray(b, dtype=np.float64)
        d = self.X.shape[1]
        xb = np.asarray(self.X @ b[:d])
        z, gamma = self._inner(xb, b[d] if self.fit_intercept else None)
        out = (xb - self.gram @ z) / self.lam
        return out if gamma is None else out + gamma

    @cached_property
    def inverse_norm_bound(self):
        """An upper bound of ||H^{-1}||_2: 1 / lambda without an intercept; with one,
        H^{-1} = blockdiag(A^{-1}, 0) + u u^T / s with u = (a, -1), so
        ||H^{-1}||_2 <= 1 / lambda + (1 + ||a||^2) / s, ||a||^2 = alpha^T G alpha."""
        if not self.fit_intercept:
            return 1.0 / self.lam
        return 1.0 / self.lam + (1.0 + float(self._alpha @ self._v)) / self._schur

    @cached_property
    def inverse(self):
        """H^{-1} as a dense (p, p) array (p solves; for the classical diagnostics only)."""
        inv = self.solve(np.eye(self.n_params))
        return 0.5 * (inv + inv.T)

    # -- leverages ------------------------------------------------------------------------
    @cached_property
    def leverages(self):
        """(h, q, one_minus_h): h_i = c_i q_i, q_i = x~_i^T H^{-1} x~_i, and 1 - h_i, each (n,).

        lambda (M^{-1})_ii = 1 - c_i x_i^T A^{-1} x_i comes from one triangular inversion;
        q_i = h_i / c_i where c_i G_ii > lambda and the direct formula
        x_i^T A^{-1} x_i = (G_ii - g_i^T C^{1/2} M^{-1} C^{1/2} g_i) / lambda elsewhere (then
        h_i = c_i q_i): h_i is off by about eps, so h_i / c_i by eps / c_i, while the direct formula is
        off by about eps G_ii / lambda (q_i <= G_ii / lambda), the smaller one exactly where
        c_i G_ii <= lambda (a logistic sample with curvature 2e-41 got q_i = -1e25 from h_i / c_i).
        """
        n = self.n_samples
        with kernel_threads(n):
            inv_chol, info = lapack.dtrtri(self._chol, lower=1)
        if info != 0:
            raise SingularHessianError("the kernel's Cholesky factor is singular")
        # scipy's factor is zero above the diagonal and dtrtri writes only the lower triangle
        one_minus = self.lam * np.einsum("ij,ij->j", inv_chol, inv_chol)     # lambda (M^{-1})_ii
        del inv_chol
        c = self.curvature
        h = 1.0 - one_minus
        q = np.empty(n)
        through_h = c * np.diag(self.gram) > self.lam
        q[through_h] = h[through_h] / c[through_h]
        flat = np.flatnonzero(~through_h)
        if flat.size:
            gi = self.gram[:, flat]
            q[flat] = np.maximum(
                self.gram[flat, flat] - np.einsum("ij,ij->j", gi, self._weighted_kernel_solve(gi)), 0.0) / self.lam
            h[flat] = c[flat] * q[flat]
        if self.fit_intercept:
            border = (1.0 - self._v) ** 2 / self._schur
            q = q + border
            h = h + c * border
            one_minus = one_minus - c * border
        return h, q, one_minus


class KernelLeaveOut:
    """H_{-S} = F - X~_S^T C_S X~_S by Woodbury on a :class:`KernelHessian` F (F = H, or H - delta P^T P
    under the per-sample penalty):

        H_{-S}^{-1} b = F^{-1} b + Y (I_k - C_S^{1/2} X~_S F^{-1} X~_S^T C_S^{1/2})^{-1} Y^T b,
        Y = F^{-1} X~_S^T C_S^{1/2},

    with the k x k block read off the kernel (no pass over X) and judged definite on the same
    absolute scale as the primal route's (:func:`rif._linalg.equilibrated_cholesky`)."""

    def __init__(self, factor, index, curvature):
        from ._linalg import equilibrated_cholesky

        index = np.asarray(index)
        k = index.size
        self.factor = factor
        sc = np.sqrt(curvature)
        inner = factor._row_inner(index)                            # one kernel solve, k right-hand sides
        self._y = factor.solve_rows(index, inner) * sc              # (p, k)
        block = factor.row_products(index, index, inner)            # X~_S F^{-1} X~_S^T
        inner = np.eye(k) - sc[:, None] * (0.5 * (block + block.T)) * sc[None, :]
        self._chol = equilibrated_cholesky(inner, f"the Hessian without the {k} removed sample(s)")

    def solve(self, b):
        """H_{-S}^{-1} b for b of shape (p,) or (p, m)."""
        return self.factor.solve(b) + self._y @ cho_solve(self._chol, self._y.T @ b)
