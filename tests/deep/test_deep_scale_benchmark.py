"""benchmarks/deep_scale.py --quick: every part runs and reports finite, well-formed numbers."""

import importlib.util
import json
import pathlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from deep_helpers import IGNORE_JIT  # noqa: E402
from deep_helpers import one_torch_thread  # noqa: E402, F401 (autouse fixture)

pytestmark = [IGNORE_JIT, pytest.mark.filterwarnings("ignore::rif.deep.StationarityWarning")]

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "deep_scale.py"


def test_quick_run_reports_every_part(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("deep_scale_benchmark", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "deep_scale.json"
    results = bench.main(["--quick", "--output", str(out)])
    assert json.loads(out.read_text())["quick"] is True
    ours = [r for r in results["reference"] if "library" not in r]      # dattri's rows, where importable
    ref = {(r["curvature"], r["solver"], r.get("rank"), r["method"]): r for r in ours}
    p = next(r["rank"] for r in ours if r["solver"] == "lowrank")
    for key, row in ref.items():
        assert np.isfinite(row["pearson"]) and row["pairs"] > 0, key
    # the low-rank solver at full rank is the exact route, for both curvatures
    for curvature in ("gnh", "hessian"):
        for method in ("if", "rif"):
            a, b = ref[(curvature, "exact", None, method)], ref[(curvature, "lowrank", p, method)]
            assert a["median_rel_error"] == pytest.approx(b["median_rel_error"], rel=1e-6)
    small = results["small"]
    assert {r["solver"] for r in small if "library" not in r} == {"ekfac", "kfac", "lowrank", "exact"}
    assert all(0 <= r["relative_error_vs_unprojected"] < 1 for r in small if "projection" in r)
    scale = results["scale"]
    assert scale["finite"] and scale["if_seconds"] > 0 and scale["rif_over_if_time"] > 0
    kron = scale["kronfluence"]
    if kron["available"]:           # Kronfluence's EK-FAC on the same model: finite, same sign and scale as rif's
        assert kron["finite"] and kron["scores_seconds"] > 0
        assert kron["spearman_vs_rif_ekfac_if"] > 0 and 0.5 < kron["scale_vs_n_times_rif_if"] < 2
    text = capsys.readouterr().out
    for lib in ("kronfluence", "dattri"):
        assert lib in text.lower()


def test_kronfluence_part_is_skipped_when_not_importable(monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location("deep_scale_benchmark", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.setattr(bench, "kronfluence_available", lambda: False)
    assert bench.kronfluence_scale(None, None, None, None, None, None, None, None, None, 64, 0) == {
        "available": False}
    assert "kronfluence is not importable: its comparison is skipped" in capsys.readouterr().out
