import json
import os
import subprocess
import sys

import pytest


from conftest import run_module, write_blob_mnist

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args):
    return run_module("experiments.train_teacher", *args)


_PARSE = """import json, sys
from absl import flags
__import__(sys.argv[1])
flags.FLAGS(["prog", *sys.argv[3:]])
print(json.dumps({name: flags.FLAGS[name].value for name in sys.argv[2].split(",")}))
"""


def _parsed(module, names, *args):
    """The values of flags ``names`` after ``module`` parses ``args`` (no work is run)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-c", _PARSE, module, ",".join(names), *args],
                          cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _column(csv_lines, name):
    header = csv_lines[0].split(",")
    return [line.split(",")[header.index(name)] for line in csv_lines[1:]]


def test_binary_trains_evaluates_and_exports(tmp_path):
    write_blob_mnist(tmp_path, 600, 200)
    workdir, export = tmp_path / "run", tmp_path / "out" / "teacher.keras"
    proc = _run("--dataset=mnist", "--model=lenet5_half", f"--workdir={workdir}",
                f"--data_dir={tmp_path}", "--teacher_epochs=2", "--batch_size=64",
                "--teacher_lr=0.003", "--teacher_lr_drops=1",
                f"--export={export}", "--weight_decay=1e-4")
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((workdir / "results.json").read_text())
    assert results["command"].startswith("python -m experiments.train_teacher")
    assert results["epochs"] == 2 and results["model"] == "lenet5_half"
    assert results["weight_decay"] == 1e-4 and results["lr_drops"] == [1]
    assert results["data"]["name"] == "mnist" and len(results["data"]["test_sha256"]) == 64
    history = (workdir / "lenet5_half_history.csv").read_text().splitlines()
    rates = [float(r) for r in _column(history, "learning_rate")]
    assert rates == pytest.approx([0.003, 0.0003])
    assert results["test_accuracy"] > 30.0 and results["paper_test_accuracy"] == 98.92
    assert export.exists()
    config = json.loads((workdir / "config.json").read_text())
    assert config["flags"]["epochs"] == 2 and config["flags"]["model"] == "lenet5_half"
    assert config["flags"]["teacher_epochs"] == 2 and config["flags"]["teacher_lr"] == 0.003
    assert "logtostderr" not in config["flags"]  # absl's own flags are left out
    proc = _run("--dataset=mnist", "--model=lenet5_half", f"--workdir={workdir}",
                f"--data_dir={tmp_path}", "--teacher_epochs=3", "--batch_size=64",
                "--teacher_lr=0.003", "--teacher_lr_drops=1", "--weight_decay=1e-3")
    assert proc.returncode != 0 and "weight_decay differ" in proc.stderr.splitlines()[-1]


def test_binary_validates_flags(tmp_path):
    proc = _run(f"--workdir={tmp_path / 'w'}", "--teacher_epochs=0")
    assert proc.returncode != 0 and "--teacher_epochs" in proc.stderr
    proc = _run(f"--workdir={tmp_path / 'w'}", "--epochs=0")  # the old name reaches it too
    assert proc.returncode != 0 and "--teacher_epochs must be > 0" in proc.stderr
    proc = _run(f"--workdir={tmp_path / 'w'}", "--teacher_augment=mixup")
    assert proc.returncode != 0 and "--teacher_augment" in proc.stderr
    proc = _run(f"--workdir={tmp_path / 'w'}", "--teacher_lr_drops=60,60")
    assert proc.returncode != 0 and "--teacher_lr_drops" in proc.stderr
    proc = _run(f"--workdir={tmp_path / 'w'}", "--weight_decay=-1")
    assert proc.returncode != 0 and "--weight_decay" in proc.stderr
    proc = _run(f"--workdir={tmp_path / 'w'}", "--dataset=imagenet")
    assert proc.returncode != 0 and "dataset" in proc.stderr
    assert not (tmp_path / "w").exists()


def test_student_kd_binary(tmp_path, tiny_teacher):
    write_blob_mnist(tmp_path, 300, 100)
    teacher = tmp_path / "teacher.keras"
    tiny_teacher.save(teacher)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.student_kd", f"--workdir={tmp_path / 'kd'}",
         f"--data_dir={tmp_path}", f"--teacher={teacher}", "--student_epochs=2",
         "--student_lr=0.02", "--batch_size=64"],
        cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((tmp_path / "kd" / "results.json").read_text())
    assert results["row"] == "student_kd" and results["paper_test_accuracy"] == 99.25
    assert results["epochs"] == 2 and 0 <= results["test_accuracy"] <= 100
    assert (tmp_path / "kd" / "student_kd.keras").exists()
    config = json.loads((tmp_path / "kd" / "config.json").read_text())
    assert config["flags"]["student_epochs"] == 2 and config["flags"]["student_lr"] == 0.02


def test_train_teacher_old_flag_names_are_aliases(tmp_path):
    new = ["teacher_epochs", "teacher_lr", "teacher_augment"]
    got = _parsed("experiments.train_teacher", new, f"--workdir={tmp_path / 'w'}",
                  "--epochs=7", "--lr=0.5", "--augment=flip_crop")
    assert got == {"teacher_epochs": 7, "teacher_lr": 0.5, "teacher_augment": "flip_crop"}
    assert got == _parsed("experiments.train_teacher", new, f"--workdir={tmp_path / 'w'}",
                          "--teacher_epochs=7", "--teacher_lr=0.5", "--teacher_augment=flip_crop")


def test_student_kd_flags_and_their_old_names(tmp_path):
    new = ["student_epochs", "student_lr"]
    got = _parsed("experiments.student_kd", new, f"--workdir={tmp_path / 'w'}", "--epochs=7",
                  "--lr=0.5")
    assert got == {"student_epochs": 7, "student_lr": 0.5}
    proc = run_module("experiments.student_kd", f"--workdir={tmp_path / 'w'}", "--lr=0")
    assert proc.returncode != 0 and "--student_lr must be > 0" in proc.stderr
    proc = run_module("experiments.student_kd", f"--workdir={tmp_path / 'w'}",
                      "--student_epochs=0")
    assert proc.returncode != 0 and "--student_epochs must be > 0" in proc.stderr
    assert not (tmp_path / "w").exists()
