"""Leave-one-out (RIF) and Newton steps with the true Hessian.

With H = sum_j H_j + s I the damped Hessian of the summed loss (s = mu + lambda)
and H_j = d^2 l_j / dtheta^2 sample j's own Hessian,

    "rif"      dtheta_i = (H - H_i)^{-1} g_i,
    "newton"   dtheta_S = (H - sum_{i in S} H_i)^{-1} sum_{i in S} g_i.

H_i = J_i^T A_i J_i + sum_k (dl_i/df_ik) d^2 f_ik/dtheta^2 is not of rank K,
so the GNH's K x K Woodbury correction does not apply. Two routes:

Exact (``solver="exact"``)
    H_i is formed densely (p x p, ``torch.func.hessian`` of the sample's loss,
    vmapped over a block of samples) and H - H_i is factorised by a batched
    float64 Cholesky: O(p^3 / 3) per sample, for models of up to a few
    thousand parameters.
Low rank (``solver="lowrank"``)
    In the basis U of :mod:`rif.deep._lowrank`, sample i's share of the
    subspace Hessian is M_i = U^T H_i U (sum_i M_i = diag(e)), from k
    per-sample Hessian-vector products H_i U, and

        dtheta_i = U (D - M_i)^{-1} U^T g_i + (g_i - U U^T g_i) / s,   D = diag(e' + s),

    a k x k Cholesky per sample. With k = p it equals the exact route whenever
    H is positive definite; where it is not, the Ritz directions with
    e_j + s <= 0 keep only the shift (the damped positive part).

Either way the leave-one-out matrix must be positive definite: where it is not
(the Hessian without sample i is indefinite along some direction), the step is
undefined and the sample's row is NaN or :class:`rif.SingularHessianError` is
raised.
"""

import numpy as np
import torch
from torch.func import grad, hessian, jvp, vmap

from ._errors import SingularHessianError


def _single_loss(curvature):
    fm, loss = curvature.fm, curvature.loss

    def fn(theta, x, y):
        return loss.single(fm.forward_single(theta, x), y)
    return fn


def sample_hessians(curvature, index):
    """H_i for the training samples ``index``, shape (k, p, p) (dense; small models only)."""
    fm = curvature.fm
    idx = torch.as_tensor(np.asarray(index), device=curvature.X.device)
    fn = _single_loss(curvature)
    return vmap(hessian(fn), in_dims=(None, 0, 0))(fm.theta, curvature.X[idx], curvature.y[idx])


def sample_hessian_products(curvature, index, V):
    """H_i V for the training samples ``index`` and V of shape (p, r): shape (k, p, r)."""
    fm = curvature.fm
    idx = torch.as_tensor(np.asarray(index), device=curvature.X.device)
    fn = _single_loss(curvature)

    def one(x, y):
        g = grad(lambda th: fn(th, x, y))
        return vmap(lambda v: jvp(g, (fm.theta,), (v,))[1])(V.T.contiguous()).T
    return vmap(one)(curvature.X[idx], curvature.y[idx])


def _check(info, index, on_singular, what):
    singular = (info != 0).cpu().numpy()
    if singular.any() and on_singular == "raise":
        idx = np.asarray(index)[singular]
        raise SingularHessianError(
            f"{what} is not positive definite for training sample(s) {idx[:10].tolist()}: the "
            "Hessian without them is indefinite along some direction, so their leave-one-out "
            "Newton step is undefined; increase the damping or use curvature='gnh'")
    return torch.as_tensor(singular, device=info.device)


def _dense_hessian(solver):
    """H = L L^T from the exact solver's float64 Cholesky factor (cached on the solver)."""
    if getattr(solver, "_hessian", None) is None:
        solver._hessian = solver.chol @ solver.chol.T
    return solver._hessian


def dense_loo_steps(solver, curvature, G, index, on_singular="raise"):
    """(H - H_i)^{-1} g_i with dense per-sample Hessians, shape (k, p) in the working dtype."""
    H = _dense_hessian(solver)
    Hi = sample_hessians(curvature, index).to(torch.float64)
    L, info = torch.linalg.cholesky_ex(H[None] - 0.5 * (Hi + Hi.transpose(1, 2)))
    singular = _check(info, index, on_singular, "the leave-one-out Hessian H - H_i")
    steps = torch.cholesky_solve(G.to(torch.float64)[:, :, None], L)[:, :, 0]
    steps[singular] = float("nan")
    return steps.to(G.dtype)


def dense_newton_step(solver, curvature, g, index):
    """(H - sum_{i in S} H_i)^{-1} g, shape (p,)."""
    H = _dense_hessian(solver)
    HS = sample_hessians(curvature, index).to(torch.float64).sum(0)
    L, info = torch.linalg.cholesky_ex(H - 0.5 * (HS + HS.T))
    _check(info[None], [list(index)], "raise", "the leave-S-out Hessian H - H_S")
    return torch.cholesky_solve(g.to(torch.float64)[:, None], L)[:, 0].to(g.dtype)


def _subspace_shares(solver, curvature, index):
    """M_i = U^T H_i U, shape (k, r, r) (symmetrised)."""
    U = solver.U
    M = U.T[None] @ sample_hessian_products(curvature, index, U)
    return 0.5 * (M + M.transpose(1, 2))


def lowrank_loo_steps(solver, curvature, G, index, on_singular="raise"):
    """U (D - M_i)^{-1} U^T g_i + (g_i - U U^T g_i) / s, shape (k, p)."""
    U, s = solver.U, solver.damping
    M = _subspace_shares(solver, curvature, index).to(torch.float64)
    S = torch.diag_embed(solver.diagonal.to(torch.float64))[None] - M
    L, info = torch.linalg.cholesky_ex(S)
    singular = _check(info, index, on_singular, "the leave-one-out subspace Hessian D - U^T H_i U")
    z = G @ U
    w = torch.cholesky_solve(z.to(torch.float64)[:, :, None], L)[:, :, 0].to(G.dtype)
    steps = w @ U.T + (G - z @ U.T) / s
    steps[singular] = float("nan")
    return steps


def lowrank_newton_step(solver, curvature, g, index):
    """U (D - sum_{i in S} M_i)^{-1} U^T g + (g - U U^T g) / s, shape (p,)."""
    U, s = solver.U, solver.damping
    M = _subspace_shares(solver, curvature, index).to(torch.float64).sum(0)
    L, info = torch.linalg.cholesky_ex(torch.diag(solver.diagonal.to(torch.float64)) - M)
    _check(info[None], [list(index)], "raise", "the leave-S-out subspace Hessian")
    z = U.T @ g
    w = torch.cholesky_solve(z.to(torch.float64)[:, None], L)[:, 0].to(g.dtype)
    return U @ w + (g - U @ z) / s
