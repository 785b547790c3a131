"""The deep tests' own torch work (training helpers, dense reference matrices) on one thread.

rif.deep chooses torch's thread count itself inside its methods (tested in
test_threads_and_solver_choice.py); the tests' direct calls of torch run on
tiny models, where one thread is fastest, and several threads on the shared
CI cores are up to 50x slower.
"""

import pytest

torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
