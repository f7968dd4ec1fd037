r"""Student-KD: the student distilled from the teacher on the real training data (eq. 1).

    python -m experiments.student_kd --dataset=mnist --workdir=runs/student_kd_mnist

Loss: tau^2 * CE(teacher soft labels, student) at tau = 20 plus lambda * CE(labels,
student), lambda = 0.3 (appendix). The teacher is ``--teacher`` or the committed
pretrained one. ``--num_samples=N`` distils on a class-balanced random subset of N
training images (seeded by ``--seed``; Fig. 2's real-data points) instead of all of them.
``--student_precision=mixed_bfloat16`` trains the student in Keras mixed precision (the
ZSKD binaries' setting; float32, the paper's, by default). ``--student_augment``,
``--weight_decay`` and ``--student_lr_drops`` give the student the recipe a teacher was
trained with (none by default: the paper's). Writes config.json,
tb/student_kd/, student_kd.keras and results.json.
"""
import math
import os

import numpy as np
from absl import app
from absl import flags
from absl import logging

from experiments import common
from zskd_tf import io_utils
from zskd_tf import paper
from zskd_tf import records

FLAGS = flags.FLAGS
flags.DEFINE_enum("dataset", "mnist", common.DATASETS, "Data set.")
flags.DEFINE_string("teacher", None, "Teacher .keras (default: pretrained/<dataset>_<teacher>).")
flags.DEFINE_integer("student_epochs", None,
                     "Epochs; default: the appendix's (200, CIFAR-10 1000).")
flags.DEFINE_float("student_lr", None,
                   "Adam learning rate (default: appendix, 0.01 / CIFAR-10 0.001).")
flags.DEFINE_float("kd_lambda", paper.KD_LAMBDA, "Weight of the hard-label cross-entropy.")
flags.DEFINE_float("temperature", paper.TEMPERATURE, "Distillation temperature.")
flags.DEFINE_integer("batch_size", paper.BATCH_SIZE, "Batch size.")
flags.DEFINE_integer("eval_every", 1, "Log test accuracy every N epochs (monitoring only).")
flags.DEFINE_integer("num_samples", None, "Distil on a class-balanced random subset of this "
                     "many training images, seeded by --seed (at least one per class); "
                     "default: all of them.")
flags.DEFINE_enum("student_augment", "none", ["none", "flip_crop"],
                  "Augmentation of the training images (the teacher labels each augmented "
                  "image itself): none (the paper) or flip_crop (as train_teacher's).")
flags.DEFINE_float("weight_decay", 0.0, "Adds weight_decay * sum(w^2)/2 over the student's "
                   "kernels to the loss (0: the paper).")
flags.DEFINE_list("student_lr_drops", [],
                  "Epochs (from 0) at which the learning rate drops tenfold; empty: constant "
                  "(the paper).")
# The student's arithmetic, as the ZSKD binaries have it (zskd_tf.config)
common.define_config_flags(only=("student_precision",),
                           defaults={"student_precision": "float32"})
# Deprecated aliases of --student_epochs, --student_lr: the commands committed under
# results/ use them.
flags.DEFINE_alias("epochs", "student_epochs")
flags.DEFINE_alias("lr", "student_lr")
common.define_common_flags()
flags.register_validator("student_epochs", lambda v: v is None or v > 0,
                         "--student_epochs must be > 0")
flags.register_validator("num_samples", lambda v: v is None or v >= common.NUM_CLASSES,
                         f"--num_samples must be at least the {common.NUM_CLASSES} classes")
flags.register_validator("student_lr", lambda v: v is None or (v > 0 and math.isfinite(v)),
                         "--student_lr must be > 0 and finite")
flags.register_validator("kd_lambda", lambda v: v >= 0 and math.isfinite(v),
                         "--kd_lambda must be >= 0 and finite")
flags.register_validator("temperature", lambda v: v > 0 and math.isfinite(v),
                         "--temperature must be > 0 and finite")
flags.register_validator("batch_size", lambda v: v > 0, "--batch_size must be > 0")
flags.register_validator("eval_every", lambda v: v >= 0, "--eval_every must be >= 0")
flags.register_validator("weight_decay", lambda v: v >= 0 and math.isfinite(v),
                         "--weight_decay must be >= 0 and finite")
flags.register_validator("student_lr_drops", common.valid_lr_drops,
                         "--student_lr_drops must be distinct epoch numbers > 0")
flags.register_validator("teacher", lambda v: v is None or os.path.isfile(v),
                         "--teacher must name an existing .keras file")


def _keras_file(path):
    problem = path and os.path.isfile(path) and io_utils.keras_file_problem(path)
    if problem:
        raise flags.ValidationError(f"{path} is not a Keras .keras model file: {problem}")
    return True


flags.register_validator("teacher", _keras_file)


def main(argv):
    del argv
    from zskd_tf import data as data_lib
    from zskd_tf import distill
    from zskd_tf import models
    from zskd_tf import seeding
    from zskd_tf import store
    from zskd_tf import training

    setup = paper.SETUPS[FLAGS.dataset]
    epochs = FLAGS.student_epochs or setup.teacher_epochs
    lr = FLAGS.student_lr or setup.student_kd_lr
    teacher_path = common.existing_teacher(FLAGS.dataset, FLAGS.teacher)
    data = data_lib.load(FLAGS.dataset, FLAGS.data_dir)
    x_train, y_train = data.x_train, data.y_train
    if FLAGS.num_samples is not None and FLAGS.num_samples > len(x_train):
        common.reject(f"--num_samples={FLAGS.num_samples} is more than the {len(x_train)} "
                      "training images")
    teacher = common.load_teacher(teacher_path, data)
    common.write_config(FLAGS.workdir)
    subset = None
    if FLAGS.num_samples is not None:
        subset = common.balanced_subset(y_train, FLAGS.num_samples,
                                        seeding.derive(FLAGS.seed, "student_kd-subset"))
        x_train, y_train = x_train[subset], y_train[subset]
    seed = seeding.seed_stage(FLAGS.seed, records.STUDENT_KD)
    precision = FLAGS.student_precision
    student = models.get(setup.student, input_shape=data.image_shape, dtype=precision,
                         weight_decay=FLAGS.weight_decay)
    distill.check_precision(student, precision)
    distiller = distill.Distiller(student, teacher, FLAGS.temperature, FLAGS.kd_lambda)
    distill.compile_distiller(distiller, lr)
    distiller(x_train[:1])
    augment = None if FLAGS.student_augment == "none" else FLAGS.student_augment
    lr_drops = distill.checked_lr_drops(FLAGS.student_lr_drops)
    train, steps = distill.real_data_batches(x_train, y_train, batch_size=FLAGS.batch_size,
                                             seed=seed, augment=augment)
    test = data_lib.make_dataset(data.x_test, data.y_test, batch_size=1024)
    settings = {"teacher_sha256": store.teacher_fingerprint(teacher), "lr": lr,
                "kd_lambda": FLAGS.kd_lambda, "temperature": FLAGS.temperature,
                "batch_size": FLAGS.batch_size, "seed": FLAGS.seed,
                "num_samples": FLAGS.num_samples}
    # stages recorded before these flags had their defaults, and record none of them
    if precision != "float32":
        settings["student_precision"] = precision
    recipe = {"weight_decay": FLAGS.weight_decay, "augment": FLAGS.student_augment,
              "lr_drops": lr_drops}
    settings.update({k: v for k, v in recipe.items() if v not in (0.0, "none", [])})
    with common.one_line_errors():
        summary = training.fit(distiller, train, epochs=epochs, workdir=FLAGS.workdir,
                               stage=records.STUDENT_KD,
                               validation_data=test if FLAGS.eval_every else None,
                               validation_freq=max(1, FLAGS.eval_every),
                               steps_per_epoch=steps, export=student,
                               verbose=2, settings=settings,
                               redo=distill.REDO_IN_NEW_WORKDIR,
                               monitors=distill.lr_schedule(lr, lr_drops))
    result = distill.evaluate(student, data.x_test, data.y_test)
    common.write_results(FLAGS.workdir, {
        "dataset": FLAGS.dataset, "model": setup.student, "teacher": teacher_path,
        "row": records.STUDENT_KD, "epochs": epochs, "paper_epochs": setup.teacher_epochs,
        "lr": lr, "student_precision": precision, "num_samples": FLAGS.num_samples,
        **recipe,
        "train_images": len(x_train),
        "train_class_counts": np.bincount(y_train, minlength=data.num_classes).tolist(),
        "paper_test_accuracy": paper.REPORTED[FLAGS.dataset][records.STUDENT_KD],
        **result, **summary}, data)
    logging.info("Student-KD final-epoch test accuracy %.2f%% (paper %.2f%%)",
                 result[records.TEST_ACCURACY],
                 paper.REPORTED[FLAGS.dataset][records.STUDENT_KD])


if __name__ == "__main__":
    app.run(main)
