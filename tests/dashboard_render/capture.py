"""Run a real study and draw the dashboard from what Prometheus scraped:

    .venv/bin/python -m tests.dashboard_render.capture OUT_DIR [--from-data DATA.json]

The test control plane (tests/harness), the operator as a local process, the quickstart
study (examples/quickstart-k8s.yaml) with the built-in trainer, and a Prometheus that
scrapes the operator's /metrics and the Pushgateway as the chart's ServiceMonitor and a
Pushgateway scrape job would. When the study has finished, every panel's queries run over
the study's time and the panels are drawn to OUT_DIR/dashboard.png; the data fetched is
kept in OUT_DIR/dashboard-data.json (``--from-data`` draws again from it, no cluster)."""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.dashboard_render.draw import draw
from tests.dashboard_render.render import Window, fetch, load, save
from tests.harness import cluster as harness

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "charts" / "scalingstudy" / "dashboards" / "scalingstudy.json"
NAMESPACE, STUDY = "ml", "quickstart-k8s"
SCRAPE_SECONDS = 2.0


def heading(window: Window) -> str:
    start = time.strftime("%Y-%m-%d %H:%M", time.gmtime(window.start))
    minutes = (window.end - window.start) / 60
    return (
        f"ScalingStudy dashboard, drawn with matplotlib from Prometheus data WITHOUT "
        f"Grafana (the layout and queries are the chart's; Grafana's look is not).\n"
        f"Study {NAMESPACE}/{STUDY} (examples/quickstart-k8s.yaml) on the test control "
        f"plane, {start} UTC, {minutes:.0f} min."
    )


def kubectl(env: dict[str, str], *args: str, input: str | None = None) -> str:
    out = subprocess.run(
        [f"{env['TESTBIN']}/kubectl", f"--kubeconfig={env['KUBECONFIG']}", *args],
        input=input,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return out.stdout


def start_scraper(
    dir: Path,
    env: dict[str, str],
    operator_port: int,
    scrape_seconds: float = SCRAPE_SECONDS,
    name: str = "dashboard-prometheus",
) -> str:
    """A second Prometheus, scraping the operator's /metrics (as the chart's ServiceMonitor
    does, job scalingstudy) and the Pushgateway (honor_labels, as docs/monitoring.md asks):
    the harness's scrapes only the Pushgateway. Started under ``name`` in ``dir``'s
    launcher records (harness.stop(dir, name) stops it); its URL."""
    port = harness.free_port()
    config = {
        "global": {"scrape_interval": f"{scrape_seconds:.0f}s"},
        "scrape_configs": [
            {
                "job_name": "pushgateway",
                "honor_labels": True,
                "static_configs": [{"targets": [env["PUSHGATEWAY_URL"].split("//")[1]]}],
            },
            {
                "job_name": "scalingstudy",
                "static_configs": [{"targets": [f"127.0.0.1:{operator_port}"]}],
            },
        ],
    }
    (dir / f"{name}.yml").write_text(yaml.safe_dump(config))
    harness.Launcher(dir).start(
        name,
        [
            "prometheus",
            f"--config.file={dir / f'{name}.yml'}",
            f"--storage.tsdb.path={dir / name}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
    )
    url = f"http://127.0.0.1:{port}"
    harness.wait_for(name, lambda: httpx.get(f"{url}/-/ready").is_success, dir)
    return url


def start_operator(dir: Path, env: dict[str, str], port: int) -> None:
    harness.Launcher(dir).start(
        "operator",
        [
            sys.executable,
            "-m",
            "scalingstudy.cli",
            "operator",
            "--namespace",
            NAMESPACE,
            f"--prometheus-url={env['PROMETHEUS_URL']}",
            f"--pushgateway-url={env['PUSHGATEWAY_URL']}",
            f"--metrics-port={port}",
            "--resync-seconds=5",
            "--fit-interval=2",
        ],
        env={"KUBECONFIG": env["KUBECONFIG"]},
    )


def wait_established(env: dict[str, str], timeout: float = 60) -> None:
    """Polled: `kubectl wait` fails at once while the new CRD has no status yet."""
    deadline = time.monotonic() + timeout
    jsonpath = "jsonpath={.status.conditions[?(@.type=='Established')].status}"
    while time.monotonic() < deadline:
        with contextlib.suppress(subprocess.CalledProcessError):
            if kubectl(env, "get", "crd/scalingstudies.scalingstudy.io", "-o", jsonpath) == "True":
                return
        time.sleep(0.5)
    raise TimeoutError("the ScalingStudy CRD was not established")


def wait_for_study(env: dict[str, str], timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        doc: dict[str, Any] = json.loads(
            kubectl(env, "get", "scalingstudy", STUDY, "-n", NAMESPACE, "-o", "json")
        )
        if doc.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            return doc
        time.sleep(5)
    raise TimeoutError(f"{STUDY} did not finish in {timeout:.0f} s")


def capture(out: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="dashboard-") as tmp:
        dir = Path(tmp)
        env = harness.up(dir)
        try:
            kubectl(env, "apply", "-f", str(ROOT / "crds" / "scalingstudies.yaml"))
            wait_established(env)
            kubectl(env, "create", "namespace", NAMESPACE)
            operator_port = harness.free_port()
            prometheus = start_scraper(dir, env, operator_port)
            start_operator(dir, env, operator_port)
            time.sleep(10)  # the namespace's service account; the operator's first pass
            start = time.time() - 30
            kubectl(
                env, "apply", "-n", NAMESPACE, "-f", str(ROOT / "examples" / "quickstart-k8s.yaml")
            )
            status = wait_for_study(env, timeout=1500)["status"]
            print(f"{STUDY}: {status['phase']}, trials {status['trials']}", file=sys.stderr)
            time.sleep(4 * SCRAPE_SECONDS + 5)
            end = time.time()
            window = Window(start, end, max(SCRAPE_SECONDS, (end - start) / 240), SCRAPE_SECONDS)
            data = fetch(prometheus, json.loads(DASHBOARD.read_text()), window, NAMESPACE, STUDY)
            save(data, out / "dashboard-data.json")
            (out / "dashboard-window.json").write_text(json.dumps(window.__dict__))
            (out / "dashboard-status.json").write_text(json.dumps(status, indent=1))
            draw(data, heading(window), out / "dashboard.png")
        finally:
            harness.down(dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--from-data", type=Path, default=None)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.from_data is None:
        capture(args.out)
        return
    window = Window(**json.loads((args.from_data.parent / "dashboard-window.json").read_text()))
    draw(load(args.from_data), heading(window), args.out / "dashboard.png")


if __name__ == "__main__":
    main()
