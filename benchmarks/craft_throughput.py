"""Crafting throughput: a plain eager TensorFlow loop vs ``Crafter`` at several parallelisms.

One image-step is one optimisation step of one image. The eager baseline crafts one
paper-sized batch (100 images) at a time, the way the loop is usually written; ``Crafter``
optimises ``parallel`` such batches at once in a compiled loop, through the teacher's
rewrite where one applies (``zskd_tf.teachers.space_to_depth`` for LeNet-5,
``zskd_tf.teachers.folded`` for AlexNet) and, for comparison at the largest parallelism,
through the Keras model itself ("crafter-keras"), once per ``--precisions`` entry
(bfloat16: the teacher computes in bf16, images and Adam stay float32).
Each setting runs in a fresh subprocess, so its peak RSS is its own. Teachers are freshly
built (weights do not change the speed). ``--processes`` adds runs of P concurrent crafting
processes with CPUs // P threads each, the way ``zskd_tf.craft_processes`` crafts, each at
the parallelism the pipeline uses for that teacher (``--process_parallel`` to override):
they start their timed steps together, and their
rate is all their image-steps over the span from the first start to the last end (peak
RSS is per process).

A peer row for LeNet-5, "pytorch eager", times the same loop written plainly in PyTorch
the way the public PyTorch ZSKD ports write it (``torch_rate``), when ``import torch``
works (PyTorch is not a dependency of this project; without it the row is skipped with a
note; ``--notorch_peer`` leaves it out).

    python -m benchmarks.craft_throughput                      # full run (long)
    python -m benchmarks.craft_throughput --quick              # smoke test
"""
import time

import numpy as np
from absl import app, flags

from benchmarks import common
from zskd_tf import craft_processes  # no TensorFlow at import

BATCH = 100  # the paper's crafting batch
TEMPERATURE = 20.0
LR = 0.01

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["lenet5", "alexnet"], "Teachers (zskd_tf.models names).")
flags.DEFINE_list("parallel", ["1", "5", "10", "20", "60"],
                  f"Batches of {BATCH} images that Crafter optimises at once.")
flags.DEFINE_list("processes", ["2"], "Concurrent crafting processes to time (1 = the runs "
                  "above).")
flags.DEFINE_integer("process_parallel", None, "Batches each of those processes crafts at "
                     "once; default: the pipeline's (craft_processes.IMAGES_AT_ONCE) for that "
                     "teacher, else the parallelism fastest alone.")
flags.DEFINE_list("precisions", ["float32", "bfloat16"], "Crafting precisions to time "
                  "(config.PRECISIONS); the eager baseline is float32.")
flags.DEFINE_integer("steps", 10, "Timed Crafter steps per setting, after a warm-up call.")
flags.DEFINE_integer("eager_steps", 10, "Timed eager-loop steps, after one warm-up step.")
flags.DEFINE_bool("torch_peer", True, "Add the PyTorch peer row for the models in "
                  "TORCH_PEERS when torch can be imported.")
flags.DEFINE_integer("torch_steps", 100, "Timed steps of the PyTorch peer loop, after one "
                     "warm-up step.")
flags.DEFINE_list("torch_threads", [], "Also time the peer loop with these thread counts "
                  "(each its own row; the peer row itself uses the CPU count).")
flags.DEFINE_float("matmul_gflops", None, "Use this matmul rate instead of measuring it.")
flags.DEFINE_float("bf16_matmul_gflops", None, "Use this bfloat16 matmul rate instead of "
                   "measuring it (measured when --precisions has bfloat16).")
flags.DEFINE_list("folded_kernels", [], "Also time Crafter with the folded teacher built with "
                  "each of these teachers.folded.KERNELS ('xla', 'tf'), a row per choice, "
                  "parallelism and precision, each right after the default row.")
QUICK = {"models": ["lenet5"], "parallel": ["1", "2"], "steps": 2, "eager_steps": 2,
         "torch_steps": 2, "processes": ["2"], "precisions": ["float32", "bfloat16"],
         "out": "benchmarks/results/craft_throughput_quick.json"}
common.define_quick_flags("craft_throughput", QUICK, also=", and a short matmul measurement")


def _targets(n, num_classes, seed):
    """Random soft targets (the speed does not depend on them)."""
    return np.random.default_rng(seed).dirichlet(np.ones(num_classes), n).astype(np.float32)


def eager_rate(model, steps, seed=0):
    """Image-steps/s of a straightforward eager loop crafting one batch of 100 images."""
    import keras
    import tensorflow as tf
    from zskd_tf import models
    keras.utils.set_random_seed(seed)
    teacher = models.get(model)
    targets = tf.constant(_targets(BATCH, teacher.output_shape[-1], seed))
    x = tf.Variable(tf.random.uniform((BATCH, *teacher.input_shape[1:])))
    optimizer = keras.optimizers.Adam(LR)

    def step():
        with tf.GradientTape() as tape:
            logits = teacher(x, training=False) / TEMPERATURE
            loss = tf.reduce_mean(
                tf.nn.softmax_cross_entropy_with_logits(labels=targets, logits=logits))
        optimizer.apply_gradients([(tape.gradient(loss, x), x)])
        lo, hi = tf.reduce_min(x), tf.reduce_max(x)
        x.assign((x - lo) / (hi - lo))

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    float(tf.reduce_sum(x))
    seconds = time.perf_counter() - start
    return _result("eager", model, 1, steps, seconds, teacher)


TORCH_PEERS = ("lenet5",)  # models with a PyTorch port here


def torch_version():
    """torch's version if ``import torch`` works, else None (torch is not a dependency)."""
    try:
        import torch
    except ImportError:
        return None
    return torch.__version__


def torch_lenet5(teacher):
    """A PyTorch LeNet-5 (NCHW) holding the weights of the Keras ``teacher``
    (``zskd_tf.models.lenet5``); its parameters are frozen: crafting needs only the
    gradient with respect to the images."""
    from torch import nn
    import torch
    net = nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84),
        nn.ReLU(), nn.Linear(84, teacher.output_shape[-1]))
    w = {layer.name: [v.numpy() for v in layer.weights] for layer in teacher.layers}
    fc5 = w["fc5"][0].reshape(5, 5, 16, 120).transpose(3, 2, 0, 1).reshape(120, 400)
    weights = [w["conv1"][0].transpose(3, 2, 0, 1), w["conv1"][1],
               w["conv3"][0].transpose(3, 2, 0, 1), w["conv3"][1], fc5, w["fc5"][1],
               w["fc6"][0].T, w["fc6"][1], w["fc7"][0].T, w["fc7"][1]]
    with torch.no_grad():
        for p, v in zip(net.parameters(), weights, strict=True):
            p.copy_(torch.from_numpy(np.ascontiguousarray(v)))
    return net.eval().requires_grad_(False)


def torch_rate(model, steps, seed=0, threads=None):
    """Image-steps/s of the crafting loop written plainly in PyTorch, as the public
    PyTorch ZSKD ports write it: eager, one batch of 100 images, Adam on the images,
    softmax cross-entropy at temperature 20 against Dirichlet targets, min-max
    renormalisation of the batch after each step, ``torch.set_num_threads`` = CPUs (or
    ``threads``; the method then names them). The
    teacher is ``torch_lenet5`` of the Keras teacher; its logits must equal the Keras
    model's to 1e-4 (relative to the largest logit, at least 1) before anything is timed.
    """
    import os

    import keras
    import torch
    from zskd_tf import models
    if model not in TORCH_PEERS:
        raise ValueError(f"no PyTorch port of {model!r}; ports: {TORCH_PEERS}")
    torch.set_num_threads(threads or os.cpu_count())
    keras.utils.set_random_seed(seed)
    teacher = models.get(model)
    net = torch_lenet5(teacher)
    probe = np.random.default_rng(seed).uniform(
        size=(BATCH, *teacher.input_shape[1:])).astype(np.float32)
    ours = teacher.predict(probe, verbose=0)
    with torch.no_grad():
        theirs = net(torch.from_numpy(probe).permute(0, 3, 1, 2).contiguous()).numpy()
    difference = float(np.abs(ours - theirs).max())
    if difference > 1e-4 * max(1.0, float(np.abs(ours).max())):
        raise AssertionError(f"PyTorch {model} logits differ from Keras by {difference}")
    targets = torch.from_numpy(_targets(BATCH, teacher.output_shape[-1], seed))
    torch.manual_seed(seed)
    c, h, w = teacher.input_shape[3], *teacher.input_shape[1:3]
    x = torch.rand(BATCH, c, h, w, requires_grad=True)
    optimizer = torch.optim.Adam([x], lr=LR)

    def step():
        optimizer.zero_grad()
        log_p = torch.log_softmax(net(x) / TEMPERATURE, dim=1)
        loss = -(targets * log_p).sum(dim=1).mean()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            lo, hi = x.min(), x.max()
            x.sub_(lo).div_(hi - lo)

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    float(x.sum())
    seconds = time.perf_counter() - start
    method = "pytorch eager" + (f" {threads} thread{'s' * (threads != 1)}" if threads else "")
    return {**_result(method, model, 1, steps, seconds, teacher),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "max_logit_difference": difference}


def crafter_rate(model, parallel, steps, seed=0, fast=True, threads=None, barrier=None,
                 precision="float32", folded_kernels=None):
    """Image-steps/s of ``Crafter`` optimising ``parallel`` batches of 100 images at once.

    A 1-iteration ``craft`` call builds the variables and traces the step loop; then
    ``steps`` steps of that compiled loop are timed (no noise drawing or final readout).
    threads: intra- and inter-op threads of this process; barrier: (directory, count):
    wait until ``count`` processes are ready before timing. folded_kernels: the folded
    teacher's ``LRN_KERNELS`` (default: the module's).
    """
    import tensorflow as tf
    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    import keras

    from zskd_tf import config, impressions, models
    from zskd_tf.teachers import folded
    if folded_kernels:
        folded.KERNELS = folded_kernels
    keras.utils.set_random_seed(seed)
    teacher = models.get(model)
    crafter = impressions.Crafter(
        teacher, config.CraftConfig(lr=LR, batch_size=BATCH, iterations=1,
                                         temperature=TEMPERATURE, precision=precision),
        fast=fast)
    targets = _targets(parallel * BATCH, teacher.output_shape[-1], seed)
    start = time.perf_counter()
    crafter.craft(targets, list(range(parallel)), seed)
    warmup = time.perf_counter() - start
    if barrier:
        _wait_for_all(*barrier)
    began, start = time.time(), time.perf_counter()
    float(crafter._step_fn(tf.constant(steps), False))  # the loop craft() runs in chunks
    seconds = time.perf_counter() - start
    method = ("crafter" if fast else "crafter-keras") + (
        "" if precision == "float32" else f" {precision}") + (
        f" kernels={folded_kernels}" if folded_kernels else "")
    return {**_result(method, model, parallel, steps, seconds, teacher),
            "precision": precision, "folded_kernels": folded.KERNELS,
            "warmup_seconds": warmup, "rewritten": crafter.fast is not None,
            "began": began, "ended": began + seconds}


def _wait_for_all(directory, count):
    import os
    import tempfile
    fd, _ = tempfile.mkstemp(prefix="ready-", dir=directory)
    os.close(fd)
    while len([f for f in os.listdir(directory) if f.startswith("ready-")]) < count:
        time.sleep(0.01)


def process_parallel(model, alone, given=None):
    """Batches each concurrent process crafts: ``given``, else the pipeline's default for
    this teacher, else the parallelism fastest in the single-process runs ``alone``."""
    if given:
        return given
    if model in craft_processes.IMAGES_AT_ONCE:
        return max(1, craft_processes.IMAGES_AT_ONCE[model] // BATCH)
    return max(alone, key=lambda r: r["image_steps_per_s"])["parallel"]


def processes_rate(model, processes, parallel, steps, precision="float32"):
    """``processes`` concurrent ``crafter_rate`` runs of CPUs // processes threads each."""
    import concurrent.futures
    import os
    import tempfile
    from zskd_tf import craft_processes
    threads = craft_processes.threads_per_process(processes)
    with tempfile.TemporaryDirectory() as barrier, \
            concurrent.futures.ThreadPoolExecutor(processes) as pool:
        runs = list(pool.map(lambda _: common.run_isolated(
            "benchmarks.craft_throughput:crafter_rate", model=model, parallel=parallel,
            steps=steps, threads=threads, barrier=[barrier, processes], precision=precision),
            range(processes)))
        assert len(os.listdir(barrier)) == processes
    seconds = max(r["ended"] for r in runs) - min(r["began"] for r in runs)
    suffix = "" if precision == "float32" else f" {precision}"
    result = _result(f"crafter x{processes} processes{suffix}", model, parallel * processes, steps,
                     seconds, None, flops=runs[0]["flops_per_image_step"])
    return {**result, "processes": processes, "threads_per_process": threads,
            "parallel": parallel, "precision": precision,
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
            "per_process_image_steps_per_s": [r["image_steps_per_s"] for r in runs]}


def _result(method, model, parallel, steps, seconds, teacher, flops=None):
    rate = parallel * BATCH * steps / seconds
    flops = flops or common.flops_per_image_step(teacher)
    return {"method": method, "model": model, "parallel": parallel,
            "images": parallel * BATCH, "steps": steps, "seconds": seconds,
            "image_steps_per_s": rate, "flops_per_image_step": flops,
            "gflops": rate * flops / 1e9, "peak_rss_mb": common.peak_rss_mb()}


def main(argv):
    del argv
    opts = common.quick_options(QUICK)
    parallel = [int(p) for p in opts["parallel"]]
    machine = common.machine_info()
    matmul = FLAGS.matmul_gflops
    size = dict(n=512, seconds=0.5) if FLAGS.quick else dict(n=2048, seconds=3.0)
    if matmul is None:
        matmul = common.run_isolated("benchmarks.common:matmul_gflops", **size)
    machine["matmul_gflops"] = matmul
    machine["matmul_gflops_given"] = FLAGS.matmul_gflops is not None
    bf16 = FLAGS.bf16_matmul_gflops
    if bf16 is None and "bfloat16" in opts["precisions"]:
        bf16 = common.run_isolated("benchmarks.common:matmul_gflops", dtype="bfloat16", **size)
    machine["bf16_matmul_gflops"] = bf16
    machine["bf16_matmul_gflops_given"] = FLAGS.bf16_matmul_gflops is not None

    torch = torch_version() if FLAGS.torch_peer else None
    notes = []
    results = []
    for model in opts["models"]:
        eager = common.run_isolated("benchmarks.craft_throughput:eager_rate",
                                    model=model, steps=opts["eager_steps"])
        runs = [eager]
        if FLAGS.torch_peer and model in TORCH_PEERS and torch:
            runs.append(common.run_isolated("benchmarks.craft_throughput:torch_rate",
                                            model=model, steps=opts["torch_steps"]))
            runs += [common.run_isolated("benchmarks.craft_throughput:torch_rate", model=model,
                                         steps=opts["torch_steps"], threads=int(t))
                     for t in FLAGS.torch_threads]
        elif FLAGS.torch_peer:
            notes.append(f"no PyTorch peer row for {model}: " + (
                "import torch failed (not a dependency of this project)" if not torch
                else f"no PyTorch port of it here (ports: {', '.join(TORCH_PEERS)})"))
        for precision in opts["precisions"]:
            alone, ways = [], []
            for p in parallel:  # each choice of kernels right after the default row
                alone.append(common.run_isolated(
                    "benchmarks.craft_throughput:crafter_rate", model=model, parallel=p,
                    steps=opts["steps"], precision=precision))
                ways += [common.run_isolated(
                    "benchmarks.craft_throughput:crafter_rate", model=model, parallel=p,
                    steps=opts["steps"], precision=precision, folded_kernels=k)
                    for k in FLAGS.folded_kernels]
            each = process_parallel(model, alone, FLAGS.process_parallel)
            runs += alone + ways + [
                processes_rate(model, int(p), each, opts["steps"], precision)
                for p in opts["processes"] if int(p) > 1]
        if any(r.get("rewritten") for r in runs):
            runs.append(common.run_isolated("benchmarks.craft_throughput:crafter_rate",
                                            model=model, parallel=max(parallel),
                                            steps=opts["steps"], fast=False))
        peer = [r for r in runs if r["method"] == "pytorch eager"]
        for r in runs:
            r["fraction_of_matmul"] = r["gflops"] / matmul
            r["fraction_of_bf16_matmul"] = bf16 and r["gflops"] / bf16
            r["speedup_over_eager"] = r["image_steps_per_s"] / eager["image_steps_per_s"]
            if peer:
                r["speedup_over_pytorch"] = r["image_steps_per_s"] / peer[0]["image_steps_per_s"]
        results += runs

    print(f"matmul: {matmul:.1f} GFLOP/s on {machine['cpu_count']} CPUs "
          f"(load average {machine['load_average_1_5_15min'][0]:.2f})"
          + (f"; bfloat16 matmul {bf16:.1f} GFLOP/s" if bf16 else ""))
    common.print_table(
        [(r["model"], r["method"], r["images"], r["image_steps_per_s"], r["gflops"],
          100 * r["fraction_of_matmul"],
          r["fraction_of_bf16_matmul"] and 100 * r["fraction_of_bf16_matmul"],
          r["peak_rss_mb"], r["speedup_over_eager"],
          r.get("speedup_over_pytorch")) for r in results],
        ("model", "method", "images", "img-steps/s", "GFLOP/s", "% matmul", "% bf16 mm",
         "RSS MB", "speed-up", "x pytorch"))
    for note in notes:
        print(note)
    for r in results:
        if r["method"] == "pytorch eager":
            best = max(q["speedup_over_pytorch"] for q in results if q["model"] == r["model"])
            print(f"{r['model']}: PyTorch {r['torch']} eager loop, {r['torch_threads']} "
                  f"threads, logits within {r['max_logit_difference']:.1e} of Keras; the "
                  f"fastest row is {best:.1f}x it")
    common.write_json(opts["out"], {
        "benchmark": "craft_throughput", "machine": machine, "code": common.code_state(),
        "settings": {"models": opts["models"], "parallel": parallel, "batch_size": BATCH,
                     "precisions": opts["precisions"], "folded_kernels": FLAGS.folded_kernels,
                     "processes": [int(p) for p in opts["processes"]],
                     "process_parallel": FLAGS.process_parallel,
                     "steps": opts["steps"], "eager_steps": opts["eager_steps"],
                     "torch_peer": FLAGS.torch_peer, "torch": torch,
                     "torch_steps": opts["torch_steps"],
                     "torch_threads": [int(t) for t in FLAGS.torch_threads],
                     "quick": FLAGS.quick},
        "notes": notes,
        "results": results})
    print(f"wrote {opts['out']}")


if __name__ == "__main__":
    app.run(main)
