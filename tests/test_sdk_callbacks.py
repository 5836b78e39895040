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


def _hf_trainer(tmp_path: Path, trial: Trial, steps: int, *extra: Any) -> Any:
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

    from scalingstudy_sdk.integrations.huggingface import ScalingStudyCallback

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=32, n_positions=16, n_embd=trial.model_size, n_layer=1,
                        n_head=2, bos_token_id=None, eos_token_id=None)  # fmt: skip
    rows = torch.randint(0, 32, (trial.data_size, 16), generator=torch.Generator().manual_seed(1))
    data = [{"input_ids": r, "labels": r} for r in rows]
    args = TrainingArguments(
        output_dir=str(trial.checkpoint_dir), max_steps=steps, per_device_train_batch_size=8,
        eval_strategy="steps", eval_steps=2, save_strategy="no", logging_strategy="no",
        report_to=[], use_cpu=True, seed=0, disable_tqdm=True,
    )  # fmt: skip
    callback = ScalingStudyCallback(trial)
    trainer = Trainer(model=GPT2LMHeadModel(config), args=args, train_dataset=data,
                      eval_dataset=data[:16], callbacks=[*extra, callback])  # fmt: skip
    return trainer, callback


def test_hugging_face_trainer_reports_its_best_evaluation(tmp_path: Path) -> None:
    trial = trial_in(tmp_path)
    trainer, callback = _hf_trainer(tmp_path, trial, steps=6)
    trainer.train()
    result = result_of(tmp_path)
    assert callback.tracker.evaluations == 3
    assert result["validation_loss"] == pytest.approx(callback.tracker.best)
    assert result["parameters"] == trainer.model.num_parameters() and result["steps"] == 6


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


# ------------------------------------------------------------------ Lightning


def _lightning(trial: Trial, steps: int, *extra: Any) -> Any:
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
            self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.Adam(self.parameters(), lr=0.01)

    torch.manual_seed(0)
    x = torch.randn(trial.data_size, 4)
    data = TensorDataset(x, x.sum(dim=1, keepdim=True))
    callback = ScalingStudyCallback(trial)
    trainer = pl.Trainer(
        max_steps=steps, val_check_interval=2, check_val_every_n_epoch=None,
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
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(doc))
    out = tmp_path / "out"
    result = run_cli("run", str(study), "--out", str(out), "--quiet", cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 3 and all(0 < float(r["loss"]) < 6 for r in rows)  # nats per byte
    assert all(int(r["parameters"]) > 0 and r["steps"] == "20" for r in rows)
