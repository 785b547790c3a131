"""Per-sample losses l(y, f) of a network output f in R^K, with their output Hessians.

Every loss is evaluated per sample and summed over the training set (sum
form, as in the core package). The Gauss-Newton curvature needs the Hessian
of the loss with respect to the network output, A = d^2 l / df^2 (K x K):

``"cross_entropy"``  l = logsumexp(f) - f_y,          A = diag(p) - p p^T, p = softmax(f)
``"bce"``            l = log(1 + e^f) - y f (K = 1),   A = p (1 - p),      p = sigmoid(f)
``"mse"``            l = (1/2) ||f - y||^2,            A = I
callable             l = loss(f, y) per sample,        A by automatic differentiation

Note that ``"mse"`` is *half* the summed squared error (so that A = I and the
squared-loss GLM of the core package, with the same penalty, is reproduced),
not PyTorch's ``MSELoss`` mean.
"""

import torch

LOSSES = ("cross_entropy", "bce", "mse")


class Loss:
    """A per-sample loss on outputs of shape (B, K) and targets of shape (B, ...).

    Parameters
    ----------
    name : str
    fn : callable (out (B, K), y (B, ...)) -> (B,)
    """

    def __init__(self, name, fn, hessian=None, proba=None):
        self.name, self._fn, self._hessian, self._proba = name, fn, hessian, proba

    def __call__(self, out, y):
        return self._fn(out, y)

    def single(self, out, y):
        """The loss of one sample: out of shape (K,), y of the sample's shape."""
        return self._fn(out.unsqueeze(0), y.unsqueeze(0))[0]

    def output_hessian(self, out, y):
        """A_i = d^2 l(y_i, f_i) / df_i^2, shape (B, K, K)."""
        if self._hessian is not None:
            return self._hessian(out, y)
        return torch.func.vmap(torch.func.hessian(self.single))(out, y)

    def proba(self, out, y):
        """Probability of the label y_i under the model, shape (B,)."""
        if self._proba is None:
            raise ValueError(f"target='proba' needs a classification loss, not {self.name!r}")
        return self._proba(out, y)

    def check_target(self, y, n_out):
        """Validate/convert a target tensor for outputs with ``n_out`` columns."""
        if self.name == "cross_entropy":
            if y.dtype.is_floating_point:
                if not torch.all(y == torch.round(y)):
                    raise ValueError("cross_entropy targets must be integer class labels")
            y = y.long()
            if y.ndim != 1:
                raise ValueError(f"cross_entropy targets must be 1-D class labels, got shape {tuple(y.shape)}")
            if y.numel() and (int(y.min()) < 0 or int(y.max()) >= n_out):
                raise ValueError(f"class labels must lie in [0, {n_out}); got [{int(y.min())}, {int(y.max())}]")
            return y
        if self.name == "bce":
            if n_out != 1:
                raise ValueError(f"loss='bce' needs a model with one output (a logit), got {n_out}")
            y = y.reshape(-1)
            if torch.any((y < 0) | (y > 1)):
                raise ValueError("bce targets must lie in [0, 1]")
            return y
        if self.name == "mse":
            if y.ndim == 1:
                y = y[:, None]
            if y.ndim != 2 or y.shape[1] != n_out:
                raise ValueError(f"mse targets must have shape (n, {n_out}), got {tuple(y.shape)}")
            return y
        return y


def _cross_entropy(out, y):
    return torch.logsumexp(out, dim=1) - out.gather(1, y[:, None])[:, 0]


def _cross_entropy_hessian(out, y):
    p = torch.softmax(out, dim=1)
    return torch.diag_embed(p) - p[:, :, None] * p[:, None, :]


def _cross_entropy_proba(out, y):
    return torch.softmax(out, dim=1).gather(1, y[:, None])[:, 0]


def _bce(out, y):
    f = out[:, 0]
    return torch.nn.functional.softplus(f) - y.to(f.dtype) * f


def _bce_hessian(out, y):
    p = torch.sigmoid(out[:, 0])
    return (p * (1 - p))[:, None, None]


def _bce_proba(out, y):
    p = torch.sigmoid(out[:, 0])
    y = y.to(p.dtype)
    return y * p + (1 - y) * (1 - p)


def _mse(out, y):
    return 0.5 * ((out - y.to(out.dtype)) ** 2).sum(dim=1)


def _mse_hessian(out, y):
    eye = torch.eye(out.shape[1], dtype=out.dtype, device=out.device)
    return eye.expand(out.shape[0], -1, -1)


def get_loss(loss):
    """A :class:`Loss` from a name in ``LOSSES`` or a callable (out, y) -> per-sample losses."""
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, str):
        if loss == "cross_entropy":
            return Loss(loss, _cross_entropy, _cross_entropy_hessian, _cross_entropy_proba)
        if loss == "bce":
            return Loss(loss, _bce, _bce_hessian, _bce_proba)
        if loss == "mse":
            return Loss(loss, _mse, _mse_hessian)
        raise ValueError(f"loss must be one of {LOSSES} or a callable, got {loss!r}")
    if callable(loss):
        return Loss(getattr(loss, "__name__", "callable"), loss)
    raise TypeError(f"loss must be a string or a callable, got {type(loss).__name__}")
