"""End-to-end time of each stage of the ZSKD pipeline at a small budget, and where a full
run's time would go.

Per data set (MNIST: LeNet-5 -> LeNet-5-Half; CIFAR-10: AlexNet -> AlexNet-Half), on
randomly initialised models and random test images (no data set is read), in a temporary
workdir, the library's own stage functions run in the pipeline's order and are timed:
class similarity (``similarity.from_model``), target sampling (``targets.sample``),
crafting (``zskd.craft``, which repeats the two before it), loading the transfer set
(``store.load``), distillation (``zskd.distill_images``, the teacher run on every batch),
the same stage on the stored soft labels (``stored_soft_labels=True``: a fresh student in
a workdir of its own; shown beside the default, not counted in the total), augmented
fine-tuning (``zskd.distill_images(augmented=True)``) and evaluation (``distill.evaluate``
of the student after each stage and of the teacher, as ``zskd.distill_and_evaluate``
does). Settings: ``Config`` defaults for the data set (its default preset) except the
budget, ``craft_processes=1`` and a crafting batch of 100 (the headline sets'; the
appendix's batch for a small set would be smaller, and the shards are the default's,
``parallel_batches`` images at once).

Rates: crafting in image-steps/s over the shards after the first (the first carries the
tracing and the rewrite's checks); distillation and fine-tuning in training images/s
over the epochs after the first (``epoch_seconds``: the steps only; an epoch is
ceil(impressions / batch) full batches of the stage's batch size: CIFAR-10's fine-tuning
batch is 5,000, so 500 impressions train on 5,000 images per epoch), with the per-epoch
rest (checkpoint, CSV and TensorBoard writes) and the stage's one-time cost kept apart.
The extrapolation to the paper's budgets (``PAPER_BUDGETS``) scales each stage by those
rates: an estimate, not a measurement. Each data set runs in a fresh subprocess.

    python -m benchmarks.pipeline                      # full run (a few minutes)
    python -m benchmarks.pipeline --quick              # smoke test
"""
import contextlib
import os
import statistics
import tempfile
import time

from absl import app, flags

from benchmarks import common

MODELS = {"mnist": ("lenet5", "lenet5_half"), "cifar10": ("alexnet", "alexnet_half")}
CRAFT_BATCH = 100
# The budgets the extrapolation scales to: (impressions, crafting iterations,
# distillation epochs, fine-tuning epochs). MNIST: the reproduce preset's epochs;
# CIFAR-10: 200 + 200 (Config's own default is the appendix's 1,000 distillation epochs).
PAPER_BUDGETS = {"mnist": (24000, 1500, 200, 1000), "cifar10": (40000, 1500, 200, 200)}
TEST_SET = 10000  # both data sets' test sets
DISTILL, STORED, FINETUNE = "distillation", "distillation, stored soft labels", "fine-tuning"

FLAGS = flags.FLAGS
flags.DEFINE_list("datasets", ["mnist", "cifar10"], f"Data sets, of {sorted(MODELS)}.")
flags.DEFINE_list("num_impressions", ["2000", "500"], "Impressions, one per data set "
                  f"(multiples of {CRAFT_BATCH}).")
flags.DEFINE_list("iterations", ["300", "100"], "Crafting iterations, one per data set.")
flags.DEFINE_list("epochs", ["5", "8"], "Distillation epochs, one per data set.")
flags.DEFINE_list("finetune_epochs", ["5", "3"], "Fine-tuning epochs, one per data set.")
flags.DEFINE_integer("test_images", TEST_SET, "Random test images evaluated.")
QUICK = {"datasets": ["mnist"], "num_impressions": ["200"], "iterations": ["5"],
         "epochs": ["2"], "finetune_epochs": ["2"], "test_images": 500,
         "out": "benchmarks/results/pipeline_quick.json"}
common.define_quick_flags("pipeline", QUICK)


@contextlib.contextmanager
def _epoch_walls():
    """Records the wall clock at every epoch's start and at the end of training of each
    ``training.fit`` in the block (its ``EpochTimer`` extended), as lists in the list
    yielded: one list per fit."""
    from zskd_tf import training
    fits, original = [], training.EpochTimer

    class Recording(original):
        def on_train_begin(self, logs=None):
            fits.append([])

        def on_epoch_begin(self, epoch, logs=None):
            fits[-1].append(time.perf_counter())
            super().on_epoch_begin(epoch, logs)

        def on_train_end(self, logs=None):
            fits[-1].append(time.perf_counter())

    training.EpochTimer = Recording
    try:
        yield fits
    finally:
        training.EpochTimer = original


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _epochs_stage(name, seconds, walls, history, impressions, batch_size, epochs):
    """A training stage's record from its wall time, the epochs' wall spans and the
    training-only ``epoch_seconds`` of its CSV log. An epoch is ceil(impressions / batch)
    full batches (the stream repeats before batching), so its images are that many
    batches' worth."""
    spans = [b - a for a, b in zip(walls, walls[1:])]
    train = history["epoch_seconds"]
    steady = slice(1, None) if len(spans) > 1 else slice(None)
    epoch_wall, epoch_train = statistics.median(spans[steady]), statistics.median(train[steady])
    steps = -(-impressions // batch_size)
    return {"stage": name, "seconds": seconds, "epochs": epochs, "impressions": impressions,
            "batch_size": batch_size, "steps_per_epoch": steps,
            "images": steps * batch_size,
            "work": f"{epochs} epochs x {steps} x {batch_size:,} images", "unit": "images/s",
            "rate": steps * batch_size / epoch_train, "epoch_wall_seconds": spans,
            "epoch_train_seconds": train, "steady_epoch_wall_seconds": epoch_wall,
            "steady_epoch_train_seconds": epoch_train,
            "per_epoch_rest_seconds": epoch_wall - epoch_train,
            "once_seconds": seconds - epochs * epoch_wall}


def run_pipeline(dataset, num_impressions, iterations, epochs, finetune_epochs, test_images,
                 seed=0):
    """Times every stage once for ``dataset`` at this budget; returns the records."""
    import dataclasses

    import keras
    import numpy as np
    from zskd_tf import config as config_lib
    from zskd_tf import (distill, io_utils, models, records, seeding, similarity, store,
                         training, zskd)
    from zskd_tf import targets as targets_lib
    teacher_name, student_name = MODELS[dataset]
    cfg = config_lib.Config(
        dataset=dataset, num_impressions=num_impressions, craft_iterations=iterations,
        craft_batch_size=CRAFT_BATCH, student_epochs=epochs, finetune_epochs=finetune_epochs,
        craft_processes=1, seed=seed).validate().resolved()
    keras.utils.set_random_seed(seed)
    teacher = models.get(teacher_name)
    rng = np.random.default_rng(seed)
    x_test = rng.uniform(size=(test_images, *teacher.input_shape[1:])).astype(np.float32)
    y_test = rng.integers(0, teacher.output_shape[-1], test_images)
    stages = []
    with tempfile.TemporaryDirectory() as workdir, _epoch_walls() as fits:
        (_, alpha), seconds = _timed(lambda: similarity.from_model(teacher))
        stages.append({"stage": "similarity", "seconds": seconds, "work": "1 teacher",
                       "unit": None, "rate": None})
        targets, seconds = _timed(lambda: targets_lib.whole_batches(targets_lib.sample(
            alpha, cfg.num_impressions, betas=cfg.betas, prior=cfg.prior,
            seed=seeding.derive(cfg.seed, "targets")), cfg.craft_batch_size))
        paper_n = PAPER_BUDGETS[dataset][0]  # for the extrapolation (per-group costs)
        _, at_paper_size = _timed(lambda: targets_lib.sample(
            alpha, paper_n, betas=cfg.betas, prior=cfg.prior, seed=seed))
        stages.append({"stage": "target sampling", "seconds": seconds, "images": len(targets),
                       "work": f"{len(targets):,} targets", "unit": "targets/s",
                       "rate": len(targets) / seconds,
                       "paper_size_seconds_measured_after": at_paper_size})

        (_, crafting), seconds = _timed(lambda: zskd.craft(teacher, workdir, cfg))
        transfer_dir = os.path.join(workdir, "transfer_set")
        shards = [s for _, s in sorted(store.read_manifest(transfer_dir)["shards"].items(),
                                       key=lambda kv: int(kv[0]))]
        later = shards[1:] or shards
        steady = sum(s["count"] for s in later) * iterations / sum(s["seconds"] for s in later)
        image_steps = len(targets) * iterations
        stages.append({"stage": "crafting", "seconds": seconds, "images": len(targets),
                       "image_steps": image_steps,
                       "work": f"{len(targets):,} x {iterations:,} image-steps",
                       "unit": "image-steps/s", "rate": steady,
                       "rate_whole_stage": image_steps / seconds,
                       "shards": [{k: s[k] for k in ("count", "seconds",
                                                     "image_steps_per_second")}
                                  for s in shards],
                       "parallel_batches": cfg.parallel_batches,
                       "once_seconds": seconds - image_steps / steady,
                       "mean_final_loss": crafting["mean_final_loss"]})

        transfer, seconds = _timed(lambda: store.load(transfer_dir,
                                                      keys=("images", "soft_labels")))
        x = transfer["images"]
        stages.append({"stage": "loading the transfer set", "seconds": seconds,
                       "images": len(x), "work": f"{len(x):,} images", "unit": "images/s",
                       "rate": len(x) / seconds})

        def distil(name, student, stage_dir, config, **kwargs):
            os.makedirs(stage_dir, exist_ok=True)
            summary, seconds = _timed(lambda: zskd.distill_images(
                teacher, student, x, stage_dir, config, **kwargs))
            history = training.read_history(os.path.join(stage_dir, summary["history_csv"]))
            stage = records.STUDENT_AUGMENTED if kwargs.get("augmented") else records.STUDENT
            batch = io_utils.read_json(training.stage_paths(stage_dir, stage)["settings"])[
                "batch_size"]  # the batch the stage used
            count = config.finetune_epochs if kwargs.get("augmented") else config.student_epochs
            return _epochs_stage(name, seconds, fits[-1], history, len(x), batch, count)

        def fresh_student():
            keras.utils.set_random_seed(seed + 1)
            return models.get(student_name)

        evaluations = []

        def evaluate(who, model):
            _, seconds = _timed(lambda: distill.evaluate(model, x_test, y_test))
            evaluations.append({"model": who, "seconds": seconds,
                                "images_per_s": test_images / seconds})

        student = fresh_student()
        stages.append(distil(DISTILL, student, os.path.join(workdir, "run"), cfg))
        evaluate(f"student after {records.STUDENT}", student)
        stored = distil(STORED, fresh_student(), os.path.join(workdir, "stored"),
                        dataclasses.replace(cfg, stored_soft_labels=True),
                        soft_labels=transfer["soft_labels"])
        stages.append({**stored, "in_total": False})
        stages.append(distil(FINETUNE, student, os.path.join(workdir, "run"), cfg,
                             augmented=True))
        evaluate(f"student after {records.STUDENT_AUGMENTED}", student)
        evaluate("teacher", teacher)
    seconds = sum(e["seconds"] for e in evaluations)
    stages.append({"stage": "evaluation", "seconds": seconds, "images": test_images,
                   "work": f"{len(evaluations)} x {test_images:,} images", "unit": "images/s",
                   "rate": len(evaluations) * test_images / seconds,
                   "evaluations": evaluations})
    _shares(stages)
    return {"dataset": dataset, "teacher": teacher_name, "student": student_name,
            "budget": {"num_impressions": len(targets), "iterations": iterations,
                       "epochs": epochs, "finetune_epochs": finetune_epochs,
                       "test_images": test_images},
            "config": {k: (list(v) if isinstance(v, tuple) else v)
                       for k, v in dataclasses.asdict(cfg).items()},
            "stages": stages, "extrapolation": extrapolate(dataset, stages),
            "peak_rss_mb": common.peak_rss_mb()}


def _shares(stages):
    """Adds each stage's share of the total (the stages the default pipeline runs; the
    stored-soft-labels variant gets its share of the pipeline it would replace)."""
    total = sum(s["seconds"] for s in stages if s.get("in_total", True))
    default = next((s["seconds"] for s in stages if s["stage"] == DISTILL), 0.0)
    for s in stages:
        s.setdefault("in_total", True)
        s["share"] = s["seconds"] / total if s["in_total"] else None
        if not s["in_total"]:
            s["share_in_its_pipeline"] = s["seconds"] / (total - default + s["seconds"])
    return total


def extrapolate(dataset, stages, eval_every=10):
    """Each stage's estimated seconds at ``PAPER_BUDGETS[dataset]`` from the measured
    rates: crafting and training scale with their image-steps or batches per epoch (their
    one-time cost and per-epoch rest added as measured), loading with the impressions;
    target sampling is timed at the paper's size (after the pipeline's call); evaluation
    is per test set, and the test set is also evaluated every ``eval_every`` epochs while
    training (the default ``Config.eval_every``), estimated at the trained student's
    evaluation rate. An estimate, not a measurement."""
    n, iterations, epochs, finetune = PAPER_BUDGETS[dataset]
    by = {s["stage"]: s for s in stages}
    craft = by["crafting"]
    rows = [("similarity", "1 teacher", by["similarity"]["seconds"]),
            ("target sampling", f"{n:,} targets",
             by["target sampling"]["paper_size_seconds_measured_after"]),
            ("crafting", f"{n:,} x {iterations:,} image-steps",
             craft["once_seconds"] + n * iterations / craft["rate"]),
            ("loading the transfer set", f"{n:,} images",
             n / by["loading the transfer set"]["rate"])]
    for name, count in ((DISTILL, epochs), (STORED, epochs), (FINETUNE, finetune)):
        s = by[name]
        steps = -(-n // s["batch_size"])
        per_epoch = s["steady_epoch_train_seconds"] * steps * s["batch_size"] / s["images"] + \
            s["per_epoch_rest_seconds"]
        rows.append((name, f"{count:,} epochs x {steps} x {s['batch_size']:,} images",
                     s["once_seconds"] + count * per_epoch))
    evaluation = by["evaluation"]
    rows.append(("evaluation", f"{len(evaluation['evaluations'])} x {TEST_SET:,} images",
                 evaluation["seconds"] * TEST_SET / evaluation["images"]))
    monitored = (epochs + finetune) // eval_every
    student_rate = evaluation["evaluations"][0]["images_per_s"]
    rows.append(("test monitoring", f"{monitored} x {TEST_SET:,} images (every "
                 f"{eval_every} epochs)", monitored * TEST_SET / student_rate))
    out = [{"stage": name, "work": work, "seconds": seconds, "in_total": name != STORED}
           for name, work, seconds in rows]
    total = _shares(out)
    return {"budget": {"num_impressions": n, "iterations": iterations, "epochs": epochs,
                       "finetune_epochs": finetune, "eval_every": eval_every},
            "stages": out, "total_seconds": total, "total_hours": total / 3600}


def _budget_line(r):
    b, c = r["budget"], r["config"]
    return (f"{r['dataset']}: {r['teacher']} -> {r['student']}, {b['num_impressions']:,} "
            f"impressions x {b['iterations']:,} iterations (batch {c['craft_batch_size']}, "
            f"{c['parallel_batches'] * c['craft_batch_size']:,} images at once, "
            f"craft_processes=1), {b['epochs']} + {b['finetune_epochs']} epochs (batch "
            f"{c['batch_size']:,} + {c.get('finetune_batch_size', c['batch_size']):,}), "
            f"{b['test_images']:,} random test images; other settings: "
            f"Config defaults (preset {c['preset']}); random weights")


def _percent(share):
    return None if share is None else 100 * share


def main(argv):
    del argv
    opts = common.quick_options(QUICK)
    datasets = opts["datasets"]
    unknown = set(datasets) - set(MODELS)
    if unknown:
        raise app.UsageError(f"unknown data sets {sorted(unknown)}; choose from {sorted(MODELS)}")
    per = {}
    for name in ("num_impressions", "iterations", "epochs", "finetune_epochs"):
        values = [int(v) for v in opts[name]]
        if len(values) < len(datasets):
            raise app.UsageError(f"--{name} needs one value per data set, got {values}")
        per[name] = values
    machine = common.machine_info()
    results = [common.run_isolated(
        "benchmarks.pipeline:run_pipeline", dataset=d, test_images=opts["test_images"],
        **{name: values[i] for name, values in per.items()}) for i, d in enumerate(datasets)]
    machine["load_average_1_5_15min_after"] = list(os.getloadavg())
    print(f"{machine['cpu_model']}, {machine['cpu_count']} CPUs (load average "
          f"{machine['load_average_1_5_15min'][0]:.2f} before, "
          f"{machine['load_average_1_5_15min_after'][0]:.2f} after)")
    for r in results:
        print("\n" + _budget_line(r))
        common.print_table(
            [(s["stage"] + ("" if s["in_total"] else " *"), s["work"], s["seconds"],
              s.get("steady_epoch_wall_seconds"), s["rate"], s["unit"],
              _percent(s["share"] if s["in_total"] else s["share_in_its_pipeline"]))
             for s in r["stages"]] +
            [("total", "", sum(s["seconds"] for s in r["stages"] if s["in_total"]),
              None, None, None, 100.0)],
            ("stage", "work", "seconds", "s/epoch", "rate", "unit", "% of total"))
        e = r["extrapolation"]
        print(f"* instead of the teacher-run distillation; its % is of that pipeline.\n"
              f"Extrapolated to {e['budget']['num_impressions']:,} x "
              f"{e['budget']['iterations']:,} + {e['budget']['epochs']:,} + "
              f"{e['budget']['finetune_epochs']:,} epochs (an estimate from the rates above):")
        common.print_table(
            [(s["stage"] + ("" if s["in_total"] else " *"), s["work"], s["seconds"] / 3600,
              _percent(s["share"] if s["in_total"] else s["share_in_its_pipeline"]))
             for s in e["stages"]] + [("total", "", e["total_hours"], 100.0)],
            ("stage", "work", "hours", "% of total"))
    common.write_json(opts["out"], {
        "benchmark": "pipeline", "machine": machine, "code": common.code_state(),
        "settings": {"datasets": datasets, **per, "test_images": opts["test_images"],
                     "craft_batch_size": CRAFT_BATCH, "craft_processes": 1,
                     "paper_budgets": PAPER_BUDGETS, "quick": FLAGS.quick,
                     "models": "randomly initialised", "test_data": "uniform random images"},
        "results": results})
    print(f"wrote {opts['out']}")


if __name__ == "__main__":
    app.run(main)
