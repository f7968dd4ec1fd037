import os

import keras
import numpy as np
import pytest

from zskd_tf import models
from zskd_tf import similarity

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures",
                       "authors_cifar10_alexnet_final_layer.npz")


def _rows_minmax(m):
    m = np.asarray(m, np.float64)
    lo, hi = m.min(1, keepdims=True), m.max(1, keepdims=True)
    return (m - lo) / (hi - lo)


def test_conformance_with_authors_matrix():
    ref = np.load(FIXTURE)
    sim = similarity.class_similarity(ref["kernel"])
    ours = similarity.concentration(sim)
    np.testing.assert_allclose(ours, _rows_minmax(ref["similarity_scale_1"]), atol=1e-5)
    np.testing.assert_allclose(ours, _rows_minmax(ref["similarity_scale_0_1"]), atol=1e-5)
    # The matrix is meaningful: automobile-truck, airplane-ship, cat-dog are the largest.
    off = sim - np.eye(10) * 10
    assert np.argmax(off[1]) == 9 and np.argmax(off[0]) == 8 and np.argmax(off[3]) == 5


def test_cosine_and_concentration_properties():
    w = np.random.default_rng(0).normal(size=(20, 5))
    sim = similarity.class_similarity(w)
    np.testing.assert_allclose(np.diag(sim), 1.0)
    np.testing.assert_allclose(sim, sim.T)
    expected = (w[:, 1] @ w[:, 3]) / np.linalg.norm(w[:, 1]) / np.linalg.norm(w[:, 3])
    assert sim[1, 3] == pytest.approx(expected)
    alpha = similarity.concentration(sim)
    np.testing.assert_allclose(alpha.min(1), 0.0)
    np.testing.assert_allclose(alpha.max(1), 1.0)
    np.testing.assert_allclose(np.diag(alpha), 1.0)  # a class is most similar to itself


def test_from_model_finds_final_dense_kernel():
    teacher = models.lenet5()
    kernel = similarity.final_layer_kernel(teacher)
    np.testing.assert_array_equal(kernel, teacher.get_layer("fc7").kernel.numpy())
    sim, alpha = similarity.from_model(teacher)
    assert sim.shape == alpha.shape == (10, 10)


def test_model_without_final_dense_layer_is_rejected():
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(10, 8)(inputs)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x), name="allconv")
    with pytest.raises(ValueError, match="no final Dense layer"):
        similarity.final_layer_kernel(model)


def test_bad_kernels_rejected():
    with pytest.raises(ValueError, match="features, classes"):
        similarity.class_similarity(np.ones(5))
    w = np.ones((4, 3))
    w[:, 1] = 0
    with pytest.raises(ValueError, match="all zero"):
        similarity.class_similarity(w)
