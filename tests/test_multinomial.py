"""Multinomial logistic regression against independent routes: dense pseudo-inverses, finite
differences, scikit-learn's refits, and the binary route at K = 2."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression

import rif
from rif import GLMProblem
from rif._multinomial import MultinomialProblem, softmax_loss


def _data(n, d, K, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    B = rng.standard_normal((K, d))
    logits = X @ B.T
    prob = np.exp(logits - logits.max(axis=1, keepdims=True))
    prob /= prob.sum(axis=1, keepdims=True)
    y = np.array([rng.choice(K, p=row) for row in prob])
    y[:K] = np.arange(K)                                 # every class present
    return X, y


def _problem(n=50, d=4, K=3, seed=0, penalty=0.5, intercept=True, weights=None, sparse=False):
    X, y = _data(n, d, K, seed)
    if sparse:
        X = sp.csr_matrix(np.where(np.abs(X) > 0.6, X, 0.0))
    return MultinomialProblem(X, y, K, penalty=penalty, fit_intercept=intercept, sample_weight=weights,
                              tol=1e-13), X, y


# -- a dense reference, written independently of rif -------------------------------------
def _dense_parts(problem, weights):
    """Per-sample gradients (n, P) and curvature blocks (n, P, P) in block order, and the penalty."""
    Xt = problem.design.toarray() if sp.issparse(problem.design) else problem.design
    K = problem.n_classes
    eta = Xt @ problem.theta_block.reshape(K, -1).T
    prob = np.exp(eta - eta.max(axis=1, keepdims=True))
    prob /= prob.sum(axis=1, keepdims=True)
    onehot = np.eye(K)[problem.y]
    grads = np.stack([np.kron(weights[i] * (prob[i] - onehot[i]), Xt[i]) for i in range(len(Xt))])
    blocks = np.stack([weights[i] * np.kron(np.diag(prob[i]) - np.outer(prob[i], prob[i]), np.outer(Xt[i], Xt[i]))
                       for i in range(len(Xt))])
    penalty = problem.penalty * np.diag(problem.penalty_diag)
    return grads, blocks, penalty


def _pinv_solve(matrix, b):
    return np.linalg.pinv(matrix, rcond=1e-10, hermitian=True) @ b


def _reference(problem, index):
    w = problem.sample_weight
    grads, blocks, penalty = _dense_parts(problem, w)
    H = blocks.sum(axis=0) + penalty
    g = grads[index].sum(axis=0)
    H_out = H - blocks[index].sum(axis=0)
    return {
        "if": _pinv_solve(H, g),
        "newton": _pinv_solve(H_out, g),
        "rif": sum(_pinv_solve(H - blocks[i], grads[i]) for i in index),
    }


@pytest.mark.parametrize("intercept", [True, False])
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("K", [3, 5])
def test_estimators_match_the_dense_pseudo_inverse(intercept, sparse, K):
    weights = np.random.default_rng(3).uniform(0.5, 2.0, 60)
    problem, _, _ = _problem(n=60, d=4, K=K, seed=K, intercept=intercept, weights=weights, sparse=sparse)
    index = np.array([4, 9, 17, 30])
    want = _reference(problem, index)
    for method in ("if", "newton", "rif"):
        got = problem.params_change(index, method)
        ref = problem.to_public(want[method][None])[0]
        np.testing.assert_allclose(got, ref, rtol=1e-8, atol=1e-11 * np.abs(ref).max(), err_msg=method)


def test_unpenalised_fit_is_the_minimum_norm_solution():
    problem, _, _ = _problem(n=80, d=3, K=3, seed=8, penalty=0.0)
    index = np.array([1, 2, 40])
    want = _reference(problem, index)
    for method in ("if", "newton", "rif"):
        ref = problem.to_public(want[method][None])[0]
        np.testing.assert_allclose(problem.params_change(index, method), ref, rtol=1e-7,
                                   atol=1e-10 * np.abs(ref).max())
    # the class sums of the coefficients and intercepts stay zero
    block = problem.theta_block.reshape(3, -1)
    np.testing.assert_allclose(block.sum(axis=0), 0.0, atol=1e-10)


def test_objective_and_gradient_against_a_dense_closed_form_on_any_number_of_threads():
    """The row-parallel pass (dense X~, parts on rif's threads) and the sparse route's two products
    both give sum_i w_i (logsumexp(eta_i) - eta_{i, y_i}) + lambda/2 ||B||^2 and sum_i g~_i + lambda B,
    zero-weight rows included; the parts make the result identical however many threads run."""
    problem, X, y = _problem(n=5000, d=6, K=4, seed=3)
    weights = np.random.default_rng(3).uniform(0.0, 2.0, problem.n_samples)
    weights[::7] = 0.0
    theta = problem.theta_block + 0.1 * np.random.default_rng(4).standard_normal(problem.n_params)
    Xt = np.column_stack([X, np.ones(len(X))])
    Theta = theta.reshape(4, -1)
    eta = Xt @ Theta.T
    top = eta.max(axis=1, keepdims=True)
    log_norm = top[:, 0] + np.log(np.exp(eta - top).sum(axis=1))
    prob = np.exp(eta - log_norm[:, None])
    B = Theta[:, :-1]
    want_value = weights @ (log_norm - eta[np.arange(len(y)), y]) + 0.5 * problem.penalty * np.sum(B ** 2)
    resid = weights[:, None] * (prob - np.eye(4)[y])
    want_grad = resid.T @ Xt
    want_grad[:, :-1] += problem.penalty * B
    value, grad = problem.value_gradient(theta, weights)
    np.testing.assert_allclose(value, want_value, rtol=1e-13)
    np.testing.assert_allclose(grad, want_grad.ravel(), rtol=1e-12, atol=1e-12 * np.abs(want_grad).max())
    with rif.limit_threads(1):
        one = problem.value_gradient(theta, weights)
    assert one[0] == value and np.array_equal(one[1], grad)
    sparse, _, _ = _problem(n=5000, d=6, K=4, seed=3, sparse=True)
    Xs = sparse.design.toarray()
    dense = MultinomialProblem(Xs[:, :-1], y, 4, sparse.theta, penalty=0.5, tol=1e-13)
    got_sparse, got_dense = sparse.value_gradient(theta, weights), dense.value_gradient(theta, weights)
    np.testing.assert_allclose(got_sparse[0], got_dense[0], rtol=1e-13)
    np.testing.assert_allclose(got_sparse[1], got_dense[1], rtol=1e-12, atol=1e-12 * np.abs(got_dense[1]).max())


def test_curvature_blocks_keep_a_nearly_certain_samples_curvature():
    """A_i = w_i (diag p_i - p_i p_i^T) entry by entry within rounding of its own value, also where the
    most probable class has p = 1 to working precision (p - p^2 would cancel to 0 or below): the
    diagonal against p_c sum_{l != c} p_l."""
    rng = np.random.default_rng(2)
    n, d, K = 120, 3, 4
    X = rng.normal(size=(n, d))
    B = 3.0 * rng.normal(size=(d, K))
    y = np.argmax(X @ B + rng.gumbel(size=(n, K)), axis=1)
    y[:K] = np.arange(K)
    X[K:K + 5] *= 60.0                          # far out: nearly certain of their class
    y[K:K + 5] = np.argmax(X[K:K + 5] @ B, axis=1)
    problem = MultinomialProblem(X, y, K, penalty=0.1, sample_weight=rng.uniform(0.5, 2.0, n))
    p, w = problem.proba, problem.sample_weight
    assert p.max() == 1.0
    others = np.array([[np.sum(np.delete(row, c)) for c in range(K)] for row in p])
    diagonal = np.einsum("icc->ic", problem.curvature)
    np.testing.assert_allclose(diagonal, w[:, None] * p * others, rtol=1e-13, atol=0)
    off = problem.curvature.copy()
    off[:, np.arange(K), np.arange(K)] = 0.0
    np.testing.assert_allclose(off, -w[:, None, None] * p[:, :, None] * p[:, None, :] * (1 - np.eye(K)), rtol=1e-14,
                               atol=1e-300)          # (products in the subnormal range)
    assert np.all(diagonal[np.arange(n), p.argmax(axis=1)] > 0)       # p - p^2 gave 0 at p = 1


@pytest.mark.parametrize("seed", [10, 11])
def test_certificates_drift_weights_bound_each_samples_leverage(seed):
    """The certificates' drift weights are at least each sample's h_i = lambda_max(A_i^{1/2} Q_i A_i^{1/2}),
    computed in 60 digits from the linear predictors (the probabilities' own rounding 1 - p_top would
    swamp a nearly certain sample's curvature) and Q_i as stored: eps-level errors relative to
    ||Q_i|| ||A_i||, which a small penalty makes large (Q_i's eigenvalue along the classes' common
    direction is about 1 / lambda), took the computed h_i below it for about half the samples."""
    mp = pytest.importorskip("mpmath")
    from rif._certify import certifier

    rng = np.random.default_rng(seed)
    n, d, K = 40, 5, 3
    X = rng.standard_normal((n, d)) * np.exp(rng.uniform(-1, 2, size=(n, 1)))
    y = rng.integers(0, K, n)
    y[:K] = np.arange(K)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rif.RetrainConvergenceWarning)
        problem = MultinomialProblem(X, y, K, penalty=10 ** rng.uniform(-5, -1), tol=1e-12)
    weights = certifier(problem).leverages
    eta = problem.design @ problem.theta_block.reshape(K, -1).T
    with mp.workdps(60):
        for i in range(n):
            e = [mp.exp(mp.mpf(float(v))) for v in eta[i]]
            p = [v / sum(e) for v in e]
            A = mp.matrix([[problem.sample_weight[i] * ((p[a] if a == b else 0) - p[a] * p[b]) for b in range(K)]
                           for a in range(K)])
            h = max(mp.re(v) for v in mp.eig(mp.matrix(problem.leverage_blocks[i].tolist()) * A,
                                               left=False, right=False))
            assert weights[i] >= h, (i, weights[i], h)

def test_hessian_is_the_derivative_of_the_gradient():
    problem, _, _ = _problem(n=40, d=3, K=4, seed=1)
    theta, w = problem.theta_block, problem.sample_weight
    step = 1e-6
    fd = np.column_stack([(problem.value_gradient(theta + step * e, w)[1]
                           - problem.value_gradient(theta - step * e, w)[1]) / (2 * step)
                          for e in np.eye(problem.n_params)])
    hess = problem.curvature_hessian(theta, w)
    np.testing.assert_allclose(hess, fd, rtol=1e-6, atol=1e-7)
    # the definite H^ adds kappa times the projector on the intercepts' common direction only
    extra = problem.hessian - hess
    null = np.zeros(problem.n_params)
    null[problem.p1 - 1::problem.p1] = 1.0 / np.sqrt(problem.n_classes)
    kappa = null @ extra @ null
    np.testing.assert_allclose(extra, kappa * np.outer(null, null), atol=1e-12 * kappa)
    assert kappa > 0


@pytest.mark.parametrize("intercept", [True, False])
def test_retrain_is_scikit_learns_refit(intercept):
    X, y = _data(120, 5, 4, 11)
    est = LogisticRegression(C=0.7, fit_intercept=intercept, tol=1e-12, solver="newton-cholesky",
                             max_iter=1000)
    aud = rif.InfluenceAuditor(est).fit(X, y)
    removed = np.array([3, 8, 50, 77, 101])
    keep = np.setdiff1d(np.arange(120), removed)
    refit = LogisticRegression(C=0.7, fit_intercept=intercept, tol=1e-12, solver="newton-cholesky",
                               max_iter=1000).fit(X[keep], y[keep])
    want = refit.coef_.ravel()
    if intercept:
        want = np.append(want, refit.intercept_)
    got = aud.problem_.theta + aud.params_change(removed, "retrain")
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)
    unlearned = aud.unlearn(removed, "retrain")
    assert unlearned.coef_.shape == (4, 5)
    np.testing.assert_allclose(unlearned.predict_proba(X), refit.predict_proba(X), atol=1e-8)


def test_two_classes_match_the_binary_route():
    X, y = _data(70, 3, 2, 5)
    lam = 0.8
    multi = MultinomialProblem(X, y, 2, penalty=lam, tol=1e-13)
    # softmax with B_0 = -B_1 is the binary model theta = B_1 - B_0 with penalty lam / 2
    binary = GLMProblem(X, y.astype(float), "binomial", penalty=lam / 2, tol=1e-13)
    def as_binary(public):
        block = multi.from_public(public).reshape(2, -1)
        return block[1] - block[0]
    np.testing.assert_allclose(as_binary(multi.theta), binary.theta, rtol=1e-9)
    index = np.array([2, 11, 40])
    for method in ("if", "rif", "newton", "retrain"):
        np.testing.assert_allclose(as_binary(multi.params_change(index, method)), binary.params_change(index, method),
                                   rtol=1e-7, atol=1e-10, err_msg=method)
    # the 2 x 2 leverage matrix has the binary leverage as its one nonzero eigenvalue
    np.testing.assert_allclose(multi.leverage, binary.leverage, rtol=1e-8)


@settings(max_examples=15, deadline=None)
@given(n=st.integers(12, 40), d=st.integers(1, 4), K=st.integers(3, 4), seed=st.integers(0, 2**16),
       penalty=st.sampled_from([0.1, 1.0]), intercept=st.booleans())
def test_theory_holds(n, d, K, seed, penalty, intercept):
    problem, _, _ = _problem(n=n, d=d, K=K, seed=seed, penalty=penalty, intercept=intercept)
    i, j = K, K + 1                       # outside the first K rows, which keep every class present
    # RIF is the exact leave-one-out Newton step, and both IF and RIF are additive over samples
    np.testing.assert_allclose(problem.params_change([i], "rif"), problem.params_change([i], "newton"),
                               rtol=1e-9, atol=1e-12)
    for method in ("if", "rif"):
        both = problem.params_change([i, j], method)
        np.testing.assert_allclose(both, problem.params_change([i], method) + problem.params_change([j], method),
                                   rtol=1e-9, atol=1e-12)
    eig = np.linalg.eigvalsh(problem.leverage_matrices)
    assert eig.min() > -1e-12 and eig.max() < 1.0
    np.testing.assert_allclose(problem.leverage, eig[:, -1])


def test_scores_effects_and_self_influence_agree_with_refits():
    problem, X, y = _problem(n=30, d=3, K=3, seed=21, penalty=1.0)
    X_eval, y_eval = _data(6, 3, 3, 22)
    exact = problem.scores(X_eval, y_eval, method="retrain")
    for i in (4, 13):
        dtheta = problem.params_change([i], "retrain")
        np.testing.assert_allclose(exact[i], [problem.effect([i], "loss", X_eval[j:j + 1], y_eval[j:j + 1],
                                                             dtheta=dtheta) for j in range(6)], atol=1e-10)
    # the loss change by refit equals the change computed from refitted probabilities
    Xt = np.hstack([X_eval, np.ones((6, 1))])
    before = softmax_loss(Xt @ problem.theta_block.reshape(3, -1).T, y_eval)[0]
    after_theta = problem.from_public(problem.theta + problem.params_change([4], "retrain"))
    after = softmax_loss(Xt @ after_theta.reshape(3, -1).T, y_eval)[0]
    np.testing.assert_allclose(exact[4], after - before, atol=1e-12)
    # RIF scores are close to the refit's here (n/p = 2.5), IF's further
    rif_err = np.abs(problem.scores(X_eval, y_eval, method="rif") - exact).max()
    assert rif_err < np.abs(exact).max()
    # linearised scores are the gradient times the parameter change
    lin = problem.scores(X_eval, y_eval, method="if", linear=True)
    dtheta = problem.params_change([7], "if")
    grad = problem.operations.eta_target(problem, "loss", X_eval, y_eval).gradient(problem.theta)
    np.testing.assert_allclose(lin[7].sum(), grad @ dtheta, rtol=1e-10)
    # self-influence by refit is each sample's own loss change
    self_exact = problem.self_influence("retrain")
    dtheta = problem.params_change([9], "retrain")
    np.testing.assert_allclose(self_exact[9], problem.effect([9], "self_loss", dtheta=dtheta), rtol=1e-10)
    assert np.all(problem.self_influence("rif") >= -1e-12)
    # batches of effects on each target type
    for target in ("loss", "proba", "decision"):
        batch = problem.effect([[1, 5], [6]], target, X_eval, y_eval, method="newton")
        assert batch.shape == (2,) and np.all(np.isfinite(batch))
    assert problem.loo_params_change("rif").shape == (30, problem.n_params)
    np.testing.assert_allclose(problem.loo_params_change("rif")[5], problem.params_change([5], "rif"), rtol=1e-10)


def test_bad_input_is_named():
    problem, X, y = _problem(n=30, d=2, K=3, seed=2)
    lone = np.flatnonzero(y == 2)
    with pytest.raises(ValueError, match="every sample of class"):
        problem.params_change(lone, "rif")
    with pytest.raises(ValueError, match="class indices"):
        MultinomialProblem(X, y + 0.5, 3)
    with pytest.raises(ValueError, match="no positively weighted"):
        MultinomialProblem(X, np.where(y == 2, 1, y), 3)
    with pytest.raises(ValueError, match="not supported for the multinomial"):
        GLMProblem(X, y, "multinomial", penalty=1.0, penalty_scaling="per_sample")
    with pytest.raises(ValueError, match="needs labels"):
        problem.scores(X[:2])
    with pytest.raises(rif.UnsupportedEstimatorError, match="multinomial"):
        problem.influence_table()
    aud = rif.InfluenceAuditor(LogisticRegression()).fit(X, y)
    with pytest.raises(rif.UnsupportedEstimatorError, match="multinomial"):
        aud.robustness(0)


def test_auditor_labels_weights_and_sparse_input():
    X, y = _data(90, 3, 3, 31)
    labels = np.array(["a", "b", "c"])[y]
    weights = np.random.default_rng(1).uniform(0.5, 1.5, 90)
    est = LogisticRegression(C=2.0, class_weight={"a": 2.0, "b": 1.0, "c": 0.5}, tol=1e-12,
                             solver="newton-cholesky")
    aud = rif.InfluenceAuditor(est).fit(sp.csr_matrix(X), labels, sample_weight=weights)
    frame = aud.params_change([0, 1], "rif", as_frame=True)
    assert list(frame.index[:2]) == ["a:x0", "a:x1"] and frame.index[-1] == "c:intercept"
    removed = np.array([0, 1, 2, 10])
    keep = np.setdiff1d(np.arange(90), removed)
    refit = LogisticRegression(C=2.0, class_weight={"a": 2.0, "b": 1.0, "c": 0.5}, tol=1e-12,
                               solver="newton-cholesky").fit(X[keep], labels[keep], sample_weight=weights[keep])
    want = np.append(refit.coef_.ravel(), refit.intercept_)
    np.testing.assert_allclose(aud.problem_.theta + aud.params_change(removed, "retrain"), want, rtol=1e-6, atol=1e-8)
    effect = aud.effect(removed, "proba", X[:4], labels[:4], method="retrain")
    columns = np.searchsorted(["a", "b", "c"], labels[:4])
    proba = refit.predict_proba(X[:4])[np.arange(4), columns]
    before = aud.predict_proba(X[:4])[np.arange(4), columns]
    np.testing.assert_allclose(effect, np.sum(proba - before), atol=1e-8)


def test_refits_through_joblib_workers_match_the_serial_ones():
    problem, _, _ = _problem(n=40, d=3, K=3, seed=9)
    sets = [np.array([5, 6]), np.array([7]), np.array([8, 20, 30]), np.array([11])]
    serial = problem.params_change(sets, "retrain")
    problem.n_jobs = 2
    np.testing.assert_allclose(problem.params_change(sets, "retrain"), serial, rtol=1e-12, atol=1e-14)


def test_a_dask_array_gives_the_same_answers_chunk_by_chunk():
    da = pytest.importorskip("dask.array")
    problem, X, y = _problem(n=60, d=4, K=3, seed=12, penalty=0.5)
    lazy = MultinomialProblem(da.from_array(X, chunks=(17, 4)), y, 3, penalty=0.5, tol=1e-13)
    np.testing.assert_allclose(lazy.theta, problem.theta, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(lazy.leverage, problem.leverage, rtol=1e-9)
    sets = [np.array([4, 9, 17]), np.array([30])]
    for method in ("if", "rif", "newton", "retrain"):
        np.testing.assert_allclose(lazy.params_change(sets, method), problem.params_change(sets, method),
                                   rtol=1e-8, atol=1e-11, err_msg=method)
    X_eval, y_eval = _data(5, 4, 3, 13)
    np.testing.assert_allclose(lazy.scores(X_eval, y_eval), problem.scores(X_eval, y_eval), rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(lazy.self_influence(), problem.self_influence(), rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(lazy.loo_params_change("rif"), problem.loo_params_change("rif"), rtol=1e-8,
                               atol=1e-12)
    np.testing.assert_allclose(lazy.effect(sets, "train_loss", method="rif"),
                               problem.effect(sets, "train_loss", method="rif"), rtol=1e-8)


@pytest.mark.parametrize("kind", ["loss", "proba", "decision"])
def test_target_gradients_are_finite_differences(kind):
    problem, _, _ = _problem(n=30, d=3, K=4, seed=14)
    X_eval, y_eval = _data(6, 3, 4, 15)
    target = problem.operations.eta_target(problem, kind, X_eval, y_eval)
    theta, step = problem.theta, 1e-6
    fd = np.array([(target.value(theta + step * e) - target.value(theta - step * e)) / (2 * step)
                   for e in np.eye(problem.n_params)])
    np.testing.assert_allclose(target.gradient(theta), fd, rtol=1e-6, atol=1e-8)


def test_loss_changes_stay_finite_where_the_probabilities_underflow():
    """phi(eta + d) - phi(eta) for the loss, against a difference of stable losses: a class whose
    probability underflows (eta_k - max eta < -745) that the change lifts to the top, small
    changes (the log1p form) and changes of mixed size, without floating-point warnings."""
    problem, _, _ = _problem(n=30, d=3, K=3, seed=14)
    target = problem.operations.eta_target(problem, "loss", np.zeros((4, 3)), np.array([0, 1, 2, 0]))
    eta = np.array([[0.0, -800.0, 1.0], [2.0, -0.5, 0.3], [5.0, -900.0, -2.0], [0.0, 0.0, 0.0]])
    d_eta = np.array([[0.0, 803.0, 0.0], [1e-9, -2e-9, 3e-9], [-10.0, 910.0, 0.5], [0.2, -0.4, 30.0]])
    labels = np.array([0, 1, 2, 0])
    with np.errstate(divide="raise", over="raise", invalid="raise"):
        change = target.phi_change(eta, d_eta, labels)
    direct = softmax_loss(eta + d_eta, labels)[0] - softmax_loss(eta, labels)[0]
    np.testing.assert_allclose(change[[0, 2, 3]], direct[[0, 2, 3]], rtol=1e-13)
    np.testing.assert_allclose(change[0], np.logaddexp(0.0, np.logaddexp(3.0, 1.0)) - np.logaddexp(0.0, 1.0),
                               rtol=1e-13)
    # small changes: the first-order term p^T d - d_y, to 1e-9 relative
    prob = softmax_loss(eta[1:2], labels[1:2])[1][0]
    np.testing.assert_allclose(change[1], prob @ d_eta[1] - d_eta[1, 1], rtol=1e-6)


def test_leave_out_solve_is_the_dense_one():
    problem, _, _ = _problem(n=40, d=3, K=3, seed=16)
    index = np.array([5, 11])
    _, blocks, _ = _dense_parts(problem, problem.sample_weight)
    dense = problem.hessian - blocks[index].sum(axis=0)          # H^ minus the removed curvature
    b = np.random.default_rng(0).standard_normal(problem.n_params)
    np.testing.assert_allclose(problem.leave_out(index).solve(b), np.linalg.solve(dense, b), rtol=1e-9, atol=1e-12)


def test_refits_from_theta_hat_and_from_the_rif_estimate_agree():
    """A large set's refit starts at the RIF estimate once the RIF coefficients are cached, else at
    theta^; both reach the same optimum, whose gradient without the set vanishes."""
    X, y = _data(200, 6, 4, 3)
    removed = np.arange(0, 200, 9)                       # 23 samples: H^ is the chord matrix
    fresh, _, _ = _problem(n=200, d=6, K=4, seed=3)
    cached, _, _ = _problem(n=200, d=6, K=4, seed=3)
    cached.rif_coefficients
    weights = cached.sample_weight.copy()
    weights[removed] = 0.0
    assert not cached._woodbury_refit(removed)
    start = cached.leave_out_start(removed, weights)
    assert start[2] is None and not np.allclose(start[0], cached.theta_block)
    assert fresh.leave_out_start(removed, weights)[2] is not None
    a = fresh.params_change(removed, "retrain")
    b = cached.params_change(removed, "retrain")
    np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-11)
    grad = cached.value_gradient(cached.from_public(cached.theta + b), weights)[1]
    assert np.max(np.abs(grad)) < 1e-8


def test_a_refit_never_starts_above_theta_hats_objective():
    """Found by fuzzing (tests/data/softmax_far_start.npz: 109 x 13, K = 6, lambda = 3e-4,
    weighted): nearly separable data where the RIF estimate for removing 23 samples has an
    objective near 1e4 against theta^'s 1.6. Once the RIF coefficients are cached, the refit
    must reach the same optimum as one from theta^; starting at the estimate, a chord step
    accepted on its gradient alone climbed to an objective of 8e6, and the refit raised
    SingularHessianError."""
    from pathlib import Path

    data = np.load(Path(__file__).parent / "data" / "softmax_far_start.npz")

    def problem():
        return MultinomialProblem(data["X"], data["y"], 6, penalty=float(data["penalty"]),
                                  sample_weight=data["sample_weight"])

    removed = data["removed"]
    fresh, cached = problem(), problem()
    cached.rif_coefficients
    weights = cached.sample_weight.copy()
    weights[removed] = 0.0
    estimate = cached.leave_out_start(removed, weights)[0]
    assert cached.value_gradient(estimate, weights)[0] > 1e3 * cached.leave_out_start(removed, weights, False)[1]
    np.testing.assert_allclose(cached.params_change(removed, "retrain"), fresh.params_change(removed, "retrain"),
                               rtol=1e-7, atol=1e-9)


def test_a_step_accepted_on_its_gradient_may_not_climb():
    """_descent takes a step that halves the gradient without Armijo's decrease only while the
    objective rises by no more than rounding could hide."""
    from rif._solvers import _descent

    def judge(new_value):
        step = _descent(np.zeros(2), 1.0, np.array([1.0, 0.0]), np.array([0.0, 1.0]))   # slope g^T d = 0
        next(step)
        try:
            step.send((new_value, np.array([0.1, 0.0])))
        except StopIteration as stop:
            return stop.value

    assert judge(0.5) is not None                  # Armijo
    assert judge(1.0 + 1e-13) is not None          # a rounding-level rise, the gradient shrunk tenfold
    assert judge(2.0) is None                      # a climb


def test_softmax_residual_kernel_is_the_numpy_softmax():
    """The fused kernel against softmax_loss, with logits large enough to overflow a naive exp."""
    from rif._kernels import softmax_residual

    rng = np.random.default_rng(4)
    eta = rng.standard_normal((300, 5)) * np.array([1.0, 30.0, 800.0])[rng.integers(0, 3, 300)][:, None]
    labels = rng.integers(0, 5, 300)
    weights = rng.uniform(0.0, 2.0, 300)
    weights[::7] = 0.0
    loss, prob = softmax_loss(eta, labels)
    want = weights[:, None] * (prob - np.eye(5)[labels])
    resid = eta.copy()
    value = softmax_residual(resid, labels, weights)
    np.testing.assert_allclose(resid, want, rtol=1e-13, atol=4e-16)   # w p - w against w (p - 1)
    np.testing.assert_allclose(value, weights @ loss, rtol=1e-13)
    assert np.all(np.isfinite(resid))
