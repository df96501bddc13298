"""The lab network: namespaces, veth pairs and a real dnsmasq, cleaned up always.

Everything lives inside network namespaces this module creates, so no packet
leaves them; the host's own interfaces and routes are never touched. Needs root.

    with Lab() as lab:
        server = lab.namespace("srv")
        client = lab.namespace("cli")
        link = lab.link(client, server, client_if="eth0")      # 10.77.1.0/24
        lab.dnsmasq(server, [link], [
            *link.dhcp_range(tag="a"),
            "dhcp-option=tag:a,vendor:bootpull,1,http://10.77.1.1/repo.git",
        ])
        proc = client.run([sys.executable, "-m", "bootpull", "node", "discover",
                           "--json", "--interface", "eth0"], check=False)

- :class:`Namespace` runs commands inside one namespace (``ip netns exec``).
- :meth:`Lab.link` joins two namespaces with a veth pair; the server end gets the
  subnet's ``.1``, the client end no address (DHCP's job). ``server=None`` leaves
  the peer in a namespace of its own where nothing answers (carrier, no DHCP).
- :meth:`Lab.dnsmasq` starts dnsmasq (DHCP + DNS) on some links of a server
  namespace, with any extra configuration lines, and waits until it listens.
- :meth:`Lab.hostile_dhcp` starts :mod:`bootpull_lab.hostile_dhcp`, a scapy DHCP
  server that answers with one kind of malformed reply.
- :meth:`Lab.start` runs any long-lived server in a namespace (stopped on exit);
  :meth:`Lab.wait_tcp` waits for its port.

``python -m bootpull_lab.netlab`` builds a lab, serves a repository URL by one
discovery source, runs ``bootpull node discover`` in it and prints the result.

Names carry the pid, a counter and a random part (``bp<pid>x<n><hex>-<role>``) so
parallel runs do not clash; :func:`sweep` removes namespaces left by dead processes.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from types import TracebackType

from bootpull.mac import Mac

PREFIX = "bp"
_counter = itertools.count(1)


class LabError(RuntimeError):
    """Building the lab network failed (not root? no iproute2? no dnsmasq?)."""


def _run(argv: Sequence[str], *, check: bool = True,
         timeout: float = 60) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed ({proc.returncode}): "
                       f"{proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def available() -> str | None:
    """None if this machine can build a lab, else why not (for pytest skips)."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in ("ip", "dnsmasq"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


@dataclass(frozen=True)
class Namespace:
    name: str

    def argv(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, argv: Sequence[str], *, check: bool = True, timeout: float = 120,
            env: dict[str, str] | None = None,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(self.argv(argv), capture_output=True, text=True,
                              timeout=timeout, env=env, input=input)
        if check and proc.returncode != 0:
            raise LabError(f"in {self.name}: {' '.join(argv)} failed ({proc.returncode}): "
                           f"{proc.stderr.strip()[-2000:]}")
        return proc

    def popen(self, argv: Sequence[str], **kwargs: object) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.argv(argv), **kwargs)  # type: ignore[call-overload,no-any-return]

    def ip(self, *args: str) -> str:
        return _run(["ip", "-n", self.name, *args]).stdout


@dataclass(frozen=True)
class Link:
    """One veth pair: ``client_if`` in ``client``, ``server_if`` (``.1``) in ``server``."""

    client: Namespace
    server: Namespace
    client_if: str
    server_if: str
    network: IPv4Network
    client_mac: Mac

    @property
    def server_ip(self) -> IPv4Address:
        return self.network.network_address + 1

    def host(self, n: int) -> IPv4Address:
        return self.network.network_address + n

    def dhcp_range(self, *, tag: str | None = None, first: int = 50, last: int = 150,
                   lease: str = "1h") -> list[str]:
        """dnsmasq lines for a DHCP range on this link, optionally setting ``tag``."""
        set_tag = f"set:{tag}," if tag else ""
        return [f"dhcp-range={set_tag}{self.host(first)},{self.host(last)},"
                f"{self.network.netmask},{lease}"]


class Dnsmasq:
    """A running dnsmasq; :meth:`log` is its log (``log-dhcp``, ``log-queries``)."""

    def __init__(self, proc: subprocess.Popen[bytes], log_path: Path, conf_path: Path) -> None:
        self.proc = proc
        self.log_path = log_path
        self.conf_path = conf_path

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        _stop(self.proc)


def _stop(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(timeout=grace)


class Lab:
    """Namespaces, links and servers that are all removed on exit, even on failure."""

    def __init__(self, tag: str = "") -> None:
        # pid + counter + random: pids are reused in containers, stale names may linger
        self.id = f"{PREFIX}{os.getpid()}x{next(_counter)}{secrets.token_hex(2)}{tag[:4]}"
        self.dir = Path(tempfile.mkdtemp(prefix=f"{self.id}-"))
        self._namespaces: list[Namespace] = []
        self._procs: list[subprocess.Popen[bytes]] = []
        self._subnets = itertools.count(1)
        self._macs = itertools.count(1)

    def __enter__(self) -> Lab:
        reason = available()
        if reason:
            raise LabError(f"cannot build a lab network: {reason}")
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        for proc in reversed(self._procs):
            with contextlib.suppress(Exception):
                _stop(proc)
        self._procs.clear()
        for ns in reversed(self._namespaces):
            _run(["ip", "netns", "del", ns.name], check=False)
        self._namespaces.clear()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- building ---------------------------------------------------------------------

    def namespace(self, role: str) -> Namespace:
        """A fresh namespace with its loopback up. ``role`` is a short label."""
        ns = Namespace(f"{self.id}-{role}")
        _run(["ip", "netns", "add", ns.name])
        self._namespaces.append(ns)
        ns.ip("link", "set", "lo", "up")
        return ns

    def link(
        self,
        client: Namespace,
        server: Namespace | None = None,
        *,
        client_if: str = "eth0",
        server_if: str | None = None,
        network: IPv4Network | str | None = None,
        mac: Mac | str | None = None,
        up: bool = True,
    ) -> Link:
        """A veth pair between ``client`` and ``server`` (a silent namespace if None)."""
        n = next(self._subnets)
        if server is None:
            server = self.namespace(f"void{n}")
        server_if = server_if or f"s{n}"
        net = IPv4Network(network) if network else IPv4Network(f"10.77.{n}.0/24")
        if mac is None:
            m = next(self._macs)
            mac = Mac(bytes([0x52, 0x54, 0x00, 0xB0, (m >> 8) & 0xFF, m & 0xFF]))
        elif isinstance(mac, str):
            mac = Mac.parse(mac)
        _run(["ip", "-n", client.name, "link", "add", client_if, "address", mac.colons,
              "type", "veth", "peer", "name", server_if, "netns", server.name])
        link = Link(client, server, client_if, server_if, net, mac)
        server.ip("addr", "add", f"{link.server_ip}/{net.prefixlen}", "dev", server_if)
        server.ip("link", "set", server_if, "up")
        if up:
            client.ip("link", "set", client_if, "up")
        return link

    def dnsmasq(self, server: Namespace, links: Sequence[Link], lines: Sequence[str] = (),
                *, ping: bool = True, wait: float = 20.0) -> Dnsmasq:
        """Start dnsmasq on ``links`` in ``server`` with extra config ``lines``.

        The base configuration: DHCP and DNS on those interfaces only, no upstream
        servers, no /etc/hosts, no lease file, logging to a file. Add ranges with
        :meth:`Link.dhcp_range`, records with ``srv-host=``, ``txt-record=``,
        ``host-record=``, and ``local=/DOMAIN/`` for a domain it answers alone.
        ``ping=False`` adds ``no-ping`` (dnsmasq otherwise pings ~3 s before offering).
        """
        n = len(self._procs)
        conf = self.dir / f"dnsmasq{n}.conf"
        log = self.dir / f"dnsmasq{n}.log"
        base = [f"interface={link.server_if}" for link in links] + [
            "bind-interfaces", "except-interface=lo", "no-resolv", "no-hosts",
            "leasefile-ro", "log-dhcp", "log-queries", f"log-facility={log}",
            "user=root", "group=root", f"pid-file={self.dir / f'dnsmasq{n}.pid'}",
        ]
        if not ping:
            base.append("no-ping")
        conf.write_text("\n".join([*base, *lines]) + "\n", encoding="utf-8")
        check = _run(["dnsmasq", "--test", f"--conf-file={conf}"], check=False)
        if check.returncode != 0:
            raise LabError(f"dnsmasq rejects the configuration {conf}: {check.stderr.strip()}")
        proc = server.popen(["dnsmasq", "--keep-in-foreground", f"--conf-file={conf}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._procs.append(proc)
        server_obj = Dnsmasq(proc, log, conf)
        end = time.monotonic() + wait
        while time.monotonic() < end:
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise LabError(f"dnsmasq exited ({proc.returncode}): {err.strip()}"
                               f"\n{server_obj.log()}")
            listening = server.run(["ss", "-Hlun", "sport = :67"], check=False).stdout
            if listening.strip():
                return server_obj
            time.sleep(0.1)
        raise LabError(f"dnsmasq did not listen on port 67 within {wait:.0f}s")

    def hostile_dhcp(self, link: Link, case: str) -> subprocess.Popen[bytes]:
        """Start the malformed-reply server ``case`` on ``link``'s server end."""
        return self.hostile_dhcp_many([(link, case)])

    def hostile_dhcp_many(self, posts: Sequence[tuple[Link, str]]) -> subprocess.Popen[bytes]:
        """One malformed-reply server process answering on several links (same server
        namespace), each with its own case; see :data:`bootpull_lab.hostile_dhcp.CASES`."""
        from bootpull_lab.hostile_dhcp import CASES

        if not posts:
            raise LabError("hostile_dhcp_many needs at least one (link, case)")
        servers = {link.server for link, _ in posts}
        if len(servers) != 1:
            raise LabError("all links of one hostile server must share its namespace")
        argv = [sys.executable, "-m", "bootpull_lab.hostile_dhcp"]
        for link, case in posts:
            if case not in CASES:
                raise LabError(f"unknown hostile case {case!r}; known: {', '.join(CASES)}")
            argv += ["--serve", f"{link.server_if}:{case}:{link.server_ip}:{link.host(77)}:"
                                f"{link.network.prefixlen}"]
        ready = self.dir / f"hostile-{len(self._procs)}.ready"
        proc = posts[0][0].server.popen([*argv, "--ready", str(ready)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._procs.append(proc)
        end = time.monotonic() + 60
        while not ready.exists():
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise LabError(f"hostile DHCP server exited ({proc.returncode}): {err}")
            if time.monotonic() > end:
                raise LabError("hostile DHCP server did not start within 60s")
            time.sleep(0.05)
        return proc

    def start(self, ns: Namespace, argv: Sequence[str], *, log: str | None = None,
              env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start a long-running process in ``ns`` (a home base, a web server...); the lab
        stops it on exit. Its output goes to ``lab.dir/<log>`` (default: a numbered file)."""
        out = self.dir / (log or f"proc{len(self._procs)}.log")
        with open(out, "ab") as sink:
            proc = ns.popen(argv, stdout=sink, stderr=subprocess.STDOUT, env=env)
        self._procs.append(proc)
        return proc

    def wait_tcp(self, ns: Namespace, port: int, *, timeout: float = 30.0,
                 proc: subprocess.Popen[bytes] | None = None) -> None:
        """Wait until something listens on TCP ``port`` in ``ns`` (or ``proc`` exits)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if proc is not None and proc.poll() is not None:
                raise LabError(f"the process exited ({proc.returncode}) before port {port} "
                               "listened")
            if ns.run(["ss", "-Hltn", f"sport = :{port}"], check=False).stdout.strip():
                return
            time.sleep(0.1)
        raise LabError(f"nothing listened on TCP port {port} in {ns.name} within {timeout:.0f}s")

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        """Stop one process started by this lab (a server between two tests)."""
        _stop(proc)


def bootpull_argv(*args: str) -> list[str]:
    """``bootpull ARGS`` with this interpreter (the venv the tests run in)."""
    return [sys.executable, "-m", "bootpull", *args]


def sweep(prefix: str = PREFIX) -> list[str]:
    """Delete namespaces named ``<prefix><pid>x...`` whose process is gone."""
    removed = []
    listing = _run(["ip", "netns", "list"], check=False).stdout
    for line in listing.splitlines():
        name = line.split()[0] if line.split() else ""
        if not name.startswith(prefix):
            continue
        pid_text = name[len(prefix):].split("x", 1)[0]
        if not pid_text.isdigit() or Path(f"/proc/{pid_text}").exists():
            continue
        _run(["ip", "netns", "del", name], check=False)
        removed.append(name)
    return removed


DEMO_SOURCES = ("dhcp-43", "dhcp-67", "dns-srv", "well-known")


def demo_lines(link: Link, source: str, domain: str = "lab.test") -> list[str]:
    """dnsmasq lines that make ``source`` the one that locates ``http://<server>/repo.git``."""
    url = f"http://{link.server_ip}/repo.git"
    lines = [*link.dhcp_range(), f"domain={domain}", f"local=/{domain}/"]
    if source == "dhcp-43":
        lines.append(f"dhcp-option=vendor:bootpull,1,{url}")
    elif source == "dhcp-67":
        lines.append(f"dhcp-option=67,{url}")
    elif source == "dns-srv":
        lines += [f"srv-host=_bootpull._tcp.{domain},repo.{domain},80",
                  f'txt-record=_bootpull._tcp.{domain},"path=/repo.git"',
                  f"host-record=repo.{domain},{link.server_ip}"]
    elif source == "well-known":
        lines.append(f"host-record=bootpull.{domain},{link.server_ip}")
    else:
        raise LabError(f"unknown source {source!r}; use one of {', '.join(DEMO_SOURCES)}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Build a lab, serve the repository URL by one source, run discover, clean up."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m bootpull_lab.netlab",
        description="Run 'bootpull node discover' against a real dnsmasq in network "
                    "namespaces (needs root), then remove everything.")
    parser.add_argument("--source", choices=DEMO_SOURCES, default="dhcp-43")
    parser.add_argument("--nics", type=int, default=1,
                        help="client NICs; only the last one reaches dnsmasq")
    args = parser.parse_args(argv)
    with Lab("demo") as lab:
        server = lab.namespace("server")
        client = lab.namespace("client")
        links = [lab.link(client, None, client_if=f"eth{i}") for i in range(args.nics - 1)]
        link = lab.link(client, server, client_if=f"eth{args.nics - 1}")
        links.append(link)
        lab.dnsmasq(server, [link], demo_lines(link, args.source))
        print(f"lab: client namespace {client.name}, NICs "
              f"{', '.join(f'{x.client_if} ({x.client_mac})' for x in links)}; "
              f"dnsmasq on {link.server_if} {link.server_ip} serving {args.source}",
              file=sys.stderr, flush=True)
        # every client NIC, named: outside the boot image discover needs --interface
        names = [arg for x in links for arg in ("--interface", x.client_if)]
        proc = subprocess.run(client.argv(bootpull_argv("node", "discover", "--json",
                                                        *names)), check=False)
        return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
