"""The one pipeline behind ``mnist_zskd``, ``fashion_mnist_zskd`` and ``cifar10_zskd``.

teacher (``--teacher``, else the preset's file under pretrained/, else trained here)
-> similarity -> targets -> crafting -> distillation -> augmented fine-tuning -> test.
Every flag is validated before any work starts.
"""
import os

from absl import flags
from absl import logging

from experiments import common
from zskd_tf import paper
from zskd_tf import records

FLAGS = flags.FLAGS
REPO = common.REPO


def define_flags(dataset):
    """Defines the binary's flags: every setting of ``zskd_tf.config.Config`` (defaults
    from ``--preset`` and the paper for ``dataset``), and how to run it."""
    common.define_config_flags(dataset)
    flags.DEFINE_integer("teacher_epochs", paper.SETUPS[dataset].teacher_epochs,
                         "Epochs if a teacher must be trained here.")
    flags.DEFINE_enum("strategy", "default", ["default", "mirrored", "multi_worker"],
                      "tf.distribute strategy: one device, this host's devices "
                      "(MirroredStrategy), or several hosts (MultiWorkerMirroredStrategy, "
                      "configured by TF_CONFIG; the same command on every host, with a "
                      "shared --workdir). Crafting splits shards across replicas and hosts; "
                      "every host distils, the chief alone writes.")
    flags.DEFINE_integer("cpu_devices", 1, "Split the CPU into this many logical devices "
                         "(to try --strategy=mirrored without GPUs).")
    flags.DEFINE_enum("restart_from", None, list(records.ZSKD_STAGES),
                      "Redo this stage of the workdir and every later one (a rerun whose "
                      "settings differ from a finished or started stage's stops instead).")
    common.define_common_flags(seed=False)
    for name in ("teacher_epochs", "cpu_devices"):
        flags.register_validator(name, lambda v: v is not None and v >= 1,
                                 f"--{name} must be >= 1")
    flags.register_validator("teacher", lambda v: v is None or os.path.isfile(v),
                             "--teacher must name an existing .keras file")


def main(dataset):
    from zskd_tf import data as data_lib
    from zskd_tf import distribute
    from zskd_tf import zskd

    given = common.config_from_flags(dataset)
    differences = common.log_preset(given)
    config = given.resolved()
    if FLAGS.cpu_devices > 1:
        distribute.split_cpu(FLAGS.cpu_devices)
    strategy = distribute.get_strategy(FLAGS.strategy)
    workdir = FLAGS.workdir
    data = data_lib.load(dataset, FLAGS.data_dir)
    teacher_path = (config.teacher if given.layered()[1]["teacher"] == "given"
                    else os.path.join(REPO, config.teacher))
    common.check_teacher(teacher_path, data)  # before the workdir is touched
    # hosts share the workdir: each takes a lock of its own, the chief alone writes
    common.start_run(workdir, host=distribute.worker()[0] if FLAGS.strategy == "multi_worker"
                     else 0)
    chief = distribute.is_chief(strategy)
    if chief:
        common.write_config(workdir)
    # Models live under the strategy (crafting copies the teacher per device; with
    # several hosts the variables start from the chief's values)
    with strategy.scope():
        teacher, teacher_source, student = _models(dataset, data, teacher_path,
                                                   config.student_precision)
    with common.one_line_errors():
        result = zskd.run(teacher, student, workdir, config, test=(data.x_test, data.y_test),
                          strategy=strategy, restart_from=FLAGS.restart_from)
    if chief:
        _report(teacher_source, result, strategy, config, differences, data)


def _models(dataset, data, teacher_path, student_precision):
    """(teacher, where it came from, freshly initialised student built for
    ``student_precision``; the teacher is float32)."""
    from zskd_tf import distill
    from zskd_tf import models
    from zskd_tf import seeding

    setup = paper.SETUPS[dataset]
    workdir = FLAGS.workdir
    if os.path.exists(teacher_path):
        logging.info("teacher: %s", teacher_path)
        teacher = models.load(teacher_path)
        teacher_source = os.path.relpath(teacher_path, REPO) if not FLAGS.teacher \
            else teacher_path
    else:
        logging.info("no pretrained teacher at %s: training one (%d epochs)", teacher_path,
                     FLAGS.teacher_epochs)
        seeding.seed_stage(FLAGS.seed, records.TEACHER)
        teacher = models.get(setup.teacher, input_shape=data.image_shape)
        with common.one_line_errors():
            distill.train_classifier(
                teacher, data, workdir=workdir, stage=records.TEACHER,
                epochs=FLAGS.teacher_epochs, lr=setup.teacher_lr,
                seed=seeding.derive(FLAGS.seed, "teacher-data"), verbose=2,
                redo="an empty --workdir (all its stages are redone)")
        teacher_source = "trained in workdir"
    seeding.seed_stage(FLAGS.seed, "student-init")
    student = models.get(setup.student, input_shape=data.image_shape,
                         dtype=student_precision)
    return teacher, teacher_source, student


def _report(teacher_source, result, strategy, config, differences, data):
    dataset = config.dataset
    reported = paper.REPORTED[dataset]
    paper_zskd, paper_aug = paper.reported_zskd(dataset, config.num_impressions,
                                                config.impressions, config.prior)
    summary = {
        "dataset": dataset,
        # the paper's figures for this setting (None: it reports none)
        "paper": {records.ZSKD: paper_zskd, records.ZSKD_AUGMENTED: paper_aug,
                  records.TEACHER_CE: reported[records.TEACHER_CE]},
        "preset": config.preset,
        "differs_from_paper": differences,
        "strategy": {"name": FLAGS.strategy, "replicas": strategy.num_replicas_in_sync},
        **records.summary(result, teacher_source, records.ZSKD_ROWS),
    }
    common.write_results(FLAGS.workdir, summary, data)
    acc = summary[records.TEST_ACCURACY]
    logging.info("ZSKD test accuracy %s (paper %s); augmented %s (paper %s)",
                 *(_percent(v) for v in (acc[records.ZSKD], paper_zskd,
                                         acc[records.ZSKD_AUGMENTED], paper_aug)))


def _percent(value):
    return "-" if value is None else f"{value:.2f}%"
