"""`chronotick-mcp` driven the way an agent's host drives it: the MCP SDK's own client starts
`python -m coordinator.mcp_server` over stdio, initializes, lists the tools and calls them.

Values are checked against a ChronoTickClient reading of the same segment taken just before
and just after each call: the server must give the same clock, not merely a plausible one.
"""

from __future__ import annotations

import contextlib
import math
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

import anyio
import pytest
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.types import CallToolResult, TextContent

from chronotick.client import ChronoTickClient
from chronotick.status import ClockStatus
from tests.helpers.daemon import running_daemon, wait_for
from tests.helpers.fake_ntp import FakeNtpServer, honest_reply
from tests.helpers.node import free_tcp_port, node_processes, wait_until
from tests.helpers.segments import unique_name

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
OFFSET_NS = 20_000_000
TOOLS = {
    "get_time",
    "get_daemon_status",
    "get_time_with_future_uncertainty",
    "get_time_bounds",
    "wait_until_time",
    "schedule_action",
    "synchronize_with_peers",
}


@pytest.fixture(scope="module")
def synced_segment() -> Iterator[str]:
    """A daemon synchronized to an honest local server 20 ms ahead, for the whole module."""
    with (
        FakeNtpServer(lambda r: [honest_reply(r, offset_ns=OFFSET_NS)]) as server,
        running_daemon([server.address], name_prefix="test-mcp") as daemon,
    ):
        wait_for(lambda: daemon.model.status is ClockStatus.SYNCHRONIZED, 20, "the daemon to sync")
        yield daemon.config.segment_name


@contextlib.asynccontextmanager
async def mcp_session(errlog: TextIO, *args: str) -> AsyncIterator[ClientSession]:
    """A session with `python -m coordinator.mcp_server ARGS`, initialized."""
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "coordinator.mcp_server", *args], cwd=str(ROOT)
    )
    async with (
        stdio_client(params, errlog=errlog) as (read, write),
        ClientSession(read, write, read_timeout_seconds=90) as session,
    ):
        init = await session.initialize()
        assert init.server_info.name == "chronotick"
        yield session


def run_session(
    tmp_path: Path, args: list[str], body: Callable[[ClientSession], Awaitable[None]]
) -> None:
    """Run `body` against a fresh server; on failure, show what the server wrote to stderr."""
    log_path = tmp_path / "mcp-server.log"

    async def main() -> None:
        with open(log_path, "w") as errlog:
            async with mcp_session(errlog, *args) as session:
                await body(session)

    try:
        anyio.run(main)
    except BaseException:
        print(f"server stderr:\n{log_path.read_text() if log_path.exists() else ''}")
        raise


def text(result: CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, TextContent))


async def call(session: ClientSession, name: str, **arguments: Any) -> dict[str, Any]:
    result = await session.call_tool(name, arguments)
    assert not result.is_error, f"{name}({arguments}) failed: {text(result)}"
    out = result.structured_content
    assert isinstance(out, dict), result
    return out


async def call_error(session: ClientSession, name: str, **arguments: Any) -> str:
    result = await session.call_tool(name, arguments)
    assert result.is_error, f"{name}({arguments}) should fail, returned {text(result)}"
    return text(result)


def test_every_tool_over_stdio_agrees_with_the_client(synced_segment: str, tmp_path: Path) -> None:
    clock = ChronoTickClient(synced_segment)

    async def body(session: ClientSession) -> None:
        listed = {t.name: t for t in (await session.list_tools()).tools}
        assert set(listed) == TOOLS
        for tool in listed.values():
            assert tool.input_schema["type"] == "object" and tool.description
        schema = listed["get_time_with_future_uncertainty"].input_schema
        assert schema["required"] == ["future_seconds"]
        assert schema["properties"]["future_seconds"]["minimum"] == 0
        assert {"target", "tolerance_ms"} <= set(
            listed["wait_until_time"].input_schema["properties"]
        )
        assert "delay_seconds" in listed["schedule_action"].input_schema["properties"]

        before = clock.get_time()
        reading = await call(session, "get_time")
        after = clock.get_time()
        assert reading["status"] == "SYNCHRONIZED" and reading["shm_name"] == synced_segment
        assert before.corrected_time_ns <= reading["corrected_time_ns"] <= after.corrected_time_ns
        assert abs(reading["offset_correction_s"] - before.offset_correction) < 1e-3
        assert abs(reading["offset_correction_s"] - OFFSET_NS / 1e9) < 2e-3
        assert before.error_bound_seconds <= reading["error_bound_s"] <= after.error_bound_seconds
        assert 0 < reading["uncertainty_s"] <= reading["error_bound_s"]
        assert reading["earliest_s"] < reading["corrected_time_s"] < reading["latest_s"]

        status = await call(session, "get_daemon_status")
        assert status["ready"] is True and status["status"] == "SYNCHRONIZED"
        assert status["sources_configured"] == 1 and status["samples_used"] > 0

        future = await call(session, "get_time_with_future_uncertainty", future_seconds=30)
        assert future["future_seconds"] == 30
        assert future["error_bound_s"] > future["now_error_bound_s"]
        assert future["uncertainty_s"] >= future["now_uncertainty_s"]
        expected = clock.get_future_time(30.0)
        assert abs(future["corrected_time_ns"] - expected.corrected_time_ns) < 1e9
        assert abs(future["error_bound_s"] - expected.error_bound_seconds) < 1e-4

        earliest_before, _ = clock.now()
        bounds = await call(session, "get_time_bounds")
        _, latest_after = clock.now()
        assert earliest_before <= bounds["latest_s"] and bounds["earliest_s"] <= latest_after
        assert bounds["earliest_ns"] < bounds["latest_ns"] and bounds["status"] == "SYNCHRONIZED"
        assert math.isclose(bounds["width_s"], 2 * bounds["error_bound_s"])

        target = clock.get_time().corrected_timestamp + 0.5
        waited = await call(session, "wait_until_time", target=target, tolerance_ms=100)
        assert clock.get_time().corrected_timestamp >= target
        assert waited["woke_at_s"] >= target and 0 <= waited["late_s"] < 0.05
        assert 0.3 < waited["waited_s"] < 5

    try:
        run_session(tmp_path, ["--shm-name", synced_segment], body)
    finally:
        clock.close()


def test_bad_inputs_are_tool_errors_and_the_server_stays_up(
    synced_segment: str, tmp_path: Path
) -> None:
    async def body(session: ClientSession) -> None:
        now = (await call(session, "get_time"))["corrected_time_s"]
        message = await call_error(session, "get_time_with_future_uncertainty", future_seconds=-1)
        assert "future_seconds" in message and "greater than or equal to 0" in message
        # JSON has no NaN: the client sends null, which is no number either
        message = await call_error(
            session, "get_time_with_future_uncertainty", future_seconds=math.nan
        )
        assert "future_seconds" in message and "valid number" in message
        message = await call_error(session, "wait_until_time", target=now + 3600)
        assert "ahead" in message and "at most 60 s" in message
        message = await call_error(session, "wait_until_time", target=now, tolerance_ms=0)
        assert "tolerance_ms" in message and "greater than 0" in message
        message = await call_error(session, "wait_until_time", target=now * 1000)
        assert "ahead" in message
        message = await call_error(session, "wait_until_time", target=now - 7200)
        assert "in the past" in message and "seconds since the Unix epoch" in message
        message = await call_error(session, "wait_until_time", target=now + 1, tolerance_ms=1e-6)
        assert "exceeds the tolerance" in message
        message = await call_error(session, "schedule_action", delay_seconds=0.01)
        assert "delay_seconds" in message
        message = await call_error(session, "schedule_action", delay_seconds=1, action="rm -rf")
        assert "'mark' or 'write KEY=VALUE'" in message
        message = await call_error(session, "no_such_tool")
        assert "no_such_tool" in message
        assert (await call(session, "get_daemon_status"))["ready"] is True

    run_session(tmp_path, ["--shm-name", synced_segment], body)


def test_no_daemon_and_no_node_are_clear_errors_until_they_come(tmp_path: Path) -> None:
    """A server started before its daemon says so on every call, and serves the daemon's
    clock as soon as there is one, without a restart."""
    name = unique_name("test-mcp-late")
    port = free_tcp_port()

    async def body(session: ClientSession) -> None:
        message = await call_error(session, "get_time")
        assert message.count("no daemon") == 1 and f"/dev/shm/{name}" in message
        for tool, args in (
            ("get_time_bounds", {}),
            ("get_time_with_future_uncertainty", {"future_seconds": 1}),
        ):
            assert "no daemon" in await call_error(session, tool, **args)
        status = await call(session, "get_daemon_status")
        assert status == status | {"ready": False, "status": "NO_DAEMON", "shm_name": name}
        for tool, args in (
            ("schedule_action", {"delay_seconds": 1}),
            ("synchronize_with_peers", {}),
        ):
            message = await call_error(session, tool, **args)
            assert f"no node at 127.0.0.1:{port}" in message and "start chronotick-node" in message
        with (
            FakeNtpServer(lambda r: [honest_reply(r, offset_ns=OFFSET_NS)]) as server,
            running_daemon([server.address], {"shm_name": name}) as daemon,
        ):
            await anyio.to_thread.run_sync(
                lambda: wait_for(
                    lambda: daemon.model.status is ClockStatus.SYNCHRONIZED, 20, "the daemon"
                )
            )
            reading = await call(session, "get_time")
            assert reading["status"] == "SYNCHRONIZED"
        # the daemon shut down: an error again, and the server is still there
        assert "no daemon" in await call_error(session, "get_time")
        assert (await call(session, "get_daemon_status"))["ready"] is False

    run_session(tmp_path, ["--shm-name", name, "--connect", f"127.0.0.1:{port}"], body)


def test_node_tools_with_two_nodes(tmp_path: Path) -> None:
    with node_processes(tmp_path) as procs:
        ntp = procs.ntp_server()
        ports = [free_tcp_port(), free_tcp_port()]
        a = procs.node("mcp-a", ports[0], ntp, peers=[ports[1]])
        b = procs.node("mcp-b", ports[1], ntp, peers=[ports[0]])
        a.wait_synchronized()
        b.wait_synchronized()
        wait_until(
            lambda: any(p.node_id == "mcp-b" and p.state == "used" for p in a.list_peers().peers),
            20,
            lambda: f"mcp-a to use mcp-b: {a.list_peers()}",
        )

        async def body(session: ClientSession) -> None:
            peers = await call(session, "synchronize_with_peers")
            assert peers["node_id"] == "mcp-a" and peers["node"]["status"] == "SYNCHRONIZED"
            listed = {p["node_id"]: p for p in peers["peers"]}
            assert listed["mcp-b"]["state"] == "used" and listed["mcp-b"]["address"] == b.address
            assert peers["consensus"]["peers_used"] == 1
            assert peers["verdict"] == "agree" and peers["cluster_agrees"] is True, peers

            done = await call(
                session,
                "schedule_action",
                delay_seconds=1.0,
                tolerance_ms=50,
                wait_for_execution=True,
            )
            assert done["committed"] is True
            assert sorted(done["participants"]) == ["mcp-a", "mcp-b"]
            assert all(v["accept"] for v in done["votes"]) and len(done["votes"]) == 2
            assert 0 < done["uncertainty_s"] < 0.05
            assert [e["phase"] for e in done["executions"]] == ["executed", "executed"]
            assert done["within_tolerance"] is True and done["spread_s"] < 0.05

            message = await call_error(
                session, "schedule_action", delay_seconds=0.5, tolerance_ms=1e-6
            )
            assert "aborted, nobody acts" in message
            assert "mcp-a" in message and "mcp-b" in message

        run_session(tmp_path, ["--shm-name", a.shm_name, "--connect", a.address], body)
        example = run_example("--shm-name", a.shm_name, "--connect", a.address, "--delay", "1")
    assert example.returncode == 0, example.stdout + example.stderr
    assert "cluster: agree" in example.stdout and "within tolerance: True" in example.stdout
    assert example.stdout.count(" executed ") == 2, example.stdout


def run_example(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "examples" / "agent_coordination_example.py"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_example_reads_the_time_and_says_when_there_is_no_node(synced_segment: str) -> None:
    alone = run_example("--shm-name", synced_segment)
    assert alone.returncode == 0, alone.stdout + alone.stderr
    assert "daemon: SYNCHRONIZED" in alone.stdout and "bounds: [" in alone.stdout
    assert "no --connect" in alone.stdout
    port = free_tcp_port()
    no_node = run_example("--shm-name", synced_segment, "--connect", f"127.0.0.1:{port}")
    assert no_node.returncode == 1 and f"no node at 127.0.0.1:{port}" in no_node.stderr


def test_chronotick_never_imports_coordinator() -> None:
    """DESIGN.md layering: the one-host package loads without the multi-host one."""
    code = (
        "import sys, chronotick, chronotick.client, chronotick.daemon.cli, chronotick.sim.cli, "
        "chronotick.precise_sleep; "
        "assert not [m for m in sys.modules if m.startswith('coordinator')], sorted(sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_bad_flags_exit_2() -> None:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "coordinator.mcp_server", "--connect", "nohostport"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2 and "missing ':PORT'" in result.stderr
    assert time.monotonic() - started < 30
