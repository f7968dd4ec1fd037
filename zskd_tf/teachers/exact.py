"""What the exact teacher rewrites share, and the one check each passes before use.

A rewrite computes a teacher's inference logits from images in its own layout. It has
``image_shape`` (the teacher's images), ``internal_shape`` (the same images in its
layout), ``to_internal`` and ``from_internal`` (between the two), ``cast(dtype)`` (a copy
computing in ``dtype``, logits float32) and ``__call__`` (logits from internal images).
"""
import numpy as np
import tensorflow as tf

ACTIVATIONS = ("relu", "linear")
CHECK_TOLERANCE = 1e-4  # relative to the logits' scale


def activation(layer):
    """The layer's activation name if the rewrites support it, else None."""
    name = layer.get_config().get("activation", "linear")
    return name if name in ACTIVATIONS else None


def bias(layer):
    """A Conv2D or Dense layer's bias as a float32 array, zeros when it has none."""
    return layer.bias.numpy() if layer.use_bias else np.zeros(layer.kernel.shape[-1],
                                                              np.float32)


def input_image_shape(teacher):
    """(height, width, channels) of a teacher with one image input, else None."""
    if len(teacher.inputs) != 1 or len(teacher.input_shape) != 4:
        return None
    return tuple(teacher.input_shape[1:])


def verified(candidate, teacher, check_images=8, seed=0):
    """``candidate`` if its logits on ``check_images`` stateless random images match
    ``teacher(x, training=False)`` (same shape, within ``CHECK_TOLERANCE`` of the logits'
    scale), else None."""
    x = tf.random.stateless_uniform((check_images, *teacher.input_shape[1:]), seed=[seed, 0])
    want = teacher(x, training=False)
    got = candidate(candidate.to_internal(x))
    scale = float(tf.reduce_max(tf.abs(want))) + 1e-6
    if got.shape != want.shape or float(tf.reduce_max(tf.abs(want - got))) > \
            CHECK_TOLERANCE * scale:
        return None
    return candidate
