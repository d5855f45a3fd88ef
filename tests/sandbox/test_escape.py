"""The sandbox escape battery: every way out of the shell tool that the issue names.

Each attack runs in both sandboxes (``mode``). Where it is safe, the same
command first runs as the same user *without* the sandbox and must succeed,
so a test cannot pass because the attack itself was broken. Throughout, a
ticker on the event loop shows the host stayed responsive, and a scan of
``/proc`` for a unique marker shows nothing was left running.
"""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import time
from dataclasses import replace
from typing import cast

import pytest
from sandbox_support import (
    FAST,
    MakeTool,
    Outside,
    Ticker,
    kill_pids,
    marker,
    running_with,
    unsandboxed,
)

from kernos.tools import ShellTool

ESCAPED = ("/etc/kernos-escaped", "/usr/kernos-escaped", "/kernos-escaped")
RESPONSIVE = 2.0  # seconds: the most the event loop may stall (a generous bound)
PY = "python3 -c"


def responsive(ticker: Ticker) -> None:
    worst = ticker.worst
    assert worst < RESPONSIVE, f"the event loop stalled for {worst:.2f}s"


# --- network ---------------------------------------------------------------------------


async def test_tcp_connect_to_a_host_listener_fails(tool: ShellTool, ticker: Ticker) -> None:
    accepted: list[bytes] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(await reader.read(100))
        writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    script = (
        f'{PY} \'import socket; s = socket.create_connection(("127.0.0.1", {port}), timeout=3);'
        ' s.sendall(b"escaped"); s.close(); print("connected")\''
    )
    async with server:
        code, out, _ = await unsandboxed(tool, script)
        assert (code, out.strip()) == (0, "connected")  # control: reachable as this user
        for _ in range(50):
            if accepted:
                break
            await asyncio.sleep(0.02)
        assert accepted == [b"escaped"]

        result = await tool.run(script)
        await asyncio.sleep(0.3)
    assert result.exit_code != 0
    assert "connected" not in result.stdout
    assert accepted == [b"escaped"], "the sandboxed command reached the host listener"
    responsive(ticker)


async def test_udp_datagram_to_a_host_socket_never_arrives(tool: ShellTool, ticker: Ticker) -> None:
    received: list[bytes] = []
    loop = asyncio.get_running_loop()

    class Collect(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str | bytes, int]) -> None:
            received.append(data)

    transport, _ = await loop.create_datagram_endpoint(Collect, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    script = (
        f"{PY} 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM);"
        f' s.sendto(b"escaped", ("127.0.0.1", {port})); print("sent")\''
    )
    try:
        code, out, _ = await unsandboxed(tool, script)
        assert (code, out.strip()) == (0, "sent")
        for _ in range(50):
            if received:
                break
            await asyncio.sleep(0.02)
        assert received == [b"escaped"]  # control

        result = await tool.run(script)
        await asyncio.sleep(0.5)
    finally:
        transport.close()
    # In a network namespace the send itself succeeds (onto the sandbox's own
    # loopback); what matters is that nothing arrives.
    assert result.exit_code == 0 or "sent" not in result.stdout
    assert received == [b"escaped"], "a datagram from the sandbox reached the host"
    responsive(ticker)


async def test_dns_resolution_fails(tool: ShellTool, ticker: Ticker) -> None:
    # A fake DNS server on the host loopback: the query must not arrive.
    queries: list[bytes] = []
    loop = asyncio.get_running_loop()

    class Server(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = cast(asyncio.DatagramTransport, transport)

        def datagram_received(self, data: bytes, addr: tuple[str | bytes, int]) -> None:
            queries.append(data)
            # Answer with the header only (id echoed, QR bit set): enough to be a reply.
            self.transport.sendto(data[:2] + b"\x81\x80" + b"\x00" * 8, addr)

    transport, _ = await loop.create_datagram_endpoint(Server, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    query = (
        "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1);"
        " q = bytes.fromhex('beef01000001000000000000')"
        " + b'\\x06kernos\\x04test\\x00\\x00\\x01\\x00\\x01';"
        f" s.sendto(q, ('127.0.0.1', {port})); print('answer', s.recv(512)[:2].hex())"
    )
    script = f'{PY} "{query}"'
    try:
        code, out, _ = await unsandboxed(tool, script)
        assert (code, out.strip()) == (0, "answer beef")  # control
        result = await tool.run(script)
    finally:
        transport.close()
    assert result.exit_code != 0 and "answer" not in result.stdout
    assert len(queries) == 1, "the sandbox's DNS query reached the host"

    # And through the system resolver (whatever /etc/resolv.conf names).
    name = "pypi.org"
    resolved = await tool.run(f"getent hosts {name}")
    assert resolved.exit_code != 0 and resolved.stdout == ""
    code, out, _ = await unsandboxed(tool, f"getent hosts {name}")
    if code != 0:
        pytest.skip(f"the host cannot resolve {name} either; the loopback DNS check passed")
    responsive(ticker)


# --- filesystem ------------------------------------------------------------------------


async def test_reads_outside_the_workspace_fail(
    tool: ShellTool, outside: Outside, ticker: Ticker
) -> None:
    read = f"cat {outside.canary}"
    code, out, _ = await unsandboxed(tool, read)
    assert (code, out) == (0, outside.secret)  # control: the user may read it

    for attack in (read, f"ls {outside.root}", "cat /etc/shadow", f"cat {outside.root}/*"):
        result = await tool.run(attack)
        assert result.exit_code != 0, attack
        assert outside.secret not in result.stdout + result.stderr
        assert "canary.txt" not in result.stdout
        assert "root:" not in result.stdout  # /etc/shadow
    responsive(ticker)


async def test_kernos_environment_does_not_reach_the_command(
    tool: ShellTool, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = f"sk-{marker()}"
    monkeypatch.setenv("KERNOS_TEST_API_KEY", secret)
    result = await tool.run(f"env; cat /proc/{os.getpid()}/environ; cat /proc/$PPID/environ")
    assert secret not in result.stdout + result.stderr
    assert "HOME=" in result.stdout


async def test_writes_outside_the_workspace_fail(
    tool: ShellTool, outside: Outside, ticker: Ticker
) -> None:
    target = outside.drop / "escaped"
    code, _, _ = await unsandboxed(tool, f"echo x > {target}")
    assert code == 0 and target.exists()  # control: the directory is world-writable
    target.unlink()

    attacks = [
        f"echo x > {target}",
        f"echo x >> {outside.canary}",
        f"ln -s {target} link && echo x > link",
        f"ln {outside.canary} hard && echo x >> hard",
        *(f"echo x > {path}" for path in ESCAPED),
        "echo x > /dev/shm/kernos-escaped",
        f"cp /bin/sh {outside.drop}/sh",
    ]
    result = await tool.run("; ".join(attacks) + "; echo done")
    assert result.stdout.strip() == "done"
    assert list(outside.drop.iterdir()) == []
    assert outside.canary.read_text() == outside.secret
    assert not any(map(os.path.exists, ESCAPED))
    # Inside the workspace, writing works.
    inside = await tool.run("echo ok > file && cat file && mkdir d && mv file d/ && ls d")
    assert inside.stdout.split() == ["ok", "file"]
    responsive(ticker)


# --- resources -------------------------------------------------------------------------


async def test_fork_bomb_is_contained(tool: ShellTool, ticker: Ticker) -> None:
    tag = f"bomb-{marker()}"
    started = time.monotonic()
    bomb = asyncio.ensure_future(tool.run(f"b(){{ b | b & }}; b; sleep 30 # {tag}", timeout=3))
    await asyncio.sleep(1.0)
    # While the bomb runs, the host can still start processes.
    host = await asyncio.create_subprocess_exec("/bin/true")
    assert await asyncio.wait_for(host.wait(), timeout=10) == 0
    result = await bomb
    assert result.timed_out
    assert "fork" in result.stderr.lower()  # the process limit refused forks
    assert time.monotonic() - started < 15
    assert running_with(tag) == [], "fork bomb processes outlived the call"
    responsive(ticker)


async def test_process_limit_binds(make_tool: MakeTool) -> None:
    # The limit, not luck, is what contains the fork bomb: 40 sleeps exceed 16 processes.
    spawn = "for i in $(seq 40); do sleep 1 & done; wait; echo finished"
    small = await make_tool(replace(FAST, processes=16)).run(spawn)
    assert "fork" in small.stderr.lower()
    large = await make_tool(replace(FAST, processes=256)).run(spawn)
    assert large.stderr == "" and large.stdout.strip() == "finished"


async def test_memory_bomb_is_contained(make_tool: MakeTool, ticker: Ticker) -> None:
    allocate = f"{PY} 'b = bytearray(384 << 20); print(len(b))'"
    small = await make_tool(replace(FAST, memory_bytes=128 << 20)).run(allocate)
    assert small.exit_code != 0 and "MemoryError" in small.stderr
    large = await make_tool(replace(FAST, memory_bytes=1 << 30)).run(allocate)
    assert large.stdout.strip() == str(384 << 20)  # control: the limit is what stopped it

    doubling = "awk 'BEGIN { s = \"x\"; while (1) s = s s }'"
    bomb = await make_tool(replace(FAST, memory_bytes=128 << 20)).run(doubling, timeout=15)
    assert not bomb.timed_out and bomb.exit_code != 0
    responsive(ticker)


async def test_cpu_spin_is_killed_by_the_cpu_limit(make_tool: MakeTool, ticker: Ticker) -> None:
    spin = "while :; do :; done"
    limited = await make_tool(replace(FAST, cpu_seconds=1)).run(spin, timeout=20)
    assert not limited.timed_out
    assert limited.killed_by in ("SIGXCPU", "SIGKILL")
    assert limited.duration < 15
    # Control: with a larger CPU limit the same spin runs until the wall clock stops it.
    unlimited = await make_tool(replace(FAST, cpu_seconds=60)).run(spin, timeout=2)
    assert unlimited.timed_out
    responsive(ticker)


async def test_sleep_past_the_timeout_is_killed(tool: ShellTool, ticker: Ticker) -> None:
    tag = marker()
    result = await tool.run(f"echo before; sleep {tag}; echo after", timeout=1)
    assert result.timed_out and result.exit_code is None and result.killed_by == "SIGKILL"
    assert result.stdout.strip() == "before"
    assert 0.9 < result.duration < 10
    assert running_with(tag) == []
    responsive(ticker)


def daemons(tags: list[str]) -> str:
    """Three ways to outlive a command: nohup, setsid, and a double fork into a new session."""
    return (
        f"nohup sleep {tags[0]} >/dev/null 2>&1 & "
        f"setsid sleep {tags[1]} >/dev/null 2>&1 & "
        f"(setsid sh -c 'sleep {tags[2]}' >/dev/null 2>&1 &); echo started"
    )


async def test_background_daemons_are_gone_after_the_call(tool: ShellTool, ticker: Ticker) -> None:
    # Control: without the sandbox, all three outlive the command.
    tags = [marker() for _ in range(3)]
    code, out, _ = await unsandboxed(tool, daemons(tags), new_session=True)
    assert (code, out.strip()) == (0, "started")
    await asyncio.sleep(0.2)
    try:
        assert all(running_with(tag) for tag in tags)
    finally:
        kill_pids([pid for tag in tags for pid in running_with(tag)])

    tags = [marker() for _ in range(3)]
    result = await tool.run(daemons(tags))
    assert result.exit_code == 0 and result.stdout.strip() == "started"
    assert result.duration < 10
    leftover = [pid for tag in tags for pid in running_with(tag)]
    kill_pids(leftover)
    assert leftover == [], "background daemons outlived the call"
    responsive(ticker)


async def test_huge_output_is_capped(tool: ShellTool, ticker: Ticker) -> None:
    size = 100_000_000
    cap = tool.limits.output_bytes
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = await tool.run(f"head -c {size} /dev/zero | tr '\\0' a; head -c {size} /dev/zero >&2")
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert result.exit_code == 0
    assert result.stdout_truncated and result.stderr_truncated
    marker_text = f"\n[... output truncated: {size - cap} bytes omitted ...]\n"
    assert result.stdout == "a" * cap + marker_text
    assert result.stderr == "\0" * cap + marker_text
    assert grown_kib < 50 * 1024, f"reading the output grew memory by {grown_kib} KiB"
    responsive(ticker)


async def test_runs_as_an_unprivileged_user(tool: ShellTool) -> None:
    result = await tool.run("id -u; id -G; cat /proc/self/status | grep -E '^(CapEff|NoNewPrivs)'")
    uid, groups, cap_eff, no_new_privs = result.stdout.split("\n")[:4]
    if os.geteuid() == 0:
        assert int(uid) == tool.uid != 0
        assert groups.split() == [str(tool.user.gid)]
    else:
        assert int(uid) == os.geteuid()
    assert cap_eff.split() == ["CapEff:", "0000000000000000"]
    assert no_new_privs.split() == ["NoNewPrivs:", "1"]


def test_bubblewrap_is_installed() -> None:
    """Fails, never skips, where bubblewrap is missing: make test installs it."""
    assert shutil.which("bwrap"), "bubblewrap is not installed: apt-get install bubblewrap"
