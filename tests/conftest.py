import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_teacher():
    """A LeNet-5 trained for a few steps on ``blob_images``: confident, structured logits."""
    from zskd_tf import distill, models
    keras.utils.set_random_seed(0)
    teacher = models.lenet5()
    x, y = blob_images(1024)
    distill.compile_classifier(teacher, 3e-3)
    teacher.fit(x, y, batch_size=64, epochs=3, verbose=0)
    return teacher


def blob_images(n, num_classes=10, size=32, seed=0):
    """Synthetic separable data: class k is a bright 8x8 square at one of 10 positions."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, num_classes, n).astype(np.int32)
    x = rng.uniform(0, 0.2, (n, size, size, 1)).astype(np.float32)
    for i, k in enumerate(y):
        r, c = divmod(int(k), 4)
        x[i, 2 + 10 * r:10 + 10 * r, 2 + 7 * c:10 + 7 * c, 0] += 0.8
    return x, y


def write_blob_mnist(directory, n_train, n_test):
    """A tiny ``mnist.npz`` (Keras layout, 28x28 uint8) of ``blob_images`` in ``directory``."""
    def u8(n, seed):
        x, y = blob_images(n, size=28, seed=seed)
        return (np.clip(x[..., 0], 0, 1) * 255).astype(np.uint8), y.astype(np.uint8)
    (x, y), (xt, yt) = u8(n_train, 0), u8(n_test, 1)
    np.savez(os.path.join(directory, "mnist.npz"), x_train=x, y_train=y, x_test=xt, y_test=yt)


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_binary_run(tmp_path, teacher, n_train=100, n_test=100):
    """Blob MNIST and ``teacher`` saved under ``tmp_path`` for a binary: (its workdir,
    [--data_dir, --teacher flags])."""
    write_blob_mnist(tmp_path, n_train, n_test)
    path = tmp_path / "teacher.keras"
    teacher.save(path)
    return tmp_path / "w", [f"--data_dir={tmp_path}", f"--teacher={path}"]


def run_module(module, *args, timeout=300):
    """``python -m module args`` from the repository root, without $ZSKD_DATA_DIR (so
    data comes only from the flags); returns the CompletedProcess."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("ZSKD_DATA_DIR", None)
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO,
                          capture_output=True, text=True, env=env, timeout=timeout)


def assert_rejected_before_any_work(module, tmp_path, args, flag):
    """The binary exits non-zero naming ``flag`` and creates no workdir."""
    workdir = tmp_path / "w"
    proc = run_module(module, f"--workdir={workdir}", *args)
    assert proc.returncode != 0
    assert flag in proc.stderr
    assert not workdir.exists()  # nothing was started


class Interrupt(Exception):
    """Raised from an ``on_shard`` callback to simulate a kill between shards."""


def small_craft(teacher, n=60):
    """Targets for ``n`` impressions (betas 1.0 and 0.1) and a 4-step crafting config."""
    from zskd_tf import config as config_lib
    from zskd_tf import similarity, targets
    _, alpha = similarity.from_model(teacher)
    t = targets.sample(alpha, n, betas=(1.0, 0.1), seed=0)
    return t, config_lib.CraftConfig(lr=0.3, batch_size=5, iterations=4)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "multi_worker: starts TensorFlow processes that train together over "
        "localhost ports (about 90 s; deselect with -m 'not multi_worker')")
