"""Row-chunked dask arrays on a 2-worker LocalCluster give the in-memory results."""

import numpy as np
import pytest

import rif
from conftest import synthetic

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as c:
        yield c


@pytest.mark.parametrize("family,scaling", [("binomial", "fixed"), ("poisson", "per_sample")])
def test_dask_rows_match_in_memory(client, family, scaling):
    X, y, w = synthetic(family, n=300, d=5, seed=51, weights=True)
    kwargs = dict(sample_weight=w, penalty=0.5 if scaling == "fixed" else 0.01, penalty_scaling=scaling)
    mem = rif.GLMProblem(X, y, family, **kwargs)
    # chunks across the columns too: rif rechunks to whole rows
    dsk = rif.GLMProblem(da.from_array(X, chunks=(100, 3)), y, family, **kwargs)
    np.testing.assert_allclose(dsk.theta, mem.theta, rtol=1e-10)
    np.testing.assert_allclose(dsk.leverage, mem.leverage, rtol=1e-10, atol=1e-15)
    sets = [np.array([0, 5, 77, 150]), np.arange(200, 230)]
    for method in ("if", "rif", "newton", "retrain"):
        np.testing.assert_allclose(dsk.params_change(sets, method), mem.params_change(sets, method),
                                   rtol=1e-9, atol=1e-13)
        np.testing.assert_allclose(dsk.effect(sets, "self_loss", method=method),
                                   mem.effect(sets, "self_loss", method=method), rtol=1e-9, atol=1e-13)
    X_te = X[:4] + 0.1
    for method in ("if", "rif"):
        np.testing.assert_allclose(dsk.scores(X_te, y[:4], method=method), mem.scores(X_te, y[:4], method=method),
                                   rtol=1e-9, atol=1e-14)
        np.testing.assert_allclose(dsk.self_influence(method), mem.self_influence(method), rtol=1e-9, atol=1e-14)
        np.testing.assert_allclose(dsk.loo_params_change(method), mem.loo_params_change(method),
                                   rtol=1e-9, atol=1e-14)
    assert dsk.effect(sets[0], "train_loss", method="rif") == pytest.approx(
        mem.effect(sets[0], "train_loss", method="rif"), rel=1e-9)


def test_refits_spread_through_the_dask_joblib_backend(client):
    from joblib import parallel_config

    X, y, _ = synthetic("binomial", n=200, d=4, seed=52)
    prob = rif.GLMProblem(X, y, "binomial", penalty=1.0, n_jobs=2, progress=False)
    rng = np.random.default_rng(0)
    sets = [rng.choice(200, size=10, replace=False) for _ in range(6)]
    with parallel_config(backend="dask"):
        spread = prob.params_change(sets, "retrain")
    serial = rif.GLMProblem(X, y, "binomial", penalty=1.0).params_change(sets, "retrain")
    np.testing.assert_allclose(spread, serial, rtol=1e-12)


def test_non_finite_dask_input_is_refused():
    X, y, _ = synthetic("gaussian", n=40, seed=53)
    X[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        rif.GLMProblem(da.from_array(X, chunks=(10, 4)), y, "gaussian")


def test_the_auditor_gathers_a_dask_array_once_and_quietly():
    """The wrapped estimator fits in memory, so the auditor gathers a dask X: same answers as the
    NumPy array, no warning from scikit-learn's checks of dask arrays, and with three classes too."""
    import warnings

    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    plain = rif.InfluenceAuditor(LogisticRegression(max_iter=1000)).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lazy = rif.InfluenceAuditor(LogisticRegression(max_iter=1000)).fit(da.from_array(X, chunks=(50, 4)), y)
    np.testing.assert_allclose(lazy.params_change([0, 1, 60], "rif"), plain.params_change([0, 1, 60], "rif"),
                               rtol=1e-12, atol=1e-15)
