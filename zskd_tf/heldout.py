"""Data-free monitoring of a student on held-out Data Impressions.

Zero-shot distillation has no real validation data. One signal that needs none comes
from impressions the student never sees: a second set crafted like the transfer set,
from its own targets and noise (``zskd.craft(..., part="heldout")``). It tracked the test
accuracy on MNIST and ran against it on Fashion-MNIST (docs/REPRODUCTION.md): read it,
do not stop on it.
``HeldoutMonitor`` logs, every few epochs, how often the student agrees with the
teacher's top-1 class and the KD loss on those images as they are and on a fixed
augmented copy of them (``augment.augment_batch`` with probability 1).
"""
import keras
import numpy as np
import tensorflow as tf

from zskd_tf import augment
from zskd_tf import distill

COLUMNS = ("heldout_agreement", "heldout_kd_loss",
           "heldout_aug_agreement", "heldout_aug_kd_loss")


def agreement_and_kd(student_logits, teacher_logits, temperature):
    """(share of images whose student top-1 class is the teacher's, KD loss at tau)."""
    agree = np.mean(np.argmax(student_logits, -1) == np.argmax(teacher_logits, -1))
    kd = distill.kd_loss(tf.constant(teacher_logits), tf.constant(student_logits),
                         temperature)
    return float(agree), float(kd)


class HeldoutMonitor(keras.callbacks.Callback):
    """Adds ``COLUMNS`` to the epoch logs every ``every`` epochs (and at the last one).

    The teacher's logits and the augmented copy are computed once, up front, so the
    monitor draws no random numbers during training and leaves the run unchanged.
    """

    def __init__(self, student, teacher, images, *, temperature, seed, every=10,
                 epochs=None, batch_size=1024):
        super().__init__()
        if len(images) == 0:
            raise ValueError("held-out monitoring needs at least one image")
        self.student = student
        self.temperature = float(temperature)
        self.every = max(1, int(every))
        self.epochs = epochs
        self.batch_size = batch_size
        images = np.asarray(images, np.float32)
        augmented = augment.augment_batch(tf.constant(images), seed, prob=1.0).numpy()
        self.sets = {"heldout": images, "heldout_aug": augmented}
        self.teacher_logits = {k: teacher.predict(v, batch_size=batch_size, verbose=0)
                               for k, v in self.sets.items()}

    def measure(self):
        """{column: value} for the student as it is now."""
        out = {}
        for key, images in self.sets.items():
            logits = self.student.predict(images, batch_size=self.batch_size, verbose=0)
            agree, kd = agreement_and_kd(logits, self.teacher_logits[key], self.temperature)
            out[f"{key}_agreement"], out[f"{key}_kd_loss"] = agree, kd
        return out

    def on_epoch_end(self, epoch, logs=None):
        last = self.epochs is not None and epoch + 1 == self.epochs
        if logs is not None and ((epoch + 1) % self.every == 0 or last):
            logs.update(self.measure())
