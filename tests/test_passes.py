"""The fused value/gradient pass and the Gram product against plain NumPy routes."""

import numpy as np
import pytest

from rif import _design, _parallel
from rif._families import get_family


def _data(family, n=3000, d=7, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    eta = X @ rng.normal(size=d) / np.sqrt(d)
    y = {"binomial": (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float),
         "poisson": rng.poisson(np.exp(eta)).astype(float),
         "gaussian": eta + rng.normal(size=n)}[family]
    w = rng.random(n) * 2
    w[rng.choice(n, size=n // 10, replace=False)] = 0.0       # removed samples
    return X, y, w, rng.normal(size=d + 1) / np.sqrt(d)


def _two_passes(X, theta, fit_intercept, y, w, family):
    eta = X @ theta[:X.shape[1]] + (theta[-1] if fit_intercept else 0.0)
    loss, d1, _ = family.derivatives(eta, y)
    r = w * d1
    grad = X.T @ r
    return w @ loss, (np.append(grad, r.sum()) if fit_intercept else grad)


@pytest.mark.parametrize("family", ["binomial", "gaussian", "poisson"])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_fused_pass_equals_two_numpy_passes(family, fit_intercept):
    X, y, w, theta = _data(family)
    fam = get_family(family)
    theta = theta if fit_intercept else theta[:-1]
    value, grad = _design.loss_gradient(X, theta, fit_intercept, y, w, fam)
    want_value, want_grad = _two_passes(X, theta, fit_intercept, y, w, fam)
    assert grad.shape == want_grad.shape
    np.testing.assert_allclose(value, want_value, rtol=1e-12)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-11, atol=1e-11 * np.abs(want_grad).max())


def test_fused_pass_is_the_same_on_any_number_of_threads():
    X, y, w, theta = _data("binomial", n=20000)
    fam = get_family("binomial")
    value, grad = _design.loss_gradient(X, theta, True, y, w, fam)
    with _parallel.limit_threads(1):
        value1, grad1 = _design.loss_gradient(X, theta, True, y, w, fam)
    assert value == value1 and np.array_equal(grad, grad1)     # bit for bit: parts summed in order


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("shape", [(6000, 40, 8), (5, 3, 2), (3001, 7, 1)])
def test_column_products_are_the_products_on_any_number_of_threads(shape, fit_intercept):
    """X~ Theta, column-major; large products are cut into row blocks for rif's threads: the
    same bits on one thread, and X~ Theta up to rounding."""
    n, d, m = shape
    rng = np.random.default_rng(n)
    X, thetas = rng.standard_normal((n, d)), rng.standard_normal((d + fit_intercept, m))
    eta = _design.linear_predictor_columns(X, thetas, fit_intercept)
    with _parallel.limit_threads(1):
        alone = _design.linear_predictor_columns(X, thetas, fit_intercept)
    assert eta.shape == (n, m) and eta.flags.f_contiguous and np.array_equal(eta, alone)
    want = X @ thetas[:d] + (thetas[d] if fit_intercept else 0.0)
    np.testing.assert_allclose(eta, want, rtol=1e-12, atol=1e-12 * np.abs(want).max())


def test_column_major_input_takes_the_numpy_route_with_the_same_result():
    X, y, w, theta = _data("binomial")
    X = X.astype(np.float32).astype(np.float64)       # float32 data, as rif stores it
    fam = get_family("binomial")
    want = _design.loss_gradient(X, theta, True, y, w, fam)
    got = _design.loss_gradient(np.asfortranarray(X), theta, True, y, w, fam)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-12)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-11, atol=1e-11 * np.abs(want[1]).max())


def test_nan_propagates_through_the_fused_pass():
    X, y, w, theta = _data("binomial")
    X = X.copy()
    X[5, 2] = np.nan
    value, grad = _design.loss_gradient(X, theta, True, y, np.ones_like(w), get_family("binomial"))
    assert np.isnan(value) and np.all(np.isnan(grad))


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("threads", [False, True])
@pytest.mark.parametrize("sign", ["non-negative", "mixed"])
def test_weighted_gram_equals_dense_product(threads, sign, fit_intercept, monkeypatch):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(1500, 40))
    c = rng.random(1500)
    if sign == "mixed":
        c -= 0.3                                   # general products, not syrk
    monkeypatch.setattr(_design, "BLOCK_VALUES", 40 * 256)   # several row blocks
    gram = _design.weighted_gram(X, c, fit_intercept, threads=threads)
    Xt = np.hstack([X, np.ones((1500, 1))]) if fit_intercept else X
    want = (Xt * c[:, None]).T @ Xt
    np.testing.assert_allclose(gram, want, rtol=1e-12, atol=1e-12 * np.abs(want).max())
    if sign == "non-negative":
        assert np.array_equal(gram, gram.T)        # syrk fills one triangle, mirrored exactly


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_sparse_gram_equals_dense_product_without_densifying(fit_intercept):
    import scipy.sparse as sp

    rng = np.random.default_rng(5)
    X = sp.random(300, 50, density=0.1, format="csr", random_state=rng)
    X.data -= 0.5
    c = rng.random(300)
    c[::7] = 0.0
    gram = _design.weighted_gram(X, c, fit_intercept)
    Xt = X.toarray()
    if fit_intercept:
        Xt = np.hstack([Xt, np.ones((300, 1))])
    want = (Xt * c[:, None]).T @ Xt
    np.testing.assert_allclose(gram, want, rtol=1e-12, atol=1e-14)
    # duplicate entries (non-canonical CSR) are summed first, as scipy does
    dup = sp.csr_matrix((np.array([1.0, 2.0]), np.array([3, 3]), np.array([0, 2, 2])), shape=(2, 5))
    np.testing.assert_allclose(_design.weighted_gram(dup, np.ones(2), False)[3, 3], 9.0)


def test_limit_threads_validates_and_caps():
    import rif

    for bad, error in ((0, ValueError), (-2, ValueError), (1.5, TypeError), (True, TypeError)):
        with pytest.raises(error, match="limit_threads"):
            with rif.limit_threads(bad):
                pass
    with rif.limit_threads(1):
        assert _parallel.available_threads() == 1
        with rif.limit_threads(3):                # nested: the innermost cap applies
            assert _parallel.available_threads() <= 3
        assert _parallel.available_threads() == 1


def test_passes_work_in_a_forked_child():
    """Threads do not survive fork: a child of a process that has used the pass threads
    must start its own instead of waiting for the parent's forever."""
    import multiprocessing

    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork on this platform")
    X, y, w, theta = _data("binomial", n=20000)
    fam = get_family("binomial")
    want = _design.loss_gradient(X, theta, True, y, w, fam)        # the parent's pool exists now
    with multiprocessing.get_context("fork").Pool(1) as pool:
        got = pool.apply_async(_design.loss_gradient, (X, theta, True, y, w, fam)).get(timeout=60)
    assert got[0] == want[0] and np.array_equal(got[1], want[1])


def test_nested_passes_run_serially_instead_of_deadlocking():
    X, y, w, theta = _data("binomial", n=20000)
    fam = get_family("binomial")
    want = _design.loss_gradient(X, theta, True, y, w, fam)

    def nested(first, last):       # a pass started from inside a pass thread
        return [_design.loss_gradient(X, theta, True, y, w, fam) for _ in range(first, last)]

    results = [r for group in _parallel.run_part_groups(nested, 4) for r in group]
    assert len(results) == 4
    for value, grad in results:
        assert value == want[0] and np.array_equal(grad, want[1])


@pytest.mark.parametrize("family", ["binomial", "gaussian", "poisson"])
@pytest.mark.parametrize("layout", ["C", "F", "csr"])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_joint_pass_equals_one_pass_per_column(family, layout, fit_intercept):
    import scipy.sparse as sps

    X, y, _, _ = _data(family, n=2500)
    rng = np.random.default_rng(6)
    g = 5
    thetas = rng.normal(size=(X.shape[1] + int(fit_intercept), g)) / 3
    weights = rng.random((X.shape[0], g))
    weights[rng.random(weights.shape) < 0.1] = 0.0
    fam = get_family(family)
    Xl = sps.csr_matrix(X) if layout == "csr" else np.asarray(X, order=layout)
    values, grads = _design.loss_gradients(Xl, thetas, fit_intercept, y, weights, fam)
    for k in range(g):
        value, grad = _two_passes(X, thetas[:, k], fit_intercept, y, weights[:, k], fam)
        np.testing.assert_allclose(values[k], value, rtol=1e-12)
        np.testing.assert_allclose(grads[:, k], grad, rtol=1e-11, atol=1e-11 * np.abs(grad).max())


@pytest.mark.parametrize("layout", ["C", "csr"])
def test_removed_samples_whose_loss_overflows_add_nothing_to_the_joint_pass(layout):
    """A sample of weight 0 adds nothing even where its Poisson loss and l' overflow at a far point
    (as in the single pass's kernel); kept samples that overflow still give inf."""
    import warnings

    import scipy.sparse as sps

    X, y, _, _ = _data("poisson", n=2500)
    fam = get_family("poisson")
    X[:, 0], X[0] = 0.0, 0.0
    X[0, 0] = 1.0                                     # below, eta_0 = 800 and every other eta 0
    thetas = np.zeros((X.shape[1] + 1, 2))
    thetas[0] = 800.0
    weights = np.ones((X.shape[0], 2))
    weights[0, 0] = 0.0                               # removed in the first column, kept in the second
    Xl = sps.csr_matrix(X) if layout == "csr" else X
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        values, grads = _design.loss_gradients(Xl, thetas, True, y, weights, fam)
    value, grad = _design.loss_gradient(X, thetas[:, 0], True, y, weights[:, 0], fam)
    assert np.all(np.isfinite(grads[:, 0])) and np.isfinite(values[0])
    np.testing.assert_allclose(values[0], value, rtol=1e-12)
    np.testing.assert_allclose(grads[:, 0], grad, rtol=1e-11, atol=1e-11 * np.abs(grad).max())
    assert not np.all(np.isfinite(grads[:, 1])) and values[1] == np.inf


@pytest.mark.parametrize("threads", [False, True])
def test_weighted_gram_of_fewer_rows_than_a_block(threads):
    """A Gram product of a handful of rows (a removal set's) takes one block of exactly those rows."""
    rng = np.random.default_rng(8)
    X, c = rng.normal(size=(7, 30)), rng.random(7)
    gram = _design.weighted_gram(X, c, True, threads=threads)
    Xt = np.hstack([X, np.ones((7, 1))])
    np.testing.assert_allclose(gram, (Xt * c[:, None]).T @ Xt, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("layout", ["C", "F", "csr"])
def test_linear_predictor_columns_are_the_linear_predictors_column_major(layout, fit_intercept):
    import scipy.sparse as sp

    rng = np.random.default_rng(9)
    dense = rng.normal(size=(400, 12))
    X = {"C": dense, "F": np.asfortranarray(dense), "csr": sp.csr_matrix(dense)}[layout]
    thetas = rng.normal(size=(12 + int(fit_intercept), 5))
    before = thetas.copy()
    rows = _design.linear_predictor_columns(X, thetas, fit_intercept)
    want = dense @ thetas[:12] + (thetas[12] if fit_intercept else 0.0)
    assert rows.shape == (400, 5) and rows.flags.f_contiguous
    np.testing.assert_allclose(rows, want, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(rows, _design.linear_predictor(X, thetas, fit_intercept), rtol=1e-13, atol=1e-13)
    assert np.array_equal(thetas, before)
