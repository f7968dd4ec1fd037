import keras
import numpy as np
import pytest
import tensorflow as tf

from zskd_tf import config as config_lib
from zskd_tf import impressions, models
from zskd_tf.teachers import folded as folded_teacher


def _with_batchnorm_statistics(model, seed=0):
    """Gives every BatchNormalization non-trivial gamma, beta and moving statistics, so a
    wrong fold (or a border map left out) shows in the logits."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 2, c), rng.normal(0, 0.5, c),
                               rng.normal(0, 0.5, c), rng.uniform(0.5, 2, c)])
    return model


def _loss_and_grad(fn, x, y):
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(tf.nn.softmax_cross_entropy_with_logits(y, fn(x) / 20.0))
    return loss, tape.gradient(loss, x)


@pytest.fixture(scope="module")
def alexnet_half():
    keras.utils.set_random_seed(4)
    return _with_batchnorm_statistics(models.alexnet_half())


@pytest.mark.parametrize("kernels", ["xla", "tf"])
def test_alexnet_folds_every_batchnorm_and_keeps_logits_and_gradients(alexnet_half,
                                                                       kernels):
    folded = folded_teacher.build(alexnet_half, kernels=kernels)
    assert folded is not None
    kinds = [kind for kind, _ in folded._ops]
    assert "affine" not in kinds
    if kernels == "xla":  # conv1 + lrn2 and conv5 + lrn6 fused
        assert kinds.count("conv_lrn") == 2 and kinds.count("conv") == 3
        assert all(p.get("xla_relu") for kind, p in folded._ops if kind == "conv")
        assert [p.get("col2im", False) for kind, p in folded._ops if "kernel" in p][:2] == [
            True, False]  # conv1 (3 channels in), not conv5
    else:
        assert kinds.count("lrn") == 2 and kinds.count("conv") == 5
    # inputs far outside [0, 1] make the LRN denominators matter
    x = tf.random.uniform((6, 32, 32, 3), seed=1) * 50.0
    y = tf.nn.softmax(tf.random.normal((6, 10), seed=2))
    want, want_grad = _loss_and_grad(lambda v: alexnet_half(v, training=False), x, y)
    got, got_grad = _loss_and_grad(folded, x, y)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    np.testing.assert_allclose(got_grad, want_grad, atol=1e-5 * np.abs(want_grad).max())


def test_lrn_and_its_written_out_gradient_match_tensorflow():
    x = tf.random.uniform((2, 5, 5, 12), seed=3) * 100.0
    channels = np.arange(12)
    band = tf.constant((np.abs(channels[:, None] - channels[None, :]) <= 2).astype(np.float32))
    w = tf.random.normal((2, 5, 5, 12), seed=4)
    for beta in (0.75, 0.5):
        params = {"band": band, "bias": 1.0, "alpha": 1e-4, "beta": beta}
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            ours = folded_teacher._lrn(x, params)
            theirs = tf.nn.local_response_normalization(x, 2, 1.0, 1e-4, beta)
            mine, ref = tf.reduce_sum(ours * w), tf.reduce_sum(theirs * w)
        np.testing.assert_allclose(ours, theirs, rtol=1e-5)
        np.testing.assert_allclose(tape.gradient(mine, x), tape.gradient(ref, x),
                                   rtol=1e-4, atol=1e-6)


def test_relu_lrn_xla_kernels_match_tensorflow():
    """conv + bias + ReLU + LRN through the XLA kernels, against TensorFlow's ops."""
    x = tf.random.uniform((2, 6, 6, 3), seed=7) * 30.0
    kernel = tf.random.normal((3, 3, 3, 12), seed=8)
    bias = tf.random.normal((6, 6, 12), seed=9)  # a per-position bias, as BN folding makes
    channels = np.arange(12)
    band = tf.constant((np.abs(channels[:, None] - channels[None, :]) <= 2).astype(np.float32))
    w = tf.random.normal((2, 6, 6, 12), seed=10)
    for beta in (0.75, 0.5):
        params = {"kernel": kernel, "bias": bias, "strides": (1, 1), "padding": "SAME",
                  "lrn_name": "lrn", "band": band, "lrn_bias": 1.0, "alpha": 1e-4,
                  "beta": beta}
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            ours = folded_teacher._conv_relu_lrn(x, params)
            theirs = tf.nn.local_response_normalization(
                tf.nn.relu(tf.nn.conv2d(x, kernel, 1, "SAME") + bias), 2, 1.0, 1e-4, beta)
            mine, ref = tf.reduce_sum(ours * w), tf.reduce_sum(theirs * w)
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
        want = tape.gradient(ref, x)
        np.testing.assert_allclose(tape.gradient(mine, x), want, rtol=1e-4,
                                   atol=1e-5 * np.abs(want).max())


def test_bfloat16_copy_is_close_and_computes_in_bfloat16(alexnet_half):
    folded = folded_teacher.build(alexnet_half)
    low = folded.cast(tf.bfloat16)
    assert all(p["kernel"].dtype == tf.bfloat16 for kind, p in low._ops if "kernel" in p)
    x = tf.random.uniform((6, 32, 32, 3), seed=5)
    want = alexnet_half(x, training=False)
    got = low(x)
    assert got.dtype == tf.float32
    scale = float(tf.reduce_max(tf.abs(want)))
    assert 0 < float(tf.reduce_max(tf.abs(got - want))) < 0.05 * scale


def test_teachers_it_cannot_fold_are_left_alone():
    inputs = keras.Input((32, 32, 3))
    a = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    b = keras.layers.Add()([a, keras.layers.Conv2D(4, 3, padding="same")(a)])
    residual = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(b)))
    assert folded_teacher.build(residual) is None
    elu = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3, activation="elu"),
                            keras.layers.Flatten(), keras.layers.Dense(3)])
    assert folded_teacher.build(elu) is None


def test_crafter_uses_the_folded_teacher_for_alexnet(alexnet_half):
    config = config_lib.CraftConfig(lr=0.01, batch_size=4, iterations=2)
    crafter = impressions.Crafter(alexnet_half, config)
    assert isinstance(crafter.fast, folded_teacher.FoldedTeacher)
    y = tf.nn.softmax(tf.random.normal((8, 10), seed=6)).numpy()
    fast = crafter.craft(y, range(2), seed=0)
    plain = impressions.Crafter(alexnet_half, config, fast=False).craft(y, range(2), seed=0)
    np.testing.assert_allclose(fast.images, plain.images, atol=1e-5)
    np.testing.assert_allclose(fast.soft_labels, plain.soft_labels, atol=1e-6)


def test_few_channel_convolution_input_gradient_as_matmul_and_col2im():
    """float32, stride 1, "same", 3 input channels: the col2im gradient equals TensorFlow's."""
    x = tf.random.uniform((3, 9, 9, 3), seed=11) * 5.0
    kernel = tf.random.normal((5, 5, 3, 8), seed=12)
    w = tf.random.normal((3, 9, 9, 8), seed=13)
    params = {"kernel": kernel, "strides": (1, 1), "padding": "SAME", "col2im": True}
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        ours = folded_teacher._conv2d(x, params)
        theirs = tf.nn.conv2d(x, kernel, 1, "SAME")
        mine, ref = tf.reduce_sum(ours * w), tf.reduce_sum(theirs * w)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)
    want = tape.gradient(ref, x)
    np.testing.assert_allclose(tape.gradient(mine, x), want, atol=1e-5 * np.abs(want).max())
    # inside a function with an unknown batch size too
    graph_grad = tf.function(lambda v: tf.gradients(
        tf.reduce_sum(folded_teacher._conv2d(v, params) * w), v)[0],
        input_signature=[tf.TensorSpec((None, 9, 9, 3))])
    np.testing.assert_allclose(graph_grad(x), want, atol=1e-5 * np.abs(want).max())
