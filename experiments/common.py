"""Flags and bookkeeping shared by the experiment binaries."""
import contextlib
import dataclasses
import os
import platform
import shlex
import sys
import time

from absl import app
from absl import flags
from absl import logging

from zskd_tf import io_utils
from zskd_tf.config import NUM_CLASSES  # noqa: F401 (the binaries' validators use it)

FLAGS = flags.FLAGS
DATASETS = ("mnist", "fashion_mnist", "cifar10")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_SEED = 2 ** 31 - 1  # zskd_tf.config's rule for the seed setting


def define_common_flags(seed=True):
    """--workdir, --data_dir and (unless a config defines it) --seed."""
    flags.DEFINE_string("workdir", None, "Directory for config.json, checkpoints, TensorBoard "
                        "logs (tb/) and results.json. Rerunning with the same workdir resumes.")
    flags.DEFINE_string("data_dir", None, "Folder with the data sets in their standard formats "
                        "(mnist.npz, fashion-mnist/*.gz, cifar-10-batches-py/). Default: "
                        "$ZSKD_DATA_DIR, else download with keras.datasets.")
    if seed:
        flags.DEFINE_integer("seed", 0, "Seed for everything; stages derive their own seeds.")
        flags.register_validator("seed", lambda v: v is not None and 0 <= v <= MAX_SEED,
                                 f"--seed must be an integer in [0, {MAX_SEED:,}]")
    flags.mark_flag_as_required("workdir")
    flags.register_validator("workdir", usable_workdir,
                             "--workdir must be a directory or a path that does not exist yet")


def usable_workdir(path):
    """True if ``path`` is a directory, or does not exist and could be made one (its
    nearest existing ancestor is a directory). None passes: --workdir is required."""
    if path is None:
        return True
    path = os.path.abspath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return os.path.isdir(path)


_DEFINE = {int: flags.DEFINE_integer, float: flags.DEFINE_float, bool: flags.DEFINE_bool,
           str: flags.DEFINE_string, tuple: flags.DEFINE_list}


def define_config_flags(dataset=None, only=None, defaults=None):
    """One flag per setting of ``zskd_tf.config.Config`` (``only``: those settings; default:
    all but the data set), with the setting's help. A setting with a paper value defaults
    to None (the preset's value, else the paper's for ``dataset``; both shown in the help)
    unless ``defaults`` fixes this binary's default. ``dataset`` None: the binary has its
    own --dataset flag. One validator checks the settings together, with the config's own
    rules, before any work starts."""
    from zskd_tf import config, presets
    paper_values = config.paper_values(dataset) if dataset else {}
    reproduce = presets.values("reproduce", dataset) if dataset else {}
    defaults = defaults or {}
    names = [] if dataset else ["dataset"]
    for field in config.settings():
        if field.name == "dataset" or (only is not None and field.name not in only):
            continue
        name = config.flag_name(field)
        help_text = field.metadata["help"]
        default = defaults.get(field.name, None if field.metadata["paper"] else field.default)
        if field.metadata["paper"] and field.name not in defaults and dataset:
            shown = {"paper": paper_values[field.name]}
            if field.name in reproduce:
                shown["reproduce"] = reproduce[field.name]
            help_text += " [" + "; ".join(f"{k}: {_shown(v)}" for k, v in shown.items()) + "]"
        choices = field.metadata["rule"].choices
        if choices:
            flags.DEFINE_enum(name, default, list(choices), help_text)
        elif field.type is tuple:
            flags.DEFINE_list(name, default, help_text)
        else:
            _DEFINE[field.type](name, default, help_text)
        names.append(name)
    flags.register_multi_flags_validator(
        names, lambda values: _check_config(dataset or values["dataset"], values) or True)


def _shown(value):
    return ",".join(str(v) for v in value) if isinstance(value, (tuple, list)) else value


def _config(dataset, values):
    """A Config from {flag name: flag value}; a --beta list that is not numbers stays as
    given, for the rule to reject."""
    from zskd_tf import config
    given = {}
    for field in config.settings():
        name = config.flag_name(field)
        if field.name == "dataset" or name not in values:
            continue
        value = values[name]
        if field.type is tuple and value is not None:
            try:
                value = tuple(float(v) for v in value)
            except ValueError:
                pass
        given[field.name] = value
    return config.Config(dataset=dataset, **given)


def _check_config(dataset, values):
    from zskd_tf import config
    try:
        _config(dataset, values).validate()
    except config.ConfigError as e:
        flag = "--" + config.flag_name(
            next(f for f in config.settings() if f.name == e.field))
        raise flags.ValidationError(str(e).replace(e.field, flag, 1)) from None


def config_from_flags(dataset, **overrides):
    """The (unresolved) Config the command line gives for ``dataset``, with
    ``overrides`` (settings the binary sets itself)."""
    from zskd_tf import config
    values = {config.flag_name(f): FLAGS[config.flag_name(f)].value
              for f in config.settings() if f.name != "dataset" and config.flag_name(f) in FLAGS}
    return dataclasses.replace(_config(dataset, values), **overrides)


def log_preset(cfg):
    """Logs the preset and every setting that differs from the paper's; returns those
    differences ({setting: {"value", "paper", "source"}})."""
    from zskd_tf import presets
    differences = cfg.differences_from_paper()
    logging.info("preset %s for %s (%s); %s", cfg.preset, cfg.dataset,
                 presets.DESCRIPTIONS[cfg.preset],
                 "settings that differ from the paper's:" if differences
                 else "every setting is the paper's")
    for name, d in differences.items():
        logging.info("  %s = %s (paper: %s; from the %s)", name, _shown(d["value"]),
                     _shown(d["paper"]), "preset" if d["source"] == "preset" else "flags")
    return differences


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


def reject(message):
    """Ends the binary with ``message`` as one line on stderr and exit status 1."""
    raise SystemExit(f"error: {message}")


@contextlib.contextmanager
def one_line_errors():
    """Ends the binary with one line for the faults a run detects itself (a stage on disk
    made with other settings, a loss gone NaN): their messages say what to do."""
    from zskd_tf import craft_processes, impressions, store, training
    try:
        yield
    except (training.StageMismatch, store.SettingsMismatch, training.TrainingDiverged,
            impressions.CraftingDiverged, craft_processes.ProcessFailed) as e:
        reject(str(e))


def start_run(workdir, host=0):
    """Makes ``workdir`` this process's for the rest of its life (``io_utils.lock_workdir``),
    or ends the binary with one line if another run holds it. ``host`` i > 0 of a
    several-host run (hosts share the workdir) takes a lock of its own, so a second copy
    of that host is refused while its cluster's hosts are not. ``write_config`` calls it:
    call it first only to give ``host``."""
    try:
        io_utils.lock_workdir(workdir, io_utils.LOCK_NAME + (f".host{host}" if host else ""))
    except io_utils.WorkdirBusy as e:
        reject(str(e))


def load_teacher(path, data):
    """The teacher model at ``path``, checked against ``data`` (its image shape and
    classes: ``zskd_tf.teachers.checks``); ends the binary with one line naming
    --teacher if it is no Keras model file or cannot be this run's teacher."""
    from zskd_tf import models
    from zskd_tf.teachers import checks
    try:
        teacher = models.load(path)
    except (FileNotFoundError, models.ModelFileError) as e:
        reject(f"--teacher: {e}")
    try:
        checks.check(teacher, data.image_shape, data.num_classes)
    except checks.TeacherError as e:
        reject(f"--teacher: {path}: {e}")
    return teacher


def check_teacher(path, data):
    """``load_teacher``'s checks, for a binary that loads the teacher later: call it before
    the workdir is touched. Nothing when there is no file at ``path`` (the binary trains
    a teacher)."""
    if os.path.exists(path):
        load_teacher(path, data)


def write_config(workdir):
    """Takes the workdir (``start_run``), then records the command and flags in
    ``config.json``: call it once the checks that can reject the run have passed, so a
    rejected run never replaces a finished run's record."""
    start_run(workdir)
    config = {"command": command_line(), "flags": flag_values(),
              "python": platform.python_version(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    io_utils.write_json(os.path.join(workdir, "config.json"), config)
    logging.info("config written to %s", os.path.join(workdir, "config.json"))
    return config


def valid_lr_drops(values):
    """Whether a --*_lr_drops list is distinct epoch numbers > 0 (a flag validator)."""
    return all(v.isdigit() and int(v) > 0 for v in values) and len(set(map(int, values))) \
        == len(values)


def write_results(workdir, results, data=None):
    """Writes WORKDIR/results.json: the command, ``results``, the provenance of ``data``
    (the loaded ``data.Dataset``; ``data.provenance``), versions and machine."""
    import tensorflow as tf
    import keras
    from zskd_tf import data as data_lib
    results = {"command": command_line(), **results,
               **({"data": data_lib.provenance(data)} if data is not None else {}),
               "versions": {"tensorflow": tf.__version__, "keras": keras.__version__,
                            "python": platform.python_version()},
               "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}}
    path = os.path.join(workdir, "results.json")
    io_utils.write_json(path, results)
    logging.info("results written to %s", path)
    return results


def preset_teacher(dataset, preset=None):
    """The teacher file ``preset`` (default: the default preset) names for ``dataset``."""
    from zskd_tf import presets
    return os.path.join(REPO, presets.values(preset or presets.DEFAULT, dataset)["teacher"])


def existing_teacher(dataset, given):
    """``given`` or the default preset's teacher of ``dataset``, for binaries that do not
    train one; a UsageError when there is none."""
    path = given or preset_teacher(dataset)
    if not os.path.isfile(path):
        raise app.UsageError(f"no teacher at {path}: pass --teacher")
    return path


def balanced_subset(labels, size, seed):
    """Sorted indices of a random subset of ``size`` examples, as class-balanced as
    ``labels`` allow (``size / classes`` each; a class short of its share gives all it
    has and the others share the rest: ``arbitrary.quotas``), drawn with ``seed``."""
    import numpy as np
    from zskd_tf import arbitrary
    labels = np.asarray(labels)
    counts = np.bincount(labels, minlength=NUM_CLASSES)
    take = arbitrary.quotas(counts, size)
    rng = np.random.default_rng(seed)
    return np.sort(np.concatenate([
        rng.choice(np.flatnonzero(labels == c), take[c], replace=False)
        for c in range(len(counts))]))
