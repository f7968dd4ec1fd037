import json
import os
import subprocess
import sys

import pytest

from benchmarks import common
from zskd_tf import models

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_lenet5_flops_match_hand_count():
    macs = 28 * 28 * 6 * 25 + 10 * 10 * 16 * 150 + 400 * 120 + 120 * 84 + 84 * 10
    model = models.lenet5()
    assert common.forward_macs(model) == macs
    assert common.flops_per_image_step(model) == 2 * 2 * macs


def test_matmul_gflops_is_positive():
    assert common.matmul_gflops(n=64, seconds=0.03, repeats=2) > 0


def test_print_table_and_write_json(tmp_path, capsys):
    common.print_table([("a", 1234.5, None), ("bb", 0.5, 3)], ("name", "rate", "n"))
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["name", "rate", "n"] and "1,234" in out[2] and "-" in out[2]
    common.write_json(str(tmp_path / "sub" / "x.json"), {"k": [1, 2]})
    assert json.loads((tmp_path / "sub" / "x.json").read_text()) == {"k": [1, 2]}


def test_process_rows_use_the_pipelines_images_per_process():
    from benchmarks import craft_throughput
    alone = [{"parallel": 1, "image_steps_per_s": 5.0}, {"parallel": 5, "image_steps_per_s": 9.0}]
    assert craft_throughput.process_parallel("alexnet", alone) == 1
    assert craft_throughput.process_parallel("lenet5", alone) == 10
    assert craft_throughput.process_parallel("resnet", alone) == 5
    assert craft_throughput.process_parallel("alexnet", alone, given=3) == 3


def test_craft_throughput_quick_end_to_end(tmp_path):
    out = tmp_path / "craft.json"
    # as if torch were not installed: the PyTorch peer row is skipped with a note
    without_torch = ("import runpy, sys; sys.modules['torch'] = None; "
                     "runpy.run_module('benchmarks.craft_throughput', run_name='__main__')")
    proc = subprocess.run(
        [sys.executable, "-c", without_torch, "--quick", "--models=lenet5",
         "--parallel=1", "--process_parallel=1", "--steps=1", "--eager_steps=1",
         "--matmul_gflops=50", f"--out={out}"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert {"benchmark", "machine", "settings", "results"} <= set(result)
    assert {"cpu_count", "tensorflow", "matmul_gflops"} <= set(result["machine"])
    assert result["machine"]["matmul_gflops"] == pytest.approx(50)
    assert [(r["method"], r["parallel"]) for r in result["results"]] == [
        ("eager", 1), ("crafter", 1), ("crafter x2 processes", 1), ("crafter bfloat16", 1),
        ("crafter x2 processes bfloat16", 1), ("crafter-keras", 1)]
    assert [r.get("rewritten") for r in result["results"]] == [
        None, True, None, True, None, False]
    assert [r.get("precision") for r in result["results"]] == [
        None, "float32", "float32", "bfloat16", "bfloat16", "float32"]
    pair = result["results"][2]
    assert pair["images"] == 200 and len(pair["per_process_image_steps_per_s"]) == 2
    for r in result["results"]:
        assert {"model", "images", "image_steps_per_s", "gflops", "fraction_of_matmul",
                "peak_rss_mb", "speedup_over_eager", "flops_per_image_step"} <= set(r)
        assert r["image_steps_per_s"] > 0 and r["peak_rss_mb"] > 0
    assert "img-steps/s" in proc.stdout
    assert result["settings"]["torch"] is None and len(result["code"]["commit"]) == 40
    assert result["notes"] == ["no PyTorch peer row for lenet5: import torch failed (not a "
                               "dependency of this project)"]
    assert result["notes"][0] in proc.stdout


def test_torch_peer_row_matches_keras_and_reports(tmp_path):
    pytest.importorskip("torch")
    row = common.run_isolated("benchmarks.craft_throughput:torch_rate", model="lenet5",
                              steps=1)
    assert row["method"] == "pytorch eager" and row["images"] == 100
    assert row["max_logit_difference"] <= 1e-4 and row["image_steps_per_s"] > 0
    assert row["torch_threads"] == os.cpu_count()


def test_pipeline_quick_times_every_stage(tmp_path):
    out = tmp_path / "pipeline.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.pipeline", "--quick", "--num_impressions=100",
         "--iterations=2", "--test_images=100", f"--out={out}"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["settings"]["craft_processes"] == 1 and len(result["code"]["commit"]) == 40
    (run,) = result["results"]
    assert run["budget"]["num_impressions"] == 100 and run["config"]["craft_processes"] == 1
    stages = run["stages"]
    assert [s["stage"] for s in stages] == [
        "similarity", "target sampling", "crafting", "loading the transfer set",
        "distillation", "distillation, stored soft labels", "fine-tuning", "evaluation"]
    assert [s["in_total"] for s in stages] == [True] * 5 + [False] + [True] * 2
    assert sum(s["share"] for s in stages if s["in_total"]) == pytest.approx(1.0)
    assert all(s["seconds"] > 0 for s in stages)
    assert all(s["rate"] > 0 for s in stages if s["rate"] is not None)
    training = [s for s in stages if "epochs" in s]
    assert [len(s["epoch_wall_seconds"]) for s in training] == [2, 2, 2]
    extrapolated = run["extrapolation"]
    assert extrapolated["budget"]["num_impressions"] == 24000
    assert sum(s["share"] for s in extrapolated["stages"] if s["in_total"]) == \
        pytest.approx(1.0)
    assert "% of total" in proc.stdout and "24,000 x 1,500" in proc.stdout



def test_distill_throughput_quick_end_to_end(tmp_path):
    out = tmp_path / "distill.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.distill_throughput", "--quick", "--steps=1",
         "--num_images=512", f"--out={out}"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())["results"]
    assert [(r["teacher"], r["augment"], r["soft_labels"]) for r in results] == [
        ("lenet5", False, "teacher run per batch"), ("lenet5", False, "given"),
        ("lenet5", True, "teacher run per batch")]
    assert results[0]["speedup_over_teacher_run"] == 1.0
    assert all(r["images_per_s"] > 0 and r["peak_rss_mb"] > 0 for r in results)


def test_craft_processes_ab_reports_rounds_and_fractions(tmp_path):
    out = tmp_path / "ab.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.craft_processes_ab", "--model=lenet5",
         "--parallel=1", "--steps=2", "--rounds=1", "--precision=bfloat16",
         "--matmul_gflops=50", f"--out={out}"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["settings"]["precision"] == "bfloat16" and len(result["rounds"]) == 1
    row = result["rounds"][0]
    assert row["one_process"] > 0 and row["split"] > 0 and len(row["split_per_process"]) == 2
    fraction = result["mean_fraction_of_matmul"]["one_process"]
    assert fraction == pytest.approx(row["one_process"] * result["flops_per_image_step"] / 50e9)


def test_conv_input_grad_variants_agree_and_report(tmp_path):
    out = tmp_path / "grad.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.conv_input_grad", "--images=4", "--calls=1",
         f"--out={out}"], cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]  # the variants are checked equal inside
    rows = json.loads(out.read_text())["results"]
    assert len(rows) == 8 and all(r["us_per_image"] > 0 for r in rows)
    assert "backprop_input" in proc.stdout


def test_craft_profile_groups_a_traced_step_by_layer(tmp_path):
    out = tmp_path / "profile.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.craft_profile", "--quick", "--precisions=bfloat16",
         "--matmul_gflops=50", "--bf16_matmul_gflops=100", f"--out={out}"],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["machine"]["bf16_matmul_gflops"] == pytest.approx(100)
    (run,) = result["results"]
    assert run["precision"] == "bfloat16" and run["images"] == 4 and run["folded_kernels"] == "xla"
    groups = {(g["group"], g["direction"]) for g in run["summary"]["groups"]}
    for layer in ("conv1", "lrn2", "pool3", "conv5", "lrn6", "conv13", "fc16"):
        assert {(layer, "forward"), (layer, "gradient")} <= groups, layer
    assert ("adam", "forward") in groups and ("loss", "forward") in groups
    conv5 = next(g for g in run["summary"]["groups"] if g["group"] == "conv5")
    assert conv5["flops"] == 2 * 4 * 15 * 15 * 5 * 5 * 48 * 128 and conv5["gflops"] > 0
    assert conv5["fraction_of_bf16_matmul"] == pytest.approx(conv5["gflops"] / 100)
    assert run["onednn_primitives"] is not None  # empty where TensorFlow runs without oneDNN
    if any(p["kind"] == "convolution" for p in run["onednn_primitives"]):
        assert conv5["onednn_impl"]  # e.g. brg_conv_fwd:avx10_1_512_amx
    shares = run["summary"]["categories"]
    assert sum(c["share"] for c in shares.values()) == pytest.approx(1.0)
    assert run["image_steps_per_s"] > 0 and "% bf16 mm" in proc.stdout
