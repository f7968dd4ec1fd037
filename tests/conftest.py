import os

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
