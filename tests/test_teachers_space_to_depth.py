import keras
import numpy as np
import pytest
import tensorflow as tf

from zskd_tf import config as config_lib
from zskd_tf import impressions, models
from zskd_tf.teachers import space_to_depth as fast_teacher


def _loss_and_grad(fn, x, y):
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(tf.nn.softmax_cross_entropy_with_logits(y, fn(x) / 20.0))
    return loss, tape.gradient(loss, x)


@pytest.mark.parametrize("name", ["lenet5", "lenet5_half"])
def test_same_logits_and_input_gradient_as_keras(name):
    keras.utils.set_random_seed(1)
    teacher = models.get(name)
    fast = fast_teacher.build(teacher)
    assert fast is not None and fast.internal_shape == (8, 8, 16)
    x = tf.random.uniform((16, 32, 32, 1), seed=2)
    y = tf.nn.softmax(tf.random.normal((16, 10), seed=3))
    want, want_grad = _loss_and_grad(lambda v: teacher(v, training=False), x, y)
    xi = fast.to_internal(x)
    got, got_grad = _loss_and_grad(fast, xi, y)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    got_grad = fast.from_internal(got_grad).numpy()
    np.testing.assert_allclose(got_grad, want_grad.numpy(), atol=1e-6 * np.abs(want_grad).max())
    np.testing.assert_array_equal(fast.from_internal(xi), x)


def test_phase_kernel_places_each_weight_once():
    kernel = np.arange(1, 5 * 5 * 2 * 3 + 1, dtype=np.float32).reshape(5, 5, 2, 3)
    out = fast_teacher.phase_kernel(kernel, 4)
    assert out.shape == (2, 2, 32, 4 * 4 * 3)
    # each of the 16 conv phases holds every weight exactly once
    per_phase = out.reshape(2, 2, 32, 16, 3)
    for phase in range(16):
        values = np.sort(per_phase[..., phase, :][per_phase[..., phase, :] != 0])
        np.testing.assert_array_equal(values, np.sort(kernel.ravel()))


def test_unsupported_teachers_are_left_alone():
    assert fast_teacher.build(models.alexnet_half()) is None
    same_padding = keras.Sequential([
        keras.Input((32, 32, 1)), keras.layers.Conv2D(4, 5, padding="same"),
        keras.layers.MaxPooling2D(2), keras.layers.Flatten(), keras.layers.Dense(10)])
    assert fast_teacher.build(same_padding) is None
    odd_size = models.lenet5(input_shape=(30, 30, 1))
    assert fast_teacher.build(odd_size) is None
    tanh = keras.Sequential([
        keras.Input((32, 32, 1)), keras.layers.Conv2D(4, 5, activation="tanh"),
        keras.layers.MaxPooling2D(2), keras.layers.Flatten(), keras.layers.Dense(10)])
    assert fast_teacher.build(tanh) is None


def test_rgb_single_stage_teacher():
    keras.utils.set_random_seed(4)
    teacher = keras.Sequential([
        keras.Input((12, 12, 3)), keras.layers.Conv2D(5, 3, activation="relu"),
        keras.layers.MaxPooling2D(2), keras.layers.Flatten(), keras.layers.Dense(7)])
    fast = fast_teacher.build(teacher)
    assert fast is not None and fast.internal_shape == (6, 6, 12)
    x = tf.random.uniform((4, 12, 12, 3), seed=5)
    np.testing.assert_allclose(fast(fast.to_internal(x)), teacher(x), atol=1e-5)


@pytest.mark.parametrize("pixel", ["minmax", "clip"])
def test_crafting_matches_keras_path(tiny_teacher, pixel):
    y = np.random.default_rng(0).dirichlet(np.ones(10), 20).astype(np.float32)
    config = config_lib.CraftConfig(lr=0.05, batch_size=10, iterations=5, pixel=pixel)
    fast = impressions.Crafter(tiny_teacher, config).craft(y, [0, 1], seed=3)
    plain = impressions.Crafter(tiny_teacher, config, fast=False).craft(y, [0, 1], seed=3)
    np.testing.assert_allclose(fast.images, plain.images, atol=1e-4)
    np.testing.assert_allclose(fast.loss, plain.loss, atol=1e-4)
    np.testing.assert_allclose(fast.soft_labels, plain.soft_labels, atol=1e-5)
