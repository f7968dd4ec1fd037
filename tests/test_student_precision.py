"""student_precision=mixed_bfloat16: the student trains in Keras mixed precision (float32
variables, bfloat16 layer compute, float32 logits and losses); the teacher stays float32."""
import json
import logging

import keras
import numpy as np
import pytest
from conftest import blob_images, run_module, tiny_binary_run

from zskd_tf import config as config_lib
from zskd_tf import distill, hardware, models, training, zskd

BF16 = "mixed_bfloat16"
CONFIG = config_lib.Config(num_impressions=60, student_epochs=1, finetune_epochs=1,
                           student_lr=1e-2, batch_size=16, eval_every=0, seed=3,
                           student_precision=BF16)


def _student(precision=BF16, name="lenet5_half"):
    keras.utils.set_random_seed(7)
    return models.get(name, dtype=precision)


@pytest.mark.parametrize("name", ["lenet5_half", "alexnet_half"])
def test_bf16_student_has_float32_variables_bf16_layers_and_float32_logits(name):
    student = _student(name=name)
    assert models.precision(student) == BF16
    assert {v.dtype for v in student.weights} == {"float32"}
    *hidden, logits = student.layers[1:]  # after the input
    assert {layer.compute_dtype for layer in hidden} == {"bfloat16"}
    assert logits.compute_dtype == "float32"
    x = np.zeros((2, *student.input_shape[1:]), np.float32)
    assert keras.backend.standardize_dtype(student(x).dtype) == "float32"
    # float32 (the default) builds the model it always did
    assert models.precision(models.get(name, dtype="float32")) == "float32"
    assert models.precision(models.get(name)) == "float32"


def test_one_bf16_epoch_trains_and_the_saved_student_reloads(tiny_teacher, tmp_path):
    x, y = blob_images(64, seed=4)
    student = _student()
    # the same weights in float32 give nearly the same KD loss before training
    same = _student("float32")
    same.set_weights(student.get_weights())
    teacher_logits = tiny_teacher(x, training=False)
    losses = [float(distill.kd_loss(teacher_logits, m(x, training=False), 20.0))
              for m in (student, same)]
    assert losses[0] == pytest.approx(losses[1], rel=0.02)
    result = zskd.distill_images(tiny_teacher, student, x, str(tmp_path), CONFIG)
    assert result["epochs"] == 1 and np.isfinite(result["final_logs"]["loss"])
    assert {v.dtype for v in student.weights} == {"float32"}
    saved = models.load(str(tmp_path / "student.keras"))
    assert models.precision(saved) == BF16
    np.testing.assert_array_equal(saved.predict(x, verbose=0), student.predict(x, verbose=0))
    assert 0 <= distill.evaluate(saved, x, y)["test_accuracy"] <= 100
    # a rerun reuses the finished stage (its weights into a new bf16 student)
    again = _student()
    assert zskd.distill_images(tiny_teacher, again, x, str(tmp_path), CONFIG)["reused"]
    np.testing.assert_array_equal(again.predict(x, verbose=0), student.predict(x, verbose=0))


def test_config_rule_rejects_other_precisions():
    for bad in ("bfloat16", "float16", "fp32", ""):
        with pytest.raises(config_lib.ConfigError, match="student_precision") as e:
            config_lib.Config(student_precision=bad).validate()
        assert e.value.field == "student_precision"
    assert config_lib.Config().resolved().student_precision == "float32"  # the paper's
    given = config_lib.Config(dataset="mnist", preset="paper", student_precision=BF16)
    assert given.differences_from_paper() == {
        "student_precision": {"value": BF16, "paper": "float32", "source": "given"}}


def test_a_rerun_in_another_precision_hits_the_stage_check(tiny_teacher, tmp_path):
    x = blob_images(48, seed=5)[0]
    float32 = config_lib.Config(**{**CONFIG.__dict__, "student_precision": "float32"})
    zskd.distill_images(tiny_teacher, _student("float32"), x, str(tmp_path), float32)
    with pytest.raises(training.StageMismatch, match="student_precision.*--restart_from=student"):
        zskd.distill_images(tiny_teacher, _student(), x, str(tmp_path), CONFIG)
    # a student built in the other precision than the config's is refused before any work
    with pytest.raises(ValueError, match="dtype='mixed_bfloat16'"):
        zskd.distill_images(tiny_teacher, _student("float32"), x, str(tmp_path / "b"), CONFIG)
    assert not (tmp_path / "b").exists()
    zskd.restart(str(tmp_path), "student")
    zskd.distill_images(tiny_teacher, _student(), x, str(tmp_path), CONFIG)
    with pytest.raises(training.StageMismatch, match="student_precision"):
        zskd.distill_images(tiny_teacher, _student("float32"), x, str(tmp_path), float32)


def test_without_native_bf16_it_warns_once_and_still_trains(monkeypatch, caplog):
    monkeypatch.setattr(hardware, "native_bf16", lambda: False)
    distill._warn_slow_bf16.cache_clear()
    student = _student()
    with caplog.at_level(logging.WARNING):
        distill.check_precision(student, BF16)
        distill.check_precision(student, BF16)
        distill.check_precision(_student("float32"), "float32")
    slow = [r for r in caplog.records if "without native bf16" in r.getMessage()]
    assert len(slow) == 1 and "slow" in slow[0].getMessage()
    distill._warn_slow_bf16.cache_clear()


def test_student_kd_binary_trains_in_bf16_and_refuses_a_float32_rerun(tmp_path, tiny_teacher):
    workdir, data_and_teacher = tiny_binary_run(tmp_path, tiny_teacher)
    args = [f"--workdir={workdir}", *data_and_teacher, "--num_samples=30",
            "--student_epochs=1"]
    proc = run_module("experiments.student_kd", *args, f"--student_precision={BF16}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((workdir / "results.json").read_text())
    assert results["student_precision"] == BF16
    assert models.precision(models.load(str(workdir / "student_kd.keras"))) == BF16
    proc = run_module("experiments.student_kd", *args)  # float32, the default
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode != 0 and last.startswith("error:") and "student_precision" in last


def test_runs_in_another_precision_are_not_the_planned_float32_runs():
    from zskd_tf import committed
    teacher = "pretrained/mnist_lenet5_wd.keras"
    planned = committed.student_kd("mnist", 0, teacher)
    record = {"command": "python -m experiments.student_kd --dataset=mnist --workdir=/w",
              "dataset": "mnist", "teacher": teacher}
    assert committed.differences(planned, committed.of_record(record)) == []  # float32
    bf16 = {**record, "student_precision": BF16}
    assert committed.differences(planned, committed.of_record(bf16)) == [
        ("student_precision", BF16, "float32")]
    zskd_run = committed.zskd("mnist", "reproduce", 0, teacher, {})
    other = committed.zskd("mnist", "reproduce", 0, teacher, {"student_precision": BF16})
    assert committed.differences(zskd_run, other) == [("student_precision", BF16, "float32")]
