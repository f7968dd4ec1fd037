"""A teacher that cannot serve is rejected before any crafting, with a one-line message."""
import json
import zipfile

import keras
import pytest

from conftest import run_module, write_blob_mnist
from zskd_tf import models
from zskd_tf import zskd


def _softmax_teacher():
    model = models.lenet5()
    return keras.Model(model.input, keras.layers.Softmax(name="probabilities")(model.output))


def _dense_softmax_teacher():
    x = inputs = keras.Input((32, 32, 1))
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))


def _lambda_softmax_teacher():
    """Probabilities the last layer's name does not give away: only the outputs do."""
    model = models.lenet5()
    return keras.Model(model.input, keras.layers.Lambda(keras.ops.softmax)(model.output))


def _no_dense_teacher():
    x = inputs = keras.Input((32, 32, 1))
    x = keras.layers.Conv2D(10, 3)(x)
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))


BAD_TEACHERS = {
    "7 classes": (lambda: models.lenet5(num_classes=7), "10 classes"),
    "28x28 inputs": (lambda: models.lenet5(input_shape=(28, 28, 1)), r"\(32, 32, 1\)"),
    "softmax layer": (_softmax_teacher, "logits"),
    "softmax dense": (_dense_softmax_teacher, "logits"),
    "softmax outputs": (_lambda_softmax_teacher, "logits"),
    "no final dense": (_no_dense_teacher, "Dense"),
}


@pytest.mark.parametrize("name", sorted(BAD_TEACHERS))
def test_check_rejects_a_teacher_that_cannot_serve(name):
    from zskd_tf.teachers import checks
    build, message = BAD_TEACHERS[name]
    with pytest.raises(checks.TeacherError, match=message) as error:
        checks.check(build(), (32, 32, 1), 10)
    assert "\n" not in str(error.value)
    assert isinstance(error.value, ValueError)


def test_check_accepts_the_paper_teachers(tiny_teacher):
    from zskd_tf.teachers import checks
    checks.check(tiny_teacher, (32, 32, 1), 10)
    checks.check(models.lenet5(), (32, 32, 1), 10)  # untrained: logits near zero
    checks.check(models.alexnet(), (32, 32, 3), 10)


def _tiny_config():
    return zskd.Config(num_impressions=40, craft_iterations=2, craft_batch_size=10,
                       parallel_batches=2, student_epochs=1, batch_size=20,
                       finetune_epochs=0, craft_processes=1)


@pytest.mark.parametrize("name", ["7 classes", "28x28 inputs", "softmax layer"])
def test_run_rejects_a_bad_teacher_before_crafting(name, tmp_path):
    build, message = BAD_TEACHERS[name]
    with pytest.raises(ValueError, match=message):
        zskd.run(build(), models.lenet5_half(), str(tmp_path), _tiny_config())
    assert not (tmp_path / "transfer_set").exists()
    assert not (tmp_path / "similarity.npy").exists()


def test_run_checks_the_teacher_against_the_student(tmp_path):
    # a 28x28 teacher with a 28x28 student is consistent; against a 32x32 student it is not
    teacher = models.lenet5(input_shape=(28, 28, 1))
    with pytest.raises(ValueError, match=r"\(32, 32, 1\)"):
        zskd.run(teacher, models.lenet5_half(), str(tmp_path), _tiny_config())
    with pytest.raises(ValueError, match="7 classes|7 outputs|7\\)"):
        zskd.run(models.lenet5(), models.lenet5_half(num_classes=7), str(tmp_path),
                 _tiny_config())
    assert not (tmp_path / "transfer_set").exists()


def _not_keras_files(tmp_path, tiny_teacher):
    good = tmp_path / "good.keras"
    tiny_teacher.save(good)
    files = {"text.keras": b"hello\n", "truncated.keras": good.read_bytes()[:2000]}
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    with zipfile.ZipFile(tmp_path / "empty_zip.keras", "w") as z:
        z.writestr("readme.txt", "not a model")
    (tmp_path / "model.txt").write_bytes(good.read_bytes())
    return ["text.keras", "truncated.keras", "empty_zip.keras", "model.txt"]


def test_load_names_a_file_that_is_not_a_keras_model(tmp_path, tiny_teacher):
    for name in _not_keras_files(tmp_path, tiny_teacher):
        path = tmp_path / name
        with pytest.raises(ValueError) as error:
            models.load(path)
        text = str(error.value)
        assert f"{path} is not a Keras .keras model file: " in text, text
        assert "File not found" not in text and "\n" not in text
    with pytest.raises(FileNotFoundError, match="no model file at .*missing.keras"):
        models.load(tmp_path / "missing.keras")
    assert models.load(tmp_path / "good.keras").output_shape == (None, 10)


def test_binary_rejects_a_non_keras_teacher_file_before_any_work(tmp_path, tiny_teacher):
    write_blob_mnist(tmp_path, 100, 100)
    for name in ("text.keras", "truncated.keras"):
        _not_keras_files(tmp_path, tiny_teacher)
        workdir = tmp_path / f"w_{name}"
        proc = run_module("experiments.mnist_zskd", f"--workdir={workdir}",
                          f"--data_dir={tmp_path}", f"--teacher={tmp_path / name}",
                          "--num_impressions=40", "--craft_iterations=2",
                          "--craft_batch_size=10", "--parallel_batches=2",
                          "--student_epochs=1", "--finetune_epochs=0", "--batch_size=20")
        assert proc.returncode != 0
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith("--teacher: ") or " --teacher: " in last, proc.stderr[-2000:]
        assert "is not a Keras .keras model file" in last
        assert "Traceback" not in proc.stderr and "File not found" not in proc.stderr
        assert not workdir.exists()


@pytest.mark.parametrize("name", ["7 classes", "28x28 inputs", "softmax layer"])
def test_binary_rejects_a_bad_teacher_and_keeps_the_previous_config(name, tmp_path):
    write_blob_mnist(tmp_path, 100, 100)
    teacher = tmp_path / "teacher.keras"
    BAD_TEACHERS[name][0]().save(teacher)
    workdir = tmp_path / "w"
    workdir.mkdir()
    previous = json.dumps({"command": "a finished run"}).encode()
    (workdir / "config.json").write_bytes(previous)
    proc = run_module("experiments.mnist_zskd", f"--workdir={workdir}",
                      f"--data_dir={tmp_path}", f"--teacher={teacher}",
                      "--num_impressions=40", "--craft_iterations=2", "--craft_batch_size=10",
                      "--parallel_batches=2", "--student_epochs=1", "--finetune_epochs=0",
                      "--batch_size=20")
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert "--teacher" in last, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert (workdir / "config.json").read_bytes() == previous
    assert not (workdir / "transfer_set").exists()
