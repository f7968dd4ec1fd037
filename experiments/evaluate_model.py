r"""Evaluates a saved classifier on a data set's test (or training) images: overall and per
class.

    python -m experiments.evaluate_model --model=runs/x/student.keras --dataset=fashion_mnist \
        --out=results/zskd/x/per_class.json

Prints the test accuracy, each class's accuracy and the share of test images predicted as
each class (a student that collapses onto a few classes shows here), and writes them with
the command to ``--out`` if given. ``--split=train`` scores the training images instead:
a zero-shot student never saw them, so comparing recipes on them selects nothing on the
test set (how the CIFAR-10 preset was chosen, docs/REPRODUCTION.md).
"""
import os

from absl import app
from absl import flags
from absl import logging

from experiments import common

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "A .keras classifier (teacher or student).")
flags.DEFINE_enum("dataset", "mnist", common.DATASETS, "Data set whose images to use.")
flags.DEFINE_enum("split", "test", ["test", "train"], "Which of its images: the test set, or "
                  "the training set (for choices that must not look at the test set).")
flags.DEFINE_string("data_dir", None, "Folder with the data sets in their standard formats "
                    "(default: $ZSKD_DATA_DIR, else download with keras.datasets).")
flags.DEFINE_string("out", None, "Also write the figures as JSON here.")
flags.mark_flag_as_required("model")
flags.register_validator("model", lambda p: p is None or os.path.exists(p),
                         "--model must name an existing .keras file")


def main(argv):
    del argv
    from zskd_tf import data as data_lib
    from zskd_tf import distill
    from zskd_tf import io_utils
    from zskd_tf import models

    dataset = data_lib.load(FLAGS.dataset, FLAGS.data_dir)
    x, y = ((dataset.x_test, dataset.y_test) if FLAGS.split == "test"
            else (dataset.x_train, dataset.y_train))
    result = distill.evaluate(models.load(FLAGS.model), x, y)
    if FLAGS.split == "train":  # distill.evaluate names its figures for the test set
        result = {k.replace("test_", "train_", 1): v for k, v in result.items()}
    logging.info("%s on %s (%s images): %.2f%%", FLAGS.model, FLAGS.dataset, FLAGS.split,
                 result[f"{FLAGS.split}_accuracy"])
    for name, acc, share in zip(dataset.class_names, result["per_class_accuracy"],
                                result["predicted_share"]):
        shown = "no images" if acc is None else f"{acc:6.2f}%"
        print(f"{name:>12}: accuracy {shown}  predicted as {share:6.2f}%")
    if FLAGS.out:
        io_utils.write_json(FLAGS.out, {"command": common.command_line(), "model": FLAGS.model,
                                        "dataset": FLAGS.dataset,
                                        "split": FLAGS.split, "num_images": len(y),
                                        "class_names": list(dataset.class_names), **result})


if __name__ == "__main__":
    app.run(main)
