"""rif.deep against Kronfluence and pyDVL on the same MLP: Spearman agreement and wall time.

The model and data are those of ``benchmarks/deep_solvers.py`` (the 64-32-10 tanh MLP of
``experiments/deep_common.py``, trained on sklearn's ``load_digits``, float64). For each
damping level the train x test influence-score matrix is computed by rif.deep.TorchInfluence
(exact damped GNH = reference, EK-FAC, and exact solves with the true Hessian and the
empirical Fisher) and, where they import, by Kronfluence (EK-FAC) and pyDVL
(DirectInfluence, CgInfluence, EkfacInfluence). Reported per method: the Spearman
correlation with rif's exact GNH scores with rif's exact solve for the *same* curvature and
with rif's EK-FAC, all computed per test point (over the training points) and averaged; the least-squares
slope of the converted scores on the same-curvature rif scores (1 when the scale conversion
below is right and the solve is exact); and the wall time (fit + scores).

    python benchmarks/deep_external.py --quick

writes experiments/output/deep_external.csv. A library that is not installed (ImportError)
is skipped with a printed reason; a method that raises is reported and the rest go on.
Kronfluence 1.0.1 and pyDVL 0.10.0 install next to an existing torch with
``pip install --no-deps`` plus their pure-Python import dependencies (see the report that
accompanies this script); they are measurement-only and not dependencies of rif.

Conventions
-----------
* Damping. rif's curvature C is a SUM over the n training samples and the damping is
  lambda = d * tr(C)/p (``damping_mode="relative"``, d = ``--damping``), taken from the exact
  GNH fit, so every method uses the same absolute lambda_sum. Kronfluence and pyDVL use MEAN
  curvatures (C/n) with an absolute damping lambda', so they get lambda' = lambda_sum / n:
  C/n + (lambda_sum/n) I = (C + lambda_sum I) / n. rif's Hessian/Fisher references get
  ``damping=lambda_sum, damping_mode="absolute"``.
* Scale. With that damping the external scores are n times rif's, so they are divided by n
  before the slope is computed (Spearman is scale-free anyway).
* Sign. rif's score is (test loss after removing i) - (before) = +g_test^T H^-1 g_i.
  Kronfluence's pairwise score is +g_test^T H^-1 g_i (positive = helpful), and pyDVL's
  ``influences(..., mode=InfluenceMode.Up)`` returns <H^-1 grad l_test, grad l_i>, also +.
  No sign flip is needed; the ``sign`` column records the convention of each row, and the
  raw Spearman is reported so that a flipped convention would show up as ~ -1.
* Curvature (the ``curvature`` column). rif "gnh": generalised Gauss-Newton (= true Fisher
  for cross-entropy), exact. rif "hessian": true Hessian. rif "fisher": empirical Fisher
  sum_i g_i g_i^T. Kronfluence EK-FAC default: true Fisher with labels SAMPLED from the
  model (Monte-Carlo GGN, one sample per point); with ``use_empirical_fisher=True``: the
  empirical Fisher. pyDVL DirectInfluence and CgInfluence (block CG): true Hessian of the
  mean loss. pyDVL EkfacInfluence: Fisher-type K-FAC factors from its one-pass pseudo-loss
  sum_k sqrt(p_k) log p_k (no labels), eigenvalues refitted (``update_diagonal=True``).
  All K-FAC variants cover both Linear layers incl. biases. pyDVL's
  ``SecondOrderMode.GAUSS_NEWTON`` (an empirical Fisher) is not used: in 0.10.0 its dense
  matrix and its operator are normalised by a wrong count (``functional.gauss_newton``
  divides by p x (batches - 1), ``PointAveraging`` by the leading size of the product), so
  its damping cannot be matched. pyDVL's LiSSA is left out: with lambda_mean this small it
  needs far more than its 1000 default iterations.
* The true Hessian of this (not exactly stationary) MLP is indefinite at small damping:
  rif's exact Hessian solve then raises SingularHessianError (reported as FAILED) while
  pyDVL solves the indefinite system anyway.
"""

import contextlib
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

import deep_common as dc  # noqa: E402
from rif.deep import TorchInfluence  # noqa: E402

SIGN = "+g_test^T H^-1 g_train"


def per_test_spearman(a, b):
    """Mean over test points (columns) of the Spearman correlation over training points."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    vals = []
    for j in range(a.shape[1]):
        ok = np.isfinite(a[:, j]) & np.isfinite(b[:, j])
        vals.append(spearmanr(a[ok, j], b[ok, j])[0])
    return float(np.nanmean(vals))


def slope(a, ref):
    a, ref = np.ravel(a), np.ravel(ref)
    return float(a @ ref / (ref @ ref))


@contextlib.contextmanager
def default_dtype(dtype):
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


# ---------------------------------------------------------------- rif


def rif_scores(model, X, y, Xt, yt, solver, damping, mode="relative", curvature="gnh"):
    ti = TorchInfluence(model, "cross_entropy", (X, y), solver=solver, curvature=curvature,
                        damping=damping, damping_mode=mode, dtype=torch.float64).fit()
    return ti, np.asarray(ti.scores(Xt, yt, method="if", linear=True))


# ---------------------------------------------------------------- Kronfluence


def kronfluence_methods():
    try:
        import kronfluence  # noqa: F401
        from kronfluence.analyzer import Analyzer, prepare_model  # noqa: F401
    except ImportError as exc:
        return None, f"ImportError: {exc}"
    return {"EK-FAC": dict(use_empirical_fisher=False, curvature="true Fisher, sampled labels (MC GGN)",
                           same="gnh"),
            "EK-FAC emp.": dict(use_empirical_fisher=True, curvature="empirical Fisher", same="fisher")}, None


def kronfluence_scores(model, X, y, Xt, yt, damping_mean, use_empirical_fisher, seed=0):
    """(n_train, n_test) Kronfluence EK-FAC pairwise scores, mean-form curvature."""
    import copy
    import logging

    from kronfluence.analyzer import Analyzer, prepare_model
    from kronfluence.arguments import FactorArguments, ScoreArguments
    from kronfluence.task import Task

    class DigitsTask(Task):
        def compute_train_loss(self, batch, model, sample=False):
            inputs, labels = batch
            logits = model(inputs)
            if sample:
                with torch.no_grad():
                    labels = torch.multinomial(torch.softmax(logits.detach(), dim=-1), 1).flatten()
            return torch.nn.functional.cross_entropy(logits, labels, reduction="sum")

        def compute_measurement(self, batch, model):
            inputs, labels = batch
            return torch.nn.functional.cross_entropy(model(inputs), labels, reduction="sum")

    f64 = torch.float64
    task = DigitsTask()
    net = prepare_model(copy.deepcopy(model).eval(), task)
    train = torch.utils.data.TensorDataset(X, y)
    test = torch.utils.data.TensorDataset(Xt, yt)
    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as tmp:
        analyzer = Analyzer("rif_digits", net, task, cpu=True, disable_tqdm=True, output_dir=tmp,
                            log_level=logging.WARNING)
        factor_args = FactorArguments(strategy="ekfac", use_empirical_fisher=use_empirical_fisher,
                                      activation_covariance_dtype=f64, gradient_covariance_dtype=f64,
                                      eigendecomposition_dtype=f64, per_sample_gradient_dtype=f64,
                                      lambda_dtype=f64)
        analyzer.fit_all_factors("ekfac", train, per_device_batch_size=len(train),
                                 factor_args=factor_args, overwrite_output_dir=True)
        score_args = ScoreArguments(damping_factor=damping_mean, per_sample_gradient_dtype=f64,
                                    precondition_dtype=f64, score_dtype=f64)
        analyzer.compute_pairwise_scores("scores", "ekfac", query_dataset=test, train_dataset=train,
                                         per_device_query_batch_size=len(test),
                                         per_device_train_batch_size=len(train),
                                         score_args=score_args, overwrite_output_dir=True)
        s = analyzer.load_pairwise_scores("scores")["all_modules"]  # (n_test, n_train)
    return s.detach().cpu().numpy().T


# ---------------------------------------------------------------- pyDVL


def pydvl_methods():
    try:
        import pydvl.influence.torch as pt  # noqa: F401
        from pydvl.influence import InfluenceMode  # noqa: F401
        from pydvl.influence.torch import SecondOrderMode  # noqa: F401
    except ImportError as exc:
        return None, f"ImportError: {exc}"
    return {"DirectInfluence": dict(curvature="true Hessian", same="hessian"),
            "CgInfluence": dict(curvature="true Hessian (CG, Hessian-vector products)", same="hessian"),
            "EkfacInfluence": dict(curvature="Fisher-type, sqrt(p)-weighted pseudo-loss", same="gnh")}, None


def pydvl_scores(name, model, X, y, Xt, yt, damping_mean, batch_size=None):
    """(n_train, n_test) pyDVL scores, mean-form curvature, InfluenceMode.Up."""
    import copy
    import warnings

    import pydvl.influence.torch as pt
    from pydvl.influence import InfluenceMode
    from pydvl.influence.torch import SecondOrderMode

    net = copy.deepcopy(model).eval()
    loss = torch.nn.functional.cross_entropy  # mean over the batch
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y),
                                         batch_size=batch_size or len(y))
    with default_dtype(torch.float64), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name == "DirectInfluence":
            inf = pt.DirectInfluence(net, loss, regularization=damping_mean,
                                     second_order_mode=SecondOrderMode.HESSIAN)
        elif name == "CgInfluence":
            inf = pt.CgInfluence(net, loss, regularization=damping_mean, rtol=1e-4, atol=1e-10,
                                 maxiter=100, solve_simultaneously=True, warn_on_max_iteration=False,
                                 second_order_mode=SecondOrderMode.HESSIAN)
        elif name == "EkfacInfluence":
            inf = pt.EkfacInfluence(net, update_diagonal=True, hessian_regularization=damping_mean)
        else:
            raise ValueError(name)
        inf = inf.fit(loader)
        s = inf.influences(Xt, yt, X, y, mode=InfluenceMode.Up)  # (n_test, n_train)
    return s.detach().cpu().numpy().T


# ---------------------------------------------------------------- main


def main(argv=None):
    p = dc.parser(__doc__.splitlines()[0])
    p.add_argument("--damping", type=float, nargs="+", default=None,
                   help="damping relative to the mean eigenvalue of the summed GNH")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    n_train, n_test = (400, 20) if args.quick else (None, 100)
    dampings = args.damping or ([0.1, 1.0] if args.quick else [0.01, 0.1, 1.0])

    kron, kron_why = kronfluence_methods()
    dvl, dvl_why = pydvl_methods()
    if kron is None:
        print(f"kronfluence: skipped ({kron_why})")
    if dvl is None:
        print(f"pyDVL: skipped ({dvl_why})")

    X, y, Xt, yt, _ = dc.digits(n_train, n_test, seed=args.seed)
    model, t_train = dc.train(dc.mlp(seed=args.seed), X, y)
    n = len(y)
    print(f"mlp: n={n}, test points {len(yt)}, test acc {dc.accuracy(model, Xt, yt):.3f}, "
          f"trained in {t_train:.1f}s")

    rows = []
    for d in dampings:
        (ref_ti, exact), t_exact = timed(lambda: rif_scores(model, X, y, Xt, yt, "exact", d))
        lam = float(ref_ti.damping_)
        lam_mean = lam / n
        print(f"\ndamping d={d:g}: lambda_sum = {lam:.4g} (d x mean eigenvalue {float(ref_ti.mean_eigenvalue_):.4g}), "
              f"lambda_mean = lambda_sum/n = {lam_mean:.4g}, p = {ref_ti.n_params_}")
        refs = {"gnh": exact}
        rif_ekfac = None
        entries = [("rif", "exact", "GNH (exact)", "gnh", exact, t_exact, None)]

        def add(library, method, curvature, same, fn, scale):
            try:
                scores, t = timed(fn)
                entries.append((library, method, curvature, same, scores / scale, t, None))
            except Exception as exc:  # report and go on with the other methods
                entries.append((library, method, curvature, same, None, np.nan,
                                f"{type(exc).__name__}: {exc}"))

        add("rif", "ekfac", "GNH (EK-FAC)", "gnh",
            lambda: rif_scores(model, X, y, Xt, yt, "ekfac", d)[1], 1.0)
        for curv, label in (("hessian", "true Hessian (exact)"), ("fisher", "empirical Fisher (exact)")):
            add("rif", "exact", label, curv,
                lambda curv=curv: rif_scores(model, X, y, Xt, yt, "exact", lam, "absolute", curv)[1], 1.0)
            if entries[-1][4] is not None:
                refs[curv] = entries[-1][4]
        rif_ekfac = entries[1][4]
        for method, spec in (kron or {}).items():
            add("kronfluence", method, spec["curvature"], spec["same"],
                lambda spec=spec: kronfluence_scores(model, X, y, Xt, yt, lam_mean,
                                                     spec["use_empirical_fisher"], seed=args.seed), n)
        for method, spec in (dvl or {}).items():
            add("pydvl", method, spec["curvature"], spec["same"],
                lambda method=method: pydvl_scores(method, model, X, y, Xt, yt, lam_mean), n)

        for library, method, curvature, same, scores, t, error in entries:
            row = dict(damping=d, lambda_sum=lam, library=library, method=method, curvature=curvature,
                       sign=SIGN, spearman_vs_rif_exact_gnh=np.nan, same_curvature_ref=same,
                       spearman_vs_rif_same_curvature=np.nan, slope_vs_same=np.nan,
                       spearman_vs_rif_ekfac=np.nan, seconds=t,
                       n_train=n, n_test=len(yt), error=error or "")
            if scores is not None:
                row["spearman_vs_rif_exact_gnh"] = per_test_spearman(scores, exact)
                if rif_ekfac is not None:
                    row["spearman_vs_rif_ekfac"] = per_test_spearman(scores, rif_ekfac)
                if same in refs:
                    row["spearman_vs_rif_same_curvature"] = per_test_spearman(scores, refs[same])
                    row["slope_vs_same"] = slope(scores, refs[same])
            rows.append(row)
        print_table([r for r in rows if r["damping"] == d])

    out = dc.output_dir()
    dc.write_csv(out / "deep_external.csv", rows)
    print(f"\nwrote {out / 'deep_external.csv'}")


def print_table(rows):
    head = (f"{'library':12s} {'method':16s} {'curvature':42s} {'rho(exact GNH)':>14s} "
            f"{'rho(same curv.)':>15s} {'slope':>7s} {'rho(rif EKFAC)':>14s} {'seconds':>8s}")
    print(head)
    print("-" * len(head))
    for r in rows:
        if r["error"]:
            print(f"{r['library']:12s} {r['method']:16s} {r['curvature'][:42]:42s} FAILED: {r['error'][:120]}")
            continue
        same = f"{r['spearman_vs_rif_same_curvature']:.3f} ({r['same_curvature_ref']})"
        print(f"{r['library']:12s} {r['method']:16s} {r['curvature'][:42]:42s} "
              f"{r['spearman_vs_rif_exact_gnh']:14.3f} {same:>15s} {r['slope_vs_same']:7.3f} "
              f"{r['spearman_vs_rif_ekfac']:14.3f} {r['seconds']:8.2f}")
    print(f"all scores signed as {SIGN} (rif: removal effect on the test loss); external scores / n")


if __name__ == "__main__":
    main()
