"""What the operator remembers of a study belongs to that study (its uid), not to its
name: one deleted and created again while the operator missed the deletion starts with
nothing of its predecessor's (issue 42). The Controller is built with real clients that
never connect: the method under test reads no cluster."""

from __future__ import annotations

from kubernetes import client

from scalingstudy.cluster.controller import Controller, ControllerConfig
from scalingstudy.cluster.kube import Kube
from scalingstudy.cluster.metrics import OperatorMetrics
from scalingstudy.cluster.prometheus import Prometheus

KEY = ("ml", "sweep")


def _controller() -> Controller:
    return Controller(Kube(client.ApiClient()), Prometheus("http://127.0.0.1:9", ""),
                      OperatorMetrics(), ControllerConfig())  # fmt: skip


def test_a_study_created_again_under_its_name_starts_with_no_memory() -> None:
    c = _controller()
    c._same_study(*KEY, "uid-1")
    c.fit_notes[KEY] = "the fit timed out; tried again in 40 s"
    c.failed_fits[KEY] = ("digest", "the fit raised")
    c.taken[KEY] = frozenset({"sweep-d100-m4-s0"})
    c.last_fit[KEY] = 123.0
    c._same_study(*KEY, "uid-1")  # the same study: kept
    assert c.fit_notes[KEY] and c.failed_fits[KEY] and c.taken[KEY] and c.last_fit[KEY]
    c._same_study(*KEY, "uid-2")  # another study of the same name: forgotten
    assert KEY not in c.fit_notes and KEY not in c.failed_fits
    assert KEY not in c.taken and KEY not in c.last_fit
    assert c.uids[KEY] == "uid-2"
