"""A trial's curve (issue 38 item 1): read from its own log (``read_curve``, ``thin``),
and its latest evaluation pushed as live progress to a real local HTTP server standing in
for the Pushgateway, under the progress group and never under the result's, throttled,
and never at the trial's cost."""

from __future__ import annotations

import base64
import itertools
import json
import math
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from scalingstudy_sdk import Trial, contract
from scalingstudy_sdk.curve import (
    HELD_POINTS,
    MAX_POINTS,
    CurvePoint,
    CurveReader,
    read_curve,
    thin,
)
from scalingstudy_sdk.progress import ProgressPush
from tests.training import run_trainer

ENV = {
    "SCALINGSTUDY_STUDY": "demo",
    "SCALINGSTUDY_TRIAL": "demo-d64-m8-s0",
    "SCALINGSTUDY_NAMESPACE": "ns",
    "SCALINGSTUDY_DATA_SIZE": "64",
    "SCALINGSTUDY_MODEL_SIZE": "8",
    "SCALINGSTUDY_SEED": "0",
}


def line(step: int, loss: float, **extra: object) -> str:
    return json.dumps({"ts": 100.0 + step, "event": "eval", "step": step,
                       "validation_loss": loss, **extra})  # fmt: skip


# ------------------------------------------------------------------ read_curve, thin


def test_a_log_with_other_output_and_garbage_reads_only_its_evaluations() -> None:
    lines = [
        json.dumps({"ts": 100.0, "event": "start", "step_budget": 400}),
        "loading data...",
        "{not json",
        "[1, 2]",
        json.dumps({"event": "eval", "step": "ten", "validation_loss": 1.0}),
        json.dumps({"event": "eval", "step": True, "validation_loss": 1.0}),
        json.dumps({"event": "checkpoint", "step": 5}),
        line(10, 2.0, train_loss=2.1, samples_seen=640),
        line(20, 1.5, items_seen=1280),
        "{" * 5000,
    ]
    curve = read_curve(lines)
    assert [(p.step, p.validation_loss) for p in curve.points] == [(10, 2.0), (20, 1.5)]
    assert curve.step_budget == 400
    assert curve.points[0] == CurvePoint(10, 640, 2.0, 2.1, 10.0)
    assert curve.points[1].samples_seen == 1280 and curve.best() == 1.5


def test_a_resumed_trial_keeps_the_latest_evaluation_of_a_step_seen_again() -> None:
    """A trial resumed from a checkpoint at step 20 evaluates 30 again: one point each."""
    lines = [line(10, 2.0), line(20, 1.5), line(30, 1.4), line(30, 1.3), line(40, 1.2)]
    curve = read_curve(lines)
    assert [p.step for p in curve.points] == [10, 20, 30, 40]
    assert curve.points[2].validation_loss == 1.3


def test_nan_losses_are_points_but_never_the_best() -> None:
    lines = [line(10, 2.0), line(20, math.nan), line(30, math.inf)]
    assert "NaN" in lines[1]  # what json.dumps writes, and the trainer prints
    curve = read_curve(lines)
    assert len(curve.points) == 3 and math.isnan(curve.points[1].validation_loss or 0.0)
    assert curve.best() == 2.0
    assert read_curve([line(10, math.nan)]).best() is None


def test_ten_thousand_evaluations_keep_a_bounded_thinned_curve() -> None:
    losses = [3.0 / (1 + s / 100) for s in range(10_000)]
    losses[7_777] = 0.01  # the lowest, not at an end
    curve = read_curve(line(s, losses[s]) for s in range(10_000))
    steps = [p.step for p in curve.points]
    assert len(steps) <= MAX_POINTS and len(steps) >= MAX_POINTS - 3
    assert steps[0] == 0 and steps[-1] == 9_999 and 7_777 in steps
    assert steps == sorted(set(steps)) and curve.best() == 0.01
    # Spread over the run, not bunched: no gap is more than twice the even spacing.
    assert max(b - a for a, b in itertools.pairwise(steps)) <= 2 * 10_000 / MAX_POINTS
    assert read_curve(line(s, losses[s]) for s in range(10_000)) == curve  # deterministic


def test_thin_keeps_short_curves_and_at_least_three_points() -> None:
    points = [CurvePoint(s, validation_loss=1.0 / (s + 1)) for s in range(10)]
    assert thin(points, 20) == tuple(points)
    assert len(thin(points, 1)) == 3 and thin(points, 1)[0].step == 0


# ------------------------------------------------------------------ the progress push


@dataclass
class Gateway:
    """A real HTTP server taking Pushgateway PUTs: (job, grouping labels, body)."""

    address: str
    pushes: list[tuple[str, dict[str, str], str]] = field(default_factory=list)

    def jobs(self) -> list[str]:
        return [job for job, _, _ in self.pushes]


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    received: list[tuple[str, dict[str, str], str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            parts = self.path.split("/")  # /metrics/job/<job>/<name>@base64/<value>...
            labels = {
                parts[i].removesuffix("@base64"): base64.urlsafe_b64decode(parts[i + 1]).decode()
                for i in range(4, len(parts) - 1, 2)
            }
            received.append((parts[3], labels, body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Gateway(f"127.0.0.1:{server.server_address[1]}", received)
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def gauges(body: str) -> dict[str, float]:
    """metric name -> value of a pushed body (one sample per metric)."""
    out = {}
    for text in body.splitlines():
        if text and not text.startswith("#"):
            name, value = text.rsplit(" ", 1)
            out[name.split("{", 1)[0]] = float(value)
    return out


def test_progress_goes_to_the_progress_group_and_the_result_to_its_own(
    gateway: Gateway, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {**ENV, "SCALINGSTUDY_PUSHGATEWAY": gateway.address,
           "SCALINGSTUDY_RESULT_FILE": str(tmp_path / "result.json")}  # fmt: skip
    trial = Trial.from_env(env)
    trial.progress(step=10, validation_loss=2.0, train_loss=2.2, samples_seen=640,
                   step_budget=100)  # fmt: skip
    assert gateway.jobs() == [contract.PROGRESS_PUSH_JOB]
    _, labels, body = gateway.pushes[0]
    assert labels == {"namespace": "ns", "study": "demo", "trial": "demo-d64-m8-s0"}
    assert gauges(body) == {
        "scalingstudy_trial_validation_loss": 2.0, "scalingstudy_trial_train_loss": 2.2,
        "scalingstudy_trial_step": 10.0, "scalingstudy_trial_samples_seen": 640.0,
        contract.CURVE_GAUGE: 2.0,
    }  # fmt: skip
    assert 'data_size="64",model_size="8",seed="0"' in body
    trial.progress(step=20, validation_loss=1.5)  # throttled: held for the end
    trial.report(validation_loss=1.5, parameters=10)
    assert gateway.jobs() == [contract.PROGRESS_PUSH_JOB, contract.PROGRESS_PUSH_JOB,
                              contract.PUSH_JOB]  # fmt: skip
    assert gauges(gateway.pushes[1][2])["scalingstudy_trial_step"] == 20.0
    # The curve so far rides with each progress push (the step panel), never the result.
    assert [ln.split("step=", 1)[1] for ln in gateway.pushes[1][2].splitlines()
            if ln.startswith(contract.CURVE_GAUGE)] == ['"10"} 2.0', '"20"} 1.5']  # fmt: skip
    assert contract.CURVE_GAUGE not in gateway.pushes[2][2]
    # The printed lines are the curve: read back as the trial saw it.
    curve = read_curve(capsys.readouterr().out.splitlines())
    assert [(p.step, p.validation_loss) for p in curve.points] == [(10, 2.0), (20, 1.5)]
    assert curve.step_budget == 100 and curve.points[0].samples_seen == 640


def test_progress_is_throttled_and_the_latest_is_pushed_at_the_end(gateway: Gateway) -> None:
    now = [0.0]
    push = ProgressPush({**ENV, "SCALINGSTUDY_PUSHGATEWAY": gateway.address},
                        clock=lambda: now[0])  # fmt: skip
    pushed = []
    for step in range(1, 31):  # an evaluation per second of the test's clock
        now[0] = float(step)
        pushed.append(push.offer({"step": step, "validation_loss": 1.0 / step}))
    assert [s for s, p in zip(range(1, 31), pushed, strict=True) if p] == [1, 11, 21]
    assert push.flush() and not push.flush()  # the last one, once
    steps = [gauges(body)["scalingstudy_trial_step"] for _, _, body in gateway.pushes]
    assert steps == [1, 11, 21, 30]
    assert set(gateway.jobs()) == {contract.PROGRESS_PUSH_JOB}


def test_no_gateway_no_push_and_a_line_without_numbers_pushes_nothing(gateway: Gateway) -> None:
    assert not ProgressPush(ENV).offer({"step": 1, "validation_loss": 1.0})
    push = ProgressPush({**ENV, "SCALINGSTUDY_PUSHGATEWAY": gateway.address})
    assert not push.offer({"note": "warming up", "validation_loss": None})
    assert gateway.pushes == []


def test_a_dead_gateway_costs_one_bounded_attempt_per_interval_and_never_raises(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]
    now = [0.0]
    push = ProgressPush({**ENV, "SCALINGSTUDY_PUSHGATEWAY": f"127.0.0.1:{port}"},
                        clock=lambda: now[0])  # fmt: skip
    for step in range(25):
        now[0] = float(step)
        assert not push.offer({"step": step, "validation_loss": 1.0})
    assert push.failed == 3 and push.pushed == 0  # at 0, 10 and 20: no retry in between
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and json.loads(errors[0])["event"] == "progress_push_failed"


def test_the_built_in_trainers_log_is_its_curve_and_its_evaluations_push_progress(
    gateway: Gateway, tmp_path: Path
) -> None:
    result = tmp_path / "result.json"
    env = {**os.environ, **ENV,
           "SCALINGSTUDY_TASK": json.dumps({"name": "teacher-student",
                                            "options": {"inputDim": 4, "teacherWidth": 8}}),
           "SCALINGSTUDY_TRAINING": json.dumps({"minSteps": 20, "maxSteps": 40,
                                                "evalEvery": 10}),
           "SCALINGSTUDY_DATA_SIZE": "128", "SCALINGSTUDY_RESULT_FILE": str(result),
           "SCALINGSTUDY_PUSHGATEWAY": gateway.address, "OMP_NUM_THREADS": "1"}  # fmt: skip
    proc = run_trainer(env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    evals = [json.loads(x) for x in proc.stdout.splitlines() if '"event": "eval"' in x]
    curve = read_curve(proc.stdout.splitlines())
    assert [(p.step, p.validation_loss, p.train_loss, p.samples_seen) for p in curve.points] == [
        (e["step"], e["validation_loss"], e["train_loss"], e["samples_seen"]) for e in evals
    ]
    assert curve.step_budget == 40 and len(curve.points) == 4
    assert all(p.seconds is not None and p.seconds >= 0 for p in curve.points)
    # The result is the lowest evaluation; progress went to its own group, the last
    # evaluation included (the throttle held it back until training ended).
    assert json.loads(result.read_text())["validation_loss"] == curve.best()
    progress = [gauges(b) for job, _, b in gateway.pushes if job == contract.PROGRESS_PUSH_JOB]
    assert progress and progress[-1]["scalingstudy_trial_step"] == 40.0
    assert gateway.jobs()[-1] == contract.PUSH_JOB
    assert gateway.jobs().count(contract.PUSH_JOB) == 1


def test_a_callbacks_diverged_evaluation_is_a_non_finite_point_of_its_curve(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """It printed ``"validation_loss": null``: the curve lost the divergence that pruning
    stops a trial for (a non-finite evaluation)."""
    from scalingstudy_sdk.integrations.common import Tracker

    tracker = Tracker(Trial.from_env(ENV))
    tracker.evaluated(10, 2.0, step_budget=100)
    tracker.evaluated(20, math.nan, step_budget=100)
    tracker.evaluated(30, math.nan, step_budget=100)  # logged once, at the first
    curve = read_curve(capsys.readouterr().out.splitlines())
    assert [p.step for p in curve.points] == [10, 20] and curve.step_budget == 100
    assert math.isnan(curve.points[1].validation_loss or 0.0) and curve.best() == 2.0


# ------------------------------------------------------------------ attempts in one log
def test_an_attempt_resumed_from_a_checkpoint_continues_the_curve() -> None:
    """The runner appends each attempt to the trial's log: a resumed attempt keeps the
    points up to where it resumed and drops the abandoned ones after (review, issue 38)."""
    first = [line(s, 10.0 / s) for s in range(10, 80, 10)]  # ran to step 70, then stopped
    start = json.dumps({"event": "start", "step_budget": 200, "resumed_from_step": 50})
    second = [line(s, 9.0 / s) for s in range(60, 110, 10)]
    curve = read_curve([*first, start, *second])
    assert [p.step for p in curve.points] == list(range(10, 110, 10))
    assert [p.validation_loss for p in curve.points][:5] == [10.0 / s for s in range(10, 60, 10)]
    assert curve.points[5].validation_loss == 9.0 / 60 and curve.step_budget == 200


def test_a_fresh_attempt_replaces_the_failed_one_it_follows() -> None:
    """A retry from scratch (a start event at step 0, or a new process's SDK run token)
    drops every point of the attempt before it."""
    failed = [line(s, 5.0, run="a") for s in range(10, 90, 10)]
    retry = [line(s, 1.0, run="b") for s in range(10, 40, 10)]
    assert [p.validation_loss for p in read_curve([*failed, *retry]).points] == [1.0] * 3
    fresh = json.dumps({"event": "start", "resumed_from_step": 0})
    plain = [line(s, 1.0) for s in range(10, 40, 10)]
    assert [p.step for p in read_curve([*failed, fresh, *plain]).points] == [10, 20, 30]


def test_a_million_evaluations_are_read_in_bounded_memory() -> None:
    reader = CurveReader()
    for s in range(1, 50_001):
        reader.add(line(s, 1.0 + 1.0 / s))
        assert len(reader.by_step) <= HELD_POINTS
    curve = reader.curve()
    assert curve.points[0].step == 1 and curve.points[-1].step == 50_000
    assert len(curve.points) <= MAX_POINTS


def test_a_budget_that_is_not_positive_is_no_budget() -> None:
    assert read_curve([line(1, 1.0, step_budget=-1), line(2, math.nan)]).step_budget is None
    assert read_curve([line(1, 1.0, step_budget=0)]).step_budget is None


def test_a_gateway_that_answers_a_byte_at_a_time_does_not_hold_training() -> None:
    """A push waits for ``timeout`` at most, however slowly the peer answers (urllib's
    timeout is per read: a byte every second would hold it for minutes); the hanging
    attempt is a failure and no second one starts beside it (review, issue 38)."""
    release = threading.Event()
    connections: list[socket.socket] = []

    def drip(server: socket.socket) -> None:
        conn, _ = server.accept()
        connections.append(conn)
        conn.recv(65536)
        answer = b"HTTP/1.1 200 OK\r\n" + b"X-Slow: " + b"y" * 2000
        for byte in answer:  # a byte every 0.1 s: no single read waits out the timeout
            if release.wait(0.1):
                break
            conn.sendall(bytes([byte]))
        conn.close()

    with socket.create_server(("127.0.0.1", 0)) as server:
        threading.Thread(target=drip, args=(server,), daemon=True).start()
        now = [0.0]
        address = f"127.0.0.1:{server.getsockname()[1]}"
        push = ProgressPush({**ENV, "SCALINGSTUDY_PUSHGATEWAY": address},
                            timeout=0.5, clock=lambda: now[0])  # fmt: skip
        assert not push.offer({"step": 1, "validation_loss": 1.0})
        assert not release.is_set() and push.sender is not None and push.sender.is_alive()
        assert push.failed == 1 and push.pushed == 0  # given up while the peer still drips
        now[0] = 100.0
        assert not push.offer({"step": 2, "validation_loss": 0.9})  # not beside the hanging one
        assert len(connections) == 1
        release.set()
        push.sender.join(5)
