r"""A plain graph-mode LeNet-5 crafting loop (raw TF ops), by chunk size and thread setting.

    python -m benchmarks.graph_loop [--chunks=500,2000,6000,20000] [--threads=2:1,1:1,2:2]

The reference point for docs/PERFORMANCE.md: no Keras, no Adam, no renormalisation, only
forward, input gradient and an SGD step. Each thread setting runs in its own process
(TF fixes its thread pools at start-up).
"""
import json
import subprocess
import sys
import time

from absl import app
from absl import flags

flags.DEFINE_list("chunks", ["500", "2000", "6000", "20000"], "Images crafted at once.")
flags.DEFINE_list("threads", ["2:1", "1:1", "2:2"], "intra:inter op thread settings.")
flags.DEFINE_float("seconds", 10.0, "Timed seconds per chunk size (after a warm-up).")
flags.DEFINE_string("out", "benchmarks/results/graph_loop.json", "JSON output.")
FLAGS = flags.FLAGS


def measure(intra, inter, chunks, seconds):
    import numpy as np
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(intra)
    tf.config.threading.set_inter_op_parallelism_threads(inter)
    rng = np.random.default_rng(0)
    shapes = [(5, 5, 1, 6), (6,), (5, 5, 6, 16), (16,), (400, 120), (120,), (120, 84), (84,),
              (84, 10), (10,)]
    w = [tf.constant(rng.normal(0, 0.1, s).astype(np.float32)) for s in shapes]

    def lenet(x):
        h = tf.nn.max_pool2d(tf.nn.relu(tf.nn.conv2d(x, w[0], 1, "VALID") + w[1]), 2, 2, "VALID")
        h = tf.nn.max_pool2d(tf.nn.relu(tf.nn.conv2d(h, w[2], 1, "VALID") + w[3]), 2, 2, "VALID")
        h = tf.nn.relu(tf.reshape(h, (-1, 400)) @ w[4] + w[5])
        return tf.nn.relu(h @ w[6] + w[7]) @ w[8] + w[9]

    out = {}
    for n in chunks:
        x = tf.Variable(tf.random.uniform((n, 32, 32, 1)))
        y = tf.constant(rng.dirichlet(np.ones(10), n).astype(np.float32))

        @tf.function
        def steps(k):
            for _ in tf.range(k):
                with tf.GradientTape(watch_accessed_variables=False) as tape:
                    tape.watch(x)
                    loss = tf.reduce_sum(
                        tf.nn.softmax_cross_entropy_with_logits(y, lenet(x) / 20.0))
                x.assign_sub(0.01 * tape.gradient(loss, x))
            return loss

        steps(tf.constant(2))
        start = time.perf_counter()
        steps(tf.constant(2))
        per_step = (time.perf_counter() - start) / 2
        k = max(2, int(seconds / per_step))
        start = time.perf_counter()
        steps(tf.constant(k))
        out[n] = n * k / (time.perf_counter() - start)
    return out


def main(argv):
    del argv
    rows = []
    for setting in FLAGS.threads:
        intra, inter = (int(v) for v in setting.split(":"))
        code = ("import json, sys; from benchmarks.graph_loop import measure; "
                f"print(json.dumps(measure({intra}, {inter}, {[int(c) for c in FLAGS.chunks]}, "
                f"{FLAGS.seconds})))")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              check=True)
        rates = json.loads(proc.stdout.strip().splitlines()[-1])
        for n, rate in rates.items():
            rows.append((setting, int(n), rate))
            print(f"threads {setting:5s} chunk {int(n):6d}: {rate:9.0f} image-steps/s", flush=True)
    from benchmarks import common
    common.write_json(FLAGS.out, {
        "machine": common.machine_info(), "seconds": FLAGS.seconds,
        "rows": [{"threads": t, "chunk": n, "image_steps_per_second": r} for t, n, r in rows]})


if __name__ == "__main__":
    app.run(main)
