"""Classical regression diagnostics from one factorisation: the influence table,
covariances, and the jackknife.

Conventions (sum form of :mod:`rif._problem`; mu_i = g^{-1}(eta_i), V the
family's variance function, w_i the sample weights, H the Hessian of the
objective, penalty included, and h_i the generalised leverages):

    Pearson residual      r_i = sqrt(w_i) (y_i - mu_i) / sqrt(V(mu_i))
    deviance residual     d_i = sign(y_i - mu_i) sqrt(2 w_i (l_i - l_i^sat))
    residual df           nu = n - sum_i h_i      (= n - p without a penalty)
    dispersion            phi = sum_i r_i^2 / nu  (Gaussian, Gamma; 1 for the
                          binomial, Poisson and negative binomial families)
    deleted dispersion    phi_(i) = (sum_j d_j^2 - d_i^2 / (1 - h_i)) / (nu - 1)
                          (phi_(i) = 1 where phi is fixed; for the Gaussian
                          family it is exactly s_(i)^2, the variance estimate
                          without sample i)
    covariance            Cov = phi H^{-1} (model-based);
                          H^{-1} (sum_i g~_i g~_i^T) H^{-1} (sandwich, HC0)
    one-step change       dtheta_i = (H - c_i x~_i x~_i^T)^{-1} g~_i
                          (the leave-one-out Newton step = rif's "rif" method,
                          H^{-1} g_i / (1 - h_i) without per-sample penalties;
                          exact for least squares)

and, with p the number of parameters,

    standard_resid   r_i / sqrt(phi (1 - h_i))               (internally studentized)
    student_resid    sign(d_i) sqrt(d_i^2 + h_i r_i^2 / (1 - h_i)) / sqrt(phi_(i))
                                                              (externally studentized)
    cooks_d          dtheta_i^T H dtheta_i / (p phi)
    dffits_internal  standard_resid_i sqrt(h_i / (1 - h_i))
    dffits           student_resid_i sqrt(h_i / (1 - h_i))
    dfb_j            -dtheta_ij / sqrt(phi* (H^{-1})_jj),  phi* = phi_(i) for the
                     Gaussian family, phi otherwise
    cov_ratio        (phi_(i) / phi)^p / (1 - h_i)            (det Cov_(i) / det Cov)

For an unpenalised least-squares fit these are the textbook quantities
(Belsley, Kuh and Welsch; R's ``influence.measures``, statsmodels'
``OLSInfluence``), exactly: the one-step change is the exact deletion change
and sum_j d_j^2 - d_i^2 / (1 - h_i) is the residual sum of squares without
sample i. For GLMs with the canonical link, cooks_d equals R's
``cooks.distance`` and statsmodels' ``GLMInfluence.cooks_distance``
(r_i^2 h_i / (p phi (1 - h_i)^2)), standard_resid R's ``rstandard(type="pearson")``
and student_resid R's ``rstudent``. DFBETAS use the leave-one-out Newton step
itself, not R's ``dfbeta`` for a ``glm`` (a weighted least-squares deletion
formula in the working residuals) nor statsmodels' ``GLMInfluence.d_params``
(computed from the unweighted design); the sign is R's: theta^ - theta_(i).

For penalised fits every formula keeps its form with the penalised Hessian:
h_i are the leverages of the penalised fit (their sum is its effective
degrees of freedom), nu = n - sum h_i, and the one-step change is the
leave-one-out Newton step of the penalised objective. For non-canonical links
(probit, Gamma with log link, negative binomial) H is the observed
information, so leverages, standard errors and Cook's distances are observed-
information quantities; statsmodels' IRLS standard errors use the expected
information instead and differ by O(residual) terms.

Everything is closed form: one pass over the rows for the residuals and
leverages and one for the one-step changes, O(n p) memory, no n x n matrix and
no refit (``exact=True`` adds exact leave-one-out refits on request).
"""

import numpy as np
from scipy.special import xlogy

#: families whose dispersion is fixed at one
_FIXED_DISPERSION = ("binomial", "binomial_probit", "poisson", "negative_binomial")


def variance(problem, mu):
    """The family's variance function V(mu)."""
    name = problem.family.name
    if name in ("binomial", "binomial_probit"):
        return mu * (1.0 - mu)
    if name == "gaussian":
        return np.ones_like(mu)
    if name == "poisson":
        return mu
    if name in ("gamma_log", "gamma_inverse"):
        return mu**2
    if name == "negative_binomial":
        return mu + problem.family.alpha * mu**2
    raise ValueError(f"no variance function for the {name} family")


def fitted_mean(problem):
    """mu_i = g^{-1}(eta_i) at theta^ (offset included)."""
    return problem.family.mean(problem.eta)


def pearson_residuals(problem):
    """r_i = sqrt(w_i) (y_i - mu_i) / sqrt(V(mu_i))."""
    mu = fitted_mean(problem)
    return np.sqrt(problem.sample_weight) * (problem.y - mu) / np.sqrt(variance(problem, mu))


def deviance_residuals(problem):
    """d_i = sign(y_i - mu_i) sqrt(2 w_i (l_i - l_i^sat)), l the half deviance."""
    y, loss = problem.y, problem.loss
    if problem.family.name in ("binomial", "binomial_probit"):
        # l(y, eta) at the saturated fit is -(y log y + (1 - y) log(1 - y)) for a proportion y
        loss = loss + xlogy(y, y) + xlogy(1.0 - y, 1.0 - y)
    mu = fitted_mean(problem)
    return np.sign(y - mu) * np.sqrt(2.0 * problem.sample_weight * np.maximum(loss, 0.0))


def residual_df(problem):
    """nu = n - sum_i h_i: n - p unpenalised, n minus the effective degrees of freedom otherwise."""
    if problem.penalty == 0:
        return float(problem.n_samples - problem.n_params)
    return float(problem.n_samples - problem.leverage.sum())


def dispersion(problem):
    """phi: Pearson chi^2 / nu for the Gaussian and Gamma families, 1 for the others."""
    if problem.family.name in _FIXED_DISPERSION:
        return 1.0
    nu = residual_df(problem)
    if not nu > 0:
        raise ValueError(f"the dispersion needs positive residual degrees of freedom, got {nu:g}")
    return float(np.sum(pearson_residuals(problem) ** 2) / nu)


def deleted_dispersion(problem):
    """phi_(i) = (sum_j d_j^2 - d_i^2 / (1 - h_i)) / (nu - 1), or ones where phi is fixed."""
    if problem.family.name in _FIXED_DISPERSION:
        return np.ones(problem.n_samples)
    d2 = deviance_residuals(problem) ** 2
    nu = residual_df(problem)
    if not nu > 1:
        raise ValueError(f"deleted dispersions need more than one residual degree of freedom, got {nu:g}")
    return (d2.sum() - d2 / (1.0 - problem.leverage)) / (nu - 1.0)


def cov_params(problem, cov_type="nonrobust"):
    """Covariance of theta^: phi H^{-1} ("nonrobust") or the sandwich ("HC0").

    HC0 is H^{-1} (sum_i g~_i g~_i^T) H^{-1} with g~_i the per-sample gradients
    (statsmodels' ``cov_type="HC0"``; no dispersion factor, it cancels).
    """
    inverse = problem.base_factor.inverse
    if cov_type == "nonrobust":
        return dispersion(problem) * inverse
    if cov_type == "HC0":
        from . import _design

        penalty_part = problem.penalty_diag * problem.theta
        meat = np.zeros((problem.n_params,) * 2)
        for sl, block in _design.row_blocks(problem.X, problem.fit_intercept):
            g = problem.residual[sl, None] * block + problem.sample_penalty[sl, None] * penalty_part
            meat += g.T @ g
        return inverse @ meat @ inverse
    raise ValueError(f"cov_type must be 'nonrobust' or 'HC0', got {cov_type!r}")


def standard_errors(problem, cov_type="nonrobust"):
    """sqrt(diag(Cov))."""
    return np.sqrt(np.diag(cov_params(problem, cov_type)))


def param_names(problem, feature_names=None):
    """Coefficient labels: the given names (plus "intercept" last), or x0, x1, ..."""
    names = feature_names if feature_names is not None else getattr(problem, "feature_names", None)
    if names is None:
        names = [f"x{j}" for j in range(problem.n_features)]
    names = [str(name) for name in names]
    if len(names) != problem.n_features:
        raise ValueError(f"feature_names has {len(names)} names for {problem.n_features} features")
    return names + (["intercept"] if problem.fit_intercept else [])


def _quadratic_rows(dtheta, matrix):
    """dtheta_i^T M dtheta_i for every row, O(n p^2) time and O(n p) memory."""
    return np.einsum("ij,ij->i", dtheta @ matrix, dtheta)


def influence_table(problem, exact=False, feature_names=None, index=None, tol=1e-10, max_iter=100,
                    n_jobs=None, progress=None):
    """The influence table: one row per training sample (see the module docstring).

    Parameters
    ----------
    problem : rif.GLMProblem
    exact : bool, default False
        Add ``cooks_d_exact``, ``dfb_exact_<name>`` and ``d_exact_<name>``
        (theta_(i) - theta^) columns from exact leave-one-out refits (n refits;
        the other columns need none).
    feature_names : list of str, optional
        Coefficient labels; default the problem's ``feature_names`` or x0, x1, ...
    index : array-like, optional
        Row labels; default the problem's ``row_labels`` or 0..n-1.

    Returns
    -------
    pandas.DataFrame
        Columns ``dfb_<name>`` (one per coefficient), ``cooks_d``,
        ``standard_resid``, ``hat_diag``, ``dffits_internal``,
        ``student_resid``, ``dffits``, ``cov_ratio``, ``resid_pearson``,
        ``resid_deviance``, ``standard_resid_deviance``, ``self_influence``
        (change of the sample's own loss when it is removed, "rif"),
        ``rescale_factor`` (1 / (1 - h_i)), ``d_<name>`` (the one-step
        change theta_(i) - theta^ itself), and with ``exact`` the refit columns.
    """
    import pandas as pd

    from . import _estimators as est_

    names = param_names(problem, feature_names)
    if index is None:
        index = getattr(problem, "row_labels", None)
    h = problem.leverage
    one_minus_h = 1.0 - h
    p = problem.n_params
    phi = dispersion(problem)
    phi_i = deleted_dispersion(problem)
    r = pearson_residuals(problem)
    d = deviance_residuals(problem)
    inverse = problem.base_factor.inverse
    hessian = problem.hessian
    diag_inv = np.diag(inverse)

    dtheta = est_.loo_params_change(problem, "rif")
    standard = r / np.sqrt(phi * one_minus_h)
    student = np.sign(d) * np.sqrt(d**2 + h * r**2 / one_minus_h) / np.sqrt(phi_i)
    ratio = np.sqrt(h / one_minus_h)
    dfb_scale = phi_i if problem.family.name == "gaussian" else np.full(problem.n_samples, phi)
    dfb = -dtheta / np.sqrt(dfb_scale[:, None] * diag_inv[None, :])

    columns = {f"dfb_{name}": dfb[:, j] for j, name in enumerate(names)}
    columns.update({
        "cooks_d": _quadratic_rows(dtheta, hessian) / (p * phi),
        "standard_resid": standard,
        "hat_diag": h,
        "dffits_internal": standard * ratio,
        "student_resid": student,
        "dffits": student * ratio,
        "cov_ratio": (phi_i / phi) ** p / one_minus_h,
        "resid_pearson": r,
        "resid_deviance": d,
        "standard_resid_deviance": d / np.sqrt(phi * one_minus_h),
        "self_influence": problem.self_influence("rif"),
        "rescale_factor": problem.rescale_factor,
    })
    columns.update({f"d_{name}": dtheta[:, j] for j, name in enumerate(names)})
    if exact:
        exact_change = est_.loo_params_change(problem, "retrain", tol, max_iter, n_jobs, progress)
        columns["cooks_d_exact"] = _quadratic_rows(exact_change, hessian) / (p * phi)
        exact_dfb = -exact_change / np.sqrt(dfb_scale[:, None] * diag_inv[None, :])
        columns.update({f"dfb_exact_{name}": exact_dfb[:, j] for j, name in enumerate(names)})
        columns.update({f"d_exact_{name}": exact_change[:, j] for j, name in enumerate(names)})
    return pd.DataFrame(columns, index=index)


def influential_flags(table, n_params):
    """R's ``influence.measures()$is.inf``: which rows exceed the usual cut-offs.

    With n rows and p parameters: |dfb| > 1, |dffits| > 3 sqrt(p / (n - p)),
    |1 - cov_ratio| > 3 p / (n - p), the F(p, n - p) probability of
    cooks_d > 0.5, hat_diag > 3 p / n.

    Returns
    -------
    pandas.DataFrame of bool, the table's index and the measures' columns.
    """
    import pandas as pd
    from scipy import stats

    n, p = len(table), n_params
    dfb = [c for c in table.columns if c.startswith("dfb_") and not c.startswith("dfb_exact_")]
    flags = {c: np.abs(table[c].to_numpy()) > 1.0 for c in dfb}
    flags["dffits"] = np.abs(table["dffits"].to_numpy()) > 3.0 * np.sqrt(p / (n - p))
    flags["cov_ratio"] = np.abs(1.0 - table["cov_ratio"].to_numpy()) > 3.0 * p / (n - p)
    flags["cooks_d"] = stats.f.cdf(table["cooks_d"].to_numpy(), p, n - p) > 0.5
    flags["hat_diag"] = table["hat_diag"].to_numpy() > 3.0 * p / n
    return pd.DataFrame(flags, index=table.index)


def jackknife(problem, method="retrain", tol=1e-10, max_iter=100, n_jobs=None, progress=None,
              feature_names=None):
    """Jackknife bias and standard errors of theta^ from the leave-one-out changes.

    With dtheta_i = theta_(i) - theta^ and their mean m,

        bias_jack = (n - 1) m,   Cov_jack = (n - 1) / n sum_i (dtheta_i - m)(dtheta_i - m)^T,

    exact with ``method="retrain"`` (n refits), the one-step approximation with
    "rif" (or "newton", the same for one sample), which for least squares is
    exact and makes the jackknife variance the HC3-type estimator.

    Returns
    -------
    pandas.DataFrame indexed by coefficient: ``coef``, ``se_model``
    (sqrt of phi H^{-1}), ``se_HC0`` (sandwich), ``se_jackknife``, ``bias_jackknife``.
    """
    import pandas as pd

    from . import _estimators as est_

    dtheta = est_.loo_params_change(problem, est_.check_method(method), tol, max_iter, n_jobs, progress)
    n = problem.n_samples
    mean = dtheta.mean(axis=0)
    centred = dtheta - mean
    se_jack = np.sqrt((n - 1) / n * np.einsum("ij,ij->j", centred, centred))
    return pd.DataFrame({
        "coef": problem.theta,
        "se_model": standard_errors(problem),
        "se_HC0": standard_errors(problem, "HC0"),
        "se_jackknife": se_jack,
        "bias_jackknife": (n - 1) * mean,
    }, index=param_names(problem, feature_names))


# -- R's definitions, for users who need R's numbers ------------------------------------
def _mean_derivative(problem, mu):
    """dmu/deta of the family's link at the fitted means."""
    name = problem.family.name
    if name == "binomial":
        return mu * (1.0 - mu)
    if name == "binomial_probit":
        return np.exp(-0.5 * problem.eta**2) / np.sqrt(2.0 * np.pi)
    if name == "gaussian":
        return np.ones_like(mu)
    if name in ("poisson", "gamma_log", "negative_binomial"):
        return mu
    if name == "gamma_inverse":
        return -mu**2
    raise ValueError(f"no link derivative for the {name} family")


def r_influence_measures(problem, feature_names=None, index=None):
    """R's ``influence.measures()`` of an unpenalised ``glm``/``lm`` fit, reproduced.

    R computes its deletion diagnostics from the final IRLS weighted least-squares
    problem, with the working (Fisher) weights w~_i = w_i (dmu/deta)^2 / V(mu_i),
    the hat values h_i of sqrt(w~) X and the deviance residuals d_i
    (``weighted.residuals``):

        dfbeta_i  = (X^T W~ X)^{-1} x_i sqrt(w~_i) d_i / (1 - h_i)
        sigma_(i) = sqrt((sum_j d_j^2 - d_i^2 / (1 - h_i)) / (n - p - 1))
        dfbetas   = dfbeta_ij / (sigma_(i) sqrt((X^T W~ X)^{-1}_jj))
        dffit     = d_i sqrt(h_i) / (sigma_(i) (1 - h_i))
        cov.r     = (sigma_(i)^2 / s^2)^p / (1 - h_i),   s^2 = sum_j d_j^2 / (n - p)
        cook.d    = r_i^2 h_i / (phi p (1 - h_i)^2)      (Pearson r_i, dispersion phi)

    For least squares these are the exact deletion quantities and equal
    :func:`influence_table`'s. For other GLMs R's dfbeta is not the deletion
    change: it uses deviance instead of working residuals (and for a decreasing
    link, such as Gamma's inverse, it has the opposite sign of the change), and
    sigma_(i) is used even where the dispersion is fixed.

    Returns
    -------
    pandas.DataFrame
        Columns ``dfb_<name>``, ``dffit``, ``cov_r``, ``cook_d``, ``hat`` (R's names)
        and ``dfbeta_<name>`` (R's ``dfbeta``, the unscaled change theta^ - theta_(i)).
    """
    import pandas as pd

    from . import _design

    if problem.penalty != 0:
        raise ValueError("R's influence.measures are defined for unpenalised fits; use influence_table")
    names = param_names(problem, feature_names)
    if index is None:
        index = getattr(problem, "row_labels", None)
    mu = fitted_mean(problem)
    dmu = _mean_derivative(problem, mu)
    working = problem.sample_weight * dmu**2 / variance(problem, mu)
    gram = _design.weighted_gram(problem.X, working, problem.fit_intercept)
    inverse = np.linalg.inv(gram)
    inverse = 0.5 * (inverse + inverse.T)
    rows = _design.map_rows(problem.X, problem.fit_intercept, lambda b: b @ inverse, problem.n_params)
    hat = working * _design.rowwise_dot(problem.X, rows, problem.fit_intercept)
    d = deviance_residuals(problem)
    r = pearson_residuals(problem)
    n, p = problem.n_samples, problem.n_params
    omh = 1.0 - hat
    sigma = np.sqrt((np.sum(d**2) - d**2 / omh) / (n - p - 1))
    dfbeta = rows * (np.sqrt(working) * d / omh)[:, None]
    dfbetas = dfbeta / (sigma[:, None] * np.sqrt(np.diag(inverse))[None, :])
    s2 = np.sum(d**2) / (n - p)
    columns = {f"dfb_{name}": dfbetas[:, j] for j, name in enumerate(names)}
    columns.update({
        "dffit": d * np.sqrt(hat) / (sigma * omh),
        "cov_r": (sigma**2 / s2) ** p / omh,
        "cook_d": r**2 * hat / (dispersion(problem) * p * omh**2),
        "hat": hat,
    })
    columns.update({f"dfbeta_{name}": dfbeta[:, j] for j, name in enumerate(names)})
    return pd.DataFrame(columns, index=index)


def r_influential_flags(measures, n_params):
    """R's ``influence.measures()$is.inf`` on :func:`r_influence_measures` (same cut-offs as
    :func:`influential_flags`)."""
    renamed = measures.rename(columns={"dffit": "dffits", "cov_r": "cov_ratio", "cook_d": "cooks_d",
                                       "hat": "hat_diag"})
    return influential_flags(renamed.drop(columns=[c for c in renamed if c.startswith("dfbeta_")]), n_params)
