"""The test node agent's path mapping (pure): container paths go to volumes, the
machine's own files (a checkout under /tmp, say) stay where they are."""

from __future__ import annotations

from pathlib import Path

from tests.harness.agent import expand, remap

MOUNTS = {
    "/tmp": "/state/pod/tmp",
    "/ckpt": "/state/pvc/ckpt",
    "/dev/termination-log": "/state/pod/msg",
}


def test_container_paths_map_to_volumes() -> None:
    assert remap("/ckpt/trial-1", MOUNTS) == "/state/pvc/ckpt/trial-1"
    assert remap("/tmp/does-not-exist-here/x", MOUNTS) == "/state/pod/tmp/does-not-exist-here/x"
    assert remap("/elsewhere/file", MOUNTS) == "/elsewhere/file"
    assert remap("relative/path", MOUNTS) == "relative/path"


def test_existing_host_paths_stay_and_lists_map_per_element(tmp_path: Path) -> None:
    here = str(tmp_path)  # exists, and lies under /tmp on most machines
    assert remap(here, MOUNTS) == here
    assert remap(f"{here}:/ckpt/a", MOUNTS) == f"{here}:/state/pvc/ckpt/a"
    assert remap("http://pushgateway:9091", MOUNTS) == "http://pushgateway:9091"


def test_termination_message_path_is_always_mapped(tmp_path: Path) -> None:
    real = tmp_path / "termination-log"
    real.write_text("the host's own file")
    mounts = {str(real): "/state/pod/msg"}
    assert remap(str(real), mounts, always=str(real)) == "/state/pod/msg"


def test_kubernetes_variable_expansion() -> None:
    env = {"A": "1", "B": "two"}
    assert expand("$(A)-$(B)-$(C)-$$(A)", env) == "1-two-$(C)-$(A)"
