"""The lease's names for the role: /etc/resolv.conf and /etc/hosts (to temp paths here),
the search list, and that nothing is written outside the boot image."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

from bootpull import dhcp, names, resolver


@dataclass(frozen=True)
class FakeLease:
    dns_servers: tuple[object, ...] = ("10.77.1.1", "10.77.1.2")
    domain: str | None = "lab.test"
    search: tuple[str, ...] = ("lab.test", "corp.test")
    hostname: str | None = "web-1"
    ip: object = "10.77.1.50"


def targets(tmp_path: Path) -> names.Targets:
    return names.Targets(tmp_path / "etc" / "resolv.conf", tmp_path / "etc" / "hosts")


def test_the_search_list_is_option_119_else_option_15() -> None:
    assert names.search_list("lab.test", ["a.test", "b.test."]) == ["a.test", "b.test"]
    assert names.search_list("lab.test", []) == ["lab.test"]
    assert names.search_list(None, []) == []
    assert names.search_list(None, ["A.test", "a.test"]) == ["a.test"]


def test_resolv_conf_and_hosts_from_the_lease(tmp_path: Path) -> None:
    where = targets(tmp_path)
    written = names.apply(FakeLease(), targets=where)
    assert written == [where.resolv_conf, where.hosts]
    conf = where.resolv_conf.read_text().splitlines()
    assert conf[1:] == ["nameserver 10.77.1.1", "nameserver 10.77.1.2",
                        "search lab.test corp.test"]
    hosts = where.hosts.read_text().splitlines()
    assert "127.0.0.1\tlocalhost" in hosts
    assert "10.77.1.50\tweb-1.lab.test web-1" in hosts
    assert oct(where.hosts.stat().st_mode & 0o777) == "0o644"
    assert oct(where.resolv_conf.stat().st_mode & 0o777) == "0o644"
    assert sorted(p.name for p in where.hosts.parent.iterdir()) == ["hosts", "resolv.conf"]


def test_the_node_hostname_wins_and_only_changes_are_written(tmp_path: Path) -> None:
    where = targets(tmp_path)
    names.apply(FakeLease(), targets=where)
    before = where.resolv_conf.stat().st_ino
    assert names.apply(FakeLease(), targets=where) == []  # nothing changed
    assert names.apply(FakeLease(), hostname="marker-1", targets=where) == [where.hosts]
    assert "10.77.1.50\tmarker-1.lab.test marker-1" in where.hosts.read_text()
    assert where.resolv_conf.stat().st_ino == before


def test_a_renewed_lease_rewrites_the_files_and_repoints_the_resolver(tmp_path: Path) -> None:
    where = targets(tmp_path)
    with resolver.lease_names(["10.77.1.1"], ["lab.test"]):
        names.apply(FakeLease(), targets=where)
        renewed = FakeLease(dns_servers=(IPv4Address("10.77.1.9"),), domain="new.test",
                            search=())
        assert names.apply(renewed, targets=where) == [where.resolv_conf, where.hosts]
        assert resolver._active is not None
        assert resolver._active.servers == ["10.77.1.9"]
        assert resolver._active.search == ["new.test"]
    assert where.resolv_conf.read_text().splitlines()[1:] == [
        "nameserver 10.77.1.9", "search new.test"]


def test_a_dhcp_lease_is_accepted_as_it_is(tmp_path: Path) -> None:
    lease = dhcp.Lease(xid=1, ip=IPv4Address("10.0.0.5"), server_id=IPv4Address("10.0.0.1"),
                       prefix=24, dns_servers=(IPv4Address("10.0.0.1"),), hostname="h1",
                       search=("x.test",))
    where = targets(tmp_path)
    names.apply(lease, targets=where)
    assert "search x.test" in where.resolv_conf.read_text()
    assert "10.0.0.5\th1.x.test h1" in where.hosts.read_text()


def test_limits_and_odd_values() -> None:
    text = names.resolv_conf_text([f"10.0.0.{i}" for i in range(5)],
                                  [f"d{i}.test" for i in range(9)])
    assert text.count("nameserver") == 3
    assert text.splitlines()[-1] == "search " + " ".join(f"d{i}.test" for i in range(6))
    assert "nameserver" not in names.resolv_conf_text([], ["a.test"])
    assert "\tweird" not in names.hosts_text("weird name\n", "10.0.0.5", None)
    assert "127.0.1.1\th1" in names.hosts_text("h1", "", None)
    assert "10.0.0.5\th1.example h1" not in names.hosts_text("h1.example", "10.0.0.5", "x")


def test_nothing_is_written_outside_the_boot_image(tmp_path: Path) -> None:
    assert names.image_targets(tmp_path / "image.conf") is None
    (tmp_path / "image.conf").write_text("IMAGE_VERSION=test\n")
    assert names.image_targets(tmp_path / "image.conf") == names.Targets(
        Path("/etc/resolv.conf"), Path("/etc/hosts"))
    assert not names.IMAGE_MARKER.exists()  # tests never run inside the boot image
    system = [p for p in (Path("/etc/resolv.conf"), Path("/etc/hosts")) if p.exists()]
    before = {p: p.stat().st_mtime_ns for p in system}
    assert names.apply(FakeLease()) == []  # the default: the image's files only
    assert {p: p.stat().st_mtime_ns for p in system} == before
