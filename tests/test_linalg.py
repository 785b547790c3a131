"""rif's direct LAPACK solves against SciPy's."""

import numpy as np


def test_the_direct_lapack_solves_match_scipy_for_both_memory_orders():
    """rif._linalg.cho_solve and triangular_solve call LAPACK directly, passing a C-ordered lower
    factor as the upper factor of its transpose; both orders and 1-D / 2-D right-hand sides give
    SciPy's answers, and the right-hand side is left as it was."""
    import scipy.linalg as sla

    from rif._linalg import cho_solve, triangular_solve

    rng = np.random.default_rng(0)
    A = rng.standard_normal((7, 7))
    A = A @ A.T + 7 * np.eye(7)
    L = sla.cholesky(A, lower=True)
    for factor in (np.asfortranarray(L), np.ascontiguousarray(L)):
        for b in (rng.standard_normal(7), rng.standard_normal((7, 3))):
            kept = b.copy()
            np.testing.assert_allclose(cho_solve(factor, b), np.linalg.solve(A, b), rtol=1e-12)
            np.testing.assert_allclose(triangular_solve(factor, b), sla.solve_triangular(L, b, lower=True),
                                       rtol=1e-12)
            np.testing.assert_allclose(triangular_solve(factor, b, transpose=True),
                                       sla.solve_triangular(L, b, lower=True, trans="T"), rtol=1e-12)
            assert np.array_equal(b, kept)
    # the upper triangle of a factor from cho_factor holds leftovers, which are not read
    garbage, _ = sla.cho_factor(A, lower=True)
    garbage[np.triu_indices(7, 1)] = 1e300
    np.testing.assert_allclose(cho_solve(garbage, np.ones(7)), np.linalg.solve(A, np.ones(7)), rtol=1e-12)
