"""Curvature of the summed training loss: Gauss-Newton, true Hessian, empirical Fisher.

All three are *sums* over the n training samples (never means), matching the
sum-form objective sum_i l(y_i, f(x_i; theta)) of the core package:

``"gnh"`` (generalised Gauss-Newton, the default)
    G = sum_i J_i^T A_i J_i, with J_i = df_i/dtheta (K x p) and
    A_i = d^2 l / df^2 (K x K). Positive semi-definite for convex losses; it
    drops the second derivatives of the network itself, so each term has rank
    at most K.
``"hessian"`` (true Hessian)
    H = sum_i d^2 l_i / dtheta^2 = G + sum_i sum_k (dl_i/df_ik) d^2 f_ik / dtheta^2.
    May be indefinite away from a minimum; use it for small models only.
``"fisher"`` (empirical Fisher)
    F = sum_i g_i g_i^T with the per-sample loss gradients g_i. It is *not*
    the GGN (nor the true Fisher): it uses observed-label gradients, and each
    term has rank one.

Solvers work with the damped curvature C + lambda I. A library whose
curvature is the mean (1/n) C with damping lambda' corresponds to
lambda = n lambda' here.
"""

import torch
from torch.func import grad, jvp, vjp, vmap

from ._data import batch_slices
from ._gradients import per_sample_gradients, per_sample_jacobians

CURVATURES = ("gnh", "hessian", "fisher")


class Curvature:
    """Undamped curvature C of the summed training loss, as products and (optionally) densely.

    Parameters
    ----------
    kind : {"gnh", "hessian", "fisher"}
    fm : FunctionalModel
    loss : Loss
    X, y : training tensors
    batch_size : int
    """

    def __init__(self, kind, fm, loss, X, y, batch_size=256):
        if kind not in CURVATURES:
            raise ValueError(f"curvature must be one of {CURVATURES}, got {kind!r}")
        self.kind, self.fm, self.loss, self.X, self.y = kind, fm, loss, X, y
        self.batch_size = batch_size
        self.n_samples, self.n_params = X.shape[0], fm.n_params
        self.n_products = 0          # matrix-vector products with C, counted per vector

    # -- products --------------------------------------------------------------------
    def batch_matmat(self, V, index):
        """sum_{i in index} C_i V for V of shape (p, r); ``index`` a slice or index tensor."""
        fm, theta = self.fm, self.fm.theta
        xb, yb = self.X[index], self.y[index]
        vt = V.T.contiguous()
        self.n_products += V.shape[1]
        if self.kind == "gnh":
            def f(th):
                return fm.forward(th, xb)
            out, vjp_fn = vjp(f, theta)
            A = self.loss.output_hessian(out.detach(), yb)
            jv = vmap(lambda v: jvp(f, (theta,), (v,))[1])(vt)           # (r, B, K)
            u = torch.einsum("bkl,rbl->rbk", A, jv)
            return vmap(vjp_fn)(u)[0].T
        if self.kind == "hessian":
            def total(th):
                return self.loss(fm.forward(th, xb), yb).sum()
            g = grad(total)
            return vmap(lambda v: jvp(g, (theta,), (v,))[1])(vt).T
        G = per_sample_gradients(fm, self.loss, xb, yb, batch_size=xb.shape[0])
        return G.T @ (G @ V)

    def matmat(self, V):
        """C V over the whole training set, V of shape (p, r) or (p,)."""
        vec = V.ndim == 1
        V = V[:, None] if vec else V
        out = torch.zeros_like(V)
        for sl in batch_slices(self.n_samples, self.batch_size):
            out += self.batch_matmat(V, sl)
        return out[:, 0] if vec else out

    # -- per-sample low-rank factors (for RIF / Newton) --------------------------------
    def sample_factors(self, index):
        """(B_i, A_i) with C_i = B_i^T A_i B_i for the samples ``index``.

        Shapes (k, K, p) and (k, K, K) for the GNH (B_i = J_i); (k, 1, p) and
        (k, 1, 1) for the empirical Fisher (B_i = g_i^T, A_i = 1). The true
        Hessian has no such low-rank per-sample form.
        """
        xb, yb = self.X[index], self.y[index]
        if self.kind == "gnh":
            J = per_sample_jacobians(self.fm, xb)
            with torch.no_grad():
                A = self.loss.output_hessian(self.fm.forward(self.fm.theta, xb), yb)
            return J, A
        if self.kind == "fisher":
            G = per_sample_gradients(self.fm, self.loss, xb, yb, batch_size=self.batch_size)
            return G[:, None, :], torch.ones(G.shape[0], 1, 1, dtype=G.dtype, device=G.device)
        raise ValueError(
            "rescaled influence and Newton steps need a curvature whose per-sample terms are "
            "low-rank (curvature='gnh' or 'fisher'); the true Hessian has none")

    # -- dense form and trace -----------------------------------------------------------
    def dense(self):
        """C as a dense (p, p) matrix (symmetrised)."""
        p = self.n_params
        C = torch.zeros(p, p, dtype=self.fm.dtype, device=self.fm.device)
        for sl in batch_slices(self.n_samples, self.batch_size):
            if self.kind == "hessian":
                xb, yb = self.X[sl], self.y[sl]

                def total(th):
                    return self.loss(self.fm.forward(th, xb), yb).sum()
                C += torch.func.hessian(total)(self.fm.theta)
            else:
                B, A = self.sample_factors(sl)
                AB = torch.einsum("bkl,blp->bkp", A, B)
                C += B.reshape(-1, p).T @ AB.reshape(-1, p)
        return 0.5 * (C + C.T)

    def trace(self, dense=None, n_probes=64, seed=0, exact_below=1024):
        """tr(C): exact for GNH and Fisher, and for the Hessian with p <= ``exact_below``
        (p Hessian-vector products); else ``n_probes`` Hutchinson probes."""
        if dense is not None:
            return float(torch.diagonal(dense).sum())
        if self.kind == "hessian" and self.n_params <= exact_below:
            total = 0.0
            for start in range(0, self.n_params, 64):
                idx = torch.arange(start, min(start + 64, self.n_params))
                E = torch.zeros(self.n_params, len(idx), dtype=self.fm.dtype, device=self.fm.device)
                E[idx, torch.arange(len(idx))] = 1.0
                total += float((E * self.matmat(E)).sum())
            return total
        if self.kind == "hessian":
            gen = torch.Generator(device="cpu").manual_seed(seed)
            V = (torch.randint(0, 2, (self.n_params, n_probes), generator=gen) * 2 - 1)
            V = V.to(dtype=self.fm.dtype, device=self.fm.device)
            return float((V * self.matmat(V)).sum() / n_probes)
        total = 0.0
        for sl in batch_slices(self.n_samples, self.batch_size):
            B, A = self.sample_factors(sl)
            total += float(torch.einsum("bkl,bkp,blp->", A, B, B))
        return total
