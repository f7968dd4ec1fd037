import keras
import numpy as np
import pytest

from conftest import assert_rejected_before_any_work, blob_images
from zskd_tf import heldout
from zskd_tf import models
from zskd_tf import store
from zskd_tf import training
from zskd_tf import zskd


def test_agreement_and_kd_by_hand():
    teacher = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    student = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    agree, kd = heldout.agreement_and_kd(student, teacher, temperature=2.0)
    assert agree == 0.5

    def softmax(z):
        e = np.exp(z - z.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)
    t, s = softmax(teacher / 2.0), softmax(student / 2.0)
    assert kd == pytest.approx(4.0 * np.mean(-(t * np.log(s)).sum(-1)), rel=1e-5)


def test_monitor_logs_every_n_epochs_and_the_last(tiny_teacher):
    x, _ = blob_images(30, seed=3)
    monitor = heldout.HeldoutMonitor(tiny_teacher, tiny_teacher, x, temperature=20.0,
                                     seed=1, every=3, epochs=4)
    logged = []
    for epoch in range(4):
        logs = {}
        monitor.on_epoch_end(epoch, logs)
        logged.append(logs)
    assert [bool(l) for l in logged] == [False, False, True, True]
    # the teacher agrees with itself everywhere, on the images and their augmented copies
    assert set(logged[2]) == set(heldout.COLUMNS)
    assert logged[2]["heldout_agreement"] == logged[2]["heldout_aug_agreement"] == 1.0
    # the augmented copy differs from the images (every image gets an op)
    assert not np.allclose(monitor.sets["heldout"], monitor.sets["heldout_aug"])


def test_monitor_rejects_an_empty_set(tiny_teacher):
    with pytest.raises(ValueError, match="at least one image"):
        heldout.HeldoutMonitor(tiny_teacher, tiny_teacher, np.zeros((0, 32, 32, 1)),
                               temperature=20.0, seed=0)


def _config(**kw):
    return zskd.Config(num_impressions=60, craft_iterations=10, craft_lr=0.5,
                       craft_batch_size=10, parallel_batches=3, craft_processes=1,
                       student_epochs=2, student_lr=1e-2, batch_size=30, finetune_epochs=2,
                       eval_every=1, **kw)


def test_run_with_heldout_set_keeps_the_transfer_set_and_logs_agreement(tiny_teacher,
                                                                          tmp_path):
    plain, monitored = tmp_path / "plain", tmp_path / "monitored"
    keras.utils.set_random_seed(0)
    zskd.run(tiny_teacher, models.lenet5_half(), str(plain), _config(augment=False))
    keras.utils.set_random_seed(0)
    result = zskd.run(tiny_teacher, models.lenet5_half(), str(monitored),
                      _config(heldout_impressions=20))
    assert result["crafting"]["heldout"]["num_impressions"] == 20
    held = store.load(str(monitored / "heldout_set"), keys=("images",))["images"]
    ours = store.load(str(monitored / "transfer_set"), keys=("images",))["images"]
    theirs = store.load(str(plain / "transfer_set"), keys=("images",))["images"]
    assert held.shape == (20, 32, 32, 1)
    np.testing.assert_array_equal(ours, theirs)  # own seed streams: same transfer set
    assert not any(np.allclose(h, o) for h in held[:3] for o in ours)
    for stage in ("student", "student_augmented"):
        history = training.read_history(
            training.stage_paths(str(monitored), stage)["csv"])
        for column in heldout.COLUMNS:
            assert len(history[column]) == 2, (stage, column)
        assert all(0 <= v <= 1 for v in history["heldout_agreement"])
    # monitoring draws no random numbers: the student trains exactly as without it
    history = training.read_history(training.stage_paths(str(monitored), "student")["csv"])
    plain_history = training.read_history(training.stage_paths(str(plain), "student")["csv"])
    np.testing.assert_allclose(history["kd_loss"], plain_history["kd_loss"], rtol=1e-6)


def test_config_rejects_negative_heldout():
    with pytest.raises(ValueError, match="heldout_impressions"):
        zskd.Config(heldout_impressions=-1).validate()


@pytest.mark.parametrize("args", [["--heldout_impressions=15"], ["--heldout_impressions=-1"]])
def test_binary_rejects_bad_heldout_flag(tmp_path, args):
    assert_rejected_before_any_work("experiments.mnist_zskd", tmp_path, args,
                                    "--heldout_impressions")
