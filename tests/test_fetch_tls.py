"""https with a private CA: nginx + fcgiwrap + ``git http-backend`` over TLS
(tests/nginxserver.py), a CA and certificates made by the test.

- With ``--ca`` the node trusts the site's CA and deploys the role over https.
- A certificate the node cannot accept is a permanent failure: exit 11 at once, one
  handshake and no retry, with a banner that names the cause (unknown issuer, another
  name, expired, not yet valid: the last two quote the node's clock) and the fix.
- A redirect from https to plain http is refused over real https.
"""

from __future__ import annotations

import re
import ssl
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from bootpull.cli import main
from bootpull.errors import TlsError, UsageError
from bootpull.fetch_http import tls_context, tls_failure
from bootpull.settings import KernelLine, Settings
from eventsink import EventSink
from gitserver import GitHttpServer
from marker_role import add_marker_role
from nginxserver import NginxGitServer, ServerCert, SitePki
from signed_repo import MAC_NEW, SignedRepo
from test_pipeline import Node, node_cmd
from test_settings import run_args

FILTER = {"uploadpack.allowFilter": "true"}
CLOCK = re.compile(r"by this node's clock: (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)")


def flat(text: str) -> str:
    """The console text with the banner's line wraps undone."""
    return " ".join(text.split())


def fetch_retries(text: str) -> list[str]:
    """The console lines of fetch retries (the reporter's are another matter)."""
    return [line for line in text.splitlines() if "fetch:" in line and "retry" in line]


class TlsNode(Node):
    """A node whose events go to the sink from the start (``bootpull.report=``) rather
    than to the repository's origin: reports are not what these tests are about, and
    over https they would add handshakes of their own."""

    def __init__(self, tmp: Path, repo: SignedRepo, url: str, sink: EventSink) -> None:
        super().__init__(tmp, repo, url)
        self.report_url = sink.url
        self.cmdline = tmp / "cmdline"
        self.cmdline.write_text(f"bootpull.report={sink.url}\n")

    def run(self, **kw: object) -> tuple[int, str]:
        return super().run(report_url=self.report_url, **kw)

    def cli(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(node_cmd(self, "--oneshot", "--cmdline", str(self.cmdline),
                                       *extra), capture_output=True, text=True, timeout=300)


@dataclass
class Site:
    """The signed repository with the marker role (reporting to the sink)."""

    repo: SignedRepo
    markers: Path
    sink: EventSink
    tmp: Path

    def node(self, url: str) -> TlsNode:
        return TlsNode(self.tmp, self.repo, url, self.sink)


@pytest.fixture
def site(signed_repo: SignedRepo, sink: EventSink, tmp_path: Path) -> Site:
    markers = tmp_path / "markers"
    markers.mkdir()
    add_marker_role(signed_repo, markers, sink.url)
    return Site(signed_repo, markers, sink, tmp_path)

def serve(nginx_git_server: Callable[..., NginxGitServer], site: Site,
          cert: ServerCert, **options: object) -> NginxGitServer:
    return nginx_git_server({"repo.git": site.repo.root}, cert=cert, git_config=FILTER,
                            **options)


# -- node run over real https ---------------------------------------------------------------


def test_node_run_with_the_site_ca_deploys_over_https(
        site: Site, site_pki: SitePki, tmp_path: Path,
        nginx_git_server: Callable[..., NginxGitServer]) -> None:
    server = serve(nginx_git_server, site, site_pki.valid)
    assert server.url.startswith("https://127.0.0.1:") and server.url.endswith("/repo.git")
    node = site.node(server.url)
    proc = node.cli("--ca", str(site_pki.ca_file))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and not fetch_retries(proc.stderr), proc.stderr
    info = node.status
    assert info["role"] == "marker" and info["commit"] == site.repo.git("rev-parse", "HEAD")
    assert (site.markers / "runs").read_text().split() == [info["version"]]
    seen = server.requests()
    assert seen[0].uri == "/repo.git/info/refs?service=git-upload-pack"
    assert {(r.method, r.status) for r in seen} == {("GET", 200), ("POST", 200)}
    assert server.handshake_failures() == 0


def test_the_site_ca_also_reaches_an_https_home_base(
        site: Site, site_pki: SitePki, tmp_path: Path,
        nginx_git_server: Callable[..., NginxGitServer]) -> None:
    """Events go to an https home base whose certificate the same site CA signed."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    got: list[dict[str, object]] = []

    class Events(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            got.extend(body if isinstance(body, list) else [body])
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(site_pki.valid.cert, site_pki.valid.key)
    home = ThreadingHTTPServer(("127.0.0.1", 0), Events)
    home.socket = context.wrap_socket(home.socket, server_side=True)
    thread = threading.Thread(target=home.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"https://127.0.0.1:{home.server_address[1]}/api/v1/events"
        settings = (site.repo.root / "bootpull.toml").read_text()
        site.repo.write("bootpull.toml", settings.replace(site.sink.url, url).encode())
        site.repo.commit("report over https")
        site.repo.publish()
        server = serve(nginx_git_server, site, site_pki.valid)
        node = site.node(server.url)
        node.cmdline.write_text(f"bootpull.report={url}\n")
        proc = node.cli("--ca", str(site_pki.ca_file))
    finally:
        home.shutdown()
        home.server_close()
    assert proc.returncode == 0, proc.stderr  # 15 if the events stayed in the spool
    assert {e["stage"] for e in got} >= {"fetch", "install", "run"}, got
    assert not site.sink.received  # all of them went over https


def test_without_the_ca_node_run_exits_11_at_once(
        site: Site, site_pki: SitePki, tmp_path: Path,
        nginx_git_server: Callable[..., NginxGitServer]) -> None:
    server = serve(nginx_git_server, site, site_pki.valid)
    node = site.node(server.url)
    started = time.monotonic()
    proc = node.cli()
    took = time.monotonic() - started
    assert proc.returncode == 11, proc.stderr
    text = flat(proc.stderr)
    assert "FETCH FAILED (exit 11)" in text
    assert "the TLS certificate of 127.0.0.1 is from an unknown issuer" in text
    assert "unable to get local issuer certificate" in text
    assert "'bootpull image build --ca FILE'" in text and "'bootpull node run --ca FILE'" in text
    assert not fetch_retries(proc.stderr) and "Traceback" not in text
    assert took < 30, f"{took:.1f}s: a certificate failure is not retried"
    assert server.handshake_failures() == 1  # one handshake, refused; no second try
    assert server.requests() == []  # no request was sent over it
    counters = node.status["counters"]
    assert isinstance(counters, dict) and counters["retries"] == 0, counters
    assert not (site.markers / "runs").exists()


def failing_run(node: TlsNode, **kw: object) -> str:
    code, text = node.run(report_deadline=0, **kw)
    assert code == 11, text
    assert not fetch_retries(text) and "Traceback" not in text, text
    return flat(text)


def clock_in(text: str) -> datetime:
    found = CLOCK.search(text)
    assert found, text
    when = datetime.strptime(found.group(1), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs(when - datetime.now(UTC)) < timedelta(minutes=5)
    return when


def test_an_expired_certificate_names_the_clock(
        site: Site, site_pki: SitePki, tmp_path: Path,
        nginx_git_server: Callable[..., NginxGitServer]) -> None:
    server = serve(nginx_git_server, site, site_pki.expired)
    text = failing_run(site.node(server.url), ca_files=(site_pki.ca_file,))
    assert "the TLS certificate of 127.0.0.1 has expired" in text
    assert "certificate has expired" in text
    clock_in(text)
    assert "renew the server's certificate" in text and "clock is ahead" in text
    assert server.handshake_failures() == 1 and server.requests() == []


def test_a_certificate_not_valid_yet_names_the_clock(
        site: Site, site_pki: SitePki, tmp_path: Path,
        nginx_git_server: Callable[..., NginxGitServer]) -> None:
    server = serve(nginx_git_server, site, site_pki.not_yet_valid)
    text = failing_run(site.node(server.url), ca_files=(site_pki.ca_file,))
    assert "the TLS certificate of 127.0.0.1 is not valid yet" in text
    assert "certificate is not yet valid" in text
    clock_in(text)
    assert "check this node's clock, which may be behind" in text and "NTP" in text
    assert server.handshake_failures() == 1


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_certificate_for_another_name_quotes_the_name_asked_for(
        host: str, site: Site, site_pki: SitePki,
        tmp_path: Path, nginx_git_server: Callable[..., NginxGitServer]) -> None:
    server = serve(nginx_git_server, site, site_pki.wrong_name)
    url = server.url.replace("127.0.0.1", host)
    text = failing_run(site.node(url), ca_files=(site_pki.ca_file,))
    assert f"the TLS certificate of {host} is for another name" in text
    assert f"the repository URL names '{host}', which the certificate does not hold" in text
    kind = "IP address" if host == "127.0.0.1" else "Hostname"
    assert f"{kind} mismatch, certificate is not valid for '{host}'" in text
    assert "use the repository URL with a name the certificate holds" in text
    assert server.handshake_failures() == 1


def test_a_self_signed_certificate_is_an_unknown_issuer(
        site: Site, site_pki: SitePki, tmp_path: Path,
        nginx_git_server: Callable[..., NginxGitServer]) -> None:
    server = serve(nginx_git_server, site, site_pki.self_signed)
    text = failing_run(site.node(server.url), ca_files=(site_pki.ca_file,))
    assert "the TLS certificate of 127.0.0.1 is from an unknown issuer" in text
    assert "self-signed certificate" in text and "--ca FILE" in text


def test_plain_http_on_an_https_url_is_not_retried(
        site: Site, tmp_path: Path,
        nginx_git_server: Callable[..., NginxGitServer]) -> None:
    plain = nginx_git_server({"repo.git": site.repo.root}, git_config=FILTER)
    url = plain.url.replace("http://", "https://")
    text = failing_run(site.node(url))
    assert "the TLS handshake with 127.0.0.1 failed" in text
    assert "WRONG_VERSION_NUMBER" in text and "use http://" in text


def test_a_redirect_from_https_to_http_is_refused(
        site: Site, site_pki: SitePki, tmp_path: Path,
        nginx_git_server: Callable[..., NginxGitServer],
        git_http_server: Callable[..., GitHttpServer]) -> None:
    plain = git_http_server(site.repo.root)  # a working repository, over plain http
    server = serve(nginx_git_server, site, site_pki.valid, redirects={"/moved": plain.url})
    told = server.base_url + "/moved"
    text = failing_run(site.node(told), ca_files=(site_pki.ca_file,))
    assert f"{told} redirects from https to plain http" in text
    assert f"HTTP 301 to {plain.url}" in text and "a downgrade is never followed" in text
    assert [(r.method, r.uri, r.status) for r in server.requests()] == [
        ("GET", "/moved/info/refs?service=git-upload-pack", 301)]
    assert plain.log == [], "nothing went to the plain http server"
    assert not (site.markers / "runs").exists()


def test_a_redirect_within_https_keeps_the_site_ca(
        site: Site, site_pki: SitePki, tmp_path: Path,
        nginx_git_server: Callable[..., NginxGitServer]) -> None:
    """The transport made after a redirect trusts the same CAs (GitRemote._move_to)."""
    target = serve(nginx_git_server, site, site_pki.valid)
    server = serve(nginx_git_server, site, site_pki.valid, redirects={"/moved": target.url})
    code, text = site.node(server.base_url + "/moved").run(
        ca_files=(site_pki.ca_file,))
    assert code == 0, text
    assert f"the repository is at {target.url}" in flat(text)
    assert (site.markers / "runs").exists()
    assert target.handshake_failures() == 0


# -- --ca on the command line ---------------------------------------------------------------


@pytest.mark.parametrize("content", [b"", b"hello\n", b"\x30\x82\x01\x0a" + bytes(200),
                                     b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n"
                                     b"-----END CERTIFICATE-----\n"])
def test_node_run_refuses_a_ca_file_that_is_not_pem(
        content: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "site-ca.der"
    bad.write_bytes(content)
    code = main(["node", "run", "--oneshot", "--repo", "https://127.0.0.1:9/repo.git",
                 "--mac", MAC_NEW.colons, "--ca", str(bad),
                 "--state-dir", str(tmp_path / "state")])
    assert code == 2
    err = capsys.readouterr().err
    assert f"--ca {bad}: not a PEM certificate file" in err
    assert not (tmp_path / "state").exists()  # refused before anything else


def test_settings_keep_the_ca_files_in_order(site_pki: SitePki, tmp_path: Path) -> None:
    other = tmp_path / "other-ca.pem"
    other.write_bytes(site_pki.ca_file.read_bytes())
    args = run_args(ca=[str(site_pki.ca_file), str(other)])
    assert Settings.from_args(args, KernelLine()).ca_files == (site_pki.ca_file, other)
    assert Settings.from_args(run_args(), KernelLine()).ca_files == ()


def test_node_run_refuses_a_missing_ca_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot be read"):
        tls_context([tmp_path / "nowhere.pem"])


def test_tls_context_trusts_the_system_cas_and_the_given_ones(site_pki: SitePki) -> None:
    base = len(ssl.create_default_context().get_ca_certs())
    context = tls_context([site_pki.ca_file])
    loaded = context.get_ca_certs(binary_form=True)
    assert ssl.PEM_cert_to_DER_cert(site_pki.ca_file.read_text()) in loaded
    assert len(loaded) == base + 1
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


# -- the classification, pure ---------------------------------------------------------------


def verify_error(code: int, message: str) -> ssl.SSLCertVerificationError:
    exc = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] {message}")
    exc.verify_code = code
    exc.verify_message = message
    return exc


NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


@pytest.mark.parametrize(("code", "message", "what"), [
    (18, "self-signed certificate", "is from an unknown issuer"),
    (19, "self-signed certificate in certificate chain", "is from an unknown issuer"),
    (20, "unable to get local issuer certificate", "is from an unknown issuer"),
    (62, "Hostname mismatch, certificate is not valid for 'git.site.test'.",
     "is for another name"),
    (10, "certificate has expired", "has expired"),
    (9, "certificate is not yet valid", "is not valid yet"),
    (23, "certificate revoked", "was refused"),
])
def test_each_verification_failure_names_its_cause(code: int, message: str, what: str
                                                   ) -> None:
    err = tls_failure(verify_error(code, message), "git.site.test", NOW)
    assert isinstance(err, TlsError) and err.exit_code == 11
    assert err.what == f"the TLS certificate of git.site.test {what}"
    assert message.rstrip(".") in err.why and err.hint
    if code in (9, 10):
        assert "by this node's clock: 2026-03-04T05:06:07Z" in err.why
        assert "clock" in err.hint and "NTP" in err.hint
    if code in (18, 19, 20):
        assert "bootpull image build --ca FILE" in err.hint
        assert "bootpull node run --ca FILE" in err.hint
    if code == 62:
        assert "names 'git.site.test'" in err.why


def test_a_handshake_cut_short_is_worth_a_retry() -> None:
    assert tls_failure(ssl.SSLEOFError(8, "EOF occurred in violation of protocol"),
                       "h", NOW) is None
    assert tls_failure(ssl.SSLZeroReturnError(6, "TLS/SSL connection has been closed"),
                       "h", NOW) is None

