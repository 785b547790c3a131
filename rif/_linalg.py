"""One factorisation of the Hessian, used as a whitening transform.

Every estimator in rif works in *whitened coordinates*: a matrix V with

    V^T H V = I,   so   H^{-1} = V V^T.

For the fixed-penalty convention V = L^{-T} with H = L L^T (Cholesky), and
applying V or V^T is one triangular solve. When the penalty scales with the
sample weights, removing samples also shifts H by -delta P^T P; then V comes
from the generalised eigenproblem P^T P v = mu H v, which additionally gives

    V^T P^T P V = diag(mu),   so   (H - delta P^T P)^{-1} = V diag(1 / (1 - delta mu)) V^T

for every delta at O(p^2) per solve. Since H >= lambda P^T P, mu lies in
[0, 1 / lambda] and 1 - delta mu >= 1 - delta / lambda > 0 whenever fewer
than all of the weight is removed.
"""

from functools import cached_property

import numpy as np
import scipy.linalg as sla
from scipy.linalg import lapack

from ._config import LEVERAGE_TOL
from ._errors import SingularHessianError


class WhitenedHessian:
    """Factorisation of a symmetric positive definite Hessian.

    Parameters
    ----------
    hessian : ndarray of shape (p, p)
    penalty_diag : ndarray of shape (p,), optional
        Diagonal of P^T P (1 for penalised coordinates, 0 for the intercept).
        When given, the factorisation supports penalty shifts (see module doc).
    cholesky : ndarray of shape (p, p), optional
        A lower Cholesky factor of ``hessian`` already computed (upper triangle ignored).

    Raises
    ------
    SingularHessianError
        If ``hessian`` is not numerically positive definite: the Cholesky
        factorisation fails or the reciprocal condition number of the
        equilibrated matrix S H S, S = diag(H)^{-1/2}, is below ``p * eps``.
        Equilibrating first makes the test blind to the units of the features,
        as the accuracy of the Cholesky factor and its solves is (van der Sluis).
    """

    def __init__(self, hessian, penalty_diag=None, cholesky=None):
        p = hessian.shape[0]
        if not np.all(np.isfinite(hessian)):
            raise SingularHessianError("the Hessian has non-finite entries")
        try:
            if cholesky is None:
                self._chol = sla.cholesky(hessian, lower=True, check_finite=False)
            else:
                # the upper triangle may hold garbage: every use below reads only the lower one
                self._chol = cholesky
        except np.linalg.LinAlgError:
            raise SingularHessianError(
                "the Hessian is not positive definite: the fit is unpenalised with "
                "collinear or too few samples (d >= n), or the data are separable; "
                "add an L2 penalty or remove redundant features"
            ) from None
        self.rcond = _equilibrated_rcond(hessian, self._chol)
        if not self.rcond > p * np.finfo(float).eps:
            raise SingularHessianError(
                f"the Hessian is numerically singular (reciprocal condition number "
                f"{self.rcond:.2e}); influence estimates would carry no correct digits. "
                "Add an L2 penalty or remove redundant features"
            )
        self.shiftable = penalty_diag is not None
        if self.shiftable:
            mu, self._v = sla.eigh(np.diag(penalty_diag.astype(float)), hessian,
                                   check_finite=False)
            self.mu = np.clip(mu, 0.0, None)
        else:
            self.mu = np.zeros(p)
        self.n_params = p

    @property
    def cholesky(self):
        """The lower Cholesky factor L of H, H = L L^T (upper triangle undefined)."""
        return self._chol

    def to_white(self, b):
        """V^T b for b of shape (p,) or (p, m)."""
        if self.shiftable:
            return self._v.T @ b
        return triangular_solve(self._chol, b)

    def from_white(self, a):
        """V a for a of shape (p,) or (p, m)."""
        if self.shiftable:
            return self._v @ a
        return triangular_solve(self._chol, a, transpose=True)

    def solve(self, b):
        """H^{-1} b."""
        return self.from_white(self.to_white(b))

    @cached_property
    def inverse(self):
        """H^{-1} = V V^T, shape (p, p), exactly symmetric.

        For many right-hand sides (rows of X) one product with H^{-1} runs at
        matrix-multiply speed, about twice the speed of two triangular solves.
        """
        inv = self.solve(np.eye(self.n_params))
        return 0.5 * (inv + inv.T)

    def shift_diag(self, delta):
        """Diagonal of V^T (H - delta P^T P)^{-1} V^{-T}, i.e. 1 / (1 - delta mu).

        ``delta`` is a scalar or an array of shape (k,); the result has shape
        (p,) or (k, p).
        """
        delta = np.asarray(delta, dtype=float)
        if not self.shiftable:
            if np.any(delta != 0.0):
                raise RuntimeError("this factorisation was built without penalty shifts")
            return np.ones(delta.shape + (self.n_params,))
        return 1.0 / (1.0 - delta[..., None] * self.mu)


def _equilibrated_rcond(matrix, chol):
    """Reciprocal 1-norm condition number of D H D, D ~ diag(H)^{-1/2}, from H = L L^T.

    The Cholesky factor of D H D is D L, and Cholesky solves are as accurate as
    the best diagonal scaling allows (van der Sluis), so this judges
    singularity independently of the units of the features: rescaling a
    column of X leaves it unchanged. D is rounded to powers of two, so that
    the rows of ``chol`` are scaled in place and restored exactly, and the norm
    of D H D is taken by column blocks: no p x p temporary.
    """
    diag = np.diag(matrix)
    if not np.all(diag > 0):
        return 0.0
    scale = np.exp2(np.round(-0.5 * np.log2(diag)))
    p = matrix.shape[0]
    step = max(1, (1 << 22) // p)
    norm = 0.0
    for j in range(0, p, step):
        block = np.abs(matrix[:, j:j + step]).T @ scale        # column sums of |H| D, this block
        norm = max(norm, float(np.max(block * scale[j:j + step])))
    chol *= scale[:, None]
    try:
        rcond, _ = lapack.dpocon(chol, norm, uplo="L")
    finally:
        chol /= scale[:, None]
    return rcond


def spd_cholesky(matrix, what):
    """Lower Cholesky factor of an SPD matrix, or SingularHessianError naming ``what``.

    The test is relative: the reciprocal condition number of the diagonally
    equilibrated matrix against ``p * eps`` (see :class:`WhitenedHessian`). Use
    :func:`equilibrated_cholesky` for a matrix whose scale is known (a Hessian whitened by H).
    """
    chol = _cholesky(matrix, what)
    rcond = _equilibrated_rcond(matrix, chol)
    if not rcond > matrix.shape[0] * np.finfo(float).eps:
        raise SingularHessianError(f"{what} is numerically singular (reciprocal condition {rcond:.1e})")
    return chol


def cho_solve(chol, b):
    """A^{-1} b from A's lower Cholesky factor ``chol`` (its upper triangle is not read), by
    LAPACK's dpotrs directly: SciPy's wrapper costs about 8 us a call, most of a solve at the
    sizes of the certificates' and refits' small systems. A C-ordered factor is passed as the
    upper factor of its transpose (L^T, Fortran-ordered) rather than copied."""
    if chol.dtype == np.float64 and chol.flags.f_contiguous:
        x, info = lapack.dpotrs(chol, b, lower=1)
    elif chol.dtype == np.float64 and chol.flags.c_contiguous:
        x, info = lapack.dpotrs(chol.T, b, lower=0)
    else:
        return sla.cho_solve((chol, True), b, check_finite=False)
    if info != 0:
        raise ValueError(f"LAPACK dpotrs failed (info {info})")
    return x


def triangular_solve(lower, b, transpose=False):
    """L^{-1} b (or L^{-T} b) for a lower-triangular ``lower``, by LAPACK's dtrtrs directly (see
    :func:`cho_solve`; a C-ordered L is passed as the upper-triangular L^T)."""
    if lower.dtype == np.float64 and lower.flags.f_contiguous:
        x, info = lapack.dtrtrs(lower, b, lower=1, trans=int(transpose))
    elif lower.dtype == np.float64 and lower.flags.c_contiguous:
        x, info = lapack.dtrtrs(lower.T, b, lower=0, trans=int(not transpose))
    else:
        return sla.solve_triangular(lower, b, lower=True, trans="T" if transpose else "N", check_finite=False)
    if info != 0:
        raise ValueError(f"LAPACK dtrtrs failed (info {info})")
    return x


def _cholesky(matrix, what):
    try:
        return sla.cholesky(matrix, lower=True, check_finite=False)
    except np.linalg.LinAlgError:
        raise SingularHessianError(f"{what} is not positive definite") from None


def smallest_eigenvalue_estimate(chol, anorm):
    """An estimate of lambda_min(A) from A's lower Cholesky factor and ||A||_1.

    LAPACK's dpocon estimates ||A^{-1}||_1 (Hager and Higham's method), and
    1 / ||A^{-1}||_1 lies in [lambda_min / sqrt(k), sqrt(k) lambda_min]; the estimate
    is rarely off by more than a factor of 3 in practice.
    """
    rcond, info = lapack.dpocon(chol, anorm, uplo="L")
    return float(rcond * anorm) if info == 0 else 0.0


def _singular_leave_out(what, curvature):
    return SingularHessianError(
        f"{what} is numerically singular: along some direction it keeps a fraction "
        f"{max(curvature, 0.0):.1e} of the full Hessian's curvature (below {LEVERAGE_TOL:.1e}). "
        "Removing these samples leaves a parameter undetermined (a sample that alone carries "
        "a feature, leverage numerically 1, or fewer remaining samples than parameters without "
        "a penalty), so the Newton step is undefined and the refit is not unique; add an L2 "
        "penalty or remove other samples"
    )


def equilibrated_cholesky(matrix, what):
    """Lower Cholesky factor of a leave-out Hessian whitened by H, judged on an absolute scale.

    ``matrix`` is V^T H_{-S} V = D^{-1} - W^T W (or the Woodbury block I - W D W^T, which has
    the same eigenvalues below one): its eigenvalues are the fractions of H's curvature
    that H_{-S} keeps, in (0, 1] when H_{-S} is definite. A relative test (condition number
    against k eps) would accept a 1 x 1 block ``1 - h`` of 1e-16, or rounding noise of
    order k eps in ``I - W D W^T``; so the smallest eigenvalue must instead exceed
    LEVERAGE_TOL (sqrt(eps)), the same floor as ``1 - h_i`` for one sample.

    Raises
    ------
    SingularHessianError
    """
    chol = _cholesky(matrix, what)
    floor = smallest_eigenvalue_estimate(chol, np.abs(matrix).sum(axis=0).max())
    if not floor > LEVERAGE_TOL:
        raise _singular_leave_out(what, floor)
    return chol


def relative_curvature_floor(hessian, leave_out_solve, n_iter=30, seed=0):
    """An estimate of gamma = lambda_min(H^{-1/2} H_{-S} H^{-1/2}), the fraction of H's curvature
    that H_{-S} keeps in its weakest direction, for an unwhitened H_{-S}.

    Power iteration on H_{-S}^{-1} H, whose largest eigenvalue is 1 / gamma, with a
    Rayleigh quotient in the H-inner product; each iteration is one product with H
    and one solve with the factorised H_{-S}, O(p^2). A singular direction (gamma
    ~ eps) dominates after one or two iterations.
    """
    v = np.random.default_rng(seed).standard_normal(hessian.shape[0])
    mu = 1.0
    for _ in range(n_iter):
        hv = hessian @ v
        w = leave_out_solve(hv)                     # H_{-S}^{-1} H v
        hw = hessian @ w
        denominator = v @ hw                        # v^T H H_{-S}^{-1} H v (> 0 when definite)
        if not denominator > 0:
            return 0.0
        mu = float((w @ hw) / denominator)          # Rayleigh quotient of H_{-S}^{-1} H, H-inner product
        norm = np.sqrt(w @ hw)
        if not np.isfinite(norm) or norm == 0:
            return 0.0
        v = w / norm
    return 1.0 / mu if mu > 0 else 0.0


def certified_floor(matrix, chol, metric=None, metric_floor=1.0, n_vectors=8, n_iter=4, seed=0,
                    fractions=(0.9, 0.75, 0.5, 0.25, 0.1), try_gershgorin=True):
    """A lower bound, proved by a Cholesky factorisation, of the smallest eigenvalue of the pencil
    (A, M): lambda_min(M^{-1/2} A M^{-1/2}), with A = ``matrix`` (factor ``chol``) and M = ``metric``
    (the identity by default), both symmetric positive definite.

    A few steps of block inverse iteration (V <- A^{-1} M V, ``n_vectors`` columns) and a
    Rayleigh-Ritz step give mu >= lambda_min, typically within 1 % of it (for the
    clustered spectra of 1-5 % removals; with four columns and three steps the softmax models'
    leave-out Hessians were often more than 11 % above, so that the first factorisation below
    failed for most of them). Then tau = 0.9 mu, and smaller
    fractions of it if needed (``fractions``), is proved by factorising A - tau M: A - tau M >= 0 in exact
    arithmetic up to Cholesky's backward error, ||E||_2 <= 8 k eps ||A||_1 (Demmel), which is
    taken off relative to lambda_min(M) >= ``metric_floor``. Costs O(k^2) per iteration and one
    k^3 / 3 factorisation per try; returns 0.0 when nothing positive is proved. With M = I,
    Gershgorin's bound is taken instead when it already proves half the smallest diagonal entry
    (the fractions of curvature a small removal keeps are near one), unless ``try_gershgorin`` is
    False.
    """
    k = matrix.shape[0]
    if metric is None and try_gershgorin:
        # Gershgorin first, O(k^2): lambda_min(A) >= min_i (a_ii - sum_{j != i} |a_ij|)
        diag = np.diag(matrix)
        gershgorin = float(np.min(2.0 * diag - np.abs(matrix).sum(axis=1)))
        margin = 8.0 * k * np.finfo(float).eps * float(np.abs(matrix).sum(axis=0).max())
        if gershgorin - margin >= 0.5 * float(diag.min()):
            return gershgorin - margin
    apply_metric = (lambda v: v) if metric is None else (lambda v: metric @ v)
    V = np.random.default_rng(seed).standard_normal((k, min(n_vectors, k)))
    for _ in range(n_iter):
        V = np.linalg.qr(cho_solve(chol, apply_metric(V)))[0]
    MV = apply_metric(V)
    ritz = sla.eigh(V.T @ matrix @ V, V.T @ MV, eigvals_only=True, check_finite=False)
    margin = 8.0 * k * np.finfo(float).eps * float(np.abs(matrix).sum(axis=0).max()) / metric_floor
    metric_matrix = np.eye(k) if metric is None else metric
    for fraction in fractions:
        tau = fraction * float(ritz[0])
        if not tau > margin:
            break
        try:
            sla.cholesky(matrix - tau * metric_matrix, lower=True, check_finite=False)
        except np.linalg.LinAlgError:
            continue
        return tau - margin
    return 0.0


def check_leave_out_definite(hessian, leave_out_solve, what, leave_out=None, metric_floor=None):
    """SingularHessianError unless H_{-S} keeps more than LEVERAGE_TOL of H's curvature
    in every direction (see :func:`equilibrated_cholesky`).

    ``leave_out`` = (H_{-S}, its lower Cholesky factor), when H_{-S} was formed, with
    ``metric_floor`` <= lambda_min(H), lets a Cholesky factorisation prove the floor first
    (:func:`certified_floor`, about one p x p factorisation); the power iteration of
    :func:`relative_curvature_floor` (30 solves) decides only when that proves nothing."""
    if leave_out is not None and metric_floor is not None and metric_floor > 0:
        if certified_floor(leave_out[0], leave_out[1], hessian, metric_floor) > LEVERAGE_TOL:
            return
    gamma = relative_curvature_floor(hessian, leave_out_solve)
    if not gamma > LEVERAGE_TOL:
        raise _singular_leave_out(what, gamma)


class LeaveOutHessian:
    """The leave-S-out Hessian at theta^, H_{-S} = H - sum_{i in S} H_i, factorised once.

    In whitened coordinates (see the module doc) with W the rows sqrt(c_i) u_i
    and D = D(delta_S),

        V^T H_{-S} V = D^{-1} - W^T W,
        (D^{-1} - W^T W)^{-1} = D + D W^T (I_k - W D W^T)^{-1} W D      (Woodbury),

    which costs O(k p^2 + k^3) while k < p; from k >= p on, the p x p matrix
    is formed and factorised directly, O(k p^2 + p^3).

    Parameters
    ----------
    factor : WhitenedHessian
    u : ndarray of shape (k, p)
        Whitened rows V^T x~_i of the removed samples.
    curvature : ndarray of shape (k,)
        c_i of the removed samples.
    delta : float
        Their total penalty share (0 under the fixed convention).

    Raises
    ------
    SingularHessianError
        If H_{-S} is not numerically positive definite: its whitened form must keep
        more than LEVERAGE_TOL of H's curvature in every direction
        (:func:`equilibrated_cholesky`).
    """

    def __init__(self, factor, u, curvature, delta):
        k, p = u.shape
        self.factor = factor
        self.d = factor.shift_diag(delta)
        w = np.sqrt(curvature)[:, None] * u
        what = f"the Hessian without the {k} removed sample(s)"
        self.woodbury = k < p
        if self.woodbury:
            self.wd = w * self.d
            root = w if np.all(self.d == 1.0) else w * np.sqrt(self.d)
            self.inner = np.eye(k) - root @ root.T          # W D W^T as a symmetric rank-k update
        else:
            self.inner = np.diag(1.0 / self.d) - w.T @ w
        self.chol = equilibrated_cholesky(self.inner, what)   # ``inner`` is kept for certificates

    def solve_white(self, b):
        """(V^T H_{-S} V)^{-1} b for whitened b of shape (p,) or (p, m)."""
        if self.woodbury:
            d = self.d if b.ndim == 1 else self.d[:, None]
            return d * b + self.wd.T @ cho_solve(self.chol, self.wd @ b)
        return cho_solve(self.chol, b)

    def solve(self, b):
        """H_{-S}^{-1} b."""
        return self.factor.from_white(self.solve_white(self.factor.to_white(b)))
