"""Shared helpers of the deep experiments: digits data, small networks, training, output paths.

Not a library module: imported by experiments/deep_*.py and benchmarks/deep_*.py.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

OUTPUT = Path(__file__).resolve().parent / "output"


def output_dir():
    OUTPUT.mkdir(parents=True, exist_ok=True)
    return OUTPUT


def parser(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="a small, fast configuration")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--device", default="cpu")
    return p


def digits(n_train=None, n_test=None, seed=0, image=False, flip=0.0):
    """sklearn's digits scaled to [0, 1]: (X_train, y_train, X_test, y_test, flipped mask).

    ``flip`` relabels that fraction of the training labels to a different random class.
    """
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float64)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=seed, stratify=y)
    if n_train:
        Xtr, ytr = Xtr[:n_train], ytr[:n_train]
    if n_test:
        Xte, yte = Xte[:n_test], yte[:n_test]
    flipped = np.zeros(len(ytr), dtype=bool)
    if flip > 0:
        rng = np.random.default_rng(seed + 1)
        idx = rng.choice(len(ytr), size=int(round(flip * len(ytr))), replace=False)
        ytr = ytr.copy()
        ytr[idx] = (ytr[idx] + rng.integers(1, 10, size=len(idx))) % 10
        flipped[idx] = True
    shape = (-1, 1, 8, 8) if image else (-1, 64)
    t = lambda a: torch.tensor(a.reshape(shape), dtype=torch.float64)  # noqa: E731
    return t(Xtr), torch.tensor(ytr), t(Xte), torch.tensor(yte), flipped


def mlp(hidden=32, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(64, hidden), torch.nn.Tanh(),
                               torch.nn.Linear(hidden, 10)).double()


def cnn(channels=8, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, channels, 3, padding=1), torch.nn.ReLU(), torch.nn.AvgPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(channels * 16, 10)).double()


def train(model, X, y, steps=600, lr=0.02, weight_decay=1e-3, polish=0):
    """Full-batch Adam on the mean cross-entropy with weight decay; returns (model, seconds).

    The objective is the mean loss + (wd/2)||theta||^2, i.e. the sum form
    sum_i l_i + (mu/2)||theta||^2 with mu = n * wd (pass ``weight_decay=mu``
    to TorchInfluence). ``polish`` > 0 adds that many L-BFGS iterations on it,
    so that theta^ is (nearly) stationary, as the influence estimates assume.
    """
    start = time.perf_counter()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    params = list(model.parameters())

    def objective():
        return torch.nn.functional.cross_entropy(model(X), y) + 0.5 * weight_decay * sum(
            (p ** 2).sum() for p in params)

    for _ in range(steps):
        opt.zero_grad()
        objective().backward()
        opt.step()
    if polish:
        lbfgs = torch.optim.LBFGS(params, max_iter=polish, tolerance_grad=1e-12, tolerance_change=0,
                                  history_size=50, line_search_fn="strong_wolfe")

        def closure():
            lbfgs.zero_grad()
            value = objective()
            value.backward()
            return value
        lbfgs.step(closure)
    return model, time.perf_counter() - start


def accuracy(model, X, y):
    with torch.no_grad():
        return float((model(X).argmax(1) == y).double().mean())


def write_csv(path, rows):
    import csv

    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def spearman(a, b):
    from scipy.stats import spearmanr

    a, b = np.ravel(a), np.ravel(b)
    ok = np.isfinite(a) & np.isfinite(b)
    return float(spearmanr(a[ok], b[ok])[0])
