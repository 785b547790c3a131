"""rif: exact leave-k-out data attribution for generalized linear models.

The public API:

``InfluenceAuditor``
    scikit-learn meta-estimator: fit a GLM, then IF / RIF / Newton-step /
    retrain estimates of removing any set of training samples.
``GLMProblem``
    the same machinery on raw arrays, with either penalty convention.
``limit_threads``
    context manager capping the threads of rif's passes over the data.
``datasets``
    synthetic data shaped like the RIF paper's data sets, bundled binary
    problems and a loader of a user's own embeddings (nothing downloads).
Errors and warnings are typed; every error subclasses ``ValueError``.
"""

from ._errors import (
    LeverageWarning,
    NearSingularLeverageError,
    RetrainConvergenceWarning,
    SingularHessianError,
    UnsupportedEstimatorError,
)
from ._families import Binomial, Gaussian, Poisson
from ._parallel import limit_threads
from ._problem import GLMProblem
from .auditor import InfluenceAuditor
from . import datasets

__version__ = "0.1.0"

__all__ = [
    "InfluenceAuditor",
    "GLMProblem",
    "limit_threads",
    "Binomial",
    "Gaussian",
    "Poisson",
    "SingularHessianError",
    "NearSingularLeverageError",
    "UnsupportedEstimatorError",
    "LeverageWarning",
    "RetrainConvergenceWarning",
    "datasets",
]
