"""``bootpull node status``: read the state directory, print JSON or lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bootpull.backoff import Counters
from bootpull.cli import main
from bootpull.console import Console
from bootpull.install import install
from bootpull.report import Spool
from bootpull.state import NodeStatus, StateDir
from sample_bundles import make_bundle


class Quiet:
    def write(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


def status_json(state: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    assert main(["node", "status", "--state-dir", str(state), "--json"]) == 0
    value = json.loads(capsys.readouterr().out)
    assert isinstance(value, dict)
    return value


def test_fresh_node_has_nothing_installed(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    info = status_json(tmp_path / "nothing-here", capsys)
    assert info["role"] == "" and info["version"] == "" and info["lkg"] is None
    assert info["counters"] == {"retries": 0, "restarts": 0, "fallbacks": 0}
    assert info["spooled_events"] == 0


def test_status_reports_current_lkg_counters_and_spool(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = StateDir(tmp_path / "state")
    for version in ("1.0", "2.0"):
        install(make_bundle(version), state, env={}, console=Console(Quiet()))
    counters = Counters()
    counters.count("restarts", "exit 1")
    counters.count("fallbacks", "fetch")
    counters.count("retries", "report")
    counters.count("retries", "report")
    state.save_counters(counters)
    state.save_status(NodeStatus(node="52-54-00-12-34-56", hostname="node-a",
                                 health="healthy", last_stage="run", last_status="ok",
                                 last_message="web 2.0 is running", drift=["run.sh"]))
    Spool(state.spool).append({"n": 1})
    state.mark_bad("web-9.9", "health check failed")
    info = status_json(state.root, capsys)
    assert info["role"] == "web" and info["version"] == "2.0"
    assert info["commit"] == make_bundle("2.0").commit
    lkg = info["lkg"]
    assert isinstance(lkg, dict) and lkg["version"] == "1.0" == info["lkg_version"]
    assert info["lkg_commit"] == make_bundle("1.0").commit
    assert info["counters"] == {"retries": 2, "restarts": 1, "fallbacks": 1}
    assert info["counters_by_reason"] == {"fallbacks:fetch": 1, "restarts:exit 1": 1,
                                          "retries:report": 2}
    assert info["node"] == "52-54-00-12-34-56" and info["health"] == "healthy"
    assert info["drift"] == ["run.sh"] and info["spooled_events"] == 1
    assert info["bad_versions"] == {"web-9.9": "health check failed"}
    assert info["last"]["message"] == "web 2.0 is running"  # type: ignore[index]

    assert main(["node", "status", "--state-dir", str(state.root)]) == 0
    text = capsys.readouterr().out
    assert "role:      web 2.0" in text and "lkg:       1.0" in text
    assert "retries 2, restarts 1, fallbacks 1" in text and "drift:     run.sh" in text


def test_corrupt_state_files_read_as_defaults(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    state = StateDir(tmp_path / "state")
    state.ensure()
    (state.root / "status.json").write_text("{not json")
    (state.root / "counters.json").write_text('{"retries": -3, "restarts": "x"}')
    (state.root / "current").symlink_to("../../etc")
    info = status_json(state.root, capsys)
    assert info["role"] == "" and info["counters"] == {"retries": 0, "restarts": 0,
                                                       "fallbacks": 0}
