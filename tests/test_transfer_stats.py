import json

import numpy as np
import pytest

from conftest import run_module, small_craft
from zskd_tf import scheduling
from zskd_tf import transfer_stats


def test_class_breakdown_by_hand():
    targets = np.array([[0.6, 0.4, 0.0], [0.7, 0.1, 0.2], [0.2, 0.3, 0.5], [0.1, 0.8, 0.1]])
    soft = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8], [0.1, 0.8, 0.1]])
    classes = np.array([0, 0, 2, 1])
    s = transfer_stats.class_breakdown(soft, targets, classes, losses=[1.0, 3.0, 0.5, 0.25])
    np.testing.assert_allclose(s["target_share"], [40.0, 40.0, 20.0])
    np.testing.assert_allclose(s["target_top1_share"], [50.0, 25.0, 25.0])
    np.testing.assert_allclose(s["teacher_top1_share"], [25.0, 50.0, 25.0])
    np.testing.assert_allclose(s["teacher_share"], [32.5, 42.5, 25.0])
    # the teacher labels one of the two images aimed at class 0 as 0, and the others right
    assert s["hit_rate"] == [50.0, 100.0, 100.0]
    assert s["mean_loss"] == [2.0, 0.25, 0.5]
    assert "student_agreement" not in s
    student = np.array([[1.0, 0, 0], [1.0, 0, 0], [0, 0, 1.0], [0, 1.0, 0]])
    s = transfer_stats.class_breakdown(soft, targets, classes, student_logits=student)
    # the teacher labels images 1 and 3 as class 1; the student agrees on image 3 only
    assert s["student_agreement"] == [100.0, 50.0, 100.0]


def test_class_breakdown_marks_absent_classes_and_checks_shapes():
    s = transfer_stats.class_breakdown(np.eye(3)[[0, 0]], np.eye(3)[[0, 0]], [0, 0],
                                       losses=[1.0, 1.0])
    assert s["hit_rate"][1] is None and s["mean_loss"][2] is None
    with pytest.raises(ValueError, match="same"):
        transfer_stats.class_breakdown(np.zeros((2, 3)), np.zeros((2, 4)), [0, 0])
    with pytest.raises(ValueError, match="classes for"):
        transfer_stats.class_breakdown(np.zeros((2, 3)), np.zeros((2, 3)), [0])


def test_binary_writes_the_breakdown_of_a_crafted_set(tiny_teacher, tmp_path):
    t, config = small_craft(tiny_teacher, n=40)
    directory = tmp_path / "ts"
    scheduling.craft_transfer_set(str(directory), tiny_teacher, t, config, seed=3,
                             parallel_batches=2)
    out = tmp_path / "breakdown.json"
    student = tmp_path / "student.keras"
    tiny_teacher.save(student)  # the teacher as its own student agrees everywhere
    proc = run_module("experiments.transfer_set_classes", f"--transfer_set={directory}",
                      f"--out={out}", f"--student={student}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["command"].startswith("python -m experiments.transfer_set_classes")
    assert result["num_impressions"] == 40
    assert sum(result["teacher_top1_share"]) == pytest.approx(100.0)
    np.testing.assert_allclose(result["target_share"], t.targets.mean(0) * 100, rtol=1e-5)
    assert "hit rate" in proc.stdout
    assert all(v in (None, 100.0) for v in result["student_agreement"])
    assert any(v == 100.0 for v in result["student_agreement"])


def test_binary_rejects_a_directory_without_a_transfer_set(tmp_path):
    proc = run_module("experiments.transfer_set_classes", f"--transfer_set={tmp_path}")
    assert proc.returncode != 0 and "--transfer_set" in proc.stderr
