"""Linear datamodeling score (LDS) of network IF and RIF on digits.

For M random subsets S_m holding out half of the training set, the actual
change of each test sample's loss is measured by warm-started proximal
retraining of the weight-decayed objective the MLP was trained to stationarity on (rif.deep's ``method="retrain"``, same lambda as the damping), and
predicted additively from per-sample scores: sum_{i in S_m} tau_ij with tau
the IF or RIF train x test score matrix (exact damped GNH). LDS_j is the
Spearman correlation over m of predicted and actual changes for test sample
j; the reported LDS is its mean over j (with the standard error).

    python experiments/deep_lds.py --quick

writes experiments/output/deep_lds.csv and deep_lds.png.
"""

import time

import numpy as np
import torch

import deep_common as dc
from rif.deep import TorchInfluence


def main(argv=None):
    p = dc.parser(__doc__.splitlines()[0])
    p.add_argument("--subsets", type=int, default=None, help="number of random 50%% subsets")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    quick = args.quick
    n_train, n_test = (200, 30) if quick else (400, 60)
    n_subsets = args.subsets or (12 if quick else 50)
    dampings = [0.1, 1.0] if quick else [0.01, 0.1, 1.0]
    X, y, Xt, yt, _ = dc.digits(n_train, n_test, seed=args.seed)
    wd = 1e-3
    model, _ = dc.train(dc.mlp(hidden=16, seed=args.seed), X, y, weight_decay=wd, polish=500)
    mu = wd * len(y)                      # the training objective's L2 penalty in sum form
    print(f"MLP 64-16-10 on {len(y)} digits, test accuracy {dc.accuracy(model, Xt, yt):.3f}; "
          f"{n_subsets} subsets of {len(y) // 2}")
    rng = np.random.default_rng(args.seed)
    subsets = [rng.choice(len(y), size=len(y) // 2, replace=False) for _ in range(n_subsets)]
    rows = []
    for d in dampings:
        start = time.perf_counter()
        ti = TorchInfluence(model, "cross_entropy", (X, y), damping=d, weight_decay=mu, dtype=torch.float64,
                            device=args.device, retrain_tol=1e-8).fit()
        taus = {"if": ti.scores(Xt, yt, method="if", linear=True),
                "if_nonlinear": ti.scores(Xt, yt, method="if"),
                "rif": ti.scores(Xt, yt, method="rif")}
        t_scores = time.perf_counter() - start
        with torch.no_grad():
            before = torch.nn.functional.cross_entropy(model(Xt), yt, reduction="none").numpy()
        actual = np.empty((n_subsets, len(yt)))
        start = time.perf_counter()
        for m, S in enumerate(subsets):
            refit = ti.unlearn(S, "retrain")
            with torch.no_grad():
                actual[m] = torch.nn.functional.cross_entropy(refit(Xt), yt, reduction="none").numpy() - before
        t_retrain = time.perf_counter() - start
        for name, tau in taus.items():
            pred = np.stack([tau[S].sum(0) for S in subsets])
            lds = np.array([dc.spearman(pred[:, j], actual[:, j]) for j in range(len(yt))])
            rows.append(dict(damping=d, method=name, lds=float(np.nanmean(lds)),
                             lds_se=float(np.nanstd(lds) / np.sqrt(np.isfinite(lds).sum())),
                             n_subsets=n_subsets, n_train=len(y), n_test=len(yt),
                             score_seconds=t_scores, retrain_seconds=t_retrain))
            print(f"d={d:<5g} {name:13s} LDS {rows[-1]['lds']:.3f} +- {rows[-1]['lds_se']:.3f}")
        print(f"   scores {t_scores:.1f}s, {n_subsets} retrains {t_retrain:.1f}s")
    out = dc.output_dir()
    dc.write_csv(out / "deep_lds.csv", rows)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.8))
    for name in ("if", "if_nonlinear", "rif"):
        pts = [r for r in rows if r["method"] == name]
        ax.errorbar([r["damping"] for r in pts], [r["lds"] for r in pts], [r["lds_se"] for r in pts],
                    marker="o", capsize=3, label=name)
    ax.set_xscale("log")
    ax.set(xlabel="damping / mean eigenvalue", ylabel="LDS (mean Spearman)", title="LDS on digits MLP")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "deep_lds.png", dpi=110)
    plt.close(fig)
    print(f"wrote {out / 'deep_lds.csv'} and {out / 'deep_lds.png'}")


if __name__ == "__main__":
    main()
