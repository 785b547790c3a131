"""Shared helpers of the deep tests (tiny networks and data)."""

import pytest

torch = pytest.importorskip("torch")


def tiny_mlp(n_in=4, hidden=6, n_out=3, seed=0, act=None, bias=True):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(n_in, hidden, bias=bias), act or torch.nn.Tanh(),
        torch.nn.Linear(hidden, n_out, bias=bias)).double()


def classification_data(n=30, n_in=4, n_out=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, n_in, generator=gen, dtype=torch.float64)
    y = torch.randint(0, n_out, (n,), generator=gen)
    return X, y


def train(model, loss_fn, X, y, steps=300, lr=0.05):
    """Full-batch gradient descent with momentum, so that the network is near (not at) a minimum.

    (Plain tensor updates: torch.optim's first step imports the compiler stack, which is slow.)
    """
    params = list(model.parameters())
    velocity = [torch.zeros_like(p) for p in params]
    for _ in range(steps):
        grads = torch.autograd.grad(loss_fn(model(X), y), params)
        with torch.no_grad():
            for p, v, g in zip(params, velocity, grads):
                v.mul_(0.9).add_(g)
                p.sub_(lr * v)
    return model


def trained_mlp(seed=0):
    model = tiny_mlp(seed=seed)
    X, y = classification_data(seed=seed)
    train(model, torch.nn.functional.cross_entropy, X, y)
    return model, X, y


#: torch's forward-mode AD scripts its decompositions on first use, which warns on torch 2.13.
IGNORE_JIT = pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:DeprecationWarning")

#: The helpers' networks are deliberately near, not at, a minimum (``train``), so fitting
#: them warns that theta^ is not stationary; tests that are about other things ignore it.
NOT_STATIONARY = pytest.mark.filterwarnings("ignore::rif.deep.StationarityWarning")


@pytest.fixture(autouse=True)
def one_torch_thread():
    """The tests' own torch work (training helpers, dense reference matrices) on one thread.

    rif.deep chooses torch's thread count itself inside its methods (tested in
    test_threads_and_solver_choice.py); the tests' direct calls of torch run on
    tiny models, where one thread is fastest, and several threads on shared CI
    cores are up to 50x slower. Imported by each deep test module (autouse).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
