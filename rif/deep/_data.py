"""Input validation for the PyTorch backend: data sets, batches and removal sets."""

import numpy as np
import torch

from .._removal import index_set, split_sets


def to_tensor(a, name, device, dtype=None):
    """A copy of ``a`` (ndarray, tensor or nested sequence) as a tensor on ``device``.

    Floating inputs are cast to ``dtype``; integer inputs keep their dtype.
    The caller's object is never modified (a copy is always made).
    """
    if isinstance(a, torch.Tensor):
        t = a.detach()
    else:
        arr = np.asarray(a)
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}")
        t = torch.as_tensor(arr)
    if t.dtype == torch.bool:
        t = t.long()
    if t.is_floating_point() and dtype is not None:
        t = t.to(dtype)
    t = t.to(device).clone()
    if t.is_floating_point() and not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or infinity")
    return t


def split_data(data, name):
    """(X, y) from a pair or from an indexable data set of (x, y) pairs."""
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return data[0], data[1]
    if hasattr(data, "__len__") and hasattr(data, "__getitem__"):
        if hasattr(data, "tensors") and len(data.tensors) == 2:   # TensorDataset
            return data.tensors
        items = [data[i] for i in range(len(data))]
        if not items:
            raise ValueError(f"{name} is empty")
        xs, ys = zip(*items)
        return torch.stack([torch.as_tensor(x) for x in xs]), torch.stack([torch.as_tensor(y) for y in ys])
    raise TypeError(f"{name} must be a pair (X, y) or a torch Dataset of (x, y) pairs, got {type(data).__name__}")


def check_pair(X, y, name, device, dtype):
    X = to_tensor(X, f"{name} X", device, dtype)
    y = to_tensor(y, f"{name} y", device, dtype)
    if X.ndim < 1 or X.shape[0] == 0:
        raise ValueError(f"{name} X must have at least one sample, got shape {tuple(X.shape)}")
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"{name} X has {X.shape[0]} samples but y has {y.shape[0]}")
    return X, y


def check_positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def batch_slices(n, batch_size):
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


# -- removal sets -----------------------------------------------------------------
def _one_set(index, n, position=None):
    if isinstance(index, torch.Tensor):
        index = index.detach().cpu().numpy()
    arr = index_set(index, n, position)
    if arr.size == n:
        where = "" if position is None else f" (set {position})"
        raise ValueError(f"the removal set removes every training sample{where}")
    return arr.astype(np.int64)


def removal_sets(n, remove):
    """Normalise ``remove`` to a list of index arrays and say whether it was a batch.

    A 1-D integer array (or a single int) or a boolean mask is one set; a list
    of such (ragged allowed) or a 2-D integer array is a batch (see
    :func:`rif._removal.split_sets`).
    """
    if isinstance(remove, torch.Tensor):
        remove = remove.detach().cpu().numpy()
    return split_sets(remove, lambda index, position: _one_set(index, n, position))
