"""The trainer's progress on /metrics while it trains (real HTTP on loopback)."""

from __future__ import annotations

import socket

import httpx

from scalingstudy_trainer.progress import Progress

ENV = {
    "SCALINGSTUDY_NAMESPACE": "ml",
    "SCALINGSTUDY_STUDY": "demo",
    "SCALINGSTUDY_TRIAL": "demo-d100-m4-s0",
    "SCALINGSTUDY_DATA_SIZE": "100",
    "SCALINGSTUDY_MODEL_SIZE": "4",
    "SCALINGSTUDY_SEED": "0",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_progress_is_served_with_trial_labels() -> None:
    progress = Progress(ENV)
    port = free_port()
    assert progress.serve(port)
    progress.on_event("start", {})
    progress.on_event(
        "eval", {"step": 50, "samples_seen": 1600, "train_loss": 0.5, "validation_loss": 0.75}
    )
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    labels = (
        'data_size="100",model_size="4",namespace="ml",seed="0",study="demo",'
        'trial="demo-d100-m4-s0"'
    )
    assert f"scalingstudy_trial_step{{{labels}}} 50.0" in text
    assert f"scalingstudy_trial_validation_loss{{{labels}}} 0.75" in text
    assert f"scalingstudy_trial_samples_seen{{{labels}}} 1600.0" in text
    assert "scalingstudy_trial_samples_per_second{" in text
    # The built-in trainer logs its rate since the last evaluation (right after a resume too).
    progress.on_event("eval", {"step": 100, "samples_seen": 3200, "samples_per_second": 123.5})
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert f"scalingstudy_trial_samples_per_second{{{labels}}} 123.5" in text
    # A second trainer on the same port (pods sharing a host here) loses only the view.
    assert not Progress(ENV).serve(port)
