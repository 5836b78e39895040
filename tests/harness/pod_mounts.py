"""What a kubelet gives a pod at fixed paths, for the test node agent (tests/harness/agent.py).

A pod's volumes are folders under the agent's state folder, and paths that name them in
env and args are rewritten. A program that reads a fixed path itself cannot be rewritten:
the official Kubernetes clients (Python's, kopf's, client-go) read the service account's
token, CA and namespace from /var/run/secrets/kubernetes.io/serviceaccount. Such a mount
is made real for the pod's process alone, in a private mount namespace, as the agent
already gives a pod its own /etc/hosts: the folder that stands for the volume is
bind-mounted at its path. Where the path's parents do not exist on this machine
(/run/secrets here), an overlay on the deepest parent that does (/run) makes them, with
the machine's own /run untouched and every file in it still visible.

Test-only; nothing here ships in the product.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Where the ServiceAccount admission plugin mounts a pod's API credentials.
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
#: A kubelet's token lifetime when the pod's projection names none (the plugin sets 3607).
DEFAULT_TOKEN_SECONDS = 3600


@dataclass(frozen=True)
class FixedMount:
    """A volume folder on this machine (``local``) the process must see at ``target``."""

    local: Path
    target: str


def token_request(pod: dict[str, Any], source: dict[str, Any]) -> dict[str, Any]:
    """The TokenRequest a kubelet sends for a projected serviceAccountToken: bound to the
    pod (the token dies with it), with the projection's audience and lifetime. No
    audience: the API server's own (its service-account issuer), as for a kubelet."""
    meta = pod["metadata"]
    audience = source.get("audience")
    return {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {
            "audiences": [audience] if audience else [],
            "expirationSeconds": int(source.get("expirationSeconds", DEFAULT_TOKEN_SECONDS)),
            "boundObjectRef": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": meta["name"],
                "uid": meta["uid"],
            },
        },
    }


def holds_token(volume: dict[str, Any]) -> bool:
    """A projected volume with a service-account token: what in-cluster clients read at
    its fixed path."""
    sources = (volume.get("projected") or {}).get("sources") or []
    return any("serviceAccountToken" in s for s in sources)


def existing_parent(target: str) -> Path:
    """The deepest folder of ``target`` (symlinks followed: /var/run is /run) that exists
    on this machine."""
    path = Path(target).resolve()
    while not path.exists():
        path = path.parent
    return path


def mount_lines(mount: FixedMount, scratch: Path) -> list[str]:
    """Shell lines that put ``mount.local`` at its target; where the target's parents do
    not exist, an overlay (its layers under ``scratch``) on the deepest that does first."""
    resolved = Path(mount.target).resolve()
    parent = existing_parent(mount.target)
    bind = f"mount --bind {shlex.quote(str(mount.local))} {shlex.quote(str(resolved))}"
    if parent == resolved:
        return [bind]
    if parent == Path("/"):
        raise ValueError(f"{mount.target}: no parent folder to lay an overlay on")
    upper, work = scratch / "upper", scratch / "work"
    upper.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    options = f"lowerdir={parent},upperdir={upper},workdir={work}"
    options += "" if os.geteuid() == 0 else ",userxattr"
    overlay = f"mount -t overlay overlay -o {shlex.quote(options)} {shlex.quote(str(parent))}"
    return [overlay, f"mkdir -p {shlex.quote(str(resolved))}", bind]


def namespace_script(hosts: Path | None, mounts: list[FixedMount], scratch: Path) -> list[str]:
    """The prefix that runs a command with its own /etc/hosts and its fixed mounts: a
    private mount namespace (a user namespace too when not root), the bind mounts, then
    exec. ``scratch``: the pod's folder (overlay layers). Empty: nothing to mount."""
    if hosts is None and not mounts:
        return []
    lines = [] if hosts is None else [f"mount --bind {shlex.quote(str(hosts))} /etc/hosts"]
    for index, mount in enumerate(mounts):
        lines += mount_lines(mount, scratch / f"overlay-{index}")
    script = " && ".join([*lines, 'exec "$@"'])
    user = [] if os.geteuid() == 0 else ["--map-root-user"]
    return ["unshare", "--mount", "--propagation", "private", *user, "--", "sh", "-c", script,
            "sh"]  # fmt: skip
