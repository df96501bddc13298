"""After a redirect the node names and uses the repository's real URL; and what node run
says about its kernel command line.

Server ``old`` only answers with a 301 to server ``new`` (another origin). The
repository sets no ``[report] url``, so the report URL is the repository origin's
``/api/v1/events`` (docs/contract.md §2.5): it must be the origin the repository was
found at, not the one the node was first told.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bootpull.pipeline import origin_events_url
from gitserver import GitHttpServer
from marker_role import add_marker_role
from signed_repo import SignedRepo
from test_pipeline import Node


def test_after_a_redirect_the_node_uses_the_url_in_effect(
        signed_repo: SignedRepo, tmp_path: Path,
        git_http_server: Callable[..., GitHttpServer]) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    add_marker_role(signed_repo, markers, None)
    new = git_http_server(signed_repo.root)
    real = new.url_for(signed_repo.root.name)
    with GitHttpServer() as old:
        old.redirects["/moved"] = real
        told = old.base_url + "/moved"
        node = Node(tmp_path, signed_repo, told)
        code, text = node.run(report_deadline=0)
        assert code == 15, text  # the role ran; its events could not be delivered (404)
        flat = " ".join(text.split())
        assert f"the repository is at {real} (redirected from {told})" in flat
        assert [(s.method, s.status) for s in old.log] == [("GET", 301)], \
            "only the first request goes to the old URL"
    reports = [s for s in new.log if s.path == "/api/v1/events"]
    assert reports and all(s.method == "POST" for s in reports), \
        "events go to the origin the repository was found at"
    assert origin_events_url(real) == new.base_url + "/api/v1/events"


def test_node_run_warns_about_an_unknown_kernel_key(signed_repo: SignedRepo,
                                                    tmp_path: Path) -> None:
    node = Node(tmp_path, signed_repo, "http://127.0.0.1:9/nothing.git")
    code, text = node.run(unknown_keys=("reop",), fetch_deadline=0.5)
    assert code == 11, text
    assert "ignored unknown kernel key bootpull.reop= (did you mean bootpull.repo=?)" in text
