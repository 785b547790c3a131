"""The audit experiments run end to end in --quick mode and write their tables and figures."""

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


@pytest.fixture
def experiment(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(EXPERIMENTS))
    common = importlib.import_module("audit_common")
    monkeypatch.setattr(common, "OUTPUT", tmp_path)

    def load(name):
        sys.modules.pop(name, None)
        return importlib.import_module(name)
    return load


def test_robustness_quick(experiment, tmp_path):
    real, small = experiment("robustness").main(["--quick"])
    for name in ("robustness.csv", "robustness_small.csv", "robustness.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert set(real.method) == {"if", "rif", "greedy"} and len(small) > 0
    verified = real[real.verified]
    assert (verified.fraction > 0).all() and (verified.fraction <= verified.max_fraction).all()
    # a verified set never beats the enumerated minimum on the small problems
    assert (small[small.verified].n_removed >= small[small.verified].minimum).all()


def test_data_debugging_quick(experiment, tmp_path):
    mislabel, repair, unlearn = experiment("data_debugging").main(["--quick"])
    for name in ("mislabel.csv", "repair.csv", "unlearn.csv", "data_debugging.png"):
        assert (tmp_path / name).stat().st_size > 0
    areas = mislabel.groupby("score").auc.mean()
    assert areas["rif"] > areas["random"] and areas["if"] > areas["random"]
    np.testing.assert_allclose(unlearn[unlearn.method == "retrain"].rel_param_distance, 0.0, atol=1e-12)
    assert (repair.newton_rel_param_error > 0).all()
