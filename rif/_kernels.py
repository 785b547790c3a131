"""Numba kernels for the per-sample work of each GLM family.

Each kernel is named ``<family>_<link>_derivatives``, reads the linear
predictor ``eta`` and the target ``y`` and writes, into preallocated outputs,
the per-sample loss ``l(y, eta)`` and its first two derivatives in ``eta``.
One fused pass replaces three NumPy expressions with their temporaries and
keeps the numerically stable branches in one place. Plain NumPy twins live in
``tests/naive.py`` and the tests compare the two.
"""

import numpy as np
from numba import njit

from ._config import JIT_OPTIONS


@njit(**JIT_OPTIONS)
def binomial_logit_derivatives(eta, y, loss, d1, d2):
    """Logistic loss l = log(1 + e^eta) - y eta, l' = p - y, l'' = p (1 - p).

    With z = exp(-|eta|) both branches share l'' = z / (1 + z)^2, which never
    underflows to a negative or loses digits to cancellation.
    """
    for i in range(eta.shape[0]):
        e = eta[i]
        if e > 0.0:
            z = np.exp(-e)
            p = 1.0 / (1.0 + z)
            loss[i] = e + np.log1p(z) - y[i] * e
        else:
            z = np.exp(e)
            p = z / (1.0 + z)
            loss[i] = np.log1p(z) - y[i] * e
        d1[i] = p - y[i]
        d2[i] = z / ((1.0 + z) * (1.0 + z))


@njit(**JIT_OPTIONS)
def gaussian_identity_derivatives(eta, y, loss, d1, d2):
    """Squared loss l = (y - eta)^2 / 2, l' = eta - y, l'' = 1."""
    for i in range(eta.shape[0]):
        r = eta[i] - y[i]
        loss[i] = 0.5 * r * r
        d1[i] = r
        d2[i] = 1.0


@njit(**JIT_OPTIONS)
def poisson_log_derivatives(eta, y, loss, d1, d2):
    """Half Poisson deviance l = e^eta - y eta + y log y - y, l' = e^eta - y, l'' = e^eta.

    The constant ``y log y - y`` (zero for y = 0) makes l >= 0 with equality
    at a perfect fit; it does not change any gradient or effect.
    """
    for i in range(eta.shape[0]):
        mu = np.exp(eta[i])
        yi = y[i]
        const = yi * np.log(yi) - yi if yi > 0.0 else 0.0
        loss[i] = mu - yi * eta[i] + const
        d1[i] = mu - yi
        d2[i] = mu
