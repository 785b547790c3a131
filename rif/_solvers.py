"""Exact refits: damped Newton iterations warm-started at theta^.

Newton's method on the convex objective L_w converges quadratically near the
optimum, so a warm start at the full-data optimum reaches machine precision
in a handful of iterations. The stopping rule is scale-free: stop once the
Newton step is below ``tol * max(1, ||theta||_inf)``; the gradient left then
is O(step^2) and is reported with the result.
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
    """

    theta: np.ndarray
    n_iter: int
    converged: bool
    gradient_norm: float


def newton_refit(problem, weights, theta0, *, tol=1e-10, max_iter=100):
    """Minimise L_w (see :mod:`rif._problem`) by damped Newton from ``theta0``.

    Each iteration solves H(theta) step = -grad(theta) by Cholesky. The full
    step is taken when it decreases the objective enough (Armijo) or, once the
    objective's change is lost in rounding near the optimum, when it at least
    halves the gradient's inf-norm; otherwise the step is backtracked on the
    objective.

    Raises
    ------
    SingularHessianError
        If the Hessian of L_w is not positive definite at an iterate.
    """
    theta = np.array(theta0, dtype=float)
    value = problem.objective(theta, weights)
    grad, hess = problem.gradient_hessian(theta, weights)
    for it in range(1, max_iter + 1):
        grad_norm = float(np.max(np.abs(grad)))
        try:
            step = -sla.cho_solve(sla.cho_factor(hess, lower=True, check_finite=False), grad,
                                  check_finite=False)
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
            new_value = problem.objective(candidate, weights)
            if new_value <= value + _ARMIJO * t * slope:
                new_grad, new_hess = problem.gradient_hessian(candidate, weights)
                break
            if t == 1.0:
                new_grad, new_hess = problem.gradient_hessian(candidate, weights)
                if np.max(np.abs(new_grad)) <= 0.5 * grad_norm:
                    break
            t *= 0.5
        else:
            return RefitResult(theta, it, bool(small), grad_norm)
        theta, value, grad, hess = candidate, new_value, new_grad, new_hess
        if small:
            return RefitResult(theta, it, True, grad_norm)
    return RefitResult(theta, max_iter, False, float(np.max(np.abs(grad))))
