"""The deep backend on a GPU: same numbers as on the CPU. Skipped without CUDA."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
    pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:DeprecationWarning"),
]


def _problem(seed=0, n=64):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4)).double()
    X = torch.randn(n, 6, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 4, (n,), generator=gen)
    params = list(model.parameters())
    for _ in range(200):
        grads = torch.autograd.grad(torch.nn.functional.cross_entropy(model(X), y), params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.sub_(0.5 * g)
    return model, X, y


@pytest.mark.parametrize("solver", ["exact", "cg", "lissa", "kfac", "ekfac", "lowrank"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_matches_cpu(solver, dtype):
    from rif.deep import TorchInfluence

    model, X, y = _problem()
    kw = dict(solver=solver, damping=1.0, dtype=dtype, lissa_depth=300, rank=40)
    cpu = TorchInfluence(model, "cross_entropy", (X, y), device="cpu", **kw).fit()
    gpu = TorchInfluence(model, "cross_entropy", (X, y), device="cuda", **kw).fit()
    assert gpu.theta_.is_cuda and next(model.parameters()).device.type == "cpu"
    rtol = 1e-8 if dtype == torch.float64 and solver in ("exact", "kfac", "ekfac", "lowrank") else 2e-3
    if solver in ("cg", "lissa") and dtype == torch.float64:
        rtol = 1e-5                  # both stop at their tolerance, by different rounding paths
    for method, linear in (("if", True), ("rif", False)):
        a = cpu.scores(X[:8], y[:8], method=method, linear=linear)
        b = gpu.scores(X[:8], y[:8], method=method, linear=linear)
        np.testing.assert_allclose(b, a, rtol=rtol, atol=rtol * np.abs(a).max())
    np.testing.assert_allclose(gpu.self_influence("rif"), cpu.self_influence("rif"), rtol=rtol,
                               atol=rtol * 1e-2)


def test_cuda_retrain_and_embeddings():
    from rif.deep import TorchInfluence, embed

    model, X, y = _problem(n=32)
    gpu = TorchInfluence(model, "cross_entropy", (X, y), device="cuda", damping=1.0,
                         dtype=torch.float64).fit()
    cpu = TorchInfluence(model, "cross_entropy", (X, y), damping=1.0, dtype=torch.float64).fit()
    np.testing.assert_allclose(gpu.params_change([0, 3], "retrain"), cpu.params_change([0, 3], "retrain"),
                               rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(embed(model, X, layer="1", device="cuda"), embed(model, X, layer="1"),
                               rtol=1e-10)


@pytest.mark.parametrize("solver", ["exact", "lowrank"])
def test_cuda_true_hessian_rif_matches_cpu(solver):
    from rif.deep import TorchInfluence

    model, X, y = _problem()
    kw = dict(curvature="hessian", solver=solver, damping=1.0, dtype=torch.float64, rank=100)
    cpu = TorchInfluence(model, "cross_entropy", (X, y), device="cpu", **kw).fit()
    gpu = TorchInfluence(model, "cross_entropy", (X, y), device="cuda", **kw).fit()
    a = cpu.scores(X[:4], y[:4], method="rif", linear=True)
    b = gpu.scores(X[:4], y[:4], method="rif", linear=True)
    np.testing.assert_allclose(b, a, rtol=1e-7, atol=1e-9 * np.nanmax(np.abs(a)))


def test_cuda_projected_scores_match_cpu():
    from rif.deep import TorchInfluence

    model, X, y = _problem()
    kw = dict(damping=1.0, dtype=torch.float64)
    cpu = TorchInfluence(model, "cross_entropy", (X, y), device="cpu", **kw).fit()
    gpu = TorchInfluence(model, "cross_entropy", (X, y), device="cuda", **kw).fit()
    for method in ("if", "rif"):
        a = cpu.scores(X[:4], y[:4], method=method, linear=True, projection=256)
        b = gpu.scores(X[:4], y[:4], method=method, linear=True, projection=256)
        np.testing.assert_allclose(b, a, rtol=1e-8, atol=1e-12)
