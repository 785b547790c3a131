"""The stationarity check, the automatic solver and torch's thread count on a digits MLP.

An MLP 64-16-10 (p = 1210) is trained on 400 of sklearn's digits with the
recipe of ``experiments/deep_lds.py`` (Adam on the mean cross-entropy with
weight decay wd = 1e-3, then 500 L-BFGS iterations), i.e. it is stationary for
the sum-form weight decay mu = n * wd. The script then

1. fits ``TorchInfluence`` with ``weight_decay`` = mu (right), wd (the mean-form
   value, n times too small) and 0 (missing), and prints the stationarity
   statistic r and the cause each warning names;
2. prints the solver ``solver="auto"`` picks and the time of all-sample RIF
   scores for 20 test digits with it;
3. times the same scores with torch on one thread (rif.deep's choice for
   p < 2048) and on every CPU this process may use.

    python benchmarks/deep_settings.py
"""

import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

import deep_common as dc  # noqa: E402
from rif import _parallel  # noqa: E402
from rif.deep import StationarityWarning, TorchInfluence  # noqa: E402
from rif.deep import _influence, _solvers, _threads  # noqa: E402


def main():
    X, y, Xt, yt, _ = dc.digits(400, 20, seed=0)
    X, y, Xt, yt = (torch.as_tensor(a) for a in (X, y, Xt, yt))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    model, seconds = dc.train(dc.mlp(hidden=16, seed=0), X, y, weight_decay=1e-3, polish=500)
    torch.set_num_threads(before)
    n, wd = len(y), 1e-3
    print(f"MLP 64-16-10 on {n} digits, trained in {seconds:.1f}s (mean loss + wd/2 ||theta||^2, wd = {wd:g})")
    for value, label in ((n * wd, "n * wd (right)"), (wd, "wd (mean form)"), (0.0, "0 (missing)")):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ti = TorchInfluence(model, "cross_entropy", (X, y), damping=0.1, weight_decay=value,
                                dtype=torch.float64).fit()
        messages = [str(w.message) for w in caught if issubclass(w.category, StationarityWarning)]
        cause = messages[0].split("Likely cause: ")[1].split(". ")[0] if messages else "no warning"
        print(f"  weight_decay = {label:15s} r = {ti.stationarity_:.2e}  {cause}")
    ti = TorchInfluence(model, "cross_entropy", (X, y), damping=0.1, weight_decay=n * wd,
                        dtype=torch.float64).fit()
    start = time.perf_counter()
    S = ti.scores(Xt, yt, method="rif")
    print(f"solver='auto' picks {ti.solver_name_!r}: all-sample RIF scores {S.shape} in "
          f"{time.perf_counter() - start:.2f}s on {_threads.thread_count(ti.n_params_)} torch thread(s)")
    many = _parallel.available_threads()
    for module in (_influence, _solvers):        # override rif.deep's choice, for the comparison only
        module.thread_count = lambda p: many
    start = time.perf_counter()
    S_many = ti.scores(Xt, yt, method="rif")
    print(f"the same with torch on {many} threads: {time.perf_counter() - start:.2f}s "
          f"(largest difference {float(np.abs(S_many - S).max()):.1e})")


if __name__ == "__main__":
    main()
