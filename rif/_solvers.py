"""Exact refits warm-started at theta^.

Two solvers share one scale-free stopping rule: stop once the step is below
``tol * max(1, ||theta||_inf)``.

* :func:`newton_refit`: damped Newton, re-forming and factorising the Hessian
  at every iterate, O(n p^2) per iteration, quadratic convergence.
* :func:`chord_refit`: the chord method for a removal set S. Every iteration
  reuses the leave-S-out Hessian *at theta^*, H_{-S}(theta^), obtained from the
  already factorised H by Woodbury (or formed directly once |S| >= p), so an
  iteration costs one gradient, O(n p), and the first iteration is exactly the
  Newton-step estimate. Plain chord iteration converges linearly with rate
  rho ~ ||H_{-S}(theta^)^{-1} (H_{-S}(theta^) - H_{-S}(theta*))||, small when removing S
  moves theta little; Anderson mixing of the last few steps speeds it up where
  rho is not small. When the steps stop contracting, or the steps still needed
  at the observed rate would cost more than a new Hessian (about p/16 passes
  over the data), the Hessian is formed afresh at the current iterate and the
  iteration continues with it (Shamanskii's method); if even a fresh Newton
  step fails to decrease the objective, damped Newton (:func:`newton_refit`)
  takes over.

* :func:`chord_refits`: many chord refits in lockstep; each round's gradients
  for all sets come from one pass of matrix products.

All run with BLAS held to one thread: the passes over the data run on rif's
own threads (:mod:`rif._parallel`) and Gram products share their row blocks
among them, so no idle BLAS pool spins against them.
"""

from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from . import _parallel
from ._config import BLOCK_VALUES, THREADED_BLAS_SIZE
from ._errors import SingularHessianError
from ._linalg import check_leave_out_definite, cho_solve, spd_cholesky

_ARMIJO = 1e-4
_MAX_HALVINGS = 60


@dataclass(frozen=True)
class RefitResult:
    """Outcome of an exact refit.

    Attributes
    ----------
    theta : ndarray of shape (p,)
        The minimiser found (intercept last).
    n_iter : int
        Newton iterations taken.
    converged : bool
        Whether the last Newton step met the tolerance.
    gradient_norm : float
        ||grad L_w(theta)||_inf at the returned theta, before the final step.
    hessian : ndarray of shape (p, p) or None
        Newton's last Hessian, within O(tol) of the one at ``theta``.
    cholesky : ndarray of shape (p, p) or None
        Its lower Cholesky factor (upper triangle undefined).
    kernel : rif._dual.KernelHessian or None
        On the dual route, the factor of that Hessian instead.
    anchor : tuple (theta_j, CholeskyFactor) or None
        The last p x p Hessian the refit formed (a Shamanskii refresh or Newton's last
        iteration), factorised, and the iterate theta_j it was formed at; certificates of the
        result may use it in place of the Hessian at ``theta`` (:mod:`rif._certify_refit`).
    """

    theta: np.ndarray
    n_iter: int
    converged: bool
    gradient_norm: float
    hessian: np.ndarray = None
    cholesky: np.ndarray = None
    kernel: object = None
    anchor: tuple = None


class CholeskyFactor:
    """A p x p Hessian with its lower Cholesky factor; ``solve(b)`` = H^{-1} b."""

    def __init__(self, hessian, chol):
        self.hessian, self.cholesky = hessian, chol

    def solve(self, b):
        return cho_solve(self.cholesky, b)


def cholesky_factor(hessian, what):
    """:class:`CholeskyFactor` of ``hessian``, or SingularHessianError(what)."""
    return CholeskyFactor(hessian, _cho_factor(hessian, what)[0])


def newton_refit(problem, weights, theta0, *, tol=1e-10, max_iter=100):
    """Minimise L_w (see :mod:`rif._problem`) by damped Newton from ``theta0``.

    Each iteration solves H(theta) step = -grad(theta) by Cholesky. The full
    step is taken when it decreases the objective enough (Armijo) or, once the
    objective's change is lost in rounding near the optimum, when it at least
    halves the gradient's inf-norm without raising the objective by more than rounding
    could (see :func:`_descent`); otherwise the step is backtracked on the
    objective. On convergence the result carries the Hessian of the last
    iterate but one, which differs from the Hessian at the returned theta by
    O(tol) relatively (the last step is below tol).

    Raises
    ------
    SingularHessianError
        If the Hessian of L_w is not positive definite at an iterate.
    """
    with _single_threaded_blas():
        return _newton_refit(problem, weights, theta0, tol, max_iter)


def _newton_refit(problem, weights, theta0, tol, max_iter):
    theta = np.array(theta0, dtype=float)
    value, grad = problem.value_gradient(theta, weights)
    for it in range(1, max_iter + 1):
        grad_norm = float(np.max(np.abs(grad)))
        factor = None                           # the last iterate's p x p arrays go before new ones come
        factor = problem.newton_factor(
            theta, weights, "the Hessian of the objective is not positive definite at a Newton "
                            "iterate (unpenalised with too few remaining samples, or separable data)")
        step = -factor.solve(grad)
        if not np.all(np.isfinite(step)):
            raise SingularHessianError("the Newton step is not finite")
        small = np.max(np.abs(step)) <= tol * max(1.0, np.max(np.abs(theta)))
        slope = grad @ step
        t = 1.0
        for _ in range(_MAX_HALVINGS):
            candidate = theta + t * step
            new_value, new_grad = problem.value_gradient(candidate, weights)
            if new_value <= value + _ARMIJO * t * slope:
                break
            if t == 1.0 and np.max(np.abs(new_grad)) <= 0.5 * grad_norm and _rounding_rise(new_value, value):
                break
            t *= 0.5
        else:
            return RefitResult(theta, it, bool(small), grad_norm)
        if small:
            if isinstance(factor, CholeskyFactor):
                return RefitResult(candidate, it, True, grad_norm, factor.hessian, factor.cholesky,
                                   anchor=(theta, factor))
            return RefitResult(candidate, it, True, grad_norm, kernel=factor)
        theta, value, grad = candidate, new_value, new_grad
    return RefitResult(theta, max_iter, False, float(np.max(np.abs(grad))))


_MAX_CHORD_ITER = 2000


def chord_refit(problem, index, *, tol=1e-10, max_iter=100, keep_anchor=False, start=None, solve=None):
    """Minimise the leave-``index``-out objective by chord iterations from theta^.

    See the module docstring. The first gradient and objective value come
    for free from cached quantities: at the stationary theta^,

        grad L_{-S}(theta^) = -sum_{i in S} g~_i,
        L_{-S}(theta^) = L(theta^) - sum_{i in S} (w_i l_i + penalty_i ||P theta^||^2 / 2),

    so the first step (the Newton-step estimate) costs no pass over the data.
    Later steps cost one gradient each, and the iteration stops once the chord
    step is below ``tol * max(1, ||theta||_inf)`` (see :func:`_chord_iterations`).
    ``max_iter`` bounds the Hessian refreshes and the Newton iterations of the
    fallback.

    ``keep_anchor``: the result carries the last Hessian the refit formed
    (:attr:`RefitResult.anchor`, p x p arrays; otherwise dropped). ``start`` and ``solve`` are
    those of :func:`_chord_refit_steps`.

    Returns
    -------
    RefitResult
        ``n_iter`` counts chord and Newton iterations together.
    """
    weights = _without(problem, index)
    with _single_threaded_blas():
        return _drive(_chord_refit_steps(problem, index, weights, tol, max_iter, start, solve, keep_anchor),
                      lambda theta: problem.value_gradient(theta, weights))


def chord_refits(problem, sets, *, tol=1e-10, max_iter=100, group_size=None, starts=None, solves=None,
                 keep_anchor=False):
    """:func:`chord_refit` for many removal sets, iterated in lockstep.

    The sets' iterations are those of :func:`chord_refit` (the same generator,
    :func:`_chord_refit_steps`); only their gradients are computed together:
    for the g candidates of a round one pass forms eta = X~ Theta and
    X~^T (W o l'(eta)) as matrix products, (n, p) x (p, g), which read X once
    for all g sets at BLAS-3 speed instead of g memory-bound passes. Sets
    go ``group_size`` at a time (default: as many as keep the n x g work
    arrays near BLOCK_VALUES doubles, at most 64). Yields one RefitResult per
    set, in order. Dense row-major X only (callers fall back to
    :func:`chord_refit` otherwise). ``starts`` and ``solves``, one (or None) per
    set, may give a set's start (theta, L_w(theta), grad L_w(theta)) in place of
    theta^ and its factorisation of H_{-S}(theta^) (see :func:`_chord_refit_steps`);
    ``keep_anchor`` keeps each result's last Hessian (:attr:`RefitResult.anchor`).
    """
    n = problem.n_samples
    group_size = group_size or int(min(64, max(1, BLOCK_VALUES // n)))
    for start_at in range(0, len(sets), group_size):
        group = sets[start_at:start_at + group_size]
        weights = np.repeat(problem.sample_weight[:, None], len(group), axis=1)
        steps = []
        for k, index in enumerate(group):
            weights[index, k] = 0.0
            start = None if starts is None else starts[start_at + k]
            solve = None if solves is None else solves[start_at + k]
            steps.append(_chord_refit_steps(problem, index, np.ascontiguousarray(weights[:, k]), tol, max_iter,
                                            start, solve, keep_anchor))
        results = [None] * len(group)
        pending = {}                                   # set -> candidate theta awaiting its gradient
        with _single_threaded_blas():
            for k, gen in enumerate(steps):
                _advance(gen, None, k, pending, results)
            while pending:
                ks = list(pending)
                values, grads = problem.value_gradients(np.column_stack([pending[k] for k in ks]),
                                                        weights[:, ks])
                for j, k in enumerate(ks):
                    _advance(steps[k], (values[j], grads[:, j]), k, pending, results)
        yield from results


def _advance(gen, sent, k, pending, results):
    """Send ``sent`` to set k's generator: record its next candidate, or its result when done."""
    pending.pop(k, None)
    try:
        pending[k] = next(gen) if sent is None else gen.send(sent)
    except StopIteration as stop:
        results[k] = stop.value


def _drive(steps, evaluate):
    """Run a refit generator to its result, evaluating each candidate it yields."""
    try:
        candidate = next(steps)
        while True:
            candidate = steps.send(evaluate(candidate))
    except StopIteration as stop:
        return stop.value


def _without(problem, index):
    weights = problem.sample_weight.copy()
    weights[index] = 0.0
    return weights


def _cho_factor(matrix, message):
    """cho_factor (lower), with BLAS's threads for large matrices; SingularHessianError(message)."""
    try:
        with _factor_threads(matrix.shape[0]):
            return sla.cho_factor(matrix, lower=True, check_finite=False)
    except np.linalg.LinAlgError:
        raise SingularHessianError(message) from None


def _single_threaded_blas():
    """Refits run passes over the data on rif's own threads and solves with factorised
    matrices: BLAS threads, which spin while idle, would only compete with the pass
    threads (passes 2x slower, measured, and alternating NumPy's and SciPy's OpenBLAS
    pools slows both) and, on a busy machine, cost up to 10x in synchronisation.
    Hessians share their row blocks among the pass threads instead."""
    return _parallel.blas_limit(1)


def _chord_refit_steps(problem, index, weights, tol, max_iter, start=None, solve=None, keep_anchor=False):
    """The refit of :func:`chord_refit` as a generator: it yields each candidate theta and is
    sent back (L_w(theta), grad L_w(theta)); it returns the RefitResult. ``weights`` are the
    sample weights without the set. Hessian refreshes and the Newton fallback evaluate
    directly. ``start`` = (theta, L_w(theta), grad L_w(theta)) starts the chord iterations at
    theta instead of at theta^ (e.g. at an estimate whose pass a certificate already made);
    ``solve`` = H_{-S}(theta^)^{-1} gives the chord matrix's factorisation (e.g. the one that
    certificate used) instead of building it. ``keep_anchor``: the result carries the last Hessian
    formed (:attr:`RefitResult.anchor`)."""
    own_start = hasattr(problem, "leave_out_start")     # a problem that states its own start (multinomial)
    away = start is not None
    if away:
        theta, value, grad = start
    elif own_start:
        theta, value, grad = problem.leave_out_start(index, weights)
        if grad is None:                            # a start away from theta^: one evaluation
            value, grad = yield theta
            away = True
    else:
        theta, value, grad = _home_start(problem, index, weights)
    if away:
        home = problem.leave_out_start(index, weights, estimate=False) if own_start else _home_start(
            problem, index, weights)
        if not value <= home[1]:                    # never start where the objective is above theta^'s
            theta, value, grad = home
    if solve is None:
        solve = _chord_solver(problem, index)
    state = (theta, value, grad)
    total, anchor = 0, None
    for refresh in range(max_iter + 1):
        state, n_iter, converged, progressed = yield from _chord_iterations(problem, state, solve, tol)
        total += n_iter
        if converged:
            return RefitResult(state[0], total, True, float(np.max(np.abs(state[2]))), anchor=anchor)
        if not progressed and refresh > 0:
            break       # even a fresh Newton step failed to descend: damped Newton from here
        # Shamanskii: refresh the Hessian at the current iterate and iterate again
        factor = problem.newton_factor(
            state[0], weights, "the Hessian of the objective without the removed samples is not positive "
                               "definite")
        solve = factor.solve
        anchor = (np.array(state[0]), factor) if keep_anchor and isinstance(factor, CholeskyFactor) else None
    result = newton_refit(problem, weights, state[0], tol=tol, max_iter=max_iter)
    return RefitResult(result.theta, total + result.n_iter, result.converged, result.gradient_norm,
                       anchor=result.anchor if keep_anchor else None)


def _home_start(problem, index, weights):
    """(theta^, F_S(theta^), grad F_S(theta^)) of a scalar GLM from cached quantities (no pass)."""
    from ._design import rows

    theta = np.array(problem.theta)
    # -sum_{i in S} g~_i = -(X~_S^T r_S + sum_{i in S} penalty_i P^T P theta^)
    grad = -(rows(problem.X, index, problem.fit_intercept).T @ problem.residual[index]
             + problem.sample_penalty[index].sum() * problem.penalty_diag * theta)
    penalty_norm = problem.penalty_diag @ theta**2
    value = weights @ problem.loss + 0.5 * problem.penalty_total(weights) * penalty_norm
    return theta, value, grad


def _chord_solver(problem, index):
    """H_{-S}(theta^)^{-1}, the refit's chord matrix: the problem's own (multinomial), Woodbury on the
    factorised H below p samples and on the dual route, else H_{-S} formed directly."""
    from ._estimators import leave_out_hessian

    if hasattr(problem, "refit_solver"):
        return problem.refit_solver(index)
    if len(index) < problem.n_params or problem.route == "dual":
        return leave_out_hessian(problem, index).solve
    return _direct_leave_out_solver(problem, index)


#: the largest p for which a direct leave-out factorisation is judged definite by a proved floor
_PROVED_FLOOR_SIZE = 2048


def _direct_leave_out_solver(problem, index):
    """H_{-S}(theta^)^{-1} for |S| >= p (see :func:`direct_leave_out`), judged definite."""
    from ._certify import certifier

    hessian, chol, what = direct_leave_out(problem, index)
    solve = _cho_solver(chol)
    # a p x p factorisation proves the floor faster than 30 solves (memory-bound, 4 p^2 values read
    # each) find it, up to p ~ 5000 on this project's machines; lambda_min(H) is computed once per
    # problem (one eigenvalue of a dense p x p matrix, 0.5 s at p = 2048)
    metric_floor = certifier(problem).lambda_min if problem.n_params <= _PROVED_FLOOR_SIZE else None
    check_leave_out_definite(problem.hessian, solve, what, (hessian, chol), metric_floor)
    return solve


def direct_leave_out(problem, index):
    """(H_{-S}, its lower Cholesky factor, its name) for |S| >= p, H_{-S} = H - X~_S^T C_S X~_S
    - delta_S P^T P formed and factorised directly (cheaper than whitening k >= p rows for
    Woodbury). Not yet judged against H's curvature (callers do that)."""
    from ._design import rows, weighted_gram

    removed = problem.X[index] if sp.issparse(problem.X) else rows(problem.X, index, False)
    hessian = problem.hessian - weighted_gram(removed, problem.curvature[index], problem.fit_intercept,
                                              threads=True)
    hessian[np.diag_indices_from(hessian)] -= problem.sample_penalty[index].sum() * problem.penalty_diag
    what = f"the Hessian without the {len(index)} removed sample(s)"
    with _factor_threads(len(hessian)):
        chol = spd_cholesky(hessian, what)
    return hessian, chol, what


def _factor_threads(p):
    """BLAS threads for a p x p factorisation inside a refit: all of them from
    THREADED_BLAS_SIZE on (measured: p = 1001 gains nothing from two threads, p = 4001 1.6x)."""
    return _parallel.blas_limit(_parallel.available_threads() if p >= THREADED_BLAS_SIZE else 1)


def _cho_solver(lower):
    """b -> A^{-1} b from A's lower Cholesky factor."""
    return lambda b: cho_solve(lower, b)


def _inf_norm(v):
    return float(np.max(np.abs(v)))


def _chord_iterations(problem, state, solve, tol, norm=_inf_norm, dot=np.dot, theta_norm=_inf_norm):
    """Anderson-accelerated chord steps with a fixed ``solve`` = M^{-1}.

    ``norm``, ``dot`` and ``theta_norm`` give the geometry of the vectors iterated (by default
    parameter vectors, with the inf-norm and the Euclidean product; the dual route iterates
    kernel coefficients, see :func:`dual_chord_refit`): ``norm(step)`` must bound the step's
    inf-norm in parameter space from above, ``dot(g, v)`` is the parameter-space product of a
    gradient and a move, ``theta_norm(theta)`` the scale of the tolerance.

    The chord map is G(theta) = theta + f(theta), f = -M^{-1} grad(theta); its
    fixed point is the minimiser. Plain chord iteration converges linearly at
    the rate rho of the error map I - M^{-1} H(theta*), which oscillates when
    removing many samples moves theta far (rho ~ 0.5 was measured at n/p ~ 3).
    Anderson mixing with memory m takes instead

        theta_{k+1} = theta_k + f_k - (dTheta + dF) gamma,
        gamma = argmin ||f_k - dF gamma||_2,

    dTheta, dF holding the last m differences of iterates and of chord steps
    (a multisecant method; for a linear map it is GMRES on the chord system).
    Every iterate must still decrease the objective (Armijo) or halve the
    gradient; if the mixed step does not, the plain chord step is tried.

    Returns ``(state, n_iter, converged, progressed)``. Converged when the chord
    step from the current iterate, or the distance bound |step| rho / (1 - rho)
    with rho the largest step ratio |f_k| / |f_{k-1}| seen in this phase (the
    first ratio is the plain chord rate), is below ``tol * max(1, ||theta||_inf)``;
    the returned theta is then the iterate plus that step, and ``state``'s
    gradient is the one at the iterate (no further pass). Stops unconverged when a step
    fails to decrease the objective, when the chord steps stop shrinking, or
    when the steps still needed at the observed rate would cost more than
    refreshing M (a chord step is one pass over the data, O(n p), at memory
    speed; forming and factorising M costs O(n p^2 + p^3) at BLAS-3 speed,
    modelled as p / 16 passes; measured on this project's machines with rif's threads: 10,
    57 and 39 passes at 20000 x 200, 1600 x 512 and 100000 x 1000, against p / 16 = 13, 32,
    63: within a factor of 2).
    """
    theta, value, grad = state
    # a fresh Hessian, in passes: p / 16 for the p x p one, about n / 16 for the dual's kernel
    refresh_cost = max(8.0, (problem.n_samples if problem.route == "dual" else problem.n_params) / 16)
    d_theta, d_step = [], []
    previous = None                                    # (theta, step) of the last iterate
    rho_previous = rho_max = 0.0
    for it in range(1, _MAX_CHORD_ITER + 1):
        step = -solve(grad)
        if not np.all(np.isfinite(step)):
            raise SingularHessianError("the refit's chord step is not finite")
        size = norm(step)
        scale = tol * max(1.0, theta_norm(theta + step))
        if size <= scale:       # below the tolerance: objective changes are lost in rounding
            return (theta + step, value, grad), it, True, True
        if previous is not None:
            ratio = size / norm(previous[1])
            rho, rho_previous = max(ratio, rho_previous), ratio    # the slower of the last two rates
            rho_max = max(rho_max, ratio)
            if rho_max < 1.0 and size * rho_max / (1.0 - rho_max) <= scale:
                # the plain step from here lands within |step| rho / (1 - rho) of the optimum
                return (theta + step, value, grad), it, True, True
            if rho >= 1.0:
                break                                  # not contracting
            if np.log(scale / size) / np.log(rho) > refresh_cost + 3:
                break                                  # a fresh Hessian is cheaper from here
            d_theta.append(theta - previous[0])
            d_step.append(step - previous[1])
            if len(d_theta) > _ANDERSON_MEMORY:
                del d_theta[0], d_step[0]
        previous = (theta, step)
        accepted = None
        if d_theta:
            dT, dF = np.column_stack(d_theta), np.column_stack(d_step)
            gamma = np.linalg.lstsq(dF, step, rcond=None)[0]
            accepted = yield from _descent(theta, value, grad, theta + step - (dT + dF) @ gamma, dot, norm)
            if accepted is None:                       # the extrapolation overshot: restart plainly
                d_theta.clear()
                d_step.clear()
        if accepted is None:
            accepted = yield from _descent(theta, value, grad, theta + step, dot, norm)
            if accepted is None:
                return (theta, value, grad), it - 1, False, it > 1
        theta, value, grad = accepted
    return (theta, value, grad), it, False, True


#: Anderson memory of the chord iterations: differences kept
_ANDERSON_MEMORY = 5


def _descent(theta, value, grad, candidate, dot=np.dot, norm=_inf_norm):
    """(candidate, value, gradient) if the move decreases L_w (Armijo), or halves the gradient
    while L_w rises by no more than rounding could hide (:data:`_ROUNDING_RISE`, relative): near the
    optimum the objective's changes are lost in rounding, far from it a step that only shrinks
    the gradient can climb out of the basin (the iterates of a chord step from a poor start were
    seen to run from an objective of 1e4 to 8e6 that way).

    A generator step: yields ``candidate`` and is sent back its value and gradient."""
    new_value, new_grad = yield candidate
    if (new_value <= value + _ARMIJO * dot(grad, candidate - theta)
            or (norm(new_grad) <= 0.5 * norm(grad) and _rounding_rise(new_value, value))):
        return candidate, new_value, new_grad
    return None


#: the largest relative rise of the objective a step accepted on its gradient alone may bring
_ROUNDING_RISE = 1e-10


def _rounding_rise(new_value, value):
    """Whether L_w rose from ``value`` to ``new_value`` by no more than rounding could hide."""
    return new_value <= value + _ROUNDING_RISE * max(abs(value), 1.0)
