"""Certificates of converged refits through the Hessian at their own result (rif._certify_refit)."""

from pathlib import Path

import numpy as np
import pytest
from conftest import certify_data

from rif import GLMProblem, MultinomialProblem
from rif import _certify_refit

DATA = Path(__file__).parent / "data"


def _far_start_problem(tol=1e-10):
    data = np.load(DATA / "softmax_far_start.npz")
    problem = MultinomialProblem(data["X"], data["y"], 6, penalty=float(data["penalty"]),
                                 sample_weight=data["sample_weight"], tol=tol)
    return problem, data["removed"]


def _softmax(n, d, K, seed, penalty, intercept):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) * 2.0
    logits = X @ rng.standard_normal((d, K)) * 2.0
    y = np.array([rng.choice(K, p=np.exp(row - row.max()) / np.exp(row - row.max()).sum()) for row in logits])
    y[:K] = np.arange(K)
    return MultinomialProblem(X, y, K, penalty=penalty, fit_intercept=intercept, tol=1e-13)


@pytest.mark.parametrize("case", ["binomial", "poisson", "gaussian", "softmax", "softmax-no-intercept"])
def test_the_bound_holds_around_the_optimum(case):
    """At points theta* + e near a tightly converged refit theta*, the bound of ||e||_2 is never
    below ||e||_2, and within a few times it where it is certified (s delta small); at theta*
    itself it is about 0."""
    rng = np.random.default_rng(7)
    if case.startswith("softmax"):
        problem = _softmax(120, 4, 3, 3, 0.05, case == "softmax")
    else:
        X, y = certify_data(case, 150, 6, 4)
        problem = GLMProblem(X, y, case, penalty=0.05, tol=1e-13)
    index = np.sort(3 + rng.choice(problem.n_samples - 3, 20, replace=False))
    truth = problem.params_change(index, "retrain")
    exact = _certify_refit.refit_bound(problem, index, truth)
    assert exact is not None and exact[0] < 1e-8 * max(1.0, np.linalg.norm(truth))
    certified = 0
    for size in (1e-6, 1e-4, 1e-2, 1e-1, 1.0):
        for _ in range(4):
            move = rng.standard_normal(problem.n_params)
            if case.startswith("softmax") and problem.fit_intercept:
                move[-problem.n_classes:] -= move[-problem.n_classes:].mean()     # no move along N
            move *= size / np.linalg.norm(move)
            found = _certify_refit.refit_bound(problem, index, truth + move)
            if found is None:
                continue
            certified += 1
            assert found[0] >= size * (1 - 1e-9) - exact[0], (case, size, found)
            assert found[1] >= 0.0
    assert certified >= 8                                   # the small moves at least


def test_a_softmax_refit_far_from_theta_hat_is_certified(monkeypatch):
    """tests/data/softmax_far_start.npz: removing 23 of 109 samples moves theta by about 70, where
    H_{-S}(theta^) says nothing of the curvature; the refit's last Hessian (or its own) certifies it."""
    problem, removed = _far_start_problem()
    tight, _ = _far_start_problem(1e-12)
    truth = tight.params_change(removed, "retrain")
    result = problem.params_change([removed], "retrain", certify=True)
    assert result.certified[0] and result.reason[0] == ""
    error = np.linalg.norm(result.value[0] - truth)
    # (the bound is the gradient's worst-case rounding over a curvature of 2e-4: 3e-8 of the change)
    assert error <= result.bound[0] + 1e-9 and result.bound[0] < 1e-7 * np.linalg.norm(truth)
    # without this route (through the refit's own Hessian or its last one) the same refit is not certified
    monkeypatch.setattr(_certify_refit, "refit_bound", lambda problem, index, dtheta, anchor=None: None)
    assert not problem.params_change([removed], "retrain", certify=True).certified[0]


def test_auto_certifies_the_refits_it_returns_on_digits():
    """Softmax regression on digits (1797 x 64, K = 10): the 5 % sets move too far for the leave-out
    route to certify their refits; method='auto' now returns each refit with its bound."""
    from sklearn.datasets import load_digits
    from sklearn.preprocessing import StandardScaler

    X, y = load_digits(return_X_y=True)
    problem = MultinomialProblem(StandardScaler().fit_transform(X), y, 10, penalty=1.0, copy_X=False)
    rng = np.random.default_rng(1)
    sets = [np.sort(10 + rng.choice(1787, 89, replace=False)) for _ in range(2)]
    result = problem.params_change(sets, "auto", certify=True, rtol=0.05)
    assert np.all(result.certified)
    assert np.all(result.bound <= 0.05 * np.linalg.norm(result.value, axis=1))


def test_rows_read_in_chunks_are_left_to_the_other_routes():
    class Chunked:
        fit_intercept = True
        X = object()

    assert _certify_refit._row_norms(Chunked()) is None


# -- the computed gradient's rounding (rif._rounding) ------------------------------------------------------
def _exact_gradient(problem, theta, weights):
    """grad F_S(theta) in extended precision (long double), as an independent route."""
    from scipy.special import expit

    X = np.asarray(problem.X, dtype=np.longdouble)
    if problem.fit_intercept:
        X = np.hstack([X, np.ones((len(X), 1), dtype=np.longdouble)])
    eta = X @ theta.astype(np.longdouble)
    family = problem.family.name
    if family == "binomial":
        d1 = np.asarray(expit(eta.astype(float)), dtype=np.longdouble)
        d1 = 1 / (1 + np.exp(-eta)) - problem.y
    elif family == "poisson":
        d1 = np.exp(eta) - problem.y
    else:
        d1 = eta - problem.y
    grad = X.T @ (weights.astype(np.longdouble) * d1)
    return grad + problem.penalty_total(weights) * problem.penalty_diag * theta.astype(np.longdouble)


@pytest.mark.parametrize("family", ["binomial", "poisson", "gaussian"])
def test_the_gradient_error_bound_covers_the_rounding(family):
    """At a converged refit, where the computed gradient is nothing but rounding, ||fl(g) - g|| (g in
    long double) stays below rif._rounding's bound, for nearly interpolating and for plain fits."""
    from rif._certify import certifier
    from rif._rounding import scalar_gradient_error

    for n, d, penalty in ((30, 20, 1e-4), (300, 5, 1.0)):
        X, y = certify_data(family, n, d, 11, scale=4.0)
        problem = GLMProblem(X, y, family, penalty=penalty, tol=1e-13)
        index = np.arange(3, 6)
        weights = problem.sample_weight.copy()
        weights[index] = 0.0
        theta = problem.theta + problem.params_change(index, "retrain")
        _, computed = problem.value_gradient(theta, weights)
        gap = computed - _exact_gradient(problem, theta, weights).astype(float)
        hessian = problem.hessian_at(theta, weights)
        low = float(np.linalg.eigvalsh(hessian)[0]) * (1 - 1e-9)
        eta = problem._eta_at(theta)
        _, d1, d2 = problem.family.derivatives(eta, problem.y)
        bound, bound_h = scalar_gradient_error(problem, weights, theta, weights * np.abs(d1), weights * d2, np.abs(eta),
                                               0.0, certifier(problem).M, low, weights * d2)
        assert np.linalg.norm(gap) <= bound, (family, n, gap, bound)
        assert np.sqrt(gap @ np.linalg.solve(hessian, gap)) <= bound_h <= bound / np.sqrt(low) * (1 + 1e-12)


def test_a_certified_effect_counts_the_gradients_rounding():
    """Found by fuzzing (tests/data/softmax_rounding.npz: 18 samples, 33 parameters, lambda = 4e-3):
    the influence function's gradient at the estimate is 5.6e-13, and its rounding 1.1e-14; read as
    exact, it made the certified bound of the decision effect 4 % short of the true error."""
    data = np.load(DATA / "softmax_rounding.npz")
    problem = MultinomialProblem(data["X"], data["y"], 3, penalty=float(data["penalty"]),
                                 sample_weight=data["sample_weight"], tol=1e-12)
    removed = [data["removed"]]
    truth = problem.params_change(removed, "retrain")
    exact = problem.effect(removed, "decision", data["X_eval"], data["y_eval"], dtheta=truth)
    for method in ("if", "rif", "newton"):
        result = problem.effect(removed, "decision", data["X_eval"], data["y_eval"], method=method, certify=True)
        assert result.certified[0] and abs(result.value[0] - exact[0]) <= result.bound[0], (method, result)


def test_the_tilt_of_a_rounding_error():
    from rif._rounding import tilt

    assert tilt(0.0, 1.0, lambda r: 0.0) == 0.0
    assert tilt(1e-12, 0.5, lambda r: 1.0) == pytest.approx(2e-12)
    assert tilt(1e-12, 0.5, lambda r: np.exp(-3.0 * r)) == pytest.approx(2e-12 * np.exp(1.5))
    assert tilt(1e-12, 0.5, lambda r: 0.0) == np.inf
    assert tilt(0.1, 0.0, lambda r: np.exp(-50.0 * r)) == np.inf          # the path would leave the region


def test_exponential_tilts_are_the_tilt_of_exp_minus_s_r_set_by_set():
    from rif._rounding import exponential_tilts, tilt

    rng = np.random.default_rng(5)
    errors = np.concatenate([10.0 ** rng.uniform(-16, 0, 200), [0.0, 0.0, np.inf, np.nan, 1e-12, 0.1]])
    radii = np.concatenate([10.0 ** rng.uniform(-6, 1, 200), [0.5, np.inf, 0.5, 0.5, 0.5, 0.0]])
    slopes = np.concatenate([rng.choice([0.0, 1.0, 10.0, 50.0], 200), [1.0, 1.0, 1.0, 1.0, 800.0, 50.0]])
    got = exponential_tilts(errors, radii, slopes)
    want = [tilt(e, r, lambda t, s=s: np.exp(-s * t)) if np.isfinite(r) or e == 0.0 else np.inf
            for e, r, s in zip(errors, radii, slopes)]
    assert np.isfinite(got).sum() > 100 and np.isinf(got).sum() > 3
    np.testing.assert_array_equal(got, want)


def test_the_softmax_gradient_error_bound_covers_the_rounding():
    """The softmax bound of fl(g) - g (both norms, at the refit itself and through theta^'s blocks)
    against the gradient in long double, at a nearly interpolating and at a plain fit."""
    from rif._certify import certifier

    for n, d, penalty in ((40, 12, 1e-2), (300, 4, 1.0)):
        problem = _softmax(n, d, 4, 5, penalty, True)
        index = np.arange(5, 8)
        weights = problem.sample_weight.copy()
        weights[index] = 0.0
        dtheta = problem.params_change(index, "retrain")
        theta = problem.theta_block + problem.from_public(dtheta)
        _, computed = problem.value_gradient(theta, weights)
        X = np.asarray(problem.design, dtype=np.longdouble)
        eta = X @ theta.reshape(4, -1).astype(np.longdouble).T
        prob = np.exp(eta - eta.max(axis=1, keepdims=True))
        prob /= prob.sum(axis=1, keepdims=True)
        prob[np.arange(n), problem.y] -= 1
        exact = (prob * weights[:, None]).T @ X
        exact += problem.penalty * theta.reshape(4, -1) * problem.penalty_diag[:problem.p1]
        gap = computed - exact.ravel().astype(float)
        hessian = problem.hessian_at(theta, weights)
        low = float(np.linalg.eigvalsh(hessian)[0]) * (1 - 1e-9)
        p_at = problem.eta_at(theta)
        p_at = np.exp(p_at - p_at.max(axis=1, keepdims=True))
        p_at /= p_at.sum(axis=1, keepdims=True)
        spread = np.sum(p_at * (1 - p_at), axis=1)
        cert = certifier(problem)
        bound, bound_h = cert.gradient_error(index, dtheta, weights, None, 1.0, (spread, low))
        assert np.linalg.norm(gap) <= bound
        assert np.sqrt(gap @ np.linalg.solve(hessian, gap)) <= bound_h
        # through theta^'s blocks: the move of each span from theta^ bounds the curvature's growth
        alpha = cert.M * np.ptp(problem.eta_at(theta) - problem.predictors, axis=1)
        through, through_h = cert.gradient_error(index, dtheta, weights, alpha, 1.0)
        assert np.linalg.norm(gap) <= through
        # through an anchor theta_j's blocks (a refit's last Hessian), in the norm of H^(theta_j)^{-1}
        from rif._certify_refit import _softmax_spread

        move = np.random.default_rng(1).standard_normal(theta.shape)
        anchor = theta + 0.3 * move / np.linalg.norm(move)
        at_anchor = problem.hessian_at(anchor, weights)
        low_anchor = float(np.linalg.eigvalsh(at_anchor)[0]) * (1 - 1e-9)
        eta_anchor = problem.eta_at(anchor)
        alpha = cert.M * np.ptp(problem.eta_at(theta) - eta_anchor, axis=1)
        _, anchored_h = cert.gradient_error(index, dtheta, weights, alpha, 1.0,
                                            anchor=(weights * _softmax_spread(problem, eta_anchor), low_anchor))
        assert np.sqrt(gap @ np.linalg.solve(at_anchor, gap)) <= anchored_h


# -- through the refit's last Hessian (an anchor away from the estimate) ------------------------------------
@pytest.mark.parametrize("case", ["binomial", "binomial-no-intercept", "poisson-offset", "gaussian", "softmax",
                                  "softmax-no-intercept"])
def test_the_bound_through_an_anchor_holds(case):
    """With A = grad^2 F_S(theta_j) at an anchor theta_j away from the estimate (the refit's last
    Hessian, or H_{-S}(theta^)), the bound of ||e||_2 at theta* + e is never below ||e||_2, for anchors
    from theta* itself to far from it; at theta* it is about 0."""
    from rif._certify import certifier
    from rif._solvers import cholesky_factor

    rng = np.random.default_rng(11)
    family = case.split("-")[0]
    softmax = family == "softmax"
    if softmax:
        problem = _softmax(120, 4, 3, 3, 0.05, case == "softmax")
    else:
        X, y = certify_data(family, 150, 6, 5)
        options = {"fit_intercept": case != "binomial-no-intercept"}
        if case == "poisson-offset":
            options["offset"] = rng.uniform(-0.5, 0.5, len(y))
        problem = GLMProblem(X, y, family, penalty=0.05, tol=1e-13, **options)
    index = np.sort(rng.choice(problem.n_samples, 20, replace=False))
    weights = problem.sample_weight.copy()
    weights[index] = 0.0
    truth = problem.params_change(index, "retrain")
    at_truth = problem.theta_block + problem.from_public(truth) if softmax else problem.theta + truth

    def no_null_move(move):
        if softmax and problem.fit_intercept:
            move[-problem.n_classes:] -= move[-problem.n_classes:].mean()     # no move along N
        return move

    checked = 0
    for anchor_size in (0.0, 1e-2, 0.3, "theta^"):
        if anchor_size == "theta^":
            # H_{-S}(theta^) from the set's leave-out factor, as method='auto' uses it
            anchor = _certify_refit.leave_out_anchor(problem, certifier(problem).factor(index))
        else:
            anchor_move = rng.standard_normal(problem.n_params)
            anchor_move = problem.from_public(no_null_move(anchor_move)) if softmax else anchor_move
            anchor_theta = at_truth + anchor_size * anchor_move / np.linalg.norm(anchor_move)
            anchor = (anchor_theta, cholesky_factor(problem.hessian_at(anchor_theta, weights), "anchor"))
        exact = _certify_refit.refit_bound(problem, index, truth, anchor)
        if exact is None and softmax and anchor_size == "theta^":
            continue        # (removing this set moves some softmax predictor's span by 11 from theta^: too far)
        assert exact is not None and exact[0] < 1e-7 * max(1.0, np.linalg.norm(truth)), (case, anchor_size, exact)
        for size in (1e-6, 1e-3, 1e-1, 1.0):
            move = no_null_move(rng.standard_normal(problem.n_params))
            move *= size / np.linalg.norm(move)
            found = _certify_refit.refit_bound(problem, index, truth + move, anchor)
            if found is None:
                assert size > 1e-6, (case, anchor_size, size)         # the smallest moves are always certified
                continue
            checked += 1
            assert found[0] >= size * (1 - 1e-9) - exact[0], (case, anchor_size, size, found)
    assert checked >= 5


def test_an_anchor_too_far_for_its_curvature_bound_proves_nothing_quietly():
    """Through an anchor whose linear predictors lie thousands away from the estimate's, the
    curvature bound e^{-m} underflows (e^m overflows): no bound, and no floating-point warning."""
    from rif._solvers import cholesky_factor

    X, y = certify_data("binomial", 150, 6, 5)
    problem = GLMProblem(X, y, "binomial", penalty=0.05, tol=1e-13)
    index = np.arange(3, 13)
    weights = problem.sample_weight.copy()
    weights[index] = 0.0
    truth = problem.params_change(index, "retrain")
    anchor_theta = problem.theta + truth + 2000.0 * np.ones(problem.n_params)
    anchor = (anchor_theta, cholesky_factor(problem.hessian_at(problem.theta + truth, weights), "anchor"))
    with np.errstate(all="raise"):
        assert _certify_refit.refit_bound(problem, index, truth, anchor) is None


def test_refits_that_refresh_their_hessian_are_certified_through_it(monkeypatch):
    """Where removing a set moves theta too far for H_{-S}(theta^) to say anything (p ~ n / 3, a
    small penalty), the chord refits refresh their Hessian; the certificate of each result then
    uses the last one (one pass), not a Hessian of its own."""
    rng = np.random.default_rng(2)
    n, d = 240, 80
    X = rng.standard_normal((n, d))
    y = (X @ rng.standard_normal(d) * 0.5 + rng.logistic(size=n) > 0).astype(float)
    problem = GLMProblem(X, y, "binomial", penalty=1e-3, penalty_scaling="per_sample", fit_intercept=False,
                         tol=1e-10)
    sets = [np.sort(rng.choice(n, 12, replace=False)) for _ in range(6)]
    own, anchored = [], []
    original = _certify_refit.refit_bound

    def counted(problem, index, dtheta, anchor=None):
        (own if anchor is None else anchored).append(len(index))
        return original(problem, index, dtheta, anchor)

    from rif import _certify_dense

    monkeypatch.setattr(_certify_refit, "refit_bound", counted)
    # (the route of larger shapes: this one is small enough for exact Hessians at every estimate)
    monkeypatch.setattr(_certify_dense, "applies", lambda problem: False)
    result = problem.params_change(sets, "retrain", certify=True)
    assert anchored and not own
    assert np.all(result.certified)
    # plain refits do not keep their p x p Hessians (only the certificates ask for them)
    from rif._solvers import chord_refits

    assert all(r.anchor is None for r in chord_refits(problem, sets))
    assert any(r.anchor is not None for r in chord_refits(problem, sets, keep_anchor=True))
    # method='auto' at rtol 1e-6 refits them all too, and needs no Hessian of their own either
    del anchored[:]
    auto = problem.params_change(sets, "auto", certify=True, rtol=1e-6)
    assert anchored and not own and np.all(auto.certified)
    assert np.all(auto.bound <= 1e-6 * np.linalg.norm(auto.value, axis=1))
    weights = problem.sample_weight
    from rif._solvers import newton_refit

    for index, value, bound in zip(sets, result.value, result.bound):
        w = weights.copy()
        w[index] = 0.0
        tight = newton_refit(problem, w, problem.theta + value, tol=1e-14).theta - problem.theta
        assert np.linalg.norm(value - tight) <= bound


@pytest.mark.parametrize("case", ["binomial-loss", "binomial-proba", "poisson-loss", "gaussian-loss",
                                  "binomial-decision", "softmax-loss", "softmax-proba", "softmax-decision"])
def test_an_effect_over_a_ball_is_bounded(case):
    """A certificate that only holds theta* within a 2-norm ball around theta_e (a refit's) bounds
    |f(theta) - f(theta_e)| for every theta in the ball: checked at random points on its sphere."""
    from rif._certify import _SetCertificate, certifier

    family, target = case.split("-")
    rng = np.random.default_rng(3)
    if family == "softmax":
        problem = _softmax(100, 4, 3, 1, 0.1, True)
        X_eval, y_eval = rng.standard_normal((15, 4)) * 2.0, rng.integers(0, 3, 15)
    else:
        X, y = certify_data(family, 100, 4, 2)
        problem = GLMProblem(X, y, family, penalty=0.1)
        X_eval, y_eval = X[:15] + 0.3, y[:15]
    f = problem.effect([np.arange(3)], target, X_eval, y_eval, dtheta=np.zeros((1, problem.n_params)))
    assert f[0] == 0.0
    center = rng.standard_normal(problem.n_params) * 0.3
    for radius in (1e-6, 1e-2, 0.5):
        cert = _SetCertificate(radius, np.inf, True, "", theta_e=problem.theta + center)
        from rif._attribution import operations

        tgt = operations(problem).make_target(problem, target, X_eval, y_eval)
        bound = certifier(problem)._ball_effect(cert, tgt)
        worst = 0.0
        for _ in range(30):
            move = rng.standard_normal(problem.n_params)
            move *= radius / np.linalg.norm(move)
            change = problem.effect([np.arange(3)], target, X_eval, y_eval, dtheta=np.array([center + move]))[0] \
                - problem.effect([np.arange(3)], target, X_eval, y_eval, dtheta=np.array([center]))[0]
            worst = max(worst, abs(change))
        assert worst <= bound * (1 + 1e-9) + 1e-14, (case, radius, worst, bound)
        if family != "softmax":
            # a loose certificate's ball gives a finite bound for every family (not only where phi' is bounded)
            loose = _SetCertificate(radius, np.inf, False, "loose", theta_e=problem.theta + center)
            loose_bound = certifier(problem)._loose_effect(loose, tgt)
            assert np.isfinite(loose_bound) and worst <= loose_bound * (1 + 1e-9) + 1e-14, (case, loose_bound)
        if radius <= 1e-2:                          # and, for small balls (a refit's), not far above it
            assert bound < 50 * worst + 1e-12, (case, radius, worst, bound)


def test_effects_of_far_moved_refits_are_certified(monkeypatch):
    """The refits' effects (method='retrain', certify=True) where the leave-out route cannot bound
    them: through the certificate of each refit's parameters, over the ball it proves."""
    from rif import _certify_dense
    from rif._solvers import newton_refit

    monkeypatch.setattr(_certify_dense, "applies", lambda problem: False)
    rng = np.random.default_rng(2)
    n, d = 240, 80
    X = rng.standard_normal((n, d))
    y = (X @ rng.standard_normal(d) * 0.5 + rng.logistic(size=n) > 0).astype(float)
    problem = GLMProblem(X, y, "binomial", penalty=1e-3, penalty_scaling="per_sample", fit_intercept=False)
    sets = [np.sort(rng.choice(n, 12, replace=False)) for _ in range(4)]
    X_eval = rng.standard_normal((30, d))
    y_eval = (rng.random(30) < 0.5).astype(float)
    tight = []
    for index, value in zip(sets, problem.params_change(sets, "retrain")):
        w = problem.sample_weight.copy()
        w[index] = 0.0
        tight.append(newton_refit(problem, w, problem.theta + value, tol=1e-14).theta - problem.theta)
    for target in ("loss", "proba", "decision"):
        result = problem.effect(sets, target, X_eval, y_eval, method="retrain", certify=True)
        exact = problem.effect(sets, target, X_eval, y_eval, dtheta=np.array(tight))
        assert np.all(result.certified), (target, result.reason)
        assert np.all(np.abs(result.value - exact) <= result.bound), target
        assert np.all(result.bound < 1e-5 * np.abs(exact)), target
    # without the refits' last Hessians: through the Hessian at each result
    monkeypatch.setattr(_certify_refit, "fill_anchored", lambda problem, sets, estimates, certs, anchors, *rest: certs)
    result = problem.effect(sets, "loss", X_eval, y_eval, method="retrain", certify=True)
    exact = problem.effect(sets, "loss", X_eval, y_eval, dtheta=np.array(tight))
    assert np.all(result.certified) and np.all(np.abs(result.value - exact) <= result.bound)
    monkeypatch.undo()
    monkeypatch.setattr(_certify_dense, "applies", lambda problem: False)
    # softmax: tests/data/softmax_far_start.npz
    problem, removed = _far_start_problem()
    tight_problem, _ = _far_start_problem(1e-12)
    truth = tight_problem.params_change(removed, "retrain")
    X_eval, y_eval = problem.design[:20, :-1] + 0.1, np.arange(20) % 6
    for target in ("loss", "proba", "decision"):
        result = problem.effect([removed], target, X_eval, y_eval, method="retrain", certify=True)
        exact = problem.effect([removed], target, X_eval, y_eval, dtheta=truth[None])
        assert result.certified[0], (target, result.reason)
        assert abs(result.value[0] - exact[0]) <= result.bound[0] + 1e-9, target


def test_the_rounding_bound_counts_the_row_parts_of_the_sum():
    """A dense X is summed in row parts (rif._design.loss_gradient(s)): each gradient coordinate
    passes through ceil(n / parts) + parts partial sums, not n. The bound with that length still
    covers the long-double error at a converged refit, and is about 16x smaller at n = 20000."""
    from rif._certify import certifier
    from rif._rounding import scalar_gradient_error, summation_length

    X, y = certify_data("binomial", 20000, 5, 3, scale=4.0)
    problem = GLMProblem(X, y, "binomial", penalty=1.0, tol=1e-13)
    assert summation_length(problem) == 1250 + 16
    assert summation_length(GLMProblem(np.asfortranarray(X), y, "binomial", penalty=1.0)) == 20000
    index = np.arange(3, 40)
    weights = problem.sample_weight.copy()
    weights[index] = 0.0
    theta = problem.theta + problem.params_change(index, "retrain")
    _, computed = problem.value_gradient(theta, weights)
    evaluated = certifier(problem).evaluate([index], [theta - problem.theta])[0][0]
    exact = _exact_gradient(problem, theta, weights).astype(float)
    eta = problem._eta_at(theta)
    _, d1, d2 = problem.family.derivatives(eta, problem.y)
    args = (problem, weights, theta, weights * np.abs(d1), weights * d2, np.abs(eta), 0.0, 1.0, 1.0, weights * d2, 1.0)
    parted = scalar_gradient_error(*args, summation_length(problem))[0]
    anywise = scalar_gradient_error(*args)[0]
    for gap in (computed - exact, evaluated - exact):
        assert np.linalg.norm(gap) <= parted
    assert parted < anywise / 10


def test_auto_on_a_nearly_separable_problem_refits_from_theta_hat_where_its_estimates_are_worse(monkeypatch):
    """Found by fuzzing (tests/data/binomial_far_start.npz: 254 x 45, no intercept, lambda = 1.3e-4):
    the chord points of two sets lie where the objective is far above theta^'s, so the refits that
    auto started there did not converge (one 8e4 away from the refit), and one set's loose bound was
    NaN (a linear predictor's move past floats, times a zero curvature). Now the refits start at
    theta^ there, and the bounds are finite."""
    import warnings

    from rif import _certify_dense

    data = np.load(DATA / "binomial_far_start.npz")
    problem = GLMProblem(data["X"], data["y"], "binomial", penalty=float(data["penalty"]), fit_intercept=False,
                         sample_weight=data["sample_weight"])
    sets = [data["set0"], data["set1"], data["set2"]]
    monkeypatch.setattr(_certify_dense, "applies", lambda problem: False)     # (the route of larger shapes)
    with warnings.catch_warnings():
        warnings.simplefilter("error")              # no unconverged refit, no overflow turned NaN
        result = problem.params_change(sets, "auto", certify=True, rtol=1e-6)
    truth = problem.params_change(sets, "retrain")
    assert np.all(result.certified) and not np.any(np.isnan(result.bound))
    assert np.all(np.linalg.norm(result.value - truth, axis=1) <= result.bound + 1e-9)
