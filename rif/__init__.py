"""rif: exact leave-k-out data attribution for generalized linear models.

The public API:

``InfluenceAuditor``
    scikit-learn meta-estimator: fit a GLM, then IF / RIF / Newton-step /
    retrain estimates of removing any set of training samples.
``GLMProblem``
    the same machinery on raw arrays, with either penalty convention.
``MultinomialProblem``
    softmax regression over K classes (``GLMProblem(X, y, "multinomial", ...)``).
``limit_threads``
    context manager capping the threads of rif's passes over the data.
``LeaveOneOutSearchCV``
    parameter search scored by leave-one-out at the cost of one fit per candidate
    (``rif.model_selection``).
``datasets``
    synthetic data shaped like the RIF paper's data sets, bundled binary
    problems and a loader of a user's own embeddings (nothing downloads).
Errors and warnings are typed; every error subclasses ``ValueError``.
"""

from ._errors import (
    CertificationWarning,
    LeverageWarning,
    NearSingularLeverageError,
    RetrainConvergenceWarning,
    SeparationError,
    SingularHessianError,
    UnsupportedEstimatorError,
)
from ._families import Binomial, Gaussian, Poisson
from ._parallel import limit_threads
from ._problem import GLMProblem
from ._multinomial import MultinomialProblem
from ._certify import Certified
from .auditor import InfluenceAuditor
from .model_selection import LeaveOneOutSearchCV
from . import datasets

__version__ = "0.1.0"

__all__ = [
    "InfluenceAuditor",
    "GLMProblem",
    "MultinomialProblem",
    "Certified",
    "limit_threads",
    "LeaveOneOutSearchCV",
    "Binomial",
    "Gaussian",
    "Poisson",
    "SingularHessianError",
    "NearSingularLeverageError",
    "SeparationError",
    "UnsupportedEstimatorError",
    "CertificationWarning",
    "LeverageWarning",
    "RetrainConvergenceWarning",
    "datasets",
]
