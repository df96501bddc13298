"""``bootpull serve`` on the command line: options, clear errors, and IPv6 loopback."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import requests
from bootpull.cli import main
from bootpull.errors import UsageError
from bootpull_homebase.server import Running, _not_modified, parse_listen
from homebase_fixtures import settings_for


@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1:8080", ("127.0.0.1", 8080)), ("[::1]:0", ("::1", 0)),
    (":8080", ("0.0.0.0", 8080)), ("localhost:1", ("localhost", 1)),
])
def test_parse_listen(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["8080", "host:", "host:99999", "[::1]", "a:b:c"])
def test_parse_listen_refuses(text: str) -> None:
    with pytest.raises(UsageError, match="HOST:PORT"):
        parse_listen(text)


def test_serve_help_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["serve", "--help"])
    assert done.value.code == 0
    assert "--silent-after" in capsys.readouterr().out
    assert main(["serve", "--repo", str(tmp_path), "--listen", "127.0.0.1:0",
                 "--db", str(tmp_path / "e.db")]) == 2
    err = capsys.readouterr().err
    assert "is not a git repository" in err and "do:" in err
    assert main(["serve", "--repo", str(tmp_path), "--listen", "nope"]) == 2
    assert "HOST:PORT" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["serve", "--repo", str(tmp_path), "--silent-after-role", "web"])
    assert "ROLE=SECONDS" in capsys.readouterr().err


def test_conditional_headers() -> None:
    etag, date = '"abc"', "Sun, 22 Nov 2026 00:13:36 GMT"
    assert _not_modified('"abc"', None, etag, date)
    assert _not_modified('W/"abc", "x"', None, etag, date)
    assert _not_modified("*", None, etag, date)
    assert not _not_modified('"x"', date, etag, date), "If-None-Match wins"
    assert _not_modified(None, date, etag, date)
    assert not _not_modified(None, "Sun, 22 Nov 2026 00:13:35 GMT", etag, date)
    assert not _not_modified(None, "garbage", etag, date)


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6")
def test_serves_on_ipv6_loopback(homebase_repo: Path, tmp_path: Path) -> None:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("::1 is not configured here")
    with Running(settings_for(homebase_repo, tmp_path / "e.db", host="::1")) as hb:
        assert hb.url.startswith("http://[::1]:")
        assert requests.get(hb.url + "/healthz", timeout=30).json()["status"] == "ok"
