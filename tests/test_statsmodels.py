"""Leave-one-out changes of unpenalised GLMs against statsmodels' influence objects."""

import numpy as np
import pytest
import statsmodels.api as sm
from statsmodels.stats.outliers_influence import GLMInfluence, MLEInfluence

import rif
from conftest import synthetic

# Families with unit dispersion only: for the Gaussian family statsmodels scales its
# residuals and Hessian by the estimated variance, so d_params is not in parameter units.
SM_FAMILIES = {"binomial": sm.families.Binomial, "poisson": sm.families.Poisson}


@pytest.mark.parametrize("family", sorted(SM_FAMILIES))
def test_leave_one_out_changes_match_statsmodels(family):
    X, y, _ = synthetic(family, n=90, d=3, seed=11)
    exog = sm.add_constant(X, prepend=False)  # intercept last, as in rif
    res = sm.GLM(y, exog, family=SM_FAMILIES[family]()).fit(tol=1e-13)
    prob = rif.GLMProblem(X, y, family)  # unpenalised, fitted by rif's own Newton
    np.testing.assert_allclose(prob.theta, res.params, rtol=1e-9, atol=1e-12)

    # GLMInfluence uses pinv(exog); for a non-Gaussian GLM its one-step change is the
    # Newton step only with the IRLS-weighted design sqrt(w_i) x~_i (statsmodels' own
    # default is the unweighted one, exact for the Gaussian family alone).
    weighted = np.sqrt(prob.d2)[:, None] * exog
    infl = GLMInfluence(res, exog=weighted)
    np.testing.assert_allclose(prob.leverage, infl.hat_matrix_diag, rtol=1e-9, atol=1e-13)

    aud_like = np.array([rif._estimators.params_change_one(prob, np.array([i]), "rif")
                         for i in range(len(y))])
    scale = np.abs(aud_like).max()
    # statsmodels' d_params is theta^ - theta_{-i}; rif's change is theta_{-i} - theta^.
    np.testing.assert_allclose(-infl.d_params, aud_like, rtol=1e-8, atol=1e-10 * scale)
    np.testing.assert_allclose(-MLEInfluence(res).d_params, aud_like, rtol=1e-8, atol=1e-10 * scale)
