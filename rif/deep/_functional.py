"""A private functional view of a PyTorch model over a chosen set of parameters.

The model is deep-copied (so the caller's module, its parameters and its
train/eval flag are never touched), moved to the working device and dtype,
and put in eval mode. The chosen parameters are flattened, in
``named_parameters`` order, into one vector theta of length p; every other
parameter and buffer is held fixed.
"""

import copy

import torch
from torch import nn


def _resolve_names(model, params):
    """Names (in named_parameters order) of the parameters selected by ``params``."""
    named = list(model.named_parameters())
    if params is None:
        names = [n for n, t in named if t.requires_grad]
        if not names:
            raise ValueError("the model has no parameter with requires_grad=True")
        return names
    if isinstance(params, (str, nn.Module, nn.Parameter)):
        params = [params]
    try:
        items = list(params)
    except TypeError:
        raise TypeError("params must be None, a name, a module, a parameter or an iterable of these") from None
    if not items:
        raise ValueError("params is empty")
    by_id = {id(t): n for n, t in named}
    modules = dict(model.named_modules())
    module_names = {id(m): n for n, m in modules.items()}
    chosen = set()
    for item in items:
        if isinstance(item, nn.Parameter):
            if id(item) not in by_id:
                raise ValueError("a parameter in params does not belong to the model")
            chosen.add(by_id[id(item)])
        elif isinstance(item, nn.Module):
            if id(item) not in module_names:
                raise ValueError("a module in params is not a sub-module of the model")
            prefix = module_names[id(item)]
            found = [n for n, _ in named if prefix == "" or n.startswith(prefix + ".")]
            if not found:
                raise ValueError(f"module {prefix!r} has no parameters")
            chosen.update(found)
        elif isinstance(item, str):
            found = [n for n, _ in named if n == item or n.startswith(item + ".")]
            if not found:
                raise ValueError(f"{item!r} names neither a parameter nor a module with parameters; "
                                 f"parameters are {[n for n, _ in named]}")
            chosen.update(found)
        else:
            raise TypeError(f"params items must be names, modules or parameters, got {type(item).__name__}")
    return [n for n, _ in named if n in chosen]


class FunctionalModel:
    """theta -> outputs, for a copy of ``model`` and a chosen parameter set.

    Parameters
    ----------
    model : torch.nn.Module
    params : None, str, Module, Parameter or an iterable of these
        The parameters to attribute over (None: all with ``requires_grad``).
        A string selects a parameter by name or every parameter of the
        sub-module with that name.
    device, dtype : torch device and floating dtype of the working copy.
    """

    def __init__(self, model, params=None, *, device="cpu", dtype=torch.float32):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        names = _resolve_names(model, params)
        self.model = copy.deepcopy(model).to(device=device, dtype=dtype).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.device, self.dtype = torch.device(device), dtype
        named = dict(self.model.named_parameters())
        self.names = names
        self.shapes = [named[n].shape for n in names]
        self.numels = [named[n].numel() for n in names]
        self.n_params = sum(self.numels)
        self.theta = torch.cat([named[n].detach().reshape(-1) for n in names]).clone()
        self.fixed = {n: t.detach() for n, t in named.items() if n not in set(names)}
        self.fixed.update({n: b for n, b in self.model.named_buffers()})

    def unflatten(self, theta):
        """Dict name -> tensor view of a flat parameter vector."""
        out, start = {}, 0
        for name, shape, k in zip(self.names, self.shapes, self.numels):
            out[name] = theta[start:start + k].view(shape)
            start += k
        return out

    def slices(self):
        """Dict name -> slice of theta."""
        out, start = {}, 0
        for name, k in zip(self.names, self.numels):
            out[name] = slice(start, start + k)
            start += k
        return out

    def forward(self, theta, x):
        """Outputs of shape (B, K) at parameters ``theta`` (outputs are flattened per sample)."""
        out = torch.func.functional_call(self.model, {**self.fixed, **self.unflatten(theta)}, (x,))
        return out.reshape(out.shape[0], -1)

    def forward_single(self, theta, x):
        """Output of one sample (no batch axis), shape (K,)."""
        return self.forward(theta, x.unsqueeze(0))[0]

    def load(self, theta):
        """Write ``theta`` into the working copy's parameters (in place, on the copy only)."""
        named = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, value in self.unflatten(theta).items():
                named[name].copy_(value)

    def export(self, theta):
        """A fresh deep copy of the working model with parameters ``theta``."""
        model = copy.deepcopy(self.model)
        named = dict(model.named_parameters())
        with torch.no_grad():
            for name, value in self.unflatten(theta).items():
                named[name].copy_(value)
        for p in model.parameters():
            p.requires_grad_(True)
        return model
