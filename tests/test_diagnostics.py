"""The influence table, covariances and jackknife against statsmodels, exact refits and
dense closed forms."""

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from sklearn.linear_model import LinearRegression, LogisticRegression

import rif
from rif import _diagnostics as dg

pytestmark = pytest.mark.filterwarnings("ignore:The .* link function does not respect the domain:Warning")


def _ols(name):
    data = getattr(sm.datasets, name).load_pandas()
    exog = sm.add_constant(data.exog.astype(float), has_constant="add")
    return sm.OLS(data.endog.astype(float), exog).fit()


def _rel(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return np.max(np.abs(a - b)) / np.max(np.abs(b))


@pytest.mark.parametrize("name", ["stackloss", "copper", "committee", "cpunish", "scotland", "spector"])
def test_ols_table_matches_statsmodels_summary_frame(name):
    res = _ols(name)
    infl = res.get_influence()
    frame = infl.summary_frame()
    table = rif.GLMProblem.from_statsmodels(res, refine=False).influence_table()
    assert list(table.index) == list(frame.index)
    for column in frame.columns:                       # dfb_*, cooks_d, residuals, hat, dffits
        assert _rel(table[column], frame[column]) < 1e-10, column
    assert _rel(table["cov_ratio"], infl.cov_ratio) < 1e-10
    assert _rel(table["resid_pearson"], res.resid) < 1e-10


def test_wls_table_against_dense_deletion_formulas():
    rng = np.random.default_rng(4)
    n, X = 40, sm.add_constant(rng.normal(size=(40, 3)))
    w = rng.uniform(0.3, 3.0, n)
    y = X @ [1.0, 0.5, -1.0, 0.2] + rng.normal(size=n) / np.sqrt(w)
    prob = rif.GLMProblem.from_statsmodels(sm.WLS(y, X, weights=w).fit())
    table = dg.influence_table(prob, exact=True)
    # dense twin: weighted hat matrix, brute-force deletion refits
    Xw = np.sqrt(w)[:, None] * X
    hat = Xw @ np.linalg.solve(Xw.T @ Xw, Xw.T)
    np.testing.assert_allclose(table["hat_diag"], np.diag(hat), rtol=1e-10)
    ssr = lambda b, keep: np.sum(w[keep] * (y[keep] - X[keep] @ b) ** 2)
    theta = np.linalg.lstsq(Xw, np.sqrt(w) * y, rcond=None)[0]
    p = X.shape[1]
    s2 = ssr(theta, slice(None)) / (n - p)
    for i in (0, 11, 27):
        keep = np.arange(n) != i
        b_i = np.linalg.lstsq(Xw[keep], np.sqrt(w[keep]) * y[keep], rcond=None)[0]
        s2_i = ssr(b_i, keep) / (n - p - 1)
        se_i = np.sqrt(s2_i * np.diag(np.linalg.inv(Xw.T @ Xw)))
        dfb = table[[f"dfb_{c}" for c in ("const", "x1", "x2", "x3")]].iloc[i].to_numpy()
        np.testing.assert_allclose(dfb, (theta - b_i) / se_i, rtol=1e-9)
        cook = (theta - b_i) @ (Xw.T @ Xw) @ (theta - b_i) / (p * s2)
        np.testing.assert_allclose(table["cooks_d"].iloc[i], cook, rtol=1e-9)
        np.testing.assert_allclose(table["cooks_d_exact"].iloc[i], cook, rtol=1e-9)
        e_i = np.sqrt(w[i]) * (y[i] - X[i] @ theta)
        np.testing.assert_allclose(table["student_resid"].iloc[i], e_i / np.sqrt(s2_i * (1 - hat[i, i])), rtol=1e-9)
        cov_ratio = np.linalg.det(s2_i * np.linalg.inv(Xw[keep].T @ Xw[keep])) / np.linalg.det(
            s2 * np.linalg.inv(Xw.T @ Xw))
        np.testing.assert_allclose(table["cov_ratio"].iloc[i], cov_ratio, rtol=1e-9)


def _glm(data, family):
    return sm.GLM(data.endog, sm.add_constant(data.exog, prepend=False), family=family).fit(tol=1e-13)


GLM_CASES = {
    "star98-binomial": lambda: _glm(sm.datasets.star98.load_pandas(), sm.families.Binomial()),
    "scotland-gamma": lambda: _glm(sm.datasets.scotland.load_pandas(), sm.families.Gamma()),
    "cpunish-poisson": lambda: _glm(sm.datasets.cpunish.load_pandas(), sm.families.Poisson()),
    "spector-binomial": lambda: _glm(sm.datasets.spector.load_pandas(), sm.families.Binomial()),
}


@pytest.mark.parametrize("name", sorted(GLM_CASES))
def test_glm_table_matches_glm_influence(name):
    res = GLM_CASES[name]()
    prob = rif.GLMProblem.from_statsmodels(res, refine=False)
    table = prob.influence_table()
    frame = res.get_influence().summary_frame()
    for column in ("hat_diag", "cooks_d", "standard_resid"):
        assert _rel(table[column], frame[column]) < 1e-10, column
    assert _rel(table["resid_pearson"], res.resid_pearson) < 1e-10
    assert _rel(table["resid_deviance"], res.resid_deviance) < 1e-10
    np.testing.assert_allclose(dg.dispersion(prob), res.scale, rtol=1e-10)
    np.testing.assert_allclose(prob.bse_, res.bse, rtol=1e-9)
    assert _rel(prob.cov_params(), res.cov_params()) < 1e-9        # relative to its largest entry
    robust = res.model.fit(tol=1e-13, cov_type="HC0")
    np.testing.assert_allclose(dg.standard_errors(prob, "HC0"), robust.bse, rtol=1e-8)


def test_glm_dfbetas_are_the_newton_step_over_bse():
    # statsmodels' GLMInfluence gives the one-step change when handed the IRLS-weighted design
    res = GLM_CASES["spector-binomial"]()
    prob = rif.GLMProblem.from_statsmodels(res, refine=False)
    weighted = np.sqrt(prob.d2)[:, None] * res.model.exog
    from statsmodels.stats.outliers_influence import GLMInfluence

    expected = GLMInfluence(res, exog=weighted).dfbetas
    table = prob.influence_table()
    assert _rel(table[[f"dfb_{c}" for c in res.model.exog_names]], expected) < 1e-9


def test_exact_columns_against_statsmodels_refits():
    res = GLM_CASES["spector-binomial"]()
    prob = rif.GLMProblem.from_statsmodels(res)
    table = prob.influence_table(exact=True)
    names = res.model.exog_names
    X, y = res.model.exog, res.model.endog
    for i in (0, 5, 20):
        keep = np.arange(len(y)) != i
        refit = sm.GLM(y[keep], X[keep], family=sm.families.Binomial()).fit(tol=1e-13).params
        change = refit - prob.theta
        np.testing.assert_allclose(table[[f"dfb_exact_{c}" for c in names]].iloc[i], -change / prob.bse_,
                                   rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(table["cooks_d_exact"].iloc[i],
                                   change @ prob.hessian @ change / len(names), rtol=1e-7)
        np.testing.assert_allclose(table[[f"d_exact_{c}" for c in names]].iloc[i], change, rtol=1e-7,
                                   atol=1e-8 * np.abs(change).max())    # statsmodels refits to tol 1e-13
    # one-step and exact Cook's distances close on this well-posed fit
    assert np.corrcoef(table["cooks_d"], table["cooks_d_exact"])[0, 1] > 0.95


def test_ridge_table_is_the_penalised_generalisation():
    rng = np.random.default_rng(2)
    n, alpha = 50, 0.3
    X = sm.add_constant(rng.normal(size=(n, 4)))
    y = X @ rng.normal(size=5) + rng.normal(size=n)
    prob = rif.GLMProblem.from_statsmodels(sm.OLS(y, X).fit_regularized(L1_wt=0, alpha=alpha), alpha=alpha)
    table = prob.influence_table(exact=True)
    A = X.T @ X + alpha * n * np.eye(5)
    hat = X @ np.linalg.solve(A, X.T)
    np.testing.assert_allclose(table["hat_diag"], np.diag(hat), rtol=1e-10)
    np.testing.assert_allclose(dg.residual_df(prob), n - np.trace(hat), rtol=1e-12)
    names = prob.feature_names
    # exact: the one-step change is the ridge refit on n - 1 rows (penalty alpha (n - 1))
    for i in (3, 17):
        keep = np.arange(n) != i
        refit = np.linalg.solve(X[keep].T @ X[keep] + alpha * (n - 1) * np.eye(5), X[keep].T @ y[keep])
        np.testing.assert_allclose(table[[f"d_{c}" for c in names]].iloc[i], refit - prob.theta, atol=1e-11)
    np.testing.assert_allclose(table["cooks_d"], table["cooks_d_exact"], rtol=1e-8)


def test_auditor_table_names_and_matches_statsmodels():
    res = _ols("stackloss")
    data = sm.datasets.stackloss.load_pandas()
    aud = rif.InfluenceAuditor(LinearRegression()).fit(data.exog, data.endog)
    table = aud.influence_table()
    frame = res.get_influence().summary_frame()
    assert [c for c in table.columns if c.startswith("dfb_")] == [f"dfb_{c}" for c in data.exog.columns] + [
        "dfb_intercept"]
    np.testing.assert_allclose(table["dfb_intercept"], frame["dfb_const"], rtol=1e-9)
    np.testing.assert_allclose(table["dfb_AIRFLOW"], frame["dfb_AIRFLOW"], rtol=1e-9)
    for column in ("cooks_d", "student_resid", "dffits", "hat_diag"):
        np.testing.assert_allclose(table[column], frame[column], rtol=1e-9)
    np.testing.assert_allclose(aud.bse_[[-1, 0]], res.bse[["const", "AIRFLOW"]], rtol=1e-9)


def test_self_influence_and_rescale_columns():
    aud = rif.InfluenceAuditor(LogisticRegression(C=2.0)).fit(*_binary(60, 1))
    table = aud.influence_table()
    np.testing.assert_allclose(table["self_influence"], aud.self_influence("rif"))
    np.testing.assert_allclose(table["rescale_factor"], aud.rescale_factor_)
    assert isinstance(table.index, pd.RangeIndex)


def _binary(n, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = (rng.random(n) < 1 / (1 + np.exp(-X @ [1.0, -0.5, 0.3]))).astype(int)
    return X, y


def test_influential_flags_follow_r_cutoffs():
    res = _ols("stackloss")
    table = rif.GLMProblem.from_statsmodels(res).influence_table()
    flags = dg.influential_flags(table, 4)
    n, p = 21, 4
    np.testing.assert_array_equal(flags["hat_diag"], table["hat_diag"] > 3 * p / n)
    np.testing.assert_array_equal(flags["dffits"], np.abs(table["dffits"]) > 3 * np.sqrt(p / (n - p)))
    # stackloss row 20 (index 20) is the classic influential point by DFFITS and Cook's distance
    assert flags["dffits"].iloc[20] or flags["cov_ratio"].iloc[20]
    assert not flags.iloc[5].any()


@pytest.mark.parametrize("kind", ["ols", "logit"])
def test_jackknife_against_explicit_refits(kind):
    rng = np.random.default_rng(7)
    n = 100
    X = sm.add_constant(rng.normal(size=(n, 2)))
    if kind == "ols":
        y = X @ [0.5, 1.0, -1.0] + rng.standard_t(3, size=n)
        fit = lambda keep: sm.OLS(y[keep], X[keep]).fit().params
        res = sm.OLS(y, X).fit()
    else:
        y = (rng.random(n) < 1 / (1 + np.exp(-X @ [0.2, 1.0, -1.0]))).astype(float)
        fit = lambda keep: sm.GLM(y[keep], X[keep], family=sm.families.Binomial()).fit(tol=1e-13).params
        res = sm.GLM(y, X, family=sm.families.Binomial()).fit(tol=1e-13)
    prob = rif.GLMProblem.from_statsmodels(res)
    thetas = np.array([fit(np.arange(n) != i) for i in range(n)])
    mean = thetas.mean(axis=0)
    se = np.sqrt((n - 1) / n * ((thetas - mean) ** 2).sum(axis=0))
    bias = (n - 1) * (mean - prob.theta)
    table = prob.jackknife("retrain")
    np.testing.assert_allclose(table["se_jackknife"], se, rtol=1e-7)
    np.testing.assert_allclose(table["bias_jackknife"], bias, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(table["se_model"], res.bse, rtol=1e-8)
    one_step = prob.jackknife("rif")
    if kind == "ols":    # the one-step change is exact for least squares
        np.testing.assert_allclose(one_step["se_jackknife"], se, rtol=1e-9)
    else:
        # the one-step jackknife is an approximation (here a few per cent low)
        np.testing.assert_allclose(one_step["se_jackknife"], se, rtol=0.08)


def test_invalid_arguments():
    prob = rif.GLMProblem.from_statsmodels(_ols("stackloss"))
    with pytest.raises(ValueError, match="cov_type"):
        prob.cov_params("HC9")
    with pytest.raises(ValueError, match="feature_names"):
        dg.influence_table(prob, feature_names=["a"])
    with pytest.raises(ValueError, match="method"):
        prob.jackknife("exact")


def test_influence_flags_method_and_plot():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = _ols("stackloss")
    prob = rif.GLMProblem.from_statsmodels(res)
    table = prob.influence_table()
    flags = prob.influence_flags()
    assert flags.equals(dg.influential_flags(table, 4))
    ax = prob.plot_influence(n_labels=1)
    assert len(ax.collections[0].get_offsets()) == 21
    np.testing.assert_allclose(ax.collections[0].get_offsets()[:, 0], table["hat_diag"])
    labelled = {text.get_text() for text in ax.texts}
    expected = {str(table.index[np.argmax(table[c].abs().to_numpy())]) for c in ("cooks_d", "hat_diag",
                                                                               "student_resid")}
    assert labelled == expected
    vertical = sorted(line.get_xdata()[0] for line in ax.lines if line.get_xdata()[0] == line.get_xdata()[1])
    np.testing.assert_allclose(vertical, [2 * table["hat_diag"].mean(), 3 * table["hat_diag"].mean()])
    plt.close(ax.figure)


# -- R reference values (tests/data, generated once by tests/data/make_r_reference.py) ------
DATA = __import__("pathlib").Path(__file__).parent / "data"
R_FITS = {
    "spector": ("GRADE", sm.families.Binomial()),
    "scotland": ("YES", sm.families.Gamma()),
    "cpunish": ("EXECUTIONS", sm.families.Poisson()),
    "stackloss": ("STACKLOSS", None),
}


def _r_fit(name):
    data = pd.read_csv(DATA / f"{name}.csv")
    target, family = R_FITS[name]
    exog = sm.add_constant(data[[c for c in data.columns if c != target]])
    if family is None:
        return sm.OLS(data[target], exog).fit()
    return sm.GLM(data[target], exog, family=family).fit(tol=1e-14)


@pytest.mark.parametrize("name", sorted(R_FITS))
def test_matches_r_reference_values(name):
    prob = rif.GLMProblem.from_statsmodels(_r_fit(name))
    r = pd.read_csv(DATA / f"{name}_r.csv")
    table = prob.influence_table()
    pairs = {"hat_diag": "hat", "standard_resid_deviance": "rstandard", "standard_resid": "rstandard_pearson",
             "student_resid": "rstudent", "cooks_d": "cooks", "resid_pearson": "pearson",
             "resid_deviance": "deviance"}
    for ours, theirs in pairs.items():
        assert _rel(table[ours], r[theirs]) < 1e-8, ours
    measures = prob.r_influence_measures()
    names = prob.feature_names
    for ours, theirs in {"dffit": "dffits", "cov_r": "covratio", "cook_d": "cooks", "hat": "hat"}.items():
        assert _rel(measures[ours], r[theirs]) < 1e-8, ours
    r_names = [c for c in r.columns if c.startswith("dfbetas_")]
    assert _rel(measures[[f"dfb_{c}" for c in names]], r[r_names]) < 1e-8
    assert _rel(measures[[f"dfbeta_{c}" for c in names]], r[[c.replace("dfbetas_", "dfbeta_") for c in r_names]]) < 1e-8
    flags = dg.r_influential_flags(measures, prob.n_params)
    np.testing.assert_array_equal(flags.to_numpy(), r[[c for c in r.columns if c.startswith("inf_")]].to_numpy())
    if name == "stackloss":          # least squares: R's definitions are rif's
        for ours, theirs in {"dffits": "dffits", "cov_ratio": "covratio"}.items():
            assert _rel(table[ours], r[theirs]) < 1e-10
        assert _rel(table[[f"dfb_{c}" for c in names]], r[r_names]) < 1e-10


def test_r_dfbeta_is_not_the_deletion_change_for_glms():
    # R's refit without row 1 of the Gamma fit: rif's exact and one-step changes agree with it,
    # R's dfbeta (deviance residuals, inverse link) has the opposite sign
    prob = rif.GLMProblem.from_statsmodels(_r_fit("scotland"))
    r = pd.read_csv(DATA / "scotland_refit1_r.csv")
    exact = -prob.params_change([0], "retrain")          # R's convention: theta^ - theta_(1)
    np.testing.assert_allclose(exact, r["exact"], rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(-prob.params_change([0], "rif"), r["exact"], rtol=0.05)
    np.testing.assert_allclose(prob.r_influence_measures().filter(like="dfbeta_").iloc[0], r["dfbeta"], rtol=1e-7)
    assert np.all(np.sign(r["dfbeta"]) == -np.sign(r["exact"]))
    with pytest.raises(ValueError, match="unpenalised"):
        rif.InfluenceAuditor(LogisticRegression()).fit(*_binary(40, 0)).r_influence_measures()


def test_sparse_input_gives_the_dense_table():
    import scipy.sparse as sp

    X, y = _binary(80, 5)
    X[X < 0.3] = 0.0
    dense = rif.InfluenceAuditor(LogisticRegression(C=0.5)).fit(X, y)
    sparse = rif.InfluenceAuditor(LogisticRegression(C=0.5)).fit(sp.csr_matrix(X), y)
    pd.testing.assert_frame_equal(sparse.influence_table(), dense.influence_table(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(sparse.cov_params("HC0"), dense.cov_params("HC0"), rtol=1e-9)


def test_longley_certified_values_and_scale_invariant_singularity_test():
    # NIST's Longley data: ill-conditioned in its original units (reciprocal condition of
    # X^T X about 1e-20), well-posed after diagonal scaling (about 5e-10)
    from statsmodels.regression.tests.results.results_regression import Longley

    data = sm.datasets.longley.load_pandas()
    res = sm.OLS(data.endog, sm.add_constant(data.exog, prepend=False)).fit()
    certified = np.asarray(Longley().params)
    prob = rif.GLMProblem.from_statsmodels(res)
    assert prob.factor.rcond > 1e-11
    np.testing.assert_allclose(prob.theta, certified, rtol=1e-9)
    aud = rif.InfluenceAuditor(LinearRegression()).fit(data.exog, data.endog)
    np.testing.assert_allclose(aud.problem_.theta, certified, rtol=1e-9)
    # normal equations carry cond(D H D) * eps ~ 1e-7 relative error at worst; statsmodels uses an SVD
    frame = res.get_influence().summary_frame()
    table = prob.influence_table()
    for column in frame.columns:
        assert _rel(table[column], frame[column]) < 1e-6, column
    # rescaling a feature changes neither the verdict nor the condition number judged
    scaled = res.model.exog * np.array([1e6, 1e-3, 1.0, 1.0, 1e4, 1.0, 1.0])
    again = rif.GLMProblem.from_statsmodels(sm.OLS(res.model.endog, scaled).fit())
    # (equilibrated by powers of two, so the estimate is invariant up to a factor of 4)
    assert 0.25 < again.factor.rcond / prob.factor.rcond < 4.0
    np.testing.assert_allclose(again.leverage, prob.leverage, rtol=1e-6)
    # exact collinearity is still refused
    collinear = np.column_stack([res.model.exog, res.model.exog[:, 0] * 2.0])
    with pytest.raises(rif.SingularHessianError):
        rif.GLMProblem(collinear, res.model.endog, "gaussian", fit_intercept=False)
