import json

import keras

from conftest import run_module
from zskd_tf import io_utils
from zskd_tf import models


def test_target_shares_binary_writes_shares_that_sum_to_100(tmp_path):
    keras.utils.set_random_seed(0)
    path = str(tmp_path / "t.keras")
    io_utils.save_model(models.lenet5(), path)
    out = tmp_path / "shares.json"
    proc = run_module("experiments.target_shares", f"--teacher={path}", "--dataset=mnist",
                      "--beta=1.0,0.1", f"--out={out}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["command"].startswith("python -m experiments.target_shares")
    assert abs(sum(result["expected_target_share"]) - 100.0) < 1e-6
    assert len(result["concentration"]) == 10 and "of the target mass" in proc.stdout


def test_target_shares_binary_rejects_a_missing_teacher_and_a_bad_beta(tmp_path):
    proc = run_module("experiments.target_shares", f"--teacher={tmp_path / 'none.keras'}")
    assert proc.returncode != 0 and "--teacher" in proc.stderr
    keras.utils.set_random_seed(0)
    path = str(tmp_path / "t.keras")
    io_utils.save_model(models.lenet5(), path)
    proc = run_module("experiments.target_shares", f"--teacher={path}", "--beta=0,1")
    assert proc.returncode != 0 and "--beta" in proc.stderr
