"""Training students and teachers: cross-entropy on real data, and knowledge distillation."""
import functools

import keras
import numpy as np
import tensorflow as tf
from absl import logging
from keras import ops

from zskd_tf import augment as augment_lib
from zskd_tf import data as data_lib
from zskd_tf import hardware
from zskd_tf import models
from zskd_tf import records
from zskd_tf import training


def compile_classifier(model, lr):
    model.compile(
        optimizer=keras.optimizers.Adam(lr),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    return model


def evaluate(model, x, y, batch_size=1024):
    """Test loss and accuracy (%) at temperature 1, plus per class: accuracy (%) on the
    images of that class, and the share (%) of all images predicted as it."""
    logits = model.predict(x, batch_size=batch_size, verbose=0)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, logits)
    y = np.asarray(y)
    pred = logits.argmax(-1)
    num_classes = logits.shape[-1]
    per_class = [float((pred[y == c] == c).mean() * 100.0) if (y == c).any() else None
                 for c in range(num_classes)]
    share = np.bincount(pred, minlength=num_classes) / len(pred) * 100.0
    return {"test_loss": float(loss),
            records.TEST_ACCURACY: float((pred == y).mean() * 100.0),
            "per_class_accuracy": per_class, "predicted_share": [float(v) for v in share]}


# How to redo a real-data training stage (train_teacher, student_kd) on purpose.
REDO_IN_NEW_WORKDIR = "an empty --workdir (or after deleting {workdir})"


def check_augment(augment):
    """A ValueError unless ``augment`` is one this module trains with."""
    if augment not in (None, "flip_crop"):
        raise ValueError(f"augment must be None or 'flip_crop', got {augment!r}")


def real_data_batches(x, y, *, batch_size, seed, augment=None):
    """(``training.fit``'s ``train_data``: a function of the first epoch to run, steps per
    epoch) for training on labelled images: ``data.epoch_batches``, with ``augment``
    ("flip_crop": ``augment.flip_crop``) drawn per batch from (seed, batch number), so a
    resumed run gets an uninterrupted one's batches and augmentations too."""
    check_augment(augment)
    steps = data_lib.steps_per_epoch(len(x), batch_size)

    def batches_from(epoch):
        ds = data_lib.epoch_batches(x, y, batch_size, seed, first_epoch=epoch)
        if not augment:
            return ds
        return ds.enumerate(start=epoch * steps).map(
            lambda i, xy: (augment_lib.flip_crop(
                xy[0], tf.stack([tf.constant(seed, tf.int64), i])), xy[1]),
            num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    return batches_from, steps


def checked_lr_drops(lr_drops):
    """``lr_drops`` as sorted ints; a ValueError unless each is a distinct epoch after the
    first."""
    drops = sorted(int(e) for e in lr_drops)
    if any(e <= 0 for e in drops) or len(set(drops)) < len(drops):
        raise ValueError(f"lr_drops must be distinct epochs after the first (> 0), got {drops}")
    return drops


def lr_schedule(lr, lr_drops):
    """The ``training.fit`` monitors that give ``lr`` tenfold drops at ``lr_drops``."""
    return [training.StepDecay(lr, lr_drops)] if lr_drops else []


def train_classifier(model, dataset, *, workdir, stage, epochs, lr, batch_size=512, seed=0,
                     eval_every=1, verbose="auto", augment=None, lr_drops=(), settings=None,
                     redo=None):
    """Teacher-CE / Student-CE: Adam on the real training set with cross-entropy.

    The test set is evaluated every ``eval_every`` epochs for the logs only (Keras names
    it ``val_*``); the reported number is the final epoch's test accuracy.
    ``augment="flip_crop"`` applies ``augment.flip_crop`` to every training batch
    (fresh draws each epoch); None trains on the images as they are (the paper).
    ``lr_drops``: epochs (counted from 0) from which the learning rate is a tenth of what
    it was before; empty keeps it constant (the paper). The epoch logs record it.
    A resumed run gets an uninterrupted one's batches (``real_data_batches``); a rerun
    with other settings (these, and ``settings``, e.g. the model's weight decay) stops
    with ``training.StageMismatch``, whose message says to redo it ``redo`` (default
    ``REDO_IN_NEW_WORKDIR``).
    """
    lr_drops = checked_lr_drops(lr_drops)
    train, steps = real_data_batches(dataset.x_train, dataset.y_train,
                                     batch_size=batch_size, seed=seed, augment=augment)
    compile_classifier(model, lr)
    test = data_lib.make_dataset(dataset.x_test, dataset.y_test, batch_size=1024)
    recorded = {"lr": lr, "batch_size": batch_size, "seed": seed,
                "augment": augment or "none", "lr_drops": lr_drops, **(settings or {})}
    summary = training.fit(model, train, epochs=epochs, workdir=workdir, stage=stage,
                           validation_data=test if eval_every else None,
                           validation_freq=max(1, eval_every), steps_per_epoch=steps,
                           verbose=verbose, monitors=lr_schedule(lr, lr_drops),
                           settings=recorded, redo=redo or REDO_IN_NEW_WORKDIR)
    result = evaluate(model, dataset.x_test, dataset.y_test)
    result[records.SELECTED_ON_TEST] = \
        training.max_monitored_accuracy(workdir, stage)
    return {**result, **summary}


def kd_loss(teacher_logits, student_logits, temperature):
    """tau^2 * CE(softmax(teacher / tau), softmax(student / tau)), averaged over the batch."""
    return kd_loss_from_soft_labels(ops.softmax(teacher_logits / temperature, axis=-1),
                                    student_logits, temperature)


def kd_loss_from_soft_labels(soft_labels, student_logits, temperature):
    """``kd_loss`` with the teacher's softmax at tau given (e.g. stored with the
    impressions) instead of computed."""
    log_s = ops.log_softmax(student_logits / temperature, axis=-1)
    return temperature ** 2 * ops.mean(-ops.sum(soft_labels * log_s, axis=-1))


@keras.saving.register_keras_serializable(package="zskd_tf")
class Distiller(keras.Model):
    """Trains ``student`` to match ``teacher`` at ``temperature`` (eq. 4).

    Batches are images alone (Data Impressions) or (images, labels); with labels and
    ``hard_label_weight`` > 0 the loss adds lambda * CE(labels, student at tau = 1), the
    Student-KD objective of eq. (1). The teacher labels every batch itself, in inference
    mode, so augmented images get the teacher's labels for what they are. With
    ``soft_labels=True`` batches are (images, the teacher's softmax at tau for them), e.g.
    the labels stored with un-augmented impressions, and the teacher is not run: the same
    loss for a fraction of the work. Calling the distiller runs the student; accuracy
    metrics are at tau = 1.
    """

    def __init__(self, student, teacher, temperature=20.0, hard_label_weight=0.0,
                 soft_labels=False, **kwargs):
        super().__init__(**kwargs)
        if soft_labels and hard_label_weight:
            raise ValueError("soft_labels batches carry no class labels for "
                             "hard_label_weight")
        self.soft_labels = bool(soft_labels)
        self.student = student
        self.teacher = teacher
        self.teacher.trainable = False
        self.temperature = float(temperature)
        self.hard_label_weight = float(hard_label_weight)
        self.kd_tracker = keras.metrics.Mean(name="kd_loss")
        self.accuracy_tracker = keras.metrics.SparseCategoricalAccuracy(name="accuracy")

    def call(self, x, training=False):
        return self.student(x, training=training)

    def _soft(self, y):
        """True when ``y`` is a batch of given soft labels, not class labels (a test set
        evaluated during training carries class labels)."""
        return self.soft_labels and y is not None and \
            keras.backend.standardize_dtype(y.dtype).startswith(("float", "bfloat"))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        # every loss in float32, whatever the student computes in (``student_precision``;
        # the students of models.py give float32 logits already)
        if keras.backend.standardize_dtype(y_pred.dtype) != "float32":
            y_pred = ops.cast(y_pred, "float32")
        if self._soft(y):
            kd = kd_loss_from_soft_labels(y, y_pred, self.temperature)
        else:
            teacher_logits = self.teacher(x, training=False)
            kd = kd_loss(ops.stop_gradient(teacher_logits), y_pred, self.temperature)
        self.kd_tracker.update_state(kd)
        loss = kd
        if y is not None and self.hard_label_weight > 0 and not self._soft(y):
            ce = keras.losses.sparse_categorical_crossentropy(y, y_pred, from_logits=True)
            loss = loss + self.hard_label_weight * ops.mean(ce)
        if self.student.losses:  # e.g. a student built with weight_decay
            loss = loss + ops.sum(self.student.losses)
        # Under a tf.distribute strategy this is one replica's share: Keras sums the
        # replicas' gradients (and multiplies the logged loss back), as for its own losses
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return loss / replicas if replicas > 1 else loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        names = ["loss", "kd_loss"]
        if y is not None and not self._soft(y):  # impressions carry no class labels
            self.accuracy_tracker.update_state(y, y_pred)
            names.append("accuracy")
        return {m.name: m.result() for m in self.metrics if m.name in names}

    @property
    def metrics(self):
        return [*super().metrics, self.kd_tracker, self.accuracy_tracker]


def check_precision(student, precision):
    """Raises ValueError unless ``student`` was built for ``precision`` (a
    ``student_precision``: ``models.get(name, dtype=precision)``); warns once per process
    when that is bfloat16 arithmetic on a CPU without native bf16 (and no GPU)."""
    if models.precision(student) != precision:
        raise ValueError(
            f"the student computes in {models.precision(student)} but student_precision is "
            f"{precision}: build it with models.get(name, dtype={precision!r})")
    if precision != "float32" and not hardware.native_bf16() and \
            not tf.config.list_physical_devices("GPU"):
        _warn_slow_bf16()


@functools.cache
def _warn_slow_bf16():
    logging.warning("training the student in mixed_bfloat16 on a CPU without native bf16 "
                    "(AVX512-BF16 or AMX): it works, but emulated bfloat16 is slow, likely "
                    "slower than float32")


def compile_distiller(distiller, lr):
    distiller.compile(optimizer=keras.optimizers.Adam(lr))
    return distiller
