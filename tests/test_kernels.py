"""Every Numba kernel equals its NumPy twin, including far in the tails."""

import numpy as np
import pytest

from rif import _kernels
from naive import TWINS


@pytest.mark.parametrize("family", sorted(TWINS))
def test_kernel_matches_numpy_twin(family):
    rng = np.random.default_rng(1)
    eta = np.concatenate([rng.normal(scale=3, size=200), [-40.0, -20.0, 0.0, 20.0, 40.0]])
    if family == "binomial":
        y = (rng.random(eta.size) < 0.5).astype(float)
    elif family == "poisson":
        y = rng.poisson(2.0, size=eta.size).astype(float)
    else:
        y = rng.normal(size=eta.size)
    kernel = getattr(_kernels, {"binomial": "binomial_logit_derivatives",
                                "gaussian": "gaussian_identity_derivatives",
                                "poisson": "poisson_log_derivatives"}[family])
    out = [np.empty_like(eta) for _ in range(3)]
    kernel(eta, y, *out)
    # l' = p - y cancels when p ~ y: both routes then carry an absolute error of
    # a few ulps of 1, so compare with an absolute floor of 4 eps.
    for got, want in zip(out, TWINS[family](eta, y)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=4 * np.finfo(float).eps)


def test_binomial_extreme_eta_is_finite_and_exact():
    eta = np.array([-800.0, 800.0])
    y = np.array([1.0, 0.0])
    out = [np.empty(2) for _ in range(3)]
    _kernels.binomial_logit_derivatives(eta, y, *out)
    np.testing.assert_allclose(out[0], [800.0, 800.0])
    np.testing.assert_allclose(out[1], [-1.0, 1.0])
    assert np.all(out[2] >= 0) and np.all(np.isfinite(out[2]))
