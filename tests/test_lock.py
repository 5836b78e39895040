"""pylock.toml, the lock scripts/setup installs from, matches pyproject.toml: a version
range changed or a dependency added without `scripts/lock` fails here (and in CI)."""

from __future__ import annotations

import platform
import re
import sys
import tomllib
from importlib.metadata import distributions
from typing import Any

import pytest
from packaging.requirements import Requirement

from tests.conftest import ROOT

LOCK: dict[str, Any] = tomllib.loads((ROOT / "pylock.toml").read_text())
PROJECT: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


LOCKED = {_norm(p["name"]): p for p in LOCK["packages"]}


def _requirements() -> list[str]:
    """What scripts/lock locks: the dependencies, the trainer and dev extras and
    setuptools (the editable install is built without isolation)."""
    project = PROJECT["project"]
    extras = [r for e in ("trainer", "dev") for r in project["optional-dependencies"][e]]
    build = [r for r in PROJECT["build-system"]["requires"] if r.startswith("setuptools")]
    return [*project["dependencies"], *extras, *build]


@pytest.mark.parametrize("text", _requirements())
def test_every_requirement_of_pyproject_is_locked_in_its_range(text: str) -> None:
    requirement = Requirement(text)
    package = LOCKED.get(_norm(requirement.name))
    assert package is not None, f"{requirement.name} is not in pylock.toml: run scripts/lock"
    assert requirement.specifier.contains(package["version"], prereleases=True), (
        f"pylock.toml has {requirement.name} {package['version']}, outside {text!r}: "
        "run scripts/lock"
    )


def test_every_locked_package_is_one_wheel_with_its_hash() -> None:
    """A set-up from the lock downloads exactly these files, or fails on a changed one."""
    assert LOCK["lock-version"] == "1.0"
    for package in LOCK["packages"]:
        (wheel,) = package["wheels"]
        assert wheel["url"].startswith("https://") and wheel["name"].endswith(".whl")
        assert re.fullmatch(r"[0-9a-f]{64}", wheel["hashes"]["sha256"]), package["name"]


def test_setup_pins_a_pip_that_reads_the_lock() -> None:
    setup = (ROOT / "scripts" / "setup").read_text()
    (version,) = re.findall(r"^pip_version=(\S+)$", setup, re.MULTILINE)
    assert tuple(int(v) for v in version.split(".")[:2]) >= (25, 1)
    assert 'pip install -r "$lock"' in setup


@pytest.mark.skipif(
    not (
        sys.platform == "linux"
        and platform.machine() == "x86_64"
        and sys.version_info[:2] == (3, 11)
    ),
    reason="pylock.toml is made for Linux x86_64 and CPython 3.11; elsewhere setup installs ranges",
)
def test_this_environment_is_the_lock() -> None:
    """scripts/setup installed what the lock says (a stale environment: run scripts/setup)."""
    have = {_norm(d.metadata["Name"]): d.version for d in distributions()}
    wrong = {
        n: (p["version"], have.get(n)) for n, p in LOCKED.items() if have.get(n) != p["version"]
    }
    assert not wrong, f"locked vs installed: {wrong}"
