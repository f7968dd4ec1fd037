"""experiments.reproduce and zskd_tf.reproduce: one command per table and figure."""
import dataclasses
import json
import os

import numpy as np
import pytest

from conftest import assert_rejected_before_any_work, run_module, tiny_binary_run
from zskd_tf import committed
from zskd_tf import config
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
    _finish(reproduce.zskd_run(setup, "mnist", 0), teacher=99.17, zskd=96.0,
            zskd_augmented=98.0)
    called = []

    def runner(run):
        called.append(run.label)
        _finish(run, teacher=99.17, zskd=95.0, zskd_augmented=None)
        return 0

    reproduce.execute(runs, runner=runner, log=lambda line: None)
    assert sorted(called) == ["mnist/zskd_seed1", "mnist/zskd_uniform_seed0",
                              "mnist/zskd_uniform_seed1"]
    reproduce.execute(runs, runner=runner, log=lambda line: None)
    assert len(called) == 3
    # a workdir holding another command's run is refused before anything runs
    other = dataclasses.replace(setup, preset="paper")
    with pytest.raises(reproduce.Conflict, match="holds a run made with other settings"):
        reproduce.execute(reproduce.item("table", 7).runs(other), runner=runner,
                          log=lambda line: None)
    assert len(called) == 3
    with pytest.raises(reproduce.RunFailed, match="exit status 3"):
        reproduce.execute(reproduce.item("table", 7).runs(dataclasses.replace(
            setup, seeds=(2,))), runner=lambda run: 3, log=lambda line: None)


_RECIPE_FLAGS = ("--beta=1.0,0.1 --init=normal --pixel=clip_end --image_l2=0.01 "
                 "--teacher=pretrained/mnist_lenet5_wd.keras --student_epochs=200")


def _committed_zskd(folder, seed, command, tensorflow="2.18.1", drop=(), parallel_batches=5,
                    **given):
    """A committed MNIST ZSKD run as the binaries wrote it before presets: its command,
    its resolved config (no preset or teacher in it, run-only settings as another machine
    had them, ``drop``: settings it predates), the teacher it used, and the files an
    import copies."""
    values = config.Config(dataset="mnist", preset="reproduce", seed=seed,
                           **given).layered()[0]
    values.update(parallel_batches=parallel_batches, craft_processes=1, eval_every=50)
    for name in ("preset", "teacher", *drop):
        del values[name]
    augmented = 98.0 + seed if values["augment"] else None
    io_utils.write_json(f"{folder}/results.json", {
        "command": f"python -m experiments.mnist_zskd {command} --seed={seed}",
        "config": values, "dataset": "mnist",
        "teacher": {"source": "pretrained/mnist_lenet5_wd.keras", "test_accuracy": 99.17},
        "test_accuracy": {"teacher": 99.17, "zskd": 97.0 + seed, "zskd_augmented": augmented},
        "versions": {"tensorflow": tensorflow, "keras": "3.12.4", "python": "3.11.7"}})
    for name in ("student_history.csv", "run.log", "transfer_set_manifest.json"):
        io_utils.write_text(f"{folder}/{name}", f"{name} of {folder}\n")


def _committed_student_ce(path, epochs, seed=None):
    """A train_teacher record of the MNIST student as under results/real_data: the
    record and its history CSV beside it."""
    seed_flag = "" if seed is None else f" --seed={seed}"
    io_utils.write_json(path, {
        "command": "python -m experiments.train_teacher --dataset=mnist --model=lenet5_half "
                   f"--epochs={epochs}{seed_flag} --workdir=/elsewhere/ce --data_dir=/data",
        "dataset": "mnist", "model": "lenet5_half", "epochs": epochs, "test_accuracy": 98.7,
        "history_csv": "lenet5_half_history.csv", "mean_epoch_seconds": 9.0})
    io_utils.write_text(path.replace(".json", "_history.csv"), f"epoch,loss of {path}\n")


def test_committed_runs_with_the_same_settings_are_imported_not_rerun(tmp_path):
    setup = _setup(tmp_path)
    store = str(tmp_path / "committed")
    # seed 0: the preset's settings as explicit flags of a pre-preset command, elsewhere;
    # it predates craft_precision (the paper's float32 then); and an older copy of it
    _committed_zskd(f"{store}/zskd/seed0", 0, f"{_RECIPE_FLAGS} --finetune_epochs=1000 "
                    "--workdir=/elsewhere/seed0 --eval_every=50", drop=("craft_precision",),
                    finetune_epochs=1000)
    _committed_zskd(f"{store}/zskd/seed0_copy", 0, f"{_RECIPE_FLAGS} --finetune_epochs=1000 "
                    "--workdir=/elsewhere/copy", tensorflow="2.16.1", finetune_epochs=1000)
    # seed 1 fine-tuned for 100 epochs: not the planned 1,000-epoch run
    _committed_zskd(f"{store}/zskd/seed1_ft100", 1, f"{_RECIPE_FLAGS} --finetune_epochs=100 "
                    "--workdir=/elsewhere/seed1", finetune_epochs=100)
    _committed_student_ce(f"{store}/real_data/mnist_lenet5_half.json", 30)  # seed 0, 30 epochs
    _committed_student_ce(f"{store}/real_data/student_seed1.json", 200, seed=1)
    runs = reproduce.item("table", 1).runs(setup)
    found = committed.scan(store)
    assert len(found) == 5
    matches = {m.run.label: m for m in reproduce.matches(runs, found)}
    seed0, seed1 = matches["mnist/zskd_seed0"], matches["mnist/zskd_seed1"]
    assert seed0.source.path == f"{store}/zskd/seed0/results.json"
    assert [c.path for c in seed0.duplicates] == [f"{store}/zskd/seed0_copy/results.json"]
    assert seed1.source is None
    near = committed.near_text(*seed1.near[0])
    assert "finetune_epochs 100 (planned 1000)" in near and "student stage" in near
    assert matches["mnist/student_ce_seed0"].source is None
    assert "epochs 30 (planned 200)" in committed.near_text(
        *matches["mnist/student_ce_seed0"].near[0])
    assert matches["mnist/student_ce_seed1"].source.path == \
        f"{store}/real_data/student_seed1.json"
    plan = "\n".join(reproduce.plan_lines(runs, matches.values(), found))
    assert plan.startswith("6 runs: 0 finished, 2 imported, 0 started (resume), 4 to run")
    assert f"[imported from {store}/zskd/seed0/results.json] {runs[0].command}" in plan
    assert f"[to run] {runs[1].command}" in plan and "time: about" in plan
    assert not os.path.exists(setup.root)  # planning copies nothing
    imported = reproduce.import_matches(matches.values(), log=lambda line: None)
    assert [r.label for r in imported] == ["mnist/zskd_seed0", "mnist/student_ce_seed1"]
    called = []

    def runner(run):
        called.append(run.label)
        assert not os.path.exists(f"{run.workdir}/student_history.csv")  # no stale copy
        _finish(run, **({"value": 98.0} if "zskd" not in run.name else
                        {"teacher": 99.17, "zskd": 96.0, "zskd_augmented": 98.5}))
        return 0

    reproduce.execute(runs, runner=runner, log=lambda line: None)
    assert sorted(called) == ["mnist/student_ce_seed0", "mnist/student_kd_seed0",
                              "mnist/student_kd_seed1", "mnist/zskd_seed1"]
    workdir = runs[0].workdir
    assert open(f"{workdir}/student_history.csv").read().startswith("student_history.csv of")
    assert [r.status() for r in runs[2:4]] == ["finished", "imported"]  # Student-CE 0, 1
    assert "student_seed1" in open(f"{runs[3].workdir}/lenet5_half_history.csv").read()
    # the table names where the imported run came from and keeps its own command
    json_path, md_path = reproduce.write(reproduce.item("table", 1), setup)
    doc, md = json.loads(open(json_path).read()), open(md_path).read()
    zskd = next(c for c in doc["cells"] if c.get("row", "").startswith("ZSKD without"))
    assert zskd["ours"]["values"] == [{"seed": 0, "value": 97.0}, {"seed": 1, "value": 96.0}]
    assert zskd["runs"][0]["status"] == "imported"
    assert zskd["runs"][0]["imported_from"] == f"{store}/zskd/seed0/results.json"
    assert zskd["runs"][0]["command"].endswith("--workdir=/elsewhere/seed0 --eval_every=50 "
                                               "--seed=0")
    assert f"imported from {store}/zskd/seed0/results.json, same settings as the planned " \
           f"`{runs[0].command}`" in md and "--workdir=/elsewhere/seed0" in md
    assert not reproduce.missing(doc)
    # Figure 4 needs the transfer set: the imported run is made, its copies removed first
    figure_runs = reproduce.item("figure", 4).runs(setup)
    assert figure_runs[0].status() == "imported" and not figure_runs[0].done()
    plan = "\n".join(reproduce.plan_lines(figure_runs))
    assert "[to run]" in plan and "transfer set, which is not committed" in plan
    reproduce.execute(figure_runs, runner=runner, log=lambda line: None)
    assert called[-1] == "mnist/zskd_seed0" and figure_runs[0].status() == "finished"


def test_an_imported_run_whose_own_workdir_is_on_this_machine_lends_figure_4_its_transfer_set(
        tmp_path):
    setup = _setup(tmp_path, seeds=(0,))
    store, original = str(tmp_path / "committed"), str(tmp_path / "elsewhere" / "seed0")
    _committed_zskd(f"{store}/zskd/seed0", 0, f"{_RECIPE_FLAGS} --finetune_epochs=1000 "
                    f"--workdir={original}", finetune_epochs=1000)
    manifest = open(f"{store}/zskd/seed0/transfer_set_manifest.json").read()
    found = committed.scan(store)
    # its own workdir holds another transfer set: Figure 4 cannot use the record
    io_utils.write_text(f"{original}/transfer_set/manifest.json", manifest + "changed\n")
    runs = reproduce.item("figure", 4).runs(setup)
    [m] = reproduce.matches(runs, found)
    assert m.source is None and "nor on this machine" in m.note
    reproduce.import_matches(reproduce.matches(reproduce.item("table", 6).runs(setup), found),
                             log=lambda line: None)  # a table needs the record only
    run = runs[0]
    assert run.status() == "imported" and not run.done()
    assert committed.original_transfer_set(run.workdir) is None
    assert "nor on this machine" in "\n".join(reproduce.plan_lines(runs))
    assert reproduce.link_transfer_sets(runs, log=lambda line: None) == []
    # the committed manifest: planned as linked, then linked, and the run is not remade
    io_utils.write_text(f"{original}/transfer_set/manifest.json", manifest)
    plan = "\n".join(reproduce.plan_lines(runs))
    assert plan.startswith("1 run: 0 finished, 1 imported") and "to be linked" in plan
    reproduce.execute(runs, runner=lambda run: pytest.fail("ran"), log=lambda line: None)
    assert run.done() and os.path.islink(f"{run.workdir}/transfer_set")
    assert os.path.realpath(f"{run.workdir}/transfer_set") == \
        os.path.realpath(f"{original}/transfer_set")
    assert committed.imported(run.workdir)["transfer_set"] == f"{original}/transfer_set"
    # removing the import removes the link, never the original
    committed.remove_import(run.workdir)
    assert not os.path.lexists(f"{run.workdir}/transfer_set")
    assert os.path.isfile(f"{original}/transfer_set/manifest.json")
    # planned afresh, the record with a transfer set on this machine is the one to import
    [m] = reproduce.matches(runs, found)
    assert m.source.path == f"{store}/zskd/seed0/results.json"


def test_of_several_matches_the_one_that_ran_like_the_plan_then_the_newest_is_imported(
        tmp_path):
    run = reproduce.zskd_run(_setup(tmp_path), "mnist", 0, prior="uniform")
    flags = f"{_RECIPE_FLAGS} --prior=uniform --augment=false --workdir=/x"
    for name, tensorflow, parallel in (("a", "2.18.1", 5), ("b", "2.16.1", 10),
                                       ("c", "2.15.0", 10)):
        _committed_zskd(tmp_path / name, 0, flags, tensorflow, parallel_batches=parallel,
                        prior="uniform", augment=False)
    m = committed.match(run, committed.scan(tmp_path))
    assert m.source.path == str(tmp_path / "b" / "results.json")  # crafted 1,000 at once
    assert committed.duplicates_text(m) == (
        f"{tmp_path}/c/results.json, {tmp_path}/a/results.json "
        "(parallel_batches 5 (planned 10))")


def test_a_workdir_is_judged_by_settings_not_command_text(tmp_path):
    setup = _setup(tmp_path)
    run = reproduce.zskd_run(setup, "mnist", 0)

    def holds(command, name="results.json"):
        for old in ("results.json", "config.json"):
            if os.path.exists(f"{run.workdir}/{old}"):
                os.remove(f"{run.workdir}/{old}")
        io_utils.write_json(f"{run.workdir}/{name}", {"command": command})
        return run.conflict()

    # the preset's values given as flags, another workdir, data and monitoring: same run
    assert holds("python -m experiments.mnist_zskd --preset=reproduce --student_epochs=200 "
                 "--finetune_epochs=1000 --init=normal --beta=1.0,0.1 --eval_every=50 "
                 "--craft_processes=1 --workdir=/old/place --data_dir=/data --seed=0") is None
    assert holds("python -m experiments.mnist_zskd --seed=0 --workdir=/x",
                 "config.json") is None  # a started one: resumed
    message = holds("python -m experiments.mnist_zskd --student_epochs=300 --seed=0 "
                    "--workdir=/x")
    assert "holds a run made with other settings (student_epochs 300 (planned 200)" in message
    message = holds("python -m experiments.mnist_zskd --preset=paper --workdir=/x",
                    "config.json")
    assert "teacher mnist_lenet5.keras (planned mnist_lenet5_wd.keras)" in message
    assert "pixel minmax (planned clip_end)" in message
    io_utils.write_json(f"{run.workdir}/results.json", {  # same file name, other teacher
        "command": "python -m experiments.mnist_zskd --workdir=/x",
        "teacher": {"source": "/elsewhere/mnist_lenet5_wd.keras", "test_accuracy": 98.0}})
    assert "teacher test accuracy 98 (planned 99.17)" in run.conflict()
    with pytest.raises(reproduce.Conflict, match="finetune_epochs 100"):
        holds("python -m experiments.mnist_zskd --finetune_epochs=100 --workdir=/x")
        reproduce.execute([run], runner=lambda r: 0 / 0, log=lambda line: None)
    ce = reproduce.student_ce_run(setup, "mnist", 1)
    io_utils.write_json(f"{ce.workdir}/config.json", {
        "command": "python -m experiments.train_teacher --dataset=mnist --model=lenet5_half "
                   "--epochs=200 --teacher_lr=0.001 --seed=1 --workdir=/y"})
    assert ce.conflict() is None
    io_utils.write_json(f"{ce.workdir}/config.json", {
        "command": "python -m experiments.train_teacher --dataset=mnist --model=lenet5_half "
                   "--weight_decay=1e-4 --seed=1 --workdir=/y"})
    assert "weight_decay 0.0001 (planned 0)" in ce.conflict()
    io_utils.write_json(f"{ce.workdir}/config.json", {
        "command": "python -m experiments.train_teacher --dataset=mnist --model=lenet5_half "
                   "--teacher_lr_drops=60,80 --seed=1 --workdir=/y"})
    assert "lr_drops 60,80 (planned none)" in ce.conflict()


def test_import_results_flag_imports_and_builds_without_running(tmp_path):
    store, root = tmp_path / "committed", tmp_path / "root"
    _committed_zskd(store / "uniform", 0, f"{_RECIPE_FLAGS} --prior=uniform --augment=false "
                    "--workdir=/elsewhere/u", prior="uniform", augment=False)
    args = ["--table=7", "--datasets=mnist", "--seeds=0", f"--workdir={root}",
            f"--import_results={store}"]
    proc = run_module("experiments.reproduce", "--dry_run", *args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"[imported from {store}/uniform/results.json] python -m experiments.mnist_zskd " \
           "--preset=reproduce --prior=uniform --noaugment --seed=0" in proc.stdout
    assert "[to run] python -m experiments.mnist_zskd --preset=reproduce --seed=0" in proc.stdout
    assert not root.exists()
    proc = run_module("experiments.reproduce", "--only_existing", *args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "mnist/zskd_uniform_seed0: imported from" in proc.stderr
    doc = json.loads((root / "table_7.json").read_text())
    uniform = next(c for c in doc["cells"] if c["column"] == "uniform prior")
    assert uniform["ours"]["values"] == [{"seed": 0, "value": 97.0}]
    assert reproduce.missing(doc) == ["mnist/zskd_seed0"]


def test_figure_titles_name_the_budget_once(tmp_path):
    for budget in (reproduce.FULL, reproduce.REDUCED):
        doc = reproduce._header(_setup(tmp_path, budget=budget), "figure", 1, "similarity")
        title = reproduce._figure_title(doc)
        assert title.lower().count("budget") == 1, title
        assert ("not comparable" in title) == (budget is reproduce.REDUCED)
    assert "x0.1, 20 distillation" in title


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
                assert f"[to run] {run.command}" in proc.stdout
            if not runs:
                assert "no runs needed" in proc.stdout
            assert f"would write {root}/{kind}_{n}.json" in proc.stdout
    assert not root.exists()


@pytest.mark.parametrize("args,flag", [
    (["--table=8"], "--table"), (["--figure=5"], "--figure"), (["--table=0"], "--table"),
    (["--table=1", "--figure=1"], "--table"), (["--figure=2", "--seeds=0,0"], "--seeds"),
    (["--table=6", "--num_impressions_scale=0.5"], "--num_impressions_scale"),
    (["--table=6", "--datasets=svhn"], "--datasets"),
    (["--table=6", "--teacher=mnist=/no/such.keras"], "--teacher"),
    (["--table=6", "--prior_impressions=cifar10=10000"], "--prior_impressions"),
    (["--table=7", "--prior_impressions=cifar10=ten"], "--prior_impressions")])
def test_bad_requests_are_rejected_before_any_work(tmp_path, args, flag):
    assert_rejected_before_any_work("experiments.reproduce", tmp_path, args, flag)


def test_cifar10_real_data_runs_follow_the_presets_recipe(tmp_path):
    setup = _setup(tmp_path, datasets=("cifar10",))
    ce, kd = reproduce.student_ce_run(setup, "cifar10", 0), reproduce.student_kd_run(
        setup, "cifar10", 0)
    assert ce.argv[3:8] == ("--dataset=cifar10", "--model=alexnet_half", "--teacher_epochs=100",
                            "--teacher_augment=flip_crop", "--weight_decay=0.0001")
    assert "--teacher_lr_drops=60,80" in ce.argv
    assert {"--student_epochs=100", "--student_augment=flip_crop", "--weight_decay=0.0001",
            "--student_lr_drops=60,80"} <= set(kd.argv)
    # a record made by those commands is the same run; one without the drops is not
    for run in (ce, kd):
        io_utils.write_json(f"{run.workdir}/config.json", {"command": " ".join(run.argv)})
        assert run.conflict() is None
        io_utils.write_json(f"{run.workdir}/config.json", {
            "command": " ".join(a for a in run.argv if "lr_drops" not in a)})
        assert "lr_drops none (planned 60,80)" in run.conflict()
    # the reduced budget keeps the recipe with its own epochs; MNIST has none (the paper's)
    reduced = reproduce.student_kd_run(_setup(tmp_path, budget=reproduce.REDUCED), "cifar10", 0)
    assert "--student_epochs=10" in reduced.argv and "--student_augment=flip_crop" in reduced.argv
    assert not [a for a in reduced.argv if "lr_drops" in a]  # 60 and 80 lie beyond 10
    mnist = reproduce.student_ce_run(setup, "mnist", 0)
    assert not [a for a in mnist.argv if "epochs" in a or "augment" in a or "decay" in a]


def test_real_data_time_estimates_use_every_data_set_that_costs_the_same(tmp_path):
    def record(dataset, command, **kw):
        r = {"command": f"python -m experiments.{command} --dataset={dataset}",
             "dataset": dataset, "test_accuracy": 90.0, **kw}
        return committed.Committed(f"/{dataset}/{command}.json", r, committed.of_record(r),
                                   files=(), order=())

    found = [record("mnist", "train_teacher --model=lenet5_half", mean_epoch_seconds=8.0),
             record("mnist", "student_kd", mean_epoch_seconds=12.0, train_images=60000),
             record("cifar10", "train_teacher --model=alexnet_half", mean_epoch_seconds=99.0)]
    ce = committed.train_teacher("fashion_mnist", 0, "lenet5_half", epochs=200)
    assert committed.estimate(ce, found) == (1600.0, "8.0 s/epoch (lenet5_half records)")
    kd = committed.student_kd("fashion_mnist", 0, "t.keras", epochs=100, num_samples=6000)
    seconds, basis = committed.estimate(kd, found)
    assert seconds == pytest.approx(120.0) and "Student-KD records" in basis
    # CIFAR-10 costs otherwise: its own records only, never the MNIST ones
    assert committed.estimate(committed.train_teacher("cifar10", 0, "alexnet_half", 10),
                              found) == (990.0, "99.0 s/epoch (alexnet_half records)")
    assert committed.estimate(committed.train_teacher("cifar10", 0, "lenet5_half"),
                              found)[0] is None


def test_table_7_at_another_size_compares_both_priors_there_and_says_so(tmp_path):
    setup = _setup(tmp_path, datasets=("mnist", "cifar10"), seeds=(0,),
                   prior_sizes=(("cifar10", 10000), ("mnist", 24000)))
    runs = reproduce.TABLE_7[0](setup)
    assert [os.path.basename(r.workdir) for r in runs] == [
        "zskd_uniform_seed0", "zskd_seed0",  # MNIST: 24,000 is its headline size
        "zskd_10000_uniform_seed0", "zskd_10000_seed0"]
    assert all("--num_impressions=10000" in r.argv and "--noaugment" in r.argv
               for r in runs[2:])
    doc = reproduce.TABLE_7[1](setup)
    sources = {(c["dataset"], c["column"]): c["source"] for c in doc["cells"]}
    assert "the paper's number is at 40,000 impressions" in sources["cifar10", "uniform prior"]
    assert "--num_impressions=10000 --noaugment" in sources["cifar10", "class similarity prior"]
    assert "paper's number is at" not in sources["mnist", "uniform prior"]


def test_a_note_on_the_runs_data_stands_beside_the_number(tmp_path):
    from experiments import summarize
    setup = _setup(tmp_path, seeds=(0,))
    run = reproduce.student_ce_run(setup, "cifar10", 0)
    io_utils.write_json(f"{run.workdir}/results.json", {
        "command": run.command, "test_accuracy": 80.5,
        "data": {"name": "cifar10", "test_sha256": "x", "note": "JPEG CIFAR-10"}})
    c = reproduce.cell(setup, 80.04, "Table 3", [run], reproduce._test_accuracy,
                       dataset="cifar10", row="Student-CE")
    assert c["data_note"] == "JPEG CIFAR-10"
    assert reproduce.ours_text(c) == "80.50 (seed 0); JPEG CIFAR-10"
    assert summarize._ours(c) == "80.50 (seed 0, JPEG CIFAR-10)"
