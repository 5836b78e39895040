"""The SDK a user's own trainer imports (issue 27): standard library only, the same data
order as the built-in trainer, and a study whose trainer lives in an environment that has
nothing but the SDK."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

from scalingstudy_sdk import Order, Trial, TrialError
from scalingstudy_sdk.report import exposition
from scalingstudy_trainer.tasks.char_lm import CharLM
from scalingstudy_trainer.tokens import KeyedPermutation
from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("kopf", "kubernetes", "scipy", "matplotlib", "torch", "numpy", "pydantic")

SCRIPT = """
import sys
from scalingstudy_sdk import Trial

trial = Trial.from_env_or_exit()
items = trial.subset(20000, validation=1000)
assert trial.validation(20000, 1000)[0] not in set(items)
# a "model" whose loss falls with data and width: the data are the subset's own items
noise = (sum(items) % 97) / 97 * 0.01
loss = 2.0 * len(items) ** -0.35 + 0.5 / trial.model_size + noise
trial.progress(step=1, validation_loss=loss)
trial.report(validation_loss=loss, parameters=trial.model_size * 100, steps=1)
print(sorted(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)
"""


@pytest.fixture(scope="module")
def sdk_only(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with the SDK's own wheel and nothing else."""
    where = tmp_path_factory.mktemp("sdk-env")
    wheels = where / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "-w", str(wheels), str(ROOT / "sdk")],
                   check=True, capture_output=True)  # fmt: skip
    venv = where / "venv"
    # No pip inside (ensurepip costs seconds): this environment's pip installs into it.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   capture_output=True)  # fmt: skip
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
                    "--no-index", "--no-deps", *map(str, wheels.glob("*.whl"))],
                   check=True, capture_output=True)  # fmt: skip
    return python


def test_the_sdk_alone_imports_nothing_heavy(sdk_only: Path) -> None:
    code = (
        "import sys, scalingstudy_sdk\n"
        "from scalingstudy_sdk import Trial, Preemption\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([str(sdk_only), "-c", code], capture_output=True, text=True,
                         check=True, cwd="/")  # fmt: skip
    assert out.stdout.strip() == "[]"
    # and the product itself is not there
    missing = subprocess.run([str(sdk_only), "-c", "import scalingstudy"], capture_output=True,
                             cwd="/", check=False)  # fmt: skip
    assert missing.returncode != 0


def test_a_study_runs_a_trainer_from_an_environment_with_only_the_sdk(
    tmp_path: Path, sdk_only: Path
) -> None:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT.format(heavy=HEAVY))
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({
        "apiVersion": "scalingstudy.io/v1alpha1", "kind": "ScalingStudy",
        "metadata": {"name": "byo"},
        "spec": {"task": {"name": "my-own", "dataSeed": 3},
                 "trainer": {"command": [str(sdk_only), str(script)]},
                 "dataSizes": {"min": 1000, "max": 16000, "factor": 2},
                 "modelSizes": {"values": [4, 16]}, "fit": {"bootstrap": 50}},
    }))  # fmt: skip
    out = tmp_path / "out"
    result = run_cli("run", str(study), "--out", str(out), "--quiet", "--workers", "2")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 10 and {r["parameters"] for r in rows} == {"400", "1600"}
    fit = json.loads((out / "fit.json").read_text())
    assert -0.45 < fit["learning_curve"]["beta"] < -0.25
    logs = "".join(p.read_text() for p in (out / "logs").glob("*.stderr"))
    assert logs.count("[]") == 10  # no trial imported anything heavy


@pytest.mark.parametrize(("n", "seed"), [(1, 0), (7, 3), (1000, 0), (4097, 11)])
def test_the_sdk_order_is_the_built_in_trainers_order(n: int, seed: int) -> None:
    sdk = Order(n, seed).positions(0, n)
    assert sorted(sdk) == list(range(n))
    assert sdk == KeyedPermutation(n, seed)(np.arange(n)).tolist()


def test_a_trials_subset_is_the_token_tasks_subset(tmp_path: Path) -> None:
    """The SDK's subset and validation are the built-in LM task's on a token file."""
    ids = np.random.default_rng(1).integers(0, 50, size=40000).astype(np.uint16)
    path = tmp_path / "train.bin"
    ids.tofile(path)
    lm = CharLM({"tokens": str(path), "vocabSize": 50, "context": 15,
                 "validationBytes": 1600}, 5)  # fmt: skip
    total, held = lm.total_sequences, lm.validation_sequences
    trial = Trial(study="s", name="t", data_size=64, model_size=8, seed=0,
                  task={"name": "char-lm", "dataSeed": 5})  # fmt: skip
    assert trial.validation(total, held) == lm.validation_indices().tolist()
    assert trial.subset(total, held) == lm.train_indices(64 * 16).tolist()
    larger = replace(trial, data_size=128)
    assert set(trial.subset(total, held)) < set(larger.subset(total, held))


def test_outside_a_study_the_sdk_says_so_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(TrialError, match="SCALINGSTUDY_DATA_SIZE is not set"):
        Trial.from_env({})
    out = subprocess.run(
        [sys.executable, "-c", "from scalingstudy_sdk import Trial; Trial.from_env_or_exit()"],
        capture_output=True, text=True, env={"PATH": "/usr/bin"}, check=False,
    )  # fmt: skip
    assert out.returncode == 78 and len(out.stderr.strip().splitlines()) == 1
    sweep = Trial.from_env({"SCALINGSTUDY_DATA_SIZE": "10", "SCALINGSTUDY_MODEL_SIZE": "2",
                            "SCALINGSTUDY_TRAINING": json.dumps({"learningRate": 0.01}),
                            "SCALINGSTUDY_LEARNING_RATE": "0.003"})  # fmt: skip
    assert sweep.learning_rate == 0.003 and sweep.training["learningRate"] == 0.01


def test_the_push_is_prometheus_text_with_the_trials_labels() -> None:
    env = {"SCALINGSTUDY_DATA_SIZE": "100", "SCALINGSTUDY_MODEL_SIZE": "4",
           "SCALINGSTUDY_SEED": "0", "SCALINGSTUDY_METRIC": "bpc"}  # fmt: skip
    text = exposition({"validation_loss": 0.5, "bpc": 0.7, "steps": 3, "note": "x"}, env)
    assert 'scalingstudy_trial_validation_loss{data_size="100",model_size="4",seed="0"} 0.5' in (
        text
    )
    assert "scalingstudy_trial_bpc{" in text and "scalingstudy_trial_step{" in text
    assert "note" not in text
