"""The git servers sites run, each started on 127.0.0.1 for one test (the fetch ladder).

``git_server_kind(kind, repo)`` → the repository's URL, for these kinds:

- ``stock``: ``git http-backend`` behind a CGI host that passes ``Git-Protocol``,
  with git's default config → rung ``v2``;
- ``filter``: the same with ``uploadpack.allowFilter=true`` → ``v2+filter``;
- ``no-protocol-header``: a CGI host that drops ``Git-Protocol`` (as python's
  ``http.server --cgi`` does), default config → ``v0``;
- ``no-protocol-header-filter``: the same with ``allowFilter`` and
  ``allowAnySHA1InWant`` → ``v0+filter``;
- ``dumb``: a static file server over the repository after ``git update-server-info``
  and ``git repack -a -d`` → ``dumb``; ``dumb-loose``: the same, loose objects only;
- ``dulwich``: dulwich's own smart HTTP server (``dulwich.web``) → ``v0``.

The first four are :class:`gitserver.GitHttpServer` (``git http-backend`` as CGI);
``git_config`` there is passed to the backend only, so "default config" means git's
defaults with nothing switched on. ``repo`` is a work tree (its ``.git`` is served)
or a bare repository.
"""

from __future__ import annotations

import functools
import subprocess
import threading
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from gitserver import GitHttpServer

#: git's defaults: what a site gets without configuring anything
STOCK = {"uploadpack.allowFilter": "false", "uploadpack.allowAnySHA1InWant": "false"}
KINDS: dict[str, str] = {
    "stock": "v2", "filter": "v2+filter", "no-protocol-header": "v0",
    "no-protocol-header-filter": "v0+filter", "dumb": "dumb", "dumb-loose": "dumb",
    "dulwich": "v0",
}


def git_dir(repo: Path) -> Path:
    return repo / ".git" if (repo / ".git").is_dir() else repo


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Thread:
    """A wsgiref or http.server server in a thread."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.thread = threading.Thread(target=server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def start_dumb(repo: Path, *, pack: bool = True) -> tuple[str, Callable[[], None]]:
    """A static file server whose ``/repo.git`` is ``repo``'s git directory."""
    where = git_dir(repo)
    if pack:
        subprocess.run(["git", "-C", str(where), "repack", "-a", "-d", "-q"], check=True)
    subprocess.run(["git", "-C", str(where), "update-server-info"], check=True)
    root = where.parent / f"{where.name}-static"
    root.mkdir(exist_ok=True)
    link = root / "repo.git"
    if not link.exists():
        link.symlink_to(where)
    handler = functools.partial(_Quiet, directory=str(root))
    server = _Thread(ThreadingHTTPServer(("127.0.0.1", 0), handler))
    return f"http://127.0.0.1:{server.server.server_address[1]}/repo.git", server.stop


def start_dulwich(repo: Path) -> tuple[str, Callable[[], None]]:
    """dulwich's smart HTTP server (``dulwich.web``) serving ``repo`` at ``/repo.git``."""
    from dulwich.repo import Repo
    from dulwich.server import DictBackend
    from dulwich.web import (
        WSGIRequestHandlerLogger,
        WSGIServerLogger,
        make_server,
        make_wsgi_chain,
    )

    app = make_wsgi_chain(DictBackend({"/repo.git": Repo(str(repo))}))
    httpd = make_server("127.0.0.1", 0, app, handler_class=WSGIRequestHandlerLogger,
                        server_class=WSGIServerLogger)
    server = _Thread(httpd)
    return f"http://127.0.0.1:{httpd.server_port}/repo.git", server.stop


@pytest.fixture
def git_server_kind() -> Iterator[Callable[[str, Path], str]]:
    """Factory: ``git_server_kind(kind, repo)`` → the URL; all stopped after the test."""
    stops: list[Callable[[], None]] = []

    def start(kind: str, repo: Path) -> str:
        if kind in ("dumb", "dumb-loose"):
            url, stop = start_dumb(repo, pack=kind == "dumb")
        elif kind == "dulwich":
            url, stop = start_dulwich(repo)
        else:
            options: dict[str, Any] = {
                "stock": {"git_config": STOCK},
                "filter": {"git_config": {"uploadpack.allowAnySHA1InWant": "false"}},
                "no-protocol-header": {"git_config": STOCK, "protocol_v2": False},
                "no-protocol-header-filter": {"protocol_v2": False},
            }[kind]
            server = GitHttpServer(**options)
            server.add_repo("repo.git", git_dir(repo))
            server.start()
            url, stop = server.url, server.stop
        stops.append(stop)
        return url

    try:
        yield start
    finally:
        for stop in reversed(stops):
            stop()
