"""The paper's tables and figures, each from the runs it needs (``experiments.reproduce``).

For every table (1-7) and figure (1-4), ``item(kind, number)`` says which runs it needs
and how to build it from them. A run is one command of an existing binary
(``experiments.<data set>_zskd``, ``train_teacher``, ``student_kd``) with ``--preset``,
``--seed``, ``--workdir`` and the few flags its cell needs (``--prior=uniform``,
``--impressions=class``, ``--num_impressions=N``, ``--noaugment``, ``--num_samples=N``);
every other setting comes from the preset and ``zskd_tf.config`` as in any run. Each run
has its own workdir, ``ROOT/<data set>/<run>_seed<seed>`` (``<run>``: ``zskd``,
``zskd_uniform``, ``zskd_600``, ``class_600``, ``student_ce``, ``student_kd``,
``student_kd_600``..., with the size it runs at), so it resumes like any run and records
its exact command; a run whose ``results.json`` exists is reused. Each run carries its
``committed.Settings``: a run on disk is the same run when its settings agree, whatever
its command text, and a committed one can be imported into the run's workdir
(``matches``, ``import_matches``).

A built table or figure holds, per cell: the paper's number, ours (mean and sample
standard deviation over seeds of the final-epoch test accuracy, and each seed's value),
the difference, the budget and the exact commands of the runs behind it.

No TensorFlow here except in the functions that build models (Tables 4, 5) or draw
(figures), which import it when called.
"""
import dataclasses
import os
import shlex
import statistics
import subprocess
import sys

from zskd_tf import committed
from zskd_tf import config as config_lib
from zskd_tf import io_utils
from zskd_tf import paper
from zskd_tf import presets
from zskd_tf import records

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATASETS = config_lib.DATASETS
NAMES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}
KINDS = {"table": range(1, 8), "figure": range(1, 5)}
DEFAULT_SEEDS = (0, 1, 2)


# ------------------------------------------------------------------------------ budgets

_QUICK = "a quick look, not comparable with the paper"


@dataclasses.dataclass(frozen=True)
class Budget:
    """How much each run does. ``full``: the preset's settings. ``reduced``: a quick look,
    not comparable with the paper: every transfer-set size (and Fig. 2's real-data
    subsets) times ``impressions_scale`` and fewer epochs; the crafting settings for a
    scaled size are the appendix's for the nearest size it lists (``zskd_tf.config``)."""
    name: str
    impressions_scale: float = 1.0
    student_epochs: int = None    # distillation on impressions (None: the preset's)
    finetune_epochs: int = None   # augmented fine-tuning (None: the preset's)
    real_data_epochs: int = None  # Student-CE and Student-KD (None: the appendix's)

    def describe(self):
        if self.name == "full":
            return f"full budget ({self.details()})"
        return f"REDUCED budget ({_QUICK}): {self._sizes()}"

    def details(self):
        """What the budget does, without its name (figure titles name it already)."""
        return "the preset's settings" if self.name == "full" else f"{_QUICK}: {self._sizes()}"

    def _sizes(self):
        return (f"transfer sets and real-data subsets x{self.impressions_scale:g}, "
                f"{self.student_epochs} distillation + {self.finetune_epochs} fine-tuning "
                f"epochs, {self.real_data_epochs} epochs for Student-CE and Student-KD")

    def as_dict(self):
        return {**dataclasses.asdict(self), "description": self.describe(),
                "details": self.details()}


FULL = Budget("full")
REDUCED = Budget("reduced", impressions_scale=0.1, student_epochs=20, finetune_epochs=20,
                 real_data_epochs=10)
BUDGETS = {"full": FULL, "reduced": REDUCED}


def budget(name, impressions_scale=None):
    """The named budget; ``impressions_scale`` (reduced only) replaces its scale."""
    chosen = BUDGETS[name]
    if impressions_scale is None:
        return chosen
    if name != "reduced":
        raise ValueError("impressions_scale applies to the reduced budget only")
    if not 0 < impressions_scale <= 1:
        raise ValueError(f"impressions_scale must be in (0, 1], got {impressions_scale}")
    return dataclasses.replace(chosen, impressions_scale=impressions_scale)


# --------------------------------------------------------------------------------- runs

@dataclasses.dataclass(frozen=True)
class Setup:
    """What the user asked for: where, which preset, seeds, budget, data sets, data,
    teacher files replacing the preset's ({data set: path}), and Table 7's transfer-set
    size for data sets where it is not the headline one."""
    root: str
    preset: str = presets.DEFAULT
    seeds: tuple = DEFAULT_SEEDS
    budget: Budget = FULL
    datasets: tuple = DATASETS
    data_dir: str = None
    teachers: tuple = ()  # ((data set, path), ...)
    prior_sizes: tuple = ()  # ((data set, transfer-set size of Table 7), ...)

    def teacher(self, dataset):
        """(path, given): the teacher file of ``dataset`` and whether --teacher gave it."""
        given = dict(self.teachers).get(dataset)
        if given:
            return os.path.abspath(given), True
        return os.path.join(REPO, presets.values(self.preset, dataset)["teacher"]), False

    def size(self, dataset, n):
        """Transfer-set size ``n`` under the budget: scaled, then rounded down to a
        multiple of classes x betas (at least one)."""
        if self.budget.impressions_scale == 1:
            return n
        settings = config_lib.Config(dataset=dataset, preset=self.preset).layered()[0]
        unit = config_lib.NUM_CLASSES * len(settings["betas"])
        return max(unit, int(n * self.budget.impressions_scale) // unit * unit)


@dataclasses.dataclass(frozen=True)
class Run:
    """One command of an existing binary, in its own workdir. ``settings``: what defines
    its result (``committed.Settings``), by which a run on disk is judged the same run;
    ``needs_transfer_set``: the item needs the run's transfer set, not only its record
    (Figure 4), so an imported record finishes it only with its transfer set linked."""
    dataset: str
    name: str     # e.g. zskd, zskd_uniform, student_kd_600
    seed: int
    argv: tuple   # "python", "-m", module, flags...
    workdir: str
    settings: committed.Settings = dataclasses.field(default=None, compare=False,
                                                     repr=False)
    needs_transfer_set: bool = False

    @property
    def label(self):
        return f"{self.dataset}/{os.path.basename(self.workdir)}"

    @property
    def command(self):
        return shlex.join(self.argv)

    def results(self):
        """The run's results.json, or None if it has not finished."""
        path = os.path.join(self.workdir, "results.json")
        return io_utils.read_json(path) if os.path.exists(path) else None

    def imported(self):
        """Where the run's results.json was imported from (``committed.imported``), or
        None."""
        return committed.imported(self.workdir)

    def status(self):
        """finished, imported (a committed run's record copied in: finished, but without
        its models and transfer set), started or missing."""
        if os.path.exists(os.path.join(self.workdir, "results.json")):
            return "imported" if self.imported() else "finished"
        if os.path.exists(os.path.join(self.workdir, "config.json")):
            return "started"
        return "missing"

    def done(self):
        """Whether nothing is left to run: finished, or imported when the record is all
        the item needs or its transfer set is linked too."""
        status = self.status()
        return status == "finished" or (status == "imported" and (
            not self.needs_transfer_set or self.has_transfer_set()))

    def has_transfer_set(self):
        """Whether the workdir holds a finished transfer set (an imported run's: linked,
        ``committed.link_transfer_set``)."""
        return os.path.isfile(os.path.join(self.workdir, committed.TRANSFER_SET,
                                           "manifest.json"))

    def conflict(self):
        """Why this workdir cannot hold this run (it holds one made with other settings:
        other preset, budget, teacher...; named), or None. Settings are compared, not
        command text: another --workdir, --data_dir or a flag giving a preset's value
        is the same run."""
        for name in ("results.json", "config.json"):
            path = os.path.join(self.workdir, name)
            if os.path.exists(path):
                record = io_utils.read_json(path)
                diffs = committed.differences(self.settings, committed.of_record(record))
                if diffs:
                    return (f"{self.workdir} holds a run made with other settings "
                            f"({committed.describe(diffs)}; its command: "
                            f"{record.get('command', '')}), not {self.command}: use "
                            "another --workdir")
                return None
        return None

    def record(self):
        """What a table or figure records about the run: its command as the finished run
        recorded it (an imported run's own command, with where it came from and the
        planned command), else as it would be run."""
        results = self.results()
        command = results.get("command", self.command) if results else self.command
        out = {"run": self.label, "seed": self.seed, "status": self.status(),
               "workdir": self.workdir, "command": command}
        info = self.imported()
        if info:
            out.update(imported_from=info["source"], planned_command=self.command)
        return out


FINISHED = ("finished", "imported")  # statuses whose results.json a table reads
NO_TRANSFER_SET = "imported: its transfer set is not committed, a real run is needed"


def _run(setup, dataset, name, seed, module, flags, settings):
    workdir = os.path.join(os.path.abspath(setup.root), dataset, f"{name}_seed{seed}")
    extra = [f"--data_dir={os.path.abspath(setup.data_dir)}"] if setup.data_dir else []
    argv = ("python", "-m", module, *flags, f"--seed={seed}", f"--workdir={workdir}", *extra)
    return Run(dataset, name, seed, argv, workdir, settings)


def zskd_run(setup, dataset, seed, num_impressions=None, prior=None, impressions=None):
    """A ZSKD binary's run: the headline one (no arguments: the preset's transfer-set
    size, with augmented fine-tuning; Tables 1-3, 6) or a variant without augmentation
    (another size, prior or kind of impressions). A Data Impressions point at the
    headline size is the headline run: its student stage is that point."""
    headline = paper.HEADLINE_IMPRESSIONS[dataset]
    if num_impressions == headline and prior is None and impressions is None:
        num_impressions = None
    variant = num_impressions is not None or prior is not None or impressions is not None
    n = setup.size(dataset, num_impressions or headline)
    name = "class" if impressions == "class" else "zskd"
    if num_impressions is not None:
        name += f"_{n}"
    if prior is not None:
        name += f"_{prior}"
    given, b = {}, setup.budget  # the settings the run's flags give, in flag order
    if num_impressions is not None or n != headline:
        given["num_impressions"] = n
    for key, value in (("prior", prior), ("impressions", impressions),
                       ("augment", False if variant else None),
                       ("student_epochs", b.student_epochs),
                       ("finetune_epochs", None if variant else b.finetune_epochs)):
        if value is not None:
            given[key] = value
    flags = [f"--preset={setup.preset}"] + [
        f"--no{k}" if v is False else f"--{k}={v}" for k, v in given.items()]
    teacher, teacher_given = setup.teacher(dataset)
    if teacher_given:
        flags.append(f"--teacher={teacher}")
    settings = committed.zskd(dataset, setup.preset, seed, teacher, given, teacher_given)
    return _run(setup, dataset, name, seed, f"experiments.{dataset}_zskd", flags, settings)


def _real_data_recipe(setup, dataset):
    """The preset's real-data recipe (``presets.real_data``), its epochs the budget's
    when the budget sets them."""
    recipe = presets.real_data(setup.preset, dataset)
    epochs = setup.budget.real_data_epochs
    if epochs:
        recipe["epochs"] = epochs
        if recipe.get("lr_drops"):  # the drops a shorter run never reaches
            recipe["lr_drops"] = tuple(e for e in recipe["lr_drops"] if e < epochs)
    return recipe


def _recipe_flags(recipe, role):
    """Command-line flags of ``recipe`` for train_teacher (``role`` "teacher") or
    student_kd ("student")."""
    flags = [f"--{role}_epochs={recipe['epochs']}"] if recipe.get("epochs") else []
    if recipe.get("augment", "none") != "none":
        flags.append(f"--{role}_augment={recipe['augment']}")
    if recipe.get("weight_decay"):
        flags.append(f"--weight_decay={recipe['weight_decay']:g}")
    if recipe.get("lr_drops"):
        flags.append(f"--{role}_lr_drops={','.join(map(str, recipe['lr_drops']))}")
    return flags


def student_ce_run(setup, dataset, seed):
    """Student-CE: the student trained with cross-entropy on the real training data."""
    model, recipe = paper.SETUPS[dataset].student, _real_data_recipe(setup, dataset)
    flags = [f"--dataset={dataset}", f"--model={model}", *_recipe_flags(recipe, "teacher")]
    return _run(setup, dataset, "student_ce", seed, "experiments.train_teacher", flags,
                committed.train_teacher(dataset, seed, model, **recipe))


def student_kd_run(setup, dataset, seed, num_samples=None):
    """Student-KD from the preset's teacher on the real training data (``num_samples``:
    a class-balanced subset of that many images, scaled by the budget)."""
    teacher, recipe = setup.teacher(dataset)[0], _real_data_recipe(setup, dataset)
    flags = [f"--dataset={dataset}", f"--teacher={teacher}"]
    name = "student_kd"
    if num_samples is not None:
        num_samples = setup.size(dataset, num_samples)
        flags.append(f"--num_samples={num_samples}")
        name += f"_{num_samples}"
    flags += _recipe_flags(recipe, "student")
    return _run(setup, dataset, name, seed, "experiments.student_kd", flags,
                committed.student_kd(dataset, seed, teacher, num_samples=num_samples,
                                     **recipe))


def unique(runs):
    """``runs`` without repeats (one run can serve several cells), in order."""
    return list({run.workdir: run for run in runs}.values())


# ---------------------------------------------------------------------------- executing

class RunFailed(RuntimeError):
    """A run's command failed; its workdir keeps what it finished (rerun to resume)."""


def run_subprocess(run):
    """Runs ``run``'s command from the repository root (this Python for ``python``);
    its output goes to this process's stdout and stderr. Returns the exit status."""
    return subprocess.run([sys.executable, *run.argv[1:]], cwd=REPO).returncode


def conflicts(runs):
    """Messages for runs whose workdir holds a run made with other settings."""
    return [m for m in (run.conflict() for run in unique(runs)) if m]


class Conflict(RuntimeError):
    """A run's workdir holds a run made with other settings."""


def matches(runs, found):
    """``committed.Match`` of each of ``runs`` not done yet among ``found`` (committed
    runs, ``committed.scan``): the one to import, duplicates, near misses."""
    return [committed.match(run, found) for run in unique(runs) if not run.done()
            and run.status() != "imported"]


def import_matches(found_matches, log=print):
    """Copies each match's committed run into its planned run's workdir (results.json,
    history CSVs, run.log, transfer_set_manifest.json; ``imported.json`` says from where):
    an imported run counts as finished. Returns the runs imported."""
    done = []
    for m in found_matches:
        if m.source is None or m.run.status() not in ("missing", "started"):
            continue
        committed.import_into(m, m.run.workdir)
        log(f"{m.run.label}: imported from {m.source.shown} (its command: "
            f"{m.source.record.get('command')})"
            + (f"; same settings, not used: {committed.duplicates_text(m)}"
               if m.duplicates else ""))
        done.append(m.run)
    return done


def link_transfer_sets(runs, log=print):
    """Links the transfer set of each imported run that needs one (Figure 4) when the
    run's own workdir is still on this machine (``committed.link_transfer_set``), so it
    is not remade. Returns the runs linked."""
    linked = []
    for run in unique(runs):
        if run.needs_transfer_set and run.status() == "imported" and not run.done():
            folder = committed.link_transfer_set(run.workdir)
            if folder:
                log(f"{run.label}: linked its transfer set from {folder} (its manifest is "
                    "the committed one)")
                linked.append(run)
    return linked


def execute(runs, runner=run_subprocess, log=print):
    """Runs each of ``runs`` one after another, skipping done ones (finished, or imported
    when its record is all the item needs); a started one resumes, because its binary
    resumes; an imported one whose transfer set is needed (Figure 4) gets it linked
    when it is still on this machine (``link_transfer_sets``), else loses its copied
    files and runs. Raises Conflict (before running anything) if a workdir holds a run
    made with other settings, RunFailed if a run fails."""
    runs = unique(runs)
    problems = conflicts(runs)
    if problems:
        raise Conflict(problems[0] + (f" (and {len(problems) - 1} more)" if problems[1:]
                                      else ""))
    link_transfer_sets(runs, log)
    for i, run in enumerate(runs, 1):
        status = run.status()
        if run.done():
            log(f"run {i} of {len(runs)}: {run.label}: {status}, reused")
            continue
        if status == "imported":
            committed.remove_import(run.workdir)
            log(f"run {i} of {len(runs)}: {run.label}: imported without its transfer set, "
                "which this needs: the copied files are removed and the run made")
        log(f"run {i} of {len(runs)}: {run.label}: "
            f"{'resuming' if status == 'started' else 'starting'}: {run.command}")
        code = runner(run)
        if code != 0 or run.status() != "finished":
            raise RunFailed(f"run {run.label} failed (exit status {code}): {run.command}; "
                            "rerunning resumes it")


def _plan_state(run, m):
    """What happens to ``run``: finished, imported from PATH, started (resumes), to run;
    and the lines that explain it."""
    status, info = run.status(), run.imported()
    if run.done():
        if info:
            return f"imported from {info['source']}", [f"its command: {info['command']}"] + (
                [f"how it ran differs: {info['run_only_differences']}"]
                if info.get("run_only_differences") else [])
        return "finished", []
    if m and m.source:
        run_only = committed.run_only_differences(run.settings, m.source.settings)
        return f"imported from {m.source.shown}", [
            f"its command: {m.source.record.get('command')}"] + (
            [f"same settings, not used: {committed.duplicates_text(m)}"]
            if m.duplicates else []) + (
            [f"how it ran differs: {committed.describe(run_only)} ({committed.RUN_ONLY_NOTE})"]
            if run_only else [])
    notes = [m.note] if m and m.note else []
    if status == "imported":
        original = committed.original_transfer_set(run.workdir)
        if original:
            return f"imported from {info['source']}", [
                f"its command: {info['command']}",
                f"its transfer set is still on this machine, to be linked: {original}"]
        notes.append(f"imported from {info['source']}, but this needs the run's transfer "
                     "set, which is not committed (nor on this machine): a real run is "
                     "needed")
    notes += [f"near miss, not imported: {committed.near_text(c, d)}"
              for c, d in (m.near if m else ())]
    return ("started (resumes)" if status == "started" else "to run"), notes


def plan_lines(runs, found_matches=(), timed=()):
    """What --dry_run prints (and a run logs): per run "[finished]", "[imported from
    PATH]", "[started (resumes)]" or "[to run]" and its command, with an imported run's
    own command, duplicates, near misses and the estimated time of each run still to
    do (from ``timed``: committed records, ``committed.scan``), then the totals."""
    runs = unique(runs)
    if not runs:
        return ["no runs needed"]
    by_workdir = {m.run.workdir: m for m in found_matches}
    lines, counts, seconds, unknown = [], {}, 0.0, []
    for run in runs:
        state, notes = _plan_state(run, by_workdir.get(run.workdir))
        word = state.split(" ", 1)[0]  # finished, imported, started, to (run)
        counts[word] = counts.get(word, 0) + 1
        if word in ("started", "to"):
            time, basis = committed.estimate(run.settings, timed)
            if time is None:
                unknown.append(run.label)
                notes.append(f"time: unknown ({basis})")
            else:
                seconds += time
                notes.append(f"time: about {time / 3600:.1f} h ({basis})"
                             + ("; less, as it resumes" if word == "started" else ""))
        lines += [f"[{state}] {run.command}"] + [f"    {n}" for n in notes]
    left = counts.get("started", 0) + counts.get("to", 0)
    head = (f"{len(runs)} run{'s' * (len(runs) > 1)}: {counts.get('finished', 0)} finished, "
            f"{counts.get('imported', 0)} imported, {counts.get('started', 0)} started "
            f"(resume), {counts.get('to', 0)} to run")
    if left:
        head += (f"; the {left} left would take about {seconds / 3600:.1f} h on 2 shared CPU "
                 "cores (the committed records' crafting and epoch times)"
                 + (f", and more: no estimate for {', '.join(unknown)}" if unknown else ""))
    return [head + ":"] + lines


# -------------------------------------------------------------------------------- cells

def _test_accuracy(results):
    return results[records.TEST_ACCURACY]


def _zskd(results):
    return results[records.TEST_ACCURACY][records.ZSKD]


def _zskd_augmented(results):
    return results[records.TEST_ACCURACY].get(records.ZSKD_AUGMENTED)


def _values(runs, loaded, read):
    """[{"seed", "value"}] of the finished ``runs``, whose results.json are ``loaded``
    (``read`` takes one)."""
    out = []
    for run, results in zip(runs, loaded):
        value = None if results is None else read(results)
        if value is not None:
            out.append({"seed": run.seed, "value": value})
    return out


def cell(setup, paper_value, paper_source, runs, read=None, values=None, source="", **where):
    """One cell: the paper's number, ours over the finished ``runs`` (mean, sample sd,
    every seed's value; or the given ``values``), the difference, the budget and the
    runs' commands. ``where``: the cell's position (data set, row, column, size...)."""
    loaded = [run.results() for run in runs]
    values = _values(runs, loaded, read) if values is None else values
    numbers = [v["value"] for v in values]
    notes = sorted({note for results in loaded if (note := data_note(results))})
    mean = statistics.mean(numbers) if numbers else None
    status = ("missing" if not numbers else
              "complete" if len(numbers) >= len(runs) else "partial")
    return {
        **where, "paper": paper_value, "paper_source": paper_source,
        "ours": {"mean": mean, "sd": statistics.stdev(numbers) if len(numbers) > 1 else None,
                 "n": len(numbers), "values": values, "selection": records.SELECTION},
        "difference": None if mean is None or paper_value is None else mean - paper_value,
        "status": status, "source": source, "budget": setup.budget.name,
        "data_note": "; ".join(notes) or None, "runs": [run.record() for run in runs],
    }


def data_note(results):
    """The note a run's results.json gives for its data (``data.provenance``), or None."""
    return ((results or {}).get("data") or {}).get("note")


def cited_cell(setup, row, value, dataset):
    return {"dataset": dataset, "row": row, "paper": value,
            "paper_source": f"Table {paper.TABLE_OF[dataset]} (cited from other work)",
            "ours": None, "difference": None, "status": "cited, not run",
            "source": "quoted by the paper from other work; not run here",
            "budget": setup.budget.name, "runs": []}


def teacher_cell(setup, dataset, zskd_runs):
    """Teacher-CE: the committed record of the preset's teacher file (not retrained), or,
    for a teacher given by --teacher, its test accuracy as the ZSKD runs measured it."""
    path, given = setup.teacher(dataset)
    name = os.path.splitext(os.path.basename(path))[0]
    record = os.path.join(REPO, "results", "real_data", f"{name}.json")
    where = {"dataset": dataset, "row": "Teacher-CE"}
    reported = paper.REPORTED[dataset][records.TEACHER_CE]
    source_table = f"Table {paper.TABLE_OF[dataset]}"
    if not given and os.path.exists(record):
        r = io_utils.read_json(record)
        c = cell(setup, reported, source_table, [], values=[
            {"seed": None, "value": r[records.TEST_ACCURACY]}], source=(
            f"committed record {os.path.relpath(record, REPO)} of the preset's teacher "
            f"{os.path.relpath(path, REPO)} ({r['epochs']} epochs, weight decay "
            f"{r.get('weight_decay') or 0:g}), not retrained"), **where)
        c["runs"] = [{"run": "committed record", "status": "finished",
                      "record": os.path.relpath(record, REPO), "command": r["command"]}]
        c["data_note"] = data_note(r)
        return c
    finished = [run for run in zskd_runs if run.status() in FINISHED][:1]
    values = [{"seed": None, "value": run.results()[records.TEACHER][records.TEST_ACCURACY]}
              for run in finished]
    return cell(setup, reported, source_table, finished or zskd_runs[:1], values=values,
                source=f"the teacher {path} (given by --teacher; no training record) as "
                       "measured by a ZSKD run", **where)


def ours_text(c):
    """A cell's result as markdown text."""
    if c["status"] == "cited, not run":
        return "cited, not run"
    ours = c["ours"]
    if not ours["n"]:
        return "missing (not run)"
    seeds = [v["seed"] for v in ours["values"]]
    if ours["n"] == 1:
        text = f"{ours['mean']:.2f}" + ("" if seeds[0] is None else f" (seed {seeds[0]})")
    else:
        text = (f"{ours['mean']:.2f} ± {ours['sd']:.2f} (seeds "
                + ", ".join(f"{v['seed']}: {v['value']:.2f}" for v in ours["values"]) + ")")
    missing = [r["seed"] for r in c["runs"] if r["status"] not in FINISHED
               and r.get("seed") is not None]
    if missing:
        text += f"; missing seed {', '.join(map(str, missing))}"
    if c.get("data_note"):
        text += f"; {c['data_note']}"
    return text


def _number(value, signed=False):
    if value is None:
        return "-"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


# ------------------------------------------------------------------------------- tables

def _header(setup, kind, number, title):
    return {"kind": kind, "number": number,
            "title": f"{kind.capitalize()} {number}: {title} (preset {setup.preset}; "
                     f"{'full' if setup.budget.name == 'full' else 'REDUCED'} budget)",
            "paper": "Nayak et al., Zero-Shot Knowledge Distillation in Deep Networks, "
                     "ICML 2019", "preset": setup.preset, "budget": setup.budget.as_dict(),
            "seeds": list(setup.seeds), "datasets": list(setup.datasets),
            "selection": records.SELECTION}


def _headline_runs(setup, dataset):
    return [zskd_run(setup, dataset, s) for s in setup.seeds]


def _epochs_note(setup, dataset):
    """How Student-CE and Student-KD were trained: epochs and the recipe beyond the
    paper's plain Adam, if any."""
    recipe = _real_data_recipe(setup, dataset)
    text = f"{recipe.get('epochs') or paper.SETUPS[dataset].teacher_epochs} epochs"
    if recipe.get("augment", "none") != "none":
        text += f", {recipe['augment']} augmentation"
    if recipe.get("weight_decay"):
        text += f", weight decay {recipe['weight_decay']:g}"
    if recipe.get("lr_drops"):
        text += f", lr / 10 at epochs {', '.join(map(str, recipe['lr_drops']))}"
    return text


def _dataset_table_runs(dataset):
    def runs(setup):
        return (_headline_runs(setup, dataset)
                + [student_ce_run(setup, dataset, s) for s in setup.seeds]
                + [student_kd_run(setup, dataset, s) for s in setup.seeds])
    return runs


def _dataset_table(dataset):
    """Tables 1-3: the real-data rows, the cited rows and ZSKD with and without
    augmentation, for one data set."""
    number = paper.TABLE_OF[dataset]

    def build(setup):
        reported = paper.REPORTED[dataset]
        zskd_runs = _headline_runs(setup, dataset)
        table = f"Table {number}"
        n = setup.size(dataset, paper.HEADLINE_IMPRESSIONS[dataset])
        size = f"{paper.SETUPS[dataset].train_size // 1000}K original data"
        cells = [
            teacher_cell(setup, dataset, zskd_runs),
            cell(setup, reported[records.STUDENT_CE], table,
                 [student_ce_run(setup, dataset, s) for s in setup.seeds], _test_accuracy,
                 source=f"experiments.train_teacher, {_epochs_note(setup, dataset)}",
                 dataset=dataset, row="Student-CE"),
            cell(setup, reported[records.STUDENT_KD], table,
                 [student_kd_run(setup, dataset, s) for s in setup.seeds], _test_accuracy,
                 source=f"experiments.student_kd, lambda {paper.KD_LAMBDA}, tau "
                        f"{paper.TEMPERATURE:g}, {_epochs_note(setup, dataset)}",
                 dataset=dataset, row=f"Student-KD (Hinton et al., 2015), {size}"),
            *(cited_cell(setup, row, value, dataset) for row, value in paper.CITED[dataset]),
            cell(setup, reported[records.ZSKD], "Table 6 (without augmentation)", zskd_runs,
                 _zskd, source="the ZSKD runs' distilled student (stage student)",
                 dataset=dataset, row=f"ZSKD without augmentation ({n} DIs)"),
            cell(setup, reported[records.ZSKD_AUGMENTED], f"{table} (and Table 6)", zskd_runs,
                 _zskd_augmented, source="the ZSKD runs' fine-tuned student (stage "
                 "student_augmented)", dataset=dataset,
                 row=f"ZSKD with augmentation ({n} DIs; the paper's ZSKD row)"),
        ]
        return {**_header(setup, "table", number, f"ZSKD on {NAMES[dataset]}"),
                "cells": cells}
    return build


def _render_rows(doc):
    header = ["row", "paper %", "paper's source", "ours % (final epoch)", "ours - paper",
              "how ours was obtained"]
    rows = [[c["row"], _number(c["paper"]), c["paper_source"], ours_text(c),
             _number(c["difference"], True), c["source"]] for c in doc["cells"]]
    return header, rows


def _zskd_pair_table(number, title, columns):
    """Tables 6, 7: one row per data set; ``columns``: (name, runs of a data set, reader
    of a results.json, the paper's row, how ours is obtained)."""
    def runs(setup):
        return [run for d in setup.datasets for column in columns
                for run in column[1](setup, d)]

    def build(setup):
        cells = [cell(setup, paper.REPORTED[d][paper_row], f"Table {number}",
                      column_runs(setup, d), read,
                      source=source(setup, d) if callable(source) else source,
                      dataset=d, column=name)
                 for d in setup.datasets
                 for name, column_runs, read, paper_row, source in columns]
        return {**_header(setup, "table", number, title), "cells": cells}
    return runs, build


def _render_pairs(doc):
    names = list(dict.fromkeys(c["column"] for c in doc["cells"]))
    header = ["data set"] + [f"{name}: {part}" for name in names
                             for part in ("paper %", "ours % (final epoch)", "ours - paper")]
    rows = []
    for d in dict.fromkeys(c["dataset"] for c in doc["cells"]):
        row = [NAMES[d]]
        for name in names:
            c = next(c for c in doc["cells"] if c["dataset"] == d and c["column"] == name)
            row += [_number(c["paper"]), ours_text(c), _number(c["difference"], True)]
        rows.append(row)
    return header, rows


def _prior_size(setup, dataset):
    """Table 7's transfer-set size for ``dataset`` when ``Setup.prior_sizes`` gives one
    other than the headline size; None: the headline runs."""
    n = dict(setup.prior_sizes).get(dataset)
    return None if n == paper.HEADLINE_IMPRESSIONS[dataset] else n


def _uniform_prior_runs(setup, dataset):
    n = _prior_size(setup, dataset)
    return [zskd_run(setup, dataset, s, prior="uniform", num_impressions=n)
            for s in setup.seeds]


def _similarity_prior_runs(setup, dataset):
    n = _prior_size(setup, dataset)
    if n is None:
        return _headline_runs(setup, dataset)
    return [zskd_run(setup, dataset, s, num_impressions=n) for s in setup.seeds]


def _prior_source(prior_flags, headline_source):
    def source(setup, dataset):
        n = _prior_size(setup, dataset)
        if n is None:
            return headline_source
        return (f"ZSKD runs with --num_impressions={setup.size(dataset, n)} {prior_flags}"
                "--noaugment (stage student); the paper's number is at "
                f"{paper.HEADLINE_IMPRESSIONS[dataset]:,} impressions")
    return source


_STUDENT = "the headline ZSKD runs' distilled student (stage student, before fine-tuning)"
TABLE_6 = _zskd_pair_table(6, "ZSKD with and without augmentation", [
    ("without augmentation", _headline_runs, _zskd, records.ZSKD, _STUDENT),
    ("with augmentation", _headline_runs, _zskd_augmented, records.ZSKD_AUGMENTED,
     "the headline ZSKD runs' fine-tuned student (stage student_augmented)")])
TABLE_7 = _zskd_pair_table(7, "uniform against class-similarity prior (without "
                           "augmentation)", [
    ("uniform prior", _uniform_prior_runs, _zskd, records.ZSKD_UNIFORM_PRIOR,
     _prior_source("--prior=uniform ", "ZSKD runs with --prior=uniform --noaugment (stage "
                   "student)")),
    ("class similarity prior", _similarity_prior_runs, _zskd, records.ZSKD,
     _prior_source("", _STUDENT))])


def _architecture_table(number):
    """Tables 4, 5: our Keras models layer by layer beside the appendix's tables."""
    def build(setup):
        from zskd_tf import models
        from zskd_tf import report
        cells = []
        for name in paper.ARCHITECTURE_TABLES[number]:
            ours = {row[0]: row for row in report.layer_rows(models.get(name))}
            for layer, text, shape in paper.ARCHITECTURES[name]:
                mine = ours.get(layer)
                cells.append({
                    "model": name, "layer": layer, "paper": text,
                    "paper_output": None if shape is None else list(shape),
                    "ours_layer": mine[1] if mine else "none (the model outputs logits; "
                                                       "the softmax is in the loss)",
                    "ours_output": list(mine[2]) if mine else None,
                    "parameters": mine[3] if mine else 0,
                    "match": "-" if shape is None or not mine else
                             "yes" if tuple(shape) == tuple(mine[2]) else "NO"})
            total, stated = sum(row[3] for row in ours.values()), paper.PARAMETERS[name]
            relative = 100.0 * (total - stated) / stated
            cells.append({"model": name, "layer": "total parameters",
                          "paper": f"{stated:,g} (the text)", "paper_output": None,
                          "ours_layer": "", "ours_output": None, "parameters": total,
                          "difference": total - stated,
                          "match": "yes" if total == stated else
                                   f"{'within 1%' if abs(relative) < 1 else 'NO'} "
                                   f"({relative:+.1f}%)"})
        teacher, student = paper.ARCHITECTURE_TABLES[number]
        return {**_header(setup, "table", number,
                          f"{teacher} and {student}, zskd_tf.models against the appendix"),
                "cells": cells, "note": "no runs: built from zskd_tf.models. Parameter "
                "counts include BatchNorm's moving statistics (docs/REPRODUCTION.md)."}
    return build


def _render_layers(doc):
    header = ["model", "layer", "appendix", "appendix output", "ours", "our output",
              "parameters", "match"]
    shape = lambda s: "-" if s is None else "x".join(map(str, s))  # noqa: E731
    rows = [[c["model"], c["layer"], c["paper"], shape(c["paper_output"]), c["ours_layer"],
             shape(c["ours_output"]), c["parameters"], c["match"]] for c in doc["cells"]]
    return header, rows


def render_markdown(doc, render):
    """A table's markdown: title, budget, the table, and every run's command."""
    from zskd_tf.report import markdown_table  # matplotlib only; no TensorFlow work
    header, rows = render(doc)
    runs = {r["run"]: r for c in doc["cells"] for r in c.get("runs", ())}
    lines = [f"# {doc['title']}", ""]
    if runs:
        lines += [f"Budget: {doc['budget']['description']}.",
                  f"Preset: {doc['preset']}. Seeds: {', '.join(map(str, doc['seeds']))}. "
                  f"Ours: {records.SELECTION}; mean ± sample standard deviation over "
                  "seeds.", ""]
    else:
        lines += [f"Budget: {doc['budget']['name']} (no runs: it changes nothing here).", ""]
    lines.append(markdown_table(header, rows))
    if doc.get("note"):
        lines += [doc["note"], ""]
    if runs:
        lines += ["## Runs", ""]
        lines += [f"- `{name}` ({_run_status(r)}): `{r['command']}`"
                  for name, r in runs.items()]
        lines.append("")
    return "\n".join(lines)


def _run_status(r):
    if r.get("imported_from"):
        return (f"imported from {r['imported_from']}, same settings as the planned "
                f"`{r['planned_command']}`; its own command")
    return r["status"]


# ------------------------------------------------------------------------------ figures

def _figure_title(doc):
    """The title (which names the budget) and what a reduced budget does, said once (the
    full budget is the preset's settings, which the title names)."""
    if doc["budget"]["name"] == "full":
        return doc["title"]
    return f"{doc['title']}\n{doc['budget']['details']}"


def _figure_1(setup):
    """Fig. 1: each teacher's class-similarity matrix (eq. 2), from its weights."""
    from zskd_tf import data as data_lib
    from zskd_tf import models
    from zskd_tf import similarity
    panels = []
    for d in setup.datasets:
        path, given = setup.teacher(d)
        panel = {"dataset": d, "teacher": path, "teacher_source": "--teacher" if given
                 else f"preset {setup.preset}", "class_names": list(data_lib.CLASS_NAMES[d]),
                 "similarity": None, "status": "missing"}
        if os.path.isfile(path):
            sim, _ = similarity.from_model(models.load(path))
            panel.update(similarity=sim.round(4).tolist(), status="complete")
        panels.append(panel)
    return {**_header(setup, "figure", 1, "class similarity of each teacher's final layer"),
            "panels": panels, "note": "no runs: computed from the teachers' weights. The "
            "paper shows CIFAR-10 only, as an image (no numbers)."}


def _render_figure_1(doc, path):
    from zskd_tf import report
    panels = [(f"{NAMES[p['dataset']]}: {os.path.basename(p['teacher'])}"
               + ("" if p["similarity"] else " (teacher file missing)"),
               p["similarity"], p["class_names"]) for p in doc["panels"]]
    return report.save_figure(report.similarity_panels_figure(panels, _figure_title(doc)),
                              path)


def _sweep_runs(setup, series):
    seed = setup.seeds[0]
    return [(d, n, name, read, make(setup, d, seed, n)) for d in setup.datasets
            for name, make, read in series for n in paper.transfer_set_sizes(d)]


def _di_point(setup, dataset, seed, n):
    return zskd_run(setup, dataset, seed, num_impressions=n)


def _ci_point(setup, dataset, seed, n):
    return zskd_run(setup, dataset, seed, num_impressions=n, impressions="class")


def _real_point(setup, dataset, seed, n):
    return student_kd_run(setup, dataset, seed, num_samples=n)


_DI = ("Data Impressions (ZSKD without augmentation)", _di_point, _zskd)
_SERIES = {  # (label, run of (setup, data set, seed, size), reader of its results.json)
    2: (_DI, ("real training images (Student-KD on a class-balanced subset)", _real_point,
              _test_accuracy)),
    3: (_DI, ("Class Impressions (without augmentation)", _ci_point, _zskd)),
}


def _sweep(number, title):
    """Figs. 2, 3: test accuracy against transfer-set size, one seed per point."""
    def runs(setup):
        return [run for *_, run in _sweep_runs(setup, _SERIES[number])]

    def build(setup):
        cells = []
        for d, n, name, read, run in _sweep_runs(setup, _SERIES[number]):
            size = setup.size(d, n)
            headline = name == _DI[0] and n == paper.HEADLINE_IMPRESSIONS[d]
            cells.append(cell(
                setup, paper.REPORTED[d][records.ZSKD] if headline else None,
                "Table 6 (without augmentation)" if headline else paper.FIGURE_VALUES,
                [run], read,
                source="one seed per point", dataset=d, series=name, size=size,
                appendix_size=n, percent=100.0 * size / paper.SETUPS[d].train_size))
        return {**_header(setup, "figure", number, title), "cells": cells,
                "note": f"One seed ({setup.seeds[0]}) per point. The paper draws these "
                        "curves but gives no numbers for their points; the star is its one "
                        "number on them: Data Impressions without augmentation at the "
                        "headline size (Table 6)."}
    return runs, build


def _render_sweep(doc, path):
    from zskd_tf import report
    panels = []
    for d in dict.fromkeys(c["dataset"] for c in doc["cells"]):
        cells = [c for c in doc["cells"] if c["dataset"] == d]
        series = [(name, [c["percent"] for c in cells if c["series"] == name],
                   [c["ours"]["mean"] for c in cells if c["series"] == name])
                  for name in dict.fromkeys(c["series"] for c in cells)]
        references = [(f"paper, {c['paper_source']}",
                       100.0 * c["appendix_size"] / paper.SETUPS[d].train_size, c["paper"])
                      for c in cells if c["paper"] is not None]
        panels.append((NAMES[d], series, references))
    title = f"{_figure_title(doc)}\n{doc['note']}"
    return report.save_figure(report.sweep_figure(panels, title), path)


def _figure_4_runs(setup):
    return [dataclasses.replace(zskd_run(setup, d, setup.seeds[0]), needs_transfer_set=True)
            for d in setup.datasets]


def _figure_4(setup):
    """Fig. 4: three impressions per class of the headline run's transfer set, titled
    with their targets' top-2 confidences."""
    from zskd_tf import data as data_lib
    from zskd_tf import report
    panels = []
    for run in _figure_4_runs(setup):
        transfer = os.path.join(run.workdir, "transfer_set")
        names = data_lib.CLASS_NAMES[run.dataset]
        panel = {"dataset": run.dataset, "transfer_set": transfer, "class_names": list(names),
                 "impressions": [], "status": run.status(), "runs": [run.record()]}
        if run.status() == "imported" and not run.done():
            panel["status"] = panel["runs"][0]["status"] = NO_TRANSFER_SET
        elif run.done() and os.path.exists(os.path.join(transfer, "manifest.json")):
            _, targets, classes, index = report.impression_picks(transfer)
            for t, c, i in zip(targets, classes, index):
                top = [int(k) for k in (-t).argsort()[:2]]
                panel["impressions"].append({"index": int(i), "class": names[int(c)], "top2": [
                    {"class": names[k], "confidence": round(float(t[k]), 4)} for k in top]})
        panels.append(panel)
    return {**_header(setup, "figure", 4, "Data Impressions, three per class"),
            "panels": panels, "note": f"from the headline ZSKD run of seed {setup.seeds[0]}; "
            "a column per class whose Dirichlet prior drew the targets (named below it), "
            "each impression titled with its target's top-2 confidences; the paper shows "
            "CIFAR-10 only, as an image (no numbers)."}


def _render_figure_4(doc, path):
    from zskd_tf import report
    panels = []
    for p in doc["panels"]:
        grid = report.impression_picks(p["transfer_set"])[:3] if p["impressions"] else None
        panels.append((f"{NAMES[p['dataset']]} ({p['runs'][0]['run']}"
                       + (")" if grid else f": {p['status']})"), grid, p["class_names"]))
    return report.save_figure(report.impression_panels_figure(panels, _figure_title(doc)),
                              path)


# -------------------------------------------------------------------------------- items

@dataclasses.dataclass(frozen=True)
class Item:
    """A table or figure: the runs it needs, how to build its JSON from them, and how
    to render that JSON (markdown text, or a PNG at a path)."""
    kind: str
    number: int
    runs: object    # Setup -> [Run]
    build: object   # Setup -> dict
    render: object  # tables: dict -> (header, rows); figures: (dict, path) -> path


def _no_runs(setup):
    return []


def _items():
    items = {}
    for d, n in paper.TABLE_OF.items():
        items[("table", n)] = Item("table", n, _dataset_table_runs(d), _dataset_table(d),
                                   _render_rows)
    for n in paper.ARCHITECTURE_TABLES:
        items[("table", n)] = Item("table", n, _no_runs, _architecture_table(n), _render_layers)
    items[("table", 6)] = Item("table", 6, *TABLE_6, _render_pairs)
    items[("table", 7)] = Item("table", 7, *TABLE_7, _render_pairs)
    items[("figure", 1)] = Item("figure", 1, _no_runs, _figure_1, _render_figure_1)
    items[("figure", 2)] = Item("figure", 2, *_sweep(
        2, "Data Impressions against real training images"), _render_sweep)
    items[("figure", 3)] = Item("figure", 3, *_sweep(
        3, "Data Impressions against Class Impressions"), _render_sweep)
    items[("figure", 4)] = Item("figure", 4, _figure_4_runs, _figure_4, _render_figure_4)
    return items


ITEMS = _items()


def item(kind, number):
    """The table or figure ``number``; ValueError for one the paper does not have."""
    if kind not in KINDS or number not in KINDS[kind]:
        raise ValueError(f"the paper has tables 1-7 and figures 1-4, not {kind} {number}")
    return ITEMS[(kind, number)]


def output_paths(it, root):
    """(JSON path, table markdown or figure PNG path) of an item under ``root``."""
    stem = os.path.join(os.path.abspath(root), f"{it.kind}_{it.number}")
    return stem + ".json", stem + (".md" if it.kind == "table" else ".png")


def write(it, setup):
    """Builds ``it`` from the runs as they are now (missing runs give missing cells) and
    writes its JSON and its markdown or PNG under ``setup.root``; returns the paths."""
    doc = it.build(setup)
    json_path, out_path = output_paths(it, setup.root)
    os.makedirs(os.path.dirname(json_path), exist_ok=True)
    if it.kind == "table":
        text = render_markdown(doc, it.render)
        doc["markdown"] = os.path.basename(out_path)
        io_utils.write_text(out_path, text)
    else:
        doc["png"] = os.path.basename(out_path)
        it.render(doc, out_path)
    io_utils.write_json(json_path, doc)
    return json_path, out_path


def missing(doc):
    """Labels of the runs a built item lacks."""
    runs = [r for c in doc.get("cells", doc.get("panels", ())) for r in c.get("runs", ())]
    return sorted({r["run"] for r in runs if r["status"] not in FINISHED})

