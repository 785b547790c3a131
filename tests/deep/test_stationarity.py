"""Stationarity check at fit time: each way of describing the objective wrongly warns, and says which."""

import re
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from deep_helpers import IGNORE_JIT, classification_data, tiny_mlp  # noqa: E402
from deep_helpers import one_torch_thread  # noqa: E402, F401 (autouse fixture)
from rif.deep import StationarityWarning, TorchInfluence  # noqa: E402
from rif.deep._stationarity import stationarity  # noqa: E402
from rif.deep._threads import torch_threads  # noqa: E402

pytestmark = IGNORE_JIT

N = 30


def _train_to_stationarity(mu, mean_form=False, seed=0):
    """An MLP trained by full-batch L-BFGS to gradient ~1e-9 on sum_i l_i + (mu/2)||theta||^2
    (or, with ``mean_form``, on (1/n) sum_i l_i + (mu/2)||theta||^2, i.e. sum form n * mu)."""
    model = tiny_mlp(seed=seed)
    X, y = classification_data(n=N, seed=seed)
    scale = 1.0 / N if mean_form else 1.0

    def objective():
        data = torch.nn.functional.cross_entropy(model(X), y, reduction="sum")
        return scale * data + 0.5 * mu * sum((p ** 2).sum() for p in model.parameters())

    opt = torch.optim.LBFGS(model.parameters(), max_iter=2000, tolerance_grad=1e-12, tolerance_change=0.0,
                            history_size=50, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        value = objective()
        value.backward()
        return value
    with torch_threads(1):          # a tiny model: one thread is fastest, above all on a busy machine
        opt.step(closure)
    return model, X, y


@pytest.fixture(scope="module")
def sum_form():
    """Trained on the sum-form objective with mu = 1."""
    return _train_to_stationarity(1.0)


@pytest.fixture(scope="module")
def mean_form():
    """Trained on a mean loss with weight decay wd = 0.05, i.e. sum-form mu = n * wd = 1.5."""
    return _train_to_stationarity(0.05, mean_form=True)


def _fit(model, X, y, **kw):
    return TorchInfluence(model, "cross_entropy", (X, y), dtype=torch.float64, **kw).fit()


def _fit_warning(model, X, y, **kw):
    with pytest.warns(StationarityWarning) as record:
        ti = _fit(model, X, y, **kw)
    assert len(record) == 1
    return ti, str(record[0].message)


def test_statistic_against_a_direct_computation(sum_form):
    model, X, y = sum_form
    ti = _fit(model, X, y, weight_decay=1.0)
    G, theta = ti.train_gradients(), ti.theta_
    grad = torch.func.grad(lambda th: torch.nn.functional.cross_entropy(
        ti._fm.forward(th, X), y, reduction="sum") + 0.5 * 0.3 * (th ** 2).sum())(theta)
    stats = stationarity(G, theta, 0.3)
    assert stats["gradient_norm"] == pytest.approx(float(grad.norm()), rel=1e-10)
    scale = float(G.norm(dim=1).sum()) + 0.3 * float(theta.norm())
    assert stats["relative"] == pytest.approx(float(grad.norm()) / scale, rel=1e-10)
    assert stats["implied_weight_decay"] == pytest.approx(1.0, rel=1e-6)
    assert 0 <= stats["relative"] <= 1


def test_properly_described_models_do_not_warn(sum_form, mean_form):
    with warnings.catch_warnings():
        warnings.simplefilter("error", StationarityWarning)
        ti = _fit(*sum_form, weight_decay=1.0, damping=0.1)
        assert ti.stationarity_ < 1e-6 and ti.gradient_norm_ < 1e-6
        ti = _fit(*mean_form, weight_decay=N * 0.05, damping=0.1)
        assert ti.stationarity_ < 1e-6


@pytest.mark.parametrize("kw, cause", [
    ({"weight_decay": 0.0}, "weight_decay is missing"),
    ({"weight_decay": N * 1.0}, f"n = {N} times too large"),
    ({"weight_decay": 0.01, "damping": 1.0}, "swapped"),
    ({"weight_decay": 0.01, "damping": 1.0, "damping_mode": "absolute"}, "swapped"),
    ({"weight_decay": 3.0}, "does not match the training"),
], ids=["missing", "n-times-mu", "swapped-relative", "swapped-absolute", "other-value"])
def test_each_mistake_warns_and_names_its_cause(sum_form, kw, cause):
    ti, message = _fit_warning(*sum_form, **kw)
    assert cause in message
    assert re.search(r"for weight_decay = 1\b", message)        # the weight decay it was trained with
    assert ti.stationarity_ > 1e-2


def test_mean_form_weight_decay_passed_without_the_factor_n(mean_form):
    _, message = _fit_warning(*mean_form, weight_decay=0.05)
    assert f"n = {N} times too small" in message and "n * wd" in message


def test_unconverged_training_warns():
    model = tiny_mlp()
    X, y = classification_data(n=N)
    _, message = _fit_warning(model, X, y, weight_decay=1.0)
    assert "not converged" in message


def test_tolerance_and_opt_out(sum_form):
    with warnings.catch_warnings():
        warnings.simplefilter("error", StationarityWarning)
        ti = _fit(*sum_form, weight_decay=0.0, stationarity_tol=None)
        assert ti.stationarity_ > 1e-2                      # measured, not warned about
        _fit(*sum_form, weight_decay=0.0, stationarity_tol=0.9)
    with pytest.warns(StationarityWarning):
        _fit(*sum_form, weight_decay=1.0, stationarity_tol=0.0)


def test_the_warning_predicts_a_drifting_retrain(sum_form):
    """Why the check matters: described correctly, the proximal refit theta_0 stays at theta^;
    with the weight decay missing it drifts by far more than one sample's leave-one-out effect."""
    model, X, y = sum_form
    good = _fit(model, X, y, weight_decay=1.0, damping=0.1)
    with pytest.warns(StationarityWarning):
        bad = _fit(model, X, y, weight_decay=0.0, damping=0.1)
    one = np.abs(good.params_change([0], "newton")).max()
    with torch_threads(1):
        good._retrain(np.array([0]))
        bad._retrain(np.array([0]))
    drift_good = float((good._retrainer.base - good.theta_).abs().max())
    drift_bad = float((bad._retrainer.base - bad.theta_).abs().max())
    assert drift_good < 1e-6 * one
    assert drift_bad > 10 * one
