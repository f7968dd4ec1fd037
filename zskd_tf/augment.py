"""Data Impression augmentation (ZSKD appendix, section 3 "Details on Augmentation").

Images are float NHWC in [0, 1] (32x32, C = 1 or 3).  The suite:

* ``scale_s`` for s in 0.9, 0.75, 0.6 -- central zoom: crop the central
  s-fraction box and resize it back to full size (bilinear).  Identical to
  ``tf.image.crop_and_resize`` with box ``[(1-s)/2, (1-s)/2, (1+s)/2, (1+s)/2]``.
* ``translate_{left,right,up,down}`` -- shift the content by
  ``round(0.2 * W)`` (horizontal) or ``round(0.2 * H)`` (vertical) pixels
  (6 px at 32x32); vacated pixels are 0.
* ``rotate_a`` for a in -90, -70, ..., 70, 90 (10 angles) -- counter-clockwise
  (as displayed, rows pointing down) by ``a`` degrees about the image centre,
  bilinear, fill 0.  ``rotate_90 == np.rot90(x, 1, axes=(1, 2))`` exactly.
* ``flip_lr``, ``flip_ud``, ``transpose`` -- exact (transpose needs H == W).
* ``scale_s+translate_d`` (12), ``translate_d+rotate_a`` (40),
  ``scale_s+rotate_a`` (30) -- the first op then the second.

In total 102 geometric ops (``GEOMETRIC_OPS``).  Every geometric op is an
affine map, stored as one 3x3 matrix (output pixel -> input pixel, the
``ImageProjectiveTransformV3`` convention, 8-vector form); a batch is resampled
with per-image matrices in one transform call.  Pixel centres sit at integer
indices, so the centre is ((W-1)/2, (H-1)/2) and flips / 90-degree rotations
map the pixel grid onto itself exactly.

Composites are sequential: the intermediate image (e.g. the scaled DI) is only
H x W, so whatever the second op moves in from outside it is 0.  The composed
matrix alone would reveal original content from outside the intermediate
frame, so composites are multiplied by the second op's bilinear coverage of
that frame (a transform of a ones image, 1 channel; see ``_edge_factor``).  A
composite thus equals its two parts applied in sequence up to interpolation
(max abs difference < 0.01 on a smooth image; exactly when both parts are
pixel-exact, e.g. translate+rotate_90) while resampling the DI only once.

``augment_batch`` draws per-image op indices, gathers their rows from
precomputed [num_ops + 1, 8] tables (last row: identity), and resamples only
the images that drew a geometric op (gather, one transform call, scatter);
noise is generated only for the images that drew a noise op.

Noise ops (``NOISE_OPS``; the paper uses them for RGB DIs only and gives no
parameters, so these are our choices):

* ``salt_pepper`` -- a fraction ``SALT_PEPPER_AMOUNT = 0.05`` of the pixel
  locations (all channels together) is set to 1 (salt) or 0 (pepper) with
  probability ``SALT_FRACTION = 0.5`` each (salt:pepper 1:1).
* ``gaussian`` -- add i.i.d. N(0, ``GAUSSIAN_SIGMA = 0.1``^2) per element.
* ``salt_pepper+gaussian`` -- Gaussian noise added to the salt-and-peppered DI.

Noisy results are clipped to [0, 1].  All randomness is stateless: a seed is
an int or an int tensor of shape [2].

``flip_crop`` is not the paper's: it is the usual CIFAR *teacher-training*
augmentation (random left-right flip, random crop of the zero-padded image), an
option of ``experiments.train_teacher``.
"""
import functools

import numpy as np
import tensorflow as tf

SCALES = (0.9, 0.75, 0.6)
TRANSLATE_FRACTION = 0.2
DIRECTIONS = ("left", "right", "up", "down")
ANGLES = tuple(range(-90, 91, 20))
FLIPS = ("flip_lr", "flip_ud", "transpose")

SALT_PEPPER_AMOUNT = 0.05
SALT_FRACTION = 0.5
GAUSSIAN_SIGMA = 0.1

_S = tuple(f"scale_{s:g}" for s in SCALES)
_T = tuple(f"translate_{d}" for d in DIRECTIONS)
_R = tuple(f"rotate_{a}" for a in ANGLES)

GEOMETRIC_OPS = (_S + _T + _R + FLIPS
                 + tuple(f"{s}+{t}" for s in _S for t in _T)
                 + tuple(f"{t}+{r}" for t in _T for r in _R)
                 + tuple(f"{s}+{r}" for s in _S for r in _R))
NOISE_OPS = ("salt_pepper", "gaussian", "salt_pepper+gaussian")

_IDENTITY8 = np.array([1, 0, 0, 0, 1, 0, 0, 0], np.float32)


def num_ops(channels):
    """Size of the default suite: 102 for grey (C == 1), 105 for RGB."""
    return len(GEOMETRIC_OPS) + (len(NOISE_OPS) if channels == 3 else 0)


def _forward(part, height, width):
    """3x3 forward (input -> output, (x, y, 1) column) matrix of one basic op."""
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    kind, _, arg = part.partition("_")
    m = np.eye(3)
    if kind == "scale":
        s = float(arg)
        m[0, 0] = m[1, 1] = 1.0 / s
        m[0, 2], m[1, 2] = cx * (1 - 1.0 / s), cy * (1 - 1.0 / s)
    elif kind == "translate":
        dx, dy = round(TRANSLATE_FRACTION * width), round(TRANSLATE_FRACTION * height)
        m[:2, 2] = {"left": (-dx, 0), "right": (dx, 0),
                    "up": (0, -dy), "down": (0, dy)}[arg]
    elif kind == "rotate":
        t = np.deg2rad(float(arg))
        c, s = np.cos(t), np.sin(t)
        # Counter-clockwise as displayed (y points down): v -> [[c, s], [-s, c]] v.
        r = np.array([[c, s], [-s, c]])
        m[:2, :2] = r
        m[:2, 2] = np.array([cx, cy]) - r @ np.array([cx, cy])
    elif part == "flip_lr":
        m[0] = (-1, 0, width - 1)
    elif part == "flip_ud":
        m[1] = (0, -1, height - 1)
    elif part == "transpose":
        if height != width:
            raise ValueError("transpose needs square images")
        m[:2] = ((0, 1, 0), (1, 0, 0))
    else:
        raise ValueError(f"unknown op {part!r}")
    return m


def _to_vector(forward):
    """Inverts a forward matrix into the 8-vector output -> input transform."""
    inv = np.linalg.inv(forward)
    inv = inv / inv[2, 2]
    snapped = np.round(inv * 4) / 4  # kill float noise around (half-)integers
    inv = np.where(np.abs(inv - snapped) < 1e-9, snapped, inv)
    return inv.reshape(-1)[:8].astype(np.float32)


def _check_name(name):
    if name not in GEOMETRIC_OPS and name not in NOISE_OPS:
        raise ValueError(f"unknown augmentation op {name!r}")


def op_matrix(name, height, width):
    """8-vector (output -> input pixel) transform of a geometric op; identity for noise ops."""
    _check_name(name)
    if name in NOISE_OPS:
        return _IDENTITY8.copy()
    m = np.eye(3)
    for part in name.split("+"):  # parts are applied left to right
        m = _forward(part, height, width) @ m
    return _to_vector(m)


def mask_matrix(name, height, width):
    """8-vector transform of a composite's last op (its frame mask); identity otherwise."""
    _check_name(name)
    if "+" not in name or name in NOISE_OPS:
        return _IDENTITY8.copy()
    return _to_vector(_forward(name.split("+")[-1], height, width))


@functools.lru_cache(maxsize=None)
def _tables(height, width, ops):
    """[len(ops) + 1, 8] transform and mask tables; the last row is the identity."""
    mats = np.stack([op_matrix(n, height, width) for n in ops] + [_IDENTITY8])
    masks = np.stack([mask_matrix(n, height, width) for n in ops] + [_IDENTITY8])
    return mats, masks


def _transform(images, transforms):
    """Bilinear, zero-filled projective resampling of a float32 NHWC batch."""
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=tf.shape(images)[1:3],
        fill_value=tf.constant(0.0, tf.float32), interpolation="BILINEAR",
        fill_mode="CONSTANT")


def _edge_factor(mats, masks, height, width):
    """[K,H,W,1] factor zeroing what the last op of a composite moves in from outside.

    ``a_out`` (the last op's transform of ones) is the bilinear coverage of the
    intermediate frame; ``a_in`` (the whole op's) is the coverage the constant
    fill already applied.  min(1, a_out / a_in) attenuates each frame edge
    once, also where the two frames' edges coincide.
    """
    ones = tf.ones(tf.stack([2 * tf.shape(mats)[0], height, width, 1]))
    a_in, a_out = tf.split(_transform(ones, tf.concat([mats, masks], 0)), 2)
    return tf.where(a_out < 1.0, tf.minimum(1.0, a_out / tf.maximum(a_in, 1e-6)), 1.0)


def _on_subset(images, pick, fn):
    """Replaces the images where ``pick`` holds by ``fn(their indices, those images)``."""
    idx = tf.where(pick)[:, 0]
    sub = fn(idx, tf.gather(images, idx))
    return tf.tensor_scatter_nd_update(images, idx[:, None], sub)


def _as_seed(seed):
    """An int or shape-[2] int tensor -> shape-[2] int64 stateless seed."""
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
    if seed.shape.rank == 0:
        seed = tf.stack([seed, tf.constant(0, tf.int64)])
    return seed


def _salt_pepper(images, seed):
    """Salt-and-pepper noise on SALT_PEPPER_AMOUNT of the pixel locations."""
    u = tf.random.stateless_uniform(tf.shape(images[..., :1]), seed)
    salt = SALT_PEPPER_AMOUNT * SALT_FRACTION
    out = tf.where(u < salt, tf.ones_like(images), images)
    return tf.where((u >= salt) & (u < SALT_PEPPER_AMOUNT), tf.zeros_like(images), out)


def _gaussian(images, seed):
    """Additive N(0, GAUSSIAN_SIGMA^2) noise, clipped to [0, 1]."""
    noise = tf.random.stateless_normal(tf.shape(images), seed, stddev=GAUSSIAN_SIGMA)
    return tf.clip_by_value(images + noise, 0.0, 1.0)


def _prepare(images):
    """float32 rank-4 view of ``images`` plus a function undoing the conversion."""
    images = tf.convert_to_tensor(images)
    dtype, rank = images.dtype, images.shape.rank
    x = tf.cast(images, tf.float32)
    if rank == 3:
        x = x[None]
    if x.shape[1] is None or x.shape[2] is None or x.shape[3] is None:
        raise ValueError("augment needs static height, width and channels")

    def restore(y):
        y = y[0] if rank == 3 else y
        return tf.cast(y, dtype)
    return x, restore


def _apply_noise(images, use_sp, use_g, seed):
    """Salt-and-pepper where ``use_sp``, then Gaussian noise where ``use_g`` (per image)."""
    sp_seed, g_seed = tf.unstack(tf.random.experimental.stateless_split(_as_seed(seed), 2))
    images = _on_subset(images, use_sp, lambda _, x: _salt_pepper(x, sp_seed))
    return _on_subset(images, use_g, lambda _, x: _gaussian(x, g_seed))


def _apply_table(x, idx, names, mats, masks, seed=None):
    """Applies op ``names[idx[i]]`` (rows of the [len(names), 8] ``mats``/``masks``) to image i."""
    h, w = x.shape[1], x.shape[2]

    def flag(pred, rows=idx):
        return tf.gather([bool(pred(n)) for n in names], rows)

    def warp(i, y):  # only the geometrically transformed images are resampled
        rows = tf.gather(idx, i)
        m, k = tf.gather(mats, rows), tf.gather(masks, rows)
        return _on_subset(_transform(y, m), flag(lambda n: "+" in n, rows),
                          lambda j, z: z * _edge_factor(tf.gather(m, j), tf.gather(k, j), h, w))

    out = _on_subset(x, flag(lambda n: n in GEOMETRIC_OPS), warp)
    if any(n in NOISE_OPS for n in names):
        out = _apply_noise(out, flag(lambda n: n in NOISE_OPS and n.startswith("salt_pepper")),
                           flag(lambda n: n in NOISE_OPS and n.endswith("gaussian")), seed)
    return out


def apply_op(images, name, seed=None):
    """Applies the named op to every image of a [N,H,W,C] (or [H,W,C]) batch.

    ``seed`` (int or shape-[2] int tensor) is only used by noise ops; None draws one.
    """
    _check_name(name)
    x, restore = _prepare(images)
    h, w = x.shape[1], x.shape[2]
    if name in NOISE_OPS and seed is None:
        seed = tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int64)
    idx = tf.zeros(tf.shape(x)[:1], tf.int32)
    out = _apply_table(x, idx, (name,), op_matrix(name, h, w)[None],
                       mask_matrix(name, h, w)[None], seed)
    return restore(out)


def augment_batch(images, seed, prob=0.5, noise=None):
    """Per image, with probability ``prob``, applies one op drawn uniformly from the suite.

    The suite is GEOMETRIC_OPS plus, if ``noise`` (default: C == 3), NOISE_OPS;
    the other images pass through unchanged.  Stateless and deterministic given
    ``seed`` (int or int tensor of shape [2]); works eagerly, in ``tf.function``
    and in ``tf.data.Dataset.map``.  Needs static H, W, C.
    """
    x, restore = _prepare(images)
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    noise = (c == 3) if noise is None else bool(noise)
    ops = GEOMETRIC_OPS + (NOISE_OPS if noise else ())
    mats, masks = _tables(h, w, ops)
    s_apply, s_op, s_noise = tf.unstack(
        tf.random.experimental.stateless_split(_as_seed(seed), 3))
    n = tf.shape(x)[:1]
    apply = tf.random.stateless_uniform(n, s_apply) < prob
    op = tf.random.stateless_uniform(n, s_op, minval=0, maxval=len(ops), dtype=tf.int32)
    idx = tf.where(apply, op, len(ops))  # the last table row is the identity
    return restore(_apply_table(x, idx, ops + ("identity",), mats, masks, s_noise))


def flip_crop(images, seed, pad=4):
    """Random left-right flip (p = 0.5) and a random crop of the image zero-padded by ``pad``.

    The crop is an integer shift by (dx, dy), each uniform in [-pad, pad], vacated pixels
    0; one exact resampling per batch. Stateless given ``seed``.
    """
    x, restore = _prepare(images)
    width = x.shape[2]
    s_flip, s_shift = tf.unstack(tf.random.experimental.stateless_split(_as_seed(seed), 2))
    n = tf.shape(x)[:1]
    flip = tf.random.stateless_uniform(n, s_flip) < 0.5
    shift = tf.cast(tf.random.stateless_uniform(
        tf.concat([n, [2]], 0), s_shift, minval=-pad, maxval=pad + 1, dtype=tf.int32),
        tf.float32)
    sign = tf.where(flip, -1.0, 1.0)
    zero, one = tf.zeros_like(sign), tf.ones_like(sign)
    # output pixel (x, y) reads input (sign * x + offset, y + dy)
    offset = tf.where(flip, float(width - 1), 0.0) + shift[:, 0]
    transforms = tf.stack([sign, zero, offset, zero, one, shift[:, 1], zero, zero], axis=1)
    return restore(_transform(x, transforms))
