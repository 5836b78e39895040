"""The Dockerfile agrees with the project (images cannot be built here; hadolint lints it
in scripts/test)."""

from __future__ import annotations

import re
import tomllib

from scalingstudy.cluster.manifests import DEFAULT_COMMAND, JobSettings
from tests.conftest import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def test_image_version_is_the_project_version() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert re.search(rf"^ARG VERSION={re.escape(version)}$", DOCKERFILE, re.M)
    assert JobSettings().trainer_image.endswith(f":{version}")


def test_trainer_image_runs_as_the_uid_trial_pods_request() -> None:
    trainer = DOCKERFILE.split("AS trainer", 1)[1]
    uid = JobSettings().run_as_user
    assert f"USER {uid}:{uid}" in trainer
    assert f'ENTRYPOINT ["{DEFAULT_COMMAND[0]}"]' in trainer


def test_both_targets_drop_root() -> None:
    for target in ("operator", "trainer", "byo-huggingface"):
        stage = DOCKERFILE.split(f"AS {target}", 1)[1].split("\nFROM ", 1)[0]
        user = re.search(r"^USER (\d+):(\d+)$", stage, re.M)
        assert user and int(user.group(1)) > 0, target
