"""Shared fixtures: the example study and a helper to run the CLI as a user does."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def pytest_configure(config: pytest.Config) -> None:
    """Each xdist worker gets its own share of the cores (inherited by what its tests
    start: control planes, trials, their ranks), so its tests see the machine they
    actually have. Sharing all cores, a test's OpenMP threads and a distributed trial's
    ranks wait on each other whenever the other worker's test holds a core: 2 processes
    of a char-LM trial that train in 3 s alone took 36 s beside the GPU check."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if worker.startswith("gw") and 1 < workers <= len(cores):
        os.sched_setaffinity(0, cores[int(worker[2:]) % workers :: workers])


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    """benchmarks/pruning.py as a module (not a package): its replay and families."""
    path = ROOT / "benchmarks" / "pruning.py"
    spec = importlib.util.spec_from_file_location("pruning_benchmark", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def quickstart_doc() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((EXAMPLES / "quickstart.yaml").read_text())
    return doc


def run_cli(
    *args: str, cwd: Path | None = None, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The console script in a real subprocess: exit status and stderr as a user sees them."""
    return subprocess.run(
        [sys.executable, "-m", "scalingstudy.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        check=False,
        env=env,
    )


def expected_seconds(item: pytest.Item) -> float:
    """A test's rough duration in the suite (on its worker's core), from its
    `slow(seconds)` marker; scripts/test lists the slowest tests to check them by."""
    mark = item.get_closest_marker("slow")
    if mark is None:
        return 0.0
    return float(mark.args[0]) if mark.args else 20.0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Longest first, spread over the workers. scripts/test hands tests out one at a time
    (`--maxschedchunk 1`), after a first two per worker (xdist's minimum): worker i
    starts with the i-th and the (n+i)-th longest, so no worker begins with the two
    longest in a row, and the rest go to whichever worker is free. Neither worker then
    ends alone on a long test while the other idles (each was about 2 minutes of a
    17-minute run)."""
    items.sort(key=lambda item: -expected_seconds(item))
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1 and len(items) >= 2 * workers:
        first, second = items[:workers], items[workers : 2 * workers]
        items[: 2 * workers] = [item for pair in zip(first, second, strict=True) for item in pair]


@pytest.fixture(autouse=True)
def _one_torch_thread() -> None:
    """pytest-xdist runs a test per core already: torch's own threads would oversubscribe."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)
