"""The multiclass digits experiment (--quick): outputs, and RIF sizing the effect better than IF."""

import csv
import importlib.util
import pathlib

import pytest

pytest.importorskip("matplotlib")

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "multiclass_digits.py"


def _module():
    spec = importlib.util.spec_from_file_location("multiclass_digits", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("embedding", ["pca", "mlp"])
def test_quick_run_writes_outputs_and_rif_sizes_effects(embedding, tmp_path):
    if embedding == "mlp":
        pytest.importorskip("torch")
    stats = _module().main(["--quick", "--embedding", embedding, "--out", str(tmp_path)])
    for name in ("multiclass_digits.csv", "multiclass_digits_summary.csv", "multiclass_digits.png"):
        assert (tmp_path / name).stat().st_size > 0
    with open(tmp_path / "multiclass_digits.csv") as f:
        rows = list(csv.DictReader(f))
    assert {"fraction", "actual", "if", "rif", "newton"} <= set(rows[0])
    by = {(s["fraction"], s["estimator"]): s for s in stats}
    for fraction in {s["fraction"] for s in stats}:
        # RIF's slope against the refit is closer to 1 than IF's, and it correlates at least as well
        assert abs(by[fraction, "rif"]["slope"] - 1) < abs(by[fraction, "if"]["slope"] - 1)
        assert by[fraction, "rif"]["median_rel_error"] < by[fraction, "if"]["median_rel_error"]
