"""Exact refits warm-started at theta^.

Two solvers share one scale-free stopping rule: stop once the step is below
``tol * max(1, ||theta||_inf)``.

* :func:`newton_refit`: damped Newton, re-forming and factorising the Hessian
  at every iterate, O(n p^2) per iteration, quadratic convergence.
* :func:`chord_refit`: the chord method for a removal set S. Every iteration
  reuses the leave-S-out Hessian *at theta^*, H_{-S}(theta^), obtained from the
  already factorised H by Woodbury, so an iteration costs one gradient, O(n p),
  and the first iteration is exactly the Newton-step estimate. Convergence is
  linear with rate rho ~ ||H_{-S}(theta^)^{-1} (H_{-S}(theta^) - H_{-S}(theta*))||, small
  when removing S moves theta little. When the steps stop contracting, or the
  steps still needed at the observed rate would cost more than a new Hessian
  (measured: a Hessian costs about p/24 chord steps), the Hessian is formed afresh at the
  current iterate and the chord iteration continues with it (Shamanskii's
  method); if even a fresh Newton step fails to decrease the objective,
  damped Newton (:func:`newton_refit`) takes over.
"""

from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla

from . import _parallel
from ._errors import SingularHessianError

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
    """

    theta: np.ndarray
    n_iter: int
    converged: bool
    gradient_norm: float
    hessian: np.ndarray = None
    cholesky: np.ndarray = None


def newton_refit(problem, weights, theta0, *, tol=1e-10, max_iter=100):
    """Minimise L_w (see :mod:`rif._problem`) by damped Newton from ``theta0``.

    Each iteration solves H(theta) step = -grad(theta) by Cholesky. The full
    step is taken when it decreases the objective enough (Armijo) or, once the
    objective's change is lost in rounding near the optimum, when it at least
    halves the gradient's inf-norm; otherwise the step is backtracked on the
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
        hess = problem.hessian_at(theta, weights, threads=True)
        chol = _cho_factor(hess, "the Hessian of the objective is not positive definite at a Newton "
                                 "iterate (unpenalised with too few remaining samples, or separable data)")
        step = -sla.cho_solve(chol, grad, check_finite=False)
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
            if t == 1.0 and np.max(np.abs(new_grad)) <= 0.5 * grad_norm:
                break
            t *= 0.5
        else:
            return RefitResult(theta, it, bool(small), grad_norm)
        if small:
            return RefitResult(candidate, it, True, grad_norm, hess, chol[0])
        theta, value, grad = candidate, new_value, new_grad
    return RefitResult(theta, max_iter, False, float(np.max(np.abs(grad))))


_MAX_CHORD_ITER = 2000


def chord_refit(problem, index, *, tol=1e-10, max_iter=100):
    """Minimise the leave-``index``-out objective by chord iterations from theta^.

    See the module docstring. The first gradient and objective value come
    for free from cached quantities: at the stationary theta^,

        grad L_{-S}(theta^) = -sum_{i in S} g~_i,
        L_{-S}(theta^) = L(theta^) - sum_{i in S} (w_i l_i + penalty_i ||P theta^||^2 / 2),

    so the first step (the Newton-step estimate) costs no pass over the data.
    Later steps cost one gradient each. With the observed contraction rate
    rho (the slower of the last two |step_k| / |step_{k-1}|), the distance left
    to the optimum after step k is at most |step_k| rho / (1 - rho), and the
    iteration stops once that, or the step itself, is below
    ``tol * max(1, ||theta||_inf)``. ``max_iter`` bounds the Newton
    iterations of the fallback; chord iterations per Hessian by about p / 8.

    Returns
    -------
    RefitResult
        ``n_iter`` counts chord and Newton iterations together.
    """
    with _single_threaded_blas():
        return _chord_refit(problem, index, tol, max_iter)


#: From this size on a Cholesky factorisation gains from BLAS's threads (measured: p = 1001
#: is no faster on two threads, p = 4001 is 1.6x faster)
_THREADED_FACTOR_SIZE = 2048


def _cho_factor(matrix, message):
    """cho_factor (lower), with BLAS's threads for large matrices; SingularHessianError(message)."""
    try:
        if matrix.shape[0] >= _THREADED_FACTOR_SIZE:
            with _controller().limit(limits=_parallel.available_threads(), user_api="blas"):
                return sla.cho_factor(matrix, lower=True, check_finite=False)
        return sla.cho_factor(matrix, lower=True, check_finite=False)
    except np.linalg.LinAlgError:
        raise SingularHessianError(message) from None


def _single_threaded_blas():
    """Refits run passes over the data on rif's own threads and solves with factorised
    matrices: BLAS threads, which spin while idle, would only compete with the pass
    threads (passes 2x slower, measured, and alternating NumPy's and SciPy's OpenBLAS
    pools slows both) and, on a busy machine, cost up to 10x in synchronisation.
    Hessians share their row blocks among the pass threads instead."""
    return _controller().limit(limits=1, user_api="blas")


def _controller():
    global _CONTROLLER
    if _CONTROLLER is None:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER


_CONTROLLER = None


def _chord_refit(problem, index, tol, max_iter):
    from ._design import rows
    from ._estimators import leave_out_hessian

    weights = problem.sample_weight.copy()
    weights[index] = 0.0
    theta = np.array(problem.theta)
    # -sum_{i in S} g~_i = -(X~_S^T r_S + sum_{i in S} penalty_i P^T P theta^)
    grad = -(rows(problem.X, index, problem.fit_intercept).T @ problem.residual[index]
             + problem.sample_penalty[index].sum() * problem.penalty_diag * theta)
    penalty_norm = problem.penalty_diag @ theta**2
    value = (weights @ problem.loss + 0.5 * problem.penalty_total(weights) * penalty_norm)
    state = (theta, value, grad)
    solve = leave_out_hessian(problem, index).solve
    total = 0
    for refresh in range(max_iter + 1):
        state, n_iter, converged, progressed = _chord_iterations(problem, weights, state, solve, tol)
        total += n_iter
        if converged:
            return RefitResult(state[0], total, True, float(np.max(np.abs(state[2]))))
        if not progressed and refresh > 0:
            break       # even a fresh Newton step failed to descend: damped Newton from here
        # Shamanskii: refresh the Hessian at the current iterate and iterate again
        chol = _cho_factor(problem.hessian_at(state[0], weights, threads=True),
                           "the Hessian of the objective without the removed samples is not positive definite")
        solve = _cho_solver(chol)
    result = newton_refit(problem, weights, state[0], tol=tol, max_iter=max_iter)
    return RefitResult(result.theta, total + result.n_iter, result.converged, result.gradient_norm)


def _cho_solver(chol):
    return lambda b: sla.cho_solve(chol, b, check_finite=False)


def _chord_iterations(problem, weights, state, solve, tol):
    """Chord steps theta <- theta - M^{-1} grad with a fixed ``solve`` = M^{-1}.

    Returns ``(state, n_iter, converged, progressed)``; stops when converged
    (see :func:`chord_refit`), when a step fails to decrease the objective, when
    the steps stop contracting, or when the steps still needed at the observed
    rate would cost more than refreshing M: a chord step costs one gradient,
    O(n p), bound by memory bandwidth; forming and factorising M costs
    O(n p^2 + p^3) at BLAS-3 speed, about p/24 chord steps on this project's machines.
    """
    theta, value, grad = state
    # measured on 2 cores: a chord step streams X twice (memory-bound), a Hessian is a
    # compute-bound Gram product; it costs about p/24 chord steps. Budget ~3 Hessians.
    budget = max(10, problem.n_params // 8)
    previous, rho_previous = np.inf, 0.0
    for it in range(1, min(budget, _MAX_CHORD_ITER) + 1):
        step = -solve(grad)
        if not np.all(np.isfinite(step)):
            raise SingularHessianError("the refit's chord step is not finite")
        size = np.max(np.abs(step))
        candidate = theta + step
        new_value, new_grad = problem.value_gradient(candidate, weights)
        scale = tol * max(1.0, np.max(np.abs(candidate)))
        if size <= scale:      # below the tolerance: objective changes are lost in rounding
            return (candidate, new_value, new_grad), it, True, True
        if not (new_value <= value + _ARMIJO * (grad @ step)
                or np.max(np.abs(new_grad)) <= 0.5 * np.max(np.abs(grad))):
            return (theta, value, grad), it - 1, False, it > 1     # not a descent
        theta, value, grad = candidate, new_value, new_grad
        if np.isfinite(previous):                     # the rate needs two steps
            rho = max(size / previous, rho_previous)  # the slower of the last two rates
            rho_previous = size / previous
            if rho >= 1.0:
                break                                 # not contracting
            if size * rho / (1.0 - rho) <= scale:     # distance left to the fixed point
                return (theta, value, grad), it, True, True
            needed = np.log(scale * (1.0 - rho) / (size * rho)) / np.log(rho)
            if it + needed > budget:
                break                                 # a fresh Hessian is cheaper from here
        previous = size
    return (theta, value, grad), it, False, True
