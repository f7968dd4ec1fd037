"""Resumed training equals uninterrupted training; reruns with other settings stop."""
import json

import keras
import numpy as np
import pytest

from conftest import Interrupt, run_module, tiny_binary_run
from zskd_tf import config as config_lib
from zskd_tf import models
from zskd_tf import training
from zskd_tf import zskd

CONFIG = config_lib.Config(num_impressions=60, student_epochs=4, finetune_epochs=3,
                           student_lr=1e-2, batch_size=16, eval_every=0, seed=3)


def _images(n=60):
    return np.random.default_rng(0).uniform(0, 1, (n, 32, 32, 1)).astype(np.float32)


def _student():
    keras.utils.set_random_seed(7)
    return models.lenet5_half()


def _distil(teacher, workdir, config=CONFIG):
    student = _student()
    x = _images()
    zskd.distill_images(teacher, student, x, str(workdir), config)
    zskd.distill_images(teacher, student, x, str(workdir), config, augmented=True)
    return student


def _interrupt_after(monkeypatch, callback, stop_epoch):
    """Makes ``callback``'s on_epoch_end raise Interrupt after its work at ``stop_epoch``
    (0-based), once: a kill at that point."""
    original = callback.on_epoch_end
    fired = []

    def on_epoch_end(self, epoch, logs=None):
        original(self, epoch, logs)
        if epoch == stop_epoch and not fired:
            fired.append(epoch)
            raise Interrupt()

    monkeypatch.setattr(callback, "on_epoch_end", on_epoch_end)
    return fired


def _assert_same_weights(a, b):
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


@pytest.fixture(scope="module")
def uninterrupted(tiny_teacher, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("uninterrupted")
    return workdir, _distil(tiny_teacher, workdir)


@pytest.mark.parametrize("callback", [keras.callbacks.BackupAndRestore, training.HistoryCSV],
                         ids=["after_checkpoint", "between_csv_and_checkpoint"])
@pytest.mark.parametrize("stage_epochs", [("student", 1), ("student_augmented", 1)])
def test_resumed_distillation_is_bit_identical(tiny_teacher, tmp_path, monkeypatch,
                                               uninterrupted, callback, stage_epochs):
    stage, stop = stage_epochs
    student = _student()
    x = _images()
    if stage == "student_augmented":
        zskd.distill_images(tiny_teacher, student, x, str(tmp_path), CONFIG)
    fired = _interrupt_after(monkeypatch, callback, stop)
    with pytest.raises(Interrupt):
        zskd.distill_images(tiny_teacher, student, x, str(tmp_path), CONFIG,
                            augmented=stage == "student_augmented")
    assert fired
    monkeypatch.undo()
    resumed = _distil(tiny_teacher, tmp_path)  # the rerun, with a fresh student
    workdir, reference = uninterrupted
    _assert_same_weights(resumed, reference)
    for name in ("student", "student_augmented"):
        want = training.read_history(training.stage_paths(str(workdir), name)["csv"])
        got = training.read_history(training.stage_paths(str(tmp_path), name)["csv"])
        assert got["epoch"] == want["epoch"]  # no epoch row lost or doubled
        assert got["loss"] == want["loss"]


def test_a_rerun_with_other_training_settings_stops_naming_them(tiny_teacher, tmp_path):
    _distil(tiny_teacher, tmp_path)
    changed = config_lib.Config(**{**CONFIG.__dict__, "student_lr": 0.5, "batch_size": 8})
    with pytest.raises(training.StageMismatch, match=r"batch_size, lr.*--restart_from=student"):
        zskd.distill_images(tiny_teacher, _student(), _images(), str(tmp_path), changed)
    fine_tune = config_lib.Config(**{**CONFIG.__dict__, "augment_prob": 0.9})
    student = _student()
    zskd.distill_images(tiny_teacher, student, _images(), str(tmp_path), fine_tune)  # same
    with pytest.raises(training.StageMismatch, match="augment_prob"):
        zskd.distill_images(tiny_teacher, student, _images(), str(tmp_path), fine_tune,
                            augmented=True)


def test_restart_from_redoes_the_stage_and_later_ones(tiny_teacher, tmp_path):
    _distil(tiny_teacher, tmp_path)
    changed = config_lib.Config(**{**CONFIG.__dict__, "student_lr": 0.05})
    zskd.restart(str(tmp_path), "student")
    assert not (tmp_path / "student.keras").exists()
    assert not (tmp_path / "student_augmented.keras").exists()
    student = _student()
    summary = zskd.distill_images(tiny_teacher, student, _images(), str(tmp_path), changed)
    assert not summary["reused"] and summary["epochs"] == 4
    with pytest.raises(ValueError, match="restart_from"):
        zskd.restart(str(tmp_path), "teacher")


def test_more_epochs_continue_a_finished_stage(tiny_teacher, tmp_path, uninterrupted):
    _distil(tiny_teacher, tmp_path)
    longer = config_lib.Config(**{**CONFIG.__dict__, "finetune_epochs": 5})
    student = _student()
    zskd.distill_images(tiny_teacher, student, _images(), str(tmp_path), longer)  # reused
    summary = zskd.distill_images(tiny_teacher, student, _images(), str(tmp_path), longer,
                                  augmented=True)
    assert not summary["reused"] and summary["epochs"] == 5
    history = training.read_history(training.stage_paths(str(tmp_path),
                                                         "student_augmented")["csv"])
    reference = training.read_history(training.stage_paths(str(uninterrupted[0]),
                                                            "student_augmented")["csv"])
    assert history["loss"][:3] == reference["loss"]
    shorter = config_lib.Config(**{**CONFIG.__dict__, "finetune_epochs": 2})
    with pytest.raises(training.StageMismatch, match="epochs"):
        zskd.distill_images(tiny_teacher, student, _images(), str(tmp_path), shorter,
                            augmented=True)


def test_a_non_finite_loss_stops_training_before_it_is_saved(tiny_teacher, tmp_path):
    exploding = config_lib.Config(**{**CONFIG.__dict__, "student_lr": 1e30})
    with pytest.raises(training.TrainingDiverged, match="stage student.*epoch 1"):
        zskd.distill_images(tiny_teacher, _student(), _images(), str(tmp_path), exploding)
    paths = training.stage_paths(str(tmp_path), "student")
    assert not (tmp_path / "student.keras").exists()
    assert training.read_history(paths["csv"]) == {}
    assert training.checkpoint_epoch(str(tmp_path), "student") == 0


def test_binary_stops_on_changed_settings_in_one_line_and_restarts_on_request(
        tmp_path, tiny_teacher):
    workdir, data_and_teacher = tiny_binary_run(tmp_path, tiny_teacher)
    args = [f"--workdir={workdir}", *data_and_teacher, "--num_impressions=40",
            "--craft_iterations=3", "--craft_batch_size=10", "--parallel_batches=2",
            "--craft_processes=1", "--student_epochs=2", "--finetune_epochs=1",
            "--batch_size=20", "--eval_every=0"]
    assert run_module("experiments.mnist_zskd", *args).returncode == 0
    config = (workdir / "config.json").read_bytes()
    proc = run_module("experiments.mnist_zskd", *args, "--student_lr=0.5")
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and "lr" in last and "--restart_from=student" in last
    assert "Traceback" not in proc.stderr
    proc = run_module("experiments.mnist_zskd", *args, "--student_lr=0.5",
                      "--restart_from=student")
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((workdir / "results.json").read_text())
    assert results["config"]["student_lr"] == 0.5 and not results["student"]["reused"]
    assert (workdir / "config.json").read_bytes() != config
    proc = run_module("experiments.mnist_zskd", *args, "--student_lr=0.5", "--craft_lr=0.7")
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert last.startswith("error:") and "craft" in last and "--restart_from=crafting" in last


def test_stored_soft_labels_train_like_the_teacher_and_count_as_a_setting(
        tiny_teacher, tmp_path, uninterrupted):
    x = _images()
    soft = keras.ops.convert_to_numpy(keras.ops.softmax(
        tiny_teacher(x, training=False) / 20.0))  # the paper temperature, CONFIG's
    stored = config_lib.Config(**{**CONFIG.__dict__, "stored_soft_labels": True})
    with pytest.raises(ValueError, match="soft labels"):
        zskd.distill_images(tiny_teacher, _student(), x, str(tmp_path), stored)
    zskd.distill_images(tiny_teacher, _student(), x, str(tmp_path), stored, soft_labels=soft)
    got = training.read_history(training.stage_paths(str(tmp_path), "student")["csv"])
    want = training.read_history(training.stage_paths(str(uninterrupted[0]), "student")["csv"])
    np.testing.assert_allclose(got["loss"], want["loss"], rtol=1e-4)
    with pytest.raises(training.StageMismatch, match="soft_labels_sha256"):
        zskd.distill_images(tiny_teacher, _student(), x, str(tmp_path), CONFIG)
