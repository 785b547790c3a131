"""rif.deep: data attribution for PyTorch models (optional; needs ``pip install rif[torch]``).

Importing :mod:`rif` never imports torch; this sub-package does, and is only
loaded by an explicit ``import rif.deep``.

``embed``
    Features of a network or of one of its layers as NumPy, for an exact
    :class:`rif.InfluenceAuditor` on a GLM head.
``TorchInfluence``
    IF / RIF / Newton-step / retrain attribution for a whole network (or a
    chosen subset of its parameters) with Gauss-Newton, true-Hessian or
    empirical-Fisher curvature and exact, CG, LiSSA, K-FAC, EK-FAC or low-rank
    solvers, streaming the training set in blocks (no n x p matrix is kept).

See ``docs/deep.md`` for the mathematics.
"""

try:
    import torch  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without torch
    raise ImportError("rif.deep needs PyTorch: pip install 'rif[torch]'") from exc

from .._errors import NearSingularLeverageError, RetrainConvergenceWarning, SingularHessianError
from ._curvature import CURVATURES
from ._embeddings import embed
from ._errors import (LiSSADivergenceError, SolverConvergenceWarning, StationarityWarning,
                      UnsupportedLayerError)
from ._influence import METHODS, TorchInfluence
from ._solvers import SOLVERS

__all__ = [
    "TorchInfluence",
    "embed",
    "CURVATURES",
    "SOLVERS",
    "METHODS",
    "LiSSADivergenceError",
    "UnsupportedLayerError",
    "SolverConvergenceWarning",
    "StationarityWarning",
    "SingularHessianError",
    "NearSingularLeverageError",
    "RetrainConvergenceWarning",
]
