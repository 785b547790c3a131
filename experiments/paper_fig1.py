"""RIF paper, Figure 1: predicted vs actual leave-k-out effects of IF, RIF and the Newton step.

For each data set: binary logistic regression with (1/n) sum l + (lam/2)||theta||^2
(lam = 1e-3), 40 removal-set sizes from 0.1 % to 5 % of n for each of seven
strategies (random; nearest to a random anchor; largest in one random feature;
a random k of the top 2k by IF-predicted effect of each sample on the test
subset's loss or probability, positive and negative), and three metrics (the
probability of the true class summed over the test subset of 50 highest-loss +
50 random test points, the loss summed over it, the training loss over all n
samples). The actual effect is the exact refit; each set is refitted once and
its parameter change feeds all three metrics.

    python experiments/paper_fig1.py --quick          # small shapes, seconds
    python experiments/paper_fig1.py                  # every Table 2 shape at full size (resumable)
    python experiments/paper_fig1.py --data emb.npz   # your own embeddings

writes experiments/output/paper_fig1.csv (one row per set and metric),
paper_fig1_summary.csv / .md (Pearson r, OLS slope of predicted on actual,
median relative error per data set x metric x estimator) and paper_fig1.png.
"""

import json
import sys
import zlib

import numpy as np

import _paper_common as pc


def run_dataset(name, args):
    """The rows of one data set (all strategies, sizes and metrics)."""
    D = pc.load(name, args.seed, pc.max_n(args, name))
    n, d = D.X_train.shape
    ks = pc.sizes(n, 10 if args.quick else 40)
    paths = {s: pc.cache_path(args, "fig1", data=pc.file_key(name), n=n, d=d, lam=args.lam, seed=args.seed,
                              strategy=s, ks=ks.tolist(), max_n=pc.max_n(args, name)) for s in pc.STRATEGIES}
    done = pc.cache_path(args, "fig1rows", data=pc.file_key(name), n=n, d=d, lam=args.lam, seed=args.seed,
                         ks=ks.tolist(), max_n=pc.max_n(args, name)).with_suffix(".json")
    if done.exists() and not args.no_cache:
        saved = json.loads(done.read_text())
        print(f"{D.name}: rows read from the cache")
        return saved["rows"], saved["info"]
    if args.cached_only and not any(p.exists() for p in paths.values()):
        print(f"{D.name}: nothing cached, skipped (--cached-only)")
        return [], None
    with pc.Timer() as t_fit:
        problem = pc.fit(D.X_train, D.y_train, args.lam)
        leverage = problem.leverage
    rng = np.random.default_rng([args.seed, zlib.crc32(D.name.encode())])
    sub = pc.test_subset(problem, D.X_test, D.y_test, rng)
    Xs, ys = D.X_test[sub], D.y_test[sub]
    sets = pc.removal_sets(problem, D.X_train, Xs, ys, ks, pc.STRATEGIES, rng)
    acc = float(np.mean((D.X_test @ problem.theta > 0) == (D.y_test > 0.5)))
    theta_norm = float(np.linalg.norm(problem.theta))
    print(f"{D.name}: n={n} d={d} lam={args.lam:g} test accuracy {acc:.3f} ||theta|| {theta_norm:.3g} "
          f"d_eff/n={leverage.sum() / n:.3f} (fit + leverages {t_fit.seconds:.1f}s)", flush=True)
    rows = []
    for strategy in pc.progress_bar(pc.STRATEGIES, args, desc=f"{D.name} strategies", leave=False):
        S = sets[strategy]
        try:
            changes = pc.cached(paths[strategy], lambda: pc.all_changes(problem, S, not args.no_progress),
                                not args.no_cache, args.cached_only)
        except pc.NotCached:
            print(f"{D.name}: strategy {strategy} not cached, skipped (--cached-only)")
            continue
        eff = pc.effects(problem, S, changes, Xs, ys)
        norm_after = {m: np.linalg.norm(problem.theta + changes[m], axis=1) for m in changes}
        for j, index in enumerate(S):
            for metric in pc.METRICS:
                row = dict(dataset=D.name, n=n, d=d, lam=args.lam, strategy=strategy, k=len(index),
                           metric=metric, actual=eff[metric, "retrain"][j])
                row.update({m: eff[metric, m][j] for m in pc.METHODS})
                row["norm_change_retrain"] = norm_after["retrain"][j] - theta_norm
                row.update({f"norm_change_{m}": norm_after[m][j] - theta_norm for m in pc.METHODS})
                row["mean_leverage"] = float(leverage[index].mean())
                rows.append(row)
    info = dict(dataset=D.name, n=n, d=d, accuracy=acc, theta_norm=theta_norm,
                d_eff_over_n=float(leverage.sum() / n))
    if len(rows) == len(pc.STRATEGIES) * len(ks) * len(pc.METRICS):       # complete: keep the rows
        rows = [{k: (float(v) if isinstance(v, np.floating) else v) for k, v in r.items()} for r in rows]
        done.write_text(json.dumps(dict(rows=rows, info=info)))
    return rows, info


def summarise(rows, infos):
    out = []
    for info in infos:
        mine = [r for r in rows if r["dataset"] == info["dataset"]]
        for metric in pc.METRICS:
            sel = [r for r in mine if r["metric"] == metric]
            actual = np.array([r["actual"] for r in sel])
            growth = np.array([r["norm_change_retrain"] for r in sel])
            for m in pc.METHODS:
                pred = np.array([r[m] for r in sel])
                st = pc.summary_stats(actual, pred)
                caught = np.array([r[f"norm_change_{m}"] for r in sel])
                grows = growth > 0
                # over the sets whose refit grows ||theta||: the median share of that growth the estimate has
                out.append(dict(dataset=info["dataset"], n=info["n"], d=info["d"], metric=metric, estimator=m,
                                n_sets=len(sel), **st,
                                frac_norm_grows=float(np.mean(grows)),
                                norm_growth_caught=float(np.median(caught[grows] / growth[grows])) if grows.any()
                                else np.nan))
    return out


def plot(rows, infos, path):
    plt = pc.pyplot()
    names = [i["dataset"] for i in infos]
    fig, axes = plt.subplots(len(pc.METRICS), len(names), figsize=(2.6 * len(names), 7.2), squeeze=False)
    colors = {"if": "tab:red", "rif": "tab:blue", "newton": "tab:green"}
    titles = {"proba": "test-subset probability", "loss": "test-subset loss", "train_loss": "training loss"}
    for j, name in enumerate(names):
        for i, metric in enumerate(pc.METRICS):
            ax = axes[i, j]
            sel = [r for r in rows if r["dataset"] == name and r["metric"] == metric]
            a = np.array([r["actual"] for r in sel])
            for m in pc.METHODS:
                ax.scatter(a, [r[m] for r in sel], s=4, alpha=0.5, color=colors[m],
                           label={"if": "IF", "rif": "RIF", "newton": "NS"}[m])
            lo, hi = np.nanmin(a), np.nanmax(a)
            ax.plot([lo, hi], [lo, hi], "k--", lw=0.7)
            ax.tick_params(labelsize=6)
            if i == 0:
                ax.set_title(name, fontsize=8)
            if j == 0:
                ax.set_ylabel(f"predicted: {titles[metric]}", fontsize=7)
            if i == len(pc.METRICS) - 1:
                ax.set_xlabel("actual (retrain)", fontsize=7)
    axes[0, 0].legend(fontsize=6, markerscale=2)
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


def main(argv=None):
    args = pc.parser(__doc__.splitlines()[0]).parse_args(argv)
    rows, infos = [], []
    for name in pc.dataset_names(args):
        r, info = run_dataset(name, args)
        if info is not None:
            rows += r
            infos.append(info)
    out = pc.output_dir(args)
    pc.write_csv(out / "paper_fig1.csv", rows)
    summary = summarise(rows, infos)
    pc.write_csv(out / "paper_fig1_summary.csv", summary)
    pc.write_csv(out / "paper_fig1_datasets.csv", infos)
    table = pc.markdown_table(summary, ["dataset", "metric", "estimator", "pearson_r", "slope", "median_rel_err"],
                              {"pearson_r": ".3f", "slope": ".3f", "median_rel_err": ".3f"})
    (out / "paper_fig1_summary.md").write_text(table)
    plot(rows, infos, out / "paper_fig1.png")
    print(table)
    print(f"wrote {out / 'paper_fig1.csv'}, paper_fig1_summary.csv/.md and paper_fig1.png")
    return rows, summary


if __name__ == "__main__":
    sys.exit(main() and 0)
