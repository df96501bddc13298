"""The status page ``/`` and each node's history page, as self-contained HTML.

No scripts, fonts, images or style sheets from anywhere: the CSS is inline and the
page refreshes itself with ``<meta http-equiv="refresh">``, so it works offline, in
any browser, and from a file saved during an outage.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from bootpull_homebase.feeds import feed_name
from bootpull_homebase.fleet import NEVER_SEEN, ORDER, Fleet, RoleSummary, Row
from bootpull_homebase.store import NodeState, StoredEvent, Transition, rfc3339

PER_PAGE = 100  # rows of the node table per page
MAX_PER_PAGE = 10000
DRIFT_SHOWN = 20  # drifting nodes listed on the page (all of them: ?drift=1)
PROBLEMS_SHOWN = 25  # problem nodes listed at the top (all of them: ?status=problems)

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
.held{color:#805;font-weight:bold;font-size:.9em}.NEVER{background:#bde}.PENDING{background:#d9c2f0}.drift{color:#a00;font-weight:bold}
.chip{display:inline-block;padding:0 .5em;text-decoration:none;color:#222;font-weight:bold}
.bar{display:flex;height:1.3em;background:#eee;border:1px solid #bbb;min-width:12em}
.seg{position:relative;display:block;background:#f99;border-right:1px solid #fff;
overflow:hidden;color:#000;text-decoration:none}
.seg i{position:absolute;left:0;top:0;bottom:0;background:#7c7}
.seg b{position:relative;font-weight:normal;font-size:.85em;padding:0 .2em}
td.roll{width:40%}td.small,.t{white-space:nowrap}.t{font-size:.9em}
form#filter{margin:.5em 0}form#filter label{margin-right:.6em}
.pager{margin:.4em 0}svg.hist{width:100%;max-width:60em;height:auto}
"""

#: the marker of a node whose last report says ``details.rollback_protection: none``
#: (a diskless node: its version floor is in RAM, docs/security.md)
NO_ROLLBACK_PROTECTION = ('<br><span class=norb title="no state disk: the version floor '
                          'is lost at every reboot, so retired keys and older signed '
                          'commits are accepted (docs/security.md)">no rollback protection'
                          '</span>')


#: the marker of a node whose last report says ``details.held`` (the repository holds its
#: rollout: 'bootpull repo hold'; it keeps its version while a newer one waits)
HELD = ("<br><span class=held title=\"the repository holds the rollout ('bootpull repo "
        "unhold' lets it go on)\">held</span>")


def _held(node: NodeState) -> bool:
    details = node.last.get("details")
    return isinstance(details, dict) and details.get("held") is True


def _no_rollback_protection(node: NodeState) -> bool:
    details = node.last.get("details")
    return isinstance(details, dict) and details.get("rollback_protection") == "none"


def _page(title: str, body: str, refresh: int | None) -> bytes:
    meta = f'<meta http-equiv="refresh" content="{refresh}">' if refresh else ""
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">{meta}"
            f"<meta name=\"viewport\" content=\"width=device-width\">"
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
            f"<body>{body}</body></html>").encode()


@dataclass(frozen=True)
class View:
    """What the page shows: filters and the page of the node table (query parameters)."""

    status: str = ""  # one of fleet.ORDER, "problems", or "" (all)
    role: str | None = None  # None: every role ("" is the unassigned nodes)
    version: str = ""
    group: str = ""
    drift: bool = False
    q: str = ""  # part of a hostname or MAC
    page: int = 1
    per: int = PER_PAGE

    @classmethod
    def parse(cls, query: Mapping[str, Sequence[str]]) -> View:
        """From a query string; anything malformed falls back to its default."""
        def one(name: str) -> str:
            values = query.get(name) or [""]
            return values[0].strip()[:200]

        status = one("status")
        if status.upper() in ORDER:
            status = status.upper()
        elif status.replace("_", " ").upper() == NEVER_SEEN:
            status = NEVER_SEEN
        elif status != "problems":
            status = ""
        role = one("role") if "role" in query else None
        return cls(status=status, role=None if role == "*" else role,
                   version=one("version"), group=one("group"),
                   drift=one("drift") in ("1", "yes", "true", "on"), q=one("q").lower(),
                   page=_number(one("page"), 1, 1, 10**6),
                   per=_number(one("per"), PER_PAGE, 1, MAX_PER_PAGE))

    def matches(self, row: Row) -> bool:
        if self.status == "problems":
            if not row.problem:
                return False
        elif self.status and row.status != self.status:
            return False
        if self.role is not None and row.role != self.role:
            return False
        if self.version and row.version != self.version:
            return False
        if self.group and self.group not in row.groups:
            return False
        if self.drift and not row.drift:
            return False
        return not self.q or self.q in row.hostname.lower() or self.q in row.mac

    def query(self, **changes: Any) -> str:
        """This view's query string, with ``changes`` (the page is reset unless given)."""
        values = {"status": self.status, "role": self.role, "version": self.version,
                  "group": self.group, "drift": "1" if self.drift else "", "q": self.q,
                  "page": 1, "per": self.per if self.per != PER_PAGE else ""}
        values.update(changes)
        if values["page"] == 1:
            values["page"] = ""
        pairs = [(k, str(v)) for k, v in values.items() if v is not None and v != ""]
        if values.get("role") == "":
            pairs.append(("role", ""))
        return "?" + urlencode(pairs) if pairs else "?"


def _number(text: str, default: int, low: int, high: int) -> int:
    try:
        return max(low, min(high, int(text)))
    except ValueError:
        return default


def _bar(summary: RoleSummary, view: View) -> str:
    """A role's rollout: one segment per version, as wide as its share of the nodes,
    its green part as wide as its share of OK nodes."""
    esc = html.escape
    parts = []
    for version, nodes, healthy in summary.versions:
        share = 100.0 * nodes / max(1, summary.nodes)
        ok = 100.0 * healthy / max(1, nodes)
        href = esc(View(role=summary.role, version=version).query(), quote=True)
        label = f"{summary.role or '(none)'}@{version}: {nodes} nodes, {healthy} OK"
        parts.append(f'<a class=seg style="width:{share:.2f}%" href="{href}" '
                     f'title="{esc(label, quote=True)}"><i style="width:{ok:.1f}%"></i>'
                     f"<b>{esc(version)}</b></a>")
    return f"<div class=bar>{''.join(parts)}</div>"


def _legend(summary: RoleSummary) -> str:
    legend = " · ".join(f"{html.escape(v)}: {n} ({h} OK)" for v, n, h in summary.versions[:4])
    more = f" · {len(summary.versions) - 4} more" if len(summary.versions) > 4 else ""
    return legend + more


def _roles(fleet: Fleet, view: View) -> str:
    esc = html.escape
    rows = []
    for summary in fleet.roles:
        name = feed_name(summary.role)
        href = esc(View(role=summary.role).query(), quote=True)
        rows.append(
            f'<tr><td><a href="{href}">{esc(summary.role or "(none)")}</a></td>'
            f"<td>{summary.nodes}</td><td>{summary.healthy}</td>"
            f"<td class=roll>{_bar(summary, view)}</td><td class=small>{_legend(summary)}</td>"
            f'<td><a href="/feeds/{esc(name)}.atom">atom</a> '
            f'<a href="/feeds/{esc(name)}.rss">rss</a></td></tr>')
    if not rows:
        return "<p id=roles>No nodes yet.</p>"
    return ("<table id=roles><thead><tr><th>role</th><th>nodes</th><th>OK</th>"
            "<th>rollout (width: nodes per version; green: OK)</th><th>versions</th>"
            "<th>feeds</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


def _select(name: str, current: str, options: Sequence[tuple[str, str]]) -> str:
    esc = html.escape
    items = "".join(f'<option value="{esc(v, quote=True)}"'
                    f"{' selected' if v == current else ''}>{esc(label)}</option>"
                    for v, label in options)
    return f'<label>{name} <select name="{name}">{items}</select></label> '


def _filters(fleet: Fleet, view: View) -> str:
    esc = html.escape
    statuses = [("", "all"), ("problems", "problems"), *((s, s) for s in ORDER)]
    role_names = [r.role for r in fleet.roles]
    form_roles = "".join(
        f'<option value="{esc(r, quote=True)}"{" selected" if view.role == r else ""}>'
        f"{esc(r or '(none)')}</option>" for r in role_names)
    versions = sorted({v for r in fleet.roles for v, _, _ in r.versions})
    groups = [("", "all"), *((g, g) for g in fleet.groups)]
    role_select = ('<label>role <select name="role">'
                   f'<option value="*"{" selected" if view.role is None else ""}>all</option>'
                   f"{form_roles}</select></label> ")
    return ('<form id=filter method=get action="/">'
            + _select("status", view.status, statuses) + role_select
            + _select("version", view.version, [("", "all"), *((v, v) for v in versions)])
            + (_select("group", view.group, groups) if fleet.groups else "")
            + f'<label><input type=checkbox name=drift value=1'
              f'{" checked" if view.drift else ""}> drift only</label> '
            + f'<label>host or MAC <input name=q size=14 value="{esc(view.q, quote=True)}">'
              "</label> "
            + _select("per", str(view.per), [(str(n), str(n)) for n in (50, 100, 500, 1000)])
            + '<button>show</button> <a href="/">reset</a></form>')


def _row(row: Row) -> str:
    esc = html.escape
    css = row.status.split()[0]
    node = row.state
    groups = (f"<br><span class=small>{esc(', '.join(row.groups))}</span>"
              if row.groups else "")
    drift = ("<br><span class=drift title=\"" + esc("; ".join(row.drift), quote=True)
             + "\">drift</span>" if row.drift else "")
    if row.pending:
        groups += "".join(f"<br><span class=small>key {esc(_fingerprint(p.key))} waits: "
                          f"bootpull repo enroll {row.mac}</span>" for p in row.pending[:2])
    if node is None:
        return (f'<tr id="node-{row.mac}"><td class="st {css}">{row.status}</td>'
                f"<td>{esc(row.hostname or '-')}<br><span class='small t'>{row.mac}</span>"
                f"{groups}</td><td>{esc(row.role)}@{esc(row.version or 'head')}{drift}</td>"
                "<td>-</td><td>never</td><td></td><td></td><td></td>"
                f"<td>{esc(row.drift[0])}</td><td></td></tr>")
    c = node.counters
    return (f'<tr id="node-{row.mac}"><td class="st {css}">{row.status}</td>'
            f"<td>{esc(node.hostname or '-')}<br><span class='small t'>{row.mac}</span>"
            f"{NO_ROLLBACK_PROTECTION if _no_rollback_protection(node) else ''}"
            f"{HELD if _held(node) else ''}{groups}</td>"
            f"<td>{esc(node.role or '(none)')}@{esc(node.version or '?')}{drift}</td>"
            f"<td class=t>{rfc3339(node.last_change)}</td>"
            f"<td class=t>{rfc3339(node.last_report)}</td><td>{c.get('retries', 0)}</td>"
            f"<td>{c.get('restarts', 0)}</td>"
            f"<td>{c.get('fallbacks', 0)}</td>"
            f"<td>{esc(str(node.last.get('message', ''))[:200])}</td>"
            f'<td><a href="/nodes/{row.mac}">history</a></td></tr>')


def _table(name: str, rows: Sequence[Row]) -> str:
    return (f"<table id={name}><thead><tr><th>status</th><th>node</th><th>role@version</th>"
            "<th>last change</th><th>last report</th><th>retries</th><th>restarts</th>"
            "<th>fallbacks</th><th>message</th><th></th></tr></thead><tbody>"
            + "".join(_row(r) for r in rows) + "</tbody></table>")


def _pager(view: View, total: int) -> str:
    pages = max(1, -(-total // view.per))
    page = min(view.page, pages)
    first = (page - 1) * view.per
    shown = (f"nodes {first + 1}–{min(total, first + view.per)} of {total}" if total
             else "no node matches")
    links = []
    if page > 1:
        links.append(f'<a rel=prev href="{html.escape(view.query(page=page - 1))}">'
                     "previous</a>")
    if page < pages:
        links.append(f'<a rel=next href="{html.escape(view.query(page=page + 1))}">next</a>')
        links.append(f'<a href="{html.escape(view.query(page=pages))}">last</a>')
    return (f"<p class=pager>{shown} · page {page} of {pages}"
            + (" · " + " · ".join(links) if links else "") + "</p>")


def status_page(fleet: Fleet, view: View, *, now: float, refresh: int, health: str) -> bytes:
    """The fleet page: counts, per-role rollout, problems first, filtered and paged."""
    esc = html.escape
    counts = fleet.counts
    total = len(fleet.rows)
    summary = ", ".join(f"{v} {k}" for k, v in counts.items() if v) or "no nodes yet"
    chips = " ".join(
        f'<a class="chip {k.split()[0]}" href="{esc(View(status=k).query(), quote=True)}">'
        f"{v} {k}</a>" for k, v in counts.items() if v)
    problem_rows = [r for r in fleet.rows if r.problem]
    matching = [r for r in fleet.rows if view.matches(r)]
    pages = max(1, -(-len(matching) // view.per))
    first = (min(view.page, pages) - 1) * view.per
    table = _table("nodes", matching[first:first + view.per])
    if fleet.drift:
        shown = "".join(
            f'<tr class="drift"><td><a href="/nodes/{d.node.mac}">'
            f"{esc(d.node.hostname or d.node.mac)}</a></td>"
            f"<td>{'<br>'.join(esc(r) for r in d.reasons)}</td></tr>"
            for d in fleet.drift[:DRIFT_SHOWN])
        more = (f'<p><a href="{esc(View(drift=True).query(), quote=True)}">all '
                f"{len(fleet.drift)} drifting nodes</a> · "
                '<a href="/api/v1/drift">drift (JSON)</a></p>')
        drift_html = (f"<p>{len(fleet.drift)} nodes differ from the repository.</p>"
                      f"<table id=drift><thead><tr><th>node</th><th>why</th></tr></thead>"
                      f"<tbody>{shown}</tbody></table>{more}")
    else:
        drift_html = "<p id=drift>No drift: every node runs what the repository says.</p>"
    if problem_rows:
        link = esc(View(status="problems").query(), quote=True)
        more = (f' · <a href="{link}">all {len(problem_rows)}</a>'
                if len(problem_rows) > PROBLEMS_SHOWN else "")
        problems_html = (f"<h2 id=problems>Problems: {len(problem_rows)}</h2><p class=small>"
                         f"FAIL, SILENT, NEVER SEEN, WARN or drift, worst first{more}</p>"
                         + _table("problem-nodes", problem_rows[:PROBLEMS_SHOWN]))
    else:
        problems_html = ("<h2 id=problems>No problems</h2><p>Every node is OK and runs what "
                         "the repository says.</p>")
    nodes_html = (f"<h2 id=all>Nodes</h2>{_filters(fleet, view)}"
                  f"{_pager(view, len(matching))}{table}"
                  f"{_pager(view, len(matching)) if len(matching) > 20 else ''}")
    roles_html = f"<h2>Roles</h2>{_roles(fleet, view)}"
    # A filtered view (a query) shows its nodes first; the plain page, its problems.
    middle = (nodes_html + roles_html if view != View()
              else problems_html + roles_html + nodes_html)
    body = (f"<h1>bootpull home base</h1><p>{total} nodes: {chips or esc(summary)} · home "
            f"base {esc(health)} · generated {rfc3339(now)}, refreshes every {refresh} s</p>"
            f"{middle}<h2>Drift</h2>{drift_html}"
            f'<h2>Feeds</h2><p><a href="/feeds/all.atom">all roles</a> · one per role in '
            "the table above</p>"
            f'<p class=small><a href="/api/v1/nodes">nodes (JSON)</a> · '
            f'<a href="/api/v1/drift">drift (JSON)</a> · <a href="/api/v1/audit">audit log '
            f'(JSON)</a> · <a href="/metrics">metrics</a> · <a href="/healthz">healthz</a></p>')
    return _page(f"bootpull: {summary}", body, refresh)


_COLOURS = {"OK": "#7c7", "WARN": "#fb5", "FAIL": "#e55", "SILENT": "#aaa"}
CHART_DAYS = 7.0
FAILURES_SHOWN = 5
#: keys of a failing event's ``details`` shown as its output on the node page
OUTPUT_KEYS = ("why", "hint", "error", "output", "stderr", "stdout", "log", "tail")


def _fingerprint(key: str) -> str:
    from bootpull.httpsig import fingerprint

    return fingerprint(key)


def identity_section(identity: Mapping[str, Any] | None) -> str:
    """A node's page: the key it is enrolled with, and keys waiting, with their facts."""
    if identity is None:
        return ""
    esc = html.escape
    pinned = identity.get("pinned")
    lines = [f"<p>enrolled key {esc(pinned['fingerprint'])} ({esc(pinned['source'])})</p>"
             if pinned else "<p>not enrolled: its reports are "
             + ("signed, and its key waits below" if identity.get("pending") else
                "unsigned (an image without node identity), or it never reported") + "</p>"]
    for key in identity.get("pending") or []:
        facts = key.get("facts") or {}
        lines.append(
            f"<h3>PENDING key {esc(key['fingerprint'])}</h3><p>first seen "
            f"{esc(key['first_seen'])}, last seen {esc(key['last_seen'])}"
            + (f", {key['refused']} requests refused (it is not the enrolled key)"
               if key.get("refused") else "")
            + f". Trust it: <code>bootpull repo enroll {esc(identity['node'])} --homebase "
            "URL</code>; refuse it: <code>bootpull repo reject "
            f"{esc(identity['node'])} --homebase URL</code>.</p>"
            f"<pre class=facts>{esc(json.dumps(facts, indent=1, sort_keys=True)[:4000])}"
            "</pre>")
    for key in identity.get("rejected") or []:
        lines.append(f"<p>rejected key {esc(key['fingerprint'])}</p>")
    return "<h2>Identity</h2>" + "".join(lines)


def status_chart(node: NodeState, transitions: Sequence[Transition], *, now: float,
                 days: float = CHART_DAYS) -> str:
    """The node's status over the last ``days`` (or since its first recorded change), as
    inline SVG: one coloured band per status spell, with a day scale."""
    spells: list[tuple[float, str]] = sorted((t.at, t.status) for t in transitions)
    if node.status == "SILENT" and (not spells or spells[-1][1] != "SILENT"):
        spells.append((node.silent_at, "SILENT"))
    if not spells:
        return ""
    end = max(now, spells[-1][0])
    start = max(min(at for at, _ in spells), end - days * 86400.0)
    span = max(1.0, end - start)
    width, height = 800.0, 28.0
    bands = []
    for index, (at, status) in enumerate(spells):
        until = spells[index + 1][0] if index + 1 < len(spells) else end
        if until <= start:
            continue
        x0 = (max(at, start) - start) / span * width
        x1 = (until - start) / span * width
        bands.append(f'<rect x="{x0:.1f}" y="0" width="{max(0.5, x1 - x0):.1f}" '
                     f'height="{height:.0f}" fill="{_COLOURS.get(status, "#ccc")}">'
                     f"<title>{status} from {rfc3339(max(at, start))} to {rfc3339(until)}"
                     "</title></rect>")
    ticks: list[str] = []
    step = 86400.0 if span > 2 * 86400 else (3600.0 if span > 7200 else 600.0)
    tick = (start // step + 1) * step
    while tick < end and len(ticks) < 24:
        x = (tick - start) / span * width
        label = rfc3339(tick)[5:10] if step >= 86400 else rfc3339(tick)[11:16]
        ticks.append(f'<line x1="{x:.1f}" y1="{height:.0f}" x2="{x:.1f}" '
                     f'y2="{height + 4:.0f}" stroke="#666"/><text x="{x:.1f}" '
                     f'y="{height + 15:.0f}" font-size="10" text-anchor="middle">{label}</text>')
        tick += step
    legend = " ".join(f'<tspan fill="{c}">■</tspan> {s}' for s, c in _COLOURS.items())
    return (f'<svg class="hist" id="chart" viewBox="0 0 {width:.0f} {height + 34:.0f}" '
            f'xmlns="http://www.w3.org/2000/svg" role="img" aria-label="status history">'
            f"{''.join(bands)}{''.join(ticks)}"
            f'<text x="0" y="{height + 30:.0f}" font-size="10">{rfc3339(start)} – '
            f"{rfc3339(end)} · {legend}</text></svg>")


def _failures(events: Sequence[StoredEvent]) -> str:
    """The newest failing reports, with the output nodes sent (why, hint, output ...)."""
    esc = html.escape
    failing = [e for e in reversed(events) if e.event["status"] in ("fail", "warn")]
    if not failing:
        return ""
    items = []
    for e in failing[:FAILURES_SHOWN]:
        details = e.event.get("details") or {}
        parts = [f"<b>{esc(k)}</b>\n{esc(str(details[k]))}" for k in OUTPUT_KEYS
                 if isinstance(details, dict) and details.get(k)]
        items.append(f"<li>{rfc3339(e.received)} <b>{e.event['status'].upper()}</b> "
                     f"{esc(e.event['stage'])}: {esc(e.event['message'])}"
                     + (f"<pre class=out>{chr(10).join(parts)}</pre>" if parts else "")
                     + "</li>")
    return f"<h2>Failures (newest first)</h2><ul id=failures>{''.join(items)}</ul>"


def node_page(node: NodeState, transitions: Sequence[Transition],
              events: Sequence[StoredEvent], *, refresh: int, now: float,
              groups: Sequence[str] = (), identity: Mapping[str, Any] | None = None,
              status: str | None = None) -> bytes:
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
            f"<span class='st {status or node.status}'>{status or node.status}</span></h1>"
            f"{marker}"
            f"<p>{node.mac} · {esc(node.role)}@{esc(node.version)} · commit "
            f"{esc(node.commit or '-')} · last report {rfc3339(node.last_report)} · "
            f"SILENT after {int(node.deadline)} s without a report"
            + (f" · groups {esc(', '.join(groups))}" if groups else "") + "</p>"
            f"{identity_section(identity)}"
            f"<h2>Status history</h2>{status_chart(node, transitions, now=now)}"
            f"{_failures(events)}"
            f"<h2>Status changes</h2><table><tr><th>at</th><th>status</th></tr>{changes}</table>"
            f"<h2>Reports (newest first)</h2><table><tr><th>received</th><th>node time</th>"
            f"<th>status</th><th>stage</th><th>role@version</th><th>message / details</th></tr>"
            f"{rows}</table>")
    return _page(f"bootpull: {node.hostname or node.mac}", body, refresh)


def never_seen_page(row: Row) -> bytes:
    """The page of a node the repository assigns that never reported."""
    esc = html.escape
    body = (f'<p><a href="/">all nodes</a></p><h1>{esc(row.hostname or row.mac)} '
            f"<span class='st NEVER'>{NEVER_SEEN}</span></h1>"
            f"<p>{row.mac} · {esc(row.role)}@{esc(row.version or 'head')}"
            + (f" · groups {esc(', '.join(row.groups))}" if row.groups else "")
            + f"</p><p>{esc(row.drift[0] if row.drift else 'never reported')}. Boot it, "
            "or check its console: a node that cannot reach this home base says why.</p>")
    return _page(f"bootpull: {row.hostname or row.mac}", body, None)
