"""Validation at the public boundary: arrays in, float64 copies out, or a clear error."""

import numpy as np
import scipy.sparse as sp


def check_array(X, name, copy=False):
    """X as float64 (dense, CSR or row-chunked dask array), or a clear error.

    ``copy``: return an array that shares no memory with the caller's (dask arrays,
    which are immutable, are never copied)."""
    if type(X).__module__.split(".")[0] == "dask":
        return _check_dask(X, name)
    if sp.issparse(X):
        X = sp.csr_matrix(X, dtype=np.float64, copy=copy)
        values = X.data
    else:
        X = np.asarray(X)
        if X.dtype.kind not in "biuf":
            raise TypeError(f"{name} must be numeric, got dtype {X.dtype}")
        X = np.array(X, dtype=np.float64, copy=True if copy else None)
        values = X
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {X.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} contains NaN or infinity")
    return X


def check_vector(v, n, name):
    v = np.asarray(v)
    if v.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be numeric, got dtype {v.dtype}")
    v = np.asarray(v, dtype=np.float64)
    if v.ndim != 1 or v.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},), got {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name} contains NaN or infinity")
    return v


def _check_dask(X, name):
    import dask.array as da

    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {X.shape}")
    if X.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be numeric, got dtype {X.dtype}")
    if any(np.isnan(c) for c in X.chunks[0]):
        raise ValueError(f"{name} has unknown chunk sizes; call X.compute_chunk_sizes() first")
    X = X.astype(np.float64)
    if X.numblocks[1] != 1:
        X = X.rechunk({1: -1})      # rif needs whole rows per chunk
    if not bool(da.isfinite(X).all().compute()):
        raise ValueError(f"{name} contains NaN or infinity")
    return X


def check_non_negative(value, name):
    """``value`` as a finite float >= 0, or a ValueError naming ``name``."""
    value = float(value)
    if not (np.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite non-negative number, got {value}")
    return value


def check_weight_range(w, name):
    """Refuse weights whose positive values span more than 1 / eps: the lighter samples
    would vanish in rounding next to the heaviest (and sums may overflow)."""
    positive = w[w > 0]
    if positive.size == 0:
        raise ValueError(f"{name} must have a positive sum")
    if not np.isfinite(positive.sum()):
        raise ValueError(f"{name} is so large that its sum overflows (max {positive.max():.3g})")
    ratio = positive.max() / positive.min()
    if ratio > 1.0 / np.finfo(float).eps:
        raise ValueError(
            f"{name} spans {ratio:.1e} between its largest and smallest positive values, more than "
            "float64 resolves (4.5e15): the lighter samples would contribute nothing to the fit. "
            "Rescale or drop them"
        )


def check_bool(value, name):
    """``value`` as a bool, or a TypeError naming ``name`` (NumPy booleans accepted)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {value!r}")


def setting_constraints():
    """scikit-learn parameter constraints of the refit settings that GLMProblem and
    InfluenceAuditor share (one definition for both)."""
    from numbers import Integral, Real

    from sklearn.utils._param_validation import Interval

    return {"tol": [Interval(Real, 0, None, closed="neither")],
            "max_iter": [Interval(Integral, 1, None, closed="left")],
            "n_jobs": [Integral, None],
            "progress": ["boolean", None]}


def check_settings(tol, max_iter, n_jobs, progress, owner):
    """The refit settings shared by GLMProblem and InfluenceAuditor, with scikit-learn's messages."""
    from sklearn.utils._param_validation import validate_parameter_constraints

    validate_parameter_constraints(
        setting_constraints(),
        {"tol": tol, "max_iter": max_iter, "n_jobs": n_jobs, "progress": progress},
        caller_name=owner,
    )
