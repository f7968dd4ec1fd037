"""Student training in float32 against Keras mixed_bfloat16 (``--student_precision``):
speed and accuracy side by side in one run.

Speed: for each teacher -> student (lenet5 -> lenet5_half on 32x32x1 images, alexnet ->
alexnet_half on 32x32x3), ``distill_throughput.distill_rate`` on random models and
images: a warm-up epoch, then ``--steps`` timed steps of ``--batch_size``, with the
float32 teacher run on every batch (the default) and with its soft labels given
(``--stored_soft_labels``: the student's own step alone). Each measurement runs in a
fresh subprocess; the two precisions are interleaved over ``--rounds`` rounds (float32
first in even rounds, bfloat16 first in odd ones), because a shared CPU's speed drifts.
The speed-up per round is bf16 / float32 of that round's pair.

Accuracy: MNIST: the committed teacher (``pretrained/mnist_lenet5_wd.keras``) crafts
``--mnist_impressions`` Data Impressions with ``--mnist_iterations`` steps each (the
default preset's recipe otherwise); CIFAR-10: the committed stand-in teacher
(``pretrained/cifar10_alexnet.keras``) teaches on ``--cifar10_impressions`` real CIFAR-10
training images (class-balanced, seeded; their labels unused; the default), a stand-in
transfer set, because impressions crafted at a budget of minutes teach AlexNet-Half
nothing (run 1: chance) while the question here is only whether bf16 arithmetic changes
what a student learns; or, with ``--cifar10_transfer=impressions``, on that many
impressions crafted with ``--cifar10_iterations`` steps in bfloat16
(``--cifar10_craft_precision``, to save time; both precisions of the student learn from
the same set). Then for each seed in ``--seeds`` and each precision a fresh student (the
same initial weights and batches for both precisions of a seed: only the arithmetic
differs) is distilled with
``zskd.distill_images`` (teacher run per batch, no augmentation) and its final-epoch
accuracy on the real test set is reported, with the training rate of its epochs after
the first (the whole loop: data pipeline, teacher, student). Each student trains in a
fresh subprocess; the precisions alternate as in the speed part.

    python -m benchmarks.student_precision --data_dir=~/zskd-data        # full run
    python -m benchmarks.student_precision --parts=speed                 # speed only
    python -m benchmarks.student_precision --quick                       # smoke test
"""
import os
import statistics
import tempfile
import time

from absl import app, flags

from benchmarks import common

PRECISIONS = ("float32", "mixed_bfloat16")
DATASETS = {"mnist": ("lenet5", "lenet5_half", "pretrained/mnist_lenet5_wd.keras"),
            "cifar10": ("alexnet", "alexnet_half", "pretrained/cifar10_alexnet.keras")}

FLAGS = flags.FLAGS
flags.DEFINE_list("parts", ["speed", "accuracy"], "What to run: speed, accuracy.")
flags.DEFINE_list("models", ["lenet5", "alexnet"], "Teachers of the speed part.")
flags.DEFINE_integer("rounds", 3, "Interleaved speed rounds (each: both precisions).")
flags.DEFINE_list("steps", ["40", "10"], "Timed steps per speed measurement, one per "
                  "model of --models.")
flags.DEFINE_integer("num_images", 2048, "Random images of the speed part (its warm-up "
                     "epoch is num_images / batch_size steps).")
flags.DEFINE_integer("batch_size", 512, "Batch size of the speed part.")
flags.DEFINE_list("datasets", ["mnist", "cifar10"], "Data sets of the accuracy part.")
flags.DEFINE_list("seeds", ["0", "1"], "Seeds of the accuracy part.")
flags.DEFINE_integer("mnist_impressions", 4000, "MNIST impressions crafted.")
flags.DEFINE_integer("mnist_iterations", 300, "Crafting steps per MNIST impression.")
flags.DEFINE_integer("mnist_epochs", 100, "LeNet-5-Half distillation epochs.")
flags.DEFINE_integer("mnist_batch_size", 512, "LeNet-5-Half batch size (the paper's).")
flags.DEFINE_enum("cifar10_transfer", "train_images", ["impressions", "train_images"],
                  "CIFAR-10's transfer set: crafted impressions, or real training images "
                  "(a stand-in; the module's docstring).")
flags.DEFINE_integer("cifar10_impressions", 2000, "CIFAR-10 training images taken (or "
                     "impressions crafted).")
flags.DEFINE_float("cifar10_lr", 0.01, "AlexNet-Half learning rate (the appendix's 0.001 "
                   "learns too slowly for this budget).")
flags.DEFINE_integer("cifar10_iterations", 100, "Crafting steps per CIFAR-10 impression.")
flags.DEFINE_integer("cifar10_epochs", 15, "AlexNet-Half distillation epochs.")
flags.DEFINE_integer("cifar10_batch_size", 100, "AlexNet-Half batch size (the paper's "
                     "512 would be one step per epoch on so few impressions).")
flags.DEFINE_enum("cifar10_craft_precision", "bfloat16", ["float32", "bfloat16"],
                  "The CIFAR-10 teacher's arithmetic while crafting.")
flags.DEFINE_string("data_dir", None, "Folder with mnist.npz and cifar-10-batches-py/ "
                    "(default: $ZSKD_DATA_DIR, else keras.datasets).")
flags.DEFINE_string("note", "", "Free text recorded in the JSON (e.g. what else ran).")
QUICK = {"models": ["lenet5"], "rounds": 1, "steps": ["2"], "num_images": 512,
         "datasets": ["mnist"], "seeds": ["0"], "mnist_impressions": 100,
         "mnist_iterations": 3, "mnist_epochs": 2,
         "out": "benchmarks/results/student_precision_quick.json"}
common.define_quick_flags("student_precision", QUICK)


def _order(round_index):
    return PRECISIONS if round_index % 2 == 0 else PRECISIONS[::-1]


def speed(models, rounds, steps, num_images, batch_size):
    """Interleaved float32 / bf16 training-rate measurements; (rows, summary per model)."""
    rows = []
    for r in range(rounds):
        for model, n in zip(models, steps):
            for soft in (False, True):
                for precision in _order(r):
                    row = common.run_isolated(
                        "benchmarks.distill_throughput:distill_rate", teacher=model,
                        augment=False, soft_labels=soft, precision=precision,
                        num_images=num_images, batch_size=batch_size, steps=n)
                    row["round"] = r
                    rows.append(row)
                    print(f"round {r} {model} {row['soft_labels']:>21} {precision:>14}: "
                          f"{row['images_per_s']:9,.0f} images/s", flush=True)
    summary = []
    for model in models:
        for soft in ("teacher run per batch", "given"):
            mine = [q for q in rows if q["teacher"] == model and q["soft_labels"] == soft]
            rate = {p: [q["images_per_s"] for q in mine if q["precision"] == p]
                    for p in PRECISIONS}
            ratios = [b / a for a, b in zip(rate["float32"], rate["mixed_bfloat16"])]
            summary.append({
                "teacher": model, "student": mine[0]["student"], "soft_labels": soft,
                "float32_images_per_s": rate["float32"],
                "bf16_images_per_s": rate["mixed_bfloat16"],
                "float32_mean": statistics.mean(rate["float32"]),
                "bf16_mean": statistics.mean(rate["mixed_bfloat16"]),
                "speedup_per_round": ratios, "speedup_mean": statistics.mean(ratios),
                "speedup_min": min(ratios), "speedup_max": max(ratios)})
    return rows, summary


def craft_set(dataset, teacher_path, workdir, impressions, iterations, craft_precision):
    """Crafts the accuracy part's transfer set into ``workdir``; returns its record."""
    from zskd_tf import config as config_lib
    from zskd_tf import models, zskd
    config = config_lib.Config(dataset=dataset, num_impressions=impressions,
                               craft_iterations=iterations, craft_precision=craft_precision)
    teacher = models.load(teacher_path)
    os.makedirs(workdir, exist_ok=True)
    start = time.perf_counter()
    _, stats = zskd.craft(teacher, workdir, config)
    config = config.resolved()
    return {"dataset": dataset, "teacher": teacher_path, "impressions": impressions,
            "iterations": iterations, "craft_precision": craft_precision,
            "craft_lr": config.craft_lr, "craft_batch_size": config.craft_batch_size,
            "init": config.init, "pixel": config.pixel, "image_l2": config.image_l2,
            "processes": stats["processes"], "seconds": time.perf_counter() - start}


def real_set(dataset, path, size, data_dir, seed=0):
    """Saves ``size`` class-balanced training images of ``dataset`` (drawn with ``seed``)
    to ``path`` (.npy): a stand-in transfer set; returns its record."""
    import numpy as np

    from experiments import common as experiments_common
    from zskd_tf import data as data_lib
    data = data_lib.load(dataset, data_dir)
    take = experiments_common.balanced_subset(data.y_train, size, seed)
    np.save(path, data.x_train[take])
    return {"dataset": dataset, "transfer": "train_images", "images": size,
            "class_counts": np.bincount(data.y_train[take], minlength=10).tolist(),
            "seed": seed}


def train_student(dataset, teacher_path, set_dir, workdir, precision, seed, epochs,
                  batch_size, data_dir, lr=None):
    """Distils a fresh student of ``dataset`` in ``precision`` on the crafted set in
    ``set_dir`` (or the images of an .npy file); returns its final-epoch test accuracy
    and training rates."""
    import numpy as np

    from zskd_tf import config as config_lib
    from zskd_tf import data as data_lib
    from zskd_tf import distill, models, seeding, store, training, zskd
    x = np.load(set_dir) if set_dir.endswith(".npy") else \
        store.load(set_dir, keys=("images",))["images"]
    config = config_lib.Config(
        dataset=dataset, num_impressions=len(x), student_epochs=epochs, student_lr=lr,
        batch_size=batch_size, augment=False, eval_every=0, seed=seed,
        student_precision=precision).validate().resolved()
    teacher = models.load(teacher_path)
    os.makedirs(workdir, exist_ok=True)
    seeding.seed_stage(seed, "student-init")  # as the ZSKD binaries do
    student = models.get(DATASETS[dataset][1], input_shape=x.shape[1:], dtype=precision)
    start = time.perf_counter()
    summary = zskd.distill_images(teacher, student, x, workdir, config)
    seconds = time.perf_counter() - start
    history = training.read_history(training.stage_paths(workdir, "student")["csv"])
    steady = history["epoch_seconds"][1:] or history["epoch_seconds"]
    images = -(-len(x) // batch_size) * batch_size  # an epoch's full batches
    data = data_lib.load(dataset, data_dir)
    result = distill.evaluate(student, data.x_test, data.y_test)
    return {"dataset": dataset, "student": DATASETS[dataset][1], "precision": precision,
            "seed": seed, "epochs": epochs, "lr": config.student_lr,
            "batch_size": batch_size, "impressions": len(x),
            "test_accuracy": result["test_accuracy"], "test_loss": result["test_loss"],
            "final_kd_loss": summary["final_logs"].get("kd_loss"),
            "seconds": seconds, "first_epoch_seconds": history["epoch_seconds"][0],
            "steady_epoch_seconds": statistics.median(steady),
            "images_per_s": images / statistics.median(steady),
            "variables": sorted({v.dtype for v in student.weights}),
            "student_precision_of_model": models.precision(student)}


def accuracy(datasets, seeds, budget, data_dir):
    """Crafts each data set's set once, then trains every seed x precision; (sets, rows,
    summary)."""
    sets, rows, summary = [], [], []
    with tempfile.TemporaryDirectory(prefix="student_precision-") as root:
        for dataset in datasets:
            teacher_path = os.path.join(common.REPO, DATASETS[dataset][2])
            if not os.path.exists(teacher_path):
                print(f"{dataset}: no teacher at {teacher_path}; skipped", flush=True)
                continue
            b = budget[dataset]
            if b.get("transfer") == "train_images":
                images = os.path.join(root, f"{dataset}_train_images.npy")
                record = common.run_isolated(
                    "benchmarks.student_precision:real_set", dataset=dataset, path=images,
                    size=b["impressions"], data_dir=data_dir)
                print(f"{dataset}: {b['impressions']} training images as the transfer set",
                      flush=True)
            else:
                record = common.run_isolated(
                    "benchmarks.student_precision:craft_set", dataset=dataset,
                    teacher_path=teacher_path, workdir=os.path.join(root, dataset),
                    impressions=b["impressions"], iterations=b["iterations"],
                    craft_precision=b["craft_precision"])
                images = os.path.join(root, dataset, "transfer_set")
                print(f"{dataset}: crafted {record['impressions']} x "
                      f"{record['iterations']} in {record['seconds']:.0f} s", flush=True)
            record["teacher"] = DATASETS[dataset][2]
            sets.append(record)
            mine = []
            for i, seed in enumerate(seeds):
                for precision in _order(i):
                    row = common.run_isolated(
                        "benchmarks.student_precision:train_student", dataset=dataset,
                        teacher_path=teacher_path, set_dir=images,
                        workdir=os.path.join(root, f"{dataset}_{precision}_{seed}"),
                        precision=precision, seed=seed, epochs=b["epochs"],
                        batch_size=b["batch_size"], data_dir=data_dir, lr=b.get("lr"))
                    mine.append(row)
                    print(f"{dataset} seed {seed} {precision:>14}: test "
                          f"{row['test_accuracy']:.2f}%, {row['images_per_s']:,.0f} "
                          f"images/s, {row['seconds']:.0f} s", flush=True)
            rows += mine
            acc = {p: [q["test_accuracy"] for q in mine if q["precision"] == p]
                   for p in PRECISIONS}
            rate = {p: [q["images_per_s"] for q in mine if q["precision"] == p]
                    for p in PRECISIONS}
            summary.append({
                "dataset": dataset, "student": DATASETS[dataset][1], "seeds": seeds,
                "float32_test_accuracy": acc["float32"],
                "bf16_test_accuracy": acc["mixed_bfloat16"],
                "float32_mean": statistics.mean(acc["float32"]),
                "bf16_mean": statistics.mean(acc["mixed_bfloat16"]),
                "bf16_minus_float32_per_seed": [
                    b - a for a, b in zip(acc["float32"], acc["mixed_bfloat16"])],
                "training_speedup_per_seed": [
                    b / a for a, b in zip(rate["float32"], rate["mixed_bfloat16"])]})
    return sets, rows, summary


def main(argv):
    del argv
    opts = common.quick_options(QUICK)
    unknown = set(opts["models"]) - {v[0] for v in DATASETS.values()}
    unknown |= set(opts["datasets"]) - set(DATASETS)
    if unknown or len(opts["steps"]) != len(opts["models"]):
        raise app.UsageError(f"unknown models or data sets {sorted(unknown)}, or --steps "
                             "not one per model")
    data_dir = os.path.expanduser(FLAGS.data_dir) if FLAGS.data_dir else None
    start = time.perf_counter()
    machine = common.machine_info()
    machine["matmul_gflops_float32"] = common.run_isolated("benchmarks.common:matmul_gflops")
    out = {"benchmark": "student_precision", "machine": machine, "code": common.code_state(),
           "note": FLAGS.note, "settings": {
               "parts": FLAGS.parts, "quick": FLAGS.quick, "models": opts["models"],
               "rounds": opts["rounds"], "steps": [int(s) for s in opts["steps"]],
               "num_images": opts["num_images"], "batch_size": FLAGS.batch_size}}
    if "speed" in FLAGS.parts:
        rows, summary = speed(opts["models"], opts["rounds"],
                              [int(s) for s in opts["steps"]], opts["num_images"],
                              FLAGS.batch_size)
        out["speed"] = rows
        out["speed_summary"] = summary
        common.print_table(
            [(f"{s['teacher']} -> {s['student']}", s["soft_labels"], s["float32_mean"],
              s["bf16_mean"], s["speedup_mean"],
              f"{s['speedup_min']:.2f}-{s['speedup_max']:.2f}") for s in summary],
            ("teacher -> student", "soft labels", "float32 images/s", "bf16 images/s",
             "x (mean)", "x range"))
    if "accuracy" in FLAGS.parts:
        budget = {
            "mnist": {"impressions": opts["mnist_impressions"],
                      "iterations": opts["mnist_iterations"], "craft_precision": "float32",
                      "epochs": opts["mnist_epochs"], "batch_size": FLAGS.mnist_batch_size},
            "cifar10": {"transfer": FLAGS.cifar10_transfer,
                        "impressions": FLAGS.cifar10_impressions, "lr": FLAGS.cifar10_lr,
                        "iterations": FLAGS.cifar10_iterations,
                        "craft_precision": FLAGS.cifar10_craft_precision,
                        "epochs": FLAGS.cifar10_epochs,
                        "batch_size": FLAGS.cifar10_batch_size}}
        seeds = [int(s) for s in opts["seeds"]]
        sets, rows, summary = accuracy(opts["datasets"], seeds,
                                       {d: budget[d] for d in opts["datasets"]}, data_dir)
        out["settings"].update(datasets=opts["datasets"], seeds=seeds,
                               budget={d: budget[d] for d in opts["datasets"]})
        out["transfer_sets"], out["accuracy"], out["accuracy_summary"] = sets, rows, summary
        common.print_table(
            [(s["student"], " / ".join(f"{v:.2f}" for v in s["float32_test_accuracy"]),
              " / ".join(f"{v:.2f}" for v in s["bf16_test_accuracy"]), s["float32_mean"],
              s["bf16_mean"],
              " / ".join(f"{v:.2f}" for v in s["training_speedup_per_seed"]))
             for s in summary],
            ("student", "float32 test % per seed", "bf16 test % per seed", "float32 mean",
             "bf16 mean", "training x per seed"))
    out["seconds"] = time.perf_counter() - start
    out["machine"]["load_average_at_end"] = list(os.getloadavg())
    common.write_json(opts["out"], out)
    print(f"{out['seconds']:.0f} s; wrote {opts['out']}")


if __name__ == "__main__":
    app.run(main)
