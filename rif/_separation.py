"""Detecting (quasi-)complete separation in unpenalised binary logistic regression.

The maximum-likelihood estimate exists iff no direction b != 0 has

    s_i x~_i^T b >= 0  for every positively weighted sample,   s_i = 2 y_i - 1

(Albert and Anderson, 1984). Along such a b the loss decreases for ever, so the
fitted probabilities of the samples with s_i x~_i^T b > 0 go to 0 or 1 and the
Hessian to a singular limit; no influence estimate means anything there. The
linear program (Konis, 2007)

    maximise sum_i s_i x~_i^T b   subject to  s_i x~_i^T b >= 0,  -1 <= b_j <= 1

has optimum 0 exactly when the data are not separated; otherwise its solution
names the separated samples (s_i x~_i^T b > 0) and the features that separate
them (b_j != 0).
"""

import numpy as np
import scipy.sparse as sp

from ._errors import SeparationError


def separation(X, y, weights, fit_intercept):
    """(samples, features) that separate the classes, or None if the MLE exists.

    ``features`` lists column indices, with ``X.shape[1]`` standing for the intercept.
    """
    from scipy.optimize import linprog

    keep = weights > 0
    rows = X[keep]
    if sp.issparse(rows):
        rows = rows.toarray()
    rows = np.asarray(rows, dtype=float)
    if fit_intercept:
        rows = np.column_stack([rows, np.ones(rows.shape[0])])
    signed = (2.0 * y[keep] - 1.0)[:, None] * rows
    scale = np.maximum(np.abs(signed).max(axis=0), 1e-300)     # unit columns: a well-scaled LP
    a = signed / scale
    result = linprog(-a.sum(axis=0), A_ub=-a, b_ub=np.zeros(a.shape[0]), bounds=(-1, 1), method="highs")
    if result.status != 0 or -result.fun <= 1e-7 * a.shape[0]:
        return None
    margin = a @ result.x
    samples = np.flatnonzero(keep)[margin > 1e-7]
    features = np.flatnonzero(np.abs(result.x) > 1e-7)
    return samples, features


def raise_if_separated(X, y, weights, fit_intercept):
    """SeparationError naming the samples and features, if the data are separated."""
    found = separation(X, y, weights, fit_intercept)
    if found is None:
        return
    samples, features = found
    d = X.shape[1]
    names = ["intercept" if j == d else str(j) for j in features[:10]]
    raise SeparationError(
        f"the data are separable (quasi-complete separation): {samples.size} sample(s), e.g. "
        f"{samples[:10].tolist()}, are predicted perfectly along a direction of the feature(s) "
        f"[{', '.join(names)}], so their fitted probabilities are numerically 0 or 1, the "
        "unpenalised maximum-likelihood estimate does not exist and no influence is defined. "
        "Add an L2 penalty (LogisticRegression's default C=1.0), or drop those features"
    )
