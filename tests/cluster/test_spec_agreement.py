"""The API server gives every case of tests/test_spec_agreement.py the verdict that the
pydantic spec gives there (issues 37 and 42): a study `scalingstudy run` refuses is
refused at `kubectl apply`, and one it accepts is stored, so the operator never meets an
InvalidSpec the CRD let through. Server-side dry runs: nothing is stored."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.cluster.conftest import Cluster
from tests.test_spec_agreement import CASES, case_id, study


@pytest.fixture(scope="module")
def ns(cluster: Cluster) -> str:
    name = "agreement"
    cluster.kubectl("create", "namespace", name, check=False)
    return name


@pytest.mark.parametrize(("name", "fields", "accepted"), CASES, ids=[case_id(c) for c in CASES])
def test_the_api_server_gives_the_agreed_verdict(
    cluster: Cluster, ns: str, name: str, fields: dict[str, Any], accepted: bool
) -> None:
    out = cluster.kubectl(
        "apply", "--dry-run=server", "-n", ns, "-f", "-",
        input=yaml.safe_dump(study(fields)), check=False,
    )  # fmt: skip
    if accepted:
        assert out.returncode == 0, f"{name}: refused: {out.stderr}"
    else:
        assert out.returncode != 0, f"{name}: accepted"
        assert "spec" in out.stderr, out.stderr
