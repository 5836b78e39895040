"""Trainer throughput per task and model size, and on a GPU the model FLOPs utilisation.

Usage:
  python benchmarks/trainer_throughput.py            # CPU-sized grid on a CPU, GPU grid on a GPU
  python benchmarks/trainer_throughput.py --grid gpu --peak-tflops 989
  python benchmarks/trainer_throughput.py --grid gpu --processes 8   # DDP over 8 GPUs
  python benchmarks/trainer_throughput.py --grid gpu --compile off --cases 3 --json rows.json
With --processes N the script runs itself under torchrun (N processes, one per GPU; gloo
on a CPU) and trains with the trial's own DDP path; each process keeps the case's batch
(the global batch is N times it: weak scaling), and the table adds items/s per process,
so scaling efficiency = per-process items/s with N over items/s with 1.
Times optimiser steps of the real training loop (the same Trainer a trial runs, with
its bf16 / compile / fused-AdamW choices) after warm-up steps, synchronising the
device around the timed window. MFU = training FLOPs per second / the device's dense
bf16 peak (known H100/H200/A100 values, or --peak-tflops). Goal (issue 6): >= 45% on
an H100 for the largest default char-LM transformer (width 1024, 16 layers, context 1024).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from scalingstudy.spec import TrainingSpec
from scalingstudy_trainer.batches import Runtime
from scalingstudy_trainer.distributed import Collectives
from scalingstudy_trainer.loop import Trainer
from scalingstudy_trainer.tasks import get_task
from scalingstudy_trainer.world import World

#: Dense bf16 tensor-core peaks in TFLOP/s (vendor data sheets, without sparsity).
PEAKS = {
    "H200": 989.4,
    "H100 SXM": 989.4,
    "H100 80GB HBM3": 989.4,
    "H100 PCIe": 756.5,
    "H100": 989.4,
    "A100": 312.0,
    "L40S": 362.1,
    "L4": 121.0,
}


@dataclass(frozen=True)
class Case:
    task: str
    options: dict[str, Any]
    data_size: int
    model_size: int
    batch_size: int


def grid(kind: str) -> list[Case]:
    if kind == "gpu":
        lm = {"context": 1024, "validationBytes": 1 << 20}
        return [
            *(Case("char-lm", lm, 8 << 20, w, 32) for w in (256, 512, 768, 1024)),
            Case("char-lm", {**lm, "model": "lstm"}, 8 << 20, 1024, 32),
            Case("image-classification", {"model": "resnet"}, 1400, 64, 256),
            Case("teacher-student", {}, 1 << 16, 1024, 1024),
        ]
    lm = {"context": 128, "validationBytes": 65536}
    return [
        *(Case("char-lm", lm, 1 << 20, w, 32) for w in (64, 128, 256)),
        Case("char-lm", {**lm, "model": "lstm"}, 1 << 20, 128, 32),
        Case("image-classification", {"model": "mlp"}, 1400, 256, 64),
        Case("image-classification", {"model": "resnet"}, 1400, 16, 64),
        Case("teacher-student", {}, 1 << 14, 256, 64),
    ]


def peak_tflops(device: torch.device, override: float | None) -> float | None:
    if override:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAKS.items() if k in name), None)


def measure(
    case: Case, steps: int, warmup: int, device: torch.device, collectives: Collectives,
    compile_mode: str = "auto",
) -> dict[str, Any]:  # fmt: skip
    task = get_task(case.task)({**case.options, "compile": compile_mode}, 0)
    world = collectives.world.size
    training = TrainingSpec.model_validate(
        {"batchSize": case.batch_size * world, "maxSteps": 10**6}
    )
    runtime = Runtime.choose(task, device)
    trainer = Trainer(task, case.data_size, case.model_size, 0, training, runtime, collectives)

    def run(count: int) -> None:
        for _ in range(count):
            trainer.advance()

    def settle() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        collectives.barrier()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    run(warmup)  # compilation, autotuning, allocator warm-up
    settle()
    started = time.perf_counter()
    run(steps)
    settle()
    seconds = time.perf_counter() - started
    items_per_second = steps * trainer.batch_size / seconds
    flops = task.flops_per_item(trainer.model)
    return {
        "case": case,
        "parameters": trainer.parameters,
        "items_per_second": items_per_second,
        "tokens_per_second": items_per_second * case.options["context"]
        if case.task == "char-lm"
        else None,
        "tflops": None if flops is None else flops * items_per_second / 1e12,
        "runtime": runtime,
        "micro_batch": trainer.micro_batch,
        "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30
        if device.type == "cuda"
        else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", choices=["cpu", "gpu"], default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--peak-tflops", type=float, default=None)
    parser.add_argument("--processes", type=int, default=1, help="DDP processes (torchrun)")
    parser.add_argument(
        "--compile",
        choices=["auto", "on", "off"],
        default="auto",
        help="torch.compile of every case (auto: where it was measured to help)",
    )
    parser.add_argument("--cases", default=None, help="comma-separated case numbers (from 0)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    world = World.from_env()
    if args.processes > 1 and not world.distributed:
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                    f"--nproc-per-node={args.processes}", __file__, *sys.argv[1:]]  # fmt: skip
        return subprocess.run(torchrun, check=False).returncode
    device = world.device()
    collectives = Collectives(world, device)
    if not world.main:  # the other ranks train in step and print nothing
        sys.stdout = Path(os.devnull).open("w")  # noqa: SIM115
    kind = args.grid or ("gpu" if device.type == "cuda" else "cpu")
    steps = args.steps or (50 if device.type == "cuda" else 20)
    warmup = args.warmup or (10 if device.type == "cuda" else 3)
    peak = peak_tflops(device, args.peak_tflops)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"device {name} x {world.size}, torch {torch.__version__}, threads "
        f"{torch.get_num_threads()}, peak {peak or 'n/a'} TFLOP/s per device, {steps} timed "
        f"steps after {warmup}"
    )
    header = (
        f"{'task':22s} {'family':12s} {'size':>5s} {'params':>11s} {'batch':>5s} "
        f"{'items/s':>10s} {'per proc':>10s} {'tokens/s':>11s} {'TFLOP/s':>8s} {'MFU':>6s} "
        f"{'peak GiB':>8s}  runtime"
    )
    print(header)
    print("-" * len(header))
    rows: list[dict[str, Any]] = []
    cases = grid(kind)
    if args.cases:
        cases = [cases[int(i)] for i in args.cases.split(",")]
    for case in cases:
        row = measure(case, steps, warmup, device, collectives, args.compile)
        family = case.options.get("model", "transformer" if case.task == "char-lm" else "mlp")
        tokens = row["tokens_per_second"]
        tflops = row["tflops"]
        mfu = 100 * tflops / (peak * world.size) if peak and tflops else None
        memory = row["peak_memory_gib"]
        rt = row["runtime"]
        print(
            f"{case.task:22s} {family:12s} {case.model_size:5d} {row['parameters']:11,d} "
            f"{case.batch_size * world.size:5d} {row['items_per_second']:10.1f} "
            f"{row['items_per_second'] / world.size:10.1f} "
            f"{'' if tokens is None else f'{tokens:,.0f}':>11s} "
            f"{'' if tflops is None else f'{tflops:.3f}':>8s} "
            f"{'n/a' if mfu is None else f'{mfu:.1f}%':>6s} "
            f"{'' if memory is None else f'{memory:.2f}':>8s}  "
            f"{'bf16' if rt.bf16 else 'fp32'}{' compiled' if rt.compile else ''}"
            f" micro={row['micro_batch']}",
            flush=True,
        )
        rows.append({
            "task": case.task, "family": family, "model_size": case.model_size,
            "parameters": row["parameters"], "batch": case.batch_size * world.size,
            "items_per_second": row["items_per_second"], "tflops": tflops, "mfu_percent": mfu,
            "peak_memory_gib": memory, "bf16": rt.bf16, "compiled": rt.compile,
            "micro_batch": row["micro_batch"],
        })  # fmt: skip
        if args.json and world.main:  # after every row: a later case may not finish
            args.json.write_text(json.dumps({"device": name, "peak_tflops": peak, "rows": rows}))
    collectives.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
