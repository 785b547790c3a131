"""The ``rif audit`` report: read a CSV, fit a GLM, audit it, and format the findings.

Everything here returns data or strings; :mod:`rif.cli` parses arguments and
prints. Input problems raise :class:`AuditInputError` with a one-line message.

The report holds, for each audited coefficient (all, or ``coef``):

* the estimate, its standard error and z-statistic (model-based or HC0);
* the smallest set of rows (or groups) found whose removal flips the sign,
  and the one that makes it lose significance at ``alpha``, each refitted
  exactly (see :mod:`rif._robustness`), with the rows' CSV line numbers;

and, for the whole fit,

* the most suspicious labels: rows ranked by rescaled self-influence, the
  increase of a row's own loss when it is left out (see :mod:`rif._repair`);
* the most influential rows by Cook's distance of the exact leave-one-out
  Newton step, D_i = dtheta_i^T H dtheta_i / (p phi) with dtheta_i the RIF
  change (for ordinary least squares this is Cook's distance exactly).

CSV line numbers count the header as line 1, so data row i (0-based) is line i + 2.
"""

import numpy as np

MODELS = ("logistic", "linear", "poisson")


class AuditInputError(ValueError):
    """A problem with the user's data or options, stated in one line."""


# -- reading the data ---------------------------------------------------------------------
def read_table(path):
    """The CSV at ``path`` as a DataFrame, or AuditInputError."""
    import pandas as pd

    try:
        frame = pd.read_csv(path)
    except FileNotFoundError:
        raise AuditInputError(f"no such file: {path}") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, IsADirectoryError) as exc:
        raise AuditInputError(f"cannot read {path} as CSV: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    if frame.shape[0] < 3 or frame.shape[1] < 2:
        raise AuditInputError(f"{path} needs a header, at least 3 rows and 2 columns; got {frame.shape[0]} "
                              f"rows and {frame.shape[1]} columns")
    return frame


def design(frame, target, features=None, categorical=(), groups=None):
    """(X DataFrame, y Series, groups array or None) from the table.

    Features are every column but the target and groups unless ``features`` is
    given; ``categorical`` columns are one-hot encoded (first level dropped).
    """
    import pandas as pd

    columns = list(frame.columns)
    named = [target] + list(features or []) + list(categorical) + ([groups] if groups else [])
    missing = [c for c in named if c not in columns]
    if missing:
        raise AuditInputError(f"column {missing[0]!r} is not in the CSV; columns: {', '.join(map(str, columns))}")
    if features:
        use = list(dict.fromkeys(list(features) + list(categorical)))
    else:
        use = [c for c in columns if c not in (target, groups)]
    if target in use or (groups and groups in use):
        raise AuditInputError("the target and the groups column cannot also be features")
    if not use:
        raise AuditInputError("no feature columns left")
    needed = use + [target] + ([groups] if groups else [])
    holes = frame[needed].isna().any()
    if holes.any():
        col = holes[holes].index[0]
        raise AuditInputError(f"column {col!r} has {int(frame[col].isna().sum())} missing value(s); "
                              "drop or impute them first")
    X = frame[use]
    text = [c for c in use if c not in categorical and not pd.api.types.is_numeric_dtype(X[c])]
    if text:
        raise AuditInputError(f"column {text[0]!r} is not numeric; pass --categorical {text[0]} to one-hot "
                              "encode it, or leave it out with --features")
    if categorical:
        X = pd.get_dummies(X, columns=list(categorical), drop_first=True, dtype=float)
    X = X.astype(float)
    return X, frame[target], (None if groups is None else frame[groups].to_numpy())


def make_estimator(model, penalty, y):
    """The scikit-learn estimator for ``model`` with L2 strength ``penalty`` (sum-form lambda)."""
    from sklearn.linear_model import LinearRegression, LogisticRegression, PoissonRegressor, Ridge

    if model not in MODELS:
        raise AuditInputError(f"unsupported model {model!r}; choose one of {', '.join(MODELS)}")
    if not (np.isfinite(penalty) and penalty >= 0):
        raise AuditInputError(f"--penalty must be a finite number >= 0, got {penalty}")
    if model == "logistic":
        if y.nunique() != 2:
            raise AuditInputError(f"a logistic model needs a target with exactly two values; "
                                  f"{y.name!r} has {y.nunique()}")
        return LogisticRegression(C=np.inf if penalty == 0 else 1.0 / penalty, max_iter=10_000)
    if not np.issubdtype(np.asarray(y).dtype, np.number):
        raise AuditInputError(f"the target {y.name!r} must be numeric for a {model} model")
    if model == "linear":
        return LinearRegression() if penalty == 0 else Ridge(alpha=penalty)
    if (np.asarray(y) < 0).any():
        raise AuditInputError(f"a poisson model needs a non-negative target; {y.name!r} has negative values")
    return PoissonRegressor(alpha=penalty / len(y), max_iter=10_000)


def _check_options(method, se, alpha, max_fraction, per_step, top):
    from ._robustness import ROBUSTNESS_METHODS, STANDARD_ERRORS

    if method not in ROBUSTNESS_METHODS:
        raise AuditInputError(f"--method must be one of {', '.join(ROBUSTNESS_METHODS)}, got {method!r}")
    if se not in STANDARD_ERRORS:
        raise AuditInputError(f"--se must be one of {', '.join(STANDARD_ERRORS)}, got {se!r}")
    if not 0 < alpha < 1:
        raise AuditInputError(f"--alpha must lie in (0, 1), got {alpha}")
    if not 0 < max_fraction <= 1:
        raise AuditInputError(f"--max-fraction must lie in (0, 1], got {max_fraction}")
    if per_step is not None and per_step < 1:
        raise AuditInputError(f"--per-step must be at least 1, got {per_step}")
    if top < 1:
        raise AuditInputError(f"--top must be at least 1, got {top}")


# -- the audit --------------------------------------------------------------------------------
def cooks_distance(problem, se_model_scale):
    """D_i = dtheta_i^T H dtheta_i / (p phi), dtheta_i the RIF leave-one-out change."""
    loo = problem.loo_params_change(method="rif")
    return np.einsum("ij,jk,ik->i", loo, problem.hessian, loo) / (problem.n_params * se_model_scale)


def _dispersion(problem):
    if problem.family.name != "gaussian":
        return 1.0
    resid = problem.y - problem.eta
    n_eff = float(problem.sample_weight.sum())
    return float(problem.sample_weight @ resid**2) / max(n_eff - problem.n_params, 1.0)


def _flip(aud, name, goal, groups, method, se, alpha, max_fraction, per_step):
    try:
        res = aud.robustness(("coef", name), goal=goal, method=method, groups=groups, se=se, alpha=alpha,
                             max_fraction=max_fraction, per_step=per_step)
    except ValueError as exc:
        if "not significant" in str(exc):
            return {"status": "not significant"}
        raise
    out = {"status": "found" if res.found else "not found", "verified": bool(res.verified),
           "n_removed": int(res.n_units), "n_units": int(res.n_units_total), "fraction": float(res.fraction),
           "value": float(res.value), "threshold": float(res.threshold),
           "refit_value": None if not res.found else float(res.refit_value),
           "predicted_value": None if not res.found else float(res.predicted_value),
           "rows": [int(i) for i in res.indices], "lines": [int(i) + 2 for i in res.indices],
           "n_refits": int(res.n_refits)}
    if groups is not None:
        out["groups"] = [g.item() if hasattr(g, "item") else g for g in res.units]
    return out


def audit_table(frame, target, model="logistic", *, features=None, categorical=(), groups=None,
                coef=None, penalty=0.0, method="greedy", se="model", alpha=0.05, max_fraction=0.1,
                per_step=None, top=10):
    """Fit ``model`` to the table and audit it; returns (report dict, auditor, X).

    See the module docstring for what the report holds. ``per_step=None``
    removes max(1, n_units // 2000) rows (groups) per greedy step.
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    from ._errors import RetrainConvergenceWarning, SeparationError
    from ._robustness import standard_error
    from .auditor import InfluenceAuditor

    if model not in MODELS:
        raise AuditInputError(f"unsupported model {model!r}; choose one of {', '.join(MODELS)}")
    _check_options(method, se, alpha, max_fraction, per_step, top)
    X, y, group_labels = design(frame, target, features, categorical, groups)
    estimator = make_estimator(model, penalty, y)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("ignore", ConvergenceWarning)   # rif polishes theta to the optimum by Newton
        warnings.simplefilter("always", RetrainConvergenceWarning)
        try:
            aud = InfluenceAuditor(estimator).fit(X, y)
        except SeparationError as error:
            raise AuditInputError(f"the {model} fit has no finite optimum (the classes may be separable): "
                                  f"{error}; add an L2 penalty with --penalty") from None
    if any(issubclass(w.category, RetrainConvergenceWarning) for w in caught):
        hint = " (the classes may be separable)" if model == "logistic" else ""
        raise AuditInputError(f"the {model} fit has no finite optimum{hint}: Newton's method does not "
                              "converge; add an L2 penalty with --penalty, or drop the separating features")
    for w in caught:                                            # anything else is the user's to see
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    prob = aud.problem_
    names = list(X.columns) + (["intercept"] if prob.fit_intercept else [])
    if coef is not None and coef not in names:
        raise AuditInputError(f"--coef {coef!r} is not a coefficient; coefficients: {', '.join(names)}")
    audited = [coef] if coef is not None else list(X.columns)
    n_units = prob.n_samples if group_labels is None else len(np.unique(group_labels))
    if per_step is None:
        per_step = max(1, n_units // 2000)
    coefficients = []
    for name in names:
        j = names.index(name)
        se_j = standard_error(prob, prob.theta, prob.sample_weight, j, se)
        entry = {"name": name, "estimate": float(prob.theta[j]), "se": se_j, "z": float(prob.theta[j] / se_j)}
        if name in audited:
            for goal in ("sign", "significance"):
                entry[goal] = _flip(aud, name, goal, group_labels, method, se, alpha, max_fraction, per_step)
        coefficients.append(entry)

    labels = np.asarray(y)
    suspects = aud.suspect_labels(min(top, prob.n_samples), method="rif")
    self_infl = aud.self_influence(method="rif")
    cook = cooks_distance(prob, _dispersion(prob))
    influential = np.argsort(-np.nan_to_num(cook, nan=-np.inf), kind="stable")[:top]
    values = X.to_numpy()
    fitted = aud.predict_proba(values)[:, 1] if model == "logistic" else aud.predict(values)
    report = {
        "data": {"n_rows": int(prob.n_samples), "target": target, "features": list(X.columns),
                 "groups": groups, "n_groups": None if groups is None else int(len(np.unique(group_labels)))},
        "model": {"kind": model, "estimator": type(estimator).__name__, "penalty": float(penalty),
                  "se": se, "alpha": alpha, "method": method, "max_fraction": max_fraction,
                  "per_step": per_step},
        "coefficients": coefficients,
        "suspicious_labels": [{"row": int(i), "line": int(i) + 2, "label": _plain(labels[i]),
                               "fitted": float(fitted[i]), "self_influence": float(self_infl[i])}
                              for i in suspects],
        "influential_rows": [{"row": int(i), "line": int(i) + 2, "cooks_distance": float(cook[i])}
                             for i in influential],
    }
    report["_cooks"] = cook
    report["_self_influence"] = self_infl
    return report, aud, X


def _plain(v):
    return v.item() if hasattr(v, "item") else v


# -- formatting ----------------------------------------------------------------------------------
def _flip_text(entry, unit, what):
    if entry["status"] == "not significant":
        return "not significant at the full fit"
    if entry["status"] == "not found":
        return f"no set found within the allowed fraction ({entry['n_refits']} refits)"
    check = "verified by refit" if entry["verified"] else "NOT verified by refit"
    return (f"{entry['n_removed']} {unit} ({entry['fraction']:.1%}): {what} {entry['value']:+.4g} -> "
            f"{entry['refit_value']:+.4g}, {check}")


def format_report(report, frame, show=10):
    """The human report as a list of lines."""
    d, m = report["data"], report["model"]
    unit = "groups" if d["groups"] else "rows"
    lines = [f"rif audit: {m['estimator']} ({m['kind']}, L2 penalty {m['penalty']:g}) of {d['target']!r} "
             f"on {d['n_rows']} rows, {len(d['features'])} features"
             + (f", {d['n_groups']} groups in {d['groups']!r}" if d["groups"] else ""),
             f"Standard errors: {m['se']}; significance at alpha = {m['alpha']}; search: {m['method']} "
             f"(every set refitted exactly), at most {m['max_fraction']:.0%} of the {unit}.", ""]
    lines.append(f"  {'coefficient':<20} {'estimate':>10} {'SE':>9} {'z':>8}")
    for c in report["coefficients"]:
        lines.append(f"  {c['name']:<20} {c['estimate']:>10.4g} {c['se']:>9.3g} {c['z']:>8.2f}")
    for c in report["coefficients"]:
        if "sign" not in c:
            continue
        lines += ["", f"{c['name']}:",
                  f"  to flip its sign:          {_flip_text(c['sign'], unit, 'estimate')}",
                  f"  to lose significance:      {_flip_text(c['significance'], unit, 'z')}"]
        for what in ("sign", "significance"):
            found = c[what]
            if found.get("status") != "found" or not found["rows"]:
                continue
            if d["groups"]:
                lines.append(f"  groups removed ({what}): {', '.join(map(str, found['groups'][:show]))}"
                             + (" ..." if len(found["groups"]) > show else ""))
            lines.append(f"  rows removed ({what}), by CSV line:")
            lines += _rows_text(frame, found["rows"][:show], first=d["target"])
            if len(found["rows"]) > show:
                lines.append(f"    ... and {len(found['rows']) - show} more")
    lines += ["", "Most suspicious labels (largest rescaled self-influence):",
              f"  {'line':>6} {'label':>10} {'fitted':>10} {'self-infl':>10}"]
    for s in report["suspicious_labels"][:show]:
        lines.append(f"  {s['line']:>6} {str(s['label']):>10} {s['fitted']:>10.4g} {s['self_influence']:>10.4g}")
    lines += ["", "Most influential rows (Cook's distance of the exact leave-one-out Newton step):"]
    lines += _rows_text(frame, [r["row"] for r in report["influential_rows"][:show]],
                        extra=[f"D={r['cooks_distance']:.3g}" for r in report["influential_rows"][:show]],
                        first=d["target"])
    return lines


def _rows_text(frame, rows, extra=None, first=None):
    out = []
    columns = ([first] if first is not None else []) + [c for c in frame.columns if c != first]
    for k, i in enumerate(rows):
        values = ", ".join(f"{col}={_short(frame.iloc[i][col])}" for col in columns[:8])
        more = " ..." if frame.shape[1] > 8 else ""
        tail = f"  [{extra[k]}]" if extra else ""
        out.append(f"    line {i + 2:>5}: {values}{more}{tail}")
    return out


def _short(v):
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def report_json(report):
    """The report without its private arrays, ready for json.dump."""
    return {k: v for k, v in report.items() if not k.startswith("_")}


def write_outputs(report, out_dir):
    """Write report.json, influence.csv and influence.png (histograms) into ``out_dir``; return paths."""
    import json
    import os

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    os.makedirs(out_dir, exist_ok=True)
    paths = {}
    paths["json"] = os.path.join(out_dir, "report.json")
    with open(paths["json"], "w") as fh:
        json.dump(report_json(report), fh, indent=2)
    cook, self_infl = report["_cooks"], report["_self_influence"]
    paths["csv"] = os.path.join(out_dir, "influence.csv")
    pd.DataFrame({"line": np.arange(cook.size) + 2, "cooks_distance": cook,
                  "self_influence": self_infl}).to_csv(paths["csv"], index=False)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, values, title in ((axes[0], cook, "Cook's distance (exact LOO Newton step)"),
                              (axes[1], self_infl, "self-influence (RIF)")):
        ax.hist(values[np.isfinite(values)], bins=40, color="tab:blue")
        ax.set_yscale("log")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("value")
    axes[0].set_ylabel("rows")
    fig.tight_layout()
    paths["png"] = os.path.join(out_dir, "influence.png")
    fig.savefig(paths["png"], dpi=100)
    plt.close(fig)
    return paths
