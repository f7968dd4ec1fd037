import numpy as np
import pytest
import tensorflow as tf

from zskd_tf import augment as A


def _rand(n=2, c=3, seed=0):
    return np.random.default_rng(seed).random((n, 32, 32, c)).astype(np.float32)


def _smooth(n=2, c=1):
    yy, xx = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    img = 0.5 + 0.25 * np.sin(xx / 6.0) * np.cos(yy / 7.0) + 0.005 * yy
    return np.tile(img[None, :, :, None], (n, 1, 1, c)).astype(np.float32)


def _op(x, name, seed=None):
    return A.apply_op(x, name, seed=seed).numpy()


def test_suite_names():
    assert len(A.GEOMETRIC_OPS) == 102
    assert len(set(A.GEOMETRIC_OPS)) == 102
    for name in ("scale_0.9", "scale_0.75", "scale_0.6", "translate_left", "rotate_-90",
                 "rotate_90", "flip_lr", "flip_ud", "transpose", "scale_0.75+translate_up",
                 "translate_left+rotate_30", "scale_0.6+rotate_-10"):
        assert name in A.GEOMETRIC_OPS
    assert "rotate_0" not in A.GEOMETRIC_OPS
    assert A.num_ops(1) == 102 and A.num_ops(3) == 105
    assert A.op_matrix("rotate_30", 32, 32).shape == (8,)
    with pytest.raises(ValueError):
        A.apply_op(_rand(), "rotate_45")


@pytest.mark.parametrize("name,k", [("rotate_90", 1), ("rotate_-90", -1)])
def test_rotate_90_is_rot90(name, k):
    x = _rand()
    np.testing.assert_array_equal(_op(x, name), np.rot90(x, k=k, axes=(1, 2)))


def test_rotation_is_counter_clockwise_about_centre():
    x = _smooth()
    y = _op(x, "rotate_30")
    z = _op(y, "rotate_-30")
    # Rotating back recovers the central disc up to interpolation.
    yy, xx = np.meshgrid(np.arange(32) - 15.5, np.arange(32) - 15.5, indexing="ij")
    disc = (xx ** 2 + yy ** 2) < 12 ** 2
    assert np.abs(z - x)[:, disc].max() < 0.02


@pytest.mark.parametrize("name,ref", [
    ("flip_lr", lambda x: np.flip(x, 2)),
    ("flip_ud", lambda x: np.flip(x, 1)),
    ("transpose", lambda x: x.swapaxes(1, 2)),
])
def test_flips_exact(name, ref):
    x = _rand()
    np.testing.assert_array_equal(_op(x, name), ref(x))


def _shift(x, dy, dx):
    out = np.zeros_like(x)
    h, w = x.shape[1:3]
    out[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        x[:, max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


@pytest.mark.parametrize("d,dy,dx", [("left", 0, -6), ("right", 0, 6), ("up", -6, 0),
                                     ("down", 6, 0)])
def test_translate_exact(d, dy, dx):
    x = _rand()
    np.testing.assert_array_equal(_op(x, f"translate_{d}"), _shift(x, dy, dx))


@pytest.mark.parametrize("s", A.SCALES)
def test_scale_is_central_crop_and_resize(s):
    x = _rand()
    lo, hi = (1 - s) / 2, (1 + s) / 2
    ref = tf.image.crop_and_resize(x, [[lo, lo, hi, hi]] * 2, [0, 1], [32, 32]).numpy()
    np.testing.assert_allclose(_op(x, f"scale_{s:g}"), ref, atol=1e-5)
    const = np.full((1, 32, 32, 1), 0.37, np.float32)
    np.testing.assert_allclose(_op(const, f"scale_{s:g}"), const, atol=1e-6)


@pytest.mark.parametrize("name", ["translate_left+rotate_90", "translate_up+rotate_-90",
                                  "translate_right+rotate_90"])
def test_translate_rotate_90_composite_exact(name):
    x = _rand()
    first, second = name.split("+")
    np.testing.assert_array_equal(_op(x, name), _op(_op(x, first), second))


def test_composites_are_sequential():
    x = _smooth()
    for name in (n for n in A.GEOMETRIC_OPS if "+" in n):
        first, second = name.split("+")
        # The composed single resampling differs from two resamplings only by interpolation,
        # including the empty region the second op moves in from outside the intermediate frame.
        diff = np.abs(_op(x, name) - _op(_op(x, first), second))
        assert diff.max() < 0.02 and diff.mean() < 0.002, name
    # Scaling then rotating leaves empty corners (the scaled DI is only 32x32).
    ones = np.ones((1, 32, 32, 1), np.float32)
    assert _op(ones, "scale_0.6+rotate_50")[0, 0, 0, 0] == 0.0


def test_noise_ops():
    x = np.full((8, 32, 32, 3), 0.5, np.float32)
    sp = _op(x, "salt_pepper", seed=[1, 2])
    changed = np.any(sp != 0.5, axis=-1)
    assert abs(changed.mean() - A.SALT_PEPPER_AMOUNT) < 0.015
    assert abs((sp[..., 0] == 1).mean() - (sp[..., 0] == 0).mean()) < 0.015
    assert np.all((sp == 0) | (sp == 1) | (sp == 0.5))
    g = _op(x, "gaussian", seed=[1, 2])
    assert abs(np.std(g - x) - A.GAUSSIAN_SIGMA) < 0.01
    for name in A.NOISE_OPS:
        y = _op(_rand(c=3), name, seed=[3, 4])
        assert y.min() >= 0.0 and y.max() <= 1.0
        np.testing.assert_array_equal(y, _op(_rand(c=3), name, seed=[3, 4]))
        assert not np.array_equal(y, _op(_rand(c=3), name, seed=[3, 5]))


def test_augment_batch_prob_and_determinism():
    x = _rand(n=64, c=3)
    np.testing.assert_array_equal(A.augment_batch(x, [0, 1], prob=0.0).numpy(), x)
    a = A.augment_batch(x, [0, 1], prob=1.0).numpy()
    changed = np.any(a != x, axis=(1, 2, 3))
    assert changed.mean() > 0.95
    np.testing.assert_array_equal(a, A.augment_batch(x, [0, 1], prob=1.0).numpy())
    assert not np.array_equal(a, A.augment_batch(x, [0, 2], prob=1.0).numpy())
    half = np.any(A.augment_batch(x, [5, 6]).numpy() != x, axis=(1, 2, 3)).mean()
    assert 0.25 < half < 0.75
    assert a.min() >= 0.0 and a.max() <= 1.0


def test_augment_batch_noise_default():
    x = np.full((256, 32, 32, 1), 0.5, np.float32)
    # Geometric ops never brighten a constant image; noise ops would.
    assert A.augment_batch(x, [0, 3], prob=1.0).numpy().max() <= 0.5 + 1e-6
    assert A.augment_batch(x, [0, 3], prob=1.0, noise=True).numpy().max() > 0.6
    rgb = np.full((256, 32, 32, 3), 0.5, np.float32)
    assert A.augment_batch(rgb, [0, 3], prob=1.0).numpy().max() > 0.6
    assert A.augment_batch(rgb, [0, 3], prob=1.0, noise=False).numpy().max() <= 0.5 + 1e-6


def test_augment_batch_in_tf_data_and_function():
    x = _rand(n=16, c=1)
    ds = tf.data.Dataset.from_tensor_slices(x).batch(8).enumerate()
    ds = ds.map(lambda i, b: A.augment_batch(b, tf.stack([tf.constant(7, tf.int64), i])))
    outs = list(ds.as_numpy_iterator())
    assert [o.shape for o in outs] == [(8, 32, 32, 1)] * 2
    assert all(o.dtype == np.float32 for o in outs)
    again = list(ds.as_numpy_iterator())
    for o, p in zip(outs, again):
        np.testing.assert_array_equal(o, p)
    single = tf.data.Dataset.from_tensor_slices(x).map(lambda im: A.augment_batch(im, [1, 2]))
    assert next(iter(single)).shape == (32, 32, 1)
    f = tf.function(lambda b, s: A.augment_batch(b, s, prob=1.0))
    y = f(tf.constant(x), tf.constant([1, 2], tf.int64))
    assert y.shape == x.shape and y.dtype == tf.float32
    np.testing.assert_array_equal(y.numpy(), A.augment_batch(x, [1, 2], prob=1.0).numpy())


def _shifted(img, dx, dy):
    """``img`` with output pixel (y, x) read from (y + dy, x + dx); outside is 0."""
    out = np.zeros_like(img)
    h, w = img.shape[:2]
    for y in range(h):
        for x in range(w):
            if 0 <= y + dy < h and 0 <= x + dx < w:
                out[y, x] = img[y + dy, x + dx]
    return out


def test_flip_crop_is_an_exact_flip_and_shift_of_each_image():
    x = _rand(n=24, c=3, seed=5)
    out = A.flip_crop(x, seed=3, pad=4).numpy()
    assert out.shape == x.shape
    seen_flip, seen_shift = set(), set()
    for img, res in zip(x, out):
        matches = [(f, dx, dy) for f in (False, True) for dx in range(-4, 5)
                   for dy in range(-4, 5)
                   if np.allclose(_shifted(img[:, ::-1] if f else img, dx if not f else -dx,
                                           dy), res, atol=1e-6)]
        assert len(matches) == 1, matches
        seen_flip.add(matches[0][0])
        seen_shift.add(matches[0][1:])
    assert seen_flip == {False, True} and len(seen_shift) > 5
    np.testing.assert_array_equal(out, A.flip_crop(x, seed=3, pad=4).numpy())
    assert not np.array_equal(out, A.flip_crop(x, seed=4, pad=4).numpy())


def test_flip_crop_without_padding_only_flips():
    x = _rand(n=16, c=1, seed=6)
    out = A.flip_crop(x, seed=1, pad=0).numpy()
    for img, res in zip(x, out):
        assert np.array_equal(res, img) or np.array_equal(res, img[:, ::-1])
