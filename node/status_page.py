"""The human status page at `/`: the cluster view of `/api/v1/status` as one HTML document.

Server-rendered, refreshing itself every REFRESH_S seconds, no scripts and no external assets
(clusters may have no internet): styles inline, the chart an inline SVG, the favicon an empty
data URL so browsers ask for nothing else. Tables scroll sideways on a phone. Every value
that came from a peer (addresses, reasons, ids) is escaped.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

REFRESH_S = 10
CHART_W, CHART_H, CHART_PAD = 640, 180, 28

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;padding:12px;
color:#1b1f24;background:#f6f8fa;font-size:15px}
h1{font-size:1.25em;margin:0 0 4px}h2{font-size:1.05em;margin:18px 0 6px}
.card{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:10px;margin:8px 0}
.scroll{overflow-x:auto}table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eaeef2;white-space:nowrap}
th{font-weight:600;color:#57606a}.muted{color:#57606a}.ok{color:#1a7f37}.bad{color:#cf222e}
.warn{color:#9a6700}code{font-size:.9em}svg{max-width:100%;height:auto}
.kv span{display:inline-block;margin-right:14px}
"""


def render(status: Mapping[str, Any], now: float | None = None) -> str:
    now = time.time() if now is None else now
    parts = [_header(status, now), _members(status), _configs(status), _chart(status),
             _drift(status), _promotions(status, now), _sync(status)]
    title = f"ringrift {_short(status.get('node_id'))}"
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<meta http-equiv=refresh content={REFRESH_S}>"
        "<meta name=viewport content='width=device-width,initial-scale=1'>"
        "<link rel=icon href='data:,'>"
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>"
        + "".join(parts)
        + f"<p class=muted>Refreshes every {REFRESH_S} s. Same data as JSON: "
          "<a href='/api/v1/status'>/api/v1/status</a> · <a href='/metrics'>/metrics</a></p>"
        "</body></html>"
    )


def _header(s: Mapping[str, Any], now: float) -> str:
    leader = s.get("leader")
    me = s.get("node_id")
    lease = s.get("lease_until")
    if leader is None:
        who = "<span class=bad>no leader</span>"
    elif leader == me:
        left = f", lease {max(0.0, lease - now):.0f} s left" if lease else ""
        who = f"<span class=ok>this node leads</span> (term {_t(s.get('term'))}{left})"
    else:
        address = next((m.get("address") for m in s.get("members", [])
                        if m.get("node_id") == leader), None)
        link = (f"<a href='http://{escape(str(address))}/'>{escape(_short(leader))}</a>"
                if address else escape(_short(leader)))
        who = (f"this node follows {link} (term {_t(s.get('term'))}); the cluster view is on "
               "the leader's page")
    stores = s.get("stores") or {}
    counts = " ".join(f"<span>{escape(k)}: {_t(v.get('count'))}</span>"
                      for k, v in sorted(stores.items()))
    return (
        f"<h1>RingRift cluster <code>{escape(str(s.get('cluster_id', '')))}</code></h1>"
        f"<div class='card kv'><span>node <code>{escape(_short(me))}</code> "
        f"({escape(str(s.get('address', '')))})</span><span>{who}</span>"
        f"<span>state {escape(str(s.get('state', '')))}</span>"
        f"<span>version {escape(str(s.get('version', '')))}</span>"
        f"<span>up {_t(round(float(s.get('uptime_s') or 0)))} s</span>{counts}</div>"
    )


def _members(s: Mapping[str, Any]) -> str:
    rows = []
    for m in sorted(s.get("members", []), key=lambda m: str(m.get("address"))):
        manifest = m.get("manifest") or {}
        state = str(m.get("state"))
        cls = "ok" if state == "alive" else "warn" if state == "suspect" else "bad"
        heard = m.get("last_heard_s")
        rows.append([
            (f"<code title='{escape(str(m.get('node_id')))}'>"
             f"{escape(_short(m.get('node_id')))}</code>"),
            escape(str(m.get("address"))), f"<span class={cls}>{escape(state)}</span>",
            escape(str(m.get("role", ""))), escape(str(manifest.get("device", ""))),
            escape(str(manifest.get("state", ""))), _t(m.get("games_per_hour", "")),
            "now" if heard is None else f"{float(heard):.1f} s ago",
        ])
    return _section(f"Members ({len(rows)})", _table(
        ["node", "address", "state", "role", "device", "work", "games/h", "last heard"], rows))


def _configs(s: Mapping[str, Any]) -> str:
    configs = s.get("configs") or []
    if not configs:
        return _section("Models and Elo", "<p class=muted>No models or match results yet.</p>")
    out = []
    for c in configs:
        cands = ", ".join(f"{escape(str(x['alias']))} <code>{escape(_short(x['model']))}</code>"
                          for x in c.get("candidates", [])) or "none"
        rows = [[str(i + 1), f"<code>{escape(_short(e.get('participant')))}</code>",
                 f"{float(e.get('elo', 0)):.0f}",
                 f"{float(e.get('ci_low', 0)):.0f} to {float(e.get('ci_high', 0)):.0f}",
                 _t(e.get("games"))]
                for i, e in enumerate(c.get("leaderboard", []))]
        out.append(
            f"<div class=card><b>{escape(str(c['board_type']))} · {_t(c['num_players'])} "
            f"players</b><div class=kv><span>production "
            f"<code>{escape(_short(c.get('production')) or 'none')}</code></span>"
            f"<span>candidates {cands}</span></div>"
            + _table(["#", "participant", "Elo", "95% interval", "games"], rows) + "</div>")
    return "<h2>Models and Elo</h2>" + "".join(out)


def _drift(s: Mapping[str, Any]) -> str:
    d = s.get("drift") or {}
    last, history = d.get("last") or {}, d.get("history") or {}
    rows = []
    for key in sorted(set(last) | set(history)):
        r, h = last.get(key, {}), history.get(key, {})
        sig = r.get("is_significant")
        rows.append([
            escape(key), escape(str(r.get("target", ""))),
            _num(r.get("max_rating_diff")), _num(r.get("avg_rating_diff")),
            "<span class=bad>yes</span>" if sig else "<span class=ok>no</span>",
            escape(str(h.get("trend", ""))), "yes" if h.get("persistent_drift") else "no",
            _num(h.get("avg_drift_last_hour")),
        ])
    t = d.get("thresholds") or {}
    note = (f"<p class=muted>Significant above {_num(t.get('max_elo'))} Elo max or "
            f"{_num(t.get('avg_elo'))} Elo mean.</p>" if t else "")
    body = _table(["config", "against", "max", "mean", "significant", "trend", "persistent",
                   "mean max, last hour"], rows) if rows else "<p class=muted>No check yet.</p>"
    return _section("Elo drift", body + note)


def _promotions(s: Mapping[str, Any], now: float) -> str:
    rows = []
    for e in s.get("promotions") or []:
        decision = str(e.get("decision"))
        cls = "ok" if decision == "swap_production" else "bad" if decision == "rollback" else ""
        rows.append([
            _ago(now - float(e.get("at", now))),
            escape(f"{e.get('board_type')}/{e.get('num_players')}p"),
            f"<span class='{cls}'>{escape(decision)}</span>",
            f"<code>{escape(_short(e.get('candidate')))}</code>",
            f"<code>{escape(_short(e.get('incumbent')) or '-')}</code>",
            _t(e.get("games_played")), _num(e.get("win_rate"), 3), _num(e.get("elo_delta")),
            escape(str(e.get("reason") or ""))[:200],
        ])
    body = _table(["when", "config", "decision", "candidate", "incumbent", "games", "win rate",
                   "Elo delta", "reason"], rows) if rows else "<p class=muted>None yet.</p>"
    return _section("Promotions and rollbacks", body)


def _sync(s: Mapping[str, Any]) -> str:
    sync = s.get("sync") or {}
    rows = [[escape(address), "<span class=ok>ok</span>" if p.get("ok")
             else f"<span class=bad>failed</span> {escape(str(p.get('error', '')))[:120]}",
             escape(", ".join(p.get("stores", []))), _t(p.get("rows")),
             f"{float(p.get('seconds_ago', 0)):.0f} s ago"]
            for address, p in (sync.get("peers") or {}).items()]
    head = (f"<p class=muted>Pulls since start: {_t(sync.get('pulls_ok', 0))} ok, "
            f"{_t(sync.get('pulls_failed', 0))} failed. Peers in step are not pulled from.</p>")
    body = _table(["peer", "last pull", "stores", "rows", "when"], rows) if rows else ""
    return _section("Sync", head + body)


def _chart(s: Mapping[str, Any]) -> str:
    series = s.get("series") or {}
    games = [(float(t), float(n)) for t, n in series.get("games_per_hour", [])]
    elo = [(float(t), float(e)) for t, _key, e in series.get("top_elo", [])]
    if not games:
        return ""
    t0 = games[0][0]
    t1 = max(games[-1][0] + 3600, elo[-1][0] if elo else 0)
    width, height, pad = CHART_W, CHART_H, CHART_PAD

    def x(t: float) -> float:
        return pad + (t - t0) / max(t1 - t0, 1) * (width - 2 * pad)

    top = max((n for _, n in games), default=0) or 1
    bar_w = (width - 2 * pad) / len(games) * 0.8
    bars = "".join(
        f"<rect x='{x(t):.1f}' y='{height - pad - n / top * (height - 2 * pad):.1f}' "
        f"width='{bar_w:.1f}' height='{n / top * (height - 2 * pad):.1f}' fill='#54aeff'>"
        f"<title>{int(n)} games</title></rect>" for t, n in games)
    line = ""
    if elo:
        lo, hi = min(e for _, e in elo), max(e for _, e in elo)
        span = (hi - lo) or 1.0
        points = " ".join(f"{x(t):.1f},{height - pad - (e - lo) / span * (height - 2 * pad):.1f}"
                          for t, e in elo)
        line = (f"<polyline points='{points}' fill='none' stroke='#cf222e' stroke-width='2'/>"
                f"<text x='{width - pad}' y='14' text-anchor='end' font-size='11' fill='#cf222e'>"
                f"top Elo {lo:.0f} to {hi:.0f}</text>")
    svg = (f"<svg viewBox='0 0 {width} {height}' role=img aria-label='games per hour and top "
           f"Elo'><line x1='{pad}' y1='{height - pad}' x2='{width - pad}' y2='{height - pad}' "
           f"stroke='#8c959f'/>{bars}{line}<text x='{pad}' y='14' font-size='11' "
           f"fill='#0969da'>games per hour, last {len(games)} h (max {int(top)})</text></svg>")
    return _section("Games and Elo over time", svg)


def _section(title: str, body: str) -> str:
    return f"<h2>{escape(title)}</h2><div class=card>{body}</div>"


def _table(head: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    trs = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return (f"<div class=scroll><table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody>"
            "</table></div>")


def _short(value: object) -> str:
    """Ids are long hex strings: the first 12 characters name one well enough on a page."""
    text = "" if value is None else str(value)
    return text[:12] if len(text) > 16 and all(c in "0123456789abcdef" for c in text) else text


def _t(value: object) -> str:
    return escape(str(value))


def _num(value: object, digits: int = 1) -> str:
    return "-" if not isinstance(value, (int, float)) else f"{value:.{digits}f}"


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"
