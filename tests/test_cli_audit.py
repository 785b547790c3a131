"""`rif audit` on a user's CSV, through rif.cli.main, and the report module behind it."""

import json

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from statsmodels.stats.outliers_influence import OLSInfluence

import rif
from rif import _report
from rif.cli import main


@pytest.fixture
def logistic_csv(tmp_path):
    rng = np.random.default_rng(0)
    n = 120
    frame = pd.DataFrame({"dose": rng.normal(size=n), "age": rng.normal(size=n),
                          "site": rng.choice(["north", "south", "east"], size=n),
                          "clinic": np.repeat(np.arange(12), 10)})
    eta = 0.35 * frame["dose"] + 1.0 * frame["age"]
    frame["outcome"] = np.where(rng.random(n) < 1 / (1 + np.exp(-eta)), "yes", "no")
    path = tmp_path / "trial.csv"
    frame.to_csv(path, index=False)
    return path, frame


def run(capsys, *argv):
    code = main(list(map(str, argv)))
    out, err = capsys.readouterr()
    return code, out, err


def test_report_numbers_are_the_library_results(logistic_csv, capsys, tmp_path):
    path, frame = logistic_csv
    json_path = tmp_path / "report.json"
    code, out, err = run(capsys, "audit", path, "--target", "outcome", "--model", "logistic",
                         "--features", "dose", "age", "--coef", "dose", "--max-fraction", "0.2",
                         "--json", json_path)
    assert code == 0, err
    report = json.loads(json_path.read_text())
    X, y = frame[["dose", "age"]], frame["outcome"]
    aud = rif.InfluenceAuditor(rif_lr()).fit(X, y)
    dose = report["coefficients"][0]
    assert dose["name"] == "dose" and dose["estimate"] == pytest.approx(aud.estimator_.coef_[0, 0], rel=1e-8)
    fit = sm.GLM((y == "yes").to_numpy(float), np.column_stack([X, np.ones(len(y))]),
                 family=sm.families.Binomial()).fit()
    assert dose["se"] == pytest.approx(fit.bse[0], rel=1e-6)
    expected = aud.robustness(("coef", "dose"), max_fraction=0.2)
    assert dose["sign"]["rows"] == expected.indices.tolist()
    assert dose["sign"]["lines"] == (expected.indices + 2).tolist()
    assert dose["sign"]["verified"] == expected.verified
    assert "sign" not in report["coefficients"][1]              # --coef: only dose is audited
    assert [s["row"] for s in report["suspicious_labels"]] == aud.suspect_labels(10).tolist()
    # the printed report names the coefficient, the set and the CSV lines
    assert "dose:" in out and "to flip its sign:" in out and "Most suspicious labels" in out
    if expected.found:
        assert f"line {expected.indices[0] + 2:>5}:" in out


def rif_lr():
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=np.inf, max_iter=10_000)


def test_groups_categorical_json_stdout_and_out_dir(logistic_csv, capsys, tmp_path):
    path, frame = logistic_csv
    code, out, err = run(capsys, "audit", path, "--target", "outcome", "--categorical", "site",
                         "--groups", "clinic", "--coef", "dose", "--json", "-", "--max-fraction", "0.5",
                         "--out", tmp_path / "out")
    assert code == 0, err
    report = json.loads(out[:out.rindex("}") + 1])
    assert report["data"]["features"] == ["dose", "age", "site_north", "site_south"]   # east dropped
    assert report["data"]["n_groups"] == 12
    sign = report["coefficients"][0]["sign"]
    if sign["status"] == "found":
        removed = set(sign["groups"])
        assert set(frame["clinic"].iloc[sign["rows"]]) == removed
        assert sorted(sign["rows"]) == np.flatnonzero(frame["clinic"].isin(removed)).tolist()
    for name in ("report.json", "influence.csv", "influence.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    table = pd.read_csv(tmp_path / "out" / "influence.csv")
    assert len(table) == len(frame) and table["line"].iloc[0] == 2


def test_cooks_distance_is_statsmodels_for_ols(tmp_path, capsys):
    d = sm.datasets.stackloss.load_pandas().data
    report, aud, X = _report.audit_table(d, "STACKLOSS", "linear", max_fraction=0.3)
    ols = sm.OLS(d["STACKLOSS"], sm.add_constant(X)).fit()
    np.testing.assert_allclose(report["_cooks"], OLSInfluence(ols).cooks_distance[0], rtol=1e-8)
    top = [r["row"] for r in report["influential_rows"]]
    assert top[0] == int(np.argmax(OLSInfluence(ols).cooks_distance[0]))
    for c in report["coefficients"][:3]:
        assert c["z"] == pytest.approx(ols.tvalues[c["name"]], rel=1e-8)


@pytest.mark.parametrize("argv, message", [
    (["audit", "{missing}", "--target", "y"], "no such file"),
    (["audit", "{csv}", "--target", "nope"], "column 'nope' is not in the CSV"),
    (["audit", "{csv}", "--target", "y", "--model", "probit"], "unsupported model"),
    (["audit", "{csv}", "--target", "y", "--features", "a", "color"], "not numeric; pass --categorical color"),
    (["audit", "{holes}", "--target", "y", "--model", "linear"], "missing value"),
    (["audit", "{bad}", "--target", "y"], "cannot read"),
    (["audit", "{csv}", "--target", "a", "--model", "logistic", "--features", "b"], "exactly two values"),
    (["audit", "{csv}", "--target", "y", "--features", "a", "--coef", "zz"], "is not a coefficient"),
    (["audit", "{csv}", "--target", "y", "--features", "a", "--penalty", "-1"], "--penalty"),
    (["audit", "{separable}", "--target", "y"], "no finite optimum (the classes may be separable)"),
    (["audit", "{csv}", "--target", "y", "--alpha", "2"], "--alpha"),
    (["audit", "{csv}", "--target", "y", "--max-fraction", "0"], "--max-fraction"),
    (["audit", "{csv}", "--target", "y", "--top", "0"], "--top"),
])
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys, argv, message):
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"a": rng.normal(size=30), "b": rng.normal(size=30),
                          "color": rng.choice(["red", "blue"], size=30), "y": rng.integers(0, 2, size=30)})
    frame.to_csv(tmp_path / "data.csv", index=False)
    holes = frame.drop(columns="color").copy()
    holes.loc[3, "a"] = np.nan
    holes.to_csv(tmp_path / "holes.csv", index=False)
    pd.DataFrame({"a": frame["a"], "y": (frame["a"] > 0).astype(int)}).to_csv(tmp_path / "sep.csv", index=False)
    (tmp_path / "bad.csv").write_bytes(b'a,b,y\n1,2,3\n"4,5\n6,7,8,9,10\n')
    paths = {"csv": tmp_path / "data.csv", "holes": tmp_path / "holes.csv", "bad": tmp_path / "bad.csv",
             "missing": tmp_path / "none.csv", "separable": tmp_path / "sep.csv"}
    code, out, err = run(capsys, *[a.format(**paths) for a in argv])
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_version_and_help(capsys):
    code, out, _ = run(capsys)
    assert code == 0 and "audit" in out and "demo" in out
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert rif.__version__ in capsys.readouterr().out
