r"""Collects committed run results into results/README.md, beside the paper's numbers.

    python -m experiments.summarize [--results_dir=results]

Reads ``results/real_data/*.json`` (from ``experiments.train_teacher``),
``results/zskd/*/results.json`` (from the ``*_zskd`` binaries) and
``results/arbitrary/*/results.json`` (from ``experiments.arbitrary_transfer``). Only
numbers found in those files are printed.
"""
import glob
import json
import os
import statistics

from absl import app
from absl import flags

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


def main(argv):
    del argv
    d = FLAGS.results_dir
    text = ("# Results\n\nGenerated by `python -m experiments.summarize` from the JSON files "
            "in this folder; each JSON holds the exact command that produced it. Machine: "
            "2 CPU cores, no GPU. What the columns mean, and what each run showed: the "
            "research log, [docs/NOTES.md](../docs/NOTES.md).\n\n" + real_data_section(d)
            + zskd_section(d) + repeats_section(d) + curve_figures(d) + arbitrary_section(d))
    io_utils.write_text(os.path.join(d, "README.md"), text)
    print(text)


if __name__ == "__main__":
    app.run(main)
