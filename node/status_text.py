"""`ringrift-node status` in a terminal: the cluster view of the status page, as text."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

RECENT_EVENTS = 5


def format_status(status: Mapping[str, Any], now: float | None = None) -> str:
    now = time.time() if now is None else now
    lines = [
        f"node     {status.get('node_id')}  ({status.get('state')}, up {status.get('uptime_s')} s)",
        f"cluster  {status.get('cluster_id')}  version {status.get('version')}",
    ]
    if "leader" in status:
        lease = status.get("lease_until")
        lease_text = f"  lease {max(0.0, lease - now):.0f} s" if lease else ""
        lines.append(
            f"leader   {status.get('leader') or '(none)'}  term {status.get('term')}{lease_text}  "
            f"voters {', '.join(status.get('voters') or []) or '(none)'}"
        )
    for name, summary in (status.get("stores") or {}).items():
        lines.append(f"{name:<8} {summary.get('count'):>9} rows  root {summary.get('root')}")
    members = status.get("members")
    if members:
        lines.append(f"members  {len(members)}")
        for m in members:
            manifest = m.get("manifest") or {}
            heard = m.get("last_heard_s")
            lines.append(
                f"  {m.get('node_id')}  {m.get('state'):<7} {m.get('role', ''):<6} "
                f"{m.get('address')}  {manifest.get('device', '')}/{manifest.get('state', '')}  "
                f"{m.get('games_per_hour', 0)} games/h  inc {m.get('incarnation')}  "
                f"heard {'now' if heard is None else f'{heard} s ago'}"
            )
    for c in status.get("configs") or []:
        lines.append(f"config   {c['board_type']}/{c['num_players']}p  production "
                     f"{c.get('production') or '(none)'}  candidates "
                     f"{', '.join(x['model'] for x in c.get('candidates', [])) or '(none)'}")
        for i, e in enumerate(c.get("leaderboard") or [], start=1):
            lines.append(f"  {i:>2}. {e['participant']:<40} {e['elo']:7.1f}  "
                         f"[{e['ci_low']:.0f}, {e['ci_high']:.0f}]  {e['games']} games")
    d = status.get("drift") or {}
    history = d.get("history") or {}
    for key, r in sorted((d.get("last") or {}).items()):
        h = history.get(key, {})
        lines.append(
            f"drift    {key}  vs {r.get('target')}  max {r.get('max_rating_diff')}  "
            f"avg {r.get('avg_rating_diff')}  {'SIGNIFICANT' if r.get('is_significant') else 'ok'}"
            f"  trend {h.get('trend', 'unknown')}"
            f"{'  PERSISTENT' if h.get('persistent_drift') else ''}")
    for e in (status.get("promotions") or [])[:RECENT_EVENTS]:
        lines.append(f"event    {e['board_type']}/{e['num_players']}p {e['decision']}  "
                     f"{e['candidate']}  Elo {e.get('elo_delta')}  {e.get('reason') or ''}")
    sync = status.get("sync") or {}
    if sync:
        lines.append(f"sync     {sync.get('pulls_ok', 0)} pulls ok, "
                     f"{sync.get('pulls_failed', 0)} failed")
        for address, p in (sync.get("peers") or {}).items():
            lines.append(f"  {address}  {'ok' if p.get('ok') else 'FAILED ' + str(p.get('error'))}"
                         f"  {p.get('rows')} rows  {p.get('seconds_ago')} s ago")
    return "\n".join(lines)
