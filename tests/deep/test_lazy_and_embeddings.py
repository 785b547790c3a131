import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from rif.deep import embed  # noqa: E402

from deep_helpers import tiny_mlp  # noqa: E402
from deep_helpers import one_torch_thread  # noqa: E402, F401 (autouse fixture)


def test_import_rif_does_not_import_torch():
    code = "import sys, rif; assert 'torch' not in sys.modules; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "ok" in out.stdout


def test_embed_output_equals_manual_forward():
    model = tiny_mlp()
    model.train()
    X = torch.randn(23, 4, dtype=torch.float64)
    before = [p.detach().clone() for p in model.parameters()]
    feats = embed(model, X, batch_size=5)
    with torch.no_grad():
        expected = model(X).numpy()
    np.testing.assert_allclose(feats, expected, rtol=1e-12, atol=1e-12)
    assert feats.dtype == np.float64 and feats.shape == (23, 3)
    assert model.training  # flag restored
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


@pytest.mark.parametrize("layer", ["1", "by_module"])
def test_embed_layer_output(layer):
    model = tiny_mlp()
    X = np.random.default_rng(0).normal(size=(11, 4))
    feats = embed(model, X, layer=model[1] if layer == "by_module" else layer, batch_size=4)
    with torch.no_grad():
        expected = torch.tanh(model[0](torch.as_tensor(X))).numpy()
    np.testing.assert_allclose(feats, expected, rtol=1e-12)


def test_embed_dataloader_and_dtype():
    model = tiny_mlp()
    X = torch.randn(10, 4, dtype=torch.float64)
    y = torch.zeros(10)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=3)
    feats = embed(model, loader, layer="0", dtype=torch.float32)
    with torch.no_grad():
        expected = model[0](X).numpy()
    np.testing.assert_allclose(feats, expected, rtol=1e-5, atol=1e-6)
    assert next(model.parameters()).dtype == torch.float64  # the user's model is untouched


def test_embed_validation():
    model = tiny_mlp()
    with pytest.raises(ValueError, match="not a sub-module"):
        embed(model, torch.randn(3, 4, dtype=torch.float64), layer="nope")
    with pytest.raises(TypeError):
        embed("model", torch.randn(3, 4))
    with pytest.raises(ValueError, match="batch_size"):
        embed(model, torch.randn(3, 4, dtype=torch.float64), batch_size=0)


def test_embeddings_give_exact_glm_head_attribution():
    """Features + InfluenceAuditor: the usual exact GLM machinery on the last layer."""
    from sklearn.linear_model import LogisticRegression

    import rif

    model = tiny_mlp(n_out=1)
    gen = np.random.default_rng(1)
    X = gen.normal(size=(40, 4))
    y = (X[:, 0] + 0.5 * gen.normal(size=40) > 0).astype(int)
    phi = embed(model, X, layer="1")
    aud = rif.InfluenceAuditor(LogisticRegression(C=1.0)).fit(phi, y)
    s = aud.scores(phi[:5], y[:5], method="rif")
    assert s.shape == (40, 5) and np.isfinite(s).all()
