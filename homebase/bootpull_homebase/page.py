"""The status page ``/`` and each node's history page, as self-contained HTML.

No scripts, fonts, images or style sheets from anywhere: the CSS is inline and the
page refreshes itself with ``<meta http-equiv="refresh">``, so it works offline, in
any browser, and from a file saved during an outage.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence

from bootpull_homebase.drift import Drift
from bootpull_homebase.feeds import feed_name
from bootpull_homebase.store import NodeState, StoredEvent, Transition, rfc3339

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fff}
h1{font-size:1.3em}h2{font-size:1.1em;margin-top:1.5em}
table{border-collapse:collapse;width:100%}
th,td{border:1px solid #ccc;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#f2f2f2}
.st{font-weight:bold;text-align:center;width:5.5em}
.OK{background:#cfc}.WARN{background:#ffd27f}.FAIL{background:#f99}.SILENT{background:#ccc}
.small{color:#666;font-size:.9em}pre{white-space:pre-wrap;margin:0}
.norb{color:#a00;font-size:.9em;font-weight:bold}
"""

#: the marker of a node whose last report says ``details.rollback_protection: none``
#: (a diskless node: its version floor is in RAM, docs/security.md)
NO_ROLLBACK_PROTECTION = ('<br><span class=norb title="no state disk: the version floor '
                          'is lost at every reboot, so retired keys and older signed '
                          'commits are accepted (docs/security.md)">no rollback protection'
                          '</span>')


def _no_rollback_protection(node: NodeState) -> bool:
    details = node.last.get("details")
    return isinstance(details, dict) and details.get("rollback_protection") == "none"


def _page(title: str, body: str, refresh: int | None) -> bytes:
    meta = f'<meta http-equiv="refresh" content="{refresh}">' if refresh else ""
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">{meta}"
            f"<meta name=\"viewport\" content=\"width=device-width\">"
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
            f"<body>{body}</body></html>").encode()


def status_page(nodes: Sequence[NodeState], drift: Sequence[Drift], *, now: float,
                refresh: int, health: str) -> bytes:
    esc = html.escape
    counts = {s: sum(1 for n in nodes if n.status == s) for s in ("OK", "WARN", "FAIL", "SILENT")}
    summary = ", ".join(f"{v} {k}" for k, v in counts.items() if v) or "no nodes have reported"
    rows = []
    for n in sorted(nodes, key=lambda n: (("FAIL", "SILENT", "WARN", "OK").index(n.status),
                                          n.role, n.hostname, n.mac)):
        c = n.counters
        rows.append(
            f'<tr id="node-{n.mac}"><td class="st {n.status}">{n.status}</td>'
            f"<td>{esc(n.hostname or '-')}<br><span class=small>{n.mac}</span>"
            f"{NO_ROLLBACK_PROTECTION if _no_rollback_protection(n) else ''}</td>"
            f"<td>{esc(n.role or '(none)')}@{esc(n.version or '?')}</td>"
            f"<td>{rfc3339(n.last_change)}</td><td>{rfc3339(n.last_report)}</td>"
            f"<td>{c.get('retries', 0)}</td><td>{c.get('restarts', 0)}</td>"
            f"<td>{c.get('fallbacks', 0)}</td>"
            f"<td>{esc(str(n.last.get('message', '')))[:200]}</td>"
            f'<td><a href="/nodes/{n.mac}">history</a></td></tr>')
    table = ("<table id=nodes><thead><tr><th>status</th><th>node</th><th>role@version</th>"
             "<th>last change</th><th>last report</th><th>retries</th><th>restarts</th>"
             "<th>fallbacks</th><th>message</th><th></th></tr></thead><tbody>"
             + "".join(rows) + "</tbody></table>")
    if drift:
        items = "".join(
            f'<tr class="drift"><td><a href="/nodes/{d.node.mac}">'
            f"{esc(d.node.hostname or d.node.mac)}</a></td>"
            f"<td>{'<br>'.join(esc(r) for r in d.reasons)}</td></tr>" for d in drift)
        drift_html = (f"<table id=drift><thead><tr><th>node</th><th>why</th></tr></thead>"
                      f"<tbody>{items}</tbody></table>")
    else:
        drift_html = "<p id=drift>No drift: every node runs what the repository says.</p>"
    roles = sorted({feed_name(n.role) for n in nodes})
    feeds = " ".join(f'<a href="/feeds/{esc(r)}.atom">{esc(r)}</a> '
                     f'(<a href="/feeds/{esc(r)}.rss">rss</a>)' for r in roles)
    body = (f"<h1>bootpull home base</h1><p>{esc(summary)}. Home base {esc(health)}; "
            f"page generated {rfc3339(now)}, refreshes every {refresh} s.</p>{table}"
            f"<h2>Drift</h2>{drift_html}"
            f'<h2>Feeds</h2><p><a href="/feeds/all.atom">all roles</a> {feeds}</p>'
            f'<p class=small><a href="/api/v1/nodes">nodes (JSON)</a> · '
            f'<a href="/api/v1/drift">drift (JSON)</a> · <a href="/healthz">healthz</a></p>')
    return _page(f"bootpull: {summary}", body, refresh)


def node_page(node: NodeState, transitions: Sequence[Transition],
              events: Sequence[StoredEvent], *, refresh: int) -> bytes:
    esc = html.escape
    changes = "".join(f"<tr><td>{rfc3339(t.at)}</td><td class='st {t.status}'>{t.status}</td>"
                      "</tr>" for t in transitions)
    rows = "".join(
        f"<tr><td>{rfc3339(e.received)}</td><td>{esc(e.event['time'])}</td>"
        f"<td class='st {e.event['status'].upper()}'>{e.event['status'].upper()}</td>"
        f"<td>{esc(e.event['stage'])}</td><td>{esc(e.event['role'])}@"
        f"{esc(e.event['version'])}</td><td>{esc(e.event['message'])}"
        f"<pre>{esc(json.dumps(e.event['details'], sort_keys=True))}</pre></td></tr>"
        for e in reversed(events))
    marker = (f"<p>{NO_ROLLBACK_PROTECTION.removeprefix('<br>')}</p>"
              if _no_rollback_protection(node) else "")
    body = (f'<p><a href="/">all nodes</a></p><h1>{esc(node.hostname or node.mac)} '
            f"<span class='st {node.status}'>{node.status}</span></h1>"
            f"{marker}"
            f"<p>{node.mac} · {esc(node.role)}@{esc(node.version)} · commit "
            f"{esc(node.commit or '-')} · last report {rfc3339(node.last_report)} · "
            f"SILENT after {int(node.deadline)} s without a report</p>"
            f"<h2>Status changes</h2><table><tr><th>at</th><th>status</th></tr>{changes}</table>"
            f"<h2>Reports (newest first)</h2><table><tr><th>received</th><th>node time</th>"
            f"<th>status</th><th>stage</th><th>role@version</th><th>message / details</th></tr>"
            f"{rows}</table>")
    return _page(f"bootpull: {node.hostname or node.mac}", body, refresh)
