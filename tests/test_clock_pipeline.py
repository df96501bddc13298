"""``node run`` steps the clock before it verifies, and reports the step.

The clock of this machine is never set: ``Settings.clock_setter`` records what the node
asked. The NTP server is a small responder on 127.0.0.1 whose time is 400 days ahead
(a real chronyd serves this machine's own clock, so its offset is ~0:
``test_clock.py`` and ``test_sntp.py`` use it for the offset itself).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from bootpull import sntp
from bootpull.backoff import Backoff
from bootpull.console import Console
from bootpull.pipeline import run
from bootpull.settings import Settings
from bootpull.supervise import Policy
from eventsink import EventSink
from fakes import CapturingWriter
from gitserver import GitHttpServer
from marker_role import add_marker_role
from signed_repo import MAC_NEW, SignedRepo
from test_clock import Recorder


@pytest.fixture
def ahead() -> Iterator[str]:
    """An SNTP responder on 127.0.0.1 whose time is 400 days ahead of this clock."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(1024)
            except OSError:
                continue
            now = sntp.to_ntp(time.time() + 400 * 86400)
            reply = sntp.Reply(leap=0, version=4, mode=4, stratum=3, poll=4, precision=-20,
                               root_delay=0, root_dispersion=0, ref_id=b"\x7f\0\0\1",
                               reference=now, originate=int.from_bytes(data[40:48], "big"),
                               receive=now, transmit=now)
            sock.sendto(reply.encode(), peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"127.0.0.1:{sock.getsockname()[1]}"
    stop.set()
    thread.join(5)
    sock.close()


def test_node_run_steps_the_clock_before_verifying_and_reports_it(
        signed_repo: SignedRepo, git_http_server: object, sink: EventSink, ahead: str,
        tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    add_marker_role(signed_repo, markers, sink.url)
    server: GitHttpServer = git_http_server(signed_repo.root)  # type: ignore[operator]
    trust = tmp_path / "trust.json"
    trust.write_bytes(signed_repo.trust)
    setter = Recorder()
    settings = Settings(
        state_dir=tmp_path / "state", repo_url=server.url, mac=MAC_NEW, trust_file=trust,
        oneshot=True, fetch_deadline=4.0, fetch_deadline_with_lkg=3.0,
        policy=Policy(tries=2, start_grace=0.2, first_check_spacing=0.2,
                      backoff=Backoff(base=0.05, cap=0.1), stop_timeout=5.0),
        ntp_servers=("127.0.0.1:9", ahead), clock_setter=setter)
    out = CapturingWriter()
    assert run(settings, Console(out)) == 0, out.text
    assert len(setter.calls) == 1
    assert setter.calls[0] == pytest.approx(time.time() + 400 * 86400, abs=30)
    assert "[finished] clock" in out.text and "the clock was set from" in out.text
    stages = [e["stage"] for e in sink.received]
    assert "clock" in stages and stages.index("clock") < stages.index("install")
    event = next(e for e in sink.received if e["stage"] == "clock")
    assert event["status"] == "ok"
    assert event["details"]["server"] == ahead
    assert event["details"]["offset"] == pytest.approx(400 * 86400, abs=30)
    assert event["details"]["failures"][0].startswith("127.0.0.1:9: ")
