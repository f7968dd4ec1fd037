"""Which exact inference rewrite of a teacher applies: ``fast_teacher`` (LeNet form, a
space-to-depth layout) or ``folded_teacher`` (chain form, BatchNorm folded), else none."""
from zskd_tf import fast_teacher, folded_teacher


def build(teacher):
    """A rewrite with ``to_internal``, ``from_internal``, ``cast`` and ``__call__`` (logits
    from images in its internal layout), checked against ``teacher``; or ``None``."""
    return fast_teacher.build(teacher) or folded_teacher.build(teacher)
