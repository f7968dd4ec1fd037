import json

import keras
import numpy as np
import pytest

from conftest import (assert_rejected_before_any_work, blob_images, run_module, tiny_binary_run,
                      write_blob_mnist)
from zskd_tf import arbitrary
from zskd_tf import models
from zskd_tf import zskd


@pytest.mark.parametrize("available, size, expected", [
    ([100, 100, 100], 30, [10, 10, 10]),
    ([2, 50, 50], 30, [2, 14, 14]),          # a short class's shortfall is shared
    ([0, 3, 50, 50], 40, [0, 3, 19, 18]),
    ([5, 5, 5], 15, [5, 5, 5]),
])
def test_quotas_share_the_size_as_equally_as_the_pool_allows(available, size, expected):
    take = arbitrary.quotas(available, size)
    assert take.sum() == size
    assert sorted(take.tolist()) == sorted(expected)
    assert (take <= np.asarray(available)).all()


def test_quotas_random_pools_fill_exactly_and_stay_level():
    rng = np.random.default_rng(0)
    for _ in range(200):
        available = rng.integers(0, 40, rng.integers(2, 12))
        size = int(rng.integers(1, available.sum() + 1)) if available.sum() else 0
        take = arbitrary.quotas(available, size)
        assert take.sum() == size and (take <= available).all()
        uncapped = take[take < available]
        if len(uncapped):  # classes with images left differ by at most one
            assert uncapped.max() - uncapped.min() <= 1 and uncapped.min() >= take.max() - 1


def test_quotas_reject_a_pool_smaller_than_the_set():
    with pytest.raises(ValueError, match="fewer than the 31"):
        arbitrary.quotas([10, 10, 10], 31)


def _skewed_pool(n=600):
    """Blob images where class 0 is 10x more frequent than each other class."""
    x, y = blob_images(4 * n, seed=3)
    keep = np.flatnonzero(y == 0)[: n // 2]
    rest = np.flatnonzero(y != 0)[: n - len(keep)]
    idx = np.sort(np.concatenate([keep, rest]))
    return x[idx], y[idx]


def test_balanced_selection_evens_out_the_teachers_classes(tiny_teacher):
    x, _ = _skewed_pool()
    predicted = arbitrary.predicted_classes(tiny_teacher, x)
    pool_hist = np.bincount(predicted, minlength=10)
    assert pool_hist.max() > 5 * np.median(pool_hist)  # the pool is skewed
    size = 10 * int(np.sort(pool_hist)[1])  # leave at most one class short
    balanced = arbitrary.select(tiny_teacher, x, size, balance=True, seed=0)
    assert len(balanced.images) == size
    assert (balanced.pool_histogram == pool_hist).all()
    np.testing.assert_array_equal(balanced.histogram, arbitrary.quotas(pool_hist, size))
    np.testing.assert_array_equal(
        balanced.predicted, arbitrary.predicted_classes(tiny_teacher, balanced.images))
    at_random = arbitrary.select(tiny_teacher, x, size, balance=False, seed=0)
    assert at_random.summary()["balance"] < balanced.summary()["balance"]
    again = arbitrary.select(tiny_teacher, x, size, balance=True, seed=0)
    np.testing.assert_array_equal(again.images, balanced.images)  # seeded


def test_agreement_with_teacher_flags_a_collapsed_student(tiny_teacher):
    x, _ = _skewed_pool(300)
    transfer = arbitrary.select(tiny_teacher, x, 100, seed=0)
    assert arbitrary.agreement_with_teacher(tiny_teacher, transfer) == 1.0
    dead = models.lenet5_half()
    dead.set_weights([np.zeros_like(w) for w in dead.get_weights()])  # constant logits
    assert arbitrary.agreement_with_teacher(dead, transfer) == pytest.approx(
        transfer.histogram[0] / 100)


def test_match_channels():
    rgb = np.random.default_rng(0).random((2, 4, 4, 3), dtype=np.float32)
    grey = arbitrary.match_channels(rgb, 1)
    expected = rgb @ np.array([0.2989, 0.587, 0.114], np.float32)
    np.testing.assert_allclose(grey[..., 0], expected, atol=1e-3)
    np.testing.assert_array_equal(arbitrary.match_channels(grey, 3)[..., 2], grey[..., 0])
    assert arbitrary.match_channels(rgb, 3) is rgb
    with pytest.raises(ValueError, match="2-channel"):
        arbitrary.match_channels(rgb[..., :2], 1)


def test_pool_noise_and_data_sets(tmp_path):
    noise = arbitrary.pool("uniform_noise", (32, 32, 1), noise_size=50, seed=4)
    assert noise.shape == (50, 32, 32, 1) and noise.dtype == np.float32
    assert 0 <= noise.min() and noise.max() <= 1
    np.testing.assert_array_equal(noise, arbitrary.pool("uniform_noise", (32, 32, 1),
                                                        noise_size=50, seed=4))
    write_blob_mnist(tmp_path, 30, 10)
    rgb = arbitrary.pool("mnist", (32, 32, 3), data_dir=str(tmp_path))
    assert rgb.shape == (30, 32, 32, 3)
    with pytest.raises(ValueError, match="unknown source"):
        arbitrary.pool("svhn", (32, 32, 1))


def test_run_distils_and_resumes(tiny_teacher, tmp_path):
    keras.utils.set_random_seed(0)
    x, _ = _skewed_pool(300)
    transfer = arbitrary.select(tiny_teacher, x, 100, seed=0)
    xt, yt = blob_images(100, seed=9)
    config = zskd.Config(num_impressions=100, student_epochs=3, student_lr=1e-2,
                         batch_size=50, finetune_epochs=1, eval_every=1)
    result = arbitrary.run(tiny_teacher, models.lenet5_half(), transfer, str(tmp_path),
                           config, test=(xt, yt))
    assert result["transfer_set"]["size"] == 100
    assert 0 <= result["student_agrees_with_teacher_on_transfer_set"] <= 1
    assert result["student"]["epochs"] == 3 and result["student_augmented"]["epochs"] == 1
    assert 0 <= result["student"]["test_accuracy"] <= 100
    assert (tmp_path / "arbitrary.json").exists() and (tmp_path / "student.keras").exists()
    again = arbitrary.run(tiny_teacher, models.lenet5_half(), transfer, str(tmp_path),
                          config, test=(xt, yt))
    assert again["student"]["reused"]
    assert again["student_augmented"]["test_accuracy"] == pytest.approx(
        result["student_augmented"]["test_accuracy"])


def _run_binary(*args):
    return run_module("experiments.arbitrary_transfer", *args)


@pytest.mark.parametrize("args, flag", [
    (["--transfer=uniform_noise", "--num_samples=100", "--noise_pool=50"], "--noise_pool"),
    (["--transfer=cifar10", "--num_samples=50001"], "--num_samples"),
    (["--num_samples=0"], "--num_samples"),
    (["--teacher=/nonexistent/teacher.keras"], "--teacher"),
    (["--transfer=svhn"], "--transfer"),
])
def test_binary_rejects_bad_flags_before_any_work(tmp_path, args, flag):
    assert_rejected_before_any_work("experiments.arbitrary_transfer", tmp_path, args, flag)


def test_a_missing_pretrained_teacher_asks_for_teacher(tmp_path, monkeypatch):
    from absl import app
    from experiments import common
    monkeypatch.setattr(common, "preset_teacher",
                        lambda dataset: str(tmp_path / f"{dataset}_teacher.keras"))
    with pytest.raises(app.UsageError, match="pass --teacher"):
        common.existing_teacher("cifar10", None)
    given = tmp_path / "mine.keras"
    given.write_bytes(b"")
    assert common.existing_teacher("cifar10", str(given)) == str(given)


def test_binary_runs_end_to_end_on_noise(tmp_path, tiny_teacher):
    workdir, data_and_teacher = tiny_binary_run(tmp_path, tiny_teacher, n_train=20)
    proc = _run_binary(f"--workdir={workdir}", *data_and_teacher, "--transfer=uniform_noise",
                       "--num_samples=60", "--noise_pool=500", "--student_epochs=2",
                       "--batch_size=20", "--eval_every=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((workdir / "results.json").read_text())
    assert results["command"].startswith("python -m experiments.arbitrary_transfer")
    assert results["transfer"] == "uniform_noise" and results["balance"] is True
    assert results["transfer_set"]["size"] == 60
    assert sum(results["transfer_set"]["pool_histogram"]) == 500
    assert results["test_accuracy"]["student_augmented"] is None  # --augment is off
    for name in ("config.json", "transfer_set.png", "student.keras"):
        assert (workdir / name).exists(), name


def test_binary_sources_match_the_library():
    from experiments import arbitrary_transfer
    assert set(arbitrary_transfer.SOURCES) == set(arbitrary.SOURCES)
