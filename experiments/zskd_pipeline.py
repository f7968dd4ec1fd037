"""The one pipeline behind ``mnist_zskd``, ``fmnist_zskd`` and ``cifar10_zskd``.

teacher (``--teacher``, else pretrained/<dataset>_<model>.keras, else trained here)
-> similarity -> targets -> crafting -> distillation -> augmented fine-tuning -> test.
Every flag is validated before any work starts.
"""
import contextlib
import os

from absl import flags
from absl import logging

from experiments import common
from zskd_tf import paper

FLAGS = flags.FLAGS
REPO = common.REPO


def define_flags(dataset):
    """Defines the binary's flags; ``dataset`` sets the defaults."""
    setup = paper.SETUPS[dataset]
    flags.DEFINE_list("beta", [str(b) for b in paper.BETAS],
                      "Dirichlet scaling factors (comma-separated, each > 0); the impressions "
                      "are split equally between them.")
    flags.DEFINE_integer("num_impressions", paper.HEADLINE_IMPRESSIONS[dataset],
                         "Transfer-set size (>= classes x betas).")
    flags.DEFINE_enum("prior", "class_similarity", ["class_similarity", "uniform"],
                      "Dirichlet prior: class similarity (the method) or uniform (Table 7).")
    flags.DEFINE_enum("impressions", "data", ["data", "class"],
                      "data: Data Impressions (Dirichlet targets); class: Class Impressions "
                      "(one-hot targets, stop at a confidence drawn from [0.55, 0.70]).")
    flags.DEFINE_integer("craft_iterations", 1500, "Crafting iterations per impression.")
    flags.DEFINE_float("craft_lr", None, "Crafting Adam learning rate (default: appendix).")
    flags.DEFINE_integer("craft_batch_size", None, "Images per crafting batch: the unit of "
                         "loss averaging and min-max renormalisation (default: appendix).")
    flags.DEFINE_integer("parallel_batches", None, "Crafting batches optimised together "
                         "(one shard); does not change the result, only speed and memory "
                         "(default: 1,000 images at once per process; 100 for CIFAR-10).")
    flags.DEFINE_integer("craft_processes", None, "Processes crafting shards side by side on "
                         "this host, each with CPUs / processes threads; does not change the "
                         "result (default: 2 on a CPU with 2+ cores, 1 with a GPU).")
    flags.DEFINE_enum("pixel", "minmax", ["minmax", "clip", "none", "clip_end"],
                      "Pixel handling after each crafting step (see docs/REPRODUCTION.md).")
    flags.DEFINE_enum("init", "uniform", ["uniform", "normal"],
                      "Crafting's initial noise: uniform in [0, 1] or standard normal.")
    flags.DEFINE_float("image_l2", 0.0, "Weight of an L2 penalty on the impressions while "
                       "crafting (0: none, as in the paper).")
    flags.DEFINE_enum("craft_precision", "float32", ["float32", "bfloat16"],
                      "The teacher's arithmetic while crafting: float32, or bfloat16 "
                      "(mixed precision; faster on CPUs with native bf16; the stored soft "
                      "labels always come from the float32 teacher; docs/PERFORMANCE.md).")
    flags.DEFINE_float("temperature", paper.TEMPERATURE, "Softmax temperature (crafting, KD).")
    flags.DEFINE_string("teacher", None, "Teacher .keras file (default: the committed "
                        "pretrained teacher, else train one).")
    flags.DEFINE_integer("teacher_epochs", setup.teacher_epochs,
                         "Epochs if a teacher must be trained here.")
    flags.DEFINE_integer("student_epochs", 2000, "Distillation epochs (appendix: max 2000).")
    flags.DEFINE_float("student_lr", None, "Distillation learning rate (default: appendix).")
    flags.DEFINE_integer("batch_size", paper.BATCH_SIZE, "Distillation batch size.")
    flags.DEFINE_bool("augment", True, "Fine-tune on a mixture of impressions and augmented "
                      "impressions after distillation (Table 6).")
    flags.DEFINE_integer("finetune_epochs", setup.finetune_epochs,
                         "Augmented fine-tuning epochs (the paper gives none; see "
                         "docs/REPRODUCTION.md).")
    flags.DEFINE_float("finetune_lr", None, "Augmented fine-tuning LR (appendix: 0.001).")
    flags.DEFINE_float("augment_prob", 0.5, "Share of impressions augmented per batch.")
    flags.DEFINE_enum("strategy", "default", ["default", "mirrored", "multi_worker"],
                      "tf.distribute strategy: one device, this host's devices "
                      "(MirroredStrategy), or several hosts (MultiWorkerMirroredStrategy, "
                      "configured by TF_CONFIG). Crafting splits shards across replicas.")
    flags.DEFINE_integer("cpu_devices", 1, "Split the CPU into this many logical devices "
                         "(to try --strategy=mirrored without GPUs).")
    flags.DEFINE_integer("eval_every", 10, "Log test accuracy every N epochs (monitoring "
                         "only; 0: never). Reported figures are final-epoch.")
    flags.DEFINE_integer("heldout_impressions", 0, "Also craft this many held-out "
                         "impressions (own targets and noise) and log the student's "
                         "agreement with the teacher on them, as they are and augmented, "
                         "every --eval_every epochs (every 10 if that is 0): a data-free training "
                         "signal, not a stopping rule (0: off).")
    common.define_common_flags()
    flags.register_validator("beta", common.positive_numbers,
                             "--beta must be a non-empty comma-separated list of numbers > 0")
    for name in ("num_impressions", "craft_iterations", "student_epochs",
                 "batch_size", "teacher_epochs", "cpu_devices"):
        flags.register_validator(name, lambda v: v is not None and v >= 1,
                                 f"--{name} must be >= 1")
    for name in ("craft_lr", "student_lr", "finetune_lr", "craft_batch_size",
                 "parallel_batches", "craft_processes"):
        flags.register_validator(name, lambda v: v is None or v > 0, f"--{name} must be > 0")
    flags.register_validator("temperature", lambda v: v > 0, "--temperature must be > 0")
    flags.register_validator("image_l2", lambda v: v >= 0, "--image_l2 must be >= 0")
    flags.register_validator("finetune_epochs", lambda v: v >= 0,
                             "--finetune_epochs must be >= 0")
    flags.register_validator("heldout_impressions", lambda v: v is not None and v >= 0,
                             "--heldout_impressions must be >= 0")
    flags.register_validator("augment_prob", lambda v: 0 <= v <= 1,
                             "--augment_prob must be in [0, 1]")
    flags.register_validator("teacher", lambda v: v is None or os.path.isfile(v),
                             "--teacher must name an existing .keras file")
    flags.register_multi_flags_validator(
        ["num_impressions", "beta", "impressions"], _enough_impressions,
        "--num_impressions must be at least classes (10) x number of --beta values")
    flags.register_multi_flags_validator(
        ["heldout_impressions", "beta", "impressions"], _enough_heldout,
        "--heldout_impressions must be 0 or at least classes (10) x number of --beta values")


def _enough_impressions(values, key="num_impressions"):
    if not common.positive_numbers(values["beta"]) or values[key] is None:
        return True  # reported by the --beta or the flag's own validator
    betas = len(values["beta"]) if values["impressions"] == "data" else 1
    return values[key] >= 10 * betas


def _enough_heldout(values):
    return values["heldout_impressions"] == 0 or _enough_impressions(
        values, "heldout_impressions")


def main(dataset):
    from zskd_tf import data as data_lib
    from zskd_tf import distribute
    from zskd_tf import zskd

    if FLAGS.cpu_devices > 1:
        distribute.split_cpu(FLAGS.cpu_devices)
    strategy = distribute.get_strategy(FLAGS.strategy)
    workdir = FLAGS.workdir
    common.write_config(workdir)
    data = data_lib.load(dataset, FLAGS.data_dir)
    # Models live under the strategy (crafting copies the teacher per device); with
    # several hosts only crafting is shared and the chief distils alone, outside it.
    scope = contextlib.nullcontext() if FLAGS.strategy == "multi_worker" else strategy.scope()
    with scope:
        teacher, teacher_source, student = _models(dataset, data)
    config = zskd.Config(
        num_impressions=FLAGS.num_impressions, betas=tuple(float(b) for b in FLAGS.beta),
        prior=FLAGS.prior, impressions=FLAGS.impressions, dataset=dataset,
        craft_iterations=FLAGS.craft_iterations, craft_lr=FLAGS.craft_lr,
        craft_batch_size=FLAGS.craft_batch_size, parallel_batches=FLAGS.parallel_batches,
        craft_processes=FLAGS.craft_processes,
        pixel=FLAGS.pixel, init=FLAGS.init, image_l2=FLAGS.image_l2,
        craft_precision=FLAGS.craft_precision,
        temperature=FLAGS.temperature, student_epochs=FLAGS.student_epochs,
        student_lr=FLAGS.student_lr, batch_size=FLAGS.batch_size, augment=FLAGS.augment,
        finetune_epochs=FLAGS.finetune_epochs, finetune_lr=FLAGS.finetune_lr,
        augment_prob=FLAGS.augment_prob, eval_every=FLAGS.eval_every,
        heldout_impressions=FLAGS.heldout_impressions, seed=FLAGS.seed)
    result = zskd.run(teacher, student, workdir, config, test=(data.x_test, data.y_test),
                      strategy=strategy)
    if "student" in result:  # a non-chief host only crafts
        _report(teacher_source, result, strategy, config)


def _models(dataset, data):
    """(teacher, where it came from, freshly initialised student)."""
    from zskd_tf import distill
    from zskd_tf import models
    from zskd_tf import seeding

    setup = paper.SETUPS[dataset]
    workdir = FLAGS.workdir
    teacher_path = FLAGS.teacher or common.pretrained_path(dataset, setup.teacher)
    if os.path.exists(teacher_path):
        logging.info("teacher: %s", teacher_path)
        teacher = models.load(teacher_path)
        teacher_source = os.path.relpath(teacher_path, REPO) if not FLAGS.teacher \
            else teacher_path
    else:
        logging.info("no pretrained teacher at %s: training one (%d epochs)", teacher_path,
                     FLAGS.teacher_epochs)
        seeding.seed_stage(FLAGS.seed, "teacher")
        teacher = models.get(setup.teacher, input_shape=data.image_shape)
        distill.train_classifier(teacher, data, workdir=workdir, stage="teacher",
                                 epochs=FLAGS.teacher_epochs, lr=setup.teacher_lr,
                                 seed=seeding.derive(FLAGS.seed, "teacher-data"), verbose=2)
        teacher_source = "trained in workdir"
    seeding.seed_stage(FLAGS.seed, "student-init")
    student = models.get(setup.student, input_shape=data.image_shape)
    return teacher, teacher_source, student


def _report(teacher_source, result, strategy, config):
    dataset = config.dataset
    reported = paper.REPORTED[dataset]
    paper_zskd, paper_aug = paper.reported_zskd(dataset, config.num_impressions,
                                                config.impressions, config.prior)
    summary = {
        "dataset": dataset,
        "test_accuracy": {
            "teacher": result["teacher"]["test_accuracy"],
            "zskd": result["student"]["test_accuracy"],
            "zskd_augmented": result.get("student_augmented", {}).get("test_accuracy"),
        },
        # the paper's figures for this setting (None: it reports none)
        "paper": {"zskd": paper_zskd, "zskd_augmented": paper_aug,
                  "teacher_ce": reported["teacher_ce"]},
        "selection": "final epoch; no model selection on the test set",
        "strategy": {"name": FLAGS.strategy, "replicas": strategy.num_replicas_in_sync},
        **result,
        "teacher": {**result["teacher"], "source": teacher_source},
    }
    common.write_results(FLAGS.workdir, summary)
    acc = summary["test_accuracy"]
    logging.info("ZSKD test accuracy %s (paper %s); augmented %s (paper %s)",
                 *(_percent(v) for v in (acc["zskd"], paper_zskd, acc["zskd_augmented"],
                                         paper_aug)))


def _percent(value):
    return "-" if value is None else f"{value:.2f}%"
