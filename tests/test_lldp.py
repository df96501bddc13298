"""LLDP (bootpull.lldp): the TLV reader on real and hostile frames, and the listener on
a real veth pair in network namespaces this test makes (a sender in one, the listener
in the other)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from bootpull.lldp import parse
from hypothesis import given, settings
from hypothesis import strategies as st
from lldp_frames import SENDER, frame, tlv

TESTS = Path(__file__).resolve().parent


def test_a_switch_frame_gives_chassis_port_name_and_management() -> None:
    found = parse(frame())
    assert found == {"chassis": "00:16:3e:11:22:33", "port": "ge-0/0/12", "ttl": 120,
                     "port_description": "uplink to rack 3", "system_name": "switch-7",
                     "system_description": "a switch", "management": "192.0.2.7"}


@pytest.mark.parametrize("bad", [
    b"", b"\x00" * 13, frame()[:12] + b"\x08\x00" + frame()[14:],  # not LLDP
    frame()[:20],  # cut inside a TLV
    frame()[:14] + tlv(2, b"\x05port") + tlv(3, b"\x00\x78"),  # no chassis
    frame()[:14] + tlv(1, b"\x04" + b"\x00" * 6) + tlv(2, b"\x05p"),  # no TTL
])
def test_malformed_frames_are_none(bad: bytes) -> None:
    assert parse(bad) is None


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_any_bytes_parse_or_are_none(data: bytes) -> None:
    head = frame()[:14]
    for candidate in (data, head + data):
        found = parse(candidate)
        assert found is None or {"chassis", "port", "ttl"} <= set(found)


def test_long_names_are_bounded() -> None:
    found = parse(frame(name="x" * 400, port="p" * 300))
    assert found is not None and len(found["system_name"]) == 200
    assert len(found["port"]) == 200


LISTEN = """
import json, sys
from bootpull.lldp import Listener
listener = Listener(sys.argv[1], window=20.0).start()
listener.join(25)
print(json.dumps(listener.neighbour))
"""


@pytest.mark.netns
def test_the_listener_hears_a_neighbour_on_a_real_link(netlab: object) -> None:
    from bootpull_lab import netlab as lab_net

    lab: lab_net.Lab = netlab  # type: ignore[assignment]
    switch = lab.namespace("switch")
    box = lab.namespace("box")
    link = lab.link(box, switch, client_if="eth0")
    sender = switch.popen([sys.executable, "-c", SENDER, link.server_if, "30", str(TESTS)],
                          stdout=subprocess.PIPE)
    try:
        assert sender.stdout is not None and sender.stdout.readline() == b"ready\n"
        heard = box.run([sys.executable, "-c", LISTEN, "eth0"], timeout=60, check=True)
    finally:
        sender.kill()
        sender.wait(timeout=15)
    found = json.loads(heard.stdout)
    assert found["system_name"] == "switch-7" and found["port"] == "ge-0/0/12"
