"""Which exact inference rewrite of a teacher applies: ``fast_teacher`` (LeNet form, a
space-to-depth layout) or ``folded_teacher`` (chain form, BatchNorm folded), else none."""
from zskd_tf import fast_teacher, folded_teacher


def build(teacher):
    """A rewrite with ``to_internal``, ``from_internal``, ``cast`` and ``__call__`` (logits
    from images in its internal layout), checked against ``teacher``; or ``None``."""
    return fast_teacher.build(teacher) or folded_teacher.build(teacher)


def logits_fn(teacher):
    """A function of images (usual layout) giving ``teacher``'s inference logits: the
    rewrite where one applies, else the Keras model in inference mode."""
    fast = build(teacher)
    if fast is None:
        return lambda x: teacher(x, training=False)
    return lambda x: fast(fast.to_internal(x))
