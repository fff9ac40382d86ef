"""An AI agent's view of ChronoTick: the clock and the cluster through MCP tools only.

An agent does not import ChronoTick; its host starts `chronotick-mcp` and hands it the tools.
This program plays that host and that agent with the MCP SDK's own client, over stdio, and
does what an agent asked to "do X at the same moment as the other hosts" should do:

  1. check the clock is usable (get_daemon_status) before trusting any time;
  2. read the time with its bounds (get_time, get_time_bounds): an answer without an error bar
     would invite the agent to be more precise than the clock is;
  3. ask how certain the clock will be at the planned instant
     (get_time_with_future_uncertainty), and pick a tolerance the clock can hold;
  4. with a node: check the cluster agrees (synchronize_with_peers), then schedule the action
     with every peer (schedule_action) and read back when each node acted.

    python examples/agent_coordination_example.py --shm-name chronotick-a --connect 127.0.0.1:7820

Without --connect it stops after step 3. Exit status: 0 when every step worked, 1 when a tool
returned an error (printed as the agent would read it), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import anyio
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.types import TextContent


class ToolFailed(Exception):
    """A tool answered with isError: its text is what an agent would read and act on."""


async def call(session: ClientSession, name: str, **arguments: Any) -> dict[str, Any]:
    """Call one tool; its structured result, or ToolFailed with its message."""
    result = await session.call_tool(name, arguments)
    if result.is_error:
        message = " ".join(c.text for c in result.content if isinstance(c, TextContent))
        raise ToolFailed(f"{name}: {message}")
    out: dict[str, Any] = result.structured_content or {}
    return out


async def agent(session: ClientSession, args: argparse.Namespace) -> None:
    tools = (await session.list_tools()).tools
    print("tools:", ", ".join(t.name for t in tools))

    # 1. Is there a clock to trust? get_daemon_status never fails: it says ready or why not.
    status = await call(session, "get_daemon_status")
    if not status["ready"]:
        raise ToolFailed(f"the clock is not ready: {status['message']}")
    print(f"daemon: {status['status']}, source {status['source']}, "
          f"{status['sources_reachable']}/{status['sources_configured']} sources")  # fmt: skip

    # 2. The time, and the interval that must contain true time.
    now = await call(session, "get_time")
    bounds = await call(session, "get_time_bounds")
    print(f"time:   {now['corrected_time_iso']}  σ {now['uncertainty_s'] * 1e3:.3f} ms  "
          f"bound ±{now['error_bound_s'] * 1e3:.3f} ms  ({now['status']})")  # fmt: skip
    print(f"bounds: [{bounds['earliest_s']:.6f}, {bounds['latest_s']:.6f}]  "
          f"width {bounds['width_s'] * 1e3:.3f} ms")  # fmt: skip

    # 3. How certain will the clock be at the planned instant? A tolerance tighter than the
    #    bound then cannot be kept: widen it rather than have the peers refuse the round.
    then = await call(session, "get_time_with_future_uncertainty", future_seconds=args.delay)
    needed_ms = then["error_bound_s"] * 1e3
    tolerance_ms = max(args.tolerance_ms, round(needed_ms * 2, 3))
    print(f"in {args.delay:g} s: bound ±{needed_ms:.3f} ms; acting with tolerance "
          f"±{tolerance_ms:.3f} ms")  # fmt: skip
    if args.connect is None:
        print("no --connect: no node to coordinate with; done")
        return

    # 4. Does the cluster agree on the time? Then act together.
    peers = await call(session, "synchronize_with_peers")
    print(f"cluster: {peers['verdict']}: {peers['summary']}")
    for p in peers["peers"]:
        disagreement = p["disagreement_s"]
        shown = "n/a" if disagreement is None else f"{disagreement * 1e3:+.3f} ms"
        print(f"  {p['node_id']:<16} {p['state']:<12} disagreement {shown} "
              f"(allowed ±{p['allowed_s'] * 1e3:.3f} ms)")  # fmt: skip
    if not peers["cluster_agrees"]:
        raise ToolFailed(f"not scheduling: the cluster does not agree ({peers['verdict']})")
    done = await call(
        session,
        "schedule_action",
        delay_seconds=args.delay,
        tolerance_ms=tolerance_ms,
        action="mark",
        wait_for_execution=True,
    )
    print(f"action {done['action_id']} at {done['target_time_iso']} with "
          f"{', '.join(done['participants'])}")  # fmt: skip
    for e in done["executions"]:
        error = "did not run" if e["error_s"] is None else f"{e['error_s'] * 1e3:+.3f} ms"
        print(f"  {e['node_id']:<16} {e['phase']:<10} {error}")
    print(f"spread {done['spread_s'] * 1e3:.3f} ms, within tolerance: {done['within_tolerance']}")
    if args.json:
        print(json.dumps(done))
    if not done["within_tolerance"]:
        raise ToolFailed("the action was not held within its tolerance")


async def run(args: argparse.Namespace) -> int:
    server_args = ["-m", "coordinator.mcp_server"]
    if args.shm_name:
        server_args += ["--shm-name", args.shm_name]
    if args.connect:
        server_args += ["--connect", args.connect]
    # The server speaks MCP on stdin/stdout; its stderr (logs) goes to ours.
    params = StdioServerParameters(command=sys.executable, args=server_args)
    async with (
        stdio_client(params) as (read, write),
        ClientSession(read, write, read_timeout_seconds=120) as session,
    ):
        await session.initialize()
        try:
            await agent(session, args)
        except ToolFailed as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shm-name", metavar="NAME", help="the daemon's (or node's) segment")
    parser.add_argument("--connect", metavar="HOST:PORT", help="the node of this host")
    parser.add_argument("--delay", type=float, default=2.0, help="seconds ahead to act (2)")
    parser.add_argument("--tolerance-ms", type=float, default=5.0, help="at least (5 ms)")
    parser.add_argument("--json", action="store_true", help="also print the round as JSON")
    args = parser.parse_args(argv)
    if not 0.2 <= args.delay <= 60 or not 0 < args.tolerance_ms <= 60_000:
        parser.error("--delay must be in [0.2, 60] s and --tolerance-ms in (0, 60000]")
    result: int = anyio.run(run, args)
    return result


if __name__ == "__main__":
    sys.exit(main())
