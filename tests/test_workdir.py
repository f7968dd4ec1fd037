"""One run per workdir; a --workdir that cannot be one, a rejected run and student_kd's
numeric flags never get as far as touching it."""
import json
import os
import subprocess
import sys
import time

import pytest

from conftest import REPO, assert_rejected_before_any_work, run_module, write_blob_mnist

BINARIES = ("experiments.mnist_zskd", "experiments.train_teacher", "experiments.student_kd",
            "experiments.arbitrary_transfer")


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory, tiny_teacher):
    path = tmp_path_factory.mktemp("teacher") / "teacher.keras"
    tiny_teacher.save(path)
    return path


def _cheap_args(module, data_dir, teacher):
    """Flags that make ``module`` a short run on the blob data (if it ever got that far)."""
    return {
        "experiments.mnist_zskd": [f"--teacher={teacher}", "--num_impressions=40",
                                   "--craft_iterations=2", "--craft_batch_size=10",
                                   "--parallel_batches=2", "--student_epochs=1",
                                   "--finetune_epochs=0", "--batch_size=20"],
        "experiments.train_teacher": ["--teacher_epochs=1", "--batch_size=50"],
        "experiments.student_kd": [f"--teacher={teacher}", "--student_epochs=1",
                                   "--batch_size=50"],
        "experiments.arbitrary_transfer": [f"--teacher={teacher}", "--transfer=uniform_noise",
                                           "--num_samples=40", "--noise_pool=100",
                                           "--student_epochs=1", "--finetune_epochs=0",
                                           "--batch_size=20"],
    }[module] + [f"--data_dir={data_dir}"]


def _hold_lock(workdir):
    """A process that holds ``workdir``'s lock until killed (started and holding)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from zskd_tf import io_utils; "
         "io_utils.lock_workdir(sys.argv[1]); print('locked', flush=True); time.sleep(120)",
         str(workdir)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_lock_is_exclusive_reentrant_and_names_its_holder(tmp_path):
    from zskd_tf import io_utils
    workdir = tmp_path / "w"
    holder = _hold_lock(workdir)
    try:
        with pytest.raises(io_utils.WorkdirBusy) as error:
            io_utils.lock_workdir(workdir)
        assert str(error.value) == (f"workdir {workdir} is busy: another run "
                                    f"(pid {holder.pid}) holds it")
    finally:
        holder.kill()  # the OS releases a dead process's lock
        holder.wait()
    io_utils.lock_workdir(workdir)
    io_utils.lock_workdir(workdir)  # this process holds it already: nothing to do
    io_utils.lock_workdir(str(workdir) + "/")


@pytest.mark.parametrize("module", BINARIES)
def test_a_second_run_on_a_busy_workdir_exits_at_once(module, tmp_path, teacher_file):
    write_blob_mnist(tmp_path, 100, 100)
    workdir = tmp_path / "w"
    workdir.mkdir()
    previous = json.dumps({"command": "the run that holds the workdir"}).encode()
    (workdir / "config.json").write_bytes(previous)
    holder = _hold_lock(workdir)
    try:
        start = time.monotonic()
        proc = run_module(module, f"--workdir={workdir}",
                          *_cheap_args(module, tmp_path, teacher_file), timeout=120)
        elapsed = time.monotonic() - start
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert f"workdir {workdir} is busy: another run (pid {holder.pid}) holds it" in last, \
        proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert (workdir / "config.json").read_bytes() == previous
    assert sorted(os.listdir(workdir)) == [".lock", "config.json"]
    assert elapsed < 60  # no data loaded, nothing trained


@pytest.mark.parametrize("module", BINARIES)
@pytest.mark.parametrize("inside", [False, True])
def test_workdir_that_is_a_file_is_rejected_before_any_work(module, inside, tmp_path,
                                                            teacher_file):
    existing = tmp_path / "results.json"
    existing.write_text("{}\n")
    workdir = existing / "run" if inside else existing
    proc = run_module(module, f"--workdir={workdir}",
                      *_cheap_args(module, tmp_path, teacher_file))
    assert proc.returncode != 0
    assert "--workdir must be a directory or a path that does not exist yet" in proc.stderr, \
        proc.stderr[-2000:]
    assert "FileExistsError" not in proc.stderr and "NotADirectoryError" not in proc.stderr
    assert existing.read_text() == "{}\n"


@pytest.mark.parametrize("args, flag", [
    (["--batch_size=0"], "--batch_size"), (["--batch_size=-5"], "--batch_size"),
    (["--eval_every=-1"], "--eval_every"), (["--temperature=inf"], "--temperature"),
    (["--student_lr=inf"], "--student_lr"), (["--kd_lambda=inf"], "--kd_lambda"),
    (["--kd_lambda=nan"], "--kd_lambda"), (["--seed=-1"], "--seed"),
])
def test_student_kd_rejects_bad_numbers_before_any_work(tmp_path, args, flag):
    assert_rejected_before_any_work("experiments.student_kd", tmp_path, args, flag)


def test_student_kd_rejects_a_non_keras_teacher_before_any_work(tmp_path):
    teacher = tmp_path / "teacher.keras"
    teacher.write_text("not a model\n")
    assert_rejected_before_any_work("experiments.student_kd", tmp_path,
                                    [f"--teacher={teacher}"], "--teacher")
    proc = run_module("experiments.student_kd", f"--workdir={tmp_path / 'w'}",
                      f"--teacher={teacher}")
    assert "is not a Keras .keras model file" in proc.stderr
