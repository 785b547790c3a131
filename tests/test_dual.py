"""The dual (kernel) route against dense formulas and against the primal route."""

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression

import rif
from conftest import glm_labels
from rif import GLMProblem
from rif._dual import KernelHessian, KernelLeaveOut, gram_matrix
from rif._errors import SingularHessianError


def _dense_design(X, intercept):
    Xd = X.toarray() if sp.issparse(X) else X
    return np.hstack([Xd, np.ones((Xd.shape[0], 1))]) if intercept else Xd


def _dense_hessian(Xt, c, lam, intercept):
    penalty = np.ones(Xt.shape[1])
    if intercept:
        penalty[-1] = 0.0
    return Xt.T @ (c[:, None] * Xt) + lam * np.diag(penalty)


@pytest.mark.parametrize("intercept", [False, True])
@pytest.mark.parametrize("sparse", [False, True])
def test_kernel_hessian_is_the_dense_inverse(intercept, sparse):
    rng = np.random.default_rng(1)
    n, d = 25, 40
    X = sp.random(n, d, density=0.3, format="csr", random_state=3) if sparse else rng.standard_normal((n, d))
    c = rng.uniform(0.0, 2.0, n)
    c[[2, 7]] = 0.0                                   # zero weights: rows that carry no curvature
    lam = 0.3
    factor = KernelHessian(X, gram_matrix(X), c, lam, intercept)
    Xt = _dense_design(X, intercept)
    inv = np.linalg.inv(_dense_hessian(Xt, c, lam, intercept))
    b = rng.standard_normal((Xt.shape[1], 3))
    rows = np.array([0, 2, 9])
    np.testing.assert_allclose(factor.solve(b), inv @ b, atol=1e-12)
    np.testing.assert_allclose(factor.solve(b[:, 0]), inv @ b[:, 0], atol=1e-12)
    np.testing.assert_allclose(factor.solve_rows(rows), inv @ Xt[rows].T, atol=1e-12)
    np.testing.assert_allclose(factor.row_products(rows), Xt @ inv @ Xt[rows].T, atol=1e-12)
    np.testing.assert_allclose(factor.training_products(b), Xt @ inv @ b, atol=1e-12)
    np.testing.assert_allclose(factor.inverse, inv, atol=1e-12)
    assert factor.inverse_norm_bound >= np.linalg.norm(inv, 2) * (1 - 1e-12)   # the certificates' bound
    q = np.einsum("ij,jk,ik->i", Xt, inv, Xt)
    h, q_kernel, one_minus = factor.leverages
    np.testing.assert_allclose(q_kernel, q, rtol=1e-11)
    np.testing.assert_allclose(h, c * q, atol=1e-13)
    np.testing.assert_allclose(one_minus, 1.0 - c * q, atol=1e-13)
    # the leave-out Hessian by Woodbury on the kernel
    removed = np.array([1, 4, 9, 11])
    keep = c.copy()
    keep[removed] = 0.0
    loo = KernelLeaveOut(factor, removed, c[removed])
    want = np.linalg.solve(_dense_hessian(Xt, keep, lam, intercept), b)
    np.testing.assert_allclose(loo.solve(b), want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("intercept", [False, True])
def test_kernel_leverages_of_rows_with_vanishing_curvature(intercept):
    """q_i = x~_i^T H^{-1} x~_i where c_i is tiny (a logistic sample far on its side): read off h_i / c_i
    it is off by eps / c_i (it came out -1e25 at c_i = 2e-41); the direct formula keeps it within
    rounding of the dense value, and h_i = c_i q_i."""
    rng = np.random.default_rng(4)
    n, d = 30, 60
    X = rng.standard_normal((n, d)) * 3.0
    c = rng.uniform(0.05, 0.25, n)
    c[[1, 5, 8, 13]] = [2e-41, 1e-20, 1e-12, 1e-6]
    lam = 1e-3
    h, q_kernel, one_minus = KernelHessian(X, gram_matrix(X), c, lam, intercept).leverages
    Xt = _dense_design(X, intercept)
    q = np.einsum("ij,jk,ik->i", Xt, np.linalg.inv(_dense_hessian(Xt, c, lam, intercept)), Xt)
    np.testing.assert_allclose(q_kernel, q, rtol=1e-8)
    np.testing.assert_allclose(h, c * q, rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(one_minus, 1.0 - c * q, atol=1e-10)


def test_kernel_hessian_needs_a_penalty_and_curvature_for_the_intercept():
    X = np.random.default_rng(0).standard_normal((4, 9))
    with pytest.raises(ValueError, match="L2 penalty"):
        KernelHessian(X, gram_matrix(X), np.ones(4), 0.0, True)
    with pytest.raises(SingularHessianError, match="intercept"):
        KernelHessian(X, gram_matrix(X), np.zeros(4), 1.0, True)


def _data(family, n, d, sparse, seed):
    rng = np.random.default_rng(seed)
    if sparse:
        X = sp.random(n, d, density=0.3, format="csr", random_state=seed)
    else:
        X = rng.standard_normal((n, d)) / np.sqrt(d)
    return X, glm_labels(family, X @ rng.standard_normal(d), rng)


def _both_routes(family, n, d, sparse, intercept, scaling, seed, weights=None):
    X, y = _data(family, n, d, sparse, seed)
    penalty = 0.5 if scaling == "fixed" else 0.5 / n
    kw = dict(penalty=penalty, penalty_scaling=scaling, fit_intercept=intercept, tol=1e-13,
              sample_weight=weights)
    return GLMProblem(X, y, family, route="primal", **kw), GLMProblem(X, y, family, route="dual", **kw)


def _rel(a, b):
    return np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-300)


@settings(max_examples=20, deadline=None)
@given(family=st.sampled_from(["binomial", "gaussian", "poisson"]), n=st.integers(6, 30),
       extra=st.integers(1, 30), sparse=st.booleans(), intercept=st.booleans(),
       scaling=st.sampled_from(["fixed", "per_sample"]), seed=st.integers(0, 2**16))
def test_every_estimator_agrees_between_the_routes(family, n, extra, sparse, intercept, scaling, seed):
    primal, dual = _both_routes(family, n, n + extra, sparse, intercept, scaling, seed)
    assert (primal.route, dual.route) == ("primal", "dual")
    assert _rel(primal.theta, dual.theta) < 1e-10
    np.testing.assert_allclose(dual.leverage, primal.leverage, atol=1e-10)
    rng = np.random.default_rng(seed)
    k = max(1, n // 5)
    # samples 0 and 1 stay (one of each class for the binomial)
    sets = [2 + rng.choice(n - 2, k, replace=False) for _ in range(3)] + [np.array([n - 1])]
    for method in ("if", "rif", "newton", "retrain"):
        assert _rel(primal.params_change(sets, method), dual.params_change(sets, method)) < 1e-10, method
        assert _rel(primal.params_change(sets[0], method), dual.params_change(sets[0], method)) < 1e-10, method
    X_eval, y_eval = _data(family, 5, n + extra, sparse, seed + 1)
    for method in ("if", "rif"):
        assert _rel(primal.loo_params_change(method), dual.loo_params_change(method)) < 1e-10, method
        assert _rel(primal.scores(X_eval, y_eval, method=method), dual.scores(X_eval, y_eval, method=method)) < 1e-10
        assert _rel(primal.self_influence(method), dual.self_influence(method)) < 1e-10, method
    effect = primal.effect(sets, "loss", X_eval, y_eval, method="retrain")
    assert _rel(effect, dual.effect(sets, "loss", X_eval, y_eval, method="retrain")) < 1e-8


def test_fixed_penalty_with_unequal_weights_on_the_dual_route():
    weights = np.random.default_rng(5).uniform(0.2, 3.0, 20)
    weights[3] = 0.0
    primal, dual = _both_routes("binomial", 20, 35, False, True, "fixed", 5, weights)
    sets = [np.array([0, 3, 8]), np.array([1, 2])]
    for method in ("if", "rif", "newton", "retrain"):
        assert _rel(primal.params_change(sets, method), dual.params_change(sets, method)) < 1e-10, method
    assert _rel(primal.loo_params_change("rif"), dual.loo_params_change("rif")) < 1e-10


def test_the_route_is_validated_and_chosen_by_shape():
    X, y = _data("binomial", 10, 30, False, 0)
    assert GLMProblem(X, y, "binomial", penalty=1.0).route == "dual"
    assert GLMProblem(X[:, :5], y, "binomial", penalty=1.0).route == "primal"
    # near n = p the primal route stays (its refits are cheaper); the dual from p >= 1.5 n on
    assert GLMProblem(X[:, :13], y, "binomial", penalty=1.0).route == "primal"      # p = 14
    assert GLMProblem(X[:, :14], y, "binomial", penalty=1.0).route == "dual"        # p = 15
    # under the per-sample penalty the kernel also replaces RIF's second factorisation: from p > n on
    assert GLMProblem(X[:, :10], y, "binomial", penalty=0.1, penalty_scaling="per_sample").route == "dual"
    assert GLMProblem(X[:, :9], y, "binomial", penalty=0.1, penalty_scaling="per_sample").route == "primal"
    with pytest.raises(ValueError, match="route must be one of"):
        GLMProblem(X, y, "binomial", penalty=1.0, route="kernel")
    with pytest.raises(ValueError, match="needs an L2 penalty"):
        GLMProblem(X[:, :5], y, "binomial", route="dual")
    unequal = np.linspace(0.5, 2.0, 10)
    with pytest.raises(ValueError, match="equal positive weights"):
        GLMProblem(X, y, "binomial", penalty=0.1, penalty_scaling="per_sample", sample_weight=unequal,
                   route="dual")
    # the same problem on route="auto" takes the primal, which handles unequal shares
    assert GLMProblem(X, y, "binomial", penalty=0.1, penalty_scaling="per_sample",
                      sample_weight=unequal).route == "primal"


def test_dask_input_stays_on_the_primal_route():
    da = pytest.importorskip("dask.array")
    X, y = _data("gaussian", 12, 20, False, 0)
    with pytest.raises(ValueError, match="dask"):
        GLMProblem(da.from_array(X, chunks=(6, 20)), y, "gaussian", penalty=1.0, route="dual")
    assert GLMProblem(da.from_array(X, chunks=(6, 20)), y, "gaussian", penalty=1.0).route == "primal"


def test_auditor_on_wide_data_refits_like_scikit_learn():
    X, y = _data("binomial", 40, 120, False, 2)
    est = LogisticRegression(C=2.0, tol=1e-12, max_iter=10000)
    aud = rif.InfluenceAuditor(est).fit(X, y)
    assert aud.problem_.route == "dual"
    removed = np.array([3, 7, 11])
    keep = np.setdiff1d(np.arange(40), removed)
    refit = LogisticRegression(C=2.0, tol=1e-12, max_iter=10000).fit(X[keep], y[keep])
    want = np.append(refit.coef_.ravel(), refit.intercept_) - aud.problem_.theta
    np.testing.assert_allclose(aud.params_change(removed, "retrain"), want, rtol=1e-5, atol=1e-7)


def test_the_auditor_passes_the_route_through():
    X, y = _data("binomial", 30, 60, False, 4)
    primal = rif.InfluenceAuditor(LogisticRegression(C=1.0, max_iter=5000), route="primal").fit(X, y)
    dual = rif.InfluenceAuditor(LogisticRegression(C=1.0, max_iter=5000)).fit(X, y)
    assert (primal.problem_.route, dual.problem_.route) == ("primal", "dual")
    assert _rel(primal.params_change([[1, 2], [5]], "newton"), dual.params_change([[1, 2], [5]], "newton")) < 1e-9
    with pytest.raises(ValueError, match="route"):
        rif.InfluenceAuditor(LogisticRegression(), route="kernel").fit(X, y)
