"""When does network RIF beat IF? Both against warm-started proximal leave-k-out retraining.

A small MLP is trained on sklearn's digits with weight decay to a stationary
point (Adam, then L-BFGS) of sum_i l_i + (mu/2)||theta||^2. For damping lambda = d * tr(G)/p
and removal sets S of size k (random, or the k training samples with the
largest generalised leverage), the ground truth is theta_{-S} - theta_0 from
proximal refits (rif.deep's ``method="retrain"``: L-BFGS + Newton-CG on
sum_{i not in S} l_i + (mu/2)||theta||^2 + (lambda/2)||theta - theta^||^2, the same lambda as the
damping), and the estimates (with curvature GNH + (mu + lambda) I) are IF, RIF (sum of leave-one-out Newton steps
via the K x K Woodbury identity) and the leave-S-out Newton step, all with
the exact damped GNH. Reported per (d, k, selection): the mean relative
parameter error ||dtheta_est - dtheta|| / ||dtheta|| and the mean relative
error of the change of the summed test loss.

    python experiments/deep_rif_vs_if.py --quick

writes experiments/output/deep_rif_vs_if.csv and deep_rif_vs_if.png.
"""

import time

import numpy as np
import torch

import deep_common as dc
from rif.deep import TorchInfluence

METHODS = ("if", "rif", "newton")


def main(argv=None):
    p = dc.parser(__doc__.splitlines()[0])
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    quick = args.quick
    n_train, n_test = (200, 100) if quick else (400, 200)
    dampings = [0.01, 0.1, 1.0] if quick else [0.003, 0.01, 0.03, 0.1, 0.3, 1.0]
    sizes = [1, 10, 40] if quick else [1, 5, 20, 50, 100]
    n_sets = 4 if quick else 10
    X, y, Xt, yt, _ = dc.digits(n_train, n_test, seed=args.seed)
    wd = 1e-3
    model, _ = dc.train(dc.mlp(hidden=16, seed=args.seed), X, y, weight_decay=wd, polish=500)
    mu = wd * len(y)                      # the training objective's L2 penalty in sum form
    print(f"MLP 64-16-10 on {len(y)} digits, test accuracy {dc.accuracy(model, Xt, yt):.3f}")
    rng = np.random.default_rng(args.seed)
    rows = []
    start = time.perf_counter()
    for d in dampings:
        ti = TorchInfluence(model, "cross_entropy", (X, y), damping=d, weight_decay=mu, dtype=torch.float64,
                            device=args.device, retrain_tol=1e-9).fit()
        ti.self_influence("rif")                      # sets leverage_
        by_leverage = np.argsort(-ti.leverage_)
        for k in sizes:
            for selection in ("random", "high_leverage"):
                if selection == "random":
                    sets = [rng.choice(len(y), size=k, replace=False) for _ in range(n_sets)]
                else:
                    sets = [by_leverage[:k]]
                true = ti.params_change(sets, "retrain")
                true_loss = ti.effect(sets, "loss", Xt, yt, method="retrain")
                row = dict(damping=d, k=k, selection=selection, n_sets=len(sets),
                           mean_leverage=float(np.mean([ti.leverage_[s].mean() for s in sets])))
                for m in METHODS:
                    est = ti.params_change(sets, m)
                    est_loss = ti.effect(sets, "loss", Xt, yt, method=m)
                    row[f"param_err_{m}"] = float(np.mean(np.linalg.norm(est - true, axis=1)
                                                          / np.linalg.norm(true, axis=1)))
                    row[f"loss_err_{m}"] = float(np.mean(np.abs(est_loss - true_loss) / np.abs(true_loss)))
                rows.append(row)
                print(f"d={d:<6g} k={k:<4d} {selection:13s} lev {row['mean_leverage']:.3f}  param err "
                      + "  ".join(f"{m} {row[f'param_err_{m}']:.3f}" for m in METHODS)
                      + "  | test-loss err " + "  ".join(f"{m} {row[f'loss_err_{m}']:.3f}" for m in METHODS))
    print(f"total {time.perf_counter() - start:.0f}s")
    out = dc.output_dir()
    dc.write_csv(out / "deep_rif_vs_if.csv", rows)
    plot(rows, sizes, out / "deep_rif_vs_if.png")
    wins = sum(r["param_err_rif"] < r["param_err_if"] for r in rows)
    print(f"RIF has the smaller parameter error in {wins} of {len(rows)} settings")
    print(f"wrote {out / 'deep_rif_vs_if.csv'} and {out / 'deep_rif_vs_if.png'}")


def plot(rows, sizes, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, selection in zip(axes, ("random", "high_leverage")):
        for k in sizes:
            pts = [r for r in rows if r["k"] == k and r["selection"] == selection]
            d = [r["damping"] for r in pts]
            line, = ax.loglog(d, [r["param_err_if"] for r in pts], ls="--", marker="o")
            ax.loglog(d, [r["param_err_rif"] for r in pts], ls="-", marker="s", color=line.get_color(),
                      label=f"k={k}")
        ax.set(title=f"{selection} sets: dashed IF, solid RIF", xlabel="damping / mean eigenvalue",
               ylabel="relative parameter error vs retrain")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
