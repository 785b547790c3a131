"""Robustness audits: the smallest removal set that flips a conclusion, verified by refit.

After Broderick, Giordano and Meager's approximate maximum influence
perturbation (AMIP): given a scalar conclusion f computed from the fit, find
the fewest removal units (rows, or whole groups) whose removal moves f across
a threshold t (0 for "the sign changes").

Targets f (theta with the intercept last, weights w, see :mod:`rif._problem`):

    coefficient          f = theta_j
    linear combination   f = c^T theta
    decision value       f = x~^T theta for one test row x (x~ = (x, 1) with an intercept)
    z-statistic          f = theta_j / se_j(theta, w), with
        model-based      se_j^2 = phi [H_w(theta)^{-1}]_jj,
                         phi = sum_i w_i (y_i - eta_i)^2 / (sum_i w_i - p) for the Gaussian
                         family, phi = 1 otherwise;
        sandwich (HC0)   se_j^2 = e_j^T H^{-1} M H^{-1} e_j,  M = sum_i w_i l'_i^2 x~_i x~_i^T

(weights as frequencies: an integer weight is the same as repeating the row,
as statsmodels' ``freq_weights``).

With the direction d = sign(t - f(theta^)), a removal set S *flips* the
conclusion when d (f(theta_{-S}, w_{-S}) - t) > 0, with theta_{-S} the exact
refit.

Every method ranks units by a predicted change of f, the linear model
c^T dtheta_u with c = grad f at the current fit (for the z-statistic
c = e_j / se_j: the standard error is held at its value at the current fit
while ranking; every reported value uses the refitted standard error):

* ``"if"``: one sort by the influence-function change (AMIP's ranking); the
  smallest prefix whose summed predicted change crosses t is the proposed set.
* ``"rif"``: the same with rescaled influence, dtheta_i = H^{-1} g_i / (1 - h_i),
  the exact leave-one-out Newton step.
* ``"greedy"`` (default): at each step rank the remaining units by RIF (rows)
  or by the leave-group-out Newton step (groups) *at the current exact refit*,
  remove the ``per_step`` best, refit exactly (Newton warm-started at the
  previous refit), and stop once the refit flips; then a pruning pass tries
  to put back each member (least useful first) and keeps it out only if the
  flip no longer verifies without removing it.

The proposed set of every method is refitted exactly; the result says whether
the flip verified. Only a verified flip is evidence of non-robustness; a
method that finds no set within ``max_fraction`` reports ``found=False``.
"""

from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
from scipy.stats import norm

from . import _design
from . import _estimators as est_
from ._solvers import _factor_threads

ROBUSTNESS_METHODS = ("greedy", "if", "rif")
GOALS = ("sign", "significance", "threshold")
STANDARD_ERRORS = ("model", "hc0")


# -- targets -------------------------------------------------------------------------
class LinearTarget:
    """f(theta) = c^T theta."""

    is_z = False

    def __init__(self, c, name):
        self.c = np.asarray(c, dtype=float)
        self.name = name

    def value(self, problem, theta, weights, hessian=None):
        return float(self.c @ theta)

    def direction(self, fit):
        """grad f at the fit ``fit`` (a GLMProblem at its own theta and weights)."""
        return self.c


class ZTarget:
    """f(theta, w) = theta_j / se_j(theta, w), model-based or HC0 standard error."""

    is_z = True

    def __init__(self, j, se, name):
        self.j, self.se, self.name = j, se, name

    def std_error(self, problem, theta, weights, hessian=None):
        return standard_error(problem, theta, weights, self.j, self.se, hessian)

    def value(self, problem, theta, weights, hessian=None):
        return float(theta[self.j] / self.std_error(problem, theta, weights, hessian))

    def direction(self, fit):
        c = np.zeros(fit.n_params)
        c[self.j] = 1.0 / self.std_error(fit, fit.theta, fit.sample_weight, fit.hessian)
        return c


def standard_error(problem, theta, weights, j, se="model", hessian=None):
    """Standard error of theta_j at (theta, w): model-based or HC0 (see the module docstring).

    ``hessian``: H_w(theta) when already formed.
    """
    import scipy.linalg as sla

    if hessian is None:
        hessian = problem.hessian_at(theta, weights)
    e = np.zeros(problem.n_params)
    e[j] = 1.0
    v = sla.cho_solve(sla.cho_factor(hessian, lower=True, check_finite=False), e, check_finite=False)
    if se == "model":
        var = v[j]
        if problem.family.name == "gaussian":
            eta = _design.linear_predictor(problem.X, theta, problem.fit_intercept)
            n_eff = float(weights.sum())       # frequency weights: sum w rows
            if n_eff <= problem.n_params:
                raise ValueError(f"the model-based standard error needs a total sample weight above "
                                 f"{problem.n_params} (the number of parameters), got {n_eff:g}")
            var = var * float(weights @ (problem.y - eta) ** 2) / (n_eff - problem.n_params)
    else:
        eta = _design.linear_predictor(problem.X, theta, problem.fit_intercept)
        _, d1, _ = problem.family.derivatives(eta, problem.y)
        xv = _design.linear_predictor(problem.X, v, problem.fit_intercept)   # X~ H^{-1} e_j
        var = float(np.sum(weights * (d1 * xv) ** 2))
    return float(np.sqrt(var))


def _param_index(problem, j, feature_names):
    """A parameter position from an int or a feature name ("intercept" for the intercept)."""
    if isinstance(j, str):
        if j == "intercept" and problem.fit_intercept:
            return problem.n_params - 1
        names = [] if feature_names is None else list(feature_names)
        if j not in names:
            raise ValueError(f"unknown coefficient name {j!r}; known: "
                             f"{names[:10] + (['intercept'] if problem.fit_intercept else [])}")
        return names.index(j)
    if isinstance(j, (bool, np.bool_)) or not isinstance(j, (int, np.integer)):
        raise TypeError(f"a coefficient is given by an int index or a feature name, got {j!r}")
    j = int(j)
    if not -problem.n_params <= j < problem.n_params:
        raise ValueError(f"coefficient index {j} out of range for {problem.n_params} parameters")
    return j % problem.n_params


def _param_label(problem, j, feature_names):
    if problem.fit_intercept and j == problem.n_params - 1:
        return "intercept"
    return str(feature_names[j]) if feature_names is not None else f"x{j}"


def make_target(problem, target, se="model", feature_names=None):
    """Parse a robustness target.

    ``target`` is ``("coef", j)``, ``("z", j)``, ``("combination", c)`` with c of
    length n_params (or n_features: intercept weight 0), or ``("decision", x)``
    with x one test row of length n_features. j is an int or a feature name.
    """
    if se not in STANDARD_ERRORS:
        raise ValueError(f"se must be one of {STANDARD_ERRORS}, got {se!r}")
    if not (isinstance(target, tuple) and len(target) == 2 and isinstance(target[0], str)):
        raise TypeError("target must be a pair such as ('coef', j), ('z', j), ('combination', c) "
                        f"or ('decision', x); got {target!r}")
    kind, arg = target
    if kind == "coef":
        j = _param_index(problem, arg, feature_names)
        c = np.zeros(problem.n_params)
        c[j] = 1.0
        return LinearTarget(c, f"coef[{_param_label(problem, j, feature_names)}]")
    if kind == "z":
        j = _param_index(problem, arg, feature_names)
        return ZTarget(j, se, f"z[{_param_label(problem, j, feature_names)}] ({se} SE)")
    if kind == "combination":
        c = np.asarray(arg, dtype=float)
        if c.ndim != 1 or c.shape[0] not in (problem.n_params, problem.n_features):
            raise ValueError(f"a combination needs {problem.n_params} weights (intercept last) or "
                             f"{problem.n_features}, got shape {c.shape}")
        if not np.all(np.isfinite(c)):
            raise ValueError("the combination's weights must be finite")
        if c.shape[0] != problem.n_params:
            c = np.append(c, 0.0)
        return LinearTarget(c, "combination")
    if kind == "decision":
        x = np.asarray(arg, dtype=float).ravel()
        if x.shape[0] != problem.n_features or not np.all(np.isfinite(x)):
            raise ValueError(f"a decision target needs one finite row of {problem.n_features} features, "
                             f"got {x.shape[0]} values")
        return LinearTarget(np.append(x, 1.0) if problem.fit_intercept else x, "decision")
    raise ValueError(f"target kind must be 'coef', 'z', 'combination' or 'decision', got {kind!r}")


# -- removal units ---------------------------------------------------------------------
def make_units(problem, groups):
    """(labels, rows per unit, unit of each row): rows, or the groups of ``groups``."""
    n = problem.n_samples
    if groups is None:
        return np.arange(n), [np.array([i]) for i in range(n)], np.arange(n)
    groups = np.asarray(groups)
    if groups.shape != (n,):
        raise ValueError(f"groups must have one label per training sample, shape ({n},), got {groups.shape}")
    labels, inverse = np.unique(groups, return_inverse=True)
    if labels.size < 2:
        raise ValueError("groups must have at least two distinct labels")
    order = np.argsort(inverse, kind="stable")
    rows = np.split(order, np.cumsum(np.bincount(inverse))[:-1])
    return labels, rows, inverse


# -- the result --------------------------------------------------------------------------
@dataclass
class RobustnessResult:
    """Outcome of a robustness audit.

    Attributes
    ----------
    indices : ndarray of int
        Training rows of the proposed removal set (empty when none was found).
    units : ndarray
        The removed units: row indices, or group labels with ``groups=``.
    found : bool
        Whether the method proposed a set within ``max_fraction``.
    verified : bool
        Whether the exact refit without ``indices`` crosses the threshold.
    n_units, n_units_total : int
        Removed units and all units (rows or groups).
    fraction : float
        n_units / n_units_total.
    target, method, goal : str
    value : float
        The target at the full fit.
    threshold : float
    predicted_value : float
        The method's own prediction of the target after removal (for
        ``"greedy"``: the last step's prediction, from the previous refit).
    refit_value : float
        The target at the exact refit without ``indices`` (nan if nothing found).
    n_refits : int
        Exact refits the search and its verification ran.
    unit_kind : {"rows", "groups"}
    theta : ndarray of shape (p,) or None
        The verified refit's parameters (intercept last).
    row_labels : ndarray or None
        Labels of the removed rows (a DataFrame's index) when the auditor had them.
    """

    indices: np.ndarray
    units: np.ndarray
    found: bool
    verified: bool
    n_units: int
    n_units_total: int
    fraction: float
    target: str
    method: str
    goal: str
    value: float
    threshold: float
    predicted_value: float
    refit_value: float
    n_refits: int
    unit_kind: str = "rows"
    theta: np.ndarray = field(default=None, repr=False)
    row_labels: np.ndarray = field(default=None, repr=False)

    def summary(self):
        """One readable paragraph (a string; rif never prints)."""
        unit = self.unit_kind
        head = f"{self.target}: {self.value:+.4g} at the full fit; goal {self.goal} (threshold {self.threshold:+.4g})."
        if not self.found:
            return (f"{head} Method {self.method!r} found no removal set within the allowed fraction "
                    f"({self.n_refits} exact refits).")
        check = ("verified by exact refit" if self.verified
                 else "NOT verified: the exact refit does not cross the threshold")
        return (f"{head} Method {self.method!r}: removing {self.n_units} of {self.n_units_total} {unit} "
                f"({self.fraction:.2%}) gives {self.refit_value:+.4g} by exact refit "
                f"(predicted {self.predicted_value:+.4g}); {check}.")


# -- the search ----------------------------------------------------------------------------
def _weights_without(problem, rows):
    w = problem.sample_weight.copy()
    w[rows] = 0.0
    return w


def _fit_at(problem, weights, theta):
    """The exact refit with sample weights ``weights``, Newton warm-started at ``theta``.

    Raises SingularHessianError when the objective has no finite optimum
    (Newton does not converge, e.g. separable classes) or a singular Hessian.
    """
    import warnings

    from ._errors import RetrainConvergenceWarning, SingularHessianError
    from ._problem import GLMProblem

    with warnings.catch_warnings():
        warnings.simplefilter("error", RetrainConvergenceWarning)
        try:
            return GLMProblem(problem.X, problem.y, problem.family, theta, sample_weight=weights,
                              penalty=problem.penalty, penalty_scaling=problem.penalty_scaling,
                              fit_intercept=problem.fit_intercept, refine=True, tol=problem.tol,
                              max_iter=problem.max_iter)
        except RetrainConvergenceWarning as exc:
            raise SingularHessianError(str(exc)) from None


def unit_changes(fit, c, unit_rows, inverse, method):
    """Predicted change c^T dtheta_u of each unit's removal at the fit ``fit``.

    ``method`` "if" or "rif" sums per-row changes (additive); "newton" takes
    the leave-unit-out Newton step of each unit (for rows it equals "rif").
    """
    if method == "newton" and len(unit_rows) < fit.n_samples:
        out = np.full(len(unit_rows), np.nan)
        live = [k for k, r in enumerate(unit_rows) if fit.sample_weight[r].sum() > 0]
        if live:
            sets = [r[fit.sample_weight[r] > 0] for r in (unit_rows[k] for k in live)]
            try:
                out[live] = est_.params_change_batch(fit, sets, "newton") @ c
            except ValueError:        # some group's leave-out Hessian is singular: rank it last (NaN)
                for k, index in zip(live, sets):
                    try:
                        out[k] = est_.params_change_one(fit, index, "newton") @ c
                    except ValueError:
                        pass
        return out
    m = "rif" if method == "newton" else method
    coef = est_.scalar_loo_coefficient(fit, m)
    if coef is not None:
        rows = coef * _design.linear_predictor(fit.X, fit.base_factor.solve(c), fit.fit_intercept)
    else:
        rows = est_.loo_params_change(fit, m) @ c
    if len(unit_rows) == fit.n_samples:
        return rows
    return np.bincount(inverse, weights=np.nan_to_num(rows, nan=0.0), minlength=len(unit_rows))


def _crosses(value, threshold, direction):
    return bool(direction * (value - threshold) > 0)


class _Search:
    """Shared state of one audit: problem, target, units, threshold, refit counter."""

    def __init__(self, problem, target, unit_labels, unit_rows, inverse, threshold, direction, max_units):
        self.problem, self.target = problem, target
        self.labels, self.unit_rows, self.inverse = unit_labels, unit_rows, inverse
        self.threshold, self.direction, self.max_units = threshold, direction, max_units
        self.n_refits = 0
        self.usable = np.array([problem.sample_weight[r].sum() > 0 for r in unit_rows])

    def rows_of(self, units):
        units = list(units)
        return np.sort(np.concatenate([self.unit_rows[u] for u in units])) if units else np.array([], np.intp)

    def valid(self, units):
        try:
            est_._one_set(self.problem, self.rows_of(units))
        except ValueError:
            return False
        return True

    def refit_values(self, unit_sets):
        """Exact refits (lockstep, warm-started at theta^) and the target at each."""
        sets = [self.rows_of(u) for u in unit_sets]
        self.n_refits += len(sets)
        dthetas = np.full((len(sets), self.problem.n_params), np.nan)
        try:
            refits = list(est_._run_refits(self.problem, sets, self.problem.tol, self.problem.max_iter,
                                           None, False))
        except ValueError:     # a set leaves a singular objective: refit one by one
            refits = []
            for rows in sets:
                try:
                    refits.append(est_._retrain(self.problem, rows, self.problem.tol, self.problem.max_iter))
                except ValueError:
                    refits.append((None, None))
        for k, (dtheta, result) in enumerate(refits):
            if result is not None and result.converged:   # NaN (never a flip) without a finite optimum
                dthetas[k] = dtheta
        thetas = self.problem.theta + dthetas
        values = [np.nan if np.isnan(th).any() else
                  self.target.value(self.problem, th, _weights_without(self.problem, rows))
                  for th, rows in zip(thetas, sets)]
        return np.array(values), thetas

    def crosses(self, value):
        return _crosses(value, self.threshold, self.direction)


def _one_shot(search, method):
    problem = search.problem
    changes = unit_changes(problem, search.target.direction(problem), search.unit_rows, search.inverse, method)
    score = search.direction * np.nan_to_num(changes, nan=-np.inf)
    score[~search.usable] = -np.inf
    order = np.argsort(-score, kind="stable")
    order = order[score[order] > 0][: search.max_units]
    value = search.target.value(problem, problem.theta, problem.sample_weight, problem.hessian)
    cumulative = value + np.cumsum(changes[order])
    hit = np.flatnonzero(search.direction * (cumulative - search.threshold) > 0)
    if hit.size == 0:
        return None, np.nan
    k = hit[0] + 1
    units = list(order[:k])
    while not search.valid(units) and k < order.size:   # a set that would empty a class: extend
        k += 1
        units = list(order[:k])
    return units, float(cumulative[k - 1])


def _greedy(search, rank, per_step):
    problem = search.problem
    fit = problem
    removed = []
    value = search.target.value(problem, problem.theta, problem.sample_weight, problem.hessian)
    scores_at_pick = {}
    predicted = np.nan
    step = per_step
    while True:
        changes = unit_changes(fit, search.target.direction(fit), search.unit_rows, search.inverse, rank)
        score = search.direction * np.nan_to_num(changes, nan=-np.inf)
        score[~search.usable] = -np.inf
        score[removed] = -np.inf
        order = np.argsort(-score, kind="stable")
        picked = []
        for u in order:
            if len(picked) == step or score[u] <= 0 or len(removed) + len(picked) >= search.max_units:
                break
            if search.valid(removed + picked + [u]):
                picked.append(int(u))
        if not picked:
            return None, np.nan
        weights = _weights_without(problem, search.rows_of(removed + picked))
        search.n_refits += 1
        try:
            new_fit = _fit_at(problem, weights, fit.theta)
        except ValueError:
            # removing these units leaves a singular objective or no finite optimum (e.g. a group
            # holding every row with a nonzero feature): never pick that unit; one unit per step
            if len(picked) == 1:
                search.usable[picked[0]] = False
            step = 1
            continue
        step = per_step
        predicted = value + float(np.sum(changes[picked]))
        for u in picked:
            scores_at_pick[u] = score[u]
        removed += picked
        fit = new_fit
        value = search.target.value(problem, fit.theta, weights, fit.hessian)
        if search.crosses(value):
            break
    return _prune(search, removed, scores_at_pick), predicted


def _prune(search, removed, scores_at_pick):
    """Put members back while the flip still verifies without removing them.

    One lockstep batch refits the set with each member put back alone; only the
    members whose return keeps the flip are candidates, tried all at once and,
    if that breaks the flip, one by one (least useful first).
    """
    if len(removed) < 2:
        return removed
    trials = [[v for v in removed if v != u] for u in removed]
    ok = [k for k, t in enumerate(trials) if search.valid(t)]
    if not ok:
        return removed
    values, _ = search.refit_values([trials[k] for k in ok])
    candidates = [removed[k] for k, v in zip(ok, values) if search.crosses(v)]
    if not candidates:
        return removed
    kept = [v for v in removed if v not in candidates]
    if len(candidates) > 1 and kept and search.valid(kept):
        values, _ = search.refit_values([kept])
        if search.crosses(values[0]):
            return kept
    kept = list(removed)
    for u in sorted(candidates, key=lambda v: scores_at_pick[v]):
        trial = [v for v in kept if v != u]
        if not search.valid(trial):
            continue
        values, _ = search.refit_values([trial])
        if search.crosses(values[0]):
            kept = trial
    return kept


def _prepare(problem, target, goal, threshold, groups, se, alpha, feature_names):
    """Validate the audit's arguments: (target, goal, threshold, direction, value, units)."""
    if threshold is not None:
        if goal not in ("sign", "threshold"):
            raise ValueError("give either goal='significance' or a threshold, not both")
        goal = "threshold"
        if not np.isfinite(threshold):
            raise ValueError(f"threshold must be finite, got {threshold!r}")
    if goal not in GOALS:
        raise ValueError(f"goal must be one of {GOALS}, got {goal!r}")
    if goal == "threshold" and threshold is None:
        raise ValueError("goal='threshold' needs threshold=")
    if not (isinstance(alpha, (int, float)) and 0 < alpha < 1):
        raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}")
    if goal == "significance" and isinstance(target, tuple) and len(target) == 2 and target[0] == "coef":
        target = ("z", target[1])
    tgt = make_target(problem, target, se, feature_names)
    if goal == "significance" and not tgt.is_z:
        raise ValueError("goal='significance' needs a ('coef', j) or ('z', j) target")
    units = make_units(problem, groups)
    value = tgt.value(problem, problem.theta, problem.sample_weight, problem.hessian)
    if goal == "sign":
        threshold = 0.0
    elif goal == "significance":
        critical = float(norm.ppf(1 - alpha / 2))
        if abs(value) <= critical:
            raise ValueError(f"{tgt.name} = {value:.3g} is not significant at alpha={alpha} "
                             f"(|z| <= {critical:.3f}); nothing to lose")
        threshold = float(np.sign(value) * critical)
    threshold = float(threshold)
    if value == threshold:
        raise ValueError(f"{tgt.name} equals the threshold {threshold}; no side to cross from")
    return tgt, goal, threshold, float(np.sign(threshold - value)), value, units


def robustness(problem, target, *, goal="sign", threshold=None, method="greedy", groups=None,
               se="model", alpha=0.05, max_fraction=0.1, per_step=1, rank=None, feature_names=None):
    """The smallest removal set that flips ``target`` (see the module docstring).

    Parameters
    ----------
    problem : GLMProblem
    target : tuple
        ``("coef", j)``, ``("z", j)``, ``("combination", c)`` or ``("decision", x)``;
        j an int or a feature name.
    goal : {"sign", "significance", "threshold"}, default "sign"
        "sign": cross zero; "significance": the z-statistic of the coefficient
        (a "coef" target is read as its "z") falls below the two-sided
        critical value z_{1 - alpha/2} in absolute value; "threshold": cross
        ``threshold`` (giving ``threshold`` implies this goal).
    threshold : float, optional
    method : {"greedy", "if", "rif"}, default "greedy"
    groups : array-like of shape (n,), optional
        A label per row; whole groups are removed.
    se : {"model", "hc0"}, default "model"
        Standard error of a z-statistic target.
    alpha : float, default 0.05
    max_fraction : float, default 0.1
        Largest fraction of the units a proposed set may contain.
    per_step : int, default 1
        Units removed per greedy step before the refit.
    rank : {"rif", "newton", "if"}, optional
        Greedy ranking at each refit; default "rif" for rows, "newton" for groups.
    feature_names : sequence of str, optional
        Names for coefficient targets given by name.

    Returns
    -------
    RobustnessResult
    """
    if method not in ROBUSTNESS_METHODS:
        raise ValueError(f"method must be one of {ROBUSTNESS_METHODS}, got {method!r}")
    if not (isinstance(max_fraction, (int, float)) and 0 < max_fraction <= 1):
        raise ValueError(f"max_fraction must lie in (0, 1], got {max_fraction!r}")
    if isinstance(per_step, bool) or not isinstance(per_step, (int, np.integer)) or per_step < 1:
        raise ValueError(f"per_step must be a positive int, got {per_step!r}")
    if rank is None:
        rank = "rif" if groups is None else "newton"
    if rank not in ("if", "rif", "newton"):
        raise ValueError(f"rank must be 'if', 'rif' or 'newton', got {rank!r}")
    tgt, goal, threshold, direction, value, (labels, unit_rows, inverse) = _prepare(
        problem, target, goal, threshold, groups, se, alpha, feature_names)
    max_units = max(1, int(np.floor(max_fraction * len(unit_rows))))
    search = _Search(problem, tgt, labels, unit_rows, inverse, threshold, direction, max_units)
    kind = "rows" if groups is None else "groups"

    # small solves on one BLAS thread: idle BLAS threads only compete with rif's pass threads
    with _factor_threads(problem.n_params):
        if method == "greedy":
            units, predicted = _greedy(search, rank, int(per_step))
        else:
            units, predicted = _one_shot(search, method)
        if units is not None:
            values, thetas = search.refit_values([units])     # the reported value: one fresh exact refit
    if units is None:
        return RobustnessResult(np.array([], np.intp), labels[:0], False, False, 0, len(unit_rows), 0.0,
                                tgt.name, method, goal, value, threshold, predicted, np.nan,
                                search.n_refits, kind)
    units = sorted(units)
    return RobustnessResult(search.rows_of(units), labels[units], True, search.crosses(values[0]),
                            len(units), len(unit_rows), len(units) / len(unit_rows), tgt.name, method,
                            goal, value, threshold, predicted, float(values[0]), search.n_refits, kind,
                            thetas[0])


def brute_force(problem, target, *, goal="sign", threshold=None, groups=None, se="model", alpha=0.05,
                max_size=3, feature_names=None):
    """The exact minimal flipping set, by enumerating every unit set of up to ``max_size`` units.

    For validation on small problems: sum_{k <= max_size} C(n_units, k) exact refits.

    Returns
    -------
    (size, units) : (int or None, list)
        The smallest flipping size and the first set of that size (None, [] if none up to max_size).
    """
    tgt, goal, threshold, direction, _, (labels, unit_rows, inverse) = _prepare(
        problem, target, goal, threshold, groups, se, alpha, feature_names)
    search = _Search(problem, tgt, labels, unit_rows, inverse, threshold, direction, len(unit_rows))
    for k in range(1, max_size + 1):
        candidates = [list(c) for c in combinations(range(len(unit_rows)), k) if search.valid(list(c))]
        if not candidates:
            continue
        values, _ = search.refit_values(candidates)
        hits = np.flatnonzero(direction * (values - threshold) > 0)
        if hits.size:
            return k, candidates[hits[0]]
    return None, []
