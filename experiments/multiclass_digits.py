"""IF vs RIF vs retrain for a 10-class softmax head on network embeddings of the digits.

A small network (64 -> 32 tanh -> 10) is trained on scikit-learn's bundled digits; its
32-dimensional hidden layer, taken by ``rif.deep.embed``, feeds a multinomial
``LogisticRegression`` head audited by ``rif.InfluenceAuditor``. For random removal sets
of several sizes, the change of the summed test loss is estimated by IF, RIF and the
Newton step and measured by the exact refit. Without torch, the embedding is a PCA of the
pixels instead (``--embedding pca``).

    python experiments/multiclass_digits.py --quick
    python experiments/multiclass_digits.py

writes experiments/output/multiclass_digits.csv (one row per removal set),
multiclass_digits_summary.csv (Pearson r, OLS slope, median relative error per set size
and estimator) and multiclass_digits.png.
"""

import argparse
import pathlib

import numpy as np
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

import rif

ESTIMATORS = ("if", "rif", "newton")


def mlp_embeddings(X_train, y_train, X_test, seed, epochs):
    """A 64-32-10 tanh network trained by full-batch Adam; its hidden layer as features."""
    import torch
    from torch import nn

    import rif.deep

    torch.manual_seed(seed)
    model = nn.Sequential()
    model.add_module("encoder", nn.Sequential(nn.Linear(64, 32), nn.Tanh()))
    model.add_module("head", nn.Linear(32, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    Xt = torch.as_tensor(X_train, dtype=torch.float32)
    yt = torch.as_tensor(y_train, dtype=torch.long)
    for _ in range(epochs):
        opt.zero_grad()
        nn.functional.cross_entropy(model(Xt), yt).backward()
        opt.step()
    return (rif.deep.embed(model, X_train, layer="encoder"), rif.deep.embed(model, X_test, layer="encoder"))


def pca_embeddings(X_train, X_test, seed):
    pca = PCA(n_components=32, random_state=seed).fit(X_train)
    return pca.transform(X_train), pca.transform(X_test)


def summary(actual, estimate):
    """Pearson r, OLS slope of estimate on actual, median relative error."""
    r = float(np.corrcoef(actual, estimate)[0, 1])
    slope = float(np.polyfit(actual, estimate, 1)[0])
    rel = float(np.median(np.abs(estimate - actual) / np.maximum(np.abs(actual), 1e-12)))
    return r, slope, rel


def run(args):
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=args.seed, stratify=y)
    if args.quick:
        X_train, y_train = X_train[:400], y_train[:400]
    embedding = args.embedding
    if embedding == "mlp":
        try:
            phi_train, phi_test = mlp_embeddings(X_train, y_train, X_test, args.seed, 100 if args.quick else 300)
        except ImportError:
            print("torch is not installed: using a PCA embedding (--embedding pca)")
            embedding = "pca"
    if embedding == "pca":
        phi_train, phi_test = pca_embeddings(X_train, X_test, args.seed)
    scale = phi_train.std(axis=0) + 1e-12
    phi_train, phi_test = phi_train / scale, phi_test / scale
    aud = rif.InfluenceAuditor(LogisticRegression(C=args.C, max_iter=5000)).fit(phi_train, y_train)
    n = len(y_train)
    rng = np.random.default_rng(args.seed)
    fractions = (0.01, 0.05) if args.quick else (0.01, 0.05, 0.10)
    n_sets = 10 if args.quick else 40
    rows = []
    for fraction in fractions:
        k = max(1, int(round(fraction * n)))
        sets = [np.sort(rng.choice(n, size=k, replace=False)) for _ in range(n_sets)]
        sets = [s for s in sets if np.all(np.bincount(np.delete(y_train, s), minlength=10) > 0)]
        exact = aud.params_change(sets, "retrain")
        actual = aud.effect(sets, "loss", phi_test, y_test, dtheta=exact)
        estimates = {m: aud.effect(sets, "loss", phi_test, y_test, method=m) for m in ESTIMATORS}
        for j, s in enumerate(sets):
            rows.append({"fraction": fraction, "k": k, "set": j, "actual": actual[j],
                         **{m: estimates[m][j] for m in ESTIMATORS}})
    return rows, embedding, aud


def write(rows, embedding, out):
    import csv

    out.mkdir(parents=True, exist_ok=True)
    with open(out / "multiclass_digits.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    stats = []
    for fraction in sorted({r["fraction"] for r in rows}):
        part = [r for r in rows if r["fraction"] == fraction]
        actual = np.array([r["actual"] for r in part])
        for m in ESTIMATORS:
            r, slope, rel = summary(actual, np.array([p[m] for p in part]))
            stats.append({"embedding": embedding, "fraction": fraction, "estimator": m, "pearson": r,
                          "slope": slope, "median_rel_error": rel})
    with open(out / "multiclass_digits_summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(stats[0]))
        writer.writeheader()
        writer.writerows(stats)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fractions = sorted({r["fraction"] for r in rows})
    fig, axes = plt.subplots(1, len(fractions), figsize=(4 * len(fractions), 3.6), squeeze=False)
    for ax, fraction in zip(axes[0], fractions):
        part = [r for r in rows if r["fraction"] == fraction]
        actual = np.array([r["actual"] for r in part])
        for m, marker in zip(ESTIMATORS, "o^s"):
            ax.scatter(actual, [p[m] for p in part], s=14, marker=marker, label=m.upper(), alpha=0.7)
        lim = [min(actual.min(), 0), max(actual.max(), 0)]
        ax.plot(lim, lim, "k--", lw=0.8)
        ax.set_title(f"remove {fraction:.0%}")
        ax.set_xlabel("actual change of test loss (refit)")
        ax.set_ylabel("estimated change")
    axes[0][0].legend()
    fig.suptitle(f"10-class digits, softmax head on {embedding} embeddings")
    fig.tight_layout()
    fig.savefig(out / "multiclass_digits.png", dpi=70)
    plt.close(fig)
    return stats


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="400 training digits, 2 set sizes, 10 sets each")
    parser.add_argument("--embedding", choices=("mlp", "pca"), default="mlp")
    parser.add_argument("--C", type=float, default=1.0, help="the head's inverse L2 strength")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path(__file__).parent / "output")
    args = parser.parse_args(argv)
    rows, embedding, _ = run(args)
    stats = write(rows, embedding, args.out)
    for s in stats:
        print(f"{s['fraction']:.0%} {s['estimator']:>6}: pearson {s['pearson']:.3f}, slope {s['slope']:.3f}, "
              f"median rel. error {s['median_rel_error']:.3f}")
    return stats


if __name__ == "__main__":
    main()
