"""Import time of the CLI and of the discovery path, as ratios to a bare interpreter.

    .venv/bin/python bench/import_time.py [--runs N]

Each figure is the median wall time of N fresh interpreters (``python -c ...``), and
its ratio to ``python -c pass`` measured in the same run. "scapy.all" is shown only
to say what importing the whole of scapy would cost; bootpull never does.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

CASES = {
    "python -c pass (reference)": "pass",
    "import bootpull.cli": "import bootpull.cli",
    "bootpull --help": "import bootpull.cli, contextlib, io\n"
                       "with contextlib.redirect_stdout(io.StringIO()):\n"
                       "    try: bootpull.cli.main(['--help'])\n"
                       "    except SystemExit: pass",
    "discovery path (discover, dhcp_client, locate + the scapy layers + dns.resolver)":
        "import bootpull.discover, bootpull.dhcp_client, bootpull.locate\n"
        "bootpull.dhcp_client.preload()\n"
        "import dns.resolver",
    "the scapy layers as bootpull loads them (dhcp_client.preload: no route tables)":
        "import bootpull.dhcp_client; bootpull.dhcp_client.preload()",
    "the same scapy layers, plain import (reads the route tables)":
        "import scapy.layers.l2, scapy.layers.inet, scapy.arch.linux",
    "dns.resolver": "import dns.resolver",
    "scapy.all (never imported by bootpull)": "import scapy.all",
}


def measure(code: str, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    results = {name: measure(code, args.runs) for name, code in CASES.items()}
    ref = results["python -c pass (reference)"]
    print(f"| what (median of {args.runs} fresh interpreters) | seconds | × python -c pass |")
    print("|---|---|---|")
    for name, seconds in results.items():
        print(f"| {name} | {seconds:.3f} | {seconds / ref:.1f} |")


if __name__ == "__main__":
    main()
