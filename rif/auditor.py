"""InfluenceAuditor: a scikit-learn meta-estimator with exact data attribution."""

import copy

import numpy as np
from sklearn.base import BaseEstimator, MetaEstimatorMixin, clone, is_classifier
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted, validate_data

from . import _estimators as est_
from ._attribution import AttributionMixin
from ._audit import AuditMixin
from ._adapters import check_supported, effective_weights, encode_target, read_glm, write_theta
from ._errors import UnsupportedEstimatorError
from ._problem import GLMProblem


def _row_index(X):
    """A DataFrame's row index as an array, else None."""
    index = getattr(X, "index", None) if hasattr(X, "columns") else None
    return None if index is None else np.asarray(index)


def _estimator_has(attr):
    def check(self):
        return hasattr(self.estimator_ if hasattr(self, "estimator_") else self.estimator, attr)
    return check


class InfluenceAuditor(AttributionMixin, AuditMixin, MetaEstimatorMixin, BaseEstimator):
    """Fit a GLM and say exactly how removing training samples would change it.

    The wrapped estimator is cloned and fitted; its objective is read as the
    sum form ``sum_i w_i l(y_i, x~_i^T theta) + (lambda/2) ||P theta||^2`` (see
    :mod:`rif._adapters` for how each estimator maps), the coefficients are
    polished to the exact optimum, and the Hessian, its factorisation and all
    generalised leverages are computed once.

    Every attribution method takes ``method``:

    ``"if"``       influence function, dtheta = H^{-1} sum_{i in S} g_i
    ``"rif"``      rescaled influence, sum_{i in S} H^{-1} g_i / (1 - h_i)
                   (the sum of exact leave-one-out Newton steps)
    ``"newton"``   one Newton step with the leave-S-out Hessian (exact for squared loss)
    ``"retrain"``  the exact refit on the remaining data, warm-started at theta^

    and every effect is (value after removal) - (value before).

    Parameters
    ----------
    estimator : estimator
        ``LogisticRegression`` (binary; L2 or no penalty), ``LinearRegression``,
        ``Ridge`` or ``PoissonRegressor``. Never modified.
    refine : bool, default True
        Polish the fitted coefficients to the exact optimum (Newton, to
        ``tol``) and write them back into ``estimator_``, so that predictions
        and attributions refer to the same, stationary theta^.
    tol : float, default 1e-10
        Relative Newton-step tolerance of the refinement and of exact refits.
    max_iter : int, default 100
        Newton iterations allowed per refit.
    n_jobs : int or None, default None
        Parallel exact refits (``method="retrain"`` over many sets) through
        joblib; any joblib backend applies, e.g. dask or ray for a cluster.
    progress : bool or None, default None
        Progress bar (tqdm) on long loops of refits: None shows it on a
        terminal for 20 or more refits, False never, True always.

    Attributes
    ----------
    estimator_ : estimator
        The fitted clone (coefficients refined if ``refine``).
    problem_ : rif.GLMProblem
        The sum-form problem with its cached Hessian factorisation.
    leverage_ : ndarray of shape (n_samples,)
        Generalised leverages h_i = w_i l''_i x~_i^T H^{-1} x~_i in [0, 1).
    rescale_factor_ : ndarray of shape (n_samples,)
        1 / (1 - h_i) >= 1 (inf where h_i is numerically one).
    n_features_in_ : int
    n_iter_ : int
        Newton iterations of the refinement (0 when ``refine=False``).
    row_labels_ : ndarray or None
        The row index of a pandas DataFrame ``X`` (None for arrays); audit
        results name rows by it.

    Examples
    --------
    >>> from sklearn.datasets import load_breast_cancer
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from rif import InfluenceAuditor
    >>> X, y = load_breast_cancer(return_X_y=True)
    >>> pipe = make_pipeline(StandardScaler(), InfluenceAuditor(LogisticRegression())).fit(X, y)
    >>> aud = pipe[-1]
    >>> dtheta = aud.params_change(remove=[0, 1, 2], method="rif")
    >>> dtheta.shape
    (31,)
    """

    def __init__(self, estimator, *, refine=True, tol=1e-10, max_iter=100, n_jobs=None, progress=None):
        self.estimator = estimator
        self.refine = refine
        self.tol = tol
        self.max_iter = max_iter
        self.n_jobs = n_jobs
        self.progress = progress

    # -- scikit-learn protocol --------------------------------------------------------
    def fit(self, X, y, sample_weight=None):
        """Fit a clone of ``estimator`` and build the second-order quantities.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), optional

        Returns
        -------
        self
        """
        row_labels = _row_index(X)
        X, y = validate_data(self, X, y, accept_sparse="csr", dtype=np.float64, y_numeric=False)
        estimator = clone(self.estimator)
        check_supported(estimator)
        if is_classifier(estimator):
            target_type = type_of_target(y, input_name="y", raise_unknown=True)
            if target_type != "binary":
                raise UnsupportedEstimatorError(
                    "Only binary classification is supported. The type of the target is "
                    f"{target_type}; multinomial models are not supported yet."
                )
        if sample_weight is None:
            estimator.fit(X, y)
        else:
            estimator.fit(X, y, sample_weight=sample_weight)
        spec = read_glm(estimator)
        self.problem_ = GLMProblem(
            X, encode_target(estimator, y), spec.family, spec.theta,
            sample_weight=effective_weights(estimator, y, sample_weight),
            penalty=spec.penalty, penalty_scaling=spec.penalty_scaling,
            fit_intercept=spec.fit_intercept, refine=self.refine, tol=self.tol,
            max_iter=self.max_iter,
        )
        self.estimator_ = write_theta(estimator, self.problem_.theta) if self.refine else estimator
        self.n_iter_ = self.problem_.refine_n_iter
        self.leverage_ = self.problem_.leverage
        self.rescale_factor_ = self.problem_.rescale_factor
        self.row_labels_ = row_labels
        return self

    @property
    def classes_(self):
        check_is_fitted(self)
        return self.estimator_.classes_

    @available_if(_estimator_has("predict"))
    def predict(self, X):
        """Predict with the fitted estimator."""
        check_is_fitted(self)
        return self.estimator_.predict(X)

    @available_if(_estimator_has("predict_proba"))
    def predict_proba(self, X):
        """Class probabilities from the fitted estimator."""
        check_is_fitted(self)
        return self.estimator_.predict_proba(X)

    @available_if(_estimator_has("predict_log_proba"))
    def predict_log_proba(self, X):
        """Log class probabilities from the fitted estimator."""
        check_is_fitted(self)
        return self.estimator_.predict_log_proba(X)

    @available_if(_estimator_has("decision_function"))
    def decision_function(self, X):
        """Decision values from the fitted estimator."""
        check_is_fitted(self)
        return self.estimator_.decision_function(X)

    def score(self, X, y, sample_weight=None):
        """The fitted estimator's default score (accuracy or R^2)."""
        check_is_fitted(self)
        return self.estimator_.score(X, y, sample_weight=sample_weight)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        inner = self.estimator.__sklearn_tags__()
        tags.estimator_type = inner.estimator_type
        tags.classifier_tags = inner.classifier_tags
        tags.regressor_tags = inner.regressor_tags
        tags.target_tags = inner.target_tags
        tags.input_tags.sparse = True
        tags.target_tags.multi_output = False
        if tags.classifier_tags is not None:
            tags.classifier_tags.multi_class = False
        return tags

    # -- attribution ---------------------------------------------------------------
    def _problem(self):
        check_is_fitted(self, "problem_")
        return self.problem_

    def _labels(self, y):
        return None if y is None else encode_target(self.estimator_, y)

    def unlearn(self, remove, method="newton"):
        """A copy of the fitted estimator with ``remove`` taken out of its training data.

        Parameters
        ----------
        remove : array-like of int or boolean mask
            One removal set.
        method : {"if", "rif", "newton", "retrain"}, default "newton"
            "retrain" gives exactly the estimator refitted on the remaining data.

        Returns
        -------
        estimator
            A deep copy of ``estimator_`` with coefficients theta^ + dtheta.
        """
        problem = self._problem()
        sets, batch = est_.removal_sets(problem, remove)
        if batch:
            raise ValueError("unlearn takes one removal set, not a batch")
        dtheta = self.params_change(sets[0], method)
        return write_theta(copy.deepcopy(self.estimator_), problem.theta + dtheta)

    def _row_labels(self):
        return getattr(self, "row_labels_", None)

    def repair(self, index, new_labels, method="newton"):
        """A copy of the fitted estimator as if trained with corrected labels.

        Parameters
        ----------
        index : array-like of int or boolean mask
            Training rows whose labels change.
        new_labels : array-like of shape (len(index),)
            Their corrected labels, as given to ``fit``.
        method : {"newton", "retrain"}, default "newton"
            "newton": one Newton step of the corrected objective from theta^
            (exact for squared loss); "retrain": the exact refit on the
            corrected labels, warm-started at theta^.

        Returns
        -------
        estimator
            A deep copy of ``estimator_`` with coefficients theta^ + dtheta.
        """
        dtheta = self.relabel_params_change(index, new_labels, method)
        return write_theta(copy.deepcopy(self.estimator_), self._problem().theta + dtheta)
