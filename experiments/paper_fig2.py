"""RIF paper, Figure 2: the IF-RIF gap as n/d varies and as the L2 strength varies.

Two sweeps, each against the exact refit, with the protocol of Figure 1
(objective (1/n) sum l + (lam/2)||theta||^2, test subset of 50 highest-loss + 50
random test points, sets of 0.1 % to 5 % of n: random, nearest to a random
anchor, and a random k of the top 2k by IF-predicted effect on the subset's loss):

* n/d in {1, 2, 4, 8, 16, 32}: the training set of one data set (IMDB's shape,
  d = 512) subsampled to n = ratio * d, lam = 1e-3;
* lam on a log grid from 1e-5 to 1 on one data set (ESC-50's shape).

For every set it records the relative error of each estimator: of the
parameter change, ||dtheta_est - dtheta|| / ||dtheta||, and of each metric's
effect, |pred - actual| / |actual|.

    python experiments/paper_fig2.py --quick
    python experiments/paper_fig2.py
    python experiments/paper_fig2.py --data emb.npz    # both sweeps on your embeddings

writes experiments/output/paper_fig2.csv (one row per set and metric) and paper_fig2.png.
"""

import sys
import zlib

import numpy as np

import _paper_common as pc

RATIOS = (1, 2, 4, 8, 16, 32)
STRATEGIES = ("random", "nearest", "high_pos_loss")


def sweep_point(D, lam, sweep, value, args, count):
    """Rows for one (data set, lam) point of a sweep."""
    n, d = D.X_train.shape
    problem = pc.fit(D.X_train, D.y_train, lam)
    rng = np.random.default_rng([args.seed, zlib.crc32(f"{D.name}/{lam}".encode())])
    sub = pc.test_subset(problem, D.X_test, D.y_test, rng)
    Xs, ys = D.X_test[sub], D.y_test[sub]
    ks = pc.sizes(n, count)
    sets = pc.removal_sets(problem, D.X_train, Xs, ys, ks, STRATEGIES, rng)
    flat = [s for st in STRATEGIES for s in sets[st]]
    labels = [st for st in STRATEGIES for _ in sets[st]]
    path = pc.cache_path(args, "fig2", data=D.name, src=pc.file_key(args.data[0]) if args.data else "",
                         n=n, d=d, lam=lam, seed=args.seed, ks=ks.tolist(), strategies=STRATEGIES)
    changes = pc.cached(path, lambda: pc.all_changes(problem, flat, not args.no_progress), not args.no_cache)
    eff = pc.effects(problem, flat, changes, Xs, ys)
    true = changes["retrain"]
    true_norm = np.linalg.norm(true, axis=1)
    leverage = problem.leverage
    rows = []
    for j, index in enumerate(flat):
        base = dict(sweep=sweep, value=value, dataset=D.name, n=n, d=d, lam=lam, strategy=labels[j],
                    k=len(index), d_eff_over_n=float(leverage.sum() / n))
        row = dict(base, metric="params", actual=true_norm[j])
        for m in pc.METHODS:
            row[m] = float(np.linalg.norm(changes[m][j]))
            row[f"err_{m}"] = float(np.linalg.norm(changes[m][j] - true[j]) / true_norm[j])
        rows.append(row)
        for metric in pc.METRICS:
            a = eff[metric, "retrain"][j]
            row = dict(base, metric=metric, actual=a)
            for m in pc.METHODS:
                row[m] = eff[metric, m][j]
                row[f"err_{m}"] = abs(eff[metric, m][j] - a) / abs(a) if a != 0 else np.nan
            rows.append(row)
    return rows


def plot(rows, path):
    plt = pc.pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(8, 6.4), squeeze=False)
    colors = {"if": "tab:red", "rif": "tab:blue", "newton": "tab:green"}
    names = {"if": "IF", "rif": "RIF", "newton": "NS"}
    for j, (sweep, xlabel) in enumerate((("n_over_d", "n / d"), ("lam", "lambda"))):
        for i, (metric, ylabel) in enumerate((("params", "relative error of dtheta"),
                                              ("loss", "relative error, test-subset loss"))):
            ax = axes[i, j]
            sel = [r for r in rows if r["sweep"] == sweep and r["metric"] == metric]
            values = sorted({r["value"] for r in sel})
            for m in pc.METHODS:
                med = [np.nanmedian([r[f"err_{m}"] for r in sel if r["value"] == v]) for v in values]
                q1 = [np.nanpercentile([r[f"err_{m}"] for r in sel if r["value"] == v], 25) for v in values]
                q3 = [np.nanpercentile([r[f"err_{m}"] for r in sel if r["value"] == v], 75) for v in values]
                ax.plot(values, med, "o-", ms=3, color=colors[m], label=names[m])
                ax.fill_between(values, q1, q3, color=colors[m], alpha=0.15)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel, fontsize=8)
            if i == 0:
                name = sel[0]["dataset"] if sel else ""
                ax.set_title(f"{'n/d sweep' if sweep == 'n_over_d' else 'lambda sweep'} ({name})", fontsize=9)
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


def main(argv=None):
    p = pc.parser(__doc__.splitlines()[0])
    args = p.parse_args(argv)
    if args.data and len(args.data) > 1:
        p.error("paper_fig2 runs its sweeps on one data set: give --data once")
    count = 5 if args.quick else 10
    if args.data:
        ratio_data = lam_data = args.data[0]
    elif args.quick:
        ratio_data, lam_data = ("esc50", 32 * 24, 24), "esc50_small"
    else:
        ratio_data, lam_data = ("imdb", None, None), "esc50"
    lams = np.logspace(-5, 0, 4 if args.quick else 11)
    rows = []
    # n/d sweep: one data set, its training set subsampled to n = ratio * d
    if isinstance(ratio_data, tuple):
        base, n, d = ratio_data
        full = pc.datasets.make_paper_like(base, n=n, d=d, seed=args.seed)
    else:
        full = pc.load(ratio_data, args.seed)
    d = full.X_train.shape[1]
    ratios = [r for r in RATIOS if r * d <= full.X_train.shape[0]]
    if not ratios:
        raise SystemExit(f"{full.name} has fewer training samples ({full.X_train.shape[0]}) than features ({d})")
    for ratio in pc.progress_bar(ratios, args, desc="n/d sweep"):
        rng = np.random.default_rng(args.seed + ratio)
        keep = np.sort(rng.choice(full.X_train.shape[0], size=ratio * d, replace=False))
        D = full._replace(X_train=full.X_train[keep], y_train=full.y_train[keep], name=f"{full.name}")
        rows += sweep_point(D, args.lam, "n_over_d", ratio, args, count)
        print(f"n/d = {ratio}: median relative dtheta error " + "  ".join(
            f"{m} {np.median([r['err_' + m] for r in rows if r['sweep'] == 'n_over_d' and r['value'] == ratio and r['metric'] == 'params']):.3f}"
            for m in pc.METHODS), flush=True)
    # lambda sweep on one data set
    D = pc.load(lam_data, args.seed, pc.max_n(args, str(lam_data)))
    for lam in pc.progress_bar(lams, args, desc="lambda sweep"):
        rows += sweep_point(D, float(lam), "lam", float(lam), args, count)
        print(f"lambda = {lam:.1e}: median relative dtheta error " + "  ".join(
            f"{m} {np.median([r['err_' + m] for r in rows if r['sweep'] == 'lam' and r['value'] == float(lam) and r['metric'] == 'params']):.3f}"
            for m in pc.METHODS), flush=True)
    out = pc.output_dir(args)
    pc.write_csv(out / "paper_fig2.csv", rows)
    plot(rows, out / "paper_fig2.png")
    print(f"wrote {out / 'paper_fig2.csv'} and paper_fig2.png")
    return rows


if __name__ == "__main__":
    sys.exit(main() and 0)
