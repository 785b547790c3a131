"""Validation at the public boundary: arrays in, float64 copies out, or a clear error."""

import numpy as np
import scipy.sparse as sp


def check_array(X, name):
    """X as float64 (dense copy, CSR or row-chunked dask array), or a clear error."""
    if type(X).__module__.split(".")[0] == "dask":
        return _check_dask(X, name)
    if sp.issparse(X):
        X = sp.csr_matrix(X, dtype=np.float64)
        values = X.data
    else:
        X = np.asarray(X)
        if X.dtype.kind not in "biuf":
            raise TypeError(f"{name} must be numeric, got dtype {X.dtype}")
        X = np.asarray(X, dtype=np.float64)
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
