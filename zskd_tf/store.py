"""Transfer sets on disk: shards of crafted impressions plus a manifest, resumable.

Layout of a transfer-set directory::

    manifest.json        settings, shard list, completion flag (rewritten atomically)
    targets.npz          every sampled target with its class and beta (written first)
    shard-00000.npz      images, targets, soft_labels, classes, betas, loss, steps, index

Shard ``i`` holds impressions ``[i * shard_size, (i + 1) * shard_size)``. Each shard is
written to a temporary name and renamed, then recorded in the manifest, so a killed run
leaves only finished shards behind; rerunning the same call crafts the missing ones. As
crafting is invariant to how many batches run together, the resumed set equals the one an
uninterrupted run makes.
"""
import concurrent.futures
import dataclasses
import hashlib
import os
import threading
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from zskd_tf import impressions as impressions_lib
from zskd_tf import io_utils

MANIFEST = "manifest.json"
SHARD_KEYS = ("images", "targets", "soft_labels", "classes", "betas", "loss", "steps", "index")


def teacher_fingerprint(model):
    """SHA-256 over the teacher's weights: a transfer set belongs to one teacher."""
    h = hashlib.sha256()
    for w in model.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()


def _shard_name(i):
    return f"shard-{i:05d}.npz"


def _save_npz(path, **arrays):
    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    io_utils.replace_atomically(path, write)


def read_manifest(directory):
    path = os.path.join(directory, MANIFEST)
    return io_utils.read_json(path) if os.path.exists(path) else None


def craft_transfer_set(directory, teacher, targets, config, *, seed, parallel_batches=10,
                       thresholds=None, settings=None, on_shard=None, devices=None,
                       worker=(0, 1), poll_seconds=10.0):
    """Crafts (or finishes crafting) the transfer set for ``targets`` into ``directory``.

    targets: a ``targets.Targets``; config: an ``impressions.CraftConfig``;
    parallel_batches: crafting batches optimised together (one shard each round);
    thresholds: per-impression stopping confidences (Class Impressions);
    settings: extra JSON-able settings recorded in, and checked against, the manifest;
    on_shard: optional callback ``(shard_index, Crafted, record)`` after each new shard;
    devices: devices to craft on at once, one shard each (default: TensorFlow's choice);
    worker: (index, count) when several processes share ``directory`` (one per host):
    worker i crafts the shards s with s % count == i; worker 0 writes the manifest.
    Shards do not depend on where or beside what they were crafted, so every split gives
    the same set. Returns the manifest.
    """
    b = config.batch_size
    n = len(targets)
    if n % b:
        raise ValueError(f"{n} impressions is not a multiple of the crafting batch size {b}")
    index, count = worker
    recorded = {
        "num_impressions": n, "num_classes": int(targets.targets.shape[1]),
        "image_shape": list(teacher.input_shape[1:]), "seed": int(seed),
        "teacher_sha256": teacher_fingerprint(teacher),
        "craft": {k: v for k, v in vars(config).items()},
        "targets_sha256": hashlib.sha256(targets.targets.tobytes()).hexdigest(),
        **(settings or {}),
    }
    os.makedirs(directory, exist_ok=True)
    manifest = read_manifest(directory)
    if manifest is None and index == 0:
        manifest = {"settings": recorded, "shard_size": int(parallel_batches) * b,
                    "shards": {}, "complete": False}
        _save_npz(os.path.join(directory, "targets.npz"), targets=targets.targets,
                  classes=targets.classes, betas=targets.betas)
        io_utils.write_json(os.path.join(directory, MANIFEST), manifest)
    while manifest is None:  # another worker creates it
        time.sleep(poll_seconds)
        manifest = read_manifest(directory)
    _check_same(_with_craft_defaults(manifest["settings"]), recorded, directory)
    if manifest["shard_size"] != parallel_batches * b:
        logging.info("using the manifest's shard size %d (%d batches) rather than %d batches",
                     manifest["shard_size"], manifest["shard_size"] // b, parallel_batches)
    shard_size = manifest["shard_size"]
    num_shards = shard_count(manifest)
    todo = [i for i in range(index, num_shards, count)
            if shard_record(directory, manifest, i) is None]
    devices = list(devices or [None])
    lock = threading.Lock()

    def craft_shard(i, crafter):
        lo, hi = i * shard_size, min(n, (i + 1) * shard_size)
        started, start = time.time(), time.perf_counter()
        crafted = crafter.craft(
            targets.targets[lo:hi], range(lo // b, hi // b), seed,
            thresholds=None if thresholds is None else thresholds[lo:hi],
            log_prefix=f"shard {i + 1}/{num_shards}: ")
        seconds = time.perf_counter() - start
        _save_npz(os.path.join(directory, _shard_name(i)), images=crafted.images,
                  targets=targets.targets[lo:hi], soft_labels=crafted.soft_labels,
                  classes=targets.classes[lo:hi], betas=targets.betas[lo:hi],
                  loss=crafted.loss, steps=crafted.steps, index=np.arange(lo, hi))
        record = {"file": _shard_name(i), "count": hi - lo, "seconds": seconds,
                  "started": started, "finished": started + seconds,
                  "mean_loss": float(crafted.loss.mean()),
                  "image_steps_per_second": float(crafted.steps.sum() / seconds)}
        io_utils.write_json(os.path.join(directory, _record_name(i)), record)
        with lock:
            if index == 0:
                manifest["shards"][str(i)] = record
                io_utils.write_json(os.path.join(directory, MANIFEST), manifest)
            logging.info("shard %d/%d written: %d impressions, mean loss %.4f, %.0fs",
                         i + 1, num_shards, hi - lo, record["mean_loss"], seconds)
            if on_shard is not None:
                on_shard(i, crafted, record)

    crafters = [impressions_lib.Crafter(_teacher_on(teacher, d), config, device=d)
                for d in devices]
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
    return _finish(directory, manifest, num_shards, index, poll_seconds)


def _teacher_on(teacher, device):
    """The teacher itself, or a copy whose weights live on ``device``."""
    if device is None:
        return teacher
    with tf.device(device):
        copy = keras.models.clone_model(teacher)
        copy.set_weights(teacher.get_weights())
    return copy


def _record_name(i):
    return f"shard-{i:05d}.json"


def shard_count(manifest):
    """Number of shards of the transfer set ``manifest`` describes."""
    return -(-manifest["settings"]["num_impressions"] // manifest["shard_size"])


def shard_record(directory, manifest, i):
    """The record of finished shard ``i``, or None."""
    if not os.path.exists(os.path.join(directory, _shard_name(i))):
        return None
    if str(i) in manifest["shards"]:
        return manifest["shards"][str(i)]
    path = os.path.join(directory, _record_name(i))
    return io_utils.read_json(path) if os.path.exists(path) else None


def _finish(directory, manifest, num_shards, index, poll_seconds):
    """Waits for every worker's shards; worker 0 then marks the manifest complete."""
    while True:
        records = {i: shard_record(directory, manifest, i) for i in range(num_shards)}
        missing = [i for i, r in records.items() if r is None]
        if not missing:
            break
        logging.info("waiting for %d shards from other workers", len(missing))
        time.sleep(poll_seconds)
    if index == 0:
        manifest["shards"] = {str(i): r for i, r in records.items()}
        manifest["complete"] = True
        io_utils.write_json(os.path.join(directory, MANIFEST), manifest)
    while not manifest.get("complete"):
        time.sleep(poll_seconds)
        manifest = read_manifest(directory)
    return manifest


def crafting_stats(manifest):
    """Wall-clock seconds, image-steps per second and mean final loss of a transfer set.

    Shards crafted at the same time (several devices, processes or hosts) count their
    overlapping time once; shards recorded without start times add their own seconds.
    """
    shards = list(manifest["shards"].values())
    spans = sorted((s["started"], s["finished"]) for s in shards if "started" in s)
    seconds = sum(s["seconds"] for s in shards if "started" not in s)
    end = -float("inf")
    for lo, hi in spans:
        seconds += max(0.0, hi - max(lo, end))
        end = max(end, hi)
    steps = sum(s["image_steps_per_second"] * s["seconds"] for s in shards)
    counts = [s["count"] for s in shards]
    return {"craft_seconds": seconds,
            "image_steps_per_second": steps / max(seconds, 1e-9),
            "mean_final_loss": float(np.average([s["mean_loss"] for s in shards],
                                                weights=counts))}


def _with_craft_defaults(settings):
    """Settings with crafting options added since the manifest was written at their
    defaults (what such a set was crafted with), so it still resumes."""
    defaults = {f.name: f.default for f in dataclasses.fields(impressions_lib.CraftConfig)
                if f.default is not dataclasses.MISSING}
    if "craft" not in settings:
        return settings
    return {**settings, "craft": {**defaults, **settings["craft"]}}


def _check_same(old, new, directory):
    diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if diff:
        raise ValueError(
            f"{directory} holds a transfer set made with different settings ({', '.join(diff)} "
            "differ); use another directory or delete it to start over")


def load(directory, keys=("images", "soft_labels", "targets", "classes", "betas", "loss")):
    """All shards of a finished transfer set, concatenated in impression order."""
    manifest = read_manifest(directory)
    if manifest is None:
        raise FileNotFoundError(f"no transfer set in {directory} ({MANIFEST} is missing)")
    if not manifest.get("complete"):
        raise ValueError(f"the transfer set in {directory} is unfinished: rerun crafting "
                         "to complete it")
    order = sorted(manifest["shards"], key=int)
    parts = {k: [] for k in keys}
    for i in order:
        with np.load(os.path.join(directory, manifest["shards"][i]["file"])) as shard:
            for k in keys:
                parts[k].append(shard[k])
    return {k: np.concatenate(v) for k, v in parts.items()}


def iter_shards(directory, keys=("images",)):
    """Yields shard dicts one at a time (bounded memory)."""
    manifest = read_manifest(directory)
    for i in sorted(manifest["shards"], key=int):
        with np.load(os.path.join(directory, manifest["shards"][i]["file"])) as shard:
            yield {k: shard[k] for k in keys}
