"""A test node agent: the kubelet's part of the pod lifecycle, with local processes.

There is no kubelet and no container runtime on our machines. This agent registers one
Node (with CPU, memory and `nvidia.com/gpu` capacity), binds pending pods to it, runs
each pod's single container `command` + `args` with its `env` as a process in this
Python environment, and reports back what a kubelet would: Running, then the exit code,
the termination message and the phase. Deleting a pod (Job suspend, Job deletion,
garbage collection) terminates its process with SIGTERM, then SIGKILL after the grace
period. The image is ignored. A pod of the built-in trainer (`scalingstudy-trainer`)
is forked from one warm process that imported torch once, as `scalingstudy run` forks
its trials (see `Agent.starter`).

Paths inside the "container" are mapped onto the state folder: the termination-message
path becomes a per-pod file and every volume mount a folder (emptyDir per pod, a
persistentVolumeClaim per claim so a retried pod sees its checkpoint, hostPath as is);
env values and args that name such a path are rewritten.

Names. Every pod shares this machine's network (one IP, 127.0.0.1). There is no cluster
DNS: a pod with a `subdomain` (the pods of an Indexed Job behind a headless Service)
gets what a kubelet and cluster DNS would give it, as its own /etc/hosts (bind-mounted
in a private mount namespace, as a kubelet mounts the hosts file it manages): the
stable hostname `<job>-<index>.<subdomain>[.<ns>.svc[.cluster.local]]` of every index of
its Job, its own hostname and `hostAliases`, all on 127.0.0.1. It starts once that
Service exists (cluster DNS has no record before). Because the pods share one network
namespace, two pods cannot listen on one port at once (pod 0's rendezvous port): one
multi-pod trial at a time per test node.

In-cluster identity. A pod that mounts a service account (the ServiceAccount admission
plugin's projected `kube-api-access-*` volume) gets what a kubelet writes there: a token
from the TokenRequest API bound to the pod, the `kube-root-ca.crt` ConfigMap's CA (the
controller-manager publishes the CA that signed the API server's certificate) and its
namespace, at the fixed /var/run/secrets/kubernetes.io/serviceaccount (bind-mounted in a
private mount namespace, see pod_mounts.py); KUBERNETES_SERVICE_HOST/_PORT name the API
server, and `kubernetes.default.svc` resolves, in the pod's /etc/hosts, to the agent's
relay on port 443 (kube-proxy's part, see service_proxy.py). So the chart's Deployment
runs `scalingstudy operator` on its own service account.

Test-only; nothing here ships in the product.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import datetime as dt
import json
import os
import queue
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from scalingstudy.local.processes import TrialProcess
from scalingstudy.local.warm import WarmStarter, WarmStartError
from scalingstudy.local.warm import available as warm_start_available
from tests.harness.container_logs import ContainerLog
from tests.harness.container_logs import serve as serve_logs
from tests.harness.pod_mounts import FixedMount, holds_token, namespace_script, token_request
from tests.harness.service_proxy import bind_service_address, hosts_line
from tests.harness.service_proxy import serve as serve_kubernetes_service

NODE = "scalingstudy-test-node"
CAPACITY = {"cpu": "16", "memory": "64Gi", "pods": "110", "nvidia.com/gpu": "8"}
MESSAGE_LIMIT = 4096
Pod = dict[str, Any]


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def client_from_kubeconfig(path: Path) -> httpx.Client:
    cfg = yaml.safe_load(path.read_text())
    cluster = cfg["clusters"][0]["cluster"]
    user = cfg["users"][0]["user"]
    tls = ssl.create_default_context(cafile=cluster["certificate-authority"])
    tls.load_cert_chain(user["client-certificate"], user["client-key"])
    return httpx.Client(base_url=cluster["server"], verify=tls, timeout=30)


def _die_with_agent() -> None:  # pragma: no cover - runs in the child
    """A pod's process must not outlive a killed agent (a kubelet's would not either)."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class MountNotReadyError(Exception):
    """A volume's source is not there yet: the pod waits, as with a kubelet."""


@dataclass
class Proc:
    pod: Pod
    popen: TrialProcess
    dir: Path
    message_file: Path
    started: str
    stop_at: float | None = None  # SIGKILL deadline once terminating
    deleting: bool = False
    #: The readiness probe's state (Agent.probe_readiness): Ready as last reported, the
    #: next probe's time, failures in a row.
    ready: bool = False
    probe_at: float = 0.0
    failures: int = 0


@dataclass
class Agent:
    api: httpx.Client
    state: Path
    slots: int
    pods: dict[str, Pod] = field(default_factory=dict)  # uid -> latest object
    procs: dict[str, Proc] = field(default_factory=dict)
    done: set[str] = field(default_factory=set)  # uids whose terminal status we wrote
    bound: set[str] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)  # uids we finalised (finalizers may linger)
    #: Terminal statuses not written yet (the API server was away): retried every step
    #: until they are, as a kubelet's status manager does.
    unwritten: dict[str, Callable[[], None]] = field(default_factory=dict)
    wake: threading.Event = field(default_factory=threading.Event)
    events: queue.Queue[tuple[str, Pod]] = field(default_factory=queue.Queue)
    #: Pods of the built-in trainer fork from one process that imported torch once
    #: (scalingstudy.local.warm, as `scalingstudy run` does): on a cluster each pod is a
    #: fresh container, but here a pod's fresh Python only costs 4 s of the 2 cores the
    #: whole suite shares, and what the operator sees (exit code, termination message,
    #: logs, signals to the pod's group) is the same.
    starter: WarmStarter | None = None
    #: The port this node serves container logs on (the kubelet's), 0: none. The API
    #: server finds it in the Node's status, as it finds a kubelet's.
    log_port: int = 0
    #: (namespace, pod name) -> its container's log, for the log endpoint's thread.
    logs: dict[tuple[str, str], ContainerLog] = field(default_factory=dict)
    #: The /etc/hosts line of the `kubernetes` Service's names (tests/harness/
    #: service_proxy.py), for pods that mount a service account; empty: none.
    service_hosts: str = ""

    # -- node ------------------------------------------------------------------------
    def register(self) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": NODE, "labels": {"kubernetes.io/hostname": NODE}},
        }
        r = self.api.post("/api/v1/nodes", json=body)
        if r.status_code not in (201, 409):
            raise SystemExit(f"agent: cannot register the node: HTTP {r.status_code}: {r.text}")
        status = {
            "status": {
                "capacity": CAPACITY,
                "allocatable": CAPACITY,
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "TestAgentReady",
                        "message": "test node agent runs pods as local processes",
                        "lastHeartbeatTime": now(),
                        "lastTransitionTime": now(),
                    }
                ],
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": self.log_port}},
                "nodeInfo": {
                    "architecture": "amd64",
                    "operatingSystem": "linux",
                    "kubeletVersion": "test-agent",
                    "containerRuntimeVersion": "local-process://0",
                    "bootID": "",
                    "kernelVersion": "",
                    "kubeProxyVersion": "",
                    "machineID": "",
                    "osImage": "",
                    "systemUUID": "",
                },
            }
        }
        self.patch(f"/api/v1/nodes/{NODE}/status", status)

    def patch(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return self.api.patch(
            path, content=json.dumps(body), headers={"Content-Type": "application/merge-patch+json"}
        )

    # -- watch -----------------------------------------------------------------------
    def watch_forever(self, kubeconfig: Path) -> None:
        """List then watch all pods; on any break, list again (level-triggered)."""
        api = client_from_kubeconfig(kubeconfig)
        while True:
            try:
                listing = api.get("/api/v1/pods").raise_for_status().json()
                seen = set()
                for pod in listing["items"]:
                    seen.add(pod["metadata"]["uid"])
                    self.events.put(("MODIFIED", pod))
                self.events.put(("SYNC", {"uids": sorted(seen)}))
                self.wake.set()
                rv = listing["metadata"]["resourceVersion"]
                params = {"watch": "1", "resourceVersion": rv, "allowWatchBookmarks": "true",
                          "timeoutSeconds": "120"}  # fmt: skip
                with api.stream("GET", "/api/v1/pods", params=params, timeout=None) as r:
                    r.raise_for_status()
                    for line in r.iter_lines():
                        if not line:
                            continue
                        ev = json.loads(line)
                        if ev["type"] == "ERROR":
                            break
                        if ev["type"] != "BOOKMARK":
                            self.events.put((ev["type"], ev["object"]))
                            self.wake.set()
            except (httpx.HTTPError, json.JSONDecodeError, KeyError) as e:
                print(f"agent: watch restarts after {e!r}", flush=True)
                time.sleep(0.5)

    def drain_events(self) -> None:
        while True:
            try:
                kind, obj = self.events.get_nowait()
            except queue.Empty:
                return
            if kind == "SYNC":
                for uid in set(self.pods) - set(obj["uids"]):
                    self.forget(uid)
            elif kind == "DELETED":
                self.forget(obj["metadata"]["uid"])
            else:
                self.pods[obj["metadata"]["uid"]] = obj

    def forget(self, uid: str) -> None:
        pod = self.pods.pop(uid, None)
        if pod is not None:  # a kubelet's logs of a deleted pod go with it
            self.logs.pop((pod["metadata"]["namespace"], pod["metadata"]["name"]), None)
        proc = self.procs.get(uid)
        if proc is not None and proc.stop_at is None:
            self.terminate(proc, grace=0)
        if proc is None:
            self.done.discard(uid)
            self.bound.discard(uid)
            self.deleted.discard(uid)

    # -- the pod lifecycle -------------------------------------------------------------
    def step(self) -> None:
        self.drain_events()
        for uid, write in list(self.unwritten.items()):
            if uid not in self.pods:
                del self.unwritten[uid]
                continue
            try:
                write()
                del self.unwritten[uid]
            except httpx.HTTPError as e:
                print(f"agent: status write still failing: {e!r}", flush=True)
        for uid, pod in list(self.pods.items()):
            try:
                self.handle(uid, pod)
            except httpx.HTTPError as e:
                print(f"agent: {pod['metadata']['name']}: {e!r}", flush=True)
        self.reap()
        self.probe_readiness()

    def handle(self, uid: str, pod: Pod) -> None:
        meta, spec, status = pod["metadata"], pod["spec"], pod.get("status", {})
        path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
        if not spec.get("nodeName"):
            if uid not in self.bound and not meta.get("deletionTimestamp"):
                self.bind(pod, path)
            return
        if spec["nodeName"] != NODE:
            return
        proc = self.procs.get(uid)
        if meta.get("deletionTimestamp"):
            if proc is not None:
                if proc.stop_at is None:
                    self.terminate(proc, grace=spec.get("terminationGracePeriodSeconds", 30))
                    proc.deleting = True
                return
            if uid not in self.deleted:
                options = {"gracePeriodSeconds": 0, "preconditions": {"uid": uid}}
                r = self.api.request("DELETE", path, json=options)
                if r.status_code not in (200, 404, 409):
                    r.raise_for_status()
                self.deleted.add(uid)
            return
        if status.get("phase") in ("Succeeded", "Failed") or uid in self.done or proc:
            if proc and self.deadline_passed(proc):
                self.terminate(proc, grace=0)
            return
        running = sum(1 for p in self.procs.values() if p.stop_at is None)
        if running < self.slots:
            self.launch(uid, pod, path)

    def bind(self, pod: Pod, path: str) -> None:
        meta = pod["metadata"]
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": NODE},
        }
        r = self.api.post(f"{path}/binding", json=binding)
        if r.status_code in (201, 409):
            self.bound.add(meta["uid"])
        elif r.status_code != 404:
            r.raise_for_status()

    def deadline_passed(self, proc: Proc) -> bool:
        limit = proc.pod["spec"].get("activeDeadlineSeconds")
        if limit is None:
            return False
        started = dt.datetime.strptime(proc.started, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
        return (dt.datetime.now(dt.UTC) - started).total_seconds() > limit

    def launch(self, uid: str, pod: Pod, path: str) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        container = spec["containers"][0]
        pod_dir = self.state / meta["namespace"] / f"{meta['name']}-{uid[:8]}"
        pod_dir.mkdir(parents=True, exist_ok=True)
        message_file = pod_dir / "termination-log"
        message_file.write_text("")
        try:
            mounts = self.mount_map(pod, container, pod_dir)
        except MountNotReadyError as e:
            print(f"agent: {meta['name']}: {e}; retrying", flush=True)
            return
        message_path = container.get("terminationMessagePath", "/dev/termination-log")
        mounts[message_path] = str(message_file)
        env = self.environment(pod, container, mounts, message_path)
        argv = [*container.get("command", []), *container.get("args", [])]
        argv = [expand(remap(a, mounts, message_path), env) for a in argv]
        try:
            hosts = self.hosts_file(pod, pod_dir)
        except MountNotReadyError as e:
            print(f"agent: {meta['name']}: {e}; retrying", flush=True)
            return
        fixed = self.fixed_mounts(pod, container, mounts)
        if fixed and self.service_hosts:
            hosts = self.with_service_names(pod, pod_dir, hosts)
        if argv:
            argv = [*namespace_script(hosts, fixed, pod_dir), *argv]
        started = now()
        if not argv:
            self.fail_start(uid, path, pod, started, pod_dir,
                            "test agent: the container has no command; set one")  # fmt: skip
            return
        workdir = remap(container.get("workingDir", ""), mounts, message_path) or str(pod_dir)
        Path(workdir).mkdir(parents=True, exist_ok=True)
        log = pod_dir / "log"
        try:
            process = self.fork_trainer(argv, env, log, Path(workdir), hosts) or spawn(
                argv, env, Path(workdir), log
            )
        except OSError as e:
            self.fail_start(uid, path, pod, started, pod_dir,
                            f"test agent: cannot start {argv[0]!r}: {e.strerror}")  # fmt: skip
            return
        probe = container.get("readinessProbe") or {}
        ready = "httpGet" not in probe  # other kinds of probe are not run: Ready at once
        delay = probe.get("initialDelaySeconds", 0)
        self.procs[uid] = Proc(pod, process, pod_dir, message_file, started, ready=ready,
                               probe_at=time.monotonic() + delay)  # fmt: skip
        self.keep_log(pod, log, lambda: uid in self.procs)
        status = self.pod_status(pod, started, running=True, ready=ready)
        self.patch(path + "/status", {"status": status})

    def fail_start(self, uid: str, path: str, pod: Pod, started: str, pod_dir: Path,
                   message: str) -> None:  # fmt: skip
        """A container that cannot start ends at once with 127, as a kubelet's does."""
        message_file = pod_dir / "termination-log"
        message_file.write_text(message)
        self.keep_log(pod, pod_dir / "log", lambda: False)
        self.write_terminated(path, pod, 127, started, message_file, pod_dir / "log")
        self.done.add(uid)

    def keep_log(self, pod: Pod, log: Path, running: Callable[[], bool]) -> None:
        """Where the log endpoint finds the pod's log (until the pod is gone)."""
        meta = pod["metadata"]
        container = pod["spec"]["containers"][0]["name"]
        self.logs[(meta["namespace"], meta["name"])] = ContainerLog(
            container, log, time.time(), running
        )

    def find_log(self, namespace: str, pod: str) -> ContainerLog | None:
        return self.logs.get((namespace, pod))

    def fork_trainer(
        self, argv: list[str], env: dict[str, str], log: Path, workdir: Path, hosts: Path | None
    ) -> TrialProcess | None:
        """The pod's process forked from the warm trainer when it runs the built-in
        trainer (and needs no hosts file of its own); None: start it fresh."""
        if hosts is not None or Path(argv[0]).name != "scalingstudy-trainer":
            return None
        if self.starter is None:
            if not warm_start_available():
                return None
            self.starter = WarmStarter(self.state / "warm-start.log")
        try:
            return self.starter.start(argv[1:], env, log, log, cwd=workdir)
        except WarmStartError:
            return None

    def mount_map(self, pod: Pod, container: dict[str, Any], pod_dir: Path) -> dict[str, str]:
        volumes = {v["name"]: v for v in pod["spec"].get("volumes", [])}
        out: dict[str, str] = {}
        for m in container.get("volumeMounts", []):
            vol = volumes.get(m["name"], {})
            if "configMap" in vol:
                local = pod_dir / "volumes" / m["name"]
                self.project_config_map(pod, vol["configMap"], local)
            elif "hostPath" in vol:
                local = Path(vol["hostPath"]["path"])
            elif "projected" in vol:
                local = pod_dir / "volumes" / m["name"]
                self.project(pod, vol["projected"], local)
            elif "persistentVolumeClaim" in vol:
                claim = vol["persistentVolumeClaim"]["claimName"]
                local = self.state / pod["metadata"]["namespace"] / "pvc" / claim
            else:
                local = pod_dir / "volumes" / m["name"]
            if m.get("subPath"):
                local = local / m["subPath"]
            local.mkdir(parents=True, exist_ok=True)
            out[m["mountPath"]] = str(local)
        return out

    def hosts_file(self, pod: Pod, pod_dir: Path) -> Path | None:
        """The pod's /etc/hosts when it needs names of its own (see the module's doc)."""
        meta, spec = pod["metadata"], pod["spec"]
        sub, aliases = spec.get("subdomain"), spec.get("hostAliases") or []
        if not sub and not aliases:
            return None
        ns = meta["namespace"]
        lines = ["127.0.0.1 localhost", f"127.0.0.1 {socket.gethostname()}"]
        if sub:
            r = self.api.get(f"/api/v1/namespaces/{ns}/services/{sub}")
            if r.status_code == 404:
                raise MountNotReadyError(f"no Service {sub} yet (no DNS names for its pods)")
            r.raise_for_status()
            own = spec.get("hostname") or meta["name"]
            for host in [own, *self.job_hostnames(pod)]:
                names = [f"{host}.{sub}", f"{host}.{sub}.{ns}.svc",
                         f"{host}.{sub}.{ns}.svc.cluster.local"]  # fmt: skip
                lines.append(" ".join(["127.0.0.1", *names, *([host] if host == own else [])]))
        for alias in aliases:
            lines.append(" ".join([alias["ip"], *alias.get("hostnames", [])]))
        path = pod_dir / "hosts"
        path.write_text("\n".join(lines) + "\n")
        return path

    def job_hostnames(self, pod: Pod) -> list[str]:
        """`<job>-<i>` for every index of the Indexed Job that owns the pod."""
        meta = pod["metadata"]
        owner = next((o for o in meta.get("ownerReferences") or [] if o.get("kind") == "Job"), None)
        if owner is None:
            return []
        r = self.api.get(f"/apis/batch/v1/namespaces/{meta['namespace']}/jobs/{owner['name']}")
        if r.status_code != 200:
            return []
        job = r.json()["spec"]
        if job.get("completionMode") != "Indexed":
            return []
        return [f"{owner['name']}-{i}" for i in range(int(job.get("completions") or 1))]

    def project(self, pod: Pod, projected: dict[str, Any], local: Path) -> None:
        """A projected volume's files, as a kubelet writes them: a service-account token
        from the TokenRequest API bound to the pod, ConfigMap and Secret keys, downward
        API fields. (A kubelet renews the token at 80% of its life; pods here live
        minutes, tokens an hour or more: written once.)"""
        local.mkdir(parents=True, exist_ok=True)
        ns = pod["metadata"]["namespace"]
        for source in projected.get("sources") or []:
            if "serviceAccountToken" in source:
                sa = pod["spec"].get("serviceAccountName") or "default"
                token = source["serviceAccountToken"]
                r = self.api.post(f"/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token",
                                  json=token_request(pod, token))  # fmt: skip
                if r.status_code == 404:
                    raise MountNotReadyError(f"service account {sa} not found")
                r.raise_for_status()
                (local / token["path"]).write_text(r.json()["status"]["token"])
            for kind, resource in (("configMap", "configmaps"), ("secret", "secrets")):
                if kind in source:
                    self.project_keys(pod, resource, source[kind], local)
            for item in (source.get("downwardAPI") or {}).get("items") or []:
                (local / item["path"]).write_text(self.value_from(pod, item))

    def project_keys(self, pod: Pod, resource: str, source: dict[str, Any], local: Path) -> None:
        """A projected ConfigMap's or Secret's keys (``items``: only those, at their paths)."""
        ns = pod["metadata"]["namespace"]
        r = self.api.get(f"/api/v1/namespaces/{ns}/{resource}/{source['name']}")
        if r.status_code == 404:
            if source.get("optional"):
                return
            raise MountNotReadyError(f"{resource[:-1]} {source['name']} not found")
        r.raise_for_status()
        data: dict[str, str] = r.json().get("data") or {}
        if resource == "secrets":
            data = {k: base64.b64decode(v).decode() for k, v in data.items()}
        items = source.get("items") or [{"key": k, "path": k} for k in data]
        for item in items:
            if item["key"] in data:
                (local / item["path"]).write_text(data[item["key"]])

    def fixed_mounts(
        self, pod: Pod, container: dict[str, Any], mounts: dict[str, str]
    ) -> list[FixedMount]:
        """The mounts a program reads at their own paths, which no rewriting of env and
        args reaches: the service account's (see tests/harness/pod_mounts.py)."""
        volumes = {v["name"]: v for v in pod["spec"].get("volumes", [])}
        return [
            FixedMount(Path(mounts[m["mountPath"]]), m["mountPath"])
            for m in container.get("volumeMounts", [])
            if holds_token(volumes.get(m["name"], {}))
        ]

    def with_service_names(self, pod: Pod, pod_dir: Path, hosts: Path | None) -> Path:
        """The pod's /etc/hosts with the names cluster DNS gives the `kubernetes` Service
        (what kopf's in-cluster login connects to): the pod's own file if it has one, else
        a kubelet's (localhost and the pod's hostname)."""
        own = pod["spec"].get("hostname") or pod["metadata"]["name"]
        base = hosts.read_text() if hosts is not None else f"127.0.0.1 localhost\n127.0.0.1 {own}\n"
        path = pod_dir / "hosts"
        path.write_text(f"{base}{self.service_hosts}\n")
        return path

    def project_config_map(self, pod: Pod, source: dict[str, Any], local: Path) -> None:
        """Each key of the ConfigMap as a file, as a kubelet projects it. A missing one
        keeps the pod from starting (a kubelet reports FailedMount and retries)."""
        ns = pod["metadata"]["namespace"]
        r = self.api.get(f"/api/v1/namespaces/{ns}/configmaps/{source['name']}")
        local.mkdir(parents=True, exist_ok=True)
        if r.status_code == 404:
            if source.get("optional"):
                return
            raise MountNotReadyError(f"configmap {source['name']} not found")
        r.raise_for_status()
        for key, value in (r.json().get("data") or {}).items():
            (local / key).write_text(value)

    def environment(
        self, pod: Pod, container: dict[str, Any], mounts: dict[str, str], message_path: str
    ) -> dict[str, str]:
        env = {
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": os.environ.get("HOME", "/root"),
            "HOSTNAME": pod["spec"].get("hostname") or pod["metadata"]["name"],
            # The API server as a pod finds it (a kubelet's `kubernetes` Service variables):
            # its address, since no Service IP is routed here; its certificate is signed
            # by the CA in the kube-root-ca.crt ConfigMap a pod's service account mounts.
            "KUBERNETES_SERVICE_HOST": self.api.base_url.host,
            "KUBERNETES_SERVICE_PORT": str(self.api.base_url.port),
            "KUBERNETES_SERVICE_PORT_HTTPS": str(self.api.base_url.port),
            # Every pod runs on this machine's few cores with no cgroup of its own: one
            # thread per pod stands in for a kubelet's CPU limit (three torch processes
            # of 2 threads each on 2 cores ran 10x slower than one). A pod may override it.
            "OMP_NUM_THREADS": "1",
        }
        for k in ("PYTHONPATH", "LANG", "TMPDIR"):
            if k in os.environ:
                env[k] = os.environ[k]
        for item in container.get("env", []):
            if "value" in item:
                value = expand(item["value"], env)
            elif "valueFrom" in item:
                value = self.value_from(pod, item["valueFrom"])
            else:
                value = ""
            env[item["name"]] = remap(value, mounts, message_path)
        return env

    def value_from(self, pod: Pod, ref: dict[str, Any]) -> str:
        meta = pod["metadata"]
        if "fieldRef" in ref:
            path = ref["fieldRef"]["fieldPath"]
            simple = {
                "metadata.name": meta["name"],
                "metadata.namespace": meta["namespace"],
                "metadata.uid": meta["uid"],
                "spec.nodeName": NODE,
                "spec.serviceAccountName": pod["spec"].get("serviceAccountName", ""),
                "status.podIP": "127.0.0.1",
                "status.hostIP": "127.0.0.1",
            }
            if path in simple:
                return str(simple[path])
            m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
            if m:
                return str(meta.get(m.group(1), {}).get(m.group(2), ""))
            return ""
        for kind, resource in (("configMapKeyRef", "configmaps"), ("secretKeyRef", "secrets")):
            if kind in ref:
                r = self.api.get(
                    f"/api/v1/namespaces/{meta['namespace']}/{resource}/{ref[kind]['name']}"
                )
                data = r.json().get("data", {}) if r.status_code == 200 else {}
                value = data.get(ref[kind]["key"], "")
                if kind == "secretKeyRef" and value:
                    value = base64.b64decode(value).decode()
                return str(value)
        return "1" if "resourceFieldRef" in ref else ""

    def terminate(self, proc: Proc, grace: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.popen.pid, signal.SIGTERM if grace > 0 else signal.SIGKILL)
        proc.stop_at = time.monotonic() + grace

    def reap(self) -> None:
        for uid, proc in list(self.procs.items()):
            code = proc.popen.poll()
            if code is None:
                if proc.stop_at is not None and time.monotonic() > proc.stop_at:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.popen.pid, signal.SIGKILL)
                continue
            # Whatever the exit, no process of the pod's group may linger.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.popen.pid, signal.SIGKILL)
            del self.procs[uid]
            self.done.add(uid)
            exit_code = code if code >= 0 else 128 - code
            meta = proc.pod["metadata"]
            path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
            if uid not in self.pods:
                continue  # already gone from the API server
            pod = self.pods.get(uid, proc.pod)

            def write(
                path: str = path, pod: Pod = pod, code: int = exit_code, proc: Proc = proc
            ) -> None:
                self.write_terminated(
                    path, self.pods.get(pod["metadata"]["uid"], pod), code, proc.started,
                    proc.message_file, proc.dir / "log",
                )  # fmt: skip

            try:
                write()
            except httpx.HTTPError as e:
                print(f"agent: status of {meta['name']}: {e!r}; will retry", flush=True)
                self.unwritten[uid] = write
            self.wake.set()

    def write_terminated(
        self, path: str, pod: Pod, exit_code: int, started: str, message_file: Path, log: Path
    ) -> None:
        container = pod["spec"]["containers"][0]
        message = read_tail(message_file, MESSAGE_LIMIT)
        if (
            not message
            and exit_code != 0
            and container.get("terminationMessagePolicy") == "FallbackToLogsOnError"
        ):
            message = read_tail(log, 2048)
        status = self.pod_status(pod, started, running=False)
        status["phase"] = "Succeeded" if exit_code == 0 else "Failed"
        status["containerStatuses"][0]["state"] = {
            "terminated": {
                "exitCode": exit_code,
                "reason": "Completed" if exit_code == 0 else "Error",
                "message": message,
                "startedAt": started,
                "finishedAt": now(),
                "containerID": f"local-process://{pod['metadata']['uid']}",
            }
        }
        r = self.patch(path + "/status", {"status": status})
        if r.status_code != 404:
            r.raise_for_status()

    def probe_readiness(self) -> None:
        """Each running container's httpGet readinessProbe, as a kubelet runs it: not Ready
        until it answers (2xx or 3xx), again every periodSeconds, unready after
        failureThreshold failures in a row; the change written to the pod's status (a
        Deployment's rollout waits on it). A container without one is Ready once it
        runs. Liveness probes are not run."""
        for proc in self.procs.values():
            probe = proc.pod["spec"]["containers"][0].get("readinessProbe") or {}
            if "httpGet" not in probe or proc.stop_at is not None:
                continue
            if time.monotonic() < proc.probe_at:
                continue
            proc.probe_at = time.monotonic() + probe.get("periodSeconds", 10)
            ok = http_probe(proc.pod, probe["httpGet"], probe.get("timeoutSeconds", 1))
            proc.failures = 0 if ok else proc.failures + 1
            ready = ok or (proc.ready and proc.failures < probe.get("failureThreshold", 3))
            if ready == proc.ready:
                continue
            meta = proc.pod["metadata"]
            path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status"
            status = self.pod_status(proc.pod, proc.started, running=True, ready=ready)
            with contextlib.suppress(httpx.HTTPError):
                self.patch(path, {"status": status}).raise_for_status()
                proc.ready = ready

    def pod_status(
        self, pod: Pod, started: str, *, running: bool, ready: bool | None = None
    ) -> dict[str, Any]:
        """The kubelet's part of the status. A merge patch replaces the conditions list
        whole, so the conditions others set (DisruptionTarget, written by the eviction
        API or the disruption controller) are carried over, as a kubelet keeps them."""
        container = pod["spec"]["containers"][0]
        is_ready = running if ready is None else ready
        own = {"PodScheduled": "True", "Initialized": "True",
               "ContainersReady": str(is_ready), "Ready": str(is_ready)}  # fmt: skip
        latest = self.pods.get(pod["metadata"]["uid"], pod)
        kept = [c for c in (latest.get("status") or {}).get("conditions") or []
                if c.get("type") not in own]  # fmt: skip
        conditions = kept + [
            {"type": t, "status": s, "lastTransitionTime": now()} for t, s in own.items()
        ]
        return {
            "phase": "Running",
            "conditions": conditions,
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": "127.0.0.1",
            "podIPs": [{"ip": "127.0.0.1"}],
            "startTime": started,
            "containerStatuses": [
                {
                    "name": container["name"],
                    "image": container.get("image", ""),
                    "imageID": "",
                    "ready": is_ready,
                    "started": running,
                    "restartCount": 0,
                    "state": {"running": {"startedAt": started}},
                }
            ],
        }


def spawn(argv: list[str], env: dict[str, str], workdir: Path, log: Path) -> TrialProcess:
    """A pod's process started fresh, in a session of its own, dying with the agent."""
    with log.open("ab") as out:
        return subprocess.Popen(
            argv,
            env=env,
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_agent,
        )


def http_probe(pod: Pod, get: dict[str, Any], timeout: float) -> bool:
    """One httpGet probe: the port by number or by the container's port name, on the pod's
    address (this machine's loopback, which every pod shares)."""
    port = get["port"]
    if isinstance(port, str) and not port.isdigit():
        ports = pod["spec"]["containers"][0].get("ports") or []
        port = next((p["containerPort"] for p in ports if p.get("name") == port), None)
        if port is None:
            return False
    scheme = str(get.get("scheme", "HTTP")).lower()
    url = f"{scheme}://{get.get('host') or '127.0.0.1'}:{port}{get.get('path', '/')}"
    try:
        code = httpx.get(url, timeout=timeout, verify=False).status_code
    except httpx.HTTPError:
        return False
    return 200 <= code < 400


def read_tail(path: Path, limit: int) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return data[-limit:].decode(errors="replace")


def remap(value: str, mounts: dict[str, str], always: str = "") -> str:
    """A container path under a mount becomes the local folder that stands for it.

    Pods here share the machine's file system, so a path that exists on it (the project
    checkout, the interpreter; a clone may well live under /tmp) is the machine's own and
    stays; one that does not is a container path. Colon-separated lists map per element.
    """
    if always and value == always:  # the termination-message path is never the host's
        return mounts[always]
    if ":" in value and not value.startswith(("http:", "https:")):
        return ":".join(remap(part, mounts, always) for part in value.split(":"))
    if not value.startswith("/") or Path(value).exists():
        return value
    for inside, local in sorted(mounts.items(), key=lambda kv: -len(kv[0])):
        if value == inside or value.startswith(inside.rstrip("/") + "/"):
            return local + value[len(inside) :]
    return value


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion in env values and args; $$ escapes."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", sub, value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--slots", type=int, default=16, help="pods run at once")
    parser.add_argument(
        "--log-port",
        type=int,
        default=0,
        help="serve container logs on this port (the kubelet's; 0: none)",
    )
    parser.add_argument("--tls-cert", type=Path, help="the log endpoint's serving certificate")
    parser.add_argument("--tls-key", type=Path)
    parser.add_argument("--client-ca", type=Path, help="CA of the API server's client cert")
    parser.add_argument(
        "--log-client",
        action="append",
        default=[],
        help="a common name allowed to read logs (the API server's)",
    )
    args = parser.parse_args()
    agent = Agent(client_from_kubeconfig(args.kubeconfig), args.state, args.slots,
                  log_port=args.log_port)  # fmt: skip
    args.state.mkdir(parents=True, exist_ok=True)
    service = bind_service_address()
    if service is not None:
        url = agent.api.base_url
        serve_kubernetes_service(service, (url.host, url.port or 443))
        agent.service_hosts = hosts_line(service)
    if args.log_port:
        serve_logs(args.log_port, args.tls_cert, args.tls_key, args.client_ca, agent.find_log,
                   frozenset(args.log_client))  # fmt: skip
    stopping = threading.Event()

    def on_term(signum: int, frame: object) -> None:
        stopping.set()
        agent.wake.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    agent.register()
    threading.Thread(target=agent.watch_forever, args=(args.kubeconfig,), daemon=True).start()
    print("agent: node registered; running pods", flush=True)
    while not stopping.is_set():
        agent.wake.wait(0.5)
        agent.wake.clear()
        agent.step()
    for proc in agent.procs.values():
        agent.terminate(proc, grace=0)
    for proc in agent.procs.values():
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(5)
    if agent.starter is not None:
        agent.starter.close()


if __name__ == "__main__":
    main()
