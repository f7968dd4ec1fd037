"""Zero-Shot Knowledge Distillation end to end (Algorithm 1), as one resumable call.

    from zskd_tf import zskd
    result = zskd.run(teacher, student, "runs/mine", zskd.Config(num_impressions=24000))

Stages, each reused when a rerun finds it finished in ``workdir``:
similarity -> targets -> crafting (``transfer_set/``) -> distillation (``student.keras``)
-> optional augmented fine-tuning (``student_augmented.keras``) -> evaluation.
With ``heldout_impressions`` > 0 a second, smaller set (``heldout_set/``) is crafted from
its own targets and noise and monitored during training (``zskd_tf.heldout``).
"""
import dataclasses
import hashlib
import os
import shutil
import time

import numpy as np
import tensorflow as tf
from absl import logging

from zskd_tf import augment
from zskd_tf import config as config_lib
from zskd_tf import data as data_lib
from zskd_tf import distill
from zskd_tf import distribute
from zskd_tf import heldout as heldout_lib
from zskd_tf import impressions
from zskd_tf import io_utils
from zskd_tf import records
from zskd_tf import report
from zskd_tf import scheduling
from zskd_tf import seeding
from zskd_tf import similarity
from zskd_tf import store
from zskd_tf import targets as targets_lib
from zskd_tf import training

Config = config_lib.Config  # the settings of a run (zskd_tf.config)

# part -> (directory under the workdir, prefix of its seed streams)
PARTS = {"transfer": ("transfer_set", ""), "heldout": ("heldout_set", "heldout-")}


def restart(workdir, stage):
    """Deletes ``stage`` and every later stage from ``workdir``: the next run redoes them."""
    if stage not in records.ZSKD_STAGES:
        raise ValueError(f"restart_from must be one of {', '.join(records.ZSKD_STAGES)}, "
                         f"got {stage!r}")
    logging.warning("restarting %s from stage %s: deleting it and every later stage",
                    workdir, stage)
    later = records.ZSKD_STAGES[records.ZSKD_STAGES.index(stage):]
    for name in later:
        if name == records.CRAFTING:
            for directory, _ in PARTS.values():
                shutil.rmtree(os.path.join(workdir, directory), ignore_errors=True)
        else:
            training.restart(workdir, name)


def craft(teacher, workdir, config, tb_writer=None, strategy=None, part="transfer"):
    """Similarity -> targets -> crafted transfer set in ``workdir/transfer_set``.

    ``part="heldout"`` crafts ``config.heldout_impressions`` images the same way into
    ``workdir/heldout_set``, from seed streams of its own, so the transfer set is the
    same with or without one. Where the shards are crafted (devices, processes, hosts)
    is ``scheduling.craft``'s choice. Returns (similarity matrix, crafting stats).
    """
    config = config.resolved()
    dirname, prefix = PARTS[part]
    count = config.heldout_impressions if part == "heldout" else config.num_impressions
    seed = lambda stream: seeding.derive(config.seed, prefix + stream)  # noqa: E731
    sim, alpha = similarity.from_model(teacher)
    data = config.impressions == "data"
    prior, betas = (config.prior, config.betas) if data else ("one_hot", (1.0,))
    targets = targets_lib.whole_batches(
        targets_lib.sample(alpha, count, betas=betas, prior=prior, seed=seed("targets")),
        config.craft_batch_size)
    thresholds = None if data else impressions.class_impression_thresholds(
        len(targets), seed=seed("ci-thresholds"))
    on_shard = None
    if part == "transfer" and distribute.is_chief(strategy):
        np.save(os.path.join(workdir, "similarity.npy"), sim)
        if tb_writer is not None:
            on_shard = report.craft_summaries(tb_writer, sim)
    start = time.perf_counter()
    manifest, processes = scheduling.craft(
        os.path.join(workdir, dirname), teacher, targets, config.craft(),
        seed=seed("craft-noise"), parallel_batches=config.parallel_batches,
        processes=config.craft_processes, strategy=strategy, thresholds=thresholds,
        settings={"impressions": config.impressions, "prior": prior, "betas": list(betas)},
        on_shard=on_shard)
    return sim, {"num_impressions": len(targets),
                 "craft_seconds_this_run": time.perf_counter() - start,
                 "processes": processes, **store.crafting_stats(manifest)}


def distill_images(teacher, student, x, workdir, config, test=None, augmented=False,
                   strategy=None, heldout=None, soft_labels=None):
    """Trains ``student`` on the unlabelled images ``x`` (stage ``student``), or fine-tunes
    it on a mixture of ``x`` and augmented ``x`` (stage ``student_augmented``), with the
    student schedule, temperature, seed and augmentation settings of ``config``.

    ``soft_labels``: the teacher's softmax at the temperature for ``x`` (stored with the
    impressions); with ``config.stored_soft_labels`` the un-augmented stage learns from
    them instead of running the teacher on every batch.

    ``student`` must have been built for ``config.student_precision``
    (``models.get(name, dtype=config.student_precision)``; ValueError otherwise).

    ``heldout``: optional held-out impressions, monitored every ``config.eval_every``
    epochs (``zskd_tf.heldout``). With a ``strategy``, teacher and student must have been
    built under its scope; the stage's batch size is the global batch, split over its
    replicas."""
    config = config.resolved()
    strategy = strategy or tf.distribute.get_strategy()
    batch_size = config.finetune_batch_size if augmented else config.batch_size
    if batch_size % strategy.num_replicas_in_sync:
        logging.warning("batch size %d is not a multiple of the %d replicas: their batches "
                        "differ in size but weigh the same in the gradient",
                        batch_size, strategy.num_replicas_in_sync)
    stage = records.STUDENT_AUGMENTED if augmented else records.STUDENT
    seed = seeding.seed_stage(config.seed, stage)
    steps = -(-len(x) // batch_size)
    lr = config.finetune_lr if augmented else config.student_lr
    stored = not augmented and config.stored_soft_labels
    if stored and soft_labels is None:
        raise ValueError("stored_soft_labels needs the soft labels stored with the images")
    distill.check_precision(student, config.student_precision)
    # what makes this stage (a rerun that differs stops: training.check_settings)
    settings = {"teacher_sha256": store.teacher_fingerprint(teacher),
                "images_sha256": hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest(),
                "lr": lr, "batch_size": batch_size, "temperature": config.temperature,
                "seed": config.seed}
    if stored:
        settings["soft_labels_sha256"] = hashlib.sha256(
            np.ascontiguousarray(soft_labels).tobytes()).hexdigest()
    if config.student_precision != "float32":  # stages recorded before it: float32
        settings["student_precision"] = config.student_precision
    if augmented:  # it starts from the student stage's result
        settings.update(augment_prob=config.augment_prob,
                        student_epochs=config.student_epochs, student_lr=config.student_lr)

    def batches_from(epoch):
        """The stage's batch stream from ``epoch`` on (shuffle and augmentation streams
        continue where an uninterrupted run would be)."""
        first = epoch * steps
        ds = data_lib.make_dataset(x, soft_labels if stored else None,
                                   batch_size=batch_size, shuffle=True, seed=seed,
                                   repeat=True, skip=first * batch_size)
        if augmented:
            ds = ds.enumerate(start=first).map(
                lambda i, batch: augment.augment_batch(
                    batch, tf.stack([tf.constant(seed, tf.int64), i]),
                    prob=config.augment_prob),
                num_parallel_calls=tf.data.AUTOTUNE)
        return ds

    with strategy.scope():
        distiller = distill.Distiller(student, teacher, temperature=config.temperature,
                                      soft_labels=stored)
        distill.compile_distiller(distiller, lr)
        distiller(x[:1])  # build before BackupAndRestore restores
    val = None
    if test is not None and config.eval_every:
        val = data_lib.make_dataset(test[0], test[1], batch_size=1024)
    epochs = config.finetune_epochs if augmented else config.student_epochs
    monitors = ()
    if heldout is not None and len(heldout):
        monitors = (heldout_lib.HeldoutMonitor(
            student, teacher, heldout, temperature=config.temperature,
            seed=seeding.derive(config.seed, "heldout-augment"),
            every=config.eval_every or 10, epochs=epochs),)
    return training.fit(distiller, batches_from, epochs=epochs, workdir=workdir, stage=stage,
                        validation_data=val, validation_freq=max(1, config.eval_every),
                        steps_per_epoch=steps, export=student, verbose=2,
                        monitors=monitors, settings=settings)


def distill_and_evaluate(teacher, student, x, workdir, config, test=None, strategy=None,
                         heldout=None, soft_labels=None):
    """Distillation on the images ``x`` (with their stored ``soft_labels``, used if
    ``config.stored_soft_labels``), then augmented fine-tuning if ``config.augment``;
    with ``test`` = (x_test, y_test), each stage's final-epoch test accuracy, the
    teacher's, and (labelled as selected on the test set) each stage's best monitored one.
    """
    config = config.resolved()
    results = {records.STUDENT: distill_images(teacher, student, x, workdir, config, test,
                                               strategy=strategy, heldout=heldout,
                                               soft_labels=soft_labels)}
    if test is not None:
        results[records.STUDENT].update(distill.evaluate(student, *test))
    if config.augment and config.finetune_epochs > 0:
        results[records.STUDENT_AUGMENTED] = distill_images(
            teacher, student, x, workdir, config, test, augmented=True, strategy=strategy,
            heldout=heldout)
        if test is not None:
            results[records.STUDENT_AUGMENTED].update(distill.evaluate(student, *test))
    if test is not None:
        results[records.TEACHER] = distill.evaluate(teacher, *test)
        for key in records.STUDENT_STAGES:
            if key in results:
                results[key][records.SELECTED_ON_TEST] = \
                    training.max_monitored_accuracy(workdir, key)
    return results


def run(teacher, student, workdir, config, test=None, strategy=None, restart_from=None):
    """Runs every stage; returns a results dict (also written to ``workdir/zskd.json``).

    student: built for ``config.student_precision`` (``models.get(name,
    dtype=config.student_precision)``); the teacher stays float32.
    test: optional (x_test, y_test) for evaluation. The reported accuracy is the final
    epoch's; no stage selects anything on the test set. strategy: an optional
    ``tf.distribute`` strategy under whose scope teacher and student were built.
    restart_from: one of ``records.ZSKD_STAGES``: redo that stage and the later ones (a
    stage found made with other settings otherwise stops the run).

    Under a several-host strategy every host runs this with the same arguments and a
    shared ``workdir``: the hosts split the crafting, then distil together; the chief
    alone writes (``similarity.npy``, ``impressions.png``, TensorBoard logs, the stages'
    files, ``zskd.json``) and deletes (``restart_from``). The other hosts return the same
    results without writing them.
    """
    from zskd_tf.teachers import checks  # the teacher must match the student: before any work
    checks.check(teacher, student.input_shape[1:], student.output_shape[-1])
    config = config.validate().resolved()
    distill.check_precision(student, config.student_precision)
    os.makedirs(workdir, exist_ok=True)
    chief = distribute.is_chief(strategy)
    if restart_from is not None:
        if chief:
            restart(workdir, restart_from)
        distribute.barrier(strategy)  # no host reads the workdir before the chief is done
    writer = tf.summary.create_file_writer(os.path.join(workdir, "tb", "craft")) \
        if chief else None
    sim, crafting = craft(teacher, workdir, config, tb_writer=writer, strategy=strategy)
    if config.heldout_impressions:
        _, crafting["heldout"] = craft(teacher, workdir, config, strategy=strategy,
                                       part="heldout")
    results = {"config": dataclasses.asdict(config), "crafting": crafting}
    transfer_dir = os.path.join(workdir, "transfer_set")
    if chief:
        report.save_impression_grid(transfer_dir, os.path.join(workdir, "impressions.png"),
                                    writer)
        writer.flush()
    transfer = store.load(transfer_dir, keys=("images", "soft_labels"))
    heldout = None
    if config.heldout_impressions:
        heldout = store.load(os.path.join(workdir, "heldout_set"), keys=("images",))["images"]
    results.update(distill_and_evaluate(teacher, student, transfer["images"], workdir, config,
                                        test, strategy, heldout=heldout,
                                        soft_labels=transfer["soft_labels"]))
    if chief:
        io_utils.write_json(os.path.join(workdir, "zskd.json"), results)
    return results
