"""Measure where the RIF paper's claims hold on random Gaussian-design instances.

The property tests in tests/test_paper_theory.py state the claims on instances
drawn from the distributions below (the same helpers); this script draws many
of them and prints, per claim, the worst case over the draws by region, so that
the tests' region and tolerances come from measurement (recorded in
docs/theory.md, "The paper's claims, measured").

Instances (:func:`instance`): X with i.i.d. N(0, 1) entries, n = ratio * d,
labels from a logistic model with true logit x^T beta, ||beta|| = 2 (binomial;
at least three samples of each class), or y = x^T beta + N(0, 1) (gaussian);
no intercept; L2 strength lam in the mean form (1/n) sum l + (lam/2)||theta||^2,
applied either as a fixed penalty n*lam that removal leaves unchanged
(``scaling="fixed"``, the setting of the paper's theory) or scaled with the
remaining data (``"per_sample"``, the convention of the paper's experiments).

    python experiments/paper_theory_region.py [--draws 200]
"""

import argparse

import numpy as np

import rif


def data(family, n, d, rng):
    X = rng.standard_normal((n, d))
    beta = rng.standard_normal(d)
    beta *= 2.0 / np.linalg.norm(beta)
    if family == "binomial":
        y = (rng.random(n) < 1 / (1 + np.exp(-X @ beta))).astype(float)
        y[:6] = [0.0, 1.0, 0.0, 1.0, 0.0, 1.0]              # at least three of each class
    else:
        y = X @ beta + rng.standard_normal(n)
    return X, y


def problem(family, X, y, lam, scaling="fixed"):
    n = X.shape[0]
    penalty = lam * n if scaling == "fixed" else lam
    return rif.GLMProblem(X, y, family, penalty=penalty, penalty_scaling=scaling, fit_intercept=False)


def removal_set(X, k, kind, rng, n=None):
    """k random rows of the first n, or the k nearest (Euclidean) to a random one of them."""
    n = X.shape[0] if n is None else n
    if kind == "random":
        return np.sort(rng.choice(n, size=k, replace=False))
    anchor = X[rng.integers(n)]
    return np.sort(np.argsort(np.sum((X[:n] - anchor) ** 2, axis=1), kind="stable")[:k])


def gap_errors(p, S):
    """||IF - NS||, ||RIF - NS||, ||NS||."""
    est = {m: p.params_change(S, method=m) for m in ("if", "rif", "newton")}
    ns = est["newton"]
    return np.linalg.norm(est["if"] - ns), np.linalg.norm(est["rif"] - ns), np.linalg.norm(ns)


def mean_rel_rif_error(p, sets):
    return float(np.mean([gap_errors(p, S)[1] / gap_errors(p, S)[2] for S in sets]))


def claim1(family, kind, d, ratio, lam, kfrac, seed, scaling="fixed"):
    """||RIF - NS|| / ||IF - NS|| for one drawn instance and set."""
    rng = np.random.default_rng(seed)
    n = int(ratio * d)
    X, y = data(family, n, d, rng)
    k = int(np.clip(round(kfrac * min(d, n // 10)), 2, max(2, min(d, n // 10))))
    e_if, e_rif, _ = gap_errors(problem(family, X, y, lam, scaling), removal_set(X, k, kind, rng))
    return e_rif / e_if


def claim2(family, d, ratio, lam, kfrac, seed, scaling="fixed"):
    """Mean relative RIF-NS error over 5 random sets: (at 100 lam) / (at lam), (at 4n) / (at n)."""
    rng = np.random.default_rng(seed)
    n = int(ratio * d)
    X, y = data(family, 4 * n, d, rng)
    k = int(np.clip(round(kfrac * min(d, n // 10)), 2, max(2, min(d, n // 10))))
    sets = [removal_set(X, k, "random", rng, n) for _ in range(5)]
    base = mean_rel_rif_error(problem(family, X[:n], y[:n], lam, scaling), sets)
    return (mean_rel_rif_error(problem(family, X[:n], y[:n], 100 * lam, scaling), sets) / base,
            mean_rel_rif_error(problem(family, X, y, lam, scaling), sets) / base)


def claim2b(family, d, ratio, lam, seed, scaling="fixed"):
    """||RIF - IF|| / ||IF|| at lam, 10 lam, 100 lam and the fixed-penalty bound at lam."""
    rng = np.random.default_rng(seed)
    n = int(ratio * d)
    X, y = data(family, n, d, rng)
    S = removal_set(X, max(2, n // 20), "random", rng)
    out = []
    for f in (1, 10, 100):
        p = problem(family, X, y, lam * f, scaling)
        a, b = (p.params_change(S, method=m) for m in ("if", "rif"))
        h = p.leverage[S]
        loo = p.loo_params_change(method="if")[S]
        bound = np.max(h / (1 - h)) * np.sum(np.linalg.norm(loo, axis=1)) / np.linalg.norm(a)
        out.append((np.linalg.norm(b - a) / np.linalg.norm(a), bound))
    return out


def claim3(family, d, ratio, lam, seed, details=False):
    """mean(1/(1-h)) and the NS-on-IF slope over all leave-one-out changes, each / (1/(1 - d_eff/n)).

    With ``details``, also the slope's weighted-mean form sum w_i / (1 - h_i) / sum w_i,
    w_i = ||dtheta_IF,i||^2 (equal to the slope under the fixed penalty), and the
    range [min, max] of 1/(1 - h_i), each / the factor.
    """
    rng = np.random.default_rng(seed)
    n = int(ratio * d)
    X, y = data(family, n, d, rng)
    p = problem(family, X, y, lam)
    h = p.leverage
    factor = 1.0 / (1.0 - h.sum() / n)
    a, ns = p.loo_params_change(method="if"), p.loo_params_change(method="newton")
    slope = np.sum(a * ns) / np.sum(a * a)
    if not details:
        return np.mean(1 / (1 - h)) / factor, slope / factor
    w = np.sum(a * a, axis=1)
    weighted = np.sum(w / (1 - h)) / np.sum(w)
    return (np.mean(1 / (1 - h)) / factor, slope / factor, weighted / factor,
            1 / (1 - h.min()) / factor, 1 / (1 - h.max()) / factor)


def claim4(d, ratio, lam, kfrac, seed):
    """(relative NS error, the bound ||H0^-1|| ||Hbar - H0||, identity residual / ||dtheta||) for logistic."""
    rng = np.random.default_rng(seed)
    n = int(ratio * d)
    X, y = data("binomial", n, d, rng)
    p = problem("binomial", X, y, lam)
    S = removal_set(X, max(2, int(kfrac * n)), "random", rng)
    ns, true = p.params_change(S, method="newton"), p.params_change(S, method="retrain")
    w = np.ones(n)
    w[S] = 0
    H0 = p.gradient_hessian(p.theta, w)[1]
    nodes, weights = np.polynomial.legendre.leggauss(16)
    Hbar = sum(wt / 2 * p.gradient_hessian(p.theta + (t + 1) / 2 * true, w)[1] for t, wt in zip(nodes, weights))
    bound = np.linalg.norm(np.linalg.inv(H0), 2) * np.linalg.norm(Hbar - H0, 2)
    identity = np.linalg.solve(H0, (Hbar - H0) @ true)
    rel = np.linalg.norm(ns - true) / np.linalg.norm(true)
    # the identity's residual relative to ||dtheta||: quadrature and the refit's own tolerance
    return rel, bound, np.linalg.norm((ns - true) - identity) / np.linalg.norm(true)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=200)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(2026)
    u = lambda lo, hi: float(rng.uniform(lo, hi))                     # noqa: E731
    logu = lambda lo, hi: float(np.exp(rng.uniform(np.log(lo), np.log(hi))))   # noqa: E731
    seed = lambda: int(rng.integers(2**31))                           # noqa: E731

    print("claim 1: ||RIF - NS|| / ||IF - NS||, d in [10, 40], 2 <= k <= min(d, n/10), lam in [1e-4, 1]")
    for scaling in ("fixed", "per_sample"):
        for kind in ("random", "nearest"):
            bands = {"[1.2, 2)": (1.2, 2), "[2, 4)": (2, 4), "[4, 32]": (4, 32)}
            cells = []
            for band, (lo, hi) in bands.items():
                v = [claim1(["binomial", "gaussian"][i % 2], kind, int(rng.integers(10, 41)), logu(lo, hi),
                            logu(1e-4, 1), u(0, 1), seed(), scaling) for i in range(args.draws // 6)]
                cells.append(f"n/d {band}: max {max(v):.3f} median {np.median(v):.3f}")
            print(f"  {scaling:10s} {kind:8s} " + "; ".join(cells), flush=True)

    print("claim 2: mean relative RIF-NS error over 5 sets, ratio after/before (fixed penalty)")
    for family in ("binomial", "gaussian"):
        for lam_lo, lam_hi in ((1e-3, 1e-1), (1e-1, 10)):
            v = np.array([claim2(family, int(rng.integers(10, 41)), logu(2, 8), logu(lam_lo, lam_hi), u(0, 1), seed())
                          for _ in range(args.draws // 8)])
            print(f"  {family:9s} lam in [{lam_lo:g}, {lam_hi:g}]: lam x100 max {v[:, 0].max():.3f} "
                  f"median {np.median(v[:, 0]):.3f};  n x4 max {v[:, 1].max():.3f} median {np.median(v[:, 1]):.3f}",
                  flush=True)

    print("claim 2b: ||RIF - IF|| / ||IF|| at lam, 10 lam, 100 lam (lam in [1, 10]); bound holds?")
    for scaling in ("fixed", "per_sample"):
        for family in ("binomial", "gaussian"):
            v = [claim2b(family, int(rng.integers(10, 41)), logu(1.2, 32), logu(1, 10), seed(), scaling)
                 for _ in range(args.draws // 8)]
            rel = np.array([[r for r, _ in row] for row in v])
            ok = all(r <= b * (1 + 1e-9) for row in v for r, b in row)
            print(f"  {scaling:10s} {family:9s} worst decade ratio {np.max(rel[:, 1:] / rel[:, :-1]):.3f}, "
                  f"worst at 100 lam {rel[:, 2].max():.2e}, bound holds: {ok}", flush=True)

    print("claim 3: mean(1/(1-h)) and NS-on-IF slope of all LOO changes, each / (1/(1 - d_eff/n))")
    for family in ("binomial", "gaussian"):
        for lo, hi in ((2, 4), (4, 32)):
            v = np.array([claim3(family, int(rng.integers(10, 41)), logu(lo, hi), logu(1e-3, 1e-1), seed())
                          for _ in range(args.draws // 8)])
            print(f"  {family:9s} n/d [{lo}, {hi}]: mean factor ratio [{v[:, 0].min():.4f}, {v[:, 0].max():.4f}]; "
                  f"slope ratio [{v[:, 1].min():.4f}, {v[:, 1].max():.4f}]", flush=True)

    print("claim 4: relative NS error (logistic) / bound ||H0^-1|| ||Hbar - H0||; identity residual")
    v = np.array([claim4(int(rng.integers(5, 21)), logu(2, 32), logu(1e-3, 1), u(0.01, 0.1), seed())
                  for _ in range(args.draws // 8)])
    print(f"  worst error / bound {np.max(v[:, 0] / v[:, 1]):.3f}; worst identity residual {v[:, 2].max():.1e}")


if __name__ == "__main__":
    main()
