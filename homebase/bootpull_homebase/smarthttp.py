"""The deploy repository, read-only over git smart HTTP, by ``git http-backend`` (CGI).

git's own CGI program speaks the protocol, so dulwich and the git CLI see exactly
the server they see on any git host. What this module adds:

- read-only: ``git-receive-pack`` is refused here (403) before git runs, and
  ``http.receivepack=false`` is set as well;
- protocol v2: the client's ``Git-Protocol`` header is passed on as ``GIT_PROTOCOL``;
- request bodies stream through (never held whole in memory), so a client holding a
  half-sent ``git-upload-pack`` body costs a pipe buffer, not its size;
- partial clone and exact wants: ``uploadpack.allowFilter`` (``--filter=blob:none``)
  and ``uploadpack.allowAnySHA1InWant`` (the node asks for the blob ids of its role's
  files only) are turned on for the served process, through ``GIT_CONFIG_*``
  variables, without touching the repository's own config.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from bootpull.errors import UsageError

SERVED_CONFIG = (
    ("uploadpack.allowFilter", "true"),
    ("uploadpack.allowAnySHA1InWant", "true"),
    ("uploadpack.allowReachableSHA1InWant", "true"),
    ("http.receivepack", "false"),
    ("http.getanyfile", "true"),
    ("safe.directory", "*"),
)
_HEADER_LIMIT = 64 * 1024


def find_git_dir(repo: Path) -> Path:
    """The git directory of ``repo``: ``repo/.git`` for a work tree, or ``repo`` if bare."""
    repo = repo.resolve()
    if (repo / ".git").is_dir():
        return repo / ".git"
    if (repo / "HEAD").is_file() and (repo / "objects").is_dir():
        return repo
    raise UsageError(
        f"{repo} is not a git repository",
        why="it has neither a .git directory nor HEAD and objects/ (a bare repository)",
        hint="pass --repo DIR with the deploy repository ('bootpull repo init DIR' makes one)",
    )


def _backend_program() -> str:
    try:
        exec_path = subprocess.run(["git", "--exec-path"], capture_output=True, text=True,
                                   check=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        raise UsageError("git is not installed", why=str(exc),
                         hint="install git (the home base runs 'git http-backend')") from exc
    program = Path(exec_path) / "git-http-backend"
    if not program.exists():
        raise UsageError("git-http-backend is missing", why=f"{program} does not exist",
                         hint="install the full git package")
    return str(program)


@dataclass(frozen=True)
class CgiResponse:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: Iterator[bytes]


def is_push(path_info: str, query: str) -> bool:
    return "git-receive-pack" in path_info or "service=git-receive-pack" in query


class GitBackend:
    """Runs ``git http-backend`` for one repository."""

    def __init__(self, repo: Path) -> None:
        self.git_dir = find_git_dir(repo)
        self.program = _backend_program()

    def environ(self, method: str, path_info: str, query: str,
                headers: Mapping[str, str], length: int | None,
                remote: str) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REQUEST_METHOD": method,
            "GIT_PROJECT_ROOT": str(self.git_dir),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": path_info,
            "QUERY_STRING": query,
            "REMOTE_ADDR": remote,
            "CONTENT_TYPE": headers.get("Content-Type", ""),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_CONFIG_COUNT": str(len(SERVED_CONFIG)),
        }
        if length is not None:  # unset: git reads the body to its end (chunked)
            env["CONTENT_LENGTH"] = str(length)
        for i, (key, value) in enumerate(SERVED_CONFIG):
            env[f"GIT_CONFIG_KEY_{i}"] = key
            env[f"GIT_CONFIG_VALUE_{i}"] = value
        if headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = headers["Git-Protocol"]
        if headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = headers["Content-Encoding"]
        return env

    def run(self, method: str, path_info: str, query: str, headers: Mapping[str, str],
            body: Iterable[bytes], length: int | None, remote: str) -> CgiResponse:
        """Run the CGI program. The request body streams to its stdin from ``body`` (a
        thread pulls the pieces, so at most one piece is in memory) and the response
        body streams from its stdout. An exception raised by ``body`` (the client went
        away, its deadline passed, it sent too much) is raised here instead of an
        answer, when git has not answered yet."""
        env = self.environ(method, path_info, query, headers, length, remote)
        proc = subprocess.Popen([self.program], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env)
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        failed: list[BaseException] = []

        def feed() -> None:
            assert proc.stdin is not None
            try:
                for piece in body:
                    proc.stdin.write(piece)
            except (BrokenPipeError, ValueError):
                pass  # the program exited early (or was killed); its answer says why
            except Exception as exc:  # noqa: BLE001 - handed to the request thread
                failed.append(exc)
                proc.kill()  # before stdin closes: git must not take a cut body as whole
            finally:
                with contextlib.suppress(OSError):
                    proc.stdin.close()

        errors: list[bytes] = []

        def drain() -> None:
            assert proc.stderr is not None
            errors.append(proc.stderr.read())

        out = cast(io.BufferedReader, proc.stdout)
        threads = [threading.Thread(target=feed, daemon=True),
                   threading.Thread(target=drain, daemon=True)]
        for t in threads:
            t.start()
        status, reason, out_headers = 200, "OK", []
        head = b""
        while b"\r\n\r\n" not in head and b"\n\n" not in head and len(head) < _HEADER_LIMIT:
            chunk = out.read1(8192)
            if not chunk:
                break
            head += chunk
        if failed:
            out.close()
            proc.wait()
            for t in threads:
                t.join(timeout=5)
            raise failed[0]
        sep = b"\r\n\r\n" if b"\r\n\r\n" in head else b"\n\n"
        header_block, _, rest = head.partition(sep)
        if not _:
            proc.kill()
            proc.wait()
            message = b"".join(errors).decode(errors="replace").strip() or "no output"
            return CgiResponse(502, "Bad Gateway", [("Content-Type", "text/plain")],
                               iter([f"git http-backend failed: {message}\n".encode()]))
        for line in header_block.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                code, _, reason = value.strip().partition(" ")
                status = int(code)
            elif name:
                out_headers.append((name.strip(), value.strip()))

        def stream() -> Iterator[bytes]:
            try:
                if rest:
                    yield rest
                while True:
                    chunk = out.read1(65536)
                    if not chunk:
                        break
                    yield chunk
            finally:
                out.close()
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
                for t in threads:
                    t.join(timeout=5)

        return CgiResponse(status, reason or "OK", out_headers, stream())
