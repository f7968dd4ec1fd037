"""A chain-shaped teacher (AlexNet form) as raw TensorFlow ops, BatchNorm folded away.

In inference mode every BatchNormalization is a per-channel affine map ``x * s + t``.
When a convolution or dense layer follows it, ``build`` folds the map into that layer:
the kernel is scaled by ``s`` and the shift becomes a bias, which for a zero-padded
("same") convolution is a per-position map (the convolution of the constant image ``t``
with the padded border left at zero), so the result is exact. LRN's window sum of
squares is a band-matrix product over channels, dropout is the identity, pooling is
``tf.nn.max_pool2d``. With ``KERNELS = "xla"`` (the default) the element-wise work
runs as XLA-compiled kernels, computing in float32 whatever the teacher's type: a ReLU
convolution followed by LRN (AlexNet's conv1 and conv5) becomes the convolution alone,
then kernels for bias, ReLU and LRN's power around the band products and for their
gradient (two passes over memory each way instead of a dozen TensorFlow ops); the other
ReLU convolutions take their per-position bias and ReLU in one kernel each way; and in
float32 the input gradient of a convolution of the few-channel image is a matmul and an
XLA col2im. With ``"tf"`` those are TensorFlow ops (LRN's power in float32). The whole
chain can run in bfloat16 (``cast``), the CPU's fast type where it has native bf16
(docs/PERFORMANCE.md, "AlexNet crafting: what bounds it").

Only single-chain teachers made of Conv2D (relu or linear), Dense (relu or linear),
MaxPooling2D, BatchNormalization (last axis), the package's LRN layer, Dropout and
Flatten are built, and every build is checked against the Keras model on random images
(``exact.verified``); ``build`` returns ``None`` for anything else, and callers fall back
to the Keras model.
"""
import functools

import keras
import numpy as np
import tensorflow as tf

from zskd_tf import models
from zskd_tf.teachers import exact

KERNELS = "xla"  # or "tf" (docs/PERFORMANCE.md, "AlexNet crafting: what bounds it")


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
            if "kernel" in p and not tf.executing_eagerly():
                # a constant in the graph, not a captured input: oneDNN then keeps the
                # kernel in its own layout between steps instead of reordering it each time
                p = {**p, "kernel": tf.constant(p["kernel"].numpy())}
            with tf.name_scope(p.get("name", kind)):  # names the ops in profiles
                x = _APPLY[kind](x, p)
        return tf.cast(x, tf.float32)


def _conv(x, p):
    if p.get("xla_relu"):
        return _bias_relu(_conv2d(x, p), p["bias"], p.get("name", "conv") + "_grad")
    y = _conv2d(x, p) + p["bias"]
    return tf.nn.relu(y) if p["relu"] else y


def _conv2d(x, p):
    """The convolution alone; with ``col2im`` (a float32 stride-1 "same" convolution of a
    few input channels, AlexNet's conv1) its input gradient is one matmul to the patches'
    gradient, [images * positions, out channels] x [out, k * k * in], and an XLA col2im
    summing the k * k shifted patches: oneDNN's backward-data kernel for 3 output
    channels ran at a fifth of the float32 matmul rate (docs/PERFORMANCE.md)."""
    kernel = p["kernel"]
    if not (p.get("col2im") and x.dtype == tf.float32):
        return tf.nn.conv2d(x, kernel, p["strides"], p["padding"])
    kh, kw, cin, cout = kernel.shape
    col2im = _col2im_kernel(kh, kw)

    @tf.custom_gradient
    def conv(x):
        def grad(g):
            with tf.name_scope(p.get("name", "conv") + "_grad"):
                patches = tf.matmul(tf.reshape(g, (-1, cout)),
                                    tf.reshape(kernel, (kh * kw * cin, cout)), transpose_b=True)
                return col2im(tf.reshape(patches, tf.concat([tf.shape(g)[:3],
                                                             [kh, kw, cin]], 0)))

        return tf.nn.conv2d(x, kernel, 1, "SAME"), grad

    return conv(x)


@functools.cache
def _col2im_kernel(kh, kw):
    """XLA-compiled [n, h, w, kh, kw, c] patch gradients -> [n, h, w, c] image gradient of
    a stride-1 "same" convolution (odd kernel sizes): the sum of the shifted patches."""
    @tf.function(jit_compile=True)
    def col2im(patches):
        h, w = patches.shape[1:3]
        padded = tf.add_n([
            tf.pad(patches[:, :, :, i, j, :], [[0, 0], [i, kh - 1 - i], [j, kw - 1 - j], [0, 0]])
            for i in range(kh) for j in range(kw)])
        return padded[:, kh // 2:kh // 2 + h, kw // 2:kw // 2 + w, :]

    return col2im


@tf.function(jit_compile=True)
def _bias_relu_forward(z, b):
    return tf.cast(tf.nn.relu(tf.cast(z, tf.float32) + tf.cast(b, tf.float32)), z.dtype)


@tf.function(jit_compile=True)
def _bias_relu_gradient(z, b, g):
    return tf.where(tf.cast(z, tf.float32) + tf.cast(b, tf.float32) > 0, g, tf.zeros_like(g))


def _bias_relu(z, b, grad_scope):
    """relu(z + b) and its gradient as one XLA kernel each (a per-position bias, which
    oneDNN cannot fuse into the convolution, costs two TensorFlow ops forward)."""
    @tf.custom_gradient
    def bias_relu(z):
        def grad(g):
            with tf.name_scope(grad_scope):
                return _bias_relu_gradient(z, b, g)

        return _bias_relu_forward(z, b), grad

    return bias_relu(z)


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
            with tf.name_scope(p.get("name", "lrn") + "_grad"):  # else unnamed in profiles
                inner = tf.cast(g * x, tf.float32) * (r / d)
                back = tf.einsum("nhwc,cd->nhwd", tf.cast(inner, x.dtype), band)
                return g * r_low - tf.cast(2 * alpha * beta, x.dtype) * x * back

        return out, grad

    return lrn(x)


@functools.cache
def _relu_lrn_kernels(bias, alpha, beta):
    """XLA-compiled element-wise kernels of y = relu(z + b), out = y * d ** -beta with
    d = bias + alpha * s and s the window sum of y^2 over channels (computed outside, as
    ``_lrn``'s band product), in float32 inside whatever the tensors' type: (squares,
    forward, inner, gradient); see ``_conv_relu_lrn``."""
    def relu(z, b):
        return tf.nn.relu(tf.cast(z, tf.float32) + tf.cast(b, tf.float32))

    def power(s):
        d = bias + alpha * tf.cast(s, tf.float32)
        if beta == 0.75:
            r = tf.math.rsqrt(d)
            return d, r * tf.sqrt(r)
        return d, tf.pow(d, -beta)

    @tf.function(jit_compile=True)
    def squares(z, b):
        y = relu(z, b)
        return tf.cast(y * y, z.dtype)

    @tf.function(jit_compile=True)
    def forward(z, b, s):
        return tf.cast(relu(z, b) * power(s)[1], z.dtype)

    @tf.function(jit_compile=True)
    def inner(z, b, s, g):
        d, r = power(s)
        return tf.cast(tf.cast(g, tf.float32) * relu(z, b) * (r / d), z.dtype)

    @tf.function(jit_compile=True)
    def gradient(z, b, s, g, back):
        y, (_, r) = relu(z, b), power(s)
        g, back = tf.cast(g, tf.float32), tf.cast(back, tf.float32)
        return tf.cast(tf.where(y > 0, g * r - 2 * alpha * beta * y * back, 0.0), z.dtype)

    return squares, forward, inner, gradient


def _conv_relu_lrn(x, p):
    """LRN(relu(conv(x) + bias)): the convolution, then the window sums as band products
    (oneDNN) between XLA kernels for everything element-wise, ReLU's gradient included."""
    z = _conv2d(x, p)
    squares, forward, inner, gradient = _relu_lrn_kernels(p["lrn_bias"], p["alpha"], p["beta"])
    b, band = p["bias"], p["band"]

    @tf.custom_gradient
    def relu_lrn(z):
        s = tf.einsum("nhwc,cd->nhwd", squares(z, b), band)

        def grad(g):
            with tf.name_scope(p["lrn_name"] + "_grad"):
                back = tf.einsum("nhwc,cd->nhwd", inner(z, b, s, g), band)
                return gradient(z, b, s, g, back)

        return forward(z, b, s), grad

    with tf.name_scope(p["lrn_name"]):
        return relu_lrn(z)


_APPLY = {
    "conv": _conv,
    "conv_lrn": _conv_relu_lrn,
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
        named = {"name": layer.name}
        if t is keras.layers.Dropout:
            continue
        if t is keras.layers.Conv2D:
            if (exact.activation(layer) is None or layer.groups != 1
                    or tuple(layer.dilation_rate) != (1, 1)
                    or layer.data_format != "channels_last"):
                return None
            ops.append(("conv", {
                **named, "kernel": tf.constant(layer.kernel.numpy()),
                "bias": tf.constant(exact.bias(layer)),
                "strides": tuple(layer.strides), "padding": layer.padding.upper(),
                "relu": exact.activation(layer) == "relu",
                "input_shape": layer.input.shape[1:]}))
        elif t is keras.layers.Dense:
            if exact.activation(layer) is None or len(layer.input.shape) != 2:
                return None
            ops.append(("dense", {
                **named, "kernel": tf.constant(layer.kernel.numpy()),
                "bias": tf.constant(exact.bias(layer)),
                "relu": exact.activation(layer) == "relu"}))
        elif t is keras.layers.BatchNormalization:
            if layer.axis not in (-1, len(layer.input.shape) - 1):
                return None
            gamma = layer.gamma.numpy() if layer.scale else 1.0
            beta = layer.beta.numpy() if layer.center else 0.0
            scale = gamma / np.sqrt(layer.moving_variance.numpy() + layer.epsilon)
            shift = beta - layer.moving_mean.numpy() * scale
            ops.append(("affine", {**named, "scale": tf.constant(scale, tf.float32),
                                   "shift": tf.constant(shift, tf.float32)}))
        elif t is models.LocalResponseNormalization:
            channels = np.arange(layer.input.shape[-1])
            band = np.abs(channels[:, None] - channels[None, :]) <= layer.depth_radius
            ops.append(("lrn", {**named, "band": tf.constant(band.astype(np.float32)),
                                "bias": layer.bias, "alpha": layer.alpha, "beta": layer.beta}))
        elif t is keras.layers.MaxPooling2D:
            if layer.data_format != "channels_last":
                return None
            ops.append(("maxpool", {**named, "size": tuple(layer.pool_size),
                                    "strides": tuple(layer.strides),
                                    "padding": layer.padding.upper()}))
        elif t is keras.layers.Flatten:
            ops.append(("flatten", {**named, "shape": layer.input.shape[1:]}))
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


def _xla_element_wise(ops):
    """Every ReLU conv directly followed by LRN becomes one "conv_lrn" op; the other ReLU
    convs with a per-position bias (BatchNorm folded in) take bias and ReLU in XLA; a conv
    of the few-channel image gets its float32 input gradient as matmul + col2im."""
    out = []
    for kind, p in ops:
        if kind == "conv":
            kh, kw, cin, _ = p["kernel"].shape
            if (cin <= 4 and tuple(p["strides"]) == (1, 1) and p["padding"] == "SAME"
                    and kh % 2 == 1 and kw % 2 == 1):
                p = {**p, "col2im": True}
        if kind == "lrn" and out and out[-1][0] == "conv" and out[-1][1]["relu"]:
            conv = {k: v for k, v in out[-1][1].items() if k != "xla_relu"}
            out[-1] = ("conv_lrn", {**conv, "lrn_name": p["name"], "band": p["band"],
                                    "lrn_bias": p["bias"], "alpha": p["alpha"],
                                    "beta": p["beta"]})
        elif kind == "conv" and p["relu"] and len(p["bias"].shape) == 3:
            out.append((kind, {**p, "xla_relu": True}))
        else:
            out.append((kind, p))
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


def build(teacher, check_images=8, seed=0, kernels=None):
    """A ``FoldedTeacher`` computing ``teacher``'s inference logits, or ``None``.
    kernels: "xla" or "tf" (default ``KERNELS``)."""
    image_shape = exact.input_image_shape(teacher)
    if image_shape is None:
        return None
    ops = _raw_ops(teacher)
    if not ops or not any(kind in ("conv", "dense") for kind, _ in ops):
        return None
    ops = _fold(ops)
    if (kernels or KERNELS) == "xla":
        ops = _xla_element_wise(ops)
    return exact.verified(FoldedTeacher(ops, image_shape), teacher, check_images, seed)
