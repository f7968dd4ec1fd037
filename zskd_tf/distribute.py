"""Device and host scale-out through ``tf.distribute``.

Crafting needs no communication between devices: each device crafts whole shards with
its own copy of the teacher (``scheduling.craft_transfer_set(devices=...)``), and each host
crafts every count-th shard (``worker=(index, count)``). Distillation is data-parallel
Keras ``fit`` under the strategy, on every host: the global batch is the configured one,
split evenly over the replicas (``tf.distribute`` cuts each batch of the dataset). With
several hosts the chief alone writes the run's files (``is_chief``); the others write
what Keras makes them write into temporary directories of their own
(``training.fit``).

- ``default``: one device (TensorFlow's default placement).
- ``mirrored``: ``MirroredStrategy`` over this host's GPUs (or CPU logical devices).
- ``multi_worker``: ``MultiWorkerMirroredStrategy``, configured by ``TF_CONFIG``.
"""
import json
import os

import tensorflow as tf

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


def several_hosts(strategy):
    """True for a strategy whose replicas span several hosts (``MultiWorkerMirroredStrategy``
    with more than one worker in ``TF_CONFIG``)."""
    try:
        local = len(strategy.extended.worker_devices)
    except (AttributeError, RuntimeError):
        return False
    return strategy.num_replicas_in_sync > local


def is_chief(strategy=None):
    """Whether this host writes the run's files: always, but on the hosts of a several-host
    strategy other than the chief (TensorFlow's rule: the ``chief`` task, else worker 0;
    ``worker()`` puts it first)."""
    strategy = strategy or tf.distribute.get_strategy()
    return not several_hosts(strategy) or bool(strategy.extended.should_checkpoint)


def barrier(strategy):
    """Returns once every host of a several-host strategy has called it (a collective
    sum); at once otherwise."""
    if several_hosts(strategy):
        ones = strategy.run(lambda: tf.constant(1.0))
        strategy.reduce(tf.distribute.ReduceOp.SUM, ones, axis=None).numpy()


def fit_ready(model):
    """Makes ``fit`` and ``evaluate`` of a model built under a several-host strategy work
    in Keras 3.12, where they fail before the first step (keras-team/keras#20585,
    tensorflow/tensorflow#72388); a no-op otherwise. Two faults, both fixed on this
    model only:

    - ``_maybe_symbolic_build`` takes the first batch of the dataset and averages it over
      the hosts (``strategy.reduce``, which rejects a tuple batch: "Attempt to convert a
      value (PerReplica...) ... to a Tensor"). The build needs only shapes and dtypes:
      they are taken from the dataset's ``element_spec``, with no batch drawn;
    - every step's logs are averaged over the hosts with ``strategy.reduce(MEAN, value,
      axis=0)``, which fails on a scalar ("Invalid reduction dimension 0 for input with 0
      dimensions"): the step's scalars get a leading axis of length one.

    The epoch logs are the hosts' mean as on one host; the gradients are summed over the
    replicas as Keras always does."""
    if not several_hosts(model.distribute_strategy) or \
            getattr(model, "_zskd_fit_ready", False):
        return model

    def symbolic_build(iterator=None, data_batch=None):
        if iterator is not None:  # TensorSpecs have the shape and dtype the build reads
            data_batch = iterator.data_adapter.get_tf_dataset().element_spec
        with model.distribute_strategy.scope():
            model._symbolic_build(data_batch=data_batch)

    def with_axis(step):
        def wrapped(data):
            return tf.nest.map_structure(
                lambda v: tf.reshape(v, [1]) if v.shape.rank == 0 else v, step(data))
        return wrapped

    model._maybe_symbolic_build = symbolic_build
    model.train_step = with_axis(model.train_step)
    model.test_step = with_axis(model.test_step)
    model._zskd_fit_ready = True
    return model
