"""Solvers against the exact damped-GNH influence on digits: Spearman, time, LiSSA depth.

For an MLP (and a small CNN) trained on sklearn's ``load_digits`` and for
several damping levels lambda = d * tr(G)/p (d relative to the mean
eigenvalue of the summed GNH), computes the train x test IF score matrix
g_i^T (G + lambda I)^{-1} grad l_j with each solver and reports its Spearman
correlation with the exact dense solve and its time (fit + scores); then
finds how deep a mini-batch LiSSA recursion must go to reach EK-FAC's
relative error ||x - x_exact|| / ||x_exact|| on the same right-hand sides.

    python benchmarks/deep_solvers.py --quick

writes experiments/output/deep_solvers.csv, deep_lissa_depth.csv and deep_solvers.png.
"""

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

import deep_common as dc  # noqa: E402
from rif.deep import TorchInfluence  # noqa: E402


def run_solver(model, X, y, Xt, yt, solver, damping, **kw):
    start = time.perf_counter()
    ti = TorchInfluence(model, "cross_entropy", (X, y), solver=solver, damping=damping,
                        dtype=torch.float64, **kw).fit()
    scores = ti.scores(Xt, yt, method="if", linear=True)
    return ti, scores, time.perf_counter() - start


def main(argv=None):
    args = dc.parser(__doc__.splitlines()[0]).parse_args(argv)
    torch.set_num_threads(args.threads)
    quick = args.quick
    n_train, n_test = (400, 20) if quick else (None, 100)
    dampings = [0.01, 0.1, 1.0] if quick else [0.001, 0.01, 0.1, 1.0, 10.0]
    depths = [10, 30, 100, 300] if quick else [10, 30, 100, 300, 1000, 3000]
    models = {"mlp": (dc.mlp, False), "cnn": (dc.cnn, True)}
    rows, depth_rows = [], []
    for name, (build, image) in models.items():
        X, y, Xt, yt, _ = dc.digits(n_train, n_test, seed=args.seed, image=image)
        model, t_train = dc.train(build(seed=args.seed), X, y)
        print(f"{name}: n={len(y)}, test acc {dc.accuracy(model, Xt, yt):.3f}, trained in {t_train:.1f}s")
        for d in dampings:
            ref, exact, t_exact = run_solver(model, X, y, Xt, yt, "exact", d)
            rows.append(dict(model=name, damping=d, solver="exact", spearman=1.0, seconds=t_exact,
                             relative_error=0.0, max_relative_residual=0.0, n_params=ref.n_params_))
            B = ref.gradients(Xt, yt).T
            x_exact = ref.solver_.solve(B)
            settings = {"cg": dict(cg_tol=1e-4, cg_max_iter=100),
                        "lissa": dict(lissa_depth=100, lissa_batch_size=128),
                        "kfac": {}, "ekfac": {}}
            errors = {}
            for solver, kw in settings.items():
                ti, s, t = run_solver(model, X, y, Xt, yt, solver, d, **kw)
                x = ti.solver_.solve(B)
                err = float(torch.linalg.norm(x - x_exact) / torch.linalg.norm(x_exact))
                errors[solver] = err
                res = ti.solve_log_[-1]["max_relative_residual"]       # None where not measured
                res = np.nan if res is None else res
                rows.append(dict(model=name, damping=d, solver=solver, spearman=dc.spearman(s, exact),
                                 seconds=t, relative_error=err, max_relative_residual=res,
                                 n_params=ti.n_params_))
                print(f"  d={d:g} {solver:6s} spearman {rows[-1]['spearman']:.3f}  rel.err {err:.3f}  "
                      f"{t:.2f}s (exact {t_exact:.2f}s)")
            # LiSSA depth needed to match EK-FAC
            lissa = TorchInfluence(model, "cross_entropy", (X, y), solver="lissa", damping=d,
                                   dtype=torch.float64, lissa_batch_size=128).fit()
            match = None
            for depth in depths:
                lissa.solver_.depth = depth
                start = time.perf_counter()
                x = lissa.solver_.solve(B)
                t = time.perf_counter() - start
                err = float(torch.linalg.norm(x - x_exact) / torch.linalg.norm(x_exact))
                if match is None and err <= errors["ekfac"]:
                    match = depth
                depth_rows.append(dict(model=name, damping=d, depth=depth, relative_error=err,
                                       ekfac_relative_error=errors["ekfac"], seconds=t,
                                       scale=lissa.solver_.scale_))
            print(f"  d={d:g} LiSSA depth to match EK-FAC error {errors['ekfac']:.3f}: "
                  f"{match if match else '>' + str(depths[-1])} (error at {depths[-1]}: {err:.3f})")
    out = dc.output_dir()
    dc.write_csv(out / "deep_solvers.csv", rows)
    dc.write_csv(out / "deep_lissa_depth.csv", depth_rows)
    plot(rows, depth_rows, out / "deep_solvers.png")
    print(f"wrote {out / 'deep_solvers.csv'}, {out / 'deep_lissa_depth.csv'}, {out / 'deep_solvers.png'}")


def plot(rows, depth_rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted({r["model"] for r in rows})
    fig, axes = plt.subplots(2, len(models), figsize=(5 * len(models), 8), squeeze=False)
    for k, m in enumerate(models):
        ax = axes[0, k]
        for solver in ("cg", "lissa", "kfac", "ekfac"):
            pts = [(r["damping"], r["spearman"]) for r in rows if r["model"] == m and r["solver"] == solver]
            ax.semilogx(*zip(*pts), marker="o", label=solver)
        ax.set(title=f"{m}: Spearman with exact IF", xlabel="damping / mean eigenvalue", ylim=(-0.1, 1.05))
        ax.legend()
        ax = axes[1, k]
        for d in sorted({r["damping"] for r in depth_rows}):
            pts = [(r["depth"], r["relative_error"]) for r in depth_rows if r["model"] == m and r["damping"] == d]
            line, = ax.loglog(*zip(*pts), marker="o", label=f"LiSSA, d={d:g}")
            ek = [r["ekfac_relative_error"] for r in depth_rows if r["model"] == m and r["damping"] == d][0]
            ax.axhline(ek, color=line.get_color(), ls="--", lw=1)
        ax.set(title=f"{m}: LiSSA error vs depth (dashed: EK-FAC)", xlabel="depth", ylabel="relative error")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
