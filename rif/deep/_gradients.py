"""Per-sample gradients and Jacobians with ``torch.func`` (vmap over grad / jacrev).

For training sample i with output f_i = f(x_i; theta) in R^K and loss l_i:

    g_i = d l(y_i, f_i) / d theta          (p,)     per-sample gradient of the summed loss
    J_i = d f_i / d theta                  (K, p)   per-sample output Jacobian

so that g_i = J_i^T (dl/df)(y_i, f_i) and the Gauss-Newton term of sample i is
J_i^T A_i J_i with A_i the output Hessian of the loss.
"""

import torch
from torch.func import grad, jacrev, vmap

from ._data import batch_slices


def _sample_loss(fm, loss):
    def fn(theta, x, y):
        return loss.single(fm.forward_single(theta, x), y)
    return fn


def per_sample_gradients(fm, loss, X, y, theta=None, batch_size=256):
    """g_i for every sample, shape (n, p)."""
    theta = fm.theta if theta is None else theta
    per_grad = vmap(grad(_sample_loss(fm, loss)), in_dims=(None, 0, 0))
    return torch.cat([per_grad(theta, X[sl], y[sl]) for sl in batch_slices(X.shape[0], batch_size)])


def per_sample_jacobians(fm, X, theta=None):
    """J_i for a batch of inputs, shape (B, K, p)."""
    theta = fm.theta if theta is None else theta
    return vmap(jacrev(fm.forward_single), in_dims=(None, 0))(theta, X)


def outputs(fm, X, theta=None, batch_size=256):
    """Network outputs f_i, shape (n, K), without building a graph."""
    theta = fm.theta if theta is None else theta
    with torch.no_grad():
        return torch.cat([fm.forward(theta, X[sl]) for sl in batch_slices(X.shape[0], batch_size)])


def losses(fm, loss, X, y, theta=None, batch_size=256):
    """Per-sample losses l(y_i, f_i), shape (n,)."""
    theta = fm.theta if theta is None else theta
    with torch.no_grad():
        return torch.cat([loss(fm.forward(theta, X[sl]), y[sl]) for sl in batch_slices(X.shape[0], batch_size)])


def losses_at_many(fm, loss, X, y, thetas, chunk=64):
    """Per-sample losses at each of several parameter vectors, shape (r, n).

    ``thetas`` has shape (r, p); the forward passes are vmapped over chunks of it.
    """
    def at(theta):
        return loss(fm.forward(theta, X), y)
    out = []
    with torch.no_grad():
        for start in range(0, thetas.shape[0], chunk):
            out.append(vmap(at)(thetas[start:start + chunk]))
    return torch.cat(out) if out else thetas.new_zeros((0, X.shape[0]))
