"""Trials of several processes (distributed data parallel, gloo on the CPU): the same
trial as one process, split over ranks; resumable after SIGTERM like one process; the
launcher's exit statuses and the rank arithmetic."""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from scalingstudy.contract import EXIT_CONFIG_ERROR, EXIT_PREEMPTED
from scalingstudy.spec import TrainingSpec
from scalingstudy_trainer.batches import Runtime
from scalingstudy_trainer.checkpoint import Checkpoints, Preempted
from scalingstudy_trainer.distributed import Collectives
from scalingstudy_trainer.errors import ConfigError
from scalingstudy_trainer.launch import exit_status, needs_launcher, read_launch
from scalingstudy_trainer.loop import Trainer, train
from scalingstudy_trainer.norms import synchronise_batch_norm
from scalingstudy_trainer.tasks.image_classification import ImageClassification
from scalingstudy_trainer.tasks.teacher_student import TeacherStudent
from scalingstudy_trainer.world import World
from tests.training import TRAINER, DivergingTeacherStudent, run_trainer

#: Relative difference allowed between the final losses of 1 and 2 processes: the same
#: batches and updates, only the order of the floating-point sums differs, and 120 Adam
#: steps of a transformer amplify that (1.2e-3 seen in CI on char-lm). Other batches (seed
#: 3 instead of 2) move the loss by 3% (char-lm) and 5.5% (teacher-student).
TOLERANCE = 4e-3
TRAINING = {"evalEvery": 20, "batchSize": 32, "learningRate": 3e-3,
            "earlyStopping": {"patience": 1000}}  # fmt: skip
#: The SIGTERM test's trial length: the signal goes out at step 200, and under a loaded
#: 2-core machine the ranks still train over 100 steps a second, so it lands with seconds
#: to spare (a signal after the end would fail the test on the exit status, not pass it).
STEPS = 1500


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(5)
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text(" ".join(rng.choice(["ab", "cd", "efg", "h", "ij"], size=12000)))
    return path


def _env(
    tmp_path: Path, task: dict[str, Any], processes: int, result: str, steps: int = 120,
    checkpoint_dir: str = "", **extra: str,
) -> dict[str, str]:  # fmt: skip
    return {
        **os.environ,
        "SCALINGSTUDY_TASK": json.dumps(task),
        "SCALINGSTUDY_TRAINING": json.dumps(TRAINING | {"minSteps": steps, "maxSteps": steps}),
        "SCALINGSTUDY_DATA_SIZE": "2048" if task["name"] == "char-lm" else "512",
        "SCALINGSTUDY_MODEL_SIZE": "16",
        "SCALINGSTUDY_SEED": "2",
        "SCALINGSTUDY_RESULT_FILE": str(tmp_path / result),
        "SCALINGSTUDY_CHECKPOINT_DIR": checkpoint_dir,
        "SCALINGSTUDY_PROCESSES_PER_POD": str(processes),
        "OMP_NUM_THREADS": "2",
        **extra,
    }


def _tasks(corpus: Path) -> dict[str, dict[str, Any]]:
    lm = {"corpus": str(corpus), "context": 16, "validationBytes": 2048, "model": "transformer"}
    return {
        "teacher-student": {"name": "teacher-student",
                            "options": {"inputDim": 8, "teacherWidth": 16}},
        "char-lm": {"name": "char-lm", "options": lm},
    }  # fmt: skip


def _result(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())  # type: ignore[no-any-return]


@pytest.mark.slow(10)
@pytest.mark.parametrize("name", ["teacher-student", "char-lm"])
def test_two_processes_reach_the_loss_of_one(tmp_path: Path, corpus: Path, name: str) -> None:
    task = _tasks(corpus)[name]
    one = run_trainer(_env(tmp_path, task, 1, "one.json"))
    two = run_trainer(_env(tmp_path, task, 2, "two.json"))
    assert one.returncode == 0, one.stderr
    assert two.returncode == 0, two.stderr[-2000:]
    a, b = _result(tmp_path / "one.json"), _result(tmp_path / "two.json")
    assert (a["processes"], b["processes"]) == (1, 2)
    assert a["steps"] == b["steps"] == 120 and a["samples_seen"] == b["samples_seen"]
    assert b["validation_loss"] == pytest.approx(a["validation_loss"], rel=TOLERANCE)
    assert b["train_loss"] == pytest.approx(a["train_loss"], rel=TOLERANCE)
    # Rank 0 alone reports: one result line in the log, whatever the world size.
    events = [json.loads(line)["event"] for line in two.stdout.splitlines()
              if line.startswith("{")]  # fmt: skip
    assert events.count("result") == 1 and events.count("start") == 1


@pytest.mark.slow(20)
def test_processes_forked_or_fresh_train_the_same(tmp_path: Path, corpus: Path) -> None:
    """Without a GPU driver the launcher forks its processes; with one (stood in for
    here: ``can_fork`` answers no) each is a fresh ``python -m scalingstudy_trainer``."""
    task = _tasks(corpus)["teacher-student"]
    forked = run_trainer(_env(tmp_path, task, 2, "forked.json"))
    as_on_a_gpu = ("import sys, scalingstudy_trainer.launch as launch, scalingstudy_trainer.main"
                   " as main; launch.can_fork = lambda: False; sys.exit(main.main())")  # fmt: skip
    fresh = subprocess.run(
        [TRAINER[0], "-c", as_on_a_gpu], env=_env(tmp_path, task, 2, "fresh.json"),
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert forked.returncode == 0 and fresh.returncode == 0, fresh.stderr[-2000:]
    a, b = _result(tmp_path / "forked.json"), _result(tmp_path / "fresh.json")
    assert a["processes"] == b["processes"] == 2
    assert b["validation_loss"] == pytest.approx(a["validation_loss"], rel=1e-6)


@pytest.mark.slow(25)
def test_sigterm_stops_every_rank_and_the_retry_ends_where_an_uninterrupted_run_does(
    tmp_path: Path, corpus: Path
) -> None:
    task = _tasks(corpus)["teacher-student"]
    ckpt = str(tmp_path / "ckpt")
    env = _env(tmp_path, task, 2, "preempted.json", steps=STEPS, checkpoint_dir=ckpt)
    proc = subprocess.Popen(TRAINER, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    assert proc.stdout is not None
    for line in proc.stdout:  # well into training, on both ranks
        if line.startswith("{") and json.loads(line).get("step", 0) >= 200:
            break
    proc.send_signal(signal.SIGTERM)  # to the launcher, as a kubelet signals a pod
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_PREEMPTED, err[-2000:]
    saved = [json.loads(line) for line in out.splitlines() if '"preempted"' in line]
    assert len(saved) == 1 and saved[0]["checkpoint_saved"] and saved[0]["step"] >= 200
    assert not (tmp_path / "preempted.json").exists()

    retry = run_trainer(_env(tmp_path, task, 2, "retry.json", steps=STEPS, checkpoint_dir=ckpt))
    whole = run_trainer(_env(tmp_path, task, 2, "whole.json", steps=STEPS))
    assert retry.returncode == 0 and whole.returncode == 0, retry.stderr[-2000:]
    resumed, uninterrupted = _result(tmp_path / "retry.json"), _result(tmp_path / "whole.json")
    assert resumed["resumed_from_step"] == saved[0]["step"]
    assert resumed["steps"] == uninterrupted["steps"] == STEPS
    assert resumed["validation_loss"] == uninterrupted["validation_loss"]


def test_a_batch_smaller_than_the_world_is_a_configuration_error(
    tmp_path: Path, corpus: Path
) -> None:
    env = _env(tmp_path, _tasks(corpus)["teacher-student"], 2, "r.json")
    env["SCALINGSTUDY_TRAINING"] = json.dumps({"batchSize": 1, "minSteps": 5, "maxSteps": 5})
    done = run_trainer(env)
    assert done.returncode == EXIT_CONFIG_ERROR
    last = done.stderr.strip().splitlines()[-1]
    assert "batch of 1 items cannot be shared by 2 processes" in last


def test_ranks_share_a_batch_in_contiguous_parts_that_cover_it() -> None:
    for size in (1, 2, 3, 8):
        for items in (size, 7, 32, 33):
            parts = [World(r, size, r).share(items) for r in range(size)]
            assert parts[0][0] == 0 and parts[-1][1] == items
            assert all(a[1] == b[0] for a, b in itertools.pairwise(parts))
            assert max(e - s for s, e in parts) - min(e - s for s, e in parts) <= 1


def test_the_pod_exit_status_keeps_the_trainer_contract() -> None:
    assert exit_status([EXIT_PREEMPTED, EXIT_PREEMPTED]) == EXIT_PREEMPTED
    assert exit_status([EXIT_PREEMPTED, -signal.SIGTERM]) == EXIT_PREEMPTED
    assert exit_status([1, EXIT_CONFIG_ERROR]) == EXIT_CONFIG_ERROR
    assert exit_status([EXIT_PREEMPTED, 3]) == 3
    assert exit_status([-signal.SIGKILL]) == 137


def test_launch_settings_are_read_and_checked() -> None:
    env = {"SCALINGSTUDY_NODES": "2", "SCALINGSTUDY_NODE_RANK": "1",
           "SCALINGSTUDY_PROCESSES_PER_POD": "4", "SCALINGSTUDY_MASTER_ADDR": "t-0.t",
           "SCALINGSTUDY_TRIAL": "t"}  # fmt: skip
    launch = read_launch(env)
    assert (launch.processes, launch.node_rank, launch.master_port) == (8, 1, 29500)
    assert needs_launcher(env) and not needs_launcher({**env, "LOCAL_RANK": "0"})
    assert not needs_launcher({})
    with pytest.raises(ConfigError, match="SCALINGSTUDY_NODE_RANK is 2, but the trial has 2"):
        read_launch({**env, "SCALINGSTUDY_NODE_RANK": "2"})
    with pytest.raises(ConfigError, match="SCALINGSTUDY_PROCESSES_PER_POD must be >= 1"):
        read_launch({**env, "SCALINGSTUDY_PROCESSES_PER_POD": "0"})


# ------------------------------------------------------------------ ranks in this process
# Trials of two ranks driven through the Trainer itself (ranks forked from the test), for
# what a subprocess cannot show: a fault on one rank, each rank's own BatchNorm state,
# and a stop at an exact step.

IMAGES = {"model": "resnet", "depth": 1}
RANK_TRAINING = {"minSteps": 60, "maxSteps": 60, "evalEvery": 20, "batchSize": 32,
                 "learningRate": 3e-3, "earlyStopping": {"patience": 1000}}  # fmt: skip


class _OutOfMemoryInBackward(torch.autograd.Function):
    """The identity whose backward runs out of memory: it runs after the first layer's
    backward, when the gradients' all-reduce of the old DDP path had already begun."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        raise torch.OutOfMemoryError("stand-in: CUDA out of memory")


class OneSidedOom(TeacherStudent):
    """A stand-in for a GPU running out of memory in a backward pass (a CPU cannot be made
    to): rank 0 alone fails every training micro-batch of more than 16 items, as the rank
    with the larger share (17 of a batch of 33) does first."""

    rank = 0

    def loss(self, model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> Any:
        if model.training and self.rank == 0 and inputs.shape[0] > 16:
            inputs = _OutOfMemoryInBackward.apply(inputs.detach().requires_grad_())
        return super().loss(model, inputs, targets)


def _global_batch_norm(rank: int) -> dict[str, Any]:
    """GlobalBatchNorm's output and input gradient for this rank's half of a fixed batch,
    and the warnings it raised."""
    torch.manual_seed(0)
    x = torch.randn(8, 3, 4, 4, dtype=torch.float64)
    weight = torch.randn(8, 3, 4, 4, dtype=torch.float64)
    layer = torch.nn.BatchNorm2d(3).double()
    norm = synchronise_batch_norm(layer, torch.device("cpu"))  # the same layer, converted
    assert layer.running_mean is not None
    mine = x[4 * rank : 4 * rank + 4].clone().requires_grad_()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = norm(mine)
        (out * weight[4 * rank : 4 * rank + 4]).sum().backward()
    assert mine.grad is not None
    return {"out": out.detach().tolist(), "grad": mine.grad.tolist(),
            "running_mean": layer.running_mean.tolist(),
            "warnings": [f"{w.category.__name__}: {w.message}" for w in caught]}  # fmt: skip


def _scenario(name: str, rank: int, collectives: Collectives, folder: Path) -> dict[str, Any]:
    """One rank's part of a scenario; what it saw."""
    training = TrainingSpec.model_validate(
        RANK_TRAINING | {"batchSize": 33 if name == "oom" else 32}
    )
    cpu = Runtime(device=torch.device("cpu"), bf16=False, compile=False)
    if name == "norm":
        return _global_batch_norm(rank)
    if name == "nan":
        # Rank 1's training loss is NaN from its 25th step on.
        nan = DivergingTeacherStudent({"inputDim": 8, "teacherWidth": 16}, 0)
        nan.nan_from, nan.only_rank, nan.rank = 24, 1, rank
        out = train(nan, 512, 16, 2, training, _quiet, runtime=cpu, collectives=collectives)
        return {"diverged_at_step": out.diverged_at_step, "loss": out.validation_loss}
    if name == "oom":
        task: Any = OneSidedOom({"inputDim": 8, "teacherWidth": 16}, 0)
        task.rank = rank
        out = train(task, 512, 16, 2, training, _quiet, runtime=cpu, collectives=collectives)
        return {"loss": out.validation_loss, "micro_batch": out.micro_batch}
    task = ImageClassification(IMAGES, 0)
    checkpoints = Checkpoints(str(folder / "ckpt") if name != "resnet" else "", {"t": 1})
    if name == "preempt":
        calls = itertools.count()
        with pytest.raises(Preempted):
            train(task, 512, 8, 2, training, _quiet, checkpoints, lambda: next(calls) == 27,
                  runtime=cpu, collectives=collectives)  # fmt: skip
        return {}
    trainer = Trainer(task, 512, 8, 2, training, cpu, collectives)
    if name == "resume":
        state, _ = collectives.from_main(checkpoints.load() if rank == 0 else (None, ""))
        assert state is not None
        trainer.restore(state)
    out = trainer.run(_quiet, checkpoints, lambda: False)
    means = [float(m.running_mean.sum()) for m in trainer.model.modules()
             if isinstance(m, torch.nn.BatchNorm2d) and m.running_mean is not None]  # fmt: skip
    return {"loss": out.validation_loss, "train_loss": out.train_loss, "means": means,
            "resumed_from": out.resumed_from_step}  # fmt: skip


def _quiet(event: str, **fields: Any) -> None:
    pass


def _rank(rank: int, port: int, name: str, folder: Path) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE="2", LOCAL_RANK=str(rank))  # fmt: skip
    torch.set_num_threads(1)
    collectives = Collectives(World(rank, 2, rank, launched=True), torch.device("cpu"))
    try:
        seen = _scenario(name, rank, collectives, folder)
        (folder / f"{name}-{rank}.json").write_text(json.dumps(seen))
        collectives.barrier()
    finally:
        collectives.close()


def _two_ranks(name: str, folder: Path) -> list[dict[str, Any]]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.start_processes(  # type: ignore[attr-defined,no-untyped-call]
        _rank, args=(port, name, folder), nprocs=2, start_method="fork"
    )
    return [json.loads((folder / f"{name}-{r}.json").read_text()) for r in range(2)]


@pytest.mark.slow(10)
def test_an_out_of_memory_on_one_rank_is_agreed_and_the_loss_is_that_of_one_process(
    tmp_path: Path,
) -> None:
    """Rank 0 alone ran out of memory: it used to cut its share and redo the step while
    rank 1 went on with the gradient all-reduce it had begun: DDP failed on both ranks."""
    ranks = _two_ranks("oom", tmp_path)
    training = TrainingSpec.model_validate(RANK_TRAINING | {"batchSize": 33})
    task = TeacherStudent({"inputDim": 8, "teacherWidth": 16}, 0)
    cpu = Runtime(device=torch.device("cpu"), bf16=False, compile=False)
    one = train(task, 512, 16, 2, training, _quiet, runtime=cpu)
    assert [r["micro_batch"] for r in ranks] == [9, 9]  # both cut their share in two
    assert ranks[0]["loss"] == ranks[1]["loss"]
    assert ranks[0]["loss"] == pytest.approx(one.validation_loss, rel=TOLERANCE)


@pytest.mark.slow(15)
def test_a_resnet_on_two_ranks_keeps_one_batchnorm_and_scores_like_one_process(
    tmp_path: Path,
) -> None:
    """BatchNorm's running statistics used to drift apart between ranks (only rank 0's
    were saved), so the two halves of the validation set were scored by different models."""
    ranks = _two_ranks("resnet", tmp_path)
    assert ranks[0]["means"] == ranks[1]["means"] and ranks[0]["means"]
    training = TrainingSpec.model_validate(RANK_TRAINING)
    cpu = Runtime(device=torch.device("cpu"), bf16=False, compile=False)
    one = train(ImageClassification(IMAGES, 0), 512, 8, 2, training, _quiet, runtime=cpu)
    assert ranks[0]["loss"] == pytest.approx(one.validation_loss, rel=TOLERANCE)
    assert ranks[0]["train_loss"] == pytest.approx(one.train_loss, rel=TOLERANCE)


@pytest.mark.slow(15)
def test_a_resnet_on_two_ranks_resumes_exactly(tmp_path: Path) -> None:
    whole = _two_ranks("resnet", tmp_path)
    _two_ranks("preempt", tmp_path)
    resumed = _two_ranks("resume", tmp_path)
    assert resumed[0]["resumed_from"] == resumed[1]["resumed_from"] == 27
    assert resumed[0]["loss"] == resumed[1]["loss"] == whole[0]["loss"]
    assert resumed[0]["means"] == resumed[1]["means"] == whole[0]["means"]


@pytest.mark.slow(5)
def test_a_loss_that_goes_nan_on_one_rank_is_reported_at_its_first_step(tmp_path: Path) -> None:
    """Rank 1's loss is NaN from step 25, rank 0's (whose weights the summed NaN gradient
    reaches one step later) from 26: the result, which rank 0 reports, used to say 26."""
    ranks = _two_ranks("nan", tmp_path)
    assert [r["diverged_at_step"] for r in ranks] == [25, 25]
    assert ranks[0]["loss"] == ranks[1]["loss"]


@pytest.mark.slow(5)
def test_global_batch_norm_on_two_ranks_is_one_batch_norm_without_deprecated_calls(
    tmp_path: Path,
) -> None:
    """Each rank's half of a batch normalised (forward and backward) as one BatchNorm of the
    whole batch; it used to go through torch.distributed.nn's all_reduce, deprecated (a
    FutureWarning at every forward on torch 2.15)."""
    ranks = _two_ranks("norm", tmp_path)
    assert ranks[0]["warnings"] == ranks[1]["warnings"] == []
    torch.manual_seed(0)
    x = torch.randn(8, 3, 4, 4, dtype=torch.float64).requires_grad_()
    weight = torch.randn(8, 3, 4, 4, dtype=torch.float64)
    norm = torch.nn.BatchNorm2d(3).double()
    out = norm(x)
    (out * weight).sum().backward()
    assert x.grad is not None
    both = torch.tensor(ranks[0]["out"] + ranks[1]["out"], dtype=torch.float64)
    grads = torch.tensor(ranks[0]["grad"] + ranks[1]["grad"], dtype=torch.float64)
    assert torch.allclose(both, out.detach(), atol=1e-10)
    assert torch.allclose(grads, x.grad, atol=1e-10)
    assert ranks[0]["running_mean"] == ranks[1]["running_mean"]
    mean = torch.tensor(ranks[0]["running_mean"], dtype=torch.float64)
    assert norm.running_mean is not None
    assert torch.allclose(mean, norm.running_mean, atol=1e-10)
