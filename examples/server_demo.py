"""Part two of ``make demo``: the Kernos server, driven over its REST API.

Starts ``kernos up`` on the demo store (SQLite) with the demo's workflows,
reads the first-start admin API key it prints, then, over HTTP only: starts a
run with an idempotency key, follows its events live over Server-Sent Events,
lists runs, forks the run with an edited step result, replays it, and reads
the audit log. The server is left running, its URL and key printed, until
Ctrl-C.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import httpx
from rich.console import Console

console = Console(width=110)
HERE = Path(__file__).resolve().parent


def start_server(store: str, port: int) -> tuple[subprocess.Popen[str], str, str | None]:
    """Start ``kernos up``; return the process, its URL and the first-start API key."""
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
            "--log-level",
            "warning",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    url = key = None
    lines: list[str] = []
    for line in process.stdout:  # the first-start key comes first, the URL line last
        lines.append(line)
        if match := re.search(r"API key:\s+(kn_\S+)", line):
            key = match.group(1)
        if match := re.search(r"Kernos is up at (http://\S+)", line):
            url = match.group(1)
        if url is not None and "workflows:" in line:
            break
    if url is None:
        process.kill()
        raise SystemExit("kernos up did not start:\n" + "".join(lines))
    # Keep draining the server's output so it never blocks on a full pipe.
    threading.Thread(target=_relay, args=(process,), daemon=True).start()
    return process, url, key


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
    """Run part two of the demo and leave the server up."""
    console.print("\n[bold]6. The server: everything again, over HTTP[/bold]")
    process, url, key = start_server(store, port)
    try:
        if key is None:
            console.print("   (not a first start: set KERNOS_API_KEY to use the API)")
            key = os.environ.get("KERNOS_API_KEY")
        if key is None:
            process.wait()
            return
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
        console.rule()
        console.print(f"[bold green]Kernos is up at {url}[/bold green]")
        console.print(f"   API docs:  {url}/api/v1/docs")
        console.print(f"   API key:   {key}   (admin; shown once, stored only as a hash)")
        console.print(f"   Try:       curl -H 'Authorization: Bearer {key}' {url}/api/v1/runs")
        console.print("   Ctrl-C stops the server.")
        process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=30)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "sqlite:///demo-data/kernos.db")
