"""The SDK where a trainer meets the world (issue 37): a push that fails in any way never
loses a trained result, a malformed Pushgateway address is refused before training, a
trial's subset takes one argument, and the callbacks' record of evaluations survives a
checkpoint (the libraries themselves: test_sdk_callbacks.py)."""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from scalingstudy_sdk import Trial, TrialError
from scalingstudy_sdk.integrations.common import NEVER_EVALUATED, Evaluations
from scalingstudy_sdk.report import redacted, report_result

SIZES = {"SCALINGSTUDY_DATA_SIZE": "64", "SCALINGSTUDY_MODEL_SIZE": "8"}


@pytest.fixture
def garbage_server() -> Iterator[str]:
    """A real TCP peer that is not an HTTP server: whatever it is sent, it answers a line
    of garbage and hangs up (http.client reads it as BadStatusLine)."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            with connection:
                connection.recv(65536)
                connection.sendall(b"SSH-2.0-OpenSSH_9.6 not http\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    listener.close()
    thread.join(timeout=5)


def _reported(tmp_path: Path, gateway: str, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """Report a result through ``gateway``: the result file must hold it whatever the
    push did; the stderr lines are returned."""
    path = tmp_path / "result.json"
    env = {**SIZES, "SCALINGSTUDY_RESULT_FILE": str(path), "SCALINGSTUDY_PUSHGATEWAY": gateway}
    report_result({"validation_loss": 0.5, "parameters": 10}, env)
    assert json.loads(path.read_text())["validation_loss"] == 0.5
    return capsys.readouterr().err.strip().splitlines()


# ------------------------------------------------------------------ the push


def test_a_non_http_peer_never_loses_the_result(
    tmp_path: Path, garbage_server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """It raised http.client.BadStatusLine out of trial.report (not an OSError): the pod
    failed after its result file was written, and the trained trial was trained again."""
    lines = _reported(tmp_path, garbage_server, capsys)
    assert len(lines) == 1
    line = json.loads(lines[0])
    assert line["event"] == "push_failed" and "BadStatusLine" in line["error"]


@pytest.mark.parametrize("gateway", ["pushgateway:abc", "http://pgw:99999", "pgw 9091"])
def test_a_malformed_address_at_push_time_never_loses_the_result(
    tmp_path: Path, gateway: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """(InvalidURL before.) A trainer that reports without Trial.from_env's check."""
    lines = _reported(tmp_path, gateway, capsys)
    assert len(lines) == 1 and json.loads(lines[0])["event"] == "push_failed"


def test_a_refused_connection_is_one_line_after_the_retries(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]
    lines = _reported(tmp_path, f"127.0.0.1:{port}", capsys)
    assert len(lines) == 1
    assert json.loads(lines[0])["attempts"] == 3


# ------------------------------------------------------------------ refused at start


@pytest.mark.parametrize(
    "gateway",
    ["pushgateway:abc", "http://pgw:99999", "ftp://pgw:9091", "http://", "pgw 9091",
     "pgw:9091?x=1", "user:secret@pgw:9091"],
)  # fmt: skip
def test_a_malformed_pushgateway_is_refused_naming_the_variable(gateway: str) -> None:
    with pytest.raises(TrialError) as refused:
        Trial.from_env({**SIZES, "SCALINGSTUDY_PUSHGATEWAY": gateway})
    message = str(refused.value)
    assert message.startswith(f"SCALINGSTUDY_PUSHGATEWAY={redacted(gateway)!r} is not a")
    assert "secret" not in message  # credentials are not echoed


@pytest.mark.parametrize(
    "gateway", ["", "pushgateway:9091", "http://pgw.monitoring:9091/", "https://pgw.example",
                "[::1]:9091", "pgw:9091/prefix"],
)  # fmt: skip
def test_a_wellformed_pushgateway_is_accepted(gateway: str) -> None:
    Trial.from_env({**SIZES, "SCALINGSTUDY_PUSHGATEWAY": gateway})


def test_from_env_or_exit_refuses_a_malformed_pushgateway_with_78_and_one_line() -> None:
    env = {**SIZES, "PATH": "/usr/bin", "SCALINGSTUDY_PUSHGATEWAY": "pushgateway:abc"}
    out = subprocess.run(
        [sys.executable, "-c", "from scalingstudy_sdk import Trial; Trial.from_env_or_exit()"],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 78 and len(lines) == 1
    assert "SCALINGSTUDY_PUSHGATEWAY" in lines[0] and "'pushgateway:abc'" in lines[0]


def test_the_built_in_trainer_refuses_a_malformed_pushgateway() -> None:
    """The built-in trainer reads its trial through Trial.from_env: a configuration
    error (exit 78) before any training, not a crash after it."""
    from scalingstudy_trainer.config import read_config
    from scalingstudy_trainer.errors import ConfigError

    env = {**SIZES, "SCALINGSTUDY_TASK": '{"name": "teacher-student"}',
           "SCALINGSTUDY_PUSHGATEWAY": "pushgateway:abc"}  # fmt: skip
    with pytest.raises(ConfigError, match="SCALINGSTUDY_PUSHGATEWAY"):
        read_config(env)


# ------------------------------------------------------------------ subset


def _trial(data_size: int = 64, seed: int = 5) -> Trial:
    return Trial(study="s", name="t", data_size=data_size, model_size=8, seed=0,
                 task={"name": "mine", "dataSeed": seed})  # fmt: skip


def test_subset_takes_one_argument() -> None:
    """Issue 27's `trial.subset(n_items)` (a TypeError before): with nothing held out of
    this index space (a dataset whose validation is a split of its own), the first
    ``data_size`` positions of the order, nested across data sizes."""
    small, large = _trial(64).subset(5000), _trial(256).subset(5000)
    assert len(small) == 64 and len(set(small)) == 64
    assert small == large[:64]
    assert small == _trial(64).subset(5000, validation=0)


def test_subset_after_validation_stays_disjoint_from_it() -> None:
    """One argument after ``validation(n, k)`` of the same index space: the k items are
    held out, as ``subset(n, validation=k)`` would."""
    trial = _trial(300)
    held = trial.validation(5000, 1000)
    assert trial.subset(5000) == trial.subset(5000, validation=1000)
    assert not set(held) & set(trial.subset(5000))
    assert len(_trial(300).subset(7000)) == 300  # another index space: nothing held


def test_validation_that_would_overlap_a_subset_taken_is_refused() -> None:
    trial = _trial(300)
    trial.subset(5000)
    with pytest.raises(TrialError, match=r"subset\(5000, validation=1000\)"):
        trial.validation(5000, 1000)
    other = _trial(300)
    other.validation(5000, 1000)
    with pytest.raises(TrialError, match="overlap"):
        other.subset(5000, validation=500)


def test_a_trial_copied_with_replace_starts_with_nothing_held() -> None:
    trial = _trial(64)
    trial.validation(5000, 1000)
    larger = replace(trial, data_size=128)
    assert larger.subset(5000)[:64] == _trial(64).subset(5000)


def test_subset_refuses_a_negative_validation() -> None:
    with pytest.raises(TrialError, match="validation"):
        _trial().subset(5000, validation=-1)


# ------------------------------------------------------------------ the callbacks' record


def test_the_record_keeps_the_best_and_the_first_divergence() -> None:
    nan = math.nan
    record = Evaluations.of([(2, 0.9), (4, 0.5), (6, nan), (8, 0.7), (10, math.inf)])
    assert (record.best, record.best_step, record.finite) == (0.5, 4, 3)
    assert record.failure() is None
    assert record.extras() == {"best_step": 4, "diverged_at_step": 6}


def test_a_record_of_only_non_finite_evaluations_is_a_divergence() -> None:
    record = Evaluations.of([(3, math.inf), (6, math.nan)])
    assert record.failure() == "the run diverged: validation loss inf from step 3"
    assert Evaluations().failure() == NEVER_EVALUATED


def test_the_record_survives_json_and_ignores_a_malformed_state() -> None:
    record = Evaluations.of([(2, 0.9), (4, 0.5), (6, math.nan)])
    again = Evaluations.from_state(json.loads(json.dumps(record.to_state(), allow_nan=False)))
    assert again == record
    assert Evaluations.from_state(json.loads(json.dumps(Evaluations().to_state()))) == (
        Evaluations()
    )
    odd = Evaluations.from_state({"best": "0.1", "finite": True, "diverged_step": 3.5})
    assert odd == Evaluations()
    no_best = Evaluations.from_state({"best": math.nan, "finite": 2, "best_step": 4})
    assert no_best.failure() == NEVER_EVALUATED
