"""pytest plugin: git over https from Debian's nginx, fcgiwrap and ``git http-backend``,
with a private CA made by the test.

The server any site runs, rather than ours (:mod:`gitserver` is a Python CGI host with
injectable faults; this one is the real thing, for TLS and for "any git server"):

    def test_x(nginx_git_server, site_pki, signed_repo):
        server = nginx_git_server({"repo.git": signed_repo.root}, cert=site_pki.valid,
                                  git_config={"uploadpack.allowFilter": "true"})
        ... server.url ...      # https://127.0.0.1:PORT/repo.git; trust site_pki.ca_file

:class:`NginxGitServer` runs nginx as the current user (root in CI) in the foreground
with its own configuration, pid file, logs and temporary directories under its work
directory, listening on 127.0.0.1 and a free port; fcgiwrap listens on a unix socket
in a short directory of its own (a socket path has at most 107 bytes) and runs
``git http-backend`` once per request. The backend gets ``GIT_PROJECT_ROOT`` (a
directory of links, one per served name), ``GIT_HTTP_EXPORT_ALL``, the client's
``Git-Protocol`` header as ``GIT_PROTOCOL`` (so protocol v2 works), and ``git_config``
through ``GIT_CONFIG_COUNT``/``KEY_n``/``VALUE_n``: no config at all by default (git's
defaults: no partial clone), or ``{"uploadpack.allowFilter": "true"}``. fcgiwrap gives
the CGI only what nginx sends as ``fastcgi_param``, so that is where all of it is set.

``redirects`` (path prefix → Location prefix) answer with a 301, as in :mod:`gitserver`.
``requests()`` reads the access log (method, URI, status); ``handshake_failures()``
counts the TLS handshakes nginx saw fail (its error log, at level info).

:class:`SitePki` (fixture ``site_pki``, once per session): a CA and server certificates
made with ``cryptography``: ``valid`` (for :data:`SITE_NAMES`: 127.0.0.1, 10.0.2.100,
git.site.test), ``expired``, ``not_yet_valid`` (the same names), ``wrong_name``
(:data:`WRONG_NAMES` only: neither 127.0.0.1 nor localhost) and ``self_signed`` (no CA).

Without nginx or fcgiwrap the tests skip (a failure under ``CI=true``, tests/ci_skips.py);
``bash .ci/setup --test`` installs both. No system service is used or started.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

#: the names the valid certificate holds: the loopback address the tests use, the lab's
#: home base address (qemu/) and a DNS name
SITE_NAMES = ("127.0.0.1", "10.0.2.100", "git.site.test")
WRONG_NAMES = ("git.other.test", "10.9.9.9")
ACCESS_FORMAT = "$request_method $request_uri $status $bytes_sent"


# -- certificates ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerCert:
    """A server certificate (PEM, the chain up to the CA's child) and its key (PEM)."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class SitePki:
    ca_file: Path  # the CA certificate, PEM: what --ca takes
    valid: ServerCert
    expired: ServerCert
    not_yet_valid: ServerCert
    wrong_name: ServerCert
    self_signed: ServerCert


def _names(names: tuple[str, ...]) -> list[object]:
    from cryptography import x509

    out: list[object] = []
    for name in names:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            out.append(x509.DNSName(name))
    return out


def make_site_pki(where: Path) -> SitePki:
    """A private CA and its server certificates, in ``where`` (EC P-256: quick to make)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    where.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    day = dt.timedelta(days=1)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "bootpull tests"),
                          x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def key_file(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
        return path

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name("bootpull test site CA")
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - 30 * day).not_valid_after(now + 3650 * day)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                       crl_sign=True, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False,
                                       decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    ca_file = where / "site-ca.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))

    def issue(label: str, names: tuple[str, ...], before: dt.datetime, after: dt.datetime,
              *, self_signed: bool = False) -> ServerCert:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = name(f"{names[0]} ({label})")
        builder = (x509.CertificateBuilder().subject_name(subject)
                   .issuer_name(subject if self_signed else ca_name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(before).not_valid_after(after)
                   .add_extension(x509.SubjectAlternativeName(_names(names)),  # type: ignore[arg-type]
                                  critical=False)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                                  critical=True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                                  critical=False))
        if not self_signed:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False)
        cert = builder.sign(key if self_signed else ca_key, hashes.SHA256())
        cert_file = where / f"{label}.pem"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return ServerCert(cert_file, key_file(key, where / f"{label}.key"))

    return SitePki(
        ca_file=ca_file,
        valid=issue("valid", SITE_NAMES, now - day, now + 365 * day),
        expired=issue("expired", SITE_NAMES, now - 60 * day, now - 30 * day),
        not_yet_valid=issue("not-yet-valid", SITE_NAMES, now + 30 * day, now + 60 * day),
        wrong_name=issue("wrong-name", WRONG_NAMES, now - day, now + 365 * day),
        self_signed=issue("self-signed", SITE_NAMES, now - day, now + 365 * day,
                          self_signed=True),
    )


# -- the server -----------------------------------------------------------------------------


def _binary(name: str) -> str | None:
    for candidate in (shutil.which(name), f"/usr/sbin/{name}"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def _free_tcp_port(address: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def _quote(value: str) -> str:
    """A value as one nginx configuration token (no variables in it)."""
    if "$" in value or '"' in value or "\\" in value:
        raise ValueError(f"{value!r}: the test server takes no $, \" or \\ in its settings")
    return f'"{value}"'


def _plain(value: str) -> str:
    """A path or URL that nginx reads as it is (no quotes, variables or braces)."""
    if not re.fullmatch(r"[A-Za-z0-9/:_-]+(\.[A-Za-z0-9/:_-]+)*", value):
        raise ValueError(f"{value!r}: the test server takes plain paths and URLs only")
    return value


@dataclass(frozen=True)
class Request:
    method: str
    uri: str
    status: int


class NginxGitServer:
    """nginx + fcgiwrap + ``git http-backend`` on 127.0.0.1, https with ``cert`` (or plain
    http without it), serving each of ``repos`` (name → a bare repository or a work
    tree) as /name."""

    def __init__(self, workdir: Path, repos: dict[str, Path], *, cert: ServerCert | None,
                 git_config: dict[str, str] | None = None,
                 redirects: dict[str, str] | None = None, host: str = "127.0.0.1") -> None:
        nginx, fcgiwrap = _binary("nginx"), _binary("fcgiwrap")
        if nginx is None or fcgiwrap is None:
            pytest.skip("no nginx or fcgiwrap (bash .ci/setup --test installs nginx-light "
                        "and fcgiwrap)")
        self.nginx, self.fcgiwrap = nginx, fcgiwrap
        self.workdir = workdir
        self.cert = cert
        self.git_config = dict(git_config or {})
        self.redirects = dict(redirects or {})
        self.host = host
        self.port = 0
        self.root = workdir / "repos"  # GIT_PROJECT_ROOT: one link per served name
        self.root.mkdir(parents=True)
        for name, path in repos.items():
            gitdir = path / ".git" if (path / ".git").is_dir() else path
            if not (gitdir / "objects").is_dir():
                raise ValueError(f"{path} is not a git repository")
            (self.root / name.strip("/")).symlink_to(gitdir.resolve())
        self.names = [name.strip("/") for name in repos]
        self.backend = str(Path(subprocess.run(["git", "--exec-path"], capture_output=True,
                                               text=True, check=True).stdout.strip())
                           / "git-http-backend")
        self.error_log = workdir / "error.log"
        self.access_log = workdir / "access.log"
        self._sockdir: Path | None = None
        self._nginx: subprocess.Popen[bytes] | None = None
        self._fcgi: subprocess.Popen[bytes] | None = None

    # -- where -----------------------------------------------------------------------------

    @property
    def scheme(self) -> str:
        return "https" if self.cert is not None else "http"

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def url_for(self, name: str) -> str:
        return f"{self.base_url}/{name.strip('/')}"

    @property
    def url(self) -> str:
        """The URL of the first repository served."""
        return self.url_for(self.names[0])

    # -- what it saw -----------------------------------------------------------------------

    def requests(self) -> list[Request]:
        """Every request nginx logged (a request is logged once it is answered)."""
        if not self.access_log.exists():
            return []
        out = []
        for line in self.access_log.read_text().splitlines():
            method, uri, status, _sent = line.split(" ")
            out.append(Request(method, uri, int(status)))
        return out

    def handshake_failures(self) -> int:
        """TLS handshakes that failed (the client refused the certificate, say)."""
        if not self.error_log.exists():
            return 0
        return self.error_log.read_text().count("SSL_do_handshake() failed")

    # -- lifecycle -------------------------------------------------------------------------

    def _config(self, sock: Path) -> str:
        work = self.workdir
        config = self.git_config
        params = {
            "SCRIPT_FILENAME": self.backend,
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(work),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_COUNT": str(len(config)),
        }
        for i, (key, value) in enumerate(config.items()):
            params[f"GIT_CONFIG_KEY_{i}"] = key
            params[f"GIT_CONFIG_VALUE_{i}"] = value
        fixed = "".join(f"            fastcgi_param {k} {_quote(v)};\n" for k, v in params.items())
        moved = "".join(
            f"        location ~ ^{re.escape(_plain(old.rstrip('/')))}(/.*)$ {{\n"
            f"            return 301 {_plain(new.rstrip('/'))}$1$is_args$args;\n"
            "        }\n"
            for old, new in self.redirects.items())
        tls = ""
        if self.cert is not None:
            tls = (f"        ssl_certificate {_quote(str(self.cert.cert))};\n"
                   f"        ssl_certificate_key {_quote(str(self.cert.key))};\n")
        temp = "".join(f"    {kind}_temp_path {_quote(str(work / 'tmp' / kind))};\n"
                       for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        user = "user root root;\n" if os.geteuid() == 0 else ""
        return (
            f"{user}daemon off;\nworker_processes 1;\npid {_quote(str(work / 'nginx.pid'))};\n"
            f"error_log {_quote(str(self.error_log))} info;\n"
            "events { worker_connections 64; }\n"
            "http {\n"
            f"    log_format bootpull '{ACCESS_FORMAT}';\n"
            f"    access_log {_quote(str(self.access_log))} bootpull;\n"
            f"{temp}"
            "    client_max_body_size 0;\n"
            "    server {\n"
            f"        listen {self.host}:{self.port}{' ssl' if self.cert else ''};\n"
            "        server_name _;\n"
            f"{tls}"
            f"{moved}"
            "        location / {\n"
            f"            fastcgi_pass unix:{sock};\n"
            "            fastcgi_buffering off;\n"
            "            fastcgi_request_buffering off;\n"
            "            fastcgi_read_timeout 300s;\n"
            "            fastcgi_param PATH_INFO $uri;\n"
            "            fastcgi_param QUERY_STRING $query_string;\n"
            "            fastcgi_param REQUEST_METHOD $request_method;\n"
            "            fastcgi_param CONTENT_TYPE $content_type;\n"
            "            fastcgi_param CONTENT_LENGTH $content_length;\n"
            "            fastcgi_param REMOTE_ADDR $remote_addr;\n"
            "            fastcgi_param SERVER_PROTOCOL $server_protocol;\n"
            "            fastcgi_param GIT_PROTOCOL $http_git_protocol;\n"
            f"{fixed}"
            "        }\n"
            "    }\n"
            "}\n")

    def start(self) -> NginxGitServer:
        if self._nginx is not None:
            return self
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.workdir / "tmp" / kind).mkdir(parents=True, exist_ok=True)
        self._sockdir = Path(tempfile.mkdtemp(prefix="bp-fcgi-"))
        sock = self._sockdir / "fcgiwrap.sock"
        fcgi_log = (self.workdir / "fcgiwrap.log").open("ab")
        with fcgi_log:
            self._fcgi = subprocess.Popen([self.fcgiwrap, "-f", "-c", "4", "-s", f"unix:{sock}"],
                                          stdout=fcgi_log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            _wait_for(sock.exists, "fcgiwrap's socket", self._fcgi, self.workdir / "fcgiwrap.log")
            for _attempt in range(5):  # the free port may be taken before nginx binds it
                self.port = _free_tcp_port(self.host)
                conf = self.workdir / "nginx.conf"
                conf.write_text(self._config(sock))
                self._nginx = subprocess.Popen(
                    [self.nginx, "-p", f"{self.workdir}/", "-c", str(conf),
                     "-e", str(self.error_log)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    stdin=subprocess.DEVNULL, start_new_session=True)
                try:
                    _wait_for(self._listening, f"nginx on port {self.port}", self._nginx,
                              self.error_log)
                    return self
                except _Exited:
                    self._nginx = None
                    if "Address already in use" not in self.error_log.read_text():
                        raise
            raise AssertionError(f"nginx found no free port:\n{self.error_log.read_text()}")
        except BaseException:
            self.stop()
            raise

    def _listening(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection((self.host, self.port),
                                                                    timeout=0.5):
            return True
        return False

    def stop(self) -> None:
        nginx, self._nginx = self._nginx, None
        fcgi, self._fcgi = self._fcgi, None
        for proc in (nginx, fcgi):  # each in its own session: its group is its children
            if proc is None:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
            with contextlib.suppress(ProcessLookupError):  # fcgiwrap's children, if left
                os.killpg(proc.pid, signal.SIGKILL)
        if self._sockdir is not None:
            shutil.rmtree(self._sockdir, ignore_errors=True)
            self._sockdir = None

    def __enter__(self) -> NginxGitServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Exited(AssertionError):
    """The process exited before it was ready."""


def _wait_for(ready: Callable[[], bool], what: str, proc: subprocess.Popen[bytes],
              log: Path, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if proc.poll() is not None:
            text = log.read_text() if log.exists() else ""
            raise _Exited(f"{what}: exited {proc.returncode} before it was ready:\n{text}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# -- the pytest plugin ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def site_pki(tmp_path_factory: pytest.TempPathFactory) -> SitePki:
    """A private CA and its server certificates (valid, expired, ...), once per session."""
    return make_site_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def nginx_git_server(tmp_path: Path) -> Iterator[Callable[..., NginxGitServer]]:
    """Factory: ``nginx_git_server(repos, cert=..., git_config=..., redirects=...)`` → a
    started :class:`NginxGitServer`; each is stopped at the end of the test."""
    made: list[NginxGitServer] = []

    def factory(repos: dict[str, Path], **options: object) -> NginxGitServer:
        options.setdefault("cert", None)
        server = NginxGitServer(tmp_path / f"nginx-{len(made)}", repos,
                                **options)  # type: ignore[arg-type]
        made.append(server)
        return server.start()

    try:
        yield factory
    finally:
        for server in made:
            server.stop()
