"""Device and host scale-out through ``tf.distribute``.

Crafting needs no communication between devices: each device crafts whole shards with
its own copy of the teacher (``scheduling.craft_transfer_set(devices=...)``), and each host
crafts every count-th shard (``worker=(index, count)``). Distillation is data-parallel
Keras ``fit`` under the strategy.

- ``default``: one device (TensorFlow's default placement).
- ``mirrored``: ``MirroredStrategy`` over this host's GPUs (or CPU logical devices).
- ``multi_worker``: ``MultiWorkerMirroredStrategy``, configured by ``TF_CONFIG``.
"""
import json
import os

import tensorflow as tf
from absl import logging

STRATEGIES = ("default", "mirrored", "multi_worker")


def split_cpu(num_devices):
    """Splits the CPU into ``num_devices`` logical devices (for testing replicas on a CPU).

    Must run before TensorFlow initialises its devices.
    """
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(num_devices)])


def get_strategy(name):
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"strategy must be one of {STRATEGIES}, got {name!r}")


def crafting_devices(strategy):
    """The devices this host crafts on: the strategy's local replicas."""
    try:
        devices = list(strategy.extended.worker_devices)
    except (AttributeError, RuntimeError):  # the default strategy has no device list
        return None
    return devices if len(devices) > 1 else None


def worker():
    """(index, count) of this host among the ``TF_CONFIG`` cluster's chief and workers."""
    config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    cluster = config.get("cluster", {})
    hosts = [("chief", i) for i in range(len(cluster.get("chief", [])))] + \
            [("worker", i) for i in range(len(cluster.get("worker", [])))]
    if not hosts:
        return 0, 1
    task = config.get("task", {})
    return hosts.index((task.get("type", "worker"), int(task.get("index", 0)))), len(hosts)


def distillation_strategy(strategy):
    """(the strategy to distil under, whether this host distils).

    Several-host distillation would have every host write the same stage files, so
    under ``MultiWorkerMirroredStrategy`` the hosts share crafting, then the chief
    distils alone, outside the strategy (teacher and student must not have been built
    under its scope)."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return strategy, True
    if worker()[0] != 0:
        logging.info("crafting finished; the chief host distils")
        return None, False
    logging.warning("distilling on the chief host only (several-host distillation is not "
                    "supported); teacher and student must not live under the multi-worker "
                    "scope")
    return None, True
