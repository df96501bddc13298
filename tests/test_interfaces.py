"""Candidate interfaces (bootpull.interfaces) over a fake /sys/class/net tree."""

from __future__ import annotations

from pathlib import Path

from bootpull.interfaces import Interface, Unusable, candidates, ethernet_interfaces


def fake_sys(root: Path, name: str, *, index: int, mac: str = "52:54:00:00:00:01",
             kind: int = 1, carrier: str | None = "1", extra: tuple[str, ...] = ()) -> None:
    base = root / name
    base.mkdir(parents=True)
    (base / "ifindex").write_text(f"{index}\n")
    (base / "address").write_text(f"{mac}\n")
    (base / "type").write_text(f"{kind}\n")
    if carrier is not None:
        (base / "carrier").write_text(f"{carrier}\n")
    for sub in extra:
        (base / sub).mkdir()


def test_ethernet_only_in_index_order(tmp_path: Path) -> None:
    fake_sys(tmp_path, "lo", index=1, mac="00:00:00:00:00:00", kind=772)
    fake_sys(tmp_path, "ens5", index=3, mac="52:54:00:00:00:05")
    fake_sys(tmp_path, "eth9", index=2, mac="52:54:00:00:00:09")
    fake_sys(tmp_path, "br0", index=4, extra=("bridge",))
    fake_sys(tmp_path, "wlan0", index=5, extra=("wireless",))
    fake_sys(tmp_path, "tun0", index=6, kind=65534)
    fake_sys(tmp_path, "zero", index=7, mac="00:00:00:00:00:00")
    found = ethernet_interfaces(tmp_path)
    assert [i.name for i in found] == ["eth9", "ens5"]
    assert str(found[0].mac) == "52-54-00-00-00-09"


def test_named_interfaces_keep_the_given_order_and_say_why_not(tmp_path: Path) -> None:
    fake_sys(tmp_path, "eth0", index=2)
    fake_sys(tmp_path, "eth1", index=3, mac="52:54:00:00:00:02")
    fake_sys(tmp_path, "eth2", index=4, carrier="0")
    fake_sys(tmp_path, "tun0", index=5, kind=65534)
    raised: list[str] = []
    ready, unusable = candidates(["eth1", "eth0", "eth2", "nope", "tun0", "../x"],
                                 carrier_wait=0.2, sys_net=tmp_path, up=raised.append)
    assert [i.name for i in ready] == ["eth1", "eth0"]
    assert raised == ["eth1", "eth0", "eth2"]
    reasons = {u.name: u.reason for u in unusable}
    assert reasons["nope"] == "there is no interface 'nope'"
    assert reasons["tun0"] == "tun0 is not an Ethernet interface"
    assert "eth2 has no carrier" in reasons["eth2"]
    assert "../x" in reasons
    assert all(isinstance(i, Interface) for i in ready)
    assert all(isinstance(u, Unusable) for u in unusable)


def test_no_interfaces_at_all(tmp_path: Path) -> None:
    ready, unusable = candidates([], carrier_wait=0, sys_net=tmp_path, up=lambda _n: None)
    assert ready == []
    assert unusable[0].reason == "there are no Ethernet interfaces"
