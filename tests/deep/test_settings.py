"""Every setting of TorchInfluence and every argument of its methods is validated before any work."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from deep_helpers import IGNORE_JIT, NOT_STATIONARY, classification_data, tiny_mlp  # noqa: E402
from deep_helpers import one_torch_thread  # noqa: E402, F401 (autouse fixture)
from rif.deep import TorchInfluence  # noqa: E402

pytestmark = [IGNORE_JIT, NOT_STATIONARY]

NAN, INF = float("nan"), float("inf")

BAD_SETTINGS = [
    ("curvature", ["ggn", None, 3]),
    ("solver", ["direct", "", None]),
    ("damping", [-1.0, NAN, INF, "0.1", True, None]),
    ("damping_mode", ["scaled", None]),
    ("weight_decay", [-1e-3, NAN, INF, "1", False]),
    ("device", ["gpu", "cpux", 3.5, True]),
    ("dtype", [torch.float16, "float32", np.float64, torch.int64]),
    ("batch_size", [0, -3, 2.0, "256", True, None]),
    ("cg_tol", [0.0, -1.0, NAN, INF, "1e-8", True]),
    ("cg_max_iter", [0, 1.5, "10", True]),
    ("lissa_scale", [0.0, -2.0, NAN, INF, "big", True]),
    ("lissa_depth", [0, 10.0, True, None]),
    ("lissa_repeats", [0, 2.5, None]),
    ("lissa_batch_size", [0, 8.0, True]),
    ("report_residuals", [1, "yes"]),
    ("retrain_max_iter", [0, 100.0, None]),
    ("retrain_tol", [0.0, -1e-7, NAN, INF, "1e-7"]),
    ("max_dense_params", [0, 1e4, None]),
    ("seed", [-1, 0.5, None, "0"]),
    ("progress", [1, "auto"]),
    ("stationarity_tol", [-0.1, NAN, INF, "0.01", True]),
]
CASES = [(name, value) for name, values in BAD_SETTINGS for value in values]


def _data():
    return classification_data()


@pytest.mark.parametrize("name, value", CASES, ids=[f"{n}={v!r}" for n, v in CASES])
def test_bad_setting_is_refused_at_construction_naming_it(name, value):
    X, y = _data()
    with pytest.raises((ValueError, TypeError), match=name):
        TorchInfluence(tiny_mlp(), "cross_entropy", (X, y), **{name: value})


@pytest.mark.parametrize("name, value", [("damping", NAN), ("cg_tol", -1.0), ("solver", "direct"),
                                         ("batch_size", 0), ("dtype", torch.float16)])
def test_a_setting_changed_after_construction_is_refused_by_fit(name, value, monkeypatch):
    X, y = _data()
    ti = TorchInfluence(tiny_mlp(), "cross_entropy", (X, y))
    setattr(ti, name, value)
    import rif.deep._influence as influence

    monkeypatch.setattr(influence, "FunctionalModel", None)     # fit must fail before copying the model
    with pytest.raises((ValueError, TypeError), match=name):
        ti.fit()


@pytest.mark.parametrize("value", [0, 1e-3, 10, 2.5, np.float64(0.1)])
def test_good_numbers_are_accepted(value):
    X, y = _data()
    ti = TorchInfluence(tiny_mlp(), "cross_entropy", (X, y), damping=value, weight_decay=value,
                        stationarity_tol=value, cg_tol=value or 1e-6, solver="cg", batch_size=np.int64(8))
    assert ti.damping == value and ti.batch_size == 8


@pytest.fixture(scope="module")
def fitted():
    X, y = _data()
    return TorchInfluence(tiny_mlp(), "cross_entropy", (X, y), damping=0.1, dtype=torch.float64).fit(), X, y


@pytest.mark.parametrize("call, match", [
    (lambda ti, X, y: ti.scores(X, y, linear="yes"), "linear"),
    (lambda ti, X, y: ti.scores(X, y, linear=1), "linear"),
    (lambda ti, X, y: ti.scores(X, y, target=None), "target"),
    (lambda ti, X, y: ti.scores(X, y, method=None), "method"),
    (lambda ti, X, y: ti.scores(X, y, method=["if"]), "method"),
    (lambda ti, X, y: ti.self_influence("rif", linear=None), "linear"),
    (lambda ti, X, y: ti.self_influence(3), "method"),
    (lambda ti, X, y: ti.params_change([0], method="IF"), "method"),
    (lambda ti, X, y: ti.unlearn([0], method="exact"), "method"),
    (lambda ti, X, y: ti.gradients(X, y, target="logit"), "target"),
    (lambda ti, X, y: ti.effect([0], "params", method="fast"), "method"),
    (lambda ti, X, y: ti.effect([0], "params", linear="no"), "linear"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_bad_method_arguments(fitted, call, match):
    ti, X, y = fitted
    with pytest.raises((ValueError, TypeError), match=match):
        call(ti, X, y)


@pytest.mark.parametrize("kwargs, match", [
    ({"target": "accuracy"}, "target"),
    ({"target": None}, "target"),
    ({"target": "loss", "linear": "yes"}, "linear"),
    ({"target": "loss", "method": "exact"}, "method"),
    ({"target": "loss"}, "evaluation data"),              # X missing
])
def test_effect_validates_before_any_refit(fitted, monkeypatch, kwargs, match):
    ti, X, y = fitted
    kwargs.setdefault("method", "retrain")

    def refit(*args, **kw):
        raise AssertionError("a refit ran before the arguments were validated")
    monkeypatch.setattr(ti, "_retrain", refit)
    with pytest.raises((ValueError, TypeError), match=match):
        ti.effect([[0], [1]], **kwargs)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"batch_size": 1.5}, ValueError, "batch_size"),
    ({"dtype": torch.int64}, TypeError, "dtype"),
    ({"dtype": "float64"}, TypeError, "dtype"),
    ({"flatten": "yes"}, TypeError, "flatten"),
    ({"device": "gpu"}, ValueError, "device"),
    ({"layer": 3}, TypeError, "layer"),
    ({"layer": "fc9"}, ValueError, "layer"),
])
def test_embed_validates_its_arguments(kwargs, error, match):
    from rif.deep import embed

    X, _ = _data()
    with pytest.raises(error, match=match):
        embed(tiny_mlp(), X, **kwargs)
