"""The design matrix x~_i = (x_i, 1) without ever building it.

All passes over the rows go through these helpers, so that the intercept
column is handled in one place and no (n, p) temporary larger than a row
block is created. ``X`` is one of

* a dense ndarray, processed in blocks of ``ROW_CHUNK`` rows;
* a SciPy CSR matrix, never densified beyond one row block;
* a row-chunked dask array (one chunk across the columns): sums over rows
  (gradients, the Hessian) are dask tree reductions of per-chunk results,
  per-row quantities (leverages, scores) are computed chunk-wise on the
  workers, and only vectors of length n or p, or the rows of a removal set,
  come back to the caller. X itself is never gathered.

Dense blocks are handed to callers; vectors of length n stay in memory.
"""

import numpy as np
import scipy.sparse as sp

from . import _kernels, _parallel
from ._config import BLOCK_VALUES, FUSED_PARTS, GRAM_PARTS, ROW_CHUNK, THREADED_BLAS_SIZE


def is_dask(X):
    """Whether ``X`` is a dask array (checked without importing dask)."""
    return type(X).__module__.split(".")[0] == "dask"


def block_rows(X):
    """Rows per dense block: ROW_CHUNK, fewer for wide X so a block holds at most BLOCK_VALUES."""
    return max(1, min(ROW_CHUNK, BLOCK_VALUES // max(1, X.shape[1] + 1)))


def n_params(X, fit_intercept):
    """Number of parameters p = d (+ 1 with an intercept)."""
    return X.shape[1] + int(fit_intercept)


def _as_numpy(a):
    if is_dask(a):
        a = a.compute()
    return np.asarray(a.todense() if sp.issparse(a) else a)


def linear_predictor(X, theta, fit_intercept):
    """eta = X beta + b: shape (n,) for theta of shape (p,), (n, m) for theta of shape (p, m)."""
    if fit_intercept:
        eta = _as_numpy(X @ theta[:-1]) + theta[-1]
    else:
        eta = _as_numpy(X @ theta)
    return eta.ravel() if theta.ndim == 1 else eta


#: products X~ Theta of at least this many multiply-adds are cut into GRAM_PARTS row blocks that
#: rif's pass threads form (the certificates hold BLAS to one thread)
_THREADED_COLUMNS_WORK = 2**20


def linear_predictor_columns(X, thetas, fit_intercept):
    """eta = X~ Theta for thetas of shape (p, m), column-major (each column contiguous, for callers
    that read one column at a time). A dense ``X`` forms it as (beta^T X^T)^T, one product into its
    final layout with the intercept added in place; other inputs are copied into that layout. Large
    products are cut into GRAM_PARTS blocks of rows, formed by rif's pass threads: the same blocks
    whatever the number of threads, so the same result."""
    if not isinstance(X, np.ndarray):
        return np.asfortranarray(linear_predictor(X, thetas, fit_intercept))
    beta_t = (thetas[:-1] if fit_intercept else thetas).T                      # (m, d)
    n = X.shape[0]
    if n * X.shape[1] * beta_t.shape[0] < _THREADED_COLUMNS_WORK or n < GRAM_PARTS:
        eta = (beta_t @ X.T).T
    else:
        out = np.empty((beta_t.shape[0], n))

        def run(first, last):
            for k in range(first, last):
                rows = slice(k * n // GRAM_PARTS, (k + 1) * n // GRAM_PARTS)
                np.matmul(beta_t, X[rows].T, out=out[:, rows])

        _parallel.run_part_groups(run, GRAM_PARTS)
        eta = out.T
    if fit_intercept:
        eta += thetas[-1]
    return eta


def _row_vector(X, v):
    """``v`` (n,) chunked like the rows of a dask ``X``."""
    import dask.array as da

    return da.from_array(v, chunks=(X.chunks[0],))


def rmatvec(X, v, fit_intercept):
    """X~^T v = (X^T v, sum v), shape (p,)."""
    vv = _row_vector(X, v) if is_dask(X) else v
    out = _as_numpy(X.T @ vv).ravel()
    if fit_intercept:
        out = np.append(out, v.sum())
    return out


def loss_gradient(X, theta, fit_intercept, y, weights, family, offset=None):
    """sum_i w_i l(y_i, eta_i) and its gradient X~^T (w * l'), shape (p,).

    A dense row-major X takes the fused kernel :func:`rif._kernels.dense_value_gradient`
    (each row read once, parts of the rows on threads, see :mod:`rif._parallel`);
    other inputs, families without a compiled kernel, and a fixed per-row
    ``offset`` added to eta take two passes, eta = X~ theta (+ offset) and X~^T r.
    """
    if (offset is None and family.code is not None and isinstance(X, np.ndarray)
            and X.flags.c_contiguous and X.dtype == np.float64):
        n, d = X.shape
        parts = max(1, min(FUSED_PARTS, n // 1024))
        part_size = -(-n // parts)
        grad_parts, values = np.zeros((parts, d + 1)), np.zeros(parts)
        beta = np.ascontiguousarray(theta[:d], dtype=np.float64)
        intercept = float(theta[d]) if fit_intercept else 0.0

        def run(first, last):
            _kernels.dense_value_gradient(X, beta, intercept, y, weights, family.code, part_size,
                                          first, last, grad_parts, values)

        _parallel.run_part_groups(run, parts)
        grad = grad_parts.sum(axis=0)
        return values.sum(), (grad if fit_intercept else grad[:d])
    eta = linear_predictor(X, theta, fit_intercept)
    if offset is not None:
        eta = eta + offset
    loss, d1, _ = family.derivatives(eta, y)
    return weights @ loss, rmatvec(X, weights * d1, fit_intercept)


def _deviation(eta, reference, weights):
    """|eta - reference| where the weight is positive, 0 elsewhere, shape of eta (n, g)."""
    return np.where(weights > 0, np.abs(eta - reference[:, None]), 0.0)


def _weighted_terms(weights, loss, d1):
    """(sum_i w_i l_i per column, w o l'), with rows of weight 0 (removed samples) adding nothing even
    where their loss or l' overflowed (as in :func:`rif._kernels.dense_value_gradient`)."""
    with np.errstate(invalid="ignore", over="ignore"):  # 0 * inf: fixed below, where it occurs
        r = weights * d1
        value = np.einsum("ik,ik->k", weights, loss)
    if not (np.isfinite(value).all() and np.isfinite(r).all()):
        kept = weights != 0
        r = np.where(kept, r, 0.0)
        value = np.einsum("ik,ik->k", weights, np.where(kept, loss, 0.0))
    return value, r


def loss_gradients(X, thetas, fit_intercept, y, weights, family, offset=None, reference=None, curvatures=False):
    """:func:`loss_gradient` for g pairs at once: ``thetas`` (p, g), ``weights`` (n, g).

    eta = X~ Theta and X~^T (W o l'(eta)) as matrix products, which read X once
    for all g columns. A dense X is cut into row parts (at most FUSED_PARTS,
    summed in order) that rif's threads take with one BLAS thread each, eta,
    l' and the part's gradient formed while its rows are in cache.
    A fixed per-row ``offset`` (n,) is added to every column of eta.
    Returns values (g,) and gradients (p, g); with a ``reference`` eta (n,), also
    |eta - reference| on the rows of positive weight (0 on the others), shape (n, g); with
    ``curvatures``, last, l''(eta) of every row (unweighted), shape (n, g).
    """
    n, d = X.shape
    g = thetas.shape[1]
    if not isinstance(X, np.ndarray):
        eta = linear_predictor(X, thetas, fit_intercept)
        if offset is not None:
            eta = eta + offset[:, None]
        loss, d1, d2 = family.derivatives(eta.ravel(), np.repeat(y, g))
        value, r = _weighted_terms(weights, loss.reshape(n, g), d1.reshape(n, g))
        with np.errstate(invalid="ignore", over="ignore"):          # far points: inf and NaN, unannounced
            out = value, rmatmat(X, r, fit_intercept)
        out = out if reference is None else out + (_deviation(eta, reference, weights),)
        return out + (d2.reshape(n, g),) if curvatures else out
    parts = max(1, min(FUSED_PARTS, n // 1024))
    values = np.zeros((parts, g))
    deviations = None if reference is None else np.empty((n, g))
    second = np.empty((n, g)) if curvatures else None
    grads = np.zeros((parts, d + int(fit_intercept), g))
    beta = np.ascontiguousarray(thetas[:d])
    kernel = type(family)._kernel
    if kernel is None:                       # a family without a compiled kernel (rif._families)
        def kernel(eta, y, loss, d1, d2):
            loss[:], d1[:], d2[:] = family.derivatives(eta, y)

    def run(first, last):
        for k in range(first, last):
            sl = slice(k * n // parts, (k + 1) * n // parts)
            eta = X[sl] @ beta
            if fit_intercept:
                eta += thetas[d]
            if offset is not None:
                eta += offset[sl, None]
            loss, d1, d2 = np.empty_like(eta), np.empty_like(eta), np.empty_like(eta)
            kernel(eta.ravel(), np.repeat(y[sl], g), loss.ravel(), d1.ravel(), d2.ravel())
            values[k], r = _weighted_terms(weights[sl], loss, d1)
            with np.errstate(invalid="ignore", over="ignore"):      # far points: inf and NaN, unannounced
                grads[k, :d] = X[sl].T @ r
            if fit_intercept:
                grads[k, d] = r.sum(axis=0)
            if reference is not None:
                deviations[sl] = _deviation(eta, reference[sl], weights[sl])
            if curvatures:
                second[sl] = d2

    _parallel.run_part_groups(run, parts)
    out = values.sum(axis=0), grads.sum(axis=0)
    out = out if reference is None else out + (deviations,)
    return out + (second,) if curvatures else out


def rmatmat(X, A, fit_intercept):
    """X~^T A for A of shape (n, m) (dense or SciPy sparse), shape (p, m)."""
    if is_dask(X):
        import dask.array as da

        A_dense = A.toarray() if sp.issparse(A) else np.asarray(A)
        out = _as_numpy(X.T @ da.from_array(A_dense, chunks=(X.chunks[0], A_dense.shape[1])))
    else:
        out = _as_numpy((A.T @ X).T)
    if fit_intercept:
        out = np.vstack([out, np.asarray(A.sum(axis=0)).reshape(1, -1)])
    return out


def weighted_gram(X, c, fit_intercept, threads=False):
    """X~^T diag(c) X~ = [[X^T C X, X^T c], [c^T X, sum c]], shape (p, p).

    ``threads``: share a dense X's row blocks among rif's pass threads (see
    :func:`_dense_gram`); BLAS's own threads are used otherwise.
    """
    if isinstance(X, np.ndarray):
        return _dense_gram(X, c, fit_intercept, threads)
    d = X.shape[1]
    gram = np.zeros((d + int(fit_intercept),) * 2)
    if sp.issparse(X):
        _sparse_gram(X, c, gram[:d, :d])             # written in place: one p x p array in all
    else:
        cc = _row_vector(X, c)
        gram[:d, :d] = _as_numpy(X.T @ (X * cc[:, None]))      # a tree reduction of chunk Grams
    if fit_intercept:
        xtc = rmatvec(X, c, False)
        gram[:-1, -1] = xtc
        gram[-1, :-1] = xtc
        gram[-1, -1] = c.sum()
    return gram


def _dense_gram(X, c, fit_intercept, threads):
    """Dense X~^T diag(c) X~, accumulated over row blocks.

    With c >= 0 (every canonical GLM's curvature) each block B~ contributes
    A^T A with A = diag(sqrt(c)) B~, which NumPy hands to BLAS's symmetric
    rank-k update (syrk: half the flops of a general product) with the GIL
    released; otherwise a general product. The intercept column rides in the
    same product.
    With ``threads`` (for callers that hold BLAS to one thread) the rows are
    cut into at most GRAM_PARTS parts, whose Grams rif's pass threads form
    and which are added in order, so that the result does not depend on the
    number of threads; from THREADED_BLAS_SIZE parameters on BLAS's own
    threads do the work instead.
    """
    n, d = X.shape
    p = d + int(fit_intercept)
    if threads and p >= THREADED_BLAS_SIZE:       # large enough for BLAS's own threads
        with _parallel.blas_limit(_parallel.available_threads()):
            return _dense_gram(X, c, fit_intercept, False)
    step = max(1, min(BLOCK_VALUES // p, n))   # BLAS-3 gains from tall blocks; the buffer stays bounded
    if threads:
        step = min(step, max(1, -(-n // GRAM_PARTS)))
    n_blocks = -(-n // step)
    n_parts = min(GRAM_PARTS, n_blocks) if threads else 1
    symmetric = bool(np.all(c >= 0))
    weight = np.sqrt(c) if symmetric else c

    def part_gram(part):
        gram = np.zeros((p, p))
        buffer = np.empty((step, p))
        for b in range(part * n_blocks // n_parts, (part + 1) * n_blocks // n_parts):
            start, stop = b * step, min(n, (b + 1) * step)
            block = buffer[:stop - start]
            np.multiply(X[start:stop], weight[start:stop, None], out=block[:, :d])
            if fit_intercept:
                block[:, d] = weight[start:stop]
            if symmetric:
                gram += block.T @ block              # A^T A: syrk
            else:
                gram += block.T @ _with_intercept(X[start:stop], fit_intercept)
        return gram

    groups = _parallel.run_part_groups(lambda first, last: [part_gram(k) for k in range(first, last)],
                                       n_parts)
    parts = [part for group in groups for part in group]
    return sum(parts[1:], parts[0])                  # parts added in order: thread-count independent


def _sparse_gram(X, c, out):
    """out += X^T diag(c) X for a CSR X (see :func:`rif._kernels.csr_gram`); X is never densified."""
    X = X.tocsr()
    if not X.has_canonical_format:
        X = X.copy()
        X.sum_duplicates()
    _kernels.csr_gram(X.indptr, X.indices, np.asarray(X.data, dtype=np.float64), c, out)
    return out


def _with_intercept(block, fit_intercept):
    if sp.issparse(block):
        block = block.toarray()
    block = np.asarray(block, dtype=np.float64)
    if fit_intercept:
        block = np.hstack([block, np.ones((block.shape[0], 1))])
    return block


def rows(X, index, fit_intercept):
    """Dense x~ rows for the given indices, shape (len(index), p)."""
    index = np.asarray(index)
    if is_dask(X):
        order = np.argsort(index)              # dask gathers sorted indices cheaply
        block = np.empty((index.size, X.shape[1]))
        block[order] = _as_numpy(X[index[order]])
        return _with_intercept(block, fit_intercept)
    return _with_intercept(X[index], fit_intercept)


def row_blocks(X, fit_intercept, chunk=None):
    """Yield ``(slice, dense x~ block)`` over consecutive row blocks (see :func:`block_rows`).

    For a dask array the blocks are its chunks, computed one at a time.
    """
    if is_dask(X):
        start = 0
        for k, size in enumerate(X.chunks[0]):
            yield slice(start, start + size), _with_intercept(X.blocks[k].compute(), fit_intercept)
            start += size
        return
    n = X.shape[0]
    chunk = chunk or block_rows(X)
    for start in range(0, n, chunk):
        sl = slice(start, min(start + chunk, n))
        yield sl, _with_intercept(X[sl], fit_intercept)


def map_rows(X, fit_intercept, func, n_cols=None, row_values=None):
    """Concatenate func(dense x~ block[, values block]) over row blocks: shape (n,) or (n, n_cols).

    ``row_values``, an optional (n, k) array of per-row inputs, is cut like the
    rows and handed to ``func`` as its second argument. On a dask array
    ``func`` runs on the workers, chunk by chunk (the values travel as a dask
    array chunked like X); X itself never comes to the caller.
    """
    if is_dask(X):
        import dask.array as da

        args = [X]
        if row_values is not None:
            args.append(da.from_array(row_values, chunks=(X.chunks[0], row_values.shape[1])))

        def on_chunk(block, *values):
            return func(_with_intercept(block, fit_intercept), *values)
        # (``meta`` given: dask would otherwise call func on an empty block to infer it, and LAPACK
        # prints an error for an empty right-hand side)
        if n_cols is None:
            mapped = da.map_blocks(on_chunk, *args, drop_axis=1, dtype=np.float64, meta=np.empty((0,)))
        else:
            mapped = da.map_blocks(on_chunk, *args, chunks=(X.chunks[0], (n_cols,)), dtype=np.float64,
                                   meta=np.empty((0, 0)))
        return _as_numpy(mapped)
    out = np.empty((X.shape[0],) if n_cols is None else (X.shape[0], n_cols))
    for sl, block in row_blocks(X, fit_intercept):
        out[sl] = func(block) if row_values is None else func(block, row_values[sl])
    return out


def rowwise_dot(X, M, fit_intercept):
    """x~_i^T M_i for every row i, M of shape (n, p): shape (n,)."""
    d = X.shape[1]
    if sp.issparse(X):
        out = np.asarray(X.multiply(M[:, :d]).sum(axis=1)).ravel()
    elif is_dask(X):
        import dask.array as da

        out = _as_numpy((X * da.from_array(M[:, :d], chunks=(X.chunks[0], d))).sum(axis=1))
    else:
        out = np.einsum("ij,ij->i", X, M[:, :d])
    return out + M[:, d] if fit_intercept else out
