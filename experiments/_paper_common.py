"""Shared parts of experiments/paper_fig*.py: arguments, data, the paper's protocol, cache, output.

Not a library module. The protocol (Rubinstein & Hopkins, after Koh et al. 2019):

* binary logistic regression on fixed features, no intercept, objective
  (1/n) sum_i l_i + (lam/2)||theta||^2, i.e.
  ``rif.GLMProblem(X, y, "binomial", penalty=lam, penalty_scaling="per_sample", fit_intercept=False)``;
* removal-set sizes spread linearly from 0.1 % to 5 % of n;
* the test subset: the 50 highest-loss test points and 50 random others;
* metrics: total probability of the true class on the subset ("proba"), total
  loss on the subset ("loss"), training loss over all n samples ("train_loss");
* ground truth: the exact refit (``method="retrain"``, to rif's default 1e-10).

Every removal set's parameter change is computed once per method (one batch of
lockstep refits for the ground truth) and then fed to each metric through
``effect(..., dtheta=...)``; nothing is refitted twice. Results are cached under
``experiments/output/cache/`` by a hash of everything that determines them, so
an interrupted run resumes where it stopped.
"""

import argparse
import csv
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np

import rif
from rif import datasets

ROOT = Path(__file__).resolve().parent
OUTPUT = ROOT / "output"
METHODS = ("if", "rif", "newton")
METRICS = ("proba", "loss", "train_loss")
STRATEGIES = ("random", "nearest", "feature", "high_pos_loss", "high_neg_loss", "high_pos_proba",
              "high_neg_proba")
FULL_DATASETS = tuple(datasets.PAPER_SHAPES) + ("breast_cancer", "digits_3_8", "digits_cnn")
QUICK_DATASETS = ("esc50_small", "breast_cancer", "digits_3_8")
# --quick: a paper-like generator at a small shape (n/d as ESC-50's)
QUICK_SHAPES = {"esc50_small": ("esc50", 300, 96)}


def output_dir(args=None):
    out = Path(args.out) if args is not None and args.out else OUTPUT
    out.mkdir(parents=True, exist_ok=True)
    return out


def parser(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="small shapes, finishes in well under a minute")
    p.add_argument("--data", metavar="PATH.npz", action="append",
                   help="your own embeddings (keys X_train, y_train, X_test, y_test); repeatable; "
                        "replaces the built-in data sets")
    p.add_argument("--datasets", nargs="+", metavar="NAME",
                   help=f"built-in data sets to run (default: all; names {datasets.NAMES})")
    p.add_argument("--max-n", action="append", default=None, metavar="[NAME=]N",
                   help="subsample the training set to at most N samples: every data set's (N) or one "
                        "data set's (NAME=N, repeatable); for a documented smaller run")
    p.add_argument("--cached-only", action="store_true",
                   help="use only batches already in the cache and skip the rest (assemble a partial run)")
    p.add_argument("--lam", type=float, default=1e-3, help="L2 strength lambda (default 1e-3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="output folder (default experiments/output)")
    p.add_argument("--cache", default=None, metavar="DIR", help="cache folder (default OUT/cache)")
    p.add_argument("--no-cache", action="store_true", help="recompute everything")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def max_n(args, name):
    """The --max-n that applies to data set ``name`` (None: full size)."""
    value = None
    for item in args.max_n or []:
        key, _, number = item.rpartition("=")
        if key in ("", name):
            try:
                value = int(number)
            except ValueError:
                raise SystemExit(f"--max-n takes N or NAME=N with an integer N, got {item!r}") from None
            if value < 2:
                raise SystemExit(f"--max-n must be at least 2, got {item!r}")
    return value


def torch_available():
    try:
        import importlib.util

        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


def dataset_names(args, full=FULL_DATASETS, quick=QUICK_DATASETS):
    """The data sets to run, in order: --data files, else --datasets, else the defaults."""
    if args.data:
        return list(args.data)
    names = list(args.datasets) if args.datasets else list(quick if args.quick else full)
    if "digits_cnn" in names and not torch_available():
        print("digits_cnn skipped: torch is not installed (pip install 'rif[torch]')")
        names.remove("digits_cnn")
    return names


def load(name, seed=0, n=None):
    """A Dataset by name (a built-in, a --quick shape, or a .npz path); ``n`` subsamples the training set."""
    if name in QUICK_SHAPES:
        base, nn, d = QUICK_SHAPES[name]
        D = datasets.make_paper_like(base, n=nn, d=d, seed=seed)
        D = D._replace(name=name)
    else:
        D = datasets.load(name, seed=seed)
    if n is not None and n < len(D.y_train):
        rng = np.random.default_rng(seed + 12345)
        keep = np.sort(rng.choice(len(D.y_train), size=n, replace=False))
        D = D._replace(X_train=D.X_train[keep], y_train=D.y_train[keep], name=f"{D.name}_n{n}")
    return D


def fit(X, y, lam, progress=False, theta=None):
    return rif.GLMProblem(X, y, "binomial", theta=theta, penalty=lam, penalty_scaling="per_sample",
                          fit_intercept=False, progress=progress)


def sizes(n, count=40):
    """``count`` removal-set sizes spread linearly from 0.1 % to 5 % of n (at least 1)."""
    return np.unique(np.maximum(1, np.round(np.linspace(0.001 * n, 0.05 * n, count)).astype(int)))


def test_subset(problem, X_test, y_test, rng, n_high=50, n_random=50):
    """Indices of the ``n_high`` highest-loss test points and ``n_random`` random others."""
    m = len(y_test)
    n_high = min(n_high, m // 2)
    eta = X_test @ problem.theta
    loss = problem.family.loss(eta, y_test)
    order = np.argsort(-loss, kind="stable")
    high = order[:n_high]
    rest = order[n_high:]
    others = rng.choice(rest, size=min(n_random, rest.size), replace=False)
    return np.concatenate([high, np.sort(others)])


def top(score, count):
    """Indices of the ``count`` largest scores, by a full sort (ties broken by index)."""
    order = np.argsort(-np.asarray(score), kind="stable")[:count]
    # the true top: nothing outside is larger than the smallest selected score
    assert count == 0 or count >= len(score) or np.max(np.delete(score, order)) <= np.min(score[order])
    return order


def removal_sets(problem, X, X_sub, y_sub, ks, strategies, rng):
    """{strategy: [index arrays, one per size k]} for the paper's strategies.

    random: k uniform; nearest: the k nearest (Euclidean) to a random training
    point (a new anchor per set); feature: the k largest values of one random
    feature; high_{pos,neg}_{loss,proba}: a random k of the top 2k training
    points by IF-predicted effect of removing each alone on the subset's total
    loss / probability (pos: largest effect, neg: most negative).
    """
    n = X.shape[0]
    scores = {}
    for metric in ("loss", "proba"):
        if any(s.endswith(metric) and s.startswith("high") for s in strategies):
            scores[metric] = problem.scores(X_sub, y_sub, target=metric, method="if", linear=True).sum(axis=1)
    out = {}
    for s in strategies:
        sets = []
        for k in ks:
            if s == "random":
                idx = rng.choice(n, size=k, replace=False)
            elif s == "nearest":
                anchor = X[rng.integers(n)]
                dist = np.einsum("ij,ij->i", X - anchor, X - anchor)
                idx = top(-dist, k)
            elif s == "feature":
                idx = top(X[:, rng.integers(X.shape[1])], k)
            else:
                _, sign, metric = s.split("_")
                score = scores[metric] if sign == "pos" else -scores[metric]
                idx = rng.choice(top(score, min(2 * k, n)), size=k, replace=False)
            sets.append(np.sort(idx))
        out[s] = sets
    return out


# -- cache ----------------------------------------------------------------------
def cache_path(args, kind, **key):
    blob = json.dumps(key, sort_keys=True, default=str).encode()
    digest = hashlib.sha1(blob).hexdigest()[:16]
    folder = Path(args.cache) if args.cache else output_dir(args) / "cache"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{kind}_{digest}.npz"


class NotCached(Exception):
    """Raised by :func:`cached` under ``cached_only`` for a batch not in the cache."""


def cached(path, compute, use_cache=True, cached_only=False):
    """np.load(path) if it exists, else compute() -> dict of arrays, saved atomically."""
    if use_cache and path.exists():
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data}
    if cached_only:
        raise NotCached(path.name)
    result = compute()
    tmp = path.with_name(path.stem + f".tmp{os.getpid()}.npz")
    np.savez(tmp, **result)
    os.replace(tmp, path)
    return result


def file_key(name):
    """What identifies a data set in a cache key (a .npz file by its size and modification time)."""
    if name.endswith(".npz"):
        st = Path(name).stat()
        return f"{Path(name).resolve()}:{st.st_size}:{st.st_mtime_ns}"
    return name


def all_changes(problem, sets, progress):
    """{method: (n_sets, p)} for IF, RIF, NS and the exact refit, each as one batch."""
    out = {m: problem.params_change(sets, method=m) for m in METHODS}
    problem.progress = progress
    out["retrain"] = problem.params_change(sets, method="retrain")
    problem.progress = False
    return out


def effects(problem, sets, changes, X_sub, y_sub, metrics=METRICS):
    """{(metric, method): (n_sets,)} from the given parameter changes (no refits)."""
    out = {}
    for metric in metrics:
        XY = (None, None) if metric == "train_loss" else (X_sub, y_sub)
        for m, dtheta in changes.items():
            out[metric, m] = problem.effect(sets, target=metric, X=XY[0], y=XY[1], dtheta=dtheta)
    return out


# -- statistics and output ----------------------------------------------------------
def summary_stats(actual, predicted):
    """Pearson r, OLS slope of predicted on actual, median |pred - actual| / |actual|."""
    a, p = np.asarray(actual, float), np.asarray(predicted, float)
    ok = np.isfinite(a) & np.isfinite(p)
    a, p = a[ok], p[ok]
    if a.size < 3 or np.std(a) == 0 or np.std(p) == 0:
        return dict(pearson_r=np.nan, slope=np.nan, median_rel_err=np.nan)
    r = float(np.corrcoef(a, p)[0, 1])
    slope = float(np.cov(a, p)[0, 1] / np.var(a, ddof=1))
    nz = a != 0
    med = float(np.median(np.abs(p[nz] - a[nz]) / np.abs(a[nz])))
    return dict(pearson_r=r, slope=slope, median_rel_err=med)


def write_csv(path, rows):
    if not rows:
        raise SystemExit(f"nothing to write to {path} (with --cached-only: nothing cached yet)")
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def markdown_table(rows, columns, formats=None):
    formats = formats or {}
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for c in columns:
            v = row[c]
            f = formats.get(c)
            cells.append(format(float(v), f) if f and v not in ("", None) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def progress_bar(iterable, args, **kw):
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=args.no_progress, **kw)


class Timer:
    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
