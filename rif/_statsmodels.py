"""Reading a fitted statsmodels model as a sum-form GLM (see :mod:`rif._problem`).

statsmodels maximises sum_i w_i loglik_i(theta) / scale, and the scale
(dispersion) does not move the optimum, so its fit is the minimiser of the
sum form

    L(theta) = sum_i w_i l(y_i, x_i^T theta + o_i) (+ (lambda/2) ||theta||^2 for ridge)

with l the family's half deviance, w_i the product of ``freq_weights``,
``var_weights`` and (grouped binomial) the number of trials, and o_i the
``offset`` plus ``log(exposure)``. The design is statsmodels' ``exog`` as it
stands: its constant column (if any) is an ordinary column, so rif's
``fit_intercept`` is False and theta is in statsmodels' order and names.

=================================  ======================  =========================
statsmodels model                  rif family              curvature l''
=================================  ======================  =========================
OLS, WLS, GLM Gaussian identity    gaussian                1
Logit, GLM Binomial logit          binomial (proportions)  mu (1 - mu) (canonical)
Probit, GLM Binomial probit        binomial_probit         observed information
Poisson, GLM Poisson log           poisson                 mu (canonical)
GLM Gamma log                      gamma_log               y / mu (observed)
GLM Gamma inverse_power            gamma_inverse           mu^2 (canonical)
GLM NegativeBinomial(alpha) log    negative_binomial       observed information
=================================  ======================  =========================

For a non-canonical link (probit, Gamma with log link, negative binomial) the
Hessian used is the exact Hessian of the objective (the observed
information), which differs from the expected (Fisher) information that
IRLS and statsmodels' ``GLMInfluence`` use; the leave-one-out changes are
then Newton steps on the true objective, and exact refits agree with them.

Ridge fits, ``fit_regularized(method="elastic_net", L1_wt=0, alpha=a)``, minimise
-loglik / n + (a/2) ||theta||^2 over the n rows, i.e. the sum form with
lambda = a n: rif's ``penalty_scaling="per_sample"`` with ``penalty=a``, so a
leave-k-out refit uses lambda = a (n - k), as refitting statsmodels on the
remaining rows does. statsmodels penalises every coefficient, the constant
included, and does not store ``a`` on its results: pass it as ``alpha``.
"""

import numpy as np

from . import _families
from ._errors import UnsupportedEstimatorError

SUPPORTED = ("GLM (Binomial logit/probit, Poisson log, Gaussian identity, Gamma log/inverse_power, "
             "NegativeBinomial log with fixed alpha), OLS, WLS, Logit, Probit, Poisson")


def _name(obj):
    return type(obj).__name__


def _unwrap(results):
    """The results object under statsmodels' wrapper, and its model."""
    inner = getattr(results, "_results", results)
    model = getattr(inner, "model", None)
    if model is None or not hasattr(model, "exog") or not hasattr(inner, "params"):
        raise TypeError(f"expected a fitted statsmodels results object, got {_name(results)}")
    return inner, model


def _glm_family(model):
    import statsmodels.genmod.families as fam
    from statsmodels.genmod.families import links

    family, link = model.family, model.family.link
    if isinstance(family, fam.Binomial):
        if type(link) is links.Logit:          # (statsmodels' CDF links subclass Logit)
            return _families.BinomialProportion()
        if type(link) is links.Probit:
            return _families.BinomialProbit()
    elif isinstance(family, fam.Poisson):
        if type(link) is links.Log:
            return _families.Poisson()
    elif isinstance(family, fam.Gaussian):
        if type(link) is links.Identity:
            return _families.Gaussian()
    elif isinstance(family, fam.Gamma):
        if type(link) is links.Log:
            return _families.GammaLog()
        if type(link) is links.InversePower:
            return _families.GammaInverse()
    elif isinstance(family, fam.NegativeBinomial):
        if type(link) is links.Log:
            return _families.NegativeBinomialLog(family.alpha)
    raise UnsupportedEstimatorError(
        f"GLM family {_name(family)} with link {_name(link)} is not supported; supported: {SUPPORTED}"
    )


def _offset(model):
    """offset + log(exposure) (statsmodels stores the exposure already logged), or None."""
    total = None
    for name in ("offset", "exposure"):
        value = getattr(model, name, None)
        if value is not None:
            value = np.asarray(value, dtype=np.float64).ravel()
            total = value if total is None else total + value
    return total


def read_statsmodels(results):
    """What a fitted statsmodels model says about its objective.

    Returns
    -------
    dict with keys X, y, family, theta, sample_weight, offset, feature_names,
    row_labels, regularized, model and results
    """
    from statsmodels.discrete import discrete_model as dm
    from statsmodels.genmod.generalized_linear_model import GLM
    from statsmodels.regression import linear_model as lm

    inner, model = _unwrap(results)
    X = np.asarray(model.exog, dtype=np.float64)
    y = np.asarray(model.endog, dtype=np.float64)
    n = X.shape[0]
    weights = np.ones(n)
    if isinstance(model, GLM):
        family = _glm_family(model)
        weights = weights * np.asarray(model.freq_weights, dtype=float) * np.asarray(model.var_weights, dtype=float)
        n_trials = np.asarray(getattr(model, "n_trials", 1.0), dtype=float)
        if isinstance(family, (_families.BinomialProportion, _families.BinomialProbit)):
            weights = weights * n_trials
    elif type(model) in (lm.OLS, lm.WLS):
        family = _families.Gaussian()
        weights = weights * np.asarray(model.weights, dtype=float)
    elif type(model) is dm.Logit:
        family = _families.BinomialProportion()
    elif type(model) is dm.Probit:
        family = _families.BinomialProbit()
    elif type(model) is dm.Poisson:
        family = _families.Poisson()
    else:
        raise UnsupportedEstimatorError(f"statsmodels model {_name(model)} is not supported; supported: {SUPPORTED}")
    if y.ndim != 1:
        raise UnsupportedEstimatorError(f"{_name(model)} with a {y.ndim}-d endog is not supported")
    names = list(getattr(model, "exog_names", None) or [f"x{j}" for j in range(X.shape[1])])
    row_labels = getattr(getattr(model, "data", None), "row_labels", None)
    return dict(X=X, y=y, family=family, theta=np.asarray(inner.params, dtype=np.float64).ravel(),
                sample_weight=weights, offset=_offset(model), feature_names=names,
                row_labels=None if row_labels is None else list(row_labels),
                regularized=_name(inner) == "RegularizedResults", model=model, results=inner)


def _ridge_penalty(spec, alpha):
    """The per-sample L2 strength of a ridge fit (see the module docstring)."""
    from statsmodels.genmod.generalized_linear_model import GLM

    if alpha is None:
        raise ValueError("the results come from fit_regularized, which does not record its penalty: "
                         "pass the alpha it was fitted with (and L1_wt=0 must have been used)")
    a = np.asarray(alpha, dtype=np.float64).ravel()
    if a.size not in (1, spec["X"].shape[1]) or not np.all(a == a[0]):
        raise UnsupportedEstimatorError("alpha must be one number (the same penalty on every coefficient); "
                                        "one alpha per coefficient is not supported")
    if not a[0] >= 0 or not np.isfinite(a[0]):
        raise ValueError(f"alpha must be non-negative and finite, got {alpha!r}")
    if not np.all(spec["sample_weight"] == 1.0):
        raise UnsupportedEstimatorError(
            "a ridge fit with weights: statsmodels divides the weighted log-likelihood by the number of rows, "
            "so removing a row does not shrink the penalty by its weight; only unit weights are supported"
        )
    model = spec["model"]
    if isinstance(model, GLM) and spec["family"].name not in ("binomial", "poisson", "negative_binomial",
                                                              "binomial_probit"):
        raise UnsupportedEstimatorError(
            f"GLM ridge with the {spec['family'].name} family profiles the scale out of its objective, "
            "which is then not a penalised sum; for Gaussian ridge use OLS(...).fit_regularized(L1_wt=0)"
        )
    return float(a[0])


def problem_from_statsmodels(results, alpha=None, *, refine=True, tol=1e-10, max_iter=100,
                             n_jobs=None, progress=None):
    """Build a :class:`rif.GLMProblem` from fitted statsmodels results.

    Parameters
    ----------
    results : statsmodels results
        From ``fit()`` of GLM, OLS, WLS, Logit, Probit or Poisson, or from
        ``fit_regularized(method="elastic_net", L1_wt=0, alpha=alpha)``.
    alpha : float, optional
        The ridge strength of a ``fit_regularized`` result (required there,
        refused otherwise).
    refine, tol, max_iter, n_jobs, progress
        As for :class:`rif.GLMProblem`.

    Returns
    -------
    rif.GLMProblem
        With ``fit_intercept=False`` (the constant is one of statsmodels'
        exog columns) and ``feature_names`` and ``row_labels`` attributes
        (the dispersion is :func:`rif._diagnostics.dispersion`).
    """
    from ._problem import GLMProblem

    spec = read_statsmodels(results)
    penalty, scaling = 0.0, "fixed"
    if spec["regularized"]:
        penalty, scaling = _ridge_penalty(spec, alpha), "per_sample"
    elif alpha is not None:
        raise ValueError("alpha is only for results of fit_regularized; these results are unpenalised")
    problem = GLMProblem(spec["X"], spec["y"], spec["family"], spec["theta"],
                         sample_weight=spec["sample_weight"], penalty=penalty, penalty_scaling=scaling,
                         fit_intercept=False, refine=refine, tol=tol, max_iter=max_iter, n_jobs=n_jobs,
                         progress=progress, offset=spec["offset"])
    problem.feature_names = spec["feature_names"]
    problem.row_labels = spec["row_labels"]
    problem.statsmodels_results = spec["results"]
    return problem
