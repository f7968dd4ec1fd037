"""Exact inference rewrites of a teacher, used while crafting in place of its Keras model.

``space_to_depth`` rewrites LeNet-form teachers in a space-to-depth layout; ``folded``
runs chain-shaped (AlexNet-form) teachers as raw ops with BatchNorm folded away. Each is
verified against the Keras model on random images before use (``exact.verified``), and
where none applies the caller keeps the Keras model.
"""
from zskd_tf.teachers import folded, space_to_depth


def rewrite(teacher):
    """The first rewrite that applies to ``teacher`` (see ``exact`` for its interface),
    verified against it; or ``None``."""
    return space_to_depth.build(teacher) or folded.build(teacher)
