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
import os
import time

import numpy as np
import tensorflow as tf
from absl import logging

from zskd_tf import augment
from zskd_tf import config as config_lib
from zskd_tf import craft_processes
from zskd_tf import data as data_lib
from zskd_tf import distill
from zskd_tf import distribute
from zskd_tf import heldout as heldout_lib
from zskd_tf import impressions
from zskd_tf import io_utils
from zskd_tf import report
from zskd_tf import seeding
from zskd_tf import similarity
from zskd_tf import store
from zskd_tf import targets as targets_lib
from zskd_tf import training

Config = config_lib.Config  # the settings of a run (zskd_tf.config)

# part -> (directory under the workdir, prefix of its seed streams)
PARTS = {"transfer": ("transfer_set", ""), "heldout": ("heldout_set", "heldout-")}


def craft(teacher, workdir, config, tb_writer=None, strategy=None, part="transfer"):
    """Similarity -> targets -> crafted transfer set in ``workdir/transfer_set``.

    ``part="heldout"`` crafts ``config.heldout_impressions`` images the same way into
    ``workdir/heldout_set``, from seed streams of its own, so the transfer set is the
    same with or without one.

    Under a ``strategy`` with several local replicas, each replica crafts whole shards;
    otherwise ``config.craft_processes`` processes do (``zskd_tf.craft_processes``). Under
    ``TF_CONFIG`` each host crafts its share of the shards (``zskd_tf.distribute``).
    """
    config = config.resolved()
    dirname, prefix = PARTS[part]
    count = config.heldout_impressions if part == "heldout" else config.num_impressions
    sim, alpha = similarity.from_model(teacher)
    if part == "transfer":
        np.save(os.path.join(workdir, "similarity.npy"), sim)
    betas = config.betas if config.impressions == "data" else (1.0,)
    prior = config.prior if config.impressions == "data" else "one_hot"
    targets = targets_lib.sample(alpha, count, betas=betas, prior=prior,
                                 seed=seeding.derive(config.seed, prefix + "targets"))
    b = config.craft_batch_size
    usable = len(targets) - len(targets) % b
    if usable < len(targets):
        logging.warning("dropping %d targets to fill whole crafting batches of %d",
                        len(targets) - usable, b)
        targets = targets_lib.Targets(targets.targets[:usable], targets.classes[:usable],
                                      targets.betas[:usable])
    thresholds = None
    if config.impressions == "class":
        thresholds = impressions.class_impression_thresholds(
            len(targets), seed=seeding.derive(config.seed, prefix + "ci-thresholds"))
    craft_config = config.craft()

    def on_shard(i, crafted, record):
        if tb_writer is not None and part == "transfer":
            with tb_writer.as_default(step=i):
                tf.summary.scalar("craft/mean_loss", record["mean_loss"])
                tf.summary.scalar("craft/image_steps_per_second",
                                  record["image_steps_per_second"])

    if tb_writer is not None and part == "transfer":
        with tb_writer.as_default(step=0):
            tf.summary.image("class_similarity", report.figure_to_image(
                report.similarity_figure(sim)))
    start = time.perf_counter()
    kwargs = dict(seed=seeding.derive(config.seed, prefix + "craft-noise"),
                  parallel_batches=config.parallel_batches, thresholds=thresholds,
                  settings={"impressions": config.impressions, "prior": prior,
                            "betas": list(betas)},
                  on_shard=on_shard, worker=distribute.worker())
    directory = os.path.join(workdir, dirname)
    devices = distribute.crafting_devices(strategy) if strategy else None
    processes = 1 if devices else config.craft_processes
    if devices and config.craft_processes > 1:
        logging.info("crafting on the strategy's %d devices in this process", len(devices))
    if processes > 1:
        manifest = craft_processes.craft(directory, teacher, targets, craft_config,
                                         processes=processes, **kwargs)
    else:
        manifest = store.craft_transfer_set(directory, teacher, targets, craft_config,
                                            devices=devices, **kwargs)
    stats = {"num_impressions": len(targets),
             "craft_seconds_this_run": time.perf_counter() - start,
             "processes": processes, **store.crafting_stats(manifest)}
    return sim, stats


def distill_images(teacher, student, x, workdir, config, test=None, augmented=False,
                   strategy=None, heldout=None):
    """Trains ``student`` on the unlabelled images ``x`` (stage ``student``), or fine-tunes
    it on a mixture of ``x`` and augmented ``x`` (stage ``student_augmented``), with the
    student schedule, temperature, seed and augmentation settings of ``config``.

    ``heldout``: optional held-out impressions, monitored every ``config.eval_every``
    epochs (``zskd_tf.heldout``). With a ``strategy``, teacher and student must have been
    built under its scope."""
    config = config.resolved()
    stage = "student_augmented" if augmented else "student"
    seed = seeding.seed_stage(config.seed, stage)
    steps = -(-len(x) // config.batch_size)
    ds = data_lib.make_dataset(x, batch_size=config.batch_size, shuffle=True, seed=seed,
                               repeat=True)
    if augmented:
        ds = ds.enumerate().map(
            lambda i, batch: augment.augment_batch(
                batch, tf.stack([tf.constant(seed, tf.int64), i]), prob=config.augment_prob),
            num_parallel_calls=tf.data.AUTOTUNE)
    with (strategy or tf.distribute.get_strategy()).scope():
        distiller = distill.Distiller(student, teacher, temperature=config.temperature)
        distill.compile_distiller(distiller,
                                  config.finetune_lr if augmented else config.student_lr)
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
    return training.fit(distiller, ds, epochs=epochs, workdir=workdir, stage=stage,
                        validation_data=val, validation_freq=max(1, config.eval_every),
                        steps_per_epoch=steps, export=student, verbose=2,
                        monitors=monitors)


def distill_and_evaluate(teacher, student, x, workdir, config, test=None, strategy=None,
                         heldout=None):
    """Distillation on the images ``x``, then augmented fine-tuning if ``config.augment``;
    with ``test`` = (x_test, y_test), each stage's final-epoch test accuracy, the
    teacher's, and (labelled as selected on the test set) each stage's best monitored one.
    """
    config = config.resolved()
    results = {"student": distill_images(teacher, student, x, workdir, config, test,
                                         strategy=strategy, heldout=heldout)}
    if test is not None:
        results["student"].update(distill.evaluate(student, *test))
    if config.augment and config.finetune_epochs > 0:
        results["student_augmented"] = distill_images(teacher, student, x, workdir, config,
                                                      test, augmented=True, strategy=strategy,
                                                      heldout=heldout)
        if test is not None:
            results["student_augmented"].update(distill.evaluate(student, *test))
    if test is not None:
        results["teacher"] = distill.evaluate(teacher, *test)
        for key in ("student", "student_augmented"):
            if key in results:
                results[key]["max_test_accuracy_over_epochs_selected_on_test"] = \
                    training.max_monitored_accuracy(workdir, key)
    return results


def run(teacher, student, workdir, config, test=None, strategy=None):
    """Runs every stage; returns a results dict (also written to ``workdir/zskd.json``).

    test: optional (x_test, y_test) for evaluation. The reported accuracy is the final
    epoch's; no stage selects anything on the test set. strategy: an optional
    ``tf.distribute`` strategy under whose scope teacher and student were built.
    """
    config.validate()
    config = config.resolved()
    os.makedirs(workdir, exist_ok=True)
    writer = tf.summary.create_file_writer(os.path.join(workdir, "tb", "craft"))
    sim, craft_stats = craft(teacher, workdir, config, tb_writer=writer, strategy=strategy)
    heldout = None
    if config.heldout_impressions:
        _, craft_stats["heldout"] = craft(teacher, workdir, config, strategy=strategy,
                                          part="heldout")
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        # Several-host distillation would have every host write the same stage files:
        # the hosts share crafting, then the chief distills alone.
        if distribute.worker()[0] != 0:
            logging.info("crafting finished; the chief host distils")
            return {"config": dataclasses.asdict(config), "crafting": craft_stats}
        logging.warning("distilling on the chief host only (several-host distillation is "
                        "not supported); teacher and student must not live under the "
                        "multi-worker scope")
        strategy = None
    grid_path = os.path.join(workdir, "impressions.png")
    report.save_impression_grid(os.path.join(workdir, "transfer_set"), grid_path, writer)
    writer.flush()
    x = store.load(os.path.join(workdir, "transfer_set"), keys=("images",))["images"]
    if config.heldout_impressions:
        heldout = store.load(os.path.join(workdir, "heldout_set"), keys=("images",))["images"]
    results = {"config": dataclasses.asdict(config), "crafting": craft_stats,
               **distill_and_evaluate(teacher, student, x, workdir, config, test, strategy,
                                      heldout=heldout)}
    io_utils.write_json(os.path.join(workdir, "zskd.json"), results)
    return results

