"""Student training throughput with ``Distiller``: with the teacher run on every batch,
with the teacher's soft labels given (``--stored_soft_labels``), and with augmentation.

Teacher -> student: lenet5 -> lenet5_half (32x32x1), alexnet -> alexnet_half (32x32x3),
trained on random images through ``make_dataset(..., shuffle=True, repeat=True)``; with
augmentation, ``augment_batch`` is mapped in the tf.data pipeline as ``zskd.distill_images``
does (the teacher always runs there). The three settings of a model run one after the
other in the same invocation, so their ratio is measured on one machine state. One
``fit`` runs a warm-up epoch and then ``--steps`` more steps, timed from the end of the
warm-up's last step to the end of the last one. Each setting runs in a fresh
subprocess, so its peak RSS is its own.

    python -m benchmarks.distill_throughput                    # full run
    python -m benchmarks.distill_throughput --quick            # smoke test
"""
import math
import time

from absl import app, flags

from benchmarks import common

STUDENTS = {"lenet5": "lenet5_half", "alexnet": "alexnet_half"}
TEMPERATURE = 20.0
LR = 1e-3

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["lenet5", "alexnet"], f"Teachers, one of {sorted(STUDENTS)}.")
flags.DEFINE_integer("num_images", 10240, "Random training images (one epoch).")
flags.DEFINE_integer("batch_size", 512, "Training batch size.")
flags.DEFINE_integer("steps", 20, "Timed training steps per setting, after a warm-up epoch.")
# (augment, soft labels given): the teacher always runs on augmented images
SETTINGS = ((False, False), (False, True), (True, False))
QUICK = {"models": ["lenet5"], "num_images": 1024, "steps": 2,
         "out": "benchmarks/results/distill_throughput_quick.json"}
common.define_quick_flags("distill_throughput", QUICK)


def distill_rate(teacher, augment, num_images, batch_size, steps, seed=0, soft_labels=False,
                 precision="float32"):
    """Training images/s of a Distiller (student = STUDENTS[teacher]) on random images;
    ``soft_labels``: from given teacher soft labels, the teacher not run; ``precision``:
    the student's (a ``student_precision``; the teacher is float32)."""
    import keras
    import numpy as np
    import tensorflow as tf
    from zskd_tf import augment as augment_lib
    from zskd_tf import data, distill, models
    keras.utils.set_random_seed(seed)
    t, s = models.get(teacher), models.get(STUDENTS[teacher], dtype=precision)
    x = np.random.default_rng(seed).uniform(
        size=(num_images, *t.input_shape[1:])).astype(np.float32)
    soft = None
    if soft_labels:
        soft = tf.nn.softmax(t.predict(x, batch_size=1024, verbose=0) / TEMPERATURE).numpy()
    ds = data.make_dataset(x, soft, batch_size=batch_size, shuffle=True, seed=seed,
                           repeat=True)
    if augment:
        ds = ds.enumerate().map(
            lambda i, b: augment_lib.augment_batch(
                b, tf.stack([tf.constant(seed, tf.int64), i]), prob=0.5),
            num_parallel_calls=tf.data.AUTOTUNE)
    distiller = distill.compile_distiller(
        distill.Distiller(s, t, temperature=TEMPERATURE, soft_labels=soft_labels), LR)
    warm = math.ceil(num_images / batch_size)
    ends = []  # perf_counter at the end of every step
    timer = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: ends.append(time.perf_counter()))
    start = time.perf_counter()
    distiller.fit(ds, epochs=1, steps_per_epoch=warm + steps, verbose=0, callbacks=[timer])
    warmup, seconds = ends[warm - 1] - start, ends[-1] - ends[warm - 1]
    return {"teacher": teacher, "student": STUDENTS[teacher], "augment": bool(augment),
            "soft_labels": "given" if soft_labels else "teacher run per batch",
            "precision": precision,
            "batch_size": batch_size, "steps": steps, "seconds": seconds,
            "warmup_epoch_seconds": warmup, "images_per_s": steps * batch_size / seconds,
            "step_ms": 1000 * seconds / steps, "peak_rss_mb": common.peak_rss_mb()}


def main(argv):
    del argv
    opts = common.quick_options(QUICK)
    unknown = set(opts["models"]) - set(STUDENTS)
    if unknown:
        raise app.UsageError(f"unknown teachers {sorted(unknown)}; choose from {sorted(STUDENTS)}")
    results = [common.run_isolated("benchmarks.distill_throughput:distill_rate",
                                   teacher=m, augment=a, soft_labels=s,
                                   num_images=opts["num_images"],
                                   batch_size=FLAGS.batch_size, steps=opts["steps"])
               for m in opts["models"] for a, s in SETTINGS]
    for r in results:
        same = [q for q in results if q["teacher"] == r["teacher"] and not q["augment"]
                and q["soft_labels"] != "given"]
        r["speedup_over_teacher_run"] = r["images_per_s"] / same[0]["images_per_s"]
    common.print_table(
        [(f"{r['teacher']} -> {r['student']}", "yes" if r["augment"] else "no",
          r["soft_labels"], r["images_per_s"], r["speedup_over_teacher_run"], r["step_ms"],
          r["peak_rss_mb"]) for r in results],
        ("teacher -> student", "augment", "soft labels", "images/s", "x", "step ms",
         "RSS MB"))
    common.write_json(opts["out"], {
        "benchmark": "distill_throughput", "machine": common.machine_info(),
        "settings": {"models": opts["models"], "num_images": opts["num_images"],
                     "batch_size": FLAGS.batch_size, "steps": opts["steps"],
                     "augment_prob": 0.5, "temperature": TEMPERATURE, "quick": FLAGS.quick},
        "results": results})
    print(f"wrote {opts['out']}")


if __name__ == "__main__":
    app.run(main)
