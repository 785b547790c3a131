"""Evaluation functions f(theta) whose change under removal is measured.

Every built-in target is a sum over samples of a function of that sample's
linear predictor, f(theta) = sum_j phi(y_j, x~_j^T theta), so both its exact
change f(theta^ + dtheta) - f(theta^) and its linearisation
grad f(theta^)^T dtheta are cheap, and per-test-sample scores need only the
change in each test eta.
"""

import numpy as np

from . import _design
from ._validation import check_array as _check_array
from ._validation import check_vector as _check_vector

TARGETS = ("params", "decision", "proba", "loss", "self_loss", "train_loss")


class EtaTarget:
    """f(theta) = sum_j phi(y_j, x~_j^T theta) over a fixed set of rows.

    Parameters
    ----------
    X : ndarray or CSR of shape (m, d)
    y : ndarray of shape (m,) or None
    phi : callable (eta, y) -> (values, derivatives), each of shape (m,)
    fit_intercept : bool
    offset : ndarray of shape (m,), optional
        Fixed terms added to the rows' linear predictors (training rows of a
        problem with an offset).
    """

    def __init__(self, X, y, phi, fit_intercept, change=None, offset=None):
        self.X, self.y, self.phi, self.fit_intercept = X, y, phi, fit_intercept
        self.change, self.offset = change, offset

    def row_changes(self, eta, d_eta):
        """phi(y_j, eta_j + d_eta_js) - phi(y_j, eta_j) per row j and column s, shape (m, k).

        Raises OverflowError naming the evaluation sample whose change float64 cannot hold.
        """
        if self.change is not None:
            out = self.change(eta[:, None], d_eta, None if self.y is None else self.y[:, None])
        else:
            labels = None if self.y is None else np.repeat(self.y, d_eta.shape[1])
            after = self.phi((eta[:, None] + d_eta).ravel(), labels)[0].reshape(d_eta.shape)
            out = after - self.phi(eta, self.y)[0][:, None]
        bad = ~np.isfinite(out) & np.isfinite(d_eta)     # NaN steps (leverage one) stay NaN
        if bad.any():
            j = int(np.flatnonzero(bad.any(axis=1))[0])
            raise OverflowError(
                f"the change of evaluation sample {j} (linear predictor {eta[j]:.4g}) is too large for "
                "float64: its loss overflows. Drop or rescale that sample"
            )
        return out

    def eta(self, theta):
        eta = _design.linear_predictor(self.X, theta, self.fit_intercept)
        return eta if self.offset is None else eta + self.offset

    def per_sample(self, eta):
        """phi and phi' per row, given the rows' linear predictors."""
        return self.phi(eta, self.y)

    def value(self, theta):
        return float(np.sum(self.per_sample(self.eta(theta))[0]))

    def gradient(self, theta):
        with np.errstate(invalid="ignore", over="ignore"):     # far points (rejected iterates): inf, NaN
            return _design.rmatvec(self.X, self.per_sample(self.eta(theta))[1], self.fit_intercept)

    def changes(self, theta, dthetas, linear=False):
        """f(theta + dtheta_s) - f(theta) (or its linearisation) for each row of ``dthetas``.

        One (m, p) x (p, n_sets) product gives every set's change of every eta.
        """
        eta = self.eta(theta)
        d_eta = _design.linear_predictor(self.X, dthetas.T, self.fit_intercept)   # (m, n_sets)
        if linear:
            return self.per_sample(eta)[1] @ d_eta
        return self.row_changes(eta, d_eta).sum(axis=0)


class CallableTarget:
    """A user function f(theta) with an optional gradient function."""

    def __init__(self, func, gradient=None):
        self.func, self._gradient = func, gradient

    def value(self, theta):
        value = np.asarray(self.func(np.array(theta)), dtype=float)
        if value.shape != ():
            raise ValueError(f"a callable target must return a scalar, got shape {value.shape}")
        return float(value)

    def changes(self, theta, dthetas, linear=False):
        """f(theta + dtheta_s) - f(theta) (or its linearisation) for each row of ``dthetas``."""
        if linear:
            return dthetas @ self.gradient(theta)
        base = self.value(theta)
        return np.array([self.value(theta + dtheta) - base for dtheta in dthetas])

    def gradient(self, theta):
        if self._gradient is None:
            raise ValueError("the linearised effect of a callable target needs its gradient: pass target_gradient=")
        return np.asarray(self._gradient(np.array(theta)), dtype=float).ravel()


def _decision(eta, y):
    return eta, np.ones_like(eta)


def _proba(family):
    def phi(eta, y):
        p = family.label_probability(eta, y)
        # d/deta P(y | eta) = +p(1-p) for y = 1 and -p(1-p) for y = 0.
        return p, np.where(y == 1.0, 1.0, -1.0) * p * (1.0 - p)
    return phi


def _loss(family):
    def phi(eta, y):
        loss, d1, _ = family.derivatives(eta, y)
        return loss, d1
    return phi


def check_eval_data(problem, X, y, needs_y):
    """Validate evaluation data against the training problem."""
    if X is None:
        raise ValueError("this target needs evaluation data: pass X (and y)")
    X = _check_array(X, "X")
    if X.shape[1] != problem.n_features:
        raise ValueError(f"X has {X.shape[1]} features but the model was fitted with {problem.n_features}")
    if needs_y:
        if y is None:
            raise ValueError("this target needs labels: pass y")
        y = problem.family.check_target(_check_vector(y, X.shape[0], "y"))
    return X, y


def eta_target(problem, name, X=None, y=None):
    """A per-row target ("decision", "proba" or "loss") on evaluation data (X, y)."""
    if name == "decision":
        X, _ = check_eval_data(problem, X, None, needs_y=False)
        return EtaTarget(X, None, _decision, problem.fit_intercept)
    if name == "proba":
        if problem.family.name != "binomial":
            raise ValueError(f"target='proba' needs a classifier; this is a {problem.family.name} model")
        X, y = check_eval_data(problem, X, y, needs_y=True)
        return EtaTarget(X, y, _proba(problem.family), problem.fit_intercept)
    if name == "loss":
        X, y = check_eval_data(problem, X, y, needs_y=True)
        return EtaTarget(X, y, _loss(problem.family), problem.fit_intercept, problem.family.loss_change)
    raise ValueError(f"per-sample scores support target 'decision', 'proba' or 'loss', got {name!r}")


def make_target(problem, target, X=None, y=None, removed=None, gradient=None):
    """Build the target for one removal set.

    ``"self_loss"`` is the summed loss of the removed samples ``removed``;
    ``"train_loss"`` the summed loss over all training samples, removed or not.
    """
    if callable(target):
        return CallableTarget(target, gradient)
    if target == "self_loss":
        offset = getattr(problem, "offset", None)
        return EtaTarget(_design.rows(problem.X, removed, False), problem.y[removed], _loss(problem.family),
                         problem.fit_intercept, problem.family.loss_change,
                         None if offset is None else offset[removed])
    if target == "train_loss":
        return EtaTarget(problem.X, problem.y, _loss(problem.family), problem.fit_intercept,
                         problem.family.loss_change, getattr(problem, "offset", None))
    if target in ("decision", "proba", "loss"):
        return eta_target(problem, target, X, y)
    raise ValueError(f"target must be one of {TARGETS} or a callable f(theta), got {target!r}")
