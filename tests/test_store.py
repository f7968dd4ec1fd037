import json
import os

import numpy as np
import pytest

from conftest import Interrupt, small_craft
from zskd_tf import config as config_lib
from zskd_tf import impressions
from zskd_tf import scheduling
from zskd_tf import store


def _poison_batch(monkeypatch, batch):
    """Makes one pixel of crafting batch ``batch``'s initial noise infinite."""
    import tensorflow as tf
    real = impressions.initial_noise

    def poisoned(batch_indices, batch_size, image_shape, seed, init="uniform"):
        x = real(batch_indices, batch_size, image_shape, seed, init).numpy()
        if batch in list(batch_indices):
            x[list(batch_indices).index(batch) * batch_size].flat[0] = np.inf
        return tf.constant(x)
    monkeypatch.setattr(impressions, "initial_noise", poisoned)


def _craft(directory, teacher, t, config, **kwargs):
    return scheduling.craft_transfer_set(str(directory), teacher, t, config, seed=11,
                                    parallel_batches=2, **kwargs)


def test_interrupted_run_resumes_to_the_same_set(tiny_teacher, tmp_path):
    t, config = small_craft(tiny_teacher)
    _craft(tmp_path / "straight", tiny_teacher, t, config)

    def stop_after_two(i, crafted, record):
        if i == 1:
            raise Interrupt
    with pytest.raises(Interrupt):
        _craft(tmp_path / "resumed", tiny_teacher, t, config, on_shard=stop_after_two)
    manifest = store.read_manifest(tmp_path / "resumed")
    assert sorted(manifest["shards"]) == ["0", "1"] and not manifest["complete"]
    with pytest.raises(ValueError, match="unfinished"):
        store.load(tmp_path / "resumed")
    # a half-written temporary file from a kill is ignored
    (tmp_path / "resumed" / ".tmp-abc.npz").write_bytes(b"partial")
    crafted_again = []
    _craft(tmp_path / "resumed", tiny_teacher, t, config,
           on_shard=lambda i, c, r: crafted_again.append(i))
    assert crafted_again == [2, 3, 4, 5]  # shards 0 and 1 were not redone
    a, b = store.load(tmp_path / "straight"), store.load(tmp_path / "resumed")
    for key in a:
        np.testing.assert_allclose(a[key], b[key], atol=1e-6, err_msg=key)
    assert a["images"].shape == (60, 32, 32, 1)
    np.testing.assert_array_equal(a["classes"], t.classes)
    np.testing.assert_array_equal(a["targets"], t.targets)


def test_resume_with_other_parallelism_keeps_shard_layout(tiny_teacher, tmp_path):
    t, config = small_craft(tiny_teacher, 40)
    _craft(tmp_path / "a", tiny_teacher, t, config)
    m = scheduling.craft_transfer_set(str(tmp_path / "a"), tiny_teacher, t, config, seed=11,
                                 parallel_batches=8)
    assert m["shard_size"] == 10 and m["complete"]


def test_different_settings_are_refused(tiny_teacher, tmp_path):
    t, config = small_craft(tiny_teacher, 20)
    _craft(tmp_path, tiny_teacher, t, config)
    other = config_lib.CraftConfig(lr=0.1, batch_size=5, iterations=4)
    with pytest.raises(ValueError, match="craft"):
        _craft(tmp_path, tiny_teacher, t, other)
    with pytest.raises(ValueError, match="seed"):
        scheduling.craft_transfer_set(str(tmp_path), tiny_teacher, t, config, seed=12,
                                 parallel_batches=2)


def test_manifest_without_newer_craft_options_resumes_at_their_defaults(tiny_teacher, tmp_path):
    t, config = small_craft(tiny_teacher, 20)
    _craft(tmp_path, tiny_teacher, t, config)
    path = tmp_path / "manifest.json"
    manifest = json.loads(path.read_text())
    for key in ("init", "image_l2", "precision"):  # as written before these options existed
        del manifest["settings"]["craft"][key]
    path.write_text(json.dumps(manifest))
    assert _craft(tmp_path, tiny_teacher, t, config)["complete"]
    for changed in ({"init": "normal"}, {"precision": "bfloat16"}):
        other = config_lib.CraftConfig(lr=0.3, batch_size=5, iterations=4, **changed)
        with pytest.raises(ValueError, match="craft"):
            _craft(tmp_path, tiny_teacher, t, other)


def test_shard_contents_and_manifest(tiny_teacher, tmp_path):
    t, config = small_craft(tiny_teacher, 20)
    _craft(tmp_path, tiny_teacher, t, config)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["complete"] and manifest["settings"]["num_impressions"] == 20
    with np.load(tmp_path / "shard-00001.npz") as shard:
        assert set(shard.files) == set(store.SHARD_KEYS)
        np.testing.assert_array_equal(shard["index"], np.arange(10, 20))
        np.testing.assert_allclose(shard["soft_labels"].sum(1), 1.0, atol=1e-5)
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp")]


def test_batch_size_must_divide(tiny_teacher, tmp_path):
    t, _ = small_craft(tiny_teacher, 20)
    with pytest.raises(ValueError, match="multiple"):
        _craft(tmp_path, tiny_teacher, t, config_lib.CraftConfig(lr=0.1, batch_size=3))


def test_a_diverging_shard_is_not_written_and_earlier_shards_stay(tiny_teacher, tmp_path,
                                                                  monkeypatch):
    t, config = small_craft(tiny_teacher, 40)  # 4 shards of 2 batches of 5
    _craft(tmp_path / "straight", tiny_teacher, t, config)
    _poison_batch(monkeypatch, 5)  # in shard 2 (batches 4, 5)
    with pytest.raises(impressions.CraftingDiverged,
                       match=r"shard 3/4 \(impressions 20-29, not written\): crafting "
                             r"diverged by step 4 of 4: .*crafting batch 5 ") as e:
        _craft(tmp_path / "d", tiny_teacher, t, config)
    assert (e.value.shard, e.value.batch, e.value.step) == (2, 5, 4)
    manifest = store.read_manifest(tmp_path / "d")
    assert sorted(manifest["shards"]) == ["0", "1"] and not manifest["complete"]
    assert sorted(f for f in os.listdir(tmp_path / "d") if f.startswith("shard")) == [
        "shard-00000.json", "shard-00000.npz", "shard-00001.json", "shard-00001.npz"]
    monkeypatch.undo()
    crafted_again = []
    _craft(tmp_path / "d", tiny_teacher, t, config,
           on_shard=lambda i, c, r: crafted_again.append(i))
    assert crafted_again == [2, 3]  # resumed from the shards before the bad one
    a, b = store.load(tmp_path / "straight"), store.load(tmp_path / "d")
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
