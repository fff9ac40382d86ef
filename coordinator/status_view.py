"""`chronotick-node status` and `peers` for people: the clock (as `chronyc tracking`), its NTP
sources (as `chronyc sources`) and its peers, in aligned columns with units chosen by
magnitude. Made from the same values `--json` prints.
"""

from __future__ import annotations

from typing import Any

from chronotick.display import columns, format_ns, format_ppm, format_seconds


def render_status(out: dict[str, Any]) -> str:
    has_interval = out["status"] in ("SYNCHRONIZED", "FREE_RUNNING")
    header = [
        ("Node", f"{out['node_id']} (cluster {out['cluster']}), chronotick "
                 f"{out['software_version']}, up {format_seconds(out['uptime_s'])}"),
        ("Status", out["status"] + (f" (source {out['source']})" if out["source"] else "")),
        ("Offset", f"{format_ns(out['correction_ns'], signed=True)} (true time − base clock)"
                   if has_interval else "-"),
        ("Drift", format_ppm(out["drift_ppb"]) if has_interval else "-"),
        ("σ", format_ns(out["sigma_ns"]) if has_interval else "-"),
        ("Bound", f"±{format_ns(out['bound_ns'])}" if has_interval else "-"),
        ("Last sample", f"{format_seconds(out.get('last_sample_age_s'))} ago"
                        if out.get("last_sample_age_s") is not None else "none yet"),
        ("Poll interval", format_seconds(out.get("poll_interval_s"))),
        ("Sources", f"{out['sources_reachable']} of {out['sources_configured']} reachable"),
        ("Peers", f"{out['peers_used']} of {out['peers_known']} used"),
        ("Segment", out["shm_name"]),
    ]  # fmt: skip
    width = max(len(k) for k, _ in header)
    lines = [f"{k:<{width}} : {v}" for k, v in header]
    # an older node has servers but does not list them: no table then
    if out.get("sources"):
        lines += ["", *render_sources(out["sources"])]
    elif "sources" in out and not out["sources_configured"]:
        lines += ["", "no NTP server configured"]
    if "peers" in out:
        lines += ["", *render_peer_rows(out["peers"], out.get("consensus"))]
    return "\n".join(lines)


def render_sources(sources: list[dict[str, Any]]) -> list[str]:
    rows = [
        [
            s["server"],
            s["state"],
            f"{s['reach']:03o}",
            str(s["stratum"] or "-"),
            format_seconds(s["poll_interval_s"]),
            format_ns(s["offset_ns"], signed=True),
            format_ns(s["delay_ns"]),
            format_seconds(s["sample_age_s"]),
        ]
        for s in sources
    ]
    header = ["SERVER", "STATE", "REACH", "STRATUM", "POLL", "OFFSET", "DELAY", "AGE"]
    return columns(header, rows, left=2)


def render_peer_rows(peers: list[dict[str, Any]], consensus: dict[str, Any] | None) -> list[str]:
    if not peers:
        lines = ["no peers"]
    else:
        rows = [
            [
                p["node_id"],
                p["address"],
                p["discovered_by"],
                p["state"],
                format_ns(p["offset_ns"], signed=True),
                format_ns(p["sigma_ns"]),
                format_ns(p["rtt_ns"]),
                format_seconds(p["age_s"]),
            ]
            for p in peers
        ]
        header = ["PEER", "ADDRESS", "VIA", "STATE", "OFFSET", "σ", "RTT", "AGE"]
        lines = columns(header, rows, left=4)
    if consensus:
        lines.append(
            f"consensus of {consensus['peers_used']}: true time − base clock "
            f"{format_ns(consensus['offset_ns'], signed=True)} ± "
            f"{format_ns(consensus['bound_ns'])} (σ {format_ns(consensus['sigma_ns'])})"
            + (
                f"; falsetickers: {', '.join(consensus['falsetickers'])}"
                if consensus["falsetickers"]
                else ""
            )
        )
    elif peers:
        lines.append("no consensus (no usable peer, or no majority)")
    return lines


def render_peers(out: dict[str, Any]) -> str:
    return "\n".join(render_peer_rows(out["peers"], out["consensus"]))
