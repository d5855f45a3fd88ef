"""Part two of ``make demo``: the Kernos server, driven over its REST API.

Starts ``kernos up`` on the demo store (SQLite) with the demo's workflows,
and those of ``approval_demo.py`` (webhooks to private addresses allowed, for
the demo's receiver on loopback), reads the first-start admin API key and
password it prints, then, over HTTP only: starts a run with an idempotency key,
follows its events live over Server-Sent Events, lists runs, forks the run with
an edited step result, replays it, and reads the audit log; then people in the
loop (see ``approval_demo.py``). The server is left running, its URL, key and
dashboard sign-in printed, until Ctrl-C (with ``KERNOS_DEMO_SCRIPTED_ONLY=1`` it
is stopped at once instead, as the demo's test does).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import approval_demo  # a sibling module: examples/ is on sys.path
import httpx
from rich.console import Console

console = Console(width=110)
HERE = Path(__file__).resolve().parent


@dataclass
class Started:
    """A running ``kernos up`` and what it printed on its first start."""

    process: subprocess.Popen[str]
    url: str
    key: str | None
    password: str | None


def start_server(store: str, port: int, env: dict[str, str]) -> Started:
    """Start ``kernos up`` with the demo's apps; return it with its first-start secrets."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kernos.cli",
            "up",
            "--store",
            store,
            "--port",
            str(port),
            "--app",
            str(HERE / "demo.py"),
            "--app",
            str(HERE / "approval_demo.py"),
            "--allow-private-webhooks",
            "--log-level",
            "warning",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    url = key = password = None
    lines: list[str] = []
    for line in process.stdout:  # the first-start key comes first, the URL line last
        lines.append(line)
        if match := re.search(r"API key:\s+(kn_\S+)", line):
            key = match.group(1)
        if match := re.search(r"password:\s+(\S+)", line):
            password = match.group(1)
        if match := re.search(r"Kernos is up at (http://\S+)", line):
            url = match.group(1)
        if url is not None and "workflows:" in line:
            break
    if url is None:
        process.kill()
        raise SystemExit("kernos up did not start:\n" + "".join(lines))
    # Keep draining the server's output so it never blocks on a full pipe.
    threading.Thread(target=_relay, args=(process,), daemon=True).start()
    return Started(process, url, key, password)


def _relay(process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        sys.stdout.write("   [server] " + line)


def follow(client: httpx.Client, run_id: str) -> list[str]:
    """Read the run's events from the SSE stream until it finishes."""
    kinds: list[str] = []
    with client.stream(
        "GET", "/events", params={"run_id": run_id, "last_event_id": 0}, timeout=30
    ) as stream:
        for line in stream.iter_lines():
            if line.startswith("event:"):
                kinds.append(line.split(":", 1)[1].strip())
                if kinds[-1] in ("run.succeeded", "run.failed", "run.cancelled"):
                    break
    return kinds


def main(store: str, port: int = 8420) -> None:
    """Run part two of the demo and leave the server up (unless scripted only)."""
    console.print("\n[bold]6. The server: everything again, over HTTP[/bold]")
    env, fake = approval_demo.start_model()
    server = start_server(store, port, env)
    receiver: approval_demo.Receiver | None = None
    try:
        key = server.key
        if key is None:
            console.print("   (not a first start: set KERNOS_API_KEY to use the API)")
            key = os.environ.get("KERNOS_API_KEY")
        if key is None:
            server.process.wait()
            return
        over_http(server.url, key)
        receiver = approval_demo.show(server.url, key)
        print_sign_in(server, key)
        if os.environ.get("KERNOS_DEMO_SCRIPTED_ONLY") == "1":
            return
        receiver.live = True
        console.print(
            "   Ctrl-C stops the server. Webhook deliveries from here on (decide the pending "
            "request in the dashboard) are printed as \\[webhook] lines."
        )
        server.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if server.process.poll() is None:
            server.process.terminate()
            server.process.wait(timeout=30)
        if receiver is not None:
            receiver.stop()
        if fake is not None:
            fake.stop()


def over_http(url: str, key: str) -> None:
    """Start, follow, fork and replay a run, and read the audit log, over the API."""
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url + "/api/v1", headers=headers, timeout=30) as client:
        workflows = client.get("/workflows").raise_for_status().json()
        console.print(f"   workflows: {[w['name'] for w in workflows]}")
        started = client.post(
            "/runs",
            json={"workflow": "daily_brief", "input": {"day": "2026-11-23"}},
            headers={"Idempotency-Key": "brief-2026-11-23"},
        ).raise_for_status()
        run = started.json()
        again = client.post(
            "/runs",
            json={"workflow": "daily_brief", "input": {"day": "2026-11-23"}},
            headers={"Idempotency-Key": "brief-2026-11-23"},
        ).raise_for_status()
        console.print(
            f"   POST /runs -> {started.status_code} run {run['run_id'][:12]}...; "
            f"same Idempotency-Key again -> {again.status_code}, same run: "
            f"{again.json()['run_id'] == run['run_id']}"
        )
        console.print(f"   live events (SSE): {follow(client, run['run_id'])}")
        done = client.get(f"/runs/{run['run_id']}").raise_for_status().json()
        console.print(f"   status {done['status']}, output {done['output']}")
        journal = client.get(f"/runs/{run['run_id']}/journal").raise_for_status().json()
        seq = next(e["seq"] for e in journal if e["name"].endswith("summarize"))
        fork = client.post(
            f"/runs/{run['run_id']}/fork",
            json={"at": seq, "patch": "edited over the API", "patched": True},
        ).raise_for_status()
        console.print(f"   fork at seq {seq} with an edited summary -> {fork.json()['run_id']}")
        report = client.post(f"/runs/{run['run_id']}/replay").raise_for_status().json()
        console.print(f"   replay: identical={report['identical']}")
        page = client.get("/runs", params={"limit": 5}).raise_for_status().json()
        console.print(f"   GET /runs: {len(page['items'])} runs on the first page")
        audit = client.get("/audit", params={"limit": 5}).raise_for_status().json()
        console.print(f"   audit log: {[a['action'] for a in audit['items']]}")


def print_sign_in(server: Started, key: str) -> None:
    """Where to go next: the dashboard and how to sign in, the API docs, the key."""
    url = server.url
    password = server.password or "(printed by kernos up on its first start)"
    console.rule()
    console.print(f"[bold green]Kernos is up at {url}[/bold green]")
    console.print(f"   Dashboard: {url}/   sign in as admin, password {password}")
    console.print(
        f"              (or as {approval_demo.OPERATOR}, password "
        f"{approval_demo.OPERATOR_PASSWORD}: an operator, who may decide approvals)"
    )
    console.print(f"   API docs:  {url}/api/v1/docs")
    console.print(f"   API key:   {key}   (admin; shown once, stored only as a hash)")
    console.print(f"   Try:       curl -H 'Authorization: Bearer {key}' {url}/api/v1/runs")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "sqlite:///demo-data/kernos.db")
