"""Search for certificates below the true error.

Draws random problems, removal sets and evaluation points, asks for every estimator with
``certify=True`` (and ``method="auto"`` at several tolerances), and checks each bound against
the true change: a refit of rif's, polished by Newton's method to about 1e-15. A bound below the
true error, or a NaN bound, is a violation.

    python benchmarks/fuzz_certificates.py --route exact --seeds 1 2 3 --cases 100
    python benchmarks/fuzz_certificates.py --route leave-out --seeds 1 --cases 30 --hard

``--route exact``: scalar GLMs small enough for the exact Hessian at each estimate (n ≤ 400),
and the chord points ``auto`` may take from their Newton points;
``leave-out``: larger ones, certified through the leave-out Hessian; ``dual``: wide ones
(p = 1.5-4 n) on the dual route, whose leave-out Hessians go through the n x n kernel;
``paper``: the RIF paper's regime (n/d of 2 to 6, small per-sample penalties, ESC-50's
distribution among others), through the leave-out Hessian; ``softmax``: multinomial models;
``auditor``: :class:`rif.InfluenceAuditor` around scikit-learn estimators (binary and three-class logistic with class weights, ridge, least squares, Poisson; with
or without intercept, sample weights and a scaling pipeline), checked against scikit-learn's own
refits instead of rif's (``--hard`` does not apply). ``--hard``: features 3-8 times larger and
penalties 1e-4 to 1e-2 (far moves, nearly separable fits). An error or a floating-point
RuntimeWarning of rif's is a finding too. Prints each finding and a summary; the exit status is 1 if
any was found.
"""

import argparse
import sys
import warnings

import numpy as np

import rif
from rif import _certify_dense

SCALAR_METHODS = (("if", None), ("rif", None), ("newton", None), ("auto", 0.05), ("auto", 1e-3), ("auto", 1e-6),
                  ("retrain", None))
EFFECT_METHODS = (("rif", None), ("newton", None), ("auto", 0.05), ("retrain", None))
SOFTMAX_METHODS = (("rif", None), ("newton", None), ("auto", 0.05), ("auto", 1e-4), ("retrain", None))


def _labels(family, eta, rng):
    n = len(eta)
    if family == "binomial":
        y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float)
        y[:2] = [0.0, 1.0]
    elif family == "gaussian":
        y = eta + rng.standard_normal(n)
    else:
        y = rng.poisson(np.exp(0.5 * np.clip(eta, -5, 5))).astype(float)
        y[0] = 1.0
    return y


def _removal_sets(X, rng, first, fractions):
    """1-5 random or clustered sets (never the first ``first`` samples)."""
    n = X.shape[0]
    sets = []
    for _ in range(int(rng.integers(1, 6))):
        k = max(1, int(rng.choice(fractions) * n))
        if rng.random() < 0.5:
            order = np.argsort(np.linalg.norm(X - X[rng.integers(first, n)], axis=1))
            sets.append(np.sort(order[order >= first][:k]))
        else:
            sets.append(np.sort(first + rng.choice(n - first, k, replace=False)))
    return sets


def scalar_case(rng, route, hard):
    """(problem, sets, X_eval, y_eval), or None where the draw does not take ``route``."""
    if route == "paper":
        return paper_case(rng, hard)
    family = str(rng.choice(["binomial", "gaussian", "poisson"]))
    if route == "exact":
        n = int(rng.integers(15, 400))
        d = int(rng.integers(1, min(40, n - 2)))
    elif route == "dual":
        n = int(rng.integers(40, 260))
        d = int(rng.integers(int(1.5 * n), min(900, 4 * n)))
    else:
        n = int(rng.integers(600, 2500))
        d = int(rng.integers(max(2, int(np.sqrt(4.2e6 / n))), 90))
    scale = float(rng.choice([4.0, 8.0] if hard else [0.5, 1.0, 2.0, 4.0]))
    X = rng.standard_normal((n, d)) * scale / np.sqrt(d)
    if rng.random() < 0.3:
        X[rng.integers(n)] *= rng.uniform(3, 10)                       # one high-leverage row
    y = _labels(family, X @ rng.standard_normal(d), rng)
    scaling = str(rng.choice(["fixed", "per_sample"]))
    penalty = float(rng.choice([1e-4, 1e-3, 1e-2] if hard else [1e-3, 1e-2, 0.1, 1.0, 5.0]))
    options = dict(penalty=penalty, penalty_scaling=scaling, fit_intercept=bool(rng.random() < 0.6), tol=1e-13)
    if route == "dual":
        options["route"] = "dual"
    if rng.random() < 0.3:
        options["sample_weight"] = rng.uniform(0.3, 3.0, n)
    if rng.random() < 0.2 and scaling == "fixed":
        options["offset"] = rng.normal(0, 0.3, n)
    problem = _problem(X, y, family, options, exact=route == "exact")
    if problem is None:
        return None
    sets = _removal_sets(X, rng, 2, [0.01, 0.05, 0.1, 0.2])
    return problem, sets, rng.standard_normal((7, d)) * scale / np.sqrt(d), y[:7]


def paper_case(rng, hard):
    """(problem, sets, X_eval, y_eval) in the RIF paper's regime through the leave-out route: n/d of 2
    to 6 and per-sample penalties of 1e-3 to 1e-2 (1e-4 to 1e-3 with ``hard``), half of the draws
    from ESC-50's distribution (rif.datasets.make_paper_like), half logistic or Poisson with
    Gaussian features; where estimates are tens of percent off and the chord chains run deepest."""
    n = int(rng.integers(500, 1300))
    d = int(n / float(rng.choice([2.0, 3.0, 4.0, 6.0])))
    if rng.random() < 0.5:
        paper = rif.datasets.make_paper_like("esc50", n=n, d=d, seed=int(rng.integers(1000)))
        family, X, y, X_eval, y_eval = "binomial", paper.X_train, paper.y_train, paper.X_test[:7], paper.y_test[:7]
    else:
        family = str(rng.choice(["binomial", "poisson"]))
        X = rng.standard_normal((n, d)) * float(rng.choice([1.0, 2.0, 4.0])) / np.sqrt(d)
        y = _labels(family, X @ rng.standard_normal(d), rng)
        X_eval, y_eval = rng.standard_normal((7, d)) / np.sqrt(d), y[:7]
    penalty = float(rng.choice([1e-4, 3e-4, 1e-3] if hard else [1e-3, 3e-3, 1e-2]))
    options = dict(penalty=penalty, penalty_scaling="per_sample", fit_intercept=bool(rng.random() < 0.3), tol=1e-13)
    problem = _problem(X, y, family, options, exact=False)
    if problem is None:
        return None
    return problem, _removal_sets(X, rng, 2, [0.01, 0.05, 0.1]), X_eval, y_eval


def _problem(X, y, family, options, exact):
    """The GLMProblem, or None where rif refuses it (separable, singular: as documented) or where it
    does not take the route asked for (``exact``: the exact Hessians of rif._certify_dense)."""
    try:
        problem = rif.GLMProblem(X, y, family, **options)
    except ValueError:
        return None
    return problem if rif._certify_dense.applies(problem) == exact else None


def softmax_case(rng, hard):
    K = int(rng.integers(3, 6))
    n = int(rng.integers(60, 600))
    d = int(rng.integers(1, min(30, n // K)))
    scale = float(rng.choice([3.0, 6.0] if hard else [0.5, 1.0, 2.0]))
    X = rng.standard_normal((n, d)) * scale / np.sqrt(d)
    logits = X @ rng.standard_normal((K, d)).T
    prob = np.exp(logits - logits.max(axis=1, keepdims=True))
    prob /= prob.sum(axis=1, keepdims=True)
    y = (prob.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    y[:K] = np.arange(K)
    options = dict(penalty=float(rng.choice([1e-4, 1e-3, 1e-2] if hard else [1e-2, 0.1, 1.0])), tol=1e-13)
    if rng.random() < 0.3:
        options["sample_weight"] = rng.uniform(0.3, 3.0, n)
    try:
        problem = rif.MultinomialProblem(X, y, K, **options)
    except ValueError:
        return None
    sets = _removal_sets(X, rng, K, [0.01, 0.05, 0.1])
    return problem, sets, rng.standard_normal((6, d)) * scale / np.sqrt(d), y[:6]


def polished(problem, sets):
    """Each set's exact change: rif's refit, then Newton steps on the objective without the set."""
    refits = problem.params_change(sets, "retrain")
    scalar = hasattr(problem, "family")
    # softmax models take Newton steps in block order, on H + kappa Pi_N (N: the directions the
    # objective does not see, which the gradient has no part in)
    to_block, to_public = (lambda t: t, lambda t: t) if scalar else (problem.from_public, problem.to_public)
    out = []
    for index, dtheta in zip(sets, refits):
        weights = problem.sample_weight.copy()
        weights[index] = 0.0
        theta = to_block(problem.theta + dtheta)
        for _ in range(6):
            _, grad = problem.value_gradient(theta, weights)
            step = np.linalg.solve(problem.hessian_at(theta, weights), grad)
            theta = theta - step
            if np.linalg.norm(step) < 1e-15 * (1 + np.linalg.norm(theta)):
                break
        if not scalar:
            # every minimiser's classes sum to zero on each coordinate (the data see only the part
            # that does not, the penalty prefers it; the intercepts' common direction is fixed that
            # way): the Newton steps' own rounding there, up to eps / lambda, is taken off
            block = theta.reshape(problem.n_classes, problem.p1)
            theta = (block - block.mean(axis=0)).ravel()
        out.append(to_public(theta) - problem.theta)
    return np.array(out)


def _calling(call, method):
    """call(), and whether it warned that method='auto' could not prove rtol for some set; (None, False)
    where ``method`` is RIF or the Newton step and a set removes a sample of leverage numerically 1
    (both refuse it, as documented; ``auto`` and the refit must not)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", rif.CertificationWarning)
        try:
            result = call()
        except rif.NearSingularLeverageError:
            if method not in ("rif", "newton"):
                raise
            return None, False
    others = [w for w in caught if not issubclass(w.category, rif.CertificationWarning)]
    for w in others:                      # anything else keeps the caller's filters (errors for RuntimeWarning)
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return result, len(others) < len(caught)


def _check_warned(values, bounds, rtol, warned, label, report):
    """auto warns exactly when some set's bound does not prove rtol: bound <= rtol (|value| - bound)."""
    proved = np.isfinite(bounds) & (bounds <= rtol * np.maximum(values - bounds, 0.0))
    if warned == bool(proved.all()):
        report(f"{label}: auto at rtol {rtol:g} {'warned' if warned else 'did not warn'} with "
               f"{int((~proved).sum())} set(s) unproved")


def _check_chords(problem, sets, truth, scale, label, report, steps=3):
    """The exact route's chord points (``method="auto"`` takes them only where one is expected to
    prove rtol): from each Newton point of the evaluation at RIF's estimate, ``steps`` chord steps
    through that evaluation's Hessian, every one's 2-norm bound against the truth."""
    count = 0
    try:
        estimates = problem.params_change(sets, "rif")
    except rif.NearSingularLeverageError:           # (refused, as documented)
        return 0
    for j, cert in enumerate(_certify_dense.certify(problem, sets, estimates)):
        if cert.chord is None:
            continue
        point = cert.newton
        for step in range(steps):
            (chord,), moves = _certify_dense._chord_certificates(problem, [cert.chord], point[None])
            error = np.linalg.norm(point - truth[j])
            count += 1
            if not error <= chord.newton_bound + 1e-11 * (1 + scale[j]):
                report(f"{label}: chord point {step} of set {j}: error {error:.3e} > bound {chord.newton_bound:.3e}")
            point = point - moves[0]
    return count


def check(problem, sets, X_eval, y_eval, label, report):
    """Every certified estimate of parameters and effects against the truth; returns the number of
    bounds checked."""
    truth = polished(problem, sets)
    scale = np.linalg.norm(truth, axis=1)
    scalar = hasattr(problem, "family")
    count = 0
    for method, rtol in SCALAR_METHODS if scalar else SOFTMAX_METHODS:
        extra = {} if rtol is None else {"rtol": rtol}
        result, warned = _calling(lambda: problem.params_change(sets, method, certify=True, **extra), method)
        if result is None:
            continue
        errors = np.linalg.norm(result.value - truth, axis=1)
        bad = (errors > result.bound + 1e-11 * (1 + scale)) | np.isnan(result.bound)
        count += len(sets)
        for j in np.flatnonzero(bad):
            report(f"{label}: params, {method} {extra}: error {errors[j]:.3e} > bound {result.bound[j]:.3e}")
        if rtol is not None:
            _check_warned(np.linalg.norm(result.value, axis=1), result.bound, rtol, warned, f"{label}: params", report)
            provable = scale > 1e-10 * (1 + np.linalg.norm(problem.theta))        # a change above rounding
            for j in np.flatnonzero(provable & (errors > rtol * (1 + 1e-6) * scale)):
                if not warned:
                    report(f"{label}: auto at rtol {rtol:g} returned a relative error {errors[j] / scale[j]:.3e} "
                           f"without a warning")
    if scalar and _certify_dense.applies(problem):
        count += _check_chords(problem, sets, truth, scale, label, report)
    targets = ("loss", "decision", "proba") if not scalar or problem.family.name == "binomial" else ("loss", "decision")
    for target in targets:
        exact = problem.effect(sets, target, X_eval, y_eval, dtheta=truth)
        for method, rtol in EFFECT_METHODS if scalar else (("rif", None), ("auto", 0.05)):
            extra = {} if rtol is None else {"rtol": rtol}
            result, warned = _calling(lambda: problem.effect(sets, target, X_eval, y_eval, method=method,
                                                             certify=True, **extra), method)
            if result is None:
                continue
            if rtol is not None:
                _check_warned(np.abs(result.value), result.bound, rtol, warned, f"{label}: {target} effect", report)
            errors = np.abs(result.value - exact)
            bad = (errors > result.bound + 1e-11 * (1 + np.abs(exact))) | np.isnan(result.bound)
            count += len(sets)
            for j in np.flatnonzero(bad):
                report(f"{label}: {target} effect, {method} {extra}: error {errors[j]:.3e} > bound "
                       f"{result.bound[j]:.3e}")
    return count


def auditor_case(rng):
    """(auditor, sets, X_eval, y_eval, refit) for a random scikit-learn estimator, where ``refit(keep)``
    fits a fresh copy to tolerance 1e-14 on the kept rows and returns its parameters in the
    auditor's order (None where it cannot be compared)."""
    from sklearn.linear_model import LinearRegression, LogisticRegression, PoissonRegressor, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    kind = rng.choice(["logistic", "softmax", "ridge", "ols", "poisson"])
    n = int(rng.integers(30, 400))
    d = int(rng.integers(2, min(40, n // 3)))
    X = rng.standard_normal((n, d)) * rng.uniform(0.3, 3.0, d) + rng.uniform(-1.0, 1.0, d)
    intercept = bool(rng.integers(0, 2))
    weights = rng.uniform(0.2, 3.0, n) if rng.random() < 0.5 else None
    beta = rng.standard_normal(d) * rng.uniform(0.5, 3.0) / np.sqrt(d)
    if kind in ("logistic", "softmax"):
        K = 2 if kind == "logistic" else 3
        y = np.argmax(X @ (2.0 * rng.standard_normal((d, K)) / np.sqrt(d)) + rng.gumbel(size=(n, K)), axis=1)
        y[:K] = np.arange(K)
        options = dict(C=float(10 ** rng.uniform(-2, 2)), fit_intercept=intercept,
                       class_weight={0: float(rng.uniform(0.5, 2.0)), 1: 1.0} if rng.random() < 0.3 else None)
        make = lambda tol: LogisticRegression(**options, tol=tol, max_iter=20000,  # noqa: E731
                                              solver="newton-cg" if K > 2 else "newton-cholesky")
    elif kind == "poisson":
        y = rng.poisson(np.exp(np.clip(0.5 * X @ beta, -3, 3))).astype(float)
        options = dict(alpha=float(10 ** rng.uniform(-3, 0)), fit_intercept=intercept)
        make = lambda tol: PoissonRegressor(**options, tol=tol, max_iter=20000, solver="newton-cholesky")  # noqa: E731
    else:
        y = X @ beta + rng.standard_normal(n)
        options = dict(fit_intercept=intercept)
        if kind == "ridge":
            options["alpha"] = float(10 ** rng.uniform(-2, 2))
        make = lambda tol: (Ridge if kind == "ridge" else LinearRegression)(**options)  # noqa: E731
    scaled = rng.random() < 0.3
    features = StandardScaler().fit_transform(X) if scaled else X      # the pipeline's fixed transform
    estimator = make_pipeline(StandardScaler(), make(1e-12)) if scaled else make(1e-12)
    try:
        with warnings.catch_warnings():
            # scikit-learn's own fit at its tolerance floor (its and SciPy's line-search warnings)
            warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"(scipy|sklearn)\.")
            auditor = rif.InfluenceAuditor(estimator).fit(X, y, sample_weight=weights)
    except (ValueError, rif.SingularHessianError):
        return None

    def refit(keep):
        if kind in ("logistic", "softmax") and len(np.unique(y[keep])) < (2 if kind == "logistic" else 3):
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")             # scikit-learn's line searches at its tolerance floor
            model = make(1e-14).fit(features[keep], y[keep],
                                    **({} if weights is None else {"sample_weight": weights[keep]}))
        coef, offset = np.ravel(model.coef_), np.atleast_1d(model.intercept_)
        if kind == "softmax":
            offset = offset - offset.mean()             # the intercepts' common shift is not identified
        return np.append(coef, offset) if intercept else coef

    sets = _removal_sets(X, rng, 3, [0.01, 0.05, 0.1, 0.2])
    m = max(5, n // 5)
    return auditor, sets, X[:m] + 0.1 * rng.standard_normal((m, d)), y[:m], refit


def check_auditor(auditor, sets, X_eval, y_eval, refit, label, report):
    """Every certified estimate of the auditor against scikit-learn's refits (their own tolerance
    taken as 1e-7 of the change); returns the number of bounds checked."""
    n = len(auditor.leverage_)
    base = refit(np.ones(n, dtype=bool))
    truths = []
    for index in sets:
        keep = np.ones(n, dtype=bool)
        keep[index] = False
        theta = refit(keep)
        truths.append(None if theta is None or base is None else theta - base)
    usable = [j for j, t in enumerate(truths) if t is not None]
    if not usable:
        return 0
    sets, truth = [sets[j] for j in usable], np.array([truths[j] for j in usable])
    scale = np.linalg.norm(truth, axis=1)
    count = 0
    for method, rtol in (("rif", None), ("newton", None), ("auto", 0.05)):
        extra = {} if rtol is None else {"rtol": rtol}
        result, _ = _calling(lambda: auditor.params_change(sets, method, certify=True, **extra), method)
        if result is None:
            continue
        errors = np.linalg.norm(result.value - truth, axis=1)
        count += len(sets)
        for j in np.flatnonzero((errors > result.bound + 1e-7 * scale + 1e-9) | np.isnan(result.bound)):
            report(f"{label}: auditor params, {method} {extra}: error {errors[j]:.3e} > bound {result.bound[j]:.3e}")
    for target in ("loss", "decision", "train_loss", "self_loss"):
        evaluation = (X_eval, y_eval) if target in ("loss", "decision") else (None, None)
        exact = auditor.effect(sets, target, *evaluation, dtheta=truth)
        for method, rtol in (("rif", None), ("newton", None), ("auto", 0.05)):
            extra = {} if rtol is None else {"rtol": rtol}
            result, _ = _calling(lambda: auditor.effect(sets, target, *evaluation, method=method, certify=True,
                                                        **extra), method)
            if result is None:
                continue
            errors = np.abs(result.value - exact)
            count += len(sets)
            for j in np.flatnonzero((errors > result.bound + 1e-7 * np.abs(exact) + 1e-9) | np.isnan(result.bound)):
                report(f"{label}: auditor {target} effect, {method} {extra}: error {errors[j]:.3e} > bound "
                       f"{result.bound[j]:.3e}")
    return count


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--route", choices=("exact", "leave-out", "dual", "paper", "softmax", "auditor"),
                        default="exact")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--cases", type=int, default=50, help="draws per seed")
    parser.add_argument("--hard", action="store_true", help="larger features, smaller penalties")
    args = parser.parse_args(argv)
    found, checked = [], 0
    for seed in args.seeds:
        for case in range(args.cases):
            rng = np.random.default_rng([seed, case])
            with warnings.catch_warnings():
                warnings.simplefilter("error", RuntimeWarning)     # floating-point noise is a finding too
                warnings.simplefilter("ignore", rif.RetrainConvergenceWarning)
                if args.route == "auditor":
                    drawn, checker = auditor_case(rng), check_auditor
                elif args.route == "softmax":
                    drawn, checker = softmax_case(rng, args.hard), check
                else:
                    drawn, checker = scalar_case(rng, args.route, args.hard), check
                if drawn is None:
                    continue
                label = f"seed {seed} case {case}"
                try:
                    checked += checker(*drawn, label, lambda line: (found.append(line), print(line, flush=True)))
                except Exception as error:      # an error is a finding too
                    line = f"{label}: {type(error).__name__}: {error}"
                    found.append(line)
                    print(line, flush=True)
    print(f"{args.route}{' (hard)' if args.hard else ''}: {checked} bounds checked, {len(found)} findings")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
