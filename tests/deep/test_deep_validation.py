"""Input validation at the public boundary of rif.deep."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sklearn.exceptions import NotFittedError  # noqa: E402

from deep_helpers import IGNORE_JIT, NOT_STATIONARY, classification_data, tiny_mlp  # noqa: E402
from deep_helpers import one_torch_thread  # noqa: E402, F401 (autouse fixture)
from rif.deep import TorchInfluence  # noqa: E402

pytestmark = [IGNORE_JIT, NOT_STATIONARY]


@pytest.fixture
def fitted():
    model = tiny_mlp()
    X, y = classification_data()
    return TorchInfluence(model, "cross_entropy", (X, y), dtype=torch.float64).fit(), X, y


@pytest.mark.parametrize("kwargs, error, match", [
    ({"curvature": "ggn"}, ValueError, "curvature"),
    ({"solver": "direct"}, ValueError, "solver"),
    ({"damping": -1.0}, ValueError, "damping"),
    ({"damping_mode": "scaled"}, ValueError, "damping_mode"),
    ({"dtype": torch.float16}, ValueError, "dtype"),
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"curvature": "hessian", "solver": "lissa"}, ValueError, "positive semi-definite"),
])
def test_constructor_rejects_bad_settings(kwargs, error, match):
    X, y = classification_data()
    with pytest.raises(error, match=match):
        TorchInfluence(tiny_mlp(), "cross_entropy", (X, y), **kwargs)


def test_bad_model_loss_data_and_params():
    X, y = classification_data()
    with pytest.raises(TypeError, match="nn.Module"):
        TorchInfluence(lambda x: x, "cross_entropy", (X, y))
    with pytest.raises(ValueError, match="loss"):
        TorchInfluence(tiny_mlp(), "hinge", (X, y))
    with pytest.raises(ValueError, match="samples"):
        TorchInfluence(tiny_mlp(), "cross_entropy", (X, y[:-1])).fit()
    with pytest.raises(ValueError, match="class labels"):
        TorchInfluence(tiny_mlp(), "cross_entropy", (X, y + 5)).fit()
    with pytest.raises(ValueError, match="NaN"):
        Xn = X.clone()
        Xn[0, 0] = float("nan")
        TorchInfluence(tiny_mlp(), "cross_entropy", (Xn, y)).fit()
    with pytest.raises(ValueError, match="neither a parameter"):
        TorchInfluence(tiny_mlp(), "cross_entropy", (X, y), params="fc9").fit()
    with pytest.raises(TypeError, match="pair"):
        TorchInfluence(tiny_mlp(), "cross_entropy", 3).fit()
    with pytest.raises(ValueError, match="max_dense_params"):
        TorchInfluence(tiny_mlp(), "cross_entropy", (X, y), solver="exact", max_dense_params=10).fit()


def test_not_fitted():
    X, y = classification_data()
    ti = TorchInfluence(tiny_mlp(), "cross_entropy", (X, y))
    with pytest.raises(NotFittedError):
        ti.scores(X, y)


def test_method_target_and_removal_validation(fitted):
    ti, X, y = fitted
    with pytest.raises(ValueError, match="method"):
        ti.params_change([0], "exact")
    with pytest.raises(ValueError, match="target"):
        ti.scores(X, y, target="decision")
    with pytest.raises(ValueError, match="target"):
        ti.effect([0], "accuracy", X, y)
    with pytest.raises(ValueError, match="labels"):
        ti.scores(X)
    with pytest.raises(ValueError, match="sample shape"):
        ti.scores(X[:, :2], y)
    with pytest.raises(ValueError, match="lie in"):
        ti.params_change([0, 99])
    with pytest.raises(ValueError, match="duplicate"):
        ti.params_change([1, 1])
    with pytest.raises(ValueError, match="empty"):
        ti.params_change([])
    with pytest.raises(TypeError, match="integers"):
        ti.params_change([0.5])
    with pytest.raises(ValueError, match="mask"):
        ti.params_change(np.ones(3, dtype=bool))
    with pytest.raises(ValueError, match="every training sample"):
        ti.params_change(np.arange(ti.n_samples_))
    with pytest.raises(ValueError, match="'exact' or 'lowrank'"):
        TorchInfluence(tiny_mlp(), "cross_entropy", (X, y), curvature="hessian", solver="cg", damping=100.0,
                       damping_mode="absolute", dtype=torch.float64).fit().params_change([0], "rif")
    assert ti.params_change(np.array([[0, 1], [2, 3]]), "if").shape == (2, ti.n_params_)
    assert ti.params_change(0, "if").shape == (ti.n_params_,)
