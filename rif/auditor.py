"""InfluenceAuditor: a scikit-learn meta-estimator with exact data attribution."""

import copy
import warnings

import numpy as np
from sklearn.base import BaseEstimator, MetaEstimatorMixin, clone, is_classifier
from sklearn.pipeline import Pipeline
from sklearn.utils import get_tags
from sklearn.utils._param_validation import HasMethods, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import (
    _check_sample_weight, check_array, check_consistent_length, check_is_fitted, column_or_1d, validate_data,
)

from . import _estimators as est_
from ._attribution import AttributionMixin, operations
from ._audit import AuditMixin
from ._design import is_dask
from ._adapters import check_supported, check_target_before_fit, effective_weights, encode_target, read_glm, write_theta
from ._errors import SeparationError, SingularHessianError, UnsupportedEstimatorError
from ._problem import GLMProblem
from ._validation import check_weight_range, setting_constraints


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
    estimator : estimator or Pipeline
        ``LogisticRegression`` (binary; L2 or no penalty), ``LinearRegression``,
        ``Ridge``, ``PoissonRegressor``, or ``LogisticRegressionCV`` / ``RidgeCV``
        (audited at the penalty they chose, which is then held fixed), or a
        :class:`~sklearn.pipeline.Pipeline` ending in one of these. A pipeline's
        preprocessing steps are fitted once on all the data and held fixed when
        samples are removed; every method then takes raw evaluation data, which
        the fitted steps transform. Never modified.
    refine : bool, default True
        Polish the fitted coefficients to the exact optimum (Newton, to
        ``tol``) and write them back into ``estimator_``, so that predictions
        and attributions refer to the same, stationary theta^.
    tol : float > 0, default 1e-10
        Relative Newton-step tolerance of the refinement and of exact refits.
    max_iter : int >= 1, default 100
        Newton iterations allowed per refit.
    n_jobs : int or None, default None
        Parallel exact refits (``method="retrain"`` over many sets) through
        joblib; any joblib backend applies, e.g. dask or ray for a cluster.
    progress : bool or None, default None
        Progress bar (tqdm) on long loops of refits: None shows it on a
        terminal for 20 or more refits, False never, True always.
    copy_X : bool, default True
        Keep a private copy of the training features, so that editing the
        caller's ``X`` in place after ``fit`` cannot change later answers. With
        False the auditor reads the caller's float64 array directly (no extra
        memory); it must then not be modified.
    route : {"auto", "primal", "dual"}, default "auto"
        How H^{-1} is applied: the p x p Hessian's factor, or the n x n
        kernel's (L2-penalised fits; see :class:`rif.GLMProblem`). "auto"
        takes the kernel from 1.5 times as many parameters as samples on (the
        scikit-learn estimators all use the fixed penalty convention).

    Attributes
    ----------
    estimator_ : estimator or Pipeline
        The fitted clone (coefficients refined if ``refine``).
    problem_ : rif.GLMProblem
        The sum-form problem with its cached Hessian factorisation.
    leverage_ : ndarray of shape (n_samples,)
        Generalised leverages h_i = w_i l''_i x~_i^T H^{-1} x~_i in [0, 1).
    rescale_factor_ : ndarray of shape (n_samples,)
        1 / (1 - h_i) >= 1 (inf where h_i is numerically one).
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Column names, when ``X`` was a DataFrame; evaluation data must then
        have the same columns in the same order.
    n_iter_ : int
        Newton iterations of the refinement (0 when ``refine=False``).
    row_labels_ : ndarray or None
        The row index of a pandas DataFrame ``X`` (None for arrays); audit
        results name rows by it.

    Notes
    -----
    An unpenalised fit whose Hessian is singular (for example fewer distinct
    samples than parameters) is fitted as the estimator fits it, with a
    :class:`UserWarning`; its attribution methods and ``leverage_`` then raise
    :class:`rif.SingularHessianError`, since no influence is defined.

    Examples
    --------
    >>> from sklearn.datasets import load_breast_cancer
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from rif import InfluenceAuditor
    >>> X, y = load_breast_cancer(return_X_y=True)
    >>> aud = InfluenceAuditor(make_pipeline(StandardScaler(), LogisticRegression())).fit(X, y)
    >>> dtheta = aud.params_change(remove=[0, 1, 2], method="rif")
    >>> dtheta.shape
    (31,)
    >>> aud.scores(X[:5], y[:5]).shape          # raw evaluation data: the scaler is applied
    (569, 5)
    """

    _parameter_constraints = {
        "estimator": [HasMethods(["fit"])],
        "refine": ["boolean"],
        **setting_constraints(),         # tol, max_iter, n_jobs, progress: as GLMProblem's
        "copy_X": ["boolean"],
        "route": [StrOptions({"auto", "primal", "dual"})],
    }

    def __init__(self, estimator, *, refine=True, tol=1e-10, max_iter=100, n_jobs=None, progress=None,
                 copy_X=True, route="auto"):
        self.estimator = estimator
        self.route = route
        self.refine = refine
        self.tol = tol
        self.max_iter = max_iter
        self.n_jobs = n_jobs
        self.progress = progress
        self.copy_X = copy_X

    # -- scikit-learn protocol --------------------------------------------------------
    def fit(self, X, y, sample_weight=None):
        """Fit a clone of ``estimator`` and build the second-order quantities.

        Every setting and the data are validated before anything is fitted.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features)
            Raw features when ``estimator`` is a pipeline, else numeric features.
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), optional
            Finite, non-negative weights (passed to the final estimator).

        Returns
        -------
        self
        """
        if isinstance(self.estimator, type):
            raise TypeError(f"estimator must be an estimator instance such as {self.estimator.__name__}(), "
                            f"not the class {self.estimator.__name__}")
        self._validate_params()
        if y is None:
            raise ValueError("InfluenceAuditor requires y to be passed, but the target y is None")
        if hasattr(X, "shape") and hasattr(y, "__len__") and len(X.shape) >= 1 and X.shape[0] != len(y):
            raise ValueError(f"y has {len(y)} samples but X has {X.shape[0]}")
        _check_finite_target(y)
        estimator = clone(self.estimator)
        preprocess, final = _split_pipeline(estimator)
        check_supported(final)
        self._train_index = _row_index(X)
        copy_X = self.copy_X
        if is_dask(X):
            # the wrapped estimator fits in memory, so a dask X is gathered (once) here; the gathered
            # array is already a copy (scikit-learn's check would also warn about dask's arrays)
            X, copy_X = np.asarray(X.compute()), False
        if preprocess is None:
            try:
                X, y = validate_data(self, X, y, accept_sparse="csr", dtype=np.float64, y_numeric=False,
                                     copy=copy_X)
            except ValueError as error:
                if "could not convert" not in str(error):
                    raise
                raise TypeError(f"X must be numeric ({error}); to encode text or categories, wrap a "
                                "pipeline: InfluenceAuditor(make_pipeline(OneHotEncoder(), ...))") from None
            Z = X
        else:
            validate_data(self, X, y, skip_check_array=True)      # names only; the steps check X
            y = column_or_1d(check_array(y, ensure_2d=False, dtype=None, input_name="y"), warn=True)
            check_consistent_length(X, y)
        n = len(y)
        if n < 2:
            raise ValueError(f"InfluenceAuditor needs at least 2 samples, got {n} sample")
        check_target_before_fit(final, y)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, np.empty((n, 0)), ensure_non_negative=True)
            check_weight_range(sample_weight, "sample_weight")
        if is_classifier(final):
            target_type = type_of_target(y, input_name="y", raise_unknown=True)
            if target_type not in ("binary", "multiclass"):
                raise UnsupportedEstimatorError(
                    "Only binary and multiclass classification are supported. The type of the target "
                    f"is {target_type}."
                )
        if preprocess is not None:
            Z = preprocess.fit(X, y).transform(X)
            Z = _check_transformed(Z, self.copy_X)
        if sample_weight is None:
            final.fit(Z, y)
        else:
            final.fit(Z, y, sample_weight=sample_weight)
        self.estimator_ = estimator
        self.row_labels_ = None if self._train_index is None else np.asarray(self._train_index)
        if preprocess is not None:
            self.n_features_in_ = getattr(estimator, "n_features_in_", getattr(self, "n_features_in_", None))
        spec = read_glm(final)
        try:
            self.problem_ = GLMProblem(
                Z, encode_target(final, y), spec.family, spec.theta,
                sample_weight=effective_weights(final, y, sample_weight),
                penalty=spec.penalty, penalty_scaling=spec.penalty_scaling,
                fit_intercept=spec.fit_intercept, refine=self.refine, tol=self.tol,
                max_iter=self.max_iter, copy_X=False, route=self.route,
            )
        except SingularHessianError as error:
            if spec.penalty > 0 or isinstance(error, SeparationError):
                raise
            # as the estimator fits it; attribution is undefined and says so when asked
            warnings.warn(f"{type(final).__name__} was fitted, but its Hessian is singular ({error}); "
                          "predictions work, attribution methods raise SingularHessianError", UserWarning)
            self._singular = error
            self.n_iter_ = 0
            return self
        self._singular = None
        self._feature_scale = _feature_scale(Z)
        self.problem_.rescale_factor          # leverages now, and LeverageWarning at fit if any is one
        if self.refine:
            write_theta(final, self.problem_.theta)
        self.n_iter_ = self.problem_.refine_n_iter
        return self

    @property
    def leverage_(self):
        """Generalised leverages h_i in [0, 1), shape (n_samples,)."""
        return self._problem().leverage

    @property
    def rescale_factor_(self):
        """1 / (1 - h_i) >= 1, inf where h_i is numerically one, shape (n_samples,)."""
        return self._problem().rescale_factor

    @property
    def classes_(self):
        check_is_fitted(self)
        return self.estimator_.classes_

    @available_if(_estimator_has("predict"))
    def predict(self, X):
        """Predict with the fitted estimator (raw features for a pipeline)."""
        check_is_fitted(self)
        return self.estimator_.predict(self._checked(X))

    @available_if(_estimator_has("predict_proba"))
    def predict_proba(self, X):
        """Class probabilities from the fitted estimator."""
        check_is_fitted(self)
        return self.estimator_.predict_proba(self._checked(X))

    @available_if(_estimator_has("predict_log_proba"))
    def predict_log_proba(self, X):
        """Log class probabilities from the fitted estimator."""
        check_is_fitted(self)
        return self.estimator_.predict_log_proba(self._checked(X))

    @available_if(_estimator_has("decision_function"))
    def decision_function(self, X):
        """Decision values from the fitted estimator."""
        check_is_fitted(self)
        return self.estimator_.decision_function(self._checked(X))

    def score(self, X, y, sample_weight=None):
        """The fitted estimator's default score (accuracy or R^2)."""
        check_is_fitted(self)
        return self.estimator_.score(self._checked(X), y, sample_weight=sample_weight)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        est = self.estimator
        if isinstance(est, type) or not hasattr(est, "get_params"):
            return tags            # an invalid estimator: fit says so; the tags must not fail first
        try:
            inner = get_tags(est)
        except Exception:          # noqa: BLE001 - a broken third-party estimator: fit reports it
            return tags
        tags.estimator_type = inner.estimator_type
        tags.classifier_tags = inner.classifier_tags
        tags.regressor_tags = inner.regressor_tags
        tags.target_tags = inner.target_tags
        if isinstance(est, Pipeline):
            tags.input_tags.sparse = inner.input_tags.sparse
            tags.input_tags.string = inner.input_tags.string
            tags.input_tags.categorical = inner.input_tags.categorical
        tags.target_tags.multi_output = False
        if tags.classifier_tags is not None:
            tags.classifier_tags.multi_class = True       # softmax for K >= 3 classes
        return tags

    # -- attribution ---------------------------------------------------------------
    def _problem(self):
        check_is_fitted(self, "estimator_")
        if self._singular is not None:
            raise SingularHessianError(f"no influence is defined for this fit: {self._singular}")
        return self.problem_

    def _final(self):
        return self.estimator_[-1] if isinstance(self.estimator_, Pipeline) else self.estimator_

    def _labels(self, y):
        return None if y is None else encode_target(self._final(), y)

    def _checked(self, X):
        """Evaluation data as the fitted estimator expects it; column names checked against fit."""
        if isinstance(self.estimator_, Pipeline):
            return X                                  # the pipeline checks its own input
        return validate_data(self, X, reset=False, accept_sparse="csr", dtype=None,
                             ensure_all_finite=False)

    def _features(self, X):
        """Evaluation features in the space of the final estimator: names checked, pipeline applied."""
        if X is None:
            return None
        if isinstance(self.estimator_, Pipeline):
            return self.estimator_[:-1].transform(X)
        try:
            Z = validate_data(self, X, reset=False, accept_sparse="csr", dtype=None, ensure_2d=True,
                              ensure_all_finite=False)
        except ValueError as error:
            if "could not convert" not in str(error):
                raise
            Z = np.asarray(X, dtype=object)
        if Z.dtype.kind not in "biuf":
            raise TypeError(f"X must be numeric, got dtype {Z.dtype}. If this auditor is the last step of "
                            "a Pipeline, pass pipe[:-1].transform(X), or wrap the whole pipeline: "
                            "InfluenceAuditor(make_pipeline(..., LogisticRegression())) takes raw data")
        _warn_if_untransformed(Z, getattr(self, "_feature_scale", None))
        return Z

    def _removal_sets(self, problem, remove):
        return operations(problem).removal_sets(problem, _positions(remove, getattr(self, "_train_index", None)))

    def unlearn(self, remove, method="newton"):
        """A copy of the fitted estimator with ``remove`` taken out of its training data.

        Parameters
        ----------
        remove : array-like of int, boolean mask, or row labels
            One removal set (labels of the training DataFrame's index are accepted).
        method : {"if", "rif", "newton", "retrain"}, default "newton"
            "retrain" gives exactly the estimator refitted on the remaining data
            (for a pipeline: with its preprocessing held fixed).

        Returns
        -------
        estimator or Pipeline
            A deep copy of ``estimator_`` whose (final) coefficients are theta^ + dtheta.
        """
        problem = self._problem()
        method = est_.check_method(method)
        sets, batch = self._removal_sets(problem, remove)
        if batch:
            raise ValueError("unlearn takes one removal set, not a batch")
        dtheta = self.params_change(sets[0], method)
        out = copy.deepcopy(self.estimator_)
        write_theta(out[-1] if isinstance(out, Pipeline) else out, problem.theta + dtheta)
        return out

    def _row_labels(self):
        return getattr(self, "row_labels_", None)

    def _feature_names(self):
        """Names of the final estimator's input features (a pipeline's output names), or None."""
        if isinstance(getattr(self, "estimator_", None), Pipeline):
            try:
                return [str(name) for name in self.estimator_[:-1].get_feature_names_out()]
            except (AttributeError, ValueError, TypeError):
                return None           # steps without output names: coefficients are numbered
        return super()._feature_names()

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
        estimator or Pipeline
            A deep copy of ``estimator_`` whose (final) coefficients are theta^ + dtheta.
        """
        dtheta = self.relabel_params_change(index, new_labels, method)
        out = copy.deepcopy(self.estimator_)
        write_theta(out[-1] if isinstance(out, Pipeline) else out, self._problem().theta + dtheta)
        return out

    @classmethod
    def from_statsmodels(cls, results, alpha=None, **kwargs):
        """Attribution for a fitted statsmodels model: returns a :class:`rif.GLMProblem`.

        statsmodels results carry no scikit-learn estimator to wrap, so this
        returns the fitted problem itself, which has the same attribution
        methods (``params_change``, ``effect``, ``scores``, ``self_influence``,
        ``loo_params_change``, ``influence_table``); see
        :meth:`rif.GLMProblem.from_statsmodels` for the parameters.
        """
        return GLMProblem.from_statsmodels(results, alpha, **kwargs)


#: evaluation data whose median |z-score| against the training features exceeds this are
#: almost surely in other units (e.g. raw data given to an auditor inside a Pipeline)
_UNTRANSFORMED_Z = 8.0


def _feature_scale(Z):
    """Per-feature mean and standard deviation of the training features (dense or CSR)."""
    import scipy.sparse as sp

    if sp.issparse(Z):
        mean = np.asarray(Z.mean(axis=0)).ravel()
        var = np.asarray(Z.multiply(Z).mean(axis=0)).ravel() - mean**2
    else:
        mean, var = Z.mean(axis=0), Z.var(axis=0)
    return mean, np.sqrt(np.maximum(var, 0.0))


def _warn_if_untransformed(Z, scale):
    """Warn when evaluation data look unlike the training features: the usual cause is raw data
    passed to an auditor that is the last step of a Pipeline and only saw transformed features."""
    import scipy.sparse as sp

    if scale is None or sp.issparse(Z) or Z.size == 0:
        return
    mean, sd = scale
    varying = sd > 0
    if not varying.any():
        return
    with np.errstate(invalid="ignore", over="ignore"):
        z = np.abs((np.asarray(Z, dtype=float)[:, varying] - mean[varying]) / sd[varying])
    typical = float(np.nanmedian(z))
    if typical > _UNTRANSFORMED_Z:
        warnings.warn(
            f"the evaluation data lie far from the training features (median |z-score| {typical:.0f}): "
            "if this auditor is the last step of a Pipeline, pass pipe[:-1].transform(X), or wrap the "
            "whole pipeline, InfluenceAuditor(make_pipeline(...)), which takes raw data",
            UserWarning, stacklevel=4,
        )


def _check_finite_target(y):
    """ValueError naming y if it holds NaN or infinity (numeric or object labels)."""
    values = np.asarray(y)
    if values.dtype.kind == "f":
        bad = ~np.isfinite(values)
    elif values.dtype.kind == "O":
        bad = np.array([v is None or (isinstance(v, (float, np.floating)) and not np.isfinite(v))
                        for v in values.ravel()])
    else:
        return
    if bad.any():
        raise ValueError(f"y contains NaN, None or infinity (e.g. at position {int(np.flatnonzero(bad)[0])})")


def _split_pipeline(estimator):
    """(preprocessing Pipeline or None, final estimator) of an estimator or pipeline."""
    if not isinstance(estimator, Pipeline):
        return None, estimator
    final = estimator.steps[-1][1]
    if final in (None, "passthrough") or isinstance(final, str):
        raise UnsupportedEstimatorError("the pipeline must end in a supported estimator, not 'passthrough'")
    if len(estimator.steps) == 1:
        return None, final
    return estimator[:-1], final


def _check_transformed(Z, copy_X):
    """The preprocessing's output as float64 (dense or CSR), or an error saying what went wrong."""
    import scipy.sparse as sp

    if sp.issparse(Z):
        return sp.csr_matrix(Z, dtype=np.float64, copy=copy_X)
    Z = np.asarray(Z)
    if Z.dtype.kind not in "biuf":
        raise TypeError(f"the pipeline's preprocessing returned dtype {Z.dtype}; the final estimator "
                        "needs numeric features")
    return np.array(Z, dtype=np.float64, copy=copy_X)


def _row_index(X):
    """The row labels of a DataFrame X (None otherwise)."""
    index = getattr(X, "index", None)
    if index is None or not hasattr(X, "columns"):
        return None
    return index


def _positions(remove, index):
    """Translate row labels of the training DataFrame's index into positions.

    Integers and boolean masks are positions already (as with ``.iloc``); any other
    values are looked up in ``index`` (as with ``.loc``). A list whose items are
    lists or arrays is a batch.
    """
    if index is None:
        return remove

    def convert(item):
        arr = np.asarray(item)
        if arr.size == 0 or arr.dtype.kind in "biu":
            return item
        if not index.is_unique:
            raise ValueError("remove: row labels need a training index without duplicates; pass positions")
        flat = arr.ravel()
        pos = index.get_indexer(flat)
        if (pos < 0).any():
            raise ValueError(f"remove: row labels not in the training data's index: {flat[pos < 0][:5].tolist()}")
        return pos.reshape(arr.shape)

    if isinstance(remove, (list, tuple)) and remove and all(np.ndim(item) == 1 for item in remove):
        return [convert(item) for item in remove]
    return convert(remove)
