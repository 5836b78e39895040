"""The SDK's callbacks with the real libraries, offline (tiny models built from a config):
each evaluation is progress, the best validation loss and the parameter count are the
result, and a real SIGTERM saves a checkpoint and exits 143, from which the retry ends."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from scalingstudy_sdk import Trial
from scalingstudy_sdk.curve import read_curve

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _sigterm_restored() -> Iterator[None]:
    """The callbacks install a SIGTERM handler in this (test worker) process."""
    before = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, before)


def trial_in(tmp_path: Path) -> Trial:
    env = {"SCALINGSTUDY_DATA_SIZE": "64", "SCALINGSTUDY_MODEL_SIZE": "16",
           "SCALINGSTUDY_SEED": "0", "SCALINGSTUDY_TRIAL": "t",
           "SCALINGSTUDY_RESULT_FILE": str(tmp_path / "result.json"),
           "SCALINGSTUDY_CHECKPOINT_DIR": str(tmp_path / "ckpt")}  # fmt: skip
    return Trial.from_env(env)


def result_of(tmp_path: Path) -> dict[str, Any]:
    return json.loads((tmp_path / "result.json").read_text())  # type: ignore[no-any-return]


class _Kill:
    """Sends this process a real SIGTERM once the given step is reached."""

    def __init__(self, step: int) -> None:
        self.step = step

    def __call__(self, step: int) -> None:
        if step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


# ------------------------------------------------------------------ Hugging Face


def _hf_trainer(
    tmp_path: Path, trial: Trial, steps: int, *extra: Any,
    script: dict[int, float] | None = None, eval_steps: int = 2,
) -> Any:  # fmt: skip
    """A tiny GPT-2 Trainer; with ``script`` its evaluations also report the loss the
    script gives for the step (``eval_scripted``) and the callback monitors that."""
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

    from scalingstudy_sdk.integrations.huggingface import ScalingStudyCallback

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=32, n_positions=16, n_embd=trial.model_size, n_layer=1,
                        n_head=2, bos_token_id=None, eos_token_id=None)  # fmt: skip
    rows = torch.randint(0, 32, (trial.data_size, 16), generator=torch.Generator().manual_seed(1))
    data = [{"input_ids": r, "labels": r} for r in rows]
    args = TrainingArguments(
        output_dir=str(trial.checkpoint_dir), max_steps=steps, per_device_train_batch_size=8,
        eval_strategy="steps", eval_steps=eval_steps, save_strategy="no",
        logging_strategy="no", report_to=[], use_cpu=True, seed=0, disable_tqdm=True,
    )  # fmt: skip
    if script is None:
        callback, metrics = ScalingStudyCallback(trial), None
    else:
        callback = ScalingStudyCallback(trial, metric="eval_scripted")

        def metrics(_: Any) -> dict[str, float]:
            return {"scripted": script[trainer.state.global_step]}

    trainer = Trainer(model=GPT2LMHeadModel(config), args=args, train_dataset=data,
                      eval_dataset=data[:16], callbacks=[*extra, callback],
                      compute_metrics=metrics)  # fmt: skip
    return trainer, callback


def test_hugging_face_trainer_reports_its_best_evaluation(tmp_path: Path) -> None:
    trial = trial_in(tmp_path)
    trainer, callback = _hf_trainer(tmp_path, trial, steps=6)
    trainer.train()
    result = result_of(tmp_path)
    assert callback.tracker.evaluations == 3
    assert result["validation_loss"] == pytest.approx(callback.tracker.best)
    assert result["parameters"] == trainer.model.num_parameters() and result["steps"] == 6


def test_hugging_face_evaluations_are_a_curve_with_the_step_budget(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 38: each evaluation's line carries its step and the run's max_steps."""
    trainer, _ = _hf_trainer(tmp_path, trial_in(tmp_path), steps=6)
    trainer.train()
    curve = read_curve(capsys.readouterr().out.splitlines())
    assert [p.step for p in curve.points] == [2, 4, 6] and curve.step_budget == 6
    assert curve.best() == pytest.approx(result_of(tmp_path)["validation_loss"])


def test_hugging_face_trainer_saves_on_sigterm_and_the_retry_finishes(tmp_path: Path) -> None:
    from transformers import TrainerCallback

    from scalingstudy_sdk.integrations.huggingface import last_checkpoint

    kill = _Kill(3)

    class Killer(TrainerCallback):  # type: ignore[misc]
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            kill(state.global_step)

    trial = trial_in(tmp_path)
    trainer, _ = _hf_trainer(tmp_path, trial, 8, Killer())
    with pytest.raises(SystemExit) as stopped:
        trainer.train()
    assert stopped.value.code == 143 and not (tmp_path / "result.json").exists()
    resume = last_checkpoint(trial)
    assert resume is not None and resume.endswith("checkpoint-3")
    again, _ = _hf_trainer(tmp_path, trial, 8)
    again.train(resume_from_checkpoint=resume)
    assert result_of(tmp_path)["steps"] == 8


def _hf_killer(step: int) -> Any:
    from transformers import TrainerCallback

    kill = _Kill(step)

    class Killer(TrainerCallback):  # type: ignore[misc]
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            kill(state.global_step)

    return Killer()


def _hf_preempted_then_resumed(tmp_path: Path, steps: int, kill: int, **options: Any) -> Any:
    """A trial killed (a real SIGTERM) at step ``kill``, then resumed from its checkpoint by
    a fresh Trainer and callback, as the executor's retry runs it: the second callback."""
    from scalingstudy_sdk.integrations.huggingface import last_checkpoint

    trial = trial_in(tmp_path)
    trainer, _ = _hf_trainer(tmp_path, trial, steps, _hf_killer(kill), **options)
    with pytest.raises(SystemExit) as stopped:
        trainer.train()
    assert stopped.value.code == 143 and not (tmp_path / "result.json").exists()
    again, callback = _hf_trainer(tmp_path, trial, steps, **options)
    again.train(resume_from_checkpoint=last_checkpoint(trial))
    return callback


def test_hugging_face_resume_keeps_the_best_evaluation_before_the_preemption(
    tmp_path: Path,
) -> None:
    """Best at step 4, preempted at 5, worse after the resume: the result is the best of
    the whole run (it read 0.70, the best of the resumed part, before the record moved
    into the checkpoint)."""
    script = {2: 0.9, 4: 0.5, 6: 0.7, 8: 0.7}
    callback = _hf_preempted_then_resumed(tmp_path, 8, 5, script=script)
    result = result_of(tmp_path)
    assert result["validation_loss"] == 0.5 and result["best_step"] == 4
    assert result["steps"] == 8 and callback.tracker.evaluations == 4


def test_hugging_face_run_that_diverged_fails_naming_the_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trial = trial_in(tmp_path)
    nan = float("nan")
    trainer, _ = _hf_trainer(tmp_path, trial, 6, script={2: nan, 4: nan, 6: nan})
    with pytest.raises(SystemExit) as failed:
        trainer.train()
    assert failed.value.code == 78 and not (tmp_path / "result.json").exists()
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1] == "scalingstudy: the run diverged: validation loss NaN from step 2"


def test_hugging_face_run_that_diverged_after_a_finite_best_reports_it(tmp_path: Path) -> None:
    """The best evaluation before the divergence is a measurement (early stopping would
    keep it); the result says where the run diverged."""
    trial = trial_in(tmp_path)
    nan = float("nan")
    trainer, _ = _hf_trainer(tmp_path, trial, 6, script={2: 0.8, 4: nan, 6: nan})
    trainer.train()
    result = result_of(tmp_path)
    assert result["validation_loss"] == 0.8 and result["diverged_at_step"] == 4


# ------------------------------------------------------------------ Lightning


def _lightning(
    trial: Trial, steps: int, *extra: Any, script: dict[int, float] | None = None,
    every: int = 2,
) -> Any:  # fmt: skip
    """A tiny regression; with ``script`` its validation logs the script's loss for the
    step as ``val_loss`` instead of the real one."""
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader, TensorDataset

    from scalingstudy_sdk.integrations.lightning import ScalingStudyCallback

    class Regression(pl.LightningModule):  # type: ignore[misc]
        def __init__(self, width: int) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(4, width), torch.nn.Tanh(),
                                           torch.nn.Linear(width, 1))  # fmt: skip

        def training_step(self, batch: Any, _: int) -> torch.Tensor:
            x, y = batch
            return torch.nn.functional.mse_loss(self.net(x), y)

        def validation_step(self, batch: Any, _: int) -> None:
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.net(x), y)
            if script is not None:
                # Unscripted: the sanity check (not reported) and the validation Lightning
                # runs when a preempted fit stops (after the checkpoint was saved).
                loss = torch.tensor(script.get(self.trainer.global_step, 9.0))
            self.log("val_loss", loss)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.Adam(self.parameters(), lr=0.01)

    torch.manual_seed(0)
    x = torch.randn(trial.data_size, 4)
    data = TensorDataset(x, x.sum(dim=1, keepdim=True))
    callback = ScalingStudyCallback(trial)
    trainer = pl.Trainer(
        max_steps=steps, val_check_interval=every, check_val_every_n_epoch=None,
        limit_val_batches=1, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[*extra, callback],
    )  # fmt: skip
    loaders = DataLoader(data, batch_size=8), DataLoader(data, batch_size=32)
    return trainer, Regression(trial.model_size), loaders, callback


def test_lightning_reports_its_best_validation(tmp_path: Path) -> None:
    trial = trial_in(tmp_path)
    trainer, module, (train, val), callback = _lightning(trial, 6)
    trainer.fit(module, train, val)
    result = result_of(tmp_path)
    assert callback.tracker.evaluations == 3
    assert result["validation_loss"] == pytest.approx(callback.tracker.best)
    assert result["parameters"] == sum(p.numel() for p in module.parameters())


def test_lightning_validations_are_a_curve_with_the_step_budget(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 38: each validation's line carries its step and estimated_stepping_batches."""
    trial = trial_in(tmp_path)
    trainer, module, (train, val), _ = _lightning(trial, 6)
    trainer.fit(module, train, val)
    curve = read_curve(capsys.readouterr().out.splitlines())
    assert [p.step for p in curve.points] == [2, 4, 6] and curve.step_budget == 6
    assert curve.best() == pytest.approx(result_of(tmp_path)["validation_loss"])


def test_lightning_saves_on_sigterm_and_the_retry_finishes(tmp_path: Path) -> None:
    import lightning.pytorch as pl

    from scalingstudy_sdk.integrations.lightning import last_checkpoint

    kill = _Kill(3)

    class Killer(pl.Callback):  # type: ignore[misc]
        def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
            kill(trainer.global_step)

    trial = trial_in(tmp_path)
    trainer, module, (train, val), _ = _lightning(trial, 8, Killer())
    with pytest.raises(SystemExit) as stopped:
        trainer.fit(module, train, val)
    assert stopped.value.code == 143 and not (tmp_path / "result.json").exists()
    resume = last_checkpoint(trial)
    assert resume is not None
    again, fresh, (train, val), _ = _lightning(trial, 8)
    again.fit(fresh, train, val, ckpt_path=resume)
    assert result_of(tmp_path)["steps"] == 8


def _lightning_killer(step: int) -> Any:
    import lightning.pytorch as pl

    kill = _Kill(step)

    class Killer(pl.Callback):  # type: ignore[misc]
        def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
            kill(trainer.global_step)

    return Killer()


def _lightning_preempted_then_resumed(tmp_path: Path, steps: int, kill: int,
                                      **options: Any) -> Any:  # fmt: skip
    """A real SIGTERM at step ``kill``, then a fresh Trainer, module and callback resume
    from ``last.ckpt`` (the executor's retry): the second callback."""
    from scalingstudy_sdk.integrations.lightning import last_checkpoint

    trial = trial_in(tmp_path)
    trainer, module, (train, val), _ = _lightning(trial, steps, _lightning_killer(kill),
                                                  **options)  # fmt: skip
    with pytest.raises(SystemExit) as stopped:
        trainer.fit(module, train, val)
    assert stopped.value.code == 143 and not (tmp_path / "result.json").exists()
    again, fresh, (train, val), callback = _lightning(trial, steps, **options)
    again.fit(fresh, train, val, ckpt_path=last_checkpoint(trial))
    return callback


def test_lightning_resume_keeps_the_best_validation_before_the_preemption(
    tmp_path: Path,
) -> None:
    """Best at step 4, preempted at 5, worse after: the best of the whole run (0.70
    before the record moved into the checkpoint)."""
    script = {2: 0.9, 4: 0.5, 6: 0.7, 8: 0.7}
    callback = _lightning_preempted_then_resumed(tmp_path, 8, 5, script=script)
    result = result_of(tmp_path)
    assert result["validation_loss"] == pytest.approx(0.5) and result["best_step"] == 4
    assert result["steps"] == 8 and callback.tracker.evaluations == 4


def test_lightning_resume_with_no_validation_left_reports_the_earlier_best(
    tmp_path: Path,
) -> None:
    """Preempted at the last step: the retry validates nothing (it failed with "the
    trainer never evaluated" before). (The Hugging Face Trainer always evaluates the last
    step of a run, a resumed one too.)"""
    _lightning_preempted_then_resumed(tmp_path, 7, 7, script={3: 0.8, 6: 0.6}, every=3)
    result = result_of(tmp_path)  # Lightning logs float32
    assert result["validation_loss"] == pytest.approx(0.6) and result["best_step"] == 6


def test_lightning_run_that_diverged_fails_naming_the_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trial = trial_in(tmp_path)
    nan = float("nan")
    trainer, module, (train, val), _ = _lightning(trial, 6, script={2: nan, 4: nan, 6: nan})
    with pytest.raises(SystemExit) as failed:
        trainer.fit(module, train, val)
    assert failed.value.code == 78 and not (tmp_path / "result.json").exists()
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1] == "scalingstudy: the run diverged: validation loss NaN from step 2"


@pytest.mark.slow(25)
def test_the_byo_hugging_face_example_runs_as_a_study(tmp_path: Path) -> None:
    """The example's script, unchanged, through `scalingstudy run` (a smaller grid)."""
    import csv

    import yaml

    from tests.conftest import ROOT, run_cli

    doc = yaml.safe_load((ROOT / "examples" / "byo-huggingface" / "study.yaml").read_text())
    doc["spec"]["dataSizes"] = {"values": [128, 256, 512]}
    doc["spec"]["modelSizes"] = {"values": [16]}
    doc["spec"]["training"].update(minSteps=20, maxSteps=20, evalEvery=10)
    # The copy lives elsewhere: its script by its full path (the example's own command is
    # relative to the example's folder).
    doc["spec"]["trainer"]["command"] = [
        "python", str(ROOT / "examples" / "byo-huggingface" / "train.py")
    ]  # fmt: skip
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(doc))
    out = tmp_path / "out"
    result = run_cli("run", str(study), "--out", str(out), "--quiet", cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 3 and all(0 < float(r["loss"]) < 6 for r in rows)  # nats per byte
    assert all(int(r["parameters"]) > 0 and r["steps"] == "20" for r in rows)
