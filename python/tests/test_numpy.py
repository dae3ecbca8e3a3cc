"""bnorm's NumPy module against a float64 NumPy reference of the formulas (docs/semantics.md)."""

import threading

import numpy as np
import pytest

import bnorm

SHAPES_AXES = [
    ((64, 100), -1), ((64, 100), 1), ((5, 3), 0), ((4, 7, 9), 1), ((2, 3, 5, 6), 1),
    ((2, 5, 6, 3), -1), ((3, 4, 2, 3, 5), 1), ((1, 17, 33), 2), ((9, 1, 1, 4), 1),
]


def reference_forward(x, gamma, beta, axis, eps):
    x64 = x.astype(np.float64)
    axes = tuple(a for a in range(x.ndim) if a != axis % x.ndim)
    shape = [1] * x.ndim
    shape[axis] = x.shape[axis]
    mean = x64.mean(axis=axes)
    var = ((x64 - mean.reshape(shape)) ** 2).mean(axis=axes)
    xhat = (x64 - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
    y = gamma.reshape(shape) * xhat + beta.reshape(shape)
    return y, mean, var, xhat, axes, shape


def random_case(shape, axis, dtype, seed=0):
    rng = np.random.default_rng(seed)
    c = shape[axis]
    x = (rng.standard_normal(shape) * 3 + 5).astype(dtype)
    gamma = rng.uniform(0.5, 2, c).astype(dtype)
    beta = rng.standard_normal(c).astype(dtype)
    return x, gamma, beta


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,axis", SHAPES_AXES)
def test_forward_backward_match_reference(shape, axis, dtype):
    x, gamma, beta = random_case(shape, axis, dtype)
    eps = 1e-3
    y, mean, var = bnorm.forward_training(x, gamma, beta, axis=axis, epsilon=eps)
    y_ref, mean_ref, var_ref, xhat, axes, cshape = reference_forward(x, gamma, beta, axis, eps)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert y.dtype == dtype and y.shape == x.shape
    np.testing.assert_allclose(mean, mean_ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(var, var_ref, rtol=tol * 10, atol=tol)
    np.testing.assert_allclose(y, y_ref, rtol=tol * 10, atol=tol * 10)

    dy = np.random.default_rng(1).standard_normal(shape).astype(dtype)
    dx, dgamma, dbeta = bnorm.backward(x, dy, mean, var, gamma, axis=axis, epsilon=eps)
    dy64 = dy.astype(np.float64)
    m = x.size // x.shape[axis]
    dbeta_ref = dy64.sum(axis=axes)
    dgamma_ref = (dy64 * xhat).sum(axis=axes)
    dx_ref = (gamma.reshape(cshape) / np.sqrt(var_ref.reshape(cshape) + eps)) * (
        dy64 - dbeta_ref.reshape(cshape) / m - xhat * dgamma_ref.reshape(cshape) / m)
    np.testing.assert_allclose(dbeta, dbeta_ref, rtol=tol * 10, atol=tol * 100)
    np.testing.assert_allclose(dgamma, dgamma_ref, rtol=tol * 10, atol=tol * 100)
    np.testing.assert_allclose(dx, dx_ref, rtol=tol * 100, atol=tol * 100)

    y_inf = bnorm.forward_inference(x, mean, var, gamma, beta, axis=axis, epsilon=eps)
    np.testing.assert_allclose(y_inf, y_ref, rtol=tol * 10, atol=tol * 10)


def test_out_in_place_and_zero_copy():
    x, gamma, beta = random_case((8, 6, 5), 1, np.float32)
    expected, _, _ = bnorm.forward_training(x, gamma, beta, axis=1)
    out = np.full_like(x, 7.0)  # junk: outputs are assigned, never accumulated
    y, _, _ = bnorm.forward_training(x, gamma, beta, axis=1, out=out)
    assert y is out
    np.testing.assert_array_equal(out, expected)
    z = x.copy()
    bnorm.forward_training(z, gamma, beta, axis=1, out=z)  # in place
    np.testing.assert_array_equal(z, expected)


def test_gamma_beta_absent_mean_one_and_zero():
    x, _, _ = random_case((16, 4), -1, np.float64)
    y_none, _, _ = bnorm.forward_training(x)
    y_ones, _, _ = bnorm.forward_training(x, np.ones(4), np.zeros(4))
    np.testing.assert_array_equal(y_none, y_ones)


def test_errors_are_value_errors_with_a_message():
    x = np.ones((4, 3), np.float32)
    x[0] = 0
    with pytest.raises(ValueError, match="C-contiguous"):
        bnorm.forward_training(np.asfortranarray(np.ones((4, 3), np.float32)))
    with pytest.raises(ValueError, match="float32 or float64"):
        bnorm.forward_training(np.ones((4, 3), np.int32))
    with pytest.raises(ValueError, match="axis"):
        bnorm.forward_training(x, axis=5)
    with pytest.raises(ValueError, match="gamma"):
        bnorm.forward_training(x, np.ones(2, np.float32))
    with pytest.raises(ValueError, match="[Ee]xpected more than 1 value"):
        bnorm.forward_training(np.ones((1, 3), np.float32), axis=1)
    with pytest.raises(ValueError, match="out"):
        bnorm.forward_training(x, out=np.empty((4, 3), np.float64))
    with pytest.raises(ValueError, match="dy"):
        bnorm.backward(x, np.ones((3, 3), np.float32), np.zeros(3), np.ones(3))


def test_fused_variants_equal_the_composition():
    x, gamma, beta = random_case((6, 5, 7), 1, np.float64)
    z = np.random.default_rng(3).standard_normal(x.shape)
    dy = np.random.default_rng(4).standard_normal(x.shape)
    y, mean, var = bnorm.forward_training(x, gamma, beta, axis=1)
    yr, mean_r, var_r, mask = bnorm.forward_training_relu(x, gamma, beta, axis=1)
    np.testing.assert_array_equal(yr, np.maximum(y, 0))
    np.testing.assert_array_equal(mask, (yr > 0).astype(np.uint8))
    np.testing.assert_array_equal(mean_r, mean)
    dx_ref, dg_ref, db_ref = bnorm.backward(x, dy * (y > 0), mean, var, gamma, axis=1)
    for dx, dg, db in (bnorm.backward_relu(x, dy, mask, mean, var, gamma, axis=1),
                       bnorm.backward_relu_from_y(x, yr, dy, mean, var, gamma, axis=1)):
        np.testing.assert_allclose(dx, dx_ref, atol=1e-12)
        np.testing.assert_allclose(dg, dg_ref, atol=1e-12)
        np.testing.assert_allclose(db, db_ref, atol=1e-12)
    ya, _, _ = bnorm.forward_training_add_relu(x, z, gamma, beta, axis=1)
    np.testing.assert_allclose(ya, np.maximum(y + z, 0), atol=1e-12)
    dx, dz, dg, db = bnorm.backward_add_relu(x, ya, dy, mean, var, gamma, axis=1)
    np.testing.assert_array_equal(dz, dy * (ya > 0))
    dx_ref, _, _ = bnorm.backward(x, dz, mean, var, gamma, axis=1)
    np.testing.assert_allclose(dx, dx_ref, atol=1e-12)
    yi = bnorm.forward_inference_relu(x, mean, var, gamma, beta, axis=1)
    np.testing.assert_allclose(yi, np.maximum(y, 0), atol=1e-12)


def test_phases_across_uneven_and_empty_slices_equal_the_whole_batch():
    x, gamma, beta = random_case((11, 4, 3), 1, np.float64)
    slices = [x[:5], x[5:5], x[5:6], x[6:]]  # uneven, one empty
    per_rank = np.stack([bnorm.channel_moments(np.ascontiguousarray(s), axis=1) for s in slices])
    merged = bnorm.merge_ranks(per_rank)
    _, mean, var = bnorm.forward_training(x, axis=1)
    assert np.all(merged[:, 0] == 33)
    np.testing.assert_allclose(merged[:, 1], mean, rtol=1e-14)
    np.testing.assert_allclose(merged[:, 2] / merged[:, 0], var, rtol=1e-13)
    y = bnorm.normalize(x, merged[:, 1], merged[:, 2] / 33, gamma, beta, axis=1)
    y_ref, _, _ = bnorm.forward_training(x, gamma, beta, axis=1)
    np.testing.assert_allclose(y, y_ref, atol=1e-13)
    dy = np.random.default_rng(2).standard_normal(x.shape)
    sums = [bnorm.backward_sums(np.ascontiguousarray(s), np.ascontiguousarray(d), mean, var,
                                axis=1) for s, d in zip(slices, [dy[:5], dy[5:5], dy[5:6], dy[6:]])]
    sum_dy = sum(s[0] for s in sums)
    sum_dy_xhat = sum(s[1] for s in sums)
    dx = bnorm.backward_input(x, dy, mean, var, sum_dy, sum_dy_xhat, 33, gamma, axis=1)
    dx_ref, dg_ref, db_ref = bnorm.backward(x, dy, mean, var, gamma, axis=1)
    np.testing.assert_allclose(dx, dx_ref, atol=1e-13)
    np.testing.assert_allclose(sum_dy_xhat, dg_ref, atol=1e-12)
    np.testing.assert_allclose(sum_dy, db_ref, atol=1e-12)


def test_threads_setting_and_bitwise_identical_results():
    x, gamma, beta = random_case((32, 16, 40), 1, np.float32)
    before = bnorm.get_num_threads()
    try:
        results = []
        for n in (1, 2, 3):
            bnorm.set_num_threads(n)
            assert bnorm.get_num_threads() == n
            results.append(bnorm.forward_training(x, gamma, beta, axis=1))
        for y, mean, var in results[1:]:
            np.testing.assert_array_equal(y, results[0][0])
            np.testing.assert_array_equal(mean, results[0][1])
    finally:
        bnorm.set_num_threads(before)
    with pytest.raises(ValueError):
        bnorm.set_num_threads(0)


def test_gil_is_released_during_kernels():
    # Two Python threads each run kernels on their own arrays; with the GIL held throughout, the
    # results would still be right, so check the results and that both threads progressed.
    x, gamma, beta = random_case((64, 32, 64), 1, np.float32)
    expected, _, _ = bnorm.forward_training(x, gamma, beta, axis=1)
    errors = []

    def work():
        try:
            for _ in range(5):
                y, _, _ = bnorm.forward_training(x, gamma, beta, axis=1)
                np.testing.assert_array_equal(y, expected)
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_kernel_selection():
    names = bnorm.kernel_names()
    assert names[-1] == "reference"
    x, gamma, beta = random_case((8, 5, 9), 1, np.float64)
    y_fast, _, _ = bnorm.forward_training(x, gamma, beta, axis=1)
    bnorm.set_kernel("reference")
    try:
        assert bnorm.forced_kernel() == "reference"
        y_ref, _, _ = bnorm.forward_training(x, gamma, beta, axis=1)
    finally:
        bnorm.set_kernel("")
    np.testing.assert_allclose(y_fast, y_ref, atol=1e-13)
    with pytest.raises(ValueError):
        bnorm.set_kernel("no-such-kernel")
