r"""One command per table and figure of the paper, from the runs it needs.

    python -m experiments.reproduce --table=1 --workdir=runs/paper          # Table 1, MNIST
    python -m experiments.reproduce --table=6 --datasets=mnist,fashion_mnist \
        --workdir=runs/paper                                                 # no CIFAR-10
    python -m experiments.reproduce --figure=2 --budget=reduced --workdir=runs/quick
    python -m experiments.reproduce --table=7 --dry_run --workdir=runs/paper  # commands only
    python -m experiments.reproduce --table=6 --only_existing --workdir=runs/paper
    python -m experiments.reproduce --table=7 --import_results=results --workdir=runs/paper

Each run is a command of an existing binary (``experiments.mnist_zskd`` and the other ZSKD
binaries, ``train_teacher``, ``student_kd``) with ``--preset``, ``--seed``, its own
``--workdir`` (``WORKDIR/<data set>/<run>_seed<seed>``) and the few flags its cell needs;
the rest comes from the preset (zskd_tf/presets.py, zskd_tf/config.py). Runs go one after
another as subprocesses; a finished run (its results.json exists) is reused, a started
one resumes. ``--dry_run`` prints every run's status ("finished", "imported from PATH",
"started (resumes)", "to run"), its command, near misses among the committed runs and
the estimated time of what is left, and runs nothing; ``--only_existing`` builds the
output from the runs that exist and shows the others as missing. Runs are judged by
their settings, not their command text (zskd_tf/committed.py): a workdir holding a run
made with other settings (preset, budget, teacher...) is refused before anything runs,
naming them: use another --workdir.

``--import_results=DIR`` (the committed runs are under results/) first copies each
finished run under DIR whose settings match a planned run not finished yet into that
run's workdir (results.json, history CSVs, run.log, transfer_set_manifest.json): it then
counts as finished, and the outputs say where it came from and keep its own command.
Only exact matches are imported: a run fine-tuned for another number of epochs is a near
miss even where its distilled student is the planned one's (a table takes both stages
of a ZSKD run from one run). Figure 4 needs a run's transfer set, which is not committed:
an imported record finishes it only if the run's own --workdir is still on this machine
with the committed manifest (its transfer set is then linked, not remade).

Writes WORKDIR/table_N.md (or figure_N.png) and table_N.json (figure_N.json): per cell the
paper's number, ours (mean ± sample sd over --seeds of the final-epoch test accuracy, and
each seed's value), the difference, the budget and the exact commands behind it.

- Tables 1-3 (MNIST, Fashion-MNIST, CIFAR-10): Teacher-CE (the preset teacher's committed
  training record, not retrained), Student-CE, Student-KD, the rows the paper cites from
  other work (shown, not run), ZSKD without and with augmentation. --datasets does not
  apply: each table is its data set's.
- Tables 4, 5: zskd_tf.models layer by layer beside the appendix (no runs).
- Table 6: ZSKD without / with augmentation; Table 7: uniform against class-similarity
  prior, without augmentation (for --datasets).
- Figure 1: each teacher's class similarity (no runs). Figure 2: Data Impressions against
  as many real training images (Student-KD on a class-balanced subset), and Figure 3:
  against Class Impressions, at the appendix's transfer-set sizes, one seed (the first of
  --seeds) per point. Figure 4: three impressions per class of the headline run.

``--budget=reduced`` is a quick look, stated in every output: transfer sets and real-data
subsets x0.1 (``--num_impressions_scale`` sets the factor), 20 distillation and 20
fine-tuning epochs, 10 epochs for Student-CE and Student-KD. ``--teacher=DATASET=PATH``
replaces a preset's teacher file (for ZSKD, Student-KD and Figure 1).
"""
import os

from absl import app
from absl import flags
from absl import logging

from experiments import common
from zskd_tf import committed
from zskd_tf import io_utils
from zskd_tf import presets
from zskd_tf import reproduce

FLAGS = flags.FLAGS
flags.DEFINE_integer("table", None, "The paper's table to build (1-7).")
flags.DEFINE_integer("figure", None, "The paper's figure to build (1-4).")
flags.DEFINE_enum("preset", presets.DEFAULT, list(presets.NAMES),
                  "Settings of every run: " + "; ".join(
                      f"{k}: {v}" for k, v in presets.DESCRIPTIONS.items()) + ".")
flags.DEFINE_list("seeds", [str(s) for s in reproduce.DEFAULT_SEEDS],
                  "Seeds of each table cell (mean ± sample sd over them); Figures 2-4 use "
                  "the first.")
flags.DEFINE_enum("budget", "full", list(reproduce.BUDGETS),
                  "full: the preset's settings. reduced: a quick look, stated in every "
                  "output: " + reproduce.REDUCED.describe().split(": ", 1)[1] + ".")
flags.DEFINE_float("num_impressions_scale", None,
                   "With --budget=reduced: the factor on every transfer-set size and real-"
                   f"data subset (default {reproduce.REDUCED.impressions_scale:g}); sizes are "
                   "rounded down to a multiple of classes x betas.")
flags.DEFINE_list("datasets", list(reproduce.DATASETS),
                  "Data sets of Tables 6, 7 and the figures (Tables 1-3 are one data set "
                  "each).")
flags.DEFINE_multi_string("teacher", [], "DATASET=PATH: this teacher file instead of the "
                          "preset's for that data set (repeat for several).")
flags.DEFINE_multi_string("prior_impressions", [], "DATASET=N, Table 7 only: compare the "
                          "priors at N impressions for that data set (both without "
                          "augmentation) instead of the headline size, e.g. cifar10=10000 "
                          "where 40,000 twice is too long; every output states it.")
flags.DEFINE_bool("dry_run", False, "Print every run's status and exact command; run and "
                  "write nothing.")
flags.DEFINE_bool("only_existing", False, "Run nothing: build the output from the runs "
                  "that exist, showing the others as missing.")
flags.DEFINE_string("import_results", None, "Before running, import finished runs found "
                    "under this folder (recursively; the committed ones are under results/) "
                    "whose settings match a planned run that has no results.json yet: its "
                    "results.json, history CSVs, run.log and transfer_set_manifest.json are "
                    "copied into the run's workdir, which then counts as finished; outputs "
                    "name where each came from and keep its own command. Several matches: "
                    "the newest is imported, the others are listed.")
common.define_common_flags(seed=False)

_RANGE = {kind: (numbers[0], numbers[-1]) for kind, numbers in reproduce.KINDS.items()}
for _kind, (_low, _high) in _RANGE.items():
    flags.register_validator(_kind, lambda v, low=_low, high=_high: v is None or low <= v <= high,
                             f"--{_kind} must be in {_low}-{_high} (the paper's {_kind}s)")
flags.register_multi_flags_validator(
    ["table", "figure"], lambda v: (v["table"] is None) != (v["figure"] is None),
    "give exactly one of --table and --figure")


def _seeds(values):
    try:
        seeds = [int(v) for v in values]
    except (TypeError, ValueError):
        return False
    return bool(seeds) and len(set(seeds)) == len(seeds) and all(
        0 <= s <= common.MAX_SEED for s in seeds)


flags.register_validator("seeds", _seeds, "--seeds must be distinct integers >= 0, e.g. 0,1,2")
flags.register_validator(
    "datasets", lambda v: bool(v) and len(set(v)) == len(v)
    and set(v) <= set(reproduce.DATASETS),
    f"--datasets must be distinct names among {','.join(reproduce.DATASETS)}")
flags.register_multi_flags_validator(
    ["budget", "num_impressions_scale"],
    lambda v: v["num_impressions_scale"] is None or (
        v["budget"] == "reduced" and 0 < v["num_impressions_scale"] <= 1),
    "--num_impressions_scale needs --budget=reduced and must be in (0, 1]")


def _teachers(values):
    pairs = [v.split("=", 1) for v in values]
    return all(len(p) == 2 and p[0] in reproduce.DATASETS and os.path.isfile(p[1])
               for p in pairs) and len({p[0] for p in pairs}) == len(pairs)


flags.register_validator("teacher", _teachers, "--teacher must be DATASET=PATH with an "
                         "existing file, once per data set")


def _prior_impressions(values):
    pairs = [v.split("=", 1) for v in values]
    return all(len(p) == 2 and p[0] in reproduce.DATASETS and p[1].isdigit()
               and int(p[1]) > 0 for p in pairs) and len({p[0] for p in pairs}) == len(pairs)


flags.register_validator("prior_impressions", _prior_impressions,
                         "--prior_impressions must be DATASET=N with N > 0, once per data set")
flags.register_multi_flags_validator(
    ["prior_impressions", "table"], lambda v: not v["prior_impressions"] or v["table"] == 7,
    "--prior_impressions applies to --table=7 only")
flags.register_validator("import_results", lambda v: v is None or os.path.isdir(v),
                         "--import_results must be an existing folder")
flags.register_multi_flags_validator(
    ["dry_run", "only_existing"], lambda v: not (v["dry_run"] and v["only_existing"]),
    "give at most one of --dry_run and --only_existing")


def setup_from_flags():
    return reproduce.Setup(
        root=os.path.abspath(FLAGS.workdir), preset=FLAGS.preset,
        seeds=tuple(int(s) for s in FLAGS.seeds),
        budget=reproduce.budget(FLAGS.budget, FLAGS.num_impressions_scale),
        datasets=tuple(FLAGS.datasets), data_dir=FLAGS.data_dir,
        teachers=tuple(tuple(v.split("=", 1)) for v in FLAGS.teacher),
        prior_sizes=tuple((d, int(n)) for d, n in (v.split("=", 1)
                                                   for v in FLAGS.prior_impressions)))


def main(argv):
    del argv
    setup = setup_from_flags()
    kind = "table" if FLAGS.table is not None else "figure"
    item = reproduce.item(kind, FLAGS.table or FLAGS.figure)
    runs = item.runs(setup)
    paths = reproduce.output_paths(item, setup.root)
    found = (committed.scan(FLAGS.import_results, exclude=setup.root)
             if FLAGS.import_results else [])
    matches = reproduce.matches(runs, found)
    timed = found if FLAGS.import_results and os.path.realpath(FLAGS.import_results) == \
        os.path.realpath(committed.COMMITTED) else committed.scan(committed.COMMITTED,
                                                                  exclude=setup.root)
    plan = reproduce.plan_lines(runs, matches, timed)
    if FLAGS.dry_run:
        print(f"{kind} {item.number} ({setup.budget.describe()}; preset {setup.preset}"
              + (f"; importing from {FLAGS.import_results}, nothing copied in a dry run"
                 if FLAGS.import_results else "") + "):")
        print("\n".join(plan))
        print("would write " + " and ".join(paths))
        return
    problems = reproduce.conflicts(runs)
    if problems:  # checked for --only_existing too: a table never mixes settings
        common.reject(problems[0] + (f" (and {len(problems) - 1} more)" if problems[1:]
                                     else ""))
    if not FLAGS.only_existing or any(m.source for m in matches):
        try:
            io_utils.lock_workdir(setup.root, "reproduce.lock")
        except io_utils.WorkdirBusy as e:
            common.reject(str(e))
        logging.info("%s %d: %s; preset %s", kind, item.number, setup.budget.describe(),
                     setup.preset)
        for line in plan:
            logging.info("%s", line)
        reproduce.import_matches(matches, log=logging.info)
        reproduce.link_transfer_sets(runs, log=logging.info)
    if not FLAGS.only_existing:
        try:
            reproduce.execute(runs, log=logging.info)
        except (reproduce.Conflict, reproduce.RunFailed) as e:
            common.reject(str(e))
    json_path, out_path = reproduce.write(item, setup)
    absent = reproduce.missing(io_utils.read_json(json_path))
    if absent:
        logging.warning("missing runs, shown as missing: %s", ", ".join(absent))
    print(f"wrote {out_path} and {json_path}")


if __name__ == "__main__":
    app.run(main)
