"""Per-sample scores of :class:`rif.deep.TorchInfluence`: every training sample removed alone.

``scores`` (training x evaluation samples) and ``self_influence`` (each
training sample's own loss) go over the training set a block at a time
(:meth:`_PerSampleScores._all_loo_steps`), with the routes of
:meth:`_PerSampleScores.scores`: a test-side solve for linearised IF, the
Kronecker eigenbasis for K-FAC / EK-FAC (:mod:`rif.deep._kfac_scores`),
CountSketch projections kept for reuse (:mod:`rif.deep._projection`), and
parameter-space leave-one-out steps otherwise. Every effect is
(value after removal) - (value before). The mixin relies on the fitted state
of :class:`rif.deep.TorchInfluence` (``solver_``, ``_fm``, ``_X``, ``_y`` and
its helpers).
"""

import numpy as np
import torch
from torch.func import vmap

from ._data import batch_slices, check_positive_int
from ._gradients import gradient_blocks, losses
from ._kfac import KFACSolver
from ._kfac_scores import kfac_scores, kfac_self_influence
from ._params import check_bool, check_method, check_score_target
from ._progress import progress_bar
from ._projection import CountSketch
from ._threads import with_threads


class _PerSampleScores:
    """Mixin of :class:`rif.deep.TorchInfluence`: ``scores``, ``self_influence`` and their passes."""

    def _all_loo_steps(self, method):
        """Yield (slice, dtheta block) for every training sample removed alone, a block at a time.

        The blocks' gradients are computed and dropped block by block (memory
        O(p x block), never n x p).
        """
        n = self.n_samples_
        lev = np.full(n, np.nan)
        with progress_bar(n, f"leave-one-out steps ({method})", self.progress) as bar:
            for sl in batch_slices(n, self._block_size(method)):
                index = np.arange(sl.start, sl.stop)
                if method == "retrain":
                    steps = []
                    for i in index:
                        steps.append(self._retrain(np.array([i])))
                        bar.update(1)
                    yield sl, torch.stack(steps)
                    continue
                if method == "if":
                    step = self._loo_steps(index, "if")
                else:
                    step, lv = self._loo_steps(index, "rif", on_singular="nan")
                    lev[sl] = lv.cpu().numpy()
                bar.update(len(index))
                yield sl, step
        if method in ("rif", "newton") and self.curvature != "hessian":
            self._leverage = lev

    @with_threads
    def scores(self, X, y=None, target="loss", method="rif", linear=False, projection=None):
        """Effect of removing each training sample alone on each evaluation sample.

        Parameters
        ----------
        X, y : evaluation inputs and targets (same format as ``train_data``)
        target : {"loss", "test_loss", "proba"}, default "loss"
            Per-sample loss, or probability of the label (classification losses).
        method : {"if", "rif", "newton", "retrain"}, default "rif"
            For one removed sample "newton" and "rif" coincide; "retrain"
            refits once per training sample (slow; the ground truth).
        linear : bool, default False
            grad f_j(theta^)^T dtheta_i instead of f_j(theta^ + dtheta_i) - f_j(theta^).
            With ``method="if"`` this needs only one solve per evaluation sample;
            with the K-FAC / EK-FAC solvers, IF and RIF are both computed in
            the Kronecker eigenbasis from captured layer inputs and output
            gradients (see :mod:`rif.deep._kfac_scores`). Every route streams
            the training gradients in blocks (memory O(p x (block + m)) on top
            of the curvature), never an n x p matrix.
        projection : int or None, default None
            k: estimate the linearised scores as (P grad f_j)^T (P dtheta_i)
            with a seeded CountSketch P (k x p, E[P^T P] = I; see
            :mod:`rif.deep._projection`). The n projected steps (n x k) are
            computed on the first call for a (method, k) and kept, so later
            evaluation sets cost only their own gradients. Needs ``linear=True``.

        Returns
        -------
        ndarray of shape (n_train, n_eval)
            Entry (i, j) is f_j(theta_{-i}) - f_j(theta^): positive for the loss
            means training sample i helps evaluation sample j. Rows of
            samples with leverage numerically one are NaN for "rif"/"newton".
        """
        self._check_fitted()
        method = check_method(method)
        fn = self._per_sample_fn(check_score_target(target))
        linear = check_bool(linear, "linear")
        if projection is not None:
            projection = check_positive_int(projection, "projection")
            if not linear:
                raise ValueError("projection= estimates linearised scores: pass linear=True")
        X, y = self._eval_data(X, y)
        if projection is not None:
            return self._projected_scores(fn, X, y, method, projection)
        if linear and method in ("if", "rif", "newton") and isinstance(self.solver_, KFACSolver):
            kind = "if" if method == "if" else "rif"
            out, lev = kfac_scores(self.solver_, fn, X, y, kind, self.batch_size, self.progress)
            if lev is not None:
                self._leverage = lev
            return out
        if linear and method == "if":
            grads = self._target_gradients(fn, X, y)                # (m, p)
            V = self.solver_.solve(grads.T)                          # (p, m), one solve per column
            out = np.empty((self.n_samples_, X.shape[0]))
            for sl, G in gradient_blocks(self._fm, self._loss, self._X, self._y, self.batch_size):
                out[sl] = (G @ V).detach().cpu().double().numpy()
            return out
        out = np.empty((self.n_samples_, X.shape[0]))
        grads = self._target_gradients(fn, X, y) if linear else None
        before = None if linear else self._target_values(fn, X, y, self._fm.theta[None])[0]
        for sl, step in self._all_loo_steps(method):
            step = step.detach()
            if linear:
                block = step @ grads.T
            else:
                block = self._target_values(fn, X, y, self._fm.theta[None] + step) - before
            out[sl] = block.cpu().double().numpy()
        return out

    def _projected_scores(self, fn, X, y, method, k):
        """(P grad f_j)^T (P dtheta_i) with the kept projected steps of (method, k)."""
        cache = self.__dict__.setdefault("_projected", {})
        key = ("rif" if method == "newton" else method, k)
        if key not in cache:
            sketch = CountSketch(self.n_params_, k, seed=self.seed, device=self.device_, dtype=self.dtype)
            Phi = self._fm.theta.new_empty((self.n_samples_, k))
            for sl, step in self._all_loo_steps(key[0]):
                Phi[sl] = sketch(step.detach())
            cache[key] = (sketch, Phi)
        sketch, Phi = cache[key]
        F = sketch(self._target_gradients(fn, X, y))
        return (Phi @ F.T).detach().cpu().double().numpy()

    @with_threads
    def self_influence(self, method="rif", linear=False):
        """Change of each training sample's own loss when it alone is removed.

        ``method="if", linear=True`` is Koh and Liang's g_i^T H^{-1} g_i;
        "rif" uses the exact leave-one-out Newton step (H - C_i)^{-1} g_i.
        Large values flag samples the model fits only by memorising them.

        Returns
        -------
        ndarray of shape (n_train,)
            l_i(theta^ + dtheta_i) - l_i(theta^) (or g_i^T dtheta_i if ``linear``).
        """
        self._check_fitted()
        method = check_method(method)
        linear = check_bool(linear, "linear")
        if linear and method in ("if", "rif", "newton") and isinstance(self.solver_, KFACSolver):
            out, lev = kfac_self_influence(self.solver_, "if" if method == "if" else "rif", self.batch_size,
                                           self.progress)
            if lev is not None:
                self._leverage = lev
            return out
        fm, loss = self._fm, self._loss
        out = np.empty(self.n_samples_)

        def own(theta, x, yy):
            return loss.single(fm.forward_single(theta, x), yy)

        for sl, step in self._all_loo_steps(method):
            step = step.detach()
            if linear:
                block = (self._grads(np.arange(sl.start, sl.stop)) * step).sum(1)
            else:
                with torch.no_grad():
                    after = vmap(own)(fm.theta[None] + step, self._X[sl], self._y[sl])
                    block = after - losses(fm, loss, self._X[sl], self._y[sl])
            out[sl] = block.cpu().double().numpy()
        return out
