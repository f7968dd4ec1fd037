"""experiments.reproduce and zskd_tf.reproduce: one command per table and figure."""
import dataclasses
import json

import numpy as np
import pytest

from conftest import assert_rejected_before_any_work, run_module, tiny_binary_run
from zskd_tf import io_utils
from zskd_tf import reproduce


def _finish(run, **accuracy):
    """Writes ``run``'s results.json in the shape its binary writes: a ZSKD binary's
    accuracies by row (teacher, zskd, zskd_augmented), else one ``value``."""
    if "value" in accuracy:
        results = {"test_accuracy": accuracy["value"]}
    else:
        results = {"test_accuracy": accuracy, "teacher": {"test_accuracy": accuracy["teacher"]}}
    io_utils.write_json(f"{run.workdir}/results.json", {"command": run.command, **results})


def _setup(tmp_path, **kw):
    return reproduce.Setup(root=str(tmp_path / "root"), **{"seeds": (0, 1),
                                                           "datasets": ("mnist",), **kw})


def test_table_from_fake_results_has_paper_ours_sd_difference_and_commands(tmp_path):
    setup = _setup(tmp_path)
    zskd = [reproduce.zskd_run(setup, "mnist", s) for s in (0, 1)]
    _finish(zskd[0], teacher=99.0, zskd=96.0, zskd_augmented=98.0)
    _finish(zskd[1], teacher=99.0, zskd=98.0, zskd_augmented=99.0)
    _finish(reproduce.zskd_run(setup, "mnist", 0, prior="uniform"), teacher=99.0, zskd=90.5,
            zskd_augmented=None)
    for number in (6, 7):
        json_path, md_path = reproduce.write(reproduce.item("table", number), setup)
        doc, md = json.loads(open(json_path).read()), open(md_path).read()
        assert "preset reproduce; full budget" in doc["title"] and doc["budget"]["name"] == "full"
        assert "| 96.98 | 97.00 ± 1.41 (seeds 0: 96.00, 1: 98.00) | +0.02 |" in md
        assert zskd[1].command in md
        cell = next(c for c in doc["cells"] if c["paper"] == 96.98)
        assert cell["ours"]["values"] == [{"seed": 0, "value": 96.0}, {"seed": 1, "value": 98.0}]
        assert cell["ours"]["sd"] == pytest.approx(np.std([96.0, 98.0], ddof=1))
        assert cell["difference"] == pytest.approx(0.02)
        assert [r["command"] for r in cell["runs"]] == [r.command for r in zskd]
        assert cell["status"] == "complete" and cell["budget"] == "full"
    uniform = next(c for c in doc["cells"] if c["column"] == "uniform prior")
    assert uniform["paper"] == 95.16 and uniform["status"] == "partial"
    assert "90.50 (seed 0); missing seed 1 | -4.66 |" in md
    # Table 1: the teacher's committed record, the cited rows, missing runs shown as such
    json_path, md_path = reproduce.write(reproduce.item("table", 1), setup)
    md, doc = open(md_path).read(), json.loads(open(json_path).read())
    assert "| Teacher-CE | 99.34 | Table 1 | 99.17 |" in md
    assert "results/real_data/mnist_lenet5_wd.json" in md and "not retrained" in md
    assert "| Kimura et al., 2018 (200 original data) | 86.70 |" in md
    assert md.count("cited, not run") == 2 and "92.47" in md
    assert "| Student-CE | 98.92 | Table 1 | missing (not run) |" in md
    assert "| 98.77 | Table 1 (and Table 6) | 98.50 ± 0.71" in md
    assert set(reproduce.missing(doc)) == {f"mnist/student_{k}_seed{s}" for k in ("ce", "kd")
                                           for s in (0, 1)}


def test_architecture_tables_match_the_appendix(tmp_path):
    setup = _setup(tmp_path)
    doc = json.loads(open(reproduce.write(reproduce.item("table", 4), setup)[0]).read())
    assert all(c["match"] in ("yes", "-") for c in doc["cells"])
    assert [c["parameters"] for c in doc["cells"] if c["layer"] == "total parameters"] == [
        61706, 35820]
    md = open(reproduce.write(reproduce.item("table", 5), setup)[1]).read()
    assert "| alexnet_half | total parameters | 723,000 (the text) |" in md and "NO (-42.1%)" in md


def test_figures_are_written(tmp_path, tiny_teacher):
    teacher = tmp_path / "teacher.keras"
    tiny_teacher.save(teacher)
    setup = _setup(tmp_path, teachers=(("mnist", str(teacher)),))
    for i, run in enumerate(reproduce.item("figure", 3).runs(setup)):
        _finish(run, teacher=99.0, zskd=50.0 + i, zskd_augmented=None)
    for number in (1, 2, 3, 4):
        json_path, png = reproduce.write(reproduce.item("figure", number), setup)
        assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
        assert len(open(png, "rb").read()) > 10000
        doc = json.loads(open(json_path).read())
        assert doc["budget"]["name"] == "full" and doc["png"] == f"figure_{number}.png"
    doc = json.loads(open(tmp_path / "root" / "figure_2.json").read())
    di = [c for c in doc["cells"] if c["series"].startswith("Data")]
    assert [c["size"] for c in di] == [600, 3000, 6000, 12000, 24000]
    assert [c["paper"] for c in di] == [None] * 4 + [96.98]
    assert all(c["status"] == "missing" for c in doc["cells"] if c not in di)  # real data
    sim = json.loads(open(tmp_path / "root" / "figure_1.json").read())["panels"][0]
    assert len(sim["similarity"]) == 10 and sim["class_names"][3] == "3"


def test_finished_runs_are_reused_not_rerun(tmp_path):
    setup = _setup(tmp_path)
    runs = reproduce.item("table", 7).runs(setup)
    assert len(reproduce.unique(runs)) == 4  # uniform and class-similarity, two seeds
    _finish(reproduce.zskd_run(setup, "mnist", 0), teacher=99.0, zskd=96.0,
            zskd_augmented=98.0)
    called = []

    def runner(run):
        called.append(run.label)
        _finish(run, teacher=99.0, zskd=95.0, zskd_augmented=None)
        return 0

    reproduce.execute(runs, runner=runner, log=lambda line: None)
    assert sorted(called) == ["mnist/zskd_seed1", "mnist/zskd_uniform_seed0",
                              "mnist/zskd_uniform_seed1"]
    reproduce.execute(runs, runner=runner, log=lambda line: None)
    assert len(called) == 3
    # a workdir holding another command's run is refused before anything runs
    other = dataclasses.replace(setup, preset="paper")
    with pytest.raises(reproduce.Conflict, match="holds a run made by another command"):
        reproduce.execute(reproduce.item("table", 7).runs(other), runner=runner,
                          log=lambda line: None)
    assert len(called) == 3
    with pytest.raises(reproduce.RunFailed, match="exit status 3"):
        reproduce.execute(reproduce.item("table", 7).runs(dataclasses.replace(
            setup, seeds=(2,))), runner=lambda run: 3, log=lambda line: None)


def test_reduced_budget_end_to_end(tmp_path, tiny_teacher):
    """Table 7 on blob MNIST with a tiny teacher: two real runs, then Figure 4 from them."""
    _, data_and_teacher = tiny_binary_run(tmp_path, tiny_teacher)
    teacher = data_and_teacher[1].split("=", 1)[1]
    root = tmp_path / "root"
    args = [f"--workdir={root}", data_and_teacher[0], f"--teacher=mnist={teacher}",
            "--budget=reduced", "--num_impressions_scale=0.001", "--datasets=mnist",
            "--seeds=0"]
    proc = run_module("experiments.reproduce", "--table=7", *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "run 2 of 2: mnist/zskd_seed0: starting" in proc.stderr
    md = (root / "table_7.md").read_text()
    assert "REDUCED budget" in md and "x0.001" in md
    doc = json.loads((root / "table_7.json").read_text())
    assert doc["budget"]["name"] == "reduced" and not reproduce.missing(doc)
    for c in doc["cells"]:
        assert c["budget"] == "reduced" and c["ours"]["n"] == 1
        assert "--num_impressions=20" in c["runs"][0]["command"]
    results = json.loads((root / "mnist" / "zskd_uniform_seed0" / "results.json").read_text())
    assert results["config"]["prior"] == "uniform" and "student_augmented" not in results
    proc = run_module("experiments.reproduce", "--figure=4", "--only_existing", *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "starting" not in proc.stderr
    assert (root / "figure_4.png").stat().st_size > 20000
    doc = json.loads((root / "figure_4.json").read_text())
    assert "REDUCED" in doc["title"] and len(doc["panels"][0]["impressions"]) == 20


def test_dry_run_prints_every_command_and_runs_nothing(tmp_path):
    root = tmp_path / "root"
    for kind, numbers in reproduce.KINDS.items():
        for n in numbers:
            proc = run_module("experiments.reproduce", f"--{kind}={n}", "--dry_run",
                              f"--workdir={root}", "--budget=reduced")
            assert proc.returncode == 0, proc.stderr[-2000:]
            setup = reproduce.Setup(root=str(root), budget=reproduce.REDUCED)
            runs = reproduce.unique(reproduce.item(kind, n).runs(setup))
            for run in runs:
                assert f"[missing] {run.command}" in proc.stdout
            if not runs:
                assert "no runs needed" in proc.stdout
            assert f"would write {root}/{kind}_{n}.json" in proc.stdout
    assert not root.exists()


@pytest.mark.parametrize("args,flag", [
    (["--table=8"], "--table"), (["--figure=5"], "--figure"), (["--table=0"], "--table"),
    (["--table=1", "--figure=1"], "--table"), (["--figure=2", "--seeds=0,0"], "--seeds"),
    (["--table=6", "--num_impressions_scale=0.5"], "--num_impressions_scale"),
    (["--table=6", "--datasets=svhn"], "--datasets"),
    (["--table=6", "--teacher=mnist=/no/such.keras"], "--teacher")])
def test_bad_requests_are_rejected_before_any_work(tmp_path, args, flag):
    assert_rejected_before_any_work("experiments.reproduce", tmp_path, args, flag)
