"""Inverse-curvature solvers: x = (C + lambda I)^{-1} b for a block of right-hand sides.

``DenseSolver`` ("exact")
    Materialises C (p x p), adds lambda I and takes a Cholesky factor in
    float64, whatever the working dtype. Exact up to rounding; O(p^3) once,
    O(p^2) per right-hand side. For models with up to a few thousand
    selected parameters.
``CGSolver`` ("cg")
    Conjugate gradient with matrix-free products C v (forward-mode Jacobian
    products for the GNH, forward-over-reverse for the Hessian), all columns
    of the block iterated together. Needs C + lambda I positive definite: a
    direction with v^T (C + lambda I) v <= 0 (an indefinite true Hessian)
    raises :class:`rif.SingularHessianError` instead of diverging.
``LiSSASolver`` ("lissa")
    The stochastic Neumann recursion of Agarwal et al. (2017),

        x_0 = b,  x_{t+1} = b + (I - (C_B + lambda I) / s) x_t,  x = x_T / s,

    with C_B = (n / |B|) sum_{i in B} C_i an unbiased mini-batch estimate of C.
    It converges iff the scale s exceeds the largest eigenvalue of every
    C_B + lambda I, at rate 1 - lambda_min / s per step, so the depth T needed
    grows like s / lambda_min. NaN/inf or growth beyond what a convergent
    recursion allows raises :class:`LiSSADivergenceError`; ``scale="auto"``
    takes 1.5 x a power-iteration estimate of lambda_max(C + lambda I).

The log
-------
``solver.log`` is a list of dicts, one appended by ``fit`` (``"stage": "fit"``)
and one by every ``solve`` (``"stage": "solve"``), for every solver, with the keys

``"solver"``       the solver's name;
``"stage"``        ``"fit"`` (factorisation, power iteration, K-FAC factors) or ``"solve"``;
``"n_rhs"``        right-hand sides of the solve (0 for ``"fit"``);
``"iterations"``   CG iterations, LiSSA steps (depth x repeats) or power iterations;
                   0 for the direct solves (exact, K-FAC, EK-FAC);
``"converged"``    False only when CG stopped at its iteration cap;
``"relative_residuals"``, ``"max_relative_residual"``
                   ||(C + lambda I) x - b|| / ||b|| per column and their maximum,
                   measured after the solve with exact full-data products
                   (by default for CG and LiSSA; ``report_residuals=True`` for all
                   solvers); None where not measured;
``"seconds"``      wall time of the stage;

plus ``"scale"`` for LiSSA. (The leave-one-out solves of K-FAC / EK-FAC, which
remove a sample's share from the approximation itself, are closed-form
divisions in the Kronecker eigenbasis and are not logged.) CG iterations and LiSSA steps show a progress bar
(``progress``, see :mod:`rif.deep._progress`).
"""

import math
import time
import warnings

import torch

from ._errors import LiSSADivergenceError, SingularHessianError, SolverConvergenceWarning
from ._progress import progress_bar
from ._threads import thread_count, with_threads

SOLVERS = ("exact", "cg", "lissa", "kfac", "ekfac", "lowrank")


class Solver:
    """Base class: damped curvature C + lambda I and a log of residuals."""

    name = "base"
    iterative = False

    def __init__(self, curvature, damping, report_residuals=None, progress=None):
        self.curvature = curvature
        self.damping = float(damping)
        self.report_residuals = self.iterative if report_residuals is None else bool(report_residuals)
        self.progress = progress
        self.log = []

    def fit(self):
        self._log_fit(time.perf_counter())
        return self

    def _log_fit(self, start, iterations=0, **extra):
        self.log.append({"solver": self.name, "stage": "fit", "n_rhs": 0, "iterations": iterations,
                         "converged": True, "relative_residuals": None, "max_relative_residual": None,
                         "seconds": time.perf_counter() - start, **extra})

    def _n_threads(self):
        return thread_count(self.curvature.n_params)

    def damped_matmat(self, V):
        return self.curvature.matmat(V) + self.damping * V

    def relative_residuals(self, B, X):
        """||(C + lambda I) x_j - b_j|| / ||b_j|| per column (0 where b_j = 0)."""
        R = self.damped_matmat(X) - B
        nb = torch.linalg.vector_norm(B, dim=0)
        nr = torch.linalg.vector_norm(R, dim=0)
        return torch.where(nb > 0, nr / torch.where(nb > 0, nb, 1), nr)

    @with_threads
    def solve(self, B):
        """(C + lambda I)^{-1} B for B of shape (p, r) or (p,)."""
        start = time.perf_counter()
        vec = B.ndim == 1
        B = B[:, None] if vec else B
        self._last = {}
        X = self._solve(B) if B.shape[1] else B.clone()
        record = {"solver": self.name, "stage": "solve", "n_rhs": B.shape[1], "iterations": 0,
                  "converged": True, "relative_residuals": None, "max_relative_residual": None,
                  **self._last}
        if self.report_residuals and B.shape[1]:
            res = self.relative_residuals(B, X).cpu().numpy()
            record["relative_residuals"] = res
            record["max_relative_residual"] = float(res.max())
        record["seconds"] = time.perf_counter() - start
        self.log.append(record)
        return X[:, 0] if vec else X


class DenseSolver(Solver):
    """Exact solve with a float64 Cholesky factor of C + lambda I."""

    name = "exact"

    def __init__(self, curvature, damping, dense=None, report_residuals=None, progress=None):
        super().__init__(curvature, damping, report_residuals, progress)
        self._dense = dense

    def fit(self):
        start = time.perf_counter()
        C = self.curvature.dense() if self._dense is None else self._dense
        H = C.to(torch.float64)
        H = H + self.damping * torch.eye(H.shape[0], dtype=H.dtype, device=H.device)
        chol, info = torch.linalg.cholesky_ex(H)
        if int(info) != 0:
            evals = torch.linalg.eigvalsh(H)
            raise SingularHessianError(
                f"the damped curvature C + lambda I is not positive definite (smallest eigenvalue "
                f"{float(evals[0]):.3e}, damping {self.damping:.3e}); the true Hessian can be "
                "indefinite away from a minimum: use curvature='gnh' or increase the damping")
        self.chol = chol
        self._dense = None          # the factor is all the solves need
        self._log_fit(start)
        return self

    def _solve(self, B):
        return torch.cholesky_solve(B.to(torch.float64), self.chol).to(B.dtype)


class CGSolver(Solver):
    """Block conjugate gradient on C + lambda I (each column its own CG run)."""

    name = "cg"
    iterative = True

    def __init__(self, curvature, damping, tol=1e-6, max_iter=None, report_residuals=None, progress=None):
        super().__init__(curvature, damping, report_residuals, progress)
        if not (tol > 0):
            raise ValueError(f"cg_tol must be positive, got {tol}")
        self.tol = float(tol)
        self.max_iter = max_iter

    def _solve(self, B):
        max_iter = self.max_iter or 2 * B.shape[0]
        X = torch.zeros_like(B)
        R = B.clone()
        P = R.clone()
        rs = (R * R).sum(0)
        target = self.tol ** 2 * rs
        active = rs > target
        it = 0
        with progress_bar(max_iter, f"CG ({B.shape[1]} right-hand sides)", self.progress, leave=False) as bar:
            while active.any() and it < max_iter:
                idx = torch.nonzero(active).reshape(-1)
                AP = self.damped_matmat(P[:, idx])
                pAp = (P[:, idx] * AP).sum(0)
                if torch.any(pAp <= 0) or not torch.isfinite(pAp).all():
                    raise SingularHessianError(
                        "conjugate gradient met a direction of non-positive curvature "
                        f"(min v^T (C + lambda I) v = {float(pAp.min()):.3e}): the damped curvature is "
                        "indefinite (typical of the true Hessian), where CG diverges; use "
                        "curvature='gnh' or increase the damping")
                alpha = rs[idx] / pAp
                X[:, idx] += alpha * P[:, idx]
                R[:, idx] -= alpha * AP
                rs_new = (R[:, idx] * R[:, idx]).sum(0)
                beta = rs_new / rs[idx]
                P[:, idx] = R[:, idx] + beta * P[:, idx]
                rs[idx] = rs_new
                active = rs > target
                it += 1
                bar.update(1)
                bar.set_postfix(unconverged=int(active.sum()), refresh=False)
        self._last = {"iterations": it, "converged": not bool(active.any())}
        if active.any():
            warnings.warn(
                f"CG stopped after {it} iterations with {int(active.sum())} of {B.shape[1]} "
                f"right-hand sides above the relative tolerance {self.tol:.1e}",
                SolverConvergenceWarning, stacklevel=4)
        return X


class LiSSASolver(Solver):
    """LiSSA: a truncated, scaled, stochastic Neumann series for (C + lambda I)^{-1}."""

    name = "lissa"
    iterative = True

    def __init__(self, curvature, damping, scale="auto", depth=1000, repeats=1, batch_size=None,
                 seed=0, growth_limit=10.0, power_iter=30, report_residuals=None, progress=None):
        super().__init__(curvature, damping, report_residuals, progress)
        if not (isinstance(scale, str) and scale == "auto"):
            scale = float(scale)
            if not (math.isfinite(scale) and scale > 0):
                raise ValueError(f"lissa_scale must be a positive number or 'auto', got {scale}")
        for name, value in (("lissa_depth", depth), ("lissa_repeats", repeats)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.scale, self.depth, self.repeats = scale, depth, repeats
        self.batch_size = batch_size
        self.seed, self.growth_limit, self.power_iter = seed, float(growth_limit), power_iter

    def fit(self):
        start = time.perf_counter()
        if self.scale == "auto":
            self.scale_ = 1.5 * self.largest_eigenvalue()
            self._log_fit(start, iterations=self.power_iter, scale=self.scale_)
        else:
            self.scale_ = self.scale
            self._log_fit(start, scale=self.scale_)
        return self

    def largest_eigenvalue(self):
        """Power-iteration estimate of lambda_max(C + lambda I)."""
        gen = torch.Generator(device="cpu").manual_seed(self.seed)
        v = torch.randn(self.curvature.n_params, generator=gen).to(self.curvature.fm.theta)
        v = v / torch.linalg.vector_norm(v)
        value = 0.0
        for _ in range(self.power_iter):
            w = self.damped_matmat(v)
            value = float(v @ w)
            norm = torch.linalg.vector_norm(w)
            if not torch.isfinite(norm) or norm == 0:
                break
            v = w / norm
        return value

    def _batch_product(self, V, gen):
        n = self.curvature.n_samples
        bs = self.batch_size
        if bs is None or bs >= n:
            return self.damped_matmat(V)
        index = torch.randint(0, n, (bs,), generator=gen).to(self.curvature.X.device)
        return (n / bs) * self.curvature.batch_matmat(V, index) + self.damping * V

    def _solve(self, B):
        gen = torch.Generator(device="cpu").manual_seed(self.seed)
        s = self.scale_
        nb = torch.linalg.vector_norm(B, dim=0)
        total = torch.zeros_like(B)
        steps = self.depth * self.repeats
        with progress_bar(steps, f"LiSSA ({B.shape[1]} right-hand sides)", self.progress, leave=False) as bar:
            for _ in range(self.repeats):
                X = B.clone()
                for t in range(self.depth):
                    bar.update(1)
                    X = B + X - self._batch_product(X, gen) / s
                    nx = torch.linalg.vector_norm(X, dim=0)
                    bad = ~torch.isfinite(nx) | (nx > self.growth_limit * (t + 2) * nb)
                    if bad.any():
                        j = int(torch.nonzero(bad)[0])
                        raise LiSSADivergenceError(
                            f"LiSSA diverged at step {t + 1} of {self.depth}: ||x_t|| = {float(nx[j]):.3e} "
                            f"for ||b|| = {float(nb[j]):.3e} (a convergent recursion keeps ||x_t|| <= "
                            f"(t+1) ||b||). The scale {s:.3e} is below the largest eigenvalue of the damped "
                            "(mini-batch) curvature; increase lissa_scale (or use 'auto'), the mini-batch "
                            "size, or the damping")
                total += X
        self._last = {"iterations": self.depth * self.repeats, "scale": s}
        return total / (self.repeats * s)
