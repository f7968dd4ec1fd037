"""Crafting in several processes on one host, each with its own small thread pool.

On a small CPU, crafting at one image batch per step is limited by how well each op
spreads over the cores: two single-threaded processes crafting a shard each outran one
two-threaded process by about 20% on this project's 2-core machine
(docs/PERFORMANCE.md). TensorFlow fixes its thread pools at start-up, so the split needs
processes, not Python threads.

Each process runs ``scheduling.craft_transfer_set`` as one worker of ``(index, count)``:
worker w crafts the shards s with s % count == w, exactly as hosts sharing a directory
do, so the set, its resume and its manifest are those of a single-process run. The
teacher is passed as a saved ``.keras`` file; the processes stop if this one dies. A
worker that fails logs its traceback to stderr and leaves its exception's message for
this process, whose error quotes it (e.g. which shard, batch and step diverged).

    python -m zskd_tf.craft_processes SPEC_JSON INDEX COUNT THREADS   # one worker (internal)
"""
import os
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
from absl import flags
from absl import logging

from zskd_tf import io_utils

SPEC = "spec.json"
INPUTS = "inputs.npz"
TEACHER = "teacher.keras"
ERROR = "error-{}.txt"  # a failed worker's exception, for the parent's error message
POLL_SECONDS = 0.5
# Images each process crafts together by default, per teacher architecture: the fastest
# settings measured on a 2-core CPU (benchmarks/results/craft_throughput_run3_*.json,
# craft_processes_ab_*.json; docs/PERFORMANCE.md).
IMAGES_AT_ONCE = {"lenet5": 1000, "alexnet": 100}


class ProcessFailed(RuntimeError):
    """A crafting process ended with an error; the message quotes it."""


def default_processes():
    """Processes for crafting on this host: 1 with a GPU, else up to 2 (one per core)."""
    import tensorflow as tf
    if tf.config.list_physical_devices("GPU"):
        return 1
    return max(1, min(2, usable_cpus()))


def usable_cpus():
    """CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def threads_per_process(processes):
    """Intra-op threads each of ``processes`` crafting processes gets by default."""
    return max(1, usable_cpus() // processes)


def craft(directory, teacher, targets, config, *, seed, parallel_batches, processes,
          thresholds=None, settings=None, on_shard=None, worker=(0, 1), threads=None):
    """``scheduling.craft_transfer_set`` split over ``processes`` local processes.

    threads: intra-op threads per process (default: usable CPUs // processes).
    on_shard: called ``(shard_index, None, record)`` for each shard crafted by this call,
    as the processes finish them.
    worker: this host's (index, count) among hosts; process p is worker
    ``index * processes + p`` of ``count * processes``. Returns the manifest.
    """
    from zskd_tf import scheduling, store
    if processes < 1:
        raise ValueError(f"processes must be >= 1, got {processes}")
    manifest = store.read_manifest(directory)
    if manifest is not None and manifest.get("complete"):  # checks settings, crafts nothing
        return scheduling.craft_transfer_set(
            directory, teacher, targets, config, seed=seed, parallel_batches=parallel_batches,
            thresholds=thresholds, settings=settings, worker=worker)
    threads = threads or threads_per_process(processes)
    host, hosts = worker
    if manifest is not None:  # this host's damaged shards: warned about and deleted here,
        # so that the processes craft them as missing ones, reported as new
        redo = store.unfinished_shards(directory, manifest, [
            s for s in range(store.shard_count(manifest))
            if s % (hosts * processes) // processes == host])
        if host == 0 and any(str(s) in manifest["shards"] for s in redo):
            for s in redo:
                manifest["shards"].pop(str(s), None)
            store.write_manifest(directory, manifest)
    work = os.path.join(directory, f".processes-{host}")
    os.makedirs(work, exist_ok=True)
    try:
        io_utils.save_model(teacher, os.path.join(work, TEACHER))
    except Exception as e:
        raise ValueError("crafting in several processes passes the teacher as a .keras file, "
                         f"and saving this one failed ({e}); craft in one process") from e
    arrays = {"targets": targets.targets, "classes": targets.classes, "betas": targets.betas}
    if thresholds is not None:
        arrays["thresholds"] = np.asarray(thresholds, np.float32)
    np.savez(os.path.join(work, INPUTS), **arrays)
    io_utils.write_json(os.path.join(work, SPEC), {
        "directory": os.path.abspath(directory), "config": vars(config), "seed": int(seed),
        "parallel_batches": int(parallel_batches), "settings": settings or {},
        "teacher_sha256": store.teacher_fingerprint(teacher)})
    for p in range(processes):  # from an earlier failed run
        if os.path.exists(os.path.join(work, ERROR.format(host * processes + p))):
            os.remove(os.path.join(work, ERROR.format(host * processes + p)))
    children = [_spawn(os.path.join(work, SPEC), host * processes + p, hosts * processes,
                       threads) for p in range(processes)]
    seen = set()
    _report_new_shards(directory, seen, None)  # shards of an earlier run are not new
    try:
        while True:
            codes = [c.poll() for c in children]
            _report_new_shards(directory, seen, on_shard)
            failed = [(p, c) for p, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                p, code = failed[0]
                raise ProcessFailed(f"crafting process {p} of {processes} failed with exit "
                                    f"code {code}{_child_error(work, host * processes + p)}")
            if all(c == 0 for c in codes):
                break
            time.sleep(POLL_SECONDS)
    finally:
        for c in children:
            if c.poll() is None:
                c.terminate()
        for c in children:
            c.wait()
    _report_new_shards(directory, seen, on_shard)
    shutil.rmtree(work, ignore_errors=True)
    return store.read_manifest(directory)


def _child_error(work, index):
    """``: <the worker's exception> (...)``, as the worker recorded it, and where its log is."""
    path = os.path.join(work, ERROR.format(index))
    if not os.path.exists(path):
        return " (its log is above, on stderr)"
    with open(path) as f:
        return f": {f.read().strip()} (its log and traceback are above, on stderr)"


def _spawn(spec, index, count, threads):
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.environ.get("PYTHONPATH")
    env = {**os.environ, "PYTHONPATH": package_root + (os.pathsep + path if path else "")}
    return subprocess.Popen([sys.executable, "-m", "zskd_tf.craft_processes", spec,
                             str(index), str(count), str(threads), str(os.getpid())], env=env)


def _report_new_shards(directory, seen, on_shard):
    from zskd_tf import store
    manifest = store.read_manifest(directory)
    if manifest is None:
        return
    for i in range(store.shard_count(manifest)):
        if i not in seen:
            record = store.shard_record(directory, manifest, i)
            if record is not None:
                seen.add(i)
                if on_shard is not None:
                    on_shard(i, None, record)


def _exit_with_parent(parent_pid):
    """Ends this process when the process that started it is gone."""
    def watch():
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)
    threading.Thread(target=watch, daemon=True).start()


def _work(spec_path, index, count, threads):
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    from zskd_tf import config, models, scheduling, store, targets as targets_lib
    spec = io_utils.read_json(spec_path)
    work = os.path.dirname(spec_path)
    teacher = models.load(os.path.join(work, TEACHER))
    if store.teacher_fingerprint(teacher) != spec["teacher_sha256"]:
        raise RuntimeError(f"the teacher saved in {work} does not reload to the same weights")
    with np.load(os.path.join(work, INPUTS)) as inputs:
        targets = targets_lib.Targets(inputs["targets"], inputs["classes"], inputs["betas"])
        thresholds = inputs["thresholds"] if "thresholds" in inputs else None
    scheduling.craft_transfer_set(
        spec["directory"], teacher, targets, config.CraftConfig(**spec["config"]),
        seed=spec["seed"], parallel_batches=spec["parallel_batches"], thresholds=thresholds,
        settings=spec["settings"], worker=(index, count), poll_seconds=POLL_SECONDS)


def main(argv):
    spec_path, index, count, threads, parent = argv[1:6]
    _exit_with_parent(int(parent))
    flags.FLAGS.mark_as_parsed()  # no absl flags here; silences "logging before flag parsing"
    logging.set_verbosity(logging.INFO)
    logging.use_absl_handler()
    try:
        _work(spec_path, int(index), int(count), int(threads))
    except Exception as e:  # the traceback still goes to stderr; the parent quotes this
        io_utils.write_text(os.path.join(os.path.dirname(spec_path), ERROR.format(index)),
                            f"{type(e).__name__}: {e}")
        raise


if __name__ == "__main__":
    main(sys.argv)
