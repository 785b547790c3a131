"""Typed errors and warnings raised by rif.

Every error subclasses :class:`ValueError` so that ``except ValueError`` keeps
working for callers who do not care about the precise cause.
"""


class SingularHessianError(ValueError):
    """The (leave-k-out) Hessian is singular or numerically indefinite.

    Raised when the Cholesky factorisation fails, when its reciprocal
    condition number is below the working tolerance, or when removing a set
    of samples leaves a Hessian that is not positive definite (for example an
    unpenalised fit with at least as many parameters as remaining samples).
    """


class NearSingularLeverageError(SingularHessianError):
    """A removed sample has generalised leverage numerically equal to one.

    Its leave-one-out Newton step ``H^{-1} g_i / (1 - h_i)`` is then dominated
    by rounding error, so rescaled-influence and Newton-step estimates for
    sets containing it are refused rather than returned as garbage. Removing
    it leaves the Hessian singular along its direction, so this is a
    :class:`SingularHessianError` that names the samples.
    """


class UnsupportedEstimatorError(ValueError):
    """The estimator (or one of its settings) has no exact GLM counterpart."""


class LeverageWarning(UserWarning):
    """Some training samples have generalised leverage numerically one."""


class RetrainConvergenceWarning(UserWarning):
    """A warm-started exact refit did not reach its tolerance."""


class CertificationWarning(UserWarning):
    """``method="auto"`` could not prove the requested ``rtol`` for some sets.

    Their exact refits, converged, are returned with the bound that could be proved. This happens
    when the change is so small that the bound's floor (the rounding of the gradient it is computed
    from) exceeds ``rtol`` times the change, or when no certificate applies (``bound`` is ``inf``).
    """


class SeparationError(SingularHessianError):
    """Unpenalised binary logistic regression on (quasi-)completely separated data.

    The maximum-likelihood estimate does not exist: the coefficients diverge and
    the fitted probabilities of the separated samples are numerically 0 or 1 (R's
    ``glm`` warns "fitted probabilities numerically 0 or 1 occurred"). The message
    names the separated samples and the features that separate them.
    """
