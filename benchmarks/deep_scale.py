"""rif.deep at scale: streaming EK-FAC IF and RIF on a ~1M-parameter CNN, and accuracy against exact references.

Three parts, all on offline data (sklearn's digits; nothing is downloaded):

1. ``reference``: the tanh MLP 64-16-10 (p = 1210) trained to stationarity of
   sum_i CE_i + (mu/2)||theta||^2 on 400 digits, with exact leave-one-out
   retrains (damping 0, so the proximal refit is the plain refit) of 30
   training samples as the truth, and the change of each of 50 test losses
   as the effect (1500 pairs). Every estimator's Pearson correlation, OLS
   slope of estimate on truth and median relative error |est - true| / |true|:
   IF and RIF with the GNH and with the true Hessian, exact, low-rank
   (several ranks) and EK-FAC. Samples whose leave-one-out Hessian is not
   positive definite have no true-Hessian RIF step; their count is reported and
   they are left out of that row.
2. ``small``: a narrow copy of the CNN of part 3 (p of a few thousand) on
   1000 images, where the exact damped-GNH scores can be formed densely: the
   Spearman correlation (per test column, averaged) of EK-FAC, K-FAC and
   low-rank IF / RIF with the exact GNH IF / RIF, and of projected scores
   with the unprojected ones.
3. ``scale``: a CNN of about 1.08M parameters (conv 1-32-64, fc 1024-1024-10)
   trained on 10000 augmented 16 x 16 digit images (upscaled, shifted, noisy);
   EK-FAC fit, then linearised IF and RIF scores for 10000 train x 100 test,
   streamed in blocks (no n x p matrix). Reported: seconds, training samples
   per second, RIF / IF time ratio (both measured in the same run, on the
   same thread count), and the process's peak resident memory after each
   stage (a high-water mark, so it never decreases; on CUDA, the peak
   allocated device memory of each stage).

dattri (explicit and CG influence, EK-FAC, TRAK, TracIn) is compared on the
reference MLP when it can be imported; the script says so when it cannot.

Kronfluence's EK-FAC (``Analyzer.fit_all_factors`` with
``FactorArguments(strategy="ekfac")`` and ``compute_pairwise_scores``) runs on
the models and data of parts 2 and 3 when ``import kronfluence`` works
(``pip install --no-deps kronfluence accelerate`` plus safetensors, einconv,
einops and opt_einsum; it does not need torchvision at import), and is skipped
with a message otherwise. Its curvature is the mean (1/n) sum_i F_i of a
sampled-label Fisher, damped on that mean, so its damping is set to rif's
sum-form shift divided by n: (lambda + mu) / n. Its pairwise score
g_testᵀ(F + damping)^-1 g_train has rif's sign (positive: removing the
training sample raises the test loss) and n times rif's scale. Part 3 reports
its factor-fit and score seconds, samples/s and peak memory beside rif's, and
the Spearman correlation (per test image, averaged) of its scores with rif's
EK-FAC IF and RIF; part 2 that with the exact damped-GNH IF scores.
Peak memory per stage on CPU is also sampled from /proc during the stage
(``stage_peak_rss_mb_*``), so that stages run later are not masked by the
high-water mark.

    python benchmarks/deep_scale.py --quick           # seconds: tiny sizes, every code path
    python benchmarks/deep_scale.py                    # the full run (minutes, 1 thread)
    python benchmarks/deep_scale.py --device cuda      # on a GPU

writes benchmarks/output/deep_scale.json.
"""

import argparse
import importlib.util
import json
import resource
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from scipy.stats import pearsonr, spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

import deep_common as dc  # noqa: E402
from rif.deep import TorchInfluence  # noqa: E402

OUTPUT = Path(__file__).resolve().parent / "output"


# -- helpers -------------------------------------------------------------------------------
def peak_memory_mb(device):
    """Peak memory so far: device allocations on CUDA (reset per stage), else the process's max RSS."""
    if device.type == "cuda":
        value = torch.cuda.max_memory_allocated(device) / 2 ** 20
        torch.cuda.reset_peak_memory_stats(device)
        return value
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(device, fn, *args, **kwargs):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return out, time.perf_counter() - start


def per_column_spearman(a, b):
    vals = [spearmanr(a[:, j], b[:, j])[0] for j in range(a.shape[1])]
    return float(np.nanmean(vals))


def agreement(est, true):
    """Pearson, Spearman, OLS slope of est on true, median relative error, over finite pairs."""
    est, true = np.ravel(est), np.ravel(true)
    ok = np.isfinite(est) & np.isfinite(true) & (true != 0)
    est, true = est[ok], true[ok]
    return {"pearson": float(pearsonr(est, true)[0]), "spearman": float(spearmanr(est, true)[0]),
            "slope": float(np.polyfit(true, est, 1)[0]),
            "median_rel_error": float(np.median(np.abs(est - true) / np.abs(true))), "pairs": int(ok.sum())}


def test_loss_changes(model, loss_fn, dthetas, Xt, yt):
    """l_j(theta^ + dtheta_r) - l_j(theta^) for rows dtheta_r (flattened in named_parameters order)."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    params = dict(model.named_parameters())
    theta = torch.cat([params[n].detach().reshape(-1) for n in names])
    out = []
    with torch.no_grad():
        base = loss_fn(model(Xt), yt)
        for d in dthetas:
            th = theta + torch.as_tensor(d, dtype=theta.dtype, device=theta.device)
            values, start = {}, 0
            for n in names:
                k = params[n].numel()
                values[n] = th[start:start + k].view_as(params[n])
                start += k
            out.append((loss_fn(torch.func.functional_call(model, values, (Xt,)), yt) - base).cpu().numpy())
    return np.stack(out)


def ce(out, y):
    return torch.nn.functional.cross_entropy(out, y, reduction="none")


# -- 1. the reference MLP with exact leave-one-out retrains ---------------------------------
def reference(args, device):
    q = args.quick
    n_train, n_test, n_removed = (60, 10, 2) if q else (400, 50, 30)
    hidden = 4 if q else 16
    X, y, Xt, yt, _ = dc.digits(n_train, n_test, seed=args.seed)
    wd = 1e-3
    model, _ = dc.train(dc.mlp(hidden=hidden, seed=args.seed), X, y, steps=200 if q else 600, weight_decay=wd,
                        polish=200 if q else 2000)
    mu = wd * len(y)
    model, X, y, Xt, yt = model.to(device), X.to(device), y.to(device), Xt.to(device), yt.to(device)
    common = dict(damping=0.0, damping_mode="absolute", weight_decay=mu, dtype=torch.float64, device=device)
    truth_ti = TorchInfluence(model, "cross_entropy", (X, y), retrain_tol=1e-10, **common).fit()
    removed = np.random.default_rng(args.seed).choice(len(y), n_removed, replace=False)
    true_dtheta, t_retrain = timed(device, truth_ti.params_change, [[i] for i in removed], "retrain")
    truth = test_loss_changes(model, ce, true_dtheta, Xt, yt)
    p = truth_ti.n_params_
    print(f"[reference] MLP 64-{hidden}-10, p = {p}, n = {len(y)}, stationarity {truth_ti.stationarity_:.1e}; "
          f"{n_removed} exact leave-one-out retrains in {t_retrain:.0f}s")
    ranks = [p] if q else [p, 600, 300, 100]
    configs = [("gnh", "exact", {}), ("hessian", "exact", {})]
    configs += [(c, "lowrank", {"rank": r}) for c in ("gnh", "hessian") for r in ranks]
    configs += [("gnh", "ekfac", {"damping": 0.1, "damping_mode": "relative"})]
    rows = []
    for curvature, solver, extra in configs:
        kw = {**common, **extra}
        ti, t_fit = timed(device, TorchInfluence(model, "cross_entropy", (X, y), curvature=curvature,
                                                 solver=solver, **kw).fit)
        for method in ("if", "rif"):
            if method == "if":
                steps, t = timed(device, ti.params_change, [[i] for i in removed], "if")
            else:
                steps, t = timed(device, _rif_steps, ti, removed)
            undefined = int((~np.isfinite(steps).all(1)).sum())
            est = test_loss_changes(model, ce, np.nan_to_num(steps), Xt, yt)
            est[~np.isfinite(steps).all(1)] = np.nan
            row = {"curvature": curvature, "solver": solver, **{k: v for k, v in extra.items()
                                                                 if k == "rank"},
                   "method": method, **agreement(est, truth), "undefined_samples": undefined,
                   "seconds": t_fit + t}
            rows.append(row)
            print(f"[reference] {curvature:7s} {solver:7s} {extra.get('rank', '')!s:>5s} {method:3s} "
                  f"pearson {row['pearson']:.3f}  Spearman {row['spearman']:.3f}  slope {row['slope']:.3f}  "
                  f"median rel. error {row['median_rel_error']:.3f}  undefined {undefined}")
    rows += dattri_reference(model, X, y, Xt, yt, removed, truth, mu)
    return rows


def dattri_reference(model, X, y, Xt, yt, removed, truth, mu):
    """dattri's attributors on the reference MLP against the same exact retrains (when importable).

    dattri scores the removed samples against the test samples with the loss
    sum_i CE_i (its ``regularization`` adds mu I to the Hessian), one batch
    holding the whole training set (its inverse-Hessian products are summed over
    batches, right only with one batch); a score is the predicted change of the
    test loss after removal, rif's sign. TRAK and TracIn have their own scale,
    so only their correlations are comparable.
    """
    if importlib.util.find_spec("dattri") is None:
        print("[reference] dattri is not importable: its comparison is skipped "
              "(pip install --no-deps dattri to include it)")
        return []
    import copy
    import os

    os.environ.setdefault("TQDM_DISABLE", "1")          # dattri's progress bars
    from dattri.algorithm.influence_function import IFAttributorCG, IFAttributorEKFAC, IFAttributorExplicit
    from dattri.algorithm.tracin import TracInAttributor
    from dattri.algorithm.trak import TRAKAttributor
    from dattri.task import AttributionTask
    from torch.utils.data import DataLoader, TensorDataset

    net = copy.deepcopy(model).cpu()
    X, y, Xt, yt = X.cpu(), y.cpu(), Xt.cpu(), yt.cpu()

    def loss_func(params, data):
        x, t = data
        return torch.nn.functional.cross_entropy(torch.func.functional_call(net, params, (x,)), t,
                                                 reduction="sum")

    def proba_func(params, data):
        x, t = data
        p = torch.softmax(torch.func.functional_call(net, params, (x,)), dim=-1)
        return p.reshape(-1, p.shape[-1]).gather(1, t.reshape(-1, 1)).sum()

    task = AttributionTask(loss_func=loss_func, model=net, checkpoints=net.state_dict())
    full = DataLoader(TensorDataset(X, y), batch_size=len(y))
    removed_loader = DataLoader(TensorDataset(X[removed], y[removed]), batch_size=len(removed))
    test = DataLoader(TensorDataset(Xt, yt), batch_size=len(yt))
    attributors = {
        "explicit IF": lambda: IFAttributorExplicit(task, regularization=mu),
        "CG IF, 300 iterations": lambda: IFAttributorCG(task, max_iter=300, regularization=mu),
        "EK-FAC": lambda: IFAttributorEKFAC(task, damping=mu / len(y)),
        "TRAK": lambda: TRAKAttributor(task, correct_probability_func=proba_func,
                                       projector_kwargs={"proj_dim": 512, "device": "cpu"}),
        "TracIn": lambda: TracInAttributor(task, weight_list=torch.ones(1), normalized_grad=False),
    }
    rows = []
    for name, make in attributors.items():
        try:
            start = time.perf_counter()
            att = make()
            if isinstance(att, TracInAttributor):
                att.cache()
            else:
                att.cache(full)
            if isinstance(att, TRAKAttributor):        # scores the cached training set; rows selected
                S = att.attribute(test)[torch.as_tensor(removed)]
            else:
                S = att.attribute(removed_loader, test)
            est = np.asarray(S.detach().cpu().double().numpy())
            seconds = time.perf_counter() - start
        except Exception as exc:          # a third-party method that fails here is reported, not fatal
            print(f"[reference] dattri {name}: failed ({type(exc).__name__}: {exc})")
            continue
        row = {"library": "dattri", "method": name, **agreement(est, truth), "seconds": seconds}
        rows.append(row)
        print(f"[reference] dattri {name:22s} pearson {row['pearson']:.3f}  slope {row['slope']:.3f}  "
              f"median rel. error {row['median_rel_error']:.3f}  Spearman {row['spearman']:.3f}")
    return rows


def _rif_steps(ti, removed):
    """RIF steps of single samples; NaN rows where the leave-one-out system is not positive definite."""
    rows = []
    for i in removed:
        try:
            rows.append(ti.params_change([i], "rif"))
        except ValueError:          # SingularHessianError / NearSingularLeverageError
            rows.append(np.full(ti.n_params_, np.nan))
    return np.stack(rows)


# -- data and networks of parts 2 and 3 ------------------------------------------------------
def image_data(n_train, n_test, seed=0):
    """Digits upscaled to 16 x 16, randomly shifted by up to 2 pixels, with Gaussian noise."""
    X, y, Xt, yt, _ = dc.digits(None, None, seed=seed, image=True)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)

    def augment(X, y, n):
        idx = rng.integers(0, len(y), n)
        up = torch.nn.functional.interpolate(X[idx].float(), size=(16, 16), mode="bilinear", align_corners=False)
        shifts = rng.integers(-2, 3, size=(n, 2))
        out = torch.stack([torch.roll(img, (int(a), int(b)), dims=(1, 2)) for img, (a, b) in zip(up, shifts)])
        return out + 0.05 * torch.randn(out.shape, generator=gen), y[idx]
    Xa, ya = augment(X, y, n_train)
    Xb, yb = augment(Xt, yt, n_test)
    return Xa, ya, Xb, yb


def cnn(c1, c2, hidden, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, c1, 3, padding=1), torch.nn.ReLU(), torch.nn.AvgPool2d(2),
        torch.nn.Conv2d(c1, c2, 3, padding=1), torch.nn.ReLU(), torch.nn.AvgPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(c2 * 16, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 10))


def train_cnn(model, X, y, epochs, wd, seed=0, batch=128, lr=2e-3):
    """Adam on mini-batches of the mean loss + (wd/2)||theta||^2 (sum form: mu = n wd)."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=gen)
        for start in range(0, len(y), batch):
            idx = perm[start:start + batch]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(X[idx]), y[idx])
            loss = loss + 0.5 * wd * sum((p ** 2).sum() for p in model.parameters())
            loss.backward()
            opt.step()
    return model


# -- 2. a small copy of the CNN against the exact GNH -----------------------------------------
def small(args, device):
    q = args.quick
    n_train, n_test = (80, 5) if q else (1000, 50)
    X, y, Xt, yt = image_data(n_train, n_test, seed=args.seed)
    model = train_cnn(cnn(2, 2, 8, seed=args.seed) if q else cnn(4, 8, 32, seed=args.seed), X, y,
                      epochs=3 if q else 20, wd=1e-3)
    mu = 1e-3 * n_train
    model, X, y, Xt, yt = model.to(device), X.to(device), y.to(device), Xt.to(device), yt.to(device)
    common = dict(damping=0.1, weight_decay=mu, device=device, stationarity_tol=None)
    exact = TorchInfluence(model, "cross_entropy", (X, y), solver="exact", dtype=torch.float64, **common).fit()
    ref = {m: exact.scores(Xt, yt, method=m, linear=True) for m in ("if", "rif")}
    p = exact.n_params_
    print(f"[small] CNN p = {p}, n = {n_train}, exact damped-GNH reference (damping 0.1 x mean eigenvalue)")
    rows = []
    configs = [("ekfac", {}), ("kfac", {}), ("lowrank", {"rank": min(p, 20 if q else 200)})]
    for solver, extra in configs:
        ti, t_fit = timed(device, TorchInfluence(model, "cross_entropy", (X, y), solver=solver, **common,
                                                 **extra).fit)
        for m in ("if", "rif"):
            S, t = timed(device, ti.scores, Xt, yt, method=m, linear=True)
            rows.append({"solver": solver, **extra, "method": m, "spearman_vs_exact": per_column_spearman(S, ref[m]),
                         "pearson_vs_exact": float(pearsonr(S.ravel(), ref[m].ravel())[0]), "seconds": t_fit + t})
            print(f"[small] {solver:8s} {m:3s} Spearman vs exact {rows[-1]['spearman_vs_exact']:.3f}  "
                  f"Pearson {rows[-1]['pearson_vs_exact']:.3f}  {rows[-1]['seconds']:.1f}s")
    if kronfluence_available():
        K, stats = kronfluence_ekfac(model, X, y, Xt, yt, exact.shift_ / n_train, device, batch_size=64,
                                     seed=args.seed)
        rows.append({"library": "kronfluence", "solver": "ekfac", "method": "if",
                     "spearman_vs_exact": per_column_spearman(K, ref["if"]),
                     "pearson_vs_exact": float(pearsonr(K.ravel(), ref["if"].ravel())[0]),
                     "seconds": stats["fit_seconds"] + stats["scores_seconds"]})
        print(f"[small] Kronfluence EK-FAC IF (damping (lambda + mu) / n on its mean curvature) Spearman vs exact "
              f"{rows[-1]['spearman_vs_exact']:.3f}  Pearson {rows[-1]['pearson_vs_exact']:.3f}  "
              f"{rows[-1]['seconds']:.1f}s")
    else:
        print("[small] kronfluence is not importable: its comparison is skipped")
    for k in ((1024,) if q else (256, 4096)):
        for m in ("if", "rif"):
            S = exact.scores(Xt, yt, method=m, linear=True, projection=k)
            err = float(np.linalg.norm(S - ref[m]) / np.linalg.norm(ref[m]))
            rows.append({"solver": "exact", "projection": k, "method": m, "relative_error_vs_unprojected": err,
                         "spearman_vs_exact": per_column_spearman(S, ref[m])})
            print(f"[small] projected k={k:<5d} {m:3s} relative error vs unprojected {err:.3f}  "
                  f"Spearman {rows[-1]['spearman_vs_exact']:.3f}")
    return rows


# -- Kronfluence's EK-FAC on the same model and data (when importable) -----------------------
class _RSSPeak:
    """Peak resident memory of the process during a block, sampled every 20 ms from /proc."""

    def __init__(self):
        self.peak_mb = float("nan")

    def _rss_mb(self):
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * resource.getpagesize() / 2 ** 20
        except OSError:
            return float("nan")

    def __enter__(self):
        import threading

        self._stop = threading.Event()
        self.peak_mb = self._rss_mb()

        def sample():
            while not self._stop.wait(0.02):
                self.peak_mb = max(self.peak_mb, self._rss_mb())
        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, self._rss_mb())


def kronfluence_available():
    return importlib.util.find_spec("kronfluence") is not None


def kronfluence_ekfac(model, X, y, Xt, yt, damping, device, batch_size=64, seed=0):
    """Kronfluence's EK-FAC IF scores of every (train, test) pair, shape (n_train, n_test), rif's orientation.

    Kronfluence's curvature is a mean over samples, (1/n) sum_i F_i, with the
    true Fisher estimated from one label per sample drawn from the model's
    softmax (``FactorArguments(strategy="ekfac")``; rif's GNH is the same
    matrix's exact expectation), and its damping is added to that mean. So
    ``damping`` here is the mean-form value: rif's sum-form shift (lambda + mu)
    divided by n, which makes (F_mean + damping)^-1 = n (F_sum + lambda + mu)^-1.
    A Kronfluence pairwise score is g_testᵀ (F_mean + damping)^-1 g_train with
    the gradients of the per-sample losses: positive for a training sample
    whose removal raises the test loss, rif's sign, and n times rif's scale.
    Returns the scores and, per stage (factor fit, scores), seconds and the
    peak resident memory (or the peak device allocation on CUDA).
    """
    import copy
    import logging
    import os
    import tempfile

    os.environ.setdefault("TQDM_DISABLE", "1")
    from kronfluence.analyzer import Analyzer, prepare_model
    from kronfluence.arguments import FactorArguments, ScoreArguments
    from kronfluence.task import Task
    from torch.utils.data import TensorDataset

    class CrossEntropyTask(Task):
        def compute_train_loss(self, batch, model, sample=False):
            x, t = batch
            logits = model(x)
            if sample:      # the true Fisher: labels drawn from the model's own predictions
                with torch.no_grad():
                    t = torch.multinomial(torch.softmax(logits.detach(), -1), 1).flatten()
            return torch.nn.functional.cross_entropy(logits, t, reduction="sum")

        def compute_measurement(self, batch, model):
            x, t = batch
            return torch.nn.functional.cross_entropy(model(x), t, reduction="sum")

    torch.manual_seed(seed)
    net = prepare_model(copy.deepcopy(model).eval(), CrossEntropyTask())
    train, test = TensorDataset(X, y), TensorDataset(Xt, yt)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        analyzer = Analyzer("rif_deep_scale", net, CrossEntropyTask(), cpu=device.type != "cuda",
                            disable_tqdm=True, output_dir=tmp, log_level=logging.WARNING)
        for stage, run in (
                ("fit", lambda: analyzer.fit_all_factors(
                    "ekfac", train, per_device_batch_size=batch_size,
                    factor_args=FactorArguments(strategy="ekfac"), overwrite_output_dir=True)),
                ("scores", lambda: analyzer.compute_pairwise_scores(
                    "scores", "ekfac", test, train, per_device_query_batch_size=len(yt),
                    per_device_train_batch_size=batch_size,
                    score_args=ScoreArguments(damping_factor=float(damping)), overwrite_output_dir=True))):
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            with _RSSPeak() as mem, warnings.catch_warnings():
                warnings.filterwarnings("ignore", category=FutureWarning)       # its torch.cuda.amp calls
                _, out[f"{stage}_seconds"] = timed(device, run)
            out[f"peak_memory_mb_{stage}"] = peak_memory_mb(device) if device.type == "cuda" else mem.peak_mb
        scores = analyzer.load_pairwise_scores("scores")["all_modules"]
    out["threads"] = torch.get_num_threads()
    return scores.T.detach().cpu().double().numpy(), out


# -- 3. the ~1M-parameter CNN ------------------------------------------------------------------
def scale(args, device):
    q = args.quick
    n_train, n_test = (200, 5) if q else (10000, 100)
    X, y, Xt, yt = image_data(n_train, n_test, seed=args.seed)
    net = cnn(2, 4, 16, seed=args.seed) if q else cnn(32, 64, 1024, seed=args.seed)
    model, t_train = timed(torch.device("cpu"), train_cnn, net, X, y, epochs=2 if q else 4, wd=1e-4)
    mu = 1e-4 * n_train
    with torch.no_grad():
        acc = float((model(Xt).argmax(1) == yt).float().mean())
    model, X, y, Xt, yt = model.to(device), X.to(device), y.to(device), Xt.to(device), yt.to(device)
    p = sum(t.numel() for t in model.parameters())
    print(f"[scale] CNN p = {p}, {n_train} train x {n_test} test images, trained in {t_train:.0f}s "
          f"(test accuracy {acc:.3f}); torch threads {torch.get_num_threads()}, device {device}")
    out = {"n_params": p, "n_train": n_train, "n_test": n_test, "threads": torch.get_num_threads(),
           "device": str(device), "peak_memory_mb_before": peak_memory_mb(device)}
    ti = TorchInfluence(model, "cross_entropy", (X, y), solver="ekfac", damping=0.1, weight_decay=mu,
                        device=device, dtype=torch.float32, batch_size=64 if not q else 32,
                        stationarity_tol=None)
    with _RSSPeak() as mem:
        _, out["fit_seconds"] = timed(device, ti.fit)
    out["peak_memory_mb_fit"] = peak_memory_mb(device)
    out["stage_peak_rss_mb_fit"] = mem.peak_mb
    out["fit_train_samples_per_second"] = n_train / out["fit_seconds"]
    S = {}
    for m in ("if", "rif"):
        with _RSSPeak() as mem:
            S[m], out[f"{m}_seconds"] = timed(device, ti.scores, Xt, yt, method=m, linear=True)
        out[f"{m}_train_samples_per_second"] = n_train / out[f"{m}_seconds"]
        out[f"peak_memory_mb_{m}"] = peak_memory_mb(device)
        out[f"stage_peak_rss_mb_{m}"] = mem.peak_mb
    out["rif_over_if_time"] = out["rif_seconds"] / out["if_seconds"]
    out["spearman_rif_vs_if"] = per_column_spearman(S["rif"], S["if"])
    out["finite"] = bool(np.isfinite(S["if"]).all() and np.isfinite(S["rif"]).all())
    out["n_by_p_gigabytes_avoided"] = n_train * p * 4 / 2 ** 30
    print(f"[scale] EK-FAC fit {out['fit_seconds']:.1f}s; IF {out['if_seconds']:.1f}s "
          f"({out['if_train_samples_per_second']:.0f} train samples/s), RIF {out['rif_seconds']:.1f}s "
          f"({out['rif_train_samples_per_second']:.0f}/s): RIF / IF = {out['rif_over_if_time']:.2f}; "
          f"peak memory (MB) fit {out['peak_memory_mb_fit']:.0f}, IF {out['peak_memory_mb_if']:.0f}, "
          f"RIF {out['peak_memory_mb_rif']:.0f} (an n x p float32 gradient matrix would be "
          f"{out['n_by_p_gigabytes_avoided']:.1f} GiB)")
    out["kronfluence"] = kronfluence_scale(model, X, y, Xt, yt, ti, S, out, device, batch_size=64 if not q else 32,
                                           seed=args.seed)
    out["dattri_available"] = importlib.util.find_spec("dattri") is not None
    print(f"[scale] dattri {'is importable' if out['dattri_available'] else 'is not importable'}; this part "
          f"has no dattri adapter (dattri is compared on the reference MLP)")
    return out


def kronfluence_scale(model, X, y, Xt, yt, ti, S, ours, device, batch_size, seed):
    """Kronfluence's EK-FAC fit and pairwise IF scores beside rif's, with the damping matched."""
    out = {"available": kronfluence_available()}
    if not out["available"]:
        print("[scale] kronfluence is not importable: its comparison is skipped "
              "(pip install --no-deps kronfluence accelerate, and its pure-Python dependencies, to include it)")
        return out
    n = len(y)
    damping = ti.shift_ / n
    K, stats = kronfluence_ekfac(model, X, y, Xt, yt, damping, device, batch_size=batch_size, seed=seed)
    out.update(stats)
    out["damping_mean_form"] = damping
    out["damping_convention"] = ("Kronfluence adds its damping to the mean curvature (1/n) sum_i F_i; rif adds "
                                 "lambda + mu to the sum: Kronfluence damping = (lambda + mu) / n")
    out["sign_convention"] = ("both: g_test^T H^-1 g_train, positive when removing the training sample raises "
                              "the test loss; Kronfluence's scores are n times rif's (mean vs sum curvature)")
    for stage in ("fit", "scores"):
        out[f"{stage}_train_samples_per_second"] = n / out[f"{stage}_seconds"]
    out["finite"] = bool(np.isfinite(K).all())
    out["spearman_vs_rif_ekfac_if"] = per_column_spearman(K, S["if"])
    out["spearman_vs_rif_ekfac_rif"] = per_column_spearman(K, S["rif"])
    out["pearson_vs_rif_ekfac_if"] = float(pearsonr(K.ravel(), S["if"].ravel())[0])
    out["scale_vs_n_times_rif_if"] = float(np.median(K / (n * S["if"])))
    out["rif_if_over_kronfluence_scores_time"] = ours["if_seconds"] / out["scores_seconds"]
    out["rif_rif_over_kronfluence_scores_time"] = ours["rif_seconds"] / out["scores_seconds"]
    out["rif_fit_plus_if_over_kronfluence_fit_plus_scores_time"] = (
        (ours["fit_seconds"] + ours["if_seconds"]) / (out["fit_seconds"] + out["scores_seconds"]))
    print(f"[scale] Kronfluence EK-FAC (sampled-label Fisher, mean-form damping {damping:.3g} = rif's "
          f"(lambda + mu) / n; same sign as rif, n x its scale): fit {out['fit_seconds']:.1f}s "
          f"({out['fit_train_samples_per_second']:.0f} samples/s, peak RSS {out['peak_memory_mb_fit']:.0f} MB), "
          f"scores {out['scores_seconds']:.1f}s ({out['scores_train_samples_per_second']:.0f} train samples/s, "
          f"peak RSS {out['peak_memory_mb_scores']:.0f} MB)")
    print(f"[scale] rif stage peaks (same sampler): fit {ours['stage_peak_rss_mb_fit']:.0f} MB, IF "
          f"{ours['stage_peak_rss_mb_if']:.0f} MB, RIF {ours['stage_peak_rss_mb_rif']:.0f} MB; time rif IF / "
          f"Kronfluence scores {out['rif_if_over_kronfluence_scores_time']:.2f}, rif RIF / Kronfluence scores "
          f"{out['rif_rif_over_kronfluence_scores_time']:.2f}, rif fit + IF / Kronfluence fit + scores "
          f"{out['rif_fit_plus_if_over_kronfluence_fit_plus_scores_time']:.2f}")
    print(f"[scale] Spearman (per test image, averaged) Kronfluence EK-FAC vs rif EK-FAC IF "
          f"{out['spearman_vs_rif_ekfac_if']:.3f}, vs rif EK-FAC RIF {out['spearman_vs_rif_ekfac_rif']:.3f}; "
          f"Pearson vs IF {out['pearson_vs_rif_ekfac_if']:.3f}; median Kronfluence / (n x rif IF) "
          f"{out['scale_vs_n_times_rif_if']:.3f}")
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: every code path in seconds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--parts", default="reference,small,scale")
    parser.add_argument("--output", default=str(OUTPUT / "deep_scale.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    parts = [s.strip() for s in args.parts.split(",") if s.strip()]
    unknown = set(parts) - {"reference", "small", "scale"}
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}")
    results = {"quick": args.quick, "torch": torch.__version__}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.script.*")
        for part in parts:
            results[part] = {"reference": reference, "small": small, "scale": scale}[part](args, device)
    path = Path(args.output)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1))
    print(f"wrote {path}")
    return results


if __name__ == "__main__":
    main()
