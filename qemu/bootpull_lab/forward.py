"""The guestfwd helper: one guest connection ↔ one TCP connection to 127.0.0.1:PORT.

QEMU's user network (with ``restrict=on``) runs this once per guest connection to
10.0.2.100:8080 and wires the guest's bytes to its stdin and stdout. It connects to
the loopback address only, so the guest can reach the home base and nothing else.

It says nothing on stdout or stderr: QEMU hands both to the guest's connection, so a
message there would reach the guest as a garbled reply. When nothing listens on the
port it just closes the connection (the guest sees the server as down); ``--log FILE``
appends the reason there.

    python -m bootpull_lab.forward [--log FILE] PORT
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
    log = None
    if len(argv) == 3 and argv[0] == "--log":
        log, argv = argv[1], argv[2:]
    if len(argv) != 1 or not argv[0].isdigit():
        print("usage: python -m bootpull_lab.forward [--log FILE] PORT", file=sys.stderr)
        return 2
    try:
        pump(int(argv[0]))
    except OSError as exc:
        if log is not None:
            with open(log, "a", encoding="utf-8") as out:
                out.write(f"bootpull lab forward: 127.0.0.1:{argv[0]}: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
