r"""Writes the results pages from the committed JSON.

    python -m experiments.summarize [--results_dir=results]

``results/README.md``, the reader's page: a summary table, then each of the paper's
tables and figures in its order, ours beside the paper's, from ``results/paper/*.json``
(written by ``experiments.reproduce``; an item without a JSON is shown as not run yet,
with the command that makes it), each followed by its hand-written paragraph from
``results/paper/notes/<table|figure>_<N>.md``.

``results/RUNS.md``, every committed run: ``results/real_data/*.json`` (from
``experiments.train_teacher``), ``results/zskd/*/results.json`` (from the ``*_zskd``
binaries) and ``results/arbitrary/*/results.json`` (from
``experiments.arbitrary_transfer``), runs repeated over seeds, and training curves.

Only numbers found in those files are printed.
"""
import glob
import json
import os
import statistics

from absl import app
from absl import flags

from zskd_tf import config
from zskd_tf import io_utils
from zskd_tf import paper
from zskd_tf import records
from zskd_tf import report

FLAGS = flags.FLAGS
flags.DEFINE_string("results_dir", "results", "Folder of committed results.")

_NAMES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}


def _load(pattern):
    out = []
    for path in sorted(glob.glob(pattern)):
        with open(path) as f:
            out.append((path, json.load(f)))
    return out


def real_data_section(results_dir):
    runs = _load(os.path.join(results_dir, "real_data", "*.json"))
    if not runs:
        return ""
    rows = []
    for path, r in runs:
        row = ("Student-KD" if r.get("row") == records.STUDENT_KD else "Teacher-CE"
               if r["model"] == paper.SETUPS[r["dataset"]].teacher else "Student-CE")
        if r.get("weight_decay"):
            row += f", weight decay {r['weight_decay']:g}"
        if r.get("augment", "none") != "none":
            row += f", {r['augment']} augmentation"
        rows.append([_NAMES.get(r["dataset"], r["dataset"]), r["model"], row,
                     r[records.TEST_ACCURACY], r["paper_test_accuracy"],
                     r.get(records.SELECTED_ON_TEST),
                     f"{r['epochs']} (paper {r['paper_epochs']})",
                     r.get("mean_epoch_seconds"), os.path.relpath(path, results_dir)])
    header = ["data set", "model", "row", "test acc. % (final epoch)", "paper %",
              "max over epochs % (selected on test)", "epochs", "mean s / epoch (see notes)",
              "JSON"]
    return ("## Teacher-CE, Student-CE and Student-KD on real data (Tables 1, 2)\n\n"
            + report.markdown_table(header, rows) + "\n")


def _number(value):
    return "-" if value is None else f"{value:g}"


def _epochs(r):
    return f"{r['student']['epochs']} + {r.get('student_augmented', {}).get('epochs', 0)}"


def zskd_section(results_dir):
    runs = _load(os.path.join(results_dir, "zskd", "*", "results.json"))
    if not runs:
        return ""
    rows = []
    for path, r in runs:
        acc, cfg, craft = r[records.TEST_ACCURACY], r["config"], r["crafting"]
        paper_zskd, paper_aug = paper.reported_zskd(r["dataset"], cfg["num_impressions"],
                                                    cfg["impressions"], cfg["prior"])
        rows.append([
            _NAMES.get(r["dataset"], r["dataset"]), cfg["num_impressions"],
            _betas_label(cfg), _targets_label(cfg), _crafting_recipe(cfg),
            cfg["craft_iterations"], craft["mean_final_loss"], _teacher_file(r),
            acc[records.TEACHER],
            acc[records.ZSKD], paper_zskd, acc.get(records.ZSKD_AUGMENTED), paper_aug,
            _epochs(r), _number(cfg.get("student_lr")),
            cfg.get("seed", "-"), craft["craft_seconds"] / 60.0, craft["image_steps_per_second"],
            os.path.relpath(path, results_dir)])
    header = ["data set", "impressions", "betas", "targets", "init, pixel, image L2 (precision)",
              "craft its", "final craft CE", "teacher", "teacher %", "ZSKD %", "paper %",
              "ZSKD + aug. %", "paper %", "student + fine-tune epochs",
              "student lr", "seed", "crafting min", "image-steps/s", "JSON"]
    return ("## Zero-shot distillation (Tables 1-3, 6, 7; Fig. 3)\n\nFinal-epoch test accuracy; "
            "nothing is selected on the test set. The paper's figure is shown only for the "
            "setting it reports (its headline transfer-set size).\n\n"
            + report.markdown_table(header, rows)
            + "\n")


def arbitrary_section(results_dir):
    """Arbitrary transfer sets (WACV 2021), with a figure of the teacher's predicted
    classes on each source."""
    runs = _load(os.path.join(results_dir, "arbitrary", "*", "results.json"))
    if not runs:
        return ""
    rows, pools = [], {}
    for path, r in runs:
        ts, acc = r["transfer_set"], r[records.TEST_ACCURACY]
        rows.append([
            _NAMES.get(r["dataset"], r["dataset"]), _teacher_file(r), acc[records.TEACHER],
            _NAMES.get(r["transfer"], r["transfer"]),
            "balanced" if r["balance"] else "random", ts["size"], ts["balance"],
            f"{r['config']['student_lr']:g}",
            _percent(r.get("student_agrees_with_teacher_on_transfer_set")), acc[records.STUDENT],
            r[records.STUDENT].get(records.SELECTED_ON_TEST),
            acc.get(records.STUDENT_AUGMENTED), r[records.STUDENT]["epochs"],
            os.path.relpath(path, results_dir)])
        pools[(r["dataset"], _teacher_file(r), r["transfer"])] = ts["pool_histogram"]
    header = ["teacher's data", "teacher", "teacher %", "transfer set from", "choice", "size",
              "balance (min / max class)", "student lr", "student = teacher on the set %",
              "student % (final epoch)",
              "max over epochs % (selected on test)", "+ aug. %", "epochs", "JSON"]
    name = "arbitrary_pool_classes.png"
    report.save_figure(report.class_histograms_figure(
        {f"{_NAMES.get(d, d)} teacher ({t}) on {_NAMES.get(s, s)}": h
         for (d, t, s), h in sorted(pools.items())}),
        os.path.join(results_dir, "figures", name))
    return ("\n## Arbitrary transfer sets (Nayak et al., WACV 2021)\n\nThe student distilled on "
            "images from another source, chosen so the teacher's predicted classes are "
            "balanced, or at random. Final-epoch test accuracy. \"student = teacher on the set\" "
            "is the final student's (after fine-tuning where there is one); near chance, it "
            "marks a student that did not learn. Only the paper's abstract is "
            "available, so there are no paper figures to compare.\n\n"
            + report.markdown_table(header, rows)
            + f"\n![Teacher's predicted classes on each source](figures/{name})\n\n")


# Keys that do not change what is trained: the seed, monitoring, and how crafting batches
# are spread over tensors and processes (equal up to float rounding, tested).
_NOT_SETTINGS = ("seed", "eval_every", "parallel_batches", "craft_processes")


def _spread(values):
    values = [v for v in values if v is not None]
    if not values:
        return "-", "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return (f"{statistics.mean(values):.2f} ± {sd:.2f}",
            f"{min(values):.2f}-{max(values):.2f}")


def repeats_section(results_dir):
    """Runs whose settings are equal except for the seed (or that repeat one seed), with
    the mean, sample standard deviation and range of their final-epoch accuracies."""
    groups = {}
    for path, r in _load(os.path.join(results_dir, "zskd", "*", "results.json")):
        cfg = {"craft_precision": "float32",  # runs older than the flag crafted in float32
               **{k: v for k, v in r["config"].items() if k not in _NOT_SETTINGS}}
        key = (r["dataset"], _teacher_file(r), json.dumps(cfg, sort_keys=True))
        groups.setdefault(key, []).append((path, r))
    rows = []
    for (dataset, teacher, _), runs in sorted(groups.items()):
        if len(runs) < 2:
            continue
        cfg = runs[0][1]["config"]
        acc = [r[records.TEST_ACCURACY] for _, r in runs]
        rows.append([
            _NAMES.get(dataset, dataset), cfg["num_impressions"], _betas_label(cfg),
            _targets_label(cfg), _crafting_recipe(cfg), teacher,
            _number(cfg.get("student_lr")), _epochs(runs[0][1]), len(runs),
            ", ".join(str(r["config"].get("seed", "-")) for _, r in runs),
            *_spread([a[records.ZSKD] for a in acc]),
            _spread([a.get(records.ZSKD_AUGMENTED) for a in acc])[0],
            ", ".join(os.path.basename(os.path.dirname(p)) for p, _ in runs)])
    if not rows:
        return ""
    header = ["data set", "impressions", "betas", "targets", "init, pixel, image L2 (precision)",
              "teacher", "student lr", "student + fine-tune epochs", "runs", "seeds",
              "ZSKD % mean ± sd", "ZSKD % range", "+ aug. % mean ± sd", "runs (zskd/...)"]
    return ("## Repeated settings\n\nRuns of the table above whose settings differ only in "
            "the seed, or that repeat a seed (on another machine or crafting path): final-"
            "epoch accuracy, sample standard deviation.\n\n"
            + report.markdown_table(header, rows) + "\n")


def curve_figures(results_dir):
    """One PNG per (data set, transfer-set size) with two or more runs that kept their
    student's history: test accuracy per evaluated epoch, the paper's figures dotted.
    Returns markdown image links."""
    groups = {}
    for path, r in _load(os.path.join(results_dir, "zskd", "*", "results.json")):
        run_dir = os.path.dirname(path)
        history = os.path.join(run_dir, "student_history.csv")
        if os.path.exists(history):
            cfg = r["config"]
            groups.setdefault((r["dataset"], cfg["num_impressions"]), []).append(
                (run_dir, r, history))
    links = []
    for (dataset, n), runs in sorted(groups.items()):
        if len(runs) < 2:
            continue
        curves = []
        for run_dir, r, history in runs:
            epochs, acc = report.read_accuracy_history(history)
            tuned = os.path.join(run_dir, "student_augmented_history.csv")
            ft = report.read_accuracy_history(tuned) if os.path.exists(tuned) else (None, None)
            cfg = r["config"]
            label = (f"{os.path.basename(run_dir)}: {_teacher_file(r)}, {_targets_label(cfg)}, "
                     f"{_crafting_recipe(cfg)}, student lr {_number(cfg.get('student_lr'))}, "
                     f"seed {cfg.get('seed', '-')}")
            curves.append((label, epochs, acc, *ft))
        reported = paper.REPORTED[dataset]
        references = []
        if n == paper.HEADLINE_IMPRESSIONS[dataset]:
            references = [("paper: class similarity", reported[records.ZSKD]),
                          ("paper: + augmentation", reported[records.ZSKD_AUGMENTED]),
                          ("paper: uniform prior", reported["zskd_uniform_prior"])]
        name = f"{dataset}_{n}_student_curves.png"
        fig = report.accuracy_curves_figure(
            curves, references, title=f"{_NAMES.get(dataset, dataset)}, {n} impressions")
        report.save_figure(fig, os.path.join(results_dir, "figures", name))
        links.append(f"![{_NAMES.get(dataset, dataset)}, {n} impressions](figures/{name})\n")
    if not links:
        return ""
    return ("\nStudents' test accuracy while training (monitoring only; the table's figures "
            "are final-epoch):\n\n" + "\n".join(links))


def _percent(fraction):
    return None if fraction is None else 100.0 * fraction


def _betas_label(cfg):
    """Class impressions have no Dirichlet, so no betas."""
    return "-" if cfg.get("impressions") == "class" else ",".join(map(str, cfg["betas"]))


def _targets_label(cfg):
    """The Dirichlet prior of Data Impressions, or "class impressions" (one-hot targets)."""
    return "class impressions" if cfg.get("impressions") == "class" else cfg["prior"]


def _crafting_recipe(cfg):
    """e.g. "uniform, minmax, 0", with ", bfloat16" for a bf16-crafted set; runs from
    before the init / image_l2 / precision options used the defaults (uniform noise, no
    penalty, float32)."""
    recipe = f"{cfg.get('init', 'uniform')}, {cfg['pixel']}, {cfg.get('image_l2', 0.0):g}"
    precision = cfg.get("craft_precision", "float32")
    return recipe if precision == "float32" else f"{recipe}, {precision}"


def _teacher_file(r):
    """The teacher's file name: recorded since the "source" field exists, else from the
    command's --teacher, else the committed pretrained teacher the binaries default to."""
    source = r.get(records.TEACHER, {}).get("source")
    if source is None:
        given = [a for a in r.get("command", "").split() if a.startswith("--teacher=")]
        source = (given[-1].split("=", 1)[1] if given else
                  f"{r['dataset']}_{paper.SETUPS[r['dataset']].teacher}.keras")
    return os.path.basename(source)


# ------------------------------------------------------------------ the reader's page

# The paper's tables and figures, in its order, with a heading each.
_ITEMS = (
    ("table", 1, "MNIST: Teacher-CE, Student-CE, Student-KD and ZSKD"),
    ("table", 2, "Fashion-MNIST: Teacher-CE, Student-CE, Student-KD and ZSKD"),
    ("table", 3, "CIFAR-10: Teacher-CE, Student-CE, Student-KD and ZSKD"),
    ("table", 4, "LeNet-5 and LeNet-5-Half, layer by layer (appendix)"),
    ("table", 5, "AlexNet and AlexNet-Half, layer by layer (appendix)"),
    ("table", 6, "ZSKD without and with augmentation"),
    ("table", 7, "Uniform against class-similarity prior (without augmentation)"),
    ("figure", 1, "Class similarity of each teacher's final layer"),
    ("figure", 2, "Data Impressions against real training images, by transfer-set size"),
    ("figure", 3, "Data Impressions against Class Impressions, by transfer-set size"),
    ("figure", 4, "Data Impressions, three per class"),
)
_MODELS = {"lenet5": "LeNet-5", "lenet5_half": "LeNet-5-Half", "alexnet": "AlexNet",
           "alexnet_half": "AlexNet-Half"}
_TABLE_DATASET = {n: d for d, n in paper.TABLE_OF.items()}
# What a table compares per data set: its words, and the paper's rows for the two numbers.
_PAIR = {n: ("ZSKD without / with augmentation", (records.ZSKD, records.ZSKD_AUGMENTED))
         for n in (1, 2, 3, 6)}
_PAIR[7] = ("uniform / class-similarity prior", (records.ZSKD_UNIFORM_PRIOR, records.ZSKD))
# What a figure shows, and what the paper gives of it.
_FIGURES = {
    1: ("class-similarity matrix", "an image (CIFAR-10), no numbers"),
    2: ("test % against transfer-set size", "a plot; one number: the headline point (Table 6)"),
    3: ("test % against transfer-set size", "a plot; one number: the headline point (Table 6)"),
    4: ("three impressions per class", "images (CIFAR-10), no numbers"),
}
# Items with runs that may be among the committed ones (--import_results finds them).
_IMPORTABLE = {("table", n) for n in (1, 2, 3, 6, 7)} | {("figure", 2), ("figure", 3)}


def _datasets(kind, number):
    """The data sets an item covers: Tables 1-3 one each, Tables 4, 5 none (models)."""
    if kind == "table" and number in _TABLE_DATASET:
        return [_TABLE_DATASET[number]]
    if kind == "table" and number in paper.ARCHITECTURE_TABLES:
        return []
    return list(config.DATASETS)


def reproduce_command(kind, number, datasets=None):
    """The ``experiments.reproduce`` command that builds an item (for ``datasets`` only,
    where given)."""
    flags = [f"--{kind}={number}"]
    if datasets:
        flags.append("--datasets=" + ",".join(datasets))
    if (kind, number) in _IMPORTABLE:
        flags.append("--import_results=results")
    return " ".join(["python -m experiments.reproduce", *flags, "--workdir=runs/paper"])


def _signed(value):
    return "-" if value is None else f"{value:+.2f}"


def _ours(c, seeds=True):
    """A cell's result: mean ± sd (n seeds), one seed's value, or why there is none."""
    ours = c.get("ours")
    if ours is None:
        return c.get("status", "-")
    if not ours["n"]:
        return "missing"
    parts = []
    if ours["n"] == 1:
        text, seed = f"{ours['mean']:.2f}", ours["values"][0]["seed"]
        if seed is not None and seeds:
            parts.append(f"seed {seed}")
    else:
        text = f"{ours['mean']:.2f} ± {ours['sd']:.2f}"
        if seeds:
            parts.append(f"{ours['n']} seeds")
    if c.get("data_note"):  # e.g. JPEG CIFAR-10, beside every number measured on it
        parts.append(c["data_note"])
    return text + (f" ({', '.join(parts)})" if parts else "")


def _ours_pair(cells):
    """Two cells' results, the number of seeds said once where it is the same."""
    counts = {(c.get("ours") or {}).get("n") for c in cells}
    if len(counts) == 1 and counts.pop() and all(c["ours"]["n"] > 1 for c in cells):
        return " / ".join(_ours(c, seeds=False) for c in cells) + \
            f" ({cells[0]['ours']['n']} seeds)"
    return " / ".join(_ours(c) for c in cells)


PAPER_RUNS = "paper/runs"  # records of runs experiments.reproduce made, by run label


def _run_link(source):
    """A committed run's folder (or record), linked from this folder."""
    shown = source[len("results/"):] if source.startswith("results/") else source
    folder = os.path.dirname(shown) if shown.endswith("results.json") else shown
    return f"[{os.path.basename(folder)}]({folder})"


def _origin(runs, results_dir):
    """Where runs came from: the committed runs or records imported (linked), the runs
    ``experiments.reproduce`` made (linked where their records are committed under
    ``paper/runs/``, else counted), how many are missing."""
    parts, ran, missing = [], 0, 0
    for r in runs:
        source = r.get("imported_from") or r.get("record")
        copy = os.path.join(PAPER_RUNS, r.get("run", ""))
        if source:
            parts.append(_run_link(source))
        elif r.get("status") == "finished" and r.get("run") and os.path.isfile(
                os.path.join(results_dir, copy, "results.json")):
            parts.append(f"[{r['run']}]({copy})")
        elif r.get("status") in ("finished", "imported"):
            ran += 1
        else:
            missing += 1
    if ran:
        parts.append(f"{ran} run{'s' * (ran > 1)} by experiments.reproduce")
    if missing:
        parts.append(f"{missing} not run")
    return ", ".join(parts) or "-"


def _status(cells, doc):
    """complete / partial / not run yet over the cells that are run, then the budget
    unless full, then where the runs came from."""
    states = {c["status"] for c in cells if c.get("status") != "cited, not run"}
    state = ("complete" if states == {"complete"} else "not run yet" if states <= {"missing"}
             else "partial")
    budget = doc.get("budget", {}).get("name", "?")
    if budget != "full":
        state += f", {budget.upper()} budget"
    runs = [r for c in cells for r in c.get("runs", ())]
    imported = sum(bool(r.get("imported_from") or r.get("record")) for r in runs)
    if runs and imported == len(runs):
        return state + ", committed runs imported"
    return state + (f", {imported} of {len(runs)} runs imported" if imported else "")


def _load_paper(results_dir):
    """{(kind, number): the item's JSON} of results_dir/paper/."""
    docs = {}
    for path in glob.glob(os.path.join(results_dir, "paper", "*_*.json")):
        kind, _, number = os.path.basename(path)[:-len(".json")].partition("_")
        if kind in ("table", "figure") and number.isdigit():
            with open(path) as f:
                docs[(kind, int(number))] = json.load(f)
    return docs


def _compared_cells(doc, dataset):
    """The cells of ``dataset`` a summary row compares: a table's two columns (Tables 6,
    7) or its two ZSKD rows (Tables 1-3)."""
    return [c for c in doc.get("cells", ()) if c.get("dataset") == dataset
            and ("column" in c or str(c.get("row", "")).startswith("ZSKD"))]


def _relative(c):
    """Our parameter count against the text's: the difference and its percentage."""
    if not c["difference"]:
        return "0"
    stated = c["parameters"] - c["difference"]
    return f"{c['difference']:+,g} ({100.0 * c['difference'] / stated:+.1f}%)"


def _shapes(doc):
    """(layers with a shape in the appendix, those whose shape differs from ours)."""
    shaped = [c for c in doc["cells"] if c["layer"] != "total parameters"
              and c["match"] != "-"]
    return shaped, [f"{c['model']} {c['layer']}" for c in shaped if c["match"] != "yes"]


def _summary_rows(kind, number, doc):
    """The summary table's rows of one item: one per data set (one for Tables 4, 5 and
    Figures 1, 4)."""
    label = f"{kind.capitalize()} {number}"
    if kind == "table" and number in paper.ARCHITECTURE_TABLES:
        models = paper.ARCHITECTURE_TABLES[number]
        stated = " / ".join(f"{paper.PARAMETERS[m]:,g}" for m in models)
        names = ", ".join(_MODELS.get(m, m) for m in models)
        if doc is None:
            return [[label, names, "parameters", stated, "-", "-", "not built yet"]]
        totals = [c for c in doc["cells"] if c["layer"] == "total parameters"]
        shaped, differ = _shapes(doc)
        return [[label, names, "parameters", stated,
                 " / ".join(f"{c['parameters']:,}" for c in totals),
                 " / ".join(_relative(c) for c in totals),
                 f"built (no runs); {len(shaped) - len(differ)} of {len(shaped)} layer "
                 "shapes match"]]
    if kind == "table":
        compared, reported = _PAIR[number]
        rows = []
        for d in _datasets(kind, number):
            cells = _compared_cells(doc, d) if doc is not None else []
            if not cells:
                rows.append([label, _NAMES[d], compared, " / ".join(
                    f"{paper.REPORTED[d][r]:.2f}" for r in reported), "-", "-", "not run yet"])
            else:
                rows.append([label, _NAMES[d], compared,
                             " / ".join(f"{c['paper']:.2f}" for c in cells), _ours_pair(cells),
                             " / ".join(_signed(c["difference"]) for c in cells),
                             _status(cells, doc)])
        return rows
    compared, given = _FIGURES[number]
    if doc is None or "panels" in doc:
        names = ", ".join(_NAMES[d] for d in _datasets(kind, number))
        if doc is None:
            return [[label, names, compared, given, "-", "-", "not run yet"]]
        panels = doc["panels"]
        done = [p for p in panels if p.get("similarity") or p.get("impressions")]
        return [[label, ", ".join(_NAMES[p["dataset"]] for p in panels), compared, given,
                 f"{len(done)} of {len(panels)} panels", "-",
                 "complete" if len(done) == len(panels) else "partial"]]
    rows = []
    for d in dict.fromkeys(c["dataset"] for c in doc["cells"]):
        cells = [c for c in doc["cells"] if c["dataset"] == d]
        headline = [c for c in cells if c.get("paper") is not None]
        rows.append([label, _NAMES[d], compared, given,
                     f"{sum(bool(c['ours']['n']) for c in cells)} of {len(cells)} points"
                     + "".join(f"; headline {_ours(c)}" for c in headline),
                     " / ".join(_signed(c["difference"]) for c in headline) or "-",
                     _status(cells, doc)])
    built = {c["dataset"] for c in doc["cells"]}
    rows += [[label, _NAMES[d], compared, given, "-", "-", "not run yet"]
             for d in _datasets(kind, number) if d not in built]
    return rows


def _values_table(doc, results_dir):
    """Every cell of a table, or every point of a figure 2 or 3."""
    rows = []
    for c in doc["cells"]:
        what = c.get("row") or c.get("column") or c.get("series", "")
        if "size" in c:
            what += f", {c['size']}"
        values = (c.get("ours") or {}).get("values", [])
        rows.append([_NAMES.get(c.get("dataset"), c.get("dataset")), what,
                     "-" if c.get("paper") is None else f"{c['paper']:.2f}", _ours(c),
                     ", ".join(f"{v['seed']}: {v['value']:.2f}" for v in values
                               if v["seed"] is not None) or "-",
                     _signed(c.get("difference")), c.get("budget", "-"),
                     _origin(c.get("runs", ()), results_dir)])
    header = ["data set", "cell", "paper %", "ours %", "each seed", "ours - paper", "budget",
              "runs from"]
    return report.markdown_table(header, rows)


def _layers_table(doc):
    """Tables 4, 5: the parameter counts against the text's, and the shapes' tally."""
    rows = [[_MODELS.get(c["model"], c["model"]), c["paper"].replace(" (the text)", ""),
             f"{c['parameters']:,}", _relative(c), c["match"]]
            for c in doc["cells"] if c["layer"] == "total parameters"]
    shaped, differ = _shapes(doc)
    return (report.markdown_table(["model", "parameters, the text", "ours", "ours - text",
                                   "match"], rows)
            + f"\nLayer output shapes against the appendix's table: "
            f"{len(shaped) - len(differ)} of {len(shaped)} match"
            + (f"; differ: {', '.join(differ)}" if differ else "") + ".\n")


def _panel_source(panel):
    """A Figure 1 panel's teacher file; a Figure 4 panel's run, with the committed record
    it was imported from."""
    if panel.get("teacher") or not panel.get("runs"):
        return os.path.basename(panel.get("teacher") or panel.get("transfer_set") or "-")
    run = panel["runs"][0]
    return run["run"] + (f" (imported from `{run['imported_from']}`)"
                         if run.get("imported_from") else "")


def _panels_table(doc):
    """Figures 1, 4: which teacher or transfer set each panel comes from."""
    rows = [[_NAMES.get(p["dataset"], p["dataset"]), _panel_source(p), p.get("status", "-")]
            for p in doc["panels"]]
    return report.markdown_table(["data set", "from", "status"], rows)


def _built_lines(results_dir, kind, number, doc):
    stem = f"{kind}_{number}"
    parts = doc.get("cells", doc.get("panels", ()))
    lines, has_runs = [], any(p.get("runs") for p in parts)
    if has_runs:
        lines += [f"Preset `{doc.get('preset', '-')}`; "
                  f"{doc.get('budget', {}).get('description', '-')}; seeds "
                  f"{', '.join(map(str, doc.get('seeds', [])))}. Final epoch, no model "
                  "selection on the test set.", ""]
    if "panels" in doc:
        lines.append(_panels_table(doc))
    elif kind == "table" and number in paper.ARCHITECTURE_TABLES:
        lines.append(_layers_table(doc))
    else:
        lines.append(_values_table(doc, results_dir))
    if doc.get("note"):
        lines += [doc["note"], ""]
    if doc.get("png") and os.path.exists(os.path.join(results_dir, "paper", doc["png"])):
        lines += [f"![{kind.capitalize()} {number}](paper/{doc['png']})", ""]
    left = [d for d in _datasets(kind, number) if d not in doc.get("datasets", [])]
    if left:
        lines += [f"**Not run yet for {', '.join(_NAMES[d] for d in left)}:** "
                  f"`{reproduce_command(kind, number, left)}`", ""]
    files = [doc[k] for k in ("markdown", "png") if doc.get(k)] + [f"{stem}.json"]
    lines += ["Output of `experiments.reproduce`"
              + (", with every run's command" if has_runs else "") + ": "
              + ", ".join(f"[paper/{name}](paper/{name})" for name in files) + ".", ""]
    return lines


def item_section(results_dir, kind, number, title, doc):
    """One table's or figure's section: ours beside the paper's from its JSON, or "not
    run yet" and the command that makes it; then the hand-written notes
    (results_dir/paper/notes/<kind>_<number>.md)."""
    lines = [f"## {kind.capitalize()} {number}: {title}", ""]
    if doc is None:
        lines += [f"**Not run yet:** `{reproduce_command(kind, number)}`", ""]
    else:
        lines += _built_lines(results_dir, kind, number, doc)
    notes = os.path.join(results_dir, "paper", "notes", f"{kind}_{number}.md")
    if os.path.exists(notes):
        with open(notes) as f:
            lines += [f.read().strip(), ""]
    return "\n".join(lines) + "\n"


def reader_page(results_dir):
    """results/README.md: a summary table, then each of the paper's tables and figures in
    its order, ours beside the paper's (results/paper/*.json), with hand-written notes."""
    docs = _load_paper(results_dir)
    summary = [row for kind, number, _ in _ITEMS
               for row in _summary_rows(kind, number, docs.get((kind, number)))]
    header = ["item", "data set", "compared", "paper", "ours", "ours - paper", "status"]
    return ("# Did it reproduce? The paper's tables and figures beside ours\n\n"
            "Generated by `python -m experiments.summarize` from the JSON in [paper/](paper/), "
            "which `python -m experiments.reproduce` writes; the paragraph under each section "
            "is hand-written, in [paper/notes/](paper/notes/). Ours: final-epoch test "
            "accuracy (%), mean ± sample standard deviation over seeds; nothing is selected "
            "on the test set. Every committed run, including those no table uses yet: "
            "[RUNS.md](RUNS.md); what each showed: [docs/NOTES.md](../docs/NOTES.md).\n\n"
            + report.markdown_table(header, summary)
            + "\nAn item not run yet: its command (below) writes `table_N.json` and `.md` (or "
            "`figure_N.json` and `.png`) into `--workdir`; copied into `results/paper/`, it "
            "shows here. `--dry_run` lists the runs and their estimated time.\n\n"
            + "".join(item_section(results_dir, kind, number, title, docs.get((kind, number)))
                      for kind, number, title in _ITEMS))


def runs_page(results_dir):
    """results/RUNS.md: every committed run, its repeated settings and curves."""
    return ("# Every committed run\n\nGenerated by `python -m experiments.summarize` from "
            "the JSON files in this folder; each JSON holds the exact command that produced "
            "it. Machine: 2 CPU cores, no GPU. The paper's tables beside ours: "
            "[README.md](README.md). What the columns mean, and what each run showed: the "
            "research log, [docs/NOTES.md](../docs/NOTES.md).\n\n"
            + real_data_section(results_dir) + zskd_section(results_dir)
            + repeats_section(results_dir) + curve_figures(results_dir)
            + arbitrary_section(results_dir))


def main(argv):
    del argv
    d = FLAGS.results_dir
    for name, text in (("RUNS.md", runs_page(d)), ("README.md", reader_page(d))):
        io_utils.write_text(os.path.join(d, name), text)
        print(f"wrote {os.path.join(d, name)}")


if __name__ == "__main__":
    app.run(main)
