"""Warm-started proximal retraining: the ground truth the influence estimates approximate.

Removing the samples S is measured as the change between two minimisers of
the proximal objective

    P_w(theta) = sum_i w_i l(y_i, f(x_i; theta)) + (mu / 2) ||theta||^2
                 + (lambda / 2) ||theta - theta^||^2,

with w the all-ones weights (theta_0) or w_S = 0 (theta_{-S}), mu the training
objective's own L2 penalty (``weight_decay``, zero by default), the proximal
term anchored at the trained parameters theta^ with the same damping lambda
as the curvature. Both are found by full-batch L-BFGS (strong Wolfe line
search) on a private copy of the parameters, warm-started at theta^ (theta_0)
and at theta_0 (theta_{-S}), then polished by Newton-CG steps on the gradient
(true Hessian-vector products) until the gradient is at rounding level. The difference theta_{-S} - theta_0 cancels the
drift due to theta^ not being an exact minimiser of the training loss. Only
the selected parameters move; the others stay fixed.
"""

import warnings

import torch

from .._errors import RetrainConvergenceWarning
from ._data import batch_slices
from ._functional import FunctionalModel


def proximal_refit(fm, loss, X, y, weights, damping, start, anchor, *, max_iter=500, tol=1e-7,
                   batch_size=256, grad_scale=1.0, weight_decay=0.0):
    """argmin_theta sum_i w_i l_i(theta) + (mu/2)||theta||^2 + (lambda/2)||theta - anchor||^2.

    Starts from ``start``; mu is ``weight_decay``.

    Returns
    -------
    theta : tensor of shape (p,)
    converged : bool
        Whether the gradient's largest entry fell below max(tol, 50 eps)
        times max(1, its initial value, ``grad_scale``), where ``grad_scale``
        (e.g. max_j sum_i |g_ij|) sets the size of rounding errors in the
        summed gradient.
    """
    theta = start.detach().clone().requires_grad_(True)
    anchor = anchor.detach()
    keep = torch.nonzero(weights > 0).reshape(-1)
    Xk, yk, wk = X[keep], y[keep], weights[keep]

    def objective_at(th):
        total = 0.5 * damping * ((th - anchor) ** 2).sum() + 0.5 * weight_decay * (th ** 2).sum()
        for sl in batch_slices(Xk.shape[0], batch_size):
            total = total + (wk[sl] * loss(fm.forward(th, Xk[sl]), yk[sl])).sum()
        return total

    gradient = torch.func.grad(objective_at)
    g0 = float(gradient(theta.detach()).abs().max())
    eps = torch.finfo(theta.dtype).eps
    threshold = max(tol, 50 * eps) * max(1.0, g0, float(grad_scale))
    opt = torch.optim.LBFGS([theta], lr=1.0, max_iter=max_iter, max_eval=2 * max_iter,
                            tolerance_grad=threshold, tolerance_change=0.0, history_size=50,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        value = objective_at(theta)
        value.backward()
        return value

    with torch.enable_grad():
        opt.step(closure)
    theta = _newton_polish(gradient, theta.detach(), threshold)
    final = float(gradient(theta).abs().max())
    converged = final <= threshold * 1.01
    if not converged:
        warnings.warn(
            f"a proximal refit stopped with gradient max-norm {final:.2e} above {threshold:.2e}; "
            "the retraining ground truth is approximate (raise retrain_max_iter or retrain_tol)",
            RetrainConvergenceWarning, stacklevel=4)
    return theta, converged


def _newton_polish(gradient, theta, threshold, max_steps=8, cg_iter=200):
    """Newton-CG steps on the gradient alone (L-BFGS's line search stalls once the objective's
    decrease falls below its rounding error); stops at a non-positive curvature direction."""
    for _ in range(max_steps):
        g = gradient(theta)
        gmax = float(g.abs().max())
        if gmax <= threshold:
            break

        def hvp(v):
            return torch.func.jvp(gradient, (theta,), (v,))[1]
        d = torch.zeros_like(g)
        r = -g
        p = r.clone()
        rs = float(r @ r)
        for _ in range(cg_iter):
            hp = hvp(p)
            php = float(p @ hp)
            if php <= 0:
                break
            alpha = rs / php
            d = d + alpha * p
            r = r - alpha * hp
            rs_new = float(r @ r)
            if rs_new ** 0.5 <= 1e-3 * float(g @ g) ** 0.5:
                break
            p = r + (rs_new / rs) * p
            rs = rs_new
        step = 1.0
        for _ in range(6):
            candidate = theta + step * d
            if float(gradient(candidate).abs().max()) < gmax:
                theta = candidate
                break
            step *= 0.5
        else:
            break
    return theta


class ProximalRetrainer:
    """theta_{-S} - theta_0 for removal sets S, by :func:`proximal_refit`, always in float64.

    The float64 copies of the model and data and theta_0 (the refit with every
    sample, warm-started at theta^) are made on the first call and kept.

    Parameters
    ----------
    fm : FunctionalModel
        The model at theta^ (in the working dtype).
    loss : Loss
    X, y : training tensors (working dtype)
    damping, weight_decay : float
        lambda and mu of the proximal objective.
    grad_scale : float
        max_j sum_i |g_ij|, the size of rounding errors in the summed gradient.
    max_iter, tol, batch_size : settings of :func:`proximal_refit`.
    """

    def __init__(self, fm, loss, X, y, damping, weight_decay, grad_scale, *, max_iter=500, tol=1e-7,
                 batch_size=256):
        self.loss, self.damping = loss, float(damping)
        self.dtype = fm.dtype
        if fm.dtype == torch.float64:
            self.fm, self.X, self.y = fm, X, y
        else:
            self.fm = FunctionalModel(fm.model, fm.names, device=fm.device, dtype=torch.float64)
            self.X = X.double() if X.is_floating_point() else X
            self.y = y.double() if y.is_floating_point() else y
        self.kw = dict(max_iter=max_iter, tol=tol, batch_size=batch_size, grad_scale=float(grad_scale),
                       weight_decay=float(weight_decay))
        self.base = None

    def change(self, index):
        """theta_{-S} - theta_0 for S = ``index``, in the working dtype."""
        fm, X, y = self.fm, self.X, self.y
        ones = torch.ones(X.shape[0], dtype=torch.float64, device=fm.device)
        if self.base is None:
            self.base, _ = proximal_refit(fm, self.loss, X, y, ones, self.damping, fm.theta, fm.theta, **self.kw)
        weights = ones.clone()
        weights[torch.as_tensor(index, device=fm.device)] = 0.0
        theta, _ = proximal_refit(fm, self.loss, X, y, weights, self.damping, self.base, fm.theta, **self.kw)
        return (theta - self.base).to(self.dtype)
