"""rif's influence table and leave-one-out model selection against statsmodels and scikit-learn.

    python benchmarks/classical.py [--quick]

1. Influence table of an OLS fit (p = 10 with the constant), n = 2000, 4000, 10000:
   statsmodels' ``OLSInfluence.summary_frame()`` plus ``cov_ratio`` (which refit n times
   for the deletion quantities) against ``rif.GLMProblem.from_statsmodels(res).influence_table()``
   (closed form). Reported: both wall times and the largest relative difference over the
   shared columns (relative to each column's largest absolute value).
2. Leave-one-out choice of C for LogisticRegression, n = 2000, d = 50, 10 values of C:
   ``rif.LeaveOneOutSearchCV`` ("newton" and "retrain") against
   ``GridSearchCV(cv=LeaveOneOut())`` with the log-loss. GridSearchCV costs n fits per
   candidate; it is timed on ``--reference-candidates`` of the 10 values (default 2) and
   its time per candidate is reported next to the extrapolation to all 10; the score
   agreement is measured on those candidates. Both run on one BLAS thread (many small fits:
   on a busy machine BLAS threads slow scikit-learn's fits by up to 20x).
   Also ``RidgeCV`` (efficient leave-one-out, ridge only) against the rif search for Ridge.

Timings are wall-clock on whatever machine runs this; on a shared machine they are
contended and only their order of magnitude is meaningful.
"""

import argparse
import time

import numpy as np


def influence_rows(sizes, p=10, seed=0):
    import statsmodels.api as sm

    import rif

    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(seed)
    warm = sm.OLS(rng.normal(size=50), sm.add_constant(rng.normal(size=(50, 2)))).fit()
    rif.GLMProblem.from_statsmodels(warm).influence_table()          # compile rif's kernels first
    print(f"{'n':>6} {'statsmodels s':>14} {'rif s':>8} {'speed-up':>9} {'max rel diff':>13}")
    for n in sizes:
        X = sm.add_constant(rng.normal(size=(n, p - 1)))
        y = X @ rng.normal(size=p) + rng.standard_t(4, size=n)
        res = sm.OLS(y, X).fit()
        with threadpool_limits(1):        # n small refits: one BLAS thread is statsmodels' fastest
            start = time.perf_counter()
            infl = res.get_influence()
            frame = infl.summary_frame()
            cov_ratio = infl.cov_ratio
            t_sm = time.perf_counter() - start
        start = time.perf_counter()
        table = rif.GLMProblem.from_statsmodels(res).influence_table()
        t_rif = time.perf_counter() - start
        diffs = [np.max(np.abs(table[c].to_numpy() - frame[c].to_numpy())) / np.max(np.abs(frame[c].to_numpy()))
                 for c in frame.columns]
        diffs.append(np.max(np.abs(table["cov_ratio"].to_numpy() - cov_ratio)) / np.max(np.abs(cov_ratio)))
        print(f"{n:>6} {t_sm:>14.2f} {t_rif:>8.3f} {t_sm / t_rif:>9.0f} {max(diffs):>13.1e}")


def search_rows(n, d, n_ref, seed=0):
    from sklearn.linear_model import LogisticRegression, Ridge, RidgeCV
    from sklearn.metrics import log_loss, make_scorer
    from sklearn.model_selection import GridSearchCV, LeaveOneOut
    from threadpoolctl import threadpool_limits

    from rif import LeaveOneOutSearchCV

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = (rng.random(n) < 1 / (1 + np.exp(-(X @ rng.normal(scale=0.3, size=d))))).astype(int)
    Cs = list(np.logspace(-3, 2, 10))
    scorer = make_scorer(log_loss, greater_is_better=False, response_method="predict_proba", labels=[0, 1])
    est = LogisticRegression(solver="newton-cholesky", tol=1e-10, max_iter=1000)
    results = {}
    for method in ("newton", "retrain"):
        with threadpool_limits(1):
            start = time.perf_counter()
            search = LeaveOneOutSearchCV(est, {"C": Cs}, scoring=scorer, method=method).fit(X, y)
            elapsed = time.perf_counter() - start
        results[method] = (elapsed, search.cv_results_["mean_test_score"], search.best_params_)
    ref_idx = np.linspace(0, len(Cs) - 1, n_ref).round().astype(int)
    with threadpool_limits(1):
        start = time.perf_counter()
        grid = GridSearchCV(est, {"C": [Cs[k] for k in ref_idx]}, cv=LeaveOneOut(), scoring=scorer).fit(X, y)
        t_ref = time.perf_counter() - start
    ref_scores = grid.cv_results_["mean_test_score"]
    per_candidate = t_ref / n_ref
    print(f"LogisticRegression, n={n}, d={d}, {len(Cs)} values of C")
    print(f"  GridSearchCV(LeaveOneOut): {t_ref:.1f} s for {n_ref} candidates ({per_candidate:.1f} s each; "
          f"{per_candidate * len(Cs):.0f} s extrapolated to {len(Cs)})")
    for method, (t, scores, best) in results.items():
        rel = np.max(np.abs(scores[ref_idx] - ref_scores) / np.abs(ref_scores))
        print(f"  LeaveOneOutSearchCV({method}): {t:.2f} s for all {len(Cs)}; speed-up vs extrapolated "
              f"{per_candidate * len(Cs) / t:.0f}x; max relative score difference {rel:.1e}; best {best}")
    Xr = X
    yr = X @ rng.normal(size=d) + rng.normal(size=n)
    alphas = list(np.logspace(-2, 3, 10))
    start = time.perf_counter()
    ridge_cv = RidgeCV(alphas=alphas, scoring="neg_mean_squared_error").fit(Xr, yr)
    t_ridge = time.perf_counter() - start
    start = time.perf_counter()
    search = LeaveOneOutSearchCV(Ridge(), {"alpha": alphas}, scoring="neg_mean_squared_error").fit(Xr, yr)
    t_search = time.perf_counter() - start
    print(f"Ridge, n={n}, d={d}, 10 alphas: RidgeCV {t_ridge:.2f} s (alpha {ridge_cv.alpha_:.3g}), "
          f"LeaveOneOutSearchCV(newton) {t_search:.2f} s (alpha {search.best_params_['alpha']:.3g}); "
          f"best score {ridge_cv.best_score_:.6g} vs {search.best_score_:.6g}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--reference-candidates", type=int, default=2)
    parser.add_argument("--part", choices=("all", "table", "search"), default="all")
    args = parser.parse_args()
    if args.quick:
        influence_rows([500, 1000])
        search_rows(300, 10, 1)
    else:
        if args.part in ("all", "table"):
            influence_rows([2000, 4000, 10000])
        if args.part in ("all", "search"):
            search_rows(2000, 50, args.reference_candidates)


if __name__ == "__main__":
    main()
