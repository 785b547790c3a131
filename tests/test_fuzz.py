"""A fuzz test of the public API: every drawn input gives a clear error naming the offending
argument, or a finite result that matches a dense reference, and never mutates its inputs."""

import warnings

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LinearRegression, LogisticRegression, PoissonRegressor, Ridge

import naive
import rif

ESTIMATORS = {
    "logistic": (lambda: LogisticRegression(C=0.5, solver="newton-cholesky"), "binomial"),
    "ridge": (lambda: Ridge(alpha=0.7), "gaussian"),
    "poisson": (lambda: PoissonRegressor(alpha=0.05), "poisson"),
    "linear": (lambda: LinearRegression(), "gaussian"),
}

# faults: (where, what) -> the argument the message must name
FAULTS = [None, ("X", "nan"), ("X", "inf"), ("X", "string"), ("X", "3d"), ("y", "nan"), ("y", "length"),
          ("sample_weight", "negative"), ("sample_weight", "nan"), ("sample_weight", "length"),
          ("remove", "out_of_range"), ("remove", "duplicate"), ("remove", "empty"), ("remove", "float"),
          ("remove", "ragged_scalar"), ("remove", "mask_length"), ("X_eval", "columns"), ("X_eval", "nan"),
          ("y_eval", "length"), ("method", "unknown"), ("target", "unknown"), ("tol", "negative"),
          ("max_iter", "zero")]


def _data(kind, n, d, seed, dtype, labels):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    eta = X @ rng.normal(scale=0.6, size=d)
    if kind == "logistic":
        y01 = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int)
        y01[:2] = [0, 1]
        y = np.array(labels)[y01]
    elif kind == "poisson":
        y = rng.poisson(np.exp(0.4 * eta)).astype(float)
        y[0] = max(y[0], 1.0)
    else:
        y = eta + rng.normal(scale=0.5, size=n)
    return X.astype(dtype), y


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(sorted(ESTIMATORS)), n=st.integers(12, 40), d=st.integers(1, 4),
       seed=st.integers(0, 10_000), dtype=st.sampled_from([np.float64, np.float32, np.int64]),
       labels=st.sampled_from([(0, 1), (-1, 1), ("no", "yes")]), weighted=st.booleans(),
       fault=st.sampled_from(FAULTS), method=st.sampled_from(["if", "rif", "newton", "retrain"]),
       k=st.integers(1, 3), batch=st.booleans(), mask=st.booleans())
def test_public_api_fuzz(kind, n, d, seed, dtype, labels, weighted, fault, method, k, batch, mask):
    make, family = ESTIMATORS[kind]
    X, y = _data(kind, n, d, seed, dtype, labels)
    if dtype == np.int64:
        X = np.round(3 * X.astype(float)).astype(np.int64)
    rng = np.random.default_rng(seed + 1)
    w = rng.uniform(0.5, 2.0, size=n) if weighted else None
    X_eval, y_eval = X[:5].copy(), y[:5].copy()
    remove = rng.choice(np.arange(2, n), size=k, replace=False)
    remove = [remove, remove[:1]] if batch else remove
    if mask and not batch:
        m = np.zeros(n, bool)
        m[remove] = True
        remove = m
    settings_ = {}
    target = "loss"
    where, what = fault if fault else (None, None)
    if where == "X":
        X = X.astype(float)
        if what == "nan":
            X[1, 0] = np.nan
        elif what == "inf":
            X[2, -1] = np.inf
        elif what == "string":
            X = X.astype(object)
            X[0, 0] = "abc"
        else:
            X = X[:, :, None]
    elif where == "y":
        if what == "nan":
            y = y.astype(float) if kind != "logistic" else y.astype(object)
            y[3] = np.nan
        else:
            y = y[:-1]
    elif where == "sample_weight":
        w = np.ones(n) if w is None else w
        if what == "negative":
            w[1] = -1.0
        elif what == "nan":
            w[1] = np.nan
        else:
            w = w[:-2]
    elif where == "remove":
        remove = {"out_of_range": [0, n + 3], "duplicate": [3, 3], "empty": [], "float": [1.5, 2.0],
                  "ragged_scalar": [[1, 2], 4], "mask_length": np.ones(n + 1, bool)}[what]
    elif where == "X_eval":
        X_eval = X_eval.astype(float)
        if what == "columns":
            X_eval = np.hstack([X_eval, X_eval[:, :1]])
        else:
            X_eval[0, 0] = np.nan
    elif where == "y_eval":
        y_eval = y_eval[:-1]
    elif where == "method":
        method = "exact"
    elif where == "target":
        target = "test_los"
    elif where in ("tol", "max_iter"):
        settings_[where] = -1.0 if where == "tol" else 0

    inputs = [a for a in (X, y, w, X_eval, y_eval) if isinstance(a, np.ndarray)]
    copies = [a.copy() for a in inputs]
    remove_copy = [np.array(r, copy=True) for r in remove] if isinstance(remove, list) and remove and np.ndim(remove[0]) else None

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            aud = rif.InfluenceAuditor(make(), **settings_).fit(X, y, sample_weight=w)
            value = aud.effect(remove, target, X_eval, y_eval, method=method)
            dtheta = aud.params_change(remove, method)
            scores = aud.scores(X_eval, y_eval, method="rif" if method == "retrain" else method)
    except (ValueError, TypeError) as error:
        assert fault is not None or isinstance(error, rif.SingularHessianError), error
        if fault is not None and not isinstance(error, rif.SingularHessianError):
            name = {"X_eval": "X", "y_eval": "y"}.get(where, where)
            message = str(error)
            assert name in message or (where == "remove" and "removal" in message) \
                or (where == "y" and "label" in message) or (where == "X_eval" and "feature" in message) \
                or (where == "X" and what == "3d" and "dim" in message), (fault, message)
    else:
        assert fault is None, f"{fault} was accepted"
        assert np.all(np.isfinite(value)) and np.all(np.isfinite(dtheta))
        # NaN only in the rows of samples with leverage numerically one (with a LeverageWarning)
        assert np.all(np.isfinite(scores[np.isfinite(aud.rescale_factor_)]))
        # a dense reference for the same set
        prob = aud.problem_
        first = np.flatnonzero(remove) if not batch and np.asarray(remove).dtype == bool else \
            (remove[0] if batch else remove)
        reference = {"if": naive.influence, "rif": naive.rescaled_influence,
                     "newton": naive.newton_step}.get(method)
        got = dtheta[0] if batch else dtheta
        if reference is not None:
            want = reference(prob, np.asarray(first))
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8 * (1 + np.abs(want).max()))
    for before, after in zip(copies, inputs):      # unchanged (object arrays compared as text: NaN != NaN)
        if before.dtype == object:
            before, after = before.astype(str), after.astype(str)
        np.testing.assert_array_equal(before, after)
    if remove_copy is not None:
        for before, after in zip(remove_copy, remove):
            np.testing.assert_array_equal(before, np.asarray(after))
