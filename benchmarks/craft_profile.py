r"""Per-op profile of one crafting step (AlexNet by default), in float32 and bfloat16.

Where does a crafting step's time go? Each precision runs in a fresh process that builds
``Crafter`` as ``benchmarks.craft_throughput`` does (the folded teacher, ``--images``
images at once: the pipeline's 100 for AlexNet), times ``--rate_steps`` untraced steps of
its compiled loop, then records ``--steps`` more with the TensorFlow profiler
(``tf.profiler.experimental``) and parses the trace (XSpace protobuf): every op the step's
graph ran, its time per step, grouped by the teacher's layers (the folded teacher and the
crafter name their ops: ``conv1``, ``lrn2``, ``lrn2_grad``, ``loss``, ``adam``, ``pixels``)
and by direction (forward, or the gradient with respect to the images). So the times are
those of the real step's ops, not of pieces run in isolation. The profiled process runs
one inter-op thread (``--inter_op``) so ops do not overlap and their times add up to the
step; the crafter's own rate with the default threads is measured beside it
(``craft_throughput.crafter_rate``).

Each convolution and dense layer gets its FLOPs (forward; input gradient: the same) and
its achieved GFLOP/s against the float32 and bfloat16 ``tf.matmul`` rates measured in the
same run (``common.matmul_gflops``). A third process runs two steps with
``ONEDNN_VERBOSE=1`` and records which oneDNN implementation ran each primitive (e.g.
``brg_conv_fwd:avx10_1_512_amx``: AMX tiles) and its time.

    python -m benchmarks.craft_profile [--out=benchmarks/results/craft_profile_run1.json]
    python -m benchmarks.craft_profile --quick      # smoke test

Prints the tables and writes JSON (CPU, threads, load, other processes and whether they
were stopped, so whether the machine was quiet).
"""
import collections
import os
import statistics
import time

import numpy as np
from absl import app, flags

from benchmarks import common
from zskd_tf import craft_processes  # no TensorFlow at import

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "alexnet", "Teacher (zskd_tf.models name).")
flags.DEFINE_integer("images", None, "Images crafted at once (default: the pipeline's, "
                     "craft_processes.IMAGES_AT_ONCE), in batches of min(100, images).")
flags.DEFINE_list("precisions", ["float32", "bfloat16"], "Crafting precisions to profile.")
flags.DEFINE_list("folded_kernels", [], "Profile the folded teacher with each of these "
                  "teachers.folded.KERNELS ('xla': XLA kernels for the element-wise work; "
                  "'tf': TensorFlow ops only); default: the module's.")
flags.DEFINE_integer("steps", 10, "Traced steps per precision.")
flags.DEFINE_integer("rate_steps", 20, "Untraced steps timed first, per precision.")
flags.DEFINE_integer("inter_op", 1, "Inter-op threads of the profiled process (0: "
                     "TensorFlow's default).")
flags.DEFINE_bool("onednn", True, "Also record oneDNN's implementation of each primitive "
                  "(a separate process with ONEDNN_VERBOSE=1).")
flags.DEFINE_float("matmul_gflops", None, "Use this float32 matmul rate instead of "
                   "measuring it.")
flags.DEFINE_float("bf16_matmul_gflops", None, "Use this bfloat16 matmul rate instead of "
                   "measuring it.")
QUICK = {"images": 4, "steps": 1, "rate_steps": 1,
         "out": "benchmarks/results/craft_profile_quick.json"}
common.define_quick_flags("craft_profile", QUICK, also=", and a short matmul measurement")

SCOPES = ("loss", "adam", "pixels")  # the crafter's own name scopes
_STEP = "craft_step/"  # the scope of one crafting step's ops (impressions.Crafter)


def _crafter(model, images, precision, seed=0, folded_kernels=None):
    """(Crafter, teacher) crafting ``images`` images at once, warmed up (traced)."""
    import keras

    from zskd_tf import config, impressions, models
    from zskd_tf.teachers import folded
    if folded_kernels:
        folded.KERNELS = folded_kernels
    keras.utils.set_random_seed(seed)
    teacher = models.get(model)
    batch = min(100, images)
    crafter = impressions.Crafter(teacher, config.CraftConfig(
        lr=0.01, batch_size=batch, iterations=1, temperature=20.0, precision=precision))
    targets = np.random.default_rng(seed).dirichlet(
        np.ones(teacher.output_shape[-1]), images).astype(np.float32)
    crafter.craft(targets, list(range(images // batch)), seed)
    return crafter, teacher


def layer_flops(crafter, images):
    """[{name, kind, flops, band_flops}] for the folded teacher's layers, FLOPs of one
    forward pass of ``images`` images (the input gradient costs the same); band_flops:
    LRN's window sum as the band-matrix product the folded teacher computes (not useful
    work: not counted in the step's FLOPs)."""
    rows = []
    shape = crafter.image_shape
    for kind, p in getattr(crafter.fast, "_ops", []):
        row = {"name": p.get("name", kind), "kind": kind, "flops": 0, "band_flops": 0,
               "input_shape": list(shape)}
        if kind in ("conv", "conv_lrn"):
            kh, kw, cin, cout = p["kernel"].shape
            (sh, sw), (h, w) = p["strides"], shape[:2]
            h, w = ((h - kh) // sh + 1, (w - kw) // sw + 1) if p["padding"] == "VALID" else (
                -(-h // sh), -(-w // sw))
            shape = (h, w, cout)
            row["flops"] = 2 * images * h * w * kh * kw * cin * cout
        elif kind == "dense":
            fan_in, fan_out = p["kernel"].shape
            shape = (fan_out,)
            row["flops"] = 2 * images * fan_in * fan_out
        elif kind == "lrn":
            c = shape[-1]
            row["band_flops"] = 2 * images * int(np.prod(shape)) * c
        elif kind == "maxpool":
            (kh, kw), (sh, sw) = p["size"], p["strides"]
            shape = ((shape[0] - kh) // sh + 1, (shape[1] - kw) // sw + 1, shape[2])
        elif kind == "flatten":
            shape = (int(np.prod(shape)),)
        row["output_shape"] = list(shape)
        rows.append(row)
        if kind == "conv_lrn":  # its LRN: XLA kernels around the band product
            rows.append({"name": p["lrn_name"], "kind": "lrn", "flops": 0,
                         "band_flops": 2 * images * int(np.prod(shape)) * shape[-1],
                         "input_shape": list(shape), "output_shape": list(shape)})
    return rows


def _trace_ops(logdir, steps):
    """{(node, op type): [ms per step, calls per step]} of the step loop's ops, and the
    traced span in ms, from the profiler's XSpace in ``logdir``."""
    import glob

    from tensorflow.tsl.profiler.protobuf import xplane_pb2
    (path,) = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    ops = collections.defaultdict(lambda: [0.0, 0.0])

    def add(node, kind, ps):
        node = node.replace(_STEP, "", 1)  # gradient_tape/craft_step/x -> gradient_tape/x
        ops[(node, kind)][0] += ps / 1e9 / steps
        ops[(node, kind)][1] += 1 / steps

    for plane in space.planes:
        if plane.name != "/host:CPU":
            continue
        stat_names = {k: v.name for k, v in plane.stat_metadata.items()}
        for line in plane.lines:
            started = collections.defaultdict(list)  # asynchronous ops: the XLA kernels
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if name.startswith("ExecutorState::ProcessAsync::"):
                    stats = {stat_names[s.metadata_id]: stat_names.get(s.ref_value)
                             for s in event.stats if s.ref_value}
                    node, kind = stats.get("name") or "", stats.get("kernel_type") or "async"
                    if _STEP not in node:
                        continue
                    if name.endswith("Start"):
                        started[node].append(event.offset_ps)
                    elif started[node]:  # Done: the op's span ends with it
                        begin = started[node].pop(0)
                        add(node, f"{kind} (XLA)", event.offset_ps + event.duration_ps - begin)
                elif _STEP in name and ":" in name:
                    node, _, kind = name.rpartition(":")
                    add(node, kind, event.duration_ps)
    return dict(ops)


def profile_step(model, images, precision, steps, rate_steps, inter_op=1, logdir=None,
                 folded_kernels=None):
    """Times ``rate_steps`` untraced crafting steps, then traces ``steps`` more; returns
    the rate, the traced ops ({node, type, ms, calls} per step) and the layers' FLOPs."""
    import tempfile

    import tensorflow as tf
    if inter_op:
        tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    from zskd_tf.teachers import folded
    crafter, teacher = _crafter(model, images, precision, folded_kernels=folded_kernels)
    float(crafter._step_fn(tf.constant(2), False))
    start = time.perf_counter()
    float(crafter._step_fn(tf.constant(rate_steps), False))
    seconds = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        logdir = logdir or tmp
        tf.profiler.experimental.start(logdir)
        start = time.perf_counter()
        float(crafter._step_fn(tf.constant(steps), False))
        traced = time.perf_counter() - start
        tf.profiler.experimental.stop()
        ops = _trace_ops(logdir, steps)
    return {"model": model, "images": images, "precision": precision,
            "folded_kernels": folded.KERNELS, "rewritten": crafter.fast is not None,
            "inter_op": inter_op,
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
            "rate_steps": rate_steps, "steps": steps,
            "ms_per_step": 1e3 * seconds / rate_steps,
            "image_steps_per_s": images * rate_steps / seconds,
            "traced_ms_per_step": 1e3 * traced / steps,
            "flops_per_image_step": common.flops_per_image_step(teacher),
            "layers": layer_flops(crafter, images),
            "ops": [{"node": node, "type": kind, "ms": ms, "calls": calls}
                    for (node, kind), (ms, calls) in sorted(ops.items(),
                                                            key=lambda kv: -kv[1][0])],
            "peak_rss_mb": common.peak_rss_mb()}


def onednn_primitives(model, images, precision, steps=2, folded_kernels=None):
    """oneDNN's primitives in ``steps`` crafting steps (and the loop's closing forward
    pass), run with ONEDNN_VERBOSE=1: [{kind, impl, prop, desc, calls, median_ms}]."""
    import ctypes
    import tempfile
    os.environ["ONEDNN_VERBOSE"] = "1"  # read when oneDNN first runs, after this
    libc = ctypes.CDLL(None)
    saved = os.dup(1)
    with tempfile.TemporaryFile() as out:
        os.dup2(out.fileno(), 1)  # oneDNN prints to the C stdout
        try:
            import tensorflow as tf
            crafter, _ = _crafter(model, images, precision, folded_kernels=folded_kernels)
            libc.fflush(None)
            os.write(1, b"\nPROFILED STEPS\n")
            float(crafter._step_fn(tf.constant(steps), False))
        finally:
            libc.fflush(None)
            os.dup2(saved, 1)
            os.close(saved)
        out.seek(0)
        lines = out.read().decode(errors="replace").split("\nPROFILED STEPS\n", 1)[-1]
    times = collections.defaultdict(list)
    for line in lines.splitlines():
        f = line.split(",")
        if len(f) < 11 or f[0] != "onednn_verbose" or f[2] != "exec":
            continue
        times[(f[4], f[5], f[6], f[-2])].append(float(f[-1]))
    return [{"kind": kind, "impl": impl, "prop": prop, "desc": desc, "calls": len(ms),
             "median_ms": statistics.median(ms)}
            for (kind, impl, prop, desc), ms in times.items()]


def classify(node, op_type, layer_names):
    """(group, direction, category) of one traced op. group: a teacher layer, one of
    SCOPES, "casts" (the teacher's input and output casts) or "other"; direction:
    "forward" or "gradient"; category: what kind of work it is."""
    gradient = node.startswith("gradient_tape/")
    parts = [p for p in node.split("/") if p not in ("gradient_tape", "while")]
    head = parts[0] if parts else ""
    for part in parts[::-1]:  # the innermost layer scope (LRN inside its convolution's)
        if part.endswith("_grad") and part[:-5] in layer_names:
            head, gradient = part[:-5], True
            break
        if part in layer_names:
            head = part
            break
    if head in layer_names or head in SCOPES:
        group = head
    elif head.startswith("Cast"):
        group = "casts"
    else:
        group = "other"
    if group in ("adam", "pixels"):
        category = "optimiser and pixels"
    elif "Conv2D" in op_type:
        category = "convolution"
    elif "MatMul" in op_type:
        category = "dense matmul"
    elif "Einsum" in op_type:
        category = "LRN band matmul"
    elif "MaxPool" in op_type:
        category = "pooling"
    elif op_type == "Cast":
        category = "cast"
    else:
        category = "element-wise"
    return group, "gradient" if gradient else "forward", category


CATEGORIES = ("convolution", "dense matmul", "LRN band matmul", "pooling", "element-wise",
              "cast", "optimiser and pixels")
MEMORY_BOUND = ("LRN band matmul", "pooling", "element-wise", "cast", "optimiser and pixels")


def _impl(primitives, layer, direction):
    """The oneDNN implementation that ran a conv layer's forward or backward-data."""
    if layer.get("kind") not in ("conv", "conv_lrn"):
        return None
    cin, cout, h = layer["input_shape"][2], layer["output_shape"][2], layer["input_shape"][0]
    prop = "forward" if direction == "forward" else "backward_data"
    for p in primitives or []:
        if (p["kind"] == "convolution" and p["prop"].startswith(prop)
                and f"ic{cin}oc{cout}_ih{h}" in p["desc"]):
            return p["impl"]
    return None


def summarise(profile, matmul, bf16_matmul, primitives=None):
    """Groups (layer and direction) and categories of one profile, with each conv and dense
    layer's GFLOP/s against the two matmul rates."""
    layers = {row["name"]: row for row in profile["layers"]}
    order = list(layers)
    groups = collections.OrderedDict()
    for name in order + ["loss"]:
        groups[(name, "forward")] = None
    for name in ["loss"] + order[::-1]:
        groups[(name, "gradient")] = None
    for extra in ("casts", "adam", "pixels", "other"):
        groups[(extra, "forward")] = None
        groups[(extra, "gradient")] = None
    for key in groups:
        groups[key] = {"group": key[0], "direction": key[1], "ms": 0.0,
                       **{c: 0.0 for c in CATEGORIES}}
    categories = dict.fromkeys(CATEGORIES, 0.0)
    total = 0.0
    for op in profile["ops"]:
        group, direction, category = classify(op["node"], op["type"], layers)
        row = groups[(group, direction)]
        row["ms"] += op["ms"]
        row[category] += op["ms"]
        categories[category] += op["ms"]
        total += op["ms"]
    rows = []
    for row in groups.values():
        if row["ms"] <= 0:
            continue
        layer = layers.get(row["group"], {})
        main = row["convolution"] + row["dense matmul"]
        flops = layer.get("flops", 0) if main else 0
        band = row["LRN band matmul"]
        row.update({"share": row["ms"] / total, "flops": flops or None,
                    "main_op_ms": main or None, "gflops": None,
                    "fraction_of_f32_matmul": None, "fraction_of_bf16_matmul": None,
                    "band_flops": layer.get("band_flops") or None,
                    "band_gflops": layer["band_flops"] / band / 1e6 if band else None,
                    "onednn_impl": _impl(primitives, layer, row["direction"])})
        if flops:
            gflops = flops / main / 1e6
            row.update({"gflops": gflops, "fraction_of_f32_matmul": gflops / matmul,
                        "fraction_of_bf16_matmul": gflops / bf16_matmul})
        rows.append(row)
    useful_ms = categories["convolution"] + categories["dense matmul"]
    useful_flops = 2 * sum(layer["flops"] for layer in profile["layers"])
    images = profile["images"]
    return {"groups": rows,
            "categories": {c: {"ms": ms, "share": ms / total} for c, ms in categories.items()},
            "sum_of_ops_ms": total,
            "memory_bound_share": sum(categories[c] for c in MEMORY_BOUND) / total,
            "conv_and_dense_gflops": useful_flops / useful_ms / 1e6 if useful_ms else None,
            "ceiling_image_steps_per_s": images / useful_ms * 1e3 if useful_ms else None}


def _other_processes():
    """Python processes besides this benchmark's: [{pid, state, cmd}] (state T: stopped,
    as ~/zskd-runs/quiet.sh leaves the background jobs)."""
    mine = {os.getpid(), os.getppid()}
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        if int(pid) in mine or not name.startswith("python"):
            continue
        found.append({"pid": int(pid), "state": stat[stat.rindex(")") + 2], "cmd": cmd[:160]})
    return found


def _profile(precision, images, opts, kernels, matmul, bf16):
    """One precision's profile, the crafter's rate and oneDNN's primitives, summarised."""
    profile = common.run_isolated(
        "benchmarks.craft_profile:profile_step", model=FLAGS.model, images=images,
        precision=precision, steps=opts["steps"], rate_steps=opts["rate_steps"],
        inter_op=FLAGS.inter_op, folded_kernels=kernels)
    crafter = common.run_isolated(
        "benchmarks.craft_throughput:crafter_rate", model=FLAGS.model, parallel=images // 100,
        steps=opts["rate_steps"], precision=precision,
        folded_kernels=kernels) if images % 100 == 0 else None
    primitives = common.run_isolated(
        "benchmarks.craft_profile:onednn_primitives", model=FLAGS.model, images=images,
        precision=precision, folded_kernels=kernels) if FLAGS.onednn else None
    summary = summarise(profile, matmul, bf16, primitives)
    flops = profile["flops_per_image_step"]
    rate = profile["image_steps_per_s"]
    return {
        **{k: v for k, v in profile.items() if k != "ops"},
        "fraction_of_f32_matmul": rate * flops / 1e9 / matmul,
        "fraction_of_bf16_matmul": rate * flops / 1e9 / bf16,
        "crafter_default_threads": crafter and {
            k: crafter[k] for k in ("image_steps_per_s", "steps", "seconds")},
        "summary": summary, "ops": profile["ops"], "onednn_primitives": primitives}


def main(argv):
    del argv
    opts = common.quick_options(QUICK)
    images = opts["images"] or craft_processes.IMAGES_AT_ONCE.get(FLAGS.model, 100)
    machine = common.machine_info()
    others = _other_processes()
    size = {"n": 512, "seconds": 0.5} if FLAGS.quick else {"n": 2048, "seconds": 3.0}
    matmul = FLAGS.matmul_gflops or common.run_isolated("benchmarks.common:matmul_gflops",
                                                        **size)
    bf16 = FLAGS.bf16_matmul_gflops or common.run_isolated(
        "benchmarks.common:matmul_gflops", dtype="bfloat16", **size)
    machine.update({"matmul_gflops": matmul, "bf16_matmul_gflops": bf16,
                    "matmul_gflops_given": FLAGS.matmul_gflops is not None,
                    "bf16_matmul_gflops_given": FLAGS.bf16_matmul_gflops is not None,
                    "other_python_processes": others,
                    "others_all_stopped": bool(others) and all(p["state"] == "T"
                                                               for p in others)})
    results = []
    for precision in FLAGS.precisions:
        for kernels in FLAGS.folded_kernels or [None]:
            results.append(_profile(precision, images, opts, kernels, matmul, bf16))

    print(f"matmul: float32 {matmul:.1f}, bfloat16 {bf16:.1f} GFLOP/s on "
          f"{machine['cpu_count']} CPUs ({machine['cpu_model']}; load average "
          f"{machine['load_average_1_5_15min'][0]:.2f}; other Python processes: "
          f"{len(others)}, stopped: {sum(p['state'] == 'T' for p in others)})")
    for r in results:
        s = r["summary"]
        print(f"\n{r['model']} {r['precision']}, {r['folded_kernels']} kernels, "
              f"{r['images']} images: "
              f"{r['image_steps_per_s']:,.0f} image-steps/s untraced "
              f"({r['ms_per_step']:.1f} ms/step, {r['inter_op_threads']} inter-op / "
              f"{r['intra_op_threads'] or 'default'} intra-op threads; "
              f"{100 * r['fraction_of_f32_matmul']:.1f}% of the float32, "
              f"{100 * r['fraction_of_bf16_matmul']:.1f}% of the bfloat16 matmul rate); traced "
              f"{r['traced_ms_per_step']:.1f} ms/step, its ops {s['sum_of_ops_ms']:.1f} ms")
        if r["crafter_default_threads"]:
            print(f"Crafter with the default threads: "
                  f"{r['crafter_default_threads']['image_steps_per_s']:,.0f} image-steps/s")
        common.print_table(
            [(g["group"], g["direction"], g["ms"], 100 * g["share"], g["main_op_ms"],
              g["flops"] and g["flops"] / 1e9, g["gflops"],
              g["fraction_of_f32_matmul"] and 100 * g["fraction_of_f32_matmul"],
              g["fraction_of_bf16_matmul"] and 100 * g["fraction_of_bf16_matmul"],
              g["LRN band matmul"] or None, g["pooling"] or None, g["element-wise"] or None,
              g["cast"] or None, g["onednn_impl"]) for g in s["groups"]],
            ("group", "direction", "ms", "%", "conv/mm ms", "GFLOP", "GFLOP/s", "% f32 mm",
             "% bf16 mm", "band ms", "pool ms", "eltwise ms", "cast ms", "oneDNN"))
        common.print_table(
            [(c, v["ms"], 100 * v["share"]) for c, v in s["categories"].items()],
            ("category", "ms/step", "% of ops"))
        print(f"memory-bound share (LRN band, pooling, element-wise, casts, optimiser and "
              f"pixels): {100 * s['memory_bound_share']:.1f}%; convolutions and dense "
              f"layers run at {s['conv_and_dense_gflops'] or 0:.0f} GFLOP/s together; were "
              f"they all, {s['ceiling_image_steps_per_s'] or 0:,.0f} image-steps/s")
    machine["load_average_after"] = list(os.getloadavg())
    common.write_json(opts["out"], {
        "benchmark": "craft_profile", "machine": machine, "code": common.code_state(),
        "method": "TensorFlow profiler trace of the crafter's compiled step loop "
                  "(tf.profiler.experimental, XSpace parsed), ops grouped by name scope",
        "settings": {"model": FLAGS.model, "images": images, "precisions": FLAGS.precisions,
                     "steps": opts["steps"], "rate_steps": opts["rate_steps"],
                     "inter_op": FLAGS.inter_op, "onednn": FLAGS.onednn,
                     "folded_kernels": FLAGS.folded_kernels,
                     "quick": FLAGS.quick},
        "results": results})
    print(f"wrote {opts['out']}")


if __name__ == "__main__":
    app.run(main)
