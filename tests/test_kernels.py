"""Every Numba kernel equals its NumPy twin, including far in the tails."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rif import _kernels
from naive import LOG_CURVATURE_SLOPES, TWINS


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


@pytest.mark.parametrize("family", sorted(TWINS))
def test_curvature_terms_match_the_numpy_twins(family):
    """l', l'' as the derivatives kernel gives them, and (log l'')' to a few ulps relative, also
    at |eta| far below 1 where 1 - exp(-|eta|) would cancel."""
    from rif._families import Binomial, Gaussian, Poisson

    rng = np.random.default_rng(2)
    eta = np.concatenate([rng.normal(scale=3, size=200), [-40.0, -1e-9, -1e-300, 0.0, 1e-300, 1e-12, 40.0, 800.0]])
    if family == "poisson":
        eta = np.minimum(eta, 40.0)
    y = (rng.random(eta.size) < 0.5).astype(float)
    code = {"binomial": Binomial, "gaussian": Gaussian, "poisson": Poisson}[family].code
    d1, d2, slope = (np.empty_like(eta) for _ in range(3))
    _kernels.curvature_terms(eta, y, code, d1, d2, slope)
    want = [np.empty_like(eta) for _ in range(3)]
    getattr(_kernels, {"binomial": "binomial_logit_derivatives", "gaussian": "gaussian_identity_derivatives",
                       "poisson": "poisson_log_derivatives"}[family])(eta, y, *want)
    np.testing.assert_array_equal(d1, want[1])
    np.testing.assert_array_equal(d2, want[2])
    np.testing.assert_allclose(slope, LOG_CURVATURE_SLOPES[family](eta), rtol=4 * np.finfo(float).eps, atol=0)


def test_binomial_extreme_eta_is_finite_and_exact():
    eta = np.array([-800.0, 800.0])
    y = np.array([1.0, 0.0])
    out = [np.empty(2) for _ in range(3)]
    _kernels.binomial_logit_derivatives(eta, y, *out)
    np.testing.assert_allclose(out[0], [800.0, 800.0])
    np.testing.assert_allclose(out[1], [-1.0, 1.0])
    assert np.all(out[2] >= 0) and np.all(np.isfinite(out[2]))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), c=st.sampled_from([1, 5, 128]), side=st.sampled_from([0, 1]),
       ties=st.booleans())
def test_drift_bounds_match_the_sorted_numpy_twin(seed, c, side, ties):
    """drift_bounds (one sort per radius, a running sum) against the NumPy version with sorts and
    cumulative sums, including tied moves, removed samples (weight 0) and moves large enough for
    e^a to overflow."""
    from naive import drift_bounds

    rng = np.random.default_rng(seed)
    alpha = rng.exponential(0.3, c)
    if ties:
        alpha = np.round(alpha, 1)
    beta = rng.exponential(1.0, c) * (rng.random(c) < 0.8)
    weight = rng.exponential(0.01, c) * (rng.random(c) < 0.9)
    alpha_rest, beta_rest = float(alpha.min()) * 0.5, 0.2
    ts = np.concatenate([[0.0], np.geomspace(1e-4, 1e3, 30)])
    out = np.empty(ts.size)
    _kernels.drift_bounds(alpha, beta, weight, alpha_rest, beta_rest, ts, side, out)
    want = drift_bounds(alpha, beta, weight, alpha_rest, beta_rest, ts, side)
    np.testing.assert_allclose(out, want, rtol=1e-12)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), n=st.sampled_from([1, 7, 300]), sets=st.sampled_from([1, 3]),
       family=st.sampled_from(["logistic", "poisson"]))
def test_newton_point_remainders_match_the_numpy_twin(seed, n, sets, family):
    """The fused Newton-point bound iteration against the array expressions, with samples of form 0
    (removed) and moves large enough for e^a to overflow."""
    from naive import newton_point_remainders

    rng = np.random.default_rng(seed)
    moves = rng.exponential(0.05, (sets, n)) * np.where(rng.random((sets, n)) < 0.05, 1e4, 1.0)
    reach = rng.exponential(0.01, (sets, n))
    form = rng.exponential(1e-3, (sets, n)) * (rng.random((sets, n)) < 0.9)
    lost = rng.exponential(1e-4, (sets, n)) * (rng.random((sets, n)) < 0.1)
    radius, bound = rng.exponential(0.1, sets), rng.exponential(0.05, sets)
    main, scale = rng.exponential(1e-3, sets), 1.0 / (1.0 - rng.uniform(0.0, 0.5, sets))
    L = 0.5 if family == "logistic" else 0.0
    out = np.empty(sets)
    _kernels.newton_point_remainders(moves, reach, form, lost, radius, bound, main, scale, 1.0, L, 3, out)
    want = newton_point_remainders(moves, reach, form, lost, radius, bound, main, scale, 1.0, L, 3)
    np.testing.assert_allclose(out, want, rtol=1e-12)
    assert np.all(out <= bound)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16), n=st.sampled_from([1, 7, 500]), m=st.sampled_from([1, 2, 3]))
def test_first_order_drift_terms_match_the_numpy_twin(seed, n, m):
    """The fused sums of the certificates' first-order drift against the array expressions, with
    removed samples (curvature 0) whose moves overflow e^a."""
    from naive import first_order_drift_terms

    rng = np.random.default_rng(seed)
    at_hat = rng.exponential(0.2, n) * (rng.random(n) < 0.9)
    at_estimate = at_hat * np.exp(rng.normal(0, 0.3, n))
    alpha = np.where(at_hat == 0, 800.0, rng.exponential(0.2, n))
    reach, xw, xv = rng.exponential(0.05, n), rng.normal(0, 0.1, n), rng.normal(0, 1.0, (n, m))
    out = np.zeros((m, 3))
    moved = _kernels.first_order_drift_terms(at_estimate, at_hat, alpha, reach, xw, xv, 1.0, 0.8, 0.3, 0.05, out)
    want, want_moved = first_order_drift_terms(at_estimate, at_hat, alpha, reach, xw, xv, 1.0, 0.8, 0.3, 0.05)
    np.testing.assert_allclose(out, want, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(moved, want_moved, rtol=1e-10, atol=1e-14)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), n=st.sampled_from([1, 7, 400]), sets=st.sampled_from([1, 3]),
       code=st.sampled_from([_kernels.BINOMIAL_LOGIT, _kernels.GAUSSIAN_IDENTITY, _kernels.POISSON_LOG]))
def test_gradient_rounding_sums_match_the_numpy_twin(seed, n, sets, code):
    """The fused sums of the gradient's rounding bound against the array expressions, with removed
    samples (weight 0), samples of no reference curvature, and moves for which e^{M (move + d)}
    overflows (NaN where it meets a zero curvature, in both)."""
    from naive import gradient_rounding_sums

    rng = np.random.default_rng(seed)
    weights = rng.exponential(1.0, (sets, n)) * (rng.random((sets, n)) < 0.9)
    residual, curvature = rng.exponential(0.3, (sets, n)), rng.exponential(0.2, (sets, n))
    curvature[rng.random((sets, n)) < 0.05] = 0.0
    eta = rng.exponential(2.0, (sets, n))
    move = np.where(rng.random((sets, n)) < 0.03, 800.0, rng.exponential(0.2, (sets, n)))
    reference = curvature * (rng.random((sets, n)) < 0.9)
    norms, y, offset = rng.exponential(3.0, n), rng.poisson(2.0, n).astype(float), rng.exponential(0.1, n)
    theta_norm = rng.exponential(2.0, sets)
    args = (code, weights, residual, curvature, eta, move, reference, norms, y, offset, theta_norm, 1.0, 1e-14, 3e-12)
    out = np.empty((sets, 4))
    _kernels.gradient_rounding_sums(*args, out)
    want = gradient_rounding_sums(*args)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(want))
    np.testing.assert_allclose(out, want, rtol=1e-12)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16), n=st.sampled_from([1, 9, 300]), K=st.integers(2, 6))
def test_softmax_form_kernels_match_the_numpy_twins(seed, n, K):
    """The per-sample forms V_i^T (diag p_i - p_i p_i^T) W_i from the probabilities alone, against the
    batched matrix products, on non-contiguous rows; the centred quadratic form is never negative."""
    from naive import softmax_forms

    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, (n, K))
    prob = np.exp(logits - logits.max(axis=1, keepdims=True))
    prob /= prob.sum(axis=1, keepdims=True)
    left, right = rng.normal(0, 1, (n, 2 * K))[:, ::2], rng.normal(0, 1, (n, K))
    out = np.empty(n)
    _kernels.softmax_forms(prob, left, right, out)
    np.testing.assert_allclose(out, softmax_forms(prob, left, right), rtol=1e-10, atol=1e-14)
    _kernels.softmax_forms(prob, left + 5.0, left + 5.0, out)          # nearly constant across classes
    assert np.all(out >= 0.0)
    np.testing.assert_allclose(out, softmax_forms(prob, left, left), rtol=1e-9, atol=1e-13)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16), n=st.sampled_from([1, 9, 300]), K=st.integers(2, 6), m=st.sampled_from([1, 2, 4]))
def test_softmax_drift_kernels_match_the_numpy_twins(seed, n, K, m):
    """The softmax probabilities (large logits, no overflow) and the fused sums of the softmax
    certificates' first-order drift against the array expressions, with removed samples (weight 0,
    not kept) and a non-contiguous W."""
    from naive import softmax_drift_terms, softmax_probabilities

    rng = np.random.default_rng(seed)
    eta = rng.normal(0, 3, (n, K)) + 700.0 * (rng.random((n, 1)) < 0.2)
    prob = np.empty((n, K))
    _kernels.softmax_probabilities(eta, prob)
    np.testing.assert_allclose(prob, softmax_probabilities(eta), rtol=1e-13, atol=1e-300)
    np.testing.assert_allclose(prob.sum(axis=1), 1.0, rtol=1e-14)
    v_rows, w_rows = rng.normal(0, 1, (n, m, K)), rng.normal(0, 1, (n, 2 * K))[:, ::2]
    prob_hat = np.empty((n, K))
    saturated = 40.0 * (rng.random((n, 1)) < 0.2) * (np.arange(K) == 0)        # nearly certain samples
    _kernels.softmax_probabilities(rng.normal(0, 3, (n, K)) + saturated, prob_hat)
    weights_hat = rng.exponential(1.0, n)
    kept = rng.random(n) < 0.85
    weights = np.where(kept, rng.exponential(1.0, n), 0.0)
    grow, moved, root_w = rng.exponential(0.2, n), rng.exponential(0.5, n), rng.exponential(1.0, n)
    out = np.empty((m, 4))
    _kernels.softmax_drift_terms(prob, v_rows, w_rows, prob_hat, weights_hat, weights, kept, grow, moved, root_w,
                                 out)
    want = softmax_drift_terms(prob, v_rows, w_rows, prob_hat, weights_hat, weights, kept, grow, moved, root_w)
    np.testing.assert_allclose(out, want, rtol=1e-10, atol=1e-12)
