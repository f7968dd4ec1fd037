"""Transfer sets on disk: shards of crafted impressions plus a manifest, resumable.

Storage only: which shards are crafted where (devices, processes, hosts) is
``zskd_tf.scheduling``.

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
import dataclasses
import hashlib
import os

import numpy as np

from zskd_tf import config as config_lib
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


def write_manifest(directory, manifest):
    io_utils.write_json(os.path.join(directory, MANIFEST), manifest)


def create(directory, settings, shard_size, targets):
    """Starts a transfer set: its targets and a manifest with no shards; returns it."""
    os.makedirs(directory, exist_ok=True)
    manifest = {"settings": settings, "shard_size": int(shard_size), "shards": {},
                "complete": False}
    _save_npz(os.path.join(directory, "targets.npz"), targets=targets.targets,
              classes=targets.classes, betas=targets.betas)
    write_manifest(directory, manifest)
    return manifest


def check_settings(manifest, settings, directory):
    """ValueError naming every setting in which ``settings`` differ from the manifest's
    (options added since a manifest was written count at their defaults)."""
    old = _with_craft_defaults(manifest["settings"])
    diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
    if diff:
        raise ValueError(
            f"{directory} holds a transfer set made with different settings ({', '.join(diff)} "
            "differ); use another directory or delete it to start over")


def write_shard(directory, i, arrays, record):
    """Writes shard ``i`` (``SHARD_KEYS`` arrays) and its record, each atomically."""
    _save_npz(os.path.join(directory, _shard_name(i)), **arrays)
    record = {"file": _shard_name(i), **record}
    io_utils.write_json(os.path.join(directory, _record_name(i)), record)
    return record


def shard_range(manifest, i):
    """(first, end) impression indices of shard ``i``."""
    size, n = manifest["shard_size"], manifest["settings"]["num_impressions"]
    return i * size, min(n, (i + 1) * size)


def missing_shards(directory, manifest, shards=None):
    """The shards among ``shards`` (default: all) with no finished record on disk."""
    shards = range(shard_count(manifest)) if shards is None else shards
    return [i for i in shards if shard_record(directory, manifest, i) is None]


def mark_complete(directory, manifest):
    """Records every shard in the manifest and marks the set complete."""
    manifest["shards"] = {str(i): shard_record(directory, manifest, i)
                          for i in range(shard_count(manifest))}
    manifest["complete"] = True
    write_manifest(directory, manifest)
    return manifest


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
    defaults = {f.name: f.default for f in dataclasses.fields(config_lib.CraftConfig)
                if f.default is not dataclasses.MISSING}
    if "craft" not in settings:
        return settings
    return {**settings, "craft": {**defaults, **settings["craft"]}}


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
