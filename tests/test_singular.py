"""Removals that leave a parameter undetermined raise instead of returning rounding noise.

Each case was silently wrong before: the singularity test of the leave-out Hessian was
relative (a 1 x 1 Woodbury block 1 - h passes at 1e-16), now it is absolute on the
whitened matrix (rif._linalg.equilibrated_cholesky).
"""

import warnings

import numpy as np
import pytest

import rif
from rif import NearSingularLeverageError, SingularHessianError


def _lonely_feature(seed, n=40):
    """Gaussian data where sample 5 alone has a nonzero value in the last feature."""
    rng = np.random.default_rng(seed)
    X = np.column_stack([rng.normal(size=(n, 3)), np.zeros(n)])
    X[5, 3] = rng.normal()
    y = X[:, :3] @ [1.0, 2.0, -1.0] + rng.normal(size=n)
    return X, y


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("method", ["newton", "retrain"])
def test_removing_the_only_carrier_of_a_feature_raises(seed, method):
    X, y = _lonely_feature(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rif.LeverageWarning)
        prob = rif.GLMProblem(X, y, "gaussian")
        assert 1.0 - prob.leverage[5] < 1e-12
        with pytest.raises((SingularHessianError, NearSingularLeverageError)):
            prob.params_change([5], method)
        with pytest.raises((SingularHessianError, NearSingularLeverageError)):
            prob.params_change([5, 6], method)
        with pytest.raises((SingularHessianError, NearSingularLeverageError)):
            prob.params_change([[5, 6], [7, 8]], method)       # a batch with one bad set
        # sets without sample 5 are untouched by the degeneracy
        ok = prob.params_change([[7, 8], [9, 10]], method)
        assert np.all(np.isfinite(ok))


def test_removing_the_only_carrier_of_a_feature_by_the_direct_route_raises():
    """|S| >= p: the leave-out Hessian is formed directly, unwhitened, and judged against H."""
    X, y = _lonely_feature(1)
    X[6, 3] = 0.3                                       # two carriers, both removed below
    prob = rif.GLMProblem(X, y, "gaussian")
    sets = [np.r_[5, 6, 10:20], np.r_[7:19]]           # 12 >= p = 5 samples each
    for method in ("newton", "retrain"):
        with pytest.raises(SingularHessianError):
            prob.params_change(sets[0], method)
        assert np.all(np.isfinite(prob.params_change(sets[1], method)))
        with pytest.raises(SingularHessianError):
            prob.params_change(sets, method)                # batched: the bad set is found


@pytest.mark.parametrize("method", ["newton", "retrain"])
def test_unpenalised_with_more_parameters_than_remaining_samples_raises(method):
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(6, 4)), rng.normal(size=6)
    prob = rif.GLMProblem(X, y, "gaussian")             # 5 parameters, 6 samples
    assert np.all(np.isfinite(prob.params_change([0], method)))      # 5 left: still determined
    with pytest.raises(SingularHessianError):
        prob.params_change([0, 1], method)
    with pytest.raises(SingularHessianError):
        prob.params_change([[0, 1], [2, 3]], method)


def test_badly_scaled_but_well_posed_removals_still_work():
    """The absolute test is on the whitened matrix, so feature scales do not matter."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(80, 3)) * np.array([1e-6, 1.0, 1e6])
    y = X @ np.array([1e6, 1.0, 1e-6]) + rng.normal(size=80)
    prob = rif.GLMProblem(X, y, "gaussian")
    sets = [np.arange(k, k + 6) for k in range(0, 60, 6)]
    np.testing.assert_allclose(prob.params_change(sets, "newton"), prob.params_change(sets, "retrain"),
                               rtol=1e-7, atol=1e-9 * np.abs(prob.theta).max())


@pytest.mark.parametrize("seed", range(4))
def test_definiteness_estimates_match_dense_eigenvalues(seed):
    """The two estimates behind the absolute tests, against dense eigenvalues: dpocon's
    1 / ||A^-1||_1 within [lambda_min / sqrt(k), sqrt(k) lambda_min] (plus estimator slack), and the
    power-iteration gamma = lambda_min(H^-1/2 H_-S H^-1/2) from scipy's generalised eigh."""
    import scipy.linalg as sla

    from rif._linalg import relative_curvature_floor, smallest_eigenvalue_estimate

    rng = np.random.default_rng(seed)
    p = 8
    A = rng.normal(size=(p, p))
    A = A @ A.T + np.diag(10.0 ** rng.uniform(-9, 0, size=p))
    lam = np.linalg.eigvalsh(A)[0]
    est = smallest_eigenvalue_estimate(sla.cholesky(A, lower=True), np.abs(A).sum(axis=0).max())
    assert lam / np.sqrt(p) / 3 <= est <= 3 * np.sqrt(p) * lam
    X = rng.normal(size=(40, p))
    H = X.T @ X + 1e-3 * np.eye(p)
    S = rng.choice(40, size=30, replace=False)
    H_S = H - X[S].T @ X[S]
    gamma = sla.eigh(H_S, H, eigvals_only=True)[0]
    chol = sla.cho_factor(H_S, lower=True)
    got = relative_curvature_floor(H, lambda b: sla.cho_solve(chol, b))
    np.testing.assert_allclose(got, gamma, rtol=1e-6)
