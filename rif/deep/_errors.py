"""Typed errors and warnings of the PyTorch backend.

Every error subclasses :class:`ValueError`, as in the core package; the core
errors :class:`rif.SingularHessianError` and :class:`rif.NearSingularLeverageError`
are reused where they mean the same thing.
"""

from .._errors import NearSingularLeverageError, SingularHessianError


class LiSSADivergenceError(ValueError):
    """The LiSSA recursion produced NaN/inf or grew without bound.

    LiSSA iterates x <- b + (I - H_B / scale) x, which converges only when
    ``scale`` exceeds the largest eigenvalue of the damped curvature (of every
    mini-batch estimate H_B of it). Increase ``scale`` (or the damping).
    """


class UnsupportedLayerError(ValueError):
    """K-FAC / EK-FAC were asked to cover a parameter that is not in a supported layer."""


class SolverConvergenceWarning(UserWarning):
    """An iterative solve stopped before reaching its tolerance."""


class StationarityWarning(UserWarning):
    """The trained parameters are not a stationary point of the objective that was described.

    Influence, rescaled influence and Newton steps are expansions around a
    minimiser of L(theta) = sum_i l_i(theta) + (mu/2)||theta||^2 (``weight_decay``
    = mu). When ||grad L(theta^)|| is large against sum_i ||g_i|| + mu ||theta^||,
    theta^ is not that minimiser: the weight decay is missing, mis-scaled (sum
    form is n times the mean form) or swapped with the damping, or training
    did not converge. Retraining then drifts away from theta^ and no estimate
    matches it. The warning names the most likely cause.
    """


__all__ = [
    "LiSSADivergenceError",
    "UnsupportedLayerError",
    "SolverConvergenceWarning",
    "StationarityWarning",
    "SingularHessianError",
    "NearSingularLeverageError",
]
