"""Streaming IF and RIF scores with K-FAC / EK-FAC, computed in the Kronecker eigenbasis.

With the layer-wise eigenbasis (Q_S, Q_A) and eigenvalues Lambda of
:mod:`rif.deep._kfac`, write R~ = Q_S^T R Q_A for a layer's block of a
parameter-space vector R. The linearised scores of training sample i on
evaluation sample j are

    IF    s_ij = sum_layers < G~_i / (Lambda + lambda),           F~_j >,
    RIF   s_ij = sum_layers < G~_i / (Lambda - Lambda_i + lambda), F~_j >,

with G_i the training gradient, F_j the gradient of the evaluation target,
and Lambda_i = sum_k (Q_S^T G_ik Q_A)^2 the sample's share of the eigenvalues
(for EK-FAC, sum_i Lambda_i = Lambda; for K-FAC the difference is clipped at 0,
as in :meth:`KFACSolver.solve_without`). These are exactly
grad f_j^T dtheta_i for the solver's IF and leave-one-out steps.

Every rotated gradient is formed from the layer's inputs a_il and output
pseudo-gradients delta_il captured in one forward and one (IF) or K + 1 (RIF,
GNH) backward passes over a batch: G~_i = sum_l (Q_S^T delta_il)(Q_A^T a_il)^T,
an outer product for Linear layers on vectors. No per-sample Jacobian and no
n x p matrix is formed: memory is the factors, the m rotated evaluation
gradients (m x p) and one block of rotated training gradients (b x p).

The m evaluation gradients enter the solver's log as one solve of m
right-hand sides (key ``"route": "eigenbasis"``); no residual is measured,
since no parameter-space solution is formed.
"""

import time

import numpy as np
import torch

from ._progress import progress_bar


def rotated_gradients(solver, X, y, fn, batch_size):
    """{layer: F~ of shape (m, n_out, n_in_h)}: rotated per-sample gradients of fn over (X, y)."""
    blocks = {layer.name: [] for layer in solver.layers}
    for _, cap in solver.captures(X, y, grads="target", fn=fn, batch_size=batch_size):
        for layer in solver.layers:
            a, deltas = cap[layer.name]
            blocks[layer.name].append(solver.rotated(layer, a, deltas[0]))
    return {name: torch.cat(b) for name, b in blocks.items()}


def _weights(solver, layer, a, deltas, G, method):
    """(Lambda + lambda) for IF, (Lambda - Lambda_i)_+ + lambda for RIF, and the RIF leverages.

    The per-sample tensors are b x p: they are updated in place to keep one pass each.
    """
    Lam, lam = solver.eigenvalues[layer.name], solver.damping
    if method == "if":
        return Lam + lam, None
    terms = solver.rotated_squares(layer, a, deltas[1:])
    W = torch.sub(Lam, terms).clamp_(min=0).add_(lam)
    ratio = terms.div_(Lam + lam).reshape(terms.shape[0], -1).amax(1)
    return W, ratio


def _stream(solver, method, batch_size, width, label, progress, contribution):
    """Sum over layers of ``contribution(layer, G, W)`` for every block of training samples, with G
    the block's rotated gradients and W their (RIF: leave-one-out) eigenvalue weights, one layer at
    a time; returns (n_train,) + width values and, for RIF, the leverages max Lambda_i / (Lambda + lambda)."""
    n = solver.curvature.n_samples
    out = np.empty((n,) + width)
    lev = np.empty(n) if method == "rif" else None
    grads = "both" if method == "rif" else "target"
    with progress_bar(n, label, progress) as bar:
        for sl, cap in solver.captures(grads=grads, batch_size=batch_size):
            block, blev = 0.0, None
            for layer in solver.layers:
                a, deltas = cap[layer.name]
                G = solver.rotated(layer, a, deltas[0])                          # (b, n_out, n_in_h)
                W, ratio = _weights(solver, layer, a, deltas, G, method)
                if ratio is not None:
                    blev = ratio if blev is None else torch.maximum(blev, ratio)
                block = block + contribution(layer, G, W)
            out[sl] = block.detach().cpu().double().numpy()
            if lev is not None:
                lev[sl] = blev.detach().cpu().double().numpy()
            bar.update(sl.stop - sl.start)
    return out, lev


def kfac_self_influence(solver, method, batch_size, progress=None):
    """Linearised self-influence g_i^T dtheta_i (n_train,) and, for RIF, the leverages."""
    return _stream(solver, method, batch_size, (), f"K-FAC self-influence ({method})", progress,
                   lambda layer, G, W: (G * G).div_(W).reshape(G.shape[0], -1).sum(1))


def kfac_scores(solver, fn, X, y, method, batch_size, progress=None):
    """Linearised IF or RIF scores (n_train, m) and, for RIF, the leverages (n_train,).

    Parameters
    ----------
    solver : fitted KFACSolver
    fn : per-sample target of the evaluation data (loss or label probability)
    X, y : evaluation tensors
    method : {"if", "rif"}
    batch_size : int
        Training (and evaluation) samples per block.

    Returns
    -------
    scores : ndarray (n_train, m)
    leverage : ndarray (n_train,) or None
        max over coordinates of Lambda_i / (Lambda + lambda) (RIF only).
    """
    start = time.perf_counter()
    F = rotated_gradients(solver, X, y, fn, batch_size)
    solver.log.append({"solver": solver.name, "stage": "solve", "n_rhs": X.shape[0], "iterations": 0,
                       "converged": True, "relative_residuals": None, "max_relative_residual": None,
                       "route": "eigenbasis", "seconds": time.perf_counter() - start})

    def contribution(layer, G, W):
        rotated = F[layer.name]
        return G.div_(W).reshape(G.shape[0], -1) @ rotated.reshape(rotated.shape[0], -1).T

    return _stream(solver, method, batch_size, (X.shape[0],), f"K-FAC scores ({method})", progress, contribution)
