"""rif benchmarks: every time is a ratio against a baseline measured in the same run.

    python benchmarks/run.py            # the sizes of issue 3 (minutes; needs ~8 GB at the largest)
    python benchmarks/run.py --quick    # small sizes, seconds

Each row reports both times, their ratio, the peak Python-heap memory of each
side (tracemalloc sees NumPy's buffers), and a cross-check of the values.
Machines are shared and noisy: read ratios, not seconds. Results are printed
and written to benchmarks/output/results.md.
"""

import argparse
import gc
import pathlib
import time
import tracemalloc
import warnings

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

import rif
from rif._estimators import params_change_batch, params_change_one
from rif._solvers import chord_refit

FULL_SIZES = [(20000, 200), (1600, 512), (100000, 1000)]
QUICK_SIZES = [(4000, 50), (800, 128)]
FULL_SPARSE = (10000, 20000, 0.01)     # bag-of-words-like: n, d, density
QUICK_SPARSE = (1000, 3000, 0.01)
FULL_MULTINOMIAL = (20000, 200, 10)    # n, d, K
QUICK_MULTINOMIAL = (2000, 20, 5)
FULL_CERTIFY = (4000, (2, 4, 8, 32, 128), 20)     # n, n/d ratios, sets per ratio
QUICK_CERTIFY = (400, (4, 32), 6)
FULL_CERTIFY_SMALL = [(250, (2, 4, 8), 20), (1000, (32, 128), 20)]   # small enough for exact Hessians


# -- measuring ---------------------------------------------------------------------------
def measure_all(calls, repeat=1, rounds=None):
    """:func:`measure` of each of ``calls`` (a dict of name -> function), or with ``rounds``, the
    median wall time of each when all are called in turn ``rounds`` times (after one call each),
    with the peak memory of one more call."""
    if rounds is None:
        return {key: measure(fn, repeat) for key, fn in calls.items()}
    results = {key: fn() for key, fn in calls.items()}
    times = {key: [] for key in calls}
    for _ in range(rounds):
        for key, fn in calls.items():
            gc.collect()
            start = time.perf_counter()
            results[key] = fn()
            times[key].append(time.perf_counter() - start)
    out = {}
    for key, fn in calls.items():
        tracemalloc.start()
        fn()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        out[key] = (float(np.median(times[key])), peak, results[key])
    return out


def measure(fn, repeat=1):
    """(best wall time over ``repeat`` runs, peak traced memory in bytes, last result)."""
    best = np.inf
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    gc.collect()
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return best, peak, result


def logistic_data(n, d, seed=0, signal=1.0, correlation=0.0):
    """Gaussian features (AR(1) correlation between neighbours), logistic labels."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    if correlation:
        for j in range(1, d):      # x_j = rho x_{j-1} + sqrt(1 - rho^2) z_j
            X[:, j] = correlation * X[:, j - 1] + np.sqrt(1 - correlation**2) * X[:, j]
    beta = rng.normal(size=d) * signal / np.sqrt(d)
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-(X @ beta)))).astype(float)
    return X, y


def fitted_problem(X, y, C=1.0):
    est = LogisticRegression(C=C, solver="newton-cholesky", tol=1e-10, max_iter=200).fit(X, y)
    theta = np.append(est.coef_.ravel(), est.intercept_)
    return rif.GLMProblem(X, y, "binomial", theta, penalty=1.0 / C, copy_X=False), est


ROWS = []


def report(name, size, ours, base, base_name, check, note=""):
    ratio = base[0] / ours[0]
    ROWS.append((name, f"{size[0]}x{size[1]}", f"{ours[0]:.3f}", f"{base[0]:.3f}", base_name,
                 f"{ratio:.2f}x", f"{ours[1] / 2**20:.0f}", f"{base[1] / 2**20:.0f}", check, note))
    print(" | ".join(ROWS[-1]), flush=True)


# -- 1. leverages + RIF scores against the NumPy floor ---------------------------------------
def bench_leverage_floor(n, d, repeat):
    X, y = logistic_data(n, d)
    problem, est = fitted_problem(X, y)
    theta = problem.theta
    x_test = X[:1] + 0.5

    def ours():
        prob = rif.GLMProblem(X, y, "binomial", theta, penalty=1.0, copy_X=False)   # refine + Hessian reuse
        h = prob.leverage
        scores = rif._estimators.per_sample_eta_change(prob, x_test, "rif")
        return h, scores

    curvature = problem.curvature                      # w_i l''_i at theta^, given to the floor

    def floor():
        xt = np.hstack([X, np.ones((n, 1))])
        gram = xt.T @ (xt * curvature[:, None])        # one Gram product
        gram[np.diag_indices(d)] += 1.0
        chol = sla.cholesky(gram, lower=True)          # one Cholesky
        z = sla.solve_triangular(chol, xt.T, lower=True)   # one triangular solve: all leverages
        return curvature * np.einsum("ij,ij->j", z, z)

    o = measure(ours, repeat)
    f = measure(floor, repeat)
    err = np.max(np.abs(o[2][0] - f[2]))
    report("leverages + RIF scores (1 target)", (n, d), o, f, "NumPy floor", f"max|dh| {err:.1e}",
           "floor: Gram + Cholesky + trsm")


# -- 2. against statsmodels -------------------------------------------------------------------
def bench_statsmodels(n, d, repeat):
    import statsmodels.api as sm
    from statsmodels.stats.outliers_influence import GLMInfluence

    X, y = logistic_data(n, d, signal=0.5)
    exog = sm.add_constant(X, prepend=False)
    fitted = sm.GLM(y, exog, family=sm.families.Binomial()).fit(tol=1e-10)

    def ours(theta=None):
        prob = rif.GLMProblem(X, y, "binomial", theta, copy_X=False)  # unpenalised; from zero by Newton without theta
        return prob.leverage, rif._estimators.loo_params_change(prob, "rif")

    def influence(res):
        mu = res.fittedvalues
        # GLMInfluence's d_params is the one-step change only with the IRLS-weighted design
        infl = GLMInfluence(res, exog=np.sqrt(mu * (1 - mu))[:, None] * exog)
        return infl.hat_matrix_diag, infl.d_params

    def statsmodels():
        return influence(sm.GLM(y, exog, family=sm.families.Binomial()).fit(tol=1e-10))

    for name, o, s in (
        ("fit + leverages + all LOO d_params", measure(ours, 1), measure(statsmodels, 1)),
        ("leverages + all LOO d_params, given the fit", measure(lambda: ours(fitted.params), repeat),
         measure(lambda: influence(fitted), repeat)),
    ):
        dh = np.max(np.abs(o[2][0] - s[2][0]))
        dp = np.max(np.abs(o[2][1] + s[2][1])) / np.max(np.abs(s[2][1]))
        report(name, (n, d), o, s, "statsmodels GLMInfluence",
               f"max|dh| {dh:.1e}, rel d_params {dp:.1e}", "unpenalised (statsmodels has no L2)")


def count_passes(problem, fn):
    """Number of gradient passes over the data that ``fn`` makes through ``problem``."""
    calls = []
    original = problem.value_gradient
    problem.value_gradient = lambda *args: calls.append(1) or original(*args)
    try:
        fn()
    finally:
        del problem.value_gradient
    return len(calls)


# -- 3. exact retrain against refitting with scikit-learn ----------------------------------------
def bench_retrain(n, d, repeat, fractions=(0.01, 0.05, 0.10), correlation=0.0):
    X, y = logistic_data(n, d, correlation=correlation)
    problem, _ = fitted_problem(X, y)
    rng = np.random.default_rng(1)
    for frac in fractions:
        index = np.sort(rng.choice(n, size=int(frac * n), replace=False))
        keep = np.setdiff1d(np.arange(n), index)

        def ours():
            return problem.theta + params_change_one(problem, index, "retrain")

        o = measure(ours, repeat)
        passes = count_passes(problem, lambda: chord_refit(problem, index))
        weights = problem.sample_weight.copy()
        weights[index] = 0.0
        with threadpool_limits(1, user_api="blas"):
            one_pass = measure(lambda: problem.value_gradient(problem.theta, weights), 5)[0]
        iterations = {}
        baselines = {}
        # rif's chord iterations run with one BLAS thread (they are bandwidth-bound);
        # so that this is no advantage, lbfgs is also timed with one BLAS thread
        for solver, threads in (("lbfgs", None), ("lbfgs", 1), ("newton-cholesky", None)):
            def sk(solver=solver, threads=threads):
                with warnings.catch_warnings(), threadpool_limits(threads, user_api="blas"):
                    warnings.simplefilter("ignore")
                    est = LogisticRegression(C=1.0, solver=solver, tol=1e-10, max_iter=10000).fit(X[keep], y[keep])
                iterations[solver] = int(est.n_iter_.max())
                return np.append(est.coef_.ravel(), est.intercept_)
            baselines[solver + (" 1-thread" if threads else "")] = measure(sk, repeat)
        best_name = min(baselines, key=lambda k: baselines[k][0])
        b = baselines[best_name]
        rel = {k: np.max(np.abs(v[2] - o[2])) / np.max(np.abs(o[2])) for k, v in baselines.items()}
        data = f", AR(1) rho={correlation}" if correlation else ""
        report(f"exact retrain, {frac:.0%} removed{data}", (n, d), o, b, f"sklearn {best_name}",
               "rel diff " + ", ".join(f"{k} {v:.0e}" for k, v in rel.items()),
               f"other: {', '.join(f'{k} {v[0]:.3f}s' for k, v in baselines.items() if k != best_name)}; "
               f"rif {passes} passes over X, one pass {one_pass * 1e3:.1f} ms; "
               f"iterations: lbfgs {iterations['lbfgs']}, newton-cholesky {iterations['newton-cholesky']}")


# -- 4. batches ------------------------------------------------------------------------------------
def bench_batches(n, d, n_sets, n_refits, repeat):
    X, y = logistic_data(n, d)
    problem, _ = fitted_problem(X, y)
    problem.leverage  # noqa: B018  (cached before timing, as after InfluenceAuditor.fit)
    rng = np.random.default_rng(2)
    k = max(1, n // 100)
    sets = [np.sort(rng.choice(n, size=k, replace=False)) for _ in range(n_sets)]
    for method in ("rif", "newton"):
        o = measure(lambda: params_change_batch(problem, sets, method), repeat)
        loop = measure(lambda: np.array([params_change_one(problem, s, method) for s in sets]), repeat)
        err = np.max(np.abs(o[2] - loop[2])) / np.max(np.abs(loop[2]))
        report(f"{method.upper()}, {n_sets} sets of 1%", (n, d), o, loop, "loop over sets", f"rel {err:.0e}")
    # sets of at least p samples: the whitened leave-out Hessians batched as p x p systems
    big_n, big_d, big_k = (800, 10, 20) if n_sets <= 100 else (4000, 20, 40)
    Xb, yb = logistic_data(big_n, big_d)
    big, _ = fitted_problem(Xb, yb)
    big_sets = [np.sort(rng.choice(big_n, size=big_k, replace=False)) for _ in range(n_sets)]
    o = measure(lambda: params_change_batch(big, big_sets, "newton"), repeat)
    loop = measure(lambda: np.array([params_change_one(big, s, "newton") for s in big_sets]), repeat)
    err = np.max(np.abs(o[2] - loop[2])) / np.max(np.abs(loop[2]))
    report(f"NEWTON, {n_sets} sets of {big_k} >= p", (big_n, big_d), o, loop, "loop over sets", f"rel {err:.0e}")
    refit_sets = sets[:n_refits]
    lockstep = measure(lambda: params_change_batch(problem, refit_sets, "retrain", n_jobs=1, progress=False), 1)
    loop = measure(lambda: np.array([params_change_one(problem, s, "retrain") for s in refit_sets]), 1)
    err = np.max(np.abs(lockstep[2] - loop[2])) / np.max(np.abs(loop[2]))
    report(f"{n_refits} exact retrains in lockstep", (n, d), lockstep, loop, "loop of single refits",
           f"rel {err:.0e}", "one matrix-product pass per round for up to 64 sets")
    start = time.perf_counter()
    params_change_batch(problem, refit_sets[:4], "retrain", n_jobs=2, progress=False)   # start the workers
    cold = time.perf_counter() - start
    o = measure(lambda: params_change_batch(problem, refit_sets, "retrain", n_jobs=2, progress=False), 1)
    serial = measure(lambda: params_change_batch(problem, refit_sets, "retrain", n_jobs=1, progress=False), 1)
    err = np.max(np.abs(o[2] - serial[2])) / np.max(np.abs(serial[2]))
    report(f"{n_refits} exact retrains, joblib n_jobs=2", (n, d), o, serial, "n_jobs=1 (lockstep)", f"rel {err:.0e}",
           f"worker pool warm (starting it took {cold:.1f} s); memory: parent process only")


# -- 5. sparse, wide ---------------------------------------------------------------------------------
def bench_sparse(n, d, density):
    """CSR input with n < p (bag-of-words-like), on the dual route: leverages, RIF scores and one exact
    retrain removing 1 %, against the NumPy floor of the leverages alone (sparse X X^T, one n x n Cholesky
    and its inverse), and the retrain against scikit-learn's refit."""
    rng = np.random.default_rng(3)
    X = sp.random(n, d, density=density, format="csr", random_state=rng, data_rvs=rng.standard_normal)
    beta = rng.normal(size=d) * 3.0 / np.sqrt(density * d)
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-(X @ beta)))).astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = LogisticRegression(C=1.0, tol=1e-10, max_iter=5000).fit(X, y)
    theta = np.append(est.coef_.ravel(), est.intercept_)
    index = np.sort(rng.choice(n, size=n // 100, replace=False))
    keep = np.setdiff1d(np.arange(n), index)

    def ours():
        prob = rif.GLMProblem(X, y, "binomial", theta, penalty=1.0, copy_X=False)
        h = prob.leverage
        scores = rif._estimators.per_sample_eta_change(prob, X[:1], "rif")
        dtheta = params_change_one(prob, index, "retrain")
        return h, scores, dtheta, prob

    def floor():
        p_hat = 1.0 / (1.0 + np.exp(-(X @ theta[:-1] + theta[-1])))
        return _leverage_floor(X, p_hat * (1.0 - p_hat), 1.0)

    o = measure(ours, 1)
    f = measure(floor, 1)
    prob = o[2][3]
    report("sparse: leverages + scores + 1% retrain", (n, d), o, f, "NumPy leverage floor (n x n kernel)",
           f"max h {o[2][0].max():.2f}", f"density {density:.0%}, route {prob.route}, X never densified; "
           "floor without the intercept's border")

    def sk_refit(threads=None):
        with warnings.catch_warnings(), threadpool_limits(threads, user_api="blas"):
            warnings.simplefilter("ignore")
            refit = LogisticRegression(C=1.0, tol=1e-10, max_iter=5000).fit(X[keep], y[keep])
        return np.append(refit.coef_.ravel(), refit.intercept_)

    again = measure(lambda: prob.theta + params_change_one(prob, index, "retrain"), 1)
    base = measure(sk_refit, 1)
    rel = np.max(np.abs(base[2] - again[2])) / np.max(np.abs(again[2] - prob.theta))
    report("sparse: exact retrain, 1% removed", (n, d), again, base, "sklearn lbfgs", f"rel diff {rel:.0e}",
           "rel diff relative to the change; scikit-learn's tol limits it")


# -- 5b. multinomial -----------------------------------------------------------------------------------
def _softmax_leverage_floor(X, coef, intercept, lam):
    """The NumPy floor of all K x K leverage blocks Q_i = X~_i H^-1 X~_i^T: the K (K + 1) / 2 Gram
    blocks of H, one Cholesky inverse, and K products X~ [H^-1]_{k,:} (no refinement of theta)."""
    n, d = X.shape
    K, p1 = coef.shape[0], d + 1
    Xt = np.hstack([X, np.ones((n, 1))])
    eta = Xt @ np.column_stack([coef, intercept]).T
    prob = np.exp(eta - eta.max(axis=1, keepdims=True))
    prob /= prob.sum(axis=1, keepdims=True)
    hess = np.empty((K * p1, K * p1))
    for k in range(K):
        for l in range(k, K):
            block = Xt.T @ (Xt * (prob[:, k] * ((k == l) - prob[:, l]))[:, None])
            hess[k * p1:(k + 1) * p1, l * p1:(l + 1) * p1] = block
            hess[l * p1:(l + 1) * p1, k * p1:(k + 1) * p1] = block.T
    hess[np.diag_indices(K * p1)] += lam
    hess[np.diag_indices(K * p1)[0][d::p1], np.diag_indices(K * p1)[0][d::p1]] -= lam
    intercepts = np.arange(K) * p1 + d
    hess[np.ix_(intercepts, intercepts)] += 1.0 / K            # the intercepts' common direction
    inv = sla.cho_solve(sla.cho_factor(hess, lower=True), np.eye(K * p1))
    blocks = np.empty((n, K, K))
    for k in range(K):
        blocks[:, k, :] = np.einsum("nlj,nj->nl", (Xt @ inv[k * p1:(k + 1) * p1]).reshape(n, K, p1), Xt)
    return blocks


def softmax_data(n, d, K, scale, seed):
    """Gaussian features and labels drawn from softmax(X B^T), B with entries N(0, scale^2)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    logits = X @ (scale * rng.standard_normal((K, d))).T
    prob = np.exp(logits - logits.max(axis=1, keepdims=True))
    prob /= prob.sum(axis=1, keepdims=True)
    return X, (prob.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)


def bench_multinomial(n, d, K, repeat):
    """Softmax regression with K classes: fit + all K x K leverages + RIF coefficients against the fit
    plus the NumPy floor, and one exact refit removing 1 % against scikit-learn's fastest refit."""
    X, y = softmax_data(n, d, K, 0.15, 6)

    def sk_fit(Xf=X, yf=y, threads=None, start=None):
        with warnings.catch_warnings(), threadpool_limits(threads, user_api="blas"):
            warnings.simplefilter("ignore")
            est = LogisticRegression(C=1.0, tol=1e-10, max_iter=10000, warm_start=start is not None)
            if start is not None:                  # warm start from the full fit's coefficients
                est.classes_, est.coef_, est.intercept_ = start.classes_, start.coef_.copy(), start.intercept_.copy()
            return est.fit(Xf, yf)

    def ours():
        est = sk_fit()
        prob = rif.MultinomialProblem(X, y, K, np.append(est.coef_.ravel(), est.intercept_), penalty=1.0,
                                      copy_X=False)
        return prob.leverage_blocks, prob.rif_coefficients, prob

    def floor():
        est = sk_fit()
        return _softmax_leverage_floor(X, est.coef_, est.intercept_, 1.0)

    o = measure(ours, repeat)
    f = measure(floor, repeat)
    center = np.eye(K) - 1.0 / K                 # Q_i along the classes' common direction is a convention
    err = np.max(np.abs(center @ (o[2][0] - f[2]) @ center))
    report(f"multinomial K={K}: fit + K x K leverages + RIF coefficients", (n, d), o, f, "fit + NumPy floor",
           f"max|dQ| {err:.0e}", "scikit-learn lbfgs fit in both; rif refines theta (two Newton steps)")
    prob = o[2][2]
    index = np.sort(np.random.default_rng(7).choice(n, size=max(1, n // 100), replace=False))
    keep = np.setdiff1d(np.arange(n), index)
    again = measure(lambda: prob.theta + prob.params_change(index, "retrain"), repeat)
    # a problem that has not computed its RIF coefficients starts the refit at theta^ instead
    fresh = rif.MultinomialProblem(X, y, K, prob.theta, penalty=1.0, refine=False, copy_X=False)
    _ = fresh.factor                       # factorised before the timing, as prob is
    cold = measure(lambda: fresh.params_change(index, "retrain"), repeat)
    full = sk_fit()
    baselines = {label: measure(lambda t=t, s=s: (lambda e: np.append(e.coef_.ravel(), e.intercept_))(
        sk_fit(X[keep], y[keep], t, s)), repeat)
        for label, t, s in (("lbfgs", None, None), ("lbfgs 1-thread", 1, None), ("lbfgs warm start", None, full))}
    best = min(baselines, key=lambda k: baselines[k][0])
    rel = np.max(np.abs(baselines[best][2] - again[2])) / np.max(np.abs(again[2] - prob.theta))
    report(f"multinomial K={K}: exact retrain, 1% removed", (n, d), again, baselines[best], f"sklearn {best}",
           f"rel diff {rel:.0e}", "rel diff relative to the change; "
           + ", ".join(f"{k} {v[0]:.3f}s" for k, v in baselines.items() if k != best)
           + f"; without cached RIF coefficients {cold[0]:.3f}s ({baselines[best][0] / cold[0]:.2f}x)")


# -- 5c. certified bounds -----------------------------------------------------------------------------
def _family_data(family, n, d, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) * 2.0 / np.sqrt(d)
    eta = X @ rng.standard_normal(d)
    if family == "binomial":
        y = (rng.random(n) < 1.0 / (1.0 + np.exp(-eta))).astype(float)
    elif family == "poisson":
        y = rng.poisson(np.exp(0.5 * eta)).astype(float)
    else:
        y = eta + rng.standard_normal(n)
    return X, y


def bench_certify(n, ratios, n_sets, repeat):
    """Certificates of RIF and Newton-step estimates: tightness (median bound / true error, in the
    H_{-S} norm and in test loss) and coverage (fraction certified); their cost is
    :func:`bench_certify_cost`. Each row names the route: exact Hessians at the estimates for small
    problems (rif._certify_dense.applies), the leave-out Hessian H_-S otherwise."""
    from rif import _certify_dense

    for family in ("binomial", "poisson", "gaussian"):
        for ratio in ratios:
            d = max(2, n // ratio)
            X, y = _family_data(family, n, d, ratio)
            X_test, y_test = _family_data(family, 200, d, ratio + 1)
            prob = rif.GLMProblem(X, y, family, penalty=1.0, tol=1e-12, copy_X=False)
            rng = np.random.default_rng(ratio)
            sets = [np.sort(rng.choice(n, size=max(1, int(f * n)), replace=False))
                    for f in (0.01, 0.05) for _ in range(n_sets // 2)]
            truth = prob.params_change(sets, "retrain")
            loss_truth = prob.effect(sets, "loss", X_test, y_test, dtheta=truth)
            for method in ("rif", "newton"):
                cert = prob.params_change(sets, method, certify=True)
                eff = prob.effect(sets, "loss", X_test, y_test, method=method, certify=True)
                H_err = np.array([np.sqrt(max((v - t) @ _leave_out_matvec(prob, s, v - t), 0.0))
                                  for v, t, s in zip(cert.value, truth, sets)])      # ||error||_{H_-S}
                ok = cert.certified
                eff_err = np.abs(eff.value - loss_truth)
                # tightness where the error is above rounding (the Newton step on squared loss is exact)
                real = ok & (H_err > 1e-9 * np.linalg.norm(truth, axis=1))
                real_e = ok & (eff_err > 1e-9 * (1 + np.abs(loss_truth)))
                tight_h = np.median(cert.bound_h[real] / H_err[real]) if real.any() else np.nan
                tight_e = np.median(eff.bound[real_e] / eff_err[real_e]) if real_e.any() else np.nan
                violations = int(np.sum(cert.bound < np.linalg.norm(cert.value - truth, axis=1) * (1 - 1e-9) - 1e-12)
                                 + np.sum(eff.bound < eff_err * (1 - 1e-9) - 1e-12))
                route = "exact Hessians" if _certify_dense.applies(prob) else "through H_-S"
                ROWS.append((f"certify {method}, {family} ({route}): bound/true (H-norm, test loss), coverage", f"{n}x{d}",
                             "", "", "", "", "", "", f"violations {violations}",
                             f"n/d {ratio}: median bound/true {tight_h:.2f} (params), {tight_e:.2f} (loss); "
                             f"certified {ok.mean():.0%} of {len(sets)} sets of 1-5 %"))
                print(" | ".join(ROWS[-1]), flush=True)


def bench_certify_paper_regime(full, n_sets):
    """2-norm tightness and coverage of certify=True in the RIF paper's setting between its easy and
    its hard regime: ESC-50's distribution (rif.datasets.make_paper_like) at n/d = 12.5 and 25,
    lambda = 1e-3 under the per-sample convention, no intercept, sets of 1, 5 and 10 %. The 2-norm
    bound converts H_{-S}-norm remainders through lambda_min(H), which the data lift far above lambda
    here (see docs/theory.md)."""
    from rif import _certify_dense
    from rif._certify import certifier

    shapes = [(3200, 256), (6400, 256)] if full else [(1600, 64)]
    for n, d in shapes:
        paper = rif.datasets.make_paper_like("esc50", n=n, d=d)
        prob = rif.GLMProblem(paper.X_train, paper.y_train, "binomial", penalty=PAPER_LAMBDA,
                              penalty_scaling="per_sample", fit_intercept=False, tol=1e-12, copy_X=False)
        rng = np.random.default_rng(3)
        sets = [np.sort(rng.choice(n, size=max(1, int(f * n)), replace=False))
                for f in (0.01, 0.05, 0.1) for _ in range(max(1, n_sets // 3))]
        truth = prob.params_change(sets, "retrain")
        lam = prob.penalty_total(prob.sample_weight)
        for method in ("rif", "newton"):
            cert = prob.params_change(sets, method, certify=True)
            errors = np.linalg.norm(cert.value - truth, axis=1)
            ok = cert.certified
            violations = int(np.sum(cert.bound < errors * (1 - 1e-9)))
            tight = f"median 2-norm bound/true {np.median(cert.bound[ok] / errors[ok]):.2f}" if ok.any() else "none"
            route = "exact Hessians" if _certify_dense.applies(prob) else "through H_-S"
            ROWS.append((f"certify {method}, ESC-50 distribution, per-sample lambda 1e-3 ({route}): 2-norm bound/true, "
                         "coverage",
                         f"{n}x{d}", "", "", "", "", "", "", f"violations {violations}",
                         f"n/d {n // d}: {tight}; certified {ok.mean():.0%} of {len(sets)} sets of 1-10 %; "
                         f"lambda_min(H) proved {certifier(prob).lambda_min:.3g} against lambda {lam:.3g}"))
            print(" | ".join(ROWS[-1]), flush=True)


class _PassCounter:
    """Counts the passes over X while active: one per column of a gradient evaluation (X~ theta and
    X~^T r), and one half per column of a product X~ v with the training X (``X``). An estimate
    certified through its exact Hessian (small problems) counts as one pass, and as one Hessian
    (``hessians``, n p^2 multiply-adds); a chord point certified through an earlier one's Hessian,
    as one pass."""

    def __init__(self, X=None):
        from rif import _certify_dense, _design

        self.design, self.dense, self.count, self.hessians, self.X = _design, _certify_dense, 0, 0, X
        self.originals = (_design.loss_gradient, _design.loss_gradients, _design.linear_predictor,
                          _design.linear_predictor_columns)
        self.dense_original, self.chord_original = _certify_dense.certify, _certify_dense._chord_certificates

    def __enter__(self):
        single, many, product, columns = self.originals

        def one(*args, **kwargs):
            self.count += 1
            return single(*args, **kwargs)

        def batch(X, thetas, *args, **kwargs):
            self.count += thetas.shape[1]
            return many(X, thetas, *args, **kwargs)

        def half(X, thetas, *args, **kwargs):
            if X is self.X:
                self.count += 0.5 * (thetas.shape[1] if np.ndim(thetas) == 2 else 1)
            return product(X, thetas, *args, **kwargs)

        def column_major(X, thetas, *args, **kwargs):
            if X is self.X and isinstance(X, np.ndarray):         # (other designs go through linear_predictor)
                self.count += 0.5 * thetas.shape[1]
            return columns(X, thetas, *args, **kwargs)

        def dense(problem, sets, dthetas, *rest):
            self.count += len(sets)
            self.hessians += len(sets)
            return self.dense_original(problem, sets, dthetas, *rest)

        def chord(problem, chords, points):
            self.count += len(chords)
            return self.chord_original(problem, chords, points)

        (self.design.loss_gradient, self.design.loss_gradients, self.design.linear_predictor,
         self.design.linear_predictor_columns) = one, batch, half, column_major
        self.dense.certify, self.dense._chord_certificates = dense, chord
        return self

    def __exit__(self, *exc):
        (self.design.loss_gradient, self.design.loss_gradients, self.design.linear_predictor,
         self.design.linear_predictor_columns) = self.originals
        self.dense.certify, self.dense._chord_certificates = self.dense_original, self.chord_original


def _certify_cases(full):
    from sklearn.datasets import load_breast_cancer
    from sklearn.preprocessing import StandardScaler

    X, y = load_breast_cancer(return_X_y=True)
    plain = dict(penalty=1.0)
    cases = [("breast cancer", StandardScaler().fit_transform(X), y.astype(float), plain)]
    shapes = [(20000, 200), (100000, 1000)] if full else [(4000, 50)]
    cases += [(f"synthetic {n}x{d}", *logistic_data(n, d, seed=11, signal=2.0), plain) for n, d in shapes]
    # the RIF paper's regime: ESC-50's shape, lambda = 1e-3 under the per-sample convention, no intercept
    paper = rif.datasets.make_paper_like("esc50", **({} if full else dict(n=400, d=128)))
    return cases + [("ESC-50 shape", paper.X_train, paper.y_train,
                     dict(penalty=PAPER_LAMBDA, penalty_scaling="per_sample", fit_intercept=False))]


def bench_certify_cost(full, n_sets, repeat):
    """What certificates cost, against refitting every set (rif's lockstep refits to 1e-10):
    certificates of RIF, method="auto" at rtol 5 % and 1e-3, and auto at rtol 1e-6 (where most sets need
    certified refits); passes over X per set for each. In the full run, calls of a few milliseconds
    (n d < 1e5) are timed in turn, 41 times each, and their medians reported."""
    for name, X, y, objective in _certify_cases(full):
        n, d = X.shape
        prob = rif.GLMProblem(X, y, "binomial", copy_X=False, **objective)
        prob.leverage
        rng = np.random.default_rng(3)
        count = n_sets if n * d < 5e7 else max(2, n_sets // 4)
        sets = [np.sort(rng.choice(n, size=max(1, int(f * n)), replace=False))
                for f in (0.01, 0.05) for _ in range(count // 2)]

        def passes(fn):
            with _PassCounter(prob.X) as counter:
                out = fn()
            per_set = f"{counter.count / len(sets):.1f} passes per set"
            if counter.hessians:
                per_set += f" ({counter.hessians / len(sets):.1f} exact Hessians per set)"
            return out, per_set

        (truth, refit_passes) = passes(lambda: prob.params_change(sets, "retrain"))
        scale = np.linalg.norm(truth, axis=1)
        X_test, y_test = X[: min(500, n // 4)], y[: min(500, n // 4)]
        newton_estimates, rif_estimates = prob.params_change(sets, "newton"), prob.params_change(sets, "rif")
        calls = {
            "refit": lambda: prob.params_change(sets, "retrain"),
            "cert": lambda: prob.params_change(sets, "rif", certify=True),
            "newton": lambda: prob.params_change(sets, "newton"),
            "newton_cert": lambda: prob.params_change(sets, "newton", certify=True),
            "one_pass": lambda: _pass_at(prob, sets, newton_estimates),
            "certified_refit": lambda: prob.params_change(sets, "retrain", certify=True),
            "effect": lambda: prob.effect(sets, "loss", X_test, y_test, method="rif", certify=True),
            "effect_refit": lambda: prob.effect(sets, "loss", X_test, y_test, method="retrain"),
            "effect_auto": lambda: prob.effect(sets, "loss", X_test, y_test, method="auto", certify=True),
            "floor": lambda: _certificate_floor(prob, sets, rif_estimates),
        }
        for rtol in (0.05, 1e-3, 1e-6):
            calls[f"auto {rtol:g}"] = lambda rtol=rtol: prob.params_change(sets, "auto", certify=True, rtol=rtol)
        # calls of a few milliseconds: in turn, medians (a shared machine's slow spells then hit all alike)
        together = full and n * d < 1e5
        timed = measure_all(calls, repeat, rounds=41 if together else None)
        where = f"{name} (medians of 41 calls in turn)" if together else name
        refit, cert = timed["refit"], timed["cert"]
        ok = cert[2].certified
        errors = np.linalg.norm(cert[2].value - truth, axis=1)
        report(f"certificates of {len(sets)} RIF estimates", (n, d), cert, refit, "refitting every set",
               f"certified {np.mean(ok):.0%}" + (f", median bound/true {np.median(cert[2].bound[ok] / errors[ok]):.2f}"
                                                 if ok.any() else ""),
               f"{where}; refits: {refit_passes}")
        # the Newton step's certificate takes gamma from the factorisation its estimate forms anyway:
        # beyond the estimates, it costs the pass at them (compared with that pass alone)
        newton, newton_cert, one_pass = timed["newton"], timed["newton_cert"], timed["one_pass"]
        report(f"certificates of {len(sets)} Newton-step estimates", (n, d), newton_cert, newton,
               "the Newton-step estimates alone",
               f"beyond the estimates / one pass {(newton_cert[0] - newton[0]) / one_pass[0]:.2f}",
               f"{where}; certified {np.mean(newton_cert[2].certified):.0%}")
        certified_refit = timed["certified_refit"]
        certified_refit_passes = passes(calls["certified_refit"])[1]
        report(f"certified exact refits of {len(sets)} sets", (n, d), certified_refit, refit, "refitting every set",
               f"max bound {np.max(certified_refit[2].bound):.1e}",
               f"{where}; the certificate of each refit's result; {certified_refit_passes}")
        effect, effect_refit = timed["effect"], timed["effect_refit"]
        exact, ok = effect_refit[2], effect[2].certified
        tight = (f"median bound/true {np.median(effect[2].bound[ok] / np.abs(effect[2].value[ok] - exact[ok])):.2f}"
                 " where certified" if ok.any() else "none certified")
        report(f"certified test-loss effects of {len(sets)} RIF estimates", (n, d), effect, effect_refit,
               "refitting every set", f"certified {np.mean(ok):.0%}", f"{where}; {tight}")
        effect_auto = timed["effect_auto"]
        worst = np.max(np.abs(effect_auto[2].value - exact) / np.abs(exact))
        shares = ", ".join(f"{m} {np.mean(effect_auto[2].method == m):.0%}" for m in ("rif", "newton", "retrain"))
        report("test-loss effects, method='auto', rtol 0.05", (n, d), effect_auto, effect_refit,
               "refitting every set", f"max rel err {worst:.1e}", f"{where}; {shares}")
        floor = timed["floor"]
        report("floor of a leave-out certificate (gamma + one pass)", (n, d), floor, refit,
               "refitting every set", f"floor / refits {floor[0] / refit[0]:.2f}",
               f"{where}; any bound of 1 - gamma needs the whitened block, any bound of the error a pass")
        for rtol in (0.05, 1e-3, 1e-6):
            result, auto_passes = passes(calls[f"auto {rtol:g}"])
            auto = timed[f"auto {rtol:g}"]
            worst = np.max(np.linalg.norm(result.value - truth, axis=1) / scale)
            shares = ", ".join(f"{m} {np.mean(result.method == m):.0%}" for m in ("rif", "newton", "retrain"))
            report(f"method='auto', rtol {rtol:g}", (n, d), auto, refit, "refitting every set",
                   f"max rel err {worst:.1e}", f"{where}; {shares}; {auto_passes}")


def _certificate_floor(prob, sets, dthetas):
    """The work no certificate through the leave-out Hessian can avoid: for each set, the largest
    eigenvalue gamma of its removed block relative to H (every bound of how far H_{-S} falls below
    H needs it), at its least cost: below p samples the whitened rows Z = L^{-1} X~_S^T C_S^{1/2}
    (H = L L^T) and their k x k Gram matrix, from p on the p x p Gram matrix X~_S^T C_S X~_S and one
    Cholesky factorisation of H_{-S} (which a proof of gamma's bound needs at least); and one pass
    over X at all the estimates together (the gradient there). BLAS runs on one thread below 2048
    parameters, as in rif's certificates (two threads beside the pass threads only slow it)."""
    from scipy.linalg import cholesky, solve_triangular

    from rif import _design, _parallel

    # (rif's cached controller: threadpoolctl's own context rescans the libraries, about 4 ms a call)
    with _parallel.blas_limit(1 if prob.n_params < 2048 else _parallel.available_threads()):
        chol = cholesky(prob.hessian, lower=True)
        for index in sets:
            block = _design.rows(prob.X, index, prob.fit_intercept) * np.sqrt(prob.curvature[index])[:, None]
            if len(index) < block.shape[1]:
                white = solve_triangular(chol, block.T, lower=True, check_finite=False)
                _ = white.T @ white
            else:
                cholesky(prob.hessian - block.T @ block, lower=True, check_finite=False)
        return _pass_at(prob, sets, dthetas)


def _pass_at(prob, sets, dthetas):
    """One pass over X at every set's estimate together: the gradients of the objectives without
    each set there."""
    thetas = (prob.theta[None, :] + dthetas).T
    weights = np.repeat(prob.sample_weight[:, None], len(sets), axis=1)
    for k, index in enumerate(sets):
        weights[index, k] = 0.0
    return prob.value_gradients(thetas, weights)


def bench_certify_multinomial(n, d, K, n_sets, repeat, dataset=None):
    """Certificates for softmax regression: tightness (median bound / true error in parameters and
    in test loss), coverage, and the cost of certifying RIF and of method="auto" against refitting
    every set. Synthetic data (n, d, K), or ``dataset="digits"`` (scikit-learn's 1797 x 64, K = 10,
    standardised; n, d and K are then ignored), where most estimates are too far off to certify."""
    if dataset == "digits":
        from sklearn.datasets import load_digits
        from sklearn.preprocessing import StandardScaler

        X, y = load_digits(return_X_y=True)
        X, K, name = StandardScaler().fit_transform(X), 10, "digits, K=10"
        n, d = X.shape
    else:
        X, y = softmax_data(n, d, K, 0.3, 12)
        y[:K] = np.arange(K)
        name = f"multinomial K={K}"
    rng = np.random.default_rng(13)
    problem = rif.MultinomialProblem(X, y, K, penalty=1.0, tol=1e-12, copy_X=False)
    problem.rif_coefficients
    X_test, y_test = X[:200] + 0.1 * rng.standard_normal((200, d)), y[:200]
    sets = [np.sort(K + rng.choice(n - K, size=max(1, int(f * n)), replace=False))
            for f in (0.01, 0.05) for _ in range(n_sets // 2)]
    refit = measure(lambda: problem.params_change(sets, "retrain"), repeat)
    truth = refit[2]
    loss_truth = problem.effect(sets, "loss", X_test, y_test, dtheta=truth)
    cert = measure(lambda: problem.params_change(sets, "rif", certify=True), repeat)
    result = cert[2]
    errors = np.linalg.norm(result.value - truth, axis=1)
    timed_effect = measure(lambda: problem.effect(sets, "loss", X_test, y_test, method="rif", certify=True), repeat)
    effect_refit = measure(lambda: problem.effect(sets, "loss", X_test, y_test, method="retrain"), repeat)
    effect = timed_effect[2]
    effect_errors = np.abs(effect.value - loss_truth)
    violations = int(np.sum(result.bound < errors) + np.sum(effect.bound < effect_errors))
    ok, effect_ok = result.certified, effect.certified
    tight = (f"median bound/true {np.median(result.bound[ok] / errors[ok]):.2f} (params, 2-norm), "
             f"{np.median(effect.bound[effect_ok] / effect_errors[effect_ok]):.2f} (test loss) where certified; "
             if ok.any() and effect_ok.any() else "")
    report(f"{name}: certificates of {len(sets)} RIF estimates", (n, d), cert, refit,
           "refitting every set", f"violations {violations}", f"{tight}certified {np.mean(ok):.0%}")
    report(f"{name}: certified test-loss effects of {len(sets)} RIF estimates", (n, d), timed_effect, effect_refit,
           "refitting every set", f"certified {np.mean(effect_ok):.0%}", "200 evaluation points")
    auto = measure(lambda: problem.params_change(sets, "auto", certify=True, rtol=0.05), repeat)
    worst = np.max(np.linalg.norm(auto[2].value - truth, axis=1) / np.linalg.norm(truth, axis=1))
    shares = ", ".join(f"{m} {np.mean(auto[2].method == m):.0%}" for m in ("rif", "newton", "retrain"))
    report(f"{name}: method='auto', rtol 0.05", (n, d), auto, refit, "refitting every set",
           f"max rel err {worst:.1e}", shares)


def _leave_out_matvec(problem, index, v):
    """H_{-S}(theta^) v, formed from H: H v - X~_S^T (c_S * X~_S v) - delta_S P^T P v."""
    from rif import _design

    rows = _design.rows(problem.X, index, problem.fit_intercept)
    out = problem.hessian @ v - rows.T @ (problem.curvature[index] * (rows @ v))
    return out - problem.sample_penalty[index].sum() * problem.penalty_diag * v


# -- 6. the RIF paper's shapes (p close to n or above) ------------------------------------------------
FULL_PAPER = [("dogfish", 1800, 2048), ("enron", 4137, 3294), ("esc50", 1600, 512), ("catdog", 9600, 2048)]
QUICK_PAPER = [("dogfish", 300, 400), ("esc50", 400, 128)]
PAPER_LAMBDA = 1e-3


def _leverage_floor(X, curvature, lam):
    """All leverages the cheaper way for the shape: p x p (Gram, Cholesky, trsm) when n >= p, else
    the n x n kernel K = C^1/2 X X^T C^1/2, whose hat matrix is K (K + lam I)^-1, so that
    h = 1 - lam diag((K + lam I)^-1) (one n x n Cholesky and its inverse)."""
    n, d = X.shape
    root = np.sqrt(curvature)
    if sp.issparse(X):                    # n < p: the kernel from one sparse product
        scaled = X.multiply(root[:, None]).tocsr()
        kernel = (scaled @ scaled.T).toarray()
        kernel[np.diag_indices(n)] += lam
        inverse = sla.cho_solve(sla.cho_factor(kernel, lower=True), np.eye(n))
        return 1.0 - lam * np.diag(inverse)
    if n >= d:
        gram = X.T @ (X * curvature[:, None])
        gram[np.diag_indices(d)] += lam
        z = sla.solve_triangular(sla.cholesky(gram, lower=True), X.T, lower=True)
        return curvature * np.einsum("ij,ij->j", z, z)
    kernel = (X * root[:, None]) @ (X * root[:, None]).T
    kernel[np.diag_indices(n)] += lam
    inverse = sla.cho_solve(sla.cho_factor(kernel, lower=True), np.eye(n))
    return 1.0 - lam * np.diag(inverse)


def bench_paper_shapes(shapes, repeat):
    """At the RIF paper's shapes, both penalty conventions of the same objective
    (1/n) sum l + (lam/2)||theta||^2, no intercept: fit + all leverages + RIF scores for 20 test points
    against the fit plus the NumPy floor for the leverages written the cheaper way (p x p or n x n),
    and one exact refit removing 1 % against scikit-learn's fastest refit (lbfgs, default and one
    BLAS thread)."""
    for name, n, d in shapes:
        data = rif.datasets.make_paper_like(name, n=n, d=d)
        X, y, X_test, y_test = data.X_train, data.y_train, data.X_test[:20], data.y_test[:20]
        C = 1.0 / (n * PAPER_LAMBDA)

        def sk_fit(Xf=X, yf=y, Cf=C, threads=None):
            with warnings.catch_warnings(), threadpool_limits(threads, user_api="blas"):
                warnings.simplefilter("ignore")
                return LogisticRegression(C=Cf, fit_intercept=False, tol=1e-10, max_iter=10000).fit(Xf, yf)

        for convention in ("per_sample", "fixed"):
            penalty = PAPER_LAMBDA if convention == "per_sample" else 1.0 / C

            def ours():
                theta = sk_fit().coef_.ravel()
                prob = rif.GLMProblem(X, y, "binomial", theta, penalty=penalty, penalty_scaling=convention,
                                      fit_intercept=False, copy_X=False)
                return prob.leverage, prob.scores(X_test, y_test, method="rif"), prob

            def floor():
                theta = sk_fit().coef_.ravel()
                p_hat = 1.0 / (1.0 + np.exp(-(X @ theta)))
                return _leverage_floor(X, p_hat * (1.0 - p_hat), n * PAPER_LAMBDA)

            o = measure(ours, repeat)
            f = measure(floor, repeat)
            err = np.max(np.abs(o[2][0] - f[2]))
            route = "p x p" if n >= d else "n x n kernel"
            report(f"paper shape {name}, {convention}: fit + leverages + RIF scores (20)", (n, d), o, f,
                   f"fit + NumPy floor ({route})", f"max|dh| {err:.0e}",
                   f"scikit-learn lbfgs fit in both; rif route {o[2][2].route}")

            prob = o[2][2]
            index = np.sort(np.random.default_rng(4).choice(n, size=max(1, n // 100), replace=False))
            keep = np.setdiff1d(np.arange(n), index)
            C_keep = C if convention == "fixed" else 1.0 / (len(keep) * PAPER_LAMBDA)
            first = measure(lambda: prob.theta + params_change_one(prob, index, "retrain"), 1)
            again = measure(lambda: prob.theta + params_change_one(prob, index, "retrain"), repeat)
            baselines = {label: measure(lambda t=t: sk_fit(X[keep], y[keep], C_keep, t).coef_.ravel(), repeat)
                         for label, t in (("lbfgs", None), ("lbfgs 1-thread", 1))}
            best = min(baselines, key=lambda k: baselines[k][0])
            rel = np.max(np.abs(baselines[best][2] - again[2])) / np.max(np.abs(again[2]))
            report(f"paper shape {name}, {convention}: exact retrain, 1% removed", (n, d), again, baselines[best],
                   f"sklearn {best}", f"rel diff {rel:.0e}",
                   f"first refit on this problem (factorisation included) {first[0]:.3f} s; "
                   f"other: {', '.join(f'{k} {v[0]:.3f}s' for k, v in baselines.items() if k != best)}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, seconds")
    parser.add_argument("--only-paper", action="store_true", help="only the RIF paper's shapes")
    parser.add_argument("--skip-statsmodels-above", type=int, default=30000,
                        help="skip the statsmodels comparison for n above this (it takes minutes)")
    args = parser.parse_args(argv)
    sizes = QUICK_SIZES if args.quick else FULL_SIZES
    repeat = 1 if args.quick else 3
    header = ("benchmark", "n x d", "rif s", "baseline s", "baseline", "speed-up", "rif MiB", "baseline MiB",
              "check", "note")
    print(" | ".join(header))
    if args.only_paper:
        sizes = []
    for n, d in sizes:
        bench_leverage_floor(n, d, repeat)
        if n <= args.skip_statsmodels_above:
            bench_statsmodels(n, d, repeat)
        bench_retrain(n, d, 1 if n * d > 5e7 else repeat)
        bench_retrain(n, d, 1 if n * d > 5e7 else repeat, correlation=0.9)
    if sizes:
        n, d = sizes[0]
        bench_batches(n, d, n_sets=100 if args.quick else 1000, n_refits=20 if args.quick else 100, repeat=1)
        bench_sparse(*(QUICK_SPARSE if args.quick else FULL_SPARSE))
        bench_multinomial(*(QUICK_MULTINOMIAL if args.quick else FULL_MULTINOMIAL), repeat=1)
        bench_certify(*(QUICK_CERTIFY if args.quick else FULL_CERTIFY), repeat=1)
        if not args.quick:
            for small in FULL_CERTIFY_SMALL:        # the exact-Hessian route's own rows
                bench_certify(*small, repeat=1)
        bench_certify_paper_regime(not args.quick, n_sets=6 if args.quick else 30)
        bench_certify_cost(not args.quick, n_sets=6 if args.quick else 20, repeat=1 if args.quick else 3)
        bench_certify_multinomial(*((600, 5, 3, 4) if args.quick else (20000, 50, 5, 10)), repeat=1)
        if not args.quick:
            bench_certify_multinomial(0, 0, 0, 20, repeat=1, dataset="digits")
    bench_paper_shapes(QUICK_PAPER if args.quick else FULL_PAPER, repeat)

    out = pathlib.Path(__file__).parent / "output"
    out.mkdir(exist_ok=True)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in ROWS]
    (out / ("results-quick.md" if args.quick else "results.md")).write_text("\n".join(lines) + "\n")
    return ROWS


if __name__ == "__main__":
    main()
