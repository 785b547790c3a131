"""Validation of the settings of :class:`rif.deep.TorchInfluence` and of its methods' arguments.

The constructor's settings are described in scikit-learn's constraint language
(``_parameter_constraints``, :mod:`sklearn.utils._param_validation`) and checked
before any copy of the model or data is made, so that a wrong setting fails
at once with a message naming it (an ``InvalidParameterError``, which is both
a ``ValueError`` and a ``TypeError``). Two details differ from scikit-learn's
defaults: ``True``/``False`` are not accepted as numbers, and numbers must be
finite (NaN and inf are refused).
"""

from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils._param_validation import (InvalidParameterError, StrOptions,
                                             validate_parameter_constraints)
from sklearn.utils._param_validation import Interval as _Interval

from ._curvature import CURVATURES
from ._solvers import SOLVERS

METHODS = ("if", "rif", "newton", "retrain")
DAMPING_MODES = ("relative", "absolute")
SCORE_TARGETS = ("loss", "test_loss", "proba")
EFFECT_TARGETS = ("params", "loss", "test_loss", "proba", "self_loss", "train_loss")


class Interval(_Interval):
    """scikit-learn's Interval, refusing booleans and non-finite values."""

    def is_satisfied_by(self, val):
        if isinstance(val, (bool, np.bool_)):
            return False
        if isinstance(val, Real) and not np.isfinite(val):
            return False
        return super().is_satisfied_by(val)

    def __str__(self):
        return "a finite " + super().__str__().split(" ", 1)[1] if self.type is Real else super().__str__()


def _dtype_ok(value):
    return value in (torch.float32, torch.float64)


PARAMETER_CONSTRAINTS = {
    "params": "no_validation",          # resolved against the model in fit (FunctionalModel)
    "curvature": [StrOptions(set(CURVATURES))],
    "solver": [StrOptions(set(SOLVERS) | {"auto"})],
    "damping": [Interval(Real, 0, None, closed="left")],
    "damping_mode": [StrOptions(set(DAMPING_MODES))],
    "weight_decay": [Interval(Real, 0, None, closed="left")],
    "device": [None, str, torch.device, Integral],
    "batch_size": [Interval(Integral, 1, None, closed="left")],
    "cg_tol": [Interval(Real, 0, None, closed="neither")],
    "cg_max_iter": [None, Interval(Integral, 1, None, closed="left")],
    "lissa_scale": [StrOptions({"auto"}), Interval(Real, 0, None, closed="neither")],
    "lissa_depth": [Interval(Integral, 1, None, closed="left")],
    "lissa_repeats": [Interval(Integral, 1, None, closed="left")],
    "lissa_batch_size": [None, Interval(Integral, 1, None, closed="left")],
    "report_residuals": [None, "boolean"],
    "retrain_max_iter": [Interval(Integral, 1, None, closed="left")],
    "retrain_tol": [Interval(Real, 0, None, closed="neither")],
    "max_dense_params": [Interval(Integral, 1, None, closed="left")],
    "rank": [Interval(Integral, 1, None, closed="left")],
    "seed": [Interval(Integral, 0, None, closed="left")],
    "progress": [None, "boolean"],
    "stationarity_tol": [None, Interval(Real, 0, None, closed="left")],
}


def validate_settings(settings, caller="TorchInfluence"):
    """Check ``settings`` (a dict of constructor arguments) against :data:`PARAMETER_CONSTRAINTS`.

    Also checks ``dtype`` (torch.float32 or torch.float64), the combinations
    that no solver supports, and that ``device`` names a device torch knows.

    Raises
    ------
    InvalidParameterError (a ValueError and a TypeError) naming the setting.
    """
    validate_parameter_constraints(PARAMETER_CONSTRAINTS, settings, caller_name=caller)
    if "dtype" in settings and not _dtype_ok(settings["dtype"]):
        raise InvalidParameterError(
            f"The 'dtype' parameter of {caller} must be torch.float32 or torch.float64. "
            f"Got {settings['dtype']!r} instead.")
    if settings.get("curvature") == "hessian" and settings.get("solver") in ("lissa", "kfac", "ekfac"):
        raise InvalidParameterError(
            f"solver={settings['solver']!r} needs a positive semi-definite curvature ('gnh' or "
            "'fisher'); with the true Hessian use 'exact', 'cg' or 'auto'")
    device = settings.get("device")
    if device is not None:
        try:
            torch.device(device)
        except (RuntimeError, TypeError, ValueError) as exc:
            raise InvalidParameterError(
                f"The 'device' parameter of {caller} must name a torch device (e.g. 'cpu', "
                f"'cuda', 'cuda:0'). Got {device!r} instead: {exc}") from None


def check_method(method):
    if not (isinstance(method, str) and method in METHODS):
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return method


def check_bool(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_score_target(target):
    if not (isinstance(target, str) and target in SCORE_TARGETS):
        raise ValueError(f"target must be one of {SCORE_TARGETS} for per-sample scores, got {target!r}")
    return target


def check_effect_target(target):
    if callable(target) and not isinstance(target, str):
        return target
    if not (isinstance(target, str) and target in EFFECT_TARGETS):
        raise ValueError(f"target must be one of {EFFECT_TARGETS} or a callable f(model), got {target!r}")
    return target
