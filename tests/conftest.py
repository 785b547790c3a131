import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# The default profile draws the same examples on every run (derandomize), so a failure in one run is a
# failure in every run and can be reproduced; `--hypothesis-profile=explore` draws fresh random examples,
# more of them, to search for counterexamples the fixed draw does not reach.
settings.register_profile(
    "ci", max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "explore", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci")

FAMILIES = ("binomial", "gaussian", "poisson")


def synthetic(family, n=60, d=4, seed=0, weights=False):
    """A well-posed GLM data set: (X, y, sample_weight or None)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    beta = rng.normal(scale=0.7, size=d)
    eta = X @ beta + 0.3
    if family == "binomial":
        y = (rng.random(n) < 1.0 / (1.0 + np.exp(-eta))).astype(float)
        y[:2] = [0.0, 1.0]
    elif family == "poisson":
        y = rng.poisson(np.exp(0.5 * eta)).astype(float)
    else:
        y = eta + rng.normal(scale=0.5, size=n)
    w = rng.uniform(0.5, 2.0, size=n) if weights else None
    return X, y, w


def glm_labels(family, eta, rng):
    """Labels drawn from ``family`` at linear predictors ``eta`` (the Poisson mean exp(eta / 2)), with
    both classes (binomial) or a positive count (Poisson) among the first samples."""
    n = len(eta)
    if family == "binomial":
        y = (rng.uniform(size=n) < 1 / (1 + np.exp(-eta))).astype(float)
        y[:2] = [0.0, 1.0]
    elif family == "gaussian":
        y = eta + rng.standard_normal(n)
    else:
        y = rng.poisson(np.exp(0.5 * eta)).astype(float)
        y[0] = 1.0
    return y


def make_problem(family="binomial", *, n=60, d=4, seed=0, weights=False, penalty=0.5,
                 scaling="fixed", intercept=True):
    import rif

    X, y, w = synthetic(family, n, d, seed, weights)
    if scaling == "per_sample":
        penalty = penalty / n
    return rif.GLMProblem(X, y, family, sample_weight=w, penalty=penalty,
                          penalty_scaling=scaling, fit_intercept=intercept)


CONFIGS = [
    pytest.param(fam, scaling, intercept, weights,
                 id=f"{fam}-{scaling}-{'icpt' if intercept else 'noicpt'}-{'w' if weights else 'unw'}")
    for fam in FAMILIES
    for scaling in ("fixed", "per_sample")
    for intercept in (True, False)
    for weights in (False, True)
]


def certify_data(family, n, d, seed, scale=2.0):
    """(X, y) for the certificate tests: Gaussian features of total scale ``scale``, labels of the
    family around a random linear predictor."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) * scale / np.sqrt(d)
    return X, glm_labels(family, X @ rng.standard_normal(d), rng)


def removal_set(X, rng, k, clustered):
    """k random samples (never 0 or 1), or the k nearest neighbours of a random sample."""
    n = X.shape[0]
    if clustered:
        centre = X[rng.integers(2, n)]
        order = np.argsort(np.linalg.norm(X - centre, axis=1))
        return np.sort(order[order >= 2][:k])
    return np.sort(2 + rng.choice(n - 2, k, replace=False))


def certify_case(family, n, ratio, intercept, scaling, weighted, clustered, fraction, seed):
    """(problem, removal set) for the certificates' property tests: n samples, n / ratio features,
    penalty 1 (fixed) or 1 / n (per sample), optional weights, a random or clustered set."""
    from rif import GLMProblem

    d = max(1, n // ratio)
    X, y = certify_data(family, n, d, seed)
    rng = np.random.default_rng(seed)
    weights = rng.uniform(0.5, 2.0, n) if weighted else None
    penalty = 1.0 if scaling == "fixed" else 1.0 / n
    problem = GLMProblem(X, y, family, penalty=penalty, penalty_scaling=scaling, fit_intercept=intercept,
                         sample_weight=weights, tol=1e-13)
    return problem, removal_set(X, rng, max(1, int(fraction * n)), clustered)
