"""`rif demo`: leave-k-out effects on scikit-learn's breast-cancer data."""

import time

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from .auditor import InfluenceAuditor

METHODS = ("retrain", "if", "rif", "newton")
FRACTIONS = (0.01, 0.02, 0.05, 0.10)


def run_demo(seed=0, C=1.0):
    """Compute everything the demo prints; returns a dict of results."""
    X, y = load_breast_cancer(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, stratify=y, random_state=seed)
    start = time.perf_counter()
    aud = InfluenceAuditor(make_pipeline(StandardScaler(), LogisticRegression(C=C))).fit(X_tr, y_tr)
    fit_time = time.perf_counter() - start

    test_loss = aud.problem_.family.loss(aud.decision_function(X_te), y_te.astype(float))
    worst = int(np.argmax(test_loss))
    one = slice(worst, worst + 1)
    rif_scores = aud.scores(X_te[one], y_te[one], method="rif")[:, 0]
    top = np.argsort(-np.abs(rif_scores))[:10]
    points = [
        {"index": int(i), "label": int(y_tr[i]),
         **{m: float(aud.effect([i], "loss", X_te[one], y_te[one], method=m)) for m in METHODS}}
        for i in top
    ]

    # removal sets: random, and the samples whose removal most raises the total test loss
    total = aud.scores(X_te, y_te, method="rif").sum(axis=1)
    rng = np.random.default_rng(seed)
    rows = []
    start = time.perf_counter()
    for frac in FRACTIONS:
        k = max(1, int(round(frac * len(y_tr))))
        for kind, index in (("random", rng.choice(len(y_tr), size=k, replace=False)),
                            ("most influential", np.argsort(-total)[:k])):
            row = {"fraction": frac, "k": k, "set": kind}
            for m in METHODS:
                row[m] = float(aud.effect(index, "loss", X_te, y_te, method=m))
            # a proved bound on RIF's error, from passes over the data at the estimate (no refit)
            certified = aud.effect(index, "loss", X_te, y_te, method="rif", certify=True)
            row["rif_bound"] = certified.bound if certified.certified else None
            rows.append(row)
    return {"auditor": aud, "worst": worst, "worst_loss": float(test_loss[worst]),
            "worst_label": int(y_te[worst]), "points": points, "rows": rows,
            "n_train": len(y_tr), "n_test": len(y_te), "fit_time": fit_time, "C": C,
            "table_time": time.perf_counter() - start, "test_accuracy": aud.score(X_te, y_te)}


def print_demo(result, out=print):
    aud = result["auditor"]
    out(f"rif demo: L2 logistic regression (C={result['C']:g}) on scikit-learn's breast-cancer data")
    out(f"  {result['n_train']} training / {result['n_test']} test samples, 30 standardised features; "
        f"test accuracy {result['test_accuracy']:.3f}")
    out(f"  fit + Hessian + all leverages: {result['fit_time'] * 1e3:.0f} ms; "
        f"max leverage {aud.leverage_.max():.3f}, max rescale factor {aud.rescale_factor_.max():.2f}")
    out("")
    out(f"Worst-predicted test point #{result['worst']} (label {result['worst_label']}, "
        f"log-loss {result['worst_loss']:.3f}).")
    out("Its 10 most influential training points: change in its loss if the point is removed")
    out("(negative = the training point pushes this prediction wrong).")
    out(f"  {'train idx':>9} {'label':>5} {'retrain':>10} {'IF':>10} {'RIF':>10} {'Newton':>10}")
    for p in result["points"]:
        out(f"  {p['index']:>9} {p['label']:>5} {p['retrain']:>10.4f} {p['if']:>10.4f} "
            f"{p['rif']:>10.4f} {p['newton']:>10.4f}")
    out("")
    out(f"Removing sets of training samples: change in the total test log-loss ({result['n_test']} points).")
    out("'most influential' = the samples whose removal most increases the test loss (by RIF).")
    out("'RIF bound' = a proved bound on |RIF - retrain|, from passes over the data at the RIF estimate")
    out("without refitting (certify=True); 'none' where the curvature may move too far to prove one.")
    out(f"  {'removed':>7} {'k':>3} {'set':<17} {'retrain':>10} {'IF':>10} {'RIF':>10} {'Newton':>10}"
        f" {'IF err':>7} {'RIF err':>7} {'RIF bound':>10}")
    for r in result["rows"]:
        err = lambda m: abs(r[m] - r["retrain"]) / max(abs(r["retrain"]), 1e-12)  # noqa: E731
        bound = "none" if r["rif_bound"] is None else f"{r['rif_bound']:.1e}"
        out(f"  {r['fraction']:>7.0%} {r['k']:>3} {r['set']:<17} {r['retrain']:>10.4f} {r['if']:>10.4f}"
            f" {r['rif']:>10.4f} {r['newton']:>10.4f} {err('if'):>7.1%} {err('rif'):>7.1%} {bound:>10}")
    out(f"  ({result['table_time']:.2f} s for all estimates, exact refits and bounds included)")
