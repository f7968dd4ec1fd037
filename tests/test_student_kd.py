"""experiments.student_kd --num_samples: a class-balanced, seeded subset of the training set."""
import json

import numpy as np
import pytest

from conftest import assert_rejected_before_any_work, run_module, tiny_binary_run
from experiments import common


def test_balanced_subset_is_class_balanced_and_seeded():
    labels = np.repeat(np.arange(10), [50, 3, 40, 40, 40, 40, 40, 40, 40, 40])
    subset = common.balanced_subset(labels, 100, seed=1)
    counts = np.bincount(labels[subset], minlength=10)
    assert len(subset) == len(set(subset)) == 100 and counts[1] == 3  # class 1 gives all
    assert counts.max() - counts[counts != 3].min() <= 1  # the rest share the shortfall
    assert np.array_equal(subset, common.balanced_subset(labels, 100, seed=1))
    assert not np.array_equal(subset, common.balanced_subset(labels, 100, seed=2))
    assert list(np.bincount(labels[common.balanced_subset(labels, 30, 0)])) == [3] * 10


def test_student_kd_num_samples_is_recorded_and_validated(tmp_path, tiny_teacher):
    workdir, data_and_teacher = tiny_binary_run(tmp_path, tiny_teacher)
    proc = run_module("experiments.student_kd", f"--workdir={workdir}", *data_and_teacher,
                      "--num_samples=30", "--student_epochs=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((workdir / "results.json").read_text())
    assert results["num_samples"] == 30 and results["train_class_counts"] == [3] * 10
    for bad in ("--num_samples=9", "--num_samples=101"):  # 100 training images
        assert_rejected_before_any_work("experiments.student_kd", tmp_path / bad[2:],
                                        [*data_and_teacher, bad], "--num_samples")



def test_student_kd_recipe_flags_train_record_and_guard_the_stage(tmp_path, tiny_teacher):
    workdir, data_and_teacher = tiny_binary_run(tmp_path, tiny_teacher)
    recipe = ["--student_augment=flip_crop", "--weight_decay=1e-3", "--student_lr_drops=1"]
    proc = run_module("experiments.student_kd", f"--workdir={workdir}", *data_and_teacher,
                      "--student_epochs=2", "--student_lr=0.01", *recipe)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((workdir / "results.json").read_text())
    assert (results["augment"], results["weight_decay"], results["lr_drops"]) == \
        ("flip_crop", 1e-3, [1])
    history = (workdir / "student_kd_history.csv").read_text().splitlines()
    column = history[0].split(",").index("learning_rate")
    assert [float(line.split(",")[column]) for line in history[1:]] == \
        pytest.approx([0.01, 0.001])
    # continuing the stage without the augmentation is another run: refused
    proc = run_module("experiments.student_kd", f"--workdir={workdir}", *data_and_teacher,
                      "--student_epochs=3", "--student_lr=0.01", *recipe[1:])
    assert proc.returncode != 0 and "augment" in proc.stderr
    assert_rejected_before_any_work("experiments.student_kd", tmp_path / "bad",
                                    [*data_and_teacher, "--student_lr_drops=0"],
                                    "--student_lr_drops")
    assert common.valid_lr_drops(["60", "80"]) and common.valid_lr_drops([])
    assert not any(common.valid_lr_drops(v) for v in (["0"], ["60", "60"], ["60", "x"]))
