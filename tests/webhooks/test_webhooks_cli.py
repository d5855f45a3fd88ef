"""`kernos webhooks ...` as users run it: against a server (which delivers) and a store."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from api_support import live_server
from webhook_support import FAST, Receiver

KERNOS = str(Path(sys.executable).parent / "kernos")


def _kernos(*args: str, env: dict[str, str], cwd: Path, ok: bool = True) -> str:
    done = subprocess.run(
        [KERNOS, *args], capture_output=True, text=True, timeout=120, env=env, cwd=cwd
    )
    if ok:
        assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def _env(tmp_path: Path, **values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERNOS_")}
    env["KERNOS_CONFIG"] = str(tmp_path / "no-config.toml")
    return {**env, **values}


@pytest.fixture
def server_url_and_key(store_url: str) -> Iterator[tuple[str, str]]:
    """A live server (loopback webhooks allowed) in a thread; its URL and admin key."""
    ready = threading.Event()
    stop: dict[str, Any] = {}

    async def serve() -> None:
        async with live_server(store_url, settings=FAST) as live:
            stop["event"], stop["loop"] = asyncio.Event(), asyncio.get_running_loop()
            stop["live"] = live
            ready.set()
            await stop["event"].wait()

    thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    thread.start()
    assert ready.wait(60), "the server did not start"
    try:
        yield stop["live"].url, stop["live"].admin_key
    finally:
        stop["loop"].call_soon_threadsafe(stop["event"].set)
        thread.join(30)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_create_test_rotate_deliveries_delete_against_a_server(
    server_url_and_key: tuple[str, str], hook_receiver: Receiver, tmp_path: Path
) -> None:
    url, key = server_url_and_key
    env = _env(tmp_path, KERNOS_URL=url, KERNOS_API_KEY=key)
    created = orjson.loads(
        _kernos(
            "webhooks",
            "create",
            hook_receiver.url,
            "-k",
            "approval.*",
            "--json",
            env=env,
            cwd=tmp_path,
        )
    )
    hook_id = created["webhook"]["webhook_id"]
    assert "secret" not in created["webhook"]
    hook_receiver.secret = created["secret"]

    pinged = orjson.loads(_kernos("webhooks", "test", hook_id, "--json", env=env, cwd=tmp_path))
    assert (pinged["status"], pinged["response_status"]) == ("delivered", 200)
    (ping,) = hook_receiver.all()
    assert ping.verified and ping.json()["type"] == "ping"

    rotated = orjson.loads(_kernos("webhooks", "rotate", hook_id, "--json", env=env, cwd=tmp_path))
    assert rotated["secret"] != created["secret"]
    hook_receiver.answer(500)  # the next ping fails: exit code 1, the answer shown
    hook_receiver.secret = rotated["secret"]
    failed = subprocess.run(
        [KERNOS, "webhooks", "test", hook_id], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert failed.returncode == 1 and "500" in failed.stdout

    listed = orjson.loads(_kernos("webhooks", "list", "--json", env=env, cwd=tmp_path))
    assert [h["webhook_id"] for h in listed["webhooks"]] == [hook_id]
    table = _kernos("webhooks", "deliveries", hook_id, env=env, cwd=tmp_path)
    assert "delivered" in table and "dead" in table
    dead = orjson.loads(
        _kernos("webhooks", "deliveries", hook_id, "-s", "dead", "--json", env=env, cwd=tmp_path)
    )
    assert [d["response_status"] for d in dead["deliveries"]] == [500]
    for text in (table, *(orjson.dumps(x).decode() for x in (listed, dead))):
        assert created["secret"] not in text and rotated["secret"] not in text

    _kernos("webhooks", "delete", hook_id, env=env, cwd=tmp_path)
    assert orjson.loads(_kernos("webhooks", "list", "--json", env=env, cwd=tmp_path)) == {
        "webhooks": []
    }
    missing = subprocess.run(
        [KERNOS, "webhooks", "rotate", hook_id],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert missing.returncode == 1 and "no webhook" in missing.stderr


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_local_store_refuses_private_urls_and_keeps_the_rest(
    store_url: str, tmp_path: Path
) -> None:
    env = _env(tmp_path, KERNOS_STORE=store_url)
    refused = subprocess.run(
        [KERNOS, "webhooks", "create", "http://127.0.0.1:9/x"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert refused.returncode == 2 and "private" in refused.stderr
    out = _kernos(
        "webhooks",
        "create",
        "https://hooks.example.invalid/k",
        "-f",
        "slack",
        env=env,
        cwd=tmp_path,
    )
    assert "whsec_" in out
    table = _kernos("webhooks", "list", env=env, cwd=tmp_path)
    assert "hooks.example.invalid" in table and "slack" in table
