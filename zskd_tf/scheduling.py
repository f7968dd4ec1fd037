"""Who crafts which shard of a transfer set, and where: devices, processes, hosts.

A transfer set (``zskd_tf.store``) is a list of shards that need no communication
between them: each is crafted whole, with its own copy of the teacher, and does not depend
on where or beside what it was crafted. So every split gives the same set:

- ``devices``: one thread per device of this process, one shard each at a time
  (a ``tf.distribute`` strategy's local replicas);
- ``worker=(index, count)``: several processes or hosts share one directory; worker i
  crafts the shards s with s % count == i, and worker 0 keeps the manifest;
- ``craft`` picks between those and ``zskd_tf.craft_processes`` (several processes on
  one CPU host) from a strategy and a process count.
"""
import concurrent.futures
import hashlib
import threading
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from zskd_tf import craft_processes
from zskd_tf import distribute
from zskd_tf import impressions
from zskd_tf import store


def craft(directory, teacher, targets, config, *, seed, parallel_batches, processes=1,
          strategy=None, thresholds=None, settings=None, on_shard=None):
    """Crafts (or finishes) the transfer set in ``directory`` on whatever this host has:
    the strategy's local devices if it has several, else ``processes`` processes (one:
    this one). Under ``TF_CONFIG`` this host crafts its share of the shards. Returns
    (manifest, processes used)."""
    kwargs = dict(seed=seed, parallel_batches=parallel_batches, thresholds=thresholds,
                  settings=settings, on_shard=on_shard, worker=distribute.worker())
    devices = distribute.crafting_devices(strategy) if strategy else None
    if devices:
        if processes > 1:
            logging.info("crafting on the strategy's %d devices in this process",
                         len(devices))
        return craft_transfer_set(directory, teacher, targets, config, devices=devices,
                                  **kwargs), 1
    if processes > 1:
        return craft_processes.craft(directory, teacher, targets, config,
                                     processes=processes, **kwargs), processes
    return craft_transfer_set(directory, teacher, targets, config, **kwargs), 1


def craft_transfer_set(directory, teacher, targets, config, *, seed, parallel_batches=10,
                       thresholds=None, settings=None, on_shard=None, devices=None,
                       worker=(0, 1), poll_seconds=10.0):
    """Crafts (or finishes crafting) the transfer set for ``targets`` into ``directory``.

    targets: a ``targets.Targets``; config: a ``config.CraftConfig``;
    parallel_batches: crafting batches optimised together (one shard each round);
    thresholds: per-impression stopping confidences (Class Impressions);
    settings: extra JSON-able settings recorded in, and checked against, the manifest;
    on_shard: optional callback ``(shard_index, Crafted, record)`` after each new shard;
    devices: devices to craft on at once, one shard each (default: TensorFlow's choice);
    worker: (index, count) when several processes share ``directory`` (one per host):
    worker i crafts the shards s with s % count == i; worker 0 writes the manifest.
    Returns the manifest.
    """
    b = config.batch_size
    n = len(targets)
    if n % b:
        raise ValueError(f"{n} impressions is not a multiple of the crafting batch size {b}")
    index, count = worker
    recorded = {
        "num_impressions": n, "num_classes": int(targets.targets.shape[1]),
        "image_shape": list(teacher.input_shape[1:]), "seed": int(seed),
        "teacher_sha256": store.teacher_fingerprint(teacher),
        "craft": dict(vars(config)),
        "targets_sha256": hashlib.sha256(targets.targets.tobytes()).hexdigest(),
        **(settings or {}),
    }
    manifest = store.read_manifest(directory)
    if manifest is None and index == 0:
        manifest = store.create(directory, recorded, int(parallel_batches) * b, targets)
    while manifest is None:  # another worker creates it
        time.sleep(poll_seconds)
        manifest = store.read_manifest(directory)
    store.check_settings(manifest, recorded, directory)
    if manifest["shard_size"] != parallel_batches * b:
        logging.info("using the manifest's shard size %d (%d batches) rather than %d batches",
                     manifest["shard_size"], manifest["shard_size"] // b, parallel_batches)
    num_shards = store.shard_count(manifest)
    # missing, and finished but damaged or swapped (those are deleted, with a warning)
    todo = store.unfinished_shards(directory, manifest, range(index, num_shards, count))
    if index == 0 and todo and (manifest.get("complete") or
                                any(str(i) in manifest["shards"] for i in todo)):
        for i in todo:
            manifest["shards"].pop(str(i), None)
        manifest["complete"] = False
        store.write_manifest(directory, manifest)
    written = {}  # shard -> the SHA-256 this worker recorded for it
    lock = threading.Lock()

    def craft_shard(i, crafter):
        lo, hi = store.shard_range(manifest, i)
        started, start = time.time(), time.perf_counter()
        try:
            crafted = crafter.craft(
                targets.targets[lo:hi], range(lo // b, hi // b), seed,
                thresholds=None if thresholds is None else thresholds[lo:hi],
                log_prefix=f"shard {i + 1}/{num_shards}: ")
        except impressions.CraftingDiverged as e:  # nothing of this shard is written
            raise impressions.CraftingDiverged(
                f"shard {i + 1}/{num_shards} (impressions {lo}-{hi - 1}, not written): {e}. "
                f"Shards finished before it stay in {directory}; other settings need "
                "another workdir or --restart_from=crafting",
                batch=e.batch, step=e.step, shard=i) from e
        seconds = time.perf_counter() - start
        record = store.write_shard(directory, i, {
            "images": crafted.images, "targets": targets.targets[lo:hi],
            "soft_labels": crafted.soft_labels, "classes": targets.classes[lo:hi],
            "betas": targets.betas[lo:hi], "loss": crafted.loss, "steps": crafted.steps,
            "index": np.arange(lo, hi)}, {
            "count": hi - lo, "seconds": seconds, "started": started,
            "finished": started + seconds, "mean_loss": float(crafted.loss.mean()),
            "image_steps_per_second": float(crafted.steps.sum() / seconds)})
        with lock:
            written[i] = record["sha256"]
            if index == 0:
                manifest["shards"][str(i)] = record
                store.write_manifest(directory, manifest)
            logging.info("shard %d/%d written: %d impressions, mean loss %.4f, %.0fs",
                         i + 1, num_shards, hi - lo, record["mean_loss"], seconds)
            if on_shard is not None:
                on_shard(i, crafted, record)

    crafters = [impressions.Crafter(_teacher_on(teacher, d), config, device=d)
                for d in (devices or [None])]
    if len(crafters) == 1:
        for i in todo:
            craft_shard(i, crafters[0])
    else:
        with concurrent.futures.ThreadPoolExecutor(len(crafters)) as pool:
            for r in range(0, len(todo), len(crafters)):
                futures = [pool.submit(craft_shard, i, c)
                           for i, c in zip(todo[r:r + len(crafters)], crafters)]
                for f in futures:
                    f.result()
    return _finish(directory, manifest, worker, poll_seconds, written)


def _teacher_on(teacher, device):
    """The teacher itself, or a copy whose weights live on ``device``."""
    if device is None:
        return teacher
    with tf.device(device):
        copy = keras.models.clone_model(teacher)
        copy.set_weights(teacher.get_weights())
    return copy


def _finish(directory, manifest, worker, poll_seconds, written):
    """Waits for every worker's shards; worker 0 then checks the other workers' shards
    once (hashes, as a resume does: a damaged one is waiting for its worker to recraft it)
    and marks the manifest complete. The others wait for that manifest, holding the
    shards they wrote."""
    index, count = worker
    unchecked = [i for i in range(store.shard_count(manifest)) if i % count != index]
    reported = set()
    while True:
        missing = store.missing_shards(directory, manifest)
        if not missing and index == 0:  # no hashing while shards are still missing
            problems = {i: store.shard_problem(directory, manifest, i) for i in unchecked}
            unchecked = [i for i, problem in problems.items() if problem is not None]
            for i in unchecked:
                if i not in reported:
                    logging.warning("shard %d %s: waiting for worker %d to craft it again",
                                    i, problems[i], i % count)
                    reported.add(i)
            missing = unchecked
        if not missing:
            break
        logging.info("waiting for %d shards from other workers", len(missing))
        time.sleep(poll_seconds)
    if index == 0:
        manifest = store.mark_complete(directory, manifest)
    while not (manifest.get("complete") and all(
            manifest["shards"].get(str(i), {}).get("sha256") == h for i, h in written.items())):
        time.sleep(poll_seconds)
        manifest = store.read_manifest(directory)
    return manifest
