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

Each shard's record (``shard-00000.json`` and the manifest's entry) carries the SHA-256 of
its file. Loading checks it, and that the shard's ``index`` is its own range, so a
damaged, truncated or swapped shard is an error naming the file, never a different set;
a resume (``unfinished_shards``) recrafts such a shard. Shards recorded before hashes
existed are checked for readability and range only.
"""
import dataclasses
import hashlib
import io
import os

import numpy as np
from absl import logging

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


def _save_npz_hashed(path, **arrays):
    """``_save_npz``; returns the SHA-256 of the bytes written."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    data = buffer.getvalue()

    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(data)
    io_utils.replace_atomically(path, write)
    return hashlib.sha256(data).hexdigest()


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


class SettingsMismatch(ValueError):
    """A transfer set on disk was made with other settings than the ones given now."""


def check_settings(manifest, settings, directory):
    """SettingsMismatch naming every setting in which ``settings`` differ from the
    manifest's (options added since a manifest was written count at their defaults)."""
    old = _with_craft_defaults(manifest["settings"])
    diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
    if diff:
        raise SettingsMismatch(
            f"{directory} holds a transfer set made with different settings ({', '.join(diff)} "
            "differ); use another workdir, or redo it on purpose with --restart_from=crafting "
            "(zskd.run(restart_from=...)), or delete it")


def write_shard(directory, i, arrays, record):
    """Writes shard ``i`` (``SHARD_KEYS`` arrays) and its record, with the file's SHA-256,
    each atomically."""
    sha256 = _save_npz_hashed(os.path.join(directory, _shard_name(i)), **arrays)
    record = {"file": _shard_name(i), "sha256": sha256, **record}
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


def unfinished_shards(directory, manifest, shards=None):
    """The shards among ``shards`` (default: all) to craft: those with no finished record
    on disk, and those whose file is missing, unreadable or not the one its record
    describes (``shard_problem``): each of those is logged and deleted, with its record.
    Reads and hashes every finished shard once: for a resume, not for polling."""
    shards = range(shard_count(manifest)) if shards is None else shards
    todo = []
    for i in shards:
        path = os.path.join(directory, _shard_name(i))
        if shard_record(directory, manifest, i) is None:
            if str(i) in manifest["shards"]:
                logging.warning("%s is recorded as finished but missing: crafting it again",
                                path)
            todo.append(i)
            continue
        problem = shard_problem(directory, manifest, i)
        if problem is not None:
            logging.warning("%s %s: deleting it and crafting it again", path, problem)
            for name in (_shard_name(i), _record_name(i)):
                if os.path.exists(os.path.join(directory, name)):
                    os.remove(os.path.join(directory, name))
            todo.append(i)
    return todo


def shard_problem(directory, manifest, i):
    """None if shard ``i``'s file is the one its latest record describes, else what is
    wrong with it ("is missing", "is not a readable shard (...)", ...)."""
    try:
        read_shard(directory, manifest, i, keys=(),
                   record=_latest_record(directory, manifest, i))
    except DamagedShard as e:
        return e.problem
    return None


def _latest_record(directory, manifest, i):
    """Shard ``i``'s record as its writer left it (its JSON file), else the manifest's."""
    path = os.path.join(directory, _record_name(i))
    if os.path.exists(path):
        try:
            return io_utils.read_json(path)
        except (OSError, ValueError):  # damaged by hand: the manifest's, if any, decides
            pass
    return manifest["shards"].get(str(i))


def mark_complete(directory, manifest):
    """Records every shard in the manifest (as its writer recorded it: another worker may
    have recrafted it) and marks the set complete."""
    manifest["shards"] = {str(i): _latest_record(directory, manifest, i)
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


class DamagedShard(ValueError):
    """A shard file that is missing, unreadable or not the one its record describes."""

    def __init__(self, path, problem):
        directory = os.path.dirname(path) or "."
        super().__init__(
            f"{path} {problem}: rerun the same crafting command to recraft it (it resumes "
            f"the transfer set), or delete {directory} to start over")
        self.path, self.problem = path, problem


def read_shard(directory, manifest, i, keys=("images",), record=None):
    """Shard ``i``'s ``keys`` arrays, read once and checked: the file's SHA-256 against its
    record's (default: the manifest's; records written before hashes have none), and its
    ``index`` against the shard's range. DamagedShard (a ValueError) naming the file if a
    check fails or the file is missing or unreadable."""
    record = manifest["shards"].get(str(i)) if record is None else record
    path = os.path.join(directory, (record or {}).get("file", _shard_name(i)))
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise DamagedShard(path, "is missing") from None
    except OSError as e:
        raise DamagedShard(path, f"cannot be read ({e})") from e
    expected = (record or {}).get("sha256")
    if expected and hashlib.sha256(data).hexdigest() != expected:
        raise DamagedShard(path, "does not match the SHA-256 recorded when it was written "
                                 "(damaged, or another file copied over it)")
    try:
        with np.load(io.BytesIO(data)) as shard:
            missing = [k for k in keys if k not in shard.files]
            if missing:
                raise KeyError(f"{path} has no {', '.join(missing)}")
            # without a hash, reading every array checks the file's CRCs
            arrays = {k: shard[k] for k in (keys if expected else shard.files)}
            index = shard["index"] if "index" in shard.files else None
    except KeyError:
        raise
    except Exception as e:  # zipfile.BadZipFile, EOFError, ValueError, ...
        raise DamagedShard(path, f"is not a readable shard ({type(e).__name__}: {e})") from e
    lo, hi = shard_range(manifest, i)
    if index is not None and not np.array_equal(index, np.arange(lo, hi)):
        held = f"{index[0]}-{index[-1]}" if index.size else "none"
        raise DamagedShard(path, f"holds impressions {held}, not shard {i}'s {lo}-{hi - 1} "
                                 "(another shard copied over it?)")
    return {k: arrays[k] for k in keys}


def load(directory, keys=("images", "soft_labels", "targets", "classes", "betas", "loss")):
    """All shards of a finished transfer set, concatenated in impression order; each shard
    checked (``read_shard``)."""
    manifest = read_manifest(directory)
    if manifest is None:
        raise FileNotFoundError(f"no transfer set in {directory} ({MANIFEST} is missing)")
    if not manifest.get("complete"):
        raise ValueError(f"the transfer set in {directory} is unfinished: rerun crafting "
                         "to complete it")
    parts = {k: [] for k in keys}
    for i in sorted(manifest["shards"], key=int):
        shard = read_shard(directory, manifest, int(i), keys)
        for k in keys:
            parts[k].append(shard[k])
    return {k: np.concatenate(v) for k, v in parts.items()}


def iter_shards(directory, keys=("images",)):
    """Yields shard dicts one at a time (bounded memory), each checked (``read_shard``)."""
    manifest = read_manifest(directory)
    for i in sorted(manifest["shards"], key=int):
        yield read_shard(directory, manifest, int(i), keys)
