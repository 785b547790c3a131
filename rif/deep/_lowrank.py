"""Low-rank curvature: the top eigenpairs of C by randomised subspace iteration, for solves and RIF.

Fit. With k = ``rank`` and r = min(p, k + OVERSAMPLE) columns, randomised
subspace iteration (Halko, Martinsson & Tropp 2011, Algorithm 4.4) builds an
orthonormal basis Q (p x r) of the dominant range of C,

    Y = C Omega,   then POWER_ITER times:  Q = orth(Y),  Y = C Q,   finally Q = orth(Y),

and the Rayleigh-Ritz step T = Q^T C Q = W diag(e) W^T gives Ritz vectors
U = Q W and Ritz values e, of which the k largest in magnitude are kept (for
a positive semi-definite C, the k largest). Every step is one product of C
with a block of r columns (one pass over the training data), so the fit costs
POWER_ITER + 2 passes. With s = mu + lambda the damped approximation is

    H~ = U diag(e') U^T + s I,
    H~^{-1} b = U [(U^T b) / (e' + s)] + (b - U U^T b) / s,

with e'_j = e_j wherever e_j + s > 0, and e'_j = 0 (the positive part) along
the Ritz directions where the damped curvature is not positive, which only an
indefinite true Hessian has (their number is ``n_clipped``). With k = p, Q
spans R^p and H~ = C + s I exactly (up to rounding) whenever C + s I is
positive definite.

Leave one out, consistently with the approximation. Rayleigh-Ritz makes
U^T C U = diag(e) exactly, so sum_i U^T C_i U = diag(e): sample i's share of
the subspace curvature is M_i = U^T C_i U, and

    H~_{-i} = H~ - U M_i U^T,
    H~_{-i}^{-1} g = U (D - M_i)^{-1} U^T g + (g - U U^T g) / s,   D = diag(e' + s).

For the GNH and the empirical Fisher, U M_i U^T = B'_i^T A_i B'_i with the
projected factor B'_i = B_i U U^T, so the K x K Woodbury identity of
:mod:`rif.deep._steps` applies unchanged with B'_i in place of B_i, and the
leverages (eigenvalues of A_i B'_i H~^{-1} B'_i^T) lie in [0, 1) since
sum_j M_j = diag(e) <= D - s I. (Pairing the exact B_i with H~ instead would
not be consistent: its leverages can exceed one.) For the true Hessian, M_i
comes from k per-sample Hessian-vector products (see :mod:`rif.deep._hessian_loo`).
"""

import time

import torch

from ._solvers import Solver

#: Extra columns of the randomised range finder beyond ``rank``.
OVERSAMPLE = 10
#: Power (subspace) iterations of the range finder.
POWER_ITER = 2


def _orth(Y):
    """Orthonormal basis of the columns of Y (reduced QR, computed in float64)."""
    Q, _ = torch.linalg.qr(Y.to(torch.float64))
    return Q


class LowRankSolver(Solver):
    """(H~)^{-1} for H~ = U diag(e') U^T + s I, the top-``rank`` eigenpairs of C plus the shift s.

    Parameters
    ----------
    curvature : Curvature
    damping : float
        s = mu + lambda > 0, the shift of the identity.
    rank : int
        k, the number of eigenpairs kept (capped at p).
    seed : int
        Seed of the random start block Omega.

    Attributes (after ``fit``)
    --------------------------
    U : tensor (p, k), working dtype
        Orthonormal Ritz vectors.
    eigenvalues : tensor (k,), float64
        Ritz values e, in decreasing order (as found, before any clipping).
    n_clipped : int
        Ritz values with e_j + s <= 0, replaced by 0.
    n_passes : int
        Products of C with a block (passes over the data) the fit took.
    """

    name = "lowrank"

    def __init__(self, curvature, damping, rank=100, seed=0, report_residuals=None, progress=None):
        super().__init__(curvature, damping, report_residuals, progress)
        if not self.damping > 0:
            raise ValueError(f"solver='lowrank' needs a positive damping + weight_decay, got {self.damping}")
        self.rank = min(int(rank), curvature.n_params)
        self.seed = int(seed)

    def fit(self):
        start = time.perf_counter()
        cur = self.curvature
        p, dt = cur.n_params, cur.fm.dtype
        r = min(p, self.rank + OVERSAMPLE)
        gen = torch.Generator(device="cpu").manual_seed(self.seed)
        omega = torch.randn(p, r, generator=gen, dtype=torch.float64).to(device=cur.fm.device, dtype=dt)
        Y = cur.matmat(omega)
        passes = 1
        for _ in range(POWER_ITER):
            Y = cur.matmat(_orth(Y).to(dt))
            passes += 1
        Q = _orth(Y)
        CQ = cur.matmat(Q.to(dt)).to(torch.float64)
        passes += 1
        T = Q.T @ CQ
        e, W = torch.linalg.eigh(0.5 * (T + T.T))
        keep = torch.argsort(e.abs(), descending=True)[:self.rank]
        order = keep[torch.argsort(e[keep], descending=True)]
        self.eigenvalues = e[order]
        self.U = (Q @ W[:, order]).to(dt)
        d = self.eigenvalues + self.damping
        clipped = d <= 0
        self.n_clipped = int(clipped.sum())
        self._d = torch.where(clipped, torch.full_like(d, self.damping), d).to(dt)
        self.n_passes = passes
        self._log_fit(start, iterations=passes, rank=self.rank)
        return self

    @property
    def diagonal(self):
        """D = e' + s, shape (k,), in the working dtype."""
        return self._d

    def _solve(self, B):
        Z = self.U.T @ B
        return self.U @ (Z / self._d[:, None]) + (B - self.U @ Z) / self.damping

    def approx_matmat(self, V):
        """H~ V: the damped approximation itself (for checks)."""
        Z = self.U.T @ V
        return self.U @ (Z * (self._d - self.damping)[:, None]) + self.damping * V

    def project(self, B):
        """B_i U U^T for per-sample factors B of shape (k, K, p): the share of sample i in H~."""
        return (B @ self.U) @ self.U.T
