"""RIF paper, Figure 3: poisoning detection by the effect of one flipped-label point on its own logit.

Over 100 trials per data set: a random test point with its label flipped is
added to the training set, the model ((1/n) sum l + (lam/2)||theta||^2, lam = 1e-3)
is refitted (Newton, warm-started), and the effect of removing that point on its
own logit x^T theta is estimated by IF and RIF (which equals the Newton step for
one sample) and measured by the exact refit without it. A detector that ranks
suspicious points by their estimated effect works as well as the estimate
tracks the actual effect: the figure shows the scatter and the correlations.

    python experiments/paper_fig3.py --quick
    python experiments/paper_fig3.py
    python experiments/paper_fig3.py --data emb.npz

writes experiments/output/paper_fig3.csv (one row per trial), paper_fig3_summary.csv
(Pearson r, OLS slope, median relative error per data set and estimator) and paper_fig3.png.
"""

import sys
import zlib

import numpy as np

import _paper_common as pc

FULL = ("esc50", "breast_cancer", "digits_3_8", "digits_cnn")
QUICK = ("esc50_small", "breast_cancer")
CHUNK = 10


def trials(D, problem, picks, lam):
    """Arrays of the trials whose test points are ``picks``."""
    out = {k: [] for k in ("test_index", "label", "actual", "if", "rif", "newton", "leverage")}
    n = D.X_train.shape[0]
    for j in picks:
        x = D.X_test[j]
        X = np.vstack([D.X_train, x[None]])
        y = np.append(D.y_train, 1.0 - D.y_test[j])
        poisoned = pc.fit(X, y, lam, theta=problem.theta)     # refit from theta^, refined to 1e-10
        changes = {m: poisoned.params_change([n], method=m) for m in ("if", "rif", "newton", "retrain")}
        for m, dtheta in changes.items():
            value = poisoned.effect([n], target="decision", X=x[None], dtheta=dtheta)
            out["actual" if m == "retrain" else m].append(value)
        out["test_index"].append(j)
        out["label"].append(1.0 - D.y_test[j])
        out["leverage"].append(poisoned.leverage[n])
    return {k: np.asarray(v, dtype=float) for k, v in out.items()}


def run_dataset(name, args):
    D = pc.load(name, args.seed, pc.max_n(args, name))
    n, d = D.X_train.shape
    problem = pc.fit(D.X_train, D.y_train, args.lam)
    count = 20 if args.quick else 100
    rng = np.random.default_rng([args.seed, zlib.crc32(D.name.encode())])
    picks = rng.choice(len(D.y_test), size=min(count, len(D.y_test)), replace=False)
    parts = []
    chunks = [picks[i:i + CHUNK] for i in range(0, len(picks), CHUNK)]
    for c, chunk in enumerate(pc.progress_bar(chunks, args, desc=f"{D.name} trials ({CHUNK} each)")):
        path = pc.cache_path(args, "fig3", data=pc.file_key(name), n=n, d=d, lam=args.lam, seed=args.seed,
                             picks=chunk.tolist(), max_n=pc.max_n(args, name))
        parts.append(pc.cached(path, lambda: trials(D, problem, chunk, args.lam), not args.no_cache))
    res = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    rows = [dict(dataset=D.name, n=n, d=d, lam=args.lam, trial=t, test_index=int(res["test_index"][t]),
                 flipped_label=int(res["label"][t]), leverage=res["leverage"][t], actual=res["actual"][t],
                 **{m: res[m][t] for m in ("if", "rif", "newton")}) for t in range(len(picks))]
    summary = []
    for m in ("if", "rif"):
        st = pc.summary_stats(res["actual"], res[m])
        summary.append(dict(dataset=D.name, n=n, d=d, estimator=m, n_trials=len(picks), **st))
        print(f"{D.name}: {m.upper():3s} r = {st['pearson_r']:.3f}  slope {st['slope']:.3f}  "
              f"median relative error {st['median_rel_err']:.3f}", flush=True)
    return rows, summary


def plot(rows, summary, path):
    plt = pc.pyplot()
    names = list(dict.fromkeys(r["dataset"] for r in rows))
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.3), squeeze=False)
    for ax, name in zip(axes[0], names):
        sel = [r for r in rows if r["dataset"] == name]
        a = np.array([r["actual"] for r in sel])
        for m, color in (("if", "tab:red"), ("rif", "tab:blue")):
            r_ = next(s["pearson_r"] for s in summary if s["dataset"] == name and s["estimator"] == m)
            ax.scatter(a, [r[m] for r in sel], s=6, alpha=0.6, color=color, label=f"{m.upper()} (r = {r_:.3f})")
        lo, hi = np.nanmin(a), np.nanmax(a)
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.7)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("actual change of own logit (retrain)", fontsize=7)
        ax.set_ylabel("predicted", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


def main(argv=None):
    args = pc.parser(__doc__.splitlines()[0]).parse_args(argv)
    rows, summary = [], []
    for name in pc.dataset_names(args, full=FULL, quick=QUICK):
        r, s = run_dataset(name, args)
        rows += r
        summary += s
    out = pc.output_dir(args)
    pc.write_csv(out / "paper_fig3.csv", rows)
    pc.write_csv(out / "paper_fig3_summary.csv", summary)
    plot(rows, summary, out / "paper_fig3.png")
    print(f"wrote {out / 'paper_fig3.csv'}, paper_fig3_summary.csv and paper_fig3.png")
    return rows, summary


if __name__ == "__main__":
    sys.exit(main() and 0)
