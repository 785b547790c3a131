"""Review a network's training data: helpful/harmful images for a test digit, and mislabel detection.

1. An MLP trained on sklearn's digits; for a few test digits, the training
   images whose removal would most increase (helpful) and most decrease
   (harmful) the test loss according to network RIF with the exact damped
   GNH, drawn as a PNG grid.
2. 10% of the training labels flipped; the network retrained on the noisy
   labels; training samples ranked by self-influence (RIF and IF, EK-FAC RIF
   too) and, as baselines, by training loss and at random. The curve of the
   fraction of flipped labels found against the fraction of data inspected.

    python experiments/deep_review.py --quick

writes experiments/output/deep_review_{proponents.csv,proponents.png,mislabel.csv,mislabel.png}.
"""

import time

import numpy as np
import torch

import deep_common as dc
from rif.deep import TorchInfluence


def proponents(args, out):
    n_train = 500 if args.quick else None
    X, y, Xt, yt, _ = dc.digits(n_train, 200, seed=args.seed)
    model, _ = dc.train(dc.mlp(seed=args.seed), X, y)
    print(f"[proponents] MLP on {len(y)} digits, test accuracy {dc.accuracy(model, Xt, yt):.3f}")
    ti = TorchInfluence(model, "cross_entropy", (X, y), damping=0.1, dtype=torch.float64,
                        device=args.device).fit()
    n_show = 2 if args.quick else 4
    # the test digits the model finds hardest are the most instructive
    with torch.no_grad():
        test_loss = torch.nn.functional.cross_entropy(model(Xt), yt, reduction="none").numpy()
    chosen = np.argsort(-test_loss)[:n_show]
    start = time.perf_counter()
    S = ti.scores(Xt[chosen], yt[chosen], method="rif")
    print(f"[proponents] RIF scores {S.shape} in {time.perf_counter() - start:.1f}s")
    rows, k = [], 6
    for col, j in enumerate(chosen):
        order = np.argsort(S[:, col])
        for kind, idx in (("helpful", order[::-1][:k]), ("harmful", order[:k])):
            for rank, i in enumerate(idx):
                rows.append(dict(test_index=int(j), test_label=int(yt[j]), kind=kind, rank=rank,
                                 train_index=int(i), train_label=int(y[i]), score=float(S[i, col])))
    dc.write_csv(out / "deep_review_proponents.csv", rows)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2 * n_show, k + 1, figsize=(1.4 * (k + 1), 1.6 * 2 * n_show))
    for col, j in enumerate(chosen):
        pred = int(model(Xt[j:j + 1]).argmax())
        for half, kind in enumerate(("helpful", "harmful")):
            r = 2 * col + half
            ax = axes[r, 0]
            ax.imshow(Xt[j].reshape(8, 8), cmap="gray_r")
            ax.set_title(f"test y={int(yt[j])} pred={pred}" if half == 0 else kind, fontsize=7)
            ax.set_xticks([]), ax.set_yticks([])
            picks = [row for row in rows if row["test_index"] == int(j) and row["kind"] == kind]
            for c, row in enumerate(picks):
                ax = axes[r, c + 1]
                ax.imshow(X[row["train_index"]].reshape(8, 8), cmap="Greens" if kind == "helpful" else "Reds")
                ax.set_title(f"y={row['train_label']} {row['score']:+.2g}", fontsize=7)
                ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle("RIF: training digits whose removal most raises (helpful) / lowers (harmful) the test loss",
                 fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "deep_review_proponents.png", dpi=110)
    plt.close(fig)


def mislabels(args, out):
    n_train = 500 if args.quick else None
    X, y, Xt, yt, flipped = dc.digits(n_train, None, seed=args.seed, flip=0.1)
    model, _ = dc.train(dc.mlp(seed=args.seed), X, y)
    print(f"[mislabel] {flipped.sum()} of {len(y)} labels flipped; test accuracy "
          f"{dc.accuracy(model, Xt, yt):.3f}")
    rankings = {}
    with torch.no_grad():
        rankings["train loss"] = torch.nn.functional.cross_entropy(model(X), y, reduction="none").numpy()
    rankings["random"] = np.random.default_rng(args.seed).random(len(y))
    timing = {}
    for solver in ("exact", "ekfac"):
        start = time.perf_counter()
        ti = TorchInfluence(model, "cross_entropy", (X, y), solver=solver, damping=0.1,
                            dtype=torch.float64, device=args.device).fit()
        rankings[f"self-influence RIF ({solver})"] = ti.self_influence("rif")
        rankings[f"self-influence IF ({solver})"] = ti.self_influence("if", linear=True)
        timing[solver] = time.perf_counter() - start
    fractions = np.linspace(0, 1, 101)
    rows = []
    curves = {}
    for name, score in rankings.items():
        order = np.argsort(-score)
        found = np.cumsum(flipped[order]) / flipped.sum()
        curve = np.array([found[max(int(round(f * len(y))) - 1, 0)] if f > 0 else 0.0 for f in fractions])
        curves[name] = curve
        for f, c in zip(fractions, curve):
            rows.append(dict(ranking=name, fraction_inspected=float(f), fraction_found=float(c)))
        print(f"[mislabel] {name:28s} found at 10%: {curve[10]:.3f}  at 20%: {curve[20]:.3f}  "
              f"area: {np.trapezoid(curve, fractions):.3f}")
    print("[mislabel] self-influence times: " + ", ".join(f"{k} {v:.1f}s" for k, v in timing.items()))
    dc.write_csv(out / "deep_review_mislabel.csv", rows)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    for name, curve in curves.items():
        ax.plot(fractions, curve, label=name, ls=":" if name == "random" else "-")
    ax.set(xlabel="fraction of training data inspected", ylabel="fraction of flipped labels found",
           title="Mislabel detection on an MLP (10% flipped)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "deep_review_mislabel.png", dpi=110)
    plt.close(fig)


def main(argv=None):
    args = dc.parser(__doc__.splitlines()[0]).parse_args(argv)
    torch.set_num_threads(args.threads)
    out = dc.output_dir()
    proponents(args, out)
    mislabels(args, out)
    print(f"wrote {out}/deep_review_*.csv and .png")


if __name__ == "__main__":
    main()
