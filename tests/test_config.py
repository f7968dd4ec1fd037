import json

import pytest

from conftest import run_module, tiny_binary_run
from zskd_tf import config
from zskd_tf import presets

RECIPE = {"init": "normal", "pixel": "clip_end", "image_l2": 0.01}


def test_reproduce_is_the_default_preset_and_sets_the_measured_mnist_settings():
    c = config.Config(dataset="mnist").resolved()
    assert c.preset == "reproduce"
    assert (c.init, c.pixel, c.image_l2) == ("normal", "clip_end", 0.01)
    assert (c.student_epochs, c.finetune_epochs) == (200, 1000)
    assert c.teacher == "pretrained/mnist_lenet5_wd.keras"
    # what the preset does not set stays the paper's
    assert (c.craft_lr, c.craft_batch_size, c.craft_iterations) == (3.0, 100, 1500)


def test_paper_preset_is_the_appendix():
    c = config.Config(dataset="mnist", preset="paper").resolved()
    assert (c.init, c.pixel, c.image_l2, c.student_epochs) == ("uniform", "minmax", 0.0, 2000)
    assert c.teacher == "pretrained/mnist_lenet5.keras"
    assert config.Config(dataset="mnist", preset="paper").differences_from_paper() == {}
    six = config.Config(dataset="fashion_mnist", preset="paper", num_impressions=6000)
    assert (six.resolved().craft_lr, six.resolved().student_lr) == (1.0, 1e-4)
    assert six.differences_from_paper() == {}  # the size is the experiment, not a change


def test_a_given_setting_overrides_its_preset_value():
    c = config.Config(dataset="mnist", pixel="minmax", finetune_epochs=100)
    assert (c.resolved().pixel, c.resolved().finetune_epochs) == ("minmax", 100)
    assert c.resolved().init == "normal"
    differences = c.differences_from_paper()
    assert "pixel" not in differences  # given, and equal to the paper's
    assert differences["finetune_epochs"] == {"value": 100, "paper": 200, "source": "given"}
    assert differences["init"] == {"value": "normal", "paper": "uniform", "source": "preset"}


def test_differences_from_paper_name_every_setting_the_preset_changes():
    for dataset in config.DATASETS:
        chosen = presets.values("reproduce", dataset)
        paper_values = config.paper_values(dataset)
        changed = {k for k, v in chosen.items() if paper_values[k] != v}
        assert set(config.Config(dataset=dataset).differences_from_paper()) == changed


def test_resolving_twice_changes_nothing():
    c = config.Config(dataset="fashion_mnist", num_impressions=6000).resolved()
    assert c.resolved() == c


def test_unknown_preset_is_named():
    with pytest.raises(ValueError, match="preset"):
        config.Config(preset="fast").validate()


@pytest.mark.parametrize("field, value", [
    ("craft_lr", float("inf")), ("image_l2", float("inf")), ("temperature", float("nan")),
    ("student_lr", float("inf")), ("num_impressions", 10 ** 12), ("batch_size", 0),
    ("seed", -1), ("augment", "yes"),
])
def test_non_finite_and_out_of_range_settings_are_rejected(field, value):
    with pytest.raises(config.ConfigError, match=field) as e:
        config.Config(**{field: value}).validate()
    assert e.value.field == field


def test_craft_config_obeys_the_same_rules():
    with pytest.raises(config.ConfigError, match="lr .*finite"):
        config.CraftConfig(lr=float("inf"))
    c = config.Config(dataset="mnist").resolved().craft()
    assert (c.lr, c.batch_size, c.pixel, c.init, c.image_l2) == (3.0, 100, "clip_end",
                                                                  "normal", 0.01)


def test_every_setting_but_the_data_set_is_a_flag():
    proc = run_module("experiments.mnist_zskd", "--helpfull")
    for field in config.settings():
        if field.name != "dataset":
            name = config.flag_name(field)
            assert f"--{name}:" in proc.stdout or f"--[no]{name}:" in proc.stdout, name
    assert "[paper: uniform; reproduce: normal]" in " ".join(proc.stdout.split())


def test_binary_records_and_logs_its_preset(tmp_path, tiny_teacher):
    workdir, data_and_teacher = tiny_binary_run(tmp_path, tiny_teacher)
    proc = run_module("experiments.mnist_zskd", f"--workdir={workdir}", *data_and_teacher,
                      "--num_impressions=40", "--craft_iterations=3", "--craft_batch_size=10",
                      "--parallel_batches=2", "--student_epochs=1", "--finetune_epochs=1",
                      "--batch_size=20", "--pixel=minmax", "--craft_processes=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "preset reproduce for mnist" in proc.stderr
    assert "init = normal (paper: uniform; from the preset)" in proc.stderr
    assert "finetune_epochs = 1 (paper: 200; from the flags)" in proc.stderr
    results = json.loads((workdir / "results.json").read_text())
    assert results["preset"] == "reproduce"
    differences = results["differs_from_paper"]
    assert differences["init"]["source"] == "preset"
    assert differences["craft_iterations"] == {"value": 3, "paper": 1500, "source": "given"}
    assert "pixel" not in differences
    assert results["config"]["init"] == "normal" and results["config"]["pixel"] == "minmax"


def test_fine_tuning_batch_is_the_appendix_s_for_cifar10_else_the_distillation_batch():
    assert config.Config(dataset="cifar10").resolved().finetune_batch_size == 5000
    assert config.Config(dataset="mnist").resolved().finetune_batch_size == 512
    assert config.Config(dataset="mnist", batch_size=64).resolved().finetune_batch_size == 64
    assert config.Config(dataset="cifar10", batch_size=64,
                         finetune_batch_size=128).resolved().finetune_batch_size == 128
