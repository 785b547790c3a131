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

import contextlib
import warnings

import numpy as np
import scipy.sparse as sp
from . import _design
from ._errors import NearSingularLeverageError, RetrainConvergenceWarning, SingularHessianError
from ._linalg import LeaveOutHessian, smallest_eigenvalue_estimate
from . import _parallel
from ._parallel import limit_threads
from ._removal import index_set, split_sets
from ._config import BLOCK_VALUES, LEVERAGE_TOL, THREADED_BLAS_SIZE
from ._solvers import chord_refit, chord_refits

METHODS = ("if", "rif", "newton", "retrain")


def check_method(method):
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return method


# -- removal sets ----------------------------------------------------------------
def _one_set(problem, index, position=None):
    """index_set plus what the GLM needs: weight left, and both classes for the binomial."""
    arr = index_set(index, problem.n_samples, position)
    where = "" if position is None else f" (set {position})"
    counts = _weighted_counts(problem)
    left = counts.total - int(np.count_nonzero(counts.positive[arr]))       # positively weighted samples kept
    if left == 0:
        raise ValueError(f"the removal set removes every (positively weighted) sample{where}")
    if counts.ones is not None:
        ones = counts.ones - int(np.count_nonzero(counts.one[arr]))
        if ones in (0, left):
            raise ValueError(f"the removal set removes every sample of class {1 if ones == 0 else 0}; "
                             f"the refitted classifier would be undefined{where}")
    elif problem.family.name == "binomial":                                  # proportions: any two values
        keep = counts.positive.copy()
        keep[arr] = False
        remaining = problem.y[keep]
        if remaining.min() == remaining.max():
            raise ValueError(f"the removal set leaves only samples with y = {remaining[0]:g}; "
                             f"the refitted classifier would be undefined{where}")
    return arr


def _weighted_counts(problem):
    """The positively weighted samples and their count, and for 0/1 binomial labels those of class
    1 (``ones`` None otherwise): what every removal set's checks subtract from (cached)."""
    from types import SimpleNamespace

    cache = problem.__dict__.get("_weighted_counts")
    if cache is None:
        positive = problem.sample_weight > 0
        binary = problem.family.name == "binomial" and bool(np.all((problem.y == 0) | (problem.y == 1)))
        one = positive & (problem.y == 1) if binary else None
        cache = problem.__dict__["_weighted_counts"] = SimpleNamespace(
            positive=positive, total=int(positive.sum()), one=one,
            ones=int(one.sum()) if binary else None)
    return cache


def removal_sets(problem, remove):
    """Normalise ``remove`` to a list of validated index arrays and say whether it was a batch."""
    return split_sets(remove, lambda index, position: _one_set(problem, index, position))


# -- per-sample leave-one-out steps in whitened coordinates --------------------------
def loo_basis(problem, method):
    """The whitening of the per-sample leave-one-out steps: (factor, V^T P^T P theta^, shifts).

    IF: the Cholesky factor of H (no shift enters). The fixed penalty, and per-sample shares
    that differ: the problem's factor, whose diagonal shifts D_i = D(penalty_i) turn H into
    H - penalty_i P^T P. RIF when every positive
    share is the same pi (the per-sample convention with equal weights): the Cholesky factor of
    A = H - pi P^T P, in which sample i's leave-one-out Hessian A - c_i x~_i x~_i^T is a rank-one
    downdate with no shift left, so Sherman-Morrison needs no generalised eigendecomposition
    (one p^3/3 factorisation instead of about 10 p^3).
    """
    if method == "if":                  # no shift at all: any whitening of H
        factor = problem.base_factor
        return factor, factor.to_white(problem.penalty_diag * problem.theta), False
    if problem.uniform_penalty_share is None:
        return problem.factor, problem.penalty_gradient_white, True
    factor = problem.shifted_factor
    return factor, factor.to_white(problem.penalty_diag * problem.theta), False


def loo_white(problem, index, method, u=None, on_singular="raise"):
    """Whitened leave-one-out parameter changes V^{-1} dtheta_i, one row per sample, in the
    basis V of ``loo_basis(problem, method)``.

    Parameters
    ----------
    index : ndarray of int, shape (k,)
    method : {"if", "rif", "newton"}
        ``"newton"`` for a single sample is the exact leave-one-out Newton
        step, which is what ``"rif"`` computes per sample.
    u : ndarray of shape (k, p), optional
        Precomputed whitened rows V^T x~_i (in that basis).
    on_singular : {"raise", "nan"}
        What to do with samples whose (shifted) leverage is numerically one.

    Returns
    -------
    ndarray of shape (k, p)
    """
    factor, penalty_white, shifts = loo_basis(problem, method)
    if u is None:
        u = factor.to_white(_design.rows(problem.X, index, problem.fit_intercept).T).T
    return _loo_white_rows(factor, penalty_white, u, problem.residual[index], problem.curvature[index],
                           problem.sample_penalty[index], method, on_singular, index, shifts)


def _loo_white_rows(factor, penalty_gradient_white, u, residual, curvature, penalty_i, method,
                    on_singular, index=None, shifts=True):
    """:func:`loo_white` from the rows' own quantities (so that it can run on a dask worker)."""
    # a_i = V^T g~_i = r_i u_i + penalty_i V^T P^T P theta^
    a = residual[:, None] * u + penalty_i[:, None] * penalty_gradient_white
    if method == "if":
        return a
    if shifts:
        shift = factor.shift_diag(penalty_i)            # D_i, shape (k, p)
        a = shift * a
        du = shift * u
    else:
        du = u                                          # the basis already holds the shift
    s = np.einsum("ij,ij->i", u, du)                    # x~_i^T A_i^{-1} x~_i
    t = np.einsum("ij,ij->i", u, a)                     # x~_i^T A_i^{-1} g~_i
    one_minus_h = 1.0 - curvature * s
    singular = one_minus_h < LEVERAGE_TOL
    if singular.any():
        if on_singular == "raise":
            raise _singular_leverage_error(np.asarray(index)[singular])
        one_minus_h = np.where(singular, np.nan, one_minus_h)
    return a + (curvature * t / one_minus_h)[:, None] * du


def _singular_leverage_error(samples):
    return NearSingularLeverageError(
        f"sample(s) {np.asarray(samples)[:10].tolist()} have leverage numerically 1 "
        f"(1 - h_i < {LEVERAGE_TOL:.1e}): removing them leaves the Hessian singular "
        "along their direction, so their Newton step is undefined and the refit is not "
        "unique; use method='if', or add an L2 penalty"
    )


# -- the dual route: every leave-one-out step as one solve -----------------------------------
def dual_loo_terms(problem, method):
    """(F, coef, share) with dtheta_i = F^{-1} (coef_i x~_i + share_i P^T P theta^) for every
    training sample removed alone (dual route; see :mod:`rif._dual`).

    IF: F = H, coef = r, share = penalty_i. RIF (= NS for one sample) under the fixed penalty:
    F = H, coef = r / (1 - h), share = 0. RIF under the per-sample penalty (equal weights, each
    positive share pi): F = H - pi P^T P, whose rank-one downdate by c_i x~_i x~_i^T is sample i's
    leave-one-out Hessian, so by Sherman-Morrison coef = r + c_i t_i / (1 - c_i s_i) and share = pi,
    s_i = x~_i^T F^{-1} x~_i, t_i = x~_i^T F^{-1} g~_i = r_i s_i + pi (X~ F^{-1} P^T P theta^)_i.
    coef is NaN where 1 - c_i s_i (the leverage's complement) is numerically zero.
    """
    if method == "if":
        return problem.base_factor, problem.residual, problem.sample_penalty
    if not problem.sample_penalty.any():
        return problem.base_factor, scalar_loo_coefficient(problem, method), problem.sample_penalty
    terms = problem.__dict__.get("_dual_rif_terms")
    if terms is None:                   # once per problem: a pass and the shifted factor's leverages
        terms = problem.__dict__["_dual_rif_terms"] = _shifted_rif_terms(problem)
    return terms


def _shifted_rif_terms(problem):
    factor = problem.shifted_factor
    _, s, one_minus = factor.leverages
    t = problem.residual * s + problem.sample_penalty * factor.training_products(problem.penalty_diag * problem.theta)
    with np.errstate(divide="ignore", invalid="ignore"):
        coef = problem.residual + np.where(one_minus < LEVERAGE_TOL, np.nan, problem.curvature * t / one_minus)
    return factor, coef, problem.sample_penalty


def _check_dual_leverage(coef, sets):
    for index in sets:
        bad = index[np.isnan(coef[index])]
        if bad.size:
            raise _singular_leverage_error(bad)


def _dual_additive(problem, sets, method):
    """IF or RIF for many sets on the dual route: F^{-1} (X~^T A + P^T P theta^ shares^T), A the
    (n, n_sets) matrix of each set's coefficients; two passes over X for the whole batch."""
    factor, coef, share = dual_loo_terms(problem, method)
    if method != "if":
        _check_dual_leverage(coef, sets)
    return _solve_set_sums(problem, factor, coef, share, sets)


def _map_loo_white(problem, method, reduce, n_cols=None):
    """reduce(W, U) over row blocks, W the blocks' whitened leave-one-out changes (NaN where
    the leverage is numerically one) and U = X~_block V, in the basis of :func:`loo_basis`
    (returned first, so that the caller can map back); on the workers for a dask X."""
    factor, penalty_white, shifts = loo_basis(problem, method)
    values = np.column_stack([problem.residual, problem.curvature, problem.sample_penalty])

    def on_block(block, vals):
        u = factor.to_white(block.T).T
        loo = _loo_white_rows(factor, penalty_white, u, vals[:, 0], vals[:, 1], vals[:, 2], method, "nan",
                              shifts=shifts)
        return reduce(loo, u)

    return _design.map_rows(problem.X, problem.fit_intercept, on_block, n_cols, row_values=values)


# -- one removal set ---------------------------------------------------------------
def leave_out_hessian(problem, index, u=None):
    """:class:`LeaveOutHessian` of the removal set ``index`` at theta^.

    Its ``solve`` is basis-free (H_{-S}^{-1} b); ``u``, whitened rows in the problem's
    factor, is used only when the leave-out Hessian is built on that factor. Under the
    per-sample penalty with equal weights it is built on the Cholesky factor of
    H - delta_S P^T P instead (see :meth:`GLMProblem.use_shift_factors`).
    """
    delta = problem.sample_penalty[index].sum()
    if problem.route == "dual":
        from ._dual import KernelLeaveOut

        factor = problem.shift_factor(delta) if delta > 0 else problem.base_factor
        return KernelLeaveOut(factor, index, problem.curvature[index])
    if delta > 0 and problem.use_shift_factors(delta):
        factor = problem.shift_factor(delta)
        u = factor.to_white(_design.rows(problem.X, index, problem.fit_intercept).T).T
        return LeaveOutHessian(factor, u, problem.curvature[index], 0.0)
    if u is None:
        u = problem.white_rows(index)
    return LeaveOutHessian(problem.factor, u, problem.curvature[index], delta)


def removed_gradient(problem, index):
    """sum_{i in S} g~_i = X~_S^T r_S + delta_S P^T P theta^: minus the leave-S-out gradient at theta^."""
    rows = _design.rows(problem.X, index, problem.fit_intercept)
    return (rows.T @ problem.residual[index]
            + problem.sample_penalty[index].sum() * problem.penalty_diag * problem.theta)


def _retrain(problem, index, tol, max_iter):
    """(dtheta, RefitResult) of the exact refit; picklable for joblib workers."""
    result = chord_refit(problem, index, tol=tol, max_iter=max_iter)
    return result.theta - problem.theta, result


def _warn_unconverged(results):
    bad = [r for r in results if not r.converged]
    if bad:
        warnings.warn(
            f"{len(bad)} exact refit(s) did not converge (largest gradient norm "
            f"{max(r.gradient_norm for r in bad):.2e}); the ground truth is approximate",
            RetrainConvergenceWarning, stacklevel=4,
        )


def params_change_one(problem, index, method, tol=1e-10, max_iter=100):
    """dtheta for removing the samples ``index`` (validated), shape (p,)."""
    if method == "retrain":
        dtheta, result = _retrain(problem, index, tol, max_iter)
        _warn_unconverged([result])
        return dtheta
    if method == "newton":
        _check_leverage(problem, [index])       # names a sample whose own leverage is numerically 1
        return leave_out_hessian(problem, index).solve(removed_gradient(problem, index))
    if problem.route == "dual":
        return _dual_additive(problem, [index], method)[0]
    factor = loo_basis(problem, method)[0]
    return factor.from_white(loo_white(problem, index, method).sum(axis=0))


# -- batches of sets -----------------------------------------------------------------
def scalar_loo_coefficient(problem, method):
    """s_i with dtheta_i = s_i H^{-1} x~_i, or None when no such scalar exists.

    Without a per-sample penalty share, g~_i = r_i x~_i, so IF has s_i = r_i and
    RIF (= NS for one sample) s_i = r_i / (1 - h_i); NaN where h_i is numerically 1.
    """
    if problem.sample_penalty.any():
        return None
    if method == "if":
        return problem.residual
    with np.errstate(divide="ignore", invalid="ignore"):       # h_i = 1 exactly: NaN below
        return np.where(problem.singular_leverage, np.nan, problem.residual / problem.one_minus_leverage)


def _check_leverage(problem, sets):
    singular = problem.singular_leverage
    if singular.any() and problem.route == "dual":
        _check_dual_leverage(np.where(singular, np.nan, 0.0), sets)
    elif singular.any():
        for index in sets:
            loo_white(problem, index[singular[index]], "rif")  # raises, naming the samples


def _additive_batch(problem, sets, method):
    """IF or RIF for many sets at once: H^{-1} X~^T A with A the (n, n_sets) set indicator."""
    if method == "if":
        coef = problem.residual        # the data part of g~_i; penalty shares are added below
    else:
        coef = scalar_loo_coefficient(problem, method)
        if coef is None:
            return None
        _check_leverage(problem, sets)
    # g~_i = r_i x~_i + penalty_i P^T P theta^: IF carries the penalty shares, RIF has none here
    share = problem.sample_penalty if method == "if" else np.zeros(problem.n_samples)
    return _solve_set_sums(problem, problem.base_factor, coef, share, sets)


#: a dense X's product with the sets' coefficient matrix takes that matrix dense (building a sparse
#: one costs about 0.1 ms) when the dense product has at most this many multiply-adds (n p per set)
_DENSE_INDICATOR_WORK = 2**21


def _solve_set_sums(problem, factor, coef, share, sets):
    """F^{-1} (X~^T A + P^T P theta^ shares^T) for each set, (n_sets, p): A the (n, n_sets) matrix
    of each set's coefficients (sparse, or dense for a small dense X), ``shares`` each set's sum of
    ``share``; one product and one solve for the whole batch."""
    lengths = [len(s) for s in sets]
    rows = np.concatenate(sets)
    cols = np.repeat(np.arange(len(sets)), lengths)
    if isinstance(problem.X, np.ndarray) and problem.n_samples * problem.n_params * len(sets) <= _DENSE_INDICATOR_WORK:
        indicator = np.zeros((problem.n_samples, len(sets)))
        indicator[rows, cols] = coef[rows]
    else:
        indicator = sp.csc_matrix((coef[rows], (rows, cols)), shape=(problem.n_samples, len(sets)))
    grads = _design.rmatmat(problem.X, indicator, problem.fit_intercept)   # sum_{i in S} s_i x~_i
    shares = np.bincount(cols, weights=share[rows], minlength=len(sets))
    if shares.any():
        grads = grads + np.outer(problem.penalty_diag * problem.theta, shares)
    return factor.solve(grads).T


def _newton_group(problem, sets):
    """NS for g sets of one size k, batched over sets; None if any is singular (it is then redone
    alone, which raises naming it).

    k < p: Woodbury, (D^{-1} - W^T W)^{-1} = D + D W^T (I_k - W D W^T)^{-1} W D, k x k systems;
    k >= p: H_{-S} formed directly (:func:`_direct_newton_group`), or, for a dask X, the whitened
    leave-out Hessian D^{-1} - W^T W itself, p x p systems. All are judged definite as one set at
    a time is (rif._linalg.equilibrated_cholesky, or the refits' test for the direct route).
    """
    index = np.stack(sets)                                        # (g, k)
    g, k = index.shape
    if k >= problem.n_params and not _design.is_dask(problem.X):
        return _direct_newton_group(problem, sets)
    deltas = problem.sample_penalty[index].sum(axis=1)              # equal for equal weights
    if deltas[0] > 0 and np.all(deltas == deltas[0]) and problem.use_shift_factors(deltas[0]):
        factor = problem.shift_factor(deltas[0])                    # H - delta P^T P by Cholesky
        penalty_white = factor.to_white(problem.penalty_diag * problem.theta)
        d = np.ones((g, problem.n_params))
    else:
        factor, penalty_white = problem.factor, problem.penalty_gradient_white
        d = factor.shift_diag(deltas)                               # (g, p)
    rows = _design.rows(problem.X, index.ravel(), problem.fit_intercept)
    u = factor.to_white(rows.T).T.reshape(g, k, -1)                 # (g, k, p)
    a = (problem.residual[index][..., None] * u
         + problem.sample_penalty[index][..., None] * penalty_white)
    a_sum = a.sum(axis=1)                                           # (g, p)
    w = np.sqrt(problem.curvature[index])[..., None] * u
    woodbury = k < problem.n_params
    if woodbury:
        wd = w * d[:, None, :]
        inner = np.eye(k) - wd @ np.swapaxes(w, 1, 2)               # (g, k, k)
    else:
        inner = -(np.swapaxes(w, 1, 2) @ w)                          # (g, p, p): D^{-1} - W^T W
        inner[:, np.arange(problem.n_params), np.arange(problem.n_params)] += 1.0 / d
    try:
        chol = np.linalg.cholesky(inner)
    except np.linalg.LinAlgError:
        return None
    anorms = np.abs(inner).sum(axis=1).max(axis=1)
    if any(not smallest_eigenvalue_estimate(c, a) > LEVERAGE_TOL for c, a in zip(chol, anorms)):
        return None
    if woodbury:
        sol = np.linalg.solve(inner, (wd @ a_sum[..., None]))       # (g, k, 1)
        x = d * a_sum + (np.swapaxes(wd, 1, 2) @ sol)[..., 0]
    else:
        x = np.linalg.solve(inner, a_sum[..., None])[..., 0]        # (g, p)
    return factor.from_white(x.T).T


def _direct_newton_group(problem, sets):
    """NS for sets of p or more samples: H_{-S} = H - X~_S^T C_S X~_S - delta_S P^T P formed and
    factorised directly, one set after the other (the removed rows' Gram, k p^2 / 2 flops, where
    whitening the rows first and forming W^T W cost 2 k p^2), and judged definite as the refits
    judge it (rif._solvers._direct_leave_out_solver); None if any is singular."""
    from ._solvers import _direct_leave_out_solver

    out = np.empty((len(sets), problem.n_params))
    for j, index in enumerate(sets):
        try:
            solve = _direct_leave_out_solver(problem, index)
        except SingularHessianError:
            return None
        out[j] = solve(removed_gradient(problem, index))
    return out


def small_solves(problem):
    """BLAS held to one thread for the O(k p^2) solves of IF, RIF and NS, and for the certificates'
    factorisations and solves, below THREADED_BLAS_SIZE parameters: two threads gain nothing there,
    and their spinning while rif's pass threads run cost up to 50x (measured: an NS for one set at
    20000 x 200 took 232 ms on two threads, 4-6 ms on one; the 40 eight-column solves of 20 RIF
    certificates there 300 ms against 2 ms)."""
    return _parallel.blas_limit(1) if problem.n_params < THREADED_BLAS_SIZE else contextlib.nullcontext()


def params_change_batch(problem, sets, method, tol=1e-10, max_iter=100, n_jobs=None, progress=None):
    """dtheta for each removal set (validated), shape (n_sets, p); see :func:`_params_change_batch`."""
    if method == "retrain":
        return _params_change_batch(problem, sets, method, tol, max_iter, n_jobs, progress)
    with small_solves(problem):
        return _params_change_batch(problem, sets, method, tol, max_iter, n_jobs, progress)


def _params_change_batch(problem, sets, method, tol=1e-10, max_iter=100, n_jobs=None, progress=None):
    """dtheta for each removal set (validated), shape (n_sets, p).

    IF and RIF (without per-sample penalty shares) take one sparse product and
    one solve for the whole batch; NS batches the systems of equal-size sets
    (Woodbury below p samples, the leave-out Hessian formed directly from p on);
    retrain iterates the refits in lockstep, sharing each round's pass over
    X among up to 64 sets (:func:`rif._solvers.chord_refits`), and with ``n_jobs``
    sends chunks of sets through joblib, so that a joblib backend such as dask or
    ray can spread them over a cluster.
    """
    if method in ("if", "rif"):
        out = _dual_additive(problem, sets, method) if problem.route == "dual" else _additive_batch(problem, sets, method)
        if out is not None:
            return out
    if method in ("newton", "retrain") and problem.uniform_penalty_share is not None and problem.route == "primal":
        if not problem.use_shift_factors([problem.sample_penalty[s].sum() for s in sets]):
            problem.factor      # many distinct penalty shifts: one eigenbasis serves them all
    out = np.empty((len(sets), problem.n_params))
    if method == "retrain":
        results = []
        for k, (dtheta, result) in enumerate(_run_refits(problem, sets, tol, max_iter, n_jobs, progress)):
            out[k] = dtheta
            results.append(result)
        _warn_unconverged(results)
        return out
    done = np.zeros(len(sets), bool)
    if method == "newton" and problem.route == "primal":
        sizes = np.array([len(s) for s in sets])
        for k in np.unique(sizes):
            same_size = np.flatnonzero(sizes == k)
            # bound the (g, k, p) stack and the (g, k, k) or (g, p, p) systems
            per_call = max(1, BLOCK_VALUES // (max(k, problem.n_params) * problem.n_params))
            for start in range(0, same_size.size, per_call):
                group = same_size[start:start + per_call]
                result = _newton_group(problem, [sets[j] for j in group])
                if result is not None:
                    out[group], done[group] = result, True
    for j in np.flatnonzero(~done):
        out[j] = params_change_one(problem, sets[j], method, tol, max_iter)
    return out


def _retrain_many(problem, sets, tol, max_iter):
    """Yield (dtheta, RefitResult) per set: refits in lockstep, one matrix-product pass per
    round for a group of sets (in-memory X), else one refit after the other."""
    if _design.is_dask(problem.X) or len(sets) == 1:
        for s in sets:
            yield _retrain(problem, s, tol, max_iter)
        return
    for result in chord_refits(problem, sets, tol=tol, max_iter=max_iter):
        yield result.theta - problem.theta, result


def _retrain_chunk(problem, sets, tol, max_iter):
    # one pass thread per joblib worker: the workers already share out the cores
    with limit_threads(1):
        return list(_retrain_many(problem, sets, tol, max_iter))


def _run_refits(problem, sets, tol, max_iter, n_jobs, progress):
    """Yield (dtheta, RefitResult) per set, in order, through joblib with a progress bar.

    Sets travel in chunks (about four per worker) so that the problem, with X, is
    sent to each worker a few times rather than once per refit.
    """
    from joblib import Parallel, delayed, effective_n_jobs
    from tqdm.auto import tqdm

    bar = tqdm(total=len(sets), desc="exact refits", disable=_progress_disabled(progress, len(sets)))
    if n_jobs in (None, 1):
        chunks = ([refit] for refit in _retrain_many(problem, sets, tol, max_iter))
    else:
        size = max(1, -(-len(sets) // (4 * effective_n_jobs(n_jobs))))
        # joblib's default process backend (threads fight over the GIL and BLAS's own
        # threads); a backend set by the caller, e.g. dask or ray, takes precedence
        chunks = Parallel(n_jobs=n_jobs, return_as="generator")(
            delayed(_retrain_chunk)(problem, sets[k:k + size], tol, max_iter)
            for k in range(0, len(sets), size))
    with bar:
        for chunk in chunks:
            bar.update(len(chunk))
            yield from chunk


def _progress_disabled(progress, total):
    """tqdm's ``disable``: off when asked, on when asked, else only for long non-trivial loops."""
    if progress is None:
        return True if total < 20 else None   # None: tqdm shows it only on a terminal
    return not progress


# -- all samples one at a time ---------------------------------------------------------
def _singletons(problem):
    return [np.array([i]) for i in range(problem.n_samples)]


def loo_params_change(problem, method, tol=1e-10, max_iter=100, n_jobs=None, progress=None):
    """dtheta_i for removing each training sample alone, shape (n, p).

    statsmodels' ``d_params`` (with the opposite sign), with penalties and weights.
    """
    if method == "retrain":
        return params_change_batch(problem, _singletons(problem), method, tol, max_iter, n_jobs, progress)
    method = "rif" if method == "newton" else method
    if problem.route == "dual":
        factor, coef, share = dual_loo_terms(problem, method)
        out = factor.solve_rows(np.arange(problem.n_samples)).T
        out *= coef[:, None]
        if share.any():
            out += np.outer(share, factor.solve(problem.penalty_diag * problem.theta))
        return out
    coef = scalar_loo_coefficient(problem, method)
    if coef is not None:  # s_i H^{-1} x~_i: rows of X~ H^{-1}, one matrix product per row block
        inverse = problem.factor.inverse
        out = _design.map_rows(problem.X, problem.fit_intercept, lambda b: b @ inverse, problem.n_params)
        out *= coef[:, None]
        return out
    factor = loo_basis(problem, method)[0]
    return _map_loo_white(problem, method, lambda loo, u: factor.from_white(loo.T).T, problem.n_params)


def per_sample_eta_change(problem, target_x, method, tol=1e-10, max_iter=100, n_jobs=None, progress=None):
    """Change of x~_j^T theta for every training sample i removed alone.

    Returns an (n, m) array: entry (i, j) is x~_j^T dtheta_i with x~_j the rows
    of ``target_x`` (an (m, d) matrix). Without per-sample penalty shares this is
    diag(s) X~ H^{-1} X~_target^T (one solve with m right-hand sides and one
    (n, p) x (p, m) product); otherwise it goes through whitened coordinates.
    """
    m = target_x.shape[0]
    target_rows = _design.rows(target_x, np.arange(m), problem.fit_intercept)
    if method == "retrain":
        dtheta = params_change_batch(problem, _singletons(problem), method, tol, max_iter, n_jobs, progress)
        return dtheta @ target_rows.T
    method = "rif" if method == "newton" else method
    if problem.route == "dual":
        factor, coef, share = dual_loo_terms(problem, method)
        out = coef[:, None] * factor.training_products(target_rows.T)        # x~_i^T F^{-1} x~_j
        if share.any():
            out += np.outer(share, target_rows @ factor.solve(problem.penalty_diag * problem.theta))
        return out
    coef = scalar_loo_coefficient(problem, method)
    if coef is not None:
        solved = problem.factor.solve(target_rows.T)                # H^{-1} X~_target^T, (p, m)
        return coef[:, None] * _design.linear_predictor(problem.X, solved, problem.fit_intercept)
    target_white = loo_basis(problem, method)[0].to_white(target_rows.T)
    return _map_loo_white(problem, method, lambda loo, u: loo @ target_white, m)


def self_eta_change(problem, method, tol=1e-10, max_iter=100, n_jobs=None, progress=None):
    """x~_i^T dtheta_i: the change of each training sample's own eta when it is removed."""
    if method == "retrain":
        dtheta = params_change_batch(problem, _singletons(problem), method, tol, max_iter, n_jobs, progress)
        return _rowwise_eta(problem, dtheta)
    method = "rif" if method == "newton" else method
    if problem.route == "dual":
        factor, coef, share = dual_loo_terms(problem, method)
        out = coef * (problem.raw_leverage if factor is problem.base_factor else factor.leverages[1])
        if share.any():
            out += share * factor.training_products(problem.penalty_diag * problem.theta)
        return out
    coef = scalar_loo_coefficient(problem, method)
    if coef is not None:   # x~_i^T s_i H^{-1} x~_i = s_i q_i
        return coef * problem.raw_leverage
    return _map_loo_white(problem, method, lambda loo, u: np.einsum("ij,ij->i", loo, u))


def _rowwise_eta(problem, dtheta):
    """x~_i^T dtheta_i for each row i, shape (n,)."""
    return _design.rowwise_dot(problem.X, dtheta, problem.fit_intercept)
