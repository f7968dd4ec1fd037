import keras
import tensorflow as tf

from zskd_tf.teachers import exact


class _Offset:
    """A candidate rewrite in the identity layout: the teacher's logits plus ``offset``
    times their scale."""

    def __init__(self, teacher, offset):
        self.teacher, self.offset = teacher, offset

    def to_internal(self, x):
        return x

    def __call__(self, x):
        want = self.teacher(x, training=False)
        return want + self.offset * tf.reduce_max(tf.abs(want))


def _teacher():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3),
                             keras.layers.Flatten(), keras.layers.Dense(3)])


def test_verified_accepts_an_exact_candidate_and_rejects_one_beyond_tolerance():
    teacher = _teacher()
    exact_one = _Offset(teacher, 0.0)
    assert exact.verified(exact_one, teacher) is exact_one
    assert exact.verified(_Offset(teacher, 0.1 * exact.CHECK_TOLERANCE), teacher) is not None
    assert exact.verified(_Offset(teacher, 10 * exact.CHECK_TOLERANCE), teacher) is None


def test_verified_rejects_logits_of_another_shape():
    teacher = _teacher()

    class Wider(_Offset):
        def __call__(self, x):
            return tf.tile(super().__call__(x), [1, 2])

    assert exact.verified(Wider(teacher, 0.0), teacher) is None
