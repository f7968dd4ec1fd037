"""Shared benchmark helpers: machine speed, model FLOPs, peak memory, isolated runs, output.

TensorFlow is imported lazily, so a driver that only orchestrates subprocesses stays light.
"""
import importlib.metadata
import json
import os
import platform
import resource
import subprocess
import sys
import time

from zskd_tf import craft_processes, hardware  # no TensorFlow at import

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_MARKER = "BENCHMARK_RESULT_JSON:"
_CHILD = f"""
import importlib, json, sys
module, _, name = sys.argv[1].partition(":")
result = getattr(importlib.import_module(module), name)(**json.loads(sys.argv[2]))
print({_MARKER!r} + json.dumps(result), flush=True)
"""


def matmul_gflops(n=2048, seconds=3.0, repeats=3, dtype="float32"):
    """Measured ``tf.matmul`` rate (GFLOP/s, 2*n^3 per product) in a tf.function, of
    ``dtype`` operands (float32 unless told: "bfloat16" for the CPU's bf16 rate).

    ``seconds`` is split over ``repeats`` timed rounds after a warm-up; the best round counts.
    """
    import tensorflow as tf
    a = tf.cast(tf.random.uniform((n, n)), dtype)
    b = tf.cast(tf.random.uniform((n, n)), dtype)
    product = tf.function(lambda a, b: tf.reduce_sum(tf.matmul(a, b)))
    product(a, b).numpy()
    best = 0.0
    for _ in range(repeats):
        count, start = 0, time.perf_counter()
        while True:
            product(a, b).numpy()
            count += 1
            elapsed = time.perf_counter() - start
            if elapsed >= seconds / repeats:
                break
        best = max(best, 2.0 * n ** 3 * count / elapsed / 1e9)
    return best


def _layers(model):
    import keras
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _layers(layer)
        else:
            yield layer


def forward_macs(model):
    """Multiply-adds of one image's forward pass through every Conv2D and Dense layer.

    conv: out_h*out_w*out_c*k_h*k_w*in_c; dense: in*out (rank-2 inputs). Other layers
    (pooling, LRN, BN, activations) are not counted. Needs a built functional model.
    """
    import keras
    macs = 0
    for layer in _layers(model):
        if isinstance(layer, keras.layers.Conv2D):
            k_h, k_w, in_c, _ = layer.kernel.shape
            _, out_h, out_w, out_c = layer.output.shape
            macs += out_h * out_w * out_c * k_h * k_w * in_c
        elif isinstance(layer, keras.layers.Dense):
            fan_in, fan_out = layer.kernel.shape
            macs += fan_in * fan_out
    return int(macs)


def flops_per_image_step(model):
    """FLOPs of one crafting step for one image: forward + gradient w.r.t. the input.

    FLOPs = 2 * MACs. Crafting differentiates only w.r.t. the image (no weight
    gradients are computed), and the input-gradient pass costs as much as the forward,
    so one image-step = 2 * forward FLOPs = 4 * forward_macs(model).
    """
    return 2 * 2 * forward_macs(model)


def peak_rss_mb():
    """This process's peak resident set size in MB (ru_maxrss is in KB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_isolated(target, timeout=None, **kwargs):
    """Runs ``target`` ("package.module:function") with JSON-able kwargs in a fresh
    Python process (cwd = repository root) and returns its JSON-decoded result.

    A fresh process per measurement makes each one's peak RSS its own.
    """
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    proc = subprocess.run([sys.executable, "-c", _CHILD, target, json.dumps(kwargs)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(_MARKER)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{target}({kwargs}) failed with exit code {proc.returncode}:\n"
                           f"{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len(_MARKER):])


def _package_version(*names):
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return None


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def machine_info():
    """CPU, load and software versions (read without importing TensorFlow)."""
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": craft_processes.usable_cpus(),
        "cpu_model": _cpu_model(),
        "cpu_vector_flags": hardware.vector_flags(),
        "load_average_1_5_15min": list(os.getloadavg()),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "tensorflow": _package_version("tensorflow", "tensorflow-cpu"),
        "keras": _package_version("keras"),
    }


def define_quick_flags(name, quick, also=""):
    """Defines ``--out`` (default ``benchmarks/results/NAME.json``) and ``--quick``, a smoke
    test whose help lists ``quick``: what the flags it names default to with ``--quick``
    unless given explicitly (``quick_options``); ``also``: more the help should say."""
    from absl import flags
    flags.DEFINE_string("out", f"benchmarks/results/{name}.json", "JSON output path.")
    given = " ".join(f"--{k}={','.join(v) if isinstance(v, list) else v}"
                     for k, v in quick.items())
    flags.DEFINE_bool("quick", False, "Smoke test. Flags not given explicitly default to "
                      f"{given}{also}.")


def quick_options(quick):
    """{flag: value} for the flags named in ``quick``: with ``--quick``, ``quick``'s value
    for each not given explicitly."""
    from absl import flags
    values = flags.FLAGS
    opts = {name: values[name].value for name in quick}
    if values.quick:
        opts.update({k: v for k, v in quick.items() if not values[k].present})
    return opts


def code_state():
    """The commit checked out and the tracked files changed since it (the code measured)."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True,
                              text=True).stdout.strip()
    return {"commit": git("rev-parse", "HEAD") or None,
            "uncommitted": git("diff", "--name-only", "HEAD").splitlines()}


def write_json(path, obj):
    """Writes ``obj`` as indented JSON, creating parent directories."""
    if os.path.dirname(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def _cell(v):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}" if abs(v) >= 1 else f"{v:.3f}"
    return str(v)


def print_table(rows, header):
    """Prints rows (sequences, same length as ``header``) as a right-aligned text table."""
    cells = [list(map(str, header))] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    print("\n".join(lines), flush=True)
