r"""Distillation on an arbitrary transfer set (Nayak et al., WACV 2021).

    python -m experiments.arbitrary_transfer --dataset=mnist --transfer=fashion_mnist \
        --num_samples=6000 --workdir=runs/arb_mnist_fashion_mnist

The teacher (``--teacher``, else the committed pretrained one for ``--dataset``) labels
the training images of ``--transfer`` (or uniform noise); ``--num_samples`` of them are
chosen so its predicted classes are balanced (``--nobalance``: at random), and the
student is distilled on them as on Data Impressions. Writes config.json, tb/,
transfer_set.png (chosen images per predicted class), student.keras and results.json.
Rerunning the same command resumes.
"""
import os

from absl import app
from absl import flags
from absl import logging

from experiments import common
from zskd_tf import paper
from zskd_tf import records

SOURCES = ("uniform_noise",) + common.DATASETS
FLAGS = flags.FLAGS
flags.DEFINE_enum("dataset", "mnist", common.DATASETS,
                  "The teacher's data set: sets the default teacher, student and test set.")
flags.DEFINE_enum("transfer", "fashion_mnist", SOURCES,
                  "Where the transfer set comes from: another data set's training images "
                  "(labels unused; grey <-> RGB converted to the teacher's channels) or "
                  "uniform noise. The teacher's own data set gives the non-data-free "
                  "reference.")
flags.DEFINE_integer("num_samples", 6000, "Transfer-set size.")
flags.DEFINE_bool("balance", True, "Choose the samples so the teacher's predicted classes "
                  "are equally represented (as far as the pool allows); else at random.")
flags.DEFINE_integer("noise_pool", 100000, "Noise images drawn to choose from "
                     "(--transfer=uniform_noise).")
# The distillation settings, as the ZSKD binaries have them, with this binary's defaults.
common.define_config_flags(only=(
    "teacher", "student_epochs", "student_lr", "batch_size", "augment", "finetune_epochs",
    "temperature", "student_precision", "eval_every", "seed"), defaults={
    "student_epochs": 200, "augment": False, "finetune_epochs": 100})
common.define_common_flags(seed=False)
flags.DEFINE_enum("restart_from", None, list(records.STUDENT_STAGES),
                  "Redo this stage of the workdir and the later one (a rerun whose settings "
                  "differ from a finished or started stage's stops instead).")
for _name in ("num_samples", "noise_pool"):
    flags.register_validator(_name, lambda v: v is not None and v >= 1,
                             f"--{_name} must be >= 1")
flags.register_validator("teacher", lambda v: v is None or os.path.isfile(v),
                         "--teacher must name an existing .keras file")
flags.register_multi_flags_validator(
    ["transfer", "num_samples", "noise_pool"],
    lambda v: v["transfer"] != "uniform_noise" or v["noise_pool"] >= v["num_samples"],
    "--noise_pool must be at least --num_samples")
flags.register_multi_flags_validator(
    ["transfer", "num_samples"],
    lambda v: v["transfer"] == "uniform_noise"
    or v["num_samples"] <= paper.SETUPS[v["transfer"]].train_size,
    "--num_samples must not exceed the --transfer data set's training images "
    "(60,000; CIFAR-10 50,000)")


def main(argv):
    del argv
    from zskd_tf import arbitrary
    from zskd_tf import data as data_lib
    from zskd_tf import models
    from zskd_tf import seeding

    setup = paper.SETUPS[FLAGS.dataset]
    # the appendix's usual student lr for Data Impressions, not the one for this size
    config = common.config_from_flags(
        FLAGS.dataset, num_impressions=FLAGS.num_samples,
        student_lr=FLAGS.student_lr or setup.student_di_lr).resolved()
    teacher_path = common.existing_teacher(FLAGS.dataset, FLAGS.teacher)
    if FLAGS.transfer == FLAGS.dataset:
        logging.warning("--transfer is the teacher's own data set: a reference, not data-free")
    workdir = FLAGS.workdir
    data = data_lib.load(FLAGS.dataset, FLAGS.data_dir)
    teacher = common.load_teacher(teacher_path, data)
    common.write_config(workdir)
    images = arbitrary.pool(FLAGS.transfer, data.image_shape, FLAGS.data_dir,
                            noise_size=FLAGS.noise_pool,
                            seed=seeding.derive(FLAGS.seed, "noise-pool"))
    transfer = arbitrary.select(teacher, images, FLAGS.num_samples, balance=FLAGS.balance,
                                seed=seeding.derive(FLAGS.seed, "select"))
    del images
    logging.info("transfer set: %d images; teacher's classes %s (pool: %s)",
                 len(transfer.images), transfer.histogram.tolist(),
                 transfer.pool_histogram.tolist())
    arbitrary.save_grid(transfer, teacher, os.path.join(workdir, "transfer_set.png"),
                        config.temperature, class_names=list(data.class_names))
    seeding.seed_stage(FLAGS.seed, "student-init")
    student = models.get(setup.student, input_shape=data.image_shape,
                         dtype=config.student_precision)
    with common.one_line_errors():
        result = arbitrary.run(teacher, student, transfer, workdir, config,
                               test=(data.x_test, data.y_test), restart_from=FLAGS.restart_from)
    summary = {"dataset": FLAGS.dataset, "transfer": FLAGS.transfer,
               "balance": FLAGS.balance, **records.summary(result, teacher_path)}
    common.write_results(workdir, summary, data)
    logging.info("student test accuracy %.2f%% (teacher %.2f%%)",
                 summary[records.TEST_ACCURACY][records.STUDENT],
                 summary[records.TEST_ACCURACY][records.TEACHER])


if __name__ == "__main__":
    app.run(main)
