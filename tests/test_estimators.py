"""The four estimators against dense reference routes, and the theory as properties."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import naive
from conftest import CONFIGS, FAMILIES, make_problem
from rif._estimators import params_change_one


def change(prob, index, method):
    return params_change_one(prob, np.asarray(index, dtype=np.intp), method)


def assert_close(got, want, rtol):
    scale = max(np.max(np.abs(want)), 1e-300)
    assert np.max(np.abs(got - want)) <= rtol * scale, (got, want)


@pytest.mark.parametrize("family,scaling,intercept,weights", CONFIGS)
@pytest.mark.parametrize("k", [1, 3, 12])
def test_estimators_match_dense_routes(family, scaling, intercept, weights, k):
    prob = make_problem(family, n=40, d=5, scaling=scaling, intercept=intercept, weights=weights)
    index = np.arange(0, 3 * k, 3)
    assert_close(change(prob, index, "if"), naive.influence(prob, index), 1e-9)
    assert_close(change(prob, index, "newton"), naive.newton_step(prob, index), 1e-9)
    assert_close(change(prob, index, "rif"), naive.rescaled_influence(prob, index), 1e-9)


@pytest.mark.parametrize("family,scaling,intercept,weights", CONFIGS)
def test_retrain_reaches_the_leave_k_out_optimum(family, scaling, intercept, weights):
    prob = make_problem(family, n=40, d=5, scaling=scaling, intercept=intercept, weights=weights)
    index = np.array([1, 5, 9, 20])
    theta = prob.theta + change(prob, index, "retrain")
    grad, hess = naive.dense_gradient_hessian(prob, theta, naive.without(prob, index))
    # the Newton decrement ||grad||_{H^-1} bounds the distance to the optimum in the H-norm
    assert np.sqrt(grad @ np.linalg.solve(hess, grad)) < 1e-9


@pytest.mark.parametrize("family", FAMILIES)
def test_leverages_match_dense_hat_diagonal(family):
    prob = make_problem(family, n=50, d=6, weights=True)
    np.testing.assert_allclose(prob.leverage, naive.leverages(prob), rtol=1e-10, atol=1e-14)


# -- the theory, as properties -----------------------------------------------------------
scaling_st = st.sampled_from(["fixed", "per_sample"])


@st.composite
def problem_and_set(draw, family=None):
    fam = family or draw(st.sampled_from(FAMILIES))
    n = draw(st.integers(15, 40))
    d = draw(st.integers(1, 6))
    prob = make_problem(fam, n=n, d=d, seed=draw(st.integers(0, 10_000)),
                        weights=draw(st.booleans()), scaling=draw(scaling_st),
                        intercept=draw(st.booleans()), penalty=draw(st.floats(0.05, 5.0)))
    k = draw(st.integers(1, n // 3))
    index = draw(st.lists(st.integers(0, n - 1), min_size=k, max_size=k, unique=True))
    if fam == "binomial":  # keep both classes among the remaining samples
        keep = np.setdiff1d(np.arange(n), index)
        if np.unique(prob.y[keep]).size < 2:
            index = index[:1]
    return prob, np.array(index, dtype=np.intp)


@given(problem_and_set(family="gaussian"))
def test_squared_loss_newton_step_is_the_exact_refit(case):
    prob, index = case
    assert_close(change(prob, index, "newton"), change(prob, index, "retrain"), 1e-8)


@given(problem_and_set())
def test_rif_equals_newton_step_for_one_sample(case):
    prob, index = case
    assert_close(change(prob, index[:1], "rif"), change(prob, index[:1], "newton"), 1e-9)


@given(problem_and_set())
def test_leverages_in_unit_interval_and_rescale_at_least_one(case):
    prob, _ = case
    assert np.all(prob.leverage >= 0) and np.all(prob.leverage < 1)
    assert np.all(prob.rescale_factor >= 1)


@given(problem_and_set(), st.sampled_from(["if", "rif"]))
def test_if_and_rif_are_additive_over_disjoint_sets(case, method):
    prob, index = case
    if index.size < 2:
        return
    left, right = index[: index.size // 2], index[index.size // 2:]
    assert_close(change(prob, index, method), change(prob, left, method) + change(prob, right, method), 1e-10)


@given(problem_and_set())
def test_newton_step_matches_dense_solve_for_any_set(case):
    """Sets with k < p take the Woodbury path, larger ones the dense p x p solve."""
    prob, index = case
    assert_close(change(prob, index, "newton"), naive.newton_step(prob, index), 1e-8)


# -- batched and all-sample routes against the one-set route ----------------------------
from rif._estimators import loo_params_change, params_change_batch, per_sample_eta_change, self_eta_change  # noqa: E402
from rif._solvers import chord_refit, newton_refit  # noqa: E402


@pytest.mark.parametrize("family,scaling,intercept,weights", CONFIGS)
@pytest.mark.parametrize("method", ["if", "rif", "newton", "retrain"])
def test_batch_equals_one_set_at_a_time(family, scaling, intercept, weights, method):
    prob = make_problem(family, n=40, d=5, scaling=scaling, intercept=intercept, weights=weights)
    rng = np.random.default_rng(7)
    sets = [np.sort(rng.choice(40, size=k, replace=False)) for k in (1, 3, 3, 3, 8, 8, 12)]
    batch = params_change_batch(prob, sets, method)
    for s, got in zip(sets, batch):
        assert_close(got, change(prob, s, method), 1e-10)


@pytest.mark.parametrize("family,scaling,intercept,weights", CONFIGS)
@pytest.mark.parametrize("method", ["if", "rif"])
def test_sets_coefficients_dense_or_sparse_give_the_same_batch(family, scaling, intercept, weights, method,
                                                               monkeypatch):
    from rif import _estimators

    prob = make_problem(family, n=40, d=5, scaling=scaling, intercept=intercept, weights=weights)
    rng = np.random.default_rng(8)
    sets = [np.sort(rng.choice(40, size=k, replace=False)) for k in (1, 3, 8, 12)]
    assert isinstance(prob.X, np.ndarray) and 40 * prob.n_params * len(sets) <= _estimators._DENSE_INDICATOR_WORK
    dense = params_change_batch(prob, sets, method)
    monkeypatch.setattr(_estimators, "_DENSE_INDICATOR_WORK", 0)
    sparse = params_change_batch(prob, sets, method)
    np.testing.assert_allclose(dense, sparse, rtol=1e-12, atol=1e-15 * np.abs(sparse).max())


@pytest.mark.parametrize("family,scaling,intercept,weights", CONFIGS)
@pytest.mark.parametrize("method", ["if", "rif"])
def test_all_sample_routes_equal_one_set_at_a_time(family, scaling, intercept, weights, method):
    prob = make_problem(family, n=30, d=4, scaling=scaling, intercept=intercept, weights=weights)
    loo = loo_params_change(prob, method)
    want = np.array([change(prob, [i], method) for i in range(prob.n_samples)])
    np.testing.assert_allclose(loo, want, rtol=1e-10, atol=1e-14 * np.abs(want).max())
    xt = naive.design(prob.X, intercept)
    target_x = prob.X[:5] + 0.1
    np.testing.assert_allclose(per_sample_eta_change(prob, target_x, method),
                               want @ naive.design(target_x, intercept).T, rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(self_eta_change(prob, method), np.einsum("ij,ij->i", xt, want),
                               rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize("family,scaling,intercept,weights", CONFIGS)
@pytest.mark.parametrize("fraction", [0.05, 0.3, 0.6])
def test_chord_refit_reaches_newton_refit(family, scaling, intercept, weights, fraction):
    """The chord iteration (with its Newton fallback) and plain Newton find the same optimum."""
    prob = make_problem(family, n=60, d=5, scaling=scaling, intercept=intercept, weights=weights)
    # remove the samples with the largest residuals: the hardest sets for a fixed Hessian
    index = np.sort(np.argsort(-np.abs(prob.residual))[: int(fraction * 60)])
    if family == "binomial" and np.unique(np.delete(prob.y, index)).size < 2:
        index = index[: len(index) // 2]
    w = naive.without(prob, index)
    chord = chord_refit(prob, index)
    newton = newton_refit(prob, w, prob.theta)
    assert chord.converged and newton.converged
    assert_close(chord.theta - prob.theta, newton.theta - prob.theta, 1e-8)


def test_anderson_mixing_reaches_newtons_optimum_in_fewer_steps(monkeypatch):
    """n/p ~ 3, 10% removed: theta moves far and plain chord steps contract slowly;
    with or without Anderson mixing the refit finds Newton's optimum, with it in fewer steps."""
    from rif import _solvers

    prob = make_problem("binomial", n=150, d=50, penalty=1.0)
    index = np.sort(np.random.default_rng(4).choice(150, size=15, replace=False))
    newton = newton_refit(prob, naive.without(prob, index), prob.theta)
    accelerated = chord_refit(prob, index)
    monkeypatch.setattr(_solvers, "_ANDERSON_MEMORY", 0)
    plain = chord_refit(prob, index)
    for chord in (accelerated, plain):
        assert chord.converged
        assert_close(chord.theta - prob.theta, newton.theta - prob.theta, 1e-8)
    assert accelerated.n_iter < plain.n_iter


def test_parallel_refits_equal_serial_refits():
    prob = make_problem("binomial", n=80, d=4)
    rng = np.random.default_rng(9)
    sets = [rng.choice(80, size=5, replace=False) for _ in range(7)]
    serial = params_change_batch(prob, sets, "retrain", n_jobs=1)
    parallel = params_change_batch(prob, sets, "retrain", n_jobs=2, progress=False)
    # serially the 7 refits run in lockstep (matrix-product passes); joblib's chunks here
    # hold one set each (fused passes): different roundings, the same optimum within tol
    np.testing.assert_allclose(parallel, serial, rtol=0, atol=1e-9)


@pytest.mark.parametrize("family,scaling,intercept,weights", CONFIGS)
@pytest.mark.parametrize("sparse", [False, True])
def test_lockstep_refits_equal_one_by_one_refits(family, scaling, intercept, weights, sparse):
    """chord_refits iterates each set exactly as chord_refit does; only the passes are shared."""
    import scipy.sparse as sps
    from rif._solvers import chord_refits

    prob = make_problem(family, n=60, d=5, scaling=scaling, intercept=intercept, weights=weights)
    if sparse:
        prob = type(prob)(sps.csr_matrix(prob.X), prob.y, prob.family, prob.theta,
                          sample_weight=prob.sample_weight, penalty=prob.penalty,
                          penalty_scaling=scaling, fit_intercept=intercept)
    rng = np.random.default_rng(10)
    sets = [np.sort(rng.choice(60, size=k, replace=False)) for k in (1, 3, 6, 12, 20)]
    together = list(chord_refits(prob, sets, group_size=3))       # two groups
    for index, result in zip(sets, together):
        alone = chord_refit(prob, index)
        assert result.converged and alone.converged
        assert result.n_iter == alone.n_iter
        np.testing.assert_allclose(result.theta, alone.theta, rtol=0, atol=1e-12)


def test_lockstep_refits_with_hessian_refreshes_equal_one_by_one_refits(monkeypatch):
    """n/p ~ 3, 10% removed: sets refresh their Hessians mid-way, each on its own schedule."""
    from rif._solvers import chord_refits

    prob = make_problem("binomial", n=150, d=50, penalty=1.0)
    prob.hessian  # noqa: B018  (cached first, so that every call below is a refresh)
    refreshes = []
    original = prob.hessian_at
    monkeypatch.setattr(prob, "hessian_at", lambda *a, **k: refreshes.append(1) or original(*a, **k))
    sets = [np.sort(np.random.default_rng(s).choice(150, size=15, replace=False)) for s in range(4)]
    together = list(chord_refits(prob, sets))
    assert refreshes                                   # the refresh path is exercised
    for index, result in zip(sets, together):
        alone = chord_refit(prob, index)
        assert result.converged and result.n_iter == alone.n_iter
        np.testing.assert_allclose(result.theta, alone.theta, rtol=0, atol=1e-12)


@pytest.mark.parametrize("family, scaling, intercept, weights", [c.values for c in CONFIGS[::3]])
def test_batched_newton_steps_for_sets_of_at_least_p_samples(family, scaling, intercept, weights):
    """k >= p: the leave-out Hessians formed directly give the dense solve and the single-set route."""
    prob = make_problem(family, n=80, d=4, weights=weights, scaling=scaling, intercept=intercept, seed=7)
    rng = np.random.default_rng(8)
    sets = [rng.choice(80, size=prob.n_params + extra, replace=False) for extra in (0, 0, 3, 3, 3, 9)]
    batch = params_change_batch(prob, sets, "newton")
    for got, index in zip(batch, sets):
        np.testing.assert_allclose(got, naive.newton_step(prob, index), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(got, params_change_one(prob, index, "newton"), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("intercept", [True, False])
def test_uniform_per_sample_shares_need_no_eigendecomposition(family, intercept):
    """Equal weights under the per-sample penalty: leverages, IF and RIF come from Cholesky factors
    alone (H and H - pi P^T P) and equal the generalised-eigenbasis route."""
    prob = make_problem(family, n=70, d=5, scaling="per_sample", intercept=intercept, seed=11)
    sets = [np.arange(k, k + 4) for k in range(0, 40, 4)]
    rif_batch = params_change_batch(prob, sets, "rif")
    loo = loo_params_change(prob, "rif")
    eta = self_eta_change(prob, "rif")
    prob.leverage, params_change_batch(prob, sets, "if")
    assert "factor" not in prob.__dict__ and prob.uniform_penalty_share is not None
    eigen = make_problem(family, n=70, d=5, scaling="per_sample", intercept=intercept, seed=11)
    eigen.__dict__["uniform_penalty_share"] = None           # force the shifted eigenbasis
    np.testing.assert_allclose(rif_batch, params_change_batch(eigen, sets, "rif"), rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(loo, loo_params_change(eigen, "rif"), rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(eta, self_eta_change(eigen, "rif"), rtol=1e-9, atol=1e-13)
    for got, index in zip(rif_batch, sets):
        np.testing.assert_allclose(got, naive.rescaled_influence(prob, index), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("family", FAMILIES)
def test_newton_steps_and_refits_with_few_penalty_shifts_use_shifted_choleskys(family):
    """Equal weights, few set sizes: NS and refits factorise H - delta_S P^T P per size instead of
    building the generalised eigenbasis, and agree with it and with the dense solve."""
    prob = make_problem(family, n=70, d=5, scaling="per_sample", seed=12)
    rng = np.random.default_rng(13)
    sets = [rng.choice(70, size=k, replace=False) for k in (3, 3, 3, 7, 7, 9)]   # 9 >= p: direct route
    ns, refit = params_change_batch(prob, sets, "newton"), params_change_batch(prob, sets, "retrain")
    one = params_change_one(prob, sets[0], "newton")
    assert "factor" not in prob.__dict__
    eigen = make_problem(family, n=70, d=5, scaling="per_sample", seed=12)
    eigen.factor                                                  # built first: the eigenbasis route
    np.testing.assert_allclose(ns, params_change_batch(eigen, sets, "newton"), rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(refit, params_change_batch(eigen, sets, "retrain"), rtol=1e-8, atol=1e-11)
    np.testing.assert_allclose(one, ns[0], rtol=1e-10, atol=1e-14)
    for got, index in zip(ns, sets):
        np.testing.assert_allclose(got, naive.newton_step(prob, index), rtol=1e-9, atol=1e-12)
    # many distinct sizes: one eigenbasis instead of a factorisation per size
    many = [rng.choice(70, size=k, replace=False) for k in range(1, 8)]
    params_change_batch(prob, many, "newton")
    assert "factor" in prob.__dict__
    # ... also when the sets come one at a time
    loop = make_problem(family, n=70, d=5, scaling="per_sample", seed=12)
    for index in many:
        params_change_one(loop, index, "newton")
    assert "factor" in loop.__dict__
