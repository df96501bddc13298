"""Every FetchError's hint reaches the banner and the event, word for word.

The call sites are found in the agent's source (every ``FetchError(...)``, ``NotFound(...)`` and
``TlsError(...)`` in ``bootstrap/bootpull``), so a new one is covered the day it is
written. Each must carry a hint. For each, the node runs ``--oneshot`` with no
last-known-good while its pull raises that error with that site's hint text (the
literal parts of it): the banner's ``do:`` and the ``fail`` event's ``details.hint``
must both hold it, followed by what having no last-known-good means. The real
servers behind those errors are tested in tests/test_fetch*.py.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from bootpull import pull
from bootpull.errors import FetchError
from eventsink import EventSink
from signed_repo import SignedRepo
from test_pipeline import Node

AGENT = Path(__file__).resolve().parents[1] / "bootstrap" / "bootpull"
NAMES = {"FetchError", "TlsError", "NotFound"}


def _texts(node: ast.expr, names: dict[str, list[ast.expr]]) -> list[str]:
    """The literal texts a hint expression can have (formatted values left out): both
    arms of a conditional, every string a variable or constant is given in the file."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        return ["".join(_texts(v, names)[0] if _texts(v, names) else "" for v in node.values)]
    if isinstance(node, ast.BinOp):
        left, right = _texts(node.left, names), _texts(node.right, names)
        return [a + b for a in left or [""] for b in right or [""]]
    if isinstance(node, ast.IfExp):
        return _texts(node.body, names) + _texts(node.orelse, names)
    if isinstance(node, ast.Name):
        return [t for value in names.get(node.id, []) for t in _texts(value, names)]
    return []


def call_sites() -> list[tuple[str, str]]:
    """(``file:line``, a hint's literal text) for every hint every FetchError the agent
    makes can carry; a site without a hint gets ``""``."""
    sites = []
    for path in sorted(AGENT.glob("*.py")):
        tree = ast.parse(path.read_text())
        names: dict[str, list[ast.expr]] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        names.setdefault(target.id, []).append(node.value)
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id in NAMES):
                continue
            hint = next((k.value for k in node.keywords if k.arg == "hint"), None)
            texts = _texts(hint, names) if hint is not None else []
            for n, text in enumerate(dict.fromkeys(texts or [""])):
                sites.append((f"{path.name}:{node.lineno}" + (f"#{n}" if n else ""), text))
    return sites


SITES = call_sites()


def test_the_agent_makes_fetch_errors_and_each_has_a_hint() -> None:
    assert len(SITES) >= 20, SITES  # the scan finds them (a rename would empty it)
    missing = [where for where, hint in SITES if not hint.strip()]
    assert not missing, f"FetchError without a hint: {missing}"


@pytest.mark.parametrize(("where", "hint"), SITES, ids=[w for w, _ in SITES])
def test_the_hint_reaches_the_banner_and_the_event(
        where: str, hint: str, signed_repo: SignedRepo, sink: EventSink, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_pull(*args: object, **kwargs: object) -> pull.PullResult:
        raise FetchError(f"the error made at {where}", why="as the server answered",
                         hint=hint)

    monkeypatch.setattr(pull, "pull_url", failing_pull)
    repo_url = sink.url.replace("/api/v1/events", "/repo.git")  # events go to its origin
    code, text = Node(tmp_path, signed_repo, repo_url).run(report_deadline=5.0)
    assert code == 11, text
    flat = " ".join(text.split())
    wanted = " ".join(hint.split())
    assert f"do: {wanted}" in flat or f"do: {wanted[:40]}" in flat, text
    assert wanted in flat, text
    failed = [e for e in sink.received if e["status"] == "fail" and e["stage"] == "fetch"]
    assert len(failed) == 1, sink.received
    got = failed[0]["details"]["hint"]
    assert got.startswith(hint), got
    assert got.endswith("this node has no last-known-good role to run meanwhile"), got
