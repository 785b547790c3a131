"""The four estimators of a leave-k-out parameter change, and effects on targets.

With V^T H V = I (see :mod:`rif._linalg`), u_i = V^T x~_i, a_i = V^T g~_i and,
for a removal set S, W_S the rows sqrt(c_i) u_i, delta_S = sum_{i in S} penalty_i
and D(delta) = diag(1 / (1 - delta mu)) (the identity under the fixed penalty):

    IF       dtheta = V sum_{i in S} a_i                                   = H^{-1} sum g~_i
    NS       dtheta = V (D(delta_S)^{-1} - W_S^T W_S)^{-1} sum_{i in S} a_i = H_{-S}^{-1} sum g~_i
    RIF      dtheta = V sum_{i in S} [D_i a_i + c_i t_i / (1 - c_i s_i) D_i u_i],
             D_i = D(penalty_i), s_i = u_i^T D_i u_i, t_i = u_i^T D_i a_i
    retrain  dtheta = argmin L_{w with w_S = 0} - theta^

Each RIF term is the exact leave-one-out Newton step (H_{-i})^{-1} g~_i by
Sherman-Morrison; under the fixed penalty it reduces to H^{-1} g_i / (1 - h_i).
NS uses Woodbury, O(k p^2 + k^3), while k < p and a dense p x p solve beyond.
"""

import warnings

import numpy as np
import scipy.linalg as sla
from scipy.linalg import lapack

from . import _design
from ._errors import NearSingularLeverageError, RetrainConvergenceWarning, SingularHessianError
from ._problem import LEVERAGE_TOL
from ._solvers import newton_refit

METHODS = ("if", "rif", "newton", "retrain")


def check_method(method):
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return method


# -- removal sets ----------------------------------------------------------------
def _one_set(problem, index, position=None):
    where = "" if position is None else f" (set {position})"
    arr = np.asarray(index)
    n = problem.n_samples
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise ValueError(f"a boolean removal mask must have shape ({n},), got {arr.shape}{where}")
        arr = np.flatnonzero(arr)
    elif arr.size == 0:
        arr = arr.astype(np.intp)
    elif arr.dtype.kind not in "iu":
        raise TypeError(f"removal indices must be integers or a boolean mask, got dtype {arr.dtype}{where}")
    if arr.ndim != 1:
        raise ValueError(f"a removal set must be 1-D, got shape {arr.shape}{where}")
    if arr.size == 0:
        raise ValueError(f"the removal set is empty{where}")
    if arr.min() < 0 or arr.max() >= n:
        raise ValueError(f"removal indices must lie in [0, {n}); got min {arr.min()}, max {arr.max()}{where}")
    if np.unique(arr).size != arr.size:
        raise ValueError(f"the removal set has duplicate indices{where}")
    keep = problem.sample_weight.copy()
    keep[arr] = 0.0
    if not keep.sum() > 0:
        raise ValueError(f"the removal set removes every (positively weighted) sample{where}")
    if problem.family.name == "binomial":
        remaining = problem.y[keep > 0]
        if remaining.min() == remaining.max():
            raise ValueError(
                f"the removal set removes every sample of class {1 - int(remaining[0])}; "
                f"the refitted classifier would be undefined{where}"
            )
    return arr.astype(np.intp)


def removal_sets(problem, remove):
    """Normalise ``remove`` to a list of index arrays and say whether it was a batch.

    A 1-D integer array or a boolean mask is one set; a list of such (ragged
    allowed) or a 2-D integer array is a batch.
    """
    if isinstance(remove, (list, tuple)) and len(remove) > 0 and all(
            np.ndim(item) == 1 for item in remove):
        return [_one_set(problem, item, k) for k, item in enumerate(remove)], True
    arr = np.asarray(remove)
    if arr.ndim == 2 and arr.dtype != bool:
        return [_one_set(problem, row, k) for k, row in enumerate(arr)], True
    return [_one_set(problem, arr)], False


# -- per-sample leave-one-out steps in whitened coordinates --------------------------
def loo_white(problem, index, method, u=None, on_singular="raise"):
    """Whitened leave-one-out parameter changes V^{-1} dtheta_i, one row per sample.

    Parameters
    ----------
    index : ndarray of int, shape (k,)
    method : {"if", "rif", "newton"}
        ``"newton"`` for a single sample is the exact leave-one-out Newton
        step, which is what ``"rif"`` computes per sample.
    u : ndarray of shape (k, p), optional
        Precomputed whitened rows V^T x~_i.
    on_singular : {"raise", "nan"}
        What to do with samples whose (shifted) leverage is numerically one.

    Returns
    -------
    ndarray of shape (k, p)
    """
    if u is None:
        u = problem.white_rows(index)
    penalty_i = problem.sample_penalty[index]
    # a_i = V^T g~_i = r_i u_i + penalty_i V^T P^T P theta^
    a = problem.residual[index, None] * u + penalty_i[:, None] * problem.penalty_gradient_white
    if method == "if":
        return a
    shift = problem.factor.shift_diag(penalty_i)          # D_i, shape (k, p)
    a = shift * a
    du = shift * u
    c = problem.curvature[index]
    s = np.einsum("ij,ij->i", u, du)                    # x~_i^T A_i^{-1} x~_i
    t = np.einsum("ij,ij->i", u, a)                     # x~_i^T A_i^{-1} g~_i
    one_minus_h = 1.0 - c * s
    singular = one_minus_h < LEVERAGE_TOL
    if singular.any():
        if on_singular == "raise":
            raise NearSingularLeverageError(
                f"sample(s) {index[singular][:10].tolist()} have leverage numerically 1 "
                f"(1 - h_i < {LEVERAGE_TOL:.1e}): removing them leaves the Hessian singular "
                "along their direction, so their Newton step is undefined; use method='if' "
                "or 'retrain', or add an L2 penalty"
            )
        one_minus_h = np.where(singular, np.nan, one_minus_h)
    return a + (c * t / one_minus_h)[:, None] * du


# -- one removal set ---------------------------------------------------------------
def _spd_solve(matrix, rhs, what):
    """Solve an SPD system, raising SingularHessianError when it is not."""
    try:
        chol = sla.cholesky(matrix, lower=True, check_finite=False)
    except np.linalg.LinAlgError:
        raise SingularHessianError(f"{what} is not positive definite") from None
    rcond, _ = lapack.dpocon(chol, np.abs(matrix).sum(axis=0).max(), uplo="L")
    if not rcond > matrix.shape[0] * np.finfo(float).eps:
        raise SingularHessianError(f"{what} is numerically singular (reciprocal condition {rcond:.1e})")
    return sla.cho_solve((chol, True), rhs, check_finite=False)


def newton_white(problem, index, a_sum, u):
    """Whitened NS: (D(delta)^{-1} - W^T W)^{-1} b by Woodbury (k < p) or densely."""
    delta = problem.sample_penalty[index].sum()
    d = problem.factor.shift_diag(delta)                  # shape (p,)
    w = np.sqrt(problem.curvature[index])[:, None] * u    # W_S, shape (k, p)
    what = f"the Hessian without the {len(index)} removed sample(s)"
    if len(index) < problem.n_params:
        # (D^-1 - W^T W)^-1 = D + D W^T (I - W D W^T)^-1 W D
        wd = w * d
        inner = np.eye(len(index)) - wd @ w.T
        db = d * a_sum
        return db + wd.T @ _spd_solve(inner, wd @ a_sum, what)
    matrix = np.diag(1.0 / d) - w.T @ w
    return _spd_solve(matrix, a_sum, what)


def params_change_one(problem, index, method, tol=1e-10, max_iter=100):
    """dtheta for removing the samples ``index`` (validated), shape (p,)."""
    if method == "retrain":
        weights = problem.sample_weight.copy()
        weights[index] = 0.0
        result = newton_refit(problem, weights, problem.theta, tol=tol, max_iter=max_iter)
        if not result.converged:
            warnings.warn(
                f"the exact refit did not converge in {result.n_iter} Newton iterations "
                f"(gradient norm {result.gradient_norm:.2e}); the ground truth is approximate",
                RetrainConvergenceWarning, stacklevel=3,
            )
        return result.theta - problem.theta
    u = problem.white_rows(index)
    if method == "newton":
        a_sum = loo_white(problem, index, "if", u=u).sum(axis=0)
        return problem.factor.from_white(newton_white(problem, index, a_sum, u))
    return problem.factor.from_white(loo_white(problem, index, method, u=u).sum(axis=0))


# -- all samples one at a time ---------------------------------------------------------
def _refit_each(problem, rows, tol, max_iter):
    for i in rows:
        yield i, params_change_one(problem, np.array([i]), "retrain", tol, max_iter)


def per_sample_eta_change(problem, target_x, method, tol=1e-10, max_iter=100):
    """Change of x~_j^T theta for every training sample i removed alone.

    Returns an (n, m) array: entry (i, j) is x~_j^T dtheta_i with x~_j the rows
    of ``target_x`` (an (m, d) matrix).
    """
    n, m = problem.n_samples, target_x.shape[0]
    out = np.empty((n, m))
    if method == "retrain":
        for i, dtheta in _refit_each(problem, range(n), tol, max_iter):
            out[i] = _design.linear_predictor(target_x, dtheta, problem.fit_intercept)
        return out
    target_white = problem.factor.to_white(_design.rows(target_x, np.arange(m), problem.fit_intercept).T)
    for sl, u in problem.white_row_blocks():
        index = np.arange(sl.start, sl.stop)
        out[sl] = loo_white(problem, index, method, u=u, on_singular="nan") @ target_white
    return out


def self_eta_change(problem, method, tol=1e-10, max_iter=100):
    """x~_i^T dtheta_i: the change of each training sample's own eta when it is removed."""
    out = np.empty(problem.n_samples)
    if method == "retrain":
        for i, dtheta in _refit_each(problem, range(problem.n_samples), tol, max_iter):
            out[i] = _design.rows(problem.X, [i], problem.fit_intercept)[0] @ dtheta
        return out
    for sl, u in problem.white_row_blocks():
        index = np.arange(sl.start, sl.stop)
        out[sl] = np.einsum("ij,ij->i", loo_white(problem, index, method, u=u, on_singular="nan"), u)
    return out
