"""Flags and bookkeeping shared by the experiment binaries."""
import os
import platform
import shlex
import sys
import time

from absl import app
from absl import flags
from absl import logging

from zskd_tf import io_utils

FLAGS = flags.FLAGS
DATASETS = ("mnist", "fashion_mnist", "cifar10")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def define_common_flags():
    flags.DEFINE_string("workdir", None, "Directory for config.json, checkpoints, TensorBoard "
                        "logs (tb/) and results.json. Rerunning with the same workdir resumes.")
    flags.DEFINE_string("data_dir", None, "Folder with the data sets in their standard formats "
                        "(mnist.npz, fashion-mnist/*.gz, cifar-10-batches-py/). Default: "
                        "$ZSKD_DATA_DIR, else download with keras.datasets.")
    flags.DEFINE_integer("seed", 0, "Seed for everything; stages derive their own seeds.")
    flags.mark_flag_as_required("workdir")


def positive_numbers(values):
    """True if ``values`` is a non-empty list of finite numbers > 0 (a --beta list)."""
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError):
        return False
    return bool(out) and all(0 < b < float("inf") for b in out)


def command_line():
    return "python -m " + " ".join(
        shlex.quote(a) for a in [_module_name(sys.argv[0])] + sys.argv[1:])


def _module_name(path):
    rel = os.path.relpath(os.path.abspath(path), os.getcwd())
    return rel[:-3].replace(os.sep, ".") if rel.endswith(".py") else rel


def flag_values():
    """The project's flags (those defined under experiments/), as a dict."""
    values = {}
    for module, module_flags in FLAGS.flags_by_module_dict().items():
        if "experiments" not in module and module != "__main__":
            continue  # absl's and TensorFlow's own flags
        for flag in module_flags:
            values[flag.name] = flag.value
    return values


def write_config(workdir):
    os.makedirs(workdir, exist_ok=True)
    config = {"command": command_line(), "flags": flag_values(),
              "python": platform.python_version(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    io_utils.write_json(os.path.join(workdir, "config.json"), config)
    logging.info("config written to %s", os.path.join(workdir, "config.json"))
    return config


def write_results(workdir, results):
    import tensorflow as tf
    import keras
    results = {"command": command_line(), **results,
               "versions": {"tensorflow": tf.__version__, "keras": keras.__version__,
                            "python": platform.python_version()},
               "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}}
    path = os.path.join(workdir, "results.json")
    io_utils.write_json(path, results)
    logging.info("results written to %s", path)
    return results


def pretrained_path(dataset, model):
    return os.path.join(REPO, "pretrained", f"{dataset}_{model}.keras")


def existing_teacher(dataset, given):
    """``given`` or the committed pretrained teacher of ``dataset``, for binaries that do
    not train one; a UsageError when there is none."""
    from zskd_tf import paper
    path = given or pretrained_path(dataset, paper.SETUPS[dataset].teacher)
    if not os.path.isfile(path):
        raise app.UsageError(f"no teacher at {path}: pass --teacher")
    return path
