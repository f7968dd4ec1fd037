r"""Trains a classifier with cross-entropy on real data: the paper's Teacher-CE / Student-CE.

    python -m experiments.train_teacher --dataset=mnist --model=lenet5 --workdir=runs/t

Writes WORKDIR/config.json, WORKDIR/tb/<model>/ (TensorBoard), WORKDIR/<model>.keras and
WORKDIR/results.json (final-epoch test accuracy, wall time per epoch). Rerunning resumes
from the last finished epoch. ``--export`` copies the final model elsewhere (this is how
the models under pretrained/ are made).
"""
import os
import shutil

from absl import app
from absl import flags
from absl import logging

from experiments import common
from zskd_tf import models
from zskd_tf import paper
from zskd_tf import records

FLAGS = flags.FLAGS
flags.DEFINE_enum("dataset", "mnist", common.DATASETS, "Data set to train on.")
flags.DEFINE_enum("model", None, sorted(models.REGISTRY),
                  "Architecture; default: the data set's teacher (lenet5 / alexnet).")
flags.DEFINE_integer("teacher_epochs", None,
                     "Epochs; default: the appendix's (200, CIFAR-10 1000).")
flags.DEFINE_float("teacher_lr", 1e-3, "Adam learning rate (appendix: 0.001).")
flags.DEFINE_integer("batch_size", paper.BATCH_SIZE, "Batch size (appendix: 512).")
flags.DEFINE_integer("eval_every", 1, "Log test accuracy every N epochs (monitoring only; 0: "
                     "never). The reported figure is the final epoch's.")
flags.DEFINE_float("weight_decay", 0.0, "Adds weight_decay * sum(w^2)/2 over all kernels to the "
                   "loss (0: the paper's plain cross-entropy; the TF1 reproduction: 1e-4).")
flags.DEFINE_enum("teacher_augment", "none", ["none", "flip_crop"],
                  "Training augmentation: none (the paper says nothing of any) or flip_crop "
                  "(random left-right flip and 4-pixel padded crop, the usual CIFAR recipe).")
flags.DEFINE_list("teacher_lr_drops", [],
                  "Epochs (from 0) at which the learning rate drops tenfold, e.g. 60,80; "
                  "empty: constant (the paper).")
flags.DEFINE_string("export", None, "Also copy the final .keras model to this path.")
# Deprecated aliases of --teacher_epochs, --teacher_lr, --teacher_augment: the commands
# committed under results/ use them.
flags.DEFINE_alias("epochs", "teacher_epochs")
flags.DEFINE_alias("lr", "teacher_lr")
flags.DEFINE_alias("augment", "teacher_augment")
common.define_common_flags()
flags.register_validator("teacher_epochs", lambda v: v is None or v > 0,
                         "--teacher_epochs must be > 0")
flags.register_validator("teacher_lr", lambda v: v > 0, "--teacher_lr must be > 0")
flags.register_validator("batch_size", lambda v: v > 0, "--batch_size must be > 0")
flags.register_validator("weight_decay", lambda v: v >= 0, "--weight_decay must be >= 0")
flags.register_validator("teacher_lr_drops", common.valid_lr_drops,
                         "--teacher_lr_drops must be distinct epoch numbers > 0")
flags.register_validator("eval_every", lambda v: v >= 0, "--eval_every must be >= 0")


def main(argv):
    del argv
    from zskd_tf import data as data_lib
    from zskd_tf import distill
    from zskd_tf import seeding

    setup = paper.SETUPS[FLAGS.dataset]
    lr_drops = distill.checked_lr_drops(FLAGS.teacher_lr_drops)
    model_name = FLAGS.model or setup.teacher
    epochs = FLAGS.teacher_epochs or setup.teacher_epochs
    common.write_config(FLAGS.workdir)
    dataset = data_lib.load(FLAGS.dataset, FLAGS.data_dir)
    seed = seeding.seed_stage(FLAGS.seed, model_name)
    model = models.get(model_name, input_shape=dataset.x_train.shape[1:],
                       num_classes=dataset.num_classes, weight_decay=FLAGS.weight_decay)
    logging.info("%s: %d parameters, %d epochs on %d images", model_name,
                 model.count_params(), epochs, len(dataset.x_train))
    with common.one_line_errors():
        result = distill.train_classifier(
            model, dataset, workdir=FLAGS.workdir, stage=model_name, epochs=epochs,
            lr=FLAGS.teacher_lr, batch_size=FLAGS.batch_size, seed=seed,
            eval_every=FLAGS.eval_every, verbose=2,
            augment=None if FLAGS.teacher_augment == "none" else FLAGS.teacher_augment,
            lr_drops=lr_drops, settings={"dataset": FLAGS.dataset, "model": model_name,
                                         "weight_decay": FLAGS.weight_decay})
    if FLAGS.export:
        os.makedirs(os.path.dirname(os.path.abspath(FLAGS.export)), exist_ok=True)
        shutil.copyfile(os.path.join(FLAGS.workdir, f"{model_name}.keras"), FLAGS.export)
    key = records.TEACHER_CE if model_name == setup.teacher else records.STUDENT_CE
    common.write_results(FLAGS.workdir, {
        "dataset": FLAGS.dataset, "model": model_name, "parameters": model.count_params(),
        "epochs": epochs, "weight_decay": FLAGS.weight_decay, "augment": FLAGS.teacher_augment,
        "lr_drops": lr_drops,
        "paper_epochs": setup.teacher_epochs,
        "paper_test_accuracy": paper.REPORTED[FLAGS.dataset][key], **result}, dataset)
    logging.info("final-epoch test accuracy %.2f%% (paper %.2f%%)", result[records.TEST_ACCURACY],
                 paper.REPORTED[FLAGS.dataset][key])


if __name__ == "__main__":
    app.run(main)
