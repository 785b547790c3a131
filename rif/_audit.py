"""The audit methods shared by InfluenceAuditor and GLMProblem: robustness and label repair.

A class using :class:`AuditMixin` provides what :class:`rif._attribution.AttributionMixin`
needs (``_problem()``, ``_labels(y)``); it may also provide ``feature_names_in_``
(coefficients by name) and ``_row_labels()`` (the training rows' labels, e.g.
a DataFrame's index, or None). The work is in :mod:`rif._robustness` and
:mod:`rif._repair`.
"""

import numpy as np


class AuditMixin:
    """robustness, relabel_params_change, suspect_labels and top_influential."""

    def _feature_names(self):
        names = getattr(self, "feature_names_in_", None)
        return None if names is None else [str(name) for name in names]

    def _row_labels(self):
        return None

    def robustness(self, target, *, goal="sign", threshold=None, method="greedy", groups=None,
                   se="model", alpha=0.05, max_fraction=0.1, per_step=1, rank=None):
        """The smallest set of training rows (or groups) whose removal flips ``target``.

        An approximate-maximum-influence-perturbation audit (Broderick, Giordano
        and Meager) whose proposed set is always refitted exactly; see
        :mod:`rif._robustness` for the targets, goals and methods.

        Parameters
        ----------
        target : tuple
            ``("coef", j)`` (j an index or a feature name, ``"intercept"`` for the
            intercept), ``("z", j)`` (theta_j over its standard error),
            ``("combination", c)`` (c^T theta) or ``("decision", x)`` (x~^T theta
            for one test row x, in the features the model was fitted on).
        goal : {"sign", "significance", "threshold"}, default "sign"
            Cross zero; lose significance at level ``alpha`` (|z| falls below
            z_{1-alpha/2}; a "coef" target is read as its z-statistic); or cross
            ``threshold``.
        threshold : float, optional
        method : {"greedy", "if", "rif"}, default "greedy"
            "greedy": remove the best-ranked unit at the current exact refit, refit,
            repeat until the refit flips, then prune; "if"/"rif": one sort by
            influence / rescaled influence, smallest prefix predicted to flip.
        groups : array-like of shape (n_train,), optional
            Group labels: whole groups are removed.
        se : {"model", "hc0"}, default "model"
            Model-based or sandwich (HC0) standard error for z-statistic targets.
        alpha : float, default 0.05
        max_fraction : float, default 0.1
            Largest fraction of the rows (groups) a set may contain.
        per_step : int, default 1
            Units removed per greedy step.
        rank : {"rif", "newton", "if"}, optional
            Greedy ranking: default "rif" for rows, "newton" for groups.

        Returns
        -------
        RobustnessResult
            ``indices`` (training rows removed), ``units``, ``verified`` (the
            exact refit crosses the threshold), ``refit_value``,
            ``predicted_value``, ``fraction``, ``summary()``; ``row_labels``
            holds the removed rows' labels when the training data had them.
        """
        from ._attribution import _check_diagnostics

        _check_diagnostics(self._problem(), "robustness")
        from ._robustness import robustness

        result = robustness(self._problem(), target, goal=goal, threshold=threshold, method=method,
                            groups=groups, se=se, alpha=alpha, max_fraction=max_fraction,
                            per_step=per_step, rank=rank, feature_names=self._feature_names())
        labels = self._row_labels()
        if labels is not None:
            result.row_labels = np.asarray(labels)[result.indices]
        return result

    def relabel_params_change(self, index, new_labels, method="newton"):
        """theta' - theta^ when the training labels of ``index`` become ``new_labels``.

        Labels change the gradient, not the Hessian, of a canonical GLM:
        "newton" is H^{-1} sum_{i in index} w_i (y'_i - y_i) x~_i, one Newton step
        of the corrected objective (exact for squared loss); "retrain" is the
        exact refit, warm-started at theta^ (see :mod:`rif._repair`).

        Parameters
        ----------
        index : array-like of int or boolean mask
        new_labels : array-like of shape (len(index),)
            Labels as given to ``fit``.
        method : {"newton", "retrain"}, default "newton"

        Returns
        -------
        ndarray of shape (n_params,)
        """
        from ._attribution import _check_diagnostics

        _check_diagnostics(self._problem(), "relabel_params_change")
        from ._repair import relabel_params_change

        index = np.asarray(index)
        labels = self._labels(np.atleast_1d(np.asarray(new_labels)))
        return relabel_params_change(self._problem(), index, labels, method)

    def suspect_labels(self, k=None, method="rif"):
        """Training rows ordered by self-influence, most suspicious (likely mislabelled) first.

        Parameters
        ----------
        k : int, optional
            Return only the first ``k``.
        method : {"if", "rif"}, default "rif"
            Rank by the influence-function or the rescaled self-influence
            (see :meth:`self_influence`).

        Returns
        -------
        ndarray of int
        """
        from ._repair import suspect_order

        if method not in ("if", "rif"):
            raise ValueError(f"method must be 'if' or 'rif', got {method!r}")
        if k is not None and (isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1):
            raise ValueError(f"k must be a positive int, got {k!r}")
        order = suspect_order(self.self_influence(method=method))
        return order if k is None else order[:k]

    def top_influential(self, X, y=None, k=10, target=None, method="rif"):
        """The ``k`` training rows that most move each evaluation sample's prediction.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_eval, n_features)
        y : array-like of shape (n_eval,), needed for ``target`` "proba" or "loss"
        k : int, default 10
        target : {"decision", "proba", "loss"}, optional
            Default "proba" (the probability of the label ``y``) for a classifier
            given ``y``, else "decision" (the linear predictor).
        method : {"if", "rif", "newton", "retrain"}, default "rif"

        Returns
        -------
        pandas.DataFrame
            One row per (evaluation sample, rank): ``eval`` (its label),
            ``rank`` (1 = largest |effect|), ``train`` (the training row's label),
            ``train_position`` (its 0-based position) and ``effect`` (value after
            removing that training row alone minus value before, see :meth:`scores`).
        """
        from ._frames import top_table

        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        if target is None:
            problem = self._problem()
            classifier = getattr(problem, "family_name", None) == "multinomial" or problem.family.name == "binomial"
            target = "proba" if (y is not None and classifier) else "decision"
        effects = self.scores(X, y, target=target, method=method)
        return top_table(self, effects, X, int(k))
