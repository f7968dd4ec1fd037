r"""How a teacher's Dirichlet prior spreads the target mass over its classes.

    python -m experiments.target_shares --teacher=pretrained/fashion_mnist_lenet5_wd.keras \
        --dataset=fashion_mnist --out=results/target_shares/fashion_mnist_lenet5_wd.json

For a transfer set split equally between classes and betas, prints each class's expected
share of all soft-target mass (the Dirichlet means, ``targets.expected_class_share``) and
the prior's concentration rows, and writes them with the command to ``--out`` if given.
Set beside a student's ``predicted_share`` (``experiments.evaluate_model``), it tells
whether a class the student rarely predicts was also rare in its targets.
"""
import os

from absl import app
from absl import flags

from experiments import common
from zskd_tf import paper

FLAGS = flags.FLAGS
flags.DEFINE_string("teacher", None, "The teacher .keras file whose final layer sets the prior.")
flags.DEFINE_enum("dataset", "mnist", common.DATASETS, "Data set (for the class names).")
flags.DEFINE_list("beta", [str(b) for b in paper.BETAS], "Dirichlet scaling factors.")
flags.DEFINE_enum("prior", "class_similarity", ["class_similarity", "uniform"],
                  "Dirichlet prior.")
flags.DEFINE_string("out", None, "Also write the figures as JSON here.")
flags.mark_flag_as_required("teacher")
flags.register_validator("teacher", lambda p: p is None or os.path.isfile(p),
                         "--teacher must name an existing .keras file")
flags.register_validator("beta", common.positive_numbers,
                         "--beta must be a non-empty comma-separated list of numbers > 0")


def main(argv):
    del argv
    from zskd_tf import data as data_lib
    from zskd_tf import io_utils
    from zskd_tf import models
    from zskd_tf import similarity
    from zskd_tf import targets

    betas = [float(b) for b in FLAGS.beta]
    _, alpha = similarity.from_model(models.load(FLAGS.teacher))
    share = 100.0 * targets.expected_class_share(alpha, betas, FLAGS.prior)
    names = data_lib.CLASS_NAMES[FLAGS.dataset]
    if len(names) != len(share):
        names = tuple(str(k) for k in range(len(share)))
    for name, s in zip(names, share):
        print(f"{name:>12}: {s:6.2f}% of the target mass")
    if FLAGS.out:
        io_utils.write_json(FLAGS.out, {
            "command": common.command_line(), "teacher": FLAGS.teacher,
            "dataset": FLAGS.dataset, "betas": betas, "prior": FLAGS.prior,
            "class_names": list(names), "expected_target_share": share.tolist(),
            "concentration": alpha.tolist()})


if __name__ == "__main__":
    app.run(main)
