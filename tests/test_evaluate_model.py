import json

import keras

from conftest import run_module, write_blob_mnist
from zskd_tf import data
from zskd_tf import distill
from zskd_tf import io_utils
from zskd_tf import models


def test_binary_prints_and_writes_per_class_figures(tmp_path):
    write_blob_mnist(tmp_path, 10, 200)
    keras.utils.set_random_seed(0)
    path = str(tmp_path / "m.keras")
    io_utils.save_model(models.lenet5_half(), path)
    out = tmp_path / "o" / "per_class.json"
    proc = run_module("experiments.evaluate_model", f"--model={path}", "--dataset=mnist",
                      f"--data_dir={tmp_path}", f"--out={out}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["command"].startswith("python -m experiments.evaluate_model")
    assert len(result["per_class_accuracy"]) == 10 and len(result["class_names"]) == 10
    assert abs(sum(result["predicted_share"]) - 100.0) < 1e-6
    assert "predicted as" in proc.stdout


def test_binary_rejects_a_missing_model(tmp_path):
    proc = run_module("experiments.evaluate_model", f"--model={tmp_path / 'none.keras'}")
    assert proc.returncode != 0 and "--model" in proc.stderr



def test_split_train_scores_the_training_images(tmp_path):
    write_blob_mnist(tmp_path, 150, 60)
    keras.utils.set_random_seed(1)
    path = str(tmp_path / "m.keras")
    model = models.lenet5_half()
    io_utils.save_model(model, path)
    dataset = data.load("mnist", str(tmp_path))
    expected = distill.evaluate(model, dataset.x_train, dataset.y_train)["test_accuracy"]
    out = tmp_path / "train.json"
    proc = run_module("experiments.evaluate_model", f"--model={path}", "--dataset=mnist",
                      "--split=train", f"--data_dir={tmp_path}", f"--out={out}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["split"] == "train" and result["num_images"] == 150
    assert "test_accuracy" not in result
    assert abs(result["train_accuracy"] - expected) < 1e-6
