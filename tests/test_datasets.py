"""rif.datasets: shapes, determinism, the generator's documented properties, loaders and their errors."""

import numpy as np
import pytest

import rif
from rif import datasets


def test_public():
    assert "datasets" in rif.__all__ and rif.datasets is datasets
    assert set(datasets.PAPER_SHAPES) <= set(datasets.NAMES)


@pytest.mark.parametrize("name", sorted(datasets.PAPER_SHAPES))
def test_paper_shapes_small(name):
    """Each name at a reduced n (the full shapes are exercised by the experiments)."""
    n0, d0 = datasets.PAPER_SHAPES[name]
    D = datasets.make_paper_like(name, n=200, d=min(d0, 40))
    assert D.X_train.shape == (200, min(d0, 40)) and D.X_test.shape == (50, min(d0, 40))
    assert D.X_train.dtype == np.float64 and set(np.unique(D.y_train)) == {0.0, 1.0}
    assert D.name == f"{name}_n200_d{min(d0, 40)}"


def test_full_shape_and_default_test_size():
    D = datasets.make_paper_like("esc50")
    assert D.X_train.shape == (1600, 512) and D.X_test.shape == (400, 512) and D.name == "esc50"


def test_deterministic_and_seeded():
    a = datasets.make_paper_like("dogfish", n=100, d=30, seed=1)
    b = datasets.make_paper_like("dogfish", n=100, d=30, seed=1)
    c = datasets.make_paper_like("dogfish", n=100, d=30, seed=2)
    e = datasets.make_paper_like("catdog", n=100, d=30, seed=1)       # each name its own stream
    np.testing.assert_array_equal(a.X_train, b.X_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert not np.allclose(a.X_train, c.X_train) and not np.allclose(a.X_train, e.X_train)


def test_generator_properties():
    """E||x||^2 = d, low-rank-plus-noise spectrum, and a model reaching the documented accuracy."""
    d = 64
    D = datasets.make_paper_like("imdb", n=20000, d=d, n_test=4000)
    X = D.X_train
    assert np.mean(np.sum(X ** 2, axis=1)) == pytest.approx(d, rel=0.02)
    ev = np.sort(np.linalg.eigvalsh(np.cov(X.T)))[::-1]
    assert ev[:32].sum() / ev.sum() == pytest.approx(0.6 + 0.4 * 32 / d, abs=0.02)   # factors + their noise
    assert ev[0] / ev[-1] > 10                                         # anisotropic
    assert np.allclose(ev[40:], 0.4, rtol=0.15)                        # isotropic noise floor sigma^2
    p = rif.GLMProblem(X, D.y_train, "binomial", penalty=1e-3, penalty_scaling="per_sample",
                       fit_intercept=False)
    acc = np.mean((D.X_test @ p.theta > 0) == (D.y_test > 0.5))
    assert 0.82 <= acc <= 0.9
    assert 0.4 < D.y_train.mean() < 0.6


@pytest.mark.parametrize("kwargs, match", [
    (dict(name="cifar"), "name must be one of"),
    (dict(name="esc50", n=0), "n must be a positive integer"),
    (dict(name="esc50", d=2.5), "d must be a positive integer"),
    (dict(name="esc50", signal=-1.0), "signal"),
    (dict(name="esc50", factor_share=1.0), "factor_share"),
    (dict(name="esc50", n=1, d=3), "too small"),
])
def test_make_paper_like_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        datasets.make_paper_like(**kwargs)


def test_bundled():
    bc = datasets.load_breast_cancer()
    assert bc.X_train.shape[1] == 30 and len(bc.y_train) + len(bc.y_test) == 569
    np.testing.assert_allclose(bc.X_train.mean(axis=0), 0, atol=1e-12)
    dg = datasets.load_digits_pair(3, 8)
    assert dg.X_train.shape[1] == 64 and dg.name == "digits_3_8"
    assert set(np.unique(dg.y_train)) == {0.0, 1.0}
    assert datasets.load("digits_3_8").name == "digits_3_8"
    with pytest.raises(ValueError, match="must differ"):
        datasets.load_digits_pair(3, 3)
    with pytest.raises(ValueError, match="digit"):
        datasets.load_digits_pair(3, 10)


def test_npz_roundtrip_and_label_encoding(tmp_path):
    rng = np.random.default_rng(0)
    Xtr, Xte = rng.normal(size=(30, 4)).astype(np.float32), rng.normal(size=(10, 4))
    ytr, yte = np.where(rng.random(30) < 0.5, -1, 1), np.where(rng.random(10) < 0.5, -1, 1)
    ytr[:2] = [-1, 1]
    path = tmp_path / "emb.npz"
    np.savez(path, X_train=Xtr, y_train=ytr, X_test=Xte, y_test=yte)
    D = datasets.load(str(path))
    assert D.name == "emb" and D.X_train.dtype == np.float64
    np.testing.assert_array_equal(D.y_train, (ytr == 1).astype(float))
    np.testing.assert_array_equal(D.X_train, Xtr.astype(np.float64))


@pytest.mark.parametrize("arrays, match", [
    (dict(X_train=np.zeros((3, 2)), y_train=np.array([0, 1, 0]), X_test=np.zeros((2, 2))), "lacks"),
    (dict(X_train=np.zeros((3, 2)), y_train=np.array([0, 1, 0]), X_test=np.zeros((2, 3)),
          y_test=np.array([0, 1])), "features"),
    (dict(X_train=np.zeros((3, 2)), y_train=np.array([0, 1]), X_test=np.zeros((2, 2)),
          y_test=np.array([0, 1])), "y_train must have shape"),
    (dict(X_train=np.zeros((3, 2)), y_train=np.array([0, 1, 2]), X_test=np.zeros((2, 2)),
          y_test=np.array([0, 1])), "exactly two"),
    (dict(X_train=np.zeros((3, 2)), y_train=np.array([0, 1, 0]), X_test=np.zeros((2, 2)),
          y_test=np.array([0, 5])), "not in y_train"),
    (dict(X_train=np.full((3, 2), np.nan), y_train=np.array([0, 1, 0]), X_test=np.zeros((2, 2)),
          y_test=np.array([0, 1])), "finite"),
])
def test_npz_errors(tmp_path, arrays, match):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=match):
        datasets.load_npz(path)


def test_load_errors(tmp_path):
    with pytest.raises(ValueError, match="not a file"):
        datasets.load_npz(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match="name must be one of"):
        datasets.load("mnist")
    with pytest.raises(TypeError, match="string"):
        datasets.load(3)


def test_digits_cnn_embeddings():
    pytest.importorskip("torch")
    D = datasets.load_digits_cnn(steps=10)
    assert D.X_train.shape[1] == 32 and D.name == "digits_cnn_3_8"
    assert len(D.y_train) + len(D.y_test) == 357        # 183 threes + 174 eights
    p = rif.GLMProblem(D.X_train, D.y_train, "binomial", penalty=1e-3, penalty_scaling="per_sample",
                       fit_intercept=False)
    assert np.mean((D.X_test @ p.theta > 0) == (D.y_test > 0.5)) > 0.9


def test_import_rif_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, rif, rif.datasets; rif.datasets.load('breast_cancer'); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
