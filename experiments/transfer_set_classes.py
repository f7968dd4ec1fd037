r"""Per class, what a crafted transfer set holds in its teacher's eyes.

    python -m experiments.transfer_set_classes --transfer_set=runs/fashion_mnist/transfer_set \
        --dataset=fashion_mnist --out=results/transfer_sets/fashion_mnist_6000.json

Prints, per class, its share of the target mass and of the targets' top classes, the
share of impressions the teacher labels as it, and how often the teacher's top class is
the target's (``zskd_tf.transfer_stats``); writes them with the command to ``--out``.
"""
import os

from absl import app
from absl import flags

from experiments import common

FLAGS = flags.FLAGS
flags.DEFINE_string("transfer_set", None, "A finished transfer set directory.")
flags.DEFINE_enum("dataset", "mnist", common.DATASETS, "Data set (for the class names).")
flags.DEFINE_string("student", None, "Optionally a student .keras file: adds, per class, "
                    "how often it agrees with the teacher's top class on these images.")
flags.DEFINE_string("out", None, "Also write the figures as JSON here.")
flags.mark_flag_as_required("transfer_set")
flags.register_validator(
    "transfer_set", lambda p: p is None or os.path.isfile(os.path.join(p, "manifest.json")),
    "--transfer_set must name a transfer set directory (with a manifest.json)")
flags.register_validator("student", lambda p: p is None or os.path.isfile(p),
                         "--student must name an existing .keras file")


def main(argv):
    del argv
    from zskd_tf import data as data_lib
    from zskd_tf import io_utils
    from zskd_tf import models
    from zskd_tf import store
    from zskd_tf import transfer_stats

    try:
        ts = store.load(FLAGS.transfer_set,
                        keys=("soft_labels", "targets", "classes", "loss", "images"))
    except ValueError as e:  # an unfinished set
        raise app.UsageError(f"--transfer_set: {e}")
    student_logits = None
    if FLAGS.student:
        student_logits = models.load(FLAGS.student).predict(ts["images"], batch_size=1024,
                                                            verbose=0)
    stats = transfer_stats.class_breakdown(ts["soft_labels"], ts["targets"], ts["classes"],
                                           ts["loss"], student_logits)
    names = data_lib.CLASS_NAMES[FLAGS.dataset]
    if len(names) != len(stats["target_share"]):
        names = tuple(str(k) for k in range(len(stats["target_share"])))
    print(f"{'class':>12} {'target %':>9} {'target top-1 %':>15} {'teacher top-1 %':>16} "
          f"{'hit rate %':>11} {'loss':>7} {'student agrees %':>17}")
    def cell(v, spec):
        return "-" if v is None else format(v, spec)
    for i, name in enumerate(names):
        print(f"{name:>12} {stats['target_share'][i]:9.2f} {stats['target_top1_share'][i]:15.2f} "
              f"{stats['teacher_top1_share'][i]:16.2f} {cell(stats['hit_rate'][i], '.1f'):>11} "
              f"{cell(stats['mean_loss'][i], '.3f'):>7} "
              f"{cell(stats.get('student_agreement', [None] * len(names))[i], '.1f'):>17}")
    if FLAGS.out:
        io_utils.write_json(FLAGS.out, {
            "command": common.command_line(), "transfer_set": FLAGS.transfer_set,
            "dataset": FLAGS.dataset, "student": FLAGS.student,
            "num_impressions": len(ts["targets"]),
            "class_names": list(names), **stats})


if __name__ == "__main__":
    app.run(main)
