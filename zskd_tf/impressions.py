"""Crafting Data Impressions (eq. 3) and Class Impressions, many batches at once.

A paper-sized crafting *batch* (``batch_size`` images) is the unit of the paper's
optimisation: its loss is the mean cross-entropy over its images and, with
``pixel="minmax"``, it is renormalised to [0, 1] as one block after each step (what the
authors' code did). ``Crafter`` stacks many such batches into one tensor and optimises
them together. The loss it differentiates is the *sum* of the batches' mean losses, and
normalisation is per batch, so every image follows exactly the trajectory it would follow
if its batch were crafted alone; initial noise is drawn per batch from the batch's global
index. An image's result therefore does not depend on how many batches run beside it.

Adam is TF1's ``tf.train.AdamOptimizer`` (beta1 0.9, beta2 0.999, epsilon 1e-8), the
optimiser of the authors' code, run as its own fused kernel (``ResourceApplyAdam``).

Teachers of the LeNet form are evaluated through ``teachers.space_to_depth`` (the same function in
space-to-depth layout, several times faster on a CPU); the images are then held in that
layout while crafting and returned in the usual one. Other chain-shaped teachers (the
AlexNet form) go through ``teachers.folded`` (BatchNorm folded into the next layer, LRN as
a band-matrix product); any other teacher runs as its Keras model.

``precision="bfloat16"`` runs the teacher's layers in bfloat16 while the images, Adam's
state, the loss and the pixel handling stay float32 (mixed precision); the returned soft
labels and losses always come from the float32 teacher.
"""
import contextlib
import dataclasses
import functools
import time

import numpy as np
import tensorflow as tf
from absl import logging

from zskd_tf import hardware, models, paper, teachers


class CraftingDiverged(RuntimeError):
    """Crafting produced a non-finite loss or image (the optimisation blew up).

    ``batch``: global index of the crafting batch of the first bad image (None if no
    single image is to blame); ``step``: the step by which it was seen; ``shard``: set by
    ``scheduling.craft_transfer_set`` (None from a bare ``Crafter``).
    """

    def __init__(self, message, batch=None, step=None, shard=None):
        super().__init__(message)
        self.batch, self.step, self.shard = batch, step, shard


@dataclasses.dataclass
class Crafted:
    images: np.ndarray       # (n, H, W, C) float32
    soft_labels: np.ndarray  # (n, K) teacher softmax at the crafting temperature
    loss: np.ndarray         # (n,) final cross-entropy to the target
    steps: np.ndarray        # (n,) optimisation steps taken (< iterations: stopped early)


def initial_noise(batch_indices, batch_size, image_shape, seed, init="uniform"):
    """Uniform [0, 1] or standard normal noise for the given global batch indices, one
    stateless draw each."""
    draw = {"uniform": tf.random.stateless_uniform,
            "normal": tf.random.stateless_normal}[init]
    return tf.concat([draw((batch_size, *image_shape), seed=[seed, int(i)])
                      for i in batch_indices], axis=0)


class Crafter:
    """Optimises stacks of crafting batches through a fixed teacher in inference mode.

    ``device`` (e.g. "/GPU:1") pins the crafting state and steps to one device; give each
    device its own teacher copy (see ``scheduling.craft_transfer_set``). ``fast``: use the
    space-to-depth or folded rewrite of the teacher when one applies (its weights are
    copied now: build a new Crafter after changing them).
    """

    def __init__(self, teacher, config, progress_every=100, device=None, fast=True):
        self.teacher = teacher
        self.config = config
        self.device = device
        self.progress_every = max(1, int(progress_every))
        self.image_shape = tuple(teacher.input_shape[1:])
        self.fast = teachers.rewrite(teacher) if fast else None
        self._compute = None  # the teacher's logits while crafting, if not float32
        if config.precision == "bfloat16":
            if not hardware.native_bf16() and not tf.config.list_physical_devices("GPU"):
                logging.warning("crafting in bfloat16 on a CPU without native bf16 "
                                "(AVX512-BF16 or AMX): expect it slower than float32")
            placement = tf.device(device) if device else contextlib.nullcontext()
            with placement:
                self._compute = (self.fast.cast(tf.bfloat16) if self.fast else
                                 models.with_dtype_policy(teacher, "mixed_bfloat16"))
        self.state_shape = self.fast.internal_shape if self.fast else self.image_shape
        self._vars_for = None
        self._trace_steps()

    def _trace_steps(self):
        """The compiled step loop. With the folded (AlexNet-form) teacher its body is one
        step as a function that is not inlined into the loop: inside a loop, TensorFlow's
        oneDNN graph rewrite left some MaxPoolGrad ops as the Eigen kernel, 10-20x slower,
        at random from process to process (docs/PERFORMANCE.md, "AlexNet crafting: what
        bounds it"); on a loop-free function body it rewrites them all. Other teachers
        keep the inlined step: it gained them nothing, and there a batch's rounding does
        not depend on how many batches are crafted at once, which it does not keep
        (tests/test_impressions.py::test_result_does_not_depend_on_parallelism)."""
        self._one_step = (
            tf.function(self._step, experimental_attributes={"_noinline": True})
            if isinstance(self.fast, teachers.folded.FoldedTeacher) else self._step)
        self._step_fn = tf.function(self._steps)

    def _make_vars(self, n, num_classes):
        if self._vars_for == (n, num_classes):
            return
        shape = (n, *self.state_shape)
        zeros = lambda s: tf.Variable(tf.zeros(s), trainable=False)  # noqa: E731
        self.x, self.m, self.v = zeros(shape), zeros(shape), zeros(shape)
        self.y = zeros((n, num_classes))
        self.threshold = zeros((n,))
        self.active = tf.Variable(tf.ones((n,), tf.bool), trainable=False)
        self.taken = tf.Variable(tf.zeros((n,), tf.int32), trainable=False)
        self.t = tf.Variable(0.0, trainable=False)
        self._vars_for = (n, num_classes)
        self._trace_steps()  # new variables: trace afresh

    def _loss_terms(self, x, exact=False):
        """Logits at the crafting temperature and each image's cross-entropy; ``exact``:
        through the float32 teacher whatever the crafting precision."""
        if self._compute is not None and not exact:
            teacher = self._compute if self.fast else functools.partial(
                self._compute, training=False)
        else:
            teacher = self.fast or functools.partial(self.teacher, training=False)
        logits = teacher(x)
        with tf.name_scope("loss"):  # names the ops in profiles (benchmarks.craft_profile)
            logits = tf.cast(logits, tf.float32) / self.config.temperature
            ce = tf.nn.softmax_cross_entropy_with_logits(labels=self.y, logits=logits)
        return logits, ce

    def _steps(self, num_steps, use_stop):
        """``num_steps`` steps; returns the mean loss, NaN if any image is not finite (one
        reduction per call, read with the loss: the steps themselves never wait on it)."""
        for _ in tf.range(num_steps):
            self._one_step(use_stop)
        _, ce = self._loss_terms(self.x)
        finite = tf.reduce_all(tf.math.is_finite(self.x))
        return tf.where(finite, tf.reduce_mean(ce), float("nan"))

    def _diverged(self, batch_indices, step, ce=None):
        """The CraftingDiverged error for the current state: it names the crafting batch of
        the first image whose pixels or loss are not finite."""
        c = self.config
        if ce is None:
            _, ce = self._loss_terms(self.x)
        n = int(self.x.shape[0])
        bad_pixels = ~tf.reduce_all(tf.math.is_finite(tf.reshape(self.x, (n, -1))), axis=1)
        bad = np.flatnonzero(bad_pixels.numpy() | ~np.isfinite(np.asarray(ce)))
        batch = int(batch_indices[int(bad[0]) // c.batch_size]) if len(bad) else None
        where = (f"crafting batch {batch} ({len(bad)} bad images in all)" if batch is not None
                 else "the mean loss")
        advice = f"lower --craft_lr (now {c.lr:g})"
        if c.pixel in ("none", "clip_end"):
            advice += f" or bound the pixels with --pixel=minmax or clip (now {c.pixel})"
        return CraftingDiverged(
            f"crafting diverged by step {step} of {c.iterations}: non-finite loss or pixels "
            f"in {where}; {advice}, or check that the teacher's logits stay finite",
            batch=batch, step=step)

    def _step(self, use_stop):
        """One Adam step of every image, then the pixel handling."""
        with tf.name_scope("craft_step"):  # names the ops in profiles
            self._step_ops(use_stop)

    def _step_ops(self, use_stop):
        c = self.config
        b = c.batch_size
        flat_size = int(np.prod(self.image_shape)) * b
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(self.x)
            logits, ce = self._loss_terms(self.x)
            loss = tf.reduce_sum(ce) / b  # sum over batches of each batch's mean
            if c.image_l2:
                loss += c.image_l2 / b * tf.reduce_sum(tf.square(self.x)) / 2
        grad = tape.gradient(loss, self.x)
        self.t.assign_add(1.0)
        if use_stop:
            if c.pixel == "clip_end":  # judge the image that would be returned
                logits, _ = self._loss_terms(tf.clip_by_value(self.x, 0.0, 1.0))
            conf = tf.reduce_sum(tf.nn.softmax(logits) * self.y, axis=-1)
            self.active.assign(tf.logical_and(self.active, conf < self.threshold))
            before = self.x.read_value()  # a snapshot: the update below copies on write
        with tf.name_scope("adam"):
            tf.raw_ops.ResourceApplyAdam(
                var=self.x.handle, m=self.m.handle, v=self.v.handle,
                beta1_power=c.beta1 ** self.t, beta2_power=c.beta2 ** self.t,
                lr=tf.constant(c.lr, tf.float32), beta1=tf.constant(c.beta1, tf.float32),
                beta2=tf.constant(c.beta2, tf.float32),
                epsilon=tf.constant(c.epsilon, tf.float32), grad=grad)
        with tf.name_scope("pixels"):
            x = self.x.read_value()
            if c.pixel == "minmax":
                blocks = tf.reshape(x, (-1, flat_size))
                lo = tf.reduce_min(blocks, axis=1, keepdims=True)
                hi = tf.reduce_max(blocks, axis=1, keepdims=True)
                x = tf.reshape((blocks - lo) / tf.maximum(hi - lo, 1e-12), tf.shape(x))
            elif c.pixel == "clip":
                x = tf.clip_by_value(x, 0.0, 1.0)
            if use_stop:
                keep = tf.reshape(self.active, (-1,) + (1,) * len(self.image_shape))
                x = tf.where(keep, x, before)
                self.taken.assign_add(tf.cast(self.active, tf.int32))
            else:
                self.taken.assign_add(tf.ones_like(self.taken))
            if use_stop or c.pixel not in ("none", "clip_end"):
                # else the Adam kernel has updated x in place
                self.x.assign(x)

    def craft(self, targets, batch_indices, seed, thresholds=None, log_prefix=""):
        """Crafts ``len(batch_indices)`` batches for ``targets`` (rows in batch order).

        thresholds: per-image confidence at which an image stops (Class Impressions);
        with them, ``pixel="minmax"`` should use ``batch_size=1``.
        """
        placement = tf.device(self.device) if self.device else contextlib.nullcontext()
        with placement:
            return self._craft(targets, batch_indices, seed, thresholds, log_prefix)

    def _craft(self, targets, batch_indices, seed, thresholds, log_prefix):
        c = self.config
        targets = np.asarray(targets, np.float32)
        n = len(targets)
        if n != len(batch_indices) * c.batch_size:
            raise ValueError(f"{n} targets for {len(batch_indices)} batches of {c.batch_size}")
        self._make_vars(n, targets.shape[1])
        noise = initial_noise(batch_indices, c.batch_size, self.image_shape, seed, c.init)
        self.x.assign(self.fast.to_internal(noise) if self.fast else noise)
        self.m.assign(tf.zeros_like(self.m))
        self.v.assign(tf.zeros_like(self.v))
        self.y.assign(targets)
        self.t.assign(0.0)
        self.taken.assign(tf.zeros_like(self.taken))
        self.active.assign(tf.ones_like(self.active))
        use_stop = thresholds is not None
        if use_stop:
            self.threshold.assign(np.asarray(thresholds, np.float32))
        start, done = time.perf_counter(), 0
        while done < c.iterations:
            chunk = min(self.progress_every, c.iterations - done)
            mean_loss = float(self._step_fn(tf.constant(chunk), use_stop))
            done += chunk
            if not np.isfinite(mean_loss):
                raise self._diverged(batch_indices, done)
            elapsed = time.perf_counter() - start
            rate = n * done / elapsed
            logging.info("%scraft step %d/%d  loss %.4f  %.0f image-steps/s  ETA %.0fs",
                         log_prefix, done, c.iterations, mean_loss, rate,
                         (c.iterations - done) * n / rate)
            if use_stop and not bool(tf.reduce_any(self.active)):
                break
        if c.pixel == "clip_end":
            self.x.assign(tf.clip_by_value(self.x, 0.0, 1.0))
        logits, ce = self._loss_terms(self.x, exact=True)
        if not np.isfinite(ce.numpy()).all():  # the float32 teacher, if crafting was not
            raise self._diverged(batch_indices, done, ce.numpy())
        images = self.fast.from_internal(self.x) if self.fast else self.x
        return Crafted(images=images.numpy().copy(),
                       soft_labels=tf.nn.softmax(logits).numpy(),
                       loss=ce.numpy(), steps=self.taken.numpy().copy())


def class_impression_thresholds(n, seed, low=paper.CLASS_IMPRESSION_CONFIDENCE[0],
                                high=paper.CLASS_IMPRESSION_CONFIDENCE[1]):
    """Per-image stopping confidence drawn uniformly from [low, high]."""
    return np.random.default_rng(seed).uniform(low, high, size=n).astype(np.float32)
