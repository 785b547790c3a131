"""Parameter changes from the damped curvature: IF, leave-one-out (RIF) and Newton steps.

With H = C + (mu + lambda) I the damped curvature (applied through a fitted
solver) and g_i the per-sample gradients:

``"if"``       dtheta_i = H^{-1} g_i
``"rif"``      dtheta_i = (H - C_i)^{-1} g_i          (the leave-one-out Newton step)
``"newton"``   dtheta_S = (H - sum_{i in S} C_i)^{-1} sum_{i in S} g_i

C_i is sample i's curvature term; for the GNH C_i = J_i^T A_i J_i has rank at
most K (the number of outputs), so by Woodbury

    (H - J_i^T A_i J_i)^{-1} g_i = u_i + V_i (I_K - A_i J_i V_i)^{-1} A_i J_i u_i,
    u_i = H^{-1} g_i,  V_i = H^{-1} J_i^T  (p x K),

a K x K solve per sample on top of K + 1 inverse-curvature products; the
eigenvalues of A_i J_i V_i (the network's generalised leverages) lie in
[0, 1) whenever lambda > 0. The same identity with J_i^T = g_i, A_i = 1
serves the empirical Fisher; the true Hessian has no low-rank per-sample
form: its "rif" and "newton" steps subtract the samples' own Hessians H_i,
densely or in a low-rank basis (see :mod:`rif.deep._hessian_loo`). For a set S the
Newton step stacks the removed B_i into one kK x kK system. With the K-FAC /
EK-FAC solvers the removed samples' share of the approximate curvature is
subtracted inside the approximation instead (see :mod:`rif.deep._kfac`), and
with the low-rank solver the B_i are projected onto its basis, B_i U U^T (see
:mod:`rif.deep._lowrank`); both keep every leave-one-out system positive definite.
"""

import numpy as np
import torch

from . import _hessian_loo
from ._errors import NearSingularLeverageError
from ._kfac import KFACSolver
from ._lowrank import LowRankSolver
from ._solvers import DenseSolver

#: 1 - (largest generalised leverage) below this makes a leave-one-out step numerically undefined.
LEVERAGE_TOL = {torch.float64: 1.5e-8, torch.float32: 3e-4}


def largest_eigenvalue(AM):
    """Largest (real part of an) eigenvalue of each K x K matrix A_i M_i, shape (k,).

    A_i M_i is similar to the symmetric A_i^(1/2) M_i A_i^(1/2), so its eigenvalues are real."""
    return torch.linalg.eigvals(AM).real.max(dim=1).values


def loo_steps(solver, curvature, G, index, method, dtype, on_singular="raise"):
    """Per-sample parameter changes for the training samples ``index``.

    Parameters
    ----------
    solver : fitted Solver (or KFACSolver)
    curvature : Curvature
    G : tensor of shape (k, p)
        The samples' gradients g_i.
    index : int array of length k
    method : {"if", "rif"}
    dtype : torch.dtype
        Working precision (sets the leverage tolerance).
    on_singular : {"raise", "nan"}
        Samples with leverage numerically one: raise NearSingularLeverageError,
        or return NaN rows.

    Returns
    -------
    "if": tensor (k, p); "rif": (steps (k, p), leverages (k,))
    """
    if method == "if":
        return solver.solve(G.T).T
    if curvature.kind == "hessian":
        lev = torch.full((G.shape[0],), float("nan"), dtype=G.dtype, device=G.device)
        return _hessian_steps(solver, curvature, G, index, on_singular), lev
    B, A = curvature.sample_factors(index)                     # (k, K, p), (k, K, K)
    if isinstance(solver, LowRankSolver):
        B = solver.project(B)
    if isinstance(solver, KFACSolver):
        terms = solver.sample_terms(B, A)
        return solver.solve_without(G, terms), solver.leverage(terms)
    k, K, p = B.shape
    sol = solver.solve(torch.cat([G, B.reshape(k * K, p)]).T).T
    u, V = sol[:k], sol[k:].reshape(k, K, p)
    M = torch.einsum("bkp,blp->bkl", B, V)                      # J_i H^{-1} J_i^T
    AM = A @ M
    lev = largest_eigenvalue(AM)
    t = torch.einsum("bkl,blp,bp->bk", A, B, u)
    eye = torch.eye(K, dtype=M.dtype, device=M.device)
    singular = 1.0 - lev < LEVERAGE_TOL[dtype]
    system = torch.where(singular[:, None, None], eye, eye - AM)
    c = torch.linalg.solve(system, t[:, :, None])[:, :, 0]
    step = u + torch.einsum("bk,bkp->bp", c, V)
    if singular.any():
        idx = np.asarray(index)[singular.cpu().numpy()]
        if on_singular == "raise":
            raise NearSingularLeverageError(
                f"training sample(s) {idx[:10].tolist()} have generalised leverage numerically 1 "
                "(H - C_i is singular along their outputs): their leave-one-out Newton step is "
                "undefined; increase the damping or use method='if'")
        step[singular] = float("nan")
    return step, lev


def _hessian_steps(solver, curvature, G, index, on_singular):
    if isinstance(solver, DenseSolver):
        return _hessian_loo.dense_loo_steps(solver, curvature, G, index, on_singular)
    if isinstance(solver, LowRankSolver):
        return _hessian_loo.lowrank_loo_steps(solver, curvature, G, index, on_singular)
    raise ValueError(
        f"rescaled influence and Newton steps with curvature='hessian' need solver='exact' or "
        f"'lowrank' (the samples' own Hessians are subtracted densely or in the low-rank basis), "
        f"not {solver.name!r}")


def leverages(solver, curvature, index):
    """Largest eigenvalue of A_i B_i H^{-1} B_i^T for the training samples ``index``, shape (k,)."""
    B, A = curvature.sample_factors(index)
    if isinstance(solver, LowRankSolver):
        B = solver.project(B)
    if isinstance(solver, KFACSolver):
        return solver.leverage(solver.sample_terms(B, A))
    k, K, p = B.shape
    V = solver.solve(B.reshape(k * K, p).T).T.reshape(k, K, p)
    return largest_eigenvalue(A @ torch.einsum("bkp,blp->bkl", B, V))


def newton_step(solver, curvature, g, index):
    """(H - sum_{i in S} C_i)^{-1} g for the set S = ``index`` and g = sum_{i in S} g_i, shape (p,)."""
    if curvature.kind == "hessian":
        if isinstance(solver, DenseSolver):
            return _hessian_loo.dense_newton_step(solver, curvature, g, index)
        if isinstance(solver, LowRankSolver):
            return _hessian_loo.lowrank_newton_step(solver, curvature, g, index)
        _hessian_steps(solver, curvature, g[None], index, "raise")      # raises the ValueError
    B, A = curvature.sample_factors(index)
    if isinstance(solver, LowRankSolver):
        B = solver.project(B)
    if isinstance(solver, KFACSolver):
        terms = {name: t.sum(0, keepdim=True) for name, t in solver.sample_terms(B, A).items()}
        return solver.solve_without(g[None], terms)[0]
    k, K, p = B.shape
    Bs = B.reshape(k * K, p)
    As = torch.block_diag(*A)
    sol = solver.solve(torch.cat([g[None], Bs]).T).T
    u, V = sol[0], sol[1:]
    M = Bs @ V.T
    eye = torch.eye(k * K, dtype=M.dtype, device=M.device)
    c = torch.linalg.solve(eye - As @ M, As @ (Bs @ u))
    return u + V.T @ c
