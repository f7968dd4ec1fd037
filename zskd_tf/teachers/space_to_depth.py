"""A conv + max-pool + dense teacher, rewritten exactly in space-to-depth layout for crafting.

LeNet-style teachers open with a one-channel 5x5 convolution and 2x2 max-pools: shapes on
which the CPU's convolution kernels run at a small fraction of its matmul rate, and
whose pooling gradient is slow (docs/PERFORMANCE.md). ``build`` computes the same
function in another layout. With S conv+pool stages the image is held as
``space_to_depth(x, 2**S)``; each stage "conv k x k (valid) -> max-pool 2x2" becomes one
convolution whose output channels are the four pooling phases, then a max over those
channel groups. Bias and ReLU move after the max (both commute with it), and the max's
gradient is a hand-written mask. The kernels are the teacher's weights scattered into
zero-padded phase kernels: more multiply-adds, in shapes that run several times faster.

Only sequential teachers of the form (Conv2D valid, stride 1, ReLU or linear ->
MaxPooling2D 2x2 stride 2)+ -> Flatten -> Dense+ are rewritten, and every rewrite is
checked against the Keras model on random images before use (``exact.verified``);
``build`` returns ``None`` for anything else, and callers fall back to the Keras model.
"""
import math

import keras
import numpy as np
import tensorflow as tf

from zskd_tf.teachers import exact


class FastTeacher:
    """Logits of a teacher from images in ``space_to_depth(x, block)`` layout."""

    def __init__(self, block, stages, dense, image_shape):
        self.block = block
        self.image_shape = tuple(image_shape)
        h, w, c = self.image_shape
        self.internal_shape = (h // block, w // block, c * block * block)
        self._stages = stages  # (kernel, tiled bias, relu) per conv+pool stage
        self._dense = dense    # (kernel, bias, relu) per dense layer

    def cast(self, dtype):
        """The same teacher computing in ``dtype`` (logits still returned as float32)."""
        c = lambda t: tf.cast(t, dtype)  # noqa: E731
        return FastTeacher(self.block, [(c(k), c(b), r) for k, b, r in self._stages],
                           [(c(k), c(b), r) for k, b, r in self._dense], self.image_shape)

    def to_internal(self, x):
        return tf.nn.space_to_depth(x, self.block)

    def from_internal(self, x):
        return tf.nn.depth_to_space(x, self.block)

    def __call__(self, x):
        dtype = self._stages[0][0].dtype
        x = tf.cast(x, dtype)
        for kernel, bias, relu in self._stages:
            x = _pool_bias_act(tf.nn.conv2d(x, kernel, 1, "VALID"), bias, relu)
        x = tf.reshape(x, (tf.shape(x)[0], -1))
        for kernel, bias, relu in self._dense:
            x = tf.matmul(x, kernel) + bias
            if relu:
                x = tf.nn.relu(x)
        return tf.cast(x, tf.float32)


def _pool_bias_act(y, bias, relu):
    """act(max over the 4 channel groups of y + bias); gradient through the argmax mask."""
    groups = 4
    c = y.shape[-1] // groups

    @tf.custom_gradient
    def pool(y):
        shape = tf.shape(y)
        phases = tf.reshape(y, (-1, groups, c))
        top = tf.reduce_max(phases, axis=1)
        out = top + bias
        if relu:
            out = tf.nn.relu(out)

        def grad(upstream):
            upstream = tf.reshape(upstream, (-1, c))
            zero = tf.zeros((), upstream.dtype)
            if relu:
                upstream = tf.where(out > 0, upstream, zero)
            mask = tf.equal(phases, top[:, None, :])
            return tf.reshape(tf.where(mask, upstream[:, None, :], zero), shape)

        return tf.reshape(out, tf.concat([shape[:-1], [c]], 0)), grad

    return pool(y)


def phase_kernel(kernel, block):
    """Scatters a (kh, kw, cin, f) valid-conv kernel followed by a 2x2 max-pool into a
    kernel over ``space_to_depth(x, block)`` whose output channels are
    [pool phase (u, v)][pooled position in the output block (a, b)][filter].

    Conv output (block*i + p, block*j + q), p = 2a + u, reads input pixel
    (block*(i + di) + r) with r = p + k - block*di for kernel row k.
    """
    kh, kw, cin, f = kernel.shape
    half = block // 2
    taps_h, taps_w = math.ceil((block - 1 + kh) / block), math.ceil((block - 1 + kw) / block)
    out = np.zeros((taps_h, taps_w, block * block * cin, 4 * half * half * f), np.float32)
    for p in range(block):
        for q in range(block):
            (a, u), (b, v) = divmod(p, 2), divmod(q, 2)
            o = ((u * 2 + v) * half * half + a * half + b) * f
            for di in range(taps_h):
                for r in range(block):
                    k = block * di + r - p
                    if not 0 <= k < kh:
                        continue
                    for dj in range(taps_w):
                        for s in range(block):
                            m = block * dj + s - q
                            if 0 <= m < kw:
                                i = (r * block + s) * cin
                                out[di, dj, i:i + cin, o:o + f] = kernel[k, m]
    return out


def _parse(teacher):
    """[(conv, pool), ...], [dense, ...] for a supported sequential teacher, else None."""
    layers = [layer for layer in teacher.layers
              if not isinstance(layer, (keras.layers.InputLayer, keras.layers.Dropout))]
    stages, i = [], 0
    while i + 1 < len(layers) and isinstance(layers[i], keras.layers.Conv2D):
        conv, pool = layers[i], layers[i + 1]
        if (type(conv) is not keras.layers.Conv2D
                or not isinstance(pool, keras.layers.MaxPooling2D)
                or conv.padding != "valid" or tuple(conv.strides) != (1, 1)
                or tuple(conv.dilation_rate) != (1, 1) or conv.groups != 1
                or conv.data_format != "channels_last" or exact.activation(conv) is None
                or tuple(pool.pool_size) != (2, 2) or tuple(pool.strides) != (2, 2)
                or pool.padding != "valid" or pool.data_format != "channels_last"):
            return None
        stages.append((conv, pool))
        i += 2
    if not stages or i >= len(layers) or not isinstance(layers[i], keras.layers.Flatten):
        return None
    dense = layers[i + 1:]
    if not dense or any(type(d) is not keras.layers.Dense or exact.activation(d) is None
                        for d in dense):
        return None
    return stages, dense


def _fits(image_shape, stages):
    """True when every stage's valid-conv output tiles exactly into its blocks."""
    h, w = image_shape[:2]
    block = 2 ** len(stages)
    for conv, _ in stages:
        kh, kw = conv.kernel_size
        if (h % block or w % block or (kh - 1) % block or (kw - 1) % block
                or (h - kh + 1) % block or (w - kw + 1) % block):
            return False
        h, w, block = (h - kh + 1) // 2, (w - kw + 1) // 2, block // 2
    return True


def build(teacher, check_images=8, seed=0):
    """A ``FastTeacher`` computing ``teacher``'s logits, or ``None`` if it does not apply."""
    image_shape = exact.input_image_shape(teacher)
    if image_shape is None:
        return None
    parsed = _parse(teacher)
    if parsed is None or not _fits(image_shape, parsed[0]):
        return None
    stages, dense = parsed
    block, converted = 2 ** len(stages), []
    for conv, _ in stages:
        converted.append((tf.constant(phase_kernel(conv.kernel.numpy(), block)),
                          tf.constant(np.tile(exact.bias(conv), (block // 2) ** 2)),
                          exact.activation(conv) == "relu"))
        block //= 2
    layers = [(tf.constant(d.kernel.numpy()), tf.constant(exact.bias(d)),
               exact.activation(d) == "relu") for d in dense]
    fast = FastTeacher(2 ** len(stages), converted, layers, image_shape)
    return exact.verified(fast, teacher, check_images, seed)
