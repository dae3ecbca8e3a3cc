"""bnorm.BatchNorm (the layer) from NumPy: options by keyword, state views, save/load."""

import numpy as np
import pytest

import bnorm


def data(shape, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * 2 + 1).astype(dtype)


def test_keras_defaults_and_moving_average_direction():
    layer = bnorm.BatchNorm(4)
    assert layer.options.axis == -1 and layer.options.momentum == pytest.approx(0.99)
    assert layer.options.epsilon == pytest.approx(1e-3)
    x = data((32, 4))
    y = layer.forward(x, training=True)
    _, mean, var = bnorm.forward_training(x, layer.gamma, layer.beta, epsilon=1e-3)
    np.testing.assert_allclose(layer.moving_mean, 0.01 * mean, rtol=1e-5)
    np.testing.assert_allclose(layer.moving_variance, 0.99 + 0.01 * var, rtol=1e-5)  # biased
    assert layer.num_batches_tracked == 1
    np.testing.assert_allclose(y.mean(axis=0), 0, atol=1e-5)


def test_pytorch_preset_unbiased_running_variance_and_errors():
    layer = bnorm.BatchNorm(3, preset="pytorch", dtype="float64")
    assert layer.options.axis == 1 and layer.options.epsilon == pytest.approx(1e-5)
    x = data((5, 3, 2), dtype=np.float64)
    layer.forward(x, training=True)
    m = 10
    var = x.transpose(1, 0, 2).reshape(3, -1).var(axis=1)
    np.testing.assert_allclose(layer.moving_variance, 0.9 + 0.1 * var * m / (m - 1), rtol=1e-12)
    with pytest.raises(ValueError, match="more than 1 value"):
        layer.forward(data((1, 3), dtype=np.float64), training=True)
    cumulative = bnorm.BatchNorm(3, preset="pytorch", momentum=None, affine=False)
    assert cumulative.options.momentum is None and cumulative.gamma.size == 0


def test_backward_and_gradients_match_functional():
    layer = bnorm.BatchNorm(6, preset="pytorch", dtype=np.float64)
    layer.gamma[:] = np.linspace(0.5, 2, 6)
    x = data((4, 6, 5), dtype=np.float64)
    dy = data((4, 6, 5), seed=1, dtype=np.float64)
    layer.forward(x, training=True)
    dx = layer.backward(x, dy)
    _, mean, var = bnorm.forward_training(x, layer.gamma, layer.beta, axis=1, epsilon=1e-5)
    dx_ref, dg_ref, db_ref = bnorm.backward(x, dy, mean, var, layer.gamma, axis=1, epsilon=1e-5)
    np.testing.assert_allclose(dx, dx_ref, atol=1e-13)
    np.testing.assert_allclose(layer.gamma_grad, dg_ref, atol=1e-12)
    np.testing.assert_allclose(layer.beta_grad, db_ref, atol=1e-12)
    with pytest.raises(ValueError):
        layer.gamma_grad[0] = 1  # a read-only view


def test_options_by_keyword_and_enum_names():
    layer = bnorm.BatchNorm(2, momentum_convention="pytorch", momentum=0.2,
                            moving_variance="unbiased", single_value="error", renorm=True,
                            renorm_clipping={"rmax": 3, "dmax": 5},
                            gamma_regularizer={"l2": 0.01}, virtual_batch_size=0)
    assert layer.options.momentum_convention == bnorm.MomentumConvention.pytorch
    assert layer.options.renorm_clipping.rmax == 3
    assert layer.regularization_loss() == pytest.approx(0.01 * 2)
    with pytest.raises(ValueError, match="momentum_convention"):
        bnorm.BatchNorm(2, momentum_convention="sideways")
    with pytest.raises(ValueError, match="unknown BatchNorm option"):
        bnorm.BatchNorm(2, no_such_option=1)
    with pytest.raises(ValueError):
        bnorm.BatchNorm(2, epsilon=-1.0)


def test_save_load_round_trip(tmp_path):
    a = bnorm.BatchNorm(5, preset="pytorch")
    a.gamma[:] = np.arange(5)
    for seed in range(3):
        a.forward(data((8, 5, 3), seed), training=True)
    path = tmp_path / "bn.safetensors"
    a.save(path)
    b = bnorm.BatchNorm(5, preset="pytorch")
    b.load(str(path))
    for name in ("gamma", "beta", "moving_mean", "moving_variance"):
        np.testing.assert_array_equal(getattr(b, name), getattr(a, name))
    assert b.num_batches_tracked == 3
    x = data((8, 5, 3), 9)
    np.testing.assert_array_equal(a.forward(x, training=False), b.forward(x, training=False))
    with pytest.raises(ValueError):
        bnorm.BatchNorm(4, preset="pytorch").load(path)  # wrong channel count


def test_views_keep_the_layer_alive():
    gamma = bnorm.BatchNorm(3).gamma  # the layer has no other reference
    gamma[:] = 2
    np.testing.assert_array_equal(gamma, [2, 2, 2])
