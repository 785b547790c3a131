"""Labelled outputs: per-row and per-parameter results as pandas objects.

With ``as_frame=True`` a method's NumPy result is wrapped, never recomputed:
training rows are labelled by the training DataFrame's index (else 0..n-1),
parameters by the feature names (else x0, x1, ...) with ``"intercept"`` last,
evaluation samples by the evaluation DataFrame's index (else 0..m-1).
pandas is imported only when a frame is asked for.
"""

import functools

import numpy as np


def param_names(owner):
    """Names of theta's entries: feature names (or x0, x1, ...), then "intercept"."""
    problem = owner._problem()
    names = owner._feature_names() if hasattr(owner, "_feature_names") else None
    if names is None:
        names = [f"x{j}" for j in range(problem.n_features)]
    if hasattr(problem, "n_classes"):        # multinomial: coef_.ravel() (class by class), then intercept_
        classes = getattr(owner, "classes_", None) if hasattr(owner, "estimator_") else None
        classes = list(range(problem.n_classes)) if classes is None else list(classes)
        coef = [f"{c}:{name}" for c in classes for name in names]
        return coef + ([f"{c}:intercept" for c in classes] if problem.fit_intercept else [])
    return list(names) + (["intercept"] if problem.fit_intercept else [])


def row_labels(owner):
    labels = owner._row_labels() if hasattr(owner, "_row_labels") else None
    return np.arange(owner._problem().n_samples) if labels is None else labels


def _eval_labels(X, m):
    index = getattr(X, "index", None) if hasattr(X, "columns") else None
    return np.arange(m) if index is None else np.asarray(index)


def to_frame(kind, owner, out, X=None):
    """Wrap ``out`` of a method of kind "params", "loo_params", "scores" or "per_row"."""
    import pandas as pd

    if kind == "params":
        if np.ndim(out) == 1:
            return pd.Series(out, index=param_names(owner), name="dtheta")
        return pd.DataFrame(out, columns=param_names(owner)).rename_axis("set")
    if kind == "loo_params":
        return pd.DataFrame(out, index=row_labels(owner), columns=param_names(owner))
    if kind == "scores":
        return pd.DataFrame(out, index=row_labels(owner), columns=_eval_labels(X, out.shape[1]))
    return pd.Series(out, index=row_labels(owner))


def labelled_output(kind):
    """Give a method an ``as_frame=False`` keyword that wraps its result by :func:`to_frame`."""
    def decorate(method):
        @functools.wraps(method)
        def wrapper(self, *args, as_frame=False, **kwargs):
            out = method(self, *args, **kwargs)
            if not as_frame or hasattr(out, "certified"):      # certificates are not relabelled
                return out
            if kind == "params" and np.ndim(out) == 0:      # a scalar effect has no labels
                return out
            X = kwargs.get("X", args[0] if args else None)
            return to_frame(kind, self, out, X)
        return wrapper
    return decorate


def top_table(owner, effects, X, k):
    """Long table of the ``k`` training rows with the largest |effect| on each evaluation sample.

    ``effects``: (n_train, n_eval). Columns: eval (label), rank (1 = largest),
    train (label), train_position (0-based row), effect.
    """
    import pandas as pd

    n, m = effects.shape
    k = min(k, n)
    magnitude = np.nan_to_num(np.abs(effects), nan=-np.inf)
    top = np.argsort(-magnitude, axis=0, kind="stable")[:k]            # (k, m)
    rows = row_labels(owner)
    evals = _eval_labels(X, m)
    return pd.DataFrame({
        "eval": np.repeat(evals, k),
        "rank": np.tile(np.arange(1, k + 1), m),
        "train": rows[top.T.ravel()],
        "train_position": top.T.ravel(),
        "effect": effects[top, np.arange(m)].T.ravel(),
    })
