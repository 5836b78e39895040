"""The GPU path in one call (issue 29): what `scripts/gpu-check` runs.

A GPU machine is lent rarely and briefly, so every figure is written the moment it is
measured (``gpu-check.txt`` and ``gpu-check.json`` under ``--out``, default ``$OUT``)
and every step is a child process with its own time limit: a step that hangs or fails
costs its own figures, never the others'. ``--cpu`` runs the same steps at toy sizes so
the suite keeps the script working between lendings.

Steps, in the order they run (``ORDER``, the most wanted figures first): the device and
its measured bf16 matmul rate; trainer throughput and MFU of the width-1024 char-LM
transformer with ``torch.compile``; a char-LM scaling study through ``scalingstudy run``
(checks: finite, loss falls with data and width); a real tokenizer's vocabulary (50,304
tokens, context 1,024) trained and evaluated within the evaluation batch's memory cap; a
trial stopped by SIGTERM resumes from its checkpoint and ends where an uninterrupted run
of it does; a micro-batch too large for the memory it may use halves itself and ends
where a run that fit ends; one process through the distributed path (NCCL, gloo on a
CPU); the headline throughput without compile; the rest of the throughput grid. The
steps' time limits sum to at most the budget, so none is cut short by those before it.
"""

from __future__ import annotations

import argparse
import array
import csv
import json
import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from scalingstudy import contract

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
#: Relative difference allowed between two runs of one trial that differ only in how a
#: step's sums are ordered (micro-batches, a process group of one): see test_distributed.
SAME_RESULT = 2e-2


@dataclass(frozen=True)
class Scale:
    """The sizes of every step: an H100/H200's, or a few seconds each on a CPU."""

    matmul: int
    throughput: list[str]
    headline: str
    """The benchmark's case index of the width-1024 char-LM transformer (the MFU goal)."""
    others: str
    study: dict[str, Any]
    trial: dict[str, Any]
    """Task, data size, model size and training of the resume / OOM / NCCL trials."""
    memory_fraction: float | None
    """The share of the card the OOM step's capped run may use (None: not exercised)."""
    vocab: dict[str, int] = field(default_factory=dict)
    """The vocabulary step's token trial: vocab, context, tokens (data size), validation
    tokens, model size, batch size, steps."""
    limits: dict[str, float] = field(default_factory=dict)
    """Each step's time limit in seconds, at most ``budget`` together (a step is still cut
    to what is left of the budget, which only a bug in the runner itself could spend)."""
    budget: float = 470
    """All steps together: a lent machine runs one command for at most 10 minutes, and the
    wheels' install and the interpreter's start come before the first step."""


_LM_STUDY = {
    "apiVersion": "scalingstudy.io/v1alpha1",
    "kind": "ScalingStudy",
    "metadata": {"name": "gpu-check"},
}

GPU = Scale(
    matmul=8192,
    throughput=["--grid", "gpu", "--steps", "20", "--warmup", "5"],
    headline="3",
    others="0,1,2,4,5",
    study=_LM_STUDY | {"spec": {
        "task": {"name": "char-lm", "options": {
            "model": "transformer", "context": 256, "validationBytes": 262144,
            "precision": "bf16", "compile": "on"}},
        "dataSizes": {"min": 262144, "max": 4194304, "factor": 2},
        "modelSizes": {"values": [128, 256, 512]},
        "training": {"epochs": 4, "minSteps": 100, "maxSteps": 400, "batchSize": 64,
                     "learningRate": 0.002, "evalEvery": 50,
                     "learningRateScaling": {"rule": "inverse-width", "baseModelSize": 128},
                     "schedule": {"kind": "cosine", "warmupFraction": 0.05}},
        "fit": {"confidence": 0.9, "bootstrap": 200},
        "parallelism": 8}},
    # The mechanics steps (resume, OOM, NCCL) train eagerly: a compile per run would
    # take most of their time limits and prove nothing more.
    trial={"task": {"name": "char-lm", "options": {"model": "transformer", "context": 1024,
                                                   "validationBytes": 262144,
                                                   "compile": "off"}},
           "data_size": 4194304, "model_size": 512,
           "training": {"batchSize": 128, "minSteps": 40, "maxSteps": 40, "evalEvery": 10,
                        "learningRate": 0.001, "earlyStopping": {"patience": 1000}}},
    memory_fraction=0.06,
    # 64 validation sequences of 1,024 tokens: each process used to evaluate all 64 at
    # once (13 GB of fp32 logits) whatever the task's cap (one sequence here).
    vocab={"vocab": 50304, "context": 1024, "tokens": 262144, "validation": 65536,
           "model_size": 256, "batch": 8, "steps": 10},
    # In the order they run (ORDER), summing to the budget: no step starves another.
    limits={"device": 30, "throughput-headline": 105, "study": 130, "vocab-eval": 45,
            "resume": 35, "oom": 40, "nccl": 30, "throughput-eager": 30,
            "throughput-others": 25},
    budget=470,
)  # fmt: skip

#: The order the steps run in, the most wanted figures first, should a lent machine be
#: taken back early: the device, the headline MFU (the goal), the study (the product's
#: answer on a GPU), the real-vocabulary evaluation (issue 41: never run on a GPU yet),
#: the mechanics (resume, out-of-memory, NCCL), then the comparison figures (eager, the
#: rest of the throughput grid).
ORDER = ("device", "throughput-headline", "study", "vocab-eval", "resume", "oom", "nccl",
         "throughput-eager", "throughput-others")  # fmt: skip

CPU = Scale(
    matmul=256,
    throughput=["--grid", "cpu", "--steps", "2", "--warmup", "1"],
    headline="6",
    others="0",
    study=_LM_STUDY | {"spec": {
        "task": {"name": "teacher-student", "options": {"inputDim": 4, "teacherWidth": 8}},
        "dataSizes": {"min": 64, "max": 1024, "factor": 2},
        "modelSizes": {"values": [2, 32]},
        "training": {"epochs": 5, "minSteps": 60, "maxSteps": 100, "batchSize": 32,
                     "learningRate": 0.01, "evalEvery": 20},
        "fit": {"confidence": 0.9, "bootstrap": 50},
        "parallelism": 2}},
    trial={"task": {"name": "teacher-student", "options": {"inputDim": 4, "teacherWidth": 8}},
           "data_size": 512, "model_size": 16,
           "training": {"batchSize": 32, "minSteps": 200, "maxSteps": 200, "evalEvery": 10,
                        "learningRate": 0.003, "earlyStopping": {"patience": 1000}}},
    memory_fraction=None,
    vocab={"vocab": 50304, "context": 8, "tokens": 2048, "validation": 1024,
           "model_size": 16, "batch": 8, "steps": 4},
    limits={"device": 30, "throughput-headline": 60, "study": 150, "vocab-eval": 60,
            "resume": 60, "oom": 50, "nccl": 50, "throughput-eager": 60,
            "throughput-others": 60},
    budget=600,
)  # fmt: skip


class Report:
    """gpu-check.txt (the log, line by line) and gpu-check.json (figures per step), both
    rewritten as soon as anything is known."""

    def __init__(self, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.text = (out / "gpu-check.txt").open("a", encoding="utf-8")
        self.path = out / "gpu-check.json"
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.data: dict[str, Any] = {"started": started, "steps": {}}
        self.plain_loss: float | None = None
        """The mechanics trial's loss, uninterrupted and alone (``plain_loss``)."""

    def say(self, line: str) -> None:
        print(line, flush=True)
        self.text.write(line + "\n")
        self.text.flush()

    def record(self, step: str, ok: bool | None, **figures: Any) -> None:
        """ok None: the step could not be exercised here (said in ``note``)."""
        self.data["steps"][step] = {"ok": ok, **figures}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=str))
        tmp.replace(self.path)
        verdict = {True: "ok", False: "FAILED", None: "not exercised"}[ok]
        self.say(f"== {step}: {verdict} {json.dumps(figures, default=str)}")


@dataclass
class Child:
    returncode: int | None
    """None when the step's time limit stopped it."""
    lines: list[str]
    seconds: float

    def events(self) -> list[dict[str, Any]]:
        """The trainer's JSON-lines log."""
        out = []
        for line in self.lines:
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return out


def run_child(
    report: Report, cmd: list[str], limit: float, env: dict[str, str] | None = None,
    on_line: Callable[[str, subprocess.Popen[str]], None] | None = None,
) -> Child:  # fmt: skip
    """Run ``cmd`` in its own process group, its output copied into the report as it
    comes; the whole group is killed at ``limit`` seconds."""
    started = time.monotonic()
    proc = subprocess.Popen(
        cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    lines: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip("\n")
            lines.append(line)
            report.say(f"   | {line}")
            if on_line is not None:
                on_line(line, proc)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        code: int | None = proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        code = None
        report.say(f"   | (stopped at its limit of {limit:.0f} s)")
    reader.join(timeout=5)
    return Child(code, lines, time.monotonic() - started)


def trial_env(scale: Scale, result: Path, **extra: str) -> dict[str, str]:
    t = scale.trial
    return {
        **os.environ,
        contract.ENV_TASK: json.dumps(t["task"]),
        contract.ENV_TRAINING: json.dumps(t["training"]),
        contract.ENV_DATA_SIZE: str(t["data_size"]),
        contract.ENV_MODEL_SIZE: str(t["model_size"]),
        contract.ENV_SEED: "0",
        contract.ENV_RESULT_FILE: str(result),
        **extra,
    }


def read_result(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data


def close(a: float, b: float) -> bool:
    return math.isfinite(a) and math.isfinite(b) and abs(a - b) <= SAME_RESULT * abs(a)


TRAINER = [PY, "-m", "scalingstudy_trainer"]

# ---------------------------------------------------------------------------- steps


def step_device(report: Report, scale: Scale, out: Path) -> None:
    child = run_child(report, [PY, __file__, "--measure-device", str(scale.matmul)],
                      scale.limits["device"])  # fmt: skip
    figures = next((e for e in child.events() if e.get("event") == "device"), None)
    report.record("device", child.returncode == 0 and figures is not None, **(figures or {}))


def measure_device(n: int) -> None:
    """Child of step_device: versions, the device, and a dense matmul rate (bf16 on a
    GPU: the ceiling MFU is quoted against)."""
    import platform

    import torch

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    dtype = torch.bfloat16 if cuda else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    for _ in range(3):
        a @ b
    sync()
    repeats = 50 if cuda else 5
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync()
    seconds = time.perf_counter() - started
    figures: dict[str, Any] = {
        "event": "device",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": torch.cuda.get_device_name() if cuda else platform.processor() or "cpu",
        "memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
        if cuda
        else None,
        "matmul_n": n,
        "matmul_dtype": str(dtype).removeprefix("torch."),
        "matmul_tflops": float(f"{2 * n**3 * repeats / seconds / 1e12:.4g}"),
        "nccl": ".".join(map(str, torch.cuda.nccl.version())) if cuda else None,  # type: ignore[no-untyped-call]
    }
    print(json.dumps(figures), flush=True)


def step_throughput(report: Report, scale: Scale, out: Path, name: str, cases: str,
                    compile_mode: str) -> None:  # fmt: skip
    rows = out / f"{name}.json"
    cmd = [PY, str(ROOT / "benchmarks" / "trainer_throughput.py"), *scale.throughput,
           "--cases", cases, "--compile", compile_mode, "--json", str(rows)]  # fmt: skip
    child = run_child(report, cmd, scale.limits[name])
    measured = read_result(rows) or {"rows": []}
    finite = all(math.isfinite(r["items_per_second"]) for r in measured["rows"])
    report.record(name, child.returncode == 0 and finite and bool(measured["rows"]),
                  seconds=round(child.seconds, 1), **measured)  # fmt: skip


def step_study(report: Report, scale: Scale, out: Path) -> None:
    folder = out / "study"
    study = folder / "study.yaml"
    folder.mkdir(parents=True, exist_ok=True)
    study.write_text(yaml.safe_dump(scale.study, sort_keys=False))
    cmd = [PY, "-m", "scalingstudy.cli", "run", str(study), "--out", str(folder), "--quiet"]
    child = run_child(report, cmd, scale.limits["study"])
    rows = []
    if (folder / "results.csv").exists():
        with (folder / "results.csv").open() as f:
            rows = [r for r in csv.DictReader(f) if r["loss"]]
    losses = {(int(r["data_size"]), int(r["model_size"])): float(r["loss"]) for r in rows}
    problems = check_losses(losses, scale.study)
    fit = read_result(folder / "fit.json") or {}
    curve = fit.get("learning_curve") or {}
    report.record(
        "study", child.returncode == 0 and not problems, seconds=round(child.seconds, 1),
        trials=len(losses), problems=problems, beta_g=curve.get("beta"),
        beta_g_interval=curve.get("beta_interval"), form=curve.get("form"),
        beta_p=(fit.get("model_size") or {}).get("beta"), warnings=fit.get("warnings"),
        steps_per_second=_trial_speed(folder),
    )  # fmt: skip


def check_losses(losses: dict[tuple[int, int], float], study: dict[str, Any]) -> list[str]:
    """Every trial finished with a finite loss; the loss falls with data (every width)
    and with width (at the largest data size)."""
    widths = study["spec"]["modelSizes"]["values"]
    data = sorted({d for d, _ in losses})
    problems = [f"{k}: loss {v}" for k, v in losses.items() if not math.isfinite(v)]
    if len(data) < 5 or len(losses) < len(data) * len(widths):
        problems.append(f"{len(losses)} finished trials over {len(data)} data sizes and "
                        f"{len(widths)} widths (wanted >= 5 data sizes, every width)")  # fmt: skip
    for w in widths:
        if (
            (data[0], w) in losses
            and (data[-1], w) in losses
            and not (losses[(data[-1], w)] < losses[(data[0], w)])
        ):
            problems.append(f"width {w}: loss did not fall from m={data[0]} to m={data[-1]}")
    if data and all((data[-1], w) in losses for w in (widths[0], widths[-1])):
        small, large = losses[(data[-1], widths[0])], losses[(data[-1], widths[-1])]
        if not large < small:
            problems.append(f"m={data[-1]}: width {widths[-1]} ({large:.4g}) not below "
                            f"width {widths[0]} ({small:.4g})")  # fmt: skip
    return problems


def _trial_speed(folder: Path) -> dict[str, float]:
    """Median optimiser steps per second of the study's trials, per width."""
    speeds: dict[str, list[float]] = {}
    if (folder / "results.csv").exists():
        with (folder / "results.csv").open() as f:
            for r in csv.DictReader(f):
                if r["steps"] and r["duration_seconds"]:
                    rate = float(r["steps"]) / max(float(r["duration_seconds"]), 1e-9)
                    speeds.setdefault(r["model_size"], []).append(rate)
    return {k: round(sorted(v)[len(v) // 2], 1) for k, v in speeds.items()}


def step_resume(report: Report, scale: Scale, out: Path) -> None:
    folder = out / "resume"
    folder.mkdir(parents=True, exist_ok=True)
    result = folder / "result.json"
    env = trial_env(scale, result, **{contract.ENV_CHECKPOINT_DIR: str(folder / "ckpt")})
    total = scale.trial["training"]["maxSteps"]
    stop_at = total // 2
    sent: list[int] = []

    def stop_midway(line: str, proc: subprocess.Popen[str]) -> None:
        if not sent and line.startswith("{") and json.loads(line).get("step", 0) >= stop_at:
            sent.append(json.loads(line)["step"])
            proc.send_signal(signal.SIGTERM)

    first = run_child(report, TRAINER, scale.limits["resume"] / 2, env, stop_midway)
    second = run_child(report, TRAINER, scale.limits["resume"] / 2, env)
    finished = read_result(result) or {}
    resumed = finished.get("resumed_from_step")
    loss = finished.get(contract.METRIC, math.nan)
    uninterrupted = plain_loss(report, scale, out, scale.limits["resume"] / 2)
    ok = (first.returncode == contract.EXIT_PREEMPTED and second.returncode == 0
          and bool(resumed) and finished.get("steps") == total
          and close(uninterrupted, loss))  # fmt: skip
    report.record("resume", ok, sigterm_at_step=sent[0] if sent else None,
                  first_exit=first.returncode, resumed_from_step=resumed,
                  steps=finished.get("steps"), loss=loss,
                  loss_uninterrupted=uninterrupted)  # fmt: skip


def plain_loss(report: Report, scale: Scale, out: Path, limit: float) -> float:
    """The loss of the mechanics trial run uninterrupted and alone (NaN if it failed),
    trained once by the first step that compares against it (resume, OOM, NCCL)."""
    if report.plain_loss is None:
        result = out / "plain" / "result.json"
        result.parent.mkdir(parents=True, exist_ok=True)
        child = run_child(report, TRAINER, limit, trial_env(scale, result))
        loss = (read_result(result) or {}).get(contract.METRIC, math.nan)
        report.plain_loss = loss if child.returncode == 0 else math.nan
    return report.plain_loss


def step_oom(report: Report, scale: Scale, out: Path) -> None:
    folder = out / "oom"
    folder.mkdir(parents=True, exist_ok=True)
    la = plain_loss(report, scale, out, scale.limits["oom"] / 2)
    fraction = scale.memory_fraction
    capped_cmd = [PY, __file__, "--capped-trainer", str(fraction or 0)]
    capped = run_child(report, capped_cmd, scale.limits["oom"] / 2,
                       trial_env(scale, folder / "b.json"))  # fmt: skip
    micro = [e["micro_batch"] for e in capped.events() if "micro_batch" in e]
    batch = scale.trial["training"]["batchSize"]
    lb = (read_result(folder / "b.json") or {}).get(contract.METRIC, math.nan)
    same = capped.returncode == 0 and close(la, lb)
    figures = {"batch": batch, "micro_batch": micro[-1] if micro else None, "loss_fits": la,
               "loss_capped": lb, "memory_fraction": fraction}  # fmt: skip
    if fraction is None:
        report.record("oom", None if same else False, note="no device memory to cap on a CPU: "
                      "both runs fit; only the comparison ran", **figures)  # fmt: skip
        return
    halved = bool(micro) and micro[-1] < batch
    report.record("oom", same and halved, **figures)


def capped_trainer(fraction: float) -> int:
    """Child of step_oom: the trainer, allowed ``fraction`` of the card's memory."""
    import torch

    if fraction and torch.cuda.is_available():
        torch.cuda.set_per_process_memory_fraction(fraction)
    from scalingstudy_trainer.main import main

    return main()


def step_nccl(report: Report, scale: Scale, out: Path) -> None:
    folder = out / "nccl"
    folder.mkdir(parents=True, exist_ok=True)
    la = plain_loss(report, scale, out, scale.limits["nccl"] / 2)
    torchrun = [PY, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=1",
                "-m", "scalingstudy_trainer"]  # fmt: skip
    group = run_child(report, torchrun, scale.limits["nccl"] / 2,
                      trial_env(scale, folder / "group.json"))  # fmt: skip
    b = read_result(folder / "group.json") or {}
    lb = b.get(contract.METRIC, math.nan)
    backend = next((e.get("backend") for e in group.events() if e.get("event") == "start"), None)
    report.record("nccl", group.returncode == 0 and close(la, lb),
                  loss_plain=la, loss_process_group=lb, processes=b.get("processes"),
                  backend=backend)  # fmt: skip


#: The char-LM task's memory cap of an evaluation batch's logits (and their float copy):
#: tasks/char_lm.py's eval_items_limit.
LOGITS_BYTES = 512 << 20


def step_vocab(report: Report, scale: Scale, out: Path) -> None:
    """A token trial of a real tokenizer's vocabulary: it trains and evaluates within the
    evaluation batch's cap (every logged evaluation batch at most the cap, which is one
    sequence at 50,304 x 1,024), and its loss is finite and near ln(vocab) (the ids are
    random: nothing to learn beyond their frequencies)."""
    v = scale.vocab
    folder = out / "vocab"
    folder.mkdir(parents=True, exist_ok=True)
    tokens = folder / "tokens.bin"
    rng = random.Random(0)
    ids = array.array(
        "H", (rng.randrange(v["vocab"]) for _ in range(v["tokens"] + 2 * v["validation"]))
    )
    tokens.write_bytes(ids.tobytes())
    options = {"tokens": str(tokens), "tokenDtype": "uint16", "vocabSize": v["vocab"],
               "context": v["context"], "validationBytes": v["validation"],
               "model": "transformer", "compile": "off"}  # fmt: skip
    training = {"batchSize": v["batch"], "minSteps": v["steps"], "maxSteps": v["steps"],
                "evalEvery": v["steps"], "learningRate": 0.001}  # fmt: skip
    env = trial_env(scale, folder / "result.json",
                    **{contract.ENV_TASK: json.dumps({"name": "char-lm", "options": options}),
                       contract.ENV_TRAINING: json.dumps(training),
                       contract.ENV_DATA_SIZE: str(v["tokens"]),
                       contract.ENV_MODEL_SIZE: str(v["model_size"])})  # fmt: skip
    child = run_child(report, TRAINER, scale.limits["vocab-eval"], env)
    cap = max(LOGITS_BYTES // (v["context"] * v["vocab"] * 8), 1)
    batches = [e["eval_batch"] for e in child.events() if e.get("event") == "eval"]
    loss = (read_result(folder / "result.json") or {}).get(contract.METRIC, math.nan)
    ok = (child.returncode == 0 and bool(batches) and max(batches) <= cap
          and math.isfinite(loss) and loss < math.log(v["vocab"]) + 1.0)  # fmt: skip
    report.record("vocab-eval", ok, vocab=v["vocab"], context=v["context"], cap=cap,
                  eval_batch=max(batches) if batches else None,
                  validation_sequences=v["validation"] // v["context"], loss=loss,
                  seconds=round(child.seconds, 1))  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="toy sizes, no GPU needed")
    parser.add_argument("--out", type=Path, default=None, help="default: $OUT or runs/gpu-check")
    parser.add_argument("--only", default=None, help="comma-separated steps (default: all)")
    parser.add_argument("--measure-device", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--capped-trainer", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_device is not None:
        measure_device(args.measure_device)
        return 0
    if args.capped_trainer is not None:
        return capped_trainer(args.capped_trainer)
    out = args.out or Path(os.environ.get("OUT") or ROOT / "runs" / "gpu-check")
    scale = CPU if args.cpu else GPU
    report = Report(out)
    report.data["scale"] = "cpu" if args.cpu else "gpu"
    steps: dict[str, Callable[[], None]] = {
        "device": lambda: step_device(report, scale, out),
        "throughput-headline": lambda: step_throughput(
            report, scale, out, "throughput-headline", scale.headline, "on"),
        "throughput-eager": lambda: step_throughput(
            report, scale, out, "throughput-eager", scale.headline, "off"),
        "study": lambda: step_study(report, scale, out),
        "resume": lambda: step_resume(report, scale, out),
        "oom": lambda: step_oom(report, scale, out),
        "nccl": lambda: step_nccl(report, scale, out),
        "vocab-eval": lambda: step_vocab(report, scale, out),
        "throughput-others": lambda: step_throughput(
            report, scale, out, "throughput-others", scale.others, "auto"),
    }  # fmt: skip
    chosen = args.only.split(",") if args.only else list(ORDER)
    started = time.monotonic()
    for name in chosen:
        left = scale.budget - (time.monotonic() - started)
        if left < 10:
            report.record(name, None, note=f"not run: the {scale.budget:.0f} s budget is spent")
            continue
        scale.limits[name] = min(scale.limits[name], left)
        report.say(f"== {name} (limit {scale.limits[name]:.0f} s) at "
                   f"{time.monotonic() - started:.0f} s")  # fmt: skip
        try:
            steps[name]()
        except Exception as exc:  # one step's bug must not cost the others' figures
            report.record(name, False, error=f"{type(exc).__name__}: {exc}")
    report.data["seconds"] = round(time.monotonic() - started, 1)
    results = {k: v["ok"] for k, v in report.data["steps"].items()}
    report.record("summary", all(ok is not False for ok in results.values()), steps=results)
    return 0 if report.data["steps"]["summary"]["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
