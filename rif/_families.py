"""GLM families with canonical links: per-sample loss and derivatives in eta.

A family knows nothing about coefficients, intercepts or penalties; it maps
the linear predictor ``eta = x~^T theta`` and the target ``y`` to

    l(y, eta),   l'(y, eta) = dl/deta,   l''(y, eta) = d^2l/deta^2,

vectorised over samples. Lifting these to coefficient space is the job of
:mod:`rif._problem`.
"""

import numpy as np
from scipy.special import expit

from . import _kernels, _parallel
from ._config import FUSED_PARTS

#: From this many samples on, the per-sample kernels run on rif's threads
_PARALLEL_SAMPLES = 2**16


class Family:
    """A GLM family with its canonical link.

    Attributes
    ----------
    name : str
        ``"binomial"``, ``"gaussian"`` or ``"poisson"``.
    """

    name = None
    _kernel = None
    #: family code of the fused pass :func:`rif._kernels.dense_value_gradient`
    code = None

    def derivatives(self, eta, y):
        """Per-sample loss, first and second derivative in ``eta``.

        Parameters
        ----------
        eta, y : ndarray of shape (n,)

        Returns
        -------
        loss, d1, d2 : ndarray of shape (n,)
        """
        eta = np.ascontiguousarray(eta, dtype=np.float64)
        y = np.ascontiguousarray(y, dtype=np.float64)
        loss = np.empty_like(eta)
        d1 = np.empty_like(eta)
        d2 = np.empty_like(eta)
        kernel = type(self)._kernel
        n = eta.shape[0]
        parts = max(1, min(FUSED_PARTS, n // _PARALLEL_SAMPLES))   # elementwise: any split, same result

        def run(first, last):
            sl = slice(first * n // parts, last * n // parts)
            kernel(eta[sl], y[sl], loss[sl], d1[sl], d2[sl])

        _parallel.run_part_groups(run, parts)
        return loss, d1, d2

    def loss(self, eta, y):
        """Per-sample loss ``l(y, eta)``."""
        return self.derivatives(eta, y)[0]

    def loss_change(self, eta, d_eta, y):
        """l(y, eta + d_eta) - l(y, eta), elementwise, computed without cancelling two losses.

        ``eta`` and ``y`` broadcast against ``d_eta``. A change too large for float64 is inf.
        """
        return self.loss((eta + d_eta).ravel(), np.broadcast_to(y, d_eta.shape).ravel()).reshape(
            d_eta.shape) - self.loss(np.ravel(eta), np.ravel(y)).reshape(np.shape(eta))

    def mean(self, eta):
        """Inverse link: the model's mean E[y | eta]."""
        raise NotImplementedError

    def check_target(self, y):
        """Return ``y`` as float64 or raise ``ValueError`` naming what is wrong."""
        return np.asarray(y, dtype=np.float64)

    def label_probability(self, eta, y):
        """Predicted probability of the observed label (binomial only)."""
        raise ValueError(
            f"target='proba' needs a classifier; the {self.name} family has no label probabilities"
        )

    def __repr__(self):
        return f"{type(self).__name__}()"


class Binomial(Family):
    """Logistic regression: l = log(1 + e^eta) - y eta with y in {0, 1}."""

    name = "binomial"
    _kernel = _kernels.binomial_logit_derivatives
    code = _kernels.BINOMIAL_LOGIT

    def mean(self, eta):
        return expit(eta)

    def check_target(self, y):
        y = np.asarray(y, dtype=np.float64)
        if not np.all((y == 0.0) | (y == 1.0)):
            raise ValueError("binomial family needs a binary target encoded as 0/1")
        return y

    def label_probability(self, eta, y):
        # P(y | eta) = sigma(eta) for y = 1 and sigma(-eta) for y = 0.
        return expit(np.where(np.asarray(y) == 1.0, eta, -eta))

    def loss_change(self, eta, d_eta, y):
        # softplus(eta + d) - softplus(eta) = log1p(expm1(d) sigma(eta)): no cancellation for
        # |d| <= 1, where the two losses would share most digits; the plain difference beyond
        eta, d_eta, y = np.broadcast_arrays(eta, d_eta, y)
        small = np.abs(d_eta) <= 1.0
        plain = np.logaddexp(0.0, eta + d_eta) - np.logaddexp(0.0, eta)
        return np.where(small, np.log1p(np.expm1(np.where(small, d_eta, 0.0)) * expit(eta)), plain) - y * d_eta


class Gaussian(Family):
    """Least squares: l = (y - eta)^2 / 2."""

    name = "gaussian"
    _kernel = _kernels.gaussian_identity_derivatives
    code = _kernels.GAUSSIAN_IDENTITY

    def mean(self, eta):
        return np.asarray(eta, dtype=np.float64)

    def loss_change(self, eta, d_eta, y):
        # ((y - eta - d)^2 - (y - eta)^2) / 2 = d (d / 2 - (y - eta))
        return d_eta * (0.5 * d_eta - (y - eta))


class Poisson(Family):
    """Poisson regression with log link: l = e^eta - y eta (+ y log y - y)."""

    name = "poisson"
    _kernel = _kernels.poisson_log_derivatives
    code = _kernels.POISSON_LOG

    def mean(self, eta):
        return np.exp(eta)

    def loss_change(self, eta, d_eta, y):
        # e^eta expm1(d) - y d, with e^eta expm1(d) = sign(d) exp(eta + log|expm1(d)|): finite
        # whenever the change itself is, even where e^eta alone overflows
        eta, d_eta, y = np.broadcast_arrays(eta, d_eta, y)
        with np.errstate(divide="ignore", over="ignore"):
            scaled = np.sign(d_eta) * np.exp(eta + np.log(np.abs(np.expm1(d_eta))))
        return np.where(d_eta == 0.0, 0.0, scaled) - y * d_eta

    def check_target(self, y):
        y = np.asarray(y, dtype=np.float64)
        if np.any(y < 0):
            raise ValueError("poisson family needs non-negative counts; the target has negative values")
        return y


FAMILIES = {cls.name: cls for cls in (Binomial, Gaussian, Poisson)}


def get_family(family):
    """Return a :class:`Family` instance from an instance or a name."""
    if isinstance(family, Family):
        return family
    try:
        return FAMILIES[family]()
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown family {family!r}; supported: {sorted(FAMILIES)}"
        ) from None


# -- families without a compiled kernel ---------------------------------------------
# These compute l, l', l'' in NumPy. For a non-canonical link l'' is the second
# derivative of the loss itself (the observed information), not the Fisher weight
# (dmu/deta)^2 / V(mu): at theta^ the two differ by a term proportional to the
# residual, and only the observed one makes H the exact Hessian of the objective.
# Each is convex in eta, so every curvature l'' is non-negative.
class NumpyFamily(Family):
    """Base of the families whose derivatives are computed in NumPy (``code`` is None)."""

    code = None

    def _derivatives(self, eta, y):
        raise NotImplementedError

    def derivatives(self, eta, y):
        eta = np.asarray(eta, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            return tuple(np.ascontiguousarray(a, dtype=np.float64) for a in self._derivatives(eta, y))


class BinomialProportion(Binomial):
    """Logistic loss for a proportion y in [0, 1] (grouped binomial data; weight = trials).

    l = log(1 + e^eta) - y eta, the binomial log-likelihood of y successes
    out of one trial; with sample weight m_i it is that of m_i y_i successes
    out of m_i trials (up to a constant). Same compiled kernel as :class:`Binomial`.
    """

    def check_target(self, y):
        y = np.asarray(y, dtype=np.float64)
        if not np.all((y >= 0.0) & (y <= 1.0)):
            raise ValueError("grouped binomial family needs proportions y in [0, 1]")
        return y


class BinomialProbit(NumpyFamily):
    """Probit regression for y in [0, 1]: l = -y log Phi(eta) - (1 - y) log Phi(-eta).

    With a1 = phi(eta) / Phi(eta) and a0 = phi(eta) / Phi(-eta):
    l' = -y a1 + (1 - y) a0 and l'' = y a1 (eta + a1) + (1 - y) a0 (a0 - eta) > 0
    (observed information; the link is not canonical).
    """

    name = "binomial_probit"

    def _derivatives(self, eta, y):
        from scipy.special import log_ndtr

        log_p1, log_p0 = log_ndtr(eta), log_ndtr(-eta)
        log_phi = -0.5 * eta**2 - 0.5 * np.log(2.0 * np.pi)
        a1, a0 = np.exp(log_phi - log_p1), np.exp(log_phi - log_p0)
        loss = -(y * log_p1 + (1.0 - y) * log_p0)
        return loss, -y * a1 + (1.0 - y) * a0, y * a1 * (eta + a1) + (1.0 - y) * a0 * (a0 - eta)

    def mean(self, eta):
        from scipy.special import ndtr

        return ndtr(eta)

    def check_target(self, y):
        return BinomialProportion.check_target(self, y)

    def label_probability(self, eta, y):
        from scipy.special import ndtr

        return ndtr(np.where(np.asarray(y) == 1.0, eta, -eta))


class GammaLog(NumpyFamily):
    """Gamma regression with log link: half deviance l = y e^-eta + eta - 1 - log y.

    l' = 1 - y e^-eta, l'' = y e^-eta (observed; the Fisher weight is 1).
    """

    name = "gamma_log"

    def _derivatives(self, eta, y):
        z = y * np.exp(-eta)
        return z + eta - 1.0 - np.log(y), 1.0 - z, z

    def mean(self, eta):
        return np.exp(eta)

    def check_target(self, y):
        y = np.asarray(y, dtype=np.float64)
        if np.any(y <= 0):
            raise ValueError("gamma family needs a positive target")
        return y


class GammaInverse(GammaLog):
    """Gamma regression with its canonical inverse link mu = 1 / eta (eta > 0).

    Half deviance l = y eta - log eta - 1 - log y, l' = y - 1 / eta, l'' = 1 / eta^2;
    l = +inf and l', l'' NaN where eta <= 0 (outside the model), which line searches reject.
    """

    name = "gamma_inverse"

    def _derivatives(self, eta, y):
        bad = eta <= 0
        e = np.where(bad, 1.0, eta)
        loss = np.where(bad, np.inf, y * e - np.log(e) - 1.0 - np.log(y))
        return loss, np.where(bad, np.nan, y - 1.0 / e), np.where(bad, np.nan, 1.0 / e**2)

    def mean(self, eta):
        return 1.0 / np.asarray(eta, dtype=np.float64)


class NegativeBinomialLog(NumpyFamily):
    """Negative binomial (NB2) with fixed alpha and log link, mu = e^eta.

    Half deviance l = y log(y / mu) - (y + 1/alpha) log((1 + alpha y) / (1 + alpha mu)),
    l' = (mu - y) / (1 + alpha mu), l'' = mu (1 + alpha y) / (1 + alpha mu)^2
    (observed; the Fisher weight is mu / (1 + alpha mu)).
    """

    name = "negative_binomial"

    def __init__(self, alpha=1.0):
        alpha = float(alpha)
        if not alpha > 0 or not np.isfinite(alpha):
            raise ValueError(f"negative binomial alpha must be positive and finite, got {alpha!r}")
        self.alpha = alpha

    def _derivatives(self, eta, y):
        a = self.alpha
        mu = np.exp(eta)
        ylogy = np.where(y > 0, y * np.log(np.where(y > 0, y, 1.0)), 0.0)
        loss = ylogy - y * eta - (y + 1.0 / a) * (np.log1p(a * y) - np.log1p(a * mu))
        denom = 1.0 + a * mu
        return loss, (mu - y) / denom, mu * (1.0 + a * y) / denom**2

    def mean(self, eta):
        return np.exp(eta)

    def check_target(self, y):
        return Poisson.check_target(self, y)

    def __repr__(self):
        return f"NegativeBinomialLog(alpha={self.alpha!r})"
