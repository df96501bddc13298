"""A real news reader sees each change as a new, unread article (docs/contract.md §8).

newsboat (the Debian package) subscribes to a role's RSS and Atom feeds on a real
``bootpull serve`` over a fresh database on 127.0.0.1 (tests/homebase_fixtures.py).
It runs non-interactively (``newsboat -x reload``, ``-x print-unread``) with its own
urls, cache and config files in the test's directory; "the admin read everything" is
newsboat's own cache with every article marked read.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
import requests
from bootpull_homebase.server import Running
from homebase_fixtures import WEB1, WEB2, FakeClock, event

NEWSBOAT = shutil.which("newsboat")
pytestmark = pytest.mark.skipif(NEWSBOAT is None, reason="newsboat is not installed "
                                "(bash .ci/setup --test installs it)")


class Newsboat:
    """newsboat with its own files in ``root``, reading ``urls`` only."""

    def __init__(self, root: Path, urls: list[str]) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        (root / "urls").write_text("".join(f"{u}\n" for u in urls))
        (root / "config").write_text("reload-threads 1\ndownload-retries 1\n"
                                     "download-timeout 30\n")
        self.cache = root / "cache.db"
        # Only 127.0.0.1: no proxy from the environment, no home directory of the user.
        self.env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        self.env.update(HOME=str(root), XDG_CONFIG_HOME=str(root / "xdg-config"),
                        XDG_DATA_HOME=str(root / "xdg-data"), NO_PROXY="*", no_proxy="*")

    def run(self, command: str) -> str:
        assert NEWSBOAT is not None
        done = subprocess.run(
            [NEWSBOAT, "-u", str(self.root / "urls"), "-c", str(self.cache),
             "-C", str(self.root / "config"), "-x", command],
            env=self.env, cwd=self.root, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, (command, done.stdout, done.stderr)
        return done.stdout

    def reload(self) -> None:
        self.run("reload")

    def print_unread(self) -> int:
        found = re.search(r"(\d+) unread articles?", self.run("print-unread"))
        assert found, "newsboat -x print-unread said nothing readable"
        return int(found.group(1))

    def unread(self, url: str) -> list[str]:
        """The titles of the unread articles of one feed, from newsboat's cache."""
        with sqlite3.connect(self.cache) as db:
            return sorted(t for (t,) in db.execute(
                "SELECT title FROM rss_item WHERE feedurl = ? AND unread = 1 AND deleted = 0",
                (url,)))

    def mark_all_read(self) -> None:
        with sqlite3.connect(self.cache) as db:
            db.execute("UPDATE rss_item SET unread = 0")


def post(hb: Running, body: object) -> None:
    answer = requests.post(hb.url + "/api/v1/events", json=body, timeout=60)
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("kind", ["rss", "atom"])
def test_newsboat_shows_each_change_as_unread(homebase: Running, homebase_clock: FakeClock,
                                              tmp_path: Path, kind: str) -> None:
    url = f"{homebase.url}/feeds/web.{kind}"
    reader = Newsboat(tmp_path / "newsboat", [url])
    post(homebase, [event(WEB1, hostname="web-1"), event(WEB2, hostname="web-2")])
    reader.reload()
    assert reader.unread(url) == ["OK web-1 web@1.0", "OK web-2 web@1.0"]
    assert reader.print_unread() == 2
    reader.mark_all_read()

    homebase_clock.advance(30)
    post(homebase, event(WEB1, hostname="web-1", message="still fine"))
    reader.reload()
    assert reader.unread(url) == [], "a report that changed nothing came back unread"

    homebase_clock.advance(30)
    post(homebase, event(WEB1, "fail", hostname="web-1", message="disk full"))
    reader.reload()
    assert reader.unread(url) == ["FAIL web-1 web@1.0"], "a status change is not unread"
    assert reader.print_unread() == 1
    reader.mark_all_read()

    homebase_clock.advance(30)
    post(homebase, event(WEB2, hostname="web-2", version="1.1", message="installed 1.1"))
    reader.reload()
    assert reader.unread(url) == ["OK web-2 web@1.1"], "a version change is not unread"
    reader.mark_all_read()

    homebase_clock.advance(30)
    post(homebase, event(WEB1, hostname="web-1", message="fixed"))
    reader.reload()
    assert reader.unread(url) == ["OK web-1 web@1.0"], "back to OK is not unread"
    reader.mark_all_read()

    homebase_clock.advance(121)  # web's deadline: 120 s after web-1's last report
    reader.reload()
    assert reader.unread(url) == ["SILENT web-1 web@1.0", "SILENT web-2 web@1.1"]
    reader.mark_all_read()
    reader.reload()
    assert reader.unread(url) == [] and reader.print_unread() == 0
