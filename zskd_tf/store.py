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
import hashlib
import os
import time

import numpy as np
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


def craft_transfer_set(directory, teacher, targets, config, *, seed, parallel_batches=60,
                       thresholds=None, settings=None, on_shard=None):
    """Crafts (or finishes crafting) the transfer set for ``targets`` into ``directory``.

    targets: a ``targets.Targets``; config: an ``impressions.CraftConfig``;
    parallel_batches: crafting batches optimised together (one shard each round);
    thresholds: per-impression stopping confidences (Class Impressions);
    settings: extra JSON-able settings recorded in, and checked against, the manifest;
    on_shard: optional callback ``(shard_index, Crafted, record)`` after each new shard.
    Returns the manifest.
    """
    b = config.batch_size
    n = len(targets)
    if n % b:
        raise ValueError(f"{n} impressions is not a multiple of the crafting batch size {b}")
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
    if manifest is None:
        manifest = {"settings": recorded, "shard_size": int(parallel_batches) * b,
                    "shards": {}, "complete": False}
        _save_npz(os.path.join(directory, "targets.npz"), targets=targets.targets,
                  classes=targets.classes, betas=targets.betas)
        io_utils.write_json(os.path.join(directory, MANIFEST), manifest)
    else:
        _check_same(manifest["settings"], recorded, directory)
        if manifest["shard_size"] != parallel_batches * b:
            logging.info("resuming with the manifest's shard size %d (%d batches) rather than "
                         "%d batches", manifest["shard_size"], manifest["shard_size"] // b,
                         parallel_batches)
    shard_size = manifest["shard_size"]
    num_shards = -(-n // shard_size)
    crafter = impressions_lib.Crafter(teacher, config)
    for i in range(num_shards):
        if str(i) in manifest["shards"] and os.path.exists(
                os.path.join(directory, _shard_name(i))):
            continue
        lo, hi = i * shard_size, min(n, (i + 1) * shard_size)
        start = time.perf_counter()
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
                  "mean_loss": float(crafted.loss.mean()),
                  "image_steps_per_second": float(crafted.steps.sum() / seconds)}
        manifest["shards"][str(i)] = record
        io_utils.write_json(os.path.join(directory, MANIFEST), manifest)
        logging.info("shard %d/%d written: %d impressions, mean loss %.4f, %.0fs",
                     i + 1, num_shards, hi - lo, record["mean_loss"], seconds)
        if on_shard is not None:
            on_shard(i, crafted, record)
    manifest["complete"] = True
    io_utils.write_json(os.path.join(directory, MANIFEST), manifest)
    return manifest


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
