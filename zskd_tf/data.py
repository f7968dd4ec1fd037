"""Data sets (MNIST, Fashion-MNIST, CIFAR-10) and tf.data input pipelines.

Images come back as float32 in [0, 1] with shape (N, 32, 32, C); labels as int32 (N,).
The source is, in order: the ``data_dir`` argument, the ``ZSKD_DATA_DIR`` environment
variable, else ``keras.datasets.<name>.load_data()`` (which downloads). A data
directory uses the standard on-disk formats (see ``LAYOUT``); anything missing,
corrupt or inconsistent raises ``DataError`` naming the file, never a silent fallback.
"""
import dataclasses
import gzip
import hashlib
import math
import os
import pickle
import zipfile
import zlib

import keras
import numpy as np
import tensorflow as tf

DATA_DIR_ENV = "ZSKD_DATA_DIR"
"""Environment variable naming the data directory when ``data_dir`` is not given."""

IMAGE_SIZE = 32
"""All images are returned as IMAGE_SIZE x IMAGE_SIZE."""

RESIZE_METHOD = "bilinear"
"""tf.image.resize method for MNIST-like 28x28 -> 32x32 (antialias=False, on [0, 1] floats)."""

MNIST_CLASSES = tuple(str(i) for i in range(10))
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")

NAMES = ("mnist", "fashion_mnist", "cifar10")
ALIASES = {"fmnist": "fashion_mnist"}

LAYOUT = {
    "mnist": "mnist.npz (Keras layout: uint8 x_train, y_train, x_test, y_test; 28x28 images)",
    "fashion_mnist": "fashion-mnist/{train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
                     "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz} (gzipped IDX)",
    "cifar10": "cifar-10-batches-py/{data_batch_1..data_batch_5, test_batch[, batches.meta]} "
               "(python pickles of the official CIFAR-10 python release)",
}
"""Expected files under a data directory, per data set."""

_HOW_TO_PROVIDE = ("pass data_dir= / --data_dir, or set ZSKD_DATA_DIR to a folder laid out by "
                   "`python shared/datasets/prepare.py DIR` "
                   "(mnist.npz, fashion-mnist/*.gz, cifar-10-batches-py/)")
_RAW_SHAPE = {"mnist": (28, 28), "fashion_mnist": (28, 28), "cifar10": (32, 32, 3)}
CLASS_NAMES = {"mnist": MNIST_CLASSES, "fashion_mnist": FASHION_MNIST_CLASSES,
               "cifar10": CIFAR10_CLASSES}
_IDX_IMAGES, _IDX_LABELS = 2051, 2049  # IDX magic numbers: ubyte, 3-d / 1-d
_CHUNK = 10000  # images converted to float per step


# Copies of a test set known by the SHA-256 of their raw uint8 test images (as read, in
# their order): (the note that goes beside any number measured on them, what it means).
KNOWN_COPIES = {
    "574f8d46d0dc02cbd5d9f393f84d9478dc1e25d19cc42735f5f9bd0bb5f7c64b": (
        "JPEG CIFAR-10", "CIFAR-10 rebuilt from a JPEG copy (quality about 75; "
                         "shared/datasets), not the original release"),
}


class DataError(RuntimeError):
    """A data set is missing, unreadable, corrupt or inconsistent."""


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """An in-memory data set: float32 images in [0, 1] (N, 32, 32, C), int32 labels (N,)."""
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    class_names: tuple
    name: str
    test_sha256: str = None  # of the raw uint8 test images as read (``provenance``)

    @property
    def image_shape(self):
        """(32, 32, C)."""
        return self.x_train.shape[1:]


def load(name, data_dir=None):
    """Loads data set ``name`` ("mnist", "fashion_mnist"/"fmnist", "cifar10") as a Dataset.

    ``data_dir`` (or $ZSKD_DATA_DIR when None) is a folder in the ``LAYOUT`` format;
    with neither, ``keras.datasets`` is used. Raises DataError on missing/corrupt data.
    """
    key = ALIASES.get(name.lower(), name.lower())
    if key not in NAMES:
        raise ValueError(f"Unknown data set {name!r}; expected one of "
                         f"{', '.join(NAMES + tuple(ALIASES))}.")
    if data_dir is None:
        data_dir = os.environ.get(DATA_DIR_ENV) or None
    if data_dir is None:
        train, test, class_names = _read_keras(key)
    else:
        root = os.path.expanduser(os.fspath(data_dir))
        train, test, class_names = _READERS[key](root)
    return Dataset(x_train=_to_float(train[0]), y_train=train[1],
                   x_test=_to_float(test[0]), y_test=test[1],
                   num_classes=len(class_names), class_names=tuple(class_names), name=key,
                   test_sha256=hashlib.sha256(np.ascontiguousarray(test[0])).hexdigest())


def provenance(dataset):
    """What a run's record says of its data: the test images' SHA-256 and, for a copy in
    ``KNOWN_COPIES``, the note that goes beside every number measured on it and what it
    means (None for others)."""
    note, about = KNOWN_COPIES.get(dataset.test_sha256, (None, None))
    return {"name": dataset.name, "test_sha256": dataset.test_sha256, "note": note,
            "about": about}


def make_dataset(x, y=None, batch_size=512, shuffle=False, seed=None,
                 drop_remainder=False, repeat=False, skip=0):
    """Batched, prefetched tf.data.Dataset of (x, y) batches, or x batches if y is None.

    Shuffling draws a full permutation, fresh every epoch (reshuffle_each_iteration=True)
    and reproducible for a given ``seed``. ``repeat=True`` gives an endless stream: it
    repeats before batching, so each epoch is shuffled on its own and batches may span
    two epochs. ``skip``: examples of that stream to pass over first, so a resumed run
    continues exactly where the stream stood. Examples are gathered by index, so no
    shuffle buffer copies the data.
    """
    x = tf.convert_to_tensor(x)
    n = x.shape[0]
    tensors = x
    if y is not None:
        y = tf.convert_to_tensor(y)
        if y.shape[0] != n:
            raise ValueError(f"x has {n} examples but y has {y.shape[0]}.")
        tensors = (x, y)
    ds = tf.data.Dataset.range(n)
    if shuffle:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    if skip:
        ds = ds.skip(skip)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    ds = ds.map(lambda idx: tf.nest.map_structure(lambda t: tf.gather(t, idx), tensors))
    return ds.prefetch(tf.data.AUTOTUNE)


def epoch_batches(x, y, batch_size, seed, first_epoch=0):
    """Endless stream of (x, y) batches, epoch after epoch from ``first_epoch`` on.

    Each epoch is a permutation drawn from (``seed``, epoch number) alone, and batches
    never span two epochs (an epoch's last batch may be short): a run resumed at any
    epoch sees the batches an uninterrupted one would, unlike a ``shuffle`` that
    reshuffles each iteration, whose first iteration in a new process is epoch 0's
    order again. Train with ``steps_per_epoch=steps_per_epoch(len(x), batch_size)``.
    """
    x, y = tf.convert_to_tensor(x), tf.convert_to_tensor(y)
    n = x.shape[0]
    if y.shape[0] != n:
        raise ValueError(f"x has {n} examples but y has {y.shape[0]}.")
    seed = tf.constant(int(seed), tf.int64)

    def epoch(e):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(n, dtype=tf.int64), tf.stack([seed, e]))
        return tf.data.Dataset.from_tensor_slices(order).batch(batch_size)

    ds = tf.data.Dataset.counter(start=first_epoch).flat_map(epoch)
    ds = ds.map(lambda idx: (tf.gather(x, idx), tf.gather(y, idx)))
    return ds.prefetch(tf.data.AUTOTUNE)


def steps_per_epoch(n, batch_size):
    """Batches in an epoch of ``n`` examples, the last one possibly short."""
    return -(-n // batch_size)


# ---------------------------------------------------------------------------- conversion

def _to_float(x):
    """uint8 (N, H, W[, C]) -> float32 (N, 32, 32, C) in [0, 1], chunk by chunk."""
    if x.ndim == 3:
        x = x[..., None]
    n, h, w, c = x.shape
    out = np.empty((n, IMAGE_SIZE, IMAGE_SIZE, c), np.float32)
    for i in range(0, n, _CHUNK):
        chunk = x[i:i + _CHUNK].astype(np.float32) / 255.0
        if (h, w) != (IMAGE_SIZE, IMAGE_SIZE):
            chunk = tf.image.resize(chunk, (IMAGE_SIZE, IMAGE_SIZE), method=RESIZE_METHOD,
                                    antialias=False).numpy()
        out[i:i + _CHUNK] = np.clip(chunk, 0.0, 1.0)
    return out


def _check(x, y, x_src, y_src, key):
    """Validates one split's raw uint8 images and labels; returns (x, int32 labels)."""
    shape = _RAW_SHAPE[key]
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.shape[1:] != shape:
        got = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise DataError(f"{x_src}: expected uint8 images of shape (N, "
                        f"{', '.join(map(str, shape))}), got {got}.")
    y = np.asarray(y)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{y_src}: expected 1-d integer labels, got {y.dtype} {y.shape}.")
    if len(x) != len(y):
        raise DataError(f"{x_src} has {len(x)} images but {y_src} has {len(y)} labels.")
    if len(x) == 0:
        raise DataError(f"{x_src}: no images.")
    num_classes = len(CLASS_NAMES[key])
    if y.min() < 0 or y.max() >= num_classes:
        raise DataError(f"{y_src}: labels must be in [0, {num_classes}), "
                        f"found min {y.min()} max {y.max()}.")
    return x, y.astype(np.int32)


# ---------------------------------------------------------------------------- readers

def _require(path, root, key):
    if not os.path.isfile(path):
        raise DataError(f"Missing {path}. Expected under data dir {root}: {LAYOUT[key]}. "
                        "Create it with `python shared/datasets/prepare.py DIR`.")


def _read_keras(key):
    try:
        (x_tr, y_tr), (x_te, y_te) = getattr(keras.datasets, key).load_data()
    except Exception as e:  # download/network/cache errors of any kind
        raise DataError(f"No data directory given and keras.datasets.{key}.load_data() failed "
                        f"({type(e).__name__}: {e}). To use local files, {_HOW_TO_PROVIDE}.") from e
    src = f"keras.datasets.{key}"
    train = _check(x_tr, np.reshape(y_tr, -1), src, src, key)  # cifar10 labels are (N, 1)
    test = _check(x_te, np.reshape(y_te, -1), src, src, key)
    return train, test, CLASS_NAMES[key]


def _read_mnist(root):
    path = os.path.join(root, "mnist.npz")
    _require(path, root, "mnist")
    keys = ("x_train", "y_train", "x_test", "y_test")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in keys if k not in f.files]
            if missing:
                raise DataError(f"{path}: missing arrays {missing} (expected {list(keys)}).")
            a = {k: f[k] for k in keys}
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as e:
        raise DataError(f"{path}: corrupt or truncated npz ({type(e).__name__}: {e}).") from e
    train = _check(a["x_train"], a["y_train"], f"{path}[x_train]", f"{path}[y_train]", "mnist")
    test = _check(a["x_test"], a["y_test"], f"{path}[x_test]", f"{path}[y_test]", "mnist")
    return train, test, MNIST_CLASSES


def _read_idx(path, magic):
    """Reads a gzipped IDX file of unsigned bytes, checking magic number and length."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: corrupt or truncated gzip ({type(e).__name__}: {e}).") from e
    got = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if got != magic:
        raise DataError(f"{path}: bad IDX magic number {got} (expected {magic}).")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header.")
    dims = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    if len(raw) - header != math.prod(dims):
        raise DataError(f"{path}: IDX header declares dims {dims} ({math.prod(dims)} bytes) "
                        f"but the payload has {len(raw) - header} bytes.")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def _read_fashion_mnist(root):
    folder = os.path.join(root, "fashion-mnist")
    splits = []
    for prefix in ("train", "t10k"):
        x_path = os.path.join(folder, f"{prefix}-images-idx3-ubyte.gz")
        y_path = os.path.join(folder, f"{prefix}-labels-idx1-ubyte.gz")
        for path in (x_path, y_path):
            _require(path, root, "fashion_mnist")
        x, y = _read_idx(x_path, _IDX_IMAGES), _read_idx(y_path, _IDX_LABELS)
        splits.append(_check(x, y, x_path, y_path, "fashion_mnist"))
    return splits[0], splits[1], FASHION_MNIST_CLASSES


class _NumpyUnpickler(pickle.Unpickler):
    """Unpickler that can only rebuild numpy arrays (all CIFAR-10 pickles contain)."""
    _ALLOWED = {(m, n) for m in ("numpy.core.multiarray", "numpy._core.multiarray")
                for n in ("_reconstruct", "scalar")} | {
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer")}

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return super().find_class(module, name)


def _unpickle(path):
    try:
        with open(path, "rb") as f:
            obj = _NumpyUnpickler(f, encoding="bytes").load()
    except Exception as e:  # garbage input can raise almost any exception type
        raise DataError(f"{path}: cannot unpickle ({type(e).__name__}: {e}).") from e
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a pickled dict, got {type(obj).__name__}.")
    return obj


def _read_cifar_batch(path):
    d = _unpickle(path)
    if b"data" not in d or b"labels" not in d:
        raise DataError(f"{path}: missing b'data' or b'labels' (keys: {sorted(d)}).")
    data = d[b"data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3072:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: b'data' must be uint8 (N, 3072), got {got}.")
    x = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # CHW rows -> NHWC
    return _check(x, d[b"labels"], path, path, "cifar10")


def _read_cifar10(root):
    folder = os.path.join(root, "cifar-10-batches-py")
    splits = []
    for names in ([f"data_batch_{i}" for i in range(1, 6)], ["test_batch"]):
        paths = [os.path.join(folder, n) for n in names]
        for path in paths:
            _require(path, root, "cifar10")
        batches = [_read_cifar_batch(p) for p in paths]
        splits.append(tuple(np.concatenate(parts) for parts in zip(*batches)))
    class_names = CIFAR10_CLASSES
    meta = os.path.join(folder, "batches.meta")
    if os.path.exists(meta):
        names = _unpickle(meta).get(b"label_names")
        if not isinstance(names, list) or len(names) != len(CIFAR10_CLASSES):
            raise DataError(f"{meta}: b'label_names' must list {len(CIFAR10_CLASSES)} names.")
        class_names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    return splits[0], splits[1], class_names


_READERS = {"mnist": _read_mnist, "fashion_mnist": _read_fashion_mnist,
            "cifar10": _read_cifar10}
