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
  when removing S moves theta little; the iteration hands over to
  :func:`newton_refit` whenever a step fails to decrease the objective or
  rho exceeds 1/2 (then the error left after a step below tol is below tol).
"""

from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla

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
    theta = np.array(theta0, dtype=float)
    value, grad = problem.value_gradient(theta, weights)
    for it in range(1, max_iter + 1):
        grad_norm = float(np.max(np.abs(grad)))
        hess = problem.hessian_at(theta, weights)
        try:
            chol = sla.cho_factor(hess, lower=True, check_finite=False)
            step = -sla.cho_solve(chol, grad, check_finite=False)
        except np.linalg.LinAlgError:
            raise SingularHessianError(
                "the Hessian of the objective is not positive definite at a Newton iterate "
                "(unpenalised with too few remaining samples, or separable data)"
            ) from None
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


_MAX_CHORD_ITER = 100


def chord_refit(problem, index, *, tol=1e-10, max_iter=100):
    """Minimise the leave-``index``-out objective by chord iterations from theta^.

    See the module docstring. The first gradient and objective value come
    for free from cached quantities: at the stationary theta^,

        grad L_{-S}(theta^) = -sum_{i in S} g~_i,
        L_{-S}(theta^) = L(theta^) - sum_{i in S} (w_i l_i + penalty_i ||P theta^||^2 / 2),

    so the first step (the Newton-step estimate) costs no pass over the data.
    Later steps cost one gradient each. With the observed contraction
    rho_k = |step_k| / |step_{k-1}| <= 1/2, the distance left to the optimum after
    step k is at most |step_k| rho_k / (1 - rho_k), and the iteration stops once
    that, or the step itself, is below ``tol * max(1, ||theta||_inf)``.
    ``max_iter`` bounds the Newton iterations of the fallback; chord iterations
    are bounded by 100.

    Returns
    -------
    RefitResult
        ``n_iter`` counts chord and Newton iterations together.
    """
    with _single_threaded_blas():
        return _chord_refit(problem, index, tol, max_iter)


def _single_threaded_blas():
    """Chord iterations are matrix-vector products, bound by memory bandwidth: extra BLAS
    threads buy little and, on a busy machine, cost up to 10x in synchronisation."""
    global _CONTROLLER
    if _CONTROLLER is None:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1, user_api="blas")


_CONTROLLER = None


def _chord_refit(problem, index, tol, max_iter):
    from ._design import rows
    from ._estimators import leave_out_hessian

    weights = problem.sample_weight.copy()
    weights[index] = 0.0
    hessian = leave_out_hessian(problem, index)
    theta = np.array(problem.theta)
    # -sum_{i in S} g~_i = -(X~_S^T r_S + sum_{i in S} penalty_i P^T P theta^)
    grad = -(rows(problem.X, index, problem.fit_intercept).T @ problem.residual[index]
             + problem.sample_penalty[index].sum() * problem.penalty_diag * theta)
    penalty_norm = problem.penalty_diag @ theta**2
    value = (weights @ problem.loss + 0.5 * problem.penalty_total(weights) * penalty_norm)
    previous = np.inf
    for it in range(1, _MAX_CHORD_ITER + 1):
        grad_norm = float(np.max(np.abs(grad)))
        step = -hessian.solve(grad)
        size = np.max(np.abs(step))
        candidate = theta + step
        new_value, new_grad = problem.value_gradient(candidate, weights)
        if not (new_value <= value + _ARMIJO * (grad @ step)
                or np.max(np.abs(new_grad)) <= 0.5 * grad_norm):
            break                                     # not a descent: hand over to Newton
        theta, value, grad = candidate, new_value, new_grad
        scale = tol * max(1.0, np.max(np.abs(theta)))
        rho = size / previous if np.isfinite(previous) else np.nan   # needs two steps
        if size <= scale or (rho <= 0.5 and size * rho / (1.0 - rho) <= scale):
            return RefitResult(theta, it, True, grad_norm)
        if rho > 0.5:
            break                                     # contracting too slowly
        previous = size
    result = newton_refit(problem, weights, theta, tol=tol, max_iter=max_iter)
    return RefitResult(result.theta, it + result.n_iter, result.converged, result.gradient_norm)
