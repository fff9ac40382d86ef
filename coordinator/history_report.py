"""`chronotick-node report`: a node's recent history (GetHistory) as plain values, a short
summary for people, and a plot of offsets, σ and bound over time.

The values are what `--json` prints; the summary and the plot are made from them, so that
what a person reads and what a program reads cannot disagree.
"""

from __future__ import annotations

import statistics
from typing import Any

from chronotick import plotting
from chronotick.display import format_ns, format_seconds, unit_for
from coordinator import protocol
from coordinator.proto.chronotick.v1 import peer_pb2 as pb


def history_dict(reply: pb.HistoryReply, since_s: float) -> dict[str, Any]:
    """The reply as JSON-ready values, oldest first; ages in seconds before the reply."""
    servers = list(reply.servers)
    points = [
        {
            "age_s": round(p.age_s, 3),
            "base_time_ns": p.base_time_ns,
            "status": protocol.status_name(p.status),
            "source": p.source,
            "offset_ns": p.offset_ns,
            "sigma_ns": p.sigma_ns,
            "bound_ns": p.bound_ns,
            "consensus_offset_ns": (
                p.consensus_offset_ns if p.HasField("consensus_offset_ns") else None
            ),
        }
        for p in reply.points
    ]
    samples = [
        {
            "age_s": round(s.age_s, 3),
            "base_time_ns": s.base_time_ns,
            "server": servers[s.server] if s.server < len(servers) else "?",
            "offset_ns": s.offset_ns,
            "delay_ns": s.delay_ns,
            "rejected": s.rejected,
        }
        for s in reply.samples
    ]
    changes = [
        {
            "age_s": round(c.age_s, 3),
            "base_time_ns": c.base_time_ns,
            "from": protocol.status_name(c.old_status),
            "to": protocol.status_name(c.new_status),
            "reason": c.reason,
        }
        for c in reply.status_changes
    ]
    out: dict[str, Any] = {
        "node_id": reply.node_id,
        "base_time_ns": reply.base_time_ns,
        "kept_s": reply.kept_s,
        "since_s": since_s or None,
    }
    out["summary"] = summarize(points, samples, changes)
    out.update(points=points, samples=samples, status_changes=changes)
    return out


def _with_interval(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in points if p["status"] in ("SYNCHRONIZED", "FREE_RUNNING")]


def summarize(
    points: list[dict[str, Any]], samples: list[dict[str, Any]], changes: list[dict[str, Any]]
) -> dict[str, Any]:
    """Span, counts, ranges and medians: what to look at before the plot."""
    valid = _with_interval(points)
    refused: dict[str, int] = {}
    for s in samples:
        if s["rejected"]:
            refused[s["rejected"]] = refused.get(s["rejected"], 0) + 1
    return {
        "span_s": round(points[0]["age_s"] - points[-1]["age_s"], 3) if points else 0.0,
        "points": len(points),
        "points_with_interval": len(valid),
        "status": points[-1]["status"] if points else None,
        "offset_min_ns": min((p["offset_ns"] for p in valid), default=None),
        "offset_max_ns": max((p["offset_ns"] for p in valid), default=None),
        "sigma_median_ns": _median([p["sigma_ns"] for p in valid]),
        "bound_median_ns": _median([p["bound_ns"] for p in valid]),
        "samples": len(samples),
        "samples_refused": refused,
        "servers": sorted({s["server"] for s in samples}),
        "sample_offset_min_ns": min((s["offset_ns"] for s in samples), default=None),
        "sample_offset_max_ns": max((s["offset_ns"] for s in samples), default=None),
        "status_changes": len(changes),
    }


def _median(values: list[int]) -> int | None:
    return round(statistics.median(values)) if values else None


def render_summary(history: dict[str, Any]) -> str:
    s = history["summary"]
    lines = [
        f"node {history['node_id']}: {s['points']} points over {format_seconds(s['span_s'])}"
        f" (the node keeps {format_seconds(history['kept_s'])}); status now {s['status']}"
    ]
    if s["points_with_interval"]:
        lines += [
            f"  offset  {format_ns(s['offset_min_ns'], signed=True)} .. "
            f"{format_ns(s['offset_max_ns'], signed=True)} (published, true time − base clock)",
            f"  σ       median {format_ns(s['sigma_median_ns'])}",
            f"  bound   median ±{format_ns(s['bound_median_ns'])}",
        ]
    else:
        lines.append("  no point with an interval yet (not synchronized)")
    refused = ", ".join(f"{n} {r}" for r, n in sorted(s["samples_refused"].items()))
    if s["samples"]:
        lines.append(
            f"  samples {s['samples']} from {', '.join(s['servers'])}: measured offsets "
            f"{format_ns(s['sample_offset_min_ns'], signed=True)} .. "
            f"{format_ns(s['sample_offset_max_ns'], signed=True)}"
            + (f"; refused: {refused}" if refused else "")
        )
    else:
        lines.append("  no NTP sample in this span")
    changes = history["status_changes"]
    lines.append(f"  status changes: {len(changes) or 'none'}")
    for c in changes:
        lines.append(
            f"    {format_seconds(c['age_s'])} ago: {c['from']} -> {c['to']}: {c['reason']}"
        )
    return "\n".join(lines)


def plot(path: str, history: dict[str, Any]) -> None:
    """Measured sample offsets as dots, the published offset as a line with its ±σ and
    ±bound bands, the peers' consensus, and the status changes, over the time before now."""
    plt = plotting.pyplot()
    import numpy as np

    points = history["points"]
    valid = _with_interval(points)
    samples = history["samples"]
    span_s = max([p["age_s"] for p in points] + [s["age_s"] for s in samples] + [1.0])
    t_scale, t_unit = (60.0, "minutes") if span_s > 600 else (1.0, "seconds")
    extent = [abs(p["offset_ns"]) + p["bound_ns"] for p in valid]
    extent += [abs(s["offset_ns"]) for s in samples]
    y_scale, y_unit = unit_for(statistics.median(extent) if extent else 1.0)

    fig, ax = plt.subplots(figsize=(11, 5))
    if valid:
        t = np.array([-p["age_s"] for p in valid]) / t_scale
        center = np.array([p["offset_ns"] for p in valid]) / y_scale
        plotting.interval_bands(
            ax,
            t,
            center,
            np.array([p["sigma_ns"] for p in valid]) / y_scale,
            np.array([p["bound_ns"] for p in valid]) / y_scale,
        )
        ax.plot(t, center, lw=1.0, color="C0", label="published offset")
    consensus = [p for p in points if p["consensus_offset_ns"] is not None]
    if consensus:
        ax.plot(
            np.array([-p["age_s"] for p in consensus]) / t_scale,
            np.array([p["consensus_offset_ns"] for p in consensus]) / y_scale,
            lw=0.7,
            color="C2",
            label="peer consensus",
        )
    for k, server in enumerate(sorted({s["server"] for s in samples})):
        for refused, marker in ((False, "o"), (True, "x")):
            mine = [s for s in samples if s["server"] == server and bool(s["rejected"]) == refused]
            if mine:
                ax.plot(
                    np.array([-s["age_s"] for s in mine]) / t_scale,
                    np.array([s["offset_ns"] for s in mine]) / y_scale,
                    marker,
                    ms=3.5,
                    color=f"C{3 + k % 7}",
                    label=f"{server}{' refused' if refused else ''}",
                )
    for c in history["status_changes"]:
        x = -c["age_s"] / t_scale
        ax.axvline(x, color="0.4", lw=0.6, ls=":")
        ax.annotate(c["to"], (x, 0.02), xycoords=("data", "axes fraction"), fontsize=7,
                    rotation=90, va="bottom", ha="right")  # fmt: skip
    ax.set_xlabel(f"{t_unit} before now")
    ax.set_ylabel(f"true time − base clock ({y_unit})")
    ax.set_title(f"node {history['node_id']}: offset, ±σ and ±bound")
    ax.legend(loc="best", fontsize=7)
    plotting.save(fig, path)
