"""Threads, the automatic solver choice, the solve log, lazy leverages and progress bars."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sklearn.exceptions import NotFittedError  # noqa: E402

import rif  # noqa: E402
from deep_helpers import IGNORE_JIT, NOT_STATIONARY, trained_mlp  # noqa: E402
from deep_helpers import one_torch_thread  # noqa: E402, F401 (autouse fixture)
from rif.deep import TorchInfluence  # noqa: E402
from rif.deep import _threads  # noqa: E402
from rif.deep._cost import choose_solver, solver_costs  # noqa: E402

pytestmark = [IGNORE_JIT, NOT_STATIONARY]


def _fit(solver="auto", **kw):
    model, X, y = trained_mlp()
    kw.setdefault("damping", 0.1)
    return TorchInfluence(model, "cross_entropy", (X, y), solver=solver, dtype=torch.float64, **kw).fit(), X, y


def _threads_seen(ti, X, y):
    """torch's thread count while rif.deep evaluates a callable target inside ``effect``."""
    seen = []

    def target(model):
        seen.append(torch.get_num_threads())
        return model(X[:2]).sum()
    ti.effect([0], target, method="if")
    return seen


def test_small_models_run_on_one_thread_and_torch_setting_is_restored():
    ti, X, y = _fit()
    torch.set_num_threads(2)
    seen = _threads_seen(ti, X, y)
    assert seen and set(seen) == {1}
    assert torch.get_num_threads() == 2


def test_large_models_use_the_threads_limit_threads_allows(monkeypatch):
    ti, X, y = _fit()
    monkeypatch.setattr(rif._config, "THREADED_BLAS_SIZE", 10)     # treat this MLP as large
    monkeypatch.setattr(_threads._parallel, "available_threads", lambda: 2)   # two usable CPUs
    torch.set_num_threads(2)
    assert set(_threads_seen(ti, X, y)) == {2}
    monkeypatch.undo()
    monkeypatch.setattr(rif._config, "THREADED_BLAS_SIZE", 10)
    with rif.limit_threads(1):
        assert set(_threads_seen(ti, X, y)) == {1}
    torch.set_num_threads(1)                  # never more than torch was set to use
    monkeypatch.setattr(_threads._parallel, "available_threads", lambda: 4)
    assert set(_threads_seen(ti, X, y)) == {1}


def test_results_do_not_depend_on_the_thread_count(monkeypatch):
    ti, X, y = _fit()
    one = ti.scores(X[:3], y[:3], method="rif")
    monkeypatch.setattr(rif._config, "THREADED_BLAS_SIZE", 10)
    monkeypatch.setattr(_threads._parallel, "available_threads", lambda: 2)
    torch.set_num_threads(2)
    np.testing.assert_allclose(ti.scores(X[:3], y[:3], method="rif"), one, rtol=1e-10, atol=1e-14)


def test_cost_model():
    # the MLP of the digits experiments: exact by far
    costs = solver_costs(n=400, p=1210, K=10)
    assert costs["cg"] > 10 * costs["exact"]
    assert choose_solver(400, 1210, 10) == "exact"
    # many parameters, very few samples: CG's n^2 p beats the dense p^3
    assert choose_solver(2, 5000, 3) == "cg"
    assert choose_solver(100, 500, 3, max_dense_params=499) == "cg"
    assert choose_solver(100, 500, 3, max_dense_params=500) == "exact"
    # the fisher curvature has rank-one terms, the true Hessian is built from p products
    assert solver_costs(10, 100, 10, "fisher")["exact"] < solver_costs(10, 100, 10, "hessian")["exact"]


def test_auto_picks_exact_for_small_models_and_cg_past_max_dense_params():
    exact, X, y = _fit("auto")
    assert exact.solver_name_ == "exact" and exact.solver_.name == "exact"
    cg, _, _ = _fit("auto", max_dense_params=10, cg_tol=1e-10)
    assert cg.solver_name_ == "cg"
    np.testing.assert_allclose(cg.scores(X[:3], y[:3], method="rif"), exact.scores(X[:3], y[:3], method="rif"),
                               rtol=1e-6, atol=1e-10)


KEYS = {"solver", "stage", "n_rhs", "iterations", "converged", "relative_residuals",
        "max_relative_residual", "seconds"}


@pytest.mark.parametrize("solver", ["exact", "cg", "lissa", "ekfac"])
def test_solve_log_has_one_record_per_fit_and_solve_for_every_solver(solver):
    ti, X, y = _fit(solver, damping=1.0, lissa_depth=50)
    assert len(ti.solve_log_) == 1
    fit = ti.solve_log_[-1]
    assert KEYS <= set(fit) and fit["stage"] == "fit" and fit["n_rhs"] == 0 and fit["solver"] == solver
    ti.scores(X[:2], y[:2], method="if", linear=True)
    record = ti.solve_log_[-1]
    assert len(ti.solve_log_) == 2 and KEYS <= set(record)
    assert record["stage"] == "solve" and record["n_rhs"] == 2 and record["converged"]
    if solver in ("cg", "lissa"):
        assert record["iterations"] > 0 and record["max_relative_residual"] is not None
    else:
        assert record["iterations"] == 0 and record["max_relative_residual"] is None


@pytest.mark.parametrize("solver", ["exact", "ekfac"])
def test_leverage_exists_before_a_rif_pass_and_equals_its_value(solver):
    ti, X, y = _fit(solver, damping=1.0)
    lazy = ti.leverage_.copy()
    assert lazy.shape == (ti.n_samples_,) and np.all((lazy >= 0) & (lazy < 1))
    ti._leverage = None
    ti.self_influence("rif")
    np.testing.assert_allclose(ti.leverage_, lazy, rtol=1e-10, atol=1e-14)


def test_leverage_of_the_true_hessian_and_before_fit():
    model, X, y = trained_mlp()
    ti = TorchInfluence(model, "cross_entropy", (X, y), curvature="hessian", damping=100.0,
                        damping_mode="absolute", dtype=torch.float64)
    with pytest.raises(NotFittedError):
        ti.leverage_
    ti.fit()
    with pytest.raises(AttributeError, match="low-rank"):
        ti.leverage_
    assert not hasattr(ti, "leverage_")


@pytest.mark.parametrize("progress, shown", [(True, True), (False, False)])
def test_progress_bars(capsys, progress, shown):
    ti, X, y = _fit("cg", progress=progress)
    capsys.readouterr()
    ti.scores(X[:2], y[:2], method="rif")
    err = capsys.readouterr().err
    assert ("CG" in err and "leave-one-out steps" in err) == shown
    if not shown:
        assert err == ""
