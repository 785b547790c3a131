"""Features of a network (or of one of its layers) as a NumPy array, for a GLM head.

With phi(x) the output of a layer, a GLM fitted on phi by
:class:`rif.InfluenceAuditor` gives exact IF / RIF / Newton-step / retrain
attributions for a last layer retrained on frozen features.
"""

import numpy as np
import torch
from torch import nn

from ._data import check_positive_int, to_tensor


class _Stop(Exception):
    """Raised by the capture hook to skip the layers after the requested one."""


def _inputs(data):
    """The input part of ``data``: a tensor/array, an (X, y) pair, or an iterable of batches."""
    if isinstance(data, (torch.Tensor, np.ndarray)):
        return data, False
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], (torch.Tensor, np.ndarray)):
        return data[0], False
    if hasattr(data, "__iter__"):
        return data, True
    raise TypeError(f"data must be a tensor, an array, an (X, y) pair or an iterable of batches, "
                    f"got {type(data).__name__}")


def embed(model, data, layer=None, *, batch_size=256, device=None, dtype=None, flatten=True):
    """Run ``model`` over ``data`` in batches and return the features as NumPy.

    Parameters
    ----------
    model : torch.nn.Module
        Run in eval mode under ``torch.no_grad``; its train/eval flag is
        restored afterwards and its parameters are never modified. If it has
        to move to another device or dtype, a copy is moved instead.
    data : tensor, ndarray, (X, y) pair, or iterable of batches
        Inputs (for an iterable, e.g. a DataLoader, each batch is an input
        tensor or a tuple whose first item is the input tensor).
    layer : str or torch.nn.Module, optional
        A sub-module (by name as in ``named_modules`` or as the object); its
        output is returned and the rest of the forward pass is skipped.
        Default: the model's output.
    batch_size : int, default 256
        Used when ``data`` is a tensor or an array.
    device : str or torch.device, optional
        Default: the device of the model's parameters.
    dtype : torch.dtype, optional
        Cast floating inputs (and a copy of the model) to this dtype.
    flatten : bool, default True
        Flatten each sample's features to one row.

    Returns
    -------
    ndarray of shape (n_samples, n_features) (float64)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    batch_size = check_positive_int(batch_size, "batch_size")
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype must be None or a floating torch dtype (e.g. torch.float64), got {dtype!r}")
    if not isinstance(flatten, (bool, np.bool_)):
        raise TypeError(f"flatten must be True or False, got {flatten!r}")
    if device is not None:
        try:
            torch.device(device)
        except (RuntimeError, TypeError, ValueError):
            raise ValueError(f"device must name a torch device (e.g. 'cpu', 'cuda'), got {device!r}") from None
    first = next(iter(model.parameters()), None)
    model_device = first.device if first is not None else torch.device("cpu")
    model_dtype = first.dtype if first is not None else torch.float32
    device = model_device if device is None else torch.device(device)
    dtype = model_dtype if dtype is None else dtype
    if device != model_device or dtype != model_dtype:
        import copy
        model = copy.deepcopy(model).to(device=device, dtype=dtype)
    target = None
    if layer is not None:
        modules = dict(model.named_modules())
        if isinstance(layer, str):
            if layer not in modules:
                raise ValueError(f"layer {layer!r} is not a sub-module; sub-modules are {list(modules)[1:]}")
            target = modules[layer]
        elif isinstance(layer, nn.Module):
            names = {id(m): n for n, m in model.named_modules()}
            if id(layer) not in names:
                if model is not first and first is not None:
                    raise ValueError("pass the layer by name when the model is copied to another device/dtype")
                raise ValueError("layer is not a sub-module of model")
            target = layer
        else:
            raise TypeError(f"layer must be a name or a module, got {type(layer).__name__}")
    inputs, is_iterable = _inputs(data)
    if is_iterable:
        batches = (b[0] if isinstance(b, (tuple, list)) else b for b in inputs)
    else:
        X = inputs
        n = X.shape[0]
        batches = (X[s:s + batch_size] for s in range(0, n, batch_size))

    captured = []

    def hook(module, args, output):
        captured.append(output)
        raise _Stop

    handle = target.register_forward_hook(hook) if target is not None else None
    was_training = model.training
    model.eval()
    features = []
    try:
        with torch.no_grad():
            for xb in batches:
                xb = to_tensor(xb, "data", device, dtype)
                captured.clear()
                try:
                    out = model(xb)
                except _Stop:
                    out = captured[0]
                if isinstance(out, (tuple, list)):
                    out = out[0]
                if flatten:
                    out = out.reshape(out.shape[0], -1)
                features.append(out.detach().to("cpu", torch.float64).numpy())
    finally:
        if handle is not None:
            handle.remove()
        model.train(was_training)
    if not features:
        raise ValueError("data is empty")
    return np.concatenate(features)
