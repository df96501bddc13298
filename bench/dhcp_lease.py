"""DHCP lease time: bootpull's client against busybox udhcpc on the same namespace pair.

    .venv/bin/python bench/dhcp_lease.py [--runs N]      (root: it builds namespaces)

One lab (bootpull_lab.netlab): a client namespace and a server namespace joined by a
veth pair, dnsmasq with ``no-ping`` (so the server's ~3 s address probe does not
hide the clients' own cost). The runs alternate between the two clients:

- udhcpc: ``busybox udhcpc -i eth0 -f -q -n -T 1 -t 5 -s /bin/true`` (no configuring);
- udhcpc -a: the same with ``-a1000``, udhcpc's own ARP check of the offered address
  (bootpull probes every offered address, RFC 5227: the fair reference for the whole
  process);
- bootpull: ``bootpull node discover --no-configure --json`` with the repository
  given by option 43, so no DNS question is asked: a DHCP exchange and nothing else.

Reported: the median wall time of each, their ratio; and for bootpull, the DHCP
exchange alone (first DISCOVER to ACK, from its ``--log debug`` line), which leaves out
the interpreter start and the imports (scapy's above all).
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bootpull_lab.netlab import Lab, bootpull_argv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with Lab("bench") as lab, tempfile.TemporaryDirectory() as tmp:
        server = lab.namespace("server")
        client = lab.namespace("client")
        link = lab.link(client, server)
        lab.dnsmasq(server, [link], [
            *link.dhcp_range(),
            f"dhcp-option=vendor:bootpull,1,http://{link.server_ip}/repo.git",
        ], ping=False)
        cmdline = Path(tmp) / "cmdline"
        cmdline.write_text("bootpull.dhcp_delay=0\n", encoding="utf-8")
        udhcpc = ["busybox", "udhcpc", "-i", "eth0", "-f", "-q", "-n", "-T", "1", "-t", "5",
                  "-s", "/bin/true"]
        ours = bootpull_argv("node", "discover", "--no-configure", "--json", "--interface",
                             "eth0", "--timeout", "30", "--cmdline", str(cmdline), "--log", "debug")
        arp = [*udhcpc[:2], "-a1000", *udhcpc[2:]]
        walls: dict[str, list[float]] = {"udhcpc": [], "udhcpc -a": [], "bootpull": []}
        exchange: list[float] = []
        for _ in range(args.runs):
            for name, argv in (("udhcpc", udhcpc), ("udhcpc -a", arp), ("bootpull", ours)):
                started = time.perf_counter()
                proc = client.run(argv, check=True, timeout=120)
                walls[name].append(time.perf_counter() - started)
                if name == "bootpull":
                    found = re.search(r"ACK .*, ([\d.]+)s after the first DISCOVER", proc.stderr)
                    if found:
                        exchange.append(float(found.group(1)))
    def interpreter(code: str) -> float:
        times = []
        for _ in range(args.runs):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True)
            times.append(time.perf_counter() - started)
        return statistics.median(times)

    bare = interpreter("pass")
    scapy = interpreter("import bootpull.dhcp_client; bootpull.dhcp_client.preload()") - bare
    u = statistics.median(walls["udhcpc"])
    ua = statistics.median(walls["udhcpc -a"])
    b = statistics.median(walls["bootpull"])
    x = statistics.median(exchange) if exchange else float("nan")
    print(f"| what (median of {args.runs}) | seconds | × udhcpc |")
    print("|---|---|---|")
    print(f"| busybox udhcpc, whole process (reference) | {u:.3f} | 1.0 |")
    print(f"| busybox udhcpc -a1000 (its ARP check), whole process | {ua:.3f} | {ua / u:.1f} |")
    print(f"| bootpull node discover, whole process (ARP probe included) | {b:.3f} | "
          f"{b / u:.1f} ({b / ua:.2f} × udhcpc -a) |")
    print(f"| bootpull DHCP exchange alone (DISCOVER to ACK, in-process) | {x:.3f} | "
          f"{x / u:.1f} |")
    print(f"| bootpull start-up, imports and the ARP probe (whole minus exchange) | {b - x:.3f} | "
          f"{(b - x) / u:.1f} |")
    print(f"| of which: importing the scapy layers (measured apart) | {scapy:.3f} | "
          f"{scapy / u:.1f} |")
    print(f"| of which: a bare Python interpreter start | {bare:.3f} | {bare / u:.1f} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
