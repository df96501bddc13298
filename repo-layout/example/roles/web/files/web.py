"""The web role: one page showing the BOOTPULL_* environment this node was given.

Standard library only (the boot image has Python 3.11 and busybox, nothing else).
GET /          the page (HTML)
GET /env.json  the same data as JSON
GET /healthz   "ok" (what health.sh asks)
"""

import html
import json
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def bootpull_env():
    return {k: v for k, v in sorted(os.environ.items()) if k.startswith("BOOTPULL_")}


def page():
    env = bootpull_env()
    rows = "\n".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in env.items()
    )
    title = html.escape(env.get("BOOTPULL_HOSTNAME", "bootpull node"))
    with open("page.html", encoding="utf-8") as f:
        template = f.read()
    return template.replace("{title}", title).replace("{rows}", rows)


class Handler(BaseHTTPRequestHandler):
    server_version = "bootpull-web/1"

    def do_GET(self):
        if self.path == "/healthz":
            self.reply(200, "text/plain", b"ok\n")
        elif self.path == "/env.json":
            self.reply(200, "application/json", json.dumps(bootpull_env()).encode() + b"\n")
        elif self.path in ("/", "/index.html"):
            self.reply(200, "text/html; charset=utf-8", page().encode())
        else:
            self.reply(404, "text/plain", b"not found\n")

    def reply(self, code, ctype, body):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        sys.stderr.write("web: " + (fmt % args) + "\n")


def main():
    port = int(os.environ.get("BOOTPULL_VAR_PORT", "8080"))
    listen = os.environ.get("BOOTPULL_VAR_LISTEN", "0.0.0.0")
    server = ThreadingHTTPServer((listen, port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"web: serving on {listen}:{port}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
