"""Damaged, truncated or swapped shards: named on load, recrafted on resume."""
import hashlib
import json
import shutil
import threading

import numpy as np
import pytest

from conftest import small_craft
from zskd_tf import craft_processes
from zskd_tf import scheduling
from zskd_tf import store

KEYS = ("images", "soft_labels", "targets", "classes", "betas", "loss", "steps")


def _craft(directory, teacher, t, config, **kwargs):
    return scheduling.craft_transfer_set(str(directory), teacher, t, config, seed=11,
                                         parallel_batches=2, **kwargs)


@pytest.fixture(scope="module")
def crafted(tiny_teacher, tmp_path_factory):
    """A finished 4-shard set (40 impressions, shards of 10) and its contents."""
    t, config = small_craft(tiny_teacher, 40)
    directory = tmp_path_factory.mktemp("sets") / "original"
    _craft(directory, tiny_teacher, t, config)
    return directory, t, config, store.load(directory, keys=KEYS)


@pytest.fixture
def copy_of(crafted, tmp_path):
    directory, t, config, contents = crafted
    shutil.copytree(directory, tmp_path / "set")
    return tmp_path / "set", t, config, contents


def _recraft(directory, teacher, t, config):
    again = []
    manifest = _craft(directory, teacher, t, config, on_shard=lambda i, c, r: again.append(i))
    assert manifest["complete"]
    return again


def _assert_same_set(directory, contents, atol=0.0):
    """The set equals ``contents``: exactly when crafted in this process (deterministic),
    within ``atol`` from processes with other thread pools (as test_craft_processes)."""
    loaded = store.load(directory, keys=KEYS)
    for key in KEYS:
        np.testing.assert_allclose(loaded[key], contents[key], rtol=0, atol=atol, err_msg=key)


def test_records_carry_the_hash_of_the_shard_file(copy_of):
    directory = copy_of[0]
    manifest = store.read_manifest(directory)
    for i in range(4):
        digest = hashlib.sha256((directory / f"shard-{i:05d}.npz").read_bytes()).hexdigest()
        assert manifest["shards"][str(i)]["sha256"] == digest
        assert json.loads((directory / f"shard-{i:05d}.json").read_text())["sha256"] == digest


def test_truncated_shard_is_named_on_load_and_recrafted(tiny_teacher, copy_of, caplog):
    directory, t, config, contents = copy_of
    path = directory / "shard-00001.npz"
    path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])
    with pytest.raises(ValueError, match=r"shard-00001\.npz does not match the SHA-256.*"
                                         "rerun the same crafting command to recraft it"):
        store.load(directory)
    with pytest.raises(ValueError, match=r"shard-00001\.npz"):
        list(store.iter_shards(directory))
    assert _recraft(directory, tiny_teacher, t, config) == [1]
    assert "shard-00001.npz does not match the SHA-256" in caplog.text  # the resume's warning
    _assert_same_set(directory, contents)


def test_shard_copied_over_another_is_named_and_recrafted(tiny_teacher, copy_of):
    directory, t, config, contents = copy_of
    shutil.copy(directory / "shard-00000.npz", directory / "shard-00001.npz")
    with pytest.raises(ValueError, match=r"shard-00001\.npz does not match the SHA-256"):
        store.load(directory)
    assert _recraft(directory, tiny_teacher, t, config) == [1]
    _assert_same_set(directory, contents)


def test_missing_shard_file_is_named_and_recrafted(tiny_teacher, copy_of):
    directory, t, config, contents = copy_of
    (directory / "shard-00002.npz").unlink()
    with pytest.raises(ValueError, match=r"shard-00002\.npz is missing.*rerun"):
        store.load(directory)
    assert _recraft(directory, tiny_teacher, t, config) == [2]
    _assert_same_set(directory, contents)


def _drop_hashes(directory):
    """Rewrites the records as they were written before shards had hashes."""
    manifest = store.read_manifest(directory)
    for record in manifest["shards"].values():
        record.pop("sha256", None)
    store.write_manifest(directory, manifest)
    for path in directory.glob("shard-*.json"):
        record = json.loads(path.read_text())
        record.pop("sha256", None)
        path.write_text(json.dumps(record))


def test_records_without_hashes_load_and_a_swapped_shard_is_caught_by_its_index(
        tiny_teacher, copy_of):
    directory, t, config, contents = copy_of
    _drop_hashes(directory)
    _assert_same_set(directory, contents)  # an old set still loads
    assert _recraft(directory, tiny_teacher, t, config) == []  # and resumes as finished
    shutil.copy(directory / "shard-00000.npz", directory / "shard-00001.npz")
    with pytest.raises(ValueError, match=r"shard-00001\.npz holds impressions 0-9, not "
                                         "shard 1's 10-19"):
        store.load(directory)
    assert _recraft(directory, tiny_teacher, t, config) == [1]
    _assert_same_set(directory, contents)


def test_unreadable_shard_without_hash_gets_a_named_error(tiny_teacher, copy_of):
    directory, t, config, contents = copy_of
    _drop_hashes(directory)
    path = directory / "shard-00003.npz"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match=r"shard-00003\.npz is not a readable shard "
                                         r"\(BadZipFile"):
        store.load(directory)
    assert _recraft(directory, tiny_teacher, t, config) == [3]
    _assert_same_set(directory, contents)


def test_damaged_shard_of_another_worker_is_waited_for(tiny_teacher, copy_of):
    """Worker 0 finds nothing wrong in its own shards but must not mark the set complete
    while worker 1's damaged shard is being recrafted."""
    directory, t, config, contents = copy_of
    shutil.copy(directory / "shard-00000.npz", directory / "shard-00003.npz")
    again = {0: [], 1: []}

    def work(index):
        _craft(directory, tiny_teacher, t, config, worker=(index, 2), poll_seconds=0.05,
               on_shard=lambda i, c, r: again[index].append(i))
    first = threading.Thread(target=work, args=(0,))
    first.start()
    first.join(timeout=1.0)
    assert first.is_alive()  # waiting for shard 3
    work(1)
    first.join(timeout=120)
    assert again == {0: [], 1: [3]}
    assert store.read_manifest(directory)["complete"]
    _assert_same_set(directory, contents)


def test_processes_recraft_a_damaged_shard_of_an_unfinished_set(tiny_teacher, copy_of):
    directory, t, config, contents = copy_of
    manifest = store.read_manifest(directory)
    manifest["complete"] = False
    for i in ("2", "3"):  # as a run killed after two shards leaves it
        del manifest["shards"][i]
        (directory / f"shard-0000{i}.npz").unlink()
        (directory / f"shard-0000{i}.json").unlink()
    store.write_manifest(directory, manifest)
    path = directory / "shard-00000.npz"
    path.write_bytes(path.read_bytes()[:100])
    reported = []
    manifest = craft_processes.craft(str(directory), tiny_teacher, t, config, seed=11,
                                     parallel_batches=2, processes=2, threads=1,
                                     on_shard=lambda i, c, r: reported.append(i))
    assert manifest["complete"] and sorted(reported) == [0, 2, 3]
    _assert_same_set(directory, contents, atol=1e-5)
