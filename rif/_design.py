"""The design matrix x~_i = (x_i, 1) without ever building it.

All passes over the rows go through these helpers, so that the intercept
column is handled in one place and no (n, p) temporary larger than a row
block of ``ROW_CHUNK`` rows is created. ``X`` is a dense ndarray or a SciPy
CSR matrix; blocks handed to callers are always dense.
"""

import numpy as np
import scipy.sparse as sp

from ._config import ROW_CHUNK


def n_params(X, fit_intercept):
    """Number of parameters p = d (+ 1 with an intercept)."""
    return X.shape[1] + int(fit_intercept)


def linear_predictor(X, theta, fit_intercept):
    """eta = X beta + b: shape (n,) for theta of shape (p,), (n, m) for theta of shape (p, m)."""
    if fit_intercept:
        eta = np.asarray(X @ theta[:-1]) + theta[-1]
    else:
        eta = np.asarray(X @ theta)
    return eta.ravel() if theta.ndim == 1 else eta


def rmatvec(X, v, fit_intercept):
    """X~^T v = (X^T v, sum v), shape (p,)."""
    out = np.asarray(X.T @ v).ravel()
    if fit_intercept:
        out = np.append(out, v.sum())
    return out


def weighted_gram(X, c, fit_intercept):
    """X~^T diag(c) X~ = [[X^T C X, X^T c], [c^T X, sum c]], shape (p, p)."""
    if sp.issparse(X):
        xtcx = np.asarray((X.T @ sp.diags(c) @ X).toarray())
    else:
        d = X.shape[1]
        xtcx = np.zeros((d, d))
        for start in range(0, X.shape[0], ROW_CHUNK):
            block = X[start:start + ROW_CHUNK]
            xtcx += block.T @ (block * c[start:start + ROW_CHUNK, None])
    if not fit_intercept:
        return xtcx
    xtc = rmatvec(X, c, False)
    p = X.shape[1] + 1
    gram = np.empty((p, p))
    gram[:-1, :-1] = xtcx
    gram[:-1, -1] = xtc
    gram[-1, :-1] = xtc
    gram[-1, -1] = c.sum()
    return gram


def rows(X, index, fit_intercept):
    """Dense x~ rows for the given indices, shape (len(index), p)."""
    block = X[index]
    if sp.issparse(block):
        block = block.toarray()
    block = np.asarray(block, dtype=np.float64)
    if fit_intercept:
        block = np.hstack([block, np.ones((block.shape[0], 1))])
    return block


def row_blocks(X, fit_intercept, chunk=ROW_CHUNK):
    """Yield ``(slice, dense x~ block)`` over consecutive row blocks."""
    n = X.shape[0]
    for start in range(0, n, chunk):
        sl = slice(start, min(start + chunk, n))
        yield sl, rows(X, np.arange(sl.start, sl.stop), fit_intercept)
