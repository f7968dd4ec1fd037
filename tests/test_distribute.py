import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from zskd_tf import config as config_lib
from zskd_tf import distribute
from zskd_tf import similarity
from zskd_tf import scheduling
from zskd_tf import store
from zskd_tf import targets as targets_lib
from conftest import tiny_binary_run

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


def test_default_strategy_crafts_on_the_default_device_and_writes():
    import keras
    import tensorflow as tf
    assert distribute.crafting_devices(tf.distribute.get_strategy()) is None
    assert distribute.crafting_devices(distribute.get_strategy("default")) is None
    # one host: it writes, no barrier waits, models are left as they are
    assert distribute.is_chief() and distribute.is_chief(tf.distribute.get_strategy())
    assert not distribute.several_hosts(tf.distribute.get_strategy())
    distribute.barrier(tf.distribute.get_strategy())
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    assert distribute.fit_ready(model) is model and "train_step" not in vars(model)


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


# --------------------------------------------------------- several hosts, on localhost

# one shard: the chief crafts it while host 1 waits for the manifest
TINY = ["--num_impressions=40", "--craft_iterations=5", "--craft_batch_size=10",
        "--parallel_batches=4", "--batch_size=20", "--eval_every=1", "--craft_processes=1"]
# Each host sums its replica's gradient over 10 images, the all-reduce adds the two halves:
# float32 rounding in another order than one host's sum over 20. Adam rescales every
# gradient component, so for the few whose gradient is nearly zero that rounding can
# move the step; measured 2.6e-6 after six steps, at lr 0.01. 1e-4 stays far below one
# step (a host starting from another state or batch differs by ~lr).
WEIGHTS_ATOL = 1e-4
WRITES = ("openat", "creat", "rename", "renameat", "renameat2", "mkdir", "mkdirat",
          "unlink", "unlinkat", "rmdir")


def _free_ports(count):
    import socket
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _strace():
    """The strace command that records a process's file writes, or None if this
    machine cannot trace."""
    if shutil.which("strace") is None:
        return None
    probe = subprocess.run(["strace", "-f", "-qq", "--seccomp-bpf", "-o", os.devnull, "true"],
                           capture_output=True)
    return ["strace", "-f", "-qq", "--seccomp-bpf", "-e", "trace=" + ",".join(WRITES)] \
        if probe.returncode == 0 else None


def _env(**extra):
    """A binary's environment: one CPU thread, no GPU, data only from the flags."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_NUM_INTRAOP_THREADS": "1",
           "TF_NUM_INTEROP_THREADS": "1", "CUDA_VISIBLE_DEVICES": "-1", **extra}
    env.pop("ZSKD_DATA_DIR", None)
    return env


def _run_all(commands, timeout=150):
    """Runs ``commands`` ([(argv, env, log path)]) at once, each in a process group of
    its own; all of them are killed if one fails or the timeout passes. Returns (exit
    codes, pids)."""
    procs = []
    try:
        for argv, env, log in commands:
            with open(log, "w") as out:
                procs.append(subprocess.Popen(argv, cwd=REPO, env=env, stdout=out,
                                              stderr=subprocess.STDOUT,
                                              start_new_session=True))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            codes = [p.poll() for p in procs]
            if None not in codes or any(c not in (None, 0) for c in codes):
                break
            time.sleep(0.5)
        return [p.poll() for p in procs], [p.pid for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def _hosts(workdir, args, logs, tmpdirs, trace=None):
    """Commands for the zskd binary with --strategy=multi_worker on two localhost hosts
    sharing ``workdir``; ``trace``: a file to record host 1's file system calls in."""
    cluster = {"worker": [f"localhost:{p}" for p in _free_ports(2)]}
    commands = []
    for index in range(2):
        argv = [sys.executable, "-m", "experiments.mnist_zskd", f"--workdir={workdir}",
                "--strategy=multi_worker", *args]
        if index == 1 and trace is not None:
            argv = [*_strace(), "-o", str(trace), *argv]
        commands.append((argv, _env(TMPDIR=str(tmpdirs[index]), TF_CONFIG=json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}})), logs[index]))
    return commands


def _files(root):
    """Every file under ``root`` (TensorBoard event files as DIR/events), and the pids
    that wrote the event files."""
    names, pids = set(), set()
    for directory, _, files in os.walk(root):
        for f in files:
            path = os.path.relpath(os.path.join(directory, f), root)
            if f.startswith("events.out.tfevents."):  # .TIME.HOST.PID.N.v2
                path = os.path.join(os.path.dirname(path), "events")
                pids.add(int(f.split(".")[-3]))
            names.add(path)
    return names, pids


def _written(trace, root):
    """Paths under ``root`` that a traced process created, opened for writing, renamed
    to, made or deleted (successful calls in an ``strace -f`` log)."""
    root = os.path.realpath(root)
    pending, calls = {}, []
    for line in open(trace):
        pid, rest = line.split(None, 1)
        if rest.startswith("<..."):  # "<... openat resumed>, ...) = 3"
            call, tail = pending.pop(pid, ("", ""))
            rest = call + "(" + tail + rest.split(">", 1)[1]
        elif rest.rstrip().endswith("<unfinished ...>"):
            call, args = rest.split("(", 1)
            pending[pid] = (call, args.rsplit("<unfinished", 1)[0])
            continue
        match = re.match(r"(\w+)\((.*)\)\s+=\s+(-?\d+)", rest)
        if match:
            calls.append(match.groups())
    written = set()
    for call, args, result in calls:
        if call not in WRITES or int(result) < 0:
            continue
        if call == "openat" and not re.search(r"O_WRONLY|O_RDWR|O_CREAT|O_TRUNC", args):
            continue
        paths = re.findall(r'"([^"]*)"', args)
        for path in paths[-1:] if call.startswith("rename") else paths:
            path = os.path.realpath(path)
            if path.startswith(root + os.sep):
                written.add(os.path.relpath(path, root))
    return written


@pytest.mark.multi_worker
def test_two_hosts_distil_like_one_and_only_the_chief_writes(tiny_teacher, tmp_path):
    """Two hosts (MultiWorkerMirroredStrategy over localhost ports) craft and distil the
    students a single host makes, within float rounding; a rerun resumes from the
    chief's checkpoint on both hosts. The chief alone writes into the shared workdir:
    host 1 writes its lock there and nothing else; its temporary directories are gone."""
    import keras
    single, data_and_teacher = tiny_binary_run(tmp_path, tiny_teacher)
    multi = tmp_path / "multi"
    args = [*data_and_teacher, *TINY]
    tmpdirs = [tmp_path / "tmp0", tmp_path / "tmp1"]
    for d in tmpdirs:
        d.mkdir()
    traced = _strace() is not None
    chief_pids = set()
    # run 1 stops after one epoch of the first stage (beside it, the single host's
    # uninterrupted run); run 2 continues it from the chief's checkpoint, then fine-tunes
    # (its --restart_from: the chief deletes a stage not yet made, the hosts wait for it)
    for run, flags in enumerate([["--student_epochs=1", "--finetune_epochs=0"],
                                 ["--student_epochs=2", "--finetune_epochs=1",
                                  "--restart_from=student_augmented"]]):
        logs = [tmp_path / f"run{run}-host{i}.log" for i in range(2)]
        commands = _hosts(multi, [*args, *flags], logs, tmpdirs,
                          trace=tmp_path / f"run{run}.trace" if traced else None)
        if run == 0:
            commands.append(([sys.executable, "-m", "experiments.mnist_zskd",
                              f"--workdir={single}", *args, "--student_epochs=2",
                              "--finetune_epochs=1"], _env(), tmp_path / "single.log"))
            logs.append(tmp_path / "single.log")
        codes, pids = _run_all(commands)
        assert set(codes) == {0}, "\n".join(f"{log}:\n{log.read_text()[-3000:]}"
                                            for log in logs)
        chief_pids.add(pids[0])
        if traced:  # host 1 wrote its lock into the workdir, and nothing else
            assert _written(tmp_path / f"run{run}.trace", multi) == {".lock.host1"}
    for stage in ("student", "student_augmented"):
        ours = keras.models.load_model(multi / f"{stage}.keras").get_weights()
        theirs = keras.models.load_model(single / f"{stage}.keras").get_weights()
        for a, b in zip(ours, theirs):
            np.testing.assert_allclose(a, b, rtol=0, atol=WEIGHTS_ATOL, err_msg=stage)
    results = json.loads((multi / "results.json").read_text())
    assert results["strategy"] == {"name": "multi_worker", "replicas": 2}
    summary = json.loads((multi / "student_summary.json").read_text())
    assert summary["epochs"] == 2 and not summary["reused"]
    assert (multi / "student_history.csv").read_text().count("\n") == 3  # header, 2 rows
    # the chief's files are the single host's; the event files all the chief's
    names, pids = _files(multi)
    assert names == _files(single)[0] | {".lock.host1"}
    assert pids <= chief_pids
    assert [list(d.iterdir()) for d in tmpdirs] == [[], []]
