"""Warm-started proximal retraining: the ground truth the influence estimates approximate.

Removing the samples S is measured as the change between two minimisers of
the proximal objective

    P_w(theta) = sum_i w_i l(y_i, f(x_i; theta)) + (lambda / 2) ||theta - theta^||^2,

with w the all-ones weights (theta_0) or w_S = 0 (theta_{-S}), the proximal
term anchored at the trained parameters theta^ with the same damping lambda
as the curvature. Both are found by full-batch L-BFGS (strong Wolfe line
search) on a private copy of the parameters, warm-started at theta^ (theta_0)
and at theta_0 (theta_{-S}). The difference theta_{-S} - theta_0 cancels the
drift due to theta^ not being an exact minimiser of the training loss. Only
the selected parameters move; the others stay fixed.
"""

import warnings

import torch

from .._errors import RetrainConvergenceWarning
from ._data import batch_slices


def proximal_refit(fm, loss, X, y, weights, damping, start, anchor, *, max_iter=500, tol=1e-7,
                   batch_size=256):
    """argmin_theta sum_i w_i l_i(theta) + (lambda/2)||theta - anchor||^2, from ``start``.

    Returns
    -------
    theta : tensor of shape (p,)
    converged : bool
        Whether the gradient's largest entry fell below ``tol`` times
        max(1, its initial value).
    """
    theta = start.detach().clone().requires_grad_(True)
    anchor = anchor.detach()
    keep = torch.nonzero(weights > 0).reshape(-1)
    Xk, yk, wk = X[keep], y[keep], weights[keep]

    def objective():
        total = 0.5 * damping * ((theta - anchor) ** 2).sum()
        for sl in batch_slices(Xk.shape[0], batch_size):
            total = total + (wk[sl] * loss(fm.forward(theta, Xk[sl]), yk[sl])).sum()
        return total

    def grad_max():
        with torch.enable_grad():
            g, = torch.autograd.grad(objective(), theta)
        return float(g.abs().max())

    g0 = grad_max()
    threshold = tol * max(1.0, g0)
    opt = torch.optim.LBFGS([theta], lr=1.0, max_iter=max_iter, max_eval=2 * max_iter,
                            tolerance_grad=threshold, tolerance_change=0.0, history_size=50,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        value = objective()
        value.backward()
        return value

    with torch.enable_grad():
        opt.step(closure)
    final = grad_max()
    converged = final <= threshold * 1.01
    if not converged:
        warnings.warn(
            f"a proximal refit stopped with gradient max-norm {final:.2e} above {threshold:.2e}; "
            "the retraining ground truth is approximate (raise retrain_max_iter or use float64)",
            RetrainConvergenceWarning, stacklevel=4)
    return theta.detach(), converged
