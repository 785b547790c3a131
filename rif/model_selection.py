"""Leave-one-out (and leave-one-group-out) cross-validation at the cost of one fit.

For each training sample i the leave-one-out prediction is the model's
prediction at x_i from the fit without i,

    eta_(i) = x~_i^T (theta^ + dtheta_i),   prediction = g^{-1}(eta_(i)),

with dtheta_i from one of rif's estimators:

* ``"newton"`` (or ``"rif"``): the leave-one-out Newton step from theta^ with
  the leave-one-out Hessian, x~_i^T dtheta_i = s_i q_i in closed form (one
  factorisation of H for all n; the approximate leave-one-out estimator, ALO).
  Exact for squared loss (ridge, OLS); for other GLMs the error is second
  order in the change.
* ``"if"``: the plain influence function (no 1 / (1 - h_i) rescaling).
* ``"retrain"``: exact refits without each sample.

With ``groups``, each group G is removed at once: "newton" is one Newton step
with the leave-G-out Hessian (a Woodbury solve of the group's size), "rif" the
sum of the group's one-sample steps, "retrain" the exact refit; the rows of G
are predicted from that fit.

Scores are computed on the pooled out-of-sample predictions (all n rows
together). For a score that is a mean over samples (log-loss, squared error,
accuracy, Poisson deviance) this is the mean of scikit-learn's per-fold scores
under ``LeaveOneOut()``; for ``LeaveOneGroupOut()`` it weights groups by their
size, as ``cross_val_predict`` followed by the metric does.
"""

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, clone
from sklearn.metrics import get_scorer
from sklearn.model_selection import ParameterGrid

from . import _design
from . import _estimators as est_

__all__ = ["loo_linear_predictor", "loo_predict", "loo_score", "LeaveOneOutSearchCV"]


def _group_sets(problem, groups):
    groups = np.asarray(groups)
    if groups.shape != (problem.n_samples,):
        raise ValueError(f"groups must have one label per training sample ({problem.n_samples}), "
                         f"got shape {groups.shape}")
    labels, codes = np.unique(groups, return_inverse=True)
    if labels.size < 2:
        raise ValueError("groups must have at least two distinct labels")
    return [np.flatnonzero(codes == k) for k in range(labels.size)]


def loo_linear_predictor(problem, method="newton", groups=None, tol=1e-10, max_iter=100, n_jobs=None,
                         progress=None):
    """Leave-one-out (or leave-one-group-out) linear predictors eta_(i), shape (n,).

    Parameters
    ----------
    problem : rif.GLMProblem
    method : {"newton", "rif", "if", "retrain"}, default "newton"
    groups : array-like of shape (n,), optional
        Group labels: remove one whole group at a time.
    """
    method = est_.check_method(method)
    if groups is None:
        return problem.eta + est_.self_eta_change(problem, method, tol, max_iter, n_jobs, progress)
    sets = _group_sets(problem, groups)
    sets = est_.removal_sets(problem, sets)[0]
    dthetas = est_.params_change_batch(problem, sets, method, tol, max_iter, n_jobs, progress)
    out = np.array(problem.eta)
    for index, dtheta in zip(sets, dthetas):
        out[index] += _design.rows(problem.X, index, problem.fit_intercept) @ dtheta
    return out


class _Frozen(BaseEstimator):
    """Stands in for a fitted model whose predictions on the training rows are given."""

    def __init__(self, mean, classes=None):
        self.mean, self.classes = mean, classes

    def fit(self, X, y=None):
        return self


class _FrozenRegressor(RegressorMixin, _Frozen):
    def predict(self, X):
        return self.mean


class _FrozenClassifier(ClassifierMixin, _Frozen):
    @property
    def classes_(self):
        return self.classes

    def predict_proba(self, X):
        return np.column_stack([1.0 - self.mean, self.mean])

    def decision_function(self, X):
        p = np.clip(self.mean, 1e-300, 1.0 - 1e-16)
        return np.log(p) - np.log1p(-p)

    def predict(self, X):
        return self.classes[(self.mean > 0.5).astype(int)]


def _frozen(source, problem, eta):
    mean = problem.family.mean(eta)
    if problem.family.name in ("binomial", "binomial_probit"):
        classes = getattr(getattr(source, "estimator_", None), "classes_", None)
        return _FrozenClassifier(mean, np.array([0.0, 1.0]) if classes is None else np.asarray(classes))
    return _FrozenRegressor(mean)


def _problem_of(source):
    return source._problem() if hasattr(source, "_problem") else source


def loo_predict(source, method="newton", groups=None):
    """Each training sample's prediction from the model fitted without it (or its group).

    Parameters
    ----------
    source : rif.InfluenceAuditor or rif.GLMProblem
    method : {"newton", "rif", "if", "retrain"}, default "newton"
    groups : array-like of shape (n,), optional

    Returns
    -------
    ndarray of shape (n,)
        The predicted mean g^{-1}(eta_(i)): the probability of the positive
        class for a classifier, the predicted response otherwise.
    """
    from ._attribution import _check_diagnostics

    _check_diagnostics(_problem_of(source), "loo_predict")
    problem = _problem_of(source)
    eta = loo_linear_predictor(problem, method, groups, source.tol, source.max_iter, source.n_jobs,
                               source.progress)
    return problem.family.mean(eta)


def default_scoring(problem):
    """neg_log_loss for classifiers, neg_mean_poisson_deviance for Poisson, else neg_mean_squared_error."""
    name = problem.family.name
    if name in ("binomial", "binomial_probit"):
        return "neg_log_loss"
    if name == "poisson":
        return "neg_mean_poisson_deviance"
    return "neg_mean_squared_error"


def loo_score(source, y=None, scoring=None, method="newton", groups=None):
    """Leave-one-out score of the fitted model with any scikit-learn scorer.

    Parameters
    ----------
    source : rif.InfluenceAuditor or rif.GLMProblem
    y : array-like of shape (n,), optional
        The training target in the user's labels (default: the problem's own
        encoding, 0/1 for classifiers).
    scoring : str or callable, optional
        A scikit-learn scorer name (``"neg_log_loss"``, ``"accuracy"``,
        ``"neg_mean_squared_error"``, ...) or scorer; default
        :func:`default_scoring`.
    method : {"newton", "rif", "if", "retrain"}, default "newton"
    groups : array-like of shape (n,), optional

    Returns
    -------
    float
        The scorer applied to the pooled out-of-sample predictions (greater is better).
    """
    from ._attribution import _check_diagnostics

    _check_diagnostics(_problem_of(source), "loo_score")
    problem = _problem_of(source)
    eta = loo_linear_predictor(problem, method, groups, source.tol, source.max_iter, source.n_jobs,
                               source.progress)
    scorer = get_scorer(default_scoring(problem) if scoring is None else scoring)
    frozen = _frozen(source, problem, eta)
    if y is None:
        labels = problem.y
        if isinstance(frozen, _FrozenClassifier):
            labels = frozen.classes[problem.y.astype(int)]
    else:
        labels = np.asarray(y)
    if labels.shape != (problem.n_samples,):
        raise ValueError(f"y must have one label per training sample ({problem.n_samples})")
    return float(scorer(frozen, np.zeros((problem.n_samples, 1)), labels))


class LeaveOneOutSearchCV(BaseEstimator):
    """Exhaustive search over a parameter grid, each candidate scored by leave-one-out through rif.

    Each candidate is fitted once on all data (wrapped in
    :class:`rif.InfluenceAuditor`) and its leave-one-out score comes from
    :func:`loo_score`: ``method="newton"`` costs one factorisation per
    candidate instead of n refits, ``method="retrain"`` refits exactly.

    Parameters
    ----------
    estimator : estimator supported by rif.InfluenceAuditor
    param_grid : dict or list of dicts
    scoring : str or callable, optional
        scikit-learn scorer; default :func:`default_scoring`.
    method : {"newton", "rif", "if", "retrain"}, default "newton"
    tol, max_iter, n_jobs
        As for :class:`rif.InfluenceAuditor`.

    Attributes
    ----------
    cv_results_ : dict
        ``params``, ``mean_test_score``, ``rank_test_score`` and ``param_<name>``.
    best_index_, best_params_, best_score_
    best_estimator_ : estimator
        The best candidate fitted on all data (coefficients refined).
    best_auditor_ : rif.InfluenceAuditor
        Its auditor, for attribution on the chosen model.
    """

    def __init__(self, estimator, param_grid, *, scoring=None, method="newton", tol=1e-10, max_iter=100,
                 n_jobs=None):
        self.estimator = estimator
        self.param_grid = param_grid
        self.scoring = scoring
        self.method = method
        self.tol = tol
        self.max_iter = max_iter
        self.n_jobs = n_jobs

    def fit(self, X, y, groups=None, sample_weight=None):
        """Score every candidate by leave-one-out (or leave-one-group-out) and keep the best."""
        from .auditor import InfluenceAuditor

        est_.check_method(self.method)
        candidates = list(ParameterGrid(self.param_grid))
        if not candidates:
            raise ValueError("param_grid has no candidates")
        scores, best, best_auditor = [], None, None
        for params in candidates:
            auditor = InfluenceAuditor(clone(self.estimator).set_params(**params), tol=self.tol,
                                       max_iter=self.max_iter, n_jobs=self.n_jobs, progress=False)
            auditor.fit(X, y, sample_weight=sample_weight)
            score = loo_score(auditor, y, self.scoring, self.method, groups)
            scores.append(score)
            if best is None or score > scores[best]:
                best, best_auditor = len(scores) - 1, auditor
        scores = np.asarray(scores)
        order = np.argsort(-scores, kind="stable")
        ranks = np.empty(len(scores), dtype=int)
        ranks[order] = np.arange(1, len(scores) + 1)
        self.cv_results_ = {"params": candidates, "mean_test_score": scores, "rank_test_score": ranks}
        for name in sorted({key for params in candidates for key in params}):
            self.cv_results_[f"param_{name}"] = np.ma.masked_array(
                [params.get(name) for params in candidates],
                mask=[name not in params for params in candidates], dtype=object)
        self.best_index_ = best
        self.best_params_ = candidates[best]
        self.best_score_ = float(scores[best])
        self.best_auditor_ = best_auditor
        self.best_estimator_ = best_auditor.estimator_
        return self

    def predict(self, X):
        return self.best_estimator_.predict(X)

    def predict_proba(self, X):
        return self.best_estimator_.predict_proba(X)

    def score(self, X, y):
        scorer = get_scorer(default_scoring(self.best_auditor_.problem_) if self.scoring is None else self.scoring)
        return float(scorer(self.best_estimator_, X, y))
