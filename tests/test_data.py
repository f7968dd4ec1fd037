"""Tests for zskd_tf.data: tiny files in each standard format, built in tmp_path."""
import gzip
import os
import pickle

import keras
import numpy as np
import pytest

from zskd_tf import data

N_TRAIN, N_TEST = 20, 10


@pytest.fixture(autouse=True)
def _no_env_no_download(monkeypatch):
    """No test may see a real data dir or reach the network."""
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)

    def fail(*args, **kwargs):
        raise AssertionError("keras.datasets must not be used in this test")
    for name in data.NAMES:
        monkeypatch.setattr(getattr(keras.datasets, name), "load_data", fail)


def _labels(n):
    return (np.arange(n) % 10).astype(np.uint8)


def _write_mnist(root, x_train=None, y_train=None):
    x_train = np.full((N_TRAIN, 28, 28), 128, np.uint8) if x_train is None else x_train
    y_train = _labels(N_TRAIN) if y_train is None else y_train
    x_test = np.zeros((N_TEST, 28, 28), np.uint8)
    x_test[:, 10:18, 10:18] = 255
    path = root / "mnist.npz"
    np.savez_compressed(path, x_train=x_train, y_train=y_train, x_test=x_test,
                        y_test=_labels(N_TEST))
    return path


def _idx_bytes(arr, magic=None):
    magic = (2051 if arr.ndim == 3 else 2049) if magic is None else magic
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def _write_fashion(root):
    folder = root / "fashion-mnist"
    folder.mkdir()
    for prefix, n in (("train", N_TRAIN), ("t10k", N_TEST)):
        x = np.full((n, 28, 28), 255, np.uint8)
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(x)))
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(
            gzip.compress(_idx_bytes(_labels(n))))
    return folder


def _cifar_rows(n):
    """Channel 0 all 255, channel 1 = 8 * row index, channel 2 zero; CHW rows."""
    chw = np.zeros((n, 3, 32, 32), np.uint8)
    chw[:, 0] = 255
    chw[:, 1] = (8 * np.arange(32, dtype=np.uint8))[:, None]
    return chw.reshape(n, 3072)


def _write_cifar(root, meta=True):
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    per_batch = N_TRAIN // 5
    splits = [(f"data_batch_{i + 1}", _labels(N_TRAIN)[i * per_batch:(i + 1) * per_batch])
              for i in range(5)] + [("test_batch", _labels(N_TEST))]
    for name, labels in splits:
        batch = {b"batch_label": name.encode(), b"labels": labels.tolist(),
                 b"data": _cifar_rows(len(labels))}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=4))
    if meta:
        (folder / "batches.meta").write_bytes(pickle.dumps(
            {b"label_names": [c.encode() for c in data.CIFAR10_CLASSES]}, protocol=4))
    return folder


def _check_common(ds, channels):
    assert ds.x_train.shape == (N_TRAIN, 32, 32, channels)
    assert ds.x_test.shape == (N_TEST, 32, 32, channels)
    assert ds.x_train.dtype == ds.x_test.dtype == np.float32
    assert ds.y_train.dtype == ds.y_test.dtype == np.int32
    assert ds.y_train.shape == (N_TRAIN,) and ds.y_test.shape == (N_TEST,)
    for x in (ds.x_train, ds.x_test):
        assert x.min() >= 0.0 and x.max() <= 1.0
    np.testing.assert_array_equal(ds.y_train, _labels(N_TRAIN))
    assert ds.num_classes == 10 and len(ds.class_names) == 10
    assert ds.image_shape == (32, 32, channels)


def test_mnist_npz(tmp_path):
    _write_mnist(tmp_path)
    ds = data.load("mnist", data_dir=tmp_path)
    _check_common(ds, 1)
    assert ds.name == "mnist" and ds.class_names == data.MNIST_CLASSES
    np.testing.assert_allclose(ds.x_train, 128 / 255, atol=1e-6)  # constant stays constant
    # An 8x8 white square at 10..17 of 28 covers the centre of the 32x32 image.
    assert ds.x_test[0, 16, 16, 0] == pytest.approx(1.0)
    assert ds.x_test[0, 0, 0, 0] == 0.0 and ds.x_test[0, 31, 31, 0] == 0.0


def test_fashion_mnist_idx_with_alias(tmp_path):
    _write_fashion(tmp_path)
    ds = data.load("fmnist", data_dir=str(tmp_path))
    _check_common(ds, 1)
    assert ds.name == "fashion_mnist" and ds.class_names == data.FASHION_MNIST_CLASSES
    np.testing.assert_allclose(ds.x_train, 1.0, atol=1e-6)


@pytest.mark.parametrize("meta", [True, False])
def test_cifar10_pickles_chw_to_hwc(tmp_path, meta):
    _write_cifar(tmp_path, meta=meta)
    ds = data.load("cifar10", data_dir=tmp_path)
    _check_common(ds, 3)
    assert ds.name == "cifar10" and ds.class_names == data.CIFAR10_CLASSES
    for x in (ds.x_train, ds.x_test):
        np.testing.assert_array_equal(x[..., 0], 1.0)
        np.testing.assert_array_equal(x[..., 2], 0.0)
        rows = np.broadcast_to((8 * np.arange(32) / 255)[:, None], (32, 32))
        np.testing.assert_allclose(x[..., 1], np.broadcast_to(rows, x.shape[:3]), atol=1e-6)


def test_cifar10_class_names_from_meta(tmp_path):
    folder = _write_cifar(tmp_path)
    names = [f"c{i}".encode() for i in range(10)]
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}))
    assert data.load("cifar10", tmp_path).class_names == tuple(f"c{i}" for i in range(10))


def test_env_var_is_used(tmp_path, monkeypatch):
    _write_mnist(tmp_path)
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path))
    assert data.load("mnist").x_train.shape == (N_TRAIN, 32, 32, 1)


def test_data_dir_argument_beats_env_var(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv(data.DATA_DIR_ENV, str(empty))
    _write_mnist(tmp_path)
    assert data.load("mnist", data_dir=tmp_path).x_train.shape[0] == N_TRAIN


@pytest.mark.parametrize("name, missing", [
    ("mnist", "mnist.npz"),
    ("fashion_mnist", "fashion-mnist/train-images-idx3-ubyte.gz"),
    ("cifar10", "cifar-10-batches-py/data_batch_1"),
])
def test_missing_file_in_data_dir(tmp_path, name, missing):
    with pytest.raises(data.DataError, match="Missing") as err:
        data.load(name, data_dir=tmp_path)
    assert str(tmp_path / missing) in str(err.value)
    assert "prepare.py" in str(err.value)


def test_missing_single_cifar_batch(tmp_path):
    folder = _write_cifar(tmp_path)
    os.remove(folder / "data_batch_3")
    with pytest.raises(data.DataError, match="data_batch_3"):
        data.load("cifar10", data_dir=tmp_path)


def test_no_data_and_no_network(monkeypatch):
    def offline():
        raise OSError("network unreachable")
    monkeypatch.setattr(keras.datasets.mnist, "load_data", offline)
    with pytest.raises(data.DataError) as err:
        data.load("mnist")
    msg = str(err.value)
    assert "ZSKD_DATA_DIR" in msg and "data_dir" in msg and "network unreachable" in msg


def test_keras_source_is_validated(monkeypatch):
    x = np.zeros((N_TRAIN, 32, 32, 3), np.uint8)
    y = _labels(N_TRAIN)[:, None]  # keras cifar10 gives (N, 1) labels
    monkeypatch.setattr(keras.datasets.cifar10, "load_data", lambda: ((x, y), (x, y)))
    ds = data.load("cifar10")
    assert ds.y_train.shape == (N_TRAIN,) and ds.x_train.shape == (N_TRAIN, 32, 32, 3)
    monkeypatch.setattr(keras.datasets.cifar10, "load_data", lambda: ((x, y + 10), (x, y)))
    with pytest.raises(data.DataError, match="labels must be in"):
        data.load("cifar10")


def test_unknown_name():
    with pytest.raises(ValueError, match="mnist.*fashion_mnist.*cifar10"):
        data.load("svhn")


# ---------------------------------------------------------------------------- corrupt files

def _corrupt_case(root, case):
    """Writes a broken file set for ``case``; returns (data set name, broken file path)."""
    if case == "truncated_npz":
        path = _write_mnist(root)
        path.write_bytes(path.read_bytes()[:300])
        return "mnist", path
    if case == "npz_label_out_of_range":
        return "mnist", _write_mnist(root, y_train=np.full(N_TRAIN, 10, np.uint8))
    if case == "npz_wrong_shape":
        return "mnist", _write_mnist(root, x_train=np.zeros((N_TRAIN, 28, 27), np.uint8))
    if case == "npz_wrong_dtype":
        return "mnist", _write_mnist(root, x_train=np.zeros((N_TRAIN, 28, 28), np.float32))
    folder = _write_fashion(root)
    images = folder / "train-images-idx3-ubyte.gz"
    labels = folder / "train-labels-idx1-ubyte.gz"
    x = np.zeros((N_TRAIN, 28, 28), np.uint8)
    if case == "gzip_truncated":
        images.write_bytes(images.read_bytes()[:-12])
        return "fashion_mnist", images
    if case == "gzip_crc":
        blob = bytearray(images.read_bytes())
        blob[-8] ^= 0xFF  # CRC32 in the gzip trailer
        images.write_bytes(bytes(blob))
        return "fashion_mnist", images
    if case == "idx_wrong_magic":
        images.write_bytes(gzip.compress(_idx_bytes(x, magic=2049)))
        return "fashion_mnist", images
    if case == "idx_length_mismatch":
        images.write_bytes(gzip.compress(_idx_bytes(x)[:-5]))
        return "fashion_mnist", images
    if case == "idx_count_mismatch":
        labels.write_bytes(gzip.compress(_idx_bytes(_labels(N_TRAIN - 1))))
        return "fashion_mnist", labels
    if case == "idx_label_out_of_range":
        labels.write_bytes(gzip.compress(_idx_bytes(np.full(N_TRAIN, 200, np.uint8))))
        return "fashion_mnist", labels
    folder = _write_cifar(root)
    batch = folder / "data_batch_2"
    if case == "cifar_garbage":
        batch.write_bytes(os.urandom(64) + b"not a pickle")
        return "cifar10", batch
    if case == "cifar_truncated":
        batch.write_bytes(batch.read_bytes()[:100])
        return "cifar10", batch
    if case == "cifar_label_out_of_range":
        batch.write_bytes(pickle.dumps({b"data": _cifar_rows(4), b"labels": [0, 1, 2, 10]}))
        return "cifar10", batch
    if case == "cifar_wrong_shape":
        batch.write_bytes(pickle.dumps({b"data": np.zeros((4, 3000), np.uint8),
                                        b"labels": [0, 1, 2, 3]}))
        return "cifar10", batch
    if case == "cifar_unsafe_pickle":
        batch.write_bytes(pickle.dumps({b"data": os.getcwd, b"labels": []}))
        return "cifar10", batch
    raise ValueError(case)


@pytest.mark.parametrize("case", [
    "truncated_npz", "npz_label_out_of_range", "npz_wrong_shape", "npz_wrong_dtype",
    "gzip_truncated", "gzip_crc", "idx_wrong_magic", "idx_length_mismatch",
    "idx_count_mismatch", "idx_label_out_of_range",
    "cifar_garbage", "cifar_truncated", "cifar_label_out_of_range", "cifar_wrong_shape",
    "cifar_unsafe_pickle",
])
def test_corrupt_file_raises_data_error(tmp_path, case):
    name, path = _corrupt_case(tmp_path, case)
    with pytest.raises(data.DataError) as err:
        data.load(name, data_dir=tmp_path)
    assert str(path) in str(err.value)


# ---------------------------------------------------------------------------- tf.data

def _epoch(ds):
    return [tuple(t.numpy() for t in batch) for batch in ds]


def test_make_dataset_batches():
    x = np.arange(25, dtype=np.float32).reshape(25, 1)
    y = np.arange(25, dtype=np.int32)
    batches = _epoch(data.make_dataset(x, y, batch_size=10))
    assert [len(b[0]) for b in batches] == [10, 10, 5]
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), y)
    dropped = _epoch(data.make_dataset(x, y, batch_size=10, drop_remainder=True))
    assert [len(b[0]) for b in dropped] == [10, 10]
    only_x = list(data.make_dataset(x, batch_size=10))
    assert only_x[0].shape == (10, 1)
    endless = data.make_dataset(x, y, batch_size=10, repeat=True).take(6)
    assert [len(b[0]) for b in _epoch(endless)] == [10] * 6
    with pytest.raises(ValueError):
        data.make_dataset(x, y[:3])


def test_make_dataset_shuffles_reproducibly():
    x = np.arange(50, dtype=np.float32)[:, None] * 2
    y = np.arange(50, dtype=np.int32)
    ds = data.make_dataset(x, y, batch_size=16, shuffle=True, seed=3)
    epoch1 = np.concatenate([b[1] for b in _epoch(ds)])
    epoch2 = np.concatenate([b[1] for b in _epoch(ds)])
    again = np.concatenate([b[1] for b in _epoch(
        data.make_dataset(x, y, batch_size=16, shuffle=True, seed=3))])
    assert sorted(epoch1) == list(range(50))
    assert not np.array_equal(epoch1, y)  # shuffled
    assert not np.array_equal(epoch1, epoch2)  # reshuffled each epoch
    np.testing.assert_array_equal(epoch1, again)  # same seed, same order
    for bx, by in _epoch(ds):  # pairs stay aligned
        np.testing.assert_array_equal(bx[:, 0], 2 * by)


def test_epoch_batches_are_keyed_by_epoch_so_a_resume_continues_the_stream():
    x = np.arange(25, dtype=np.float32)[:, None] * 2
    y = np.arange(25, dtype=np.int32)
    steps = data.steps_per_epoch(25, 10)
    assert steps == 3
    stream = _epoch(data.epoch_batches(x, y, 10, seed=7).take(3 * steps))
    assert [len(b[1]) for b in stream] == [10, 10, 5] * 3  # no batch spans two epochs
    epochs = [np.concatenate([b[1] for b in stream[i * steps:(i + 1) * steps]])
              for i in range(3)]
    assert all(sorted(e) == list(range(25)) for e in epochs)
    assert not np.array_equal(epochs[0], epochs[1])  # a fresh order each epoch
    # started at epoch 2 (a resumed run): exactly what the stream gives from epoch 2 on
    resumed = _epoch(data.epoch_batches(x, y, 10, seed=7, first_epoch=2).take(steps))
    for got, want in zip(resumed, stream[2 * steps:]):
        np.testing.assert_array_equal(got[1], want[1])
        np.testing.assert_array_equal(got[0][:, 0], 2 * got[1])  # pairs stay aligned
    other = _epoch(data.epoch_batches(x, y, 10, seed=8).take(steps))
    assert not np.array_equal(np.concatenate([b[1] for b in other]), epochs[0])


def test_a_known_copy_of_a_test_set_is_named_in_the_provenance(tmp_path, monkeypatch):
    _write_mnist(tmp_path)
    ds = data.load("mnist", data_dir=tmp_path)
    assert len(ds.test_sha256) == 64
    assert data.provenance(ds) == {"name": "mnist", "test_sha256": ds.test_sha256,
                                   "note": None, "about": None}
    monkeypatch.setitem(data.KNOWN_COPIES, ds.test_sha256, ("lossy MNIST", "a rebuilt copy"))
    assert data.provenance(ds)["note"] == "lossy MNIST"
    # the shipped JPEG CIFAR-10 copy is known (its hash, computed from shared/datasets)
    assert [note for note, _ in data.KNOWN_COPIES.values()].count("JPEG CIFAR-10") == 1
