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
from zskd_tf import craft_processes
from zskd_tf import data as data_lib
from zskd_tf import distill
from zskd_tf import distribute
from zskd_tf import heldout as heldout_lib
from zskd_tf import impressions
from zskd_tf import io_utils
from zskd_tf import paper
from zskd_tf import report
from zskd_tf import seeding
from zskd_tf import similarity
from zskd_tf import store
from zskd_tf import targets as targets_lib
from zskd_tf import training

IMPRESSION_KINDS = ("data", "class")
# Images crafted together (per process) by default, per data set (through its teacher).
CRAFT_IMAGES_AT_ONCE = {name: craft_processes.IMAGES_AT_ONCE[setup.teacher]
                        for name, setup in paper.SETUPS.items()}


@dataclasses.dataclass(frozen=True)
class Config:
    """Settings of one ZSKD run. ``None`` fields take the paper's value for ``dataset``."""
    num_impressions: int = 24000
    betas: tuple = paper.BETAS
    prior: str = "class_similarity"
    impressions: str = "data"
    dataset: str = "mnist"          # only selects the appendix defaults
    craft_iterations: int = 1500
    craft_lr: float = None
    craft_batch_size: int = None
    parallel_batches: int = None     # default: CRAFT_IMAGES_AT_ONCE[dataset] // batch
    craft_processes: int = None      # default: craft_processes.default_processes()
    pixel: str = "minmax"
    init: str = "uniform"
    image_l2: float = 0.0
    craft_precision: str = "float32"
    temperature: float = paper.TEMPERATURE
    student_epochs: int = 2000
    student_lr: float = None
    batch_size: int = paper.BATCH_SIZE
    augment: bool = True
    finetune_epochs: int = None     # default: paper.SETUPS[dataset].finetune_epochs
    finetune_lr: float = None
    augment_prob: float = 0.5
    eval_every: int = 10
    heldout_impressions: int = 0     # 0: no held-out set, no monitoring
    seed: int = 0

    def resolved(self):
        """A copy with every ``None`` replaced by the appendix's setting."""
        setup = paper.craft_setup(self.dataset, self.num_impressions)
        if self.impressions == "class":
            ci_lr, ci_student_lr = paper.CLASS_IMPRESSIONS.get(
                (self.dataset, self.num_impressions), (setup.lr, setup.student_lr))
            defaults = {"craft_lr": ci_lr, "craft_batch_size": 1, "student_lr": ci_student_lr}
        else:
            defaults = {"craft_lr": setup.lr, "craft_batch_size": setup.batch_size,
                        "student_lr": setup.student_lr}
        defaults["finetune_lr"] = paper.SETUPS[self.dataset].finetune_lr
        defaults["finetune_epochs"] = paper.SETUPS[self.dataset].finetune_epochs
        batch = self.craft_batch_size or defaults["craft_batch_size"]
        defaults["parallel_batches"] = max(1, CRAFT_IMAGES_AT_ONCE[self.dataset] // batch)
        if self.craft_processes is None:
            defaults["craft_processes"] = craft_processes.default_processes()
        return dataclasses.replace(self, **{k: v for k, v in defaults.items()
                                            if getattr(self, k) is None})

    def validate(self):
        """Raises ValueError naming the first bad setting."""
        if self.impressions not in IMPRESSION_KINDS:
            raise ValueError(f"impressions must be one of {IMPRESSION_KINDS}")
        if self.prior not in targets_lib.PRIORS:
            raise ValueError(f"prior must be one of {targets_lib.PRIORS}")
        if not self.betas or any(not (isinstance(b, (int, float)) and b > 0)
                                 for b in self.betas):
            raise ValueError(f"betas must be a non-empty list of numbers > 0, got {self.betas}")
        for name in ("num_impressions", "craft_iterations", "parallel_batches", "batch_size",
                     "student_epochs", "craft_processes"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.heldout_impressions < 0:
            raise ValueError("heldout_impressions must be >= 0")
        if self.finetune_epochs is not None and self.finetune_epochs < 0:
            raise ValueError("finetune_epochs must be >= 0")
        if not 0 <= self.augment_prob <= 1:
            raise ValueError("augment_prob must be in [0, 1]")
        if self.pixel not in impressions.PIXEL_MODES:
            raise ValueError(f"pixel must be one of {impressions.PIXEL_MODES}")
        if self.init not in impressions.INIT_MODES:
            raise ValueError(f"init must be one of {impressions.INIT_MODES}")
        if not self.image_l2 >= 0:
            raise ValueError("image_l2 must be >= 0")
        if self.craft_precision not in impressions.PRECISIONS:
            raise ValueError(f"craft_precision must be one of {impressions.PRECISIONS}")
        if self.temperature <= 0:
            raise ValueError("temperature must be > 0")


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
    craft_config = impressions.CraftConfig(
        lr=config.craft_lr, batch_size=b, iterations=config.craft_iterations,
        temperature=config.temperature, pixel=config.pixel, init=config.init,
        image_l2=config.image_l2, precision=config.craft_precision)

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

