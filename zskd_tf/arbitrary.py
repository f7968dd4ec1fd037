"""Arbitrary transfer sets (Nayak, Mopuri & Chakraborty, WACV 2021).

Distil on data unrelated to the teacher's (random noise, another data set), chosen so
that the teacher's predicted classes are equally represented ("target-class balanced"):

    pool = arbitrary.pool("fashion_mnist", teacher_shape=(32, 32, 1), data_dir=...)
    chosen = arbitrary.select(teacher, pool, size=6000, balance=True, seed=0)
    result = arbitrary.run(teacher, student, chosen, "runs/arb", zskd.Config(...))

Only the paper's abstract is available here; the selection rule is ours
(docs/REPRODUCTION.md): random samples within each predicted class, and a class the pool
cannot fill gives all it has, the others sharing its shortfall equally.
"""
import dataclasses
import os

import numpy as np
import tensorflow as tf
from absl import logging

from zskd_tf import data as data_lib
from zskd_tf import io_utils
from zskd_tf import report
from zskd_tf import zskd

NOISE = "uniform_noise"
SOURCES = (NOISE,) + data_lib.NAMES


@dataclasses.dataclass(frozen=True, eq=False)
class TransferSet:
    """Chosen images with the teacher's predicted class of each, and class histograms
    of the pool and of the choice (index k = images the teacher puts in class k)."""
    images: np.ndarray
    predicted: np.ndarray
    pool_histogram: np.ndarray
    histogram: np.ndarray

    def summary(self):
        """JSON-ready description: sizes, histograms, and balance = smallest class count /
        largest (1 = perfectly balanced)."""
        return {"size": int(len(self.images)), "pool_size": int(self.pool_histogram.sum()),
                "pool_histogram": self.pool_histogram.tolist(),
                "histogram": self.histogram.tolist(),
                "balance": float(self.histogram.min() / max(1, self.histogram.max())),
                "pool_balance": float(self.pool_histogram.min()
                                      / max(1, self.pool_histogram.max()))}


def match_channels(x, channels):
    """Images (N, H, W, C) with ``channels`` channels: RGB to grey by
    ``tf.image.rgb_to_grayscale``'s luma weights, grey to RGB by repetition."""
    have = x.shape[-1]
    if have == channels:
        return x
    if have == 3 and channels == 1:
        return np.asarray(tf.image.rgb_to_grayscale(x)).astype(np.float32)
    if have == 1 and channels == 3:
        return np.repeat(x, 3, axis=-1)
    raise ValueError(f"cannot turn {have}-channel images into {channels}-channel ones")


def pool(source, teacher_shape, data_dir=None, noise_size=None, seed=0):
    """The candidate images, float32 in [0, 1] with the teacher's input shape.

    source: ``uniform_noise`` (``noise_size`` images, each pixel uniform in [0, 1]) or a
    data set name, whose training split is used without labels.
    """
    if source == NOISE:
        if not noise_size or noise_size < 1:
            raise ValueError("uniform_noise needs noise_size >= 1")
        rng = np.random.default_rng(seed)
        return rng.random((noise_size, *teacher_shape), dtype=np.float32)
    if source not in data_lib.NAMES:
        raise ValueError(f"unknown source {source!r}; choose one of {SOURCES}")
    x = data_lib.load(source, data_dir).x_train
    if x.shape[1:3] != tuple(teacher_shape[:2]):
        raise ValueError(f"{source} images are {x.shape[1:3]}, the teacher takes "
                         f"{tuple(teacher_shape[:2])}")
    return match_channels(x, teacher_shape[-1])


def predicted_classes(teacher, x, batch_size=1000):
    """The teacher's argmax class of each image."""
    return np.argmax(teacher.predict(x, batch_size=batch_size, verbose=0), axis=-1)


def quotas(available, size):
    """Images to take from each class: ``size`` shared as equally as ``available``
    allows (a class short of its share gives all it has; the others split the rest)."""
    available = np.asarray(available, np.int64)
    if available.sum() < size:
        raise ValueError(f"the pool has {available.sum()} images, fewer than the {size} asked for")
    take = np.zeros_like(available)
    remaining = size
    order = np.argsort(available, kind="stable")
    for i, k in enumerate(order):
        share = -(-remaining // (len(order) - i))  # ceil: the last class takes the rest
        take[k] = min(available[k], share)
        remaining -= take[k]
    return take


def select(teacher, images, size, balance=True, num_classes=None, seed=0):
    """Chooses ``size`` images from ``images``: target-class balanced (``balance``) or
    uniformly at random. Returns a TransferSet."""
    if len(images) < size:
        raise ValueError(f"the pool has {len(images)} images, fewer than the {size} asked for")
    predicted = predicted_classes(teacher, images)
    k = num_classes or int(teacher.output_shape[-1])
    pool_hist = np.bincount(predicted, minlength=k)
    rng = np.random.default_rng(seed)
    if balance:
        take = quotas(pool_hist, size)
        chosen = np.concatenate([
            rng.choice(np.flatnonzero(predicted == c), take[c], replace=False)
            for c in range(k)])
    else:
        chosen = rng.choice(len(images), size, replace=False)
    chosen = np.sort(chosen)
    return TransferSet(images[chosen], predicted[chosen], pool_hist,
                       np.bincount(predicted[chosen], minlength=k))


def agreement_with_teacher(model, transfer):
    """Share of the transfer set on which ``model``'s argmax is the teacher's. Needs no
    test labels: a student that collapsed (e.g. dead first-layer ReLUs) scores about
    the share of the class it always predicts."""
    return float(np.mean(predicted_classes(model, transfer.images) == transfer.predicted))


def save_grid(transfer, teacher, path, temperature, per_class=3, class_names=None):
    """A grid of chosen images per predicted class, titled with the teacher's top-2
    confidences at ``temperature``."""
    picks = report.pick_per_class(transfer.predicted, per_class)
    logits = teacher.predict(transfer.images[picks], verbose=0)
    soft = tf.nn.softmax(logits / temperature).numpy()
    fig = report.impression_grid_figure(transfer.images[picks], soft,
                                        transfer.predicted[picks], class_names)
    return report.save_figure(fig, path)


def run(teacher, student, transfer, workdir, config, test=None, restart_from=None):
    """Distils ``student`` from ``teacher`` on ``transfer`` (a TransferSet), then
    optionally fine-tunes on it with augmentation, as ``zskd.run`` does on impressions.

    config: a ``zskd.Config``; its student, augmentation and seed settings are used
    (its crafting settings are not). Resumes like ``zskd.run``. The reported accuracy is
    the final epoch's. Returns a results dict (also written to ``workdir/arbitrary.json``).
    restart_from: a student stage to redo, with the later one (``zskd.restart``).
    """
    config = config.validate().resolved()
    os.makedirs(workdir, exist_ok=True)
    if restart_from is not None:
        zskd.restart(workdir, restart_from)
    results = {"config": dataclasses.asdict(config), "transfer_set": transfer.summary(),
               **zskd.distill_and_evaluate(teacher, student, transfer.images, workdir,
                                           config, test)}
    agreement = agreement_with_teacher(student, transfer)
    results["student_agrees_with_teacher_on_transfer_set"] = agreement
    k = len(transfer.histogram)
    if agreement < 2.0 / k:
        logging.warning("the student's argmax matches the teacher's on only %.1f%% of its "
                        "transfer set (chance: %.1f%%): it did not learn; a lower student "
                        "learning rate may help", 100 * agreement, 100.0 / k)
    io_utils.write_json(os.path.join(workdir, "arbitrary.json"), results)
    return results
