"""scripts/gpu-check between lendings of a GPU machine: its CPU dry run (the same steps
at toy sizes) must pass, and its checks must catch what they are there to catch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.gpu_check import CPU, GPU, ORDER, Scale, check_losses

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow(55)
def test_the_cpu_dry_run_passes_every_step_and_writes_its_figures(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run = subprocess.run(
        [str(ROOT / "scripts" / "gpu-check"), "--cpu", "--out", str(out)],
        env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "HOME": str(tmp_path)},
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    report = json.loads((out / "gpu-check.json").read_text())
    steps = report["steps"]
    assert list(steps) == [*ORDER, "summary"]  # every step, in the order they run
    # On a CPU the OOM step cannot cap device memory and says so; every other step ran.
    assert steps["oom"]["ok"] is None and "CPU" in steps["oom"]["note"]
    assert all(v["ok"] for k, v in steps.items() if k != "oom")
    assert steps["device"]["matmul_tflops"] > 0
    for name in ("throughput-headline", "throughput-eager", "throughput-others"):
        assert steps[name]["rows"] and steps[name]["rows"][0]["items_per_second"] > 0
    assert steps["throughput-headline"]["rows"][0]["compiled"] is True
    assert steps["throughput-eager"]["rows"][0]["compiled"] is False
    assert steps["study"]["trials"] >= 10 and steps["study"]["beta_g"] < 0
    assert 0 < steps["resume"]["resumed_from_step"] < steps["resume"]["steps"]
    assert steps["nccl"]["backend"] == "gloo" and steps["nccl"]["processes"] == 1
    vocab = steps["vocab-eval"]
    assert vocab["vocab"] == 50304 and 0 < vocab["eval_batch"] <= vocab["cap"] < 1024
    text = (out / "gpu-check.txt").read_text()
    assert "== summary: ok" in text and '"event": "start"' in text  # children's logs kept


def test_the_study_check_catches_a_loss_that_does_not_fall() -> None:
    study = {"spec": {"modelSizes": {"values": [8, 32]}}}
    sizes = [100, 200, 400, 800, 1600]
    good = {(d, w): 1.0 / d**0.3 / (1 + w / 64) for d in sizes for w in (8, 32)}
    assert check_losses(good, study) == []
    flat_in_data = good | {(1600, 8): 2.0}
    assert any("width 8" in p for p in check_losses(flat_in_data, study))
    wider_worse = good | {(1600, 32): good[(1600, 8)] * 1.1}
    assert any("width 32" in p for p in check_losses(wider_worse, study))
    nan = good | {(400, 8): float("nan")}
    assert any("nan" in p for p in check_losses(nan, study))
    missing = {k: v for k, v in good.items() if k != (800, 32)}
    assert any("finished trials" in p for p in check_losses(missing, study))


@pytest.mark.parametrize("scale", [GPU, CPU], ids=["gpu", "cpu"])
def test_the_step_limits_fit_the_budget_and_the_wanted_figures_come_first(scale: Scale) -> None:
    """The limits used to add up to 585 s against a 470 s budget (630 against 600 on a
    CPU), so the last steps could be cut short by the ones before them; the run order puts
    the figures a rare lending is for first, the comparison grid last."""
    assert sum(scale.limits.values()) <= scale.budget
    assert list(scale.limits) == list(ORDER)
    first = ("device", "throughput-headline", "study", "vocab-eval")
    assert ORDER[: len(first)] == first and ORDER[-1] == "throughput-others"
