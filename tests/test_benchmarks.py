"""The benchmark suite runs (at toy sizes) and its cross-checks hold; no time is asserted."""

import importlib.util
import pathlib

import numpy as np
import pytest

RUN = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"


@pytest.fixture(scope="module")
def fuzz():
    spec = importlib.util.spec_from_file_location("rif_fuzz_certificates", RUN.parent / "fuzz_certificates.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _drawn_and_checked(draw, fuzz):
    """(the case ``draw()`` gives, the fuzzer's findings on it), floating-point warnings raised as the
    fuzzer raises them."""
    import warnings

    import rif

    found = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        warnings.simplefilter("ignore", rif.RetrainConvergenceWarning)
        drawn = draw()
        assert fuzz.check(*drawn, "case", found.append) > 0
    return drawn, found


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("rif_benchmarks", RUN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.ROWS.clear()
    return module


def test_benchmarks_run_at_toy_sizes(bench):
    bench.bench_leverage_floor(600, 8, 1)
    bench.bench_statsmodels(600, 8, 1)
    bench.bench_retrain(600, 8, 1, fractions=(0.05,))
    bench.bench_batches(600, 8, n_sets=6, n_refits=3, repeat=1)
    bench.bench_sparse(200, 300, 0.05)
    names = [row[0] for row in bench.ROWS]
    assert len(names) == 11
    sparse_row = next(row for row in bench.ROWS if row[0].startswith("sparse: leverages"))
    assert "route dual" in sparse_row[9]
    assert "3 exact retrains in lockstep" in names
    # batched Newton steps for sets of at least p samples agree with one set at a time
    big = next(row for row in bench.ROWS if row[0].startswith("NEWTON, 6 sets of 20"))
    assert float(big[8].split()[1]) < 1e-10
    # the cross-check column: leverages agree with the floor and with statsmodels
    for row in bench.ROWS[:2]:
        assert float(row[8].split()[1].rstrip(",")) < 1e-10
    # lockstep refits agree with one-by-one refits
    lockstep = next(row for row in bench.ROWS if row[0] == "3 exact retrains in lockstep")
    assert float(lockstep[8].split()[1]) < 1e-9


def test_paper_shape_rows_run_and_agree(bench):
    """The RIF paper's shapes at toy sizes, both conventions: leverages agree with the floor
    (up to scikit-learn's own tolerance, since the floor uses its unrefined theta)."""
    bench.ROWS.clear()
    bench.bench_paper_shapes([("dogfish", 120, 160), ("esc50", 200, 40)], 1)
    assert len(bench.ROWS) == 8
    for row in bench.ROWS[::2]:
        assert float(row[8].split()[1]) < 1e-3
    for row in bench.ROWS[1::2]:
        assert float(row[8].split()[2]) < 1e-3


def test_multinomial_rows_run_and_agree(bench):
    bench.ROWS.clear()
    bench.bench_multinomial(400, 5, 3, 1)
    lev, refit = bench.ROWS
    assert float(lev[8].split()[1]) < 1e-6            # leverage blocks agree with the floor
    assert float(refit[8].split()[2]) < 1e-3          # the refit agrees with scikit-learn's


def test_certificate_rows_run_without_violations(bench):
    bench.ROWS.clear()
    bench.bench_certify(300, (4, 32), 4, 1)
    rows = [row for row in bench.ROWS if row[0].startswith("certify")]
    assert len(rows) == 12
    assert all(row[8] == "violations 0" for row in rows)


def test_paper_regime_certificate_rows_run_without_violations(bench):
    bench.ROWS.clear()
    bench.bench_certify_paper_regime(False, 3)
    rows = [row for row in bench.ROWS if row[0].startswith("certify")]
    assert len(rows) == 2 and all("through H_-S" in row[0] for row in rows)
    assert all(row[8] == "violations 0" for row in rows)
    assert all("lambda_min(H) proved" in row[9] for row in rows)


def test_calls_timed_in_turn_give_each_its_median_and_result(bench):
    calls = {"first": lambda: 1, "second": lambda: [2]}
    out = bench.measure_all(calls, rounds=3)
    assert out["first"][2] == 1 and out["second"][2] == [2]
    assert all(t >= 0 and peak >= 0 for t, peak, _ in out.values())
    assert set(bench.measure_all(calls, repeat=2)) == set(calls)


def test_certificate_cost_rows_run_and_auto_keeps_its_tolerance(bench):
    bench.ROWS.clear()
    bench.bench_certify_cost(False, 4, 1)
    autos = [row for row in bench.ROWS if row[0].startswith("method='auto'")]
    floors = [row for row in bench.ROWS if row[0].startswith("floor of")]
    effects = [row for row in bench.ROWS if row[0].startswith("test-loss effects, method='auto'")]
    newton = [row for row in bench.ROWS if row[0].startswith("certificates of 4 Newton-step")]
    assert len(bench.ROWS) == 27 and len(autos) == 9 and len(floors) == 3   # breast cancer, synthetic, ESC-50 shape
    assert len(effects) == 3 and len(newton) == 3
    assert all(np.isfinite(float(row[8].split()[-1])) and row[9].split()[-1].endswith("%") for row in newton)
    for row in autos + effects:
        rtol = float(row[0].split()[-1])
        assert float(row[8].split()[-1]) <= rtol
    assert all(float(row[8].split()[-1]) > 0 for row in floors)


def test_multinomial_certificate_row_runs_without_violations(bench):
    bench.ROWS.clear()
    bench.bench_certify_multinomial(400, 4, 3, 4, 1)
    row, effects, auto = bench.ROWS
    assert row[8] == "violations 0" and "test-loss effects" in effects[0]
    assert float(auto[8].split()[-1]) <= 0.05


def test_multinomial_certificate_rows_run_on_digits(bench):
    bench.ROWS.clear()
    bench.bench_certify_multinomial(0, 0, 0, 2, 1, dataset="digits")
    row, effects, auto = bench.ROWS
    assert row[1] == "1797x64" and row[0].startswith("digits, K=10")
    assert row[8] == "violations 0" and "certified" in row[9]
    assert float(auto[8].split()[-1]) <= 0.05


@pytest.mark.parametrize("route,cases,hard", [("exact", 4, False), ("leave-out", 1, False), ("softmax", 2, False),
                                              ("exact", 10, True), ("leave-out", 6, True), ("softmax", 8, True),
                                              ("dual", 3, False), ("dual", 3, True), ("auditor", 3, False),
                                              ("paper", 2, False)])
def test_the_certificate_fuzzer_runs_and_finds_nothing(route, cases, hard, capsys, fuzz):
    assert fuzz.main(["--route", route, "--seeds", "3", "--cases", str(cases)] + (["--hard"] if hard else [])) == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert summary.startswith(route) and summary.endswith("0 findings") and " 0 bounds" not in summary


def test_estimates_that_sharpening_certifies_get_effect_bounds_that_hold(monkeypatch, fuzz):
    """Effect certificates form the target's columns only for certified estimates; one that only
    the sharpened spread certifies gets them afterwards, in one more product. A drawn case of the
    fuzzer where that happens (Poisson, 2214 x 76, a set of 20 %): each bound holds against the
    polished refit's effect, and the late products were made."""
    from rif import _certify

    problem, sets, X_eval, y_eval = fuzz.scalar_case(np.random.default_rng([2, 13]), "leave-out", False)
    late, sharpening = [], []
    products = _certify.Certifier._effect_products

    def counted(self, work, sharpen=False):
        if sharpening and work:             # the products that follow sharpening, within its call
            late.extend(len(c.index) for c, _ in work)
        if not sharpen:
            return products(self, work, sharpen)
        sharpening.append(True)
        try:
            return products(self, work, sharpen)
        finally:
            sharpening.pop()

    monkeypatch.setattr(_certify.Certifier, "_effect_products", counted)
    truth = fuzz.polished(problem, sets)
    for target in ("loss", "decision"):
        exact = problem.effect(sets, target, X_eval, y_eval, dtheta=truth)
        for method in ("rif", "newton", "auto"):
            result = problem.effect(sets, target, X_eval, y_eval, method=method, certify=True)
            assert result.certified.all()
            assert np.all(np.abs(result.value - exact) <= result.bound)
    assert late, "no estimate was certified by sharpening alone"


@pytest.mark.parametrize("seed, case", [(3, 5), (5, 0)])
def test_softmax_bounds_count_the_classes_common_part(seed, case, fuzz):
    """Softmax refits at lambda = 1e-4 (fuzzer draws): the penalty alone sees the classes' common part
    of the coefficients, so the gradient's rounding there moves any computed optimum by up to eps / lambda
    (5e-11 here), in a direction whose curvature lambda is far below the smallest one the data give.
    The certificates take the common part out of each gradient and add the estimate's own common
    part, all of it error, to the bound: every bound holds against the exact optimum (the polished
    refit, whose classes sum to zero), including those that fell up to 3x short before."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # the fits at lambda = 1e-4 stop at the rounding floor
        problem, sets, _, _ = fuzz.softmax_case(np.random.default_rng([seed, case]), True)
        truth = fuzz.polished(problem, sets)
        for method, extra in (("retrain", {}), ("rif", {}), ("auto", {"rtol": 1e-4})):
            result = problem.params_change(sets, method, certify=True, **extra)
            errors = np.linalg.norm(result.value - truth, axis=1)
            assert np.all(result.bound >= errors), (method, errors, result.bound)


def test_an_estimate_too_far_for_a_finite_decrement_gets_a_loose_bound_quietly(fuzz):
    """A Poisson fuzzer draw (48 x 38, lambda = 1e-4) whose chord point lies so far that
    g^T H_0^{-1} g overflows: the certificate is left loose, with no floating-point warning, and every
    bound the fuzzer checks holds."""
    _, found = _drawn_and_checked(lambda: fuzz.scalar_case(np.random.default_rng([4, 29]), "exact", True), fuzz)
    assert found == []


def test_a_curvature_that_underflowed_still_grows_in_the_rounding_bound(fuzz):
    """A logistic fuzzer draw (656 x 81, lambda = 1e-4, no intercept) whose estimates move some
    linear predictors past the range of exp: samples whose curvature at theta^ underflowed to 0 grow
    from above it in the gradient's rounding bound (0 times an overflowed exponential gave NaN
    bounds). Every bound is a number and holds."""
    (problem, sets, _, _), found = _drawn_and_checked(
        lambda: fuzz.scalar_case(np.random.default_rng([41, 23]), "leave-out", True), fuzz)
    assert found == []
    assert np.all(np.isfinite(problem.params_change(sets, "rif", certify=True).bound))


def test_a_nearly_certain_samples_curvature_is_not_lost_to_cancellation(fuzz):
    """A softmax fuzzer draw (145 x 18, K = 3, lambda = 1e-2) with a training sample whose most
    probable class has p = 1 to working precision: its block diag p - p p^T, formed entry by entry,
    gave a chord step's form W^T A W = -4e-18 (true 2e-25), which the sharpened drift bound multiplied
    by e^{2 a} ~ 1e23, so the sum came out negative, was read as 0, and certified a Newton step whose
    error (0.76) was 1.5x its bound. The forms at theta^ are now centred sums from the probabilities,
    never negative."""
    (problem, sets, _, _), found = _drawn_and_checked(lambda: fuzz.softmax_case(np.random.default_rng([66, 8]), True),
                                                      fuzz)
    assert found == []
    from rif._certify import _curvature_forms

    rows = np.random.default_rng(0).normal(size=(problem.n_samples, problem.n_classes))
    assert np.all(_curvature_forms(problem, rows) >= 0.0)


def test_kernel_leverage_of_a_sample_with_vanishing_curvature_is_not_read_off_h_over_c(fuzz):
    """A wide logistic fuzzer draw on the dual route (151 x 597, lambda = 1e-3) with a training sample
    of curvature 2e-41: its q_i = x~_i^T H^{-1} x~_i, read off h_i / c_i, came out -1e25 (NaN in the
    certificates' reach); it now comes from the direct formula, and every bound holds."""
    (problem, _, _, _), found = _drawn_and_checked(
        lambda: fuzz.scalar_case(np.random.default_rng([68, 42]), "dual", True), fuzz)
    assert found == []
    assert np.all(problem.raw_leverage > 0)


def test_auto_starts_at_the_newton_step_where_rif_is_undefined(fuzz):
    """A wide Poisson fuzzer draw on the dual route (131 x 400, lambda = 1e-4) whose first set removes a
    sample of leverage 1 - 1e-8: RIF refuses it (as documented), and method='auto' raised with it;
    auto now starts that set at the next method, for parameters and effects, and its bounds hold."""
    import warnings

    import rif

    (problem, sets, X_eval, y_eval), found = _drawn_and_checked(
        lambda: fuzz.scalar_case(np.random.default_rng([79, 3]), "dual", True), fuzz)
    assert found == []
    assert problem.singular_leverage[sets[0]].any() and not problem.singular_leverage[sets[1]].any()
    with pytest.raises(rif.NearSingularLeverageError):
        problem.params_change(sets, "rif")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rif.RetrainConvergenceWarning)     # refits at lambda = 1e-4
        warnings.simplefilter("ignore", rif.CertificationWarning)          # effects near 0: not proved to 5 %
        truth = fuzz.polished(problem, sets)
        result = problem.params_change(sets, "auto", certify=True, rtol=0.05)
        effect = problem.effect(sets, "loss", X_eval, y_eval, method="auto", certify=True)
    assert result.method[0] != "rif" and effect.method[0] != "rif"
    assert np.all(np.linalg.norm(result.value - truth, axis=1) <= result.bound)
    exact = problem.effect(sets, "loss", X_eval, y_eval, dtheta=truth)
    assert np.all(np.abs(effect.value - exact) <= effect.bound)


@pytest.mark.parametrize("seed, case", [(87, 6), (89, 31)])
def test_far_estimates_get_loose_bounds_without_floating_point_warnings(seed, case, fuzz):
    """Exact-route fuzzer draws at lambda = 1e-4 (Poisson 22 x 19, logistic 72 x 15) with estimates so far
    off that a target's gradient overflows, or the curvature's drift bound is inf, at them: their
    bounds are inf or loose, with no overflow or inf / inf warning, and every bound holds."""
    _, found = _drawn_and_checked(lambda: fuzz.scalar_case(np.random.default_rng([seed, case]), "exact", True), fuzz)
    assert found == []
