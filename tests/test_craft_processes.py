import os

import keras
import numpy as np
import pytest

from conftest import Interrupt, small_craft
from zskd_tf import config as config_lib
from zskd_tf import craft_processes
from zskd_tf import impressions
from zskd_tf import scheduling
from zskd_tf import store


def test_processes_resume_a_set_and_match_one_process(tiny_teacher, tmp_path):
    t, config = small_craft(tiny_teacher)
    kwargs = dict(seed=11, parallel_batches=2)
    scheduling.craft_transfer_set(str(tmp_path / "one"), tiny_teacher, t, config, **kwargs)

    with pytest.raises(Interrupt):
        scheduling.craft_transfer_set(str(tmp_path / "two"), tiny_teacher, t, config,
                                 on_shard=_interrupt_first, **kwargs)
    reported = []
    manifest = craft_processes.craft(str(tmp_path / "two"), tiny_teacher, t, config,
                                     processes=2, threads=1,
                                     on_shard=lambda i, c, r: reported.append(i), **kwargs)
    assert manifest["complete"] and sorted(manifest["shards"], key=int) == list("012345")
    assert sorted(reported) == [1, 2, 3, 4, 5]  # shard 0 was there already
    assert not list((tmp_path / "two").glob(".processes*"))  # the hand-over files are gone
    one, two = store.load(tmp_path / "one"), store.load(tmp_path / "two")
    for key in one:
        np.testing.assert_allclose(one[key], two[key], atol=1e-5, err_msg=key)
    # a finished set is checked and returned without starting processes
    again = craft_processes.craft(str(tmp_path / "two"), tiny_teacher, t, config,
                                  processes=2, **kwargs)
    assert again["shards"] == manifest["shards"]


def test_a_failing_process_is_reported(tiny_teacher, tmp_path):
    t, config = small_craft(tiny_teacher, 20)
    with pytest.raises(Interrupt):
        scheduling.craft_transfer_set(str(tmp_path), tiny_teacher, t, config, seed=11,
                                 parallel_batches=2, on_shard=_interrupt_first)
    other = config_lib.CraftConfig(lr=0.5, batch_size=5, iterations=4)
    with pytest.raises(RuntimeError, match="crafting process [01] of 2 failed with exit code 1: "
                                           "SettingsMismatch: .*different settings"):
        craft_processes.craft(str(tmp_path), tiny_teacher, t, other, seed=11,
                              parallel_batches=2, processes=2, threads=1)


def test_a_diverging_process_names_shard_batch_and_step(tiny_teacher, tmp_path, capfd):
    t, _ = small_craft(tiny_teacher, 20)
    config = config_lib.CraftConfig(lr=1e38, batch_size=5, iterations=10, pixel="none")
    with pytest.raises(RuntimeError, match=r"crafting process [01] of 2 failed with exit code 1: "
                                           r"CraftingDiverged: shard [12]/2 .*crafting diverged "
                                           r"by step 10 of 10: .*crafting batch [0-3] .*stderr"):
        craft_processes.craft(str(tmp_path), tiny_teacher, t, config, seed=11,
                              parallel_batches=2, processes=2, threads=1)
    assert "CraftingDiverged: shard" in capfd.readouterr().err  # the worker's own log
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".npz") and "shard" in f]


def _interrupt_first(i, crafted, record):
    if i == 0:
        raise Interrupt


@pytest.fixture
def unsaveable_teacher(tiny_teacher):
    class Wrapped(keras.Model):  # no get_config: cannot be cloned or saved
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def call(self, x):
            return self.inner(x)
    model = Wrapped(tiny_teacher)
    model(np.zeros((1, 32, 32, 1), np.float32))
    return model


def test_a_teacher_that_cannot_be_saved_gets_a_clear_error(tiny_teacher, unsaveable_teacher,
                                                           tmp_path):
    t, config = small_craft(tiny_teacher, 20)
    with pytest.raises(ValueError, match="craft in one process"):
        craft_processes.craft(str(tmp_path), unsaveable_teacher, t, config, seed=1,
                              parallel_batches=2, processes=2)


def test_crafting_stats_count_overlapping_shards_once():
    def shard(start, seconds, count=10):
        return {"started": start, "finished": start + seconds, "seconds": seconds,
                "count": count, "mean_loss": 1.0, "image_steps_per_second": 100 / seconds}
    manifest = {"shards": {"0": shard(0, 10), "1": shard(5, 10), "2": shard(30, 4),
                           "3": {"seconds": 6, "count": 10, "mean_loss": 3.0,
                                 "image_steps_per_second": 100 / 6}}}
    stats = store.crafting_stats(manifest)
    # [0, 15] + [30, 34] + 6 s without times = 25 s for 400 image-steps
    assert stats["craft_seconds"] == pytest.approx(25.0)
    assert stats["image_steps_per_second"] == pytest.approx(400 / 25)
    assert stats["mean_final_loss"] == pytest.approx(1.5)


def test_class_impressions_stop_the_same_in_processes(tiny_teacher, tmp_path):
    t, _ = small_craft(tiny_teacher, 20)
    config = config_lib.CraftConfig(lr=0.3, batch_size=1, iterations=6)
    thresholds = impressions.class_impression_thresholds(20, seed=3)
    kwargs = dict(seed=2, parallel_batches=5, thresholds=thresholds)
    scheduling.craft_transfer_set(str(tmp_path / "one"), tiny_teacher, t, config, **kwargs)
    craft_processes.craft(str(tmp_path / "two"), tiny_teacher, t, config, processes=2,
                          threads=1, **kwargs)
    one = store.load(tmp_path / "one", keys=("images", "steps"))
    two = store.load(tmp_path / "two", keys=("images", "steps"))
    assert one["steps"].min() < 6  # some images stopped early
    np.testing.assert_array_equal(one["steps"], two["steps"])
    np.testing.assert_allclose(one["images"], two["images"], atol=1e-5)
