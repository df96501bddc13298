"""The guestfwd helper: one guest connection ↔ one TCP connection to 127.0.0.1:PORT.

QEMU's user network (with ``restrict=on``) runs this once per guest connection to
10.0.2.100:8080 and wires the guest's bytes to its stdin and stdout. It connects to
the loopback address only, so the guest can reach the home base and nothing else.

    python -m bootpull_lab.forward PORT
"""

from __future__ import annotations

import os
import selectors
import socket
import sys


def pump(port: int, stdin_fd: int = 0, stdout_fd: int = 1) -> None:
    """Copy bytes both ways until either side closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.settimeout(None)
        sel = selectors.DefaultSelector()
        sel.register(stdin_fd, selectors.EVENT_READ, "in")
        sel.register(conn, selectors.EVENT_READ, "sock")
        open_sides = 2
        while open_sides:
            for key, _ in sel.select():
                if key.data == "in":
                    data = os.read(stdin_fd, 65536)
                    if not data:
                        sel.unregister(stdin_fd)
                        conn.shutdown(socket.SHUT_WR)
                        open_sides -= 1
                    else:
                        conn.sendall(data)
                else:
                    data = conn.recv(65536)
                    if not data:
                        sel.unregister(conn)
                        open_sides -= 1
                        return
                    view = memoryview(data)
                    while view:
                        written = os.write(stdout_fd, view)
                        view = view[written:]


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].isdigit():
        print("usage: python -m bootpull_lab.forward PORT", file=sys.stderr)
        return 2
    try:
        pump(int(argv[0]))
    except OSError as exc:
        print(f"bootpull lab forward: 127.0.0.1:{argv[0]}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
