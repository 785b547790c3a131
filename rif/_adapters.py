"""Reading a fitted scikit-learn estimator as a sum-form GLM (see rif._problem).

=====================  ========  ==========================  ============
estimator              family    lambda                      scaling
=====================  ========  ==========================  ============
LogisticRegression     binomial  1 / C (0 for C = inf)       fixed
LinearRegression       gaussian  0                           fixed
Ridge                  gaussian  alpha                       fixed
PoissonRegressor       poisson   alpha                       per_sample
LogisticRegressionCV   binomial  1 / C_ (the chosen C)       fixed
RidgeCV                gaussian  alpha_ (the chosen alpha)   fixed
=====================  ========  ==========================  ============

The ``*CV`` estimators are audited at the penalty their cross-validation chose,
which is then held fixed: a refit without some samples keeps that penalty rather
than running the search again.

Why: LogisticRegression minimises C sum w_i l_i + ||beta||^2 / 2, i.e.
(1/C)-penalised sum form; Ridge minimises sum w_i (y_i - eta_i)^2 + alpha ||beta||^2,
which is twice the sum form with lambda = alpha; PoissonRegressor minimises
(1 / (2 sum w)) sum w_i deviance_i + (alpha/2) ||beta||^2, which is (sum w)^-1
times the sum form with lambda = alpha * sum w, so its penalty shrinks with
the data. In every case the intercept is unpenalised.
"""

from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import (
    LinearRegression, LogisticRegression, LogisticRegressionCV, PoissonRegressor, Ridge, RidgeCV,
)
from sklearn.utils.validation import check_is_fitted

from ._errors import UnsupportedEstimatorError

SUPPORTED = ("LogisticRegression (binary or multinomial, L2 or no penalty), LinearRegression, Ridge, PoissonRegressor, "
             "LogisticRegressionCV and RidgeCV (at the penalty they choose)")


@dataclass(frozen=True)
class GLMSpec:
    """What a fitted estimator says about its objective."""

    family: str
    penalty: float
    penalty_scaling: str
    fit_intercept: bool
    theta: np.ndarray


def _logistic_penalty_kind(est):
    """'l2', 'none' or the unsupported penalty of a (CV) logistic regression, from its settings."""
    penalty = getattr(est, "penalty", "l2")
    l1_ratio = getattr(est, "l1_ratio", None)
    if isinstance(est, LogisticRegressionCV):
        ratios = getattr(est, "l1_ratios", None)
        l1_ratio = None if ratios in (None, "warn") else (max(ratios) if len(ratios) else None)
    if penalty == "deprecated":             # scikit-learn >= 1.8: l1_ratio and C say it all
        penalty = "elasticnet" if l1_ratio not in (None, 0, 0.0) else "l2"
    if penalty == "elasticnet" and l1_ratio in (None, 0, 0.0):
        penalty = "l2"
    if penalty in (None, "none"):
        return "none"
    return penalty


def _check_logistic_settings(est):
    """The settings of a logistic regression that rif cannot read, refused before fitting."""
    penalty = _logistic_penalty_kind(est)
    if penalty not in ("l2", "none"):
        raise UnsupportedEstimatorError(
            f"{type(est).__name__} with an L1 or elastic-net penalty (penalty={penalty!r}) has no "
            "Hessian; supported: L2 (l1_ratio=0) or none (C=np.inf)"
        )
    if est.solver == "liblinear":
        raise UnsupportedEstimatorError(
            f"{type(est).__name__}(solver='liblinear') penalises the intercept; use another solver"
        )
    if isinstance(est.class_weight, str):
        raise UnsupportedEstimatorError(
            "class_weight='balanced' makes the weights depend on the data, so removing samples "
            "changes them; pass a dict of class weights instead"
        )
    if isinstance(est, LogisticRegressionCV) and not est.refit:
        raise UnsupportedEstimatorError(
            "LogisticRegressionCV(refit=False) averages the folds' coefficients, which minimise no "
            "objective; use refit=True"
        )


def _logistic_lambda(est):
    if _logistic_penalty_kind(est) == "none":
        return 0.0
    C = float(np.ravel(est.C_)[0]) if isinstance(est, LogisticRegressionCV) else est.C
    return 0.0 if np.isinf(C) else 1.0 / C


def _check_single_output(est, name):
    coef = np.asarray(est.coef_)
    if coef.ndim == 2 and coef.shape[0] != 1:
        raise UnsupportedEstimatorError(f"{name} with a multi-output target is not supported")


def _theta(est):
    coef = np.asarray(est.coef_, dtype=float).ravel()
    if est.fit_intercept:
        return np.append(coef, np.asarray(est.intercept_, dtype=float).ravel()[0])
    return coef.copy()


def check_supported(est):
    """Raise UnsupportedEstimatorError before fitting an estimator rif cannot read."""
    if not isinstance(est, (LogisticRegression, LinearRegression, Ridge, PoissonRegressor, RidgeCV)):
        raise UnsupportedEstimatorError(f"{type(est).__name__} is not supported; supported: {SUPPORTED}")
    if isinstance(est, LogisticRegression):
        _check_logistic_settings(est)
    if getattr(est, "positive", False):
        raise UnsupportedEstimatorError(f"{type(est).__name__}(positive=True) is a constrained fit; not supported")
    if isinstance(est, RidgeCV) and getattr(est, "alpha_per_target", False):
        raise UnsupportedEstimatorError("RidgeCV(alpha_per_target=True) is not supported")


def check_target_before_fit(est, y):
    """Targets that no supported fit can use, refused before the estimator sees them."""
    if isinstance(est, PoissonRegressor):
        y = np.asarray(y, dtype=float)
        if np.any(y < 0):
            raise ValueError("y must be non-negative for PoissonRegressor")
        if est.fit_intercept and not np.any(y > 0):
            raise ValueError("y is 0 for every sample: the Poisson fit with an unpenalised intercept has "
                             "no optimum (the intercept goes to -infinity)")


def read_glm(est):
    """The :class:`GLMSpec` of a fitted, supported estimator.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        If ``est`` is not fitted.
    UnsupportedEstimatorError
        If it is not one of the supported estimators or uses a setting with
        no exact sum-form counterpart.
    """
    check_supported(est)
    check_is_fitted(est)
    if isinstance(est, LogisticRegression):
        if len(est.classes_) > 2:
            # softmax over K classes: theta = coef_.ravel() (K x d, class by class), then intercept_ (K)
            coef = np.asarray(est.coef_, dtype=float)
            if coef.shape[0] != len(est.classes_):
                raise UnsupportedEstimatorError(
                    f"{type(est).__name__} with {len(est.classes_)} classes but {coef.shape[0]} coefficient "
                    "rows is not the multinomial model; only the multinomial (softmax) fit is supported")
            theta = coef.ravel()
            if est.fit_intercept:
                theta = np.append(theta, np.asarray(est.intercept_, dtype=float).ravel())
            return GLMSpec("multinomial", _logistic_lambda(est), "fixed", bool(est.fit_intercept), theta)
        return GLMSpec("binomial", _logistic_lambda(est), "fixed", bool(est.fit_intercept), _theta(est))
    if isinstance(est, (LinearRegression, Ridge, RidgeCV)):
        name = type(est).__name__
        _check_single_output(est, name)
        alpha = np.asarray(est.alpha_ if isinstance(est, RidgeCV) else getattr(est, "alpha", 0.0),
                           dtype=float).ravel()
        if alpha.size != 1:
            raise UnsupportedEstimatorError(f"{name} with one alpha per target is not supported")
        return GLMSpec("gaussian", float(alpha[0]), "fixed", bool(est.fit_intercept), _theta(est))
    return GLMSpec("poisson", float(est.alpha), "per_sample", bool(est.fit_intercept), _theta(est))


def encode_target(est, y):
    """The numeric target of the sum form: 0/1 for classifiers, y otherwise."""
    if isinstance(est, LogisticRegression):
        y = np.asarray(y)
        unknown = ~np.isin(y, est.classes_)
        if unknown.any():
            raise ValueError(f"y has labels not seen in fit: {np.unique(y[unknown])[:5].tolist()}")
        if len(est.classes_) > 2:
            return np.searchsorted(est.classes_, y).astype(float)     # class indices 0, ..., K - 1
        return (y == est.classes_[1]).astype(float)
    return np.asarray(y, dtype=float)


def effective_weights(est, y, sample_weight):
    """Sample weights times any fixed class weights (dict ``class_weight``)."""
    n = len(y)
    w = np.ones(n) if sample_weight is None else np.array(sample_weight, dtype=float)
    class_weight = getattr(est, "class_weight", None)
    if isinstance(class_weight, dict):
        y = np.asarray(y)
        for label, weight in class_weight.items():
            w[y == label] *= weight
    return w


def write_theta(est, theta):
    """Set ``coef_`` and ``intercept_`` of a fitted estimator from theta (intercept last)."""
    shape = np.shape(est.coef_)
    d = int(np.prod(shape))
    est.coef_ = np.asarray(theta[:d], dtype=float).reshape(shape)
    if est.fit_intercept:
        if np.ndim(est.intercept_) == 0:
            est.intercept_ = float(theta[-1])
        elif np.size(est.intercept_) > 1:             # one intercept per class (multinomial)
            est.intercept_ = np.asarray(theta[d:d + np.size(est.intercept_)], dtype=float).reshape(
                np.shape(est.intercept_))
        else:
            est.intercept_ = np.full(np.shape(est.intercept_), float(theta[-1]))
    return est
