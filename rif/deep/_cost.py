"""The solver ``solver="auto"`` picks: the exact solve unless conjugate gradient is cheaper.

Both candidates give the same answer (CG to its tolerance), so the choice is
by cost alone. The approximate solvers (LiSSA, K-FAC, EK-FAC) change the
answer, not only its cost, and are used only when asked for.

Costs are counted in multiply-adds for a reference workload of n right-hand
sides (one per training sample: ``scores`` and ``self_influence`` over every
training sample need at least that many; RIF needs K + 1 per sample), with
a forward pass costing about 2p per sample (dense layers):

    exact  =  2 n K' p^2          forming C = sum_i B_i^T A_i B_i (K' = K for the
                                   GNH, 1 for the empirical Fisher, 4 for the true
                                   Hessian, built from p Hessian-vector products)
            + p^3 / 3             Cholesky factor
            + 2 n p^2             n triangular solves
    cg     =  8 n T n p           T iterations per right-hand side, each a
                                   Jacobian-vector and a vector-Jacobian product
                                   over the n samples (about 4 forward passes)

with T = min(``cg_max_iter`` or 2p, 100): on the damped curvature of a network
CG needs tens to hundreds of iterations (on a digits MLP 100 were not enough
below damping 0.1 x the mean eigenvalue), so T = 100 errs in CG's favour, as
does counting the dense products at the same speed as the small vmapped ones.
The exact solver needs p <= ``max_dense_params`` in any case (its p x p
float64 matrix).
"""

#: Iterations per right-hand side that CG is assumed to need at most.
CG_ITERATIONS = 100

#: K' of the module docstring for the curvatures whose per-sample factors are not K x p.
CURVATURE_RANK = {"fisher": 1, "hessian": 4}


def solver_costs(n, p, K, curvature="gnh", cg_max_iter=None):
    """Estimated multiply-adds of the exact and CG solvers for n right-hand sides.

    Returns
    -------
    dict with keys ``"exact"`` and ``"cg"`` (floats)
    """
    rank = CURVATURE_RANK.get(curvature, K)
    iterations = min(cg_max_iter or 2 * p, CG_ITERATIONS)
    exact = 2.0 * n * rank * p ** 2 + p ** 3 / 3.0 + 2.0 * n * p ** 2
    cg = 8.0 * n * iterations * n * p
    return {"exact": exact, "cg": cg}


def choose_solver(n, p, K, curvature="gnh", cg_max_iter=None, max_dense_params=20000):
    """``"exact"`` or ``"cg"``: the cheaper of the two by :func:`solver_costs`.

    ``"cg"`` whenever p > ``max_dense_params`` (the dense curvature would not fit).
    """
    if p > max_dense_params:
        return "cg"
    costs = solver_costs(n, p, K, curvature, cg_max_iter)
    return "exact" if costs["exact"] <= costs["cg"] else "cg"
