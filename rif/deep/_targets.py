"""Evaluation targets f(theta) of :class:`rif.deep.TorchInfluence`: values and gradients.

A per-sample target maps (outputs (B, K), labels) to B values: the loss
l(y_j, f(x_j; theta)) (``"loss"``, alias ``"test_loss"``) or the probability of the
label (``"proba"``). A summed target adds a per-sample target over a data
set; a callable target ``f(model) -> scalar tensor`` is evaluated on a scratch
copy of the model carrying the parameters theta. Effects are
f(theta^ + dtheta) - f(theta^), or grad f(theta^)^T dtheta when linearised.
"""

import torch
from torch.func import grad

from ._data import batch_slices
from ._gradients import losses_at_many, per_sample_gradients


def per_sample_fn(loss, target):
    """The per-sample function of ``target`` ("loss", "test_loss" or "proba"; validated by the caller)."""
    return loss.proba if target == "proba" else loss


def target_values(fm, fn, X, y, thetas):
    """fn(y_j, f(x_j; theta_r)) for each theta_r (rows of ``thetas``): shape (r, m)."""
    return losses_at_many(fm, fn, X, y, thetas)


def target_gradients(fm, fn, X, y, batch_size):
    """d fn(y_j, f_j) / d theta per evaluation sample, shape (m, p)."""
    class _L:
        def single(_, out, yy):
            return fn(out.unsqueeze(0), yy.unsqueeze(0))[0]
    return per_sample_gradients(fm, _L(), X, y, batch_size=batch_size)


def summed_target(fm, fn, X, y, batch_size):
    """(value, gradient) of theta -> sum_j fn(y_j, f(x_j; theta)) over (X, y)."""
    def total(theta):
        return sum(fn(fm.forward(theta, X[sl]), y[sl]).sum()
                   for sl in batch_slices(X.shape[0], batch_size))

    def value(theta):
        with torch.no_grad():
            return float(total(theta))
    return value, grad(total)


def callable_target(fm, target):
    """(value, gradient) of theta -> target(model carrying theta), on a scratch copy of the model."""
    scratch = fm.export(fm.theta)
    named = dict(scratch.named_parameters())

    def load(theta):
        with torch.no_grad():
            for name, v in fm.unflatten(theta).items():
                named[name].copy_(v)

    def value(theta):
        load(theta)
        with torch.no_grad():
            result = target(scratch)
        result = torch.as_tensor(result)
        if result.numel() != 1:
            raise ValueError(f"a callable target must return a scalar, got shape {tuple(result.shape)}")
        return float(result)

    def gradient(theta):
        load(theta)
        for p in scratch.parameters():
            p.grad = None
        with torch.enable_grad():
            result = target(scratch)
            if not (isinstance(result, torch.Tensor) and result.requires_grad):
                raise ValueError("linear=True needs a callable target returning a differentiable tensor")
            result.backward()
        return torch.cat([(named[n].grad if named[n].grad is not None else torch.zeros_like(named[n]))
                          .reshape(-1) for n in fm.names])
    return value, gradient
