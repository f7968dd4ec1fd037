import json
import os
import subprocess
import sys

import numpy as np

from zskd_tf import report

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_pick_per_class_spreads_over_each_class():
    classes = np.repeat(np.arange(3), 10)
    picks = report.pick_per_class(classes, 3)
    np.testing.assert_array_equal(picks, [0, 4, 9, 10, 14, 19, 20, 24, 29])


def test_figures_render(tmp_path):
    sim = np.eye(4) * 0.5 + 0.5
    path = report.save_similarity_png(sim, str(tmp_path / "sim.png"))
    assert os.path.getsize(path) > 1000
    images = np.random.default_rng(0).uniform(size=(8, 32, 32, 1)).astype(np.float32)
    targets = np.eye(4, dtype=np.float32)[[0, 0, 1, 1, 2, 2, 3, 3]]
    fig = report.impression_grid_figure(images, targets, np.argmax(targets, 1))
    image = report.figure_to_image(fig)
    assert image.shape[0] == 1 and image.shape[-1] == 4


def test_markdown_table():
    text = report.markdown_table(["a", "b"], [[1.234, None], ["x", 2]])
    assert text.splitlines() == ["| a | b |", "|---|---|", "| 1.23 | - |", "| x | 2 |"]


def test_summarize_prints_only_what_the_json_says(tmp_path):
    (tmp_path / "real_data").mkdir()
    run = {"dataset": "mnist", "model": "lenet5", "test_accuracy": 12.34,
           "paper_test_accuracy": 99.34, "epochs": 3, "paper_epochs": 200,
           "mean_epoch_seconds": 1.5, "command": "python -m experiments.train_teacher"}
    (tmp_path / "real_data" / "mnist_lenet5.json").write_text(json.dumps(run))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-m", "experiments.summarize",
                           f"--results_dir={tmp_path}"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = (tmp_path / "RUNS.md").read_text()
    assert "| MNIST | lenet5 | Teacher-CE | 12.34 | 99.34 |" in text
    assert "3 (paper 200)" in text
    assert "[README.md](README.md)" in text and "[docs/NOTES.md](../docs/NOTES.md)" in text
    page = (tmp_path / "README.md").read_text()
    assert "[RUNS.md](RUNS.md)" in page and "12.34" not in page
    assert "`python -m experiments.reproduce --table=1 --import_results=results" in page
    run.update(weight_decay=1e-4, model="lenet5")
    (tmp_path / "real_data" / "mnist_lenet5_wd.json").write_text(json.dumps(run))
    from experiments import summarize
    assert "| Teacher-CE, weight decay 0.0001 | 12.34 |" in summarize.real_data_section(
        str(tmp_path))
    run.update(augment="flip_crop")
    (tmp_path / "real_data" / "mnist_lenet5_wd.json").write_text(json.dumps(run))
    assert "| Teacher-CE, weight decay 0.0001, flip_crop augmentation | 12.34 |" in \
        summarize.real_data_section(str(tmp_path))


def test_zskd_table_shows_the_paper_only_for_its_setting(tmp_path):
    from experiments import summarize
    for name, n, recipe, teacher in (
            ("headline", 24000, {}, {}),
            ("small", 600, {"init": "normal", "image_l2": 0.01},
             {"teacher": {"test_accuracy": 99.0, "source": "/x/mine.keras"}}),
            ("by_flag", 600, {"craft_precision": "bfloat16", "student_lr": 1e-4, "seed": 2},
             {"command": "python -m experiments.x --teacher=t.keras"}),
            ("class", 24000, {"impressions": "class"}, {})):
        d = tmp_path / "zskd" / name
        d.mkdir(parents=True)
        run = {"dataset": "mnist", "test_accuracy": {"teacher": 99.0, "zskd": 90.5,
                                                     "zskd_augmented": None},
               "config": {"num_impressions": n, "betas": [1.0, 0.1], "impressions": "data",
                          "prior": "class_similarity", "pixel": "minmax",
                          "craft_iterations": 1500, **recipe},
               "crafting": {"mean_final_loss": 1.0, "craft_seconds": 60.0,
                            "image_steps_per_second": 7000.0},
               "student": {"epochs": 5}, **teacher}
        (d / "results.json").write_text(json.dumps(run))
    rows = [l for l in summarize.zskd_section(str(tmp_path)).splitlines() if "| MNIST |" in l]
    # sorted by folder: by_flag, class, headline, small
    class_row = rows.pop(1)
    assert "| - | class impressions |" in class_row and "| 90.50 | - |" in class_row
    assert "| class_similarity |" in rows[1]
    assert "| 24000 |" in rows[1] and "| 90.50 | 96.98 |" in rows[1]
    assert "| 600 |" in rows[2] and "| 90.50 | - |" in rows[2]
    assert "| uniform, minmax, 0 |" in rows[1] and "| normal, minmax, 0.01 |" in rows[2]
    assert "| uniform, minmax, 0, bfloat16 |" in rows[0]
    assert "| mnist_lenet5.keras | 99.00 |" in rows[1]
    assert "| t.keras | 99.00 |" in rows[0] and "| mine.keras | 99.00 |" in rows[2]
    assert "| 5 + 0 | 0.0001 | 2 |" in rows[0] and "| 5 + 0 | - | - |" in rows[1]


def _history(path, accuracies):
    lines = ["epoch,loss,val_accuracy"] + [
        f"{i},1.0,{'NA' if a is None else a}" for i, a in enumerate(accuracies)]
    path.write_text("\n".join(lines) + "\n")


def test_read_accuracy_history_skips_unevaluated_epochs(tmp_path):
    _history(tmp_path / "h.csv", [None, 0.5, None, 0.75])
    epochs, acc = report.read_accuracy_history(tmp_path / "h.csv")
    np.testing.assert_array_equal(epochs, [2, 4])
    np.testing.assert_allclose(acc, [50.0, 75.0])


def test_curve_figures_one_png_per_setting_with_two_runs(tmp_path):
    from experiments import summarize
    for name, n in (("a", 24000), ("b", 24000), ("alone", 600)):
        d = tmp_path / "zskd" / name
        d.mkdir(parents=True)
        run = {"dataset": "mnist", "command": "",
               "config": {"num_impressions": n, "prior": "uniform", "pixel": "minmax"}}
        (d / "results.json").write_text(json.dumps(run))
        _history(d / "student_history.csv", [0.5, 0.6, 0.7])
    _history(tmp_path / "zskd" / "a" / "student_augmented_history.csv", [0.8, 0.9])
    text = summarize.curve_figures(str(tmp_path))
    assert "figures/mnist_24000_student_curves.png" in text and "600" not in text
    assert os.path.getsize(tmp_path / "figures" / "mnist_24000_student_curves.png") > 1000
    assert not (tmp_path / "figures" / "mnist_600_student_curves.png").exists()


def test_arbitrary_table_and_pool_figure(tmp_path):
    from experiments import summarize
    assert summarize.arbitrary_section(str(tmp_path)) == ""
    for name, balance, hist in (("bal", True, [5, 5, 2]), ("rnd", False, [9, 2, 1])):
        d = tmp_path / "arbitrary" / name
        d.mkdir(parents=True)
        run = {"dataset": "mnist", "transfer": "cifar10", "balance": balance,
               "test_accuracy": {"teacher": 99.0, "student": 61.25, "student_augmented": None},
               "transfer_set": {"size": 12, "balance": min(hist) / max(hist),
                                "pool_histogram": [50, 30, 2]},
               "student_agrees_with_teacher_on_transfer_set": 0.5,
               "config": {"student_lr": 0.001},
               "student": {"epochs": 7, "max_test_accuracy_over_epochs_selected_on_test": 70.5},
               "teacher": {"source": "/x/mine.keras"}}
        (d / "results.json").write_text(json.dumps(run))
    text = summarize.arbitrary_section(str(tmp_path))
    rows = [l for l in text.splitlines() if l.startswith("| MNIST |")]
    assert len(rows) == 2
    assert ("| mine.keras | 99.00 | CIFAR-10 | balanced | 12 | 0.40 | 0.001 | 50.00 | 61.25 "
            "| 70.50 | - | 7 |") in rows[0]
    assert "| random |" in rows[1]
    assert os.path.getsize(tmp_path / "figures" / "arbitrary_pool_classes.png") > 1000


def test_curves_use_a_log_axis_only_for_runs_of_very_different_lengths():
    short = ("a", np.arange(1, 201), np.full(200, 50.0), None, None)
    long = ("b", np.arange(1, 2001), np.full(2000, 40.0), None, None)
    tuned = ("c", np.arange(1, 201), np.full(200, 50.0), np.arange(1, 1801),
             np.full(1800, 60.0))
    for curves, scale in (([short, long], "log"), ([short, short], "linear"),
                          ([long, tuned], "linear")):
        fig = report.accuracy_curves_figure(curves)
        assert fig.axes[0].get_xscale() == scale
        report.plt.close(fig)
    many = [(str(i), np.arange(1, 11), np.full(10, float(i)), None, None) for i in range(12)]
    fig = report.accuracy_curves_figure(many)
    colours = {tuple(line.get_color()) for line in fig.axes[0].get_lines()}
    assert len(colours) == 12
    report.plt.close(fig)


def test_repeats_group_runs_that_differ_only_in_seed(tmp_path):
    from experiments import summarize
    base = {"num_impressions": 600, "betas": [1.0, 0.1], "impressions": "data",
            "prior": "class_similarity", "pixel": "minmax", "craft_iterations": 1500,
            "student_lr": 0.01}
    for name, extra, zskd in (("s0", {"seed": 0, "eval_every": 10}, 40.0),
                              ("s1", {"seed": 1, "eval_every": 50,
                                      "parallel_batches": 5}, 50.0),
                              ("s2", {"seed": 2, "craft_precision": "float32"}, 45.0),
                              ("other_lr", {"seed": 0, "student_lr": 0.001}, 90.0)):
        d = tmp_path / "zskd" / name
        d.mkdir(parents=True)
        run = {"dataset": "mnist", "test_accuracy": {"teacher": 99.0, "zskd": zskd},
               "config": {**base, **extra}, "student": {"epochs": 5},
               "crafting": {"mean_final_loss": 1.0, "craft_seconds": 1.0,
                            "image_steps_per_second": 1.0}}
        (d / "results.json").write_text(json.dumps(run))
    rows = [l for l in summarize.repeats_section(str(tmp_path)).splitlines() if "| MNIST |" in l]
    assert len(rows) == 1
    assert "| 5 + 0 | 3 | 0, 1, 2 | 45.00 ± 5.00 | 40.00-50.00 | - | s0, s1, s2 |" in rows[0]
    (tmp_path / "zskd" / "s1" / "results.json").unlink()
    (tmp_path / "zskd" / "s2" / "results.json").unlink()
    assert summarize.repeats_section(str(tmp_path)) == ""


def _paper_cell(dataset, column, paper_value, values, imported=True):
    mean = float(np.mean(values))
    return {"dataset": dataset, "column": column, "paper": paper_value,
            "paper_source": "Table 6", "difference": mean - paper_value, "status": "complete",
            "budget": "full", "source": "",
            "ours": {"mean": mean, "sd": float(np.std(values, ddof=1)), "n": len(values),
                     "selection": "final epoch",
                     "values": [{"seed": s, "value": v} for s, v in enumerate(values)]},
            "runs": [{"run": f"{dataset}/zskd_seed{s}", "seed": s,
                      "status": "imported" if imported else "finished",
                      "command": "python -m experiments.mnist_zskd",
                      **({"imported_from": f"results/zskd/run{s}/results.json"}
                         if imported else {})} for s in range(len(values))]}


def test_reader_page_puts_ours_beside_the_paper_with_the_notes(tmp_path):
    from experiments import summarize
    (tmp_path / "paper" / "notes").mkdir(parents=True)
    doc = {"kind": "table", "number": 6, "preset": "reproduce", "seeds": [0, 1],
           "datasets": ["mnist"], "markdown": "table_6.md",
           "budget": {"name": "full", "description": "full budget (the preset's settings)"},
           "cells": [_paper_cell("mnist", "without augmentation", 96.98, [97.0, 96.0]),
                     _paper_cell("mnist", "with augmentation", 98.77, [98.5, 98.7], False)]}
    (tmp_path / "paper" / "table_6.json").write_text(json.dumps(doc))
    (tmp_path / "paper" / "notes" / "table_6.md").write_text(
        "MNIST is 0.48 points under the paper.\n")
    page = summarize.reader_page(str(tmp_path))
    summary = page.split("\n## ")[0]
    assert ("| Table 6 | MNIST | ZSKD without / with augmentation | 96.98 / 98.77 | "
            "96.50 ± 0.71 / 98.60 ± 0.14 (2 seeds) | -0.48 / -0.17 | complete, 2 of 4 runs "
            "imported |") in summary
    assert "| Table 6 | Fashion-MNIST | ZSKD without / with augmentation | 69.37 / 79.62 | - " \
        "| - | not run yet |" in summary
    section = page.split("## Table 6: ")[1].split("\n## ")[0]
    assert ("| MNIST | without augmentation | 96.98 | 96.50 ± 0.71 (2 seeds) | 0: 97.00, "
            "1: 96.00 | -0.48 | full | [run0](zskd/run0), [run1](zskd/run1) |") in section
    assert "| 2 runs by experiments.reproduce |" in section
    assert "MNIST is 0.48 points under the paper." in section
    assert ("`python -m experiments.reproduce --table=6 --datasets=fashion_mnist,cifar10 "
            "--import_results=results --workdir=runs/paper`") in section
    assert "[paper/table_6.md](paper/table_6.md)" in section
    # a table with no JSON: "not run yet" and its command, and its notes if there are any
    (tmp_path / "paper" / "notes" / "table_1.md").write_text("Teacher 99.17%.")
    page = summarize.reader_page(str(tmp_path))
    table_1 = page.split("## Table 1: ")[1].split("\n## ")[0]
    assert ("**Not run yet:** `python -m experiments.reproduce --table=1 "
            "--import_results=results --workdir=runs/paper`") in table_1
    assert "Teacher 99.17%." in table_1
    assert "| Table 1 | MNIST | ZSKD without / with augmentation | 96.98 / 98.77 | - | - | " \
        "not run yet |" in page
    figure_4 = page.split("## Figure 4: ")[1]
    assert "`python -m experiments.reproduce --figure=4 --workdir=runs/paper`" in figure_4
    # every item, in the paper's order
    headings = [line.split(":")[0] for line in page.splitlines() if line.startswith("## ")]
    assert headings == [f"## Table {n}" for n in range(1, 8)] + [
        f"## Figure {n}" for n in range(1, 5)]


def test_reader_page_embeds_a_figure_and_counts_parameters(tmp_path):
    from experiments import summarize
    (tmp_path / "paper").mkdir()
    figure = {"kind": "figure", "number": 1, "png": "figure_1.png", "datasets": ["mnist"],
              "budget": {"name": "full"}, "panels": [
                  {"dataset": "mnist", "teacher": "/x/t.keras", "similarity": [[1.0]],
                   "status": "complete"}]}
    (tmp_path / "paper" / "figure_1.json").write_text(json.dumps(figure))
    (tmp_path / "paper" / "figure_1.png").write_bytes(b"png")
    totals = [{"model": m, "layer": "total parameters", "paper": f"{p:,} (the text)",
               "parameters": n, "difference": n - p, "match": match}
              for m, p, n, match in (("alexnet", 1650000, 1662090, "within 1% (+0.7%)"),
                                     ("alexnet_half", 723000, 418890, "NO (-42.1%)"))]
    layer = {"model": "alexnet", "layer": "conv1", "paper": "", "parameters": 1,
             "match": "yes"}
    (tmp_path / "paper" / "table_5.json").write_text(json.dumps(
        {"kind": "table", "number": 5, "budget": {"name": "full"},
         "cells": [layer, *totals]}))
    page = summarize.reader_page(str(tmp_path))
    assert "![Figure 1](paper/figure_1.png)" in page
    assert "| Figure 1 | MNIST | class-similarity matrix |" in page
    assert "| 1 of 1 panels | - | complete |" in page
    assert ("| Table 5 | AlexNet, AlexNet-Half | parameters | 1.65e+06 / 723,000 | 1,662,090 "
            "/ 418,890 | +12,090 (+0.7%) / -304,110 (-42.1%) | built (no runs); 1 of 1 layer "
            "shapes match |") in page
    assert "| AlexNet-Half | 723,000 | 418,890 | -304,110 (-42.1%) | NO (-42.1%) |" in page


def test_reader_page_lists_a_sweep_figures_data_sets_not_run_yet(tmp_path):
    from experiments import summarize
    (tmp_path / "paper").mkdir()
    cell = {**_paper_cell("mnist", "", 0.0, [90.0, 91.0]), "paper": None, "difference": None,
            "series": "Data Impressions",
            "size": 6000, "percent": 10.0}
    doc = {"kind": "figure", "number": 2, "preset": "reproduce", "seeds": [0],
           "datasets": ["mnist"], "png": "figure_2.png", "cells": [cell],
           "budget": {"name": "full", "description": "full budget (the preset's settings)"}}
    (tmp_path / "paper" / "figure_2.json").write_text(json.dumps(doc))
    summary = summarize.reader_page(str(tmp_path)).split("\n## ")[0]
    rows = [line for line in summary.splitlines() if line.startswith("| Figure 2 |")]
    assert [row.split(" | ")[1] for row in rows] == ["MNIST", "Fashion-MNIST", "CIFAR-10"]
    assert "1 of 1 points" in rows[0] and rows[1].endswith("| - | - | not run yet |")
