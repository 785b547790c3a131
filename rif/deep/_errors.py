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


__all__ = [
    "LiSSADivergenceError",
    "UnsupportedLayerError",
    "SolverConvergenceWarning",
    "SingularHessianError",
    "NearSingularLeverageError",
]
