"""Stationarity of the trained parameters under the objective the user described.

Every estimate of :class:`rif.deep.TorchInfluence` expands around a minimiser
theta^ of

    L(theta) = sum_i l_i(theta) + (mu/2) ||theta||^2          (mu = ``weight_decay``),

so grad L(theta^) = sum_i g_i + mu theta^ should vanish. Its size is measured
against the sum of the terms it is made of,

    r = ||sum_i g_i + mu theta^|| / (sum_i ||g_i|| + mu ||theta^||)   in [0, 1]

(the triangle inequality bounds r by 1; r = 1 when every term pushes the same
way, as far from any minimum). The damping lambda does not enter: its proximal
term (lambda/2)||theta - theta^||^2 has zero gradient at theta^.

When r exceeds the tolerance, the most likely cause is named. The weight decay
that makes theta^ closest to stationary is the least-squares fit

    mu* = -<sum_i g_i, theta^> / ||theta^||^2,

and if it leaves a residual r* far below r, theta^ *is* stationary for some
weight decay, only not for the one passed: missing (mu = 0), n times too large
or too small (sum form mu = n x the mean form wd), or swapped with the damping
(mu* equal to ``damping``). Otherwise training did not converge, or used
another objective (penalties on other parameters, augmentation, label
smoothing, dropout or batch-norm in training mode: the model is evaluated in
eval mode).
"""

import math
import warnings

import torch

from ._errors import StationarityWarning
from ._gradients import GradientSums

#: mu* "equals" a candidate value when their ratio is within this factor of one.
MATCH = 0.1


def stationarity(G, theta, weight_decay):
    """The statistics of the module docstring from the per-sample gradients.

    Parameters
    ----------
    G : tensor of shape (n, p) or GradientSums
        Per-sample gradients g_i at theta^, or their sums (streamed, see
        :func:`rif.deep._gradients.gradient_sums`).
    theta : tensor of shape (p,)
    weight_decay : float
        mu >= 0.

    Returns
    -------
    dict
        ``gradient_norm`` ||grad L(theta^)||, ``relative`` r,
        ``implied_weight_decay`` mu* and ``implied_relative`` r*.
    """
    sums = G if isinstance(G, GradientSums) else GradientSums.of(G)
    th = theta.detach().to(torch.float64)
    data, sample_norms = sums.total, sums.norm_total
    theta_norm = float(torch.linalg.vector_norm(th))
    grad_norm = float(torch.linalg.vector_norm(data + weight_decay * th))
    scale = sample_norms + weight_decay * theta_norm
    relative = grad_norm / scale if scale > 0 else 0.0
    implied = -float(data @ th) / theta_norm ** 2 if theta_norm > 0 else 0.0
    implied_scale = sample_norms + abs(implied) * theta_norm
    implied_norm = float(torch.linalg.vector_norm(data + implied * th))
    implied_relative = implied_norm / implied_scale if implied_scale > 0 else 0.0
    return {"gradient_norm": grad_norm, "relative": relative,
            "implied_weight_decay": implied, "implied_relative": implied_relative}


def _close(a, b):
    return b > 0 and abs(a / b - 1.0) <= MATCH


def diagnose(stats, weight_decay, damping, n):
    """A sentence naming the likely cause of a non-stationary theta^ (see the module docstring)."""
    mu_star, r, r_star = stats["implied_weight_decay"], stats["relative"], stats["implied_relative"]
    if not (mu_star > 0 and r_star <= 0.1 * r):
        return ("theta^ is not a minimum of this objective for any weight decay: training has not "
                "converged, or it minimised another objective (penalties on other parameters, "
                "augmentation, label smoothing, dropout or batch-norm in training mode; rif.deep "
                "evaluates the model in eval mode). Train to convergence on the objective you pass")
    fit = f"theta^ is stationary (r = {r_star:.1e}) for weight_decay = {mu_star:.4g}"
    if weight_decay == 0:
        return (f"weight_decay is missing: {fit}. Pass that value (sum form: n x the mean-form "
                "weight decay of e.g. torch.optim.Adam on a mean loss)")
    if _close(weight_decay, n * mu_star):
        return (f"weight_decay = {weight_decay:.4g} looks n = {n} times too large: {fit}. The "
                "sum-form weight decay is n x a mean-form wd, not n x a value that is already in sum form")
    if _close(n * weight_decay, mu_star):
        return (f"weight_decay = {weight_decay:.4g} looks n = {n} times too small: {fit}. For a mean "
                "loss trained with weight decay wd, pass weight_decay = n * wd")
    if _close(mu_star, damping):
        return (f"weight_decay and damping look swapped: {fit}, the damping you passed. "
                "weight_decay is the training objective's own L2 penalty; damping only regularises "
                "the curvature")
    return f"weight_decay = {weight_decay:.4g} does not match the training: {fit}"


def check_stationarity(G, theta, weight_decay, damping, tol, stacklevel=3):
    """Warn with :class:`StationarityWarning` when r > ``tol``; return the statistics.

    ``tol=None`` skips the warning (the statistics are still returned).
    """
    stats = stationarity(G, theta, weight_decay)
    if tol is not None and stats["relative"] > tol and math.isfinite(stats["relative"]):
        n = G.n if isinstance(G, GradientSums) else G.shape[0]
        cause = diagnose(stats, weight_decay, damping, n)
        warnings.warn(
            f"the trained parameters are not a stationary point of sum_i l_i + (weight_decay/2)||theta||^2: "
            f"||grad|| = {stats['gradient_norm']:.3e}, {stats['relative']:.2e} of sum_i ||g_i|| + "
            f"weight_decay ||theta|| (stationarity_tol = {tol:g}). Likely cause: {cause}. Influence "
            "estimates expand around a minimum, and method='retrain' drifts away from theta^",
            StationarityWarning, stacklevel=stacklevel)
    return stats
