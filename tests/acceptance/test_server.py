"""`kernos up` as users run it: a real process on loopback, its first-start secrets
read from its output, the API used over HTTP, SIGTERM, and a restart on the same
store that keeps the first key and prints no new one."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

APP = textwrap.dedent(
    '''
    """The workflows `kernos up` serves in the acceptance tests."""

    import kernos


    @kernos.step
    async def acc_double(n: int) -> int:
        return n * 2


    @kernos.workflow(name="acc_sum")
    async def acc_sum(numbers: list[int]) -> int:
        """Double each number, add them up."""
        total = 0
        for n in numbers:
            total += await acc_double(n)
        return total
    '''
)


def kernos_script() -> str:
    """The installed console script, next to this interpreter (or on PATH)."""
    beside = Path(sys.executable).parent / "kernos"
    found = str(beside) if beside.exists() else shutil.which("kernos")
    assert found, "the kernos console script is not installed (pip install -e .)"
    return found


@dataclass
class Up:
    """A running `kernos up`: its URL, what it printed, where its log goes."""

    process: asyncio.subprocess.Process
    log: Path
    url: str = ""
    printed: list[str] = field(default_factory=list)

    def secret(self, label: str) -> str | None:
        for line in self.printed:
            if line.strip().startswith(label):
                return line.split(":", 1)[1].strip()
        return None


@asynccontextmanager
async def kernos_up(root: Path, store_url: str, name: str) -> AsyncIterator[Up]:
    """Start `kernos up` on a free port; stop it with SIGTERM if the test did not."""
    log = root / f"{name}.log"
    with log.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            kernos_script(), "up", "--store", store_url, "--port", "0", "--app", "accept_app",
            "--archive-dir", str(root / "archive"), "--grace", "5",
            cwd=root,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
        )  # fmt: skip
    up = Up(process, log)
    try:
        assert process.stdout is not None
        async with asyncio.timeout(60):  # bounds a failing start only
            while not up.url:
                line = (await process.stdout.readline()).decode()
                assert line, f"kernos up exited early:\n{log.read_text()}"
                up.printed.append(line)
                if line.startswith("Kernos is up at "):
                    up.url = line.split()[4]
        yield up
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def stop(up: Up) -> str:
    """SIGTERM; return the log once the process has exited cleanly."""
    up.process.send_signal(signal.SIGTERM)
    async with asyncio.timeout(30):
        code = await up.process.wait()
    log = up.log.read_text()
    assert code == 0, log
    return log


async def test_kernos_up_serves_stops_and_restarts(tmp_path: Path, store_url: str) -> None:
    (tmp_path / "accept_app.py").write_text(APP)
    async with kernos_up(tmp_path, store_url, "first") as up:
        key, password = up.secret("API key:"), up.secret("password:")
        assert key and key.startswith("kn_") and password
        assert up.url.startswith("http://127.0.0.1:")
        async with httpx.AsyncClient(base_url=up.url, timeout=30) as client:
            assert (await client.get("/healthz")).json() == {"status": "ok"}
            ready = (await client.get("/readyz")).json()
            assert ready["status"] == "ready"

            auth = {"Authorization": f"Bearer {key}"}
            me = (await client.get("/api/v1/auth/me", headers=auth)).json()
            assert (me["role"], me["tenant"]) == ("admin", "default")
            workflows = (await client.get("/api/v1/workflows", headers=auth)).json()
            assert "acc_sum" in {w["name"] for w in workflows}

            started = await client.post(
                "/api/v1/runs",
                json={"workflow": "acc_sum", "input": {"numbers": [1, 2, 3]}},
                headers=auth,
            )
            assert started.status_code == 201, started.text
            run_id = started.json()["run_id"]
            async with asyncio.timeout(30):
                while (run := (await client.get(f"/api/v1/runs/{run_id}", headers=auth)).json())[
                    "status"
                ] != "succeeded":
                    assert run["status"] in ("pending", "running"), run
                    await asyncio.sleep(0.05)
            assert run["output"] == 12 and run["steps"] == 3

            login = await client.post(
                "/api/v1/auth/login", json={"username": "admin", "password": password}
            )
            assert login.status_code == 200 and "kernos_session=" in login.headers["set-cookie"]
        log = await stop(up)
    assert "Traceback" not in log
    for secret in (key, password):
        assert secret not in log  # printed once on stdout, never logged

    async with kernos_up(tmp_path, store_url, "second") as again:
        assert again.secret("API key:") is None and again.secret("password:") is None
        assert not any("First start" in line for line in again.printed)
        async with httpx.AsyncClient(base_url=again.url, timeout=30) as client:
            auth = {"Authorization": f"Bearer {key}"}
            assert (await client.get("/api/v1/auth/me", headers=auth)).status_code == 200
            run = (await client.get(f"/api/v1/runs/{run_id}", headers=auth)).json()
            assert (run["status"], run["output"]) == ("succeeded", 12)
        assert "Traceback" not in await stop(again)
