"""Trusted reports at the home base: signed events, enrollment approved through git,
refusals, replays and the first-seen policy.

A real home base (in a thread) over a real repository (its own clone of the session's
deploy repository, so commits stay local), real requests signed with real Ed25519 keys
through bootpull.httpsig (RFC 9421), and ``bootpull repo enroll``/``reject`` run as the
admin runs them. The node side (a node process that signs) is in tests/test_identity*.py.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from bootpull.cli import main
from bootpull.httpsig import sign_request
from bootpull.mac import Mac
from bootpull_homebase.server import Running
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from homebase_fixtures import DB1, WEB1, WEB2, FakeClock, event, git, settings_for

NEWBOX = Mac.parse("52:54:00:00:00:42")  # no host file
FACTS = {"dmi": {"sys_vendor": "QEMU", "product_name": "Standard PC",
                 "product_serial": "SN-4242"}, "memory_bytes": 1 << 30}


@dataclass(frozen=True)
class Key:
    """What a node's identity gives the signer: an Ed25519 key and an age recipient."""

    signing: Ed25519PrivateKey
    recipient: str

    @property
    def public(self) -> str:
        raw = self.signing.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return "ed25519:" + base64.b64encode(raw).decode()

    @classmethod
    def make(cls) -> Key:
        from pyrage import x25519

        return cls(Ed25519PrivateKey.generate(), str(x25519.Identity.generate().to_public()))


def wait_for(what: str, predicate: Callable[[], object], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def send(hb: Running, events: Any, key: Key | None, *, created: int | None = None,
         nonce: str | None = None, body: bytes | None = None) -> requests.Response:
    data = json.dumps(events).encode() if body is None else body
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers = sign_request(key, method="POST", path="/api/v1/events", body=data,
                               created=created, nonce=nonce)
    return requests.post(hb.url + "/api/v1/events", data=data, headers=headers, timeout=30)


def identity_event(mac: Mac, key: Key) -> dict[str, Any]:
    return event(mac, stage="identity", message="identity (persistent, made now)",
                 details={"identity": "persistent", "key": "SHA256:x", "facts": FACTS,
                          "public_key": key.public, "age": key.recipient})


def clone(homebase_repo: Path, where: Path, *, enrollment: str | None = None) -> Path:
    repo = where / "site"
    git(where, "clone", "-q", str(homebase_repo), str(repo))
    if enrollment is not None:
        settings = repo / "bootpull.toml"
        settings.write_text(settings.read_text().replace(  # a top-level key: before [report]
            "format = 1\n", f'format = 1\nenrollment = "{enrollment}"\n', 1))
        git(repo, "commit", "-qam", f"enrollment {enrollment}")
    return repo


@pytest.fixture
def site(homebase_repo: Path, tmp_path: Path) -> Path:
    return clone(homebase_repo, tmp_path)


@pytest.fixture
def hb(site: Path, tmp_path: Path) -> Iterator[Running]:
    with Running(settings_for(site, tmp_path / "events.db"), clock=FakeClock()) as running:
        running.homebase.repo.refresh = 0.0  # read the deploy head at every request
        yield running


def enroll(site: Path, hb: Running, mac: Mac, *extra: str) -> int:
    return main(["repo", "enroll", str(mac), "--homebase", hb.url, "-C", str(site), *extra])


def test_a_new_signed_node_is_pending_then_enrolled_through_git(
        hb: Running, site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = Key.make()
    first = send(hb, [identity_event(NEWBOX, key), event(NEWBOX, "fail",
                                                          message="not assigned")], key)
    assert first.status_code == 200 and first.json()["identity"] == "pending", first.text
    known = requests.get(f"{hb.url}/api/v1/identities/{NEWBOX}", timeout=30).json()
    assert known["pinned"] is None and len(known["pending"]) == 1
    assert known["pending"][0]["key"] == key.public
    assert known["pending"][0]["facts"]["dmi"]["product_serial"] == "SN-4242"
    page = requests.get(hb.url + "/", timeout=30).text
    assert f'<tr id="node-{NEWBOX}"><td class="st PENDING">PENDING</td>' in page
    node_page = requests.get(f"{hb.url}/nodes/{NEWBOX}", timeout=30).text
    assert "SN-4242" in node_page and f"bootpull repo enroll {NEWBOX}" in node_page
    nodes = requests.get(hb.url + "/api/v1/nodes", timeout=30).json()["nodes"]
    mine = next(n for n in nodes if n["node"] == str(NEWBOX))
    assert (mine["status"], mine["identity"]) == ("PENDING", "pending")

    assert enroll(site, hb, NEWBOX) == 0
    out = capsys.readouterr().out
    assert "enrolled SHA256:" in out and "SN-4242" in git(site, "log", "-1", "--format=%s")
    pin = (site / "identities" / f"{NEWBOX}.toml").read_text()
    assert key.public in pin and key.recipient in pin
    main(["repo", "lint", "-C", str(site)])  # the session repository has other problems
    assert "identities/" not in capsys.readouterr().out  # ... but the pin is a good file
    wait_for("the pin", lambda: requests.get(
        f"{hb.url}/api/v1/identities/{NEWBOX}", timeout=30).json()["pinned"])
    after = send(hb, [event(NEWBOX, message="running")], key)
    assert after.status_code == 200 and after.json()["identity"] == "enrolled"
    page = requests.get(hb.url + "/", timeout=30).text
    assert f'<tr id="node-{NEWBOX}"><td class="st OK">OK</td>' in page


def test_enrolled_nodes_refuse_forged_unsigned_and_replayed_events(
        hb: Running, site: Path) -> None:
    key, thief = Key.make(), Key.make()
    assert send(hb, [identity_event(WEB1, key)], key).status_code == 200
    assert enroll(site, hb, WEB1) == 0
    wait_for("the pin", lambda: hb.homebase.pinned_key(str(WEB1)) == key.public)
    assert send(hb, [event(WEB1, "fail", message="disk full")], key).status_code == 200
    stored = hb.homebase.store.count()
    state = requests.get(f"{hb.url}/api/v1/nodes/{WEB1}", timeout=30).json()["node"]

    forged = send(hb, [event(WEB1, "ok", message="all good (forged)")], thief)
    assert forged.status_code == 401 and "re-imaged box is PENDING" in forged.text
    unsigned = send(hb, [event(WEB1, "ok", message="all good (anonymous)")], None)
    assert unsigned.status_code == 401 and "must be signed" in unsigned.text
    mixed = send(hb, [event(WEB2), event(WEB1, "ok", message="hidden in a batch")], None)
    assert mixed.status_code == 401
    data = json.dumps([event(WEB1, "warn", message="once")]).encode()
    headers = sign_request(key, method="POST", path="/api/v1/events", body=data)
    assert requests.post(hb.url + "/api/v1/events", data=data, headers=headers,
                         timeout=30).status_code == 200
    replay = requests.post(hb.url + "/api/v1/events", data=data, headers=headers, timeout=30)
    assert replay.status_code == 401 and "replay" in replay.text
    newest = int(time.time())
    assert send(hb, [event(WEB1, "warn", message="new")], key, created=newest).status_code == 200
    stale = send(hb, [event(WEB1, "warn", message="an old capture")], key,
                 created=newest - 3600)
    assert stale.status_code == 401 and "replay" in stale.text
    tampered = send(hb, [event(WEB1, "ok")], key)  # signed, then the body changed:
    body = json.dumps([event(WEB1, "ok", message="changed in flight")]).encode()
    again = requests.post(hb.url + "/api/v1/events", data=body, timeout=30, headers=sign_request(
        key, method="POST", path="/api/v1/events", body=b"[]"))
    assert tampered.status_code == 200 and again.status_code == 401
    assert "Content-Digest" in again.text

    assert hb.homebase.store.count() == stored + 3  # "once", "new", the last ok
    now = requests.get(f"{hb.url}/api/v1/nodes/{WEB1}", timeout=30).json()["node"]
    assert "forged" not in json.dumps(now) and "anonymous" not in json.dumps(now)
    assert now["last_report"] >= state["last_report"]
    health = requests.get(hb.url + "/healthz", timeout=30).json()
    assert health["refused_identity"] == 6
    metrics = requests.get(hb.url + "/metrics", timeout=30).text
    for reason, count in (("wrong_key", 1), ("unsigned", 2), ("replay", 2),
                          ("bad_signature", 1)):
        assert f'bootpull_events_refused_total{{reason="{reason}"}} {count}.0' in metrics
    # the thief's key waits as PENDING, and a reject commits it away
    known = requests.get(f"{hb.url}/api/v1/identities/{WEB1}", timeout=30).json()
    assert [p["key"] for p in known["pending"]] == [thief.public]
    assert known["pending"][0]["refused"] == 1
    assert main(["repo", "reject", str(WEB1), "--homebase", hb.url, "-C", str(site)]) == 0
    wait_for("the rejection", lambda: not requests.get(
        f"{hb.url}/api/v1/identities/{WEB1}", timeout=30).json()["pending"])
    rejected = send(hb, [event(WEB1, "ok", message="again")], thief)
    assert rejected.status_code == 401 and "was rejected" in rejected.text
    assert send(hb, [event(WEB1, message="still me")], key).status_code == 200


def test_a_reimaged_box_goes_back_to_pending(hb: Running, site: Path) -> None:
    old, new = Key.make(), Key.make()
    assert send(hb, [identity_event(DB1, old)], old).status_code == 200
    assert enroll(site, hb, DB1) == 0
    wait_for("the pin", lambda: hb.homebase.pinned_key(str(DB1)) == old.public)
    assert send(hb, [event(DB1, role="db", message="running")], old).status_code == 200
    refused = send(hb, [identity_event(DB1, new), event(DB1, role="db")], new)
    assert refused.status_code == 401
    page = requests.get(hb.url + "/", timeout=30).text
    assert f'<tr id="node-{DB1}"><td class="st PENDING">PENDING</td>' in page
    assert main(["repo", "enroll", str(DB1), "--homebase", hb.url, "-C", str(site)]) == 0
    wait_for("the new pin", lambda: hb.homebase.pinned_key(str(DB1)) == new.public)
    assert send(hb, [event(DB1, role="db", message="back")], new).status_code == 200
    assert send(hb, [event(DB1, role="db", message="old key")], old).status_code == 401


def test_first_seen_pins_the_first_key_and_refuses_a_second(
        homebase_repo: Path, tmp_path: Path) -> None:
    repo = clone(homebase_repo, tmp_path, enrollment="first-seen")
    with Running(settings_for(repo, tmp_path / "events.db"), clock=FakeClock()) as running:
        running.homebase.repo.refresh = 0.0
        first, second = Key.make(), Key.make()
        answer = send(running, [identity_event(NEWBOX, first)], first)
        assert answer.status_code == 200 and answer.json()["identity"] == "enrolled"
        known = requests.get(f"{running.url}/api/v1/identities/{NEWBOX}", timeout=30).json()
        assert known["pinned"] == {"key": first.public, "source": "first-seen",
                                   "fingerprint": known["pinned"]["fingerprint"]}
        assert known["enrollment"] == "first-seen"
        other = send(running, [event(NEWBOX, message="me too")], second)
        assert other.status_code == 401
        assert send(running, [event(NEWBOX, message="me")], first).status_code == 200
        assert send(running, [event(NEWBOX, message="anon")], None).status_code == 401
        # a commit pins another key, and it wins over the first-seen pin
        assert main(["repo", "enroll", str(NEWBOX), "--key", second.public, "--age",
                     second.recipient, "-C", str(repo)]) == 0
        wait_for("the committed pin",
                 lambda: running.homebase.pinned_key(str(NEWBOX)) == second.public)
        assert send(running, [event(NEWBOX, message="now")], second).status_code == 200
        assert send(running, [event(NEWBOX, message="then")], first).status_code == 401


def test_enroll_and_reject_refuse_bad_input(hb: Running, site: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert enroll(site, hb, NEWBOX) == 2  # nothing pending
    assert "no pending key" in capsys.readouterr().err
    assert main(["repo", "enroll", str(NEWBOX), "--key", "ed25519:AAAA", "-C",
                 str(site)]) == 2
    assert "not an ed25519 key" in capsys.readouterr().err
    assert main(["repo", "enroll", "not-a-mac", "--key", Key.make().public, "-C",
                 str(site)]) == 2
    assert main(["repo", "enroll", str(NEWBOX), "--homebase", "http://127.0.0.1:9",
                 "-C", str(site)]) == 2
    assert "cannot ask the home base" in capsys.readouterr().err
    one, two = Key.make(), Key.make()
    send(hb, [identity_event(NEWBOX, one)], one)
    send(hb, [identity_event(NEWBOX, two)], two)
    assert enroll(site, hb, NEWBOX) == 2
    assert "2 pending keys" in capsys.readouterr().err
    assert enroll(site, hb, f"node {NEWBOX} is not assigned", "--key",
                  requests.get(f"{hb.url}/api/v1/identities/{NEWBOX}",
                               timeout=30).json()["pending"][1]["fingerprint"]) == 0
    assert not (site / "identities" / "x.toml").exists()


def test_lint_reports_broken_identity_files(site: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    ids = site / "identities"
    ids.mkdir()
    good = Key.make()
    (ids / f"{WEB1}.toml").write_text(f'format = 1\nkey = "{good.public}"\n'
                                      f'age = "{good.recipient}"\n')
    (ids / f"{WEB2}.toml").write_text('format = 1\nkey = "ssh-rsa AAAA"\n')
    (ids / f"{DB1}.toml").write_text('format = 1\nage = "age1nope"\nwhat = 1\n')
    (ids / "52:54:00:00:00:09.toml").write_text("format = 1\n")
    git(site, "add", "-A")
    git(site, "commit", "-qm", "identities")
    assert main(["repo", "lint", "-C", str(site)]) == 1
    err = capsys.readouterr()
    text = err.out + err.err
    assert f"identities/{WEB2}.toml" in text and "not an ed25519 key" in text
    assert f"identities/{DB1}.toml" in text and "unknown key 'what'" in text
    assert "not an age X25519 recipient" in text and "canonical MAC" in text
    assert f"identities/{WEB1}.toml" not in text


def test_first_seen_follows_a_diskless_node_across_reboots_and_nothing_else(
        homebase_repo: Path, tmp_path: Path) -> None:
    """Under first-seen, a node whose key is ephemeral (diskless: a new key every boot)
    re-pins with its next ephemeral key, recorded in the audit log; a persistent pin is
    never replaced, and an ephemeral pin is not replaced by a persistent claim."""
    repo = clone(homebase_repo, tmp_path, enrollment="first-seen")

    def boot(mac: Mac, key: Key, kind: str) -> requests.Response:
        return send(running, [event(mac, stage="identity", message="identity",
                                    details={"identity": kind, "key": "SHA256:x",
                                             "facts": {}})], key)

    with Running(settings_for(repo, tmp_path / "events.db"), clock=FakeClock()) as running:
        diskless, disk = Mac.parse("02:00:00:00:00:d1"), Mac.parse("02:00:00:00:00:d2")
        first, second, third = Key.make(), Key.make(), Key.make()
        assert boot(diskless, first, "ephemeral").status_code == 200
        assert boot(diskless, second, "ephemeral").status_code == 200  # rebooted
        assert running.homebase.pinned_key(str(diskless)) == second.public
        assert boot(diskless, first, "ephemeral").status_code == 200  # and again
        assert boot(diskless, third, "persistent").status_code == 401
        audit = requests.get(running.url + "/api/v1/audit", timeout=30).json()["audit"]
        repins = [a for a in audit if a["action"] == "re-pin" and a["node"] == str(diskless)]
        assert len(repins) == 2 and repins[-1]["detail"]["new_key"] == second.public
        assert boot(disk, first, "persistent").status_code == 200
        assert boot(disk, second, "ephemeral").status_code == 401
        assert running.homebase.pinned_key(str(disk)) == first.public
