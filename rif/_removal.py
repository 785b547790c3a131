"""Removal sets: what a user may pass as ``remove``, normalised to index arrays.

Shared by the GLM estimators and :mod:`rif.deep`; each adds the checks that
depend on its model (remaining weight, remaining classes).
"""

import numpy as np


def index_set(index, n, position=None):
    """One removal set as sorted-or-not unique indices in [0, n), shape (k,).

    Accepts integer indices (a scalar is a one-sample set) or a boolean mask
    of length n. Raises ``TypeError`` for non-integer indices and
    ``ValueError`` naming the set for a wrong mask shape, an empty set,
    out-of-range or duplicate indices.
    """
    where = "" if position is None else f" (set {position})"
    arr = np.asarray(index)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise ValueError(f"a boolean removal mask must have shape ({n},), got {arr.shape}{where}")
        arr = np.flatnonzero(arr)
    elif arr.size == 0:
        arr = arr.astype(np.intp)
    elif arr.dtype.kind not in "iu":
        raise TypeError(f"removal indices must be integers or a boolean mask, got dtype {arr.dtype}{where}")
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"a removal set must be 1-D, got shape {arr.shape}{where}")
    if arr.size == 0:
        raise ValueError(f"the removal set is empty{where}")
    # (sorted sets, the common case, need neither a minimum, a maximum nor a sort to be checked)
    increasing = arr.size == 1 or bool(np.all(arr[1:] > arr[:-1]))
    low, high = (arr[0], arr[-1]) if increasing else (arr.min(), arr.max())
    if low < 0 or high >= n:
        raise ValueError(f"removal indices must lie in [0, {n}); got min {low}, max {high}{where}")
    if not increasing and np.unique(arr).size != arr.size:
        raise ValueError(f"the removal set has duplicate indices{where}")
    return arr.astype(np.intp)


def split_sets(remove, check_one):
    """Apply ``check_one(index, position)`` to each set of ``remove``; say whether it was a batch.

    A 1-D integer array, a scalar or a boolean mask is one set; a list or
    tuple of such (ragged allowed) or a 2-D integer array is a batch.
    """
    if isinstance(remove, (list, tuple)) and len(remove) > 0:
        ndims = [np.ndim(item) for item in remove]
        if all(nd == 1 for nd in ndims):
            return [check_one(item, k) for k, item in enumerate(remove)], True
        if any(nd >= 1 for nd in ndims):
            bad = next(k for k, nd in enumerate(ndims) if nd != 1)
            raise ValueError(
                "remove: a batch of removal sets must be a list of 1-D index arrays or masks, but "
                f"item {bad} has {ndims[bad]} dimension(s); write a one-sample set as [i], e.g. "
                "[[1, 2], [5]]"
            )
    arr = np.asarray(remove)
    if arr.ndim == 2 and arr.dtype != bool:
        return [check_one(row, k) for k, row in enumerate(arr)], True
    return [check_one(arr, None)], False
