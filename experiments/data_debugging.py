"""Data debugging with exact GLM attribution: find flipped labels, repair them, unlearn rows.

Three measurements on L2 logistic regressions (C = 1, standardised features),
each against the exact refit:

1. Mislabel detection. 10 % of the training labels are flipped. Training rows
   are inspected in the order of a score: self-influence by IF
   (g_i^T H^{-1} g_i-based, ``self_influence(method="if")``), by RIF (the same
   rescaled by 1/(1 - h_i)), the training loss, or at random. The curve is the
   fraction of flipped labels found against the fraction inspected (0-50 %);
   its area (normalised so that a perfect ranking scores 1 over [0, 0.5])
   summarises it. Data: digits as binary pairs (3 vs 8, 1 vs 7, 4 vs 9),
   breast cancer, synthetic high-dimensional data (n = 400, d = 100).
2. Label repair. On breast cancer with flipped labels, the top k suspects by
   RIF are relabelled (their labels flipped back where they were wrong, i.e.
   set to the opposite of the observed label); ``aud.repair(..., "newton")``
   (one Newton step) is compared with ``"retrain"`` (the exact refit): relative
   parameter error and test accuracy, beside retraining on the true labels.
3. Unlearning. 1-10 % of the training rows are removed at random; ``aud.unlearn``
   by IF, RIF and Newton step against the exact retrain: relative parameter
   distance and test accuracy.

    python experiments/data_debugging.py [--quick]

writes experiments/output/mislabel.csv, repair.csv, unlearn.csv and data_debugging.png.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import audit_common as ac  # noqa: E402

import rif  # noqa: E402

GRID = np.linspace(0, 0.5, 51)


def _split(X, y, seed):
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, random_state=seed, stratify=y)
    scaler = StandardScaler().fit(Xtr)
    return scaler.transform(Xtr), scaler.transform(Xte), np.asarray(ytr), np.asarray(yte)


def datasets(quick, seed):
    from sklearn.datasets import load_breast_cancer, load_digits

    out = {}
    X, y = load_breast_cancer(return_X_y=True)
    out["breast_cancer"] = _split(X, y, seed)
    Xd, yd = load_digits(return_X_y=True)
    for a, b in ((3, 8),) if quick else ((3, 8), (1, 7), (4, 9)):
        keep = np.isin(yd, (a, b))
        Xab = Xd[keep][:, Xd[keep].std(axis=0) > 0]
        out[f"digits_{a}v{b}"] = _split(Xab, (yd[keep] == b).astype(int), seed)
    rng = np.random.default_rng(seed)
    n, d = (300, 60) if quick else (400, 100)
    Xs = rng.normal(size=(int(n / 0.7), d))
    ys = (rng.random(len(Xs)) < 1 / (1 + np.exp(-Xs @ rng.normal(scale=0.3, size=d)))).astype(int)
    out["synthetic_hd"] = _split(Xs, ys, seed)
    return out


def flip_labels(y, fraction, rng):
    flipped = np.zeros(len(y), bool)
    flipped[rng.choice(len(y), size=int(round(fraction * len(y))), replace=False)] = True
    return np.where(flipped, 1 - y, y), flipped


def detection_curve(order, flipped):
    found = np.cumsum(flipped[order]) / flipped.sum()
    inspected = np.arange(1, len(order) + 1) / len(order)
    curve = np.interp(GRID, np.r_[0, inspected], np.r_[0, found])
    best = np.minimum(GRID * len(order) / flipped.sum(), 1.0)
    return curve, float(np.trapezoid(curve, GRID) / np.trapezoid(best, GRID))


def run_mislabel(data, seed, repeats):
    from sklearn.linear_model import LogisticRegression

    rows, curves = [], {}
    for name, (Xtr, Xte, ytr, yte) in data.items():
        for rep in range(repeats):
            rng = np.random.default_rng(seed + rep)
            noisy, flipped = flip_labels(ytr, 0.10, rng)
            aud = rif.InfluenceAuditor(LogisticRegression(C=1.0, max_iter=10_000)).fit(Xtr, noisy)
            scores = {"rif": aud.self_influence(method="rif"), "if": aud.self_influence(method="if"),
                      "train_loss": aud.problem_.loss, "random": rng.random(len(noisy))}
            for score_name, score in scores.items():
                curve, area = detection_curve(np.argsort(-score, kind="stable"), flipped)
                curves.setdefault((name, score_name), []).append(curve)
                rows.append({"dataset": name, "n": len(noisy), "d": Xtr.shape[1], "repeat": rep,
                             "score": score_name, "auc": area,
                             "found_at_10pct": float(np.interp(0.10, GRID, curve)),
                             "found_at_20pct": float(np.interp(0.20, GRID, curve))})
    return pd.DataFrame(rows), {k: np.mean(v, axis=0) for k, v in curves.items()}


def run_repair(data, seed, ks):
    from sklearn.linear_model import LogisticRegression

    Xtr, Xte, ytr, yte = data["breast_cancer"]
    rng = np.random.default_rng(seed)
    noisy, flipped = flip_labels(ytr, 0.10, rng)
    aud = rif.InfluenceAuditor(LogisticRegression(C=1.0, max_iter=10_000)).fit(Xtr, noisy)
    clean = rif.InfluenceAuditor(LogisticRegression(C=1.0, max_iter=10_000)).fit(Xtr, ytr)
    suspects = aud.suspect_labels(method="rif")
    rows = []
    theta = aud.problem_.theta
    for k in ks:
        top = suspects[:k]
        new = 1 - noisy[top]
        times = {}
        est = {}
        for method in ("newton", "retrain"):
            start = time.perf_counter()
            est[method] = aud.repair(top, new, method=method)
            times[method] = time.perf_counter() - start
        th = {m: np.r_[e.coef_.ravel(), e.intercept_] for m, e in est.items()}
        rows.append({"k": k, "wrong_among_repaired": int(flipped[top].sum()),
                     "newton_rel_param_error": float(np.linalg.norm(th["newton"] - th["retrain"])
                                                     / np.linalg.norm(th["retrain"] - theta)),
                     "acc_noisy": aud.score(Xte, yte), "acc_newton": est["newton"].score(Xte, yte),
                     "acc_retrain": est["retrain"].score(Xte, yte), "acc_true_labels": clean.score(Xte, yte),
                     "seconds_newton": times["newton"], "seconds_retrain": times["retrain"]})
    return pd.DataFrame(rows)


def run_unlearn(data, seed, fractions):
    from sklearn.linear_model import LogisticRegression

    rows = []
    for name in ("breast_cancer", "synthetic_hd"):
        Xtr, Xte, ytr, yte = data[name]
        aud = rif.InfluenceAuditor(LogisticRegression(C=1.0, max_iter=10_000)).fit(Xtr, ytr)
        theta = aud.problem_.theta
        rng = np.random.default_rng(seed)
        for frac in fractions:
            remove = rng.choice(len(ytr), size=max(1, int(round(frac * len(ytr)))), replace=False)
            models = {m: aud.unlearn(remove, method=m) for m in ("if", "rif", "newton", "retrain")}
            th = {m: np.r_[e.coef_.ravel(), e.intercept_] for m, e in models.items()}
            for m in ("if", "rif", "newton", "retrain"):
                rows.append({"dataset": name, "fraction": frac, "k": len(remove), "method": m,
                             "rel_param_distance": float(np.linalg.norm(th[m] - th["retrain"])
                                                         / np.linalg.norm(th["retrain"] - theta)),
                             "test_accuracy": models[m].score(Xte, yte)})
    return pd.DataFrame(rows)


def plot(curves, repair, unlearn, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted({k[0] for k in curves})
    fig, axes = plt.subplots(1, len(names) + 2, figsize=(3.2 * (len(names) + 2), 3.2))
    for ax, name in zip(axes, names):
        for score in ("rif", "if", "train_loss", "random"):
            ax.plot(GRID, curves[(name, score)], label=score)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("fraction inspected")
    axes[0].set_ylabel("fraction of flipped labels found")
    axes[0].legend(fontsize=7)
    ax = axes[len(names)]
    ax.plot(repair.k, repair.newton_rel_param_error, "o-")
    ax.set_xlabel("labels repaired (top RIF suspects)")
    ax.set_title("Newton-step repair: rel. error vs refit", fontsize=9)
    ax = axes[len(names) + 1]
    for m in ("if", "rif", "newton"):
        part = unlearn[(unlearn.method == m) & (unlearn.dataset == "breast_cancer")]
        ax.plot(part.fraction, part.rel_param_distance, "o-", label=m)
    ax.set_xlabel("fraction removed (breast cancer)")
    ax.set_title("unlearning: rel. distance to retrain", fontsize=9)
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer data sets, repeats and sizes")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    out = ac.output_dir()
    start = time.perf_counter()
    data = datasets(args.quick, args.seed)
    mislabel, curves = run_mislabel(data, args.seed, 2 if args.quick else 5)
    repair = run_repair(data, args.seed, (1, 5, 20) if args.quick else (1, 2, 5, 10, 20, 30, 40))
    unlearn = run_unlearn(data, args.seed, (0.01, 0.05, 0.10) if args.quick else (0.01, 0.02, 0.05, 0.10))
    mislabel.to_csv(out / "mislabel.csv", index=False)
    repair.to_csv(out / "repair.csv", index=False)
    unlearn.to_csv(out / "unlearn.csv", index=False)
    plot(curves, repair, unlearn, out / "data_debugging.png")
    table = mislabel.groupby(["dataset", "score"]).auc.mean().unstack()
    print("area under the detection curve (0-50 % inspected; 1 = perfect):")
    print(table.round(3).to_string())
    print("RIF - IF area:", (table["rif"] - table["if"]).round(4).to_dict())
    print(repair.round(4).to_string(index=False))
    print(unlearn.pivot_table(index=["dataset", "fraction"], columns="method",
                              values="rel_param_distance").round(4).to_string())
    print(f"wrote {out}/mislabel.csv, repair.csv, unlearn.csv, data_debugging.png "
          f"({time.perf_counter() - start:.0f} s)")
    return mislabel, repair, unlearn


if __name__ == "__main__":
    main()
