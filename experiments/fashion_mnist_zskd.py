r"""Zero-Shot Knowledge Distillation on Fashion-MNIST (Table 2, 6, 7).

    python -m experiments.fashion_mnist_zskd --beta=1.0,0.1 --workdir=runs/fashion_mnist_zskd

Writes WORKDIR/config.json, WORKDIR/tb/{craft,student,student_augmented}, the transfer set
under WORKDIR/transfer_set/, WORKDIR/impressions.png and WORKDIR/results.json. Rerunning
the same command resumes where it stopped. See experiments/zskd_pipeline.py for the flags.
"""
from absl import app

from experiments import zskd_pipeline

zskd_pipeline.define_flags("fashion_mnist")


def main(argv):
    del argv
    zskd_pipeline.main("fashion_mnist")


if __name__ == "__main__":
    app.run(main)
