"""The Kubernetes API as the operator uses it: a handful of REST calls on plain dicts.

It rides on the official client for configuration (kubeconfig or in-cluster service
account, TLS, token refresh) and sends raw requests, so objects stay the same dicts the
pure core builds and reads, and no generated model classes are instantiated. Every
request is counted by verb (benchmarks and the operator's metrics use the counts).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from kubernetes import client, config

from scalingstudy.cluster.event_folding import Slots, Write, flush, fold, idle
from scalingstudy.cluster.manifests import Obj, StudyRef
from scalingstudy.cluster.reasons import Event
from scalingstudy.spec import API_VERSION, GROUP, KIND, PLURAL, VERSION

log = logging.getLogger("scalingstudy.operator")

WRITE_VERBS = ("POST", "PUT", "PATCH", "DELETE")
#: Objects per page of a list: a page of 250 Jobs is 2 MB of JSON and 9 MB parsed (half of
#: it managedFields, now dropped as it is parsed), the largest thing a pass held; 100
#: without managedFields is under 2 MB.
LIST_PAGE = 100
#: The answer as PartialObjectMetadata: a status write's answer was the whole study
#: (200 KB at 1,000 results, parsed to read one field), now about 4 KB.
METADATA_ONLY = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
#: (connect, read) seconds of a request.
REQUEST_TIMEOUT = (10.0, 60.0)


def _without_managed_fields(obj: Obj) -> Obj:
    """An object as it is parsed, without its metadata's managedFields: half of a Job's
    JSON, which the operator never reads, dropped before the next object is parsed. Only
    an object's metadata (it has a uid or resourceVersion, and its managedFields are the
    server's entries): a user's own key of that name (task options, a volume's
    attributes) is data and stays."""
    fields = obj.get("managedFields")
    if (
        isinstance(fields, list)
        and ("uid" in obj or "resourceVersion" in obj)
        and all(isinstance(f, dict) and "manager" in f and "operation" in f for f in fields)
    ):
        del obj["managedFields"]
    return obj


class ApiError(RuntimeError):
    def __init__(self, status: int, method: str, path: str, body: str) -> None:
        self.status = status
        try:
            detail = json.loads(body).get("message", body)
        except (json.JSONDecodeError, AttributeError):
            detail = body
        #: The API server's own words (for a user: which field it refused, and why).
        self.detail = str(detail)[:500]
        super().__init__(f"{method} {path}: HTTP {status}: {self.detail}")


def load_config(kubeconfig: str | None = None) -> client.ApiClient:
    """In a pod the service account; elsewhere the kubeconfig (KUBECONFIG or ~/.kube)."""
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
        return client.ApiClient()
    except config.ConfigException:
        api: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig
        )
        return api


class Kube:
    def __init__(self, api: client.ApiClient, user_agent: str = "scalingstudy-operator") -> None:
        self.api = api
        self.api.user_agent = user_agent
        self.requests: Counter[str] = Counter()
        self._lock = threading.Lock()
        #: Each study's Event folds (passes of different studies run in threads).
        self._folds: dict[StudyRef, Slots] = {}
        self._fold_lock = threading.Lock()

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        ok: tuple[int, ...] = (200, 201, 202),
        timeout: tuple[float, float] = REQUEST_TIMEOUT,
        metadata_only: bool = False,
    ) -> tuple[int, Obj]:
        """One REST call; statuses outside ``ok`` raise ApiError. ``timeout``: (connect,
        read) seconds; a caller with a deadline (leader election) passes shorter ones.
        ``metadata_only``: the object in the answer is its metadata alone (for a write
        whose answer only its resourceVersion or owner is read)."""
        accept = METADATA_ONLY if metadata_only else "application/json"
        headers = {"Accept": accept, "Content-Type": content_type}
        params = self.api.param_serialize(
            method,
            path,
            query_params=list((query or {}).items()),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        with self._lock:
            self.requests[method] += 1
        resp = self.api.call_api(*params, _request_timeout=timeout)
        raw, resp_status = resp.read() or b"{}", resp.status  # type: ignore[no-untyped-call]
        if resp_status not in ok:
            raise ApiError(resp_status, method, path, raw.decode(errors="replace"))
        del resp  # its copy of the answer goes before the answer is parsed
        data: Obj = json.loads(raw, object_hook=_without_managed_fields)
        return resp_status, data

    # -- studies ---------------------------------------------------------------------
    @staticmethod
    def study_path(namespace: str, name: str) -> str:
        return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}"

    def get_study(self, namespace: str, name: str) -> Obj | None:
        status, obj = self.request("GET", self.study_path(namespace, name), ok=(200, 404))
        return obj if status == 200 else None

    def patch_study_status(
        self, namespace: str, name: str, patch: Obj, uid: str, version: str
    ) -> str | None:
        """A JSON merge patch of the status (`status_patch.merge_patch`: removed keys are
        explicit nulls), applied only to the study of that ``uid`` as it was at
        ``version`` (its resourceVersion when the pass read it): the API server refuses
        it (409) when the study changed since, or was deleted and made again under the
        same name, so a pass of a study that is gone never lands on its successor.
        Returns the study's new resourceVersion, or None when the write was refused or
        the study is gone (the pass's decisions are then void)."""
        status, obj = self.request(
            "PATCH",
            self.study_path(namespace, name) + "/status",
            body={"metadata": {"uid": uid, "resourceVersion": version}, "status": patch},
            content_type="application/merge-patch+json",
            ok=(200, 404, 409),
            metadata_only=True,
        )
        if status != 200:
            return None
        return str(obj.get("metadata", {}).get("resourceVersion") or "")

    # -- jobs and pods -----------------------------------------------------------------
    def list_jobs(self, namespace: str, selector: str) -> Iterator[Obj]:
        """The Jobs, a page at a time: a caller that keeps only what it needs of each never
        holds every Job of a 2,000-trial study at once (a full Job is about 9 KB, 37 KB
        parsed). Each Job is let go once yielded, and a page before the next is read, so
        at most one page is held."""
        path = f"/apis/batch/v1/namespaces/{namespace}/jobs"
        query = {"labelSelector": selector, "limit": str(LIST_PAGE)}
        while True:
            _, page = self.request("GET", path, query=query)
            token = (page.get("metadata") or {}).get("continue")
            items: list[Obj] = page.get("items") or []
            del page
            items.reverse()
            while items:
                yield items.pop()
            if not token:
                return
            query = {**query, "continue": token}

    def list_pods(self, namespace: str, selector: str) -> list[Obj]:
        _, obj = self.request(
            "GET", f"/api/v1/namespaces/{namespace}/pods", query={"labelSelector": selector}
        )
        items: list[Obj] = obj.get("items", [])
        return items

    def list_workloads(self, namespace: str, selector: str) -> list[Obj] | None:
        """Kueue's Workloads (v1beta2, else v1beta1); None where Kueue is not installed
        or the operator may not list them."""
        for version in ("v1beta2", "v1beta1"):
            path = f"/apis/kueue.x-k8s.io/{version}/namespaces/{namespace}/workloads"
            status, obj = self.request(
                "GET", path, query={"labelSelector": selector}, ok=(200, 403, 404)
            )
            if status == 200:
                items: list[Obj] = obj.get("items", [])
                return items
            if status == 403:
                return None
        return None

    def list_events(self, namespace: str, field_selector: str) -> list[Obj]:
        _, obj = self.request(
            "GET", f"/api/v1/namespaces/{namespace}/events", query={"fieldSelector": field_selector}
        )
        items: list[Obj] = obj.get("items", [])
        return items

    def create_job(self, manifest: Obj) -> Obj | None:
        """Create unless a Job of that name exists: None when created, else the Job that
        holds the name (whose owner says whether it is the study's). Names are
        deterministic, so this is what keeps a restarted operator from starting a trial
        twice."""
        ns, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
        path = f"/apis/batch/v1/namespaces/{ns}/jobs"
        status, _ = self.request("POST", path, body=manifest, ok=(201, 409), metadata_only=True)
        if status == 201:
            return None
        # Listed by name, not read: the operator's role lists Jobs and has no `get`.
        _, page = self.request("GET", path, query={"fieldSelector": f"metadata.name={name}"})
        found: list[Obj] = page.get("items") or [{"metadata": {"name": name}}]
        return found[0]

    def create_service(self, manifest: Obj) -> None:
        """Create unless one of that name exists (the name is the trial's)."""
        ns = manifest["metadata"]["namespace"]
        self.request("POST", f"/api/v1/namespaces/{ns}/services", body=manifest, ok=(201, 409))

    def delete_service(self, namespace: str, name: str) -> None:
        self.request(
            "DELETE", f"/api/v1/namespaces/{namespace}/services/{quote(name)}", ok=(200, 202, 404)
        )

    def create_or_get_config_map(self, manifest: Obj) -> Obj:
        """Create the ConfigMap, or return the one of that name that exists."""
        ns, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
        path = f"/api/v1/namespaces/{ns}/configmaps"
        status, obj = self.request("POST", path, body=manifest, ok=(201, 409))
        if status == 201:
            return obj
        _, existing = self.request("GET", f"{path}/{quote(name)}")
        return existing

    def delete_job(self, namespace: str, name: str) -> None:
        self.request(
            "DELETE",
            f"/apis/batch/v1/namespaces/{namespace}/jobs/{quote(name)}",
            body={"propagationPolicy": "Background"},
            ok=(200, 202, 404),
        )

    # -- events --------------------------------------------------------------------------
    def emit(self, study: StudyRef, event: Event, now: str) -> None:
        """Say ``event`` of the study, folded with its like (`event_folding`): written at
        once, held to be written with the next of its kind, or with what was held before
        it. Every write is tried; the first refusal is raised after them."""
        at = time.monotonic()
        with self._fold_lock:
            slots, writes = fold(self._folds.get(study, {}), event, at, now)
            # What is idle is forgotten: no study's memory outlives its last window.
            self._folds = {s: f for s, f in self._folds.items() if not idle(f, at)}
            self._folds[study] = slots
        self._create_events(study, writes)

    def flush_events(self, study: StudyRef) -> None:
        """Write the study's held Events whose window has passed: for the end of a pass
        with nothing to say, so what was held is not kept until the study's next Event."""
        with self._fold_lock:
            held = self._folds.get(study)
            if held is None:
                return
            self._folds[study], writes = flush(held, time.monotonic())
        self._create_events(study, writes)

    def flush_all_events(self) -> None:
        """Write every study's held Events now, window or not: the operator is stopping
        (a rollout, SIGTERM), and what it held would go with it. A refusal is logged."""
        with self._fold_lock:
            held, self._folds = self._folds, {}
        for study, slots in held.items():
            _, writes = flush(slots, math.inf)
            try:
                self._create_events(study, writes)
            except ApiError as exc:
                log.warning("%s/%s: held Events not written: %s", study.namespace, study.name, exc)

    def forget_events(self, namespace: str, name: str) -> None:
        """The study is gone: what was held of it goes too."""
        with self._fold_lock:
            gone = [s for s in self._folds if (s.namespace, s.name) == (namespace, name)]
            for study in gone:
                del self._folds[study]

    def _create_events(self, study: StudyRef, writes: Sequence[Write]) -> None:
        failed: ApiError | None = None
        for write in writes:
            try:
                self.request(
                    "POST", f"/api/v1/namespaces/{study.namespace}/events",
                    body=event_body(study, write), metadata_only=True,
                )  # fmt: skip
            except ApiError as exc:
                failed = failed or exc
        if failed is not None:
            raise failed

    def writes(self) -> int:
        return sum(self.requests[v] for v in WRITE_VERBS)


def event_body(study: StudyRef, write: Write) -> Obj:
    """The core/v1 Event of a write: ``count`` occurrences from ``first`` to ``last``."""
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{study.name}.", "namespace": study.namespace},
        "involvedObject": {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": study.name,
            "namespace": study.namespace,
            "uid": study.uid,
        },
        "type": write.event.type,
        "reason": write.event.reason,
        "message": write.event.message[:1024],
        "firstTimestamp": write.first,
        "lastTimestamp": write.last,
        "count": write.count,
        "source": {"component": "scalingstudy-operator"},
        "reportingComponent": "scalingstudy.io/operator",
        "reportingInstance": "scalingstudy-operator",
    }
