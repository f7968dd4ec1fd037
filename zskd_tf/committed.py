"""Runs judged by their settings: a planned run of ``experiments.reproduce`` against a run
on disk (in its workdir, or committed under results/), importing committed matches, and
how long the runs still to do would take.

A run's ``Settings`` are what defines its result, not its command text: for a ZSKD binary
its resolved ``config.Config`` (paper, preset, given) without the run-only settings
(``RUN_ONLY``), the teacher compared by file name (and by test accuracy where both sides
know it); for ``train_teacher`` and ``student_kd`` their flags (recorded values first,
then the command's flags, then the binaries' defaults). Two runs are the same when
``differences`` is empty. A record that predates a setting ran with that setting's
default (its field default, else the paper's value). Of several committed runs with the
same settings, the one crafted at the planned parallelism is imported (``RUN_ONLY_NOTE``),
then the newest (versions, then commit time, then file time).

No TensorFlow here.
"""
import dataclasses
import hashlib
import math
import os
import shlex
import shutil
import statistics
import subprocess

from zskd_tf import config as config_lib
from zskd_tf import io_utils
from zskd_tf import paper
from zskd_tf import presets
from zskd_tf import records

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMITTED = os.path.join(REPO, "results")
# Settings of how a run goes (speed, memory, what it logs), not compared. Only
# parallel_batches is known to change a result's rounding (RUN_ONLY_NOTE).
RUN_ONLY = ("parallel_batches", "craft_processes", "eval_every", "heldout_impressions")
RUN_ONLY_NOTE = ("crafting at another parallelism rounds differently: equally good, not "
                 "bit-equal impressions, docs/PERFORMANCE.md")
# The augmented fine-tuning stage's settings: nothing to a run without that stage.
FINETUNE = ("finetune_epochs", "finetune_lr", "augment_prob")
# What an imported run's workdir gets besides results.json (and the history CSVs).
EXTRA_FILES = ("run.log", "transfer_set_manifest.json")
IMPORTED = "imported.json"  # in an imported run's workdir: where it came from
TRANSFER_SET = "transfer_set"  # a run's transfer set folder (an imported run: a link)
TEACHER_ACCURACY_TOLERANCE = 0.015  # percent; records keep two decimals
_MISSING = object()


@dataclasses.dataclass(frozen=True)
class Settings:
    """What defines a run's result. ``kind``: zskd, train_teacher or student_kd (None: a
    binary not compared here); ``values``: {setting: value}; ``teacher_accuracy``: the
    teacher's test accuracy where known; ``run_only``: the run-only settings that break
    ties between exact matches ({"parallel_batches": n}, ZSKD only)."""
    kind: str
    values: dict = dataclasses.field(hash=False, compare=False)
    teacher_accuracy: float = None
    run_only: dict = dataclasses.field(default=None, hash=False, compare=False)


# ------------------------------------------------------------------- planned settings

def _config_values(dataset, preset, seed, given):
    settings = config_lib.Config(dataset=dataset, preset=preset, seed=seed,
                                 **given).layered()[0]
    return {k: _plain(v) for k, v in settings.items()
            if k not in RUN_ONLY and k not in ("preset", "teacher")}


def _parallel_batches(dataset, preset, given):
    """The crafting batches a run optimises together (given, else the default for its
    teacher and batch size): not part of the result's settings, but crafting at another
    parallelism rounds differently, so sets are equally good, not bit-equal
    (docs/PERFORMANCE.md)."""
    # craft_processes given: resolved() then needs no TensorFlow
    given = {**given, "craft_processes": given.get("craft_processes") or 1}
    return config_lib.Config(dataset=dataset, preset=preset, **given).resolved(
        ).parallel_batches


def teacher_record(path):
    """The committed training record (results/real_data/<name>.json) of a teacher file
    name, or None."""
    name = os.path.splitext(os.path.basename(path))[0]
    record = os.path.join(COMMITTED, "real_data", f"{name}.json")
    return io_utils.read_json(record) if os.path.exists(record) else None


def zskd(dataset, preset, seed, teacher, given, teacher_given=False):
    """A planned ZSKD run's settings: ``given`` the settings its flags give."""
    values = _config_values(dataset, preset, seed, given)
    values["teacher"] = os.path.basename(teacher)
    known = None if teacher_given else teacher_record(teacher)
    return Settings("zskd", values, known and known.get(records.TEST_ACCURACY),
                    {"parallel_batches": _parallel_batches(dataset, preset, given)})


def _epochs_list(value):
    """Recorded learning-rate drops as [int]: a list, a command line's "60,80", or None."""
    if isinstance(value, str):
        value = value.split(",") if value else []
    return sorted(int(e) for e in value or [])


def _train_teacher_values(dataset, model=None, epochs=None, lr=None, batch_size=None,
                          weight_decay=None, augment=None, seed=None, lr_drops=None):
    setup = paper.SETUPS[dataset]
    return {"dataset": dataset, "model": model or setup.teacher,
            "epochs": int(epochs or setup.teacher_epochs),
            "lr": float(lr or setup.teacher_lr),
            "batch_size": int(batch_size or paper.BATCH_SIZE),
            "weight_decay": float(weight_decay or 0.0), "augment": augment or "none",
            "lr_drops": _epochs_list(lr_drops), "seed": int(seed or 0)}


def _student_kd_values(dataset, teacher=None, epochs=None, lr=None, kd_lambda=None,
                       temperature=None, batch_size=None, num_samples=None, seed=None,
                       student_precision=None, augment=None, weight_decay=None,
                       lr_drops=None):
    setup = paper.SETUPS[dataset]
    teacher = teacher or presets.values(presets.DEFAULT, dataset)["teacher"]
    return {"dataset": dataset, "teacher": os.path.basename(teacher),
            "epochs": int(epochs or setup.teacher_epochs),
            "lr": float(lr or setup.student_kd_lr),
            "kd_lambda": float(paper.KD_LAMBDA if kd_lambda is None else kd_lambda),
            "temperature": float(temperature or paper.TEMPERATURE),
            "batch_size": int(batch_size or paper.BATCH_SIZE),
            "num_samples": None if num_samples is None else int(num_samples),
            "seed": int(seed or 0), "student_precision": student_precision or "float32",
            "augment": augment or "none", "weight_decay": float(weight_decay or 0.0),
            "lr_drops": _epochs_list(lr_drops)}


def train_teacher(dataset, seed, model, epochs=None, augment=None, weight_decay=None,
                  lr_drops=None):
    """A planned ``train_teacher`` run's settings (the binary's defaults otherwise)."""
    return Settings("train_teacher", _train_teacher_values(
        dataset, model, epochs, weight_decay=weight_decay, augment=augment, seed=seed,
        lr_drops=lr_drops))


def student_kd(dataset, seed, teacher, epochs=None, num_samples=None, augment=None,
               weight_decay=None, lr_drops=None):
    """A planned ``student_kd`` run's settings (the binary's defaults otherwise)."""
    return Settings("student_kd", _student_kd_values(
        dataset, teacher, epochs, num_samples=num_samples, seed=seed, augment=augment,
        weight_decay=weight_decay, lr_drops=lr_drops))


# ------------------------------------------------------------------ recorded settings

def command_flags(command):
    """(module, {flag: value}) of a recorded command: ``--x=v`` gives "v", ``--x`` True,
    ``--nox`` False (for a flag not given as ``--nox=...``)."""
    words = shlex.split(command or "")
    module = words[2] if len(words) > 2 and words[1] == "-m" else None
    flags = {}
    for word in words[3:]:
        if not word.startswith("--"):
            continue
        name, eq, value = word[2:].partition("=")
        if eq:
            flags[name] = value
        elif name.startswith("no"):
            flags[name[2:]] = False
        else:
            flags[name] = True
    return module, flags


def _kind(module):
    name = (module or "").rpartition(".")[2]
    if name.endswith("_zskd"):
        return "zskd"
    return name if name in ("train_teacher", "student_kd") else None


def _module_dataset(module):
    name = module.rpartition(".")[2][:-len("_zskd")]
    return {"fmnist": "fashion_mnist"}.get(name, name)


def _flag_value(field, value):
    if field.type is bool:
        return value if isinstance(value, bool) else value.lower() in ("true", "1", "yes")
    if field.type is tuple:
        return tuple(float(v) for v in (value.split(",") if isinstance(value, str) else value))
    return field.type(value)


def _teacher_file(record, dataset, flags, preset):
    """The teacher's file name: recorded as the teacher's source, else the config's or the
    command's --teacher, else the preset's (records that name one), else the committed
    teacher the binaries defaulted to before presets."""
    teacher = record.get(records.TEACHER)
    source = teacher.get("source") if isinstance(teacher, dict) else teacher
    source = (source or record.get("config", {}).get("teacher") or flags.get("teacher")
              or (preset and presets.values(preset, dataset).get("teacher"))
              or f"{dataset}_{paper.SETUPS[dataset].teacher}.keras")
    return os.path.basename(source)


def _recorded_zskd(record, module, flags):
    config = record.get("config")
    if config is None:  # a record without its resolved config: its command's flags
        dataset = _module_dataset(module)
        preset = flags.get("preset", presets.DEFAULT)
        given = {f.name: _flag_value(f, flags[config_lib.flag_name(f)])
                 for f in config_lib.settings()
                 if config_lib.flag_name(f) in flags and f.name not in ("dataset", "preset")}
        values = _config_values(dataset, preset, given.pop("seed", 0), given)
        parallel = _parallel_batches(dataset, preset, given)
    else:
        dataset, preset = config.get("dataset") or record["dataset"], config.get("preset")
        reference = config_lib.paper_values(dataset, config.get("num_impressions"),
                                            config.get("impressions") or "data")
        values = {}
        for f in config_lib.settings():
            if f.name in RUN_ONLY or f.name in ("preset", "teacher"):
                continue
            default = f.default if f.default is not None else reference.get(f.name)
            values[f.name] = _plain(config.get(f.name, default))
        parallel = config.get("parallel_batches")
    values["teacher"] = _teacher_file(record, dataset, flags, preset)
    teacher = record.get(records.TEACHER)
    accuracy = teacher.get(records.TEST_ACCURACY) if isinstance(teacher, dict) else None
    return Settings("zskd", values, accuracy, {"parallel_batches": parallel})


def _first(record, flags, *names):
    """The record's value of ``names[0]``, else the first of the command's flags given."""
    if record.get(names[0]) is not None:
        return record[names[0]]
    return next((flags[n] for n in names if n in flags), None)


def of_record(record):
    """The Settings a run record (results.json, a results/real_data record, or a started
    run's config.json) says its run was made with; kind None for a record it cannot
    read (another binary, or flags no binary would take)."""
    try:
        return _of_record(record)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        return Settings(None, {"binary": f"unreadable ({io_utils.short_reason(e)})"})


def _of_record(record):
    module, flags = command_flags(record.get("command"))
    kind = _kind(module)
    if kind == "zskd":
        return _recorded_zskd(record, module, flags)
    if kind is None:
        return Settings(None, {"binary": module})
    dataset = record.get("dataset") or flags.get("dataset", "mnist")
    if kind == "train_teacher":
        return Settings(kind, _train_teacher_values(
            dataset, _first(record, flags, "model"),
            _first(record, flags, "epochs", "teacher_epochs"),
            flags.get("teacher_lr", flags.get("lr")), flags.get("batch_size"),
            _first(record, flags, "weight_decay"),
            _first(record, flags, "augment", "teacher_augment"), flags.get("seed"),
            _first(record, flags, "lr_drops", "teacher_lr_drops")))
    samples = record["num_samples"] if "num_samples" in record else flags.get("num_samples")
    return Settings(kind, _student_kd_values(
        dataset, _first(record, flags, "teacher"),
        _first(record, flags, "epochs", "student_epochs"),
        _first(record, flags, "lr", "student_lr"), flags.get("kd_lambda"),
        flags.get("temperature"), flags.get("batch_size"), samples, flags.get("seed"),
        _first(record, flags, "student_precision"),
        _first(record, flags, "augment", "student_augment"),
        _first(record, flags, "weight_decay"),
        _first(record, flags, "lr_drops", "student_lr_drops")))


# ------------------------------------------------------------------------- comparing

def _plain(value):
    return [_plain(v) for v in value] if isinstance(value, (tuple, list)) else value


def _same(a, b):
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    numbers = (int, float)
    if (isinstance(a, numbers) and isinstance(b, numbers)
            and not isinstance(a, bool) and not isinstance(b, bool)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def differences(planned, recorded):
    """[(setting, recorded value, planned value)] where a recorded run differs from a
    planned one; empty when they are the same run."""
    if planned.kind != recorded.kind:
        return [("binary", recorded.kind or recorded.values.get("binary"), planned.kind)]
    skip = ()
    if planned.kind == "zskd" and not planned.values.get("augment") and not \
            recorded.values.get("augment"):
        skip = FINETUNE  # neither has the fine-tuning stage
    out = [(k, recorded.values.get(k, "not recorded"), v) for k, v in planned.values.items()
           if k not in skip and not _same(recorded.values.get(k, _MISSING), v)]
    if None not in (planned.teacher_accuracy, recorded.teacher_accuracy) and abs(
            planned.teacher_accuracy - recorded.teacher_accuracy) > TEACHER_ACCURACY_TOLERANCE:
        out.append(("teacher test accuracy", recorded.teacher_accuracy,
                    planned.teacher_accuracy))
    return out


def describe(diffs):
    """``differences`` as text: "finetune_epochs 100 (planned 1000), ..."."""
    return ", ".join(f"{k} {_text(r)} (planned {_text(p)})" for k, r, p in diffs)


def _text(value):
    if isinstance(value, list):
        return ",".join(map(_text, value)) if value else "none"
    return f"{value:g}" if isinstance(value, float) else str(value)


def run_only_differences(planned, recorded):
    """[(setting, recorded, planned)] of the run-only settings both sides know that
    differ (``Settings.run_only``)."""
    mine, theirs = planned.run_only or {}, recorded.run_only or {}
    return [(k, theirs[k], v) for k, v in mine.items()
            if theirs.get(k) is not None and not _same(theirs[k], v)]


def student_stage_only(diffs):
    """Whether only the fine-tuning stage differs: the distilled student (the
    without-augmentation result) is the same run's."""
    return bool(diffs) and all(k in (*FINETUNE, "augment") for k, _, _ in diffs)


# ------------------------------------------------------------------------- scanning

@dataclasses.dataclass(frozen=True)
class Committed:
    """A finished run's record found on disk: its JSON, what it holds, its settings and
    the files an import copies ((source path, name in the workdir), ...)."""
    path: str
    record: dict = dataclasses.field(hash=False, compare=False)
    settings: Settings
    files: tuple
    order: tuple  # newest last: (versions, commit time, file time, path)

    @property
    def shown(self):
        """The record's path, relative to the repository when inside it."""
        return _shown(self.path)


def _shown(path):
    rel = os.path.relpath(path, REPO)
    return path if rel.startswith("..") else rel


def _version(text):
    return tuple(int(p) if p.isdigit() else 0 for p in str(text).split("."))


def _commit_times(directory):
    """{path: the newest commit time touching it} under ``directory`` ({} outside git)."""
    try:
        out = subprocess.run(["git", "-C", directory, "log", "--format=@%ct", "--name-only",
                              "--relative", "."], capture_output=True, text=True, timeout=60,
                             check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    times, now = {}, 0
    for line in out.splitlines():
        if line.startswith("@"):
            now = int(line[1:])
        elif line:
            times.setdefault(os.path.normpath(os.path.join(directory, line)), now)
    return times


def _files(path, record):
    folder = os.path.dirname(path)
    if os.path.basename(path) == "results.json":
        names = sorted(n for n in os.listdir(folder)
                       if n.endswith("_history.csv") or n in EXTRA_FILES)
        return ((path, "results.json"),
                *((os.path.join(folder, n), n) for n in names))
    stem = os.path.splitext(path)[0]  # results/real_data/<name>.json, <name>_history.csv
    csv = f"{stem}_history.csv"
    extra = ((csv, record.get("history_csv") or os.path.basename(csv)),) \
        if os.path.exists(csv) else ()
    return ((path, "results.json"), *extra)


def scan(directory, exclude=None):
    """Every finished run's record under ``directory`` (recursively): results.json files
    of the compared binaries, and records like results/real_data/*.json (a training
    record with its command). ``exclude``: a folder left out (the planned runs' root)."""
    directory = os.path.abspath(directory)
    exclude = exclude and os.path.abspath(exclude)
    times, found = _commit_times(directory), []
    for folder, subfolders, names in os.walk(directory):
        subfolders.sort()
        if exclude and (folder + os.sep).startswith(exclude + os.sep):
            subfolders[:] = []
            continue
        for name in sorted(n for n in names if n.endswith(".json")):
            path = os.path.join(folder, name)
            if name == "results.json" and imported(folder):
                continue  # a copy imported into a planned run: its source is the record
            try:
                record = io_utils.read_json(path)
            except (OSError, ValueError):
                continue
            if not isinstance(record, dict) or records.TEST_ACCURACY not in record:
                continue
            settings = of_record(record)
            if settings.kind is None or (name != "results.json"
                                         and settings.kind == "zskd"):
                continue
            versions = record.get("versions", {})
            order = (tuple(_version(versions.get(k, "0"))
                           for k in ("tensorflow", "keras", "python")),
                     times.get(os.path.normpath(path), 0), os.path.getmtime(path), path)
            found.append(Committed(path, record, settings, _files(path, record), order))
    return found


# ------------------------------------------------------------------------- importing

@dataclasses.dataclass(frozen=True)
class Match:
    """What the committed runs hold for one planned run: ``source`` to import (None:
    none), the other exact matches (``duplicates``), the closest others with their
    differences (``near``), and why a match is not imported (``note``)."""
    run: object
    source: Committed = None
    duplicates: tuple = ()
    near: tuple = ()  # ((Committed, differences), ...)
    note: str = ""


# What a near miss shares with the planned run besides its binary: what it is a run of.
IDENTITY = {"zskd": ("dataset", "seed", "num_impressions", "impressions", "prior"),
            "train_teacher": ("dataset", "seed", "model"),
            "student_kd": ("dataset", "seed", "num_samples")}


def match(run, committed, near_limit=3, near_differences=3):
    """The Match of a planned ``run`` (with ``settings`` and ``needs_transfer_set``) among
    ``committed``: the newest exact match is the source; near misses are runs of the same
    experiment (``IDENTITY``) with a few other settings."""
    same, near = [], []
    for c in committed:
        diffs = differences(run.settings, c.settings)
        if not diffs:
            same.append(c)
        elif c.settings.kind == run.settings.kind and len(diffs) <= near_differences and all(
                k not in IDENTITY[c.settings.kind] for k, _, _ in diffs):
            near.append((c, diffs))
    # the closest first (run-only settings like the planned run's), then the newest
    same.sort(key=lambda c: (-len(run_only_differences(run.settings, c.settings)), c.order),
              reverse=True)
    near.sort(key=lambda n: (len(n[1]), n[0].path))
    if same and getattr(run, "needs_transfer_set", False):
        local = [c for c in same if _local_transfer_set(
            c.record.get("command"), {n: p for p, n in c.files}.get(
                "transfer_set_manifest.json"))]
        if local:
            return Match(run, local[0], tuple(c for c in same if c is not local[0]),
                         tuple(near[:near_limit]))
        return Match(run, None, tuple(same), tuple(near[:near_limit]), note=(
            f"{same[0].shown} has the same settings, but this needs the run's transfer "
            "set, which is not committed (nor on this machine): a real run is needed"))
    return Match(run, same[0] if same else None, tuple(same[1:]), tuple(near[:near_limit]))


def duplicates_text(m):
    """The exact matches not imported, each with how it ran differently, if it did."""
    def one(c):
        run_only = run_only_differences(m.run.settings, c.settings)
        return c.shown + (f" ({describe(run_only)})" if run_only else "")
    return ", ".join(one(c) for c in m.duplicates)


def near_text(c, diffs):
    """One near miss as text."""
    stage = ("; its student stage (without augmentation) is the same run's, not imported: "
             "a table takes both stages from one run" if student_stage_only(diffs) else "")
    return f"{c.shown}: {describe(diffs)}{stage}"


def _sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def import_into(m, workdir):
    """Copies ``m.source``'s record and files into ``workdir`` and records where they came
    from in ``workdir/imported.json``; returns that record."""
    os.makedirs(workdir, exist_ok=True)
    for source, name in m.source.files:
        shutil.copyfile(source, os.path.join(workdir, name))
    info = {"source": m.source.shown, "command": m.source.record.get("command"),
            "planned_command": m.run.command,
            "files": [name for _, name in m.source.files],
            "results_sha256": _sha256(os.path.join(workdir, "results.json")),
            "duplicates": [c.shown for c in m.duplicates],
            "run_only_differences": describe(run_only_differences(m.run.settings,
                                                                  m.source.settings))}
    io_utils.write_json(os.path.join(workdir, IMPORTED), info)
    return info


def imported(workdir):
    """The import record of ``workdir`` if its results.json is still the imported one,
    else None (no import, or a real run replaced it)."""
    path = os.path.join(workdir, IMPORTED)
    results = os.path.join(workdir, "results.json")
    if not (os.path.exists(path) and os.path.exists(results)):
        return None
    info = io_utils.read_json(path)
    return info if info.get("results_sha256") == _sha256(results) else None


def remove_import(workdir):
    """Removes an imported run's copied files and its linked transfer set (the committed
    originals stay), so a real run starts in a clean workdir."""
    info = io_utils.read_json(os.path.join(workdir, IMPORTED))
    for name in (*info["files"], TRANSFER_SET, IMPORTED):
        path = os.path.join(workdir, name)
        if os.path.islink(path) or os.path.isfile(path):
            os.remove(path)


def original_transfer_set(workdir):
    """The transfer set an imported run crafted, when it is still on this machine: the
    ``transfer_set`` folder of its command's absolute ``--workdir``, if that folder's
    manifest is byte for byte the one committed with the record (so its shards, checked
    against the manifest's checksums when read, are the run's). Else None."""
    info = imported(workdir)
    if not info:
        return None
    return _local_transfer_set(
        info.get("command"), os.path.join(workdir, "transfer_set_manifest.json"))


def _local_transfer_set(command, committed_manifest):
    original = command_flags(command)[1].get("workdir")
    if not (isinstance(original, str) and os.path.isabs(original) and committed_manifest
            and os.path.isfile(committed_manifest)):
        return None
    folder = os.path.join(original, TRANSFER_SET)
    manifest = os.path.join(folder, "manifest.json")
    if os.path.isfile(manifest) and _sha256(manifest) == _sha256(committed_manifest):
        return folder
    return None


def link_transfer_set(workdir):
    """Links ``original_transfer_set`` into an imported run's workdir as its
    transfer_set (recorded in imported.json); returns the folder, or None if there is
    none to link."""
    folder = original_transfer_set(workdir)
    if folder is None:
        return None
    link = os.path.join(workdir, TRANSFER_SET)
    if not os.path.lexists(link):
        os.symlink(folder, link)
    path = os.path.join(workdir, IMPORTED)
    io_utils.write_json(path, {**io_utils.read_json(path), "transfer_set": folder})
    return folder


# ------------------------------------------------------------------------ estimating

def _median(values):
    values = [v for v in values if v]
    return statistics.median(values) if values else None


def _zskd_seconds(v, committed):
    same = [c.record for c in committed if c.settings.kind == "zskd"
            and c.settings.values["dataset"] == v["dataset"]]
    kind = [r for r in same if r.get("config", {}).get("impressions", "data")
            == v["impressions"]] or same
    n = v["num_impressions"]

    def per_impression(rows, stage, key):
        return _median([r[stage].get(key, 0) / r["config"]["num_impressions"]
                        for r in rows if isinstance(r.get(stage), dict)
                        and r.get("config", {}).get("num_impressions")])

    craft = per_impression(
        [r for r in kind if r.get("config", {}).get("craft_precision", "float32")
         == v["craft_precision"]] or kind, "crafting", "craft_seconds")
    epoch = per_impression(same, records.STUDENT, "mean_epoch_seconds")
    finetune = per_impression(same, records.STUDENT_AUGMENTED, "mean_epoch_seconds") \
        if v["augment"] else 0.0
    if None in (craft, epoch, finetune):
        return None, f"no committed ZSKD record of {v['dataset']} with these stages"
    total = n * (craft + epoch * v["student_epochs"]
                 + finetune * (v["finetune_epochs"] if v["augment"] else 0))
    return total, (f"crafting {n * craft / 3600:.1f} h, distillation "
                   f"{n * epoch * v['student_epochs'] / 3600:.1f} h"
                   + (f", fine-tuning {n * finetune * v['finetune_epochs'] / 3600:.1f} h"
                      if v["augment"] else ""))


def _costs_like(a, b):
    """Whether an epoch on data set ``a`` costs what one on ``b`` does: the same models
    and training-set size (MNIST and Fashion-MNIST)."""
    sa, sb = paper.SETUPS[a], paper.SETUPS[b]
    return (sa.teacher, sa.student, sa.train_size) == (sb.teacher, sb.student, sb.train_size)


def estimate(settings, committed):
    """(seconds or None, how it was estimated) of a planned run, from the committed
    records' crafting and epoch times (2 shared CPU cores, as recorded); real-data runs
    use the records of every data set that costs the same (``_costs_like``)."""
    v = settings.values
    if settings.kind == "zskd":
        return _zskd_seconds(v, committed)
    dataset = v["dataset"]
    images = v.get("num_samples") or paper.SETUPS[dataset].train_size
    if settings.kind == "student_kd":
        per_image = _median([
            (c.record.get("mean_epoch_seconds") or 0) / c.record["train_images"]
            for c in committed if c.settings.kind == "student_kd"
            and _costs_like(c.settings.values["dataset"], dataset)
            and c.record.get("train_images")])
        if per_image is not None:
            return per_image * images * v["epochs"], (
                f"{per_image * images:.1f} s/epoch (Student-KD records, per image)")
    model = v.get("model") or paper.SETUPS[dataset].student
    trained = [c.record for c in committed if c.settings.kind == "train_teacher"
               and _costs_like(c.settings.values["dataset"], dataset)
               and c.settings.values["model"] == model]
    epoch = _median([r.get("mean_epoch_seconds") for r in trained])
    if epoch is None:
        return None, f"no committed training record of {model} on {dataset}"
    if settings.kind == "train_teacher":
        return epoch * v["epochs"], f"{epoch:.1f} s/epoch ({model} records)"
    share = images / paper.SETUPS[dataset].train_size
    return epoch * share * v["epochs"], (
        f"at least {epoch * share:.1f} s/epoch: no committed Student-KD record, the "
        f"student's cross-entropy epochs ({model}) without the teacher's forward pass")
