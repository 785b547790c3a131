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


class GradientSums:
    """Sums over the training set of the per-sample gradients, kept instead of the n x p matrix.

    Attributes
    ----------
    total : tensor (p,), float64
        sum_i g_i.
    abs_total : tensor (p,), float64
        sum_i |g_i| (entrywise): the size of rounding errors in ``total``.
    norm_total : float
        sum_i ||g_i||.
    n : int
        Number of samples summed.
    """

    def __init__(self, total, abs_total, norm_total, n):
        self.total, self.abs_total, self.norm_total, self.n = total, abs_total, float(norm_total), int(n)

    @classmethod
    def of(cls, G):
        """The sums of a stored gradient matrix G (n, p)."""
        G64 = G.detach().to(torch.float64)
        return cls(G64.sum(0), G64.abs().sum(0), float(torch.linalg.vector_norm(G64, dim=1).sum()), G.shape[0])


def gradient_blocks(fm, loss, X, y, batch_size=256, index=None):
    """Yield (slice into ``index`` or range(n), g block of shape (b, p)): g_i a block at a time.

    Memory is one block of per-sample gradients, never n x p.
    """
    n = X.shape[0] if index is None else len(index)
    per_grad = vmap(grad(_sample_loss(fm, loss)), in_dims=(None, 0, 0))
    for sl in batch_slices(n, batch_size):
        if index is None:
            xb, yb = X[sl], y[sl]
        else:
            idx = torch.as_tensor(index[sl], device=X.device)
            xb, yb = X[idx], y[idx]
        yield sl, per_grad(fm.theta, xb, yb)


def gradient_sums(fm, loss, X, y, batch_size=256):
    """:class:`GradientSums` of the training gradients, streamed over blocks (memory O(p + block))."""
    p = fm.n_params
    total = torch.zeros(p, dtype=torch.float64, device=fm.device)
    abs_total = torch.zeros_like(total)
    norm_total = 0.0
    for _, G in gradient_blocks(fm, loss, X, y, batch_size):
        G64 = G.detach().to(torch.float64)
        total += G64.sum(0)
        abs_total += G64.abs().sum(0)
        norm_total += float(torch.linalg.vector_norm(G64, dim=1).sum())
    return GradientSums(total, abs_total, norm_total, X.shape[0])


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
