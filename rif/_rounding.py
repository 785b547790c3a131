"""How far a computed gradient may lie from the true one, and what that does to a certificate.

Every certificate reads g = grad F_S(theta_e) off a pass in floating point. Where the estimate
is very close to theta*, g is small against the terms it sums, and its rounding error eps_g can
be a sizeable part of it (a softmax model with 18 samples and 33 parameters had
||eps_g|| / ||g|| = 2 %, and a certified effect bound fell 4 % short of the true error). The
certificates are therefore read as exact statements about a tilted objective
F_eps(theta) = F_S(theta) + eps_g^T theta: its gradient at theta_e is the computed g and its
Hessian is F_S's, so every bound computed from g holds for its minimiser theta*_eps. Then
theta*(tau) = argmin F_S + tau eps_g^T theta moves, as tau goes from 1 to 0, at speed
||H(theta*(tau))^{-1} eps_g|| in any norm; while the path stays where the Hessian is at least
kappa times the certificate's reference matrix A (H_0 or H_e),
||theta*_eps - theta*||_A <= ||eps_g||_{A^{-1}} / kappa. :func:`tilt` turns that into an
addition to the bounds.

The rounding error is bounded per sample, from the standard model |fl(a op b) - a op b| <= u |a op b|
(u = eps / 2; the bounds below use eps), for a gradient formed as fl(sum_i fl(w_i fl(l'(fl(eta_i)))) x~_i)
plus the penalty:

* eta_i = x~_i^T theta (+ offset) is off by at most (p + 2) eps (||x~_i|| ||theta|| + |offset_i|), and
  l' moves by at most c_i e^{M d} times that much d (c_i = w_i l''_i);
* l' itself is off by a few eps of the magnitudes it is formed from: 4 eps for the logistic loss
  (p - y with p, y in [0, 1]), 3 eps (e^eta + y) for Poisson, eps (|eta| + |y|) for squared loss,
  (K + 4) eps per class for softmax;
* the sum over n samples, in any order, is off by at most n eps sum_i |r_i| ||x~_i|| (in the
  2-norm over coordinates), and the product r_i = w_i l'_i by eps |r_i|; where every gradient
  rif forms for the problem sums its rows in parts (:func:`summation_length`), each coordinate's
  sum passes through at most L <= n partial sums in a row and n becomes L;
* the penalty term and the final addition by 2 eps (||g|| + lambda ||theta||).

The bound's own sums over the samples are formed in one compiled pass
(:func:`rif._kernels.gradient_rounding_sums`) and taken (1 + n eps) larger, above their own
rounding.
"""

import math

import numpy as np
import scipy.sparse as sp

EPS = np.finfo(float).eps


def summation_length(problem):
    """A bound L of the number of terms any coordinate of a scalar GLM's gradient is summed over in
    a row, for every route rif computes it by (:func:`rif._design.loss_gradients` for the
    certificates' passes, :func:`rif._design.loss_gradient` for single evaluations): both cut a
    dense C-ordered float64 X without offset into ``parts`` row blocks of at most ceil(n / parts)
    rows, summed within a block (by BLAS or the compiled kernel, in any order) and then over the
    blocks, so L = ceil(n / parts) + parts; n for any other design."""
    from ._config import FUSED_PARTS

    X, n = problem.X, problem.n_samples
    fused = (isinstance(X, np.ndarray) and X.flags.c_contiguous and X.dtype == np.float64
             and getattr(problem, "offset", None) is None and problem.family.code is not None)
    if not fused:
        return n
    parts = max(1, min(FUSED_PARTS, n // 1024))
    return min(n, -(-n // parts) + parts)


def scalar_gradient_error(problem, weights, theta, residual, curvature, eta, move, M, lam_low, reference, floor=1.0,
                          terms=None):
    """Bounds (in the 2-norm, and in the norm of A^{-1}) of fl(g) - g for a scalar GLM's gradient at
    ``theta`` with ``weights``, given bounds (per sample, weighted) of |r_i| = w_i |l'_i|
    (``residual``) and of c_i = w_i l''_i (``curvature``) there, and of |eta_i| (``eta``); ``move``
    bounds how far eta_i lies from where ``curvature`` was taken (0 when it is taken at theta).

    A is the certificate's reference matrix: lambda_min(A) >= ``lam_low`` and
    A >= ``floor`` sum_i reference_i x~_i x~_i^T. The linear predictors' rounding enters g as
    X~^T (c o delta eta), whose A^{-1}-norm is at most (sum_i c_i^2 delta eta_i^2 / reference_i / floor)^{1/2}
    (as C_ref^{1/2} X~ A^{-1} X~^T C_ref^{1/2} <= I / floor), far below the sum of its terms' norms;
    the other parts are bounded term by term and divided by lam_low^{1/2}. Every per-sample array may
    carry leading axes (one row per set, ``theta`` then (..., p), ``lam_low`` (...)); a removed sample
    (weight 0) adds nothing. ``terms``: how many terms each coordinate's sum passes through in a row
    (:func:`summation_length`; n by default, right for any order)."""
    from ._kernels import gradient_rounding_sums

    n, code = problem.n_samples, problem.family.code
    theta = np.asarray(theta, dtype=float)
    per_sample = [np.asarray(a, dtype=float) for a in (weights, residual, curvature, eta, move, reference)]
    # (np.broadcast: the shapes' broadcast in C, without np.broadcast_shapes' Python overhead)
    shape = np.broadcast(np.empty(theta.shape[:-1] + (n,), dtype=bool), *per_sample).shape
    lead = shape[:-1]
    rows = math.prod(lead)
    if code is None:                # no bound of l' and its rounding known for the family
        return (np.full(lead, np.inf), np.full(lead, np.inf)) if lead else (np.inf, np.inf)
    weights, residual, curvature, eta, move, reference = (_flat(a, shape, (rows, n)) for a in per_sample)
    theta_norm = _flat(np.linalg.norm(theta, axis=-1), lead, rows)
    offset = getattr(problem, "offset", None)
    offset = np.zeros(n) if offset is None else np.abs(np.asarray(offset, dtype=float))
    terms = n if terms is None else terms
    sums = np.empty((rows, 4))
    # each linear predictor is off by (p + 2) eps (||x~_i|| ||theta|| + |offset_i|), and l' by the
    # change that brings; the other terms per sample (see the module doc)
    gradient_rounding_sums(code, weights, residual, curvature, eta, move, reference,
                           row_norms(problem), np.asarray(problem.y, dtype=float), offset, theta_norm, float(M),
                           (problem.n_params + 2) * EPS, (terms + 1) * EPS, sums)
    # (each sum of n non-negative terms, formed in order, is within (n - 1) eps of its value)
    sums *= 1.0 + n * EPS
    lam = np.array([problem.penalty_total(w) for w in weights])
    lam_low = _flat(np.asarray(lam_low, dtype=float), lead, rows)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        rest = (1.0 + 4.0 * EPS) * sums[:, 0] + 2.0 * EPS * lam * theta_norm
        whole = rest + (1.0 + 4.0 * EPS) * sums[:, 1]
        weighted = np.sqrt(sums[:, 2] / floor)
        in_a = (1.0 + 4.0 * EPS) * (weighted + sums[:, 3] / np.sqrt(lam_low)) + rest / np.sqrt(lam_low)
    in_a = np.where(lam_low > 0, in_a, np.inf)
    whole, in_a = whole.reshape(lead), in_a.reshape(lead)
    return (whole, in_a) if np.ndim(whole) else (float(whole), float(in_a))


def _flat(a, shape, flat_shape):
    """``a`` broadcast to ``shape`` (a copy-free view, and no broadcast at all where it already has
    that shape), reshaped to ``flat_shape``."""
    return (a if a.shape == shape else np.broadcast_to(a, shape)).reshape(flat_shape)


def _row_norms(problem):
    """||x~_i||_2 for every training row (with the intercept's 1), cached on the problem, or None
    for a design rif cannot read row by row."""
    from ._certify import _row_norms_sq
    from ._design import is_dask

    cache = problem.__dict__.get("_row_norms")
    if cache is not None:
        return cache
    if hasattr(problem, "design"):                  # softmax models: X~ with its intercept column
        X, intercept = problem.design, False
    else:
        X, intercept = problem.X, problem.fit_intercept
    if isinstance(X, np.ndarray) or sp.issparse(X):
        squares = _row_norms_sq(X, intercept)
    elif is_dask(X):
        squares = np.asarray((X * X).sum(axis=1).compute()) + float(intercept)
    elif hasattr(X, "blocks"):                      # a softmax design read in chunks
        squares = np.concatenate([np.einsum("ij,ij->i", block, block) for _, block in X.blocks()])
    else:
        return None
    # (1 + 1e-12): above the computed norms' rounding
    cache = problem.__dict__["_row_norms"] = np.sqrt(squares) * (1.0 + 1e-12)
    return cache


def row_norms(problem):
    """:func:`_row_norms`, inf where the design cannot be read row by row (no rounding bound is
    then formed)."""
    norms = _row_norms(problem)
    return np.full(problem.n_samples, np.inf) if norms is None else norms


def tilt(error_h, radius, kappa):
    """The addition t to every A-norm bound for a gradient error of A^{-1}-norm at most ``error_h``,
    given theta*_eps within ``radius`` of theta_e and ``kappa(r)``, a lower bound (non-increasing
    in r) of the Hessian of F_S relative to A anywhere within A-distance r of theta_e: with
    t = 2 error_h / kappa(radius), the path from theta*_eps to theta* moves at speed at most
    error_h / kappa(radius + t) <= t while it stays within radius + t, so it never leaves and
    ||theta* - theta*_eps||_A <= t. inf where kappa vanishes or the test fails; 0 for no error."""
    if error_h == 0.0:
        return 0.0
    near = kappa(radius)
    if not (np.isfinite(error_h) and near > 0.0):
        return np.inf
    t = 2.0 * error_h / near
    far = kappa(radius + t)
    return float(t) if far > 0.0 and error_h / far <= t else np.inf


def exponential_tilts(error_h, radius, s):
    """:func:`tilt` for kappa(r) = exp(-s r), for arrays of sets at once: 0 where ``error_h`` is 0,
    inf where it or ``radius`` is not finite or the test fails."""
    error_h, radius, s = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in (error_h, radius, s)))
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        near = np.exp(-s * radius)
        t = 2.0 * error_h / near
        far = np.exp(-s * (radius + t))
        ok = np.isfinite(error_h) & np.isfinite(radius) & (near > 0.0) & (far > 0.0) & (error_h / far <= t)
    return np.where(error_h == 0.0, 0.0, np.where(ok, t, np.inf))
