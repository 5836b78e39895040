"""`scalingstudy operator`: kopf watches studies and their Jobs and wakes the controller.

Only event handlers are registered (no create/update/daemon handlers), so kopf stores
nothing on the objects (no annotations, no finalizers): all state is in the cluster
(Jobs, status.results) and the controller recomputes it on every pass.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf
from aiohttp import web

from scalingstudy.cluster.actions import sweep_pushgateway
from scalingstudy.cluster.controller import Controller, ControllerConfig
from scalingstudy.cluster.kube import Kube, load_config
from scalingstudy.cluster.leader import LeaderElector, LeaseTiming
from scalingstudy.cluster.manifests import LABEL_STUDY
from scalingstudy.cluster.metrics import OperatorMetrics, metrics_app
from scalingstudy.cluster.prometheus import Prometheus
from scalingstudy.cluster.workers import StudyWorkers
from scalingstudy.spec import GROUP, PLURAL, VERSION

log = logging.getLogger("scalingstudy.operator")


@dataclass(frozen=True)
class OperatorOptions:
    namespaces: tuple[str, ...] = ()
    all_namespaces: bool = False
    prometheus_url: str = ""
    metrics_port: int = 8080
    metrics_host: str = "0.0.0.0"
    kubeconfig: str | None = None
    controller: ControllerConfig = field(default_factory=ControllerConfig)
    #: Leader election (None: this process always acts; run one replica only).
    leader: LeaderOptions | None = None


@dataclass(frozen=True)
class LeaderOptions:
    namespace: str
    name: str = "scalingstudy-operator"
    timing: LeaseTiming = field(default_factory=LeaseTiming)


#: Exit status after losing the Lease: the pod restarts as a standby.
EXIT_LOST_LEASE = 3


def identity() -> str:
    """Who holds the Lease: the pod's name in a cluster, else host and process."""
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


def build_registry(
    workers: StudyWorkers, namespaced: bool, on_stop: Callable[[], None] | None = None
) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    async def study_event(type: str, name: str, namespace: str | None, **_: Any) -> None:
        if namespace is None:
            return
        if type == "DELETED":
            workers.drop(namespace, name)
        else:
            workers.poke(namespace, name)

    @kopf.on.event("batch", "v1", "jobs", labels={LABEL_STUDY: kopf.PRESENT}, registry=registry)
    async def job_event(labels: Mapping[str, str], namespace: str | None, **_: Any) -> None:
        if namespace is not None:
            workers.poke(namespace, labels[LABEL_STUDY])

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # The same credentials as the API client: the pod's service account, else KUBECONFIG.
        info = kopf.login_with_service_account(**kwargs)
        return info or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.startup(registry=registry)
    async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.posting.level = logging.WARNING
        settings.watching.server_timeout = 300
        settings.watching.client_timeout = 330
        settings.networking.request_timeout = 60
        # A namespaced install has no right to list namespaces (least privilege): serve
        # exactly the named ones, with the fully specified resources of the handlers.
        settings.scanning.disabled = namespaced

    @kopf.on.cleanup(registry=registry)
    async def shutdown(**_: Any) -> None:
        await workers.stop()
        if on_stop is not None:  # after the last pass: nothing new is held after it
            on_stop()

    return registry


async def serve(options: OperatorOptions) -> None:
    if options.kubeconfig:
        os.environ["KUBECONFIG"] = options.kubeconfig
    kube = Kube(load_config(options.kubeconfig))
    prometheus = Prometheus(options.prometheus_url, options.controller.job.pushgateway_url)
    metrics = OperatorMetrics()
    config = options.controller
    controller = Controller(kube, prometheus, metrics, config)
    workers = StudyWorkers(
        controller.reconcile, controller.forget, metrics, kube.requests,
        config.resync_seconds, config.batch_window,
    )  # fmt: skip
    stale_after = 3 * config.resync_seconds + 60
    runner = web.AppRunner(metrics_app(metrics, lambda: workers.health.problem(stale_after)))
    await runner.setup()
    site = web.TCPSite(runner, options.metrics_host, options.metrics_port)
    await site.start()
    log.info("metrics and /healthz on port %s", options.metrics_port)
    elector = None
    if options.leader is not None:
        lead = options.leader
        elector = LeaderElector(kube, lead.namespace, lead.name, identity(), lead.timing)
        await elector.acquire()  # a standby waits here, serving /metrics and /healthz
        asyncio.create_task(elector.keep(_lost))  # noqa: RUF006 (runs until the process ends)
    served = None if options.all_namespaces else set(options.namespaces)
    sweeper = asyncio.create_task(sweep_forever(kube, prometheus, served, config.sweep_seconds))
    try:
        await kopf.operator(
            registry=build_registry(
                workers, namespaced=not options.all_namespaces, on_stop=kube.flush_all_events
            ),
            standalone=True,
            clusterwide=options.all_namespaces,
            namespaces=list(options.namespaces),
        )
    finally:
        sweeper.cancel()
        if elector is not None:
            await asyncio.to_thread(elector.release)
        await runner.cleanup()


def _lost() -> None:
    """No longer the leader: stop acting at once (a pass in flight must not write)."""
    log.error("lost the leader Lease; exiting to restart as a standby")
    logging.shutdown()
    os._exit(EXIT_LOST_LEASE)


async def sweep_forever(
    kube: Kube, prometheus: Prometheus, served: set[str] | None, every: float
) -> None:
    """At start and then every ``every`` seconds: forget the Pushgateway groups nothing
    will read (of studies deleted while no operator watched, whose groups would stay
    forever; progress pushed after its trial was recorded, which the dashboard would show
    as running)."""
    while True:
        try:
            gone = await asyncio.to_thread(sweep_pushgateway, kube, prometheus, served)
            if gone:
                log.info("deleted %d Pushgateway group(s) nothing will read", gone)
        except Exception:  # the sweep is housekeeping: never let it stop the operator
            log.exception("Pushgateway sweep failed; retrying later")
        await asyncio.sleep(every)


def run(options: OperatorOptions) -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Per-request and per-handler INFO lines drown what matters at cluster scale.
    for noisy in ("httpx", "kopf.objects", "kopf.activities.startup"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    asyncio.run(serve(options))
