"""The attribution methods shared by InfluenceAuditor and GLMProblem.

A class using :class:`AttributionMixin` provides ``_problem()`` (the fitted
:class:`rif.GLMProblem`), ``_labels(y)`` (evaluation labels in the problem's
encoding) and the attributes ``tol``, ``max_iter``, ``n_jobs`` and ``progress``.
"""

import numpy as np

from . import _estimators as est_
from ._targets import eta_target, make_target


def _given_dtheta(dtheta, n_sets, batch, n_params):
    """Validate a caller's parameter changes against the removal sets: (n_sets, p) float64."""
    arr = np.asarray(dtheta)
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(f"dtheta must be a real numeric array, got dtype {arr.dtype}")
    want = (n_sets, n_params) if batch else (n_params,)
    if arr.shape != want:
        raise ValueError(f"dtheta must have shape {want} to match remove "
                         f"({'a batch of ' + str(n_sets) + ' sets' if batch else 'one set'}), got {arr.shape}")
    arr = arr.astype(np.float64).reshape(n_sets, n_params)
    if not np.all(np.isfinite(arr)):
        raise ValueError("dtheta must be finite")
    return arr


class AttributionMixin:
    """params_change, loo_params_change, effect, scores and self_influence."""

    def params_change(self, remove, method="rif"):
        """Change of the parameters when the samples ``remove`` are dropped.

        Parameters
        ----------
        remove : array-like of int, boolean mask, or list of these
            One removal set (indices into the training data, or a mask), or
            a batch of sets.
        method : {"if", "rif", "newton", "retrain"}, default "rif"

        Returns
        -------
        ndarray of shape (n_params,) or (n_sets, n_params)
            theta_{-S} - theta^, coefficients first and the intercept last.
        """
        problem = self._problem()
        method = est_.check_method(method)
        sets, batch = est_.removal_sets(problem, remove)
        out = self._batch(problem, sets, method)
        return out if batch else out[0]

    def _batch(self, problem, sets, method):
        return est_.params_change_batch(problem, sets, method, self.tol, self.max_iter, self.n_jobs, self.progress)

    def loo_params_change(self, method="rif"):
        """Parameter change for removing each training sample alone.

        The leave-one-out analogue of statsmodels' ``GLMInfluence.d_params``
        (which is theta^ - theta_{-i}, the opposite sign), with penalties and weights.

        Parameters
        ----------
        method : {"if", "rif", "newton", "retrain"}, default "rif"

        Returns
        -------
        ndarray of shape (n_train, n_params)
        """
        problem = self._problem()
        return est_.loo_params_change(problem, est_.check_method(method), self.tol, self.max_iter,
                                      self.n_jobs, self.progress)

    def effect(self, remove, target="loss", X=None, y=None, method="rif", linear=False,
               target_gradient=None, dtheta=None):
        """Change of a target f(theta) when the samples ``remove`` are dropped.

        Parameters
        ----------
        remove : array-like of int, boolean mask, or list of these
            One removal set or a batch of sets (see :meth:`params_change`).
        target : str or callable, default "loss"
            ``"params"`` (returns dtheta), ``"decision"`` (sum of x~^T theta over X),
            ``"proba"`` (sum over (X, y) of the probability of each label),
            ``"loss"`` (alias ``"test_loss"``; summed unweighted loss over (X, y)),
            ``"self_loss"`` (summed loss of the removed samples),
            ``"train_loss"`` (summed loss over all training samples), or a
            callable f(theta) of the parameter vector (intercept last).
        X, y : evaluation data for "decision", "proba" and "loss"
            Features as given to the wrapped estimator (after any pipeline steps).
        method : {"if", "rif", "newton", "retrain"}, default "rif"
        linear : bool, default False
            Return grad f(theta^)^T dtheta instead of f(theta^ + dtheta) - f(theta^).
        target_gradient : callable, optional
            Gradient of a callable target, needed when ``linear=True``.
        dtheta : array-like of shape (n_params,) or (n_sets, n_params), optional
            Parameter changes the caller already has for these removal sets
            (e.g. ``params_change(remove, method)``): the target is evaluated
            at theta^ + dtheta and no estimate or refit is run, so that one
            batch of refits can feed several targets. ``method`` is then
            ignored. The shape must match ``remove``: (n_params,) for one set,
            (n_sets, n_params) for a batch.

        Returns
        -------
        float or ndarray of shape (n_sets,)
        """
        if dtheta is None:
            method = est_.check_method(method)
        problem = self._problem()
        sets, batch = est_.removal_sets(problem, remove)
        if dtheta is not None:
            dthetas = _given_dtheta(dtheta, len(sets), batch, problem.n_params)
        if isinstance(target, str) and target == "params":
            if dtheta is not None:
                return dthetas.copy() if batch else dthetas[0].copy()
            return self.params_change(remove, method)
        if target == "test_loss":
            target = "loss"
        if dtheta is None:
            dthetas = self._batch(problem, sets, method)
        if target == "self_loss":
            out = np.array([make_target(problem, target, removed=index).changes(problem.theta, dtheta[None], linear)[0]
                            for index, dtheta in zip(sets, dthetas)])
        else:
            tgt = make_target(problem, target, X, self._labels(y), gradient=target_gradient)
            out = tgt.changes(problem.theta, dthetas, linear)
        return out if batch else float(out[0])

    def scores(self, X, y=None, target="loss", method="rif", linear=False):
        """Effect of removing each training sample alone on each evaluation sample.

        Parameters
        ----------
        X : array-like of shape (n_eval, n_features)
        y : array-like of shape (n_eval,), needed for "proba" and "loss"
        target : {"loss", "test_loss", "proba", "decision"}, default "loss"
        method : {"if", "rif", "newton", "retrain"}, default "rif"
            For a single removed sample "newton" and "rif" coincide.
            "retrain" refits once per training sample (slow; the ground truth).
        linear : bool, default False
            Linearised effects phi'(eta_j) x~_j^T dtheta_i instead of exact ones.

        Returns
        -------
        ndarray of shape (n_train, n_eval)
            Entry (i, j) is f_j(theta_{-i}) - f_j(theta^) as estimated by
            ``method``: positive for the loss means training sample i helps
            evaluation sample j. Rows of samples with leverage numerically one
            are NaN for "rif"/"newton" (see :class:`rif.LeverageWarning`).
        """
        problem = self._problem()
        method = est_.check_method(method)
        tgt = eta_target(problem, "loss" if target == "test_loss" else target, X, self._labels(y))
        eta = tgt.eta(problem.theta)
        d_eta = est_.per_sample_eta_change(problem, tgt.X, method, self.tol, self.max_iter,
                                           self.n_jobs, self.progress)
        value, slope = tgt.per_sample(eta)
        if linear:
            return d_eta * slope
        labels = None if tgt.y is None else np.broadcast_to(tgt.y, d_eta.shape).ravel()
        after = tgt.phi((eta + d_eta).ravel(), labels)[0].reshape(d_eta.shape)
        return after - value

    def self_influence(self, method="rif", linear=False):
        """Change of each training sample's own loss when it alone is removed.

        Koh and Liang's self-influence g_i^T H^{-1} g_i / w_i is the linearised
        ``method="if"`` case; "rif" divides it by 1 - h_i. Large values flag
        samples the model cannot explain without memorising them (e.g. wrong labels).

        Returns
        -------
        ndarray of shape (n_train,)
            l(y_i, eta_i + x~_i^T dtheta_i) - l(y_i, eta_i) (>= 0 for IF/RIF up to rounding).
        """
        problem = self._problem()
        method = est_.check_method(method)
        d_eta = est_.self_eta_change(problem, method, self.tol, self.max_iter, self.n_jobs, self.progress)
        if linear:
            return problem.d1 * d_eta
        return problem.family.loss(problem.eta + d_eta, problem.y) - problem.loss
