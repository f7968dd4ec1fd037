import json
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np

from zskd_tf import config as config_lib
from zskd_tf import distribute
from zskd_tf import similarity
from zskd_tf import scheduling
from zskd_tf import store
from zskd_tf import targets as targets_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs in a fresh process: logical devices must be configured before TF starts.
TWO_DEVICES = textwrap.dedent("""
    import json, sys
    import numpy as np, keras, tensorflow as tf
    from zskd_tf import distribute, distill, models, scheduling, similarity, store
    from zskd_tf import config as config_lib
    from zskd_tf import targets as targets_lib
    from zskd_tf import data as data_lib
    distribute.split_cpu(2)
    out = sys.argv[1]
    keras.utils.set_random_seed(0)
    teacher = models.lenet5()
    _, alpha = similarity.from_model(teacher)
    t = targets_lib.sample(alpha, 40, seed=0)
    config = config_lib.CraftConfig(lr=0.3, batch_size=5, iterations=3)
    strategy = distribute.get_strategy("mirrored")
    devices = distribute.crafting_devices(strategy)
    scheduling.craft_transfer_set(out + "/one", teacher, t, config, seed=5, parallel_batches=2)
    scheduling.craft_transfer_set(out + "/two", teacher, t, config, seed=5, parallel_batches=2,
                             devices=devices)
    with strategy.scope():
        t2 = models.lenet5()
        s2 = models.lenet5_half()
        d = distill.compile_distiller(distill.Distiller(s2, t2), 1e-2)
    x = np.random.default_rng(0).uniform(size=(64, 32, 32, 1)).astype("float32")
    hist = d.fit(data_lib.make_dataset(x, batch_size=32), epochs=1, verbose=0)
    print(json.dumps({"devices": devices, "replicas": strategy.num_replicas_in_sync,
                      "kd_loss": hist.history["kd_loss"][-1],
                      "loss": hist.history["loss"][-1]}))
""")


def test_two_replicas_craft_the_same_set_and_distill(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-c", TWO_DEVICES, str(tmp_path)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["replicas"] == 2 and len(info["devices"]) == 2
    assert np.isfinite(info["kd_loss"])
    # each replica's loss is its share: Keras sums them (the logged loss was 2x before)
    assert np.isclose(info["loss"], info["kd_loss"], rtol=1e-6)
    one, two = store.load(tmp_path / "one"), store.load(tmp_path / "two")
    for key in one:
        np.testing.assert_allclose(one[key], two[key], atol=1e-5, err_msg=key)


def test_workers_split_shards_and_give_the_same_set(tiny_teacher, tmp_path):
    _, alpha = similarity.from_model(tiny_teacher)
    t = targets_lib.sample(alpha, 40, seed=1)
    config = config_lib.CraftConfig(lr=0.3, batch_size=5, iterations=3)
    kwargs = dict(seed=5, parallel_batches=2, poll_seconds=0.05)
    scheduling.craft_transfer_set(str(tmp_path / "single"), tiny_teacher, t, config, **kwargs)
    crafted = {0: [], 1: []}

    def work(index):
        scheduling.craft_transfer_set(str(tmp_path / "multi"), tiny_teacher, t, config,
                                 worker=(index, 2),
                                 on_shard=lambda i, c, r: crafted[index].append(i), **kwargs)
    other = threading.Thread(target=work, args=(1,))
    other.start()
    work(0)
    other.join(timeout=120)
    assert crafted == {0: [0, 2], 1: [1, 3]}
    assert store.read_manifest(tmp_path / "multi")["complete"]
    a, b = store.load(tmp_path / "single"), store.load(tmp_path / "multi")
    for key in a:
        np.testing.assert_allclose(a[key], b[key], atol=1e-5, err_msg=key)


def test_default_strategy_crafts_on_the_default_device():
    import tensorflow as tf
    assert distribute.crafting_devices(tf.distribute.get_strategy()) is None
    assert distribute.crafting_devices(distribute.get_strategy("default")) is None


def test_worker_from_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert distribute.worker() == (0, 1)
    cluster = {"chief": ["a:1"], "worker": ["b:1", "c:1"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster,
                                                "task": {"type": "worker", "index": 1}}))
    assert distribute.worker() == (2, 3)
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster,
                                                "task": {"type": "chief", "index": 0}}))
    assert distribute.worker() == (0, 3)
