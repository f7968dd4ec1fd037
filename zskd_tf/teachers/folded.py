"""A chain-shaped teacher (AlexNet form) as raw TensorFlow ops, BatchNorm folded away.

In inference mode every BatchNormalization is a per-channel affine map ``x * s + t``.
When a convolution or dense layer follows it, ``build`` folds the map into that layer:
the kernel is scaled by ``s`` and the shift becomes a bias, which for a zero-padded
("same") convolution is a per-position map (the convolution of the constant image ``t``
with the padded border left at zero), so the result is exact. LRN is computed as a
band-matrix product over channels (the window sum of squares) with the power taken in
float32, dropout is the identity, pooling is ``tf.nn.max_pool2d``. The whole chain can run
in bfloat16 (``cast``), the CPU's fast type where it has native bf16 (docs/PERFORMANCE.md).

Only single-chain teachers made of Conv2D (relu or linear), Dense (relu or linear),
MaxPooling2D, BatchNormalization (last axis), the package's LRN layer, Dropout and
Flatten are built, and every build is checked against the Keras model on random images
(``exact.verified``); ``build`` returns ``None`` for anything else, and callers fall back
to the Keras model.
"""
import keras
import numpy as np
import tensorflow as tf

from zskd_tf import models
from zskd_tf.teachers import exact


class FoldedTeacher:
    """Logits of a teacher from a list of ops ``(kind, params)``; see ``build``. Images
    stay in their usual layout (``to_internal`` is the identity)."""

    def __init__(self, ops, image_shape):
        self._ops = ops
        self.image_shape = self.internal_shape = tuple(image_shape)

    def to_internal(self, x):
        return x

    def from_internal(self, x):
        return x

    def cast(self, dtype):
        """The same teacher computing in ``dtype`` (LRN's power and the logits float32)."""
        def c(p):
            return {k: tf.cast(v, dtype) if isinstance(v, tf.Tensor) and v.dtype.is_floating
                    else v for k, v in p.items()}
        return FoldedTeacher([(kind, c(p)) for kind, p in self._ops], self.image_shape)

    def __call__(self, x):
        dtype = next(p["kernel"].dtype for kind, p in self._ops if "kernel" in p)
        x = tf.cast(x, dtype)
        for kind, p in self._ops:
            x = _APPLY[kind](x, p)
        return tf.cast(x, tf.float32)


def _conv(x, p):
    y = tf.nn.conv2d(x, p["kernel"], p["strides"], p["padding"]) + p["bias"]
    return tf.nn.relu(y) if p["relu"] else y


def _dense(x, p):
    y = tf.matmul(x, p["kernel"]) + p["bias"]
    return tf.nn.relu(y) if p["relu"] else y


def _lrn(x, p):
    """x * (bias + alpha * window sum of x^2) ** -beta, its gradient written out.

    With r = d ** -beta and d the denominator: dx = g * r - 2 alpha beta x S(g x r / d),
    S the (symmetric) window sum: fewer passes than differentiating the composition.
    """
    band, bias, alpha, beta = p["band"], p["bias"], p["alpha"], p["beta"]

    @tf.custom_gradient
    def lrn(x):
        sums = tf.cast(tf.einsum("nhwc,cd->nhwd", x * x, band), tf.float32)
        d = bias + alpha * sums
        if beta == 0.75:
            r = tf.math.rsqrt(d)
            r = r * tf.sqrt(r)
        else:
            r = tf.pow(d, -beta)
        r_low = tf.cast(r, x.dtype)
        out = x * r_low

        def grad(g):
            inner = tf.cast(g * x, tf.float32) * (r / d)
            back = tf.einsum("nhwc,cd->nhwd", tf.cast(inner, x.dtype), band)
            return g * r_low - tf.cast(2 * alpha * beta, x.dtype) * x * back

        return out, grad

    return lrn(x)


_APPLY = {
    "conv": _conv,
    "dense": _dense,
    "affine": lambda x, p: x * p["scale"] + p["shift"],
    "lrn": _lrn,
    "maxpool": lambda x, p: tf.nn.max_pool2d(x, p["size"], p["strides"], p["padding"]),
    "flatten": lambda x, p: tf.reshape(x, (tf.shape(x)[0], -1)),
}


def _chain(teacher):
    """The teacher's layers in order if it is one chain, else None."""
    layers = [layer for layer in teacher.layers if not isinstance(layer, keras.layers.InputLayer)]
    try:
        linked = all(layer.input is prev.output for prev, layer in zip(layers, layers[1:]))
    except (AttributeError, ValueError):  # a layer without one input or one output
        return None
    return layers if linked and layers else None


def _raw_ops(teacher):
    """[(kind, params), ...] in float32 with BatchNorm still unfolded ("affine"), or None."""
    layers = _chain(teacher)
    if layers is None:
        return None
    ops = []
    for layer in layers:
        t = type(layer)
        if t is keras.layers.Dropout:
            continue
        if t is keras.layers.Conv2D:
            if (exact.activation(layer) is None or layer.groups != 1
                    or tuple(layer.dilation_rate) != (1, 1)
                    or layer.data_format != "channels_last"):
                return None
            ops.append(("conv", {
                "kernel": tf.constant(layer.kernel.numpy()),
                "bias": tf.constant(exact.bias(layer)),
                "strides": tuple(layer.strides), "padding": layer.padding.upper(),
                "relu": exact.activation(layer) == "relu",
                "input_shape": layer.input.shape[1:]}))
        elif t is keras.layers.Dense:
            if exact.activation(layer) is None or len(layer.input.shape) != 2:
                return None
            ops.append(("dense", {
                "kernel": tf.constant(layer.kernel.numpy()),
                "bias": tf.constant(exact.bias(layer)),
                "relu": exact.activation(layer) == "relu"}))
        elif t is keras.layers.BatchNormalization:
            if layer.axis not in (-1, len(layer.input.shape) - 1):
                return None
            gamma = layer.gamma.numpy() if layer.scale else 1.0
            beta = layer.beta.numpy() if layer.center else 0.0
            scale = gamma / np.sqrt(layer.moving_variance.numpy() + layer.epsilon)
            shift = beta - layer.moving_mean.numpy() * scale
            ops.append(("affine", {"scale": tf.constant(scale, tf.float32),
                                   "shift": tf.constant(shift, tf.float32)}))
        elif t is models.LocalResponseNormalization:
            channels = np.arange(layer.input.shape[-1])
            band = np.abs(channels[:, None] - channels[None, :]) <= layer.depth_radius
            ops.append(("lrn", {"band": tf.constant(band.astype(np.float32)),
                                "bias": layer.bias, "alpha": layer.alpha, "beta": layer.beta}))
        elif t is keras.layers.MaxPooling2D:
            if layer.data_format != "channels_last":
                return None
            ops.append(("maxpool", {"size": tuple(layer.pool_size),
                                    "strides": tuple(layer.strides),
                                    "padding": layer.padding.upper()}))
        elif t is keras.layers.Flatten:
            ops.append(("flatten", {"shape": layer.input.shape[1:]}))
        else:
            return None
    return ops


def _fold(ops):
    """Folds every affine op into a directly following conv or (after flatten) dense."""
    out, i = [], 0
    while i < len(ops):
        kind, p = ops[i]
        nxt = ops[i + 1] if i + 1 < len(ops) else (None, None)
        if kind == "affine" and nxt[0] == "conv":
            out.append(("conv", _fold_into_conv(p, nxt[1])))
            i += 2
        elif (kind == "affine" and nxt[0] == "flatten" and i + 2 < len(ops)
              and ops[i + 2][0] == "dense"):
            out += [nxt, ("dense", _fold_into_dense(p, ops[i + 2][1], nxt[1]["shape"]))]
            i += 3
        elif kind == "affine" and nxt[0] == "dense":
            out.append(("dense", _fold_into_dense(p, nxt[1], None)))
            i += 2
        else:
            out.append((kind, p))
            i += 1
    return out


def _fold_into_conv(affine, conv):
    """conv(x * s + t) = conv_{kernel * s}(x) + conv(t over the image, zeros outside)."""
    kernel = conv["kernel"] * affine["scale"][None, None, :, None]
    constant = tf.ones((1, *conv["input_shape"])) * affine["shift"]
    bias = tf.nn.conv2d(constant, conv["kernel"], conv["strides"], conv["padding"])[0]
    return {**conv, "kernel": kernel, "bias": bias + conv["bias"]}


def _fold_into_dense(affine, dense, flat_shape):
    """dense(flatten(x * s + t)): the per-channel s, t repeat over the flattened positions."""
    scale, shift = affine["scale"], affine["shift"]
    if flat_shape is not None:
        repeats = int(np.prod(flat_shape[:-1]))
        scale, shift = tf.tile(scale, [repeats]), tf.tile(shift, [repeats])
    return {**dense, "kernel": dense["kernel"] * scale[:, None],
            "bias": dense["bias"] + tf.linalg.matvec(dense["kernel"], shift, transpose_a=True)}


def build(teacher, check_images=8, seed=0):
    """A ``FoldedTeacher`` computing ``teacher``'s inference logits, or ``None``."""
    image_shape = exact.input_image_shape(teacher)
    if image_shape is None:
        return None
    ops = _raw_ops(teacher)
    if not ops or not any(kind in ("conv", "dense") for kind, _ in ops):
        return None
    return exact.verified(FoldedTeacher(_fold(ops), image_shape), teacher, check_images, seed)
